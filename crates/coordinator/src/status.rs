use crate::error::CoordinatorError;
use crate::server::Coordinator;
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
        Ok(StatusView {
            last_sealed_batch: store.last_sealed_batch().await?,
            last_proven_batch: store.last_proven_batch().await?,
            jobs,
            provers: self.provers().await?,
            draining: self.shared.draining(),
        })
    }
}
