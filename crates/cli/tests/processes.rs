//! The system as separate processes, the way an operator runs it: a coordinator killed -9
//! mid-run and restarted, and a prover frozen mid-task. SQLite and Postgres both.

use proofmill_proto::v1::{
    SystemStatusRequest, SystemStatusResponse, admin_service_client::AdminServiceClient,
};
use proofmill_store::open_store;
use proofmill_types::{JobKey, JobState, ProofType};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

mod common;
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
        let child = proofmill()
            .args(args)
            .env("RUST_LOG", "info")
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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
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

async fn status(url: &str) -> Option<SystemStatusResponse> {
    let connect = tokio::time::timeout(
        Duration::from_secs(2),
        AdminServiceClient::connect(url.to_string()),
    );
    let mut client = connect.await.ok()?.ok()?;
    Some(
        client
            .system_status(SystemStatusRequest {})
            .await
            .ok()?
            .into_inner(),
    )
}

async fn wait_status(
    url: &str,
    what: &str,
    within: Duration,
    ok: impl Fn(&SystemStatusResponse) -> bool,
) -> SystemStatusResponse {
    let until = Instant::now() + within;
    let mut last = None;
    while Instant::now() < until {
        if let Some(s) = status(url).await {
            if ok(&s) {
                return s;
            }
            last = Some(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}; last status: {last:?}");
}

/// One test's world: a temp dir (logs, blobs, SQLite, the embedded L1's log), a free port
/// for the coordinator, and the database.
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
        let port = free_port();
        Site {
            url: format!("http://127.0.0.1:{port}"),
            db_url: db_url(db, dir.path(), label),
            blobs: format!("file://{}/blobs", dir.path().display()),
            dir,
            port,
        }
    }

    fn log(&self, name: &str) -> std::path::PathBuf {
        self.dir.path().join(name)
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
    let site = Site::new(db, "kill9");
    let args = site.coordinator_args(&[
        "--devnet",
        "--batch-interval",
        "60",
        "--max-batches",
        &BATCHES.to_string(),
        "--heartbeat-interval",
        "300",
    ]);
    let mut coord = Proc::spawn("coordinator", &args, &site.log("c0.log"));
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
        coord = Proc::spawn("coordinator", &args, &site.log(&format!("c{round}.log")));
    }
    let s = wait_status(
        &site.url,
        "all batches proven",
        Duration::from_secs(120),
        |s| s.last_proven_batch == Some(BATCHES),
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

    let store = open_store(&site.db_url).await.unwrap();
    let exec_type = ProofType::new("exec").unwrap();
    let mut tokens = std::collections::HashSet::new();
    let mut prev_root = None;
    for n in 1..=BATCHES {
        let batch = store
            .batch(n)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("batch {n} missing"));
        if let Some(prev) = prev_root {
            assert_eq!(
                batch.public_values.old_state_root, prev,
                "batch {n} continues the chain"
            );
        }
        prev_root = Some(batch.public_values.new_state_root);
        let key = JobKey::new(n, exec_type.clone());
        let job = store.job(&key).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Proven);
        let proof = store
            .proof(&key)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("proof of {n} missing"));
        assert!(
            tokens.insert(proof.token),
            "token {} used twice",
            proof.token
        );
        assert!(proof.prover_name == "p1" || proof.prover_name == "p2");
    }
}

/// A prover frozen (SIGSTOP) mid-task misses its heartbeats and loses the lease; another
/// prover proves the batch; the frozen one, thawed, never overwrites that proof.
async fn frozen_prover_loses_its_lease(db: Db) {
    let site = Site::new(db, "frozen");
    // A big batch so that proving (re-execution) takes long enough to freeze the prover in it.
    let args = site.coordinator_args(&[
        "--devnet",
        "--batch-size",
        "2048",
        "--max-batches",
        "1",
        "--heartbeat-interval",
        "200",
        "--missed-heartbeats",
        "3",
    ]);
    let _coord = Proc::spawn("coordinator", &args, &site.log("c.log"));
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
    let key = JobKey::new(1, ProofType::new("exec").unwrap());
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
    let site = Site::new(db, "drain");
    let args = site.coordinator_args(&[
        "--devnet",
        "--batch-size",
        "1024",
        "--max-batches",
        "1",
        "--shutdown-grace",
        "30000",
    ]);
    let mut coord = Proc::spawn("coordinator", &args, &site.log("c.log"));
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

    coord.signal("TERM");
    let code = wait_exit(&mut coord.child, Duration::from_secs(60));
    assert_eq!(code, Some(0), "coordinator exits cleanly after draining");
    let code = wait_exit(&mut prover.child, Duration::from_secs(30));
    assert_eq!(code, Some(0), "prover told to shut down exits cleanly");
    let store = open_store(&site.db_url).await.unwrap();
    let key = JobKey::new(1, ProofType::new("exec").unwrap());
    assert_eq!(
        store.job(&key).await.unwrap().unwrap().state,
        JobState::Proven,
        "the in-flight proof was kept"
    );
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
    sigterm_drains_and_status_reports
);
