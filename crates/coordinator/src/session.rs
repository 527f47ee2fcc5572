//! One prover stream: handshake, a writer that turns core decisions into wire messages (and
//! sends heartbeats), and a reader that checks results and reports them to the core.

use crate::core::{Conn, CoreMsg, Hello};
use crate::results::{VERIFY_INLINE_MAX, handle_result, nack, take_proof};
use crate::server::Shared;
use proofmill_proto::v1::{
    CoordinatorMessage, DataChunk, ErrorCode, ExecuteTask, Heartbeat, ProverMessage, Register,
    RegisterResponse, Shutdown, coordinator_message::Kind as Out, execute_task::Input,
    prover_message::Kind as In,
};
use proofmill_scheduler::ProverInfo;
use proofmill_types::{Batch, FencingToken, Job, JobKey, ProofRecord, ProofType, ProverId, TaskId};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{mpsc, oneshot};
use tonic::{Status, Streaming};

/// What the core (via the persister) asks a session to send.
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

/// A result after it was checked by the session.
pub(crate) enum Outcome {
    Proven(ProofRecord),
    /// The prover reported an error.
    Failed(String),
    /// The proof did not verify.
    Invalid(String),
    Declined(String),
}

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

type Wire = mpsc::Sender<Result<CoordinatorMessage, Status>>;

pub(crate) fn start(shared: Arc<Shared>, inbound: Streaming<ProverMessage>, wire: Wire) {
    tokio::spawn(async move {
        if let Err(reason) = run(shared, inbound, wire.clone()).await {
            tracing::debug!(%reason, "prover stream ended");
        }
    });
}

fn reject(code: ErrorCode, reason: String) -> CoordinatorMessage {
    CoordinatorMessage {
        kind: Some(Out::RegisterResponse(RegisterResponse {
            prover_id: String::new(),
            accepted: false,
            reason,
            code: code as i32,
            heartbeat_interval_ms: 0,
            max_message_bytes: 0,
        })),
    }
}

async fn run(
    shared: Arc<Shared>,
    mut inbound: Streaming<ProverMessage>,
    wire: Wire,
) -> Result<(), String> {
    let timeout = std::time::Duration::from_millis(shared.config.register_timeout_ms);
    let first = match tokio::time::timeout(timeout, inbound.message()).await {
        Err(_) => return Err("no Register within the timeout".into()),
        Ok(Err(e)) => return Err(e.to_string()),
        Ok(Ok(None)) => return Err("closed before registering".into()),
        Ok(Ok(Some(m))) => m,
    };
    let (hello, name, blob_access) = match parse_hello(&shared, first) {
        Ok(h) => h,
        Err((code, reason)) => {
            tracing::warn!(?code, %reason, "prover registration rejected");
            let _ = wire.send(Ok(reject(code, reason.clone()))).await;
            return Err(reason);
        }
    };
    if shared.draining() {
        let _ = wire
            .send(Ok(reject(
                ErrorCode::SystemUnavailable,
                "coordinator is shutting down".into(),
            )))
            .await;
        return Err("draining".into());
    }
    let conn_id = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::unbounded_channel();
    let (reply_tx, reply_rx) = oneshot::channel();
    let hb = shared
        .config
        .scheduler
        .heartbeat_interval_ms
        .min(u32::MAX as u64) as u32;
    shared
        .core
        .send(CoreMsg::Connect {
            hello,
            conn: Conn {
                id: conn_id,
                tx: tx.clone(),
            },
            heartbeat_ms: hb,
            max_message: shared.config.max_message_bytes.min(u32::MAX as usize) as u32,
            reply: reply_tx,
        })
        .map_err(|_| "core stopped")?;
    let prover = reply_rx.await.map_err(|_| "core stopped")?;
    tracing::info!(%prover, %name, "prover connected");
    let last_result = Arc::new(std::sync::Mutex::new(None));
    let writer = tokio::spawn(write_loop(
        shared.clone(),
        rx,
        wire,
        blob_access,
        tx.clone(),
        last_result.clone(),
    ));
    let result = read_loop(&shared, &prover, &name, &mut inbound, &tx, &last_result).await;
    writer.abort();
    let _ = shared.core.send(CoreMsg::Disconnect {
        prover: prover.clone(),
        conn_id,
    });
    tracing::info!(%prover, "prover disconnected");
    result
}

fn parse_hello(
    shared: &Shared,
    msg: ProverMessage,
) -> Result<(Hello, String, bool), (ErrorCode, String)> {
    let (register, reconnect) = match msg.kind {
        Some(In::Register(r)) => (r, None),
        Some(In::Reconnect(r)) => {
            let reg = r.register.ok_or((
                ErrorCode::InvalidArgument,
                "Reconnect without its Register fields".to_string(),
            ))?;
            (reg, Some((r.prover_id, r.running)))
        }
        _ => {
            return Err((
                ErrorCode::InvalidArgument,
                "the first message must be Register or Reconnect".into(),
            ));
        }
    };
    let info = parse_register(shared, &register)?;
    let name = register.name.clone();
    // Only URLs another process can open are worth sending (not `memory://`).
    let blob_access = register.blob_access && !shared.blobs.base_url().starts_with("memory:");
    let hello = match reconnect {
        None => Hello::Register(info),
        Some((id, running)) => {
            if id.is_empty() || id.len() > 64 {
                return Err((ErrorCode::InvalidArgument, "invalid prover id".into()));
            }
            let running = running
                .iter()
                .map(|t| {
                    TaskId::parse(&t.task_id)
                        .map(|(b, pt)| (JobKey::new(b, pt), FencingToken(t.fencing_token)))
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| (ErrorCode::InvalidArgument, e.to_string()))?;
            Hello::Reconnect {
                id: ProverId(id),
                info,
                running,
            }
        }
    };
    Ok((hello, name, blob_access))
}

fn parse_register(shared: &Shared, r: &Register) -> Result<ProverInfo, (ErrorCode, String)> {
    if let Some(expected) = &shared.config.prover_token
        && r.token.as_deref() != Some(expected.as_str())
    {
        return Err((
            ErrorCode::Unauthenticated,
            "missing or wrong prover token".into(),
        ));
    }
    if r.name.is_empty() || r.name.len() > 128 {
        return Err((
            ErrorCode::InvalidArgument,
            "name must be 1-128 bytes".into(),
        ));
    }
    if r.compute_capacity == 0 || r.compute_capacity > 4096 {
        return Err((
            ErrorCode::InvalidArgument,
            "compute_capacity must be 1-4096".into(),
        ));
    }
    if r.version.is_empty() || r.version.len() > 128 {
        return Err((
            ErrorCode::InvalidArgument,
            "version must be 1-128 bytes".into(),
        ));
    }
    let mut types = BTreeSet::new();
    for t in &r.proof_types {
        types.insert(
            ProofType::new(t.clone()).map_err(|e| (ErrorCode::InvalidArgument, e.to_string()))?,
        );
    }
    let needed: BTreeSet<ProofType> = shared.config.required_types().into_iter().collect();
    let useful: BTreeSet<ProofType> = types.intersection(&needed).cloned().collect();
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

/// When the stream's latest result arrived, until its next task is sent (dispatch latency).
type LastResult = Arc<std::sync::Mutex<Option<std::time::Instant>>>;

async fn write_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::UnboundedReceiver<ToProver>,
    wire: Wire,
    blob_access: bool,
    self_tx: mpsc::UnboundedSender<ToProver>,
    last_result: LastResult,
) {
    let period =
        std::time::Duration::from_millis(shared.config.scheduler.heartbeat_interval_ms.max(10));
    let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    let mut seq = 0u64;
    loop {
        let item = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => return },
            _ = beat.tick() => {
                seq += 1;
                ToProver::Msg(CoordinatorMessage { kind: Some(Out::Heartbeat(Heartbeat { seq })) })
            }
        };
        match item {
            ToProver::Msg(m) => {
                if wire.send(Ok(m)).await.is_err() {
                    return;
                }
            }
            ToProver::Close(reason) => {
                let _ = wire.send(Err(Status::unavailable(reason))).await;
                return;
            }
            ToProver::Dispatch(job, batch) => {
                if !send_task(&shared, &wire, blob_access, &job, &batch, &self_tx).await {
                    return;
                }
                if shared.config.record_dispatch_latency
                    && let Some(at) = last_result.lock().expect("latency lock").take()
                {
                    let us = at.elapsed().as_micros().min(u32::MAX as u128) as u32;
                    shared
                        .dispatch_latency_us
                        .lock()
                        .expect("latency lock")
                        .push(us);
                }
            }
        }
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
    self_tx: &mpsc::UnboundedSender<ToProver>,
) -> bool {
    let lease = job.lease.as_ref().expect("dispatched job is leased");
    let task_id = TaskId::format(job.key.batch, &job.key.proof_type);
    let mut task = ExecuteTask {
        task_id: task_id.clone(),
        batch: job.key.batch,
        proof_type: job.key.proof_type.to_string(),
        fencing_token: lease.token.0,
        deadline_ms: lease.deadline,
        version: job.version.clone(),
        input_digest: batch.input_digest.0.to_vec(),
        input_size: batch.input_size,
        input: None,
        public_values: batch.public_values.encode().to_vec(),
    };
    if blob_access && batch.input_size > shared.config.inline_input_max as u64 {
        // The prover reads it from the blob store itself and checks the digest.
        task.input = Some(Input::BlobUrl(shared.blobs.url(&batch.input_key)));
        return wire
            .send(Ok(CoordinatorMessage {
                kind: Some(Out::ExecuteTask(task)),
            }))
            .await
            .is_ok();
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
    task.input_size = input.len() as u64;
    task.input = Some(if chunked {
        Input::Chunked(true)
    } else {
        Input::Inline(input.to_vec())
    });
    if wire
        .send(Ok(CoordinatorMessage {
            kind: Some(Out::ExecuteTask(task)),
        }))
        .await
        .is_err()
    {
        return false;
    }
    if chunked {
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

async fn read_loop(
    shared: &Arc<Shared>,
    prover: &ProverId,
    name: &str,
    inbound: &mut Streaming<ProverMessage>,
    tx: &mpsc::UnboundedSender<ToProver>,
    last_result: &LastResult,
) -> Result<(), String> {
    // Proofs arriving in chunks, by (task id, token).
    let mut partial: HashMap<(String, u64), Vec<u8>> = HashMap::new();
    loop {
        let msg = match inbound.message().await {
            Ok(Some(m)) => m,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        match msg.kind {
            Some(In::TaskResult(mut r)) => {
                if shared.config.record_dispatch_latency {
                    *last_result.lock().expect("latency lock") = Some(std::time::Instant::now());
                }
                let proof = match take_proof(shared, &mut partial, &mut r) {
                    Ok(p) => p,
                    Err(reason) => {
                        nack(
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
                    shared.verify_inline
                        && p.len() <= VERIFY_INLINE_MAX.min(shared.config.inline_proof_max)
                });
                if cheap {
                    handle_result(shared, prover, name, r, proof, tx).await;
                } else {
                    let (shared, prover, name, tx) =
                        (shared.clone(), prover.clone(), name.to_string(), tx.clone());
                    tokio::spawn(async move {
                        handle_result(&shared, &prover, &name, r, proof, &tx).await
                    });
                }
            }
            Some(In::ProofChunk(c)) => {
                let total: usize = partial.values().map(Vec::len).sum();
                let buf = partial
                    .entry((c.task_id.clone(), c.fencing_token))
                    .or_default();
                if c.offset != buf.len() as u64
                    || (total + c.data.len()) as u64 > shared.config.max_proof_bytes
                {
                    partial.remove(&(c.task_id.clone(), c.fencing_token));
                    nack(
                        tx,
                        &c.task_id,
                        c.fencing_token,
                        ErrorCode::InvalidArgument,
                        "proof chunk out of order or proof too large".into(),
                    );
                    continue;
                }
                buf.extend_from_slice(&c.data);
            }
            Some(In::HeartbeatAck(a)) => {
                let running = parse_running(&a.running);
                let _ = shared.core.send(CoreMsg::Heartbeat {
                    prover: prover.clone(),
                    running,
                });
            }
            Some(In::Availability(a)) => {
                let _ = shared.core.send(CoreMsg::Availability {
                    prover: prover.clone(),
                    free: a.free_slots,
                });
            }
            Some(In::TaskDeclined(d)) => match TaskId::parse(&d.task_id) {
                Ok((b, pt)) => {
                    let _ = shared.core.send(CoreMsg::Outcome {
                        prover: prover.clone(),
                        key: JobKey::new(b, pt),
                        token: FencingToken(d.fencing_token),
                        outcome: Outcome::Declined(d.reason),
                        reply_to: tx.clone(),
                    });
                }
                Err(e) => nack(
                    tx,
                    &d.task_id,
                    d.fencing_token,
                    ErrorCode::InvalidArgument,
                    e.to_string(),
                ),
            },
            Some(In::ProverError(e)) => {
                tracing::warn!(%prover, code = e.code, message = %e.message, "prover reported an error")
            }
            Some(In::Register(_)) | Some(In::Reconnect(_)) => {
                return Err("Register/Reconnect sent twice on one stream".into());
            }
            None => return Err("empty message".into()),
        }
    }
}

fn parse_running(running: &[proofmill_proto::v1::RunningTask]) -> Vec<(JobKey, FencingToken)> {
    running
        .iter()
        .filter_map(|t| {
            TaskId::parse(&t.task_id)
                .ok()
                .map(|(b, pt)| (JobKey::new(b, pt), FencingToken(t.fencing_token)))
        })
        .collect()
}
