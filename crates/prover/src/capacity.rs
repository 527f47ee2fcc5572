//! The prover's proving capacity, one pool for all its coordinators: a task takes a slot
//! for as long as it is collected and proven, and every coordinator is told how many are
//! free (`Availability`).

use std::sync::Arc;
use tokio::sync::watch;

pub(crate) struct Capacity {
    total: u32,
    /// Slots taken. Receivers are notified on every change.
    taken: watch::Sender<u32>,
}

/// One slot of the prover's capacity, given back when dropped.
pub(crate) struct ProvingSlot(Arc<Capacity>);

impl Capacity {
    pub fn new(total: u32) -> Arc<Self> {
        Arc::new(Capacity {
            total,
            taken: watch::channel(0).0,
        })
    }

    pub fn total(&self) -> u32 {
        self.total
    }

    /// Takes a slot if one is free.
    pub fn try_take(self: &Arc<Self>) -> Option<ProvingSlot> {
        let total = self.total;
        let taken = self.taken.send_if_modified(|n| {
            let free = *n < total;
            if free {
                *n += 1;
            }
            free
        });
        taken.then(|| ProvingSlot(self.clone()))
    }

    pub fn taken(&self) -> u32 {
        *self.taken.borrow()
    }

    pub fn free(&self) -> u32 {
        self.total.saturating_sub(self.taken())
    }

    /// Notified whenever a slot is taken or given back.
    pub fn subscribe(&self) -> watch::Receiver<u32> {
        self.taken.subscribe()
    }
}

impl Drop for ProvingSlot {
    fn drop(&mut self) {
        self.0.taken.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_run_out_at_the_total_and_come_back_when_dropped() {
        let capacity = Capacity::new(2);
        let mut changes = capacity.subscribe();
        let a = capacity.try_take().expect("first slot");
        let b = capacity.try_take().expect("second slot");
        assert!(capacity.try_take().is_none(), "no third slot");
        assert_eq!((capacity.taken(), capacity.free()), (2, 0));
        assert!(changes.has_changed().unwrap());
        changes.borrow_and_update();
        drop(a);
        assert!(
            changes.has_changed().unwrap(),
            "a slot given back is announced"
        );
        assert_eq!(capacity.free(), 1);
        let _c = capacity.try_take().expect("the slot given back");
        drop(b);
        assert_eq!(capacity.free(), 1);
    }
}
