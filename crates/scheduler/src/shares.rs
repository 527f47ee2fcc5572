//! How one fleet is shared between chains (several rollups proven by one cluster).
//!
//! Each chain has a weight (1 unless configured). Ready jobs go out in start-time fair
//! queueing order over chains (Goyal et al., SFQ): every task dispatched for a chain advances
//! the chain's virtual time by 1 / weight, and the next slot goes to the chain with a job for
//! it whose virtual time, clamped to at least the system's (the start tag of the last task
//! dispatched), is least; ties go to the lower chain id. Within a chain the policy's own
//! order applies (oldest batch first: it gates that chain's settlement). So:
//! - chains with backlogs get tasks in proportion to their weights (3:1 weights, 3 of every 4
//!   tasks), over any stretch of time, within one task of each (the SFQ bound);
//! - a chain with a deep backlog cannot starve another, even on a fleet of one slot;
//! - a chain that was idle does not bank credit: it starts from the system's virtual time;
//! - a chain alone takes the whole fleet: no slot stays free while any chain has a job for it.
//!
//! Shares count tasks, not prove time: chains whose tasks differ in size share slots in
//! proportion to weight × task size. The clock lives in memory and restarts at zero with the
//! coordinator, which only forgets old service, never takes a share away. Bento's streams
//! reserve shares per tenant in the same spirit.

use proofmill_types::ChainId;
use std::collections::BTreeMap;

/// Chains' weights: a chain not listed weighs 1.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChainShares {
    weights: BTreeMap<ChainId, u32>,
}

/// A weight of 0 would give a chain nothing while others have work: refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("chain {0}: a weight must be at least 1")]
pub struct ZeroWeight(pub ChainId);

impl ChainShares {
    pub fn new(weights: BTreeMap<ChainId, u32>) -> Result<ChainShares, ZeroWeight> {
        if let Some((chain, _)) = weights.iter().find(|(_, w)| **w == 0) {
            return Err(ZeroWeight(*chain));
        }
        Ok(ChainShares { weights })
    }

    pub fn weight(&self, chain: ChainId) -> u32 {
        self.weights.get(&chain).copied().unwrap_or(1)
    }

    /// The chains configured with a weight.
    pub fn weights(&self) -> &BTreeMap<ChainId, u32> {
        &self.weights
    }
}

/// Virtual time of one task at weight 1. A multiple of every weight up to 2^16 keeps the
/// increments exact for the weights operators use; larger ones round down, harmlessly.
const TASK: u128 = 1 << 64;

/// The fair queueing state: each chain's virtual time and the system's.
#[derive(Clone, Debug, Default)]
pub(crate) struct FairClock {
    chains: BTreeMap<ChainId, u128>,
    /// Start tag of the last task dispatched.
    system: u128,
}

impl FairClock {
    /// The start tag `chain`'s next task would get: the key that orders chains for the next
    /// slot, least first (then by chain id).
    pub fn start_tag(&self, chain: ChainId) -> (u128, ChainId) {
        let own = self.chains.get(&chain).copied().unwrap_or(0);
        (own.max(self.system), chain)
    }

    /// Charges a task dispatched for `chain`.
    pub fn charge(&mut self, shares: &ChainShares, chain: ChainId) {
        let (start, _) = self.start_tag(chain);
        self.system = start;
        let step = TASK / shares.weight(chain) as u128;
        self.chains.insert(chain, start.saturating_add(step));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn next(clock: &FairClock, candidates: &[ChainId]) -> ChainId {
        *candidates
            .iter()
            .min_by_key(|c| clock.start_tag(**c))
            .unwrap()
    }

    #[test]
    fn backlogged_chains_get_tasks_by_weight_and_idle_ones_bank_nothing() {
        let shares = ChainShares::new(BTreeMap::from([(1, 3), (2, 1)])).unwrap();
        let mut clock = FairClock::default();
        let mut taken = Vec::new();
        for _ in 0..8 {
            let c = next(&clock, &[1, 2]);
            clock.charge(&shares, c);
            taken.push(c);
        }
        assert_eq!(taken, [1, 2, 1, 1, 1, 2, 1, 1], "{taken:?}");
        // Chain 9 (weight 1) arrives late: it starts from the system's time, so it gets a
        // fair turn at once but no burst for the time it was idle.
        let mut late = Vec::new();
        for _ in 0..6 {
            let c = next(&clock, &[1, 2, 9]);
            clock.charge(&shares, c);
            late.push(c);
        }
        // Its share is 1/5 (weights 3, 1, 1): one or two of six. Had it banked its idle
        // time, it would have taken all six.
        let nine = late.iter().filter(|c| **c == 9).count();
        assert!(late[0] == 9 && (1..=2).contains(&nine), "{late:?}");
        assert_eq!(
            ChainShares::new(BTreeMap::from([(5, 0)])),
            Err(ZeroWeight(5))
        );
        assert_eq!(shares.weight(7), 1);
    }
}
