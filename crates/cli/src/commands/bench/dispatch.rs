//! `proofmill bench dispatch`: M simulated provers (in a process of their own) that return
//! zero-work (but valid) proofs at once, through the real gRPC stream, scheduler, verifier
//! and store. Measures job completions per second and dispatch latency inside the
//! coordinator: from a result read off a prover's stream to that prover's next task handed
//! to its stream. The provers' round trip (two loopback hops more) is printed beside it.

use super::sim::{self, SimReport};
use super::store::BenchDb;
use super::{jobs, percentiles, process};
use crate::args::BenchDispatchArgs;
use crate::commands::coordinator;
use anyhow::{Context as _, bail};
use proofmill_coordinator::CoordinatorConfig;
use std::time::Duration;

pub async fn dispatch(a: BenchDispatchArgs) -> anyhow::Result<()> {
    process::ensure_fd_limit(u64::from(a.provers) + process::FDS_BESIDES_PROVERS)?;
    let db = BenchDb::open(a.target.store, a.target.db.clone())?;
    let config = CoordinatorConfig {
        record_dispatch_latency: true,
        ..super::jobs::exec_config()
    };
    let (coord, _lease) = coordinator::open_with(&db.url, &db.blobs, config, !a.no_lease).await?;
    if coord.status().await?.last_sealed_batch.is_some() {
        bail!(
            "the bench needs an empty database: {} already holds batches",
            db.url
        );
    }
    eprintln!(
        "bench dispatch: preparing {} jobs in {} ...",
        a.jobs, db.url
    );
    jobs::submit(&coord, a.jobs).await?;
    coord.flush().await?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = coord.spawn_serve(listener);

    eprintln!("bench dispatch: {} simulated provers ...", a.provers);
    let cpu_before = process::cpu_time()?;
    let sims = run_sim_provers(&url, a.provers, a.jobs, a.rate).await;
    let cpu = process::cpu_time()? - cpu_before;
    coord.flush().await?;
    let proven = jobs::proven(&coord).await?;
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
        "completions_per_s={:.1} dispatch_p50_ms={p50:.3} dispatch_p99_ms={p99:.3} cpu_us_per_job={:.2}",
        a.jobs as f64 / sims.elapsed_s,
        cpu.as_secs_f64() * 1e6 / a.jobs as f64,
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

/// Runs the simulated provers against `url` until `jobs` results are accepted.
async fn run_sim_provers(
    url: &str,
    provers: u32,
    jobs: u64,
    rate: Option<u32>,
) -> anyhow::Result<SimReport> {
    let child = sim::spawn(url, provers, Some(jobs), rate)?;
    let out = tokio::time::timeout(Duration::from_secs(900), child.wait_with_output())
        .await
        .context("the simulated provers did not finish in 900 s")??;
    if !out.status.success() {
        bail!("the simulated provers failed ({})", out.status);
    }
    SimReport::parse(&String::from_utf8_lossy(&out.stdout))
}
