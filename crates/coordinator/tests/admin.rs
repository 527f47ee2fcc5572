//! The admin API and server reflection against a real coordinator, on SQLite and Postgres:
//! batch submission and its validation, job status, retries of failed jobs.
mod support;

use proofmill_proto::v1::{
    CancelJobRequest, CordonProverRequest, ErrorCode, JobStatusRequest, JobsListRequest,
    LaunchProofRequest, ProversListRequest, RetryJobRequest, SystemStatusRequest,
    coordinator_message::Kind as Out,
};
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::ProverId;
use support::*;

async fn admin_api_validates_and_retries(db: Db) {
    let env = Env::new(db, "admin");
    let mut cfg = fast_config();
    cfg.scheduler.max_attempts = 1;
    let c = start(&env, cfg).await;
    let mut admin = c.admin().await;
    let launch = |batch: u64, public: Vec<u8>, types: Vec<String>| LaunchProofRequest {
        chain_id: 0,
        batch,
        version: "v1".into(),
        input: input_for(batch, 0, 0),
        public_values: public,
        proof_types: types,
    };
    let good = public(1).into_bytes();
    let r = admin
        .launch_proof(launch(1, good.clone(), vec![]))
        .await
        .unwrap()
        .into_inner();
    assert!(r.created && r.error.is_none(), "{r:?}");
    let r = admin
        .launch_proof(launch(1, good.clone(), vec![]))
        .await
        .unwrap()
        .into_inner();
    assert!(
        !r.created && r.error.is_none(),
        "same batch again is a no-op: {r:?}"
    );
    let bad_cases = vec![
        launch(1, public(9).into_bytes(), vec![]),
        launch(2, vec![1, 2, 3], vec![]),
        launch(2, good.clone(), vec!["groth16".into()]),
        launch(0, good.clone(), vec![]),
        LaunchProofRequest {
            input: vec![],
            ..launch(2, good.clone(), vec![])
        },
    ];
    for case in bad_cases {
        let r = admin.launch_proof(case.clone()).await.unwrap().into_inner();
        let e = r.error.unwrap_or_else(|| panic!("{case:?} accepted"));
        assert_eq!(e.code, ErrorCode::InvalidArgument as i32, "{}", e.message);
    }
    let st = admin
        .system_status(SystemStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(st.last_sealed_batch, Some(1), "bad launches stored nothing");
    assert_eq!(st.jobs["exec"].queued, 1);

    let r = admin
        .job_status(JobStatusRequest {
            chain_id: 0,
            batch: 7,
            proof_type: "exec".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error.unwrap().code, ErrorCode::JobNotFound as i32);
    let r = admin
        .retry_job(RetryJobRequest {
            chain_id: 0,
            batch: 1,
            proof_type: "exec".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.error.unwrap().code,
        ErrorCode::FailedPrecondition as i32,
        "queued jobs are not retried"
    );

    // One failure with max_attempts = 1: failed and visible; a retry requeues it.
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t = a.task().await;
    assert!(
        !a.submit(&t.task_id, t.fencing_token, vec![1; 96])
            .await
            .accepted
    );
    let r = admin
        .job_status(JobStatusRequest {
            chain_id: 0,
            batch: 1,
            proof_type: "exec".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let job = r.job.unwrap();
    assert_eq!(job.state, "failed");
    assert!(job.last_error.contains("invalid proof"));
    let r = admin
        .retry_job(RetryJobRequest {
            chain_id: 0,
            batch: 1,
            proof_type: "exec".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(r.error.is_none(), "{r:?}");
    let t2 = a.task().await;
    assert!(
        a.submit(&t2.task_id, t2.fencing_token, RawProver::proof_for(&t2))
            .await
            .accepted
    );
    c.stop().await;
}

on_both_stores!(admin_api_validates_and_retries);

/// A cordoned prover finishes (and is credited for) the task it runs but gets no new one
/// until it is put back; other provers are unaffected. A prover is named by its id, or by
/// its name when no other prover has it. An unknown id is PROVER_UNAVAILABLE.
async fn cordon_takes_a_prover_out_of_rotation(db: Db) {
    let env = Env::new(db, "cordon");
    let c = start(&env, fast_config()).await;
    let mut admin = c.admin().await;
    let cordon = |id: &str, on: bool| CordonProverRequest {
        prover_id: id.into(),
        cordoned: on,
    };
    let code = |r: proofmill_proto::v1::CordonProverResponse| r.error.map(|e| e.code);
    let r = admin.cordon_prover(cordon("prv-nobody", true)).await;
    assert_eq!(
        code(r.unwrap().into_inner()),
        Some(ErrorCode::ProverUnavailable as i32)
    );
    let r = admin.cordon_prover(cordon("", true)).await;
    assert_eq!(
        code(r.unwrap().into_inner()),
        Some(ErrorCode::InvalidArgument as i32)
    );

    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    submit(&c.coord, 1, &[]).await;
    let t1 = a.task().await;
    let r = admin.cordon_prover(cordon(&a.id, true)).await;
    assert_eq!(code(r.unwrap().into_inner()), None);
    let listed = admin
        .provers_list(ProversListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.provers.iter().any(|p| p.id == a.id && p.cordoned));

    submit(&c.coord, 2, &[]).await;
    assert!(
        a.submit(&t1.task_id, t1.fencing_token, RawProver::proof_for(&t1))
            .await
            .accepted
    );
    match a.next(std::time::Duration::from_millis(600)).await {
        Some(Out::ExecuteTask(t)) => panic!("a cordoned prover got {}", t.task_id),
        _ => assert!(a.pending.is_empty()),
    }
    // Another prover takes the waiting batch... until a is back, which gets the next one.
    let mut b = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    assert_eq!(b.task().await.batch, 2);
    // By name, when one prover has it.
    let r = admin.cordon_prover(cordon("a", false)).await;
    assert_eq!(code(r.unwrap().into_inner()), None);
    submit(&c.coord, 3, &[]).await;
    assert_eq!(a.task().await.batch, 3);
    // A name two provers have is refused, naming both ids; neither is cordoned.
    let b2 = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    let r = admin
        .cordon_prover(cordon("b", true))
        .await
        .unwrap()
        .into_inner();
    let e = r.error.expect("an ambiguous name is refused");
    assert_eq!(e.code, ErrorCode::ProverUnavailable as i32);
    assert!(
        e.message.contains(&b.id) && e.message.contains(&b2.id),
        "{}",
        e.message
    );
    let listed = admin
        .provers_list(ProversListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.provers.iter().all(|p| !p.cordoned));
    c.stop().await;
}

on_both_stores!(cordon_takes_a_prover_out_of_rotation);

/// Submissions run in parallel: racing submissions of one number with different inputs
/// leave exactly one winner whose input blob is the one stored (both write the same blob
/// key), and distinct numbers all go in.
async fn concurrent_submissions(db: Db) {
    use proofmill_coordinator::NewBatch;
    let env = Env::new(db, "intake_race");
    let c = start(&env, fast_config()).await;
    let batch = |number: u64, input: Vec<u8>| NewBatch {
        chain: DEFAULT_CHAIN,
        number,
        version: "v1".into(),
        input: input.into(),
        public_values: public(number),
        proof_types: vec![],
    };
    let mut racing = tokio::task::JoinSet::new();
    for i in 0..8 {
        let coord = c.coord.clone();
        racing.spawn(async move { coord.submit_batch(batch(5, input_for(5, 0, i))).await });
    }
    for n in 10..40 {
        let coord = c.coord.clone();
        racing.spawn(async move { coord.submit_batch(batch(n, input_for(n, 0, 0))).await });
    }
    let results = racing.join_all().await;
    let won = results.iter().filter(|r| matches!(r, Ok(true))).count();
    let refused = results.iter().filter(|r| r.is_err()).count();
    assert_eq!((won, refused), (31, 7), "{results:?}");

    let store = proofmill_store::open_store(&env.db_url).await.unwrap();
    let blobs = proofmill_store::Blobs::from_url(&env.blobs_url).unwrap();
    for n in std::iter::once(5).chain(10..40) {
        let stored = store
            .batch(DEFAULT_CHAIN, n)
            .await
            .unwrap()
            .expect("batch stored");
        let input = blobs.get(&stored.input_key).await.unwrap();
        assert_eq!(
            proofmill_types::Digest::sha256(&input),
            stored.input_digest,
            "input blob of batch {n} is the submission that won"
        );
    }
    c.stop().await;
}

on_both_stores!(concurrent_submissions);

#[tokio::test]
async fn server_reflection_lists_the_services() {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let env = Env::new(Db::Sqlite, "reflection");
    let c = start(&env, fast_config()).await;
    let channel = tonic::transport::Endpoint::from_shared(c.url())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = client
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("{resp:?}")
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"proofmill.v1.ProverService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"proofmill.v1.AdminService".to_string()),
        "{names:?}"
    );
    c.stop().await;
}

/// A cordon is in the store before the admin call returns: a restarted coordinator keeps the
/// prover out of rotation when it reconnects, until it is put back.
async fn a_cordon_outlives_a_restart(db: Db) {
    let env = Env::new(db, "cordon_restart");
    let c = start(&env, fast_config()).await;
    let a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let who = a.who();
    c.coord
        .cordon(&ProverId(who.id.clone()), true)
        .await
        .unwrap();
    drop(a);
    c.stop().await;

    let c = start(&env, fast_config()).await;
    let mut a = RawProver::reconnect(&c.url(), &who, register("a", &["exec"], 1), vec![]).await;
    let mut admin = c.admin().await;
    let listed = admin
        .provers_list(ProversListRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.provers.iter().any(|p| p.id == who.id && p.cordoned));
    submit(&c.coord, 1, &[]).await;
    match a.next(std::time::Duration::from_millis(600)).await {
        Some(Out::ExecuteTask(t)) => panic!("the cordon was lost: a got {}", t.task_id),
        _ => assert!(a.pending.is_empty()),
    }
    let r = admin.cordon_prover(CordonProverRequest {
        prover_id: who.id.clone(),
        cordoned: false,
    });
    assert!(r.await.unwrap().into_inner().error.is_none());
    assert_eq!(a.task().await.batch, 1);
    drop(a);
    c.stop().await;

    // Lifted for good: a third start does not bring it back.
    let c = start(&env, fast_config()).await;
    let mut a = RawProver::reconnect(&c.url(), &who, register("a", &["exec"], 1), vec![]).await;
    submit(&c.coord, 2, &[]).await;
    let first = a.task().await;
    assert!([1, 2].contains(&first.batch), "{first:?}");
    c.stop().await;
}

on_both_stores!(a_cordon_outlives_a_restart);

/// An operator cancels one job: its prover is told, its late proof refused, the other job of
/// the batch untouched; a second cancel is a no-op; a retry queues it again and it is
/// proven; a proven job is not cancelled and keeps its proof. Retrying a batch queues every
/// failed job of it. Bad calls change nothing and say why. Every attempt is in the job's
/// history, which outlives a restart.
async fn an_operator_cancels_and_retries_jobs(db: Db) {
    let env = Env::new(db, "cancel-job");
    let mut cfg = fast_config();
    cfg.scheduler.max_attempts = 1;
    let types = ["exec", "exec2"];
    // A second proof type, verified by the same backend.
    cfg.proof_types.push((
        proofmill_types::ProofType::new("exec2").unwrap(),
        "exec".into(),
    ));
    let cfg_again = cfg.clone();
    let c = start(&env, cfg).await;
    let mut admin = c.admin().await;
    submit(&c.coord, 1, &types).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t1 = a.task().await;
    let cancel = |batch: u64, proof_type: &str, reason: &str| CancelJobRequest {
        chain_id: 0,
        batch,
        proof_type: proof_type.into(),
        reason: reason.into(),
    };
    let r = admin
        .cancel_job(cancel(1, "exec", "wrong input"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.cancelled && r.error.is_none(), "{r:?}");
    let tc = a.cancelled().await;
    assert_eq!(
        (tc.task_id.as_str(), tc.fencing_token),
        (t1.task_id.as_str(), t1.fencing_token)
    );
    let ack = a
        .submit(&t1.task_id, t1.fencing_token, RawProver::proof_for(&t1))
        .await;
    assert!(!ack.accepted, "a cancelled lease's proof is refused");
    let job = |proof_type: &str| JobStatusRequest {
        chain_id: 0,
        batch: 1,
        proof_type: proof_type.into(),
    };
    let st = admin.job_status(job("exec")).await.unwrap().into_inner();
    let info = st.job.unwrap();
    assert_eq!(
        (info.state.as_str(), info.last_error.as_str()),
        ("cancelled", "wrong input")
    );
    let other = admin.job_status(job("exec2")).await.unwrap().into_inner();
    assert_eq!(
        other.job.unwrap().state,
        "queued",
        "the other job is untouched"
    );
    let again = admin
        .cancel_job(cancel(1, "exec", ""))
        .await
        .unwrap()
        .into_inner();
    assert!(!again.cancelled && again.error.is_none(), "{again:?}");

    let code = |e: Option<proofmill_proto::v1::AdminError>| e.map(|e| e.code);
    for (req, want) in [
        (cancel(9, "exec", ""), ErrorCode::JobNotFound),
        (cancel(1, "nope", ""), ErrorCode::JobNotFound),
        (cancel(1, "Bad Type", ""), ErrorCode::InvalidArgument),
        (cancel(1, "exec2", "a\nb"), ErrorCode::InvalidArgument),
    ] {
        let r = admin.cancel_job(req.clone()).await.unwrap().into_inner();
        assert_eq!(code(r.error), Some(want as i32), "{req:?}");
        assert!(!r.cancelled);
    }
    let other = admin.job_status(job("exec2")).await.unwrap().into_inner();
    assert_eq!(
        other.job.unwrap().state,
        "queued",
        "refused calls change nothing"
    );

    let retry = |batch: u64, proof_type: &str| RetryJobRequest {
        chain_id: 0,
        batch,
        proof_type: proof_type.into(),
    };
    let r = admin
        .retry_job(retry(1, "exec"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.retried, r.error), (1, None));
    let t2 = a.task().await;
    assert!(t2.fencing_token > t1.fencing_token);
    assert!(
        a.submit(&t2.task_id, t2.fencing_token, RawProver::proof_for(&t2))
            .await
            .accepted
    );
    let r = admin
        .cancel_job(cancel(1, "exec", ""))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(code(r.error), Some(ErrorCode::FailedPrecondition as i32));
    let st = admin.job_status(job("exec")).await.unwrap().into_inner();
    assert_eq!(st.job.unwrap().state, "proven");
    assert!(st.proof_size > 0, "the proof is kept");

    // A failed job (max_attempts = 1), then a retry of the whole batch.
    let mut b = RawProver::register(&c.url(), register("b", &["exec2"], 1)).await;
    let t3 = b.task().await;
    assert!(
        !b.submit(&t3.task_id, t3.fencing_token, vec![7; 96])
            .await
            .accepted
    );
    let failed = admin
        .jobs_list(JobsListRequest {
            state: "failed".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(failed.jobs.len(), 1, "{failed:?}");
    let r = admin.retry_job(retry(1, "")).await.unwrap().into_inner();
    assert_eq!((r.retried, r.error), (1, None));
    let t4 = b.task().await;
    assert!(
        b.submit(&t4.task_id, t4.fencing_token, RawProver::proof_for(&t4))
            .await
            .accepted
    );
    let r = admin.retry_job(retry(1, "")).await.unwrap().into_inner();
    assert_eq!((r.retried, r.error), (0, None), "nothing failed is left");
    let r = admin.retry_job(retry(9, "")).await.unwrap().into_inner();
    assert_eq!(code(r.error), Some(ErrorCode::JobNotFound as i32));
    let r = admin
        .jobs_list(JobsListRequest {
            state: "lost".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let e = r.error.expect("an unknown state is refused");
    assert!(
        e.message
            .contains("queued, leased, proven, failed, cancelled"),
        "the valid states are listed: {}",
        e.message
    );

    // Every attempt is in the job's history, in order, and stays there across a restart.
    c.stop().await;
    let c = start(&env, cfg_again).await;
    let mut admin = c.admin().await;
    let history = |r: proofmill_proto::v1::JobStatusResponse| {
        r.attempts
            .iter()
            .map(|a| {
                (
                    a.fencing_token,
                    a.prover_name.clone(),
                    a.outcome.clone(),
                    a.prove_ms,
                    a.ended_at_ms >= a.started_at_ms && a.ended_at_ms > 0,
                )
            })
            .collect::<Vec<_>>()
    };
    let exec = admin.job_status(job("exec")).await.unwrap().into_inner();
    assert_eq!(exec.attempts[0].detail, "wrong input");
    assert_eq!(
        history(exec),
        vec![
            (t1.fencing_token, "a".into(), "cancelled".into(), None, true),
            (t2.fencing_token, "a".into(), "proven".into(), Some(1), true),
        ]
    );
    let exec2 = admin.job_status(job("exec2")).await.unwrap().into_inner();
    assert!(
        exec2.attempts[0].detail.contains("invalid proof"),
        "{:?}",
        exec2.attempts[0]
    );
    assert_eq!(
        history(exec2),
        vec![
            (
                t3.fencing_token,
                "b".into(),
                "invalid_proof".into(),
                None,
                true
            ),
            (t4.fencing_token, "b".into(), "proven".into(), Some(1), true),
        ]
    );
    c.stop().await;
}

on_both_stores!(an_operator_cancels_and_retries_jobs);

/// StatusInfo: what the coordinator knows of itself, and what the binary told it.
async fn status_info_says_what_runs(db: Db) {
    let env = Env::new(db, "status-info");
    let c = start(&env, fast_config()).await;
    let mut admin = c.admin().await;
    let before = admin
        .status_info(proofmill_proto::v1::StatusInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(before.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (before.l1.as_str(), before.build.as_str()),
        ("none", ""),
        "nothing told yet"
    );
    assert_eq!(before.proof_types, vec!["exec".to_string()]);
    assert_eq!(before.assignment_policy, "oldest-first");
    assert_eq!(before.store, c.coord.store().endpoint());
    c.coord.describe(proofmill_coordinator::About {
        build: "abc123".into(),
        l1: "embedded".into(),
        config: vec![proofmill_coordinator::ConfigValue {
            key: "max_attempts".into(),
            value: "5".into(),
            source: "env PROOFMILL_MAX_ATTEMPTS".into(),
        }],
    });
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let after = admin
        .status_info(proofmill_proto::v1::StatusInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (after.build.as_str(), after.l1.as_str()),
        ("abc123", "embedded")
    );
    assert_eq!(after.config.len(), 1);
    assert_eq!(after.config[0].source, "env PROOFMILL_MAX_ATTEMPTS");
    assert_eq!(after.started_at_ms, before.started_at_ms);
    assert!(after.uptime_ms > before.uptime_ms);
    assert!(after.paused.is_empty(), "{:?}", after.paused);
    // Paused components, in name order, as SystemStatus lists them.
    use proofmill_coordinator::Component;
    c.coord.pause(Component::Sender, "L1 fees").await.unwrap();
    c.coord.pause(Component::Dispatch, "").await.unwrap();
    let reader = admin.clone();
    let info = || {
        let mut admin = reader.clone();
        async move {
            admin
                .status_info(proofmill_proto::v1::StatusInfoRequest {})
                .await
                .unwrap()
                .into_inner()
        }
    };
    let paused = info().await.paused;
    let names: Vec<&str> = paused.iter().map(|p| p.component.as_str()).collect();
    assert_eq!(names, ["dispatch", "sender"]);
    assert_eq!(paused[1].reason, "L1 fees");
    assert!(paused[1].since_ms > 0);
    let status = admin
        .system_status(proofmill_proto::v1::SystemStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.paused, paused);
    c.coord.resume(Component::Dispatch).await.unwrap();
    let names: Vec<String> = info()
        .await
        .paused
        .into_iter()
        .map(|p| p.component)
        .collect();
    assert_eq!(names, ["sender"]);
    c.stop().await;
}

on_both_stores!(status_info_says_what_runs);
