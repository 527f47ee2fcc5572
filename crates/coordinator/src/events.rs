//! What happened, for watchers (`AdminService.Watch`, `proofmill watch`, a monitor): job and
//! attempt changes and cordons once the store holds them, provers coming and going, batches
//! taken in, and what settlement saw on L1.
//!
//! One bounded broadcast. A watcher that falls behind loses the oldest events and is told how
//! many it missed (it then reads status again), so no watcher makes the coordinator hold more
//! than the buffer; watchers beyond a fixed number are refused. With nobody watching, nothing
//! is built.

use proofmill_store::Change;
use proofmill_types::{
    AttemptOutcome, BatchNumber, FencingToken, JobKey, JobState, Millis, ProofType, ProverId,
};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, broadcast};

/// One thing that happened.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A job row as the store now holds it.
    Job {
        key: JobKey,
        state: JobState,
        /// The prover holding its lease.
        prover: Option<ProverId>,
        failed_attempts: u32,
        last_error: Option<String>,
    },
    /// A lease or a backup copy went out.
    AttemptStarted {
        key: JobKey,
        token: FencingToken,
        prover: ProverId,
        prover_name: String,
        backup: bool,
    },
    /// The attempt with `token` ended.
    AttemptEnded {
        token: FencingToken,
        outcome: AttemptOutcome,
        detail: String,
        prove_ms: Option<u64>,
    },
    Cordon {
        prover: ProverId,
        on: bool,
        reason: String,
    },
    ProverConnected {
        prover: ProverId,
        name: String,
        proof_types: Vec<ProofType>,
        capacity: u32,
    },
    ProverDisconnected {
        prover: ProverId,
        name: String,
    },
    /// Batches `first..=last` of `chain` were taken in (stored, their jobs queued).
    BatchesTaken {
        chain: proofmill_types::ChainId,
        first: BatchNumber,
        last: BatchNumber,
    },
    /// An operator paused (or resumed) a component.
    Paused {
        component: String,
        paused: bool,
        reason: String,
    },
    /// What settlement last saw on L1 changed.
    Chain {
        last_committed_batch: Option<BatchNumber>,
        last_verified_batch: Option<BatchNumber>,
        /// Why the last settlement round did not settle what it tried to.
        error: Option<String>,
    },
}

/// An event and when the coordinator saw it.
#[derive(Clone, Debug)]
pub struct Stamped {
    pub at: Millis,
    pub event: Event,
}

/// Events buffered for the slowest watcher before it starts losing them.
pub(crate) const BUFFER: usize = 4096;
/// Watchers at once; more are refused (each holds a stream and a place in the buffer).
pub(crate) const MAX_WATCHERS: usize = 64;

/// Where events are published and watched. Cheap to clone.
#[derive(Clone)]
pub(crate) struct EventBus {
    tx: broadcast::Sender<Arc<Stamped>>,
    watchers: Arc<Semaphore>,
    max_watchers: usize,
}

impl EventBus {
    pub(crate) fn new(buffer: usize, max_watchers: usize) -> Self {
        EventBus {
            tx: broadcast::channel(buffer.max(1)).0,
            watchers: Arc::new(Semaphore::new(max_watchers)),
            max_watchers,
        }
    }

    fn watched(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    pub(crate) fn publish(&self, event: Event) {
        if self.watched() {
            let _ = self.tx.send(Arc::new(Stamped {
                at: crate::now_ms(),
                event,
            }));
        }
    }

    /// Publishes what watchers are told of `changes`, which the store now holds.
    pub(crate) fn publish_changes(&self, changes: &[Change]) {
        if !self.watched() {
            return;
        }
        for change in changes {
            if let Some(event) = of_change(change) {
                self.publish(event);
            }
        }
    }

    /// A new watcher, seeing events from now on; `None` while `max_watchers` watch.
    pub(crate) fn watch(&self) -> Option<Watcher> {
        let permit = self.watchers.clone().try_acquire_owned().ok()?;
        Some(Watcher {
            rx: self.tx.subscribe(),
            _permit: permit,
        })
    }

    pub(crate) fn max_watchers(&self) -> usize {
        self.max_watchers
    }
}

/// What a watcher receives next.
#[derive(Debug)]
pub(crate) enum Next {
    Event(Arc<Stamped>),
    /// This many events were lost: the watcher fell behind by more than the buffer.
    Missed(u64),
}

/// One watcher's place in the stream.
pub(crate) struct Watcher {
    rx: broadcast::Receiver<Arc<Stamped>>,
    _permit: OwnedSemaphorePermit,
}

impl Watcher {
    /// The next event; `None` once the coordinator is gone.
    pub(crate) async fn next(&mut self) -> Option<Next> {
        match self.rx.recv().await {
            Ok(e) => Some(Next::Event(e)),
            Err(broadcast::error::RecvError::Lagged(n)) => Some(Next::Missed(n)),
            Err(broadcast::error::RecvError::Closed) => None,
        }
    }
}

fn of_change(change: &Change) -> Option<Event> {
    Some(match change {
        Change::Job(job) => Event::Job {
            key: job.key.clone(),
            state: job.state,
            prover: job.lease.as_ref().map(|l| l.prover.clone()),
            failed_attempts: job.failed_attempts,
            last_error: job.last_error.clone(),
        },
        Change::AttemptStarted(a) => Event::AttemptStarted {
            key: a.key.clone(),
            token: a.token,
            prover: a.prover.clone(),
            prover_name: a.prover_name.clone(),
            backup: a.backup,
        },
        Change::AttemptEnded {
            token,
            outcome,
            detail,
            prove_ms,
            ..
        } => Event::AttemptEnded {
            token: *token,
            outcome: *outcome,
            detail: detail.clone(),
            prove_ms: *prove_ms,
        },
        Change::Cordon {
            prover, on, reason, ..
        } => Event::Cordon {
            prover: prover.clone(),
            on: *on,
            reason: reason.clone(),
        },
        Change::Control {
            component,
            paused,
            reason,
            ..
        } => Event::Paused {
            component: component.clone(),
            paused: *paused,
            reason: reason.clone(),
        },
        // Proofs follow from their job's state; settlement marks are told as `Chain`.
        Change::Proof(_)
        | Change::DeleteProof(_)
        | Change::PendingVerify { .. }
        | Change::ClearPendingVerify
        | Change::Verified { .. } => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken(n: u64) -> Event {
        Event::BatchesTaken {
            chain: proofmill_types::DEFAULT_CHAIN,
            first: n,
            last: n,
        }
    }

    #[tokio::test]
    async fn nothing_is_built_with_nobody_watching() {
        let bus = EventBus::new(4, 2);
        bus.publish(taken(1));
        let mut w = bus.watch().unwrap();
        bus.publish(taken(2));
        match w.next().await {
            Some(Next::Event(e)) => assert_eq!(e.event, taken(2)),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_slow_watcher_is_told_what_it_missed_and_goes_on() {
        let bus = EventBus::new(4, 2);
        let mut w = bus.watch().unwrap();
        for n in 1..=10 {
            bus.publish(taken(n));
        }
        // The buffer holds the newest 4 (7..=10): 6 were lost.
        assert!(matches!(w.next().await, Some(Next::Missed(6))));
        for n in 7..=10 {
            match w.next().await {
                Some(Next::Event(e)) => assert_eq!(e.event, taken(n)),
                other => panic!("{other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn watchers_beyond_the_limit_are_refused_until_one_stops() {
        let bus = EventBus::new(4, 2);
        let a = bus.watch().unwrap();
        let _b = bus.watch().unwrap();
        assert!(bus.watch().is_none(), "a third watcher is refused");
        drop(a);
        bus.watch().expect("a place is free again");
    }
}
