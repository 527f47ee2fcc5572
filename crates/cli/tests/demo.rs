//! `proofmill demo` end to end: every batch verified on the embedded L1, then a second run on
//! the same data dir resumes without re-proving, and `bench settle` prints its summary line.

mod common;
use common::proofmill;

fn demo(dir: &std::path::Path) -> String {
    let out = proofmill()
        .args([
            "demo",
            "--batches",
            "3",
            "--provers",
            "1",
            "--batch-size",
            "4",
            "--data-dir",
        ])
        .arg(dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn demo_settles_every_batch_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let first = demo(dir.path());
    assert!(
        first.contains("done: batches 1..=3 proven and verified on L1 (3 proven this run)"),
        "{first}"
    );
    assert!(
        first.contains("last committed batch 3, last verified batch 3"),
        "{first}"
    );
    assert!(first.contains("last verify tx 0x"), "{first}");
    assert!(first.contains("gas per batch"), "{first}");
    assert!(first.lines().any(|l| l.contains("verified 3/3")), "{first}");

    let second = demo(dir.path());
    assert!(
        second.contains("resuming: 3 batches sealed, 3 proven before this run"),
        "{second}"
    );
    assert!(second.contains("(0 proven this run)"), "{second}");
    assert!(second.contains("last verified batch 3"), "{second}");
    assert!(second.contains("tasks completed    0"), "{second}");
}

#[test]
fn bench_settle_prints_gas_per_batch() {
    let out = proofmill()
        .args(["bench", "settle", "--batches-per-tx", "4"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap();
    let gas: u64 = last
        .strip_prefix("gas_per_batch=")
        .and_then(|r| r.strip_suffix(" batches_per_tx=4"))
        .unwrap_or_else(|| panic!("{stdout}"))
        .parse()
        .unwrap();
    assert!(gas > 1_000, "{stdout}");
}
