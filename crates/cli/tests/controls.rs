//! An operator's controls on a running devnet coordinator with the embedded L1, as processes
//! and through the `proofmill` commands: with the proof sender paused, proven rises while
//! verified stays; dispatch paused holds jobs queued; both pauses survive a kill -9; resumed,
//! the provers catch up and the sender settles everything in one transaction. Unknown
//! components are refused with the valid names. Sealing or intake paused holds the devnet's
//! next batch back. SQLite and Postgres both.

use proofmill_store::open_store;
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

mod common;
use common::admin::{status, wait_status};
use common::procs::{Proc, listening_addr};
use common::proofmill;

const BATCHES: u64 = 6;

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

struct Site {
    dir: tempfile::TempDir,
    db_url: String,
    /// `127.0.0.1:0` at first, then the port the first coordinator bound.
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
            listen: "127.0.0.1:0".into(),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn url(&self) -> String {
        format!("http://{}", self.listen)
    }

    /// A devnet coordinator sealing up to `max_batches`, settling on the embedded L1,
    /// logging to `log` (appended).
    fn coordinator(&mut self, log: &str, max_batches: u64) -> Proc {
        let blobs = format!("file://{}", self.path("blobs").display());
        let l1_state = self.path("l1.log").display().to_string();
        let args: Vec<String> = [
            "coordinator",
            "--listen",
            &self.listen,
            "--db",
            &self.db_url,
            "--blobs",
            &blobs,
            "--l1-state",
            &l1_state,
            "--devnet",
            "--batch-interval",
            "100",
            "--max-batches",
            &max_batches.to_string(),
            "--send-interval",
            "200",
            "--heartbeat-interval",
            "300",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut c =
            Proc::spawn_appending("coordinator", &args, self.dir.path(), self.path(log), &[]);
        let addr = listening_addr(&mut c, Duration::from_secs(60));
        self.listen = addr;
        c
    }

    fn prover(&self, name: &str) -> Proc {
        let args: Vec<String> = [
            "prover",
            "--coordinators",
            &self.url(),
            "--name",
            name,
            "--capacity",
            "2",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Proc::spawn(
            name,
            &args,
            self.dir.path(),
            self.path(&format!("{name}.log")),
            &[],
        )
    }

    /// `proofmill <args> --coordinator URL`.
    fn run(&self, args: &[&str]) -> Output {
        proofmill()
            .args(args)
            .args(["--coordinator", &self.url()])
            .current_dir(self.dir.path())
            .output()
            .unwrap()
    }

    /// Like [`Site::run`], asserting success; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn status_json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ok(&["status", "--json"])).unwrap()
    }
}

fn failed(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// (component, reason, since) of each paused component in `status --json`.
fn paused(v: &serde_json::Value) -> Vec<(String, Option<String>, u64)> {
    v["paused"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["component"].as_str().unwrap().to_string(),
                p["reason"].as_str().map(str::to_string),
                p["since_ms"].as_u64().unwrap(),
            )
        })
        .collect()
}

async fn pause_sender_and_dispatch_then_catch_up(db: Db) {
    let mut site = Site::new(db, "controls");
    let mut coord = site.coordinator("coordinator.log", BATCHES);
    let url = site.url();
    wait_status(&url, "serving", Duration::from_secs(60), |_| true).await;

    let out = site.ok(&["pause", "--component", "sender", "--reason", "L1 fees"]);
    assert_eq!(out.trim(), "sender paused");
    let out = site.ok(&["pause", "--component", "dispatch"]);
    assert_eq!(out.trim(), "dispatch paused");
    let out = site.ok(&["pause", "--component", "dispatch", "--reason", "other"]);
    assert!(out.contains("dispatch was paused already"), "{out}");
    // Bad input: a clear error with its code, and nothing changes.
    let err = failed(&site.run(&["pause", "--component", "provers"]));
    assert!(
        err.contains("INVALID_ARGUMENT")
            && err.contains("one of sender, committer, sealing, intake, dispatch"),
        "{err}"
    );
    let err = failed(&site.run(&["resume", "--component", "everything"]));
    assert!(err.contains("INVALID_ARGUMENT"), "{err}");
    let err = failed(&site.run(&["settle-now"]));
    assert!(
        err.contains("FAILED_PRECONDITION") && err.contains("paused"),
        "{err}"
    );
    let before = paused(&site.status_json());
    assert_eq!(
        before
            .iter()
            .map(|(c, r, _)| (c.as_str(), r.as_deref()))
            .collect::<Vec<_>>(),
        [("dispatch", None), ("sender", Some("L1 fees"))]
    );

    // Dispatch paused: batches are sealed (and committed), none is leased.
    let _prover = site.prover("a");
    wait_status(&url, "sealed and a prover", Duration::from_secs(60), |s| {
        s.last_sealed_batch == Some(BATCHES) && s.provers.iter().any(|p| p.connected)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let s = status(&url).await.unwrap();
    assert_eq!(s.jobs["exec"].queued, BATCHES, "held queued: {s:?}");
    assert_eq!(s.last_proven_batch, None);

    // kill -9: both pauses are in the store and hold after the restart.
    coord.kill9();
    let mut coord = site.coordinator("coordinator.log", BATCHES);
    wait_status(&url, "back", Duration::from_secs(60), |s| {
        s.provers.iter().any(|p| p.connected)
    })
    .await;
    assert_eq!(paused(&site.status_json()), before, "kept across kill -9");
    let text = site.ok(&["status"]);
    assert!(
        text.contains("paused (`proofmill resume --component NAME`):")
            && text.contains("  sender since ")
            && text.contains(": L1 fees"),
        "{text}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(status(&url).await.unwrap().jobs["exec"].queued, BATCHES);

    // Dispatch resumed: proven rises to the end, verified stays (the sender is paused; the
    // committer is not).
    assert_eq!(
        site.ok(&["resume", "--component", "dispatch"]).trim(),
        "dispatch resumed"
    );
    wait_status(&url, "all proven", Duration::from_secs(60), |s| {
        s.last_proven_batch == Some(BATCHES) && s.last_committed_batch == Some(BATCHES)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1000)).await; // five send intervals
    let s = status(&url).await.unwrap();
    assert_eq!(
        s.last_verified_batch,
        Some(0),
        "nothing settled while paused"
    );
    assert!(s.last_verify_tx.is_none());

    // Sender resumed: it catches up in one transaction.
    assert_eq!(
        site.ok(&["resume", "--component", "sender"]).trim(),
        "sender resumed"
    );
    let s = wait_status(&url, "all verified", Duration::from_secs(60), |s| {
        s.last_verified_batch == Some(BATCHES)
    })
    .await;
    assert!(s.paused.is_empty());
    let store = open_store(&site.db_url).await.unwrap();
    let wait_record = async {
        loop {
            if let Some(r) = store.last_verify_record().await.unwrap() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let rec = tokio::time::timeout(Duration::from_secs(10), wait_record)
        .await
        .expect("the settlement's record");
    assert_eq!((rec.first_batch, rec.last_batch), (1, BATCHES), "{rec:?}");
    for b in 1..=BATCHES {
        assert_eq!(
            store.verify_record(b).await.unwrap().unwrap().tx_hash,
            rec.tx_hash,
            "batch {b} in the one transaction"
        );
    }
    // Nothing is left to settle or commit.
    let out = site.ok(&["settle-now"]);
    assert!(
        out.contains(&format!("settled 0 batches; last verified batch {BATCHES}")),
        "{out}"
    );
    let err = failed(&site.run(&["commit-now", "--batch", "3"]));
    assert!(
        err.contains("FAILED_PRECONDITION") && err.contains("committed already"),
        "{err}"
    );
    let err = failed(&site.run(&["commit-now", "--batch", "99"]));
    assert!(
        err.contains("JOB_NOT_FOUND") && err.contains("not sealed"),
        "{err}"
    );
    coord.kill9();
}

/// The last sealed batch once sealing has settled after a pause (a batch being sealed as
/// the pause came in is stored), checked to stay there.
async fn sealing_holds(url: &str) -> u64 {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let held = status(url).await.unwrap().last_sealed_batch.unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(800)).await; // eight batch intervals
    assert_eq!(
        status(url).await.unwrap().last_sealed_batch.unwrap_or(0),
        held,
        "a batch was sealed while paused"
    );
    held
}

async fn sealing_and_intake_pauses_hold_the_devnet(db: Db) {
    let mut site = Site::new(db, "controls_sealing");
    let mut coord = site.coordinator("coordinator.log", 1000);
    let url = site.url();
    wait_status(&url, "sealing", Duration::from_secs(60), |s| {
        s.last_sealed_batch.is_some()
    })
    .await;
    for component in ["sealing", "intake"] {
        site.ok(&["pause", "--component", component]);
        let held = sealing_holds(&url).await;
        assert_eq!(
            site.ok(&["resume", "--component", component]).trim(),
            format!("{component} resumed")
        );
        wait_status(&url, "sealing again", Duration::from_secs(30), |s| {
            s.last_sealed_batch.unwrap_or(0) > held
        })
        .await;
    }
    // Both paused: one resumed is not enough.
    site.ok(&["pause", "--component", "sealing"]);
    site.ok(&["pause", "--component", "intake"]);
    sealing_holds(&url).await;
    site.ok(&["resume", "--component", "intake"]);
    let held = sealing_holds(&url).await;
    site.ok(&["resume", "--component", "sealing"]);
    wait_status(&url, "sealing again", Duration::from_secs(30), |s| {
        s.last_sealed_batch.unwrap_or(0) > held
    })
    .await;
    coord.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealing_on_sqlite() {
    sealing_and_intake_pauses_hold_the_devnet(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealing_on_postgres() {
    sealing_and_intake_pauses_hold_the_devnet(Db::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_on_sqlite() {
    pause_sender_and_dispatch_then_catch_up(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controls_on_postgres() {
    pause_sender_and_dispatch_then_catch_up(Db::Postgres).await;
}
