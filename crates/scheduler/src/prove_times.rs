//! How long a prover takes to prove each proof type, measured by the scheduler itself from a
//! lease's start to its accepted proof (transfers and the prover's own queueing included:
//! that is what decides when its result arrives).
//!
//! One exponentially weighted moving average per (prover, proof type), kept in the prover's
//! entry: memory is bounded by the provers and proof types there are, and leaves with the
//! prover.

use proofmill_types::{Millis, ProofType};
use std::collections::BTreeMap;

/// Weight of the newest sample, as 1 / `NEWEST_SHARE`: recent enough to follow a prover
/// that slows down, smooth enough that one outlier moves the estimate by a quarter.
const NEWEST_SHARE: u64 = 4;

#[derive(Clone, Debug, Default)]
pub(crate) struct ProveTimes {
    by_type: BTreeMap<ProofType, Millis>,
}

impl ProveTimes {
    pub fn record(&mut self, proof_type: &ProofType, ms: Millis) {
        match self.by_type.get_mut(proof_type) {
            Some(avg) => {
                *avg = (avg.saturating_mul(NEWEST_SHARE - 1).saturating_add(ms)) / NEWEST_SHARE
            }
            None => {
                self.by_type.insert(proof_type.clone(), ms);
            }
        }
    }

    /// The recent prove time of this type, once one task of it completed.
    pub fn get(&self, proof_type: &ProofType) -> Option<Millis> {
        self.by_type.get(proof_type).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sample_then_moving_average() {
        let t = ProofType::new("exec").unwrap();
        let mut p = ProveTimes::default();
        assert_eq!(p.get(&t), None);
        p.record(&t, 1_000);
        assert_eq!(p.get(&t), Some(1_000));
        p.record(&t, 2_000);
        assert_eq!(p.get(&t), Some(1_250));
    }
}
