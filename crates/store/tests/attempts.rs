//! The job history (`Change::AttemptStarted`, `Change::AttemptEnded`, `Store::attempts`,
//! `Store::prune_attempts`): one row per attempt, written with the job rows of the same
//! `apply`, read back per batch or job, pruned once old. On SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::*;
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::{Attempt, AttemptOutcome, FencingToken, ProverId};

store_test!(
    attempts_start_end_and_read_back,
    an_attempt_ends_once_and_unknown_ends_change_nothing,
    old_ended_attempts_are_pruned_running_ones_kept,
    an_attempt_is_written_with_its_lease_or_not_at_all,
);

fn started(k: JobKey, token: u64, at: u64, backup: bool) -> Attempt {
    Attempt {
        key: k,
        token: FencingToken(token),
        prover: ProverId(format!("prv-{token}")),
        prover_name: format!("p{token}"),
        backup,
        started_at: at,
        ended_at: None,
        outcome: None,
        detail: String::new(),
        prove_ms: None,
    }
}

fn ended(token: u64, at: u64, outcome: AttemptOutcome, detail: &str) -> Change {
    Change::AttemptEnded {
        token: FencingToken(token),
        at,
        outcome,
        detail: detail.into(),
        prove_ms: (outcome == AttemptOutcome::Proven).then_some(42),
    }
}

async fn attempts_start_end_and_read_back(store: Arc<dyn Store>, _: &str) {
    insert_all(store.as_ref(), [1], &["exec", "stark"]).await;
    insert_all(store.as_ref(), [2], &["exec"]).await;
    let (a, b) = (key(1, "exec"), key(1, "stark"));
    // Begun and ended in one apply (a fast proof), and across applies.
    store
        .apply(&[
            Change::Job(leased(a.clone(), 1, 10)),
            Change::AttemptStarted(started(a.clone(), 1, 10, false)),
            Change::AttemptStarted(started(b.clone(), 2, 11, false)),
            ended(1, 20, AttemptOutcome::Failed, "out of memory"),
        ])
        .await
        .unwrap();
    store
        .apply(&[
            Change::AttemptStarted(started(a.clone(), 3, 30, false)),
            Change::AttemptStarted(started(a.clone(), 4, 35, true)),
            Change::AttemptStarted(started(key(2, "exec"), 5, 36, false)),
        ])
        .await
        .unwrap();
    store
        .apply(&[
            ended(4, 40, AttemptOutcome::Proven, ""),
            ended(
                3,
                40,
                AttemptOutcome::Superseded,
                "another copy finished first",
            ),
        ])
        .await
        .unwrap();
    let of_a = store
        .attempts(DEFAULT_CHAIN, 1, Some(&pt("exec")), 100)
        .await
        .unwrap();
    let tokens: Vec<u64> = of_a.iter().map(|t| t.token.0).collect();
    assert_eq!(tokens, vec![1, 3, 4], "in the order they began");
    assert_eq!(
        of_a[0],
        Attempt {
            ended_at: Some(20),
            outcome: Some(AttemptOutcome::Failed),
            detail: "out of memory".into(),
            ..started(a.clone(), 1, 10, false)
        }
    );
    assert_eq!(
        (of_a[2].backup, of_a[2].outcome, of_a[2].prove_ms),
        (true, Some(AttemptOutcome::Proven), Some(42))
    );
    let of_batch = store.attempts(DEFAULT_CHAIN, 1, None, 100).await.unwrap();
    assert_eq!(of_batch.len(), 4, "both jobs of batch 1, not batch 2");
    let running = of_batch.iter().find(|t| t.token.0 == 2).unwrap();
    assert_eq!((running.ended_at, running.outcome), (None, None));
    assert_eq!(
        store
            .attempts(DEFAULT_CHAIN, 1, None, 2)
            .await
            .unwrap()
            .len(),
        2,
        "limit"
    );
    assert!(
        store
            .attempts(DEFAULT_CHAIN, 9, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .attempts(DEFAULT_CHAIN, u64::MAX, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn an_attempt_ends_once_and_unknown_ends_change_nothing(store: Arc<dyn Store>, _: &str) {
    insert_all(store.as_ref(), [1], &["exec"]).await;
    let a = key(1, "exec");
    store
        .apply(&[Change::AttemptStarted(started(a.clone(), 7, 1, false))])
        .await
        .unwrap();
    // Started again (a replayed group): nothing changes.
    store
        .apply(&[
            Change::AttemptStarted(started(a.clone(), 7, 99, true)),
            ended(7, 5, AttemptOutcome::Lost, "prover missed its heartbeats"),
            ended(8, 5, AttemptOutcome::Proven, "no such attempt"),
        ])
        .await
        .unwrap();
    store
        .apply(&[ended(7, 6, AttemptOutcome::Proven, "too late")])
        .await
        .unwrap();
    let all = store.attempts(DEFAULT_CHAIN, 1, None, 10).await.unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(
        (
            all[0].started_at,
            all[0].backup,
            all[0].ended_at,
            all[0].outcome
        ),
        (1, false, Some(5), Some(AttemptOutcome::Lost)),
        "the first start and the first end stay"
    );
    assert_eq!(all[0].detail, "prover missed its heartbeats");
}

async fn old_ended_attempts_are_pruned_running_ones_kept(store: Arc<dyn Store>, _: &str) {
    insert_all(store.as_ref(), [1], &["exec"]).await;
    let a = key(1, "exec");
    let mut changes = Vec::new();
    for t in 1..=5 {
        changes.push(Change::AttemptStarted(started(a.clone(), t, t, false)));
    }
    for t in 1..=4 {
        changes.push(ended(t, t * 100, AttemptOutcome::Failed, "boom"));
    }
    store.apply(&changes).await.unwrap();
    // Ended before 350: tokens 1, 2, 3; at most 2 per call, oldest first.
    assert_eq!(store.prune_attempts(350, 2).await.unwrap(), 2);
    let left: Vec<u64> = store
        .attempts(DEFAULT_CHAIN, 1, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|t| t.token.0)
        .collect();
    assert_eq!(left, vec![3, 4, 5]);
    assert_eq!(store.prune_attempts(350, 100).await.unwrap(), 1);
    assert_eq!(store.prune_attempts(u64::MAX, 100).await.unwrap(), 1);
    let left = store.attempts(DEFAULT_CHAIN, 1, None, 10).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].token.0, left[0].ended_at),
        (5, None),
        "running kept"
    );
}

async fn an_attempt_is_written_with_its_lease_or_not_at_all(store: Arc<dyn Store>, _: &str) {
    insert_all(store.as_ref(), [1], &["exec"]).await;
    // The job of batch 9 does not exist: the whole apply fails, the attempt with it.
    let err = store
        .apply(&[
            Change::AttemptStarted(started(key(1, "exec"), 1, 1, false)),
            Change::Job(leased(key(9, "exec"), 1, 1)),
        ])
        .await;
    assert!(err.is_err());
    assert!(
        store
            .attempts(DEFAULT_CHAIN, 1, None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let nul = Change::AttemptEnded {
        token: FencingToken(1),
        at: 1,
        outcome: AttemptOutcome::Failed,
        detail: "a\0b".into(),
        prove_ms: None,
    };
    assert!(matches!(
        store.apply(&[nul]).await,
        Err(proofmill_store::StoreError::Unstorable(_))
    ));
}
