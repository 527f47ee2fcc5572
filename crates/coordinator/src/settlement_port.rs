//! The coordinator's side of L1 settlement, which is a component of its own
//! (`proofmill-settlement`) that a deployment may leave out: what settlement may read, the one
//! change it may ask of the core (a proof L1 rejected), and where it reports what it saw on
//! L1 for `status`. Settlement writes only its own records; job rows and the batch cache stay
//! the core's.

use crate::core::CoreHandle;
use crate::error::CoordinatorError;
use crate::events::{Event, EventBus};
use crate::pauses::{Component, Pause, PauseWatch, Pauses};
use crate::settlement_steps::{CommitNow, SettleNow, SettlementSteps};
use crate::shutdown::Shutdown;
use crate::standing::Standing;
use crate::status::view::{L1Seen, SeenOnL1};
use proofmill_store::{Blobs, Store};
use proofmill_types::{JobKey, ProofType};
use std::sync::Arc;

/// What settlement gets of a coordinator (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct SettlementPort {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) blobs: Blobs,
    pub(crate) required: Vec<ProofType>,
    pub(crate) standing: Standing,
    pub(crate) l1: SeenOnL1,
    pub(crate) core: CoreHandle,
    pub(crate) events: EventBus,
    pub(crate) pauses: Pauses,
    pub(crate) steps: SettlementSteps,
    /// The chain settled: the coordinator's own.
    pub(crate) chain_id: proofmill_types::ChainId,
}

impl SettlementPort {
    /// The chain whose batches settlement settles ([`crate::CoordinatorConfig::chain_id`]).
    pub fn chain_id(&self) -> proofmill_types::ChainId {
        self.chain_id
    }

    /// For reads, and for settlement's own records.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Where proofs too large for their row are kept.
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// Proof types every batch needs.
    pub fn required_types(&self) -> Vec<ProofType> {
        self.required.clone()
    }

    /// Whether this coordinator surely holds the store's lease: L1 transactions go out only
    /// then, or two coordinators could both settle.
    pub fn holds_lease(&self) -> bool {
        self.standing.holds_lease()
    }

    /// The coordinator's shutdown signal: settlement stops once it is given.
    pub fn shutdown(&self) -> Shutdown {
        self.standing.shutdown()
    }

    /// Whether (and why) an operator paused `c` (settlement reads [`Component::Sender`] and
    /// [`Component::Committer`]): a paused loop sends no L1 transaction by itself.
    pub fn paused(&self, c: Component) -> Option<Pause> {
        self.pauses.get(c)
    }

    /// Every pause and resume from now on, so a loop acts at once on a resume.
    pub fn pause_watch(&self) -> PauseWatch {
        self.pauses.watch()
    }

    /// The proof sender's end of `settle now` (see [`crate::SettleNow`]); call once, when it
    /// starts.
    pub fn settle_requests(&self) -> tokio::sync::mpsc::Receiver<SettleNow> {
        self.steps.settle_requests()
    }

    /// The committer's end of `commit now` (see [`crate::CommitNow`]); call once, when it
    /// starts.
    pub fn commit_requests(&self) -> tokio::sync::mpsc::Receiver<CommitNow> {
        self.steps.commit_requests()
    }

    /// Updates what `status` shows of L1; `status` shows L1 figures once this was called.
    /// Watchers are told when it changes.
    pub fn report(&self, f: impl FnOnce(&mut L1Seen)) {
        let before = self.l1.get();
        self.l1.update(f);
        let now = self.l1.get();
        if let Some(seen) = now.filter(|now| before.as_ref() != Some(now)) {
            self.events.publish(Event::Chain {
                last_committed_batch: seen.last_committed_batch,
                last_verified_batch: seen.last_verified_batch,
                error: seen.last_error,
            });
        }
    }

    /// L1 rejected the proof of `key` as invalid: the core deletes it, marks the job failed
    /// with `reason` and queues it again, in one durable step. Returns once that is durable;
    /// `Ok(false)` if there is no such job or batch.
    pub async fn reject_proof(
        &self,
        key: JobKey,
        reason: String,
    ) -> Result<bool, CoordinatorError> {
        let store = &self.store;
        let (Some(job), Some(batch)) = (
            store.job(&key).await?,
            store.batch(key.chain, key.batch).await?,
        ) else {
            return Ok(false);
        };
        self.core
            .proof_rejected(job, Arc::new(batch), reason)
            .await?;
        Ok(true)
    }
}
