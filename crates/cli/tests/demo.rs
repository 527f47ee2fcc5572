//! `proofmill demo` end to end with real Groth16 proofs: every batch verified on the embedded
//! L1, then a second run on the same data dir resumes without re-proving. The benchmarks print
//! their summary lines (on small inputs: the numbers themselves live in BENCHMARKS.md).

mod common;
use common::{groth16_keys, proofmill};

fn demo(dir: &std::path::Path, extra: &[&str]) -> String {
    let out = proofmill()
        .args(["demo", "--batches", "3", "--provers", "1", "--data-dir"])
        .arg(dir)
        .arg("--groth16-keys")
        .arg(groth16_keys())
        .args(extra)
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

/// Two real proof systems on every batch: groth16 (settled on L1) and stark (checked by the
/// coordinator only); a batch is settled once both are proven.
const TWO_SYSTEMS: &[&str] = &["--proof-types", "groth16,stark"];

#[test]
fn demo_settles_every_batch_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let first = demo(dir.path(), TWO_SYSTEMS);
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
    assert!(first.contains("groth16    proven     3"), "{first}");
    assert!(first.contains("stark      proven     3"), "{first}");

    let second = demo(dir.path(), TWO_SYSTEMS);
    assert!(
        second.contains("resuming: 3 batches sealed, 3 proven before this run"),
        "{second}"
    );
    assert!(second.contains("(0 proven this run)"), "{second}");
    assert!(second.contains("last verified batch 3"), "{second}");
    assert!(second.contains("tasks completed    0"), "{second}");
}

/// An external prover plugged in through the command backend, beside exec: the prove script
/// writes the public values as its "proof", the verify script checks them.
#[test]
fn demo_with_a_command_backend() {
    let dir = tempfile::tempdir().unwrap();
    let out = demo(
        dir.path(),
        &[
            "--proof-types",
            "exec,ext:command",
            "--command-prove",
            "echo proving batch {batch} >&2 && cp {public} {output}",
            "--command-verify",
            "cmp -s {proof} {public}",
        ],
    );
    assert!(out.contains("ext        proven     3"), "{out}");
    assert!(out.contains("last verified batch 3"), "{out}");
}

/// Runs `proofmill <args> --groth16-keys <shared keys>`, expects success, returns the last
/// stdout line.
fn last_line(args: &[&str]) -> String {
    let keys = groth16_keys();
    let keys = keys.to_str().expect("utf-8 path");
    last_line_of(&[args, &["--groth16-keys", keys]].concat())
}

/// Runs `proofmill <args>`, expects success, returns the last stdout line.
fn last_line_of(args: &[&str]) -> String {
    let out = proofmill().args(args).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.lines().last().unwrap_or_default().to_string()
}

/// `key=value` pairs of a summary line, in order.
fn fields(line: &str) -> Vec<(String, String)> {
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or_else(|| panic!("{line}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn gas_per_batch(args: &[&str], k: u64) -> u64 {
    let line = last_line(args);
    let f = fields(&line);
    assert_eq!(f[0].0, "gas_per_batch", "{line}");
    assert_eq!(
        f[1],
        ("batches_per_tx".to_string(), k.to_string()),
        "{line}"
    );
    f[0].1.parse().unwrap()
}

#[test]
fn bench_settle_prints_gas_per_batch() {
    let exec = gas_per_batch(&["bench", "settle", "--batches-per-tx", "4"], 4);
    assert!(exec > 1_000, "{exec}");
    // Real proofs cost pairings on top of the contract's bookkeeping.
    let groth16 = &[
        "bench",
        "settle",
        "--proof-type",
        "groth16",
        "--groth16-shape",
        "1x4",
    ];
    let one = gas_per_batch(
        &[groth16.as_slice(), &["--batches-per-tx", "1"]].concat(),
        1,
    );
    let four = gas_per_batch(
        &[groth16.as_slice(), &["--batches-per-tx", "4"]].concat(),
        4,
    );
    assert!(one > exec + 100_000, "groth16 {one} vs exec {exec}");
    assert!(four < one, "batching saves nothing: k=4 {four}, k=1 {one}");
}

#[test]
fn bench_prove_prints_its_summary() {
    for pt in ["exec", "groth16", "stark"] {
        let line = last_line(&[
            "bench",
            "prove",
            "--proof-type",
            pt,
            "--batch-size",
            "2",
            "--tree-depth",
            "4",
            "--repeat",
            "1",
        ]);
        let f = fields(&line);
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["prove_s", "verify_ms", "proof_bytes", "overhead_ratio"],
            "{line}"
        );
        let num = |i: usize| f[i].1.parse::<f64>().unwrap();
        assert!(num(0) >= 0.0 && num(1) >= 0.0 && num(3) > 0.0, "{line}");
        let bytes: usize = f[2].1.parse().unwrap();
        match pt {
            "exec" => assert_eq!(bytes, 96, "{line}"),
            "groth16" => assert_eq!(bytes, 256, "{line}"),
            _ => assert!(bytes > 10_000, "a STARK proof of {bytes} bytes: {line}"),
        }
    }
}

#[test]
fn bench_dispatch_prints_its_summary_and_paces_an_offered_load() {
    let summary = |extra: &[&str]| {
        let args = [
            &["bench", "dispatch", "--provers", "4", "--jobs", "300"],
            extra,
        ]
        .concat();
        let line = last_line_of(&args);
        let f = fields(&line);
        let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "completions_per_s",
                "dispatch_p50_ms",
                "dispatch_p99_ms",
                "cpu_us_per_job"
            ],
            "{line}"
        );
        let num = |i: usize| f[i].1.parse::<f64>().unwrap();
        let (rate, p50, p99, cpu) = (num(0), num(1), num(2), num(3));
        assert!(rate > 0.0 && 0.0 <= p50 && p50 <= p99, "{line}");
        // Every job costs the coordinator some CPU time.
        assert!(cpu > 0.0, "{line}");
        rate
    };
    let unpaced = summary(&[]);
    // Four provers answering once every 20 ms each: 300 results take at least 1.5 s less one
    // period, so no more than about 200 per second can be counted (unpaced, even a debug
    // build on a busy machine does over a thousand).
    let paced = summary(&["--rate", "200"]);
    assert!(
        paced <= 220.0,
        "an offered load of 200/s completed {paced}/s (unpaced: {unpaced}/s)"
    );
}

#[test]
fn bench_dispatch_runs_on_a_postgres_it_starts() {
    let line = last_line_of(&[
        "bench",
        "dispatch",
        "--store",
        "postgres",
        "--provers",
        "2",
        "--jobs",
        "100",
    ]);
    let f = fields(&line);
    assert_eq!(f[0].0, "completions_per_s", "{line}");
    assert!(f[0].1.parse::<f64>().unwrap() > 0.0, "{line}");
}

/// A small fleet end to end: the provers' own process, all connecting at once, every one
/// registered (the bench fails otherwise), then jobs through them; the summary line's format.
#[test]
fn bench_fleet_registers_every_prover_and_runs_jobs() {
    let out = proofmill()
        .args(["bench", "fleet", "--provers", "50", "--jobs", "200"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("all 50 registered"), "{stderr}");
    let line = stdout.lines().last().unwrap_or_default();
    let f = fields(line);
    let keys: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        [
            "provers",
            "rss_per_prover_kib",
            "connect_s",
            "completions_per_s"
        ],
        "{line}"
    );
    assert_eq!(f[0].1, "50", "{line}");
    let num = |i: usize| f[i].1.parse::<f64>().unwrap();
    // Memory can fall between two readings (the allocator returns some), so only finite.
    assert!(num(1).is_finite(), "{line}");
    assert!(num(2) > 0.0 && num(3) > 0.0, "{line}");
}

/// `demo --market`: every batch offered on the embedded L1's proof market; network-a proves
/// its half (real groth16 proofs, settled on L1) and claims its rewards, network-b refuses its
/// half, which the demo's own provers prove. A second run on the same data resumes with the
/// same market and proves nothing again.
#[test]
fn demo_buys_proofs_on_the_market_and_falls_back_for_a_refusing_network() {
    let dir = tempfile::tempdir().unwrap();
    let first = demo(dir.path(), &["--market"]);
    assert!(
        first.contains("done: batches 1..=3 proven and verified on L1 (3 proven this run)"),
        "{first}"
    );
    assert!(first.contains("proof market at 0x"), "{first}");
    assert!(
        first
            .contains("proof market: 2 batches proven by networks, 1 fell back to the own provers"),
        "{first}"
    );
    assert!(
        first.contains("network-a: proofs posted: 2, requests refused: 0, claimed: 2000000000000000 wei, unclaimed: 0 wei"),
        "{first}"
    );
    assert!(
        first.contains("network-b: proofs posted: 0, requests refused: 1, claimed: 0 wei"),
        "{first}"
    );
    let market = |out: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix("proof market at "))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string)
    };
    let second = demo(dir.path(), &["--market"]);
    assert_eq!(market(&first), market(&second), "{second}");
    assert!(second.contains("(0 proven this run)"), "{second}");
    assert!(
        second
            .contains("proof market: 2 batches proven by networks, 1 fell back to the own provers"),
        "{second}"
    );
}

#[test]
fn bench_market_prints_its_summary() {
    let line = last_line_of(&[
        "bench",
        "market",
        "--batches",
        "4",
        "--silent-batches",
        "1",
        "--poll-interval",
        "50",
    ]);
    let f = fields(&line);
    let names: Vec<&str> = f.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        names,
        ["batches", "l1_txs_per_batch", "gas_per_batch", "fallback_s"],
        "{line}"
    );
    assert_eq!(f[0].1, "4");
    // Per batch at least its request, acknowledgement, proof and validation.
    let txs: f64 = f[1].1.parse().unwrap();
    assert!(txs >= 4.0, "{line}");
    assert!(f[2].1.parse::<u64>().unwrap() > 21_000 * 4, "{line}");
    assert!(f[3].1.parse::<f64>().unwrap() > 0.0, "{line}");
}
