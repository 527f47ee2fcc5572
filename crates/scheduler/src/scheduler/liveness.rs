//! Liveness: provers that close their stream, go silent or run past a lease's deadline lose
//! what they hold, and the time at which the next such thing is due.

use super::{CopyEnd, Effect, Scheduler};
use proofmill_types::{AttemptOutcome, FencingToken, JobKey, JobState, Millis, ProverId};

impl Scheduler {
    /// The prover's stream closed. Its leases wait `reconnect_grace_ms` for it to reconnect,
    /// so a network blip does not throw away work in progress, and then go back to the queue
    /// (a killed prover does not hold the oldest batch for a whole liveness window).
    pub fn disconnect(&mut self, id: &ProverId, now: Millis) {
        if let Some(p) = self.provers.get_mut(id) {
            p.connected = false;
            p.disconnected_at = Some(now);
            self.prover_due_by(now.saturating_add(self.config.reconnect_grace_ms));
        }
    }

    /// Some prover may be due (silent, or past its reconnect grace) by `at`. The earliest
    /// such time is kept as a bound that may be early, never late: a heartbeat only moves a
    /// prover's time later, so it need not update it, and the bound is made exact again when
    /// it comes due ([`Self::tick`]). A fleet's heartbeats thus cost no scan of the fleet each.
    pub(super) fn prover_due_by(&mut self, at: Millis) {
        self.provers_due = Some(self.provers_due.map_or(at, |due| due.min(at)));
    }

    /// When the earliest prover is due, exactly: one scan of the fleet.
    fn earliest_prover_due(&self) -> Option<Millis> {
        let (liveness, grace) = (
            self.config.liveness_timeout_ms(),
            self.config.reconnect_grace_ms,
        );
        self.provers
            .values()
            .map(|p| {
                let silent = p.last_seen.saturating_add(liveness);
                match p.disconnected_at.filter(|_| !p.running.is_empty()) {
                    Some(at) => silent.min(at.saturating_add(grace)),
                    None => silent,
                }
            })
            .min()
    }

    /// The prover answered a heartbeat with the tasks it runs.
    pub fn heartbeat(
        &mut self,
        id: &ProverId,
        running: &[(JobKey, FencingToken)],
        now: Millis,
    ) -> Vec<Effect> {
        let Some(p) = self.provers.get_mut(id) else {
            return Vec::new();
        };
        p.last_seen = now;
        // Only extra tasks are reconciled here: a missing one may simply not have arrived
        // yet. Missing tasks are settled on reconnect and by the lease deadline.
        self.cancel_unknown(id, running)
    }

    /// Alive by other means than a heartbeat answer (data its answers queue behind).
    pub fn alive(&mut self, id: &ProverId, now: Millis) {
        if let Some(p) = self.provers.get_mut(id) {
            p.last_seen = p.last_seen.max(now);
        }
    }

    /// Advances time: backoffs end, hard deadlines expire, silent provers are declared dead.
    pub fn tick(&mut self, now: Millis) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.queue.promote(now);
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline > now {
                break;
            }
            let (_, key) = self.deadlines.pop_first().expect("non-empty");
            let lease = self.jobs.get(&key).and_then(|j| j.lease.clone());
            if let Some(lease) = lease {
                effects.push(Effect::Cancel {
                    prover: lease.prover.clone(),
                    key: key.clone(),
                    token: lease.token,
                    reason: "lease deadline passed (--prover-timeout)".into(),
                });
                self.lose_lease(
                    &key,
                    "lease deadline passed (--prover-timeout)",
                    now,
                    &mut effects,
                );
            }
        }
        if self.provers_due.is_some_and(|due| due <= now) {
            self.expire_provers(now, &mut effects);
            self.provers_due = self.earliest_prover_due();
        }
        effects.extend(self.dispatch(now));
        self.speculate(now, &mut effects);
        effects
    }

    /// Provers past their reconnect grace lose their tasks; silent ones are declared dead.
    fn expire_provers(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        let grace = self.config.reconnect_grace_ms;
        let gone: Vec<ProverId> = self
            .provers
            .iter()
            .filter(|(_, p)| {
                !p.running.is_empty()
                    && p.disconnected_at
                        .is_some_and(|at| at.saturating_add(grace) <= now)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let held: Vec<JobKey> = self.provers[&id].running.iter().cloned().collect();
            for key in held {
                self.lose_task(
                    &id,
                    &key,
                    "prover's stream closed and it did not reconnect in time",
                    now,
                    effects,
                );
            }
        }
        let liveness = self.config.liveness_timeout_ms();
        let dead: Vec<ProverId> = self
            .provers
            .iter()
            .filter(|(_, p)| p.last_seen.saturating_add(liveness) <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in dead {
            let held: Vec<JobKey> = self.provers[&id].running.iter().cloned().collect();
            for key in held {
                self.lose_task(&id, &key, "prover missed its heartbeats", now, effects);
            }
            self.provers.remove(&id);
            effects.push(Effect::Disconnect {
                prover: id,
                reason: "missed heartbeats".into(),
            });
        }
    }

    /// When `tick` next has something to do, if ever (for silent provers, possibly earlier:
    /// see [`Self::prover_due_by`]). Costs no scan of the fleet: the core asks after every
    /// message.
    pub fn next_wakeup(&self) -> Option<Millis> {
        [
            self.queue.next_delayed_at(),
            self.deadlines.first().map(|d| d.0),
            self.provers_due,
            self.next_straggler_check(),
            self.policy_revisit,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// `id` no longer runs `key`: its backup copy ends, or its lease is lost.
    pub(super) fn lose_task(
        &mut self,
        id: &ProverId,
        key: &JobKey,
        reason: &str,
        now: Millis,
        effects: &mut Vec<Effect>,
    ) {
        if self.backups.get(key).is_some_and(|b| b.prover == *id) {
            self.drop_backup(key, CopyEnd::Ended(AttemptOutcome::Lost, reason), effects);
        } else {
            self.lose_lease(key, reason, now, effects);
        }
    }

    /// The lease ended without a result (prover gone, deadline, reconnect without it).
    pub(super) fn lose_lease(
        &mut self,
        key: &JobKey,
        reason: &str,
        now: Millis,
        effects: &mut Vec<Effect>,
    ) {
        let Some(mut job) = self.jobs.remove(key) else {
            return;
        };
        let Some(lease) = job.lease.take() else {
            self.jobs.insert(key.clone(), job);
            return;
        };
        // Reported after the job's row, which comes first as for every other transition.
        let mut ended = Vec::new();
        self.release_slot(&lease, key, (AttemptOutcome::Lost, reason), &mut ended);
        job.lost_attempts += 1;
        job.last_error = Some(format!("{reason} (prover {})", lease.prover));
        job.updated_at = now;
        if job.lost_attempts >= self.config.max_lost_attempts {
            job.state = JobState::Failed;
            self.failed_by.remove(key);
            let stop = CopyEnd::Stopped(AttemptOutcome::Cancelled, "the job failed");
            self.drop_backup(key, stop, effects);
        } else if self.promote_backup(&mut job) {
            // Its backup copy runs on: it is the lease now.
        } else {
            job.state = JobState::Queued;
            job.not_before = now;
            self.queue.push(key, &job.version, now, now);
            self.jobs.insert(key.clone(), job.clone());
        }
        effects.push(Effect::Persist(job));
        effects.append(&mut ended);
    }
}
