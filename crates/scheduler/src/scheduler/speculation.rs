//! Backup copies of straggling tasks (speculative execution, as MapReduce does): a prover that
//! keeps heart-beating but never answers would otherwise hold its batch, and with it
//! settlement, until `prover_timeout_ms`.
//!
//! The scheduler learns each proof type's normal duration from the leases it sees complete.
//! A task running longer than `straggler_factor` times the 90th percentile of those (and at
//! least [`MIN_THRESHOLD_MS`]) gets one backup copy, with a token of its own, on an idle
//! prover that can take it and has not failed the job. The first valid result wins and the
//! other copy is cancelled; the loser is counted (`ProverStats::superseded`). A backup copy is
//! not persisted: the job's row keeps the first lease, and the backup becomes the lease only
//! when that one ends without a proof (a failure, a decline, a lost prover, its deadline).

use super::{Effect, Scheduler};
use proofmill_types::{
    AttemptOutcome, FencingToken, JobKey, JobState, Lease, Millis, ProofType, ProverId,
};
use std::collections::{HashMap, VecDeque};

/// Completed leases per proof type the percentile is taken over (the most recent).
const SAMPLES: usize = 100;
/// Completions of a proof type before any of its tasks counts as a straggler.
const MIN_SAMPLES: usize = 5;
/// A task is never a straggler before running this long (jitter on fast proof types).
pub const MIN_THRESHOLD_MS: Millis = 1_000;
/// How often running tasks are checked for stragglers while speculation is possible.
pub const CHECK_INTERVAL_MS: Millis = 500;

/// Durations of recent completed leases, per proof type.
#[derive(Default)]
pub(crate) struct Durations {
    by_type: HashMap<ProofType, VecDeque<Millis>>,
}

impl Durations {
    pub fn record(&mut self, proof_type: &ProofType, ms: Millis) {
        let samples = self.by_type.entry(proof_type.clone()).or_default();
        if samples.len() == SAMPLES {
            samples.pop_front();
        }
        samples.push_back(ms);
    }

    /// How long a task of this type may run before it gets a backup copy, once known.
    fn threshold(&self, proof_type: &ProofType, factor: u32) -> Option<Millis> {
        let samples = self.by_type.get(proof_type)?;
        if factor == 0 || samples.len() < MIN_SAMPLES {
            return None;
        }
        let mut sorted: Vec<Millis> = samples.iter().copied().collect();
        sorted.sort_unstable();
        let p90 = sorted[(sorted.len() * 9).div_ceil(10) - 1];
        Some(p90.saturating_mul(factor as u64).max(MIN_THRESHOLD_MS))
    }

    fn any_known(&self, factor: u32) -> bool {
        factor > 0 && self.by_type.values().any(|s| s.len() >= MIN_SAMPLES)
    }
}

/// How a backup copy ends: by itself (a result, its prover lost), or stopped by the
/// scheduler, its prover told why.
#[derive(Clone, Copy)]
pub(crate) enum CopyEnd<'a> {
    Ended(AttemptOutcome, &'a str),
    Stopped(AttemptOutcome, &'a str),
}

impl Scheduler {
    /// Whether `token` is the backup copy of `key` held by `prover`.
    pub(super) fn is_backup(&self, prover: &ProverId, key: &JobKey, token: FencingToken) -> bool {
        self.backups
            .get(key)
            .is_some_and(|b| b.token == token && b.prover == *prover)
    }

    /// Ends the backup copy of `key`, if any, freeing its prover's slot; tells that prover to
    /// stop when it is [`CopyEnd::Stopped`].
    pub(super) fn drop_backup(
        &mut self,
        key: &JobKey,
        how: CopyEnd<'_>,
        effects: &mut Vec<Effect>,
    ) -> Option<Lease> {
        let backup = self.backups.remove(key)?;
        let (end, stop) = match how {
            CopyEnd::Ended(outcome, detail) => ((outcome, detail), None),
            CopyEnd::Stopped(outcome, reason) => ((outcome, reason), Some(reason)),
        };
        if let Some(reason) = stop {
            if let Some(p) = self.provers.get_mut(&backup.prover) {
                p.stats.superseded += 1;
            }
            effects.push(Effect::Cancel {
                prover: backup.prover.clone(),
                key: key.clone(),
                token: backup.token,
                reason: reason.to_string(),
            });
        }
        self.release_slot(&backup, key, end, effects);
        Some(backup)
    }

    /// The job's lease ended without a proof while a backup copy runs: the backup becomes
    /// the lease (with its own deadline), and the job stays leased. Returns whether it did.
    pub(super) fn promote_backup(&mut self, job: &mut proofmill_types::Job) -> bool {
        let Some(backup) = self.backups.remove(&job.key) else {
            return false;
        };
        let deadline = backup
            .leased_at
            .saturating_add(self.config.prover_timeout_ms);
        job.state = JobState::Leased;
        job.lease = Some(Lease { deadline, ..backup });
        self.deadlines.insert((deadline, job.key.clone()));
        self.jobs.insert(job.key.clone(), job.clone());
        true
    }

    /// When the next check for stragglers is due, if one can be.
    pub(super) fn next_straggler_check(&self) -> Option<Millis> {
        let possible = !self.deadlines.is_empty()
            && !self.draining
            && !self.dispatch_paused
            && self.durations.any_known(self.config.straggler_factor);
        possible.then(|| self.last_straggler_check.saturating_add(CHECK_INTERVAL_MS))
    }

    /// Gives straggling tasks, oldest lease first, a backup copy on an idle prover.
    pub(super) fn speculate(&mut self, now: Millis, effects: &mut Vec<Effect>) {
        if self.next_straggler_check().is_none_or(|due| due > now) {
            return;
        }
        self.last_straggler_check = now;
        if !self.provers.values().any(|p| p.free_slots() > 0) {
            return;
        }
        let factor = self.config.straggler_factor;
        let timeout = self.config.prover_timeout_ms;
        let mut chosen = Vec::new();
        for (deadline, key) in &self.deadlines {
            // Every lease's deadline is `prover_timeout_ms` after it was leased.
            let leased_at = deadline.saturating_sub(timeout);
            if leased_at.saturating_add(MIN_THRESHOLD_MS) > now {
                break;
            }
            if self.backups.contains_key(key) {
                continue;
            }
            let Some(threshold) = self.durations.threshold(&key.proof_type, factor) else {
                continue;
            };
            if leased_at.saturating_add(threshold) <= now {
                chosen.push(key.clone());
            }
        }
        for key in chosen {
            let Some(prover) = self.backup_prover(&key) else {
                continue;
            };
            let job = self.jobs.get(&key).expect("a leased job is open");
            let token = FencingToken(self.next_token);
            self.next_token += 1;
            let backup = Lease {
                prover: prover.clone(),
                token,
                leased_at: now,
                deadline: job.lease.as_ref().map_or(now, |l| l.deadline),
            };
            let mut copy = job.clone();
            copy.lease = Some(backup.clone());
            copy.updated_at = now;
            let p = self.provers.get_mut(&prover).expect("chosen prover exists");
            p.running.insert(key.clone());
            p.last_assigned = token.0;
            if let Some(adv) = p.advertised_free.as_mut() {
                *adv = adv.saturating_sub(1);
            }
            effects.push(Effect::AttemptStarted {
                key: key.clone(),
                lease: backup.clone(),
                backup: true,
            });
            self.backups.insert(key, backup);
            effects.push(Effect::Dispatch { prover, job: copy });
        }
    }

    /// An idle prover in rotation that can prove `key`, other than its holder, that has not
    /// failed it: least loaded and longest waiting first.
    fn backup_prover(&self, key: &JobKey) -> Option<ProverId> {
        let job = self.jobs.get(key)?;
        let holder = job.lease.as_ref().map(|l| &l.prover);
        let failed = self.failed_by.get(key);
        self.provers
            .iter()
            .filter(|(id, p)| {
                Some(*id) != holder
                    && p.free_slots() > 0
                    && !p.running.contains(key)
                    && p.info.version == job.version
                    && p.info.proof_types.contains(&key.proof_type)
                    && !self.cordoned.contains_key(*id)
                    && failed.is_none_or(|f| !f.contains(*id))
            })
            .min_by_key(|(_, p)| p.load().spread_rank())
            .map(|(id, _)| id.clone())
    }
}
