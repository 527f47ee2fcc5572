//! One registered stream to a coordinator: reads its messages and hands them to the link's
//! [`Tasks`], sends the replies, answers heartbeats, tells the coordinator how many slots
//! are free, notices a coordinator gone silent, and drains at a `Shutdown` or a local stop.

use super::handshake::Registered;
use super::outgoing::{Outgoing, QueueFull};
use super::wait_stop;
use crate::capacity::Capacity;
use crate::stats::{Connected, Counters};
use crate::tasks::{Proved, Reply, Tasks};
use proofmill_proto::v1::{
    Availability, CoordinatorMessage, HeartbeatAck, coordinator_message, prover_message,
};
use proofmill_telemetry::names;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tonic::Streaming;
use tracing::{debug, info, warn};

/// After a local shutdown, how long finished results may wait for their acknowledgement.
const LOCAL_SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(1);
/// Housekeeping period (deadlines, resends, drain, silent coordinator).
const TICK: Duration = Duration::from_millis(200);
/// A coordinator silent for this many heartbeat intervals is considered gone.
const SILENT_HEARTBEATS: u32 = 4;
const MIN_SILENCE: Duration = Duration::from_secs(2);

/// How a session ended.
pub(crate) enum SessionEnd {
    /// The stream closed, failed, went silent, or stopped reading: reconnect.
    Lost { registered_for: Duration },
    /// The prover is stopping, or was told to stop serving this coordinator.
    Stopped,
    /// The coordinator shut down and the session drained: come back when it is up again.
    Drained,
}

pub(crate) struct Session<'a> {
    tasks: &'a mut Tasks,
    capacity: Arc<Capacity>,
    out: Outgoing,
    /// Proofs larger than this go as chunks of this size.
    chunk_size: usize,
    /// See `ProverConfig::exit_on_shutdown`.
    exit_on_shutdown: bool,
    last_free_sent: Option<u32>,
    /// Set by the coordinator's `Shutdown` (grace deadline) or a local stop.
    draining: Option<Instant>,
    local_stop: bool,
    registered_at: Instant,
    last_rx: Instant,
    silence_limit: Option<Duration>,
    /// When the last heartbeat came (for the heartbeat-gap metric).
    last_heartbeat: Option<Instant>,
    /// The probe of the last heartbeat answer and when it was queued, until its echo comes
    /// (for the round-trip metric); numbered from 1 on each stream.
    probe: Option<(u64, Instant)>,
    probes_sent: u64,
}

/// Why the loop ends, before it becomes a [`SessionEnd`].
enum Exit {
    Ended(SessionEnd),
    Lost(String),
}

impl From<QueueFull> for Exit {
    fn from(full: QueueFull) -> Self {
        Exit::Lost(format!("coordinator does not read its stream ({full})"))
    }
}

impl<'a> Session<'a> {
    /// `out` already carried the hello; `max_message_bytes` is the prover's own limit.
    pub fn new(
        tasks: &'a mut Tasks,
        capacity: Arc<Capacity>,
        out: Outgoing,
        registered: &Registered,
        max_message_bytes: usize,
        exit_on_shutdown: bool,
    ) -> Self {
        let limit = registered
            .max_message_bytes
            .map_or(max_message_bytes, |theirs| theirs.min(max_message_bytes));
        let silence_limit = registered
            .heartbeat_interval
            .map(|interval| (interval * SILENT_HEARTBEATS).max(MIN_SILENCE));
        let now = Instant::now();
        Session {
            tasks,
            capacity,
            out,
            chunk_size: (limit / 2).max(1024),
            exit_on_shutdown,
            last_free_sent: None,
            draining: None,
            local_stop: false,
            registered_at: now,
            last_rx: now,
            silence_limit,
            last_heartbeat: None,
            probe: None,
            probes_sent: 0,
        }
    }

    pub async fn run(
        mut self,
        mut inbound: Streaming<CoordinatorMessage>,
        mut stop: watch::Receiver<bool>,
        counters: Arc<Counters>,
    ) -> SessionEnd {
        let _connected = Connected::new(counters);
        match self.serve(&mut inbound, &mut stop).await {
            Exit::Ended(end) => end,
            Exit::Lost(why) => {
                warn!("{why}; will reconnect");
                SessionEnd::Lost {
                    registered_for: self.registered_at.elapsed(),
                }
            }
        }
    }

    async fn serve(
        &mut self,
        inbound: &mut Streaming<CoordinatorMessage>,
        stop: &mut watch::Receiver<bool>,
    ) -> Exit {
        let mut slot_changes = self.capacity.subscribe();
        slot_changes.borrow_and_update();
        let unacked = self.tasks.all_results();
        count_resends(unacked.len());
        let first = self
            .send_availability(self.capacity.free())
            .and_then(|()| self.send_replies(unacked));
        if let Err(full) = first {
            return full.into();
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if let Some(end) = self.check_drain() {
                return Exit::Ended(end);
            }
            // Biased: a finished result is sent before the Availability its freed slot
            // triggers (the slot is released once the result is sent); both are bounded by
            // the capacity, so they cannot starve the inbound stream. The Availability
            // branch also drains results first: the slot count it reads may include a
            // release whose report arrived after the proving reports were polled.
            let step: Result<(), Exit> = tokio::select! {
                biased;
                _ = wait_stop(stop), if !self.local_stop => {
                    info!("prover stopping: declining new tasks, waiting briefly for acks");
                    self.local_stop = true;
                    self.draining = Some(Instant::now() + LOCAL_SHUTDOWN_ACK_WAIT);
                    self.send_availability(0).map_err(Exit::from)
                }
                proved = self.tasks.next_proved() => self.forward(proved).map_err(Exit::from),
                changed = slot_changes.changed() => match changed {
                    Ok(()) => self.slots_changed().map_err(Exit::from),
                    Err(_) => Ok(()),
                },
                m = inbound.message() => match m {
                    Ok(Some(m)) => {
                        self.last_rx = Instant::now();
                        match m.kind {
                            Some(kind) => self.on_message(kind).map_err(Exit::from),
                            None => Ok(()),
                        }
                    }
                    Ok(None) if self.draining.is_some() => {
                        info!("coordinator closed the stream during shutdown");
                        Err(Exit::Ended(self.drained()))
                    }
                    Ok(None) => Err(Exit::Lost("coordinator closed the stream".into())),
                    Err(status) if self.draining.is_some() => {
                        info!(code = ?status.code(), "stream ended during shutdown");
                        Err(Exit::Ended(self.drained()))
                    }
                    Err(status) => Err(Exit::Lost(format!(
                        "stream failed: {} ({:?})",
                        status.message(),
                        status.code()
                    ))),
                },
                _ = tick.tick() => self.housekeeping(),
            };
            if let Err(exit) = step {
                return exit;
            }
        }
    }

    fn on_message(&mut self, kind: coordinator_message::Kind) -> Result<(), QueueFull> {
        use coordinator_message::Kind;
        match kind {
            Kind::ExecuteTask(t) => {
                // The coordinator counts each task it sends against the slots we last
                // advertised, so what it believes is no longer what we sent: the next look
                // at the capacity is sent whatever it shows. Otherwise a task that takes and
                // frees its slot between two looks (a fast one) shows no change, and the
                // freed slot is never advertised.
                self.last_free_sent = None;
                let reply = self.tasks.execute(t, self.draining.is_some());
                self.send_replies(reply)
            }
            Kind::InputChunk(c) => {
                let reply = self.tasks.input_chunk(c);
                self.send_replies(reply)
            }
            Kind::Heartbeat(h) => {
                let now = Instant::now();
                if let Some(last) = self.last_heartbeat.replace(now) {
                    metrics::histogram!(names::PROVER_HEARTBEAT_GAP_SECONDS)
                        .record(now.duration_since(last).as_secs_f64());
                }
                // A probe the coordinator echoes at once: the round trip from here to its
                // echo read. One outstanding: an echo that never comes (an older
                // coordinator) is replaced by the next.
                self.probes_sent += 1;
                self.probe = Some((self.probes_sent, now));
                self.out
                    .send(prover_message::Kind::HeartbeatAck(HeartbeatAck {
                        seq: h.seq,
                        running: self.tasks.running(),
                        probe: Some(self.probes_sent),
                    }))
            }
            Kind::HeartbeatEcho(e) => {
                if let Some((probe, at)) = self.probe
                    && probe == e.probe
                {
                    self.probe = None;
                    metrics::histogram!(names::PROVER_HEARTBEAT_ROUND_TRIP_SECONDS)
                        .record(at.elapsed().as_secs_f64());
                }
                Ok(())
            }
            Kind::ResultAck(a) => {
                self.tasks.acknowledged(a);
                Ok(())
            }
            Kind::TaskCancelled(c) => {
                self.tasks.cancel(c);
                Ok(())
            }
            Kind::Shutdown(sd) => {
                info!(reason = %sd.reason, grace_ms = sd.grace_ms, "coordinator asked us to shut down");
                let until = Instant::now() + Duration::from_millis(sd.grace_ms as u64);
                self.draining = Some(self.draining.map_or(until, |d| d.min(until)));
                self.send_availability(0)
            }
            Kind::RegisterResponse(_) => {
                debug!("ignoring a second RegisterResponse");
                Ok(())
            }
            Kind::Unsupported(u) => {
                warn!(reason = %u.reason.escape_debug(), "the coordinator did not understand a message");
                Ok(())
            }
        }
    }

    /// Sends the result of a finished task, then releases its slot.
    fn forward(&mut self, proved: Proved) -> Result<(), QueueFull> {
        let (reply, slot) = self.tasks.proved(proved);
        let sent = self.send_replies(reply);
        drop(slot);
        sent
    }

    fn slots_changed(&mut self) -> Result<(), QueueFull> {
        let free = self.capacity.free();
        while let Some(proved) = self.tasks.try_next_proved() {
            self.forward(proved)?;
        }
        self.send_availability(free)
    }

    fn housekeeping(&mut self) -> Result<(), Exit> {
        if let Some(limit) = self.silence_limit
            && self.last_rx.elapsed() > limit
        {
            if self.draining.is_some() {
                return Err(Exit::Ended(self.drained()));
            }
            let silent = self.last_rx.elapsed();
            return Err(Exit::Lost(format!("coordinator silent for {silent:?}")));
        }
        let expired = self.tasks.expire_inputs();
        self.send_replies(expired)?;
        let due = self.tasks.resends_due();
        count_resends(due.len());
        self.send_replies(due)?;
        Ok(())
    }

    fn send_replies(&self, replies: impl IntoIterator<Item = Reply>) -> Result<(), QueueFull> {
        for reply in replies {
            match reply {
                Reply::Declined(d) => self.out.send(prover_message::Kind::TaskDeclined(d))?,
                Reply::Result { task, finished } => {
                    self.out.send_result(task, finished, self.chunk_size)?
                }
            }
        }
        Ok(())
    }

    fn send_availability(&mut self, free: u32) -> Result<(), QueueFull> {
        let free = if self.draining.is_some() { 0 } else { free };
        if self.last_free_sent == Some(free) {
            return Ok(());
        }
        self.last_free_sent = Some(free);
        debug!(free_slots = free, "availability");
        self.out
            .send(prover_message::Kind::Availability(Availability {
                free_slots: free,
            }))
    }

    /// Ends a draining session once nothing is left to deliver or the grace period is over.
    fn check_drain(&self) -> Option<SessionEnd> {
        let deadline = self.draining?;
        let unfinished = self.tasks.unfinished();
        let busy = !self.local_stop && unfinished > 0;
        if !busy && self.tasks.unacked_len() == 0 {
            info!("shutdown complete; closing the stream");
            return Some(self.drained());
        }
        if Instant::now() >= deadline {
            warn!(
                running = unfinished,
                unacknowledged = self.tasks.unacked_len(),
                "shutdown grace over; closing the stream"
            );
            return Some(self.drained());
        }
        None
    }

    /// How a drained session ends: a local stop (or `exit_on_shutdown`) ends the link; a
    /// coordinator's shutdown is waited out. Tasks still proving keep running and their
    /// results go to the coordinator once it is back.
    fn drained(&self) -> SessionEnd {
        if self.local_stop || self.exit_on_shutdown {
            SessionEnd::Stopped
        } else {
            info!("coordinator shut down; reconnecting when it is back");
            SessionEnd::Drained
        }
    }
}

fn count_resends(n: usize) {
    if n > 0 {
        metrics::counter!(names::PROVER_RESULT_RESENDS_TOTAL).increment(n as u64);
    }
}
