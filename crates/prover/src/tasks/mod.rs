//! The tasks of one link to a coordinator, from `ExecuteTask` to the coordinator's answer to
//! their result: admission (a free slot, a served proof type, room for the result), input
//! collection (inline, chunked or a blob URL), proving on a blocking thread ([`proving`]),
//! cancellation, deadlines, and the result kept until acknowledged ([`unacked`]).
//!
//! [`Tasks`] does not talk to the stream: it answers each coordinator message with the
//! [`Reply`] to send, if any, and the session sends it.

mod proving;
mod unacked;

pub(crate) use proving::{FinishedTask, Proved, TaskOutput};

use crate::capacity::{Capacity, ProvingSlot};
use crate::input::ChunkAssembler;
use crate::state::CoordinatorState;
use crate::stats::Counters;
use crate::{MAX_CHUNKED_INPUT_BYTES, Settings, now_ms};
use proofmill_backend::Cancel;
use proofmill_proto::v1::{
    DataChunk, ErrorCode, ExecuteTask, ResultAck, RunningTask, TaskCancelled, TaskDeclined,
    execute_task,
};
use proofmill_types::{Digest, PublicValues};
use proving::{InputSource, ProvingJob};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};
use unacked::{Answer, UnackedResults};

/// One assignment of a task to this prover: the task id and the fencing token the
/// coordinator gave it. Results, cancels and acks name both.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Assignment {
    pub task_id: String,
    pub token: u64,
}

/// The most tasks a coordinator accepts in `Reconnect.running` and `HeartbeatAck.running`
/// (its largest registrable capacity): a link that listed more could not come back.
const MAX_LISTED: usize = 4096;

/// Most results a link holds unacknowledged, counting the tasks it runs (each will have
/// one): room for a full round of running tasks, a full round of results awaiting their
/// acks, and a few error results of tasks refused on sight; never more than a coordinator
/// accepts listed. At the limit new tasks are declined, so a coordinator that stops
/// acknowledging cannot pile proofs up in memory and in the state dir.
pub const fn max_unacknowledged_results(capacity: u32) -> usize {
    let room = 2 * capacity as usize + 16;
    if room < MAX_LISTED { room } else { MAX_LISTED }
}

/// What to send the coordinator in answer.
pub(crate) enum Reply {
    Declined(TaskDeclined),
    Result {
        task: Assignment,
        finished: Arc<FinishedTask>,
    },
}

// At most `capacity` entries: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum TaskState {
    /// Waiting for `input_chunk` messages. Holds its slot.
    Collecting {
        job: ProvingJob,
        deadline_ms: u64,
        input: ChunkAssembler,
        slot: ProvingSlot,
    },
    /// On a blocking thread, which holds the slot. A cancelled task's result is discarded;
    /// `cancel` asks the backend to stop early (at a TaskCancelled).
    Proving { cancelled: bool, cancel: Cancel },
}

pub(crate) struct Tasks {
    settings: Arc<Settings>,
    capacity: Arc<Capacity>,
    counters: Arc<Counters>,
    states: HashMap<Assignment, TaskState>,
    unacked: UnackedResults,
    /// Reports of the proving threads. Bounded by the capacity: each report carries a slot.
    proved_tx: mpsc::Sender<Proved>,
    proved_rx: mpsc::Receiver<Proved>,
}

impl Tasks {
    /// No tasks, and the unacknowledged results `state` kept from the last process.
    pub fn new(
        settings: Arc<Settings>,
        capacity: Arc<Capacity>,
        counters: Arc<Counters>,
        state: Option<CoordinatorState>,
    ) -> Self {
        let (proved_tx, proved_rx) = mpsc::channel(capacity.total().max(1) as usize);
        Tasks {
            settings,
            capacity,
            counters,
            states: HashMap::new(),
            unacked: UnackedResults::restore(state),
            proved_tx,
            proved_rx,
        }
    }

    pub fn unacked_len(&self) -> usize {
        self.unacked.len()
    }

    /// Results this link may come to hold: the limit, or more if the state dir held more.
    pub fn result_room(&self) -> usize {
        max_unacknowledged_results(self.capacity.total()).max(self.unacked.len())
    }

    pub fn holds_nothing(&self) -> bool {
        self.states.is_empty() && self.unacked.is_empty()
    }

    /// Tasks collected or proven, not cancelled: what a drain waits for.
    pub fn unfinished(&self) -> usize {
        self.states.values().filter(|t| !t.is_cancelled()).count()
    }

    /// Tasks the coordinator should consider ours: running (not cancelled) and finished but
    /// unacknowledged.
    pub fn running(&self) -> Vec<RunningTask> {
        let mut tasks: Vec<&Assignment> = self
            .states
            .iter()
            .filter(|(_, t)| !t.is_cancelled())
            .map(|(a, _)| a)
            .chain(self.unacked.tasks())
            .collect();
        tasks.sort();
        tasks.dedup();
        tasks
            .into_iter()
            .map(|a| RunningTask {
                task_id: a.task_id.clone(),
                fencing_token: a.token,
            })
            .collect()
    }

    /// Every unacknowledged result: what a new stream offers first.
    pub fn all_results(&self) -> Vec<Reply> {
        self.unacked
            .all()
            .into_iter()
            .map(|(task, finished)| Reply::Result { task, finished })
            .collect()
    }

    pub fn execute(&mut self, t: ExecuteTask, draining: bool) -> Option<Reply> {
        let task = Assignment {
            task_id: t.task_id.clone(),
            token: t.fencing_token,
        };
        if self.states.contains_key(&task) {
            debug!(task = %t.task_id, "duplicate ExecuteTask for a running task; ignoring");
            return None;
        }
        if let Some(finished) = self.unacked.get(&task) {
            debug!(task = %t.task_id, "ExecuteTask for a finished task; resending its result");
            let finished = finished.clone();
            return Some(Reply::Result { task, finished });
        }
        if draining {
            return Some(self.decline(task, "prover is shutting down"));
        }
        let held = self.states.len() + self.unacked.len();
        let limit = max_unacknowledged_results(self.capacity.total());
        if held >= limit {
            let reason = format!(
                "{} results await acknowledgement and {} tasks run here, the most this prover holds for one coordinator",
                self.unacked.len(),
                self.states.len()
            );
            return Some(self.decline(task, &reason));
        }
        let Some(backend) = self.settings.backends.get(&t.proof_type).cloned() else {
            let reason = format!("proof type {:?} not served", t.proof_type);
            return Some(self.decline(task, &reason));
        };
        if !t.version.is_empty() && t.version != self.settings.version {
            let reason = format!(
                "version {:?} differs from the prover's {:?}",
                t.version, self.settings.version
            );
            return Some(self.decline(task, &reason));
        }
        if t.deadline_ms != 0 && now_ms() >= t.deadline_ms {
            return Some(self.decline(task, "deadline already passed"));
        }
        // Opaque here: only the backend reads them (and refuses what it cannot prove).
        let expected = PublicValues::new(t.public_values.clone());
        let Some(input_digest) = Digest::from_slice(&t.input_digest) else {
            let e = format!(
                "input_digest must be 32 bytes, got {}",
                t.input_digest.len()
            );
            return Some(self.fail(task, e));
        };
        let job = ProvingJob {
            batch: t.batch,
            backend,
            expected,
            input_digest,
        };
        match t.input {
            None => Some(self.fail(task, "task has no input".to_string())),
            Some(execute_task::Input::BlobUrl(url)) => {
                let Some(reader) = self.settings.blob_reader.clone() else {
                    let e = format!("blob_url input, but this prover has no blob access: {url}");
                    return Some(self.fail(task, e));
                };
                let Some(slot) = self.capacity.try_take() else {
                    return Some(self.decline(task, "no free slot"));
                };
                self.start(task, job, InputSource::Url(reader, url), slot);
                None
            }
            Some(execute_task::Input::Inline(bytes)) => {
                if t.input_size != 0 && t.input_size != bytes.len() as u64 {
                    let e = format!(
                        "inline input is {} bytes, input_size says {}",
                        bytes.len(),
                        t.input_size
                    );
                    return Some(self.fail(task, e));
                }
                let Some(slot) = self.capacity.try_take() else {
                    return Some(self.decline(task, "no free slot"));
                };
                self.start(task, job, InputSource::Bytes(bytes), slot);
                None
            }
            Some(execute_task::Input::Chunked(_)) => {
                if t.input_size > MAX_CHUNKED_INPUT_BYTES {
                    let e = format!(
                        "input_size {} exceeds the limit {MAX_CHUNKED_INPUT_BYTES}",
                        t.input_size
                    );
                    return Some(self.fail(task, e));
                }
                let Some(slot) = self.capacity.try_take() else {
                    return Some(self.decline(task, "no free slot"));
                };
                info!(task = %t.task_id, token = t.fencing_token, size = t.input_size, "receiving chunked input");
                let input = ChunkAssembler::new(t.input_size);
                self.states.insert(
                    task,
                    TaskState::Collecting {
                        job,
                        deadline_ms: t.deadline_ms,
                        input,
                        slot,
                    },
                );
                None
            }
        }
    }

    pub fn input_chunk(&mut self, c: DataChunk) -> Option<Reply> {
        let task = Assignment {
            task_id: c.task_id,
            token: c.fencing_token,
        };
        let Some(TaskState::Collecting { input, .. }) = self.states.get_mut(&task) else {
            debug!(task = %task.task_id, token = task.token, "input chunk for no pending input; ignoring");
            return None;
        };
        match input.push(c.offset, c.data, c.last) {
            Ok(false) => None,
            Ok(true) => {
                let Some(TaskState::Collecting {
                    job,
                    deadline_ms,
                    input,
                    slot,
                }) = self.states.remove(&task)
                else {
                    unreachable!("checked above")
                };
                if deadline_ms != 0 && now_ms() >= deadline_ms {
                    drop(slot);
                    return Some(self.decline(task, "deadline passed while receiving the input"));
                }
                self.start(task, job, InputSource::Bytes(input.into_bytes()), slot);
                None
            }
            Err(e) => {
                self.states.remove(&task);
                Some(self.fail(task, format!("bad input chunk: {e}")))
            }
        }
    }

    /// Drops inputs still incomplete at their deadline, each with an error result.
    /// (A proof past its deadline is stopped by the coordinator's TaskCancelled, not here:
    /// the coordinator may have extended the lease, e.g. when it adopted it after a restart,
    /// and the two clocks differ.)
    pub fn expire_inputs(&mut self) -> Vec<Reply> {
        let now = now_ms();
        let expired: Vec<Assignment> = self
            .states
            .iter()
            .filter(|(_, t)| {
                matches!(t, TaskState::Collecting { deadline_ms, .. }
                    if *deadline_ms != 0 && now >= *deadline_ms)
            })
            .map(|(a, _)| a.clone())
            .collect();
        expired
            .into_iter()
            .map(|task| {
                let received = match self.states.remove(&task) {
                    Some(TaskState::Collecting { input, .. }) => input.received(),
                    _ => 0,
                };
                let e = format!("input incomplete at the deadline ({received} bytes received)");
                self.fail(task, e)
            })
            .collect()
    }

    /// The results the coordinator could not take whose time to be offered again has come.
    pub fn resends_due(&mut self) -> Vec<Reply> {
        self.unacked
            .due(Instant::now())
            .into_iter()
            .map(|(task, finished)| Reply::Result { task, finished })
            .collect()
    }

    /// The next report of a proving thread (cancel-safe).
    pub async fn next_proved(&mut self) -> Proved {
        self.proved_rx
            .recv()
            .await
            .expect("Tasks holds a sender: the channel stays open")
    }

    pub fn try_next_proved(&mut self) -> Option<Proved> {
        self.proved_rx.try_recv().ok()
    }

    /// Records what a proving thread reported. Returns the result to send unless the task
    /// was cancelled or forgotten meanwhile, and the task's slot, for the caller to release
    /// once the result is sent.
    pub fn proved(&mut self, proved: Proved) -> (Option<Reply>, ProvingSlot) {
        let Proved {
            task,
            finished,
            slot,
        } = proved;
        match self.states.get(&task) {
            Some(TaskState::Proving {
                cancelled: false, ..
            }) => {
                self.states.remove(&task);
            }
            Some(TaskState::Proving {
                cancelled: true, ..
            }) => {
                self.states.remove(&task);
                info!(task = %task.task_id, token = task.token, "cancelled task finished; result discarded");
                return (None, slot);
            }
            _ => {
                debug!(task = %task.task_id, token = task.token, "result for a task no longer tracked; discarded");
                return (None, slot);
            }
        }
        match &finished.output {
            TaskOutput::Proof { bytes, .. } => {
                Counters::bump(&self.counters.completed);
                info!(task = %task.task_id, token = task.token, prove_ms = finished.prove_ms, proof_bytes = bytes.len(), "task proven");
            }
            TaskOutput::Error(e) => {
                Counters::bump(&self.counters.failed);
                warn!(task = %task.task_id, token = task.token, prove_ms = finished.prove_ms, error = %e, "task failed");
            }
        }
        let finished = self.unacked.keep(task.clone(), finished);
        (Some(Reply::Result { task, finished }), slot)
    }

    pub fn acknowledged(&mut self, a: ResultAck) {
        let task = Assignment {
            task_id: a.task_id,
            token: a.fencing_token,
        };
        let (id, token, code) = (&task.task_id, task.token, code_name(a.code));
        match self.unacked.answer(&task, a.accepted, a.code) {
            Answer::NotPending => debug!(task = %id, token, "ack for no pending result"),
            Answer::ResendAfter(wait) => {
                warn!(task = %id, token, code, reason = %a.reason, ?wait, "coordinator could not take the result; will resend");
            }
            Answer::Accepted { proof } => {
                Counters::bump(&self.counters.acked);
                if proof {
                    Counters::bump(&self.counters.proofs_acked);
                }
                info!(task = %id, token, proof, "result acknowledged");
            }
            Answer::Rejected => {
                Counters::bump(&self.counters.rejected);
                warn!(task = %id, token, code, reason = %a.reason, "result rejected by the coordinator; dropped");
            }
        }
    }

    pub fn cancel(&mut self, c: TaskCancelled) {
        let task = Assignment {
            task_id: c.task_id,
            token: c.fencing_token,
        };
        let known = match self.states.get_mut(&task) {
            Some(TaskState::Collecting { .. }) => {
                self.states.remove(&task);
                true
            }
            Some(TaskState::Proving { cancelled, cancel }) => {
                let first = !*cancelled;
                *cancelled = true;
                cancel.cancel();
                first
            }
            // A finished result stays until its ResultAck: the coordinator may hold it as
            // accepted already (a lost ack, then a Reconnect listing the task), or not yet
            // durably; only the ack to the result it resends says which.
            None => {
                if self.unacked.get(&task).is_some() {
                    debug!(task = %task.task_id, token = task.token, "cancel for a finished result; keeping it until acknowledged");
                }
                false
            }
        };
        if known {
            Counters::bump(&self.counters.cancelled);
            info!(task = %task.task_id, token = task.token, reason = %c.reason, "task cancelled");
        } else {
            debug!(task = %task.task_id, token = task.token, "cancel for an unknown task");
        }
    }

    /// When a stream ends: inputs being streamed cannot resume on a new one, so their slots
    /// go back. The coordinator does not see them in `Reconnect.running` and requeues them.
    pub fn drop_incomplete_inputs(&mut self) {
        self.states
            .retain(|_, t| matches!(t, TaskState::Proving { .. }));
    }

    /// The coordinator refused this link's prover id: whatever runs or waits under it can
    /// never be accepted (results are fenced by prover as well as token), so stop it and
    /// free the slots for the work the new id will get.
    pub fn abandon_identity(&mut self, why: &str) {
        let dropped = self.unacked.len();
        let mut stopped = 0u64;
        for task in self.states.values_mut() {
            match task {
                TaskState::Collecting { .. } => stopped += 1,
                TaskState::Proving { cancelled, cancel } => {
                    if !*cancelled {
                        *cancelled = true;
                        stopped += 1;
                    }
                    cancel.cancel();
                }
            }
        }
        // Collecting tasks hold their slots: dropping them frees the slots now. Proving ones
        // free theirs when their thread reports back (at once if the backend can stop).
        self.drop_incomplete_inputs();
        self.unacked.forget_all();
        Counters::add(&self.counters.cancelled, stopped);
        if stopped as usize + dropped > 0 {
            warn!(
                stopped,
                results_dropped = dropped,
                reason = why,
                "work of the old prover id abandoned"
            );
        }
    }

    /// The link ends: running tasks and unacknowledged results are left behind (the
    /// results stay in the state dir, if any, for the next process).
    pub fn abandon(self, why: &str) {
        let running = self
            .states
            .values()
            .filter(|t| {
                matches!(
                    t,
                    TaskState::Proving {
                        cancelled: false,
                        ..
                    }
                )
            })
            .count();
        if running > 0 || !self.unacked.is_empty() {
            warn!(
                running,
                unacknowledged = self.unacked.len(),
                "{why}: abandoning running tasks and unacknowledged results"
            );
        } else {
            info!("{why}");
        }
    }

    fn decline(&self, task: Assignment, reason: &str) -> Reply {
        info!(task = %task.task_id, token = task.token, reason, "task declined");
        Counters::bump(&self.counters.declined);
        Reply::Declined(TaskDeclined {
            task_id: task.task_id,
            fencing_token: task.token,
            reason: reason.to_string(),
        })
    }

    /// Records an error result of a task that was never proven.
    fn fail(&mut self, task: Assignment, error: String) -> Reply {
        warn!(task = %task.task_id, token = task.token, error = %error, "task failed");
        Counters::bump(&self.counters.failed);
        let finished = FinishedTask {
            output: TaskOutput::Error(error),
            prove_ms: 0,
        };
        let finished = self.unacked.keep(task.clone(), finished);
        Reply::Result { task, finished }
    }

    /// Proves on a blocking thread, which reports back through `proved_tx`, handing the
    /// slot back with the result.
    fn start(&mut self, task: Assignment, job: ProvingJob, input: InputSource, slot: ProvingSlot) {
        info!(
            task = %task.task_id,
            token = task.token,
            backend = job.backend.name(),
            input = %input,
            "task started"
        );
        let cancel = Cancel::default();
        self.states.insert(
            task.clone(),
            TaskState::Proving {
                cancelled: false,
                cancel: cancel.clone(),
            },
        );
        proving::spawn(task, job, input, slot, cancel, self.proved_tx.clone());
    }
}

impl TaskState {
    fn is_cancelled(&self) -> bool {
        matches!(
            self,
            TaskState::Proving {
                cancelled: true,
                ..
            }
        )
    }
}

pub(crate) fn code_name(code: i32) -> &'static str {
    ErrorCode::try_from(code)
        .map(|c| c.as_str_name())
        .unwrap_or("UNKNOWN_CODE")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimBackend;
    use std::time::Duration;

    fn tasks(capacity: u32) -> Tasks {
        let backend: Arc<dyn proofmill_backend::Backend> = Arc::new(SimBackend::new());
        let settings = Arc::new(Settings {
            name: "t".into(),
            capacity,
            version: String::new(),
            token: None,
            tls: Default::default(),
            backends: HashMap::from([("exec".to_string(), backend)]),
            proof_types: vec!["exec".into()],
            reconnect_min: Duration::from_millis(1),
            reconnect_max: Duration::from_millis(1),
            refused_max: Duration::from_millis(1),
            max_message_bytes: 1 << 20,
            connect_timeout: Duration::from_secs(1),
            blob_reader: None,
            exit_on_shutdown: false,
        });
        Tasks::new(settings, Capacity::new(capacity), Arc::default(), None)
    }

    fn execute(n: u64) -> ExecuteTask {
        let input = b"input";
        ExecuteTask {
            task_id: format!("{n}/exec"),
            batch: n,
            proof_type: "exec".into(),
            fencing_token: n,
            input_digest: Digest::sha256(input).0.to_vec(),
            input_size: input.len() as u64,
            input: Some(execute_task::Input::Inline(input.to_vec())),
            public_values: PublicValues::default().as_bytes().to_vec(),
            ..Default::default()
        }
    }

    /// Every proving thread reports without waiting, even when nobody reads the reports for
    /// a while: there is room for one per slot, and the slots bound the threads.
    #[tokio::test]
    async fn tasks_are_bounded_by_the_slots_and_every_report_finds_room() {
        let mut tasks = tasks(3);
        for n in 1..=3 {
            assert!(
                tasks.execute(execute(n), false).is_none(),
                "task {n} started"
            );
        }
        let Some(Reply::Declined(d)) = tasks.execute(execute(4), false) else {
            panic!("a fourth task is declined")
        };
        assert_eq!(d.reason, "no free slot");
        // Nobody reads the reports until every thread has sent its own.
        tokio::time::timeout(Duration::from_secs(10), async {
            while tasks.proved_tx.capacity() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .expect("three reports sent");
        let mut results = 0;
        for _ in 0..3 {
            let proved = tasks.next_proved().await;
            let (reply, slot) = tasks.proved(proved);
            assert!(matches!(reply, Some(Reply::Result { .. })));
            drop(slot);
            results += 1;
        }
        assert_eq!((results, tasks.unacked_len()), (3, 3));
        assert_eq!(tasks.capacity.free(), 3);
    }

    /// Results and running tasks together stay within `max_unacknowledged_results`.
    #[tokio::test]
    async fn tasks_past_the_unacknowledged_limit_are_declined_saying_why() {
        let mut tasks = tasks(1);
        let limit = max_unacknowledged_results(1);
        for n in 0..limit as u64 {
            let mut t = execute(n);
            t.input_digest.clear(); // refused on sight: an error result, no slot
            assert!(matches!(
                tasks.execute(t, false),
                Some(Reply::Result { .. })
            ));
        }
        let Some(Reply::Declined(d)) = tasks.execute(execute(99), false) else {
            panic!("declined at the limit")
        };
        assert!(d.reason.contains("await acknowledgement"), "{}", d.reason);
        assert_eq!(tasks.running().len(), limit);
        tasks.acknowledged(ResultAck {
            task_id: "0/exec".into(),
            fencing_token: 0,
            accepted: true,
            ..Default::default()
        });
        assert!(tasks.execute(execute(99), false).is_none(), "room again");
        assert_eq!(max_unacknowledged_results(1), 18);
        assert_eq!(max_unacknowledged_results(4096), MAX_LISTED);
    }
}
