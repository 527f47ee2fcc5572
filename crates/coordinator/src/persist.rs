//! Group commit: many scheduler transitions, one transaction. Messages that depend on a
//! transition are released only after it is durable, in the order they were produced.

use crate::events::EventBus;
use crate::outbox::{Outbox, ToProver};
use proofmill_proto::v1::ErrorCode;
use proofmill_store::{Change, Store, StoreError};
use proofmill_telemetry::names;
use proofmill_types::{FencingToken, JobKey};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};

/// Writes to make durable, then messages to send.
#[derive(Default)]
pub(crate) struct PersistJob {
    pub changes: Vec<Change>,
    pub sends: Vec<(Outbox, ToProver)>,
    /// Signalled once this job (and everything before it) is durable and sent.
    pub flushed: Vec<oneshot::Sender<()>>,
    /// Tasks already sent whose leases are among `changes`.
    pub early_dispatches: usize,
    /// Results of jobs not open in the scheduler, answered from the store once this job is
    /// durable (reads the core does not do: it does no I/O).
    pub not_open: Vec<NotOpenResult>,
}

impl PersistJob {
    /// Appends `later` to this job; its messages still follow every change before them.
    pub fn append(&mut self, mut later: PersistJob) {
        self.changes.append(&mut later.changes);
        self.sends.append(&mut later.sends);
        self.flushed.append(&mut later.flushed);
        self.early_dispatches += later.early_dispatches;
        self.not_open.append(&mut later.not_open);
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
            && self.sends.is_empty()
            && self.flushed.is_empty()
            && self.not_open.is_empty()
    }
}

/// The core's handle on the persister.
pub(crate) struct Persister {
    pub tx: mpsc::UnboundedSender<PersistJob>,
    /// Early dispatches not yet committed: raised by the core, lowered here after commit.
    pub unconfirmed: Arc<AtomicUsize>,
}

/// Most jobs folded into one transaction; bounds transaction size under a burst.
const MAX_GROUP: usize = 4096;

/// Starts the persister. When a commit is fenced (another coordinator took over the store),
/// it says why on `fenced` and stops: the messages of that group and every later one are
/// never sent, since their changes will never be durable.
pub(crate) fn spawn(
    store: Arc<dyn Store>,
    fenced: Arc<watch::Sender<Option<String>>>,
    events: EventBus,
) -> Persister {
    // Unbounded on purpose: the core never waits (it owns the scheduler and must keep
    // answering), and what it hands over is bounded elsewhere: one job per core wakeup,
    // holding the changes of at most BURST messages; dispatch stops at
    // `max_uncommitted_dispatches` tasks ahead of their commit; and results, the other source
    // of changes, come only from tasks out, at most the provers' capacity.
    let (tx, rx) = mpsc::unbounded_channel();
    let unconfirmed = Arc::new(AtomicUsize::new(0));
    tokio::spawn(run(store, rx, unconfirmed.clone(), fenced, events));
    Persister { tx, unconfirmed }
}

async fn run(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<PersistJob>,
    unconfirmed: Arc<AtomicUsize>,
    fenced: Arc<watch::Sender<Option<String>>>,
    events: EventBus,
) {
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
            let started = std::time::Instant::now();
            let committed = commit(store.as_ref(), &changes).await;
            metrics::histogram!(names::STORE_COMMIT_SECONDS)
                .record(started.elapsed().as_secs_f64());
            if let Err(e) = committed {
                tracing::error!(error = %e, changes = changes.len(), "write fenced: another coordinator is active on this store; this one stops writing");
                fenced.send_replace(Some(e.to_string()));
                return;
            }
            events.publish_changes(&changes);
            changes.clear();
        }
        let early: usize = group.iter().map(|j| j.early_dispatches).sum();
        unconfirmed.fetch_sub(early, Ordering::SeqCst);
        for job in group.drain(..) {
            for (tx, msg) in job.sends {
                // A closed session only means that prover is gone; its state is durable.
                tx.send(msg);
            }
            for done in job.flushed {
                let _ = done.send(());
            }
            for r in job.not_open {
                // Off this task: a read must not hold up the next commit.
                let store = store.clone();
                tokio::spawn(async move { answer_not_open(store.as_ref(), r).await });
            }
        }
    }
}

/// Retries until the store takes the changes: dropping them would lose state, and sending
/// their messages first would let provers act on state the store does not have. A change no
/// retry can store (inputs are checked before they get here, so this is a bug) must not hold
/// up every write after it: the others are committed one by one and the culprit is dropped,
/// loudly.
/// Fails only when fenced ([`StoreError::Fenced`]).
async fn commit(store: &dyn Store, changes: &[Change]) -> Result<(), StoreError> {
    let e = match apply_retrying(store, changes).await {
        Ok(()) => return Ok(()),
        Err(e @ StoreError::Fenced { .. }) => return Err(e),
        Err(e) => e,
    };
    tracing::error!(error = %e, changes = changes.len(), "a change cannot be stored; committing the others one by one");
    for change in changes {
        if let Err(e) = apply_retrying(store, std::slice::from_ref(change)).await {
            if matches!(e, StoreError::Fenced { .. }) {
                return Err(e);
            }
            let key = match change {
                Change::Job(j) => j.key.to_string(),
                Change::Proof(p) => p.key.to_string(),
                Change::DeleteProof(k) => k.to_string(),
                Change::Cordon { prover, .. } => format!("cordon of {prover}"),
                Change::Control { component, .. } => format!("pause of {component}"),
                Change::PendingVerify { first_batch, .. }
                | Change::Verified {
                    record: proofmill_store::VerifyRecord { first_batch, .. },
                    ..
                } => format!("settlement from batch {first_batch}"),
                Change::ClearPendingVerify => "pending settlement".into(),
                Change::AttemptStarted(a) => format!("attempt {} of {}", a.token, a.key),
                Change::AttemptEnded { token, .. } => format!("end of attempt {token}"),
            };
            tracing::error!(error = %e, %key, "change dropped: the store cannot hold it");
        }
    }
    Ok(())
}

/// Longest pause between two attempts: once the store is back, the next commit goes out
/// within this.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Failed attempts between two log lines of one outage (the first is always logged).
const LOG_EVERY: u32 = 10;

/// Applies the changes, retrying with backoff on any error but [`StoreError::Unstorable`]
/// and [`StoreError::Fenced`].
/// A failure is logged at once with the store's endpoint and, when it cannot be reached,
/// the cause its probe finds; then every [`LOG_EVERY`] attempts, and the recovery.
async fn apply_retrying(store: &dyn Store, changes: &[Change]) -> Result<(), StoreError> {
    let mut delay = Duration::from_millis(50);
    let mut failed = 0u32;
    let started = std::time::Instant::now();
    loop {
        match store.apply(changes).await {
            Ok(()) => {
                if failed > 0 {
                    tracing::warn!(
                        store = %store.endpoint(),
                        attempts = failed + 1,
                        after_ms = started.elapsed().as_millis() as u64,
                        "store write succeeded again"
                    );
                }
                return Ok(());
            }
            Err(e @ (StoreError::Unstorable(_) | StoreError::Fenced { .. })) => return Err(e),
            Err(e) => {
                metrics::counter!(names::STORE_COMMIT_ERRORS_TOTAL).increment(1);
                if failed.is_multiple_of(LOG_EVERY) {
                    let cause = match &e {
                        StoreError::Unavailable(_) => match store.probe().await {
                            Err(p) => p.to_string(),
                            Ok(()) => "it answers a probe now".into(),
                        },
                        _ => String::new(),
                    };
                    tracing::error!(
                        store = %store.endpoint(),
                        error = %e,
                        cause = %cause,
                        changes = changes.len(),
                        attempts = failed + 1,
                        "store write failed; retrying"
                    );
                }
                failed = failed.saturating_add(1);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(MAX_RETRY_DELAY);
            }
        }
    }
}

/// A result for a job not open here, answered by [`answer_not_open`].
pub(crate) struct NotOpenResult {
    pub key: JobKey,
    pub token: FencingToken,
    pub reply_to: Outbox,
}

/// Answers a result for a job not open here, from the store, once every write queued before
/// it is durable: a duplicate of the accepted result (acknowledged again, so the prover stops
/// resending), a stale one, or one of an unknown job.
pub(crate) async fn answer_not_open(store: &dyn Store, r: NotOpenResult) {
    let NotOpenResult {
        key,
        token,
        reply_to,
    } = r;
    let ack = |accepted: bool, code: ErrorCode, reason: String| {
        ToProver::Msg(crate::messages::job_result_ack(
            &key, token, accepted, code, &reason,
        ))
    };
    let msg = match store.proof(&key).await {
        Ok(Some(p)) if p.token == token => ack(
            true,
            ErrorCode::Unspecified,
            "duplicate of an accepted result".into(),
        ),
        Ok(Some(p)) => ack(
            false,
            ErrorCode::StaleFencingToken,
            format!("{key} was proven with token {}", p.token),
        ),
        Ok(None) => match store.job(&key).await {
            Ok(Some(j)) => ack(
                false,
                ErrorCode::StaleFencingToken,
                format!("{key} is {}", j.state),
            ),
            Ok(None) => ack(false, ErrorCode::JobNotFound, format!("no job {key}")),
            Err(e) => ack(false, ErrorCode::SystemUnavailable, e.to_string()),
        },
        Err(e) => ack(false, ErrorCode::SystemUnavailable, e.to_string()),
    };
    reply_to.send(msg);
}
