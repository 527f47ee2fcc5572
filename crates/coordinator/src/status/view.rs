//! What `proofmill status` shows, and the last of it read from the store.

use proofmill_scheduler::ProverView;
use proofmill_store::VerifyRecord;
use proofmill_types::{JobState, Millis};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JobCountsView {
    pub queued: u64,
    pub leased: u64,
    pub proven: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Offered to a proving network, not yet the own provers'.
    pub held: u64,
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
    /// Set when the store did not answer: the batch, job and verify-tx figures above are
    /// the last ones read from it (`provers`, `draining` and the L1 figures are live).
    pub store_outage: Option<StoreOutage>,
    /// What cannot progress as things stand (from the store's figures of the same read).
    pub warnings: Vec<crate::StatusWarning>,
    /// [`crate::CoordinatorConfig::intake_window`].
    pub intake_window: u64,
    /// Components an operator paused, as this coordinator acts on them (live).
    pub paused: BTreeMap<crate::Component, crate::Pause>,
    /// Every chain proven here, in id order, the own chain included (whose figures are also
    /// the ones above).
    pub chains: Vec<ChainView>,
    /// The proof market's requests for the own chain; `None` without a market.
    pub market: Option<MarketView>,
}

/// The proof market as the own chain uses it ([`crate::CoordinatorConfig::market_hold`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketView {
    /// `cluster`, `network` or `mixed`.
    pub mode: String,
    /// The share of batches offered, parts per million.
    pub share_ppm: u32,
    pub proof_type: String,
    /// Requests per status (the store's names).
    pub requests: BTreeMap<String, u64>,
    /// Handed to the own provers after a network did not deliver.
    pub fell_back: u64,
    /// Proven by a network (valid proof, validated on L1).
    pub proven_by_network: u64,
}

/// One chain's figures: its own batch numbering, settlement progress and jobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainView {
    pub chain_id: u64,
    /// Its share of the fleet while chains have work ([`crate::ChainSpec::weight`]).
    pub weight: u32,
    pub proof_types: Vec<String>,
    pub last_sealed_batch: Option<u64>,
    pub last_proven_batch: Option<u64>,
    pub jobs: BTreeMap<String, JobCountsView>,
}

/// Why a status came from memory, and how old its store figures are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOutage {
    /// The store's endpoint and the cause.
    pub error: String,
    /// When the figures were read from the store (Unix ms); `None` if never since start.
    pub as_of_ms: Option<Millis>,
}

/// Last on-chain values seen by settlement (for `status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L1Seen {
    pub last_committed_batch: Option<u64>,
    pub last_verified_batch: Option<u64>,
    /// Why the last settlement round did not settle what it tried to (cleared on success).
    pub last_error: Option<String>,
}

/// What settlement last reported of L1: written only through the [`crate::SettlementPort`],
/// read by status. `None` until settlement reports (or when it is off).
#[derive(Clone, Default)]
pub(crate) struct SeenOnL1(Arc<RwLock<Option<L1Seen>>>);

impl SeenOnL1 {
    pub(crate) fn get(&self) -> Option<L1Seen> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut L1Seen)) {
        let mut seen = self.0.write().unwrap_or_else(|p| p.into_inner());
        f(seen.get_or_insert_with(L1Seen::default));
    }
}

/// The last status read from the store.
#[derive(Default)]
pub(crate) struct LastStatus(Mutex<Option<(StatusView, Millis)>>);

impl LastStatus {
    pub(crate) fn set(&self, view: &StatusView) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((view.clone(), crate::now_ms()));
    }

    pub(crate) fn get(&self) -> Option<(StatusView, Millis)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Jobs per proof type and state, as the store counts them: every type in `required` is
/// listed, with zeros if it has no jobs.
pub(crate) fn job_counts(
    required: impl IntoIterator<Item = String>,
    counted: proofmill_store::JobCounts,
) -> BTreeMap<String, JobCountsView> {
    let mut jobs: BTreeMap<String, JobCountsView> = required
        .into_iter()
        .map(|t| (t, JobCountsView::default()))
        .collect();
    for (pt, by_state) in counted {
        let c = jobs.entry(pt.to_string()).or_default();
        for (state, n) in by_state {
            match state {
                JobState::Queued => c.queued = n,
                JobState::Leased => c.leased = n,
                JobState::Proven => c.proven = n,
                JobState::Failed => c.failed = n,
                JobState::Cancelled => c.cancelled = n,
                JobState::Held => c.held = n,
            }
        }
    }
    jobs
}

impl From<JobCountsView> for proofmill_proto::v1::JobCounts {
    fn from(c: JobCountsView) -> Self {
        proofmill_proto::v1::JobCounts {
            queued: c.queued,
            leased: c.leased,
            proven: c.proven,
            failed: c.failed,
            cancelled: c.cancelled,
            held: c.held,
        }
    }
}
