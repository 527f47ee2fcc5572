//! Assignment policies: which ready job goes to which prover, and in what order.
//!
//! A policy only chooses; the mechanism ([`Dispatch`]) decides what may be chosen at all
//! (eligibility, capacity, quarantine, not back to the prover that failed a job) and carries
//! the choice out (lease, fencing token, deadline). Backup copies of stragglers, retries and
//! liveness are mechanism too, the same under every policy. sp1-cluster separates the two
//! the same way (its `AssignmentPolicy` trait).

use crate::provers::ProverLoad;
use crate::scheduler::{Dispatch, ReadyGroup};
use proofmill_types::{BatchNumber, ChainId, JobKey, Millis, ProofType, ProverId};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Chooses assignments in one dispatch: called whenever a job may have become assignable
/// (a job added or requeued, a slot freed, a prover joined, time passed), it leases jobs
/// through [`Dispatch::lease`] until it wants no more.
pub trait AssignmentPolicy: fmt::Debug + Send + Sync {
    /// The name operators choose it by (`--assignment-policy`).
    fn name(&self) -> &'static str;
    fn assign(&self, dispatch: &mut Dispatch<'_>);
}

/// The built-in policies, by name (the config's choice).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PolicyName {
    /// [`OldestFirst`].
    #[default]
    OldestFirst,
    /// [`EarliestFinish`].
    EarliestFinish,
}

impl PolicyName {
    pub const ALL: [PolicyName; 2] = [PolicyName::OldestFirst, PolicyName::EarliestFinish];

    pub fn as_str(self) -> &'static str {
        match self {
            PolicyName::OldestFirst => "oldest-first",
            PolicyName::EarliestFinish => "earliest-finish",
        }
    }

    pub fn policy(self) -> Arc<dyn AssignmentPolicy> {
        match self {
            PolicyName::OldestFirst => Arc::new(OldestFirst),
            PolicyName::EarliestFinish => Arc::new(EarliestFinish),
        }
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unknown assignment policy `{0}`; valid: oldest-first, earliest-finish")]
pub struct UnknownPolicy(pub String);

impl FromStr for PolicyName {
    type Err = UnknownPolicy;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PolicyName::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPolicy(s.to_string()))
    }
}

/// Every prover with a free slot, least loaded and longest waiting first, gets the oldest
/// ready job it can prove (the oldest batch gates settlement) of the chain owed the next slot
/// ([`crate::ChainShares`]); slots are filled one per
/// prover per round, so work spreads over the fleet instead of piling on whichever prover
/// sorts first. Knows nothing of prover speeds.
#[derive(Clone, Copy, Debug, Default)]
pub struct OldestFirst;

impl AssignmentPolicy for OldestFirst {
    fn name(&self) -> &'static str {
        PolicyName::OldestFirst.as_str()
    }

    fn assign(&self, d: &mut Dispatch<'_>) {
        loop {
            // A round fills at most one slot per prover, so the `ready` least loaded provers
            // can take every ready job; only when some of them take none (another proof type
            // or version) does the round go on through the others.
            let ready = d.ready_len();
            if ready == 0 {
                return;
            }
            let first = d.free_provers_by_rank(ready);
            let mut progressed = lease_oldest(d, &first);
            if d.has_ready() && first.len() == ready {
                let visited: BTreeSet<&ProverId> = first.iter().map(|(id, _)| id).collect();
                let rest: Vec<_> = d
                    .free_provers_by_rank(usize::MAX)
                    .into_iter()
                    .filter(|(id, _)| !visited.contains(id))
                    .collect();
                progressed |= lease_oldest(d, &rest);
            }
            if !progressed {
                return;
            }
        }
    }
}

/// Each prover of `order` in turn leases the oldest ready job it may take, until none is
/// ready. Whether any did.
fn lease_oldest(d: &mut Dispatch<'_>, order: &[(ProverId, ProverLoad)]) -> bool {
    let mut progressed = false;
    for (id, _) in order {
        if !d.has_ready() {
            break;
        }
        let Some(key) = d.oldest_for(id) else {
            continue;
        };
        progressed |= d.lease(id, &key).is_ok();
    }
    progressed
}

/// Each ready job, oldest batch first (longest first once the queue drains to a few jobs
/// per slot of the fleet), goes to the prover expected to finish it first: the one
/// whose slot frees earliest (now, if it has a free slot; else when its running tasks are
/// expected to end) plus its own recent prove time of the job's type, as sp1-cluster picks
/// the worker with the earliest expected free time. When that prover is busy the job waits
/// for it (its slot is counted as taken, so the next job may go elsewhere), and the
/// scheduler looks again when the slot should have freed.
///
/// Prove times come from what the scheduler measures per (prover, proof type). A prover not
/// measured yet on a type is assumed as fast as the fastest measured one, so it gets tried,
/// but while others are measured it runs one task of the type at a time until its first
/// completes. A task running past its expected end is expected to run as long again as it is
/// overdue, so a prover that hangs stops attracting work.
#[derive(Clone, Copy, Debug, Default)]
pub struct EarliestFinish;

/// Most jobs one dispatch keeps waiting for busy provers (per slot of the fleet): bounds a
/// dispatch's work when prove times are tiny.
const HOLDS_PER_SLOT: usize = 4;

/// The queue is draining once it holds at most this many ready jobs per slot of the fleet.
/// Then jobs go longest first, whatever their batch, so that no slow slot is left running a
/// long job at the end while the others idle (Graham's LPT rule for makespan); before that,
/// the oldest batch first, as it gates settlement. Measured on `bench makespan`: 2 leaves
/// most of the tail, 8 gains little over 4.
const ENDGAME_JOBS_PER_SLOT: usize = 4;

/// Which ready job goes first: its chain's turn in the fleet's sharing, then its batch (0 for all in
/// the endgame), then the longest proof type.
type JobOrder = ((u128, ChainId), BatchNumber, Reverse<Millis>);

/// Where a job would go: (expected finish, start, spread rank) on the plan at an index.
type Choice = ((Millis, Millis, (u64, u64)), usize);

/// One prover's slots as this dispatch plans them.
struct Plan {
    id: ProverId,
    free_now: u32,
    /// Expected end of each busy slot (running tasks and those planned here).
    busy_until: BinaryHeap<Reverse<Millis>>,
    rank: (u64, u64),
    /// Tasks per proof type it runs or was given here.
    running: BTreeMap<ProofType, u32>,
}

impl EarliestFinish {
    /// Expected prove time of `proof_type` on `prover`, at least 1 ms.
    fn estimate(
        d: &Dispatch<'_>,
        fastest: &mut BTreeMap<ProofType, Option<Millis>>,
        prover: &ProverId,
        proof_type: &ProofType,
    ) -> Millis {
        let own = d.prove_time(prover, proof_type);
        let fastest = *fastest
            .entry(proof_type.clone())
            .or_insert_with(|| d.fastest_prove_time(proof_type));
        own.or(fastest).unwrap_or(1).max(1)
    }

    /// Whether the plan may be given a task of this type: unmeasured on it while others are
    /// measured, it runs one at a time.
    fn probe_allows(
        d: &Dispatch<'_>,
        fastest: &mut BTreeMap<ProofType, Option<Millis>>,
        plan: &Plan,
        proof_type: &ProofType,
    ) -> bool {
        let known_elsewhere = *fastest
            .entry(proof_type.clone())
            .or_insert_with(|| d.fastest_prove_time(proof_type));
        d.prove_time(&plan.id, proof_type).is_some()
            || known_elsewhere.is_none()
            || plan.running.get(proof_type).copied().unwrap_or(0) == 0
    }
}

impl AssignmentPolicy for EarliestFinish {
    fn name(&self) -> &'static str {
        PolicyName::EarliestFinish.as_str()
    }

    fn assign(&self, d: &mut Dispatch<'_>) {
        let now = d.now();
        let mut fastest: BTreeMap<ProofType, Option<Millis>> = BTreeMap::new();
        let mut plans: Vec<Plan> = Vec::new();
        for id in d.provers() {
            let Some(load) = d.load(&id) else { continue };
            let mut plan = Plan {
                id,
                free_now: load.free_slots,
                busy_until: BinaryHeap::new(),
                rank: load.spread_rank(),
                running: BTreeMap::new(),
            };
            for (proof_type, leased_at) in d.running(&plan.id) {
                let expected = leased_at.saturating_add(Self::estimate(
                    d,
                    &mut fastest,
                    &plan.id,
                    &proof_type,
                ));
                let end = if expected > now {
                    expected
                } else {
                    now.saturating_add(now - expected)
                };
                plan.busy_until.push(Reverse(end.max(now + 1)));
                *plan.running.entry(proof_type).or_default() += 1;
            }
            plans.push(plan);
        }
        if !plans.iter().any(|p| p.free_now > 0) {
            return;
        }
        let slots: usize = plans
            .iter()
            .map(|p| p.busy_until.len() + p.free_now as usize)
            .sum();
        let max_holds = slots.saturating_mul(HOLDS_PER_SLOT).max(16);
        let groups = d.ready_groups();
        let endgame = d.ready_len() <= slots * ENDGAME_JOBS_PER_SLOT;
        // Jobs kept waiting in this dispatch, per group: always the group's oldest ones.
        let mut held = vec![0usize; groups.len()];
        let mut holds = 0usize;
        loop {
            // The next job not kept waiting that a prover with a free slot may take: oldest
            // batch first, the longest proof type first within a batch (all of them longest
            // first in the endgame).
            let mut next: Option<(JobOrder, BatchNumber, usize)> = None;
            for (gi, group) in groups.iter().enumerate() {
                let Some(batch) = d.nth_ready(group, held[gi]) else {
                    continue;
                };
                let size = fastest
                    .entry(group.proof_type.clone())
                    .or_insert_with(|| d.fastest_prove_time(&group.proof_type))
                    .unwrap_or(0);
                // The chain owed the next slot first (see `ChainShares`).
                let share = d.turn(group.chain);
                let order = if endgame {
                    (share, 0, Reverse(size))
                } else {
                    (share, batch, Reverse(size))
                };
                if next.as_ref().is_some_and(|(o, _, _)| *o <= order) {
                    continue;
                }
                let key = JobKey::new(group.chain, batch, group.proof_type.clone());
                let takeable = plans.iter().any(|p| {
                    p.free_now > 0
                        && d.may_take(&p.id, &key)
                        && Self::probe_allows(d, &mut fastest, p, &key.proof_type)
                });
                if takeable {
                    next = Some((order, batch, gi));
                }
            }
            let Some((_, batch, gi)) = next else {
                return;
            };
            let ReadyGroup {
                chain, proof_type, ..
            } = &groups[gi];
            let key = JobKey::new(*chain, batch, proof_type.clone());
            let mut best: Option<Choice> = None;
            for (pi, plan) in plans.iter().enumerate() {
                if !d.may_take(&plan.id, &key)
                    || !Self::probe_allows(d, &mut fastest, plan, proof_type)
                {
                    continue;
                }
                let start = if plan.free_now > 0 {
                    now
                } else {
                    match plan.busy_until.peek() {
                        Some(Reverse(t)) => *t,
                        None => continue,
                    }
                };
                let took = Self::estimate(d, &mut fastest, &plan.id, proof_type);
                let candidate = ((start.saturating_add(took), start, plan.rank), pi);
                if best.is_none_or(|b| candidate.0 < b.0) {
                    best = Some(candidate);
                }
            }
            let ((finish, start, _), pi) = best.expect("a prover with a free slot may take it");
            let plan = &mut plans[pi];
            if start == now && plan.free_now > 0 {
                if d.lease(&plan.id, &key).is_err() {
                    held[gi] += 1;
                    continue;
                }
                plan.free_now -= 1;
                plan.busy_until.push(Reverse(finish));
                *plan.running.entry(proof_type.clone()).or_default() += 1;
                plan.rank = d.load(&plan.id).map_or(plan.rank, |l| l.spread_rank());
            } else {
                // Wait for the busy prover: its slot is taken by this job in the plan.
                plan.busy_until.pop();
                plan.busy_until.push(Reverse(finish));
                d.revisit_at(start);
                held[gi] += 1;
                holds += 1;
                if holds >= max_holds {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_list_the_valid_ones() {
        for p in PolicyName::ALL {
            assert_eq!(p.as_str().parse::<PolicyName>(), Ok(p));
            assert_eq!(p.policy().name(), p.as_str());
        }
        let err = "fastest".parse::<PolicyName>().unwrap_err().to_string();
        assert!(err.contains("`fastest`") && err.contains("oldest-first, earliest-finish"));
    }
}
