//! What the prover sends on one stream, in order: a bounded queue the session fills and the
//! gRPC request stream drains as fast as the coordinator reads. A result is queued by
//! reference and cut into `ProofChunk`s only as the stream takes it, so a queued proof
//! costs no copy.

use crate::tasks::{Assignment, FinishedTask, TaskOutput};
use proofmill_proto::v1::{
    ChunkedProof, DataChunk, ProverMessage, TaskResult, prover_message, task_result,
};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::sync::mpsc;
use tokio_stream::Stream;

/// Messages queued beyond the results a link may hold (each sent once when a stream opens):
/// room for a burst of replies (heartbeat acks, declines, availability), which a coordinator
/// reading its stream takes as fast as they come.
const REPLIES_QUEUED: usize = 1024;

/// The queue's limit for a link that may hold `results` unacknowledged results.
pub(crate) fn limit(results: usize) -> usize {
    results + REPLIES_QUEUED
}

/// The queue is full: the coordinator does not read what it is sent.
#[derive(Debug, thiserror::Error)]
#[error("{0} messages wait for the coordinator to read them")]
pub(crate) struct QueueFull(pub usize);

/// The sending side; a send fails once `limit` messages wait.
pub(crate) struct Outgoing {
    tx: mpsc::Sender<ToSend>,
    limit: usize,
}

/// The request stream of the gRPC call.
pub(crate) struct OutgoingStream {
    rx: mpsc::Receiver<ToSend>,
    /// The proof being sent in chunks, if any.
    chunking: Option<Chunking>,
}

enum ToSend {
    Message(ProverMessage),
    Result {
        task: Assignment,
        finished: Arc<FinishedTask>,
        chunk_size: usize,
    },
}

struct Chunking {
    task: Assignment,
    finished: Arc<FinishedTask>,
    chunk_size: usize,
    /// Bytes of the proof sent so far.
    sent: usize,
}

pub(crate) fn queue(limit: usize) -> (Outgoing, OutgoingStream) {
    let limit = limit.max(1);
    let (tx, rx) = mpsc::channel(limit);
    let stream = OutgoingStream { rx, chunking: None };
    (Outgoing { tx, limit }, stream)
}

impl Outgoing {
    pub fn send(&self, kind: prover_message::Kind) -> Result<(), QueueFull> {
        self.push(ToSend::Message(ProverMessage { kind: Some(kind) }))
    }

    /// Queues a result; a proof larger than `chunk_size` goes as chunks of that size.
    pub fn send_result(
        &self,
        task: Assignment,
        finished: Arc<FinishedTask>,
        chunk_size: usize,
    ) -> Result<(), QueueFull> {
        self.push(ToSend::Result {
            task,
            finished,
            chunk_size: chunk_size.max(1),
        })
    }

    fn push(&self, item: ToSend) -> Result<(), QueueFull> {
        match self.tx.try_send(item) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(QueueFull(self.limit)),
            // The stream is gone; the session notices on the read side.
            Err(mpsc::error::TrySendError::Closed(_)) => Ok(()),
        }
    }
}

impl Stream for OutgoingStream {
    type Item = ProverMessage;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<ProverMessage>> {
        if let Some(chunking) = &mut self.chunking {
            let (message, done) = chunking.next();
            if done {
                self.chunking = None;
            }
            return Poll::Ready(Some(message));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(ToSend::Message(m))) => Poll::Ready(Some(m)),
            Poll::Ready(Some(ToSend::Result {
                task,
                finished,
                chunk_size,
            })) => Poll::Ready(Some(match &finished.output {
                TaskOutput::Proof { bytes, .. } if bytes.len() > chunk_size => {
                    let mut chunking = Chunking {
                        task,
                        finished: finished.clone(),
                        chunk_size,
                        sent: 0,
                    };
                    let (first, _) = chunking.next();
                    self.chunking = Some(chunking);
                    first
                }
                output => result_message(&task, &finished, inline(output)),
            })),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Chunking {
    /// The next chunk, or the closing `TaskResult` once every chunk is out (`true`).
    fn next(&mut self) -> (ProverMessage, bool) {
        let TaskOutput::Proof { bytes, digest } = &self.finished.output else {
            unreachable!("only proofs are chunked")
        };
        if self.sent == bytes.len() {
            let outcome = task_result::Outcome::ProofChunked(ChunkedProof {
                size: bytes.len() as u64,
                digest: digest.0.to_vec(),
            });
            return (result_message(&self.task, &self.finished, outcome), true);
        }
        let end = (self.sent + self.chunk_size).min(bytes.len());
        let chunk = DataChunk {
            task_id: self.task.task_id.clone(),
            fencing_token: self.task.token,
            offset: self.sent as u64,
            data: bytes[self.sent..end].to_vec(),
            last: end == bytes.len(),
        };
        self.sent = end;
        let kind = prover_message::Kind::ProofChunk(chunk);
        (ProverMessage { kind: Some(kind) }, false)
    }
}

fn inline(output: &TaskOutput) -> task_result::Outcome {
    match output {
        TaskOutput::Proof { bytes, .. } => task_result::Outcome::Proof(bytes.clone()),
        TaskOutput::Error(e) => task_result::Outcome::Error(e.clone()),
    }
}

fn result_message(
    task: &Assignment,
    finished: &FinishedTask,
    outcome: task_result::Outcome,
) -> ProverMessage {
    let result = TaskResult {
        task_id: task.task_id.clone(),
        fencing_token: task.token,
        outcome: Some(outcome),
        prove_ms: finished.prove_ms,
    };
    ProverMessage {
        kind: Some(prover_message::Kind::TaskResult(result)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofmill_proto::v1::{Availability, HeartbeatAck};
    use proofmill_types::Digest;
    use tokio_stream::StreamExt as _;

    fn task() -> Assignment {
        Assignment {
            task_id: "1/exec".into(),
            token: 7,
        }
    }

    fn proof(len: usize) -> Arc<FinishedTask> {
        let bytes: Vec<u8> = (0..len).map(|i| i as u8).collect();
        let digest = Digest::sha256(&bytes);
        Arc::new(FinishedTask {
            output: TaskOutput::Proof { bytes, digest },
            prove_ms: 3,
        })
    }

    fn ack(seq: u64) -> prover_message::Kind {
        prover_message::Kind::HeartbeatAck(HeartbeatAck {
            seq,
            running: Vec::new(),
            probe: None,
        })
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_takes_again_once_read() {
        let (out, mut stream) = queue(3);
        for seq in 0..3 {
            out.send(ack(seq)).unwrap();
        }
        let full = out.send(ack(3)).unwrap_err();
        assert_eq!(full.0, 3);
        assert!(full.to_string().contains("3 messages wait"), "{full}");
        // A queued result costs one place however large its proof is.
        let m = stream.next().await.unwrap();
        assert!(matches!(m.kind, Some(prover_message::Kind::HeartbeatAck(a)) if a.seq == 0));
        out.send_result(task(), proof(1 << 20), 1024).unwrap();
        assert!(out.send(ack(4)).is_err());
        drop(stream);
        assert!(
            out.send(ack(5)).is_ok(),
            "a closed stream is not a full queue: the read side ends the session"
        );
    }

    #[tokio::test]
    async fn proofs_over_the_chunk_size_go_in_chunks_in_order() {
        let (out, stream) = queue(10);
        let big = proof(2500);
        out.send_result(task(), big.clone(), 1000).unwrap();
        out.send(prover_message::Kind::Availability(Availability {
            free_slots: 1,
        }))
        .unwrap();
        out.send_result(task(), proof(1000), 1000).unwrap();
        drop(out);
        let got: Vec<ProverMessage> = stream.collect().await;
        let kinds: Vec<_> = got.into_iter().map(|m| m.kind.unwrap()).collect();
        let mut proof_bytes = Vec::new();
        for (i, k) in kinds[..3].iter().enumerate() {
            let prover_message::Kind::ProofChunk(c) = k else {
                panic!("chunk {i}: {k:?}")
            };
            assert_eq!((c.offset as usize, c.last), (proof_bytes.len(), i == 2));
            proof_bytes.extend_from_slice(&c.data);
        }
        let TaskOutput::Proof { bytes, digest } = &big.output else {
            unreachable!()
        };
        assert_eq!(&proof_bytes, bytes);
        let prover_message::Kind::TaskResult(r) = &kinds[3] else {
            panic!("{:?}", kinds[3])
        };
        assert_eq!(
            r.outcome,
            Some(task_result::Outcome::ProofChunked(ChunkedProof {
                size: 2500,
                digest: digest.0.to_vec()
            }))
        );
        assert_eq!((r.prove_ms, r.fencing_token), (3, 7));
        assert!(matches!(kinds[4], prover_message::Kind::Availability(_)));
        let prover_message::Kind::TaskResult(r) = &kinds[5] else {
            panic!("{:?}", kinds[5])
        };
        assert!(
            matches!(&r.outcome, Some(task_result::Outcome::Proof(p)) if p.len() == 1000),
            "a proof of exactly the chunk size goes inline"
        );
        assert_eq!(kinds.len(), 6);
    }
}
