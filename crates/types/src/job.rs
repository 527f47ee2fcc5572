use crate::{BatchNumber, ChainId, Digest, FencingToken, Millis, ProofType, ProverId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One job per (chain, batch, proof type).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct JobKey {
    /// The rollup the batch belongs to: batch numbers are per chain.
    pub chain: ChainId,
    pub batch: BatchNumber,
    pub proof_type: ProofType,
}

impl JobKey {
    pub fn new(chain: ChainId, batch: BatchNumber, proof_type: ProofType) -> Self {
        JobKey {
            chain,
            batch,
            proof_type,
        }
    }

    /// The batch this job proves.
    pub fn batch_id(&self) -> crate::BatchId {
        crate::BatchId::new(self.chain, self.batch)
    }
}

/// `<batch>/<proof type>` on the default chain, `<chain>:<batch>/<proof type>` on others (the
/// task id on the wire: see [`crate::TaskId`]).
impl fmt::Display for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.batch_id(), self.proof_type)
    }
}
impl fmt::Debug for JobKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// `queued → leased → proven | failed | cancelled`; `failed` and `cancelled` may be requeued
/// by an admin. Leases that are lost go back to `queued`. A job of a batch offered to a
/// proving network starts `held`: the own provers do not see it until the market falls back
/// (`held → queued`) or the network's proof is accepted (`held → proven`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Leased,
    Proven,
    Failed,
    Cancelled,
    Held,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Held,
        JobState::Queued,
        JobState::Leased,
        JobState::Proven,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Leased => "leased",
            JobState::Proven => "proven",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
            JobState::Held => "held",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        JobState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Proven | JobState::Failed | JobState::Cancelled
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who holds a job and until when.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Lease {
    pub prover: ProverId,
    pub token: FencingToken,
    pub leased_at: Millis,
    /// Hard deadline (`--prover-timeout` after leasing); heartbeats do not extend it.
    pub deadline: Millis,
}

#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Job {
    pub key: JobKey,
    pub state: JobState,
    /// Version copied from the batch, so the scheduler can match provers without a lookup.
    pub version: String,
    /// Results that were errors or failed verification.
    pub failed_attempts: u32,
    /// Leases that ended because the prover vanished or timed out.
    pub lost_attempts: u32,
    pub lease: Option<Lease>,
    /// Earliest time the job may be leased again (retry backoff).
    pub not_before: Millis,
    pub last_error: Option<String>,
    pub updated_at: Millis,
}

impl Job {
    pub fn new_queued(key: JobKey, version: String, now: Millis) -> Self {
        Job::new(key, JobState::Queued, version, now)
    }

    /// A new job in `state` (`queued`, or `held` for the proof market), never leased.
    pub fn new(key: JobKey, state: JobState, version: String, now: Millis) -> Self {
        Job {
            key,
            state,
            version,
            failed_attempts: 0,
            lost_attempts: 0,
            lease: None,
            not_before: 0,
            last_error: None,
            updated_at: now,
        }
    }
}

/// An accepted, verified proof.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ProofRecord {
    pub key: JobKey,
    /// Blob-store key of the proof bytes; empty when they are `inline`.
    pub blob_key: String,
    /// The proof bytes themselves when small: kept in the database row, which saves a blob
    /// write per proof (a file create on a local store) on the hot path.
    pub inline: Option<Vec<u8>>,
    pub size: u64,
    pub digest: Digest,
    pub prover: ProverId,
    pub prover_name: String,
    pub token: FencingToken,
    pub leased_at: Millis,
    pub received_at: Millis,
    /// Time the prover reports it spent proving.
    pub prove_ms: u64,
}
