//! Stateless re-execution of a batch input: what the `exec` backend runs and what the circuit
//! proves.

use crate::input::{BatchInput, DecodeError};
use crate::poseidon::fr_to_digest;
use crate::transfer::{
    RejectReason, check_stateless, commitment_start, commitment_step, credit_receiver, debit_sender,
};
use crate::transition::StateTransition;
use crate::tree::{MAX_DEPTH, MIN_DEPTH, compute_root};
use ark_bn254::Fr;
use proofmill_types::Digest;

/// Why a batch input does not execute (or cannot be replayed).
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum ExecError {
    #[error("malformed batch input: {0}")]
    Decode(#[from] DecodeError),
    #[error("tree depth {0} outside {MIN_DEPTH}..={MAX_DEPTH}")]
    BadDepth(u8),
    #[error("transfer {transfer}: Merkle paths must have {depth} siblings")]
    PathLength { transfer: usize, depth: u8 },
    #[error("transfer {transfer}: sender witness does not match the state root")]
    SenderPath { transfer: usize },
    #[error("transfer {transfer}: receiver witness does not match the state root")]
    ReceiverPath { transfer: usize },
    #[error("transfer {transfer} is invalid: {reason}")]
    Rejected {
        transfer: usize,
        reason: RejectReason,
    },
    #[error("cannot replay with {0} pending transfers in the mempool")]
    PendingNotEmpty(usize),
    #[error("replay expected batch {expected}, got batch {got}")]
    WrongBatch { expected: u64, got: u64 },
    #[error("replay expected tree depth {expected}, got {got}")]
    WrongDepth { expected: u8, got: u8 },
    #[error("batch starts from root {got}, but the state root is {expected}")]
    OldRootMismatch { expected: Digest, got: Digest },
}

/// The three public values as field elements (the circuit's public inputs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ExecOutput {
    /// State root before the batch.
    pub old_root: Fr,
    /// State root after the batch.
    pub new_root: Fr,
    /// Batch commitment (hash chain over number and transfers).
    pub commitment: Fr,
}

impl ExecOutput {
    /// As the 32-byte digests the coordinator and L1 use.
    pub fn transition(&self) -> StateTransition {
        StateTransition {
            old_state_root: fr_to_digest(self.old_root),
            new_state_root: fr_to_digest(self.new_root),
            batch_commitment: fr_to_digest(self.commitment),
        }
    }
}

impl BatchInput {
    /// Re-executes the batch from its witnesses alone. Per transfer, in this order:
    /// stateless checks (indices, self transfer, amount); sender leaf + path against the
    /// running root; nonce/balance rules; new sender leaf gives the intermediate root;
    /// receiver leaf + path against it; receiver overflow; new receiver leaf gives the next
    /// root. The commitment chain absorbs every transfer.
    pub fn execute(&self) -> Result<ExecOutput, ExecError> {
        if !(MIN_DEPTH..=MAX_DEPTH).contains(&self.depth) {
            return Err(ExecError::BadDepth(self.depth));
        }
        let depth = usize::from(self.depth);
        let mut root = self.old_root;
        let mut commitment = commitment_start(self.number);
        for (i, w) in self.transfers.iter().enumerate() {
            let t = &w.transfer;
            if w.sender_path.len() != depth || w.receiver_path.len() != depth {
                return Err(ExecError::PathLength {
                    transfer: i,
                    depth: self.depth,
                });
            }
            let rejected = |reason| ExecError::Rejected {
                transfer: i,
                reason,
            };
            check_stateless(t, self.depth).map_err(rejected)?;
            if compute_root(w.sender.leaf(), t.from, &w.sender_path) != root {
                return Err(ExecError::SenderPath { transfer: i });
            }
            let new_sender = debit_sender(t, w.sender).map_err(rejected)?;
            let mid_root = compute_root(new_sender.leaf(), t.from, &w.sender_path);
            if compute_root(w.receiver.leaf(), t.to, &w.receiver_path) != mid_root {
                return Err(ExecError::ReceiverPath { transfer: i });
            }
            let new_receiver = credit_receiver(t, w.receiver).map_err(rejected)?;
            root = compute_root(new_receiver.leaf(), t.to, &w.receiver_path);
            commitment = commitment_step(commitment, t);
        }
        Ok(ExecOutput {
            old_root: self.old_root,
            new_root: root,
            commitment,
        })
    }
}

/// Decodes and statelessly re-executes an encoded [`BatchInput`], returning the transition
/// it makes. Never panics: malformed or inconsistent input is an [`ExecError`].
pub fn execute_batch_input(bytes: &[u8]) -> Result<StateTransition, ExecError> {
    Ok(BatchInput::decode(bytes)?.execute()?.transition())
}
