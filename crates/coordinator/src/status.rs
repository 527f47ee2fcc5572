//! What `proofmill status` shows: read from the store, or from memory (flagged) when the
//! store does not answer in time.

use crate::core::CoreMsg;
use crate::error::CoordinatorError;
use crate::server::Coordinator;
use crate::settled::VerifyRecord;
use proofmill_scheduler::ProverView;
use proofmill_types::{JobState, Millis};
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long a status request waits for the store before answering from memory.
const STORE_WAIT: Duration = Duration::from_millis(1500);
/// Bound of the probe that says why the store did not answer, and of asking the core.
const PROBE_WAIT: Duration = Duration::from_secs(2);
/// Missing batch ranges shown at most (lowest first).
const MAX_GAP_WARNINGS: u32 = 8;

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
    /// Set when the store did not answer: the batch, job and verify-tx figures above are
    /// the last ones read from it (`provers`, `draining` and the L1 figures are live).
    pub store_outage: Option<StoreOutage>,
    /// What cannot progress as things stand (from the store's figures of the same read).
    pub warnings: Vec<crate::StatusWarning>,
    /// [`crate::CoordinatorConfig::intake_window`].
    pub intake_window: u64,
}

/// Why a status came from memory, and how old its store figures are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOutage {
    /// The store's endpoint and the cause.
    pub error: String,
    /// When the figures were read from the store (Unix ms); `None` if never since start.
    pub as_of_ms: Option<Millis>,
}

/// The last status read from the store.
#[derive(Default)]
pub(crate) struct LastStatus(Mutex<Option<(StatusView, Millis)>>);

impl LastStatus {
    fn set(&self, view: &StatusView) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((view.clone(), crate::now_ms()));
    }

    fn get(&self) -> Option<(StatusView, Millis)> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Coordinator {
    /// [`Coordinator::status`] when the store answers within a second or two; otherwise the
    /// last status read from it, with live provers, flagged with the store's error. Answers
    /// within about 4 s whatever the store does. Also flagged (and not read from the store)
    /// while this coordinator's lease is not surely held: another one may be active.
    pub async fn status_or_memory(&self) -> Result<StatusView, CoordinatorError> {
        let error = if !self.shared.holds_lease() {
            // Another coordinator may be active and ahead: what this one holds is not news.
            // Said as the store's error when the store is why.
            match tokio::time::timeout(PROBE_WAIT, self.shared.store.probe()).await {
                Ok(Err(e)) => e.to_string(),
                _ => "this coordinator's lease on the store is not surely held (not renewed \
                      in time): a standby may be active"
                    .to_string(),
            }
        } else {
            match tokio::time::timeout(STORE_WAIT, self.status()).await {
                Ok(Ok(view)) => {
                    self.shared.last_status.set(&view);
                    return Ok(view);
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => self.store_error().await,
            }
        };
        let (mut view, as_of_ms) = match self.shared.last_status.get() {
            Some((view, at)) => (view, Some(at)),
            None => (self.empty_status(), None),
        };
        view.provers = tokio::time::timeout(PROBE_WAIT, self.provers())
            .await
            .map_err(|_| CoordinatorError::Unavailable)??;
        view.draining = self.shared.draining();
        // The settlement loops' cache is memory too: live.
        let seen = self.l1_seen();
        view.last_committed_batch = seen.as_ref().and_then(|s| s.last_committed_batch);
        view.last_verified_batch = seen.as_ref().and_then(|s| s.last_verified_batch);
        view.store_outage = Some(StoreOutage { error, as_of_ms });
        Ok(view)
    }

    /// Why the store is not answering: its probe's error, naming the endpoint.
    async fn store_error(&self) -> String {
        let store = &self.shared.store;
        match tokio::time::timeout(PROBE_WAIT, store.probe()).await {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(())) => format!(
                "{}: answers, but not within {STORE_WAIT:?} (overloaded?)",
                store.endpoint()
            ),
            Err(_) => format!("{}: no answer within {PROBE_WAIT:?}", store.endpoint()),
        }
    }

    fn empty_status(&self) -> StatusView {
        StatusView {
            last_sealed_batch: None,
            last_proven_batch: None,
            jobs: BTreeMap::new(),
            provers: Vec::new(),
            draining: false,
            last_committed_batch: None,
            last_verified_batch: None,
            last_verify_tx: None,
            store_outage: None,
            warnings: Vec::new(),
            intake_window: self.shared.config.intake_window,
        }
    }

    /// Everything read from the store now.
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
        let provers = self.provers().await?;
        let backlog = self.shared.ask(|reply| CoreMsg::Backlog { reply }).await?;
        let gaps = store.batch_gaps(0, MAX_GAP_WARNINGS).await?;
        let warnings = crate::warnings::warnings(
            &backlog,
            &provers,
            &self.shared.config.required_types(),
            &gaps,
        );
        Ok(StatusView {
            last_sealed_batch: store.last_sealed_batch().await?,
            last_proven_batch: store.last_proven_batch().await?,
            jobs,
            provers,
            draining: self.shared.draining(),
            last_committed_batch: seen.as_ref().and_then(|s| s.last_committed_batch),
            last_verified_batch: seen.as_ref().and_then(|s| s.last_verified_batch),
            last_verify_tx: self.last_verify_tx().await?,
            store_outage: None,
            warnings,
            intake_window: self.shared.config.intake_window,
        })
    }
}
