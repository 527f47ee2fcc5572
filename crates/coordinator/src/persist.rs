//! Group commit: many scheduler transitions, one transaction. Messages that depend on a
//! transition are released only after it is durable, in the order they were produced.

use crate::session::ToProver;
use proofmill_store::{Change, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Writes to make durable, then messages to send.
#[derive(Default)]
pub(crate) struct PersistJob {
    pub changes: Vec<Change>,
    pub sends: Vec<(mpsc::UnboundedSender<ToProver>, ToProver)>,
    /// Signalled once this job (and everything before it) is durable and sent.
    pub flushed: Option<oneshot::Sender<()>>,
}

/// Most jobs folded into one transaction; bounds transaction size under a burst.
const MAX_GROUP: usize = 4096;

pub(crate) fn spawn(store: Arc<dyn Store>) -> mpsc::UnboundedSender<PersistJob> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(store, rx));
    tx
}

async fn run(store: Arc<dyn Store>, mut rx: mpsc::UnboundedReceiver<PersistJob>) {
    let mut group: Vec<PersistJob> = Vec::new();
    let mut changes: Vec<Change> = Vec::new();
    while let Some(first) = rx.recv().await {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        for job in &mut group {
            changes.append(&mut job.changes);
        }
        if !changes.is_empty() {
            commit(store.as_ref(), &changes).await;
            changes.clear();
        }
        for job in group.drain(..) {
            for (tx, msg) in job.sends {
                // A closed session only means that prover is gone; its state is durable.
                let _ = tx.send(msg);
            }
            if let Some(done) = job.flushed {
                let _ = done.send(());
            }
        }
    }
}

/// Retries until the store takes the changes: dropping them would lose state, and sending
/// their messages first would let provers act on state the store does not have.
async fn commit(store: &dyn Store, changes: &[Change]) {
    let mut delay = Duration::from_millis(50);
    loop {
        match store.apply(changes).await {
            Ok(()) => return,
            Err(e) => {
                tracing::error!(error = %e, changes = changes.len(), "store write failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
