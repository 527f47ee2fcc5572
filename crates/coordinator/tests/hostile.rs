//! Input that a store cannot hold or that would grow without bound, from a prover on a real
//! socket, on SQLite and Postgres: refused or made storable, and never stalls the writes of
//! everyone else. Also a stranger taking over a prover's id, and a prover's own limits.
mod support;

use proofmill_proto::v1::{
    DataChunk, ErrorCode, HeartbeatAck, Reconnect, RunningTask, TaskResult,
    coordinator_message::Kind as Out, prover_message::Kind as In, task_result::Outcome,
};
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::{JobKey, ProofType};
use std::time::Duration;
use support::*;

fn key(b: u64, t: &str) -> JobKey {
    JobKey::new(DEFAULT_CHAIN, b, ProofType::new(t).unwrap())
}

fn running(n: usize) -> Vec<RunningTask> {
    (0..n)
        .map(|i| RunningTask {
            task_id: format!("{}/exec", i + 1),
            fencing_token: 1,
        })
        .collect()
}

async fn text_and_numbers_a_store_cannot_hold_never_stall_writes(db: Db) {
    let env = Env::new(db, "unstorable");
    let c = start(&env, fast_config()).await;
    for reg in [register("a\0b", &["exec"], 1), {
        let mut r = register("a", &["exec"], 1);
        r.version = "v\u{7}1".into();
        r
    }] {
        let (_tx, mut rx) = open(&c.url(), In::Register(reg.clone())).await;
        let r = first_response(&mut rx).await;
        assert!(!r.accepted, "{reg:?} accepted");
        assert_eq!(r.code, ErrorCode::InvalidArgument as i32, "{}", r.reason);
        assert!(r.reason.contains("control characters"), "{}", r.reason);
    }
    let (_tx, mut rx) = open(
        &c.url(),
        In::Reconnect(Reconnect {
            prover_id: "p\0".into(),
            register: Some(register("a", &["exec"], 1)),
            running: vec![],
            secret: String::new(),
        }),
    )
    .await;
    assert_eq!(
        first_response(&mut rx).await.code,
        ErrorCode::InvalidArgument as i32
    );

    submit(&c.coord, 1, &[]).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t = a.task().await;
    // An error text with a NUL (PostgreSQL text cannot hold one): stored with it replaced.
    a.running.clear();
    a.send(In::TaskResult(TaskResult {
        task_id: t.task_id.clone(),
        fencing_token: t.fencing_token,
        outcome: Some(Outcome::Error("boom\0 at byte 4".into())),
        prove_ms: 1,
    }))
    .await;
    assert!(a.ack_for(&t.task_id, t.fencing_token).await.accepted);
    let job = c.coord.store().job(&key(1, "exec")).await.unwrap().unwrap();
    assert_eq!(job.last_error.as_deref(), Some("boom\u{FFFD} at byte 4"));

    // A prove time beyond what the store holds: kept as the largest it can hold.
    let t = a.task().await;
    a.running.clear();
    a.send(In::TaskResult(TaskResult {
        task_id: t.task_id.clone(),
        fencing_token: t.fencing_token,
        outcome: Some(Outcome::Proof(RawProver::proof_for(&t))),
        prove_ms: u64::MAX,
    }))
    .await;
    let ack = a.ack_for(&t.task_id, t.fencing_token).await;
    assert!(ack.accepted, "{ack:?}");
    let proof = c
        .coord
        .store()
        .proof(&key(1, "exec"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(proof.prove_ms, i64::MAX as u64);

    // Writes still flow: a new batch is proven and committed.
    submit(&c.coord, 2, &[]).await;
    let t = a.task().await;
    assert!(
        a.submit(&t.task_id, t.fencing_token, RawProver::proof_for(&t))
            .await
            .accepted
    );
    tokio::time::timeout(Duration::from_secs(10), c.coord.flush())
        .await
        .expect("the store keeps taking writes")
        .unwrap();
    c.stop().await;
}

async fn proof_chunks_are_bounded(db: Db) {
    let env = Env::new(db, "chunks_bounded");
    let c = start(&env, fast_config()).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let chunk = |task_id: &str, token: u64, offset: u64, data: Vec<u8>| {
        In::ProofChunk(DataChunk {
            task_id: task_id.into(),
            fencing_token: token,
            offset,
            data,
            last: false,
        })
    };
    a.send(chunk("not-a-task", 1, 0, vec![1])).await;
    let ack = a.ack_for("not-a-task", 1).await;
    assert_eq!(ack.code, ErrorCode::InvalidArgument as i32, "{ack:?}");

    // Chunks of a task it holds no lease of: refused, whatever follows of it unanswered.
    a.send(chunk("1/exec", 1, 0, vec![1])).await;
    let ack = a.ack_for("1/exec", 1).await;
    assert_eq!(ack.code, ErrorCode::JobNotFound as i32, "{ack:?}");
    a.send(chunk("1/exec", 1, 1, vec![2])).await;
    // A first chunk that does not start at 0.
    submit(&c.coord, 1, &[]).await;
    let t = a.task().await;
    a.send(chunk(&t.task_id, t.fencing_token, 5, vec![1])).await;
    let ack = a.ack_for(&t.task_id, t.fencing_token).await;
    assert!(ack.reason.contains("out of order"), "{ack:?}");
    assert!(
        a.next(Duration::from_millis(300)).await.is_none(),
        "nothing else answered"
    );
    assert_eq!(c.coord.in_flight().proof_bytes, 0);
    c.stop().await;
}

async fn running_lists_are_bounded(db: Db) {
    let env = Env::new(db, "running_bounded");
    let c = start(&env, fast_config()).await;
    let (_tx, mut rx) = open(
        &c.url(),
        In::Reconnect(Reconnect {
            prover_id: "p-1".into(),
            register: Some(register("a", &["exec"], 1)),
            running: running(4097),
            secret: String::new(),
        }),
    )
    .await;
    let r = first_response(&mut rx).await;
    assert_eq!(r.code, ErrorCode::InvalidArgument as i32, "{}", r.reason);
    assert!(r.reason.contains("at most 4096"), "{}", r.reason);

    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    a.send(In::HeartbeatAck(HeartbeatAck {
        seq: 1,
        running: running(4097),
        probe: None,
    }))
    .await;
    // The stream ends; nothing is sent for the bogus tasks.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match a.rx.message().await {
                Ok(Some(m)) => assert!(
                    matches!(m.kind, Some(Out::Heartbeat(_))),
                    "unexpected {m:?}"
                ),
                Ok(None) | Err(_) => return,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "stream still open");
    wait_for("the prover to be gone", Duration::from_secs(10), || async {
        c.coord.provers().await.unwrap().is_empty()
    })
    .await;
    c.stop().await;
}

/// A prover id is listed by the admin API, so knowing one must not be enough to take it
/// over: a Reconnect needs the secret issued with the id. A refused one changes nothing, and
/// the real prover's stream stays open.
async fn reconnect_needs_the_secret_of_its_id(db: Db) {
    let env = Env::new(db, "takeover");
    let c = start(&env, fast_config()).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let b = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    assert_ne!(a.secret, b.secret);
    for secret in [String::new(), "00".repeat(32), b.secret.clone()] {
        let (_tx, mut rx) = open(
            &c.url(),
            In::Reconnect(Reconnect {
                prover_id: a.id.clone(),
                register: Some(register("a", &["exec"], 1)),
                running: vec![],
                secret,
            }),
        )
        .await;
        let r = first_response(&mut rx).await;
        assert!(!r.accepted);
        assert_eq!(r.code, ErrorCode::ReconnectRefused as i32, "{}", r.reason);
    }
    // a still holds its stream: it gets the next task and its result is accepted.
    submit(&c.coord, 1, &[]).await;
    let t = a.task().await;
    let ack = a
        .submit(&t.task_id, t.fencing_token, RawProver::proof_for(&t))
        .await;
    assert!(ack.accepted, "{ack:?}");
    drop(b);
    c.stop().await;
}

/// Inputs sent to a prover fit the message limit it registered: inline only below half of
/// it, otherwise chunks of at most half. A limit too small for any task is refused.
async fn a_provers_message_limit_is_respected(db: Db) {
    let env = Env::new(db, "prover_limit");
    let c = start(&env, fast_config()).await;
    let mut reg = register("tiny", &["exec"], 1);
    reg.max_message_bytes = 100;
    let (_tx, mut rx) = open(&c.url(), In::Register(reg)).await;
    let r = first_response(&mut rx).await;
    assert_eq!(r.code, ErrorCode::InvalidArgument as i32, "{}", r.reason);

    let input = input_for(1, 20_000, 0);
    let nb = proofmill_coordinator::NewBatch {
        chain: DEFAULT_CHAIN,
        number: 1,
        version: "v1".into(),
        input: input.clone().into(),
        public_values: public(1),
        proof_types: vec![],
    };
    assert!(c.coord.submit_batch(nb).await.unwrap());
    let mut reg = register("small", &["exec"], 1);
    reg.max_message_bytes = 8192;
    let mut a = RawProver::register(&c.url(), reg).await;
    let t = a.task().await;
    assert_eq!(
        t.input,
        Some(proofmill_proto::v1::execute_task::Input::Chunked(true))
    );
    let mut data = Vec::new();
    while data.len() < input.len() {
        match a.next(Duration::from_secs(10)).await {
            Some(Out::InputChunk(ch)) => {
                assert!(ch.data.len() <= 4096, "chunk of {}", ch.data.len());
                data.extend_from_slice(&ch.data);
            }
            other => panic!("expected an input chunk, got {other:?}"),
        }
    }
    assert!(data == input);
    c.stop().await;
}

on_both_stores!(
    text_and_numbers_a_store_cannot_hold_never_stall_writes,
    proof_chunks_are_bounded,
    running_lists_are_bounded,
    reconnect_needs_the_secret_of_its_id,
    a_provers_message_limit_is_respected,
);
