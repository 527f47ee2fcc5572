//! The prover gateway to a rollup's core API, as zkSync's and Via's cores expose it to their
//! provers (`docs/core-api.md` has the exact JSON).
//!
//! - **Pull** ([`pull`]): a fetcher asks the core for `proof_generation_data` and takes each
//!   batch in through the coordinator's [`Intake`]; a submitter sends proofs back with
//!   `submit_proof/{n}`, in batch order, and counts a batch sent only on the core's
//!   `"Success"` ([`progress`] keeps how far it got, durably).
//! - **Push** ([`push`]): the core posts batches to `submit_request_for_proofs` and polls
//!   `poll_generated_proofs`.
//!
//! Both take batches through one [`Gateway`], which checks the chain, decodes proofmill's
//! `witness_input_data` ([`wire::WitnessInput`]) and reads a batch's proofs back
//! ([`proofs`]). The gateway reserves the coordinator's batch numbering: the core numbers
//! the batches.

pub mod progress;
pub mod proofs;
pub mod pull;
pub mod push;
mod taking;

/// The core API's messages, client and backoff, shared with the rollup's side
/// (`proofmill-handoff`).
pub use proofmill_core_api::{ClientConfig, ClientError, CoreClient, backoff, client, wire};
pub use pull::{Pull, PullConfig};
pub use push::{PushConfig, PushServing};
pub use taking::TakeError;

use proofmill_coordinator::Intake;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// The name the gateway reserves the numbering with (shown in refusals of other sources).
pub const SOURCE: &str = "rollup core API";

/// What pull and push share: the coordinator's intake, the progress of proofs sent, and the
/// last error (for readiness). Cheap to share behind an `Arc`.
pub struct Gateway {
    intake: Intake,
    progress: progress::Progress,
    last_error: Mutex<Option<(u64, String)>>,
    /// Rung when a batch is taken in (the submitter may have been waiting for one).
    taken: Notify,
}

impl Gateway {
    /// Reserves the coordinator's numbering for the core and reads the progress of proofs
    /// sent (initialised, on a store the gateway never ran on, to the highest stored batch:
    /// batches from before are not the core's).
    pub async fn open(intake: Intake) -> Result<Arc<Gateway>, proofmill_store::StoreError> {
        intake.reserve_numbering(SOURCE);
        let progress = progress::Progress::open(intake.store().clone(), intake.chain_id()).await?;
        Ok(Arc::new(Gateway {
            intake,
            progress,
            last_error: Mutex::new(None),
            taken: Notify::new(),
        }))
    }

    /// The chain whose batches are taken.
    pub fn chain_id(&self) -> u64 {
        self.intake.chain_id()
    }

    /// The highest batch number such that every batch taken up to it was confirmed by the
    /// core (pull mode).
    pub async fn sent_through(&self) -> u64 {
        self.progress.get().await
    }

    /// The last error, with when it happened (Unix ms), until something succeeds.
    pub fn last_error(&self) -> Option<(u64, String)> {
        self.last_error.lock().expect("gateway lock").clone()
    }

    /// Keeps the error for readiness and the coordinator's status (a `source_error` warning).
    pub(crate) fn record_error(&self, error: String) {
        self.intake.report_source_error(Some(&error));
        *self.last_error.lock().expect("gateway lock") = Some((now_ms(), error));
    }

    pub(crate) fn clear_error(&self) {
        let mut last = self.last_error.lock().expect("gateway lock");
        if last.take().is_some() {
            self.intake.report_source_error(None);
        }
    }
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Counts a request to or from the core.
pub(crate) fn count_request(endpoint: &'static str, outcome: &'static str) {
    use proofmill_telemetry::names;
    metrics::counter!(names::GATEWAY_REQUESTS_TOTAL, names::ENDPOINT => endpoint, names::OUTCOME => outcome)
        .increment(1);
}
