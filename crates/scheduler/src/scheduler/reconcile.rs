//! Reconciling what a prover reports it runs with the leases the scheduler holds.

use super::{Effect, ResultCheck, Scheduler};
use proofmill_types::{FencingToken, JobKey, JobState, Lease, Millis, ProverId};

impl Scheduler {
    /// Leases to `id` the reported tasks that carry orphan tokens of jobs it may run that are
    /// still queued as the restart found them (never leased by this run).
    pub(super) fn adopt_orphans(
        &mut self,
        id: &ProverId,
        running: &[(JobKey, FencingToken)],
        now: Millis,
    ) -> Vec<Effect> {
        let mut effects = Vec::new();
        let Some(orphans) = self.orphan_tokens.clone() else {
            return effects;
        };
        let deadline = now.saturating_add(self.config.prover_timeout_ms);
        for (key, token) in running {
            let Some(prover) = self.provers.get_mut(id) else {
                break;
            };
            let Some(job) = self.jobs.get_mut(key) else {
                continue;
            };
            let fits = prover.free_slots() > 0
                && prover.info.proof_types.contains(&key.proof_type)
                && prover.info.version == job.version;
            if !orphans.contains(&token.0)
                || job.state != JobState::Queued
                || !fits
                || !self.orphan_jobs.remove(key)
            {
                continue;
            }
            self.queue.remove(key, &job.version, job.not_before);
            job.state = JobState::Leased;
            job.lease = Some(Lease {
                prover: id.clone(),
                token: *token,
                leased_at: now,
                deadline,
            });
            job.updated_at = now;
            self.deadlines.insert((deadline, key.clone()));
            prover.running.insert(key.clone());
            effects.push(Effect::Persist(job.clone()));
            // Begun in an earlier run, which never recorded it: its history starts here.
            effects.push(Effect::AttemptStarted {
                key: key.clone(),
                lease: job.lease.clone().expect("just leased"),
                backup: false,
            });
        }
        effects
    }

    /// Cancels reported tasks that are not this prover's current leases.
    pub(super) fn cancel_unknown(
        &self,
        id: &ProverId,
        running: &[(JobKey, FencingToken)],
    ) -> Vec<Effect> {
        running
            .iter()
            .filter(|(key, token)| {
                !matches!(self.check_result(id, key, *token), ResultCheck::Current)
            })
            .map(|(key, token)| Effect::Cancel {
                prover: id.clone(),
                key: key.clone(),
                token: *token,
                reason: "not a current lease of this prover".into(),
            })
            .collect()
    }
}
