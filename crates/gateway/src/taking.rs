//! Taking a core's batch in: the chain checked, proofmill's `witness_input_data` decoded,
//! then the batch (with its protocol version) stored through the coordinator's intake, which
//! puts the input in the blob store and the batch and its jobs in the store, or refuses it
//! changing nothing. Idempotent: the same batch again is fine; a different one under a known
//! number is refused.

use crate::Gateway;
use crate::backoff::Backoff;
use crate::wire::{ProofGenerationData, WitnessInput};
use proofmill_coordinator::{CoordinatorError, NewBatch};
use proofmill_types::{ProofType, PublicValues};
use std::time::Duration;

/// Why a batch was not taken in.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    #[error("batch {batch} is of chain {got}; this coordinator proves chain {want} (--chain-id)")]
    OtherChain { batch: u64, got: u64, want: u64 },
    #[error("batch {batch}: {reason}")]
    BadWitness { batch: u64, reason: String },
    /// Refused by the intake: e.g. a known number with different content, an input the
    /// backends refuse, a proof type not served.
    #[error("batch {batch} refused: {reason}")]
    Refused { batch: u64, reason: String },
    /// Could not be stored now (store down, intake paused); worth trying again.
    #[error("batch {batch} could not be stored now: {reason}")]
    Unavailable { batch: u64, reason: String },
    /// The coordinator is shutting down.
    #[error("the coordinator is shutting down")]
    Stopping,
}

impl TakeError {
    /// The metric label of a refusal; `None` for a failure that is not the batch's fault.
    pub fn refusal(&self) -> Option<&'static str> {
        match self {
            TakeError::OtherChain { .. } => Some("other_chain"),
            TakeError::BadWitness { .. } => Some("bad_witness"),
            TakeError::Refused { .. } => Some("invalid"),
            TakeError::Unavailable { .. } | TakeError::Stopping => None,
        }
    }
}

/// How a batch is taken: pull mode retries a batch it could not store (the core does not
/// hand it out again for a long while); push mode answers at once (the core retries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Pull,
    Push,
}

impl Gateway {
    /// Takes `data` in; `Ok(true)` for a batch new to the store.
    pub(crate) async fn take(
        &self,
        data: &ProofGenerationData,
        mode: Mode,
    ) -> Result<bool, TakeError> {
        let result = self.take_checked(data, mode).await;
        match &result {
            Ok(true) => {
                metrics::counter!(proofmill_telemetry::names::GATEWAY_BATCHES_TAKEN_TOTAL)
                    .increment(1);
                tracing::info!(batch = data.l1_batch_number, version = %data.protocol_version, "batch taken in from the core API");
                self.taken.notify_waiters();
            }
            Ok(false) => {
                tracing::debug!(
                    batch = data.l1_batch_number,
                    "batch handed out again by the core API; already stored"
                );
                self.taken.notify_waiters();
            }
            Err(e) => {
                if let Some(reason) = e.refusal() {
                    metrics::counter!(
                        proofmill_telemetry::names::GATEWAY_BATCHES_REFUSED_TOTAL,
                        proofmill_telemetry::names::REASON => reason
                    )
                    .increment(1);
                }
                tracing::error!(batch = data.l1_batch_number, error = %e, "batch from the core API not taken in");
                self.record_error(e.to_string());
            }
        }
        result
    }

    async fn take_checked(
        &self,
        data: &ProofGenerationData,
        mode: Mode,
    ) -> Result<bool, TakeError> {
        let batch = data.l1_batch_number;
        if data.chain_id != self.chain_id() {
            return Err(TakeError::OtherChain {
                batch,
                got: data.chain_id,
                want: self.chain_id(),
            });
        }
        let witness = WitnessInput::from_json(&data.witness_input_data)
            .map_err(|reason| TakeError::BadWitness { batch, reason })?;
        let mut proof_types = Vec::new();
        for t in &witness.proof_types {
            proof_types.push(
                ProofType::new(t.clone()).map_err(|e| TakeError::BadWitness {
                    batch,
                    reason: format!("witness_input_data.proof_types: {e}"),
                })?,
            );
        }
        let nb = NewBatch {
            chain: self.intake.chain_id(),
            number: batch,
            version: data.protocol_version.clone(),
            input: witness.input.into(),
            public_values: PublicValues::new(witness.public_values),
            proof_types,
        };
        if mode == Mode::Pull {
            // Before it is stored: a crash after it still sends it (again).
            self.progress
                .reopen(batch)
                .await
                .map_err(|e| TakeError::Unavailable {
                    batch,
                    reason: e.to_string(),
                })?;
        }
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let shutdown = self.intake.shutdown();
        loop {
            let error = match self.intake.submit_own(nb.clone()).await {
                Ok(new) => return Ok(new),
                Err(CoordinatorError::Unavailable) => return Err(TakeError::Stopping),
                // Whatever the coordinator calls invalid (other content under a known number,
                // an input a backend refuses) is refused for good, not retried.
                Err(e) if e.is_invalid() => {
                    return Err(TakeError::Refused {
                        batch,
                        reason: e.to_string(),
                    });
                }
                Err(e) => e.to_string(),
            };
            if mode == Mode::Push {
                return Err(TakeError::Unavailable {
                    batch,
                    reason: error,
                });
            }
            tracing::warn!(batch, error = %error, "could not store the core's batch; retrying");
            self.record_error(format!("batch {batch} could not be stored: {error}"));
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = shutdown.begun() => return Err(TakeError::Stopping),
            }
        }
    }
}
