//! Store behaviour, run against both SQLite (a temporary file) and PostgreSQL (a database on
//! the testkit's shared throwaway server).

use proofmill_store::{Change, JobFilter, Store, StoreError, open_store};
use proofmill_types::{
    Batch, Digest, FencingToken, Job, JobKey, JobState, Lease, ProofRecord, ProofType, ProverId,
    PublicValues,
};
use std::sync::Arc;
use std::time::Instant;

// ---------------------------------------------------------------------------------------------
// Harness: every `store_test!` function runs once per backend.

struct Backend {
    store: Arc<dyn Store>,
    name: &'static str,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite_backend() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("store.db").display()
    );
    Backend {
        store: open_store(&url).await.unwrap(),
        name: "sqlite",
        _dir: Some(dir),
    }
}

async fn postgres_backend(test: &str) -> Backend {
    let url = proofmill_testkit::shared_database(test).expect("test postgres");
    Backend {
        store: open_store(&url).await.unwrap(),
        name: "postgres",
        _dir: None,
    }
}

macro_rules! store_test {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::sqlite_backend().await;
                    super::$name(b.store.clone(), b.name).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = super::postgres_backend(stringify!($name)).await;
                    super::$name(b.store.clone(), b.name).await;
                }
            )*
        }
    };
}

store_test!(
    insert_batch_idempotent_and_conflict,
    jobs_created_per_required_type,
    apply_round_trips_every_field,
    apply_last_write_wins,
    apply_is_atomic,
    open_jobs_are_queued_and_leased,
    jobs_filter_and_limit,
    job_counts_per_type_and_state,
    last_proven_batch_gaps_and_partial,
    max_fencing_token_over_jobs_and_proofs,
    meta_get_set,
    values_above_i64_max_rejected,
    apply_throughput,
);

// ---------------------------------------------------------------------------------------------
// Fixtures

fn pt(name: &str) -> ProofType {
    ProofType::new(name).unwrap()
}

fn key(batch: u64, t: &str) -> JobKey {
    JobKey::new(batch, pt(t))
}

fn digest(seed: u64) -> Digest {
    Digest::sha256(&seed.to_le_bytes())
}

fn batch(number: u64, required: &[&str]) -> Batch {
    Batch {
        number,
        version: "v1".into(),
        input_key: format!("inputs/{number:012}.bin"),
        input_digest: digest(number),
        input_size: number.wrapping_add(1000),
        public_values: PublicValues {
            old_state_root: digest(number.wrapping_mul(3)),
            new_state_root: digest(number.wrapping_mul(3).wrapping_add(1)),
            batch_commitment: digest(number.wrapping_mul(3).wrapping_add(2)),
        },
        required: required.iter().map(|t| pt(t)).collect(),
        created_at: number.wrapping_add(1_700_000_000_000),
    }
}

fn leased(k: JobKey, token: u64, now: u64) -> Job {
    Job {
        key: k,
        state: JobState::Leased,
        version: "v1".into(),
        failed_attempts: 0,
        lost_attempts: 0,
        lease: Some(Lease {
            prover: ProverId("prover-1".into()),
            token: FencingToken(token),
            leased_at: now,
            deadline: now + 60_000,
        }),
        not_before: 0,
        last_error: None,
        updated_at: now,
    }
}

fn with_state(k: JobKey, state: JobState, now: u64) -> Job {
    let mut job = Job::new_queued(k, "v1".into(), now);
    job.state = state;
    job
}

fn proof(k: JobKey, token: u64) -> ProofRecord {
    ProofRecord {
        blob_key: format!("proofs/{}-{}.bin", k.batch, k.proof_type),
        size: 4096 + k.batch,
        digest: digest(k.batch + 77),
        prover: ProverId("prover-1".into()),
        prover_name: "gpu-box-1".into(),
        token: FencingToken(token),
        leased_at: 10,
        received_at: 20,
        prove_ms: 3,
        // Every other proof inline, so both forms round-trip through the same tests.
        inline: k.batch.is_multiple_of(2).then(|| vec![k.batch as u8; 96]),
        key: k,
    }
}

async fn insert_all(store: &dyn Store, numbers: impl IntoIterator<Item = u64>, required: &[&str]) {
    for n in numbers {
        assert!(store.insert_batch(&batch(n, required), 5).await.unwrap());
    }
}

async fn set_states(store: &dyn Store, jobs: &[(u64, &str, JobState)]) {
    let changes: Vec<Change> = jobs
        .iter()
        .map(|(b, t, s)| Change::Job(with_state(key(*b, t), *s, 9)))
        .collect();
    store.apply(&changes).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// Tests

async fn insert_batch_idempotent_and_conflict(store: Arc<dyn Store>, _: &str) {
    assert_eq!(store.last_sealed_batch().await.unwrap(), None);
    let b = batch(42, &["exec", "groth16"]);
    assert!(store.insert_batch(&b, 100).await.unwrap());
    assert_eq!(store.batch(42).await.unwrap(), Some(b.clone()));
    assert_eq!(store.batch(43).await.unwrap(), None);
    assert_eq!(store.batch(u64::MAX).await.unwrap(), None);

    // Same content again (even with another `now`): no-op.
    assert!(!store.insert_batch(&b, 999).await.unwrap());
    assert_eq!(
        store
            .job(&key(42, "exec"))
            .await
            .unwrap()
            .unwrap()
            .updated_at,
        100
    );

    let mut other_input = b.clone();
    other_input.input_digest = digest(1);
    assert!(matches!(
        store.insert_batch(&other_input, 100).await,
        Err(StoreError::BatchConflict(42))
    ));
    let mut other_root = b.clone();
    other_root.public_values.new_state_root = digest(2);
    assert!(matches!(
        store.insert_batch(&other_root, 100).await,
        Err(StoreError::BatchConflict(42))
    ));
    assert_eq!(store.batch(42).await.unwrap(), Some(b));

    assert!(store.insert_batch(&batch(7, &["exec"]), 1).await.unwrap());
    assert_eq!(store.last_sealed_batch().await.unwrap(), Some(42));
}

async fn jobs_created_per_required_type(store: Arc<dyn Store>, _: &str) {
    store
        .insert_batch(&batch(3, &["exec", "groth16", "stark"]), 123)
        .await
        .unwrap();
    store.insert_batch(&batch(4, &[]), 124).await.unwrap();
    for t in ["exec", "groth16", "stark"] {
        let job = store.job(&key(3, t)).await.unwrap().expect("job created");
        assert_eq!(job, Job::new_queued(key(3, t), "v1".into(), 123));
    }
    assert_eq!(store.job(&key(3, "other")).await.unwrap(), None);
    assert_eq!(store.batch(4).await.unwrap().unwrap().required, vec![]);
    let all = store.jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
}

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

async fn open_jobs_are_queued_and_leased(store: Arc<dyn Store>, _: &str) {
    assert!(store.open_jobs().await.unwrap().is_empty());
    insert_all(&*store, 1..=3, &["exec", "groth16"]).await;
    set_states(
        &*store,
        &[
            (1, "exec", JobState::Proven),
            (1, "groth16", JobState::Failed),
            (2, "exec", JobState::Cancelled),
            (3, "exec", JobState::Proven),
        ],
    )
    .await;
    store
        .apply(&[Change::Job(leased(key(3, "groth16"), 8, 50))])
        .await
        .unwrap();
    let open = store.open_jobs().await.unwrap();
    let keys: Vec<JobKey> = open.iter().map(|j| j.key.clone()).collect();
    assert_eq!(keys, vec![key(2, "groth16"), key(3, "groth16")]);
    assert_eq!(open[0].state, JobState::Queued);
    assert_eq!(open[1], leased(key(3, "groth16"), 8, 50));
}

async fn jobs_filter_and_limit(store: Arc<dyn Store>, _: &str) {
    insert_all(&*store, [3, 1, 2, 10], &["stark", "exec"]).await;
    set_states(
        &*store,
        &[
            (2, "exec", JobState::Proven),
            (10, "stark", JobState::Proven),
        ],
    )
    .await;
    let list = |f: JobFilter| {
        let store = store.clone();
        async move {
            store
                .jobs(&f)
                .await
                .unwrap()
                .into_iter()
                .map(|j| j.key.to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(JobFilter {
            limit: 5,
            ..Default::default()
        })
        .await,
        ["1/exec", "1/stark", "2/exec", "2/stark", "3/exec"]
    );
    assert_eq!(
        list(JobFilter::default()).await.len(),
        8,
        "limit 0 = no limit"
    );
    assert_eq!(
        list(JobFilter {
            proof_type: Some(pt("exec")),
            limit: 10,
            ..Default::default()
        })
        .await,
        ["1/exec", "2/exec", "3/exec", "10/exec"]
    );
    assert_eq!(
        list(JobFilter {
            state: Some(JobState::Proven),
            limit: 10,
            ..Default::default()
        })
        .await,
        ["2/exec", "10/stark"]
    );
    assert_eq!(
        list(JobFilter {
            from_batch: Some(3),
            limit: 3,
            ..Default::default()
        })
        .await,
        ["3/exec", "3/stark", "10/exec"]
    );
    assert_eq!(
        list(JobFilter {
            proof_type: Some(pt("stark")),
            state: Some(JobState::Queued),
            from_batch: Some(2),
            limit: 10,
        })
        .await,
        ["2/stark", "3/stark"]
    );
    assert!(
        list(JobFilter {
            from_batch: Some(u64::MAX),
            limit: 1,
            ..Default::default()
        })
        .await
        .is_empty()
    );
    assert!(
        list(JobFilter {
            proof_type: Some(pt("nope")),
            limit: 1,
            ..Default::default()
        })
        .await
        .is_empty()
    );
}

async fn job_counts_per_type_and_state(store: Arc<dyn Store>, _: &str) {
    assert!(store.job_counts().await.unwrap().is_empty());
    insert_all(&*store, 1..=4, &["exec", "groth16"]).await;
    set_states(
        &*store,
        &[
            (1, "exec", JobState::Proven),
            (2, "exec", JobState::Proven),
            (1, "groth16", JobState::Failed),
        ],
    )
    .await;
    store
        .apply(&[Change::Job(leased(key(3, "exec"), 1, 1))])
        .await
        .unwrap();
    let counts = store.job_counts().await.unwrap();
    let get = |t: &str, s: JobState| {
        counts
            .get(&pt(t))
            .and_then(|m| m.get(&s))
            .copied()
            .unwrap_or(0)
    };
    assert_eq!(get("exec", JobState::Proven), 2);
    assert_eq!(get("exec", JobState::Leased), 1);
    assert_eq!(get("exec", JobState::Queued), 1);
    assert_eq!(get("groth16", JobState::Failed), 1);
    assert_eq!(get("groth16", JobState::Queued), 3);
    assert_eq!(get("groth16", JobState::Proven), 0);
    assert_eq!(counts.len(), 2);
    let total: u64 = counts.values().flat_map(|m| m.values()).sum();
    assert_eq!(total, 8);
}

async fn last_proven_batch_gaps_and_partial(store: Arc<dyn Store>, _: &str) {
    let s = &*store;
    assert_eq!(s.last_proven_batch().await.unwrap(), None);
    // The first stored batch (5) is the start; nothing proven yet.
    insert_all(s, 5..=7, &["exec", "groth16"]).await;
    assert_eq!(s.last_proven_batch().await.unwrap(), None);
    // Partially proven first batch: still none.
    set_states(s, &[(5, "exec", JobState::Proven)]).await;
    assert_eq!(s.last_proven_batch().await.unwrap(), None);
    set_states(s, &[(5, "groth16", JobState::Proven)]).await;
    assert_eq!(s.last_proven_batch().await.unwrap(), Some(5));
    // 7 proven but 6 not: stops at 5.
    set_states(
        s,
        &[
            (7, "exec", JobState::Proven),
            (7, "groth16", JobState::Proven),
        ],
    )
    .await;
    assert_eq!(s.last_proven_batch().await.unwrap(), Some(5));
    // A failed job is not proven.
    set_states(
        s,
        &[
            (6, "exec", JobState::Proven),
            (6, "groth16", JobState::Failed),
        ],
    )
    .await;
    assert_eq!(s.last_proven_batch().await.unwrap(), Some(5));
    set_states(s, &[(6, "groth16", JobState::Proven)]).await;
    assert_eq!(s.last_proven_batch().await.unwrap(), Some(7));
    // A gap (8 missing) stops it even when later batches are proven.
    insert_all(s, [9, 10], &["exec"]).await;
    set_states(
        s,
        &[
            (9, "exec", JobState::Proven),
            (10, "exec", JobState::Proven),
        ],
    )
    .await;
    assert_eq!(s.last_proven_batch().await.unwrap(), Some(7));
    insert_all(s, [8], &["exec"]).await;
    assert_eq!(s.last_proven_batch().await.unwrap(), Some(7));
    set_states(s, &[(8, "exec", JobState::Proven)]).await;
    assert_eq!(s.last_proven_batch().await.unwrap(), Some(10));
    // A batch without required proofs counts as proven; an open job after it stops there.
    insert_all(s, [11], &[]).await;
    insert_all(s, [12], &["exec"]).await;
    assert_eq!(s.last_proven_batch().await.unwrap(), Some(11));
    // A gap after a proven run with an open job beyond it.
    insert_all(s, [14], &["exec"]).await;
    set_states(s, &[(12, "exec", JobState::Proven)]).await;
    assert_eq!(s.last_proven_batch().await.unwrap(), Some(12));
    // Re-opening an early job (L1 rejected its proof) moves it back.
    set_states(s, &[(6, "exec", JobState::Queued)]).await;
    assert_eq!(s.last_proven_batch().await.unwrap(), Some(5));
}

async fn max_fencing_token_over_jobs_and_proofs(store: Arc<dyn Store>, _: &str) {
    let s = &*store;
    assert_eq!(s.max_fencing_token().await.unwrap(), 0);
    insert_all(s, 1..=2, &["exec"]).await;
    assert_eq!(s.max_fencing_token().await.unwrap(), 0);
    s.apply(&[Change::Job(leased(key(1, "exec"), 7, 1))])
        .await
        .unwrap();
    assert_eq!(s.max_fencing_token().await.unwrap(), 7);
    s.apply(&[
        Change::Proof(proof(key(1, "exec"), 12)),
        Change::Job(with_state(key(1, "exec"), JobState::Proven, 2)),
    ])
    .await
    .unwrap();
    assert_eq!(s.max_fencing_token().await.unwrap(), 12);
    s.apply(&[Change::Job(leased(key(2, "exec"), 15, 3))])
        .await
        .unwrap();
    assert_eq!(s.max_fencing_token().await.unwrap(), 15);
    s.apply(&[Change::Job(with_state(key(2, "exec"), JobState::Queued, 4))])
        .await
        .unwrap();
    assert_eq!(s.max_fencing_token().await.unwrap(), 12);
}

async fn meta_get_set(store: Arc<dyn Store>, _: &str) {
    assert_eq!(store.get_meta("cursor").await.unwrap(), None);
    store.set_meta("cursor", "41").await.unwrap();
    store.set_meta("other", "").await.unwrap();
    assert_eq!(
        store.get_meta("cursor").await.unwrap().as_deref(),
        Some("41")
    );
    store.set_meta("cursor", "42 ✓").await.unwrap();
    assert_eq!(
        store.get_meta("cursor").await.unwrap().as_deref(),
        Some("42 ✓")
    );
    assert_eq!(store.get_meta("other").await.unwrap().as_deref(), Some(""));
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
    assert_eq!(store.last_sealed_batch().await.unwrap(), None);

    insert_all(&*store, [1], &["exec"]).await;
    let before = store.job(&key(1, "exec")).await.unwrap();
    let mut job = leased(key(1, "exec"), too_big, 1);
    let err = store.apply(&[Change::Job(job.clone())]).await.unwrap_err();
    assert!(err.to_string().contains("i64::MAX"), "{err}");
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
        store.last_proven_batch().await.unwrap(),
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
        store.last_proven_batch().await.unwrap(),
        Some(last + singles)
    );
}

// ---------------------------------------------------------------------------------------------
// Backend-specific

#[tokio::test]
async fn sqlite_reopen_sees_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("durable.db");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // `sqlite:path` form, file created because missing.
    let url = format!("sqlite:{}", path.display());
    {
        let store = open_store(&url).await.unwrap();
        store.insert_batch(&batch(1, &["exec"]), 5).await.unwrap();
        store
            .apply(&[
                Change::Proof(proof(key(1, "exec"), 3)),
                Change::Job(with_state(key(1, "exec"), JobState::Proven, 6)),
            ])
            .await
            .unwrap();
        store.set_meta("cursor", "1").await.unwrap();
    }
    assert!(path.exists());
    for url in [
        url.clone(),
        format!("sqlite://{}?mode=rwc&synchronous=full", path.display()),
    ] {
        let store = open_store(&url).await.unwrap();
        assert_eq!(store.batch(1).await.unwrap(), Some(batch(1, &["exec"])));
        assert_eq!(
            store.proof(&key(1, "exec")).await.unwrap(),
            Some(proof(key(1, "exec"), 3))
        );
        assert_eq!(store.last_proven_batch().await.unwrap(), Some(1));
        assert_eq!(
            store.get_meta("cursor").await.unwrap().as_deref(),
            Some("1")
        );
        assert_eq!(store.max_fencing_token().await.unwrap(), 3);
    }
}

/// A transaction committed by `apply` survives the process being killed with SIGKILL right
/// after (the child is this test binary re-run as `sqlite_kill9_child`).
#[tokio::test]
async fn sqlite_commit_survives_kill_9() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kill9.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite_kill9_child",
            "--nocapture",
            "--include-ignored",
        ])
        .env("PROOFMILL_KILL9_DB", &path)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let committed = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains("COMMITTED"));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(committed, "child did not commit");
    let store = open_store(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(
        store.job(&key(1, "exec")).await.unwrap(),
        Some(leased(key(1, "exec"), 77, 5))
    );
    assert_eq!(
        store.proof(&key(1, "groth16")).await.unwrap(),
        Some(proof(key(1, "groth16"), 76))
    );
}

#[tokio::test]
#[ignore = "helper process of sqlite_commit_survives_kill_9"]
async fn sqlite_kill9_child() {
    let Some(path) = std::env::var_os("PROOFMILL_KILL9_DB") else {
        return;
    };
    let url = format!(
        "sqlite://{}?mode=rwc",
        std::path::Path::new(&path).display()
    );
    let store = open_store(&url).await.unwrap();
    store
        .insert_batch(&batch(1, &["exec", "groth16"]), 5)
        .await
        .unwrap();
    store
        .apply(&[
            Change::Job(leased(key(1, "exec"), 77, 5)),
            Change::Proof(proof(key(1, "groth16"), 76)),
        ])
        .await
        .unwrap();
    println!("COMMITTED");
    tokio::time::sleep(std::time::Duration::from_secs(60)).await;
}

#[tokio::test]
async fn sqlite_memory_store_works() {
    let store = open_store("sqlite::memory:").await.unwrap();
    store.insert_batch(&batch(1, &["exec"]), 5).await.unwrap();
    store
        .apply(&[Change::Job(leased(key(1, "exec"), 4, 5))])
        .await
        .unwrap();
    assert_eq!(
        store.open_jobs().await.unwrap(),
        vec![leased(key(1, "exec"), 4, 5)]
    );
}

#[tokio::test]
async fn postgres_reopen_sees_committed_data() {
    let url = proofmill_testkit::shared_database("reopen").unwrap();
    {
        let store = open_store(&url).await.unwrap();
        store.insert_batch(&batch(1, &["exec"]), 5).await.unwrap();
        store.set_meta("k", "v").await.unwrap();
    }
    // Opening again re-runs the (already applied) migrations and sees the data.
    let store = open_store(&url.replace("postgres://", "postgresql://"))
        .await
        .unwrap();
    assert_eq!(store.batch(1).await.unwrap(), Some(batch(1, &["exec"])));
    assert_eq!(store.get_meta("k").await.unwrap().as_deref(), Some("v"));
}

fn assert_invalid_url<T>(result: Result<T, StoreError>, url: &str) {
    match result {
        Err(StoreError::InvalidUrl { .. }) => {}
        Err(e) => panic!("{url}: expected InvalidUrl, got {e}"),
        Ok(_) => panic!("{url}: accepted"),
    }
}

#[tokio::test]
async fn bad_store_urls_rejected() {
    for url in [
        "mysql://root@localhost/db",
        "",
        "/tmp/file.db",
        "sqlite://",
        "sqlite:x.db?synchronous=off",
        "sqlite:x.db?nonsense=1",
    ] {
        assert_invalid_url(open_store(url).await, url);
    }
    let err = open_store("redis://user:secret@host/0")
        .await
        .err()
        .unwrap();
    assert!(!err.to_string().contains("secret"), "{err}");
}
