//! `proofmill bench dispatch`: M simulated provers that return zero-work (but valid) proofs
//! at once, through the real gRPC stream, scheduler, verifier and store. Measures job
//! completions per second and dispatch latency, seen from the prover: from sending a result
//! to receiving its next task (an upper bound of the coordinator's result → next-task time,
//! including two loopback hops).

use crate::args::BenchDispatchArgs;
use crate::commands::coordinator;
use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use proofmill_coordinator::{CoordinatorConfig, NewBatch};
use proofmill_proto::v1::{
    HeartbeatAck, ProverMessage, Register, TaskResult, coordinator_message::Kind as Out,
    prover_message::Kind as In, prover_service_client::ProverServiceClient, task_result::Outcome,
};
use proofmill_types::{Digest, PublicValues};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio_stream::wrappers::ReceiverStream;

pub async fn dispatch(a: BenchDispatchArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db =
        a.db.clone()
            .unwrap_or_else(|| format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()));
    let blobs = format!("file://{}/blobs", dir.path().display());
    let config = CoordinatorConfig {
        record_dispatch_latency: true,
        ..CoordinatorConfig::default()
    };
    let coord = coordinator::open(&db, &blobs, config).await?;
    if coord.status().await?.last_sealed_batch.is_some() {
        bail!("the bench needs an empty database: {db} already holds batches");
    }
    eprintln!("bench dispatch: preparing {} jobs in {db} ...", a.jobs);
    futures::stream::iter(1..=a.jobs)
        .map(|n| {
            let coord = coord.clone();
            async move {
                let public = PublicValues {
                    old_state_root: Digest::sha256(&n.to_be_bytes()),
                    new_state_root: Digest::sha256(&(n + 1).to_be_bytes()),
                    batch_commitment: Digest::sha256(b"bench"),
                };
                let input = n.to_be_bytes().to_vec().into();
                coord
                    .submit_batch(NewBatch {
                        number: n,
                        version: "bench".into(),
                        input,
                        public_values: public,
                        proof_types: vec![],
                    })
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    coord.flush().await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = coord.spawn_serve(listener);

    let done = Arc::new(AtomicU64::new(0));
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    eprintln!("bench dispatch: {} simulated provers ...", a.provers);
    let start = Instant::now();
    let mut provers = Vec::new();
    for i in 0..a.provers {
        provers.push(tokio::spawn(sim_prover(
            url.clone(),
            i,
            a.jobs,
            done.clone(),
            done_tx.clone(),
        )));
    }
    let wait = tokio::time::timeout(Duration::from_secs(600), done_rx.wait_for(|d| *d)).await;
    let elapsed = start.elapsed();
    if wait.is_err() {
        bail!(
            "timed out: {} of {} jobs completed",
            done.load(Ordering::SeqCst),
            a.jobs
        );
    }
    let mut latencies = Vec::new();
    for p in provers {
        latencies.extend(p.await.context("prover task")??);
    }
    coord.flush().await?;
    let status = coord.status().await?;
    let proven: u64 = status.jobs.values().map(|c| c.proven).sum();
    let _ = server.stop().await;
    if proven != a.jobs {
        bail!("store shows {proven} proven jobs, expected {}", a.jobs);
    }
    let mut server_side: Vec<f64> = coord
        .dispatch_latencies_us()
        .into_iter()
        .map(|us| us as f64 / 1e3)
        .collect();
    let (p50, p99) = percentiles(&mut server_side);
    let (rt50, rt99) = percentiles(&mut latencies);
    eprintln!(
        "round trip seen by the provers (result sent -> next task received): p50 {rt50:.3} ms, p99 {rt99:.3} ms"
    );
    println!(
        "completions_per_s={:.1} dispatch_p50_ms={p50:.3} dispatch_p99_ms={p99:.3}",
        a.jobs as f64 / elapsed.as_secs_f64(),
    );
    Ok(())
}

/// A prover with capacity 1 that answers every task at once with the expected public values.
async fn sim_prover(
    url: String,
    index: u32,
    total: u64,
    done: Arc<AtomicU64>,
    done_tx: tokio::sync::watch::Sender<bool>,
) -> anyhow::Result<Vec<f64>> {
    let mut client = ProverServiceClient::connect(url).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let register = Register {
        name: format!("sim-{index}"),
        proof_types: vec!["exec".into()],
        compute_capacity: 1,
        version: "bench".into(),
        token: None,
        blob_access: false,
    };
    tx.send(ProverMessage {
        kind: Some(In::Register(register)),
    })
    .await?;
    let mut inbound = client
        .prover_stream(ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut done_rx = done_tx.subscribe();
    let mut sent_at: Option<Instant> = None;
    let mut latencies = Vec::new();
    loop {
        let msg = tokio::select! {
            m = inbound.message() => m?,
            _ = done_rx.wait_for(|d| *d) => return Ok(latencies),
        };
        let Some(kind) = msg.and_then(|m| m.kind) else {
            return Ok(latencies);
        };
        match kind {
            Out::ExecuteTask(t) => {
                if let Some(at) = sent_at.take() {
                    latencies.push(at.elapsed().as_secs_f64() * 1e3);
                }
                let result = TaskResult {
                    task_id: t.task_id,
                    fencing_token: t.fencing_token,
                    outcome: Some(Outcome::Proof(t.public_values)),
                    prove_ms: 0,
                };
                sent_at = Some(Instant::now());
                tx.send(ProverMessage {
                    kind: Some(In::TaskResult(result)),
                })
                .await?;
            }
            Out::ResultAck(ack) => {
                if !ack.accepted {
                    bail!("result rejected: {}", ack.reason);
                }
                if done.fetch_add(1, Ordering::SeqCst) + 1 == total {
                    let _ = done_tx.send(true);
                }
            }
            Out::Heartbeat(h) => {
                tx.send(ProverMessage {
                    kind: Some(In::HeartbeatAck(HeartbeatAck {
                        seq: h.seq,
                        running: vec![],
                    })),
                })
                .await?;
            }
            Out::RegisterResponse(r) if !r.accepted => bail!("registration refused: {}", r.reason),
            _ => {}
        }
    }
}

/// Median and 99th percentile (nearest rank); NaN when there are no samples.
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let rank = ((samples.len() as f64) * p).ceil() as usize;
        samples
            .get(rank.saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99))
}
