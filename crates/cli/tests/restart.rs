//! Restarting a devnet coordinator with a long chain, as processes: it serves provers and
//! the API before the devnet state is rebuilt, rebuilds from its newest usable snapshot (or
//! genesis when none is), continues the same chain, and seals nothing twice. Also runs
//! `bench restart` at a small N. SQLite and Postgres both.

use proofmill_proto::v1::admin_service_client::AdminServiceClient;
use proofmill_proto::v1::{HealthCheckRequest, SystemStatusResponse};
use proofmill_store::{Blobs, Store, open_store};
use proofmill_types::DEFAULT_CHAIN;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::admin::status;
use common::proofmill;

/// A child process killed -9 and reaped on drop.
struct Proc(Child);

impl Proc {
    fn spawn(args: &[String], log: &Path) -> Proc {
        let log = std::fs::File::create(log).unwrap();
        let child = proofmill()
            .args(args)
            .env("RUST_LOG", "info")
            .env("PROOFMILL_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Proc(child)
    }

    fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }

    /// SIGTERM, then the exit code.
    fn term(&mut self) -> Option<i32> {
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success());
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if let Some(s) = self.0.try_wait().unwrap() {
                return s.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("no exit within 60 s of SIGTERM");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn log_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The fields of the first line of `log` with `message`, if written yet.
fn logged(log: &Path, message: &str) -> Option<serde_json::Value> {
    log_lines(log)
        .into_iter()
        .find(|l| l["fields"]["message"] == message)
        .map(|l| l["fields"].clone())
}

fn wait_logged(log: &Path, message: &str) -> serde_json::Value {
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        if let Some(f) = logged(log, message) {
            return f;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no {message:?} in {}", log.display());
}

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

struct Site {
    dir: tempfile::TempDir,
    db_url: String,
    blobs: String,
    listen: String,
}

impl Site {
    fn new(db: Db, label: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        Site {
            db_url: match db {
                Db::Sqlite => format!("sqlite://{}/c.db?mode=rwc", dir.path().display()),
                Db::Postgres => proofmill_testkit::shared_database(label).expect("test postgres"),
            },
            blobs: format!("file://{}/blobs", dir.path().display()),
            listen: "127.0.0.1:0".into(),
            dir,
        }
    }

    fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// A devnet coordinator; the first one binds port 0 and the others reuse its port.
    fn coordinator(&mut self, snapshot_every: &str, log: &str) -> Proc {
        let args: Vec<String> = [
            "coordinator",
            "--listen",
            &self.listen,
            "--db",
            &self.db_url,
            "--blobs",
            &self.blobs,
            "--devnet",
            "--l1",
            "none",
            "--batch-interval",
            "1",
            "--snapshot-every",
            snapshot_every,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let proc = Proc::spawn(&args, &self.log(log));
        let addr = wait_logged(&self.log(log), "coordinator listening");
        self.listen = addr["addr"].as_str().unwrap().to_string();
        proc
    }

    fn prover(&self, log: &str) -> Proc {
        let args: Vec<String> = [
            "prover",
            "--coordinators",
            &self.url(),
            "--name",
            "p1",
            "--capacity",
            "4",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Proc::spawn(&args, &self.log(log))
    }
}

async fn client(url: &str) -> Option<AdminServiceClient<tonic::transport::Channel>> {
    tokio::time::timeout(
        Duration::from_secs(2),
        AdminServiceClient::connect(url.to_string()),
    )
    .await
    .ok()?
    .ok()
}

/// [`common::admin::wait_status`] with this file's bound.
async fn wait_status(
    url: &str,
    what: &str,
    ok: impl Fn(&SystemStatusResponse) -> bool,
) -> SystemStatusResponse {
    common::admin::wait_status(url, what, Duration::from_secs(180), ok).await
}

/// The devnet snapshots the store lists: (batch, blob key), newest first.
async fn snapshots(store: &Arc<dyn Store>) -> Vec<(u64, String)> {
    let text = store
        .get_meta(proofmill_devnet_node::SNAPSHOTS_META)
        .await
        .unwrap()
        .unwrap_or_else(|| "[]".into());
    serde_json::from_str::<serde_json::Value>(&text)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["batch"].as_u64().unwrap(),
                r["key"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Batches `1..=last` form one chain of state roots (so none was sealed twice or skipped).
async fn assert_one_chain(store: &Arc<dyn Store>, last: u64) {
    let mut prev = None;
    for n in 1..=last {
        let b = store
            .batch(DEFAULT_CHAIN, n)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("batch {n} missing"));
        if let Some(prev) = prev {
            assert_eq!(
                common::transition(&b).old_state_root,
                prev,
                "batch {n} continues the chain"
            );
        }
        prev = Some(common::transition(&b).new_state_root);
    }
}

const SEALED: u64 = 150;

async fn restart_rebuilds_in_the_background(db: Db) {
    let mut site = Site::new(db, "restart");
    let store = open_store(&site.db_url).await.unwrap();
    let blobs = Blobs::from_url(&site.blobs).unwrap();

    // 1. A chain of SEALED+ batches, no provers: every job stays queued.
    let mut c = site.coordinator("64", "c0.log");
    wait_status(&site.url(), "batches sealed", |s| {
        s.last_sealed_batch.unwrap_or(0) >= SEALED
    })
    .await;
    c.kill9();
    let last = store
        .last_sealed_batch(DEFAULT_CHAIN)
        .await
        .unwrap()
        .unwrap();
    let snaps = snapshots(&store).await;
    assert_eq!(snaps.len(), 2, "the newest two kept: {snaps:?}");
    assert!(
        snaps[0].0 % 64 == 0 && snaps[1].0 + 64 == snaps[0].0 && last - snaps[0].0 <= 64,
        "every 64 batches: {snaps:?}, last {last}"
    );

    // 2. Both snapshots unusable (one corrupt, one missing): the restart falls back to
    // genesis, which takes a while; it serves the API and provers meanwhile.
    let newest = blobs.get(&snaps[0].1).await.unwrap();
    let mut bad = newest.to_vec();
    bad[26] ^= 1; // a balance: decodes, but to another state root
    blobs.put(&snaps[0].1, bad.into()).await.unwrap();
    blobs.delete(&snaps[1].1).await.unwrap();
    let log1 = site.log("c1.log");
    // No periodic snapshots in this run: the one after the rebuild is all it writes.
    let mut c = site.coordinator("0", "c1.log");
    let mut health = None;
    let until = Instant::now() + Duration::from_secs(60);
    while health.is_none() && Instant::now() < until {
        if let Some(mut cl) = client(&site.url()).await {
            health = cl.health_check(HealthCheckRequest {}).await.ok();
        }
    }
    assert!(health.unwrap().into_inner().serving);
    assert!(
        logged(&log1, "devnet state rebuilt").is_none(),
        "HealthCheck answered before the devnet state was rebuilt"
    );
    let _p = site.prover("p1.log");
    // Jobs of stored batches are dispatched (and proven) before the rebuild is done.
    let mut proven_early = false;
    while logged(&log1, "devnet state rebuilt").is_none() {
        if let Some(s) = status(&site.url()).await
            && s.jobs["exec"].proven > 0
            && logged(&log1, "devnet state rebuilt").is_none()
        {
            proven_early = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        proven_early,
        "a stored batch was proven while the state was being rebuilt"
    );
    let rebuilt = wait_logged(&log1, "devnet state rebuilt");
    assert_eq!(
        (rebuilt["snapshot"].as_u64(), rebuilt["replayed"].as_u64()),
        (Some(0), Some(last)),
        "{rebuilt}"
    );
    let warned: Vec<_> = log_lines(&log1)
        .into_iter()
        .filter(|l| l["level"] == "WARN")
        .map(|l| l["fields"]["message"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        warned
            .iter()
            .filter(|m| *m == "devnet snapshot unusable; trying an older one")
            .count(),
        2,
        "{warned:?}"
    );
    assert!(
        warned
            .iter()
            .any(|m| m.contains("rebuilding the devnet state from genesis"))
    );
    wait_status(&site.url(), "sealing again", |s| {
        s.last_sealed_batch.unwrap_or(0) > last + 3
    })
    .await;
    c.kill9();
    // The rebuild saved a snapshot of where it got to.
    assert_eq!(snapshots(&store).await[0].0, last);

    // 3. A crash between a snapshot's blob and its pointer leaves an unlisted blob: ignored.
    let last = store
        .last_sealed_batch(DEFAULT_CHAIN)
        .await
        .unwrap()
        .unwrap();
    let listed = snapshots(&store).await[0].0;
    assert!(listed < last);
    blobs
        .put(
            &format!("devnet/snapshot-{last:012}.bin"),
            b"half-written".to_vec().into(),
        )
        .await
        .unwrap();
    let log2 = site.log("c2.log");
    let mut c = site.coordinator("64", "c2.log");
    let rebuilt = wait_logged(&log2, "devnet state rebuilt");
    assert_eq!(
        (rebuilt["snapshot"].as_u64(), rebuilt["replayed"].as_u64()),
        (Some(listed), Some(last - listed)),
        "rebuilt from the listed snapshot, replaying only what came after it: {rebuilt}"
    );
    let s = wait_status(&site.url(), "sealing again", |s| {
        s.last_sealed_batch.unwrap_or(0) > last + 3
    })
    .await;
    // A clean stop snapshots the last sealed batch.
    assert_eq!(c.term(), Some(0));
    let last = store
        .last_sealed_batch(DEFAULT_CHAIN)
        .await
        .unwrap()
        .unwrap();
    assert!(last >= s.last_sealed_batch.unwrap());
    assert_eq!(snapshots(&store).await[0].0, last, "snapshot at clean stop");

    // 4. The next restart replays nothing, and every batch so far is one chain, proven by
    // a prover that re-executes each against its roots.
    let log3 = site.log("c3.log");
    let _c = site.coordinator("64", "c3.log");
    let rebuilt = wait_logged(&log3, "devnet state rebuilt");
    assert_eq!(rebuilt["replayed"].as_u64(), Some(0), "{rebuilt}");
    let s = wait_status(&site.url(), "everything proven", |s| {
        s.last_proven_batch.unwrap_or(0) > last
    })
    .await;
    assert_eq!(s.jobs["exec"].failed, 0);
    assert_one_chain(&store, s.last_proven_batch.unwrap()).await;
    for log in ["c0.log", "c1.log", "c2.log", "c3.log"] {
        assert!(
            !log_lines(&site.log(log))
                .iter()
                .any(|l| l["fields"]["message"] == "could not store sealed batch; retrying"),
            "{log}: a batch number was sealed twice with different content"
        );
    }
}

/// A chain the devnet settings given cannot rebuild (other genesis accounts): the
/// coordinator, serving meanwhile, stops with an error that says why, and seals nothing.
async fn failed_rebuild_stops_the_coordinator(db: Db) {
    let mut site = Site::new(db, "badrebuild");
    let store = open_store(&site.db_url).await.unwrap();
    let mut c = site.coordinator("0", "c0.log");
    wait_status(&site.url(), "batches sealed", |s| {
        s.last_sealed_batch.unwrap_or(0) >= 5
    })
    .await;
    c.kill9();
    let last = store.last_sealed_batch(DEFAULT_CHAIN).await.unwrap();
    let log = site.log("c1.log");
    let args: Vec<String> = [
        "coordinator",
        "--listen",
        &site.listen,
        "--db",
        &site.db_url,
        "--blobs",
        &site.blobs,
        "--devnet",
        "--l1",
        "none",
        "--accounts",
        "32",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut c = Proc::spawn(&args, &log);
    let until = Instant::now() + Duration::from_secs(60);
    let code = loop {
        if let Some(s) = c.0.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < until, "the coordinator kept running");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_ne!(code, Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("coordinator listening") && text.contains("devnet replay of batch 1 failed"),
        "{text}"
    );
    assert!(text.contains("rebuilding the devnet"), "{text}");
    assert_eq!(store.last_sealed_batch(DEFAULT_CHAIN).await.unwrap(), last);
}

/// `bench restart` at a small N, in this (debug) build: the line it ends with.
#[test]
fn bench_restart_prints_restart_ms() {
    let out = proofmill()
        .args([
            "bench",
            "restart",
            "--batches",
            "40",
            "--replay-batches",
            "3",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().last().unwrap();
    let value = |key: &str| -> u64 {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .unwrap_or_else(|| panic!("no {key} in {line:?}"))
            .parse()
            .unwrap()
    };
    assert!(line.ends_with(&format!("restart_ms={}", value("restart_ms"))));
    assert_eq!(value("batches"), 40);
    assert!(value("replayed") >= 3, "{line}");
    assert!(value("serving_ms") <= value("sealing_ms"), "{line}");
    assert_eq!(value("restart_ms"), value("sealing_ms"));
}

macro_rules! on_both_stores {
    ($($name:ident),*) => {
        $(mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(super::Db::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(super::Db::Postgres).await }
        })*
    };
}

on_both_stores!(
    restart_rebuilds_in_the_background,
    failed_rebuild_stops_the_coordinator
);
