//! One coordinator connection: (re)connects with backoff, registers, runs tasks and keeps
//! their results until acknowledged.

use crate::backoff::Backoff;
use crate::input::ChunkAssembler;
use crate::{MAX_CHUNKED_INPUT_BYTES, Shared, SlotGuard, StatsInner, now_ms};
use proofmill_backend::{Backend, ProveRequest};
use proofmill_proto::v1::{
    Availability, ChunkedProof, CoordinatorMessage, DataChunk, ErrorCode, ExecuteTask,
    HeartbeatAck, ProverMessage, Reconnect, Register, RegisterResponse, ResultAck, RunningTask,
    TaskCancelled, TaskDeclined, TaskResult, coordinator_message, execute_task, prover_message,
    prover_service_client::ProverServiceClient, task_result,
};
use proofmill_types::{Digest, PublicValues};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::time::timeout;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;
use tonic::transport::{Channel, Endpoint};
use tracing::{debug, info, warn};

/// (task id, fencing token).
type Key = (String, u64);

/// A session that stayed registered this long resets the reconnect backoff.
const HEALTHY_SESSION: Duration = Duration::from_secs(1);
/// After a local shutdown, how long finished results may wait for their acknowledgement.
const LOCAL_SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(1);
/// Housekeeping period (deadlines, drain, silent coordinator).
const TICK: Duration = Duration::from_millis(200);
/// A coordinator silent for this many heartbeat intervals is considered gone.
const SILENT_HEARTBEATS: u32 = 4;
const MIN_SILENCE: Duration = Duration::from_secs(2);

/// Everything needed to prove a task once its input is here.
struct Prepared {
    task_id: String,
    token: u64,
    batch: u64,
    deadline_ms: u64,
    backend: Arc<dyn Backend>,
    expected: PublicValues,
    input_digest: Digest,
}

// At most `capacity` entries: the size difference does not matter.
#[allow(clippy::large_enum_variant)]
enum TaskState {
    /// Waiting for `input_chunk` messages. Holds its slot.
    Collecting {
        prepared: Prepared,
        input: ChunkAssembler,
        slot: SlotGuard,
    },
    /// On a blocking thread, which holds the slot. A cancelled task's result is discarded.
    Proving { cancelled: bool },
}

enum Outcome {
    Proof { bytes: Vec<u8>, digest: Digest },
    Error(String),
}

/// A finished result waiting for its `ResultAck`.
struct Finished {
    outcome: Outcome,
    prove_ms: u64,
}

/// Sent by a proving thread when it finishes.
struct Done {
    key: Key,
    finished: Finished,
}

enum SessionEnd {
    /// Stream closed, failed, or never opened: reconnect after backoff.
    Lost { registered_for: Option<Duration> },
    /// Registration refused; `operator` means only an operator can fix it (max backoff).
    Rejected { operator: bool },
    /// Coordinator shut us down or the prover is stopping: do not reconnect.
    Finished,
}

pub(crate) struct Conn {
    url: String,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    prover_id: Option<String>,
    tasks: HashMap<Key, TaskState>,
    outbox: BTreeMap<Key, Finished>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    backoff: Backoff,
}

/// State of one open, registered stream.
struct Session {
    out: mpsc::UnboundedSender<ProverMessage>,
    /// Proofs larger than this go as chunks of this size.
    chunk_size: usize,
    last_free_sent: Option<u32>,
    /// Set by the coordinator's `Shutdown` (grace deadline) or a local stop.
    draining: Option<Instant>,
    local_stop: bool,
    last_rx: Instant,
    silence_limit: Option<Duration>,
}

impl Session {
    fn send(&self, kind: prover_message::Kind) {
        // A failed send means the stream is gone; the read side notices and ends the session.
        let _ = self.out.send(ProverMessage { kind: Some(kind) });
    }

    fn send_availability(&mut self, free: u32) {
        let free = if self.draining.is_some() { 0 } else { free };
        if self.last_free_sent != Some(free) {
            self.last_free_sent = Some(free);
            debug!(free_slots = free, "availability");
            self.send(prover_message::Kind::Availability(Availability {
                free_slots: free,
            }));
        }
    }

    fn send_result(&self, key: &Key, f: &Finished) {
        let (task_id, token) = key;
        let outcome = match &f.outcome {
            Outcome::Error(e) => task_result::Outcome::Error(e.clone()),
            Outcome::Proof { bytes, digest } if bytes.len() > self.chunk_size => {
                let n = bytes.len().div_ceil(self.chunk_size);
                for (i, chunk) in bytes.chunks(self.chunk_size).enumerate() {
                    self.send(prover_message::Kind::ProofChunk(DataChunk {
                        task_id: task_id.clone(),
                        fencing_token: *token,
                        offset: (i * self.chunk_size) as u64,
                        data: chunk.to_vec(),
                        last: i + 1 == n,
                    }));
                }
                task_result::Outcome::ProofChunked(ChunkedProof {
                    size: bytes.len() as u64,
                    digest: digest.0.to_vec(),
                })
            }
            Outcome::Proof { bytes, .. } => task_result::Outcome::Proof(bytes.clone()),
        };
        self.send(prover_message::Kind::TaskResult(TaskResult {
            task_id: task_id.clone(),
            fencing_token: *token,
            outcome: Some(outcome),
            prove_ms: f.prove_ms,
        }));
    }
}

/// Counts a live registered stream in the stats while it exists.
struct ConnectedGuard(Arc<Shared>);

impl ConnectedGuard {
    fn new(shared: Arc<Shared>) -> Self {
        shared.stats.connected.fetch_add(1, Ordering::Relaxed);
        ConnectedGuard(shared)
    }
}

impl Drop for ConnectedGuard {
    fn drop(&mut self) {
        self.0.stats.connected.fetch_sub(1, Ordering::Relaxed);
    }
}

fn code_name(code: i32) -> &'static str {
    ErrorCode::try_from(code)
        .map(|c| c.as_str_name())
        .unwrap_or("UNKNOWN_CODE")
}

async fn wait_stop(stop: &mut watch::Receiver<bool>) {
    // A dropped sender (the `run` future was dropped) also means stop.
    let _ = stop.wait_for(|s| *s).await;
}

impl Conn {
    pub fn new(url: String, shared: Arc<Shared>, stop: watch::Receiver<bool>) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let backoff = Backoff::new(shared.reconnect_min, shared.reconnect_max);
        Conn {
            url,
            shared,
            stop,
            prover_id: None,
            tasks: HashMap::new(),
            outbox: BTreeMap::new(),
            done_tx,
            done_rx,
            backoff,
        }
    }

    pub async fn run(mut self) {
        let mut stop = self.stop.clone();
        loop {
            if *stop.borrow() || stop.has_changed().is_err() {
                break;
            }
            let delay = match self.session().await {
                SessionEnd::Finished => break,
                SessionEnd::Rejected { operator: true } => self.backoff.max_delay(),
                SessionEnd::Rejected { operator: false } => self.backoff.next_delay(),
                SessionEnd::Lost { registered_for } => {
                    if registered_for.is_some_and(|d| d >= HEALTHY_SESSION) {
                        self.backoff.reset();
                    }
                    self.backoff.next_delay()
                }
            };
            // Inputs being streamed cannot resume on a new stream: give their slots back.
            // The coordinator does not see them in `Reconnect.running` and requeues them.
            self.tasks
                .retain(|_, t| matches!(t, TaskState::Proving { .. }));
            debug!(?delay, "reconnecting after backoff");
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = wait_stop(&mut stop) => {
                        self.abandon("prover stopping");
                        return;
                    }
                    Some(done) = self.done_rx.recv() => { self.on_done(done); }
                }
            }
        }
        self.abandon("connection closed");
    }

    fn abandon(&mut self, why: &str) {
        let running = self
            .tasks
            .values()
            .filter(|t| matches!(t, TaskState::Proving { cancelled: false }))
            .count();
        if running > 0 || !self.outbox.is_empty() {
            warn!(
                running,
                unacknowledged = self.outbox.len(),
                "{why}: abandoning running tasks and unacknowledged results"
            );
        } else {
            info!("{why}");
        }
        self.tasks.clear();
        self.outbox.clear();
    }

    fn register_msg(&self) -> Register {
        Register {
            name: self.shared.name.clone(),
            proof_types: self.shared.proof_types.clone(),
            compute_capacity: self.shared.capacity,
            version: self.shared.version.clone(),
            token: self.shared.token.clone(),
            blob_access: false,
        }
    }

    /// Tasks the coordinator should consider ours: running (not cancelled) and finished but
    /// unacknowledged.
    fn running_list(&self) -> Vec<RunningTask> {
        let mut keys: Vec<&Key> = self
            .tasks
            .iter()
            .filter(|(_, t)| !matches!(t, TaskState::Proving { cancelled: true }))
            .map(|(k, _)| k)
            .chain(self.outbox.keys())
            .collect();
        keys.sort();
        keys.dedup();
        keys.into_iter()
            .map(|(id, token)| RunningTask {
                task_id: id.clone(),
                fencing_token: *token,
            })
            .collect()
    }

    async fn open(
        &self,
        out_rx: mpsc::UnboundedReceiver<ProverMessage>,
    ) -> Result<(ProverServiceClient<Channel>, Streaming<CoordinatorMessage>), String> {
        let t = self.shared.connect_timeout;
        let endpoint = Endpoint::from_shared(self.url.clone())
            .map_err(|e| format!("invalid URL: {e}"))?
            .connect_timeout(t)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let channel = timeout(t, endpoint.connect())
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| format!("connect failed: {e}"))?;
        let mut client = ProverServiceClient::new(channel)
            .max_decoding_message_size(self.shared.max_message_bytes)
            .max_encoding_message_size(self.shared.max_message_bytes);
        let resp = timeout(
            t,
            client.prover_stream(UnboundedReceiverStream::new(out_rx)),
        )
        .await
        .map_err(|_| "opening the stream timed out".to_string())?
        .map_err(|s| {
            format!(
                "opening the stream failed: {} ({:?})",
                s.message(),
                s.code()
            )
        })?;
        Ok((client, resp.into_inner()))
    }

    async fn session(&mut self) -> SessionEnd {
        StatsInner::inc(&self.shared.stats.connect_attempts);
        while let Ok(done) = self.done_rx.try_recv() {
            self.on_done(done);
        }
        let register = self.register_msg();
        let hello = match &self.prover_id {
            None => prover_message::Kind::Register(register),
            Some(id) => prover_message::Kind::Reconnect(Reconnect {
                prover_id: id.clone(),
                register: Some(register),
                running: self.running_list(),
            }),
        };
        let reconnecting = self.prover_id.is_some();
        let (out_tx, out_rx) = mpsc::unbounded_channel();
        let _ = out_tx.send(ProverMessage { kind: Some(hello) });

        let mut stop = self.stop.clone();
        let opened = tokio::select! {
            r = self.open(out_rx) => r,
            _ = wait_stop(&mut stop) => return SessionEnd::Finished,
        };
        let (_client, mut inbound) = match opened {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "coordinator unreachable");
                return SessionEnd::Lost {
                    registered_for: None,
                };
            }
        };
        let first = tokio::select! {
            r = timeout(self.shared.connect_timeout, inbound.message()) => r,
            _ = wait_stop(&mut stop) => return SessionEnd::Finished,
        };
        let resp: RegisterResponse = match first {
            Err(_) => {
                warn!("no RegisterResponse in time");
                return SessionEnd::Lost {
                    registered_for: None,
                };
            }
            Ok(Err(status)) => {
                warn!(code = ?status.code(), message = %status.message(), "stream failed before registration");
                return SessionEnd::Lost {
                    registered_for: None,
                };
            }
            Ok(Ok(None)) => {
                warn!("stream closed before registration");
                return SessionEnd::Lost {
                    registered_for: None,
                };
            }
            Ok(Ok(Some(CoordinatorMessage {
                kind: Some(coordinator_message::Kind::RegisterResponse(r)),
            }))) => r,
            Ok(Ok(Some(other))) => {
                warn!(message = ?other.kind.map(|k| kind_name(&k)), "expected RegisterResponse first");
                return SessionEnd::Lost {
                    registered_for: None,
                };
            }
        };
        if !resp.accepted {
            let operator = matches!(
                ErrorCode::try_from(resp.code),
                Ok(ErrorCode::Unauthenticated
                    | ErrorCode::VersionMismatch
                    | ErrorCode::ProofTypeNotNeeded
                    | ErrorCode::InvalidArgument)
            );
            warn!(code = code_name(resp.code), reason = %resp.reason, "registration rejected");
            return SessionEnd::Rejected { operator };
        }
        if !resp.prover_id.is_empty() {
            self.prover_id = Some(resp.prover_id.clone());
        }
        info!(
            prover_id = %resp.prover_id,
            reconnect = reconnecting,
            resending = self.outbox.len(),
            heartbeat_ms = resp.heartbeat_interval_ms,
            "registered with coordinator"
        );
        let registered_at = Instant::now();
        let _connected = ConnectedGuard::new(self.shared.clone());

        let mut limit = self.shared.max_message_bytes;
        if resp.max_message_bytes > 0 {
            limit = limit.min(resp.max_message_bytes as usize);
        }
        let silence_limit = (resp.heartbeat_interval_ms > 0).then(|| {
            (Duration::from_millis(resp.heartbeat_interval_ms as u64) * SILENT_HEARTBEATS)
                .max(MIN_SILENCE)
        });
        let mut s = Session {
            out: out_tx,
            chunk_size: (limit / 2).max(1024),
            last_free_sent: None,
            draining: None,
            local_stop: false,
            last_rx: Instant::now(),
            silence_limit,
        };
        let mut running_rx = self.shared.subscribe_running();
        running_rx.borrow_and_update();
        s.send_availability(self.shared.free_slots());
        for (key, f) in &self.outbox {
            s.send_result(key, f);
        }

        let lost = |why: &str| {
            warn!("{why}; will reconnect");
            SessionEnd::Lost {
                registered_for: Some(registered_at.elapsed()),
            }
        };
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(end) = self.check_drain(&s) {
                return end;
            }
            // Biased: a finished result is sent before the Availability its freed slot
            // triggers (the proving thread reports before releasing the slot); both are
            // bounded by the capacity, so they cannot starve the inbound stream.
            tokio::select! {
                biased;
                _ = wait_stop(&mut stop), if !s.local_stop => {
                    info!("prover stopping: declining new tasks, waiting briefly for acks");
                    s.local_stop = true;
                    s.draining = Some(Instant::now() + LOCAL_SHUTDOWN_ACK_WAIT);
                    s.send_availability(0);
                }
                Some(done) = self.done_rx.recv() => {
                    if let Some(key) = self.on_done(done) {
                        s.send_result(&key, &self.outbox[&key]);
                    }
                }
                r = running_rx.changed() => {
                    if r.is_ok() {
                        s.send_availability(self.shared.free_slots());
                    }
                }
                m = inbound.message() => match m {
                    Ok(Some(m)) => {
                        s.last_rx = Instant::now();
                        if let Some(kind) = m.kind {
                            self.on_message(&mut s, kind);
                        }
                    }
                    Ok(None) => {
                        if s.draining.is_some() {
                            info!("coordinator closed the stream during shutdown");
                            return SessionEnd::Finished;
                        }
                        return lost("coordinator closed the stream");
                    }
                    Err(status) => {
                        if s.draining.is_some() {
                            info!(code = ?status.code(), "stream ended during shutdown");
                            return SessionEnd::Finished;
                        }
                        return lost(&format!("stream failed: {} ({:?})", status.message(), status.code()));
                    }
                },
                _ = tick.tick() => {
                    if let Some(limit) = s.silence_limit
                        && s.last_rx.elapsed() > limit
                    {
                        if s.draining.is_some() {
                            return SessionEnd::Finished;
                        }
                        return lost(&format!("coordinator silent for {:?}", s.last_rx.elapsed()));
                    }
                    self.expire_inputs(&s);
                }
            }
        }
    }

    /// Ends a draining session once nothing is left to deliver or the grace period is over.
    fn check_drain(&mut self, s: &Session) -> Option<SessionEnd> {
        let deadline = s.draining?;
        let busy = !s.local_stop
            && self
                .tasks
                .values()
                .any(|t| !matches!(t, TaskState::Proving { cancelled: true }));
        if !busy && self.outbox.is_empty() {
            info!("shutdown complete; closing the stream");
            return Some(SessionEnd::Finished);
        }
        if Instant::now() >= deadline {
            let running = self
                .tasks
                .values()
                .filter(|t| !matches!(t, TaskState::Proving { cancelled: true }))
                .count();
            warn!(
                running,
                unacknowledged = self.outbox.len(),
                "shutdown grace over; abandoning the rest"
            );
            return Some(SessionEnd::Finished);
        }
        None
    }

    fn on_message(&mut self, s: &mut Session, kind: coordinator_message::Kind) {
        use coordinator_message::Kind;
        match kind {
            Kind::ExecuteTask(t) => self.on_execute(s, t),
            Kind::InputChunk(c) => self.on_chunk(s, c),
            Kind::Heartbeat(h) => {
                s.send(prover_message::Kind::HeartbeatAck(HeartbeatAck {
                    seq: h.seq,
                    running: self.running_list(),
                }));
            }
            Kind::ResultAck(a) => self.on_ack(a),
            Kind::TaskCancelled(c) => self.on_cancel(c),
            Kind::Shutdown(sd) => {
                info!(reason = %sd.reason, grace_ms = sd.grace_ms, "coordinator asked us to shut down");
                let until = Instant::now() + Duration::from_millis(sd.grace_ms as u64);
                s.draining = Some(s.draining.map_or(until, |d| d.min(until)));
                s.send_availability(0);
            }
            Kind::RegisterResponse(_) => debug!("ignoring a second RegisterResponse"),
        }
    }

    fn decline(&self, s: &Session, key: &Key, reason: &str) {
        info!(task = %key.0, token = key.1, reason, "task declined");
        StatsInner::inc(&self.shared.stats.declined);
        s.send(prover_message::Kind::TaskDeclined(TaskDeclined {
            task_id: key.0.clone(),
            fencing_token: key.1,
            reason: reason.to_string(),
        }));
    }

    /// Records an error result (no proving happened) and sends it.
    fn fail(&mut self, s: &Session, key: Key, error: String) {
        warn!(task = %key.0, token = key.1, error = %error, "task failed");
        StatsInner::inc(&self.shared.stats.failed);
        let f = Finished {
            outcome: Outcome::Error(error),
            prove_ms: 0,
        };
        s.send_result(&key, &f);
        self.outbox.insert(key, f);
    }

    fn on_execute(&mut self, s: &mut Session, t: ExecuteTask) {
        let key: Key = (t.task_id.clone(), t.fencing_token);
        if self.tasks.contains_key(&key) {
            debug!(task = %t.task_id, "duplicate ExecuteTask for a running task; ignoring");
            return;
        }
        if let Some(f) = self.outbox.get(&key) {
            debug!(task = %t.task_id, "ExecuteTask for a finished task; resending its result");
            s.send_result(&key, f);
            return;
        }
        if s.draining.is_some() {
            return self.decline(s, &key, "prover is shutting down");
        }
        let Some(backend) = self.shared.backends.get(&t.proof_type).cloned() else {
            return self.decline(
                s,
                &key,
                &format!("proof type {:?} not served", t.proof_type),
            );
        };
        if !t.version.is_empty() && t.version != self.shared.version {
            let reason = format!(
                "version {:?} differs from the prover's {:?}",
                t.version, self.shared.version
            );
            return self.decline(s, &key, &reason);
        }
        if t.deadline_ms != 0 && now_ms() >= t.deadline_ms {
            return self.decline(s, &key, "deadline already passed");
        }
        let Some(expected) = PublicValues::decode(&t.public_values) else {
            let e = format!(
                "public_values must be {} bytes, got {}",
                PublicValues::ENCODED_LEN,
                t.public_values.len()
            );
            return self.fail(s, key, e);
        };
        let Some(input_digest) = Digest::from_slice(&t.input_digest) else {
            let e = format!(
                "input_digest must be 32 bytes, got {}",
                t.input_digest.len()
            );
            return self.fail(s, key, e);
        };
        let prepared = Prepared {
            task_id: t.task_id.clone(),
            token: t.fencing_token,
            batch: t.batch,
            deadline_ms: t.deadline_ms,
            backend,
            expected,
            input_digest,
        };
        match t.input {
            None => self.fail(s, key, "task has no input".to_string()),
            Some(execute_task::Input::BlobUrl(url)) => {
                let e = format!("blob_url inputs are not supported (blob_access=false): {url}");
                self.fail(s, key, e)
            }
            Some(execute_task::Input::Inline(bytes)) => {
                if t.input_size != 0 && t.input_size != bytes.len() as u64 {
                    let e = format!(
                        "inline input is {} bytes, input_size says {}",
                        bytes.len(),
                        t.input_size
                    );
                    return self.fail(s, key, e);
                }
                let Some(slot) = self.shared.try_acquire() else {
                    return self.decline(s, &key, "no free slot");
                };
                self.start(prepared, bytes, slot);
            }
            Some(execute_task::Input::Chunked(_)) => {
                if t.input_size > MAX_CHUNKED_INPUT_BYTES {
                    let e = format!(
                        "input_size {} exceeds the limit {MAX_CHUNKED_INPUT_BYTES}",
                        t.input_size
                    );
                    return self.fail(s, key, e);
                }
                let Some(slot) = self.shared.try_acquire() else {
                    return self.decline(s, &key, "no free slot");
                };
                info!(task = %t.task_id, token = t.fencing_token, size = t.input_size, "receiving chunked input");
                let input = ChunkAssembler::new(t.input_size);
                self.tasks.insert(
                    key,
                    TaskState::Collecting {
                        prepared,
                        input,
                        slot,
                    },
                );
            }
        }
    }

    fn on_chunk(&mut self, s: &mut Session, c: DataChunk) {
        let key: Key = (c.task_id.clone(), c.fencing_token);
        let Some(TaskState::Collecting { input, .. }) = self.tasks.get_mut(&key) else {
            debug!(task = %c.task_id, token = c.fencing_token, "input chunk for no pending input; ignoring");
            return;
        };
        match input.push(c.offset, c.data, c.last) {
            Ok(false) => {}
            Ok(true) => {
                let Some(TaskState::Collecting {
                    prepared,
                    input,
                    slot,
                }) = self.tasks.remove(&key)
                else {
                    unreachable!("checked above")
                };
                if prepared.deadline_ms != 0 && now_ms() >= prepared.deadline_ms {
                    drop(slot);
                    return self.decline(s, &key, "deadline passed while receiving the input");
                }
                self.start(prepared, input.into_bytes(), slot);
            }
            Err(e) => {
                self.tasks.remove(&key);
                self.fail(s, key, format!("bad input chunk: {e}"));
            }
        }
    }

    /// Drops inputs still incomplete at their deadline; reports an error result for them.
    fn expire_inputs(&mut self, s: &Session) {
        let now = now_ms();
        let expired: Vec<Key> = self
            .tasks
            .iter()
            .filter(|(_, t)| {
                matches!(t, TaskState::Collecting { prepared, .. }
                    if prepared.deadline_ms != 0 && now >= prepared.deadline_ms)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            let received = match self.tasks.remove(&key) {
                Some(TaskState::Collecting { input, .. }) => input.received(),
                _ => 0,
            };
            self.fail(
                s,
                key,
                format!("input incomplete at the deadline ({received} bytes received)"),
            );
        }
    }

    /// Runs the task on a blocking thread, which verifies the input digest, proves, hashes
    /// the proof and reports back through `done_tx`. The slot is freed when the thread ends.
    fn start(&mut self, p: Prepared, input: Vec<u8>, slot: SlotGuard) {
        let key: Key = (p.task_id.clone(), p.token);
        info!(
            task = %p.task_id,
            token = p.token,
            backend = p.backend.name(),
            input_bytes = input.len(),
            "task started"
        );
        self.tasks
            .insert(key.clone(), TaskState::Proving { cancelled: false });
        let done_tx = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            let started = Instant::now();
            let outcome = prove(&p, &input);
            let prove_ms = started.elapsed().as_millis() as u64;
            drop(input);
            // Sent before the slot is released, so the result is on its way first.
            let _ = done_tx.send(Done {
                key,
                finished: Finished { outcome, prove_ms },
            });
        });
    }

    /// A proving thread finished. Returns the key when a result went into the outbox.
    fn on_done(&mut self, done: Done) -> Option<Key> {
        let Done { key, finished } = done;
        match self.tasks.get(&key) {
            Some(TaskState::Proving { cancelled: false }) => {
                self.tasks.remove(&key);
            }
            Some(TaskState::Proving { cancelled: true }) => {
                self.tasks.remove(&key);
                info!(task = %key.0, token = key.1, "cancelled task finished; result discarded");
                return None;
            }
            _ => {
                debug!(task = %key.0, token = key.1, "result for a task no longer tracked; discarded");
                return None;
            }
        }
        match &finished.outcome {
            Outcome::Proof { bytes, .. } => {
                StatsInner::inc(&self.shared.stats.completed);
                info!(task = %key.0, token = key.1, prove_ms = finished.prove_ms, proof_bytes = bytes.len(), "task proven");
            }
            Outcome::Error(e) => {
                StatsInner::inc(&self.shared.stats.failed);
                warn!(task = %key.0, token = key.1, prove_ms = finished.prove_ms, error = %e, "task failed");
            }
        }
        self.outbox.insert(key.clone(), finished);
        Some(key)
    }

    fn on_ack(&mut self, a: ResultAck) {
        let key: Key = (a.task_id, a.fencing_token);
        if self.outbox.remove(&key).is_none() {
            debug!(task = %key.0, token = key.1, "ack for no pending result");
            return;
        }
        if a.accepted {
            StatsInner::inc(&self.shared.stats.acked);
            info!(task = %key.0, token = key.1, "result acknowledged");
        } else {
            StatsInner::inc(&self.shared.stats.rejected);
            warn!(
                task = %key.0,
                token = key.1,
                code = code_name(a.code),
                reason = %a.reason,
                "result rejected by the coordinator; dropped"
            );
        }
    }

    fn on_cancel(&mut self, c: TaskCancelled) {
        let key: Key = (c.task_id, c.fencing_token);
        let known = match self.tasks.get_mut(&key) {
            Some(TaskState::Collecting { .. }) => {
                self.tasks.remove(&key);
                true
            }
            Some(TaskState::Proving { cancelled }) => {
                let first = !*cancelled;
                *cancelled = true;
                first
            }
            None => self.outbox.remove(&key).is_some(),
        };
        if known {
            StatsInner::inc(&self.shared.stats.cancelled);
            info!(task = %key.0, token = key.1, reason = %c.reason, "task cancelled");
        } else {
            debug!(task = %key.0, token = key.1, "cancel for an unknown task");
        }
    }
}

/// Blocking: digest check, prove, proof digest.
fn prove(p: &Prepared, input: &[u8]) -> Outcome {
    let actual = Digest::sha256(input);
    if actual != p.input_digest {
        return Outcome::Error(format!(
            "input digest mismatch: expected {}, got {actual} ({} bytes)",
            p.input_digest,
            input.len()
        ));
    }
    let req = ProveRequest {
        batch: p.batch,
        input,
        expected: p.expected,
    };
    let backend = p.backend.clone();
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| backend.prove(&req))) {
        Ok(Ok(bytes)) => {
            let digest = Digest::sha256(&bytes);
            Outcome::Proof { bytes, digest }
        }
        Ok(Err(e)) => Outcome::Error(e.to_string()),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Outcome::Error(format!("backend panicked: {msg}"))
        }
    }
}

fn kind_name(k: &coordinator_message::Kind) -> &'static str {
    use coordinator_message::Kind;
    match k {
        Kind::RegisterResponse(_) => "RegisterResponse",
        Kind::ExecuteTask(_) => "ExecuteTask",
        Kind::Heartbeat(_) => "Heartbeat",
        Kind::TaskCancelled(_) => "TaskCancelled",
        Kind::Shutdown(_) => "Shutdown",
        Kind::InputChunk(_) => "InputChunk",
        Kind::ResultAck(_) => "ResultAck",
    }
}
