//! One attempt at a job: a lease, or a backup copy of a straggling task, from the moment it
//! is handed to a prover until it ends. Kept for the job's history (`proofmill job`), one
//! row per attempt, as Scroll's coordinator keeps a row per assignment.

use crate::{FencingToken, JobKey, Millis, ProverId};
use std::fmt;

/// How an attempt ended.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum AttemptOutcome {
    /// Its proof was verified and accepted.
    Proven,
    /// The prover reported that it could not prove the task.
    Failed,
    /// The prover's proof failed verification.
    InvalidProof,
    /// The prover had no free slot after all; requeued without counting.
    Declined,
    /// It ended without a result: the prover was lost, reconnected without the task, or the
    /// lease deadline passed.
    Lost,
    /// Stopped: an operator cancelled the job, the batch's input was replaced, or the job
    /// failed on its other copy.
    Cancelled,
    /// The other copy of the task (its backup, or the original) finished first.
    Superseded,
}

impl AttemptOutcome {
    pub const ALL: [AttemptOutcome; 7] = [
        AttemptOutcome::Proven,
        AttemptOutcome::Failed,
        AttemptOutcome::InvalidProof,
        AttemptOutcome::Declined,
        AttemptOutcome::Lost,
        AttemptOutcome::Cancelled,
        AttemptOutcome::Superseded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Proven => "proven",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::InvalidProof => "invalid_proof",
            AttemptOutcome::Declined => "declined",
            AttemptOutcome::Lost => "lost",
            AttemptOutcome::Cancelled => "cancelled",
            AttemptOutcome::Superseded => "superseded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        AttemptOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl fmt::Display for AttemptOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt, as the store keeps it. Its fencing token names it: every attempt has its own.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Attempt {
    pub key: JobKey,
    pub token: FencingToken,
    pub prover: ProverId,
    /// The prover's name when the attempt started.
    pub prover_name: String,
    /// A backup copy of a straggling task rather than the job's lease.
    pub backup: bool,
    pub started_at: Millis,
    /// `None` while it runs.
    pub ended_at: Option<Millis>,
    pub outcome: Option<AttemptOutcome>,
    /// The prover's error, or why the attempt ended; empty when proven.
    pub detail: String,
    /// How long the prover says it took, when it sent a result.
    pub prove_ms: Option<u64>,
}
