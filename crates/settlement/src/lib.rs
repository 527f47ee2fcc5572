//! L1 settlement, a component apart from the coordinator that a deployment may leave out: the
//! **committer** (for the devnet: a real rollup's sequencer commits its own batches) commits
//! sealed batches in order, and the **proof sender** settles runs of consecutive proven
//! batches with one `verifyBatches` each. On-chain state (`lastCommittedBatch`,
//! `lastVerifiedBatch`) is the source of truth after any restart. All it gets of the
//! coordinator is a [`SettlementPort`].

mod committer;
mod sender;

use proofmill_coordinator::{CoordinatorError, SettlementPort};
use proofmill_l1::L1;
use proofmill_types::ProofType;
use std::sync::Arc;
use tokio::task::JoinHandle;

pub use proofmill_coordinator::{L1Seen, VerifyRecord};

/// Policy of the proof sender.
#[derive(Clone, Debug)]
pub struct SettlementConfig {
    /// Time between settlement attempts, ms.
    pub send_interval_ms: u64,
    /// Most batches settled by one transaction.
    pub max_batches_per_tx: u64,
    /// A range whose estimated gas exceeds this is halved until it fits.
    pub max_gas_per_tx: u64,
    /// Proof types the rollup contract verifies, in its order. `None`: every required type.
    /// Types left out (e.g. `stark`, which has no EVM verifier) are still required: a batch
    /// is settled only once all its required proofs are proven and checked on arrival.
    pub l1_proof_types: Option<Vec<ProofType>>,
}

impl Default for SettlementConfig {
    fn default() -> Self {
        SettlementConfig {
            send_interval_ms: 5_000,
            max_batches_per_tx: 32,
            max_gas_per_tx: 10_000_000,
            l1_proof_types: None,
        }
    }
}

/// Running settlement loops; aborted on [`Settlement::stop`] or drop.
pub struct Settlement {
    tasks: Vec<JoinHandle<()>>,
}

impl Settlement {
    pub fn stop(mut self) {
        self.abort();
    }

    fn abort(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Starts the committer and/or the proof sender against `l1`. The committer checks first
/// that the contract's chain is the store's (same roots up to its last committed batch).
pub async fn start(
    port: SettlementPort,
    l1: Arc<dyn L1>,
    commit: bool,
    send: Option<SettlementConfig>,
) -> Result<Settlement, CoordinatorError> {
    port.report(|_| {});
    let mut tasks = Vec::new();
    if commit {
        committer::check_chain(&port, &*l1).await?;
        tasks.push(tokio::spawn(committer::run(port.clone(), l1.clone())));
    }
    if let Some(cfg) = send {
        if cfg.max_batches_per_tx == 0 {
            return Err(CoordinatorError::Config(
                "max_batches_per_tx must be at least 1".into(),
            ));
        }
        if let Some(l1_types) = &cfg.l1_proof_types {
            let required = port.required_types();
            let stray = l1_types.iter().find(|t| !required.contains(t));
            if l1_types.is_empty() || stray.is_some() {
                return Err(CoordinatorError::Config(format!(
                    "L1 proof types {l1_types:?} must be a non-empty subset of the required ones {required:?}"
                )));
            }
        }
        tasks.push(tokio::spawn(sender::run(port, l1, cfg)));
    }
    Ok(Settlement { tasks })
}

pub(crate) fn hex_hash(h: &[u8; 32]) -> String {
    format!("0x{}", hex::encode(h))
}

/// Wall-clock milliseconds, for the times settlement records carry.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
