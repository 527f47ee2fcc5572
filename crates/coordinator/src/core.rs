//! The core actor: sole owner of the scheduler. Everything that changes scheduling state is a
//! message to this task (sent through its [`CoreHandle`]), so the state machine needs no
//! locks and sees one ordered history. It never waits on I/O: store writes and the reads that
//! must follow them go to the persister, messages to the provers' outboxes.

mod figures;
mod mailbox;
mod market;
mod result;

pub(crate) use figures::count_rejected;

use mailbox::CoreMsg;
pub(crate) use mailbox::{CoreHandle, MAILBOX, Mailbox, mailbox};

use crate::identity::ProverKeys;
use crate::now_ms;
use crate::outbox::{Outbox, ToProver};
use crate::persist::{PersistJob, Persister};
use proofmill_scheduler::{Effect, ProverInfo, Scheduler};
use proofmill_store::Change;
use proofmill_telemetry::{names, secs};
use proofmill_types::{Attempt, Batch, BatchId, FencingToken, Job, JobKey, ProverId};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{mpsc, oneshot};

/// Messages handled per wakeup of the core task at most.
const BURST: usize = 256;

/// Batches with open jobs, shared read-only with sessions (to verify results and build tasks).
pub(crate) type BatchCache = Arc<RwLock<HashMap<BatchId, Arc<Batch>>>>;

pub(crate) struct Conn {
    pub id: u64,
    pub outbox: Outbox,
}

pub(crate) enum Hello {
    Register(ProverInfo),
    Reconnect {
        id: ProverId,
        info: ProverInfo,
        running: Vec<(JobKey, FencingToken)>,
    },
}

/// Queued jobs of one version and proof type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Backlog {
    pub version: String,
    pub proof_type: proofmill_types::ProofType,
    pub jobs: u64,
    pub first_batch: u64,
    pub last_batch: u64,
}

pub(crate) struct Core {
    scheduler: Scheduler,
    conns: HashMap<ProverId, Conn>,
    batches: BatchCache,
    /// Open jobs per batch, to drop a batch from the cache when it has none.
    open_per_batch: HashMap<BatchId, OpenBatch>,
    persist: mpsc::UnboundedSender<PersistJob>,
    /// What this wakeup produced for the persister, handed over in one piece when the wakeup
    /// ends: one channel send and one persister wakeup per burst instead of per message.
    pending: PersistJob,
    /// Tasks sent ahead of the commit of their lease, not yet committed (shared with the
    /// persister, which counts them down).
    unconfirmed: Arc<AtomicUsize>,
    /// Cap on `unconfirmed` (`CoordinatorConfig::max_uncommitted_dispatches`).
    max_unconfirmed: usize,
    prover_keys: Arc<ProverKeys>,
    /// Waiting for no connected prover to run a task ([`CoreMsg::WhenIdle`]).
    idle_waiters: Vec<oneshot::Sender<()>>,
    figures: figures::Figures,
}

/// A batch with open jobs.
struct OpenBatch {
    open: usize,
    /// Every job of the batch closed so far was proven, and none was retried: when the last
    /// one is proven, the batch went from sealed to proven in one go (a latency worth
    /// measuring; one with a failure in between measures the operator).
    clean: bool,
}

impl Default for OpenBatch {
    fn default() -> Self {
        OpenBatch {
            open: 0,
            clean: true,
        }
    }
}

impl Core {
    pub fn new(
        scheduler: Scheduler,
        batches: BatchCache,
        persist: Persister,
        max_unconfirmed: usize,
        prover_keys: Arc<ProverKeys>,
    ) -> Self {
        Core {
            scheduler,
            conns: HashMap::new(),
            batches,
            open_per_batch: HashMap::new(),
            persist: persist.tx,
            pending: PersistJob::default(),
            unconfirmed: persist.unconfirmed,
            max_unconfirmed,
            prover_keys,
            idle_waiters: Vec::new(),
            figures: figures::Figures::default(),
        }
    }

    /// Records prove times by prover name too (`--metrics-per-prover`).
    pub fn metrics_per_prover(mut self, on: bool) -> Self {
        self.figures.per_prover = on;
        self
    }

    /// Restores open jobs (with their leases) loaded from the store.
    pub fn restore(&mut self, batches: Vec<Arc<Batch>>, jobs: Vec<Job>) {
        let effects = self.add(batches, jobs);
        self.run_effects(effects, Vec::new(), Vec::new());
        self.hand_over();
    }

    /// Queues work for the persister; it leaves with the rest of this wakeup's work.
    fn persist(&mut self, job: PersistJob) {
        self.pending.append(job);
    }

    fn hand_over(&mut self) {
        if !self.pending.is_empty() {
            let job = std::mem::take(&mut self.pending);
            self.persist.send(job).ok();
        }
    }

    pub async fn run(mut self, Mailbox(mut rx): Mailbox) {
        let mut refresh = tokio::time::interval(figures::REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let wake = self.scheduler.next_wakeup();
            let sleep = match wake {
                Some(at) => {
                    tokio::time::Duration::from_millis(at.saturating_sub(now_ms()).min(60_000))
                }
                None => tokio::time::Duration::from_secs(60),
            };
            tokio::select! {
                msg = rx.recv() => match msg {
                    Some(msg) => {
                        self.handle(msg);
                        // Take what else is waiting before recomputing the next wakeup.
                        for _ in 0..BURST {
                            match rx.try_recv() {
                                Ok(msg) => self.handle(msg),
                                Err(_) => break,
                            }
                        }
                    }
                    None => return,
                },
                _ = tokio::time::sleep(sleep) => {
                    let effects = self.scheduler.tick(now_ms());
                    self.run_effects(effects, Vec::new(), Vec::new());
                }
                _ = refresh.tick() => self.refresh_gauges(),
            }
            self.hand_over();
            self.notify_idle();
        }
    }

    /// Answers [`CoreMsg::WhenIdle`] once no connected prover runs a task (counted only while
    /// someone waits: a drain).
    fn notify_idle(&mut self) {
        if self.idle_waiters.is_empty() {
            return;
        }
        let running: usize = self
            .scheduler
            .provers()
            .iter()
            .filter(|p| p.connected)
            .map(|p| p.running.len())
            .sum();
        if running == 0 {
            for w in self.idle_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn add(&mut self, batches: Vec<Arc<Batch>>, jobs: Vec<Job>) -> Vec<Effect> {
        {
            let mut cache = self.batches.write().expect("batch cache lock");
            // Inserted over an entry left from before a replacement of the batch's input.
            for b in batches {
                cache.insert(b.id(), b);
            }
        }
        for j in &jobs {
            if !j.state.is_terminal() {
                self.open_per_batch
                    .entry(j.key.batch_id())
                    .or_default()
                    .open += 1;
            }
        }
        // A batch restored with a job closed unproven was not proven in one go.
        for j in &jobs {
            if j.state.is_terminal()
                && j.state != proofmill_types::JobState::Proven
                && let Some(b) = self.open_per_batch.get_mut(&j.key.batch_id())
            {
                b.clean = false;
            }
        }
        self.scheduler.add_jobs(jobs, now_ms())
    }

    fn handle(&mut self, msg: CoreMsg) {
        let now = now_ms();
        match msg {
            CoreMsg::Connect {
                hello,
                conn,
                heartbeat_ms,
                max_message,
                reply,
            } => {
                let kind = match &hello {
                    Hello::Register(_) => "register",
                    Hello::Reconnect { .. } => "reconnect",
                };
                metrics::counter!(names::PROVER_CONNECTS_TOTAL, names::KIND => kind).increment(1);
                let (id, effects) = match hello {
                    Hello::Register(info) => {
                        let id = ProverKeys::new_id();
                        let effects = self
                            .scheduler
                            .register(id.clone(), info, now)
                            .unwrap_or_default();
                        (id, effects)
                    }
                    Hello::Reconnect { id, info, running } => {
                        let effects = self.scheduler.reconnect(id.clone(), info, &running, now);
                        (id, effects)
                    }
                };
                // The newest stream wins; an older one still open is closed (its session ends).
                if let Some(old) = self.conns.insert(
                    id.clone(),
                    Conn {
                        id: conn.id,
                        outbox: conn.outbox.clone(),
                    },
                ) {
                    old.outbox
                        .send(ToProver::Close(tonic::Status::aborted(format!(
                            "prover {id} is replaced by a newer stream"
                        ))));
                }
                let response = crate::messages::registered(
                    &id,
                    self.prover_keys.secret(&id),
                    heartbeat_ms,
                    max_message,
                );
                let _ = reply.send(id);
                // Nothing about it needs to be durable, and queued first it precedes the first
                // task (the outbox writes around nothing that is queued).
                conn.outbox.send(ToProver::Msg(response));
                self.run_effects(effects, Vec::new(), Vec::new());
            }
            CoreMsg::Disconnect { prover, conn_id } => {
                if self.conns.get(&prover).is_some_and(|c| c.id == conn_id) {
                    self.conns.remove(&prover);
                    self.scheduler.disconnect(&prover, now);
                }
            }
            CoreMsg::Heartbeat { prover, running } => {
                let effects = self.scheduler.heartbeat(&prover, &running, now);
                self.run_effects(effects, Vec::new(), Vec::new());
            }
            CoreMsg::Availability { prover, free } => {
                let effects = self.scheduler.availability(&prover, free, now);
                self.run_effects(effects, Vec::new(), Vec::new());
            }
            CoreMsg::Alive { prover } => self.scheduler.alive(&prover, now),
            CoreMsg::CheckResult {
                prover,
                key,
                token,
                reply,
            } => {
                let _ = reply.send(self.scheduler.check_result(&prover, &key, token));
            }
            CoreMsg::Result {
                prover,
                key,
                token,
                verdict,
                reply_to,
            } => {
                self.result(prover, key, token, verdict, reply_to, now);
            }
            CoreMsg::AddBatches { batches, jobs } => {
                let effects = self.add(batches, jobs);
                self.run_effects(effects, Vec::new(), Vec::new());
            }
            CoreMsg::Retry { job, batch, reply } => {
                self.retry(job, batch, Vec::new(), now);
                let _ = reply.send(());
            }
            CoreMsg::ProofRejected {
                mut job,
                batch,
                reason,
                reply,
                durable,
            } => {
                tracing::error!(job = %job.key, %reason, "deleting the proof and queueing the job again");
                job.last_error = Some(reason);
                let changes = vec![Change::DeleteProof(job.key.clone())];
                self.retry(job, batch, changes, now);
                self.persist(PersistJob {
                    flushed: vec![durable],
                    ..Default::default()
                });
                let _ = reply.send(());
            }
            CoreMsg::Provers { reply } => {
                let _ = reply.send(self.scheduler.provers());
            }
            CoreMsg::Cordon {
                prover,
                on,
                reply,
                durable,
            } => {
                let reason = "cordoned by an operator";
                let done = self
                    .scheduler
                    .cordon(&prover, on, reason, now)
                    .map(|effects| {
                        tracing::info!(%prover, cordoned = on, "prover cordon set by an operator");
                        self.persist(PersistJob {
                            changes: vec![Change::Cordon {
                                prover,
                                on,
                                at: now,
                                reason: reason.into(),
                            }],
                            flushed: vec![durable],
                            ..Default::default()
                        });
                        self.run_effects(effects, Vec::new(), Vec::new());
                    });
                let _ = reply.send(done);
            }
            CoreMsg::Drain {
                grace_ms,
                reason,
                reply,
            } => {
                self.scheduler.drain();
                let sends = self
                    .conns
                    .values()
                    .map(|c| (c.outbox.clone(), ToProver::shutdown(&reason, grace_ms)))
                    .collect();
                self.persist(PersistJob {
                    sends,
                    flushed: vec![reply],
                    ..Default::default()
                });
            }
            CoreMsg::WhenIdle { reply } => self.idle_waiters.push(reply),
            CoreMsg::Flush { reply } => {
                self.persist(PersistJob {
                    flushed: vec![reply],
                    ..Default::default()
                });
            }
            CoreMsg::CancelJobs {
                batch,
                only,
                closed,
                reason,
                reply,
                durable,
            } => {
                let n = self.cancel_jobs(batch, only.as_ref(), closed, &reason, now);
                let _ = reply.send(n);
                self.persist(PersistJob {
                    flushed: vec![durable],
                    ..Default::default()
                });
            }
            CoreMsg::PauseDispatch { paused, reply } => {
                let effects = self.scheduler.pause_dispatch(paused, now);
                self.run_effects(effects, Vec::new(), Vec::new());
                let _ = reply.send(());
            }
            CoreMsg::Backlog { reply } => {
                let _ = reply.send(self.backlog());
            }
            CoreMsg::ReleaseHeld {
                batch,
                held,
                reply,
                durable,
            } => {
                let _ = reply.send(self.release_held(batch, held, now));
                self.persist(PersistJob {
                    flushed: vec![durable],
                    ..Default::default()
                });
            }
            CoreMsg::MarketProof {
                job,
                record,
                reply,
                durable,
            } => {
                let _ = reply.send(self.market_proof(job, record));
                self.persist(PersistJob {
                    flushed: vec![durable],
                    ..Default::default()
                });
            }
        }
    }

    /// Queues a closed job again, after `changes` (which go to the store first).
    fn retry(&mut self, job: Job, batch: Arc<Batch>, changes: Vec<Change>, now: u64) {
        let number = job.key.batch_id();
        self.batches
            .write()
            .expect("batch cache lock")
            .entry(number)
            .or_insert(batch);
        let effects = self.scheduler.retry(job, now);
        // Counted only when the job was reopened (a second retry is a no-op), or the batch
        // would never leave the cache.
        if !effects.is_empty() {
            let b = self.open_per_batch.entry(number).or_default();
            b.open += 1;
            b.clean = false;
        }
        self.run_effects(effects, changes, Vec::new());
    }

    /// See [`CoreMsg::CancelJobs`]; returns how many jobs it cancelled.
    fn cancel_jobs(
        &mut self,
        batch: BatchId,
        only: Option<&proofmill_types::ProofType>,
        closed: Vec<Job>,
        reason: &str,
        now: u64,
    ) -> usize {
        let wanted =
            |key: &JobKey| key.batch_id() == batch && only.is_none_or(|t| key.proof_type == *t);
        let open: Vec<JobKey> = self
            .scheduler
            .open_jobs()
            .map(|j| &j.key)
            .filter(|k| wanted(k))
            .cloned()
            .collect();
        let mut effects = Vec::new();
        for key in &open {
            if let Ok(e) = self.scheduler.cancel_job(key, reason, now) {
                effects.extend(e);
            }
        }
        let mut changes = Vec::new();
        for mut job in closed {
            if !wanted(&job.key) || self.scheduler.job(&job.key).is_some() {
                continue;
            }
            job.state = proofmill_types::JobState::Cancelled;
            job.lease = None;
            job.last_error = Some(reason.to_string());
            job.updated_at = now;
            changes.push(Change::Job(job));
        }
        let n = open.len() + changes.len();
        if n > 0 {
            match only {
                None => tracing::info!(%batch, jobs = n, %reason, "batch cancelled"),
                Some(t) => tracing::info!(%batch, proof_type = %t, %reason, "job cancelled"),
            }
        }
        self.run_effects(effects, changes, Vec::new());
        n
    }

    fn backlog(&self) -> Vec<Backlog> {
        let mut by: std::collections::BTreeMap<(String, proofmill_types::ProofType), Backlog> =
            Default::default();
        for j in self.scheduler.open_jobs() {
            if j.state != proofmill_types::JobState::Queued {
                continue;
            }
            let b = by
                .entry((j.version.clone(), j.key.proof_type.clone()))
                .or_insert_with(|| Backlog {
                    version: j.version.clone(),
                    proof_type: j.key.proof_type.clone(),
                    jobs: 0,
                    first_batch: j.key.batch,
                    last_batch: j.key.batch,
                });
            b.jobs += 1;
            b.first_batch = b.first_batch.min(j.key.batch);
            b.last_batch = b.last_batch.max(j.key.batch);
        }
        by.into_values().collect()
    }

    fn discard_blob(&self, _key: String) {
        // Proof blobs of fenced results are left for the blob store's lifecycle rules; the
        // record that would point at them was never written.
    }

    /// Turns scheduler effects into one persist job: changes first, then messages. Tasks go
    /// out at once, before their lease is durable: a restart that loses such a lease gives it
    /// back to the prover when it reconnects with the task (see
    /// `Scheduler::set_orphan_tokens`), and at most `max_unconfirmed` can be uncommitted
    /// (a stalled store stops dispatch instead of letting it run ahead). Acks still wait for
    /// the commit: a prover drops a proof only once it is durable.
    fn run_effects(
        &mut self,
        effects: Vec<Effect>,
        mut changes: Vec<Change>,
        mut sends: Vec<(Outbox, ToProver)>,
    ) {
        let mut trailing = std::mem::take(&mut sends);
        let mut early = 0;
        for effect in effects {
            self.count_effect(&effect);
            match effect {
                Effect::Persist(job) => {
                    if job.state.is_terminal() {
                        self.job_closed(job.key.batch_id(), job.state);
                    }
                    changes.push(Change::Job(job));
                }
                Effect::Dispatch { prover, job } => {
                    let batch = self
                        .batches
                        .read()
                        .expect("batch cache lock")
                        .get(&job.key.batch_id())
                        .cloned();
                    match (self.conns.get(&prover), batch) {
                        (Some(conn), Some(batch)) => {
                            if self.unconfirmed.load(Ordering::SeqCst) + early
                                < self.max_unconfirmed
                            {
                                early += 1;
                                conn.outbox.dispatch(job, batch);
                            } else {
                                sends.push((conn.outbox.clone(), ToProver::Dispatch(job, batch)))
                            }
                        }
                        (_, None) => {
                            tracing::error!(key = %job.key, "dispatched job without its batch")
                        }
                        (None, _) => {}
                    }
                }
                Effect::Cancel {
                    prover,
                    key,
                    token,
                    reason,
                } => {
                    if let Some(conn) = self.conns.get(&prover) {
                        let msg = crate::messages::task_cancelled(&key, token, reason);
                        sends.push((conn.outbox.clone(), ToProver::Msg(msg)));
                    }
                }
                Effect::Cordon { prover, reason } => {
                    tracing::warn!(%prover, %reason, "prover taken out of rotation");
                    changes.push(Change::Cordon {
                        prover,
                        on: true,
                        at: now_ms(),
                        reason,
                    });
                }
                Effect::AttemptStarted { .. } | Effect::AttemptEnded { .. } => {
                    changes.push(self.attempt_change(effect, None));
                }
                Effect::Disconnect { prover, reason } => {
                    tracing::warn!(%prover, %reason, "prover declared dead");
                    if let Some(conn) = self.conns.remove(&prover) {
                        let status = tonic::Status::unavailable(format!(
                            "prover {prover} declared dead: {reason}"
                        ));
                        sends.push((conn.outbox, ToProver::Close(status)));
                    }
                }
            }
        }
        // Acks go after the dispatches of the same step, so a prover has its next task at once.
        sends.append(&mut trailing);
        if changes.is_empty() && sends.is_empty() {
            return;
        }
        if early > 0 {
            self.unconfirmed.fetch_add(early, Ordering::SeqCst);
        }
        // Even message-only jobs go through the persister, to keep per-prover order.
        self.persist(PersistJob {
            changes,
            sends,
            early_dispatches: early,
            ..Default::default()
        });
    }

    /// The store's record of an attempt's start or end (`prove_ms`: what its prover
    /// reported, for the end of the attempt whose result this is).
    fn attempt_change(&self, effect: Effect, prove_ms: Option<u64>) -> Change {
        match effect {
            Effect::AttemptStarted { key, lease, backup } => Change::AttemptStarted(Attempt {
                key,
                token: lease.token,
                prover_name: self
                    .scheduler
                    .prover_name(&lease.prover)
                    .unwrap_or_default()
                    .to_string(),
                prover: lease.prover,
                backup,
                started_at: lease.leased_at,
                ended_at: None,
                outcome: None,
                detail: String::new(),
                prove_ms: None,
            }),
            Effect::AttemptEnded {
                token,
                outcome,
                detail,
                ..
            } => Change::AttemptEnded {
                token,
                at: now_ms(),
                outcome,
                detail,
                prove_ms,
            },
            other => unreachable!("not an attempt: {other:?}"),
        }
    }

    fn job_closed(&mut self, batch: BatchId, state: proofmill_types::JobState) {
        if let Some(b) = self.open_per_batch.get_mut(&batch) {
            b.open = b.open.saturating_sub(1);
            b.clean &= state == proofmill_types::JobState::Proven;
            if b.open == 0 {
                let proven = b.clean;
                self.open_per_batch.remove(&batch);
                let cached = self
                    .batches
                    .write()
                    .expect("batch cache lock")
                    .remove(&batch);
                if let Some(sealed) = cached.filter(|_| proven).map(|b| b.created_at) {
                    metrics::histogram!(names::BATCH_SEALED_TO_PROVEN_SECONDS)
                        .record(secs(now_ms().saturating_sub(sealed)));
                }
            }
        }
    }
}
