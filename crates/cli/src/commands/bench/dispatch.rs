//! `proofmill bench dispatch`: M simulated provers (in a process of their own) that return
//! zero-work (but valid) proofs at once, through the real gRPC stream, scheduler, verifier
//! and store. Measures job completions per second and dispatch latency inside the
//! coordinator: from a result read off a prover's stream to that prover's next task handed
//! to its stream. The provers' round trip (two loopback hops more) is printed beside it.

use super::percentiles;
use crate::args::BenchDispatchArgs;
use crate::commands::coordinator;
use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use proofmill_coordinator::{CoordinatorConfig, NewBatch};
use proofmill_types::Digest;
use std::process::Stdio;
use std::time::Duration;

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
    let (coord, _lease) = coordinator::open_with(&db, &blobs, config, !a.no_lease).await?;
    if coord.status().await?.last_sealed_batch.is_some() {
        bail!("the bench needs an empty database: {db} already holds batches");
    }
    eprintln!("bench dispatch: preparing {} jobs in {db} ...", a.jobs);
    futures::stream::iter(1..=a.jobs)
        .map(|n| {
            let coord = coord.clone();
            async move {
                // An input the exec backend's intake check takes (it decodes, names batch n,
                // starts from the old root); the simulated provers never execute it.
                let old_root = proofmill_devnet::fr_from_u64(n);
                let public = proofmill_devnet::StateTransition {
                    old_state_root: proofmill_devnet::fr_to_digest(old_root),
                    new_state_root: Digest::sha256(&(n + 1).to_be_bytes()),
                    batch_commitment: Digest::sha256(b"bench"),
                }
                .to_public_values();
                let input = proofmill_devnet::BatchInput {
                    number: n,
                    depth: 1,
                    old_root,
                    transfers: vec![],
                }
                .encode()
                .into();
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

    eprintln!("bench dispatch: {} simulated provers ...", a.provers);
    let sims = run_sim_provers(&url, a.provers, a.jobs, a.rate).await;
    coord.flush().await?;
    let status = coord.status().await?;
    let proven: u64 = status.jobs.values().map(|c| c.proven).sum();
    let _ = server.stop().await;
    let sims = sims?;
    if proven != a.jobs {
        bail!("store shows {proven} proven jobs, expected {}", a.jobs);
    }
    let mut server_side: Vec<f64> = coord
        .dispatch_latencies_us()
        .into_iter()
        .map(|us| us as f64 / 1e3)
        .collect();
    let (p50, p99) = percentiles(&mut server_side);
    eprintln!(
        "round trip seen by the provers (result sent -> next task received): p50 {:.3} ms, p99 {:.3} ms",
        sims.round_trip_p50_ms, sims.round_trip_p99_ms
    );
    eprintln!("dispatches slower than: {}", tail_shares(&server_side));
    println!(
        "completions_per_s={:.1} dispatch_p50_ms={p50:.3} dispatch_p99_ms={p99:.3}",
        a.jobs as f64 / sims.elapsed_s,
    );
    Ok(())
}

/// The share of samples above a few thresholds, e.g. `0.1 ms 12.1% · 1 ms 2.3%`: where the
/// tail starts, which two percentiles do not show.
fn tail_shares(samples_ms: &[f64]) -> String {
    let n = samples_ms.len().max(1) as f64;
    [0.05, 0.1, 0.5, 1.0, 2.0, 5.0]
        .iter()
        .map(|&t| {
            let over = samples_ms.iter().filter(|&&x| x > t).count() as f64;
            format!("{t} ms {:.2}%", 100.0 * over / n)
        })
        .collect::<Vec<_>>()
        .join(" · ")
}

/// What the simulated provers' process reports.
struct SimReport {
    elapsed_s: f64,
    round_trip_p50_ms: f64,
    round_trip_p99_ms: f64,
}

/// Runs `proofmill bench sim-provers` against `url` until `jobs` results are accepted.
async fn run_sim_provers(
    url: &str,
    provers: u32,
    jobs: u64,
    rate: Option<u32>,
) -> anyhow::Result<SimReport> {
    let exe = std::env::current_exe().context("locating the proofmill binary")?;
    let mut command = tokio::process::Command::new(&exe);
    command
        .args(["bench", "sim-provers", "--coordinator", url])
        .args([
            "--provers",
            &provers.to_string(),
            "--jobs",
            &jobs.to_string(),
        ]);
    if let Some(rate) = rate {
        command.args(["--rate", &rate.to_string()]);
    }
    let child = command
        // A config file meant for `bench dispatch` would hold keys the child does not know.
        .env_remove("PROOFMILL_CONFIG")
        // Real provers run on other machines. The load generator shares this one, so it keeps
        // to one runtime thread: more throughput and a shorter tail than with two (BENCHMARKS.md,
        // session 5).
        .env("TOKIO_WORKER_THREADS", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the simulated provers")?;
    let out = tokio::time::timeout(Duration::from_secs(900), child.wait_with_output())
        .await
        .context("the simulated provers did not finish in 900 s")??;
    if !out.status.success() {
        bail!("the simulated provers failed ({})", out.status);
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value = |key: &str| -> anyhow::Result<f64> {
        stdout
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("no {key} in the simulated provers' output: {stdout:?}"))?
            .parse()
            .with_context(|| format!("bad {key} in {stdout:?}"))
    };
    Ok(SimReport {
        elapsed_s: value("elapsed_s")?,
        round_trip_p50_ms: value("round_trip_p50_ms")?,
        round_trip_p99_ms: value("round_trip_p99_ms")?,
    })
}
