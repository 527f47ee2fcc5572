//! What the parts of a running coordinator share, and its core's mailbox.

use crate::config::CoordinatorConfig;
use crate::core::{BatchCache, CoreMsg};
use crate::error::CoordinatorError;
use crate::identity::ProverKeys;
use crate::inputs::InputCache;
use proofmill_backend::Backend;
use proofmill_store::{Blobs, Store};
use proofmill_types::ProofType;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};

/// Last on-chain values seen by settlement (for `status`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct L1Seen {
    pub last_committed_batch: Option<u64>,
    pub last_verified_batch: Option<u64>,
    /// Why the last settlement round did not settle what it tried to (cleared on success).
    pub last_error: Option<String>,
}

/// State every part of the service reads.
pub(crate) struct Shared {
    pub config: CoordinatorConfig,
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    pub inputs: Arc<InputCache>,
    pub batches: BatchCache,
    pub verifiers: HashMap<ProofType, Arc<dyn Backend>>,
    /// Every verifier is cheap ([`Backend::verify_is_cheap`]): small results may be handled
    /// on the session's own task.
    pub verify_inline: bool,
    pub core: mpsc::Sender<CoreMsg>,
    /// Issues prover ids and checks the secrets of reconnecting provers.
    pub prover_keys: Arc<ProverKeys>,
    /// Given once by [`Coordinator::drain`]; every task stops on it.
    pub shutdown: crate::shutdown::Shutdown,
    /// Batch numbers being taken in (two submissions of one number must not race).
    pub intake: crate::intake::claims::InFlight,
    /// Dispatch latencies in microseconds, when `record_dispatch_latency` is on.
    pub dispatch_latency_us: Arc<std::sync::Mutex<Vec<u32>>>,
    /// Prover streams open, and those not registered yet (a closed one ends at once).
    pub slots: crate::limits::StreamSlots,
    /// Bytes of proofs in flight, across every stream.
    pub proof_budget: crate::limits::ProofBudget,
    /// Replies queued for provers and not yet written, across every stream.
    pub replies_queued: Arc<AtomicUsize>,
    /// What settlement last saw on L1; `None` until it reports (or when it is off).
    pub l1_seen: RwLock<Option<L1Seen>>,
    /// The last status read from the store, answered when the store does not answer.
    pub last_status: crate::status::view::LastStatus,
    /// The store's coordinator lease this coordinator holds, once attached.
    pub lease: std::sync::OnceLock<HeldLease>,
    /// Set (with why) when a write was fenced: another coordinator took over the store.
    pub fenced: tokio::sync::watch::Sender<Option<String>>,
}

/// The lease a coordinator holds and where it is reached (see [`crate::leadership`]).
pub(crate) struct HeldLease {
    pub url: String,
    pub epoch: u64,
    pub check: crate::leadership::LeaseCheck,
}

impl Shared {
    pub fn draining(&self) -> bool {
        self.shutdown.is_begun()
    }

    /// Whether this coordinator surely holds the store's lease (always, when none was
    /// attached: a coordinator alone on its store by design). Work outside the store that
    /// two coordinators must not both do (L1 transactions) is done only then.
    pub fn holds_lease(&self) -> bool {
        self.fenced.borrow().is_none() && self.lease.get().is_none_or(|l| l.check.is_held())
    }

    /// Why this coordinator is no longer active, once it knows (a write was fenced, its
    /// lease was found taken), or may not be (its lease overdue: it did not run for a while).
    pub fn deposed(&self) -> Option<String> {
        let fenced = self.fenced.borrow().clone();
        fenced.or_else(|| {
            let check = &self.lease.get()?.check;
            check.lost().or_else(|| {
                check.overdue().then(|| {
                    "its lease was not renewed in time (the process was paused?); \
                     another coordinator may hold it"
                        .to_string()
                })
            })
        })
    }

    /// What the writers of prover streams use.
    pub fn sending(&self) -> crate::outbox::Sending {
        crate::outbox::Sending {
            inputs: self.inputs.clone(),
            blobs: self.blobs.clone(),
            core: self.core.clone(),
            heartbeat: std::time::Duration::from_millis(
                self.config.scheduler.heartbeat_interval_ms,
            ),
            replies_queued: self.replies_queued.clone(),
        }
    }

    pub async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> CoreMsg,
    ) -> Result<T, CoordinatorError> {
        let (tx, rx) = oneshot::channel();
        self.core
            .send(make(tx))
            .await
            .map_err(|_| CoordinatorError::Unavailable)?;
        rx.await.map_err(|_| CoordinatorError::Unavailable)
    }
}
