//! One-off settlement steps an operator asks for, handed to the running settlement loops:
//! settle now (a proof sender round, whatever its interval) and commit now (commit a given
//! batch). Settlement takes the requests through its [`crate::SettlementPort`]; when it does
//! not run here (no L1), a step is refused saying so.

use crate::error::CoordinatorError;
use crate::pauses::{Component, Pauses};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot};

/// Requests waiting for a loop at most; more wait for room.
const QUEUED: usize = 4;

/// Asks the proof sender for one round now.
pub struct SettleNow {
    pub reply: oneshot::Sender<Result<Settled, CoordinatorError>>,
}

/// What a round settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    /// Batches this round verified on L1 (0: nothing was ready).
    pub batches: u64,
    /// The rollup's `lastVerifiedBatch` after the round.
    pub last_verified_batch: u64,
}

/// Asks the committer to commit `batch` (and the batches before it that are not committed:
/// L1 takes them in order) now.
pub struct CommitNow {
    pub batch: u64,
    pub reply: oneshot::Sender<Result<Committed, CoordinatorError>>,
}

/// The batches committed, `first_batch..=last_batch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committed {
    pub first_batch: u64,
    pub last_batch: u64,
}

/// Where steps are handed to the loops (see the module doc). Cheap to clone.
#[derive(Clone, Default)]
pub(crate) struct SettlementSteps {
    settle: Arc<Mutex<Option<mpsc::Sender<SettleNow>>>>,
    commit: Arc<Mutex<Option<mpsc::Sender<CommitNow>>>>,
}

fn open<T>(slot: &Mutex<Option<mpsc::Sender<T>>>) -> mpsc::Receiver<T> {
    let (tx, rx) = mpsc::channel(QUEUED);
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
    rx
}

fn sender<T>(slot: &Mutex<Option<mpsc::Sender<T>>>) -> Option<mpsc::Sender<T>> {
    slot.lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .filter(|tx| !tx.is_closed())
}

impl SettlementSteps {
    /// The proof sender's end: settle-now requests from now on (an earlier receiver gets
    /// none more).
    pub fn settle_requests(&self) -> mpsc::Receiver<SettleNow> {
        open(&self.settle)
    }

    /// The committer's end, as [`Self::settle_requests`].
    pub fn commit_requests(&self) -> mpsc::Receiver<CommitNow> {
        open(&self.commit)
    }

    /// One proof sender round now; its outcome. Refused while the sender is paused.
    pub async fn settle_now(&self, pauses: &Pauses) -> Result<Settled, CoordinatorError> {
        if let Some(p) = pauses.get(Component::Sender) {
            return Err(CoordinatorError::FailedPrecondition(format!(
                "the proof sender is paused{} since {} (Unix ms): `proofmill resume \
                 --component sender` first",
                if p.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", p.reason)
                },
                p.since
            )));
        }
        let tx = sender(&self.settle).ok_or_else(|| {
            CoordinatorError::FailedPrecondition(
                "L1 settlement is not running on this coordinator (no L1, or its proof sender \
                 has stopped)"
                    .into(),
            )
        })?;
        let (reply, answer) = oneshot::channel();
        tx.send(SettleNow { reply })
            .await
            .map_err(|_| CoordinatorError::Unavailable)?;
        answer.await.map_err(|_| CoordinatorError::Unavailable)?
    }

    /// Commits `batch` now; the range committed.
    pub async fn commit_now(&self, batch: u64) -> Result<Committed, CoordinatorError> {
        let tx = sender(&self.commit).ok_or_else(|| {
            CoordinatorError::FailedPrecondition(
                "this coordinator does not commit batches to L1 (no L1, or its batches are \
                 committed by the rollup's sequencer: only the devnet's are committed here)"
                    .into(),
            )
        })?;
        let (reply, answer) = oneshot::channel();
        tx.send(CommitNow { batch, reply })
            .await
            .map_err(|_| CoordinatorError::Unavailable)?;
        answer.await.map_err(|_| CoordinatorError::Unavailable)?
    }
}
