//! Hostile clients cannot grow the coordinator's memory at will: proof chunks are kept only
//! for a live lease and within one budget for all streams, a stream that does not read its
//! replies is closed with RESOURCE_EXHAUSTED, and streams (registered or not) are capped.
//! Each flood runs beside an honest prover that keeps getting its work proven. On a real
//! loopback socket, SQLite and Postgres.
mod support;

use proofmill_coordinator::{Coordinator, CoordinatorConfig};
use proofmill_proto::v1::{
    ChunkedProof, DataChunk, ErrorCode, ExecuteTask, ProverMessage, TaskResult,
    prover_message::Kind as In, prover_service_client::ProverServiceClient, task_result::Outcome,
};
use proofmill_types::Digest;
use std::time::Duration;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

const KIB: usize = 1 << 10;

fn small_config() -> CoordinatorConfig {
    let mut c = fast_config();
    c.max_message_bytes = 512 * KIB;
    c.max_proof_bytes = 2 << 20;
    c.proof_memory_bytes = 3 << 20;
    c
}

fn chunk(task_id: &str, token: u64, offset: u64, data: Vec<u8>) -> In {
    In::ProofChunk(DataChunk {
        task_id: task_id.into(),
        fencing_token: token,
        offset,
        data,
        last: false,
    })
}

/// A prover that gets no tasks here (its version has no batches), so the honest one gets all.
fn idle(name: &str) -> proofmill_proto::v1::Register {
    let mut r = register(name, &["exec"], 1);
    r.version = "v2".into();
    r
}

/// Heartbeats slow enough that provers the test leaves unread for a while keep their leases.
fn patient_config() -> CoordinatorConfig {
    let mut c = small_config();
    c.scheduler.heartbeat_interval_ms = 5_000;
    c
}

/// Sends a correct proof in two chunks and returns its acknowledgement.
async fn prove_in_chunks(p: &mut RawProver, t: &ExecuteTask) -> proofmill_proto::v1::ResultAck {
    let proof = RawProver::proof_for(t);
    let (a, b) = proof.split_at(proof.len() / 2);
    p.send(chunk(&t.task_id, t.fencing_token, 0, a.to_vec()))
        .await;
    p.send(chunk(
        &t.task_id,
        t.fencing_token,
        a.len() as u64,
        b.to_vec(),
    ))
    .await;
    p.running.retain(|r| r.task_id != t.task_id);
    p.send(In::TaskResult(TaskResult {
        task_id: t.task_id.clone(),
        fencing_token: t.fencing_token,
        outcome: Some(Outcome::ProofChunked(ChunkedProof {
            size: proof.len() as u64,
            digest: Digest::sha256(&proof).0.to_vec(),
        })),
        prove_ms: 1,
    }))
    .await;
    p.ack_for(&t.task_id, t.fencing_token).await
}

/// Batch `n` is submitted and the honest prover proves the next task it gets (that batch or
/// one given up by another prover), with its proof in chunks.
async fn honest_round(c: &Coordinator, p: &mut RawProver, n: u64) {
    submit(c, n, &[]).await;
    let t = p.task().await;
    let ack = prove_in_chunks(p, &t).await;
    assert!(ack.accepted, "honest proof refused: {ack:?}");
}

/// Chunks for tasks the sender holds no lease of (another prover's task, stale tokens,
/// batches that do not exist) are refused, once per proof, and nothing of them is kept,
/// while an honest prover proves in chunks beside them.
async fn chunks_without_a_lease_are_not_kept(db: Db) {
    let env = Env::new(db, "flood_chunks");
    let c = start(&env, small_config()).await;
    let mut honest = RawProver::register(&c.url(), register("honest", &["exec"], 1)).await;
    submit(&c.coord, 1, &[]).await;
    let held = honest.task().await;
    let mut hostile = RawProver::register(&c.url(), idle("hostile")).await;
    let coord = c.coord.clone();
    let (held_id, held_token) = (held.task_id.clone(), held.fencing_token);
    // 40 proofs of 4 chunks of 256 KiB each: 40 MiB, 13 times the budget.
    let flood = tokio::spawn(async move {
        let mut most = 0;
        for i in 0..40u64 {
            let (task, token) = match i % 3 {
                0 => (held_id.clone(), held_token),
                1 => (held_id.clone(), held_token + 1 + i),
                _ => (format!("{}/exec", 1000 + i), 1),
            };
            for part in 0..4u64 {
                hostile
                    .send(chunk(&task, token, part * 256 * 1024, vec![9; 256 * KIB]))
                    .await;
            }
            let ack = hostile.ack_for(&task, token).await;
            assert!(!ack.accepted);
            let code = ErrorCode::try_from(ack.code).unwrap();
            assert!(
                matches!(code, ErrorCode::StaleFencingToken | ErrorCode::JobNotFound),
                "{ack:?}"
            );
            most = most.max(coord.in_flight().proof_bytes);
        }
        // One answer per refused proof, not one per chunk.
        assert!(
            hostile.next(Duration::from_millis(300)).await.is_none(),
            "more answers than proofs"
        );
        most
    });
    let ack = prove_in_chunks(&mut honest, &held).await;
    assert!(ack.accepted, "{ack:?}");
    let mut n = 2;
    while !flood.is_finished() {
        honest_round(&c.coord, &mut honest, n).await;
        n += 1;
    }
    let most = flood.await.unwrap();
    // At most the honest prover's own proof (96 bytes) was ever in flight.
    assert!(most <= 96, "{most} bytes of proofs in flight");
    honest_round(&c.coord, &mut honest, n).await;
    assert_eq!(c.coord.in_flight().proof_bytes, 0);
    c.stop().await;
}

/// Provers that hold leases share one budget: a proof that does not fit is refused with
/// SYSTEM_UNAVAILABLE (offer it again later) and dropped, one over the largest proof is
/// refused for good, and a resend fits once the budget has room.
async fn one_budget_for_all_proofs_in_flight(db: Db) {
    let env = Env::new(db, "flood_budget");
    let c = start(&env, patient_config()).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let mut b = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    let mut honest = RawProver::register(&c.url(), register("honest", &["exec"], 1)).await;
    submit(&c.coord, 1, &[]).await;
    submit(&c.coord, 2, &[]).await;
    submit(&c.coord, 3, &[]).await;
    let ta = a.task().await;
    let tb = b.task().await;
    let th = honest.task().await;
    let in_flight = |bytes: usize| {
        let coord = c.coord.clone();
        async move {
            wait_for(
                &format!("{bytes} bytes in flight"),
                Duration::from_secs(10),
                || {
                    let n = coord.in_flight().proof_bytes;
                    async move { n == bytes }
                },
            )
            .await
        }
    };
    // a: 2 MiB (the largest proof) of the 3 MiB budget; b: 1 MiB.
    for part in 0..8u64 {
        a.send(chunk(
            &ta.task_id,
            ta.fencing_token,
            part * 256 * 1024,
            vec![1; 256 * KIB],
        ))
        .await;
    }
    for part in 0..4u64 {
        b.send(chunk(
            &tb.task_id,
            tb.fencing_token,
            part * 256 * 1024,
            vec![2; 256 * KIB],
        ))
        .await;
    }
    in_flight(3 << 20).await;
    // The budget is full: the honest prover's proof is refused, to be offered again.
    honest
        .send(chunk(&th.task_id, th.fencing_token, 0, vec![3; 1]))
        .await;
    let ack = honest.ack_for(&th.task_id, th.fencing_token).await;
    assert_eq!(ack.code, ErrorCode::SystemUnavailable as i32, "{ack:?}");
    assert!(
        ack.reason.contains("memory for proofs in flight"),
        "{ack:?}"
    );
    // b too, and its megabyte is let go.
    b.send(chunk(&tb.task_id, tb.fencing_token, 1 << 20, vec![2; 1]))
        .await;
    let ack = b.ack_for(&tb.task_id, tb.fencing_token).await;
    assert_eq!(ack.code, ErrorCode::SystemUnavailable as i32, "{ack:?}");
    in_flight(2 << 20).await;
    // The rest of b's refused proof and its result are dropped without more answers.
    b.send(chunk(
        &tb.task_id,
        tb.fencing_token,
        (1 << 20) + 1,
        vec![2; 1],
    ))
    .await;
    // One byte over the largest proof: refused for good, and a's 2 MiB are let go.
    a.send(chunk(&ta.task_id, ta.fencing_token, 2 << 20, vec![1]))
        .await;
    let ack = a.ack_for(&ta.task_id, ta.fencing_token).await;
    assert_eq!(ack.code, ErrorCode::InvalidArgument as i32, "{ack:?}");
    assert!(ack.reason.contains("over the limit"), "{ack:?}");
    in_flight(0).await;
    // Resent, both proofs fit and are accepted.
    let ack = prove_in_chunks(&mut honest, &th).await;
    assert!(ack.accepted, "{ack:?}");
    let ack = prove_in_chunks(&mut b, &tb).await;
    assert!(ack.accepted, "{ack:?}");
    assert!(
        b.next(Duration::from_millis(300)).await.is_none(),
        "one answer per refused proof"
    );
    in_flight(0).await;
    c.stop().await;
}

/// A client that keeps sending and never reads its replies is closed with
/// RESOURCE_EXHAUSTED once its reply queue is full, instead of growing it.
async fn a_stream_that_does_not_read_is_closed(db: Db) {
    let env = Env::new(db, "flood_reader");
    let c = start(&env, patient_config()).await;
    let mut honest = RawProver::register(&c.url(), register("honest", &["exec"], 1)).await;
    let mut client = ProverServiceClient::connect(c.url()).await.unwrap();
    let (tx, rx) = mpsc::channel(64);
    tx.send(ProverMessage {
        kind: Some(In::Register(register("deaf", &["exec"], 1))),
    })
    .await
    .unwrap();
    let mut replies = client
        .prover_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    // Each message of no kind is answered; none of the answers is read.
    let flood = tokio::spawn(async move {
        for _ in 0..200_000 {
            if tx.send(ProverMessage { kind: None }).await.is_err() {
                return;
            }
        }
    });
    let mut most = 0;
    wait_for(
        "the deaf stream to be closed",
        Duration::from_secs(60),
        || {
            let v = c.coord.in_flight();
            most = most.max(v.replies_queued);
            async move { v.streams == 1 }
        },
    )
    .await;
    assert!(most <= 1028, "{most} replies queued");
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), replies.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("closed with OK"),
            Ok(Err(s)) => break s,
            Err(_) => panic!("no status"),
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("not read"), "{status:?}");
    flood.abort();
    honest_round(&c.coord, &mut honest, 1).await;
    assert_eq!(c.coord.in_flight().replies_queued, 0);
    c.stop().await;
}

/// Streams are capped, and so are those not registered yet: more are refused at once with
/// RESOURCE_EXHAUSTED, a registered prover keeps working, and slots are free again once the
/// streams that never register time out.
async fn streams_are_capped(db: Db) {
    let env = Env::new(db, "flood_streams");
    let mut config = small_config();
    config.max_prover_streams = 4;
    config.max_unregistered_streams = 2;
    config.register_timeout_ms = 2_000;
    let c = start(&env, config).await;
    let mut honest = RawProver::register(&c.url(), register("honest", &["exec"], 1)).await;
    let open_silent = || async {
        let mut client = ProverServiceClient::connect(c.url()).await.unwrap();
        let (tx, rx) = mpsc::channel::<ProverMessage>(1);
        let r = client.prover_stream(ReceiverStream::new(rx)).await;
        (tx, r)
    };
    let times_out = |mut rx: tonic::Streaming<_>| async move {
        let end = tokio::time::timeout(Duration::from_secs(10), rx.message())
            .await
            .expect("closed at the registration timeout");
        assert_eq!(end.unwrap_err().code(), Code::DeadlineExceeded);
    };
    let mut silent = Vec::new();
    for _ in 0..2 {
        let (tx, r) = open_silent().await;
        silent.push((tx, r.expect("within the caps").into_inner()));
    }
    let (_tx, refused) = open_silent().await;
    let s = refused.expect_err("over the cap of unregistered streams");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(
        s.message()
            .contains("2 prover streams are waiting to register"),
        "{s:?}"
    );
    assert_eq!(c.coord.in_flight().streams, 3);
    honest_round(&c.coord, &mut honest, 1).await;
    // The honest prover keeps answering its heartbeats meanwhile.
    let silent_end = async {
        for (_tx, rx) in silent {
            times_out(rx).await;
        }
    };
    let (_, quiet) = tokio::join!(silent_end, honest.next(Duration::from_secs(3)));
    assert!(quiet.is_none(), "{quiet:?}");
    wait_for("slots given back", Duration::from_secs(10), || {
        let v = c.coord.in_flight();
        async move { (v.streams, v.unregistered_streams) == (1, 0) }
    })
    .await;

    // Registered streams count against the total: 1 + 2 + 1 silent = 4.
    let _b = RawProver::register(&c.url(), idle("b")).await;
    let _c = RawProver::register(&c.url(), idle("c")).await;
    let (_tx1, r) = open_silent().await;
    let rx = r.expect("within the caps").into_inner();
    let (_tx, refused) = open_silent().await;
    let s = refused.expect_err("over the stream cap");
    assert_eq!(s.code(), Code::ResourceExhausted, "{s:?}");
    assert!(s.message().contains("4 prover streams are open"), "{s:?}");
    let v = c.coord.in_flight();
    assert_eq!((v.streams, v.unregistered_streams), (4, 1));
    honest_round(&c.coord, &mut honest, 2).await;
    times_out(rx).await;
    c.stop().await;
}

on_both_stores!(
    chunks_without_a_lease_are_not_kept,
    one_budget_for_all_proofs_in_flight,
    a_stream_that_does_not_read_is_closed,
    streams_are_capped,
);
