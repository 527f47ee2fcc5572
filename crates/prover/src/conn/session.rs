//! One open, registered stream to a coordinator: what it sends and how it is doing.

use super::{Finished, Key, Outcome};
use proofmill_proto::v1::{
    Availability, ChunkedProof, DataChunk, ProverMessage, TaskResult, prover_message, task_result,
};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::debug;

/// State of one open, registered stream.
pub(super) struct Session {
    pub(super) out: mpsc::UnboundedSender<ProverMessage>,
    /// Proofs larger than this go as chunks of this size.
    pub(super) chunk_size: usize,
    pub(super) last_free_sent: Option<u32>,
    /// Set by the coordinator's `Shutdown` (grace deadline) or a local stop.
    pub(super) draining: Option<Instant>,
    pub(super) local_stop: bool,
    pub(super) last_rx: Instant,
    pub(super) silence_limit: Option<Duration>,
}

impl Session {
    pub(super) fn send(&self, kind: prover_message::Kind) {
        // A failed send means the stream is gone; the read side notices and ends the session.
        let _ = self.out.send(ProverMessage { kind: Some(kind) });
    }

    pub(super) fn send_availability(&mut self, free: u32) {
        let free = if self.draining.is_some() { 0 } else { free };
        if self.last_free_sent != Some(free) {
            self.last_free_sent = Some(free);
            debug!(free_slots = free, "availability");
            self.send(prover_message::Kind::Availability(Availability {
                free_slots: free,
            }));
        }
    }

    pub(super) fn send_result(&self, key: &Key, f: &Finished) {
        let (task_id, token) = key;
        let outcome = match &f.outcome {
            Outcome::Error(e) => task_result::Outcome::Error(e.clone()),
            Outcome::Proof { bytes, digest } if bytes.len() > self.chunk_size => {
                let n = bytes.len().div_ceil(self.chunk_size);
                for (i, chunk) in bytes.chunks(self.chunk_size).enumerate() {
                    self.send(prover_message::Kind::ProofChunk(DataChunk {
                        task_id: task_id.clone(),
                        fencing_token: *token,
                        offset: (i * self.chunk_size) as u64,
                        data: chunk.to_vec(),
                        last: i + 1 == n,
                    }));
                }
                task_result::Outcome::ProofChunked(ChunkedProof {
                    size: bytes.len() as u64,
                    digest: digest.0.to_vec(),
                })
            }
            Outcome::Proof { bytes, .. } => task_result::Outcome::Proof(bytes.clone()),
        };
        self.send(prover_message::Kind::TaskResult(TaskResult {
            task_id: task_id.clone(),
            fencing_token: *token,
            outcome: Some(outcome),
            prove_ms: f.prove_ms,
        }));
    }
}
