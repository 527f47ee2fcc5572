//! The proof manager at work: the [`machine`](crate::machine) driven against the market
//! contract, the coordinator ([`MarketPort`]) and the durable table, one round at a time.
//!
//! A round: the readiness checker publishes new held batches; the watcher reads the
//! market's confirmed events from the stored cursor and applies them to the open rows (rows
//! and cursor written in one transaction; a network's proof is kept in the blob store before
//! that, so a row that has it can always find it); then every open row's next action is done
//! and its outcome written, one at a time. A driver killed anywhere resumes from the rows.
//!
//! Transactions go out only while the coordinator holds the store's lease. Every error is a
//! value: an RPC error costs a round, never the task, and never other components (zkSync's
//! watcher once crashed a shared loop on one and held a batch for 5 hours).

use crate::machine::{self, Action, ManagerConfig, Outcome};
use crate::readiness::Readiness;
use bytes::Bytes;
use proofmill_coordinator::{CoordinatorError, Delivered, MarketPort};
use proofmill_market::{
    MarketError, MarketEvent, MarketL1, MarketRevert, MarketWatcher, WatcherConfig,
};
use proofmill_store::{
    Blobs, MarketCursor, ProofRequest, ProofRequestFilter, ProofRequests, StoreError,
};
use proofmill_telemetry::names;
use proofmill_types::{BatchNumber, Millis};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Why a round stopped early. Logged; the next round tries again.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("coordinator: {0}")]
    Coordinator(#[from] CoordinatorError),
    #[error("proof market: {0}")]
    Market(#[from] MarketError),
    #[error("proof inputs: {0}")]
    Inputs(String),
    #[error("{0}")]
    Machine(#[from] machine::UnexpectedOutcome),
    #[error("the proof of {0} is missing from the blob store")]
    ProofMissing(String),
}

/// How the proof manager runs.
#[derive(Clone, Debug)]
pub struct DriverConfig {
    /// What every request asks (`ack_timeout` is read from the market at start).
    pub manager: ManagerConfig,
    pub watcher: WatcherConfig,
    /// The first block to read when no cursor is stored (the market's deployment block).
    pub from_block: u64,
    /// Pause between rounds.
    pub poll_interval: Duration,
    /// Base URL of the public blob store, as networks read it.
    pub inputs_public_url: String,
}

/// What one round did (for logs and tests).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub published: usize,
    pub events: usize,
    pub actions: usize,
    /// The chain time the round's decisions were made at.
    pub chain_time: u64,
}

/// The rollup's proof manager (see the module doc).
pub struct ProofManager {
    port: MarketPort,
    market: Arc<dyn MarketL1>,
    table: Arc<dyn ProofRequests>,
    readiness: Readiness,
    watcher: MarketWatcher,
    cfg: DriverConfig,
    /// The market address as the cursor is keyed.
    market_key: String,
    /// Chain time of the last processed block.
    chain_time: u64,
}

/// Where a network's proof of `batch` is kept (the coordinator's private blob store).
pub fn proof_key(chain: u64, batch: BatchNumber) -> String {
    format!("market-proofs/chain-{chain}/{batch:012}.bin")
}

/// Counts a market transaction the manager sent: mined (`Ok`) with its gas, or refused.
fn count_tx(kind: &'static str, r: &Result<proofmill_market::MarketTx, MarketError>) {
    let outcome = match r {
        Ok(tx) => {
            metrics::histogram!(names::MARKET_TRANSACTION_GAS, names::KIND => kind)
                .record(tx.gas_used as f64);
            "success"
        }
        Err(e) if e.refusal().is_some() => "refused",
        Err(_) => return,
    };
    metrics::counter!(names::MARKET_TRANSACTIONS_TOTAL, names::KIND => kind, names::OUTCOME => outcome)
        .increment(1);
}

fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

impl ProofManager {
    /// A proof manager for the coordinator behind `port`, over `market` (its sender must be
    /// the market's submitter), publishing inputs to `public`. Reads the market's settings.
    pub async fn new(
        port: MarketPort,
        market: Arc<dyn MarketL1>,
        public: Blobs,
        mut cfg: DriverConfig,
    ) -> Result<ProofManager, DriverError> {
        let table =
            port.store().clone().proof_requests().ok_or_else(|| {
                DriverError::Inputs("this store has no proof request table".into())
            })?;
        let settings = market.settings().await?;
        if settings.submitter != market.sender() {
            return Err(DriverError::Inputs(format!(
                "the market's submitter is {}, not this key's address {}",
                settings.submitter,
                market.sender()
            )));
        }
        cfg.manager.ack_timeout = settings.ack_timeout;
        let watcher = MarketWatcher::new(market.clone(), cfg.watcher);
        let readiness = Readiness {
            port: port.clone(),
            table: table.clone(),
            public,
            public_url: cfg.inputs_public_url.clone(),
        };
        Ok(ProofManager {
            market_key: market.market_address().to_string(),
            port,
            market,
            table,
            readiness,
            watcher,
            cfg,
            chain_time: 0,
        })
    }

    /// Rounds until the coordinator shuts down. Errors are logged, never returned.
    pub async fn run(mut self) {
        let shutdown = self.port.shutdown();
        tracing::info!(market = %self.market_key, "proof manager running");
        loop {
            if self.port.holds_lease() {
                match self.round().await {
                    Ok(r) if r.actions + r.events + r.published > 0 => {
                        tracing::debug!(?r, "proof manager round")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        metrics::counter!(names::MARKET_ERRORS_TOTAL).increment(1);
                        tracing::warn!(error = %e, "proof manager round stopped; retrying")
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.poll_interval) => {}
                _ = shutdown.begun() => break,
            }
        }
        tracing::info!("proof manager stopped");
    }

    /// One round (see the module doc).
    pub async fn round(&mut self) -> Result<Round, DriverError> {
        let chain = self.port.chain_id();
        let mut round = Round::default();
        let open = self
            .table
            .list_proof_requests(&ProofRequestFilter {
                chain: Some(chain),
                open_only: true,
                ..Default::default()
            })
            .await?;
        let mut rows: BTreeMap<BatchNumber, ProofRequest> =
            open.into_iter().map(|r| (r.batch, r)).collect();
        let rowed: BTreeSet<BatchNumber> = rows.keys().copied().collect();
        for row in self.readiness.publish_new(&rowed, now_ms()).await? {
            round.published += usize::from(!rowed.contains(&row.batch));
            rows.insert(row.batch, row);
        }
        round.events = self.watch(&mut rows).await?;
        round.chain_time = self.chain_time;
        for row in rows.values_mut() {
            round.actions += self.act(row).await?;
        }
        Ok(round)
    }

    /// Reads confirmed events up to the head (a few ranges at most per round) into the rows.
    async fn watch(
        &mut self,
        rows: &mut BTreeMap<BatchNumber, ProofRequest>,
    ) -> Result<usize, DriverError> {
        let chain = self.port.chain_id();
        let mut seen = 0;
        for _ in 0..16 {
            let cursor = match self.table.market_cursor(&self.market_key, chain).await? {
                Some(b) => b,
                None => self.cfg.from_block.saturating_sub(1),
            };
            let batch = self.watcher.poll(cursor).await?;
            let now = now_ms();
            let mut changed = BTreeSet::new();
            for event in &batch.events {
                let Some(id) = event.request_id().filter(|id| id.chain_id == chain) else {
                    continue;
                };
                let Some(row) = rows.get_mut(&id.batch) else {
                    continue;
                };
                if let MarketEvent::Proven { proof, .. } = event {
                    // Kept before the row says it has one.
                    self.port
                        .blobs()
                        .put(&proof_key(chain, id.batch), Bytes::from(proof.clone()))
                        .await?;
                }
                if machine::apply_event(row, event, now) {
                    changed.insert(id.batch);
                }
            }
            seen += batch.events.len();
            let written: Vec<ProofRequest> = changed
                .iter()
                .filter_map(|b| rows.get(b).cloned())
                .collect();
            self.table
                .update_proof_requests(
                    &written,
                    Some(&MarketCursor {
                        market: self.market_key.clone(),
                        chain,
                        last_block: batch.last_processed,
                    }),
                )
                .await?;
            self.chain_time = batch.last_processed_at;
            if batch.caught_up {
                break;
            }
        }
        Ok(seen)
    }

    /// Does the row's next actions until it has to wait; returns how many were done.
    async fn act(&self, row: &mut ProofRequest) -> Result<usize, DriverError> {
        let mut done = 0;
        // Each action moves the row on; a handful covers any row's longest chain of steps.
        for _ in 0..8 {
            let action = machine::next_action(row, self.chain_time, &self.cfg.manager);
            if action == Action::Wait {
                break;
            }
            if action.is_send() && !self.port.holds_lease() {
                break;
            }
            let Some(outcome) = self.perform(row, &action).await? else {
                break;
            };
            machine::apply_outcome(row, &outcome, &self.cfg.manager, now_ms())?;
            self.table
                .update_proof_requests(std::slice::from_ref(row), None)
                .await?;
            done += 1;
        }
        Ok(done)
    }

    /// Does `action`; `None`: a transient failure, to be tried again next round.
    async fn perform(
        &self,
        row: &ProofRequest,
        action: &Action,
    ) -> Result<Option<Outcome>, DriverError> {
        let transient = |e: &MarketError, what: &str| {
            tracing::warn!(batch = row.batch, error = %e, "{what}: will retry");
        };
        Ok(Some(match action {
            Action::Wait => return Ok(None),
            Action::SendRequest { id, params, escrow } => {
                let sent = self.market.submit_proof_request(*id, params, *escrow).await;
                count_tx("request", &sent);
                match sent {
                    Ok(tx) => {
                        tracing::info!(
                            batch = row.batch,
                            gas = tx.gas_used,
                            "proof request sent to L1"
                        );
                        Outcome::RequestSent {
                            tx_hash: tx.tx_hash,
                        }
                    }
                    Err(e) => match e.refusal() {
                        Some(MarketRevert::RequestExists(_)) => Outcome::RequestExists,
                        Some(other) => {
                            tracing::warn!(batch = row.batch, refusal = %other, "the market refused the request: falling back");
                            Outcome::RequestRefused
                        }
                        None => {
                            transient(&e, "sending the proof request");
                            return Ok(None);
                        }
                    },
                }
            }
            Action::LookUpRequest(id) => match self.market.request(*id).await {
                Ok(r) => Outcome::Found(r),
                Err(e) => {
                    transient(&e, "reading the request");
                    return Ok(None);
                }
            },
            Action::VerifyProof(id) => {
                let key = proof_key(id.chain_id, id.batch);
                let proof = match self.port.blobs().get(&key).await {
                    Ok(p) => p,
                    Err(StoreError::BlobNotFound { .. }) => {
                        return Err(DriverError::ProofMissing(key));
                    }
                    Err(e) => return Err(e.into()),
                };
                let network = row.assigned_to.clone().unwrap_or_default();
                let delivered = self
                    .port
                    .deliver(id.batch, proof.to_vec(), &network)
                    .await?;
                let valid = match &delivered {
                    Delivered::Accepted | Delivered::AlreadyProven => true,
                    // Valid, but the batch is no longer the market's (an operator's cancel).
                    Delivered::NotHeld => true,
                    Delivered::Invalid(reason) => {
                        tracing::warn!(batch = row.batch, %network, %reason, "a network's proof is invalid: falling back");
                        false
                    }
                };
                let outcome = if valid { "valid" } else { "invalid" };
                metrics::counter!(names::MARKET_PROOFS_CHECKED_TOTAL, names::OUTCOME => outcome)
                    .increment(1);
                if valid {
                    tracing::info!(batch = row.batch, %network, outcome = ?delivered, "a network's proof checked");
                }
                Outcome::Verified {
                    valid,
                    proof_url: Some(self.port.blobs().url(&key)),
                }
            }
            Action::SendValidation { id, valid } => {
                let sent = self.market.submit_validation_result(*id, *valid).await;
                count_tx("validation", &sent);
                match sent {
                    Ok(tx) => Outcome::ValidationSent {
                        valid: *valid,
                        tx_hash: tx.tx_hash,
                    },
                    Err(e) => match e.refusal() {
                        Some(
                            MarketRevert::AlreadyValidated(_)
                            | MarketRevert::ValidationTooLate { .. },
                        ) => Outcome::AlreadyValidated,
                        Some(_) => Outcome::Found(self.market.request(*id).await?),
                        None => {
                            transient(&e, "sending the validation result");
                            return Ok(None);
                        }
                    },
                }
            }
            Action::FallBack { id, reason } => {
                let released = self.port.release(id.batch).await?;
                metrics::counter!(names::MARKET_FALLBACKS_TOTAL, names::REASON => reason.as_str())
                    .increment(1);
                tracing::warn!(
                    batch = id.batch,
                    reason = reason.as_str(),
                    released,
                    "the market fell back: the batch goes to the own provers"
                );
                Outcome::FellBack { reason: *reason }
            }
            Action::CloseTimedOut(id) => match self.market.close_timed_out_request(*id).await {
                Ok(tx) => Outcome::Closed {
                    tx_hash: tx.tx_hash,
                },
                Err(e) if e.refusal().is_some() => Outcome::Found(self.market.request(*id).await?),
                Err(e) => {
                    transient(&e, "closing the timed-out request");
                    return Ok(None);
                }
            },
        }))
    }
}
