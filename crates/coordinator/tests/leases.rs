//! Leases under real traffic, on SQLite and Postgres: a prover busy downloading a large
//! input or uploading a large proof keeps its lease though its heartbeat answers wait behind
//! the data, and a stale result is refused before it costs a verification.
mod support;

use proofmill_backend::{Backend, BackendError, ProveRequest, VerifyError};
use proofmill_coordinator::NewBatch;
use proofmill_proto::v1::{
    ChunkedProof, DataChunk, ErrorCode, TaskResult, coordinator_message::Kind as Out,
    execute_task::Input, prover_message::Kind as In, task_result::Outcome,
};
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::{JobKey, ProofType, PublicValues};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use support::*;

fn key(b: u64) -> JobKey {
    JobKey::new(DEFAULT_CHAIN, b, ProofType::new("exec").unwrap())
}

/// Liveness of 100 ms × 5: far shorter than the transfers below.
fn short_liveness() -> proofmill_coordinator::CoordinatorConfig {
    let mut cfg = fast_config();
    cfg.scheduler.heartbeat_interval_ms = 100;
    cfg.scheduler.missed_heartbeats = 5;
    cfg
}

async fn submit_input(c: &Running, n: u64, input: Vec<u8>) {
    let nb = NewBatch {
        chain: DEFAULT_CHAIN,
        number: n,
        version: "v1".into(),
        input: input.into(),
        public_values: public(n),
        proof_types: vec![],
    };
    assert!(c.coord.submit_batch(nb).await.unwrap());
}

/// A 16 MiB input in 64 KiB chunks, read at 4 ms a chunk (about 1 s in all, twice the
/// liveness window). The coordinator sends its heartbeats between chunks, with only a few
/// chunks ahead of them, so the prover answers in time. (With every chunk queued ahead,
/// the first heartbeat arrives after the whole input and the lease is gone.)
async fn slow_input_download_keeps_the_lease(db: Db) {
    let env = Env::new(db, "slow_input");
    let mut cfg = short_liveness();
    cfg.inline_input_max = 64 << 10;
    cfg.chunk_bytes = 64 << 10;
    let c = start(&env, cfg).await;
    let input = input_for(1, 16 << 20, 0);
    submit_input(&c, 1, input.clone()).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t = a.task().await;
    assert_eq!(t.input, Some(Input::Chunked(true)));
    let mut data = Vec::new();
    loop {
        // `next` answers the heartbeats that come in between.
        match a.next(Duration::from_secs(10)).await {
            Some(Out::InputChunk(ch)) => {
                data.extend_from_slice(&ch.data);
                tokio::time::sleep(Duration::from_millis(4)).await;
                if ch.last {
                    break;
                }
            }
            other => panic!("expected an input chunk, got {other:?}"),
        }
    }
    assert!(data == input, "the input arrived whole");
    let ack = a
        .submit(&t.task_id, t.fencing_token, RawProver::proof_for(&t))
        .await;
    assert!(ack.accepted, "{ack:?}");
    let job = c.coord.store().job(&key(1)).await.unwrap().unwrap();
    assert_eq!(job.lost_attempts, 0, "the lease was never lost");
    c.stop().await;
}

/// A prover uploading a proof in chunks for about 1.2 s does not answer heartbeats (its
/// answers would queue behind the chunks): the chunks arriving keep it alive.
async fn slow_proof_upload_keeps_the_lease(db: Db) {
    let env = Env::new(db, "slow_proof");
    let c = start(&env, short_liveness()).await;
    submit(&c.coord, 1, &[]).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    a.answer_heartbeats = false;
    let t = a.task().await;
    let proof = RawProver::proof_for(&t);
    for (i, part) in proof.chunks(8).enumerate() {
        a.send(In::ProofChunk(DataChunk {
            task_id: t.task_id.clone(),
            fencing_token: t.fencing_token,
            offset: (i * 8) as u64,
            data: part.to_vec(),
            last: (i + 1) * 8 >= proof.len(),
        }))
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    a.send(In::TaskResult(TaskResult {
        task_id: t.task_id.clone(),
        fencing_token: t.fencing_token,
        outcome: Some(Outcome::ProofChunked(ChunkedProof {
            size: proof.len() as u64,
            digest: proofmill_types::Digest::sha256(&proof).0.to_vec(),
        })),
        prove_ms: 1,
    }))
    .await;
    let ack = a.ack_for(&t.task_id, t.fencing_token).await;
    assert!(ack.accepted, "{ack:?}");
    let job = c.coord.store().job(&key(1)).await.unwrap().unwrap();
    assert_eq!(job.lost_attempts, 0, "the lease was never lost");
    c.stop().await;
}

/// A prover that stops reading in the middle of a large input (its HTTP/2 window full, the
/// writer waiting for it) stops answering heartbeats too: it is declared dead and let go.
/// Its session ends, with the input it held, although the prover keeps the stream open.
async fn a_stalled_prover_is_let_go(db: Db) {
    let env = Env::new(db, "stalled");
    let mut cfg = short_liveness();
    cfg.inline_input_max = 64 << 10;
    cfg.chunk_bytes = 64 << 10;
    let c = start(&env, cfg).await;
    submit_input(&c, 1, input_for(1, 16 << 20, 7)).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let t = a.task().await;
    assert_eq!(t.input, Some(Input::Chunked(true)));
    assert_eq!(c.coord.open_sessions(), 1);
    // From here on nothing is read.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while c.coord.open_sessions() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stalled session is still open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.coord.flush().await.unwrap();
    let job = c.coord.store().job(&key(1)).await.unwrap().unwrap();
    assert_eq!(job.lost_attempts, 1, "{job:?}");
    assert!(c.coord.provers().await.unwrap().is_empty());
    drop(a);
    c.stop().await;
}

/// The exec check, counted, and not cheap (so results take the verification path that
/// costs: a blocking thread, a blob write for large proofs).
#[derive(Default)]
struct CountedVerifier {
    verified: AtomicUsize,
}

impl Backend for CountedVerifier {
    fn name(&self) -> &str {
        "counted"
    }
    fn prove(&self, _: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError> {
        Err(BackendError::Failed("verify only".into()))
    }
    fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError> {
        self.verified.fetch_add(1, Ordering::SeqCst);
        if proof == public.as_bytes() {
            Ok(())
        } else {
            Err(VerifyError::Invalid("wrong public values".into()))
        }
    }
}

/// A result whose lease was lost is refused as stale without being verified.
async fn stale_result_is_refused_before_verification(db: Db) {
    let env = Env::new(db, "fence_first");
    let counted = Arc::new(CountedVerifier::default());
    let mut cfg = short_liveness();
    cfg.backends.insert(counted.clone());
    cfg.proof_types = vec![(ProofType::new("exec").unwrap(), "counted".into())];
    let c = start(&env, cfg).await;
    submit(&c.coord, 1, &[]).await;
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    a.answer_heartbeats = false;
    let ta = a.task().await;
    // a misses its heartbeats; b gets the batch.
    let mut b = RawProver::register(&c.url(), register("b", &["exec"], 1)).await;
    let tb = b.task().await;
    assert_eq!(tb.batch, 1);
    let running = running_of(&[&ta]);
    let mut a2 =
        RawProver::reconnect(&c.url(), &a.who(), register("a", &["exec"], 1), running).await;
    let late = a2
        .submit(&ta.task_id, ta.fencing_token, RawProver::proof_for(&ta))
        .await;
    assert_eq!(late.code, ErrorCode::StaleFencingToken as i32, "{late:?}");
    assert_eq!(counted.verified.load(Ordering::SeqCst), 0, "never verified");
    let ok = b
        .submit(&tb.task_id, tb.fencing_token, RawProver::proof_for(&tb))
        .await;
    assert!(ok.accepted, "{ok:?}");
    assert_eq!(counted.verified.load(Ordering::SeqCst), 1);
    c.stop().await;
}

on_both_stores!(
    slow_input_download_keeps_the_lease,
    slow_proof_upload_keeps_the_lease,
    a_stalled_prover_is_let_go,
    stale_result_is_refused_before_verification
);
