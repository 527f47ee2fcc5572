//! A batch's held jobs (offered to a proof market: [`proofmill_types::JobState::Held`]) leave
//! the hold one of two ways, each under the batch's intake claim, so neither races a cancel,
//! a replacement, or the other: released to the own provers (the market fell back), or
//! completed by a proving network's checked proof.

use super::Intake;
use crate::error::CoordinatorError;
use crate::now_ms;
use proofmill_types::{BatchId, JobKey, JobState, ProofRecord};
use std::sync::Arc;

/// What came of a proving network's proof for a held job ([`crate::MarketPort::deliver`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivered {
    /// Checked and stored as the job's proof: the job is proven.
    Accepted,
    /// The job was proven already (this proof before a restart, or another).
    AlreadyProven,
    /// The proof does not verify against the batch's public values.
    Invalid(String),
    /// The proof verifies, but the job is no longer held (the market fell back, or an
    /// operator cancelled or replaced the batch): it is not used.
    NotHeld,
}

impl Intake {
    /// Queues the held jobs of batch `id` for the own provers; returns how many (0 when none
    /// is held: released before, proven, or cancelled). Durable when it returns.
    pub(crate) async fn release_held(&self, id: BatchId) -> Result<usize, CoordinatorError> {
        let _claim = self.in_flight.claim(id).await;
        let held: Vec<_> = self
            .batch_jobs(id)
            .await?
            .into_iter()
            .filter(|j| j.state == JobState::Held)
            .collect();
        if held.is_empty() {
            return Ok(0);
        }
        let batch = self
            .store
            .batch(id.chain, id.number)
            .await?
            .ok_or_else(|| CoordinatorError::UnknownBatch(id.to_string()))?;
        self.core.release_held(Arc::new(batch), held).await
    }

    /// Completes the held job `key` with `record` (a proof already checked against the
    /// batch), durably. See [`Delivered`] for what else may come of it.
    pub(crate) async fn take_market_proof(
        &self,
        key: &JobKey,
        record: ProofRecord,
    ) -> Result<Delivered, CoordinatorError> {
        let _claim = self.in_flight.claim(key.batch_id()).await;
        let Some(mut job) = self.store.job(key).await? else {
            return Err(CoordinatorError::JobNotFound(key.to_string()));
        };
        match job.state {
            JobState::Proven => return Ok(Delivered::AlreadyProven),
            JobState::Held => {}
            _ => return Ok(Delivered::NotHeld),
        }
        job.state = JobState::Proven;
        job.lease = None;
        job.last_error = None;
        job.updated_at = now_ms();
        Ok(match self.core.market_proof(job, record).await? {
            true => Delivered::Accepted,
            false => Delivered::NotHeld,
        })
    }
}
