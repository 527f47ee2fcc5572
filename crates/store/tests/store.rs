//! Store behaviour, run against both SQLite (a temporary file) and PostgreSQL (a database on
//! the testkit's shared throwaway server).

#[macro_use]
mod common;

use common::*;
use proofmill_store::{JobFilter, StoreError};
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::PublicValues;
use std::sync::Arc;

store_test!(
    insert_batch_idempotent_and_conflict,
    jobs_created_per_required_type,
    open_jobs_are_queued_and_leased,
    held_jobs_wait_outside_the_open_ones,
    jobs_filter_and_limit,
    job_counts_per_type_and_state,
    last_proven_batch_gaps_and_partial,
    max_fencing_token_over_jobs_and_proofs,
    meta_get_set,
    meta_init_keeps_the_first_value,
    cordons_are_kept_until_lifted,
    pauses_are_kept_until_resumed,
    replace_batch_starts_its_jobs_over,
    batch_gaps_between_lowest_and_highest,
);

// ---------------------------------------------------------------------------------------------
// Tests

async fn insert_batch_idempotent_and_conflict(store: Arc<dyn Store>, _: &str) {
    assert_eq!(store.last_sealed_batch(DEFAULT_CHAIN).await.unwrap(), None);
    let b = batch(42, &["exec", "groth16"]);
    assert!(store.insert_batch(&b, 100).await.unwrap());
    assert_eq!(
        store.batch(DEFAULT_CHAIN, 42).await.unwrap(),
        Some(b.clone())
    );
    assert_eq!(store.batch(DEFAULT_CHAIN, 43).await.unwrap(), None);
    assert_eq!(store.batch(DEFAULT_CHAIN, u64::MAX).await.unwrap(), None);

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
    other_root.public_values = PublicValues::new(b"other statement".to_vec());
    assert!(matches!(
        store.insert_batch(&other_root, 100).await,
        Err(StoreError::BatchConflict(42))
    ));
    assert_eq!(store.batch(DEFAULT_CHAIN, 42).await.unwrap(), Some(b));

    assert!(store.insert_batch(&batch(7, &["exec"]), 1).await.unwrap());
    assert_eq!(
        store.last_sealed_batch(DEFAULT_CHAIN).await.unwrap(),
        Some(42)
    );
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
    assert_eq!(
        store
            .batch(DEFAULT_CHAIN, 4)
            .await
            .unwrap()
            .unwrap()
            .required,
        vec![]
    );
    let all = store.jobs(&JobFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
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

/// A batch offered to a proof market: its held job is not open (the scheduler never loads
/// it), keeps the batch unproven, is counted and listed as held, and moves on by `apply`.
async fn held_jobs_wait_outside_the_open_ones(store: Arc<dyn Store>, _: &str) {
    let exec = proofmill_types::ProofType::new("exec").unwrap();
    let b = batch(1, &["exec", "groth16"]);
    assert!(
        store
            .insert_batch_holding(&b, std::slice::from_ref(&exec), 100)
            .await
            .unwrap()
    );
    let held = store.job(&key(1, "exec")).await.unwrap().unwrap();
    assert_eq!(held.state, JobState::Held);
    let open = store.open_jobs().await.unwrap();
    assert_eq!(
        open.iter().map(|j| j.key.clone()).collect::<Vec<_>>(),
        vec![key(1, "groth16")]
    );
    set_states(&*store, &[(1, "groth16", JobState::Proven)]).await;
    assert_eq!(store.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), None);
    let counts = store.job_counts(Some(DEFAULT_CHAIN)).await.unwrap();
    assert_eq!(counts[&exec][&JobState::Held], 1);
    let listed = store
        .jobs(&JobFilter {
            state: Some(JobState::Held),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(listed, vec![held]);
    set_states(&*store, &[(1, "exec", JobState::Proven)]).await;
    assert_eq!(
        store.last_proven_batch(DEFAULT_CHAIN).await.unwrap(),
        Some(1)
    );
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
            chain: None,
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
    assert!(store.job_counts(None).await.unwrap().is_empty());
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
    let counts = store.job_counts(None).await.unwrap();
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
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), None);
    // The first stored batch (5) is the start; nothing proven yet.
    insert_all(s, 5..=7, &["exec", "groth16"]).await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), None);
    // Partially proven first batch: still none.
    set_states(s, &[(5, "exec", JobState::Proven)]).await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), None);
    set_states(s, &[(5, "groth16", JobState::Proven)]).await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), Some(5));
    // 7 proven but 6 not: stops at 5.
    set_states(
        s,
        &[
            (7, "exec", JobState::Proven),
            (7, "groth16", JobState::Proven),
        ],
    )
    .await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), Some(5));
    // A failed job is not proven.
    set_states(
        s,
        &[
            (6, "exec", JobState::Proven),
            (6, "groth16", JobState::Failed),
        ],
    )
    .await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), Some(5));
    set_states(s, &[(6, "groth16", JobState::Proven)]).await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), Some(7));
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
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), Some(7));
    insert_all(s, [8], &["exec"]).await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), Some(7));
    set_states(s, &[(8, "exec", JobState::Proven)]).await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), Some(10));
    // A batch without required proofs counts as proven; an open job after it stops there.
    insert_all(s, [11], &[]).await;
    insert_all(s, [12], &["exec"]).await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), Some(11));
    // A gap after a proven run with an open job beyond it.
    insert_all(s, [14], &["exec"]).await;
    set_states(s, &[(12, "exec", JobState::Proven)]).await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), Some(12));
    // Re-opening an early job (L1 rejected its proof) moves it back.
    set_states(s, &[(6, "exec", JobState::Queued)]).await;
    assert_eq!(s.last_proven_batch(DEFAULT_CHAIN).await.unwrap(), Some(5));
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
    // A lease that ends clears the row's token, but the token is still counted: a restart
    // must never take it for one that was issued and never committed.
    s.apply(&[Change::Job(with_state(key(2, "exec"), JobState::Queued, 4))])
        .await
        .unwrap();
    assert_eq!(s.max_fencing_token().await.unwrap(), 15);
    // Even when the lease and its end come in one call (the last write per job wins).
    s.apply(&[
        Change::Job(leased(key(2, "exec"), 20, 5)),
        Change::Job(with_state(key(2, "exec"), JobState::Queued, 6)),
    ])
    .await
    .unwrap();
    assert_eq!(s.job(&key(2, "exec")).await.unwrap().unwrap().lease, None);
    assert_eq!(s.max_fencing_token().await.unwrap(), 20);
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

async fn meta_init_keeps_the_first_value(store: Arc<dyn Store>, _: &str) {
    // Racing writers (on Postgres, over several pooled connections): one value wins and
    // every writer is told which.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.init_meta("key", &format!("v{i}")).await.unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for racer in racers {
        seen.push(racer.await.unwrap());
    }
    let stored = store.get_meta("key").await.unwrap().unwrap();
    assert!(seen.iter().all(|v| *v == stored), "{seen:?} vs {stored}");
    assert!(stored.starts_with('v'));
    // An existing value (even an empty one) is kept, not replaced.
    store.set_meta("empty", "").await.unwrap();
    assert_eq!(store.init_meta("empty", "x").await.unwrap(), "");
    assert_eq!(store.get_meta("empty").await.unwrap().as_deref(), Some(""));
}

async fn pauses_are_kept_until_resumed(store: Arc<dyn Store>, _: &str) {
    let control = |c: &str, paused: bool, at: u64, reason: &str| Change::Control {
        component: c.into(),
        paused,
        at,
        reason: reason.into(),
    };
    let paused = || async {
        store
            .paused_components()
            .await
            .unwrap()
            .into_iter()
            .map(|p| (p.component, p.reason, p.since))
            .collect::<Vec<_>>()
    };
    assert!(paused().await.is_empty());
    store
        .apply(&[
            control("sender", true, 5, "L1 fees ✓"),
            control("dispatch", true, 6, ""),
        ])
        .await
        .unwrap();
    assert_eq!(
        paused().await,
        [
            ("dispatch".to_string(), String::new(), 6),
            ("sender".to_string(), "L1 fees ✓".to_string(), 5),
        ]
    );
    // Paused again: the first time is kept, the reason is the latest. Within one call the
    // last change per component wins.
    store
        .apply(&[
            control("sender", true, 9, "still"),
            control("dispatch", false, 9, ""),
            control("intake", true, 9, ""),
            control("intake", false, 10, ""),
        ])
        .await
        .unwrap();
    assert_eq!(
        paused().await,
        [("sender".to_string(), "still".to_string(), 5)]
    );
    // A failing change in the same call writes no pause either.
    store
        .apply(&[
            control("committer", true, 11, ""),
            Change::Job(leased(key(9, "exec"), 1, 1)),
        ])
        .await
        .expect_err("job 9/exec does not exist");
    assert_eq!(paused().await.len(), 1);
    // Text a store cannot hold is refused, not truncated.
    assert!(matches!(
        store.apply(&[control("sen\0der", true, 1, "")]).await,
        Err(StoreError::Unstorable(_))
    ));
    store
        .apply(&[control("sender", false, 12, "")])
        .await
        .unwrap();
    assert!(paused().await.is_empty());
}

async fn cordons_are_kept_until_lifted(store: Arc<dyn Store>, _: &str) {
    let cordon = |id: &str, on: bool| Change::Cordon {
        prover: ProverId(id.into()),
        on,
        at: 7,
        reason: format!("reason of {id}"),
    };
    let listed = || async {
        let ids = store.cordoned_provers().await.unwrap();
        for (id, reason) in &ids {
            assert_eq!(*reason, format!("reason of {}", id.0));
        }
        ids.into_iter().map(|p| p.0.0).collect::<Vec<_>>()
    };
    assert!(listed().await.is_empty());
    store
        .apply(&[cordon("prv-b", true), cordon("prv-a ✓", true)])
        .await
        .unwrap();
    assert_eq!(listed().await, ["prv-a ✓", "prv-b"]);
    // Within one call the last change per prover wins; cordoning twice is a no-op.
    store
        .apply(&[
            cordon("prv-a ✓", false),
            cordon("prv-a ✓", true),
            cordon("prv-c", true),
            cordon("prv-c", false),
            cordon("prv-b", true),
        ])
        .await
        .unwrap();
    assert_eq!(listed().await, ["prv-a ✓", "prv-b"]);
    store.apply(&[cordon("prv-b", false)]).await.unwrap();
    assert_eq!(listed().await, ["prv-a ✓"]);
    // Cordoned again for another reason: the reason is the latest one.
    let again = Change::Cordon {
        prover: ProverId("prv-a ✓".into()),
        on: true,
        at: 9,
        reason: "operator: disk swap".into(),
    };
    store.apply(&[again]).await.unwrap();
    let ids = store.cordoned_provers().await.unwrap();
    assert_eq!(
        ids,
        [(
            ProverId("prv-a ✓".into()),
            "operator: disk swap".to_string()
        )]
    );
    store.apply(&[cordon("prv-a ✓", true)]).await.unwrap();
    // A failing change in the same call writes no cordon either.
    store
        .apply(&[
            cordon("prv-d", true),
            Change::Job(leased(key(9, "exec"), 1, 1)),
        ])
        .await
        .expect_err("job 9/exec does not exist");
    assert_eq!(listed().await, ["prv-a ✓"]);
}

async fn replace_batch_starts_its_jobs_over(store: Arc<dyn Store>, _: &str) {
    let s = &*store;
    let mut new = batch(3, &["exec", "groth16"]);
    new.input_digest = digest(99);
    new.input_key = "inputs/3-new.bin".into();
    new.version = "v2".into();
    assert!(matches!(
        s.replace_batch(&new, 5).await,
        Err(StoreError::BatchNotFound(3))
    ));
    insert_all(s, [3], &["exec", "groth16"]).await;
    // Open jobs: refused, nothing changes.
    assert!(matches!(
        s.replace_batch(&new, 5).await,
        Err(StoreError::BatchOpen(3))
    ));
    assert_eq!(
        s.batch(DEFAULT_CHAIN, 3).await.unwrap().unwrap(),
        batch(3, &["exec", "groth16"])
    );
    // One proof type proven with a lease token, the other cancelled: replaced, the proof
    // goes, both jobs start over, the token stays counted.
    s.apply(&[
        Change::Job(leased(key(3, "exec"), 40, 2)),
        Change::Job(with_state(key(3, "groth16"), JobState::Cancelled, 2)),
    ])
    .await
    .unwrap();
    let mut done = with_state(key(3, "exec"), JobState::Proven, 3);
    done.lease = None;
    s.apply(&[Change::Job(done), Change::Proof(proof(key(3, "exec"), 40))])
        .await
        .unwrap();
    s.replace_batch(&new, 5).await.unwrap();
    assert_eq!(s.batch(DEFAULT_CHAIN, 3).await.unwrap().unwrap(), new);
    assert_eq!(s.proof(&key(3, "exec")).await.unwrap(), None);
    for t in ["exec", "groth16"] {
        let j = s.job(&key(3, t)).await.unwrap().unwrap();
        assert_eq!(
            (j.state, j.version.as_str(), j.failed_attempts),
            (JobState::Queued, "v2", 0)
        );
        assert_eq!(j.lease, None);
    }
    assert!(s.max_fencing_token().await.unwrap() >= 40);
    // Fully proven: refused.
    set_states(
        s,
        &[
            (3, "exec", JobState::Proven),
            (3, "groth16", JobState::Proven),
        ],
    )
    .await;
    assert!(matches!(
        s.replace_batch(&batch(3, &["exec"]), 6).await,
        Err(StoreError::BatchProven(3))
    ));
    assert_eq!(s.batch(DEFAULT_CHAIN, 3).await.unwrap().unwrap(), new);
}

async fn batch_gaps_between_lowest_and_highest(store: Arc<dyn Store>, _: &str) {
    let s = &*store;
    assert_eq!(s.batch_gaps(DEFAULT_CHAIN, 0, 10).await.unwrap(), vec![]);
    insert_all(s, [4, 5, 8, 12, 13], &["exec"]).await;
    assert_eq!(
        s.batch_gaps(DEFAULT_CHAIN, 0, 10).await.unwrap(),
        vec![(6, 7), (9, 11)]
    );
    assert_eq!(
        s.batch_gaps(DEFAULT_CHAIN, 0, 1).await.unwrap(),
        vec![(6, 7)]
    );
    assert_eq!(
        s.batch_gaps(DEFAULT_CHAIN, 5, 10).await.unwrap(),
        vec![(6, 7), (9, 11)]
    );
    assert_eq!(
        s.batch_gaps(DEFAULT_CHAIN, 6, 10).await.unwrap(),
        vec![(9, 11)]
    );
    assert_eq!(s.batch_gaps(DEFAULT_CHAIN, 13, 10).await.unwrap(), vec![]);
    insert_all(s, [6, 7], &["exec"]).await;
    assert_eq!(
        s.batch_gaps(DEFAULT_CHAIN, 0, 10).await.unwrap(),
        vec![(9, 11)]
    );
}
