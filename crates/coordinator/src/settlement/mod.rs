//! L1 settlement: the **committer** (devnet only: a real rollup's sequencer commits its own
//! batches) commits sealed batches in order, and the **proof sender** settles runs of
//! consecutive proven batches with one `verifyBatches` each. On-chain state
//! (`lastCommittedBatch`, `lastVerifiedBatch`) is the source of truth after any restart.

mod committer;
mod sender;

use crate::error::CoordinatorError;
use crate::server::Coordinator;
use proofmill_devnet::{Devnet, DevnetConfig, fr_to_digest};
use proofmill_l1::L1;
use proofmill_types::{Digest, ProofType};
use std::sync::Arc;
use tokio::task::JoinHandle;

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

/// Last on-chain values seen by the settlement loops (for `status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L1Seen {
    pub last_committed_batch: Option<u64>,
    pub last_verified_batch: Option<u64>,
    /// Why the last settlement round did not settle what it tried to (cleared on success).
    pub last_error: Option<String>,
}

/// One settling transaction, as the store records it for each of its batches.
pub use proofmill_store::VerifyRecord;

/// The rollup's genesis state root for a devnet configuration.
pub fn devnet_genesis_root(cfg: DevnetConfig) -> Result<Digest, CoordinatorError> {
    let d = Devnet::new(cfg).map_err(|e| CoordinatorError::Config(e.to_string()))?;
    Ok(fr_to_digest(d.state_root()))
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

impl Coordinator {
    /// Starts the committer and/or the proof sender against `l1`. The committer checks first
    /// that the contract's chain is the store's (same roots up to its last committed batch).
    pub async fn start_settlement(
        &self,
        l1: Arc<dyn L1>,
        commit: bool,
        send: Option<SettlementConfig>,
    ) -> Result<Settlement, CoordinatorError> {
        self.shared
            .l1_seen
            .write()
            .expect("l1 cache lock")
            .get_or_insert_with(L1Seen::default);
        let mut tasks = Vec::new();
        if commit {
            committer::check_chain(self, &*l1).await?;
            tasks.push(tokio::spawn(committer::run(self.clone(), l1.clone())));
        }
        if let Some(cfg) = send {
            if cfg.max_batches_per_tx == 0 {
                return Err(CoordinatorError::Config(
                    "max_batches_per_tx must be at least 1".into(),
                ));
            }
            if let Some(l1_types) = &cfg.l1_proof_types {
                let required = self.config().required_types();
                let stray = l1_types.iter().find(|t| !required.contains(t));
                if l1_types.is_empty() || stray.is_some() {
                    return Err(CoordinatorError::Config(format!(
                        "L1 proof types {l1_types:?} must be a non-empty subset of the required ones {required:?}"
                    )));
                }
            }
            tasks.push(tokio::spawn(sender::run(self.clone(), l1, cfg)));
        }
        Ok(Settlement { tasks })
    }

    /// What the settlement loops last saw on L1 (`None`: settlement is off).
    pub fn l1_seen(&self) -> Option<L1Seen> {
        self.shared.l1_seen.read().expect("l1 cache lock").clone()
    }

    pub(crate) fn update_l1_seen(&self, f: impl FnOnce(&mut L1Seen)) {
        if let Some(seen) = self.shared.l1_seen.write().expect("l1 cache lock").as_mut() {
            f(seen);
        }
    }

    /// The settling transaction recorded for `batch`, if any.
    pub async fn verify_record(
        &self,
        batch: u64,
    ) -> Result<Option<VerifyRecord>, CoordinatorError> {
        Ok(self.store().verify_record(batch).await?)
    }

    /// The range of a settling transaction sent but not yet recorded, if any.
    pub async fn pending_verify(&self) -> Result<Option<(u64, u64)>, CoordinatorError> {
        Ok(self.store().pending_verify().await?)
    }

    /// The latest settling transaction.
    pub async fn last_verify_tx(&self) -> Result<Option<VerifyRecord>, CoordinatorError> {
        Ok(self.store().last_verify_record().await?)
    }
}

pub(crate) fn hex_hash(h: &[u8; 32]) -> String {
    format!("0x{}", hex::encode(h))
}
