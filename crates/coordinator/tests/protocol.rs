//! The wire protocol against a real coordinator on a loopback socket, on SQLite and Postgres:
//! dispatch, fencing, duplicates, invalid proofs, bad input of each kind, reconnects, restarts.
mod support;

use proofmill_proto::v1::{
    ErrorCode, Register, TaskResult, coordinator_message::Kind as Out, execute_task::Input,
    prover_message::Kind as In, task_result::Outcome,
};
use proofmill_types::{JobKey, JobState, ProofType};
use std::time::Duration;
use support::*;

fn key(b: u64, t: &str) -> JobKey {
    JobKey::new(
        proofmill_types::DEFAULT_CHAIN,
        b,
        ProofType::new(t).unwrap(),
    )
}

async fn dispatch_fencing_and_duplicates(db: Db) {
    let env = Env::new(db, "fencing");
    let c = start(&env, fast_config()).await;
    for n in 1..=2 {
        submit(&c.coord, n, &[]).await;
    }
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let mut b = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    let ta = a.task().await;
    let tb = b.task().await;
    assert_eq!(
        (ta.batch, tb.batch),
        (1, 2),
        "two exec provers get different batches, oldest first"
    );
    assert!(matches!(ta.input, Some(Input::Inline(ref i)) if *i == input_for(1, 0, 0)));

    // Stale token: rejected, nothing changes.
    let stale = a
        .submit(
            &ta.task_id,
            ta.fencing_token + 100,
            RawProver::proof_for(&ta),
        )
        .await;
    assert!(!stale.accepted);
    assert_eq!(stale.code, ErrorCode::StaleFencingToken as i32, "{stale:?}");
    assert_eq!(
        c.coord
            .store()
            .job(&key(1, "exec"))
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Leased
    );

    // Invalid proof: rejected with a reason, job requeued with the failure counted.
    let bad = a.submit(&ta.task_id, ta.fencing_token, vec![7u8; 96]).await;
    assert!(!bad.accepted);
    assert_eq!(bad.code, ErrorCode::InvalidProof as i32);
    assert!(
        bad.reason.contains("root"),
        "reason says why: {}",
        bad.reason
    );
    let job = c.coord.store().job(&key(1, "exec")).await.unwrap().unwrap();
    assert_eq!(job.failed_attempts, 1);
    assert!(job.last_error.unwrap().contains("invalid proof"));

    // Not handed back to a while b, which has not failed it, is connected: b gets it as
    // soon as it has finished batch 2, with a new token.
    assert!(a.next(Duration::from_millis(300)).await.is_none());
    let ok = b
        .submit(&tb.task_id, tb.fencing_token, RawProver::proof_for(&tb))
        .await;
    assert!(ok.accepted, "{ok:?}");
    let tb2 = b.task().await;
    assert_eq!(tb2.batch, 1);
    assert!(tb2.fencing_token > tb.fencing_token);
    let ok = b
        .submit(&tb2.task_id, tb2.fencing_token, RawProver::proof_for(&tb2))
        .await;
    assert!(ok.accepted, "{ok:?}");
    // Push: a new batch goes to the free prover that waited longest at once, without it
    // asking.
    submit(&c.coord, 3, &[]).await;
    let ta3 = a.task().await;
    assert_eq!(ta3.batch, 3);

    // Duplicate of the accepted result: acknowledged again, stored once.
    let dup = b
        .submit(&tb2.task_id, tb2.fencing_token, RawProver::proof_for(&tb2))
        .await;
    assert!(dup.accepted, "{dup:?}");
    let proof = c
        .coord
        .store()
        .proof(&key(1, "exec"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(proof.token.0, tb2.fencing_token);
    assert_eq!(proof.prover_name, "b");
    // The old token stays fenced off even though the job is proven.
    let old = a
        .submit(&ta.task_id, ta.fencing_token, RawProver::proof_for(&ta))
        .await;
    assert_eq!(old.code, ErrorCode::StaleFencingToken as i32);

    // Unknown job and malformed task id.
    let unknown = a.submit("99/exec", 5, vec![0; 96]).await;
    assert_eq!(unknown.code, ErrorCode::JobNotFound as i32, "{unknown:?}");
    let malformed = a.submit("not-a-task", 5, vec![0; 96]).await;
    assert_eq!(malformed.code, ErrorCode::InvalidArgument as i32);

    // An error result counts as a failed attempt and is acknowledged.
    a.running.clear();
    let r = TaskResult {
        task_id: ta3.task_id.clone(),
        fencing_token: ta3.fencing_token,
        outcome: Some(Outcome::Error("out of memory".into())),
        prove_ms: 3,
    };
    a.send(In::TaskResult(r)).await;
    assert!(a.ack_for(&ta3.task_id, ta3.fencing_token).await.accepted);
    // Counted, and at once with b, which has not failed it (in the same commit as the
    // failure, so before the ack).
    let job = c.coord.store().job(&key(3, "exec")).await.unwrap().unwrap();
    let holder = job.lease.as_ref().map(|l| l.prover.0.clone());
    assert_eq!(
        (job.state, job.failed_attempts, holder),
        (JobState::Leased, 1, Some(b.id.clone()))
    );
    assert_eq!(job.last_error.as_deref(), Some("out of memory"));
    c.stop().await;
}

async fn different_types_share_a_batch(db: Db) {
    let env = Env::new(db, "types");
    let mut cfg = fast_config();
    cfg.proof_types = vec![
        (ProofType::new("exec").unwrap(), "exec".into()),
        (ProofType::new("audit").unwrap(), "exec".into()),
    ];
    let c = start(&env, cfg).await;
    submit(&c.coord, 1, &[]).await;
    let mut e = RawProver::register(&c.url(), register("e", &["exec"], 1)).await;
    let mut a = RawProver::register(&c.url(), register("a", &["audit"], 1)).await;
    let te = e.task().await;
    let ta = a.task().await;
    assert_eq!((te.batch, te.proof_type.as_str()), (1, "exec"));
    assert_eq!((ta.batch, ta.proof_type.as_str()), (1, "audit"));
    assert!(
        e.submit(&te.task_id, te.fencing_token, RawProver::proof_for(&te))
            .await
            .accepted
    );
    let status = c.coord.status().await.unwrap();
    assert_eq!(
        status.last_proven_batch, None,
        "batch 1 still needs its audit proof"
    );
    assert!(
        a.submit(&ta.task_id, ta.fencing_token, RawProver::proof_for(&ta))
            .await
            .accepted
    );
    wait_for("batch 1 proven", Duration::from_secs(5), || async {
        c.coord.status().await.unwrap().last_proven_batch == Some(1)
    })
    .await;
    c.stop().await;
}

async fn registration_is_validated(db: Db) {
    let env = Env::new(db, "register");
    let mut cfg = fast_config();
    cfg.prover_auth = proofmill_coordinator::ProverAuth::open().with_fleet_token("s3cret");
    let c = start(&env, cfg).await;
    let cases: Vec<(Register, ErrorCode)> = vec![
        (register("x", &["exec"], 1), ErrorCode::Unauthenticated),
        (
            Register {
                token: Some("wrong".into()),
                ..register("x", &["exec"], 1)
            },
            ErrorCode::Unauthenticated,
        ),
        (
            Register {
                token: Some("s3cret".into()),
                ..register("x", &["groth16"], 1)
            },
            ErrorCode::ProofTypeNotNeeded,
        ),
        (
            Register {
                token: Some("s3cret".into()),
                ..register("x", &["exec"], 0)
            },
            ErrorCode::InvalidArgument,
        ),
        (
            Register {
                token: Some("s3cret".into()),
                ..register("", &["exec"], 1)
            },
            ErrorCode::InvalidArgument,
        ),
        (
            Register {
                token: Some("s3cret".into()),
                ..register("x", &["BAD TYPE"], 1)
            },
            ErrorCode::InvalidArgument,
        ),
    ];
    for (reg, code) in cases {
        let (_tx, mut rx) = open(&c.url(), In::Register(reg.clone())).await;
        let r = first_response(&mut rx).await;
        assert!(!r.accepted, "{reg:?} accepted");
        assert_eq!(r.code, code as i32, "{reg:?}: {}", r.reason);
        assert!(!r.reason.is_empty());
    }
    // A first message that is not Register/Reconnect.
    let hb = In::HeartbeatAck(proofmill_proto::v1::HeartbeatAck {
        seq: 1,
        running: vec![],
        probe: None,
    });
    let (_tx, mut rx) = open(&c.url(), hb).await;
    assert_eq!(
        first_response(&mut rx).await.code,
        ErrorCode::InvalidArgument as i32
    );
    assert!(
        c.coord.provers().await.unwrap().is_empty(),
        "no prover state from rejected registrations"
    );
    let ok = Register {
        token: Some("s3cret".into()),
        ..register("x", &["exec"], 1)
    };
    RawProver::register(&c.url(), ok).await;
    c.stop().await;
}

async fn oversized_and_garbage_input_change_nothing(db: Db) {
    let env = Env::new(db, "oversize");
    let mut cfg = fast_config();
    cfg.max_message_bytes = 64 * 1024;
    let c = start(&env, cfg).await;
    submit(&c.coord, 1, &[]).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t = a.task().await;
    let huge = TaskResult {
        task_id: t.task_id.clone(),
        fencing_token: t.fencing_token,
        outcome: Some(Outcome::Proof(vec![0; 256 * 1024])),
        prove_ms: 1,
    };
    let _ =
        a.tx.send(proofmill_proto::v1::ProverMessage {
            kind: Some(In::TaskResult(huge)),
        })
        .await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match a.rx.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(s) => return Some(s),
            }
        }
    })
    .await
    .expect("the stream ends");
    if let Some(status) = end {
        assert!(
            matches!(
                status.code(),
                tonic::Code::ResourceExhausted
                    | tonic::Code::OutOfRange
                    | tonic::Code::Internal
                    | tonic::Code::Unavailable
                    | tonic::Code::Cancelled
            ),
            "{status:?}"
        );
    }
    // A task goes out before its lease is committed: wait for the commit.
    c.coord.flush().await.unwrap();
    let job = c.coord.store().job(&key(1, "exec")).await.unwrap().unwrap();
    assert_eq!(
        job.state,
        JobState::Leased,
        "the oversized result changed nothing"
    );
    assert!(
        c.coord
            .store()
            .proof(&key(1, "exec"))
            .await
            .unwrap()
            .is_none()
    );

    // Raw garbage on the port: that connection fails, the server keeps serving.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(c.addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01\x02garbage")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
    drop(s);
    // The prover comes back (reconnect with its task) and finishes.
    let running = running_of(&[&t]);
    let mut a2 =
        RawProver::reconnect(&c.url(), &a.who(), register("a", &["exec"], 1), running).await;
    let ack = a2
        .submit(&t.task_id, t.fencing_token, RawProver::proof_for(&t))
        .await;
    assert!(ack.accepted, "{ack:?}");
    c.stop().await;
}

async fn silent_prover_loses_its_lease_and_late_result_is_rejected(db: Db) {
    let env = Env::new(db, "silent");
    let mut cfg = fast_config();
    cfg.scheduler.heartbeat_interval_ms = 100;
    cfg.scheduler.missed_heartbeats = 3;
    let c = start(&env, cfg).await;
    submit(&c.coord, 1, &[]).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    a.answer_heartbeats = false;
    let ta = a.task().await;
    let mut b = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    let tb = b.task().await;
    assert_eq!(
        tb.batch, 1,
        "b gets the batch after a missed its heartbeats"
    );
    assert!(tb.fencing_token > ta.fencing_token);
    // A task goes out before its lease is committed: wait for the commit.
    c.coord.flush().await.unwrap();
    let job = c.coord.store().job(&key(1, "exec")).await.unwrap().unwrap();
    assert_eq!(job.lost_attempts, 1);
    assert_eq!(
        job.failed_attempts, 0,
        "losing a prover is counted apart from failures"
    );
    // a's stream was closed; it comes back and submits its late result: fenced off.
    let running = running_of(&[&ta]);
    let mut a2 =
        RawProver::reconnect(&c.url(), &a.who(), register("a", &["exec"], 1), running).await;
    let late = a2
        .submit(&ta.task_id, ta.fencing_token, RawProver::proof_for(&ta))
        .await;
    assert!(!late.accepted);
    assert_eq!(late.code, ErrorCode::StaleFencingToken as i32);
    assert!(
        b.submit(&tb.task_id, tb.fencing_token, RawProver::proof_for(&tb))
            .await
            .accepted
    );
    let proof = c
        .coord
        .store()
        .proof(&key(1, "exec"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        proof.token.0, tb.fencing_token,
        "the late result never overwrote"
    );
    c.stop().await;
}

async fn leases_survive_a_coordinator_restart(db: Db) {
    let env = Env::new(db, "restart");
    let c = start(&env, fast_config()).await;
    submit(&c.coord, 1, &[]).await;
    submit(&c.coord, 2, &[]).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 2)).await;
    let t1 = a.task().await;
    let t2 = a.task().await;
    let id = a.who();
    drop(a);
    c.stop().await;

    let c2 = start(&env, fast_config()).await;
    let st = c2
        .coord
        .store()
        .job(&key(1, "exec"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(st.state, JobState::Leased, "lease is durable");
    // a reconnects still holding t1 only: t1 stays its lease, t2 is requeued and re-sent.
    let running = running_of(&[&t1]);
    let mut a = RawProver::reconnect(&c2.url(), &id, register("a", &["exec"], 2), running).await;
    let again = a.task().await;
    assert_eq!(again.batch, t2.batch);
    assert!(
        again.fencing_token > t2.fencing_token,
        "tokens stay monotonic across restarts"
    );
    assert!(
        a.submit(&t1.task_id, t1.fencing_token, RawProver::proof_for(&t1))
            .await
            .accepted
    );
    assert!(
        a.submit(
            &again.task_id,
            again.fencing_token,
            RawProver::proof_for(&again)
        )
        .await
        .accepted
    );
    wait_for("both proven", Duration::from_secs(5), || async {
        c2.coord.status().await.unwrap().last_proven_batch == Some(2)
    })
    .await;
    c2.stop().await;
}

/// Inputs over the inline limit: in chunks on the stream, or as a blob URL for a prover that
/// registered with blob access.
async fn large_inputs_travel_in_chunks(db: Db) {
    let env = Env::new(db, "chunks");
    let mut cfg = fast_config();
    cfg.inline_input_max = 8;
    cfg.chunk_bytes = 5;
    let c = start(&env, cfg).await;
    submit(&c.coord, 1, &[]).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t = a.task().await;
    assert_eq!(t.input, Some(Input::Chunked(true)));
    let mut data = Vec::new();
    loop {
        match a.next(Duration::from_secs(5)).await {
            Some(Out::InputChunk(ch)) => {
                assert_eq!(ch.offset as usize, data.len());
                assert_eq!(
                    (ch.task_id.as_str(), ch.fencing_token),
                    (t.task_id.as_str(), t.fencing_token)
                );
                data.extend_from_slice(&ch.data);
                if ch.last {
                    break;
                }
            }
            other => panic!("expected a chunk, got {other:?}"),
        }
    }
    assert_eq!(data, input_for(1, 0, 0));
    assert_eq!(data.len() as u64, t.input_size);
    assert_eq!(
        proofmill_types::Digest::sha256(&data).0.to_vec(),
        t.input_digest
    );

    // A prover that can read the blob store gets a URL instead, and the URL has the input.
    submit(&c.coord, 2, &[]).await;
    let mut reg = register("b", &["exec"], 1);
    reg.blob_access = true;
    let mut b = RawProver::register(&c.url(), reg).await;
    let t = b.task().await;
    assert_eq!(t.batch, 2);
    let Some(Input::BlobUrl(url)) = &t.input else {
        panic!("expected a blob URL, got {:?}", t.input)
    };
    let data = proofmill_store::get_url(url).await.unwrap();
    assert_eq!(&data[..], &input_for(2, 0, 0)[..]);
    assert_eq!(data.len() as u64, t.input_size);
    assert_eq!(
        proofmill_types::Digest::sha256(&data).0.to_vec(),
        t.input_digest
    );
    c.stop().await;
}

on_both_stores!(
    dispatch_fencing_and_duplicates,
    different_types_share_a_batch,
    registration_is_validated,
    oversized_and_garbage_input_change_nothing,
    silent_prover_loses_its_lease_and_late_result_is_rejected,
    leases_survive_a_coordinator_restart,
    large_inputs_travel_in_chunks,
);

/// Proofs bigger than a message travel as chunks; the coordinator reassembles them and
/// checks size and digest before verifying.
async fn chunked_proofs_are_reassembled_and_checked(db: Db) {
    use proofmill_proto::v1::{ChunkedProof, DataChunk};
    let env = Env::new(db, "proofchunks");
    let c = start(&env, fast_config()).await;
    submit(&c.coord, 1, &[]).await;
    submit(&c.coord, 2, &[]).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 2)).await;
    let t1 = a.task().await;
    let t2 = a.task().await;
    let send_chunked = |t: &proofmill_proto::v1::ExecuteTask, proof: Vec<u8>, digest: Vec<u8>| {
        let mut msgs = Vec::new();
        for (i, part) in proof.chunks(40).enumerate() {
            msgs.push(In::ProofChunk(DataChunk {
                task_id: t.task_id.clone(),
                fencing_token: t.fencing_token,
                offset: (i * 40) as u64,
                data: part.to_vec(),
                last: (i + 1) * 40 >= proof.len(),
            }));
        }
        let close = ChunkedProof {
            size: proof.len() as u64,
            digest,
        };
        msgs.push(In::TaskResult(TaskResult {
            task_id: t.task_id.clone(),
            fencing_token: t.fencing_token,
            outcome: Some(Outcome::ProofChunked(close)),
            prove_ms: 2,
        }));
        msgs
    };
    // A wrong digest is refused as malformed and changes nothing.
    let p1 = RawProver::proof_for(&t1);
    for m in send_chunked(&t1, p1.clone(), vec![0; 32]) {
        a.send(m).await;
    }
    let ack = a.ack_for(&t1.task_id, t1.fencing_token).await;
    assert_eq!(ack.code, ErrorCode::InvalidArgument as i32, "{ack:?}");
    c.coord.flush().await.unwrap();
    assert_eq!(
        c.coord
            .store()
            .job(&key(1, "exec"))
            .await
            .unwrap()
            .unwrap()
            .state,
        JobState::Leased
    );
    // The right one is accepted.
    let digest = proofmill_types::Digest::sha256(&p1).0.to_vec();
    for m in send_chunked(&t1, p1.clone(), digest) {
        a.send(m).await;
    }
    assert!(a.ack_for(&t1.task_id, t1.fencing_token).await.accepted);
    let stored = c
        .coord
        .store()
        .proof(&key(1, "exec"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.inline.as_deref(), Some(&p1[..]));
    // Chunks out of order are refused.
    a.send(In::ProofChunk(DataChunk {
        task_id: t2.task_id.clone(),
        fencing_token: t2.fencing_token,
        offset: 40,
        data: vec![1; 8],
        last: false,
    }))
    .await;
    let ack = a.ack_for(&t2.task_id, t2.fencing_token).await;
    assert_eq!(ack.code, ErrorCode::InvalidArgument as i32);
    c.stop().await;
}

on_both_stores!(chunked_proofs_are_reassembled_and_checked);
