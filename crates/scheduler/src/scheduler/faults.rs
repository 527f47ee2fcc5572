//! Failed results, and keeping one faulty prover or one bad batch from stalling the rest.
//!
//! A job that a prover failed goes to another prover while one that has not failed it can
//! take it (Scroll's coordinator never hands a failed task back to the same prover), so one
//! prover alone cannot exhaust a job's attempts while others of its type are connected. A
//! job failed by several different provers is a problem of its batch, and is marked failed
//! with that reason. A prover that keeps sending invalid proofs is cordoned by itself.

use super::{CopyEnd, Effect, Scheduler, SchedulerError};
use proofmill_types::{AttemptOutcome, FencingToken, Job, JobKey, JobState, Millis, ProverId};

/// How a lease ended without a proof.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The prover reported that it could not prove the task.
    Error,
    /// The prover sent a proof that failed verification.
    InvalidProof,
}

impl Scheduler {
    /// The current lease ended in an error or an invalid proof. The job is retried, on
    /// another prover while one that has not failed it is connected (at once then, else
    /// after a backoff), or marked failed: when `batch_failure_provers` different provers
    /// failed it, or when its attempts are spent and no other prover can take it.
    pub fn fail(
        &mut self,
        prover: &ProverId,
        key: &JobKey,
        token: FencingToken,
        error: &str,
        failure: Failure,
        now: Millis,
    ) -> Result<Vec<Effect>, SchedulerError> {
        let mut effects = Vec::new();
        let outcome = match failure {
            Failure::Error => AttemptOutcome::Failed,
            Failure::InvalidProof => AttemptOutcome::InvalidProof,
        };
        let job = self.end_copy(prover, key, token, (outcome, error), &mut effects)?;
        if let Some(reason) = self.count_failure(prover, failure) {
            effects.push(Effect::Cordon {
                prover: prover.clone(),
                reason,
            });
        }
        self.failed_by
            .entry(key.clone())
            .or_default()
            .insert(prover.clone());
        let Some(mut job) = job else {
            effects.extend(self.dispatch(now));
            return Ok(effects);
        };
        let failed_by = self.failed_by.entry(key.clone()).or_default();
        failed_by.insert(prover.clone());
        let distinct = failed_by.len();
        job.failed_attempts += 1;
        job.last_error = Some(error.to_string());
        job.updated_at = now;
        let limit = self.config.batch_failure_provers;
        let untried = self.has_untried_prover(&job);
        if limit > 0 && distinct >= limit as usize {
            job.state = JobState::Failed;
            job.last_error = Some(format!(
                "failed on {distinct} different provers, so the batch is at fault, not a \
                 prover; last error: {error}"
            ));
        } else if job.failed_attempts >= self.config.max_attempts && !untried {
            job.state = JobState::Failed;
        } else if self.promote_backup(&mut job) {
            // Its backup copy runs on: it is the lease now.
        } else {
            job.state = JobState::Queued;
            job.not_before = if untried {
                now
            } else {
                now + self.config.retry_delay_ms(job.failed_attempts)
            };
            self.queue.push(&job.key, &job.version, job.not_before, now);
            self.jobs.insert(job.key.clone(), job.clone());
        }
        if job.state == JobState::Failed {
            self.failed_by.remove(key);
            let stop = CopyEnd::Stopped(AttemptOutcome::Cancelled, "the job failed");
            self.drop_backup(key, stop, &mut effects);
        }
        effects.insert(0, Effect::Persist(job));
        effects.extend(self.dispatch(now));
        Ok(effects)
    }

    /// Counts a failure against the prover; returns the reason to cordon it with when this
    /// one makes `cordon_after_invalid` invalid proofs in a row.
    fn count_failure(&mut self, id: &ProverId, failure: Failure) -> Option<String> {
        let limit = self.config.cordon_after_invalid;
        let p = self.provers.get_mut(id)?;
        match failure {
            Failure::Error => {
                p.stats.errors += 1;
                None
            }
            Failure::InvalidProof => {
                p.stats.invalid += 1;
                p.stats.invalid_in_a_row += 1;
                let due = limit > 0
                    && p.stats.invalid_in_a_row >= limit
                    && !self.cordoned.contains_key(id);
                due.then(|| {
                    let reason = format!(
                        "cordoned automatically: {} invalid proofs in a row",
                        p.stats.invalid_in_a_row
                    );
                    self.cordoned.insert(id.clone(), reason.clone());
                    reason
                })
            }
        }
    }

    /// Whether dispatch passes `key` over for `id`: it failed the job, and another prover
    /// that has not can take it.
    pub(super) fn passes_over(&self, id: &ProverId, key: &JobKey) -> bool {
        if self.failed_by.is_empty() {
            return false;
        }
        let failed = self.failed_by.get(key).is_some_and(|f| f.contains(id));
        failed
            && self
                .jobs
                .get(key)
                .is_some_and(|j| self.has_untried_prover(j))
    }

    /// A connected prover in rotation that can prove `job` and has not failed it.
    fn has_untried_prover(&self, job: &Job) -> bool {
        let failed = self.failed_by.get(&job.key);
        self.provers.iter().any(|(id, p)| {
            p.connected
                && p.info.version == job.version
                && p.info.proof_types.contains(&job.key.proof_type)
                && !self.cordoned.contains_key(id)
                && failed.is_none_or(|f| !f.contains(id))
        })
    }
}
