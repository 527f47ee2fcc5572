//! A lone prover whose proofs take a millisecond or two keeps getting work. It once stopped
//! after 14 to 22 tasks with jobs queued and itself connected: each task took and freed its
//! slot before the prover looked at its capacity again, so it never advertised the freed
//! slot, and the coordinator, which counts every task it sends against the last
//! advertisement, thought it busy for good.

use std::time::{Duration, Instant};

mod common;
use common::procs::{devnet_coordinator, prover, tail};
use common::proofmill;

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
    let max_batches = BATCHES.to_string();
    let (_coord, url) = devnet_coordinator(
        path,
        &[
            "--batch-size",
            "2",
            "--tree-depth",
            "8",
            "--batch-interval",
            "100",
            "--max-batches",
            &max_batches,
        ],
    );
    let prover = prover(path, "fast", &url);
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
