//! An operator's pauses against a real coordinator, on SQLite and Postgres: dispatch paused
//! holds jobs queued (and results still count) across a restart, intake paused refuses
//! launches, bad names and reasons change nothing, and the settlement steps say why they
//! cannot run where no settlement runs.
mod support;

use proofmill_proto::v1::{
    CommitNowRequest, ErrorCode, LaunchProofRequest, PauseComponentRequest, ResumeComponentRequest,
    SettleNowRequest, SystemStatusRequest, SystemStatusResponse, coordinator_message::Kind as Out,
};
use std::time::Duration;
use support::*;

type Admin =
    proofmill_proto::v1::admin_service_client::AdminServiceClient<tonic::transport::Channel>;

fn launch(batch: u64) -> LaunchProofRequest {
    LaunchProofRequest {
        chain_id: 0,
        batch,
        version: "v1".into(),
        input: input_for(batch, 0, 0),
        public_values: public(batch).into_bytes(),
        proof_types: vec![],
    }
}

fn pause(component: &str, reason: &str) -> PauseComponentRequest {
    PauseComponentRequest {
        component: component.into(),
        reason: reason.into(),
    }
}

fn resume(component: &str) -> ResumeComponentRequest {
    ResumeComponentRequest {
        component: component.into(),
    }
}

async fn status(admin: &mut Admin) -> SystemStatusResponse {
    admin
        .system_status(SystemStatusRequest {})
        .await
        .unwrap()
        .into_inner()
}

fn paused_names(s: &SystemStatusResponse) -> Vec<(String, String)> {
    s.paused
        .iter()
        .map(|p| (p.component.clone(), p.reason.clone()))
        .collect()
}

/// No task message within `within` (heartbeats are answered meanwhile).
async fn no_task(p: &mut RawProver, within: Duration) {
    match p.next(within).await {
        None => {}
        Some(Out::ExecuteTask(t)) => panic!("a task went out while dispatch is paused: {t:?}"),
        Some(_) => {}
    }
}

async fn dispatch_pause_holds_jobs_across_a_restart(db: Db) {
    let env = Env::new(db, "pause_dispatch");
    let c = start(&env, fast_config()).await;
    let mut admin = c.admin().await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 2)).await;
    assert!(
        admin
            .launch_proof(launch(1))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    let t1 = a.task().await;

    let r = admin
        .pause_component(pause("dispatch", "prover maintenance"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.changed && r.error.is_none(), "{r:?}");
    let first = r.pause.unwrap();
    assert_eq!(
        (first.component.as_str(), first.reason.as_str()),
        ("dispatch", "prover maintenance")
    );
    // Again: idempotent, the pause in force reported unchanged.
    let again = admin
        .pause_component(pause("dispatch", "another reason"))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed && again.error.is_none(), "{again:?}");
    assert_eq!(again.pause.unwrap(), first);

    // New work waits; the running task's result still counts.
    assert!(
        admin
            .launch_proof(launch(2))
            .await
            .unwrap()
            .into_inner()
            .created
    );
    no_task(&mut a, Duration::from_millis(600)).await;
    let ack = a
        .submit(&t1.task_id, t1.fencing_token, RawProver::proof_for(&t1))
        .await;
    assert!(ack.accepted, "{ack:?}");
    no_task(&mut a, Duration::from_millis(300)).await;
    let s = status(&mut admin).await;
    assert_eq!(s.jobs["exec"].queued, 1, "{s:?}");
    assert_eq!(s.jobs["exec"].proven, 1, "{s:?}");
    assert_eq!(
        paused_names(&s),
        [("dispatch".into(), "prover maintenance".into())]
    );
    assert_eq!(s.paused[0].since_ms, first.since_ms);

    // A restart keeps it paused: a prover connecting to the new run gets nothing.
    drop(a);
    c.stop().await;
    let c = start(&env, fast_config()).await;
    let mut admin = c.admin().await;
    let s = status(&mut admin).await;
    assert_eq!(
        paused_names(&s),
        [("dispatch".into(), "prover maintenance".into())],
        "kept across the restart"
    );
    assert_eq!(s.paused[0].since_ms, first.since_ms);
    let mut b = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    no_task(&mut b, Duration::from_millis(600)).await;

    // Resumed, the queued job goes out at once.
    let r = admin
        .resume_component(resume("dispatch"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.changed && r.error.is_none(), "{r:?}");
    let t2 = tokio::time::timeout(Duration::from_secs(5), b.task())
        .await
        .expect("the queued job is dispatched on resume");
    assert!(t2.task_id.starts_with("2/"), "{}", t2.task_id);
    let r = admin
        .resume_component(resume("dispatch"))
        .await
        .unwrap()
        .into_inner();
    assert!(!r.changed && r.error.is_none(), "resuming twice: {r:?}");
    assert!(status(&mut admin).await.paused.is_empty());
    drop(b);
    c.stop().await;
    // And the resume is durable too.
    let c = start(&env, fast_config()).await;
    assert!(c.coord.pauses().all().is_empty());
    c.stop().await;
}

async fn intake_pause_refuses_launches_and_bad_input_changes_nothing(db: Db) {
    let env = Env::new(db, "pause_intake");
    let c = start(&env, fast_config()).await;
    let mut admin = c.admin().await;
    let r = admin
        .pause_component(pause("intake", "chain reorg"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.changed, "{r:?}");
    let e = admin
        .launch_proof(launch(1))
        .await
        .unwrap()
        .into_inner()
        .error
        .expect("refused while intake is paused");
    assert_eq!(
        e.code,
        ErrorCode::FailedPrecondition as i32,
        "{}",
        e.message
    );
    assert!(
        e.message.contains("intake is paused (chain reorg)")
            && e.message.contains("resume --component intake"),
        "{}",
        e.message
    );
    assert_eq!(status(&mut admin).await.last_sealed_batch, None);

    // Unknown names and bad reasons: INVALID_ARGUMENT, listing what is valid; nothing changes.
    for bad in [pause("prover", ""), pause("", ""), pause("Sender", "")] {
        let e = admin.pause_component(bad).await.unwrap().into_inner();
        let err = e.error.expect("refused");
        assert_eq!(
            err.code,
            ErrorCode::InvalidArgument as i32,
            "{}",
            err.message
        );
        assert!(
            err.message
                .contains("one of sender, committer, sealing, intake, dispatch"),
            "{}",
            err.message
        );
        assert!(!e.changed && e.pause.is_none());
    }
    let e = admin
        .resume_component(resume("everything"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(e.error.unwrap().code, ErrorCode::InvalidArgument as i32);
    for reason in ["bad\nreason".to_string(), "x".repeat(1025)] {
        let e = admin
            .pause_component(pause("sender", &reason))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(e.error.unwrap().code, ErrorCode::InvalidArgument as i32);
    }
    assert_eq!(
        paused_names(&status(&mut admin).await),
        [("intake".into(), "chain reorg".into())]
    );

    // No settlement runs here: the steps say so.
    let e = admin
        .settle_now(SettleNowRequest {})
        .await
        .unwrap()
        .into_inner()
        .error
        .unwrap();
    assert_eq!(e.code, ErrorCode::FailedPrecondition as i32);
    assert!(e.message.contains("not running"), "{}", e.message);
    let e = admin
        .commit_now(CommitNowRequest { batch: 1 })
        .await
        .unwrap()
        .into_inner()
        .error
        .unwrap();
    assert_eq!(
        e.code,
        ErrorCode::FailedPrecondition as i32,
        "{}",
        e.message
    );
    let e = admin
        .commit_now(CommitNowRequest { batch: 0 })
        .await
        .unwrap()
        .into_inner()
        .error
        .unwrap();
    assert_eq!(e.code, ErrorCode::InvalidArgument as i32, "{}", e.message);
    // A paused sender is named first.
    assert!(
        admin
            .pause_component(pause("sender", ""))
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    let e = admin
        .settle_now(SettleNowRequest {})
        .await
        .unwrap()
        .into_inner()
        .error
        .unwrap();
    assert_eq!(e.code, ErrorCode::FailedPrecondition as i32);
    assert!(
        e.message.contains("the proof sender is paused"),
        "{}",
        e.message
    );

    // Resumed, launches are taken again.
    assert!(
        admin
            .resume_component(resume("intake"))
            .await
            .unwrap()
            .into_inner()
            .changed
    );
    let r = admin.launch_proof(launch(1)).await.unwrap().into_inner();
    assert!(r.created && r.error.is_none(), "{r:?}");
    assert_eq!(
        paused_names(&status(&mut admin).await),
        [("sender".into(), String::new())]
    );
    c.stop().await;
}

on_both_stores!(
    dispatch_pause_holds_jobs_across_a_restart,
    intake_pause_refuses_launches_and_bad_input_changes_nothing,
);
