//! Batches being taken in, and the end of the gap-free run of stored batches per chain.

use proofmill_types::{BatchId, ChainId};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// What submissions share: the batches being taken in right now (two submissions of one
/// batch must not race: both would write the input blob under the same key; different
/// batches go in parallel), and per chain the end of the gap-free run the intake window
/// counts from.
#[derive(Default)]
pub(crate) struct InFlight {
    numbers: Mutex<HashSet<BatchId>>,
    released: Notify,
    /// Per chain, a stored batch that ends a gap-free run from the lowest one (0: none
    /// known), for the intake window; only grows. One entry per chain taken here.
    run_ends: Mutex<BTreeMap<ChainId, Arc<AtomicU64>>>,
    /// The source that numbers every batch here, when one does (see
    /// [`crate::Intake::reserve_numbering`]).
    pub(super) numbered_by: Mutex<Option<String>>,
}

impl InFlight {
    /// The end of `chain`'s gap-free run, as last seen.
    pub(super) fn run_end(&self, chain: ChainId) -> Arc<AtomicU64> {
        let mut ends = self.run_ends.lock().expect("intake lock");
        ends.entry(chain).or_default().clone()
    }

    /// Waits until no other submission holds `number`, then holds it until the claim drops.
    pub(super) async fn claim(&self, number: BatchId) -> Claim<'_> {
        loop {
            // Registered before the check, so a release between the two is not missed.
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            if self.numbers.lock().expect("intake lock").insert(number) {
                return Claim { set: self, number };
            }
            released.await;
        }
    }
}

pub(super) struct Claim<'a> {
    set: &'a InFlight,
    number: BatchId,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set
            .numbers
            .lock()
            .expect("intake lock")
            .remove(&self.number);
        self.set.released.notify_waiters();
    }
}
