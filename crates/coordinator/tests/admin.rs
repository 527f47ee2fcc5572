//! The admin API and server reflection against a real coordinator, on SQLite and Postgres:
//! batch submission and its validation, job status, retries of failed jobs.
mod support;

use proofmill_proto::v1::{
    CordonProverRequest, ErrorCode, JobStatusRequest, LaunchProofRequest, ProversListRequest,
    RetryJobRequest, SystemStatusRequest, coordinator_message::Kind as Out,
};
use proofmill_types::ProverId;
use support::*;

async fn admin_api_validates_and_retries(db: Db) {
    let env = Env::new(db, "admin");
    let mut cfg = fast_config();
    cfg.scheduler.max_attempts = 1;
    let c = start(&env, cfg).await;
    let mut admin = c.admin().await;
    let launch = |batch: u64, public: Vec<u8>, types: Vec<String>| LaunchProofRequest {
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
            batch: 7,
            proof_type: "exec".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.error.unwrap().code, ErrorCode::JobNotFound as i32);
    let r = admin
        .retry_job(RetryJobRequest {
            batch: 1,
            proof_type: "exec".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.error.unwrap().code,
        ErrorCode::InvalidArgument as i32,
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
/// until it is put back; other provers are unaffected. An unknown id is PROVER_UNAVAILABLE.
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
    let r = admin.cordon_prover(cordon(&a.id, false)).await;
    assert_eq!(code(r.unwrap().into_inner()), None);
    submit(&c.coord, 3, &[]).await;
    assert_eq!(a.task().await.batch, 3);
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
        let stored = store.batch(n).await.unwrap().expect("batch stored");
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
