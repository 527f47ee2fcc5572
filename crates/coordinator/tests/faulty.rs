//! One faulty prover, one bad batch or one killed prover, against a real coordinator on a
//! loopback socket, on SQLite and Postgres: the rest of the fleet keeps proving.
mod support;

use proofmill_proto::v1::{
    ErrorCode, ExecuteTask, ProversListRequest, SystemStatusRequest, TaskResult,
    coordinator_message::Kind as Out, prover_message::Kind as In, task_result::Outcome,
};
use proofmill_types::{JobKey, JobState, ProofType};
use std::time::Duration;
use support::*;

fn key(b: u64) -> JobKey {
    JobKey::new(
        proofmill_types::DEFAULT_CHAIN,
        b,
        ProofType::new("exec").unwrap(),
    )
}

/// Fast retries, but heartbeats slow enough that a prover the test is not driving at the
/// moment is not declared dead.
fn patient_config() -> proofmill_coordinator::CoordinatorConfig {
    let mut c = fast_config();
    c.scheduler.heartbeat_interval_ms = 5_000;
    c
}

/// Sends the correct proof of `t` and expects it accepted.
async fn prove(p: &mut RawProver, t: &ExecuteTask) {
    let ack = p
        .submit(&t.task_id, t.fencing_token, RawProver::proof_for(t))
        .await;
    assert!(ack.accepted, "{}", ack.reason);
}

fn batch_of(task_id: &str) -> u64 {
    task_id.split('/').next().unwrap().parse().unwrap()
}

/// The outside tester's garbage prover got the same two jobs five times each, both jobs were
/// marked failed after 18 s and settlement stopped for good.
async fn a_garbage_prover_is_routed_around_and_cordoned(db: Db) {
    let env = Env::new(db, "garbage");
    let c = start(&env, patient_config()).await;
    for n in 1..=6 {
        submit(&c.coord, n, &[]).await;
    }
    // The good prover takes batch 1 and holds it, so the garbage prover gets the next ones.
    let mut good = RawProver::register(&c.url(), register("good", &["exec"], 1)).await;
    let held = good.task().await;
    assert_eq!(batch_of(&held.task_id), 1);
    let mut bad = RawProver::register(&c.url(), register("bad", &["exec"], 1)).await;
    let mut given_to_bad = Vec::new();
    for _ in 0..3 {
        let t = bad.task().await;
        given_to_bad.push(batch_of(&t.task_id));
        let ack = bad
            .submit(&t.task_id, t.fencing_token, b"garbage".to_vec())
            .await;
        assert!(!ack.accepted);
        assert_eq!(ack.code, ErrorCode::InvalidProof as i32, "{}", ack.reason);
    }
    assert_eq!(
        given_to_bad,
        [2, 3, 4],
        "never a batch it already failed while another prover can take it"
    );
    // Three invalid proofs in a row: out of rotation, by itself.
    assert!(
        bad.next(Duration::from_millis(800)).await.is_none(),
        "a cordoned prover gets no new task"
    );
    // The good prover proves everything, the failed batches included; nothing is failed.
    let mut proven = vec![batch_of(&held.task_id)];
    prove(&mut good, &held).await;
    while proven.len() < 6 {
        let t = good.task().await;
        proven.push(batch_of(&t.task_id));
        prove(&mut good, &t).await;
    }
    proven.sort();
    assert_eq!(proven, [1, 2, 3, 4, 5, 6]);
    for n in 1..=6 {
        let job = c.coord.store().job(&key(n)).await.unwrap().unwrap();
        assert_eq!(job.state, JobState::Proven, "{job:?}");
    }
    let mut admin = c.admin().await;
    let st = admin
        .system_status(SystemStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.last_proven_batch, Some(6));
    let provers = admin
        .provers_list(ProversListRequest {})
        .await
        .unwrap()
        .into_inner()
        .provers;
    let bad_view = provers.iter().find(|p| p.id == bad.id).unwrap();
    let good_view = provers.iter().find(|p| p.id == good.id).unwrap();
    assert!(bad_view.cordoned, "{bad_view:?}");
    assert!(
        bad_view.cordon_reason.contains("3 invalid proofs in a row"),
        "{bad_view:?}"
    );
    assert_eq!((bad_view.invalid_proofs, bad_view.proofs_accepted), (3, 0));
    assert_eq!(
        (
            good_view.invalid_proofs,
            good_view.proofs_accepted,
            good_view.cordoned
        ),
        (0, 6, false)
    );
    // Durable with its reason, as an operator's cordon is.
    let stored = c.coord.store().cordoned_provers().await.unwrap();
    assert!(
        stored
            .iter()
            .any(|(id, why)| id.0 == bad.id && why.contains("invalid proofs")),
        "{stored:?}"
    );
    c.stop().await;
}

/// A malformed batch fails on every prover: after three different provers it is the
/// batch's fault, said so, and the job stops using up the fleet.
async fn a_batch_that_fails_on_several_provers_is_failed_with_the_reason(db: Db) {
    let env = Env::new(db, "bad-batch");
    let c = start(&env, patient_config()).await;
    submit(&c.coord, 1, &[]).await;
    let mut provers = Vec::new();
    for name in ["p1", "p2", "p3", "p4"] {
        provers.push(RawProver::register(&c.url(), register(name, &["exec"], 1)).await);
    }
    let mut failed_on = Vec::new();
    for _ in 0..3 {
        // Whoever holds the job now reports it cannot prove it.
        let mut holder = None;
        for (i, p) in provers.iter_mut().enumerate() {
            if failed_on.contains(&i) {
                continue;
            }
            if let Some(Out::ExecuteTask(t)) = p.next(Duration::from_millis(300)).await {
                holder = Some((i, t));
                break;
            }
        }
        let (i, t) = holder.expect("the job went to a prover that has not failed it");
        failed_on.push(i);
        provers[i]
            .send(In::TaskResult(TaskResult {
                task_id: t.task_id.clone(),
                fencing_token: t.fencing_token,
                outcome: Some(Outcome::Error("input does not parse".into())),
                prove_ms: 1,
            }))
            .await;
        assert!(
            provers[i]
                .ack_for(&t.task_id, t.fencing_token)
                .await
                .accepted
        );
    }
    let job = c.coord.store().job(&key(1)).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Failed, "{job:?}");
    let why = job.last_error.unwrap_or_default();
    assert!(
        why.contains("3 different provers")
            && why.contains("batch")
            && why.contains("input does not parse"),
        "{why}"
    );
    // The fourth prover is not handed it.
    let last = provers
        .iter_mut()
        .enumerate()
        .find(|(i, _)| !failed_on.contains(i));
    let (_, p4) = last.unwrap();
    let next = p4.next(Duration::from_millis(500)).await;
    assert!(next.is_none(), "{next:?}");
    c.stop().await;
}

/// A killed prover's stream closes at once: its lease goes back after the reconnect grace,
/// not after three missed heartbeats.
async fn a_killed_provers_lease_returns_after_the_grace_not_the_heartbeats(db: Db) {
    let env = Env::new(db, "grace");
    let mut cfg = fast_config();
    cfg.scheduler.heartbeat_interval_ms = 5_000; // liveness: 15 s
    cfg.scheduler.reconnect_grace_ms = 300;
    let c = start(&env, cfg).await;
    submit(&c.coord, 1, &[]).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t = a.task().await;
    let mut b = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    drop(a); // the stream closes, as when the process is killed
    let started = std::time::Instant::now();
    let again = match b.next(Duration::from_secs(5)).await {
        Some(Out::ExecuteTask(again)) => again,
        other => panic!("batch 1 not handed to b within 5 s: {other:?}"),
    };
    assert_eq!(again.task_id, t.task_id);
    assert!(again.fencing_token > t.fencing_token);
    assert!(started.elapsed() < Duration::from_secs(5));
    c.coord.flush().await.unwrap();
    let job = c.coord.store().job(&key(1)).await.unwrap().unwrap();
    assert!(
        job.last_error
            .unwrap_or_default()
            .contains("did not reconnect"),
        "the reason is recorded"
    );
    c.stop().await;
}

/// A prover that heart-beats and never answers held the oldest batch, and settlement, for
/// `--prover-timeout` (10 minutes).
async fn a_hung_provers_task_gets_a_backup_copy_that_wins(db: Db) {
    let env = Env::new(db, "straggler");
    let c = start(&env, patient_config()).await;
    for n in 1..=5 {
        submit(&c.coord, n, &[]).await;
    }
    // The normal duration of `exec`: a few ms.
    let mut good = RawProver::register(&c.url(), register("good", &["exec"], 1)).await;
    for _ in 1..=5 {
        let t = good.task().await;
        prove(&mut good, &t).await;
    }
    let mut hung = RawProver::register(&c.url(), register("hung", &["exec"], 1)).await;
    submit(&c.coord, 6, &[]).await;
    let held = hung.task().await;
    assert_eq!(batch_of(&held.task_id), 6, "the prover that waited longest");
    let started = std::time::Instant::now();
    // The good prover is idle: after about a second it gets a backup copy of batch 6.
    let backup = good.task().await;
    assert_eq!(backup.task_id, held.task_id);
    assert!(backup.fencing_token > held.fencing_token);
    prove(&mut good, &backup).await;
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    // The hung copy is told to stop, and its late proof counts nothing.
    match hung.next(Duration::from_secs(5)).await {
        Some(Out::TaskCancelled(tc)) => {
            assert_eq!(
                (tc.task_id, tc.fencing_token),
                (held.task_id.clone(), held.fencing_token)
            )
        }
        other => panic!("expected TaskCancelled, got {other:?}"),
    }
    let late = hung
        .submit(
            &held.task_id,
            held.fencing_token,
            RawProver::proof_for(&held),
        )
        .await;
    assert_eq!(late.code, ErrorCode::StaleFencingToken as i32, "{late:?}");
    let proof = c.coord.store().proof(&key(6)).await.unwrap().unwrap();
    assert_eq!(proof.token.0, backup.fencing_token);
    let mut admin = c.admin().await;
    let st = admin
        .system_status(SystemStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.last_proven_batch, Some(6));
    let hung_view = st.provers.iter().find(|p| p.id == hung.id).unwrap();
    assert_eq!((hung_view.superseded, hung_view.proofs_accepted), (1, 0));
    c.stop().await;
}

on_both_stores!(
    a_hung_provers_task_gets_a_backup_copy_that_wins,
    a_garbage_prover_is_routed_around_and_cordoned,
    a_batch_that_fails_on_several_provers_is_failed_with_the_reason,
    a_killed_provers_lease_returns_after_the_grace_not_the_heartbeats,
);
