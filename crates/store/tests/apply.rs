//! `Store::apply`, the hot path: every field round-trips, the last write wins, a failing
//! change leaves nothing written, out-of-range values are refused; plus a throughput print.
//! Run against both SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::*;
use proofmill_store::StoreError;
use proofmill_types::DEFAULT_CHAIN;
use std::time::Instant;

store_test!(
    apply_round_trips_every_field,
    apply_last_write_wins,
    apply_is_atomic,
    values_above_i64_max_rejected,
    text_with_nul_rejected,
    apply_throughput,
);

async fn apply_round_trips_every_field(store: Arc<dyn Store>, _: &str) {
    store
        .insert_batch(&batch(1, &["exec", "groth16"]), 5)
        .await
        .unwrap();
    let max = i64::MAX as u64;
    let job = Job {
        key: key(1, "exec"),
        state: JobState::Leased,
        version: "v2-ünïcode ✓".into(),
        failed_attempts: u32::MAX,
        lost_attempts: 7,
        lease: Some(Lease {
            prover: ProverId("p-🚀-1".into()),
            token: FencingToken(max),
            leased_at: max - 1,
            deadline: max - 2,
        }),
        not_before: max - 3,
        last_error: Some("verification failed: 'quoted' \"double\" \n newline".into()),
        updated_at: max - 4,
    };
    let proof1 = ProofRecord {
        key: key(1, "groth16"),
        blob_key: "proofs/000000000001-groth16.bin".into(),
        size: max,
        digest: Digest([0xab; 32]),
        prover: ProverId("p-9".into()),
        prover_name: "name with spaces".into(),
        token: FencingToken(max - 5),
        leased_at: 11,
        received_at: 12,
        prove_ms: max - 6,
        inline: Some(vec![0, 1, 2, 255]),
    };
    store
        .apply(&[Change::Job(job.clone()), Change::Proof(proof1.clone())])
        .await
        .unwrap();
    assert_eq!(store.job(&job.key).await.unwrap(), Some(job.clone()));
    assert_eq!(
        store.proof(&proof1.key).await.unwrap(),
        Some(proof1.clone())
    );
    assert_eq!(store.proof(&key(1, "exec")).await.unwrap(), None);

    // Lease cleared, error cleared, proof replaced, then deleted.
    let mut job2 = job.clone();
    job2.state = JobState::Queued;
    job2.lease = None;
    job2.last_error = None;
    job2.failed_attempts = 0;
    let mut proof2 = proof1.clone();
    proof2.digest = Digest([0x01; 32]);
    proof2.blob_key = "proofs/replaced.bin".into();
    proof2.token = FencingToken(3);
    store
        .apply(&[Change::Job(job2.clone()), Change::Proof(proof2.clone())])
        .await
        .unwrap();
    assert_eq!(store.job(&job.key).await.unwrap(), Some(job2));
    assert_eq!(store.proof(&proof1.key).await.unwrap(), Some(proof2));
    store
        .apply(&[Change::DeleteProof(proof1.key.clone())])
        .await
        .unwrap();
    assert_eq!(store.proof(&proof1.key).await.unwrap(), None);
    // Deleting a missing proof is fine; an empty apply is a no-op.
    store
        .apply(&[Change::DeleteProof(proof1.key.clone())])
        .await
        .unwrap();
    store.apply(&[]).await.unwrap();
}

async fn apply_last_write_wins(store: Arc<dyn Store>, _: &str) {
    store
        .insert_batch(&batch(1, &["exec", "groth16"]), 5)
        .await
        .unwrap();
    let k = key(1, "exec");
    let first = leased(k.clone(), 1, 10);
    let mut last = leased(k.clone(), 2, 20);
    last.lost_attempts = 1;
    store
        .apply(&[
            Change::Job(first),
            Change::Job(with_state(k.clone(), JobState::Failed, 15)),
            Change::Job(last.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(store.job(&k).await.unwrap(), Some(last));

    let g = key(1, "groth16");
    // Proof then delete: gone. Delete then proof: present (the last one).
    store
        .apply(&[
            Change::Proof(proof(k.clone(), 1)),
            Change::DeleteProof(k.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(store.proof(&k).await.unwrap(), None);
    let mut p2 = proof(g.clone(), 2);
    p2.prove_ms = 99;
    store
        .apply(&[
            Change::Proof(proof(g.clone(), 1)),
            Change::DeleteProof(g.clone()),
            Change::Proof(p2.clone()),
        ])
        .await
        .unwrap();
    assert_eq!(store.proof(&g).await.unwrap(), Some(p2));
}

async fn apply_is_atomic(store: Arc<dyn Store>, _: &str) {
    store
        .insert_batch(&batch(1, &["exec", "groth16"]), 5)
        .await
        .unwrap();
    let before = store.job(&key(1, "exec")).await.unwrap();

    // A Job change for a job that does not exist fails the whole call.
    let err = store
        .apply(&[
            Change::Job(leased(key(1, "exec"), 5, 10)),
            Change::Proof(proof(key(1, "groth16"), 4)),
            Change::Job(leased(key(2, "exec"), 6, 10)),
        ])
        .await
        .expect_err("job 2/exec does not exist");
    assert!(err.to_string().contains("2/exec"), "unhelpful error: {err}");
    assert_eq!(store.job(&key(1, "exec")).await.unwrap(), before);
    assert_eq!(store.proof(&key(1, "groth16")).await.unwrap(), None);

    // Same for an unknown proof type of an existing batch.
    assert!(
        store
            .apply(&[Change::Job(leased(key(1, "stark"), 5, 10))])
            .await
            .is_err()
    );
    assert_eq!(store.job(&key(1, "stark")).await.unwrap(), None);

    // A proof for a job that does not exist fails the whole call, too.
    assert!(
        store
            .apply(&[
                Change::Job(leased(key(1, "exec"), 5, 10)),
                Change::Proof(proof(key(9, "exec"), 4)),
            ])
            .await
            .is_err()
    );
    assert_eq!(store.job(&key(1, "exec")).await.unwrap(), before);
    assert_eq!(store.proof(&key(9, "exec")).await.unwrap(), None);

    // The store still works after the failures.
    store
        .apply(&[Change::Job(leased(key(1, "exec"), 5, 10))])
        .await
        .unwrap();
    assert_eq!(
        store.job(&key(1, "exec")).await.unwrap().unwrap().state,
        JobState::Leased
    );
}

async fn values_above_i64_max_rejected(store: Arc<dyn Store>, _: &str) {
    let too_big = i64::MAX as u64 + 1;
    let err = store
        .insert_batch(&batch(too_big, &["exec"]), 1)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("i64::MAX"), "{err}");
    let mut b = batch(1, &["exec"]);
    b.input_size = u64::MAX;
    assert!(
        store
            .insert_batch(&b, 1)
            .await
            .unwrap_err()
            .to_string()
            .contains("i64::MAX")
    );
    assert!(
        store
            .insert_batch(&batch(2, &["exec"]), too_big)
            .await
            .is_err()
    );
    assert_eq!(store.last_sealed_batch(DEFAULT_CHAIN).await.unwrap(), None);

    insert_all(&*store, [1], &["exec"]).await;
    let before = store.job(&key(1, "exec")).await.unwrap();
    let mut job = leased(key(1, "exec"), too_big, 1);
    let err = store.apply(&[Change::Job(job.clone())]).await.unwrap_err();
    assert!(err.to_string().contains("i64::MAX"), "{err}");
    assert!(matches!(err, StoreError::Unstorable(_)), "{err:?}");
    job.lease.as_mut().unwrap().token = FencingToken(3);
    job.not_before = u64::MAX;
    assert!(store.apply(&[Change::Job(job)]).await.is_err());
    let mut p = proof(key(1, "exec"), 1);
    p.size = u64::MAX;
    assert!(
        store
            .apply(&[Change::Job(leased(key(1, "exec"), 2, 2)), Change::Proof(p)])
            .await
            .is_err()
    );
    assert_eq!(store.job(&key(1, "exec")).await.unwrap(), before);
    assert_eq!(store.proof(&key(1, "exec")).await.unwrap(), None);
    assert_eq!(store.max_fencing_token().await.unwrap(), 0);
}

/// PostgreSQL text cannot hold NUL: both stores refuse it the same way, as a value that no
/// retry will store, and write nothing of the call.
async fn text_with_nul_rejected(store: Arc<dyn Store>, _: &str) {
    insert_all(&*store, [1, 2], &["exec"]).await;
    let before = store.job(&key(1, "exec")).await.unwrap();
    let mut failed = leased(key(1, "exec"), 3, 1);
    failed.state = JobState::Queued;
    failed.lease = None;
    failed.last_error = Some("boom\0".into());
    let fine = leased(key(2, "exec"), 4, 1);
    let err = store
        .apply(&[Change::Job(fine.clone()), Change::Job(failed)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unstorable(_)), "{err:?}");
    assert!(err.to_string().contains("NUL"), "{err}");
    let mut p = proof(key(2, "exec"), 4);
    p.prover_name = "p\0-1".into();
    let err = store
        .apply(&[Change::Job(fine), Change::Proof(p)])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unstorable(_)), "{err:?}");
    assert_eq!(store.job(&key(1, "exec")).await.unwrap(), before);
    assert_eq!(
        store.job(&key(2, "exec")).await.unwrap().unwrap().state,
        JobState::Queued
    );
    assert_eq!(store.proof(&key(2, "exec")).await.unwrap(), None);
}

/// Not asserted: prints how many job completions per second `apply` sustains when the
/// coordinator group-commits 1,000 of them (proof + proven job + next lease) per call.
async fn apply_throughput(store: Arc<dyn Store>, backend: &str) {
    const PER_CALL: u64 = 1000;
    const CALLS: u64 = 5;
    let t0 = Instant::now();
    for n in 1..=PER_CALL * (CALLS + 1) {
        store.insert_batch(&batch(n, &["exec"]), 1).await.unwrap();
    }
    let setup = t0.elapsed();
    let lease_all: Vec<Change> = (1..=PER_CALL)
        .map(|n| Change::Job(leased(key(n, "exec"), n, 1)))
        .collect();
    store.apply(&lease_all).await.unwrap();
    let mut token = PER_CALL;
    let t = Instant::now();
    for call in 0..CALLS {
        let mut changes = Vec::with_capacity(3 * PER_CALL as usize);
        for i in 1..=PER_CALL {
            let n = call * PER_CALL + i;
            changes.push(Change::Proof(proof(key(n, "exec"), n)));
            changes.push(Change::Job(with_state(key(n, "exec"), JobState::Proven, 2)));
            token += 1;
            changes.push(Change::Job(leased(key(n + PER_CALL, "exec"), token, 2)));
        }
        store.apply(&changes).await.unwrap();
    }
    let elapsed = t.elapsed();
    let rate = (PER_CALL * CALLS) as f64 / elapsed.as_secs_f64();
    println!(
        "[{backend}] apply: {} completions in {} calls of {PER_CALL} took {:.1} ms: {rate:.0} completions/s \
         ({} insert_batch calls took {:.0} ms)",
        PER_CALL * CALLS,
        CALLS,
        elapsed.as_secs_f64() * 1e3,
        PER_CALL * (CALLS + 1),
        setup.as_secs_f64() * 1e3,
    );
    assert_eq!(
        store.last_proven_batch(DEFAULT_CHAIN).await.unwrap(),
        Some(PER_CALL * CALLS)
    );
    assert_eq!(store.max_fencing_token().await.unwrap(), token);
    let last = PER_CALL * CALLS;
    assert_eq!(
        store.proof(&key(last, "exec")).await.unwrap(),
        Some(proof(key(last, "exec"), last))
    );
    let open = store.open_jobs().await.unwrap();
    assert_eq!(open.len() as u64, PER_CALL);
    assert_eq!(
        open[0],
        leased(key(last + 1, "exec"), token - PER_CALL + 1, 2)
    );
    assert_eq!(
        open.last().unwrap(),
        &leased(key(last + PER_CALL, "exec"), token, 2)
    );

    // Per-call overhead: one completion per call.
    let singles = 200;
    let t = Instant::now();
    for i in 0..singles {
        let n = PER_CALL * CALLS + 1 + i;
        store
            .apply(&[
                Change::Proof(proof(key(n, "exec"), n)),
                Change::Job(with_state(key(n, "exec"), JobState::Proven, 3)),
            ])
            .await
            .unwrap();
    }
    let per_call = t.elapsed().as_secs_f64() / singles as f64;
    println!(
        "[{backend}] apply: one completion per call: {:.0} us/call ({:.0} calls/s)",
        per_call * 1e6,
        1.0 / per_call
    );
    assert_eq!(
        store.last_proven_batch(DEFAULT_CHAIN).await.unwrap(),
        Some(last + singles)
    );
}
