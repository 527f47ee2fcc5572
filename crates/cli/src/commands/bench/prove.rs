//! `proofmill bench prove`: proves devnet batches of one shape with one backend, once by
//! calling the backend library directly and once through a coordinator and a prover talking
//! gRPC on loopback (store, scheduler, streaming, verification on arrival), on the same
//! inputs, and reports medians:
//! `prove_s=<direct> verify_ms=<direct> proof_bytes=<int> overhead_ratio=<coordinator / direct>`.

use super::median;
use crate::args::BenchProveArgs;
use crate::backends::{BackendContext, devnet_shape};
use crate::commands::coordinator;
use anyhow::{Context as _, bail};
use proofmill_backend::{Backend, ProveRequest};
use proofmill_coordinator::{CoordinatorConfig, NewBatch};
use proofmill_devnet::{Devnet, DevnetConfig, SealedBatch};
use proofmill_prover::{Prover, ProverConfig, ProverStatsHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VERSION: &str = "bench";

pub async fn prove(a: BenchProveArgs) -> anyhow::Result<()> {
    let spec = a.proof_type.clone();
    let dir = tempfile::tempdir()?;
    let key_dir = std::env::current_dir()?.join(crate::args::DEFAULT_DATA_DIR);
    let built = a.backends.build(
        std::slice::from_ref(&spec),
        &BackendContext {
            devnet_shape: devnet_shape(a.batch_size, a.tree_depth),
            data_dir: &key_dir,
        },
    )?;
    built.warm_up().await?;
    let backend = built.all.get(&spec.1)?;

    // One unmeasured warm-up batch, then `repeat` measured ones; every batch is full.
    let batches = seal_batches(&a, a.repeat as usize + 1).await?;
    eprintln!(
        "bench prove: {} ({}), batches of {} transfers, depth {}, {} runs each way",
        spec.0, spec.1, a.batch_size, a.tree_depth, a.repeat
    );
    let (_, _, proof_bytes) = prove_direct(&backend, &batches[0]).await?;

    let config = CoordinatorConfig {
        proof_types: vec![spec.clone()],
        backends: built.all.clone(),
        ..CoordinatorConfig::default()
    };
    let db = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let blobs = format!("file://{}/blobs", dir.path().display());
    let (coord, _lease) = coordinator::open(&db, &blobs, config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = coord.spawn_serve(listener);
    let prover = Prover::new(ProverConfig {
        coordinators: vec![url],
        name: "bench-prover".into(),
        capacity: 1,
        version: VERSION.into(),
        backends: built.for_prover(std::slice::from_ref(&spec))?,
        ..ProverConfig::default()
    });
    let stats = prover.stats();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let prover_task = tokio::spawn(prover.run(async move {
        let _ = stop_rx.await;
    }));
    wait_for_prover(&coord).await?;

    let (mut direct, mut verify, mut through) = (Vec::new(), Vec::new(), Vec::new());
    for b in &batches[1..] {
        let (prove_s, verify_ms, _) = prove_direct(&backend, b).await?;
        let via_s = prove_via(&coord, &stats, b).await?;
        eprintln!(
            "  batch {}: direct {prove_s:.3} s (verify {verify_ms:.2} ms), through the coordinator {via_s:.3} s",
            b.number
        );
        direct.push(prove_s);
        verify.push(verify_ms);
        through.push(via_s);
    }
    let _ = stop_tx.send(());
    coord.drain("bench finished").await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), prover_task).await;
    let _ = server.stop().await;

    let prove_s = median(&mut direct);
    let ratio = median(&mut through) / prove_s;
    println!(
        "prove_s={prove_s:.3} verify_ms={:.3} proof_bytes={proof_bytes} overhead_ratio={ratio:.3}",
        median(&mut verify)
    );
    Ok(())
}

/// `n` consecutive full devnet batches of the bench's shape.
async fn seal_batches(a: &BenchProveArgs, n: usize) -> anyhow::Result<Vec<SealedBatch>> {
    let cfg = DevnetConfig {
        depth: a.tree_depth,
        batch_size: a.batch_size,
        accounts: (1u64 << a.tree_depth).min(64) as u32,
        ..DevnetConfig::default()
    };
    tokio::task::spawn_blocking(move || {
        let mut devnet = Devnet::new(cfg)?;
        Ok((0..n).map(|_| devnet.produce_batch()).collect())
    })
    .await?
}

/// Seconds to prove, milliseconds to verify, proof size.
async fn prove_direct(
    backend: &Arc<dyn Backend>,
    b: &SealedBatch,
) -> anyhow::Result<(f64, f64, usize)> {
    let backend = backend.clone();
    let (input, number, public) = (b.input.clone(), b.number, b.transition.to_public_values());
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let proof = backend
            .prove(&ProveRequest {
                batch: number,
                input: &input,
                expected: &public,
            })
            .with_context(|| format!("proving batch {number}"))?;
        let prove_s = started.elapsed().as_secs_f64();
        let started = Instant::now();
        backend
            .verify(&public, &proof)
            .with_context(|| format!("verifying batch {number}"))?;
        let verify_ms = started.elapsed().as_secs_f64() * 1e3;
        Ok((prove_s, verify_ms, proof.len()))
    })
    .await?
}

/// Seconds from submitting `b` to the coordinator until the prover holds the acknowledgement
/// of its proof (streamed back, verified on arrival and stored). The prover's in-memory
/// counter is watched, so the measurement adds no I/O of its own.
async fn prove_via(
    coord: &proofmill_coordinator::Coordinator,
    stats: &ProverStatsHandle,
    b: &SealedBatch,
) -> anyhow::Result<f64> {
    let acked = stats.snapshot().results_acked;
    let started = Instant::now();
    coord
        .submit_batch(NewBatch {
            chain: proofmill_types::DEFAULT_CHAIN,
            number: b.number,
            version: VERSION.into(),
            input: b.input.clone().into(),
            public_values: b.transition.to_public_values(),
            proof_types: vec![],
        })
        .await?;
    loop {
        let s = stats.snapshot();
        if s.results_acked > acked {
            return Ok(started.elapsed().as_secs_f64());
        }
        if s.tasks_failed > 0 || s.results_rejected > 0 {
            bail!("batch {} failed through the coordinator: {s:?}", b.number);
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!(
                "batch {} not proven through the coordinator in 600 s",
                b.number
            );
        }
        // Only an atomic load per wake-up: cheap enough at a millisecond.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

async fn wait_for_prover(coord: &proofmill_coordinator::Coordinator) -> anyhow::Result<()> {
    let started = Instant::now();
    while !coord.status().await?.provers.iter().any(|p| p.connected) {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the bench prover did not connect within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}
