//! The core's mailbox: the messages it takes, and [`CoreHandle`], the one way to send them.
//! Every part that talks to the core does so through a method here, so what the core can
//! be asked is listed in one place and no caller builds a message itself.

use super::{Backlog, Conn, Hello};
use crate::error::CoordinatorError;
use crate::outbox::Outbox;
use crate::verdict::Verdict;
use proofmill_scheduler::{ProverView, ResultCheck, SchedulerError};
use proofmill_types::{
    Batch, BatchId, FencingToken, Job, JobKey, ProofRecord, ProofType, ProverId,
};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot};

/// Messages waiting for the core at most. Senders (prover sessions, intake, admin) wait when
/// it is full, so a core that falls behind stops the sessions reading their streams (HTTP/2
/// flow control then slows the provers) instead of memory growing. The core itself never
/// waits on anything, so it always drains it.
pub(crate) const MAILBOX: usize = 8192;

pub(super) enum CoreMsg {
    Connect {
        hello: Hello,
        conn: Conn,
        heartbeat_ms: u32,
        max_message: u32,
        reply: oneshot::Sender<ProverId>,
    },
    Disconnect {
        prover: ProverId,
        conn_id: u64,
    },
    Heartbeat {
        prover: ProverId,
        running: Vec<(JobKey, FencingToken)>,
    },
    Availability {
        prover: ProverId,
        free: u32,
    },
    /// The prover is sending (proof chunks): alive, though its heartbeat answers may be
    /// queued behind the data.
    Alive {
        prover: ProverId,
    },
    /// Whether a result would be fenced off, asked before paying for its verification.
    CheckResult {
        prover: ProverId,
        key: JobKey,
        token: FencingToken,
        reply: oneshot::Sender<ResultCheck>,
    },
    /// A prover's result for (key, token), checked by its session.
    Result {
        prover: ProverId,
        key: JobKey,
        token: FencingToken,
        verdict: Verdict,
        reply_to: Outbox,
    },
    AddBatches {
        batches: Vec<Arc<Batch>>,
        jobs: Vec<Job>,
    },
    /// Queues a failed or cancelled job again (`batch` is its batch, read from the store).
    Retry {
        job: Job,
        batch: Arc<Batch>,
        reply: oneshot::Sender<()>,
    },
    /// L1 rejected the proof of `job` (as read from the store): its proof is deleted and the
    /// job failed with `reason`, then queued again; `durable` is signalled once that is in
    /// the store.
    ProofRejected {
        job: Job,
        batch: Arc<Batch>,
        reason: String,
        reply: oneshot::Sender<()>,
        durable: oneshot::Sender<()>,
    },
    Provers {
        reply: oneshot::Sender<Vec<ProverView>>,
    },
    /// Ok, or the prover is unknown here; once Ok, `durable` is signalled when the cordon
    /// is in the store.
    Cordon {
        prover: ProverId,
        on: bool,
        reply: oneshot::Sender<Result<(), SchedulerError>>,
        durable: oneshot::Sender<()>,
    },
    Drain {
        grace_ms: u32,
        reason: String,
        reply: oneshot::Sender<()>,
    },
    /// Signalled once no connected prover runs a task (a drain waits for it).
    WhenIdle {
        reply: oneshot::Sender<()>,
    },
    Flush {
        reply: oneshot::Sender<()>,
    },
    /// Cancels the batch's open jobs (their provers told, their tokens fenced) and marks
    /// `closed` (its failed jobs, read from the store) cancelled; `reply` gets how many jobs
    /// were cancelled, `durable` is signalled once that is in the store.
    CancelJobs {
        batch: BatchId,
        /// Only this proof type's job (all of the batch's when `None`).
        only: Option<ProofType>,
        closed: Vec<Job>,
        reason: String,
        reply: oneshot::Sender<usize>,
        durable: oneshot::Sender<()>,
    },
    /// Stops (`paused`) or restarts handing out new tasks, for an operator; results are
    /// accepted either way. Restarting dispatches what is ready at once.
    PauseDispatch {
        paused: bool,
        reply: oneshot::Sender<()>,
    },
    /// Queued jobs per (version, proof type): count and batch range, for status warnings.
    Backlog {
        reply: oneshot::Sender<Vec<Backlog>>,
    },
    /// The proof market fell back on a batch: its held jobs (as the store has them) go to
    /// the own provers.
    ReleaseHeld {
        batch: Arc<Batch>,
        held: Vec<Job>,
        reply: oneshot::Sender<usize>,
        durable: oneshot::Sender<()>,
    },
    /// A proving network's checked proof completes a held job.
    MarketProof {
        job: Job,
        record: ProofRecord,
        reply: oneshot::Sender<bool>,
        durable: oneshot::Sender<()>,
    },
}

/// The receiving end, owned by the core task.
pub(crate) struct Mailbox(pub(super) mpsc::Receiver<CoreMsg>);

/// A mailbox of `capacity` messages and the handle that sends to it.
pub(crate) fn mailbox(capacity: usize) -> (CoreHandle, Mailbox) {
    let (tx, rx) = mpsc::channel(capacity);
    (CoreHandle { tx }, Mailbox(rx))
}

/// Sends to the core (cheap to clone). Every method waits while the mailbox is full; one
/// that answers fails with [`CoordinatorError::Unavailable`] once the core has stopped.
/// Notices (heartbeats and the like) sent to a stopped core are dropped: the coordinator is
/// going down and its state is in the store.
#[derive(Clone)]
pub(crate) struct CoreHandle {
    tx: mpsc::Sender<CoreMsg>,
}

impl CoreHandle {
    async fn notify(&self, msg: CoreMsg) {
        let _ = self.tx.send(msg).await;
    }

    async fn ask<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> CoreMsg,
    ) -> Result<T, CoordinatorError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| CoordinatorError::Unavailable)?;
        rx.await.map_err(|_| CoordinatorError::Unavailable)
    }

    /// Asks, then waits until what was asked is in the store.
    async fn ask_durable<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>, oneshot::Sender<()>) -> CoreMsg,
    ) -> Result<T, CoordinatorError> {
        let (durable, stored) = oneshot::channel();
        let answer = self.ask(|reply| make(reply, durable)).await?;
        stored.await.map_err(|_| CoordinatorError::Unavailable)?;
        Ok(answer)
    }

    /// A prover's stream is registered: returns the prover's id.
    pub async fn connect(
        &self,
        hello: Hello,
        conn: Conn,
        heartbeat_ms: u32,
        max_message: u32,
    ) -> Result<ProverId, CoordinatorError> {
        self.ask(|reply| CoreMsg::Connect {
            hello,
            conn,
            heartbeat_ms,
            max_message,
            reply,
        })
        .await
    }

    /// The stream `conn_id` of `prover` ended.
    pub async fn disconnect(&self, prover: ProverId, conn_id: u64) {
        self.notify(CoreMsg::Disconnect { prover, conn_id }).await
    }

    pub async fn heartbeat(&self, prover: ProverId, running: Vec<(JobKey, FencingToken)>) {
        self.notify(CoreMsg::Heartbeat { prover, running }).await
    }

    pub async fn availability(&self, prover: ProverId, free: u32) {
        self.notify(CoreMsg::Availability { prover, free }).await
    }

    /// The prover is sending data: alive, though its heartbeat answers may queue behind it.
    pub async fn alive(&self, prover: ProverId) {
        self.notify(CoreMsg::Alive { prover }).await
    }

    /// Whether a result would be fenced off, asked before paying for its verification.
    pub async fn check_result(
        &self,
        prover: ProverId,
        key: JobKey,
        token: FencingToken,
    ) -> Result<ResultCheck, CoordinatorError> {
        self.ask(|reply| CoreMsg::CheckResult {
            prover,
            key,
            token,
            reply,
        })
        .await
    }

    /// A checked result; the core answers the prover through `reply_to`.
    pub async fn result(
        &self,
        prover: ProverId,
        (key, token): (JobKey, FencingToken),
        verdict: Verdict,
        reply_to: Outbox,
    ) {
        self.notify(CoreMsg::Result {
            prover,
            key,
            token,
            verdict,
            reply_to,
        })
        .await
    }

    /// Stored batches and their jobs, to schedule.
    pub async fn add_batches(
        &self,
        batches: Vec<Arc<Batch>>,
        jobs: Vec<Job>,
    ) -> Result<(), CoordinatorError> {
        self.tx
            .send(CoreMsg::AddBatches { batches, jobs })
            .await
            .map_err(|_| CoordinatorError::Unavailable)
    }

    /// Queues a failed or cancelled job again.
    pub async fn retry(&self, job: Job, batch: Arc<Batch>) -> Result<(), CoordinatorError> {
        self.ask(|reply| CoreMsg::Retry { job, batch, reply }).await
    }

    /// L1 rejected the proof of `job`: returns once its deletion and the job's requeue are
    /// durable.
    pub async fn proof_rejected(
        &self,
        job: Job,
        batch: Arc<Batch>,
        reason: String,
    ) -> Result<(), CoordinatorError> {
        self.ask_durable(|reply, durable| CoreMsg::ProofRejected {
            job,
            batch,
            reason,
            reply,
            durable,
        })
        .await
    }

    /// Every prover the core knows, connected or not.
    pub async fn provers(&self) -> Result<Vec<ProverView>, CoordinatorError> {
        self.ask(|reply| CoreMsg::Provers { reply }).await
    }

    /// Cordons or uncordons a prover; returns once that is durable. An unknown prover
    /// changes nothing (and nothing is written).
    pub async fn cordon(&self, prover: ProverId, on: bool) -> Result<(), CoordinatorError> {
        let (durable, stored) = oneshot::channel();
        self.ask(|reply| CoreMsg::Cordon {
            prover,
            on,
            reply,
            durable,
        })
        .await?
        .map_err(|e| match e {
            SchedulerError::UnknownProver(id) => CoordinatorError::UnknownProver(id.to_string()),
            other => CoordinatorError::InvalidArgument(other.to_string()),
        })?;
        stored.await.map_err(|_| CoordinatorError::Unavailable)
    }

    /// No new work; provers are told to finish within `grace_ms`.
    pub async fn drain(&self, grace_ms: u32, reason: String) -> Result<(), CoordinatorError> {
        self.ask(|reply| CoreMsg::Drain {
            grace_ms,
            reason,
            reply,
        })
        .await
    }

    /// Resolves once no connected prover runs a task.
    pub async fn when_idle(&self) -> Result<(), CoordinatorError> {
        self.ask(|reply| CoreMsg::WhenIdle { reply }).await
    }

    /// Resolves once every change made so far is durable.
    pub async fn flush(&self) -> Result<(), CoordinatorError> {
        self.ask(|reply| CoreMsg::Flush { reply }).await
    }

    /// Cancels a batch's open jobs (of one proof type when `only` says so) and marks
    /// `closed` (its failed jobs) cancelled; returns how many jobs were cancelled, once that
    /// is durable.
    pub async fn cancel_jobs(
        &self,
        batch: BatchId,
        only: Option<ProofType>,
        closed: Vec<Job>,
        reason: String,
    ) -> Result<usize, CoordinatorError> {
        self.ask_durable(|reply, durable| CoreMsg::CancelJobs {
            batch,
            only,
            closed,
            reason,
            reply,
            durable,
        })
        .await
    }

    /// Stops (`paused`) or restarts handing out new tasks; results are accepted either way.
    /// The caller makes the pause durable ([`crate::pausing`]).
    pub async fn pause_dispatch(&self, paused: bool) -> Result<(), CoordinatorError> {
        self.ask(|reply| CoreMsg::PauseDispatch { paused, reply })
            .await
    }

    /// Queued jobs per (version, proof type).
    pub async fn backlog(&self) -> Result<Vec<Backlog>, CoordinatorError> {
        self.ask(|reply| CoreMsg::Backlog { reply }).await
    }

    /// Queues `held` (the batch's held jobs, read from the store) for the own provers;
    /// returns how many, once that is durable. A job the core has open already is left be.
    pub async fn release_held(
        &self,
        batch: Arc<Batch>,
        held: Vec<Job>,
    ) -> Result<usize, CoordinatorError> {
        self.ask_durable(|reply, durable| CoreMsg::ReleaseHeld {
            batch,
            held,
            reply,
            durable,
        })
        .await
    }

    /// Completes the held `job` with a proving network's checked proof; returns once that
    /// is durable. `false` (nothing written): the job went to the own provers meanwhile.
    pub async fn market_proof(
        &self,
        job: Job,
        record: ProofRecord,
    ) -> Result<bool, CoordinatorError> {
        self.ask_durable(|reply, durable| CoreMsg::MarketProof {
            job,
            record,
            reply,
            durable,
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn prover(i: usize) -> ProverId {
        ProverId(format!("p{i}"))
    }

    /// At the limit nothing is dropped and nothing more is held: senders wait until the core
    /// takes messages, then every one arrives, each once.
    #[tokio::test]
    async fn a_full_mailbox_makes_senders_wait_and_loses_nothing() {
        let (core, Mailbox(mut rx)) = mailbox(2);
        let senders: Vec<_> = (0..10)
            .map(|i| {
                let core = core.clone();
                tokio::spawn(async move { core.alive(prover(i)).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(rx.len(), 2, "the mailbox holds its capacity, no more");
        let waiting = senders.iter().filter(|s| !s.is_finished()).count();
        assert_eq!(waiting, 8, "the other senders wait");
        let mut seen = std::collections::BTreeSet::new();
        while seen.len() < 10 {
            match tokio::time::timeout(Duration::from_secs(5), rx.recv()).await {
                Ok(Some(CoreMsg::Alive { prover })) => assert!(seen.insert(prover.0)),
                Ok(Some(_)) => panic!("a message nobody sent"),
                Ok(None) | Err(_) => panic!("only {} of 10 messages arrived", seen.len()),
            }
        }
        for s in senders {
            s.await.expect("sender task");
        }
        assert!(rx.try_recv().is_err(), "each message arrived once");
    }

    /// A request to a core that has stopped is answered `Unavailable`, whether it was sent
    /// before the core stopped or after; a notice is dropped without an error.
    #[tokio::test]
    async fn a_stopped_core_answers_unavailable() {
        let (core, Mailbox(mut rx)) = mailbox(4);
        let asked = tokio::spawn({
            let core = core.clone();
            async move { core.provers().await }
        });
        // Taken but never answered: the core stopped while handling it.
        let taken = rx.recv().await;
        assert!(matches!(taken, Some(CoreMsg::Provers { .. })));
        drop((taken, rx));
        assert!(matches!(
            asked.await.expect("task"),
            Err(CoordinatorError::Unavailable)
        ));
        assert!(matches!(
            core.flush().await,
            Err(CoordinatorError::Unavailable)
        ));
        core.heartbeat(prover(1), Vec::new()).await;
    }
}
