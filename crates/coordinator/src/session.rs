//! One prover stream: handshake, then a reader that checks results and reports them to the
//! core, beside the writer of [`crate::outbox`].

use crate::config::CoordinatorConfig;
use crate::core::{Conn, CoreHandle, Hello};
use crate::events::{Event, EventBus};
use crate::identity::ProverKeys;
use crate::limits::{Slot, StreamSlots};
use crate::outbox::{LatencyProbe, Outbox, SendLimits, Sending, ToProver, outbox, write_loop};
use crate::partial::PartialProofs;
use crate::results::{Results, VERIFY_INLINE_MAX};
use crate::standing::Standing;
use crate::text::check_label;
use crate::verdict::Verdict;
use crate::wire::{ChunkCredits, Wire, WireEnd, refusal_status, unreadable};
use proofmill_proto::v1::task_result::Outcome as Res;
use proofmill_proto::v1::{ErrorCode, ProverMessage, Register, prover_message::Kind as In};
use proofmill_scheduler::{ProverInfo, ResultCheck};
use proofmill_types::{FencingToken, JobKey, ProofType, ProverId, TaskId};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::{Status, Streaming};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Most running tasks a prover may list (the largest capacity a prover may register): each
/// entry can cost the core a lookup and the prover a cancel, so the list is bounded.
const MAX_RUNNING_REPORTED: usize = 4096;

/// Smallest message limit a prover may register: a task with its fields and a chunk of
/// input must fit.
const MIN_PROVER_MESSAGE_BYTES: u32 = 4096;

/// What every prover session uses (one per coordinator, shared by its sessions).
pub(crate) struct Sessions {
    pub rules: SessionRules,
    /// Issues prover ids and checks the secrets of reconnecting provers.
    pub prover_keys: Arc<ProverKeys>,
    pub standing: Standing,
    pub core: CoreHandle,
    pub results: Results,
    /// What the writers of the streams use.
    pub sending: Sending,
    /// Prover streams open, and those not registered yet.
    pub slots: StreamSlots,
    /// Dispatch latencies in microseconds, kept when `record_dispatch_latency` is on.
    pub dispatch_latency_us: Option<Arc<Mutex<Vec<u32>>>>,
    /// The blob store is one another process can open (not `memory://`): provers that ask
    /// may be sent blob URLs instead of the bytes.
    pub blob_urls: bool,
    pub events: EventBus,
}

/// What a prover must meet to register, and how its stream is run.
pub(crate) struct SessionRules {
    pub register_timeout_ms: u64,
    pub prover_auth: crate::ProverAuth,
    /// Proof types every batch needs: a prover must offer one of them.
    pub required: BTreeSet<ProofType>,
    pub max_message_bytes: usize,
    pub inline_input_max: usize,
    pub chunk_bytes: usize,
    pub max_proof_bytes: u64,
    pub heartbeat_interval_ms: u64,
}

impl SessionRules {
    pub fn new(config: &CoordinatorConfig) -> Self {
        SessionRules {
            register_timeout_ms: config.register_timeout_ms,
            prover_auth: config.prover_auth.clone(),
            required: config.required_types().into_iter().collect(),
            max_message_bytes: config.max_message_bytes,
            inline_input_max: config.inline_input_max,
            chunk_bytes: config.chunk_bytes,
            max_proof_bytes: config.max_proof_bytes,
            heartbeat_interval_ms: config.scheduler.heartbeat_interval_ms,
        }
    }
}

fn too_many_running(n: usize) -> String {
    format!("{n} running tasks listed; at most {MAX_RUNNING_REPORTED}")
}

/// Serves one prover stream from `peer`. `open` holds the stream's slot while the session
/// lives; `unregistered` is given back once the prover is registered.
pub(crate) fn start(
    sessions: Arc<Sessions>,
    (inbound, peer): (Streaming<ProverMessage>, Option<SocketAddr>),
    (wire, credits, end): (Wire, ChunkCredits, WireEnd),
    (open, unregistered): (Slot, Slot),
) {
    tokio::spawn(async move {
        let _open = open;
        // Every stream this side ends says why; only one the prover closed ends OK.
        let status = run(
            sessions,
            (inbound, peer),
            (wire, credits, end.clone()),
            unregistered,
        )
        .await
        .err();
        if let Some(s) = &status {
            tracing::debug!(code = ?s.code(), reason = %s.message().escape_debug(), "prover stream ended");
        }
        end.finish(status);
    });
}

async fn run(
    s: Arc<Sessions>,
    (mut inbound, peer): (Streaming<ProverMessage>, Option<SocketAddr>),
    (wire, credits, end): (Wire, ChunkCredits, WireEnd),
    unregistered: Slot,
) -> Result<(), Status> {
    let ms = s.rules.register_timeout_ms;
    let first = match tokio::time::timeout(Duration::from_millis(ms), inbound.message()).await {
        Err(_) => {
            return Err(Status::deadline_exceeded(format!(
                "no Register or Reconnect within {ms} ms of opening the stream"
            )));
        }
        Ok(Err(e)) => return Err(unreadable(&e)),
        Ok(Ok(None)) => {
            return Err(Status::failed_precondition(
                "the stream closed before Register or Reconnect",
            ));
        }
        Ok(Ok(Some(m))) => m,
    };
    // Who was refused, as it named itself (never its token).
    let claimed_name: String = match &first.kind {
        Some(In::Register(r)) => r.name.chars().take(64).collect(),
        Some(In::Reconnect(r)) => r
            .register
            .as_ref()
            .map_or_else(String::new, |r| r.name.chars().take(64).collect()),
        _ => String::new(),
    };
    let (hello, name, (blob_access, limits)) = match parse_hello(&s, first) {
        Ok(h) => h,
        Err((code, reason)) => {
            // It may quote what the prover sent, of any size.
            let reason: String = reason.chars().take(1024).collect();
            tracing::warn!(?code, reason = %reason.escape_debug(), name = %claimed_name.escape_debug(), peer = %peer.map_or_else(|| "unknown".to_string(), |p| p.to_string()), "prover registration rejected");
            let _ = wire
                .send(Ok(crate::messages::registration_refused(code, &reason)))
                .await;
            return Err(refusal_status(code, &reason));
        }
    };
    if s.standing.draining() {
        let reason = "coordinator is shutting down";
        let _ = wire
            .send(Ok(crate::messages::registration_refused(
                ErrorCode::SystemUnavailable,
                reason,
            )))
            .await;
        return Err(Status::unavailable(reason));
    }
    let (capacity, proof_types) = match &hello {
        Hello::Register(info) | Hello::Reconnect { info, .. } => {
            (info.capacity, info.proof_types.clone())
        }
    };
    let conn_id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let probe = Some(LatencyProbe::new(s.dispatch_latency_us.clone()));
    let (tx, writer) = outbox(
        &s.sending,
        (wire, credits, end),
        (blob_access, limits, capacity),
        probe.clone(),
    );
    let hb = s.rules.heartbeat_interval_ms.min(u32::MAX as u64) as u32;
    let conn = Conn {
        id: conn_id,
        outbox: tx.clone(),
    };
    let max_message = s.rules.max_message_bytes.min(u32::MAX as usize) as u32;
    let prover = s
        .core
        .connect(hello, conn, hb, max_message)
        .await
        .map_err(|_| core_stopped())?;
    drop(unregistered);
    tracing::info!(%prover, name = %name.escape_debug(), "prover connected");
    s.events.publish(Event::ProverConnected {
        prover: prover.clone(),
        name: name.clone(),
        proof_types: proof_types.into_iter().collect(),
        capacity,
    });
    let writer = tokio::spawn(write_loop(writer, tx.clone()));
    let result = read_loop(
        &s,
        (&prover, &name, capacity),
        &mut inbound,
        &tx,
        probe.as_ref(),
    )
    .await;
    writer.abort();
    s.core.disconnect(prover.clone(), conn_id).await;
    s.events.publish(Event::ProverDisconnected {
        prover: prover.clone(),
        name: name.clone(),
    });
    match &result {
        Ok(()) => tracing::info!(%prover, "prover closed its stream"),
        Err(s) => {
            tracing::info!(%prover, code = ?s.code(), reason = %s.message().escape_debug(), "prover disconnected")
        }
    }
    result
}

/// Why a stream of a coordinator that stepped down is closed.
fn no_longer_active(why: &str) -> Status {
    Status::unavailable(format!(
        "this coordinator is no longer active ({why}); go to the active one"
    ))
}

fn core_stopped() -> Status {
    Status::unavailable("coordinator is stopping")
}

/// What a prover's first message says: who it is, its name, and how to send to it.
type ParsedHello = (Hello, String, (bool, SendLimits));

fn parse_hello(s: &Sessions, msg: ProverMessage) -> Result<ParsedHello, (ErrorCode, String)> {
    let (register, reconnect) = match msg.kind {
        Some(In::Register(r)) => (r, None),
        Some(In::Reconnect(r)) => {
            let reg = r.register.ok_or((
                ErrorCode::InvalidArgument,
                "Reconnect without its Register fields".to_string(),
            ))?;
            (reg, Some((r.prover_id, r.running, r.secret)))
        }
        _ => {
            return Err((
                ErrorCode::InvalidArgument,
                "the first message must be Register or Reconnect".into(),
            ));
        }
    };
    let info = parse_register(s, &register)?;
    let name = register.name.clone();
    // Only URLs another process can open are worth sending (not `memory://`).
    let blob_access = register.blob_access && s.blob_urls;
    let limits = SendLimits::new(
        s.rules.inline_input_max,
        s.rules.chunk_bytes,
        register.max_message_bytes,
    );
    let hello = match reconnect {
        None => Hello::Register(info),
        Some((id, running, secret)) => {
            if id.is_empty() || id.len() > 64 || id.chars().any(char::is_control) {
                return Err((ErrorCode::InvalidArgument, "invalid prover id".into()));
            }
            let id = ProverId(id);
            if running.len() > MAX_RUNNING_REPORTED {
                return Err((ErrorCode::InvalidArgument, too_many_running(running.len())));
            }
            let running = running
                .iter()
                .map(|t| TaskId::parse(&t.task_id).map(|key| (key, FencingToken(t.fencing_token))))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| (ErrorCode::InvalidArgument, e.to_string()))?;
            // Without this, anyone who can reach the port could take over a listed id and
            // close its prover's stream.
            if !s.prover_keys.check(&id, &secret) {
                return Err((
                    ErrorCode::ReconnectRefused,
                    format!(
                        "prover id {id} was not issued here or its secret is wrong; register anew"
                    ),
                ));
            }
            Hello::Reconnect { id, info, running }
        }
    };
    Ok((hello, name, (blob_access, limits)))
}

fn parse_register(s: &Sessions, r: &Register) -> Result<ProverInfo, (ErrorCode, String)> {
    check_label("name", &r.name).map_err(|e| (ErrorCode::InvalidArgument, e))?;
    // The reason names no secret: it is logged and sent back as it is.
    s.rules
        .prover_auth
        .check(r.token.as_deref(), &r.name)
        .map_err(|e| (ErrorCode::Unauthenticated, e.to_string()))?;
    if r.compute_capacity == 0 || r.compute_capacity as usize > MAX_RUNNING_REPORTED {
        return Err((
            ErrorCode::InvalidArgument,
            "compute_capacity must be 1-4096".into(),
        ));
    }
    check_label("version", &r.version).map_err(|e| (ErrorCode::InvalidArgument, e))?;
    if r.max_message_bytes != 0 && r.max_message_bytes < MIN_PROVER_MESSAGE_BYTES {
        return Err((
            ErrorCode::InvalidArgument,
            format!("max_message_bytes must be 0 (none) or at least {MIN_PROVER_MESSAGE_BYTES}"),
        ));
    }
    let mut types = BTreeSet::new();
    for t in &r.proof_types {
        types.insert(
            ProofType::new(t.clone()).map_err(|e| (ErrorCode::InvalidArgument, e.to_string()))?,
        );
    }
    let needed = &s.rules.required;
    let useful: BTreeSet<ProofType> = types.intersection(needed).cloned().collect();
    if useful.is_empty() {
        let needed: Vec<_> = needed.iter().map(|t| t.to_string()).collect();
        return Err((
            ErrorCode::ProofTypeNotNeeded,
            format!(
                "none of {:?} is needed here; this coordinator needs {}",
                r.proof_types,
                needed.join(",")
            ),
        ));
    }
    Ok(ProverInfo {
        name: r.name.clone(),
        proof_types: useful,
        capacity: r.compute_capacity,
        version: r.version.clone(),
    })
}

async fn read_loop(
    s: &Arc<Sessions>,
    (prover, name, capacity): (&ProverId, &str, u32),
    inbound: &mut Streaming<ProverMessage>,
    tx: &Outbox,
    probe: Option<&LatencyProbe>,
) -> Result<(), Status> {
    let mut partial = PartialProofs::new(capacity, s.rules.max_proof_bytes);
    let alive_every = Duration::from_millis(s.rules.heartbeat_interval_ms / 2);
    let mut last_alive = Instant::now();
    // A closed stream (prover declared dead or replaced) ends the session even while the
    // prover keeps it open.
    let closing = tx.closing();
    let closed = crate::outbox::closed(&closing);
    tokio::pin!(closed);
    let retired = s.standing.retired();
    tokio::pin!(retired);
    loop {
        // Close first: nothing read after it (a replaced stream's answers) may count.
        let msg = tokio::select! {
            biased;
            // The stream has its status already (see `Outbox::send`).
            reason = &mut closed => return Err(Status::unavailable(reason)),
            why = &mut retired => return Err(no_longer_active(&why)),
            m = inbound.message() => match m {
                Ok(Some(m)) => m,
                Ok(None) => return Ok(()),
                Err(e) => return Err(unreadable(&e)),
            },
        };
        match msg.kind {
            Some(In::TaskResult(mut r)) => {
                if let Some(probe) = probe {
                    probe.result_received();
                }
                let key = (r.task_id.clone(), r.fencing_token);
                if matches!(r.outcome, Some(Res::ProofChunked(_)))
                    && !partial.receiving(&key)
                    && partial.was_refused(&key)
                {
                    // Its chunks were refused, and the prover told why already.
                    continue;
                }
                let proof = match s.results.take_proof(&mut partial, &mut r) {
                    Ok(p) => p,
                    Err(reason) => {
                        s.results.nack(
                            tx,
                            &r.task_id,
                            r.fencing_token,
                            ErrorCode::InvalidArgument,
                            reason,
                        );
                        continue;
                    }
                };
                // A small proof of a cheap verifier is verified inline and kept in the database
                // row, so handling it does no I/O (bar a batch-cache miss): do it here instead of
                // paying for a task per result on the dispatch path. Others get their own task,
                // so a pairing or a verify command never holds up this prover's heartbeats.
                let cheap = proof.as_ref().is_none_or(|p| {
                    s.results.verify_inline
                        && p.data.len() <= VERIFY_INLINE_MAX.min(s.results.inline_proof_max)
                });
                if cheap {
                    let proof = proof.map(|p| p.into_parts().0);
                    s.results.handle_result(prover, name, r, proof, tx).await;
                } else {
                    // Its bytes stay in memory until it is verified and stored: they count
                    // in the proof budget until then, or it is offered again later.
                    let mut proof = proof.expect("a result without a proof is cheap");
                    if let Err(reason) = proof.hold(&s.results.proof_budget) {
                        let code = ErrorCode::SystemUnavailable;
                        s.results
                            .nack(tx, &r.task_id, r.fencing_token, code, reason);
                        continue;
                    }
                    let (proof, held) = proof.into_parts();
                    let (results, prover, name, tx) = (
                        s.results.clone(),
                        prover.clone(),
                        name.to_string(),
                        tx.clone(),
                    );
                    tokio::spawn(async move {
                        let _held = held;
                        // A stale result is refused before its verification and blob write.
                        if let Some(reason) = results.fenced_off(&prover, &r).await {
                            let code = ErrorCode::StaleFencingToken;
                            return results.nack(&tx, &r.task_id, r.fencing_token, code, reason);
                        }
                        results
                            .handle_result(&prover, &name, r, Some(proof), &tx)
                            .await
                    });
                }
            }
            Some(In::ProofChunk(c)) => {
                // Heartbeat answers queue behind a large proof on the prover's side: data
                // arriving is a sign of life too (told to the core twice a heartbeat interval at most).
                if last_alive.elapsed() >= alive_every {
                    last_alive = Instant::now();
                    s.core.alive(prover.clone()).await;
                }
                let key = (c.task_id.clone(), c.fencing_token);
                if !partial.receiving(&key) {
                    if c.offset != 0 && partial.was_refused(&key) {
                        continue; // The rest of a refused proof: answered already.
                    }
                    // A proof's first chunk: kept only for a lease this prover holds.
                    if c.offset == 0 {
                        partial.forgive(&key);
                        if let Err((code, reason)) = leased(&s.core, prover, &key).await {
                            s.results.nack(tx, &key.0, key.1, code, reason);
                            partial.refuse(key);
                            continue;
                        }
                    }
                }
                if let Err((code, reason)) = partial.push(&s.results.proof_budget, c) {
                    s.results.nack(tx, &key.0, key.1, code, reason);
                }
            }
            Some(In::HeartbeatAck(a)) => {
                if a.running.len() > MAX_RUNNING_REPORTED {
                    return Err(Status::invalid_argument(too_many_running(a.running.len())));
                }
                tx.heartbeat_acked(a.seq);
                if let Some(probe) = a.probe {
                    tx.send(ToProver::Msg(crate::messages::heartbeat_echo(probe)));
                }
                let running = parse_running(&a.running);
                s.core.heartbeat(prover.clone(), running).await;
            }
            Some(In::Availability(a)) => {
                s.core.availability(prover.clone(), a.free_slots).await;
            }
            Some(In::TaskDeclined(d)) => match TaskId::parse(&d.task_id) {
                Ok(key) => {
                    let key = (key, FencingToken(d.fencing_token));
                    let verdict = Verdict::Declined(d.reason);
                    s.core
                        .result(prover.clone(), key, verdict, tx.clone())
                        .await;
                }
                Err(e) => s.results.nack(
                    tx,
                    &d.task_id,
                    d.fencing_token,
                    ErrorCode::InvalidArgument,
                    e.to_string(),
                ),
            },
            Some(In::ProverError(e)) => {
                tracing::warn!(%prover, code = e.code, message = %e.message.escape_debug(), "prover reported an error")
            }
            Some(In::Register(_)) | Some(In::Reconnect(_)) => {
                return Err(Status::failed_precondition(
                    "Register or Reconnect sent again on a registered stream",
                ));
            }
            // A kind this coordinator does not know (protobuf leaves it out): answered, so a
            // newer prover can fall back, and the stream stays.
            None => {
                tracing::debug!(%prover, "message of an unknown kind answered as unsupported");
                tx.send(ToProver::Msg(crate::messages::unsupported()));
            }
        }
    }
}

/// Whether `prover` holds the current lease of a task: the only proofs whose chunks are kept.
async fn leased(
    core: &CoreHandle,
    prover: &ProverId,
    (task_id, token): &crate::partial::Key,
) -> Result<(), (ErrorCode, String)> {
    let key = TaskId::parse(task_id).map_err(|e| (ErrorCode::InvalidArgument, e.to_string()))?;
    let check = core
        .check_result(prover.clone(), key.clone(), FencingToken(*token))
        .await
        .map_err(|e| (ErrorCode::SystemUnavailable, e.to_string()))?;
    match check {
        ResultCheck::Current => Ok(()),
        ResultCheck::Stale { reason } => Err((ErrorCode::StaleFencingToken, reason)),
        ResultCheck::NotOpen => Err((
            ErrorCode::JobNotFound,
            format!("{key} is not open here: no proof of it is taken"),
        )),
    }
}

fn parse_running(running: &[proofmill_proto::v1::RunningTask]) -> Vec<(JobKey, FencingToken)> {
    running
        .iter()
        .filter_map(|t| {
            TaskId::parse(&t.task_id)
                .ok()
                .map(|key| (key, FencingToken(t.fencing_token)))
        })
        .collect()
}
