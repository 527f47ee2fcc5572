use crate::policy::PolicyName;
use crate::shares::ChainShares;
use proofmill_types::Millis;

/// Timing and retry policy. Defaults follow ethrex's coordinator where it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// How often the service sends heartbeats (it does the sending; we only count misses).
    pub heartbeat_interval_ms: Millis,
    /// A prover silent for `heartbeat_interval_ms * missed_heartbeats` loses its leases.
    pub missed_heartbeats: u32,
    /// Hard limit on one lease, heartbeats or not (ethrex's `prover-timeout`).
    pub prover_timeout_ms: Millis,
    /// Failed results (errors, invalid proofs) before a job is marked failed.
    pub max_attempts: u32,
    /// Lost leases (prover vanished, timed out) before a job is marked failed; counted apart
    /// from `max_attempts` because losing a prover is rarely the job's fault.
    pub max_lost_attempts: u32,
    /// Retry delay after the n-th failure: `base * 2^(n-1)`, capped at `max`.
    pub retry_backoff_base_ms: Millis,
    pub retry_backoff_max_ms: Millis,
    /// Invalid proofs in a row after which a prover is cordoned by itself (0: never). An
    /// operator's `uncordon` puts it back.
    pub cordon_after_invalid: u32,
    /// Different provers that fail one job before it is marked failed as a problem of its
    /// batch rather than of a prover (0: never).
    pub batch_failure_provers: u32,
    /// How long the leases of a prover whose stream closed wait for it to reconnect before
    /// they go back to the queue.
    pub reconnect_grace_ms: Millis,
    /// A task running longer than this many times the 90th percentile of its proof type's
    /// recent durations gets a backup copy on an idle prover (0: never).
    pub straggler_factor: u32,
    /// Which prover gets which ready job (the mechanism above applies under every policy).
    pub assignment_policy: PolicyName,
    /// How the fleet is shared between chains with work (see [`ChainShares`]).
    pub chain_shares: ChainShares,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            heartbeat_interval_ms: 5_000,
            missed_heartbeats: 3,
            prover_timeout_ms: 600_000,
            max_attempts: 5,
            max_lost_attempts: 10,
            retry_backoff_base_ms: 1_000,
            retry_backoff_max_ms: 60_000,
            cordon_after_invalid: 3,
            batch_failure_provers: 3,
            reconnect_grace_ms: 1_000,
            straggler_factor: 3,
            assignment_policy: PolicyName::OldestFirst,
            chain_shares: ChainShares::default(),
        }
    }
}

impl SchedulerConfig {
    pub fn liveness_timeout_ms(&self) -> Millis {
        self.heartbeat_interval_ms
            .saturating_mul(self.missed_heartbeats.max(1) as u64)
    }

    pub fn retry_delay_ms(&self, failures: u32) -> Millis {
        let shift = failures.saturating_sub(1).min(30);
        self.retry_backoff_base_ms
            .saturating_mul(1u64 << shift)
            .min(self.retry_backoff_max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps() {
        let c = SchedulerConfig::default();
        assert_eq!(c.retry_delay_ms(1), 1_000);
        assert_eq!(c.retry_delay_ms(2), 2_000);
        assert_eq!(c.retry_delay_ms(4), 8_000);
        assert_eq!(c.retry_delay_ms(40), 60_000);
        assert_eq!(c.liveness_timeout_ms(), 15_000);
    }
}
