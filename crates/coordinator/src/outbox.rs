//! The way out to one prover. Everything bound for a prover goes through its [`Outbox`], a
//! queue drained by the session's writer task (which also sends heartbeats and reads or
//! chunks large inputs). A message, or a task whose input is cached, skips the queue and goes
//! straight to the stream when nothing is queued ahead of it: one task hop less on the
//! dispatch path, and per-prover order is kept because the direct path is taken only when
//! the queue is empty.

use crate::core::CoreHandle;
use crate::inputs::InputCache;
use crate::verdict::Verdict;
use crate::wire::{ChunkCredits, Wire, WireEnd};
use proofmill_proto::v1::{CoordinatorMessage, execute_task::Input};
use proofmill_types::{Batch, Job, TaskId};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use tonic::Status;

/// What the writers of every stream use: where inputs are read, the core (to report a task
/// whose input could not be read), the heartbeat period, and the count of replies queued over
/// all streams.
#[derive(Clone)]
pub(crate) struct Sending {
    pub inputs: Arc<InputCache>,
    pub blobs: proofmill_store::Blobs,
    pub core: CoreHandle,
    pub heartbeat: std::time::Duration,
    pub replies_queued: Arc<AtomicUsize>,
}

/// What the core (directly or via the persister) asks a session to send.
pub(crate) enum ToProver {
    Msg(CoordinatorMessage),
    Dispatch(Job, Arc<Batch>),
    /// End the stream with this status (prover declared dead or replaced). Not queued: it
    /// overtakes whatever is, drops it, and interrupts a writer waiting on a stalled stream.
    Close(Status),
}

impl ToProver {
    pub fn shutdown(reason: &str, grace_ms: u32) -> Self {
        ToProver::Msg(crate::messages::shutdown(reason, grace_ms))
    }
}

/// Measures dispatch latency: from a result read off the stream to the next task written,
/// into the metrics and, for benchmarks, into `samples` (µs).
#[derive(Clone)]
pub(crate) struct LatencyProbe {
    last_result: Arc<Mutex<Option<Instant>>>,
    samples: Option<Arc<Mutex<Vec<u32>>>>,
}

impl LatencyProbe {
    pub fn new(samples: Option<Arc<Mutex<Vec<u32>>>>) -> Self {
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
            let elapsed = at.elapsed();
            metrics::histogram!(proofmill_telemetry::names::DISPATCH_LATENCY_SECONDS)
                .record(elapsed.as_secs_f64());
            if let Some(samples) = &self.samples {
                let us = elapsed.as_micros().min(u32::MAX as u128) as u32;
                samples.lock().expect("latency lock").push(us);
            }
        }
    }
}

/// Sizes of what goes to one prover: the coordinator's settings, lowered to fit the
/// largest message the prover said it accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendLimits {
    /// Inputs up to this size go inline in `ExecuteTask`.
    pub inline_input_max: usize,
    /// Larger inputs go in chunks of this size.
    pub chunk_bytes: usize,
}

impl SendLimits {
    /// `prover_max` is `Register.max_message_bytes` (0: none given). Half of a limit leaves
    /// room for the message's other fields and framing, as the prover does for its proofs.
    pub fn new(inline_input_max: usize, chunk_bytes: usize, prover_max: u32) -> Self {
        let room = match prover_max {
            0 => usize::MAX,
            n => n as usize / 2,
        };
        SendLimits {
            inline_input_max: inline_input_max.min(room),
            chunk_bytes: chunk_bytes.min(room).max(1),
        }
    }
}

/// Sending side of one prover's stream (cheap to clone).
#[derive(Clone)]
pub(crate) struct Outbox {
    queue: mpsc::UnboundedSender<ToProver>,
    /// Items queued and not yet written by the writer task.
    queued: Queued,
    /// Most items queued before the stream is closed as not reading.
    max_queued: usize,
    wire: Wire,
    inputs: Arc<InputCache>,
    limits: SendLimits,
    latency: Option<LatencyProbe>,
    closing: Arc<watch::Sender<Option<String>>>,
    end: WireEnd,
    beats: LastBeat,
}

/// The last heartbeat written to a stream and when: its ack gives the round trip.
type LastBeat = Arc<Mutex<Option<(u64, Instant)>>>;

/// Resolves with the reason once the stream is closed by [`ToProver::Close`].
pub(crate) async fn closed(closing: &watch::Receiver<Option<String>>) -> String {
    let mut rx = closing.clone();
    let reason = match rx.wait_for(Option::is_some).await {
        Ok(reason) => reason.clone(),
        Err(_) => None,
    };
    match reason {
        Some(reason) => reason,
        // Every outbox is gone (cannot happen while a writer holds its own): never closed.
        None => std::future::pending().await,
    }
}

impl Outbox {
    /// The prover answered heartbeat `seq`: the round trip of the last one sent, if this
    /// answers it, goes to the metrics.
    pub fn heartbeat_acked(&self, seq: u64) {
        let mut last = self.beats.lock().expect("heartbeat lock");
        if let Some((sent_seq, at)) = *last
            && sent_seq == seq
        {
            *last = None;
            metrics::histogram!(proofmill_telemetry::names::HEARTBEAT_ROUND_TRIP_SECONDS)
                .record(at.elapsed().as_secs_f64());
        }
    }

    /// The close signal, for the session's reader to stop with the writer.
    pub fn closing(&self) -> watch::Receiver<Option<String>> {
        self.closing.subscribe()
    }

    /// Sends an item: a message straight to the stream when nothing is queued ahead of it
    /// and the stream has room, anything else through the writer task. False when the
    /// session is gone or closed (a `Close` itself always succeeds).
    pub fn send(&self, item: ToProver) -> bool {
        match item {
            ToProver::Close(status) => {
                self.closing.send_if_modified(|c| {
                    let first = c.is_none();
                    if first {
                        *c = Some(status.message().to_string());
                    }
                    first
                });
                self.end.abort(status);
                true
            }
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
        let ready = self.queued.get() == 0
            && self.wire.capacity() > 0
            && batch.input_size <= self.limits.inline_input_max as u64;
        if let Some(input) = ready.then(|| self.inputs.cached(batch.id())).flatten() {
            let task = crate::messages::execute_task(
                &job,
                &batch,
                input.len(),
                Input::Inline(input.to_vec()),
            );
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
        if self.closing.borrow().is_some() {
            return Written::Closed;
        }
        if self.queued.get() != 0 {
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
        if self.closing.borrow().is_some() {
            return false;
        }
        if self.queued.get() >= self.max_queued {
            // It does not read what it is sent (an honest prover reads all the time): close
            // it rather than grow its queue.
            self.send(ToProver::Close(Status::resource_exhausted(format!(
                "the prover does not read its stream: {} replies queued",
                self.max_queued
            ))));
            return false;
        }
        self.queued.add();
        if self.queue.send(item).is_err() {
            self.queued.sub(1);
            return false;
        }
        true
    }
}

/// Items queued for one stream and not yet written, also counted for all streams together.
#[derive(Clone)]
struct Queued {
    stream: Arc<AtomicUsize>,
    all: Arc<AtomicUsize>,
}

impl Queued {
    fn get(&self) -> usize {
        self.stream.load(Ordering::SeqCst)
    }

    fn add(&self) {
        self.stream.fetch_add(1, Ordering::SeqCst);
        self.all.fetch_add(1, Ordering::SeqCst);
    }

    fn sub(&self, n: usize) {
        self.stream.fetch_sub(n, Ordering::SeqCst);
        self.all.fetch_sub(n, Ordering::SeqCst);
    }
}

/// Uncounts a queued item once it is written, or dropped unwritten with its writer.
struct Dequeued(Queued);

impl Drop for Dequeued {
    fn drop(&mut self) {
        self.0.sub(1);
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
    sending: Sending,
    rx: mpsc::UnboundedReceiver<ToProver>,
    queued: Queued,
    wire: Wire,
    blob_access: bool,
    limits: SendLimits,
    credits: ChunkCredits,
    latency: Option<LatencyProbe>,
    closing: watch::Receiver<Option<String>>,
    beats: LastBeat,
}

impl Writer {
    /// Writes to the stream, waiting for room unless the stream is closed meanwhile. False
    /// when the stream is gone or closed.
    async fn put(&self, m: CoordinatorMessage) -> bool {
        tokio::select! {
            sent = self.wire.send(Ok(m)) => sent.is_ok(),
            _ = closed(&self.closing) => false,
        }
    }
}

impl Drop for Writer {
    /// What is still queued will not be written: uncount it.
    fn drop(&mut self) {
        self.rx.close();
        let mut left = 0;
        while self.rx.try_recv().is_ok() {
            left += 1;
        }
        self.queued.sub(left);
    }
}

/// Replies queued per stream, beyond which a prover is taken not to read them: room for
/// what an honest prover of `capacity` can have coming at once (its tasks, their
/// cancellations, acks of the results it resends on a reconnect) and then some.
fn max_queued(capacity: u32) -> usize {
    4 * capacity as usize + 1024
}

pub(crate) fn outbox(
    sending: &Sending,
    (wire, credits, end): (Wire, ChunkCredits, WireEnd),
    (blob_access, limits, capacity): (bool, SendLimits, u32),
    latency: Option<LatencyProbe>,
) -> (Outbox, Writer) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Queued {
        stream: Default::default(),
        all: sending.replies_queued.clone(),
    };
    let (closing, closing_rx) = watch::channel(None);
    let beats = LastBeat::default();
    let outbox = Outbox {
        beats: beats.clone(),
        closing: Arc::new(closing),
        queue: tx,
        queued: queued.clone(),
        max_queued: max_queued(capacity),
        wire: wire.clone(),
        inputs: sending.inputs.clone(),
        limits,
        latency: latency.clone(),
        end,
    };
    let writer = Writer {
        sending: sending.clone(),
        rx,
        queued,
        wire,
        blob_access,
        limits,
        credits,
        latency,
        closing: closing_rx,
        beats,
    };
    (outbox, writer)
}

/// Heartbeats of one stream: due every interval, numbered.
struct Beat {
    interval: tokio::time::Interval,
    seq: u64,
    last: LastBeat,
}

impl Beat {
    fn message(&mut self) -> CoordinatorMessage {
        self.seq += 1;
        *self.last.lock().expect("heartbeat lock") = Some((self.seq, Instant::now()));
        crate::messages::heartbeat(self.seq)
    }
}

/// Drains the queue onto the stream and sends heartbeats, until the stream or queue ends or
/// the outbox is closed.
pub(crate) async fn write_loop(mut w: Writer, self_tx: Outbox) {
    let period = w
        .sending
        .heartbeat
        .max(std::time::Duration::from_millis(10));
    let mut beat = Beat {
        interval: tokio::time::interval_at(tokio::time::Instant::now() + period, period),
        seq: 0,
        last: w.beats.clone(),
    };
    loop {
        let (item, queued) = tokio::select! {
            biased;
            // The stream has ended already (`Outbox::send` aborts it, dropping what it
            // holds): the input and the session go now.
            _ = closed(&w.closing) => return,
            m = w.rx.recv() => match m {
                Some(m) => (m, Some(Dequeued(w.queued.clone()))),
                None => return,
            },
            _ = beat.interval.tick() => (ToProver::Msg(beat.message()), None),
        };
        let open = match item {
            ToProver::Msg(m) => w.put(m).await,
            // Never queued (see `Outbox::send`).
            ToProver::Close(_) => true,
            ToProver::Dispatch(job, batch) => {
                let open = send_task(&w, &mut beat, (&job, &batch), &self_tx).await;
                if let Some(probe) = w.latency.as_ref().filter(|_| open) {
                    probe.task_sent();
                }
                open
            }
        };
        // Only once it is written: until then the core must not write around it.
        drop(queued);
        if !open {
            return;
        }
    }
}

/// Sends one task: its input inline, as a blob URL (large inputs, provers with blob access)
/// or in chunks, with heartbeats in between. Returns false when the stream is gone.
async fn send_task(
    w: &Writer,
    beat: &mut Beat,
    (job, batch): (&Job, &Batch),
    self_tx: &Outbox,
) -> bool {
    let lease = job.lease.as_ref().expect("dispatched job is leased");
    if w.blob_access && batch.input_size > w.limits.inline_input_max as u64 {
        // The prover reads it from the blob store itself and checks the digest.
        let url = Input::BlobUrl(w.sending.blobs.url(&batch.input_key));
        let task = crate::messages::execute_task(job, batch, batch.input_size as usize, url);
        return w.put(task).await;
    }
    // A slow blob read must not silence the stream either.
    let read = w.sending.inputs.get(batch);
    tokio::pin!(read);
    let read = loop {
        tokio::select! {
            biased;
            r = &mut read => break r,
            _ = closed(&w.closing) => return false,
            _ = beat.interval.tick() => {
                if !w.put(beat.message()).await {
                    return false;
                }
            }
        }
    };
    let input = match read {
        Ok(d) => d,
        Err(e) => {
            // The lease fails like any attempt: retried with backoff, then visible as failed.
            tracing::error!(key = %job.key, error = %e, "cannot read batch input");
            let verdict = Verdict::Failed(format!("coordinator could not read the input: {e}"));
            let key = (job.key.clone(), lease.token);
            w.sending
                .core
                .result(lease.prover.clone(), key, verdict, self_tx.clone())
                .await;
            return true;
        }
    };
    let chunked = input.len() > w.limits.inline_input_max;
    let how = if chunked {
        Input::Chunked(true)
    } else {
        Input::Inline(input.to_vec())
    };
    let task = crate::messages::execute_task(job, batch, input.len(), how);
    if !w.put(task).await {
        return false;
    }
    if !chunked {
        return true;
    }
    let task_id = TaskId::format(&job.key);
    let size = w.limits.chunk_bytes;
    let mut offset = 0;
    while offset < input.len() {
        // Wait for the stream to take an earlier chunk; beat meanwhile.
        loop {
            tokio::select! {
                biased;
                _ = beat.interval.tick() => {
                    if !w.put(beat.message()).await {
                        return false;
                    }
                }
                _ = closed(&w.closing) => return false,
                credit = w.credits.acquire() => match credit {
                    Ok(credit) => {
                        credit.forget();
                        break;
                    }
                    Err(_) => return false,
                },
            }
        }
        let end = (offset + size).min(input.len());
        let msg = crate::messages::input_chunk(
            &task_id,
            lease.token,
            offset,
            input.slice(offset..end).to_vec(),
            end == input.len(),
        );
        if !w.put(msg).await {
            return false;
        }
        offset = end;
    }
    true
}
