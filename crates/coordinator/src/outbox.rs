//! The way out to one prover. Everything bound for a prover goes through its [`Outbox`], a
//! queue drained by the session's writer task (which also sends heartbeats and reads or
//! chunks large inputs). A message, or a task whose input is cached, skips the queue and goes
//! straight to the stream when nothing is queued ahead of it: one task hop less on the
//! dispatch path, and per-prover order is kept because the direct path is taken only when
//! the queue is empty.

use crate::core::CoreMsg;
use crate::inputs::InputCache;
use crate::server::Shared;
use crate::session::Outcome;
use proofmill_proto::v1::{
    CoordinatorMessage, DataChunk, ExecuteTask, Heartbeat, Shutdown,
    coordinator_message::Kind as Out, execute_task::Input,
};
use proofmill_types::{Batch, Job, TaskId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::mpsc;
use tonic::Status;

/// The gRPC response stream of one prover.
pub(crate) type Wire = mpsc::Sender<Result<CoordinatorMessage, Status>>;

/// What the core (directly or via the persister) asks a session to send.
pub(crate) enum ToProver {
    Msg(CoordinatorMessage),
    Dispatch(Job, Arc<Batch>),
    /// End the stream (prover declared dead or replaced).
    Close(String),
}

impl ToProver {
    pub fn shutdown(reason: &str, grace_ms: u32) -> Self {
        ToProver::Msg(CoordinatorMessage {
            kind: Some(Out::Shutdown(Shutdown {
                reason: reason.into(),
                grace_ms,
            })),
        })
    }
}

/// Measures dispatch latency: from a result read off the stream to the next task written.
#[derive(Clone)]
pub(crate) struct LatencyProbe {
    last_result: Arc<Mutex<Option<Instant>>>,
    samples: Arc<Mutex<Vec<u32>>>,
}

impl LatencyProbe {
    pub fn new(samples: Arc<Mutex<Vec<u32>>>) -> Self {
        LatencyProbe {
            last_result: Arc::new(Mutex::new(None)),
            samples,
        }
    }

    pub fn result_received(&self) {
        *self.last_result.lock().expect("latency lock") = Some(Instant::now());
    }

    fn task_sent(&self) {
        if let Some(at) = self.last_result.lock().expect("latency lock").take() {
            let us = at.elapsed().as_micros().min(u32::MAX as u128) as u32;
            self.samples.lock().expect("latency lock").push(us);
        }
    }
}

/// Sending side of one prover's stream (cheap to clone).
#[derive(Clone)]
pub(crate) struct Outbox {
    queue: mpsc::UnboundedSender<ToProver>,
    /// Items queued and not yet written by the writer task.
    queued: Arc<AtomicUsize>,
    wire: Wire,
    inputs: Arc<InputCache>,
    inline_input_max: usize,
    latency: Option<LatencyProbe>,
}

impl Outbox {
    /// Sends an item: a message straight to the stream when nothing is queued ahead of it
    /// and the stream has room, anything else through the writer task. False when the
    /// session is gone.
    pub fn send(&self, item: ToProver) -> bool {
        match item {
            ToProver::Msg(m) => match self.write_now(m) {
                Written::Sent => true,
                Written::Closed => false,
                Written::Busy(m) => self.enqueue(ToProver::Msg(m)),
            },
            other => self.enqueue(other),
        }
    }

    /// Sends a task: straight to the stream when its input is cached and small enough to go
    /// inline (and nothing is queued ahead), otherwise through the writer task, which reads
    /// the input, chunks it or sends its blob URL.
    pub fn dispatch(&self, job: Job, batch: Arc<Batch>) -> bool {
        let ready = self.queued.load(Ordering::SeqCst) == 0
            && self.wire.capacity() > 0
            && batch.input_size <= self.inline_input_max as u64;
        if let Some(input) = ready.then(|| self.inputs.cached(batch.number)).flatten() {
            let task = task_message(&job, &batch, input.len(), Input::Inline(input.to_vec()));
            match self.write_now(task) {
                Written::Sent => {
                    if let Some(probe) = &self.latency {
                        probe.task_sent();
                    }
                    return true;
                }
                Written::Closed => return false,
                Written::Busy(_) => {}
            }
        }
        self.enqueue(ToProver::Dispatch(job, batch))
    }

    /// Writes to the stream now if nothing is queued ahead and there is room.
    fn write_now(&self, m: CoordinatorMessage) -> Written {
        if self.queued.load(Ordering::SeqCst) != 0 {
            return Written::Busy(m);
        }
        match self.wire.try_send(Ok(m)) {
            Ok(()) => Written::Sent,
            Err(mpsc::error::TrySendError::Full(Ok(m))) => Written::Busy(m),
            // Only `Ok` items are written here, so a full stream gives back nothing else.
            Err(_) => Written::Closed,
        }
    }

    fn enqueue(&self, item: ToProver) -> bool {
        self.queued.fetch_add(1, Ordering::SeqCst);
        if self.queue.send(item).is_err() {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        true
    }
}

enum Written {
    Sent,
    Closed,
    /// Not written: something is queued ahead or the stream is full.
    Busy(CoordinatorMessage),
}

/// The writer task's half of an [`Outbox`].
pub(crate) struct Writer {
    rx: mpsc::UnboundedReceiver<ToProver>,
    queued: Arc<AtomicUsize>,
    wire: Wire,
    blob_access: bool,
    latency: Option<LatencyProbe>,
}

pub(crate) fn outbox(
    shared: &Shared,
    wire: Wire,
    blob_access: bool,
    latency: Option<LatencyProbe>,
) -> (Outbox, Writer) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let outbox = Outbox {
        queue: tx,
        queued: queued.clone(),
        wire: wire.clone(),
        inputs: shared.inputs.clone(),
        inline_input_max: shared.config.inline_input_max,
        latency: latency.clone(),
    };
    let writer = Writer {
        rx,
        queued,
        wire,
        blob_access,
        latency,
    };
    (outbox, writer)
}

/// Drains the queue onto the stream and sends heartbeats, until the stream or queue closes.
pub(crate) async fn write_loop(shared: Arc<Shared>, mut w: Writer, self_tx: Outbox) {
    let period =
        std::time::Duration::from_millis(shared.config.scheduler.heartbeat_interval_ms.max(10));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut seq = 0u64;
    loop {
        let (item, queued) = tokio::select! {
            m = w.rx.recv() => match m { Some(m) => (m, true), None => return },
            _ = beat.tick() => {
                seq += 1;
                let beat = CoordinatorMessage { kind: Some(Out::Heartbeat(Heartbeat { seq })) };
                (ToProver::Msg(beat), false)
            }
        };
        let open = match item {
            ToProver::Msg(m) => w.wire.send(Ok(m)).await.is_ok(),
            ToProver::Close(reason) => {
                let _ = w.wire.send(Err(Status::unavailable(reason))).await;
                false
            }
            ToProver::Dispatch(job, batch) => {
                let open = send_task(&shared, &w.wire, w.blob_access, &job, &batch, &self_tx).await;
                if let Some(probe) = w.latency.as_ref().filter(|_| open) {
                    probe.task_sent();
                }
                open
            }
        };
        // Only once it is written: until then the core must not write around it.
        if queued {
            w.queued.fetch_sub(1, Ordering::SeqCst);
        }
        if !open {
            return;
        }
    }
}

fn task_message(job: &Job, batch: &Batch, input_size: usize, input: Input) -> CoordinatorMessage {
    let lease = job.lease.as_ref().expect("dispatched job is leased");
    let task = ExecuteTask {
        task_id: TaskId::format(job.key.batch, &job.key.proof_type),
        batch: job.key.batch,
        proof_type: job.key.proof_type.to_string(),
        fencing_token: lease.token.0,
        deadline_ms: lease.deadline,
        version: job.version.clone(),
        input_digest: batch.input_digest.0.to_vec(),
        input_size: input_size as u64,
        input: Some(input),
        public_values: batch.public_values.encode().to_vec(),
    };
    CoordinatorMessage {
        kind: Some(Out::ExecuteTask(task)),
    }
}

/// Sends one task: its input inline, as a blob URL (large inputs, provers with blob access)
/// or in chunks. Returns false when the stream is gone.
async fn send_task(
    shared: &Shared,
    wire: &Wire,
    blob_access: bool,
    job: &Job,
    batch: &Batch,
    self_tx: &Outbox,
) -> bool {
    let lease = job.lease.as_ref().expect("dispatched job is leased");
    if blob_access && batch.input_size > shared.config.inline_input_max as u64 {
        // The prover reads it from the blob store itself and checks the digest.
        let url = Input::BlobUrl(shared.blobs.url(&batch.input_key));
        let task = task_message(job, batch, batch.input_size as usize, url);
        return wire.send(Ok(task)).await.is_ok();
    }
    let input = match shared.inputs.get(batch).await {
        Ok(d) => d,
        Err(e) => {
            // The lease fails like any attempt: retried with backoff, then visible as failed.
            tracing::error!(key = %job.key, error = %e, "cannot read batch input");
            let _ = shared.core.send(CoreMsg::Outcome {
                prover: lease.prover.clone(),
                key: job.key.clone(),
                token: lease.token,
                outcome: Outcome::Failed(format!("coordinator could not read the input: {e}")),
                reply_to: self_tx.clone(),
            });
            return true;
        }
    };
    let chunked = input.len() > shared.config.inline_input_max;
    let how = if chunked {
        Input::Chunked(true)
    } else {
        Input::Inline(input.to_vec())
    };
    if wire
        .send(Ok(task_message(job, batch, input.len(), how)))
        .await
        .is_err()
    {
        return false;
    }
    if chunked {
        let task_id = TaskId::format(job.key.batch, &job.key.proof_type);
        let size = shared.config.chunk_bytes.max(1);
        let mut offset = 0;
        while offset < input.len() {
            let end = (offset + size).min(input.len());
            let chunk = DataChunk {
                task_id: task_id.clone(),
                fencing_token: lease.token.0,
                offset: offset as u64,
                data: input.slice(offset..end).to_vec(),
                last: end == input.len(),
            };
            if wire
                .send(Ok(CoordinatorMessage {
                    kind: Some(Out::InputChunk(chunk)),
                }))
                .await
                .is_err()
            {
                return false;
            }
            offset = end;
        }
    }
    true
}
