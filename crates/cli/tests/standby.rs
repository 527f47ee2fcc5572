//! Two coordinators on one store, as an operator runs them: one is active, the other stands
//! by (refuses provers and writes, names the active one) and takes over when the active one
//! is killed -9 or hangs (SIGSTOP); a hung one that comes back finds itself deposed and
//! stands by. A prover given both URLs follows the active one under one identity. SQLite
//! (two processes on one file) and Postgres both.

mod common;

use common::admin::{status, wait_status};
use common::procs::{Proc, listening_addr, tail};
use proofmill_proto::v1::{
    ProversListRequest, SystemStatusResponse, admin_service_client::AdminServiceClient,
};
use proofmill_store::open_store;
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::{JobKey, JobState, ProofType};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Short, so the test sees takeovers quickly; a standby takes over within about this.
const LEASE_TTL_MS: &str = "1500";
/// A takeover's bound: the lease's ttl, the standby's poll, the new active's start.
const TAKEOVER: Duration = Duration::from_secs(20);

fn proven(s: &SystemStatusResponse) -> u64 {
    s.last_proven_batch.unwrap_or(0)
}

/// Ids of the provers connected to the coordinator at `url`.
async fn prover_ids(url: &str) -> Vec<String> {
    let mut client = AdminServiceClient::connect(url.to_string()).await.unwrap();
    let list = client
        .provers_list(ProversListRequest {})
        .await
        .unwrap()
        .into_inner();
    list.provers
        .into_iter()
        .filter(|p| p.connected)
        .map(|p| p.id)
        .collect()
}

/// How many times the prover proved each task, from its JSON log.
fn proofs_per_task(prover: &Proc) -> BTreeMap<String, u32> {
    let mut seen = BTreeMap::new();
    for line in prover.log().lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if v["fields"]["message"] == "task proven" {
            let task = v["fields"]["task"].as_str().unwrap_or("").to_string();
            *seen.entry(task).or_insert(0) += 1;
        }
    }
    seen
}

struct Site {
    dir: tempfile::TempDir,
    db: String,
}

impl Site {
    /// Prover `p1` (one slot, JSON logs) given the comma list `coordinators`.
    fn prover(&self, coordinators: &str) -> Proc {
        let args: Vec<String> = [
            "prover",
            "--coordinators",
            coordinators,
            "--name",
            "p1",
            "--capacity",
            "1",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Proc::spawn(
            "prover",
            &args,
            self.dir.path(),
            self.dir.path().join("prover.log"),
            &json_logs(),
        )
    }

    fn coordinator(&self, name: &'static str, port: u16, log: &str) -> Proc {
        let args: Vec<String> = [
            "coordinator",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--db",
            &self.db,
            "--blobs",
            &format!("file://{}/blobs", self.dir.path().display()),
            "--devnet",
            "--batch-interval",
            "200",
            "--l1",
            "none",
            "--lease-ttl",
            LEASE_TTL_MS,
            "--reconnect-grace",
            "500",
            // A prover gives up on a silent (hung) coordinator after 4 heartbeats.
            "--heartbeat-interval",
            "1000",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Proc::spawn(
            name,
            &args,
            self.dir.path(),
            self.dir.path().join(log),
            &json_logs(),
        )
    }
}

fn json_logs() -> [(&'static str, &'static str); 2] {
    [("RUST_LOG", "info"), ("PROOFMILL_LOG_FORMAT", "json")]
}

fn port_of(proc: &mut Proc) -> u16 {
    let addr = listening_addr(proc, Duration::from_secs(60));
    addr.parse::<std::net::SocketAddr>().unwrap().port()
}

/// `hang`: also SIGSTOP the active one. Not on SQLite: a process stopped inside a write
/// transaction keeps the file's write lock, which blocks every other writer of the file, a
/// standby's takeover included (a kill -9 releases it).
async fn active_and_standby(db_url: impl FnOnce(&std::path::Path) -> String, hang: bool) {
    let dir = tempfile::tempdir().unwrap();
    let site = Site {
        db: db_url(dir.path()),
        dir,
    };
    let mut a = site.coordinator("coordinator a", 0, "a.log");
    let port_a = port_of(&mut a);
    let url_a = format!("http://127.0.0.1:{port_a}");
    wait_status(&url_a, "a active", TAKEOVER, |s| {
        !s.standby && s.lease_epoch > 0
    })
    .await;
    let mut b = site.coordinator("coordinator b", 0, "b.log");
    let port_b = port_of(&mut b);
    let url_b = format!("http://127.0.0.1:{port_b}");

    // b stands by, naming a; its status comes from the store.
    let sb = wait_status(&url_b, "b standing by", TAKEOVER, |s| s.standby).await;
    assert_eq!(sb.active_url, url_a, "{sb:?}");
    let sa = status(&url_a).await.unwrap();
    assert!(!sa.standby && sa.active_url == url_a, "{sa:?}");
    let epoch_a = sa.lease_epoch;
    // As an operator sees it.
    let shown = common::proofmill()
        .args(["status", "--coordinator", &url_b])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.status.success(), "{shown:?}");
    assert!(
        text.contains(&format!(
            "STANDBY: the active coordinator is {url_a} (lease epoch {epoch_a})"
        )),
        "{text}"
    );

    let mut prover = site.prover(&format!("{url_a},{url_b}"));

    // While a is active, b hands it no work: every task is proven once.
    wait_status(&url_a, "a proving", Duration::from_secs(60), |s| {
        proven(s) >= 6
    })
    .await;
    let ids = prover_ids(&url_a).await;
    assert_eq!(ids.len(), 1, "one registration, at the active one: {ids:?}");
    let prover_id = ids[0].clone();
    let twice: Vec<_> = proofs_per_task(&prover)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    assert!(twice.is_empty(), "tasks proven twice: {twice:?}");
    // Standby refuses admin writes and prover streams, naming a.
    let mut admin_b = AdminServiceClient::connect(url_b.clone()).await.unwrap();
    let refused = admin_b
        .provers_list(ProversListRequest {})
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable);
    assert!(refused.message().contains(&url_a), "{refused:?}");
    assert_eq!(
        refused.metadata().get("proofmill-active-url").unwrap(),
        url_a.as_str()
    );

    // kill -9 of the active one: b takes over, the prover follows as the same prover.
    let before = proven(&status(&url_a).await.unwrap());
    a.kill9();
    let killed = Instant::now();
    let sb = wait_status(&url_b, "b taking over", TAKEOVER, |s| !s.standby).await;
    let took = killed.elapsed();
    assert!(sb.lease_epoch > epoch_a, "{sb:?}");
    assert_eq!(sb.active_url, url_b);
    wait_status(&url_b, "b proving", Duration::from_secs(60), |s| {
        proven(s) >= before + 4
    })
    .await;
    assert_eq!(
        prover_ids(&url_b).await,
        std::slice::from_ref(&prover_id),
        "same identity"
    );
    eprintln!("takeover after kill -9: {took:?}");

    // a, restarted on its port, stands by: the lease is b's now.
    let mut a = site.coordinator("coordinator a", port_a, "a2.log");
    a.check_alive();
    let sa = wait_status(&url_a, "a standing by", TAKEOVER, |s| s.standby).await;
    assert_eq!(sa.active_url, url_b, "{sa:?}");

    if !hang {
        let last = proven(&status(&url_b).await.unwrap());
        check_store(&site.db, last).await;
        return;
    }
    // b hangs: a takes over, and the prover goes back to a.
    let before = proven(&status(&url_b).await.unwrap());
    b.signal("STOP");
    let sa = wait_status(&url_a, "a taking over from a hung b", TAKEOVER, |s| {
        !s.standby
    })
    .await;
    let epoch_hang = sa.lease_epoch;
    wait_status(&url_a, "a proving again", Duration::from_secs(60), |s| {
        proven(s) >= before + 4
    })
    .await;
    // b comes back: its lease is gone, it writes nothing and stands by.
    b.signal("CONT");
    let sb = wait_status(&url_b, "b deposed, standing by", TAKEOVER, |s| s.standby).await;
    assert_eq!(
        (sb.active_url.as_str(), sb.lease_epoch),
        (url_a.as_str(), epoch_hang)
    );
    assert!(
        b.log().contains("stepping down") || b.log().contains("fenced"),
        "b did not say it stepped down:\n{}",
        tail(&b.log())
    );
    let last = proven(
        &wait_status(
            &url_a,
            "a proving after b came back",
            Duration::from_secs(60),
            |s| proven(s) >= before + 8,
        )
        .await,
    );
    prover.check_alive();
    b.check_alive();
    a.check_alive();
    assert_eq!(prover_ids(&url_a).await, [prover_id], "same identity again");

    check_store(&site.db, last).await;
    let twice: Vec<_> = proofs_per_task(&prover)
        .into_iter()
        .filter(|(_, n)| *n > 1)
        .collect();
    eprintln!(
        "batches proven: {last}; tasks proven twice across two takeovers: {}",
        twice.len()
    );
}

/// Every batch up to `last` is sealed once (an unbroken chain of roots) and proven, with a
/// proof the store holds.
async fn check_store(db: &str, last: u64) {
    let store = open_store(db).await.unwrap();
    let exec = ProofType::new("exec").unwrap();
    let mut prev_root = None;
    for n in 1..=last {
        let batch = store.batch(DEFAULT_CHAIN, n).await.unwrap().unwrap();
        if let Some(prev) = prev_root {
            assert_eq!(
                common::transition(&batch).old_state_root,
                prev,
                "chain broken at {n}"
            );
        }
        prev_root = Some(common::transition(&batch).new_state_root);
        let key = JobKey::new(DEFAULT_CHAIN, n, exec.clone());
        let job = store.job(&key).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Proven, "batch {n}");
        assert!(store.proof(&key).await.unwrap().is_some(), "proof of {n}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_and_standby_on_sqlite() {
    active_and_standby(
        |dir| format!("sqlite://{}/c.db?mode=rwc", dir.display()),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_and_standby_on_postgres() {
    active_and_standby(
        |_| proofmill_testkit::shared_database("active_and_standby").expect("test postgres"),
        true,
    )
    .await;
}

/// A coordinator deposed while it runs and serves a prover (its lease taken, as a restart at
/// its address takes it) closes the prover's stream, and the prover proves again once this
/// coordinator is active again on the same listener. Before this was fixed, the stream
/// outlived the turn: the old core answered its heartbeats but never acknowledged a proof,
/// and nothing was proven again (found by the chaos test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deposed_while_serving_closes_its_prover_streams() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site {
        db: format!("sqlite://{}/c.db?mode=rwc", dir.path().display()),
        dir,
    };
    let mut a = site.coordinator("coordinator a", 0, "a.log");
    let url_a = format!("http://127.0.0.1:{}", port_of(&mut a));
    let first = wait_status(&url_a, "a active", TAKEOVER, |s| {
        !s.standby && s.lease_epoch > 0
    })
    .await;
    // Given only a's URL: it has nowhere else to go.
    let mut prover = site.prover(&url_a);
    let before = proven(
        &wait_status(&url_a, "a proving", Duration::from_secs(60), |s| {
            proven(s) >= 3
        })
        .await,
    );

    // The lease is taken from under a running a, at a's own address; not renewed, it
    // expires after 3 s and a takes it again.
    let store = open_store(&site.db).await.unwrap();
    let claim = proofmill_store::LeaseClaim {
        holder: "test#taker".into(),
        url: url_a.clone(),
        ttl_ms: 3000,
        reclaim: true,
    };
    let taken = store.acquire_lease(&claim).await.unwrap().unwrap();
    assert!(
        taken > first.lease_epoch,
        "{taken} after {}",
        first.lease_epoch
    );
    drop(store);
    let again = wait_status(&url_a, "a active again", TAKEOVER, |s| {
        !s.standby && s.lease_epoch > taken
    })
    .await;
    assert!(
        a.log().contains("stepping down"),
        "a did not step down:\n{}",
        tail(&a.log())
    );
    // The stream was closed, saying why, and the prover came back.
    wait_status(
        &url_a,
        "proving after a's new turn",
        Duration::from_secs(60),
        |s| proven(s) >= before + 4,
    )
    .await;
    assert!(
        prover.log().contains("no longer active"),
        "the prover was not told why its stream closed:\n{}",
        tail(&prover.log())
    );
    prover.check_alive();
    a.check_alive();
    let last = proven(&status(&url_a).await.unwrap());
    eprintln!(
        "epochs {} -> {taken} (taken) -> {}; proven {before} -> {last}",
        first.lease_epoch, again.lease_epoch
    );
    drop(prover);
    drop(a);
    check_store(&site.db, last).await;
}
