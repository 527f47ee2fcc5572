//! One coordinator connection: (re)connects with backoff, registers, runs tasks and keeps
//! their results until acknowledged.

use crate::backoff::Backoff;
use crate::input::ChunkAssembler;
use crate::state::CoordinatorState;
use crate::{BlobReader, MAX_CHUNKED_INPUT_BYTES, Shared, SlotGuard, StatsInner, now_ms};
use proofmill_backend::{Backend, Cancel, ProveRequest};
use proofmill_proto::v1::{
    CoordinatorMessage, DataChunk, ErrorCode, ExecuteTask, HeartbeatAck, ProverMessage, Reconnect,
    RegisterResponse, ResultAck, TaskCancelled, TaskDeclined, coordinator_message, execute_task,
    prover_message, prover_service_client::ProverServiceClient,
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

mod group;
mod hello;
mod session;
mod tasks;

pub(crate) use group::Groups;
use group::same_url;

use session::Session;

/// (task id, fencing token).
pub(crate) type Key = (String, u64);

/// Delay before asking again after a standby's refusal, or before trying the next URL of a
/// group: a takeover takes a few seconds, and provers should find the new active one soon.
const FAILOVER_RETRY: Duration = Duration::from_millis(250);
/// Longest delay between two attempts while a connection has several URLs.
const FAILOVER_MAX_DELAY: Duration = Duration::from_secs(1);

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
    /// On a blocking thread, which holds the slot. A cancelled task's result is discarded;
    /// `cancel` asks the backend to stop early (at a TaskCancelled).
    Proving { cancelled: bool, cancel: Cancel },
}

pub(crate) enum Outcome {
    Proof { bytes: Vec<u8>, digest: Digest },
    Error(String),
}

/// A finished result waiting for its `ResultAck`.
pub(crate) struct Finished {
    pub outcome: Outcome,
    pub prove_ms: u64,
    /// Set when the coordinator could not take the result for a passing reason
    /// (`SYSTEM_UNAVAILABLE`, `INTERNAL`): when to send it again on the open stream.
    resend: Option<tasks::Resend>,
}

/// Sent by a proving thread when it finishes.
struct Done {
    key: Key,
    finished: Finished,
    /// Released by the connection right after it sends the result: a coordinator that
    /// answers the result with a new task then always finds the slot free, and the
    /// Availability the release triggers still follows the result.
    slot: SlotGuard,
}

/// Why a stream could not be opened.
enum OpenError {
    Failed(String),
    /// A standby coordinator refused it, naming the active one.
    Standby {
        active: String,
        message: String,
    },
}

enum SessionEnd {
    /// Stream closed, failed, or never opened: reconnect after backoff.
    Lost { registered_for: Option<Duration> },
    /// Registration refused; `operator` means only an operator can fix it (max backoff).
    Rejected { operator: bool },
    /// Refused by a standby coordinator, which named the active one's URL.
    Standby { active: String },
    /// The prover is stopping (or was told to stop serving this coordinator): do not
    /// reconnect.
    Finished,
    /// The coordinator shut down and we drained: come back when it is up again.
    Drained,
}

pub(crate) struct Conn {
    /// The URLs of one coordinator group (see [`group`]): the first one it was given, and
    /// those handed over by connections to its standbys.
    urls: Vec<String>,
    /// Which of `urls` it connects to.
    at: usize,
    groups: Arc<Groups>,
    handed_over: mpsc::UnboundedReceiver<String>,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
    prover_id: Option<String>,
    /// The `reconnect_secret` issued with `prover_id`.
    reconnect_secret: String,
    /// Where the id and unacknowledged results are kept across restarts, if anywhere.
    state: Option<CoordinatorState>,
    tasks: HashMap<Key, TaskState>,
    outbox: BTreeMap<Key, Finished>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    backoff: Backoff,
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
    /// A connection to `url`; with `state`, it comes back as the prover the last process
    /// was, with the results that process finished and never had acknowledged.
    pub fn new(
        url: String,
        groups: Arc<Groups>,
        shared: Arc<Shared>,
        stop: watch::Receiver<bool>,
        state: Option<CoordinatorState>,
    ) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let backoff = Backoff::new(shared.reconnect_min, shared.reconnect_max);
        let (prover_id, reconnect_secret) = match state.as_ref().and_then(|s| s.identity()) {
            Some((id, secret)) => (Some(id), secret),
            None => (None, String::new()),
        };
        let outbox: BTreeMap<Key, Finished> = state
            .as_ref()
            .map(|s| s.results().into_iter().collect())
            .unwrap_or_default();
        if prover_id.is_some() || !outbox.is_empty() {
            info!(
                prover_id = prover_id.as_deref().unwrap_or(""),
                results = outbox.len(),
                "resuming from the state dir"
            );
        }
        let handed_over = groups.join(&url);
        Conn {
            urls: vec![url],
            at: 0,
            groups,
            handed_over,
            shared,
            stop,
            prover_id,
            reconnect_secret,
            state,
            tasks: HashMap::new(),
            outbox,
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
                SessionEnd::Standby { active } => match self.follow(&active) {
                    Some(delay) => delay,
                    None => {
                        self.groups.leave(&self.urls[0]);
                        return;
                    }
                },
                SessionEnd::Drained => {
                    self.backoff.reset();
                    self.backoff.next_delay()
                }
                SessionEnd::Rejected { operator: true } => self.backoff.max_delay(),
                SessionEnd::Rejected { operator: false } => self.backoff.next_delay(),
                SessionEnd::Lost { registered_for } => {
                    if registered_for.is_some_and(|d| d >= HEALTHY_SESSION) {
                        self.backoff.reset();
                    }
                    self.take_handed_over();
                    if self.urls.len() > 1 {
                        // The coordinator may have died: its standby takes over soon.
                        self.at = (self.at + 1) % self.urls.len();
                        self.backoff.next_delay().min(FAILOVER_MAX_DELAY)
                    } else {
                        self.backoff.next_delay()
                    }
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
        self.groups.leave(&self.urls[0]);
        self.abandon("connection closed");
    }

    fn url(&self) -> &str {
        &self.urls[self.at]
    }

    fn take_handed_over(&mut self) {
        while let Ok(url) = self.handed_over.try_recv() {
            if !self.urls.iter().any(|u| same_url(u, &url)) {
                info!(%url, "standby of this coordinator: failing over there when it takes over");
                self.urls.push(url);
            }
        }
    }

    /// After a standby named `active`: the delay before connecting again (to `active` when
    /// it is one of this connection's URLs), or `None` when this connection, holding
    /// nothing, handed its URLs to the connection to `active` and ends.
    fn follow(&mut self, active: &str) -> Option<Duration> {
        self.take_handed_over();
        if let Some(i) = self.urls.iter().position(|u| same_url(u, active)) {
            if i != self.at {
                info!(standby = %self.url(), %active, "following the active coordinator");
                self.at = i;
            }
            return Some(FAILOVER_RETRY);
        }
        let holds_nothing = self.tasks.is_empty() && self.outbox.is_empty();
        if holds_nothing && self.groups.hand_over(active, &self.urls) {
            info!(standby = %self.url(), %active, "a standby of another coordinator given: its connection takes this URL over");
            return None;
        }
        Some(FAILOVER_RETRY.max(self.backoff.next_delay().min(FAILOVER_MAX_DELAY)))
    }

    fn abandon(&mut self, why: &str) {
        let running = self
            .tasks
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

    async fn open(
        &self,
        out_rx: mpsc::UnboundedReceiver<ProverMessage>,
    ) -> Result<(ProverServiceClient<Channel>, Streaming<CoordinatorMessage>), OpenError> {
        let t = self.shared.connect_timeout;
        let endpoint = Endpoint::from_shared(self.url().to_string())
            .map_err(|e| OpenError::Failed(format!("invalid URL: {e}")))?
            .connect_timeout(t)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let channel = timeout(t, endpoint.connect())
            .await
            .map_err(|_| OpenError::Failed("connect timed out".into()))?
            .map_err(|e| OpenError::Failed(format!("connect failed: {e}")))?;
        let mut client = ProverServiceClient::new(channel)
            .max_decoding_message_size(self.shared.max_message_bytes)
            .max_encoding_message_size(self.shared.max_message_bytes);
        let resp = timeout(
            t,
            client.prover_stream(UnboundedReceiverStream::new(out_rx)),
        )
        .await
        .map_err(|_| OpenError::Failed("opening the stream timed out".into()))?
        .map_err(|s| {
            let active = s
                .metadata()
                .get(proofmill_proto::ACTIVE_URL_HEADER)
                .and_then(|v| v.to_str().ok());
            match active {
                Some(active) if s.code() == tonic::Code::Unavailable => OpenError::Standby {
                    active: active.to_string(),
                    message: s.message().to_string(),
                },
                _ => OpenError::Failed(format!(
                    "opening the stream failed: {} ({:?})",
                    s.message(),
                    s.code()
                )),
            }
        })?;
        Ok((client, resp.into_inner()))
    }

    /// Records a finished task and sends its result on the open session.
    fn forward_done(&mut self, s: &Session, done: Done) {
        if let Some((key, _slot)) = self.on_done(done) {
            s.send_result(&key, &self.outbox[&key]);
        }
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
                secret: self.reconnect_secret.clone(),
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
            Err(OpenError::Standby { active, message }) => {
                debug!(%message, "refused by a standby coordinator");
                return SessionEnd::Standby { active };
            }
            Err(OpenError::Failed(e)) => {
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
        if !resp.accepted && resp.code == ErrorCode::ReconnectRefused as i32 {
            // The coordinator does not know this id (another store) or its secret: become
            // a new prover, without the old id's work, which it would refuse.
            warn!(reason = %resp.reason, "reconnect refused; registering anew");
            self.abandon_all("reconnect refused");
            self.prover_id = None;
            self.reconnect_secret.clear();
            if let Some(state) = &self.state {
                state.forget_identity();
            }
            return SessionEnd::Rejected { operator: false };
        }
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
            if let Some(state) = &self.state
                && (self.prover_id.as_ref() != Some(&resp.prover_id)
                    || self.reconnect_secret != resp.reconnect_secret)
            {
                state.save_identity(&resp.prover_id, &resp.reconnect_secret);
            }
            self.prover_id = Some(resp.prover_id.clone());
            self.reconnect_secret = resp.reconnect_secret.clone();
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
            // triggers (the slot is released once the result is sent); both are
            // bounded by the capacity, so they cannot starve the inbound stream. The
            // Availability branch also drains results first: the slot count it reads may
            // include a release whose report arrived after `done_rx` was polled.
            tokio::select! {
                biased;
                _ = wait_stop(&mut stop), if !s.local_stop => {
                    info!("prover stopping: declining new tasks, waiting briefly for acks");
                    s.local_stop = true;
                    s.draining = Some(Instant::now() + LOCAL_SHUTDOWN_ACK_WAIT);
                    s.send_availability(0);
                }
                Some(done) = self.done_rx.recv() => self.forward_done(&s, done),
                r = running_rx.changed() => {
                    if r.is_ok() {
                        let free = self.shared.free_slots();
                        while let Ok(done) = self.done_rx.try_recv() {
                            self.forward_done(&s, done);
                        }
                        s.send_availability(free);
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
                            return self.drained(&s);
                        }
                        return lost("coordinator closed the stream");
                    }
                    Err(status) => {
                        if s.draining.is_some() {
                            info!(code = ?status.code(), "stream ended during shutdown");
                            return self.drained(&s);
                        }
                        return lost(&format!("stream failed: {} ({:?})", status.message(), status.code()));
                    }
                },
                _ = tick.tick() => {
                    if let Some(limit) = s.silence_limit
                        && s.last_rx.elapsed() > limit
                    {
                        if s.draining.is_some() {
                            return self.drained(&s);
                        }
                        return lost(&format!("coordinator silent for {:?}", s.last_rx.elapsed()));
                    }
                    self.expire_inputs(&s);
                    self.resend_due(&s);
                }
            }
        }
    }

    /// Ends a draining session once nothing is left to deliver or the grace period is over.
    fn check_drain(&mut self, s: &Session) -> Option<SessionEnd> {
        let deadline = s.draining?;
        let busy = !s.local_stop
            && self.tasks.values().any(|t| {
                !matches!(
                    t,
                    TaskState::Proving {
                        cancelled: true,
                        ..
                    }
                )
            });
        if !busy && self.outbox.is_empty() {
            info!("shutdown complete; closing the stream");
            return Some(self.drained(s));
        }
        if Instant::now() >= deadline {
            let running = self
                .tasks
                .values()
                .filter(|t| {
                    !matches!(
                        t,
                        TaskState::Proving {
                            cancelled: true,
                            ..
                        }
                    )
                })
                .count();
            warn!(
                running,
                unacknowledged = self.outbox.len(),
                "shutdown grace over; closing the stream"
            );
            return Some(self.drained(s));
        }
        None
    }

    /// How a drained session ends: a local stop (or `exit_on_shutdown`) ends this
    /// connection; a coordinator's shutdown is waited out. Tasks still proving keep running
    /// and their results go to the coordinator once it is back.
    fn drained(&self, s: &Session) -> SessionEnd {
        if s.local_stop || self.shared.exit_on_shutdown {
            SessionEnd::Finished
        } else {
            info!("coordinator shut down; reconnecting when it is back");
            SessionEnd::Drained
        }
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
            Kind::Unsupported(u) => {
                warn!(reason = %u.reason.escape_debug(), "the coordinator did not understand a message")
            }
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
        Kind::Unsupported(_) => "Unsupported",
    }
}
