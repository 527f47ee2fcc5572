//! `proofmill bench restart`: how long a coordinator with a long devnet chain takes to come
//! back after `kill -9`. Ends with `serving_ms=<int> sealing_ms=<int> restart_ms=<int>`: from
//! the kill to the restarted process answering HealthCheck, and to it sealing its first new
//! batch (`restart_ms`, the whole restart).
//!
//! The store is made directly (not timed): batches `1..=N-16` are empty devnet batches (valid:
//! roots unchanged) with their jobs proven, as old batches are; the last 16 are real traffic
//! with queued jobs; the devnet snapshot is at `N-16`. A first coordinator rebuilds from it,
//! seals `--replay-batches` more without snapshots (at least one) and is killed; the second
//! one is measured, so it replays about that many batches.

use crate::args::BenchRestartArgs;
use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use proofmill_devnet::{Devnet, DevnetConfig, SealedBatch};
use proofmill_devnet_node::DevnetSnapshots;
use proofmill_proto::v1::HealthCheckRequest;
use proofmill_proto::v1::admin_service_client::AdminServiceClient;
use proofmill_store::{Blobs, Change, Store, open_store};
use proofmill_types::{Batch, DEFAULT_CHAIN, Digest, Job, JobKey, JobState, ProofType};
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Real batches at the end of the chain (the rest are empty ones).
const REAL_TAIL: u64 = 16;
const VERSION: &str = "devnet-v1";
/// Every wait of the bench gives up after this.
const TIMEOUT: Duration = Duration::from_secs(900);

/// The devnet of `proofmill coordinator --devnet` with its default settings, which the
/// children are given explicitly.
fn devnet_config() -> DevnetConfig {
    DevnetConfig {
        seed: 1,
        depth: 16,
        accounts: 64,
        batch_size: 16,
        ..DevnetConfig::default()
    }
}

pub async fn restart(a: BenchRestartArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db =
        a.db.clone()
            .unwrap_or_else(|| format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()));
    let blobs_url = format!("file://{}/blobs", dir.path().display());
    let store = open_store(&db).await.context("opening the store")?;
    if store.last_sealed_batch(DEFAULT_CHAIN).await?.is_some() {
        bail!("the bench needs an empty database: {db} already holds batches");
    }
    let blobs = Blobs::from_url(&blobs_url)?;
    let started = Instant::now();
    eprintln!("bench restart: writing {} batches to {db} ...", a.batches);
    prepare(store.clone(), blobs, a.batches).await?;
    eprintln!(
        "bench restart: store ready in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    drop(store);

    let args = |listen: &str, snapshot_every: u64| -> Vec<String> {
        let cfg = devnet_config();
        [
            "coordinator",
            "--listen",
            listen,
            "--db",
            &db,
            "--blobs",
            &blobs_url,
            "--devnet",
            "--l1",
            "none",
            "--proof-types",
            "exec",
            "--batch-interval",
            "20",
            "--version-tag",
            VERSION,
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([
            format!("--seed={}", cfg.seed),
            format!("--tree-depth={}", cfg.depth),
            format!("--accounts={}", cfg.accounts),
            format!("--batch-size={}", cfg.batch_size),
            format!("--snapshot-every={snapshot_every}"),
        ])
        .collect()
    };
    let first_log = dir.path().join("first.log");
    let mut first = spawn(&args("127.0.0.1:0", 0), &first_log)?;
    let addr = wait_log(&first_log, "coordinator listening", |l| {
        l["fields"]["addr"].as_str().map(str::to_string)
    })
    .await?;
    let target = a.batches + a.replay_batches.max(1);
    eprintln!("bench restart: first coordinator on {addr}, sealing up to batch {target} ...");
    wait_log(&first_log, "devnet sealed batch", |l| {
        (l["fields"]["batch"].as_u64()? >= target).then_some(())
    })
    .await?;

    let killed = Instant::now();
    first
        .kill()
        .await
        .context("kill -9 of the first coordinator")?;
    let second_log = dir.path().join("second.log");
    let mut second = spawn(
        &args(&addr, proofmill_devnet_node::DEFAULT_SNAPSHOT_EVERY),
        &second_log,
    )?;
    let url = format!("http://{addr}");
    while !healthy(&url).await {
        if killed.elapsed() > TIMEOUT {
            bail!("the restarted coordinator did not answer HealthCheck");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let serving_ms = killed.elapsed().as_millis();
    wait_log(&second_log, "devnet sealed batch", |_| Some(())).await?;
    let sealing_ms = killed.elapsed().as_millis();
    let replayed = wait_log(&second_log, "devnet state rebuilt", |l| {
        l["fields"]["replayed"].as_u64()
    })
    .await?;
    second
        .kill()
        .await
        .context("stopping the second coordinator")?;
    eprintln!(
        "bench restart: the restarted coordinator replayed {replayed} batches after its snapshot"
    );
    println!(
        "batches={} replayed={replayed} serving_ms={serving_ms} sealing_ms={sealing_ms} restart_ms={sealing_ms}",
        a.batches
    );
    Ok(())
}

/// Batches `1..=n` as described in the module docs, and the snapshot.
async fn prepare(store: Arc<dyn Store>, blobs: Blobs, n: u64) -> anyhow::Result<()> {
    let exec = ProofType::new("exec")?;
    let empty = n.saturating_sub(REAL_TAIL);
    let (devnet, sealed) = tokio::task::spawn_blocking(move || {
        let mut d = Devnet::new(devnet_config())?;
        let sealed: Vec<SealedBatch> = (0..empty).map(|_| d.seal_empty()).collect();
        anyhow::Ok((d, sealed))
    })
    .await??;
    insert(&store, &blobs, sealed, &exec).await?;
    // Old batches are proven: the restart loads only open jobs.
    let proven: Vec<Change> = (1..=empty)
        .map(|b| {
            let mut job = Job::new_queued(
                JobKey::new(DEFAULT_CHAIN, b, exec.clone()),
                VERSION.into(),
                0,
            );
            job.state = JobState::Proven;
            Change::Job(job)
        })
        .collect();
    for chunk in proven.chunks(5_000) {
        store.apply(chunk).await?;
    }
    DevnetSnapshots::new(store.clone(), blobs.clone(), DEFAULT_CHAIN)
        .save(&devnet)
        .await?;
    let tail = n - empty;
    let (_, sealed) = tokio::task::spawn_blocking(move || {
        let mut d = devnet;
        let sealed: Vec<SealedBatch> = (0..tail).map(|_| d.produce_batch()).collect();
        (d, sealed)
    })
    .await?;
    insert(&store, &blobs, sealed, &exec).await
}

async fn insert(
    store: &Arc<dyn Store>,
    blobs: &Blobs,
    sealed: Vec<SealedBatch>,
    exec: &ProofType,
) -> anyhow::Result<()> {
    futures::stream::iter(sealed)
        .map(|s| async move {
            let batch = Batch {
                chain: DEFAULT_CHAIN,
                number: s.number,
                version: VERSION.into(),
                input_key: format!("inputs/{:012}.bin", s.number),
                input_digest: Digest::sha256(&s.input),
                input_size: s.input.len() as u64,
                public_values: s.transition.to_public_values(),
                required: vec![exec.clone()],
                created_at: 0,
            };
            blobs.put(&batch.input_key, s.input.into()).await?;
            store.insert_batch(&batch, 0).await?;
            anyhow::Ok(())
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
}

fn spawn(args: &[String], log: &Path) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("locating the proofmill binary")?;
    let log = std::fs::File::create(log)?;
    tokio::process::Command::new(exe)
        .args(args)
        // A config file meant for the bench would hold keys the coordinator does not know.
        .env_remove("PROOFMILL_CONFIG")
        .env("PROOFMILL_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting a coordinator")
}

/// Waits for a JSON log line with `message` for which `pick` gives a value.
async fn wait_log<T>(
    log: &Path,
    message: &str,
    pick: impl Fn(&serde_json::Value) -> Option<T>,
) -> anyhow::Result<T> {
    let until = Instant::now() + TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["fields"]["message"] == message)
            .find_map(|l| pick(&l));
        if let Some(v) = found {
            return Ok(v);
        }
        if Instant::now() > until {
            bail!("no {message:?} line in {} after {TIMEOUT:?}", log.display());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn healthy(url: &str) -> bool {
    let Ok(Ok(mut client)) = tokio::time::timeout(
        Duration::from_secs(1),
        AdminServiceClient::connect(url.to_string()),
    )
    .await
    else {
        return false;
    };
    client
        .health_check(HealthCheckRequest {})
        .await
        .is_ok_and(|r| r.into_inner().serving)
}
