//! An operator's controls over jobs: cancel one, retry one, retry every failed job of a
//! batch. What the store says is checked first (an unknown or proven job changes nothing);
//! every change itself is the core's.

use crate::core::CoreHandle;
use crate::error::CoordinatorError;
use proofmill_store::{JobFilter, Store};
use proofmill_types::{BatchId, Job, JobKey, JobState};
use std::sync::Arc;

/// See the module doc. Cheap to clone.
#[derive(Clone)]
pub(crate) struct JobControls {
    pub store: Arc<dyn Store>,
    pub core: CoreHandle,
}

impl JobControls {
    async fn job(&self, key: &JobKey) -> Result<Job, CoordinatorError> {
        self.store
            .job(key)
            .await?
            .ok_or_else(|| CoordinatorError::JobNotFound(key.to_string()))
    }

    /// Cancels a job that is not proven: its prover (if it runs it) is told to stop and its
    /// token is fenced, so a late result is refused. Returns once that is durable: `true`,
    /// or `false` when the job was cancelled already. A proven job, or one whose proof
    /// arrives first, is refused with `FailedPrecondition` and keeps its proof.
    pub async fn cancel_job(&self, key: &JobKey, reason: &str) -> Result<bool, CoordinatorError> {
        let job = self.job(key).await?;
        match job.state {
            JobState::Proven => return Err(proven(key)),
            JobState::Cancelled => return Ok(false),
            JobState::Queued | JobState::Leased | JobState::Failed | JobState::Held => {}
        }
        // Failed and held jobs are not the scheduler's: the store's row is what is closed.
        let closed = if matches!(job.state, JobState::Failed | JobState::Held) {
            vec![job]
        } else {
            Vec::new()
        };
        let n = self
            .core
            .cancel_jobs(
                key.batch_id(),
                Some(key.proof_type.clone()),
                closed,
                reason.to_string(),
            )
            .await?;
        if n > 0 {
            return Ok(true);
        }
        // The core no longer had it open: its result won the race (or another cancel did).
        // What the store holds once the writes before are durable says which.
        self.core.flush().await?;
        match self.job(key).await?.state {
            JobState::Proven => Err(proven(key)),
            JobState::Cancelled => Ok(false),
            other => Err(CoordinatorError::FailedPrecondition(format!(
                "{key} is {other} and could not be cancelled; try again"
            ))),
        }
    }

    /// Queues a failed or cancelled job again with a fresh attempt budget.
    pub async fn retry_job(&self, key: &JobKey) -> Result<(), CoordinatorError> {
        let job = self.job(key).await?;
        if !matches!(job.state, JobState::Failed | JobState::Cancelled) {
            return Err(CoordinatorError::FailedPrecondition(format!(
                "{key} is {}; only failed or cancelled jobs can be retried",
                job.state
            )));
        }
        self.retry(job).await
    }

    /// Queues every failed job of a batch again; returns how many. A batch without failed
    /// jobs is not an error (0); an unknown batch is.
    pub async fn retry_failed(&self, batch: BatchId) -> Result<usize, CoordinatorError> {
        if self.store.batch(batch.chain, batch.number).await?.is_none() {
            return Err(CoordinatorError::UnknownBatch(batch.to_string()));
        }
        let filter = JobFilter {
            chain: Some(batch.chain),
            from_batch: Some(batch.number),
            state: Some(JobState::Failed),
            limit: 1024,
            ..Default::default()
        };
        let failed: Vec<Job> = self
            .store
            .jobs(&filter)
            .await?
            .into_iter()
            .filter(|j| j.key.batch_id() == batch)
            .collect();
        let n = failed.len();
        for job in failed {
            self.retry(job).await?;
        }
        Ok(n)
    }

    async fn retry(&self, job: Job) -> Result<(), CoordinatorError> {
        let id = job.key.batch_id();
        let batch = self
            .store
            .batch(id.chain, id.number)
            .await?
            .ok_or_else(|| CoordinatorError::UnknownBatch(id.to_string()))?;
        self.core.retry(job, Arc::new(batch)).await
    }
}

fn proven(key: &JobKey) -> CoordinatorError {
    CoordinatorError::FailedPrecondition(format!(
        "{key} is proven: a proven job cannot be cancelled"
    ))
}
