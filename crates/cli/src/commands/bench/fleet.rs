//! `proofmill bench fleet`: one coordinator holding N idle simulated provers (in a process
//! of their own, [`super::sim`]) that all connect at once, as a fleet does after a
//! coordinator restart. Measures the coordinator's resident memory per connected prover
//! (`VmRSS` once all registered, less `VmRSS` before the first connected, over N), the time
//! until every prover is registered, then runs jobs through the fleet: are they still
//! flowing with N streams open?

use super::store::BenchDb;
use super::{jobs, lag::LagProbe, process, sim};
use crate::args::BenchFleetArgs;
use crate::commands::coordinator;
use anyhow::{Context as _, bail};
use proofmill_coordinator::{Coordinator, CoordinatorConfig};
use std::time::{Duration, Instant};

/// How long the fleet may take to register, and the jobs to complete.
const CONNECT_LIMIT: Duration = Duration::from_secs(300);
const JOBS_LIMIT: Duration = Duration::from_secs(900);
/// Progress is printed this often while waiting.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

pub async fn fleet(a: BenchFleetArgs) -> anyhow::Result<()> {
    let n = a.provers as usize;
    process::ensure_fd_limit(u64::from(a.provers) + process::FDS_BESIDES_PROVERS)?;
    let db = BenchDb::open(a.target.store, a.target.db.clone())?;
    let defaults = super::jobs::exec_config();
    let config = CoordinatorConfig {
        // Room for the whole fleet; how many may be registering at once stays the default,
        // so the herd meets the coordinator's own admission limit.
        max_prover_streams: defaults.max_prover_streams.max(n),
        ..defaults
    };
    let (coord, _lease) = coordinator::open(&db.url, &db.blobs, config).await?;
    if coord.status().await?.last_sealed_batch.is_some() {
        bail!(
            "the bench needs an empty database: {} already holds batches",
            db.url
        );
    }
    // The coordinator's own listening socket, with its long accept queue.
    let listener = proofmill_coordinator::listen("127.0.0.1:0".parse()?)?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = coord.spawn_serve(listener);
    // Let the server and the store settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = process::status_kib("VmRSS")?;

    eprintln!("bench fleet: {n} simulated provers connecting at once to {url} ...");
    let started = Instant::now();
    let lag = LagProbe::start();
    let mut provers = sim::spawn(&url, a.provers, None, None)?;
    wait_registered(&coord, n, &mut provers).await?;
    let connect_s = started.elapsed().as_secs_f64();
    let registered = coord.provers().await?.len();
    if registered != n {
        bail!("the coordinator knows {registered} provers, expected {n}");
    }
    let rss_after = process::status_kib("VmRSS")?;
    let rss_peak = process::status_kib("VmHWM")?;
    let rss_per_prover = (rss_after as f64 - rss_before as f64) / n as f64;
    eprintln!(
        "bench fleet: all {n} registered in {connect_s:.2} s; coordinator RSS {rss_before} KiB \
         before, {rss_after} KiB after ({rss_per_prover:.1} KiB per prover), peak {rss_peak} KiB"
    );
    report_lag("connecting", &lag);

    eprintln!("bench fleet: running {} jobs through the fleet ...", a.jobs);
    let cpu_before = process::cpu_time()?;
    let jobs_started = Instant::now();
    let submitted = jobs::submit(&coord, a.jobs);
    let all_proven = wait_proven(&coord, a.jobs);
    let (submitted, proven) = tokio::join!(submitted, all_proven);
    submitted?;
    proven?;
    let jobs_s = jobs_started.elapsed().as_secs_f64();
    let cpu = process::cpu_time()? - cpu_before;
    let rss_working = process::status_kib("VmRSS")?;
    eprintln!(
        "bench fleet: {} jobs in {jobs_s:.2} s; coordinator CPU {:.1} µs per job; RSS {rss_working} KiB",
        a.jobs,
        cpu.as_secs_f64() * 1e6 / a.jobs as f64
    );
    report_lag("running jobs", &lag);

    // Closing their standard input ends the simulated provers.
    drop(provers.stdin.take());
    let out = tokio::time::timeout(Duration::from_secs(60), provers.wait_with_output())
        .await
        .context("the simulated provers did not stop in 60 s")??;
    let _ = server.stop().await;
    if !out.status.success() {
        bail!("the simulated provers failed ({})", out.status);
    }
    let report = sim::SimReport::parse(&String::from_utf8_lossy(&out.stdout))?;
    eprintln!(
        "bench fleet: the provers registered {} times, tried again {} times; answered {} \
         heartbeats, 99% of them at most {:.0} ms after the one before (longest {:.0} ms); \
         their runtime ran late by {:.1} ms at p99 (at most {:.1} ms)",
        report.registrations,
        report.retries,
        report.heartbeats,
        report.heartbeat_gap_p99_ms,
        report.heartbeat_gap_max_ms,
        report.lag_p99_ms,
        report.lag_max_ms
    );
    println!(
        "provers={n} rss_per_prover_kib={rss_per_prover:.1} connect_s={connect_s:.3} completions_per_s={:.1}",
        a.jobs as f64 / jobs_s
    );
    Ok(())
}

/// How late the coordinator's runtime ran during a phase (see [`LagProbe`]).
fn report_lag(phase: &str, lag: &LagProbe) {
    let (p50, p99, max) = lag.take();
    eprintln!(
        "bench fleet: while {phase}, the coordinator's runtime ran late by {p50:.1} ms at the \
         median, {p99:.1} ms at p99, {max:.1} ms at most"
    );
}

/// Waits until `n` streams are open and registered, failing if the provers' process ends.
async fn wait_registered(
    coord: &Coordinator,
    n: usize,
    provers: &mut tokio::process::Child,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut progress_at = started + PROGRESS_EVERY;
    loop {
        let held = coord.in_flight();
        let registered = held.streams.saturating_sub(held.unregistered_streams);
        if registered >= n {
            return Ok(());
        }
        if let Some(status) = provers.try_wait()? {
            bail!("the simulated provers exited ({status}) with {registered} of {n} registered");
        }
        let now = Instant::now();
        if now - started > CONNECT_LIMIT {
            bail!("{registered} of {n} provers registered after {CONNECT_LIMIT:?}");
        }
        if now >= progress_at {
            eprintln!(
                "bench fleet: {registered} registered, {} connecting, after {:.1} s",
                held.unregistered_streams,
                (now - started).as_secs_f64()
            );
            progress_at += PROGRESS_EVERY;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until the store shows `jobs` jobs proven.
async fn wait_proven(coord: &Coordinator, jobs: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    loop {
        let proven = jobs::proven(coord).await?;
        if proven >= jobs {
            return Ok(());
        }
        if started.elapsed() > JOBS_LIMIT {
            bail!("{proven} of {jobs} jobs proven after {JOBS_LIMIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
