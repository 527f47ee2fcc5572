//! Proofs arriving in chunks on one stream. A chunk is kept only for a task the prover holds
//! a live lease of (checked by the session when a proof's first chunk arrives), within the
//! size a proof may have, and within the coordinator's one budget for proofs in flight.

use crate::limits::ProofBudget;
use proofmill_proto::v1::{DataChunk, ErrorCode};
use std::collections::{HashMap, VecDeque};
use tokio::sync::OwnedSemaphorePermit;

/// A proof by (task id, fencing token).
pub(crate) type Key = (String, u64);

/// Refused proofs remembered, so that their later chunks are dropped without an answer each.
const REFUSED_REMEMBERED: usize = 64;

struct Partial {
    data: Vec<u8>,
    /// Its bytes in the proof budget.
    held: OwnedSemaphorePermit,
}

/// A proof's bytes and their share of the proof budget, given back when dropped.
pub(crate) struct ProofBytes {
    pub data: Vec<u8>,
    held: Option<OwnedSemaphorePermit>,
}

impl ProofBytes {
    pub fn new(data: Vec<u8>, held: Option<OwnedSemaphorePermit>) -> Self {
        ProofBytes { data, held }
    }

    /// Counts it in the budget now if it is not yet.
    pub fn hold(&mut self, budget: &ProofBudget) -> Result<(), String> {
        if self.held.is_none() {
            self.held = Some(budget.take(self.data.len())?);
        }
        Ok(())
    }

    /// The bytes, and their share of the budget (to keep as long as the bytes are).
    pub fn into_parts(self) -> (Vec<u8>, Option<OwnedSemaphorePermit>) {
        (self.data, self.held)
    }
}

/// Bounded: at most `max_entries` proofs at once (the prover's capacity and one more), each
/// at most `max_bytes`, all of them within the shared budget.
pub(crate) struct PartialProofs {
    buffers: HashMap<Key, Partial>,
    refused: VecDeque<Key>,
    max_entries: usize,
    max_bytes: u64,
}

impl PartialProofs {
    pub fn new(capacity: u32, max_bytes: u64) -> Self {
        PartialProofs {
            buffers: HashMap::new(),
            refused: VecDeque::new(),
            max_entries: capacity as usize + 1,
            max_bytes,
        }
    }

    /// Chunks of this proof are being kept.
    pub fn receiving(&self, key: &Key) -> bool {
        self.buffers.contains_key(key)
    }

    /// This proof was refused (and its prover told so) already.
    pub fn was_refused(&self, key: &Key) -> bool {
        self.refused.contains(key)
    }

    /// A proof sent again from its start is checked anew.
    pub fn forgive(&mut self, key: &Key) {
        self.refused.retain(|k| k != key);
    }

    /// Remembers a refused proof; its partial data, if any, is dropped.
    pub fn refuse(&mut self, key: Key) {
        self.buffers.remove(&key);
        if self.refused.len() >= REFUSED_REMEMBERED {
            self.refused.pop_front();
        }
        self.refused.push_back(key);
    }

    /// Appends a chunk of a proof whose lease was checked; on error the proof is dropped
    /// and remembered as refused.
    pub fn push(&mut self, budget: &ProofBudget, c: DataChunk) -> Result<(), (ErrorCode, String)> {
        let key = (c.task_id, c.fencing_token);
        let refused = |p: &mut Self, code, reason: String| {
            p.refuse(key.clone());
            Err((code, reason))
        };
        let (offset, size) = match self.buffers.get(&key) {
            Some(p) => (p.data.len() as u64, p.data.len() as u64),
            None if self.buffers.len() >= self.max_entries => {
                let reason = format!("more than {} proofs in chunks at once", self.max_entries);
                return refused(self, ErrorCode::InvalidArgument, reason);
            }
            None => (0, 0),
        };
        if c.offset != offset {
            return refused(
                self,
                ErrorCode::InvalidArgument,
                "proof chunk out of order".into(),
            );
        }
        if size + c.data.len() as u64 > self.max_bytes {
            let reason = format!("proof over the limit of {} bytes", self.max_bytes);
            return refused(self, ErrorCode::InvalidArgument, reason);
        }
        let more = match budget.take(c.data.len()) {
            Ok(p) => p,
            Err(reason) => return refused(self, ErrorCode::SystemUnavailable, reason),
        };
        match self.buffers.get_mut(&key) {
            Some(p) => {
                p.data.extend_from_slice(&c.data);
                p.held.merge(more);
            }
            None => {
                self.buffers.insert(
                    key,
                    Partial {
                        data: c.data,
                        held: more,
                    },
                );
            }
        }
        Ok(())
    }

    /// The whole proof, with its share of the budget.
    pub fn take(&mut self, key: &Key) -> Option<ProofBytes> {
        let p = self.buffers.remove(key)?;
        Some(ProofBytes::new(p.data, Some(p.held)))
    }
}
