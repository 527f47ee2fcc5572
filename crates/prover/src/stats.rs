//! The prover's counters, and the public view of them ([`ProverStatsHandle`]).

use crate::capacity::Capacity;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters every link to a coordinator adds to.
#[derive(Default)]
pub(crate) struct Counters {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub declined: AtomicU64,
    pub cancelled: AtomicU64,
    pub acked: AtomicU64,
    pub proofs_acked: AtomicU64,
    pub rejected: AtomicU64,
    pub connected: AtomicU64,
    pub connect_attempts: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        Counters::add(counter, 1);
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts a live registered stream in [`Counters::connected`] while it exists.
pub(crate) struct Connected(Arc<Counters>);

impl Connected {
    pub fn new(counters: Arc<Counters>) -> Self {
        counters.connected.fetch_add(1, Ordering::Relaxed);
        Connected(counters)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A point-in-time copy of a prover's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProverStats {
    /// Tasks proven successfully (counted when the proof is produced, not when acknowledged).
    pub tasks_completed: u64,
    /// Tasks that produced an error result (bad input, digest mismatch, backend error).
    pub tasks_failed: u64,
    /// Tasks answered with `TaskDeclined`.
    pub tasks_declined: u64,
    /// Tasks cancelled by a coordinator, or abandoned when it refused the prover's id.
    pub tasks_cancelled: u64,
    /// Results acknowledged as accepted / rejected by a coordinator.
    pub results_acked: u64,
    /// Of `results_acked`, those that carried a proof (not an error). Each (task, token)
    /// counts once, so across provers it is the number of proofs coordinators accepted.
    pub proofs_acked: u64,
    pub results_rejected: u64,
    /// Coordinators with a live, registered stream.
    pub connected_coordinators: u64,
    /// Stream attempts (initial connections and reconnects) across all coordinators.
    pub connect_attempts: u64,
    /// Slots in use and free right now.
    pub running_tasks: u32,
    pub free_slots: u32,
}

/// Cheap, cloneable view of a prover's counters; stays valid after `run` returns.
#[derive(Clone)]
pub struct ProverStatsHandle {
    counters: Arc<Counters>,
    capacity: Arc<Capacity>,
}

impl ProverStatsHandle {
    pub(crate) fn new(counters: Arc<Counters>, capacity: Arc<Capacity>) -> Self {
        ProverStatsHandle { counters, capacity }
    }

    pub fn snapshot(&self) -> ProverStats {
        let c = &self.counters;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let running = self.capacity.taken();
        ProverStats {
            tasks_completed: get(&c.completed),
            tasks_failed: get(&c.failed),
            tasks_declined: get(&c.declined),
            tasks_cancelled: get(&c.cancelled),
            results_acked: get(&c.acked),
            proofs_acked: get(&c.proofs_acked),
            results_rejected: get(&c.rejected),
            connected_coordinators: get(&c.connected),
            connect_attempts: get(&c.connect_attempts),
            running_tasks: running,
            free_slots: self.capacity.total().saturating_sub(running),
        }
    }

    pub fn tasks_completed(&self) -> u64 {
        self.snapshot().tasks_completed
    }
    pub fn tasks_failed(&self) -> u64 {
        self.snapshot().tasks_failed
    }
    pub fn tasks_declined(&self) -> u64 {
        self.snapshot().tasks_declined
    }
    pub fn connected_coordinators(&self) -> u64 {
        self.snapshot().connected_coordinators
    }
}

impl std::fmt::Debug for ProverStatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}
