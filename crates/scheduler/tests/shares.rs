//! Several chains on one fleet (`ChainShares`), as properties under every built-in policy:
//! - while chains have backlogs, the tasks they get over any stretch of dispatches follow
//!   their weights within the start-time fair queueing bound (1/w_a + 1/w_b of normalized
//!   service), on fleets of any size, one slot included: a deep backlog starves no one;
//! - no slot stays free while a job it may take is ready (a chain alone takes the fleet);
//! - within a chain, the oldest batch goes first.
mod common;
use common::*;
use proofmill_scheduler::{ChainShares, Effect, PolicyName, Scheduler, SchedulerConfig};
use proofmill_types::{ChainId, FencingToken, Job, JobKey, ProverId};
use proptest::prelude::*;
use std::collections::{BTreeMap, VecDeque};

fn sched(policy: PolicyName, weights: &BTreeMap<ChainId, u32>) -> Scheduler {
    let config = SchedulerConfig {
        assignment_policy: policy,
        // No backup copies: a copy is a second task of one job.
        straggler_factor: 0,
        chain_shares: ChainShares::new(weights.clone()).unwrap(),
        ..SchedulerConfig::default()
    };
    Scheduler::new(config, 0)
}

fn chain_job(chain: ChainId, batch: u64) -> Job {
    Job::new_queued(JobKey::new(chain, batch, pt("exec")), "v1".into(), 0)
}

/// A fleet of `slots.len()` provers with these capacities, every one proving every chain's
/// jobs, and `backlog` jobs per chain added at once. Completes the oldest running task again
/// and again (equal prove times), recording the chain of every task dispatched, until
/// `rounds` tasks were completed or nothing runs. Also checks, after every event, that no
/// free slot is left while a job is ready, and that a chain's tasks go out oldest batch
/// first.
fn run(
    policy: PolicyName,
    weights: &BTreeMap<ChainId, u32>,
    slots: &[u32],
    backlog: &BTreeMap<ChainId, u64>,
    rounds: usize,
) -> Vec<ChainId> {
    let mut s = sched(policy, weights);
    let jobs: Vec<Job> = backlog
        .iter()
        .flat_map(|(c, n)| (1..=*n).map(|b| chain_job(*c, b)))
        .collect();
    let total_jobs = jobs.len();
    let mut effects = s.add_jobs(jobs, 0);
    let provers: Vec<ProverId> = (0..slots.len()).map(|i| pid(&format!("p{i}"))).collect();
    for (id, cap) in provers.iter().zip(slots) {
        effects.extend(
            s.register(id.clone(), info(&["exec"], *cap, "v1"), 0)
                .unwrap(),
        );
    }
    let capacity: u64 = slots.iter().map(|c| *c as u64).sum();
    let mut running: VecDeque<(ProverId, JobKey, FencingToken)> = VecDeque::new();
    let mut order = Vec::new();
    let mut next_batch: BTreeMap<ChainId, u64> = BTreeMap::new();
    let mut now = 0;
    for _ in 0..=rounds {
        for (prover, job) in dispatches(&effects) {
            let key = job.key.clone();
            // `earliest-finish` may keep a chain's oldest job for a prover that frees soon.
            if policy == PolicyName::OldestFirst {
                let expected = next_batch.entry(key.chain).or_insert(1);
                assert_eq!(key.batch, *expected, "chain {} out of order", key.chain);
                *expected += 1;
            }
            order.push(key.chain);
            running.push_back((prover, key, job.lease.unwrap().token));
        }
        let dispatched = order.len();
        let busy = running.len() as u64;
        // `earliest-finish` may also keep a job for a busy prover it expects to free first.
        if policy == PolicyName::OldestFirst {
            assert_eq!(
                busy,
                capacity.min((total_jobs - (dispatched - busy as usize)) as u64),
                "a free slot while a job is ready"
            );
        }
        let Some((prover, key, token)) = running.pop_front() else {
            break;
        };
        now += 1_000;
        effects = s.complete(&prover, &key, token, now).unwrap();
        assert!(
            !effects.iter().any(|e| matches!(e, Effect::Cancel { .. })),
            "{effects:?}"
        );
    }
    order
}

/// The start-time fair queueing bound on every stretch `order[i..j]` in which every chain of
/// `weights` still had jobs left: |n_a / w_a − n_b / w_b| ≤ (1 / w_a + 1 / w_b) × `slack`.
/// `slack` is 1 under `oldest-first`; `earliest-finish` may keep a chain's job for a busy
/// prover while a free slot takes another chain's, so a chain may lag by a task per slot.
fn check_fair(
    order: &[ChainId],
    weights: &BTreeMap<ChainId, u32>,
    backlog: &BTreeMap<ChainId, u64>,
    slack: u64,
) {
    // Up to the first dispatch after which some chain has nothing left.
    let mut left = backlog.clone();
    let mut end = order.len();
    for (i, c) in order.iter().enumerate() {
        let n = left.get_mut(c).unwrap();
        *n -= 1;
        if *n == 0 {
            end = i;
            break;
        }
    }
    let chains: Vec<ChainId> = weights.keys().copied().collect();
    for i in 0..end {
        let mut count: BTreeMap<ChainId, u64> = BTreeMap::new();
        for c in &order[i..end] {
            *count.entry(*c).or_default() += 1;
            for (a, b) in chains
                .iter()
                .flat_map(|a| chains.iter().map(move |b| (a, b)))
            {
                let (wa, wb) = (weights[a] as u64, weights[b] as u64);
                let (na, nb) = (
                    count.get(a).copied().unwrap_or(0),
                    count.get(b).copied().unwrap_or(0),
                );
                // |na/wa − nb/wb| ≤ 1/wa + 1/wb, in integers (× wa·wb).
                assert!(
                    (na * wb).abs_diff(nb * wa) <= (wa + wb) * slack,
                    "chains {a} (weight {wa}) and {b} (weight {wb}) got {na} and {nb} tasks in {:?}",
                    &order[i..end]
                );
            }
        }
    }
}

fn weights() -> impl Strategy<Value = BTreeMap<ChainId, u32>> {
    // Two or three chains, any ids, weights 1-8.
    proptest::collection::btree_map(1..1_000u64, 1..=8u32, 2..=3)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn backlogged_chains_share_by_weight(
        weights in weights(),
        slots in proptest::collection::vec(1..=4u32, 1..=5),
        policy in prop::sample::select(PolicyName::ALL.to_vec()),
    ) {
        let backlog: BTreeMap<ChainId, u64> = weights.keys().map(|c| (*c, 60)).collect();
        let order = run(policy, &weights, &slots, &backlog, 120);
        check_fair(&order, &weights, &backlog, slack(policy, &slots));
    }

    #[test]
    fn every_job_of_every_chain_is_proven_and_no_slot_idles(
        weights in weights(),
        slots in proptest::collection::vec(1..=4u32, 1..=5),
        backlogs in proptest::collection::vec(0..30u64, 3),
        policy in prop::sample::select(PolicyName::ALL.to_vec()),
    ) {
        let backlog: BTreeMap<ChainId, u64> =
            weights.keys().copied().zip(backlogs).collect();
        let order = run(policy, &weights, &slots, &backlog, usize::MAX);
        let mut got: BTreeMap<ChainId, u64> = BTreeMap::new();
        for c in &order {
            *got.entry(*c).or_default() += 1;
        }
        got.retain(|_, n| *n > 0);
        let mut want = backlog.clone();
        want.retain(|_, n| *n > 0);
        prop_assert_eq!(got, want);
    }
}

/// The case: two chains with weights 3:1 on four provers of one slot each. With
/// both backlogged, 3 of every 4 tasks go to the first chain; a deep backlog (1,000 batches
/// against 20) does not hold the second chain back, and once the second chain has no work
/// left the first one takes all four provers.
#[test]
fn two_chains_four_provers_three_to_one() {
    let weights = BTreeMap::from([(1, 3), (7, 1)]);
    let backlog = BTreeMap::from([(1, 1_000), (7, 20)]);
    for policy in PolicyName::ALL {
        let order = run(policy, &weights, &[1, 1, 1, 1], &backlog, 200);
        let first_80: Vec<_> = order[..80].to_vec();
        let seventh = first_80.iter().filter(|c| **c == 7).count();
        assert_eq!(seventh, 20, "{policy}: {first_80:?}");
        assert!(order[80..].iter().all(|c| *c == 1), "{policy}");
        check_fair(&order, &weights, &backlog, slack(policy, &[1, 1, 1, 1]));
    }
}

fn slack(policy: PolicyName, slots: &[u32]) -> u64 {
    match policy {
        PolicyName::OldestFirst => 1,
        PolicyName::EarliestFinish => 1 + slots.iter().map(|s| *s as u64).sum::<u64>(),
    }
}

/// One slot, weights 100:1: the light chain still gets its task within one round of the
/// heavy chain's hundred.
#[test]
fn a_single_slot_still_serves_the_light_chain() {
    let weights = BTreeMap::from([(1, 100), (2, 1)]);
    let backlog = BTreeMap::from([(1, 1_000), (2, 5)]);
    let order = run(PolicyName::OldestFirst, &weights, &[1], &backlog, 600);
    let light: Vec<usize> = order
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == 2)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(light.len(), 5, "{light:?}");
    for w in light.windows(2) {
        assert!(w[1] - w[0] <= 102, "{light:?}");
    }
    check_fair(&order, &weights, &backlog, 1);
}
