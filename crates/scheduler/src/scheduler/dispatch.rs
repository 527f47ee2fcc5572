//! Dispatch: the mechanism every assignment policy runs under.
//!
//! A policy ([`crate::AssignmentPolicy`]) decides which ready job goes to which prover and in
//! what order; it sees the scheduler through a [`Dispatch`] and can only ask it to
//! [`Dispatch::lease`]. The mechanism decides what is allowed at all and refuses the rest:
//! the prover is connected, in rotation (not cordoned) and has a free slot; it proves the
//! job's proof type and program version; the job is ready (queued, its retry backoff over);
//! it is not the prover that failed the job while another can take it. Leases, fencing
//! tokens, deadlines, backup copies of stragglers and quarantine stay outside a policy's
//! reach altogether.

use super::{Effect, Scheduler};
use crate::provers::ProverLoad;
use proofmill_types::{
    BatchNumber, ChainId, FencingToken, JobKey, JobState, Lease, Millis, ProofType, ProverId,
};

/// A lease the mechanism refused: the pair is not eligible now.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{prover} may not take {key} now")]
pub struct NotEligible {
    pub prover: ProverId,
    pub key: JobKey,
}

/// Ready jobs of one chain, program version and proof type (the queue keeps them apart).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadyGroup {
    pub chain: ChainId,
    pub version: String,
    pub proof_type: ProofType,
}

/// One dispatch: what a policy sees of the scheduler, and its one way to change it.
pub struct Dispatch<'a> {
    scheduler: &'a mut Scheduler,
    now: Millis,
    effects: Vec<Effect>,
    revisit: Option<Millis>,
}

impl<'a> Dispatch<'a> {
    pub fn now(&self) -> Millis {
        self.now
    }

    /// Provers in rotation (connected, not cordoned), free or busy, in id order.
    pub fn provers(&self) -> Vec<ProverId> {
        let s = &self.scheduler;
        s.provers
            .iter()
            .filter(|(id, p)| p.connected && !s.cordoned.contains_key(*id))
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The `limit` least loaded provers in rotation with a free slot, with their load, in
    /// spreading order ([`ProverLoad::spread_rank`], then id). One pass over the fleet that
    /// keeps only `limit` of it: a dispatch for a few jobs costs little in a fleet of
    /// thousands of idle provers.
    pub fn free_provers_by_rank(&self, limit: usize) -> Vec<(ProverId, ProverLoad)> {
        let s = &self.scheduler;
        let mut kept = std::collections::BinaryHeap::new();
        if limit == 0 {
            return Vec::new();
        }
        // Ties go to the lower id, by position in id order: comparing positions, not ids,
        // keeps string comparisons out of the pass (at the start every rank ties).
        let free = s
            .provers
            .iter()
            .enumerate()
            .filter(|(_, (id, p))| p.free_slots() > 0 && !s.cordoned.contains_key(*id));
        for (at, (id, p)) in free {
            let key = (p.load().spread_rank(), at, id);
            if kept.len() < limit {
                kept.push(key);
            } else if kept.peek().is_some_and(|worst| key < *worst) {
                kept.pop();
                kept.push(key);
            }
        }
        kept.into_sorted_vec()
            .into_iter()
            .map(|(_, _, id)| (id.clone(), s.provers[id].load()))
            .collect()
    }

    pub fn load(&self, prover: &ProverId) -> Option<ProverLoad> {
        self.scheduler.provers.get(prover).map(|p| p.load())
    }

    /// How many jobs are ready.
    pub fn ready_len(&self) -> usize {
        self.scheduler.queue.ready_len()
    }

    /// Whether any job is ready.
    pub fn has_ready(&self) -> bool {
        self.scheduler.queue.ready_len() > 0
    }

    /// The job `prover` should take now (`None` also when it has no free slot): the oldest
    /// ready job it may take of the chain that uses least of its share of the fleet
    /// ([`crate::ChainShares`]) among the chains with such a job.
    pub fn oldest_for(&self, prover: &ProverId) -> Option<JobKey> {
        let s = &self.scheduler;
        let p = s.provers.get(prover)?;
        if p.free_slots() == 0 || s.cordoned.contains_key(prover) {
            return None;
        }
        let version = &p.info.version;
        let oldest = |chain: ChainId| {
            let types = p.info.proof_types.iter();
            if s.failed_by.is_empty() {
                s.queue.peek_oldest(chain, version, types)
            } else {
                s.queue
                    .peek_oldest_where(chain, version, types, |key| !s.passes_over(prover, key))
            }
        };
        // One chain with work (the common case): nothing to share, nothing to allocate.
        if let Ok(only) = s.queue.only_chain_ready(version, &p.info.proof_types) {
            return oldest(only?);
        }
        let chains = s.queue.chains_ready(version, &p.info.proof_types);
        let mut by_turn: Vec<_> = chains.into_iter().map(|c| self.turn(c)).collect();
        by_turn.sort_unstable();
        by_turn.into_iter().find_map(|(_, c)| oldest(c))
    }

    /// Where `chain` stands in the fair sharing of the fleet between chains
    /// ([`crate::ChainShares`]): the chain whose key is least is owed the next slot.
    pub fn turn(&self, chain: ChainId) -> (u128, ChainId) {
        self.scheduler.fair.start_tag(chain)
    }

    /// Groups of ready jobs, in (chain, version, proof type) order.
    pub fn ready_groups(&self) -> Vec<ReadyGroup> {
        self.scheduler
            .queue
            .ready_groups()
            .map(|(chain, version, proof_type)| ReadyGroup {
                chain,
                version: version.to_string(),
                proof_type: proof_type.clone(),
            })
            .collect()
    }

    /// The `n`-th oldest ready batch of a group (0: the oldest).
    pub fn nth_ready(&self, group: &ReadyGroup, n: usize) -> Option<BatchNumber> {
        self.scheduler
            .queue
            .ready_batches(group.chain, &group.version, &group.proof_type)
            .nth(n)
    }

    /// Whether `prover` may take the ready job `key` once it has a free slot: it is in
    /// rotation, proves the job's type and version, and is not passed over for having failed
    /// it; the job is queued and its retry backoff is over.
    pub fn may_take(&self, prover: &ProverId, key: &JobKey) -> bool {
        let s = &self.scheduler;
        let (Some(p), Some(job)) = (s.provers.get(prover), s.jobs.get(key)) else {
            return false;
        };
        job.state == JobState::Queued
            && job.not_before <= self.now
            && p.connected
            && p.info.proof_types.contains(&key.proof_type)
            && p.info.version == job.version
            && !s.cordoned.contains_key(prover)
            && !s.passes_over(prover, key)
    }

    /// What `prover` runs: each task's proof type and when its copy was leased.
    pub fn running(&self, prover: &ProverId) -> Vec<(ProofType, Millis)> {
        let s = &self.scheduler;
        let Some(p) = s.provers.get(prover) else {
            return Vec::new();
        };
        p.running
            .iter()
            .filter_map(|key| {
                let lease = match s.backups.get(key) {
                    Some(b) if b.prover == *prover => Some(b),
                    _ => s.jobs.get(key).and_then(|j| j.lease.as_ref()),
                };
                lease.map(|l| (key.proof_type.clone(), l.leased_at))
            })
            .collect()
    }

    /// The prover's recent prove time of this type (lease to accepted proof), once measured.
    pub fn prove_time(&self, prover: &ProverId, proof_type: &ProofType) -> Option<Millis> {
        self.scheduler
            .provers
            .get(prover)?
            .prove_times
            .get(proof_type)
    }

    /// The shortest recent prove time of this type over the provers in rotation.
    pub fn fastest_prove_time(&self, proof_type: &ProofType) -> Option<Millis> {
        let s = &self.scheduler;
        s.provers
            .iter()
            .filter(|(id, p)| p.connected && !s.cordoned.contains_key(*id))
            .filter_map(|(_, p)| p.prove_times.get(proof_type))
            .min()
    }

    /// Asks for another dispatch at `at` (for a policy that keeps a job for a busy prover
    /// and must look again if that prover does not free up when expected).
    pub fn revisit_at(&mut self, at: Millis) {
        let at = at.max(self.now.saturating_add(1));
        self.revisit = Some(self.revisit.map_or(at, |r| r.min(at)));
    }

    /// Leases `key` to `prover`, if the mechanism allows it now.
    pub fn lease(&mut self, prover: &ProverId, key: &JobKey) -> Result<(), NotEligible> {
        let has_slot = self
            .scheduler
            .provers
            .get(prover)
            .is_some_and(|p| p.free_slots() > 0);
        if !has_slot || !self.may_take(prover, key) {
            return Err(NotEligible {
                prover: prover.clone(),
                key: key.clone(),
            });
        }
        let now = self.now;
        let deadline = now.saturating_add(self.scheduler.config.prover_timeout_ms);
        let s = &mut *self.scheduler;
        let p = s.provers.get_mut(prover).expect("checked");
        let job = s.jobs.get_mut(key).expect("checked");
        s.queue.remove(key, &job.version, job.not_before);
        s.orphan_jobs.remove(key);
        let token = FencingToken(s.next_token);
        s.next_token += 1;
        job.state = JobState::Leased;
        job.lease = Some(Lease {
            prover: prover.clone(),
            token,
            leased_at: now,
            deadline,
        });
        job.updated_at = now;
        s.deadlines.insert((deadline, key.clone()));
        p.running.insert(key.clone());
        p.last_assigned = token.0;
        if let Some(adv) = p.advertised_free.as_mut() {
            *adv = adv.saturating_sub(1);
        }
        s.fair.charge(&s.config.chain_shares, key.chain);
        self.effects.push(Effect::Persist(job.clone()));
        self.effects.push(Effect::AttemptStarted {
            key: key.clone(),
            lease: job.lease.clone().expect("just leased"),
            backup: false,
        });
        self.effects.push(Effect::Dispatch {
            prover: prover.clone(),
            job: job.clone(),
        });
        Ok(())
    }
}

impl Scheduler {
    /// Push dispatch: the policy hands ready jobs to provers with free slots, within what
    /// the mechanism allows.
    pub(super) fn dispatch(&mut self, now: Millis) -> Vec<Effect> {
        self.policy_revisit = None;
        if self.draining || self.dispatch_paused || self.queue.ready_len() == 0 {
            return Vec::new();
        }
        let policy = self.policy.clone();
        let mut d = Dispatch {
            scheduler: self,
            now,
            effects: Vec::new(),
            revisit: None,
        };
        policy.assign(&mut d);
        let Dispatch {
            effects, revisit, ..
        } = d;
        self.policy_revisit = revisit;
        effects
    }
}
