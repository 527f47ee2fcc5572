//! The core's metrics: gauges computed from its own state on a periodic tick (one pass over
//! the open jobs and one over the fleet per refresh, never per message), and the counters and
//! histograms of what its effects and results did.

use super::Core;
use crate::now_ms;
use proofmill_scheduler::Effect;
use proofmill_telemetry::{names, secs};
use proofmill_types::{JobState, ProofType};
use std::collections::{BTreeMap, BTreeSet};

/// How often the gauges are recomputed.
pub(super) const REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// Gauges already set, so a proof type whose figures dropped to nothing reads 0 instead of
/// its last value.
#[derive(Default)]
pub(super) struct Figures {
    types: BTreeSet<ProofType>,
    /// Chains with jobs seen, so one with none left reads 0.
    chains: BTreeSet<proofmill_types::ChainId>,
    /// `--metrics-per-prover`: prove times also by prover name.
    pub per_prover: bool,
}

/// Open jobs of one proof type.
#[derive(Default)]
struct JobFigures {
    queued: u64,
    leased: u64,
    oldest_sealed_at: Option<u64>,
}

impl Core {
    pub(super) fn refresh_gauges(&mut self) {
        let now = now_ms();
        let mut jobs: BTreeMap<ProofType, JobFigures> = BTreeMap::new();
        let mut by_chain: BTreeMap<proofmill_types::ChainId, (u64, u64)> = BTreeMap::new();
        {
            let cache = self.batches.read().expect("batch cache lock");
            for j in self.scheduler.open_jobs() {
                let f = match jobs.get_mut(&j.key.proof_type) {
                    Some(f) => f,
                    None => jobs.entry(j.key.proof_type.clone()).or_default(),
                };
                let chain = by_chain.entry(j.key.chain).or_default();
                match j.state {
                    JobState::Queued => {
                        chain.0 += 1;
                        f.queued += 1;
                        let sealed = cache
                            .get(&j.key.batch_id())
                            .map_or(j.updated_at, |b| b.created_at);
                        f.oldest_sealed_at =
                            Some(f.oldest_sealed_at.map_or(sealed, |o| o.min(sealed)));
                    }
                    JobState::Leased => {
                        chain.1 += 1;
                        f.leased += 1;
                    }
                    _ => {}
                }
            }
        }
        self.figures.chains.extend(by_chain.keys().copied());
        for chain in &self.figures.chains {
            let (queued, leased) = by_chain.get(chain).copied().unwrap_or_default();
            for (state, n) in [(JobState::Queued, queued), (JobState::Leased, leased)] {
                metrics::gauge!(names::CHAIN_JOBS, names::CHAIN => chain.to_string(), names::STATE => state.as_str())
                    .set(n as f64);
            }
        }
        let fleet = self.scheduler.fleet_by_type();
        self.figures.types.extend(jobs.keys().cloned());
        self.figures.types.extend(fleet.keys().cloned());
        for t in &self.figures.types {
            let pt = t.to_string();
            let j = jobs.get(t);
            let f = fleet.get(t).copied().unwrap_or_default();
            let queued = j.map_or(0, |j| j.queued);
            let leased = j.map_or(0, |j| j.leased);
            let oldest = j
                .and_then(|j| j.oldest_sealed_at)
                .map_or(0.0, |at| secs(now.saturating_sub(at)));
            let state = JobState::Queued.as_str();
            metrics::gauge!(names::JOBS, names::PROOF_TYPE => pt.clone(), names::STATE => state)
                .set(queued as f64);
            let state = JobState::Leased.as_str();
            metrics::gauge!(names::JOBS, names::PROOF_TYPE => pt.clone(), names::STATE => state)
                .set(leased as f64);
            metrics::gauge!(names::OLDEST_QUEUED_JOB_AGE_SECONDS, names::PROOF_TYPE => pt.clone())
                .set(oldest);
            metrics::gauge!(names::PROVERS_CONNECTED, names::PROOF_TYPE => pt.clone())
                .set(f.connected as f64);
            metrics::gauge!(names::PROVER_CAPACITY_SLOTS, names::PROOF_TYPE => pt.clone())
                .set(f.capacity as f64);
            metrics::gauge!(names::PROVER_BUSY_SLOTS, names::PROOF_TYPE => pt).set(f.busy as f64);
        }
    }

    /// Counts what one effect says happened (before the effect is carried out).
    pub(super) fn count_effect(&self, effect: &Effect) {
        match effect {
            Effect::Persist(job) if job.state.is_terminal() => {
                metrics::counter!(
                    names::JOBS_CLOSED_TOTAL,
                    names::PROOF_TYPE => job.key.proof_type.to_string(),
                    names::OUTCOME => job.state.as_str()
                )
                .increment(1);
            }
            Effect::AttemptStarted { key, lease, backup } => {
                metrics::counter!(names::CHAIN_TASKS_STARTED_TOTAL, names::CHAIN => key.chain.to_string())
                    .increment(1);
                // The job's first lease: the time its batch waited for a prover.
                let first = !backup
                    && self
                        .scheduler
                        .job(key)
                        .is_some_and(|j| j.failed_attempts == 0 && j.lost_attempts == 0);
                let sealed = first
                    .then(|| {
                        let cache = self.batches.read().expect("batch cache lock");
                        cache.get(&key.batch_id()).map(|b| b.created_at)
                    })
                    .flatten();
                if let Some(sealed) = sealed {
                    metrics::histogram!(
                        names::QUEUE_WAIT_SECONDS,
                        names::PROOF_TYPE => key.proof_type.to_string()
                    )
                    .record(secs(lease.leased_at.saturating_sub(sealed)));
                }
            }
            Effect::AttemptEnded { key, outcome, .. } => {
                metrics::counter!(
                    names::ATTEMPTS_ENDED_TOTAL,
                    names::PROOF_TYPE => key.proof_type.to_string(),
                    names::OUTCOME => outcome.as_str()
                )
                .increment(1);
            }
            Effect::Disconnect { .. } => {
                // The scheduler declares a prover dead for one reason: its heartbeats stopped.
                metrics::counter!(names::PROVERS_DECLARED_DEAD_TOTAL, names::REASON => "missed_heartbeats")
                    .increment(1);
            }
            _ => {}
        }
    }

    /// An accepted proof's prove time, as its prover reported it.
    pub(super) fn count_proven(&self, proof_type: &ProofType, prover_name: &str, prove_ms: u64) {
        let pt = proof_type.to_string();
        if self.figures.per_prover {
            metrics::histogram!(
                names::PROVE_DURATION_SECONDS,
                names::PROOF_TYPE => pt,
                names::PROVER => prover_name.to_string()
            )
            .record(secs(prove_ms));
        } else {
            metrics::histogram!(names::PROVE_DURATION_SECONDS, names::PROOF_TYPE => pt)
                .record(secs(prove_ms));
        }
    }
}

/// A result refused before it changed anything, by reason.
pub(crate) fn count_rejected(proof_type: Option<&ProofType>, reason: &'static str) {
    let pt = proof_type.map_or_else(|| "unknown".to_string(), |t| t.to_string());
    metrics::counter!(names::RESULTS_REJECTED_TOTAL, names::PROOF_TYPE => pt, names::REASON => reason)
        .increment(1);
}
