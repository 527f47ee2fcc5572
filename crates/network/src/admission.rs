//! Which requests the network takes: only those it can finish (as Boundless's broker admits
//! only orders it can fulfil). A request is refused when the network is at capacity, the
//! reward is under its minimum, the deadline leaves less time than its estimated prove time
//! with a safety factor and a margin, it does not serve the protocol version, or the rollup
//! has too many of the network's proofs still unvalidated (a rollup that never validates gets
//! no more work, and the network's state stays bounded).

use proofmill_market::U256;
use std::collections::VecDeque;

/// The admission rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionConfig {
    /// Requests accepted and not yet posted, at most.
    pub max_in_flight: usize,
    /// Smallest `max_reward` taken, wei.
    pub min_reward: U256,
    /// The estimated prove time is multiplied by this, in percent (200: twice).
    pub safety_factor_percent: u32,
    /// Seconds kept before the deadline to post the proof: also the latest a proof is
    /// posted (never later than `deadline - margin`).
    pub deadline_margin_secs: u64,
    /// Protocol versions the network's provers serve.
    pub protocol_versions: Vec<String>,
    /// Proofs posted for one rollup (chain) and not validated by it yet, at most; that
    /// rollup's further requests are refused until it validates.
    pub max_awaiting_validation: usize,
}

impl Default for AdmissionConfig {
    fn default() -> Self {
        AdmissionConfig {
            max_in_flight: 4,
            min_reward: U256::ZERO,
            safety_factor_percent: 200,
            deadline_margin_secs: 60,
            protocol_versions: vec!["devnet-v1".into()],
            max_awaiting_validation: 64,
        }
    }
}

/// Why a request is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("at capacity: {in_flight} requests in flight (max {max})")]
    AtCapacity { in_flight: usize, max: usize },
    #[error("reward {offered} wei is under the minimum {min} wei")]
    RewardTooLow { offered: U256, min: U256 },
    #[error("{left} s left to the deadline, {needed} s needed (estimated prove time {estimate} s)")]
    DeadlineTooClose {
        left: u64,
        needed: u64,
        estimate: u64,
    },
    #[error(
        "{waiting} of this network's proofs for chain {chain_id} await the rollup's validation (at most {max})"
    )]
    ValidationBacklog {
        chain_id: u64,
        waiting: usize,
        max: usize,
    },
    #[error("protocol version {0:?} is not served here")]
    UnknownVersion(String),
    /// The inputs could not be fetched or are not what the request says.
    #[error("inputs: {0}")]
    BadInputs(String),
}

/// What admission looks at in a request.
#[derive(Clone, Debug)]
pub struct Offer<'a> {
    pub chain_id: u64,
    /// This network's proofs for the same chain that wait for the rollup's validation.
    pub awaiting_validation: usize,
    pub protocol_version: &'a str,
    pub max_reward: U256,
    /// Chain time.
    pub deadline: u64,
}

impl AdmissionConfig {
    /// Seconds needed before the deadline for a proof estimated at `estimate_secs`.
    pub fn needed_secs(&self, estimate_secs: u64) -> u64 {
        estimate_secs
            .saturating_mul(u64::from(self.safety_factor_percent))
            .div_ceil(100)
            .saturating_add(self.deadline_margin_secs)
    }

    /// Whether to take `offer` at chain time `now` with `in_flight` requests held.
    pub fn decide(
        &self,
        offer: &Offer<'_>,
        now: u64,
        in_flight: usize,
        estimate_secs: u64,
    ) -> Result<(), Refusal> {
        if !self
            .protocol_versions
            .iter()
            .any(|v| v == offer.protocol_version)
        {
            return Err(Refusal::UnknownVersion(offer.protocol_version.to_string()));
        }
        if offer.max_reward < self.min_reward {
            return Err(Refusal::RewardTooLow {
                offered: offer.max_reward,
                min: self.min_reward,
            });
        }
        let left = offer.deadline.saturating_sub(now);
        let needed = self.needed_secs(estimate_secs);
        if left < needed {
            return Err(Refusal::DeadlineTooClose {
                left,
                needed,
                estimate: estimate_secs,
            });
        }
        if offer.awaiting_validation >= self.max_awaiting_validation {
            return Err(Refusal::ValidationBacklog {
                chain_id: offer.chain_id,
                waiting: offer.awaiting_validation,
                max: self.max_awaiting_validation,
            });
        }
        if in_flight >= self.max_in_flight {
            return Err(Refusal::AtCapacity {
                in_flight,
                max: self.max_in_flight,
            });
        }
        Ok(())
    }
}

/// The estimate of the next prove time: the median of the recent measured ones, the
/// operator's expectation until there is one.
#[derive(Clone, Debug)]
pub struct ProveTimes {
    expected_secs: u64,
    recent: VecDeque<u64>,
}

/// Measurements the estimate keeps.
pub const RECENT_PROVE_TIMES: usize = 16;

impl ProveTimes {
    pub fn new(expected_secs: u64, recent: &[u64]) -> ProveTimes {
        let skip = recent.len().saturating_sub(RECENT_PROVE_TIMES);
        ProveTimes {
            expected_secs,
            recent: recent[skip..].iter().copied().collect(),
        }
    }

    pub fn record(&mut self, secs: u64) {
        if self.recent.len() == RECENT_PROVE_TIMES {
            self.recent.pop_front();
        }
        self.recent.push_back(secs);
    }

    /// Seconds, at least 1.
    pub fn estimate(&self) -> u64 {
        if self.recent.is_empty() {
            return self.expected_secs.max(1);
        }
        let mut sorted: Vec<u64> = self.recent.iter().copied().collect();
        sorted.sort_unstable();
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]).div_ceil(2)
        };
        median.max(1)
    }

    /// The measurements, oldest first (for the state file).
    pub fn recent(&self) -> Vec<u64> {
        self.recent.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> AdmissionConfig {
        AdmissionConfig {
            max_in_flight: 2,
            min_reward: U256::from(100),
            safety_factor_percent: 150,
            deadline_margin_secs: 30,
            protocol_versions: vec!["v1".into(), "v2".into()],
            max_awaiting_validation: 3,
        }
    }

    fn offer(version: &str, reward: u64, deadline: u64) -> Offer<'_> {
        Offer {
            chain_id: 7,
            awaiting_validation: 2,
            protocol_version: version,
            max_reward: U256::from(reward),
            deadline,
        }
    }

    #[test]
    fn each_rule_refuses_with_its_reason() {
        let c = cfg();
        // 40 s estimated: 60 s with the factor, 90 s with the margin.
        assert_eq!(c.needed_secs(40), 90);
        assert_eq!(c.decide(&offer("v2", 100, 1_090), 1_000, 1, 40), Ok(()));
        assert_eq!(
            c.decide(&offer("v3", 100, 5_000), 1_000, 0, 40),
            Err(Refusal::UnknownVersion("v3".into()))
        );
        assert_eq!(
            c.decide(&offer("v1", 99, 5_000), 1_000, 0, 40),
            Err(Refusal::RewardTooLow {
                offered: U256::from(99),
                min: U256::from(100)
            })
        );
        assert_eq!(
            c.decide(&offer("v1", 100, 1_089), 1_000, 0, 40),
            Err(Refusal::DeadlineTooClose {
                left: 89,
                needed: 90,
                estimate: 40
            })
        );
        // A deadline already passed.
        assert!(matches!(
            c.decide(&offer("v1", 100, 900), 1_000, 0, 40),
            Err(Refusal::DeadlineTooClose { left: 0, .. })
        ));
        assert_eq!(
            c.decide(&offer("v1", 100, 5_000), 1_000, 2, 40),
            Err(Refusal::AtCapacity {
                in_flight: 2,
                max: 2
            })
        );
        // One more proof left unvalidated by chain 7: its requests wait for its validations.
        let backlog = Offer {
            awaiting_validation: 3,
            ..offer("v1", 100, 5_000)
        };
        assert_eq!(
            c.decide(&backlog, 1_000, 0, 40),
            Err(Refusal::ValidationBacklog {
                chain_id: 7,
                waiting: 3,
                max: 3
            })
        );
    }

    #[test]
    fn the_estimate_is_the_median_of_recent_times_seeded_by_the_expectation() {
        let mut t = ProveTimes::new(60, &[]);
        assert_eq!(t.estimate(), 60);
        t.record(10);
        assert_eq!(t.estimate(), 10);
        t.record(30);
        t.record(500);
        assert_eq!(t.estimate(), 30, "one outlier does not move the median");
        t.record(20);
        assert_eq!(t.estimate(), 25);
        for _ in 0..RECENT_PROVE_TIMES {
            t.record(7);
        }
        assert_eq!(t.estimate(), 7);
        assert_eq!(t.recent().len(), RECENT_PROVE_TIMES);
        let back = ProveTimes::new(60, &[1, 2, 3]);
        assert_eq!(back.estimate(), 2);
        assert_eq!(ProveTimes::new(0, &[]).estimate(), 1);
    }
}
