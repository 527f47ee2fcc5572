//! A Postgres outage under a running coordinator (separate processes, a real server stopped
//! with `pg_ctl stop -m immediate` and restarted on the same port): health answers at once
//! with `serving=false` and the endpoint and cause, `status` answers from memory and says
//! so, a warning naming the endpoint is logged within seconds, and after the restart every
//! batch is proven exactly once.

use proofmill_proto::v1::admin_service_client::AdminServiceClient;
use proofmill_proto::v1::{HealthCheckRequest, HealthCheckResponse};
use proofmill_store::open_store;
use proofmill_testkit::TestPostgres;
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::{JobKey, JobState, ProofType};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

mod common;
use common::procs::{Proc, listening_addr};
use common::proofmill;

const BATCHES: u64 = 30;
/// Health must answer within this while the store is down (it used to hang until the
/// pool's 30 s acquire timeout).
const HEALTH_BOUND: Duration = Duration::from_secs(5);
/// `status` must answer within this (it used to fail after the CLI's 15 s timeout).
const STATUS_BOUND: Duration = Duration::from_secs(10);

const JSON_LOGS: &[(&str, &str)] = &[("RUST_LOG", "info"), ("PROOFMILL_LOG_FORMAT", "json")];

fn json_lines(p: &Proc) -> Vec<serde_json::Value> {
    p.log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn health(url: &str) -> (HealthCheckResponse, Duration) {
    let started = Instant::now();
    let call = async {
        let mut client = AdminServiceClient::connect(url.to_string()).await.unwrap();
        client
            .health_check(HealthCheckRequest {})
            .await
            .unwrap()
            .into_inner()
    };
    let response = tokio::time::timeout(Duration::from_secs(60), call)
        .await
        .expect("health answers at all");
    (response, started.elapsed())
}

/// `proofmill status [--json]`: its stdout and how long it took.
fn status(url: &str, json: bool) -> (String, Duration) {
    let started = Instant::now();
    let mut cmd = proofmill();
    cmd.args(["status", "--coordinator", url]);
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "status: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (String::from_utf8(out.stdout).unwrap(), started.elapsed())
}

fn status_json(url: &str) -> serde_json::Value {
    serde_json::from_str(&status(url, true).0).unwrap()
}

async fn wait_for(what: &str, within: Duration, mut ok: impl FnMut() -> bool) {
    let until = Instant::now() + within;
    while !ok() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_visible_and_loses_nothing() {
    let pg = TestPostgres::start_durable().expect("test postgres");
    let endpoint = format!("127.0.0.1:{}", pg.port);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let max = BATCHES.to_string();
    let args: Vec<String> = [
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--db",
        &pg.url,
        "--blobs",
        &format!("file://{d}/blobs"),
        "--l1-state",
        &format!("{d}/l1.log"),
        "--devnet",
        "--batch-interval",
        "150",
        "--max-batches",
        &max,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut coord = Proc::spawn(
        "coordinator",
        &args,
        dir.path(),
        dir.path().join("c.log"),
        JSON_LOGS,
    );
    let url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    let provers: Vec<Proc> = ["p1", "p2"]
        .iter()
        .map(|name| {
            let args: Vec<String> = [
                "prover",
                "--coordinators",
                &url,
                "--name",
                name,
                "--capacity",
                "1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            Proc::spawn(
                "prover",
                &args,
                dir.path(),
                dir.path().join(format!("{name}.log")),
                JSON_LOGS,
            )
        })
        .collect();

    let (h, _) = health(&url).await;
    assert!(h.serving && h.store_error.is_empty(), "{h:?}");
    wait_for("5 batches proven", Duration::from_secs(60), || {
        status_json(&url)["last_proven_batch"].as_u64() >= Some(5)
    })
    .await;
    let before = status_json(&url);
    assert_eq!(before["from_memory"], false, "{before}");

    pg.crash().unwrap();
    let crashed = Instant::now();

    // Health: at once, not serving, naming the server and the cause.
    let (h, took) = health(&url).await;
    println!("health while down: {took:?}: {h:?}");
    assert!(took < HEALTH_BOUND, "health took {took:?}");
    assert!(!h.serving, "{h:?}");
    assert!(h.store_error.contains(&endpoint), "{h:?}");
    assert!(h.store_error.contains("refused"), "the cause: {h:?}");
    assert!(!h.store_error.contains("password"), "{h:?}");

    // Status: from memory, flagged, the figures last read from the store.
    let (out, took) = status(&url, true);
    println!("status --json while down: {took:?}: {out}");
    assert!(took < STATUS_BOUND, "status took {took:?}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["from_memory"], true, "{v}");
    assert!(
        v["store_error"].as_str().unwrap().contains(&endpoint),
        "{v}"
    );
    assert!(
        v["last_proven_batch"].as_u64() >= before["last_proven_batch"].as_u64(),
        "{v}"
    );
    assert!(v["as_of_ms"].as_u64().is_some(), "{v}");
    assert_eq!(
        v["provers"].as_array().unwrap().len(),
        2,
        "live provers: {v}"
    );
    let (text, took) = status(&url, false);
    assert!(took < STATUS_BOUND, "status took {took:?}");
    assert!(text.starts_with("STORE NOT ANSWERING: "), "{text}");
    assert!(text.contains(&endpoint), "{text}");

    // The log says so within seconds, naming the server (and, for a write, the cause).
    wait_for(
        "a logged store error naming the endpoint",
        Duration::from_secs(15),
        || {
            json_lines(&coord).iter().any(|l| {
                let level = l["level"].as_str().unwrap_or("");
                (level == "ERROR" || level == "WARN") && l.to_string().contains(&endpoint)
            })
        },
    )
    .await;
    println!("first store error logged within {:?}", crashed.elapsed());

    // A few seconds of outage, then the server comes back on the same port.
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(crashed.elapsed())).await;
    coord.check_alive();
    pg.restart().unwrap();
    let restarted = Instant::now();
    wait_for(
        "status from the store again",
        Duration::from_secs(60),
        || status_json(&url)["from_memory"] == false,
    )
    .await;
    println!(
        "status from the store {:?} after the restart",
        restarted.elapsed()
    );
    let (h, _) = health(&url).await;
    assert!(h.serving && h.store_error.is_empty(), "{h:?}");

    wait_for("every batch proven", Duration::from_secs(180), || {
        status_json(&url)["last_proven_batch"].as_u64() == Some(BATCHES)
    })
    .await;
    let s = status_json(&url);
    assert_eq!(s["last_sealed_batch"], BATCHES, "{s}");
    let exec = &s["jobs"]["exec"];
    assert_eq!(
        (
            &exec["proven"],
            &exec["queued"],
            &exec["leased"],
            &exec["failed"]
        ),
        (
            &serde_json::json!(BATCHES),
            &serde_json::json!(0),
            &serde_json::json!(0),
            &serde_json::json!(0)
        ),
        "{s}"
    );
    drop(coord);

    // Exactly once: each batch has one acknowledged proof across both provers' logs, under
    // the token the store holds, and the chain of state roots is unbroken.
    let acked = || {
        let mut by_task = BTreeMap::<String, Vec<u64>>::new();
        for p in &provers {
            for l in json_lines(p) {
                let f = &l["fields"];
                if f["message"] == "result acknowledged" && f["proof"] == true {
                    by_task
                        .entry(f["task"].as_str().unwrap().to_string())
                        .or_default()
                        .push(f["token"].as_u64().unwrap());
                }
            }
        }
        by_task
    };
    wait_for("every ack logged", Duration::from_secs(10), || {
        acked().len() == BATCHES as usize
    })
    .await;
    let acked = acked();
    let store = open_store(&pg.url).await.unwrap();
    let exec_type = ProofType::new("exec").unwrap();
    let mut prev_root = None;
    for n in 1..=BATCHES {
        let batch = store.batch(DEFAULT_CHAIN, n).await.unwrap().unwrap();
        if let Some(prev) = prev_root {
            assert_eq!(common::transition(&batch).old_state_root, prev, "batch {n}");
        }
        prev_root = Some(common::transition(&batch).new_state_root);
        let key = JobKey::new(DEFAULT_CHAIN, n, exec_type.clone());
        assert_eq!(
            store.job(&key).await.unwrap().unwrap().state,
            JobState::Proven
        );
        let proof = store.proof(&key).await.unwrap().unwrap();
        assert_eq!(
            acked.get(&format!("{n}/exec")),
            Some(&vec![proof.token.0]),
            "batch {n}: one acknowledged proof, the stored one"
        );
    }
    for mut p in provers {
        p.check_alive();
    }
}
