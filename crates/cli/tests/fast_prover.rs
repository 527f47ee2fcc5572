//! A lone prover whose proofs take a millisecond or two keeps getting work. It once stopped
//! after 14 to 22 tasks with jobs queued and itself connected: each task took and freed its
//! slot before the prover looked at its capacity again, so it never advertised the freed
//! slot, and the coordinator, which counts every task it sends against the last
//! advertisement, thought it busy for good.

use std::time::{Duration, Instant};

mod common;
use common::procs::{Proc, listening_addr, tail};
use common::proofmill;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn last_proven(url: &str) -> Option<u64> {
    let out = proofmill()
        .args(["status", "--json", "--coordinator", url])
        .output()
        .ok()?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    status["last_proven_batch"].as_u64()
}

#[test]
fn a_lone_fast_prover_keeps_getting_tasks() {
    const BATCHES: u64 = 80;
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
            "--tree-depth",
            "8",
            "--batch-interval",
            "100",
            "--max-batches",
            &BATCHES.to_string(),
        ]),
        path,
        path.join("coordinator.log"),
        &[],
    );
    let url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    let prover = Proc::spawn(
        "prover",
        &args(&["prover", "--name", "fast", "--coordinators", &url]),
        path,
        path.join("prover.log"),
        &[],
    );
    let until = Instant::now() + Duration::from_secs(120);
    while last_proven(&url) != Some(BATCHES) {
        assert!(
            Instant::now() < until,
            "proven up to {:?} of {BATCHES}; prover log:\n{}",
            last_proven(&url),
            tail(&prover.log())
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
