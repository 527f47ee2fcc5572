//! Batch numbers being taken in, and the end of the gap-free run of stored batches.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use tokio::sync::Notify;

/// What submissions share: the batch numbers being taken in right now (two submissions of
/// one number must not race: both would write the input blob under the same key; different
/// numbers go in parallel), and the end of the gap-free run the intake window counts from.
#[derive(Default)]
pub(crate) struct InFlight {
    numbers: Mutex<HashSet<u64>>,
    released: Notify,
    /// A stored batch that ends a gap-free run from the lowest one (0: none known), for the
    /// intake window; only grows.
    pub(super) run_end: AtomicU64,
    /// The source that numbers every batch here, when one does (see
    /// [`crate::Intake::reserve_numbering`]).
    pub(super) numbered_by: Mutex<Option<String>>,
}

impl InFlight {
    /// Waits until no other submission holds `number`, then holds it until the claim drops.
    pub(super) async fn claim(&self, number: u64) -> Claim<'_> {
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
    number: u64,
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
