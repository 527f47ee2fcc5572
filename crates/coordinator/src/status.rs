use crate::error::CoordinatorError;
use crate::server::Coordinator;
use crate::settlement::VerifyRecord;
use proofmill_scheduler::ProverView;
use proofmill_types::JobState;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobCountsView {
    pub queued: u64,
    pub leased: u64,
    pub proven: u64,
    pub failed: u64,
    pub cancelled: u64,
}

/// What `proofmill status` shows.
#[derive(Clone, Debug)]
pub struct StatusView {
    pub last_sealed_batch: Option<u64>,
    pub last_proven_batch: Option<u64>,
    pub jobs: BTreeMap<String, JobCountsView>,
    pub provers: Vec<ProverView>,
    pub draining: bool,
    /// From the settlement loops' cache; `None` when settlement is off.
    pub last_committed_batch: Option<u64>,
    pub last_verified_batch: Option<u64>,
    pub last_verify_tx: Option<VerifyRecord>,
}

impl Coordinator {
    pub async fn status(&self) -> Result<StatusView, CoordinatorError> {
        let store = &self.shared.store;
        let mut jobs: BTreeMap<String, JobCountsView> = BTreeMap::new();
        for (pt, _) in &self.shared.config.proof_types {
            jobs.entry(pt.to_string()).or_default();
        }
        for (pt, by_state) in store.job_counts().await? {
            let c = jobs.entry(pt.to_string()).or_default();
            for (state, n) in by_state {
                match state {
                    JobState::Queued => c.queued = n,
                    JobState::Leased => c.leased = n,
                    JobState::Proven => c.proven = n,
                    JobState::Failed => c.failed = n,
                    JobState::Cancelled => c.cancelled = n,
                }
            }
        }
        let seen = self.l1_seen();
        Ok(StatusView {
            last_sealed_batch: store.last_sealed_batch().await?,
            last_proven_batch: store.last_proven_batch().await?,
            jobs,
            provers: self.provers().await?,
            draining: self.shared.draining(),
            last_committed_batch: seen.as_ref().and_then(|s| s.last_committed_batch),
            last_verified_batch: seen.as_ref().and_then(|s| s.last_verified_batch),
            last_verify_tx: self.last_verify_tx().await?,
        })
    }
}
