//! The S3 blob store end to end, the way an operator runs it: a coordinator process with
//! `--blobs s3://BUCKET/PREFIX` and a prover process with `--blob-access`, both configured
//! by the `AWS_*` variables for an S3-compatible server (moto) that the test starts. What
//! landed in the bucket is read through the server's own API, not through our client.

mod common;
use common::admin::wait_status;
use common::procs::{Proc, listening_addr};
use proofmill_store::open_store;
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::{JobKey, ProofType};
use std::time::Duration;

const BUCKET: &str = "proofmill-e2e";
const PREFIX: &str = "site-1";
/// One batch takes every path: its input by URL, an inline proof and a proof blob.
const BATCHES: u64 = 1;
/// Devnet batches of 1000 transfers at depth 16 are 1 080 050 bytes: above the coordinator's
/// 1 MiB inline limit, so a prover with blob access is sent their URL.
const BATCH_SIZE: &str = "1000";
const TREE_DEPTH: &str = "16";
/// A second proof type whose "proof" carries the public values and the input, so that its
/// proofs (over the 64 KiB inline limit) are blobs too.
const CARRY_PROVE: &str = "cat {public} {input} > {output}";
const CARRY_VERIFY: &str = "head -c 96 {proof} | cmp -s - {public}";

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

#[test]
fn coordinator_and_blob_access_prover_on_s3() {
    let s3 = proofmill_testkit::TestS3::start();
    s3.create_bucket(BUCKET);
    let aws = s3.env();
    let mut env: Vec<(&str, &str)> = aws.iter().map(|(k, v)| (*k, v.as_str())).collect();
    // JSON logs, so the test can read which input each task was given.
    env.extend([("RUST_LOG", "info"), ("PROOFMILL_LOG_FORMAT", "json")]);

    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/c.db?mode=rwc", dir.path().display());
    let blobs = format!("s3://{BUCKET}/{PREFIX}");
    let coordinator = strings(&[
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--db",
        &db,
        "--blobs",
        &blobs,
        "--proof-types",
        "exec,carry:command",
        "--command-verify",
        CARRY_VERIFY,
        "--devnet",
        "--l1",
        "none",
        "--batch-size",
        BATCH_SIZE,
        "--tree-depth",
        TREE_DEPTH,
        "--batch-interval",
        "100",
        "--max-batches",
        &BATCHES.to_string(),
    ]);
    let mut coord = Proc::spawn(
        "coordinator",
        &coordinator,
        dir.path(),
        dir.path().join("c.log"),
        &env,
    );
    let url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    let prover = strings(&[
        "prover",
        "--coordinators",
        &url,
        "--name",
        "p1",
        "--backend",
        "exec,carry:command",
        "--command-prove",
        CARRY_PROVE,
        "--blob-access",
    ]);
    let mut prover = Proc::spawn(
        "prover",
        &prover,
        dir.path(),
        dir.path().join("p.log"),
        &env,
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let status = rt.block_on(wait_status(
        &url,
        "every batch proven",
        Duration::from_secs(180),
        |s| {
            ["exec", "carry"]
                .iter()
                .all(|t| s.jobs.get(*t).is_some_and(|c| c.proven == BATCHES))
        },
    ));
    assert_eq!(status.last_proven_batch, Some(BATCHES), "{status:?}");
    coord.check_alive();
    prover.check_alive();

    // The prover read every input from the bucket itself, none in chunks on its stream.
    let started: Vec<String> = prover
        .json_lines()
        .iter()
        .filter(|l| l["fields"]["message"] == "task started")
        .map(|l| l["fields"]["input"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(started.len() as u64, 2 * BATCHES, "{}", prover.log());
    for input in &started {
        assert!(
            input.starts_with(&format!("s3://{BUCKET}/{PREFIX}/inputs/")),
            "task input {input:?} is not a URL in the bucket"
        );
    }
    assert!(!prover.log().contains("receiving chunked input"));

    // The store's records name blobs that are in the bucket, with their sizes.
    let listed = s3.list(BUCKET, &format!("{PREFIX}/"));
    let size_of = |key: &str| {
        let full = format!("{PREFIX}/{key}");
        listed
            .iter()
            .find(|(k, _)| *k == full)
            .map(|(_, size)| *size)
            .unwrap_or_else(|| panic!("{full} is not in the bucket: {listed:?}"))
    };
    let store = rt.block_on(open_store(&db)).unwrap();
    for n in 1..=BATCHES {
        let batch = rt
            .block_on(store.batch(DEFAULT_CHAIN, n))
            .unwrap()
            .expect("batch stored");
        assert!(
            batch.input_size > 1 << 20,
            "batch {n}: {}",
            batch.input_size
        );
        assert_eq!(
            size_of(&batch.input_key),
            batch.input_size,
            "batch {n} input"
        );
        let proof = |t: &str| {
            let key = JobKey::new(DEFAULT_CHAIN, n, ProofType::new(t).unwrap());
            rt.block_on(store.proof(&key))
                .unwrap()
                .unwrap_or_else(|| panic!("no {t} proof of batch {n}"))
        };
        let exec = proof("exec");
        assert!(
            exec.inline.is_some() && exec.blob_key.is_empty(),
            "{exec:?}"
        );
        let carry = proof("carry");
        assert!(carry.inline.is_none(), "{carry:?}");
        assert_eq!(carry.size, 96 + batch.input_size);
        assert_eq!(
            size_of(&carry.blob_key),
            carry.size,
            "batch {n} carry proof"
        );
    }
    coord.check_alive();
}
