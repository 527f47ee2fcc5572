//! What all clients together may hold of the coordinator: stream slots (all streams, and
//! those not registered yet) and one byte budget for proofs in flight. Each is taken
//! without waiting, and given back by dropping what taking it returned.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::Status;

/// What clients hold of a coordinator now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InFlight {
    /// Bytes of proofs received in chunks or waiting for their verification; at most
    /// `CoordinatorConfig::proof_memory_bytes`.
    pub proof_bytes: usize,
    /// Replies queued for provers that have not taken them yet.
    pub replies_queued: usize,
    /// Prover streams open, registered or not.
    pub streams: usize,
    /// Prover streams open that have not registered yet.
    pub unregistered_streams: usize,
}

/// Prover streams open now, and how many of them have not registered.
pub(crate) struct StreamSlots {
    open: Arc<AtomicUsize>,
    unregistered: Arc<AtomicUsize>,
    max_open: usize,
    max_unregistered: usize,
}

/// Takes one from `counter` if it stays within `max`.
fn take(counter: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| Slot(counter.clone()))
}

/// One slot, given back on drop.
pub(crate) struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl StreamSlots {
    pub fn new(max_open: usize, max_unregistered: usize) -> Self {
        StreamSlots {
            open: Default::default(),
            unregistered: Default::default(),
            max_open,
            max_unregistered,
        }
    }

    /// A slot for a new stream, and one among the unregistered (to drop once it registers).
    pub fn admit(&self) -> Result<(Slot, Slot), Status> {
        let open = take(&self.open, self.max_open).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "{} prover streams are open, the most this coordinator takes",
                self.max_open
            ))
        })?;
        let unregistered = take(&self.unregistered, self.max_unregistered).ok_or_else(|| {
            Status::resource_exhausted(format!(
                "{} prover streams are waiting to register, the most this coordinator takes",
                self.max_unregistered
            ))
        })?;
        Ok((open, unregistered))
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    pub fn unregistered(&self) -> usize {
        self.unregistered.load(Ordering::SeqCst)
    }
}

/// Bytes of proofs in flight across every stream: chunks received, and proofs waiting for
/// their verification. Cheap to clone; clones share the budget.
#[derive(Clone)]
pub(crate) struct ProofBudget {
    bytes: Arc<Semaphore>,
    total: usize,
}

impl ProofBudget {
    pub fn new(total: usize) -> Self {
        let total = total.min(Semaphore::MAX_PERMITS);
        ProofBudget {
            bytes: Arc::new(Semaphore::new(total)),
            total,
        }
    }

    /// `n` more bytes, or why not (the prover is told to offer the proof again later).
    pub fn take(&self, n: usize) -> Result<OwnedSemaphorePermit, String> {
        u32::try_from(n)
            .ok()
            .and_then(|n| self.bytes.clone().try_acquire_many_owned(n).ok())
            .ok_or_else(|| {
                format!(
                    "the coordinator's memory for proofs in flight ({} bytes) is full; offer it again later",
                    self.total
                )
            })
    }

    /// Bytes taken now.
    pub fn in_use(&self) -> usize {
        self.total - self.bytes.available_permits()
    }
}
