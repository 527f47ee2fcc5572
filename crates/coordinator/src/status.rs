//! What `proofmill status` shows: read from the store, or from memory (flagged) when the
//! store does not answer in time.

use crate::core::CoreHandle;
use crate::error::CoordinatorError;
use crate::standing::Standing;
use proofmill_scheduler::ProverView;
use proofmill_store::Store;
use proofmill_types::{ChainId, ProofType};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How long a status request waits for the store before answering from memory.
const STORE_WAIT: Duration = Duration::from_millis(1500);
/// Bound of the probe that says why the store did not answer, and of asking the core.
const PROBE_WAIT: Duration = Duration::from_secs(2);
/// Missing batch ranges shown at most (lowest first).
const MAX_GAP_WARNINGS: u32 = 8;

pub(crate) mod view;

use view::{LastStatus, SeenOnL1, StatusView, StoreOutage};

/// What status is read from: the store, the core (provers, backlog), settlement's report of
/// L1, and whether this coordinator is active. Cheap to clone.
#[derive(Clone)]
pub(crate) struct StatusSource {
    pub store: Arc<dyn Store>,
    pub core: CoreHandle,
    pub standing: Standing,
    pub l1: SeenOnL1,
    pub last: Arc<LastStatus>,
    /// Proof types every batch of the own chain needs.
    pub required: Vec<ProofType>,
    /// The own chain ([`crate::CoordinatorConfig::chain_id`]).
    pub chain_id: ChainId,
    /// Every chain proven here with its proof types, and their weights.
    pub chains: Arc<BTreeMap<ChainId, Vec<ProofType>>>,
    pub shares: proofmill_scheduler::ChainShares,
    /// [`crate::CoordinatorConfig::intake_window`].
    pub intake_window: u64,
    pub pauses: crate::Pauses,
    /// What the batch source last reported failing (live).
    pub source_error: Arc<crate::warnings::SourceError>,
    /// [`crate::CoordinatorConfig::market_hold`].
    pub market_hold: Option<crate::MarketHold>,
}

impl StatusSource {
    /// [`Coordinator::status`] when the store answers within a second or two; otherwise the
    /// last status read from it, with live provers, flagged with the store's error. Answers
    /// within about 4 s whatever the store does. Also flagged (and not read from the store)
    /// while this coordinator's lease is not surely held: another one may be active.
    pub async fn status_or_memory(&self) -> Result<StatusView, CoordinatorError> {
        let error = if !self.standing.holds_lease() {
            // Another coordinator may be active and ahead: what this one holds is not news.
            // Said as the store's error when the store is why.
            match tokio::time::timeout(PROBE_WAIT, self.store.probe()).await {
                Ok(Err(e)) => e.to_string(),
                _ => "this coordinator's lease on the store is not surely held (not renewed \
                      in time): a standby may be active"
                    .to_string(),
            }
        } else {
            match tokio::time::timeout(STORE_WAIT, self.status()).await {
                Ok(Ok(view)) => {
                    self.last.set(&view);
                    return Ok(view);
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => self.store_error().await,
            }
        };
        let (mut view, as_of_ms) = match self.last.get() {
            Some((view, at)) => (view, Some(at)),
            None => (self.empty_status(), None),
        };
        view.provers = tokio::time::timeout(PROBE_WAIT, self.provers())
            .await
            .map_err(|_| CoordinatorError::Unavailable)??;
        view.draining = self.standing.draining();
        view.paused = self.pauses.all();
        self.source_error.warn(&mut view.warnings);
        // The settlement loops' cache is memory too: live.
        let seen = self.l1.get();
        view.last_committed_batch = seen.as_ref().and_then(|s| s.last_committed_batch);
        view.last_verified_batch = seen.as_ref().and_then(|s| s.last_verified_batch);
        view.store_outage = Some(StoreOutage { error, as_of_ms });
        Ok(view)
    }

    /// Why the store is not answering: its probe's error, naming the endpoint.
    async fn store_error(&self) -> String {
        let store = &self.store;
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
            intake_window: self.intake_window,
            paused: self.pauses.all(),
            chains: Vec::new(),
            market: None,
        }
    }

    /// The own chain's proof market requests, counted.
    async fn market(&self) -> Result<Option<view::MarketView>, CoordinatorError> {
        let Some(hold) = &self.market_hold else {
            return Ok(None);
        };
        let Some(table) = self.store.clone().proof_requests() else {
            return Ok(None);
        };
        let counts = table.proof_request_counts(self.chain_id).await?;
        let share_ppm = match hold.mode {
            proofmill_types::ProvingMode::Cluster => 0,
            proofmill_types::ProvingMode::Network => 1_000_000,
            proofmill_types::ProvingMode::Mixed { share_ppm } => share_ppm,
        };
        Ok(Some(view::MarketView {
            mode: hold.mode.name().to_string(),
            share_ppm,
            proof_type: hold.proof_type.to_string(),
            requests: counts
                .by_status
                .into_iter()
                .map(|(s, n)| (s.as_str().to_string(), n))
                .collect(),
            fell_back: counts.fell_back,
            proven_by_network: counts.proven_by_network,
        }))
    }

    /// One chain's figures, read from the store.
    async fn chain(
        &self,
        chain: ChainId,
        types: &[ProofType],
    ) -> Result<view::ChainView, CoordinatorError> {
        let store = &self.store;
        let names = types.iter().map(|t| t.to_string());
        Ok(view::ChainView {
            chain_id: chain,
            weight: self.shares.weight(chain),
            proof_types: types.iter().map(|t| t.to_string()).collect(),
            last_sealed_batch: store.last_sealed_batch(chain).await?,
            last_proven_batch: store.last_proven_batch(chain).await?,
            jobs: view::job_counts(names, store.job_counts(Some(chain)).await?),
        })
    }

    /// Everything read from the store now.
    pub async fn status(&self) -> Result<StatusView, CoordinatorError> {
        let store = &self.store;
        let mut chains = Vec::with_capacity(self.chains.len());
        for (chain, types) in self.chains.iter() {
            chains.push(self.chain(*chain, types).await?);
        }
        let own = chains
            .iter()
            .find(|c| c.chain_id == self.chain_id)
            .cloned()
            .expect("the own chain is always proven here");
        let seen = self.l1.get();
        let provers = self.provers().await?;
        let backlog = self.core.backlog().await?;
        let gaps = store.batch_gaps(self.chain_id, 0, MAX_GAP_WARNINGS).await?;
        let mut warnings = crate::warnings::warnings(&backlog, &provers, &self.required, &gaps);
        self.source_error.warn(&mut warnings);
        Ok(StatusView {
            last_sealed_batch: own.last_sealed_batch,
            last_proven_batch: own.last_proven_batch,
            jobs: own.jobs,
            provers,
            draining: self.standing.draining(),
            last_committed_batch: seen.as_ref().and_then(|s| s.last_committed_batch),
            last_verified_batch: seen.as_ref().and_then(|s| s.last_verified_batch),
            last_verify_tx: crate::settled::last_verify_tx(self.store.as_ref()).await?,
            store_outage: None,
            warnings,
            intake_window: self.intake_window,
            paused: self.pauses.all(),
            chains,
            market: self.market().await?,
        })
    }

    /// Every prover the core knows, connected or not.
    pub async fn provers(&self) -> Result<Vec<ProverView>, CoordinatorError> {
        self.core.provers().await
    }
}
