//! The system as separate processes, the way an operator runs it: a coordinator killed -9
//! mid-run and restarted, and a prover frozen mid-task. SQLite and Postgres both.

use proofmill_store::open_store;
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::{JobKey, JobState, ProofType};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

mod common;
use common::admin::wait_status;
use common::proofmill;
use std::time::{Duration, Instant};

/// A child process killed (SIGKILL) and reaped on drop, so no test leaves one behind.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, args: &[String], log: &std::path::Path) -> Proc {
        let log = std::fs::File::create(log).unwrap();
        // JSON logs, so tests can read what a process did (its address, its acks).
        let child = proofmill()
            .args(args)
            .env("RUST_LOG", "info")
            .env("PROOFMILL_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Proc { child, name }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig} {}", self.name);
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .status();
        self.kill9();
    }
}

/// The JSON log lines of a process written so far.
fn log_lines(path: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn message(line: &serde_json::Value) -> &str {
    line["fields"]["message"].as_str().unwrap_or("")
}

/// The address a coordinator started with `--listen 127.0.0.1:0` bound, from its log.
fn bound_port(log: &std::path::Path) -> u16 {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let found = log_lines(log).iter().find_map(|l| {
            (message(l) == "coordinator listening")
                .then(|| l["fields"]["addr"].as_str()?.parse::<SocketAddr>().ok())
                .flatten()
        });
        if let Some(addr) = found {
            return addr.port();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no 'coordinator listening' line in {}", log.display());
}

#[derive(Clone, Copy, Debug)]
enum Db {
    Sqlite,
    Postgres,
}

fn db_url(db: Db, dir: &std::path::Path, label: &str) -> String {
    match db {
        Db::Sqlite => format!("sqlite://{}/c.db?mode=rwc", dir.display()),
        Db::Postgres => proofmill_testkit::shared_database(label).expect("test postgres"),
    }
}

/// One test's world: a temp dir (logs, blobs, SQLite, the embedded L1's log), the
/// database, and the coordinator's port: bound by the first coordinator on port 0 (no race
/// with other tests for a port picked in advance), then kept across restarts.
struct Site {
    dir: tempfile::TempDir,
    port: u16,
    url: String,
    db_url: String,
    blobs: String,
}

impl Site {
    fn new(db: Db, label: &str) -> Site {
        let dir = tempfile::tempdir().unwrap();
        Site {
            url: String::new(),
            db_url: db_url(db, dir.path(), label),
            blobs: format!("file://{}/blobs", dir.path().display()),
            dir,
            port: 0,
        }
    }

    fn log(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
    }

    /// Starts a coordinator logging to `log`; the first one fixes the site's port and URL.
    fn start_coordinator(&mut self, extra: &[&str], log: &str) -> Proc {
        let proc = Proc::spawn("coordinator", &self.coordinator_args(extra), &self.log(log));
        if self.port == 0 {
            self.port = bound_port(&self.log(log));
            self.url = format!("http://127.0.0.1:{}", self.port);
        }
        proc
    }

    fn coordinator_args(&self, extra: &[&str]) -> Vec<String> {
        let listen = format!("127.0.0.1:{}", self.port);
        let l1_state = format!("{}/l1.log", self.dir.path().display());
        let base = [
            "coordinator",
            "--listen",
            &listen,
            "--db",
            &self.db_url,
            "--blobs",
            &self.blobs,
        ];
        // The embedded L1's log in the test's dir.
        let l1 = ["--l1-state", &l1_state];
        base.iter()
            .chain(&l1)
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    }

    fn prover_args(&self, name: &str) -> Vec<String> {
        let url = &self.url;
        [
            "prover",
            "--coordinators",
            url,
            "--name",
            name,
            "--capacity",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }
}

const BATCHES: u64 = 24;

/// The coordinator is killed -9 twice while the devnet seals and provers prove; after each
/// restart it resumes. In the end every batch is sealed once (an unbroken chain of state
/// roots) and proven exactly once, by a lease the store knows.
async fn coordinator_kill9_mid_run(db: Db) {
    let mut site = Site::new(db, "kill9");
    let max_batches = BATCHES.to_string();
    let args = [
        "--devnet",
        "--batch-interval",
        "60",
        "--max-batches",
        &max_batches,
        "--heartbeat-interval",
        "300",
    ];
    let mut coord = site.start_coordinator(&args, "c0.log");
    let _p1 = Proc::spawn("prover", &site.prover_args("p1"), &site.log("p1.log"));
    let _p2 = Proc::spawn("prover", &site.prover_args("p2"), &site.log("p2.log"));

    for (round, at) in [(1, 6u64), (2, 14)] {
        wait_status(
            &site.url,
            "progress before the kill",
            Duration::from_secs(60),
            |s| s.last_proven_batch.unwrap_or(0) >= at,
        )
        .await;
        coord.kill9();
        coord = site.start_coordinator(&args, &format!("c{round}.log"));
    }
    let s = wait_status(
        &site.url,
        "all batches proven",
        Duration::from_secs(120),
        // The job counts are read before last_proven_batch, so one status can show the last
        // proof in one and not yet in the other.
        |s| s.last_proven_batch == Some(BATCHES) && s.jobs["exec"].proven == BATCHES,
    )
    .await;
    assert_eq!(
        s.last_sealed_batch,
        Some(BATCHES),
        "nothing sealed twice or beyond --max-batches"
    );
    let exec = &s.jobs["exec"];
    assert_eq!(
        (exec.proven, exec.queued, exec.leased, exec.failed),
        (BATCHES, 0, 0, 0)
    );
    coord.kill9();

    // Exactly once, from the provers' side: each prover logs an accepted proof once per task
    // and token, so across both logs every batch must have exactly one, under the token the
    // store holds. (The last acks may still be on their way when the last proof is durable.)
    let accepted = || {
        let mut by_task = std::collections::BTreeMap::<String, Vec<u64>>::new();
        for log in ["p1.log", "p2.log"] {
            for l in log_lines(&site.log(log)) {
                let f = &l["fields"];
                if message(&l) == "result acknowledged" && f["proof"] == true {
                    let task = f["task"].as_str().unwrap().to_string();
                    by_task
                        .entry(task)
                        .or_default()
                        .push(f["token"].as_u64().unwrap());
                }
            }
        }
        by_task
    };
    let until = Instant::now() + Duration::from_secs(10);
    while accepted().len() < BATCHES as usize && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let accepted = accepted();
    assert_eq!(
        accepted.len(),
        BATCHES as usize,
        "accepted proofs: {accepted:?}"
    );

    let store = open_store(&site.db_url).await.unwrap();
    let exec_type = ProofType::new("exec").unwrap();
    let mut prev_root = None;
    for n in 1..=BATCHES {
        let batch = store
            .batch(DEFAULT_CHAIN, n)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("batch {n} missing"));
        if let Some(prev) = prev_root {
            assert_eq!(
                common::transition(&batch).old_state_root,
                prev,
                "batch {n} continues the chain"
            );
        }
        prev_root = Some(common::transition(&batch).new_state_root);
        let key = JobKey::new(DEFAULT_CHAIN, n, exec_type.clone());
        let job = store.job(&key).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Proven);
        let proof = store
            .proof(&key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("proof of {n} missing"));
        assert_eq!(
            accepted.get(&format!("{n}/exec")),
            Some(&vec![proof.token.0]),
            "batch {n}: one accepted proof, the stored one"
        );
        assert!(proof.prover_name == "p1" || proof.prover_name == "p2");
    }
}

/// A prover frozen (SIGSTOP) mid-task misses its heartbeats and loses the lease; another
/// prover proves the batch; the frozen one, thawed, never overwrites that proof.
async fn frozen_prover_loses_its_lease(db: Db) {
    let mut site = Site::new(db, "frozen");
    // A big batch so that proving (re-execution) takes long enough to freeze the prover in it.
    let _coord = site.start_coordinator(
        &[
            "--devnet",
            "--batch-size",
            "2048",
            "--max-batches",
            "1",
            "--heartbeat-interval",
            "200",
            "--missed-heartbeats",
            "3",
        ],
        "c.log",
    );
    wait_status(&site.url, "batch 1 sealed", Duration::from_secs(60), |s| {
        s.last_sealed_batch == Some(1)
    })
    .await;
    let a = Proc::spawn("prover", &site.prover_args("a"), &site.log("a.log"));
    wait_status(
        &site.url,
        "a proving batch 1",
        Duration::from_secs(30),
        |s| {
            s.provers
                .iter()
                .any(|p| p.name == "a" && p.running_tasks == ["1/exec"])
        },
    )
    .await;
    a.signal("STOP");
    let _b = Proc::spawn("prover", &site.prover_args("b"), &site.log("b.log"));
    let s = wait_status(&site.url, "batch 1 proven", Duration::from_secs(60), |s| {
        s.last_proven_batch == Some(1)
    })
    .await;
    assert!(
        s.provers.iter().all(|p| p.name != "a"),
        "the frozen prover was dropped: {:?}",
        s.provers
    );
    a.signal("CONT");
    // Give the thawed prover time to finish and try to deliver its stale result.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let store = open_store(&site.db_url).await.unwrap();
    let key = JobKey::new(DEFAULT_CHAIN, 1, ProofType::new("exec").unwrap());
    let proof = store.proof(&key).await.unwrap().unwrap();
    assert_eq!(proof.prover_name, "b", "the late result never overwrote");
    let job = store.job(&key).await.unwrap().unwrap();
    assert_eq!(
        (job.state, job.lost_attempts, job.failed_attempts),
        (JobState::Proven, 1, 0)
    );
}

/// `status --json` against a live coordinator, then SIGTERM while a prover is mid-task: the
/// coordinator stops handing out work, lets the prover finish within the grace period,
/// stores its proof, tells it to shut down, and exits cleanly; so does the prover.
async fn sigterm_drains_and_status_reports(db: Db) {
    let mut site = Site::new(db, "drain");
    let args = [
        "--devnet",
        "--batch-size",
        "1024",
        "--max-batches",
        "1",
        "--shutdown-grace",
        "30000",
    ];
    let mut coord = site.start_coordinator(&args, "c.log");
    let mut prover = Proc::spawn("prover", &site.prover_args("a"), &site.log("a.log"));
    wait_status(
        &site.url,
        "a proving batch 1",
        Duration::from_secs(60),
        |s| {
            s.provers
                .iter()
                .any(|p| p.name == "a" && p.running_tasks == ["1/exec"])
        },
    )
    .await;

    let out = proofmill()
        .args(["status", "--json", "--coordinator", &site.url])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["last_sealed_batch"], 1);
    assert!(v["last_proven_batch"].is_null());
    // Settlement on the embedded L1: batch 1 is being proven, so nothing is verified yet.
    assert!(
        v["last_committed_batch"].as_u64().is_some_and(|n| n <= 1),
        "{v}"
    );
    assert_eq!(v["last_verified_batch"], 0);
    assert!(v["last_verify_tx"].is_null());
    assert_eq!(v["jobs"]["exec"]["leased"], 1);
    let p = &v["provers"][0];
    assert_eq!(
        (p["name"].as_str(), p["capacity"].as_u64()),
        (Some("a"), Some(1))
    );
    assert_eq!(p["running_tasks"], serde_json::json!(["1/exec"]));
    assert_eq!(p["proof_types"], serde_json::json!(["exec"]));
    assert_eq!(p["cordoned"], false);

    // An operator takes the prover out of rotation; an unknown id is a clear error.
    let id = p["id"].as_str().unwrap().to_string();
    let cordon = |id: &str| {
        proofmill()
            .args(["cordon", "--coordinator", &site.url, "--prover-id", id])
            .output()
            .unwrap()
    };
    let out = cordon(&id);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("cordoned"));
    let out = cordon("prv-unknown");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("PROVER_UNAVAILABLE"), "{stderr}");
    let out = proofmill()
        .args(["status", "--json", "--coordinator", &site.url])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["provers"][0]["cordoned"], true, "{v}");

    coord.signal("TERM");
    let code = wait_exit(&mut coord.child, Duration::from_secs(60));
    assert_eq!(code, Some(0), "coordinator exits cleanly after draining");
    let store = open_store(&site.db_url).await.unwrap();
    let key = JobKey::new(DEFAULT_CHAIN, 1, ProofType::new("exec").unwrap());
    assert_eq!(
        store.job(&key).await.unwrap().unwrap().state,
        JobState::Proven,
        "the in-flight proof was kept"
    );
    drop(store);

    // The prover waits the shutdown out and serves the coordinator once it is back (a
    // restart or upgrade keeps the fleet); a SIGTERM of its own stops it cleanly.
    assert!(
        prover.child.try_wait().unwrap().is_none(),
        "the prover outlives the coordinator's shutdown"
    );
    let _coord = site.start_coordinator(&args, "c-after.log");
    wait_status(&site.url, "the prover back", Duration::from_secs(30), |s| {
        s.provers.iter().any(|p| p.name == "a" && p.connected)
    })
    .await;
    prover.signal("TERM");
    let code = wait_exit(&mut prover.child, Duration::from_secs(30));
    assert_eq!(code, Some(0), "prover exits cleanly on SIGTERM");
}

/// A prover killed -9 and started again on the same `--state-dir` comes back as the same
/// prover (its id, so its cordon and counters, follow it) and goes on proving.
async fn a_killed_prover_with_a_state_dir_comes_back_as_itself(db: Db) {
    let mut site = Site::new(db, "state-dir");
    let args = [
        "--devnet",
        "--batch-interval",
        "100",
        "--heartbeat-interval",
        "300",
    ];
    let _coord = site.start_coordinator(&args, "c.log");
    let state = site.dir.path().join("p1-state").display().to_string();
    let mut prover_args = site.prover_args("p1");
    prover_args.extend(["--state-dir".to_string(), state]);
    let mut p1 = Proc::spawn("prover", &prover_args, &site.log("p1a.log"));
    let s = wait_status(&site.url, "p1 proving", Duration::from_secs(60), |s| {
        s.last_proven_batch.unwrap_or(0) >= 2
    })
    .await;
    let id = s
        .provers
        .iter()
        .find(|p| p.name == "p1")
        .unwrap()
        .id
        .clone();
    p1.kill9();
    let _p1 = Proc::spawn("prover", &prover_args, &site.log("p1b.log"));
    let before = s.last_proven_batch.unwrap();
    let s = wait_status(
        &site.url,
        "p1 back under its id, proving",
        Duration::from_secs(60),
        |s| {
            s.provers.iter().any(|p| p.id == id && p.connected)
                && s.last_proven_batch.unwrap_or(0) >= before + 2
        },
    )
    .await;
    let names: Vec<_> = s.provers.iter().map(|p| (&p.name, &p.id)).collect();
    assert_eq!(names.len(), 1, "one prover, not a second id: {names:?}");
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<i32> {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("process did not exit within {within:?}");
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
    coordinator_kill9_mid_run,
    frozen_prover_loses_its_lease,
    sigterm_drains_and_status_reports,
    a_killed_prover_with_a_state_dir_comes_back_as_itself
);
