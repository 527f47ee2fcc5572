//! One bad batch must not halt settlement for good (issue 18, item 3), on SQLite and
//! Postgres: a malformed input is refused at intake; a batch's input can be replaced (its
//! old tasks cancelled and fenced) or the batch cancelled and submitted anew, durably; a
//! batch number far past a gap is refused, and status warns about what cannot progress.
mod support;

use proofmill_proto::v1::execute_task::Input;
use proofmill_proto::v1::{
    CancelBatchRequest, ErrorCode, JobStatusRequest, LaunchProofRequest, ReplaceBatchInputRequest,
    SystemStatusRequest, SystemStatusResponse, admin_service_client::AdminServiceClient,
    coordinator_message::Kind as Out,
};
use std::time::Duration;
use support::*;
use tonic::transport::Channel;

type Admin = AdminServiceClient<Channel>;

fn launch(batch: u64, input: Vec<u8>) -> LaunchProofRequest {
    LaunchProofRequest {
        chain_id: 0,
        batch,
        version: "v1".into(),
        input,
        public_values: public(batch).into_bytes(),
        proof_types: vec![],
    }
}

fn replace(batch: u64, input: Vec<u8>) -> ReplaceBatchInputRequest {
    ReplaceBatchInputRequest {
        chain_id: 0,
        batch,
        version: "v1".into(),
        input,
        public_values: public(batch).into_bytes(),
        proof_types: vec![],
    }
}

async fn status(admin: &mut Admin) -> SystemStatusResponse {
    admin
        .system_status(SystemStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

async fn job_state(admin: &mut Admin, batch: u64) -> String {
    let r = admin
        .job_status(JobStatusRequest {
            chain_id: 0,
            batch,
            proof_type: "exec".into(),
        })
        .await
        .unwrap()
        .into_inner();
    r.job.clone().unwrap_or_else(|| panic!("{r:?}")).state
}

fn inline(t: &proofmill_proto::v1::ExecuteTask) -> Vec<u8> {
    match &t.input {
        Some(Input::Inline(i)) => i.clone(),
        other => panic!("expected an inline input, got {other:?}"),
    }
}

/// LaunchProof of an input the backend can tell is wrong is refused with its reason, and
/// nothing is stored.
async fn malformed_input_is_refused_at_intake(db: Db) {
    let env = Env::new(db, "intake_check");
    let c = start(&env, fast_config()).await;
    let mut admin = c.admin().await;
    let mut other_root = input_for(1, 0, 0);
    other_root[14..46].copy_from_slice(&transition(7).old_state_root.0);
    for (input, reason) in [
        (b"not a batch input".to_vec(), "malformed batch input"),
        (input_for(2, 0, 0), "the input is for batch 2, not 1"),
        (other_root, "the input starts from state root"),
    ] {
        let r = admin
            .launch_proof(launch(1, input))
            .await
            .unwrap()
            .into_inner();
        let e = r.error.unwrap_or_else(|| panic!("accepted ({reason})"));
        assert_eq!(e.code, ErrorCode::InvalidArgument as i32, "{}", e.message);
        assert!(
            e.message.contains("exec backend") && e.message.contains(reason),
            "{}",
            e.message
        );
        assert!(!r.created);
    }
    let st = status(&mut admin).await;
    assert_eq!(st.last_sealed_batch, None, "a refused input stored nothing");
    let r = admin
        .launch_proof(launch(1, input_for(1, 0, 0)))
        .await
        .unwrap()
        .into_inner();
    assert!(r.created && r.error.is_none(), "{r:?}");
    c.stop().await;
}

/// ReplaceBatchInput: the running task is cancelled, its late result refused as stale, the
/// new input proven; the replacement survives a restart; a proven batch is refused.
async fn replace_fences_the_old_tasks(db: Db) {
    let env = Env::new(db, "replace");
    let c = start(&env, fast_config()).await;
    let mut admin = c.admin().await;
    let (old, new) = (input_for(1, 0, 0), input_for(1, 0, 7));
    assert!(
        admin
            .launch_proof(launch(1, old.clone()))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t1 = a.task().await;
    assert_eq!(inline(&t1), old);

    // Bad replacements change nothing.
    let r = admin
        .replace_batch_input(replace(1, b"junk".to_vec()))
        .await;
    let e = r.unwrap().into_inner().error.expect("junk refused");
    assert_eq!(e.code, ErrorCode::InvalidArgument as i32, "{}", e.message);
    let r = admin
        .replace_batch_input(replace(9, input_for(9, 0, 0)))
        .await;
    let e = r
        .unwrap()
        .into_inner()
        .error
        .expect("unknown batch refused");
    assert_eq!(e.code, ErrorCode::JobNotFound as i32, "{}", e.message);
    c.coord.flush().await.unwrap(); // The lease is sent before it is committed.
    assert_eq!(job_state(&mut admin, 1).await, "leased");

    let r = admin.replace_batch_input(replace(1, new.clone())).await;
    assert!(r.unwrap().into_inner().error.is_none());
    let tc = a.cancelled().await;
    assert_eq!(
        (tc.task_id.as_str(), tc.fencing_token),
        (t1.task_id.as_str(), t1.fencing_token)
    );
    let ack = a
        .submit(&t1.task_id, t1.fencing_token, RawProver::proof_for(&t1))
        .await;
    assert!(
        !ack.accepted,
        "a result of the old input is fenced: {ack:?}"
    );
    assert_eq!(
        ack.code,
        ErrorCode::StaleFencingToken as i32,
        "{}",
        ack.reason
    );
    let t2 = a.task().await;
    assert_eq!(inline(&t2), new, "the new input is proven");
    assert!(t2.fencing_token > t1.fencing_token);
    drop(a);
    c.stop().await;

    // Durable: after a restart the batch has the new input.
    let c = start(&env, fast_config()).await;
    let mut admin = c.admin().await;
    let mut b = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    let t3 = b.task().await;
    assert_eq!((t3.batch, inline(&t3)), (1, new.clone()));
    let ack = b
        .submit(&t3.task_id, t3.fencing_token, RawProver::proof_for(&t3))
        .await;
    assert!(ack.accepted, "{ack:?}");
    wait_for("batch 1 proven", Duration::from_secs(5), || {
        let mut admin = admin.clone();
        async move { status(&mut admin).await.last_proven_batch == Some(1) }
    })
    .await;
    let r = admin.replace_batch_input(replace(1, old.clone())).await;
    let e = r
        .unwrap()
        .into_inner()
        .error
        .expect("a proven batch is refused");
    assert_eq!(
        e.code,
        ErrorCode::FailedPrecondition as i32,
        "{}",
        e.message
    );
    assert!(e.message.contains("proven"), "{}", e.message);
    let r = admin
        .cancel_batch(CancelBatchRequest {
            chain_id: 0,
            batch: 1,
            reason: String::new(),
        })
        .await;
    let e = r
        .unwrap()
        .into_inner()
        .error
        .expect("a proven batch is not cancelled");
    assert_eq!(
        e.code,
        ErrorCode::FailedPrecondition as i32,
        "{}",
        e.message
    );
    assert_eq!(job_state(&mut admin, 1).await, "proven");
    c.stop().await;
}

/// The issue's trap: a batch whose job failed refuses its correct input ("already exists
/// with different content"). CancelBatch is the way out: after it, LaunchProof takes the
/// number anew. A leased job's prover is told and its late result refused. Durable.
async fn cancel_lets_a_batch_be_submitted_anew(db: Db) {
    let env = Env::new(db, "cancel");
    let mut cfg = fast_config();
    cfg.scheduler.max_attempts = 1;
    let c = start(&env, cfg.clone()).await;
    let mut admin = c.admin().await;
    assert!(
        admin
            .launch_proof(launch(1, input_for(1, 0, 0)))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t = a.task().await;
    assert!(
        !a.submit(&t.task_id, t.fencing_token, vec![1; 96])
            .await
            .accepted
    );
    assert_eq!(job_state(&mut admin, 1).await, "failed");
    let fixed = input_for(1, 0, 3);
    let r = admin
        .launch_proof(launch(1, fixed.clone()))
        .await
        .unwrap()
        .into_inner();
    let e = r
        .error
        .expect("a different input of a known batch is refused");
    assert!(e.message.contains("already exists"), "{}", e.message);

    // Batch 2 is leased when it is cancelled: its prover is told, its result refused.
    assert!(
        admin
            .launch_proof(launch(2, input_for(2, 0, 0)))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    let t2 = a.task().await;
    assert_eq!(t2.batch, 2);
    let r = admin
        .cancel_batch(CancelBatchRequest {
            chain_id: 0,
            batch: 2,
            reason: "wrong input".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.cancelled, r.error), (1, None));
    let tc = a.cancelled().await;
    assert_eq!(tc.fencing_token, t2.fencing_token);
    assert!(tc.reason.contains("wrong input"), "{}", tc.reason);
    let ack = a
        .submit(&t2.task_id, t2.fencing_token, RawProver::proof_for(&t2))
        .await;
    assert!(!ack.accepted, "{ack:?}");
    assert_eq!(
        ack.code,
        ErrorCode::StaleFencingToken as i32,
        "{}",
        ack.reason
    );
    let r = admin
        .cancel_batch(CancelBatchRequest {
            chain_id: 0,
            batch: 1,
            reason: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (r.cancelled, r.error),
        (1, None),
        "the failed job is cancelled"
    );
    assert_eq!(job_state(&mut admin, 1).await, "cancelled");
    assert_eq!(status(&mut admin).await.jobs["exec"].cancelled, 2);
    drop(a);
    c.stop().await;

    // After a restart both stay cancelled (nothing dispatched), and take new inputs.
    let c = start(&env, cfg).await;
    let mut admin = c.admin().await;
    let mut b = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    match b.next(Duration::from_millis(500)).await {
        Some(Out::ExecuteTask(t)) => panic!("a cancelled batch was dispatched: {}", t.task_id),
        _ => assert!(b.pending.is_empty()),
    }
    let r = admin
        .launch_proof(launch(1, fixed.clone()))
        .await
        .unwrap()
        .into_inner();
    assert!(r.created && r.error.is_none(), "{r:?}");
    let t = b.task().await;
    assert_eq!((t.batch, inline(&t)), (1, fixed));
    assert!(
        b.submit(&t.task_id, t.fencing_token, RawProver::proof_for(&t))
            .await
            .accepted
    );
    let r = admin
        .launch_proof(launch(2, input_for(2, 0, 5)))
        .await
        .unwrap()
        .into_inner();
    assert!(r.created && r.error.is_none(), "{r:?}");
    let t = b.task().await;
    assert!(
        b.submit(&t.task_id, t.fencing_token, RawProver::proof_for(&t))
            .await
            .accepted
    );
    wait_for("batches 1 and 2 proven", Duration::from_secs(5), || {
        let mut admin = admin.clone();
        async move { status(&mut admin).await.last_proven_batch == Some(2) }
    })
    .await;
    c.stop().await;
}

/// A batch more than the intake window past the gap-free run is refused; a gap within it
/// is accepted and shown in status, as are versions and proof types no prover serves.
async fn gaps_and_unserved_work_are_refused_or_warned(db: Db) {
    let env = Env::new(db, "window");
    let mut cfg = fast_config();
    cfg.intake_window = 10;
    let c = start(&env, cfg).await;
    let mut admin = c.admin().await;
    assert!(
        admin
            .launch_proof(launch(1, input_for(1, 0, 0)))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    let r = admin
        .launch_proof(launch(12, input_for(12, 0, 0)))
        .await
        .unwrap()
        .into_inner();
    let e = r.error.expect("batch 12 is beyond the window");
    assert_eq!(e.code, ErrorCode::InvalidArgument as i32, "{}", e.message);
    assert!(e.message.contains("intake window"), "{}", e.message);
    assert!(
        admin
            .launch_proof(launch(11, input_for(11, 0, 0)))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    // 12 is still refused: the run ends at 1, whatever came in above it.
    let r = admin
        .launch_proof(launch(12, input_for(12, 0, 0)))
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_some(), "{r:?}");

    let st = status(&mut admin).await;
    assert_eq!(st.intake_window, 10);
    let kinds: Vec<(&str, u64, u64)> = st
        .warnings
        .iter()
        .map(|w| (w.kind.as_str(), w.first_batch, w.last_batch))
        .collect();
    assert_eq!(
        kinds,
        vec![("unserved_proof_type", 1, 11), ("batch_gap", 2, 10)],
        "{:#?}",
        st.warnings
    );
    // A prover of another version: the proof type is served, the version is not.
    let mut reg = register("v2", &["exec"], 1);
    reg.version = "v2".into();
    let _v2 = RawProver::register(&c.url(), reg).await;
    let st = status(&mut admin).await;
    let w = &st.warnings[0];
    assert_eq!(
        (w.kind.as_str(), w.version.as_str(), w.proof_type.as_str()),
        ("unserved_version", "v1", "exec"),
        "{:#?}",
        st.warnings
    );
    assert!(w.message.contains("v2"), "{}", w.message);
    // Filling the gap clears its warning.
    for n in 2..=10 {
        assert!(
            admin
                .launch_proof(launch(n, input_for(n, 0, 0)))
                .await
                .unwrap()
                .into_inner()
                .created
        );
    }
    let st = status(&mut admin).await;
    assert!(
        st.warnings.iter().all(|w| w.kind != "batch_gap"),
        "{:#?}",
        st.warnings
    );
    assert!(
        admin
            .launch_proof(launch(21, input_for(21, 0, 0)))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    c.stop().await;
}

on_both_stores!(
    malformed_input_is_refused_at_intake,
    replace_fences_the_old_tasks,
    cancel_lets_a_batch_be_submitted_anew,
    gaps_and_unserved_work_are_refused_or_warned,
);
