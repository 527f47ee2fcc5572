//! `proofmill watch` against a running devnet coordinator, as an operator runs it: what it
//! prints as a prover connects, proves and settles on the embedded L1, is cordoned and is
//! killed.

use std::time::{Duration, Instant};

mod common;
use common::procs::{Proc, listening_addr, tail};
use common::proofmill;
use serde_json::Value;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Waits until the watcher has printed an event that `matches`, returning it.
fn seen(watcher: &Proc, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(e) = watcher.json_lines().into_iter().find(|e| matches(e)) {
            return e;
        }
        assert!(
            Instant::now() < until,
            "no {what} in the watch:\n{}",
            tail(&watcher.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn watch_prints_jobs_attempts_provers_and_l1_as_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let mut coord = Proc::spawn(
        "coordinator",
        &args(&[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
            "--devnet",
            "--proof-types",
            "exec",
            "--batch-size",
            "2",
            "--batch-interval",
            "300",
            "--send-interval",
            "500",
        ]),
        path,
        path.join("coordinator.log"),
        &[],
    );
    let url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    let watcher = Proc::spawn(
        "watch",
        &args(&["watch", "--json", "--coordinator", &url]),
        path,
        path.join("watch.log"),
        &[],
    );
    // The watch sees what happens from its call on: wait for it to be in place (a batch the
    // sealer takes in every 300 ms is the first thing it prints).
    seen(&watcher, "batch taken in", |e| e["kind"] == "batches_taken");
    let mut prover = Proc::spawn(
        "prover",
        &args(&["prover", "--name", "w1", "--coordinators", &url]),
        path,
        path.join("prover.log"),
        &[],
    );

    let connected = seen(&watcher, "prover_connected", |e| {
        e["kind"] == "prover_connected" && e["name"] == "w1"
    });
    assert_eq!(connected["proof_types"], serde_json::json!(["exec"]));
    let id = connected["prover_id"].as_str().unwrap().to_string();
    let started = seen(&watcher, "attempt_started", |e| {
        e["kind"] == "attempt_started" && e["prover_name"] == "w1"
    });
    assert_eq!(started["prover_id"], id.as_str());
    assert_eq!(started["proof_type"], "exec");
    let token = started["fencing_token"].as_u64().unwrap();
    let ended = seen(&watcher, "its end", |e| {
        e["kind"] == "attempt_ended" && e["fencing_token"] == token
    });
    assert_eq!(ended["outcome"], "proven", "{ended}");
    assert!(ended["prove_ms"].is_u64(), "{ended}");
    seen(&watcher, "its job proven", |e| {
        e["kind"] == "job" && e["batch"] == started["batch"] && e["state"] == "proven"
    });
    seen(&watcher, "a batch verified on L1", |e| {
        e["kind"] == "chain" && e["last_verified_batch"].as_u64().is_some_and(|b| b >= 1)
    });

    let cordon = proofmill()
        .args(["cordon", "--coordinator", &url, "--prover-id", "w1"])
        .output()
        .unwrap();
    assert!(cordon.status.success(), "{cordon:?}");
    seen(&watcher, "the cordon", |e| {
        e["kind"] == "cordon" && e["prover_id"] == id.as_str() && e["cordoned"] == true
    });

    assert!(prover.kill9());
    seen(&watcher, "the prover leaving", |e| {
        e["kind"] == "prover_disconnected" && e["prover_id"] == id.as_str()
    });

    // Text, and a bounded watch for scripts: it ends by itself.
    let out = proofmill()
        .args(["watch", "--coordinator", &url, "--max-events", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        let (clock, what) = line.split_at(12);
        assert!(
            clock.as_bytes()[2] == b':' && clock.as_bytes()[8] == b'.' && what.len() > 2,
            "a time of day, then the event: {line}"
        );
    }

    // A stopped coordinator ends every watch.
    coord.signal("TERM");
    let until = Instant::now() + Duration::from_secs(60);
    let mut watcher = watcher;
    while watcher.is_alive() {
        assert!(Instant::now() < until, "the watch outlived its coordinator");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        watcher.log().contains("ended the stream"),
        "{}",
        watcher.log()
    );
}
