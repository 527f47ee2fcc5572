//! Every message the coordinator sends a prover, built here from domain values and nowhere
//! else, so the wire's rules (lengths bounded, ids formatted one way) hold for all of them.

use proofmill_proto::v1::{
    CoordinatorMessage, DataChunk, ErrorCode, ExecuteTask, Heartbeat, HeartbeatEcho,
    RegisterResponse, ResultAck, Shutdown, TaskCancelled, Unsupported, coordinator_message::Kind,
    execute_task,
};
use proofmill_types::{Batch, FencingToken, Job, JobKey, ProverId, TaskId};

fn message(kind: Kind) -> CoordinatorMessage {
    CoordinatorMessage { kind: Some(kind) }
}

/// Text that may quote what a prover sent, of any size: bounded, since the reply queues
/// count messages, not bytes.
fn bounded(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// Most characters of a reason sent back.
const MAX_REASON: usize = 1024;

/// The answer to a result: `accepted` (or why not, with `code`), for the task id and token
/// the prover sent (a malformed task id is echoed, bounded).
pub(crate) fn result_ack(
    task_id: &str,
    token: u64,
    accepted: bool,
    code: ErrorCode,
    reason: &str,
) -> CoordinatorMessage {
    message(Kind::ResultAck(ResultAck {
        task_id: bounded(task_id, 128),
        fencing_token: token,
        accepted,
        code: code as i32,
        reason: bounded(reason, MAX_REASON),
    }))
}

/// [`result_ack`] of a job's result.
pub(crate) fn job_result_ack(
    key: &JobKey,
    token: FencingToken,
    accepted: bool,
    code: ErrorCode,
    reason: &str,
) -> CoordinatorMessage {
    result_ack(&TaskId::format(key), token.0, accepted, code, reason)
}

/// A registration (or reconnect) accepted.
pub(crate) fn registered(
    prover: &ProverId,
    reconnect_secret: String,
    heartbeat_interval_ms: u32,
    max_message_bytes: u32,
) -> CoordinatorMessage {
    message(Kind::RegisterResponse(RegisterResponse {
        prover_id: prover.0.clone(),
        accepted: true,
        reason: String::new(),
        code: ErrorCode::Unspecified as i32,
        heartbeat_interval_ms,
        max_message_bytes,
        reconnect_secret,
    }))
}

/// A registration (or reconnect) refused, and why.
pub(crate) fn registration_refused(code: ErrorCode, reason: &str) -> CoordinatorMessage {
    message(Kind::RegisterResponse(RegisterResponse {
        prover_id: String::new(),
        accepted: false,
        reason: bounded(reason, MAX_REASON),
        code: code as i32,
        heartbeat_interval_ms: 0,
        max_message_bytes: 0,
        reconnect_secret: String::new(),
    }))
}

/// Stop a task the prover should not be running.
pub(crate) fn task_cancelled(
    key: &JobKey,
    token: FencingToken,
    reason: String,
) -> CoordinatorMessage {
    message(Kind::TaskCancelled(TaskCancelled {
        task_id: TaskId::format(key),
        fencing_token: token.0,
        reason,
    }))
}

/// A task: a leased job of `batch`, with its input as `input` (inline, a blob URL, or
/// chunks to follow) of `input_size` bytes.
pub(crate) fn execute_task(
    job: &Job,
    batch: &Batch,
    input_size: usize,
    input: execute_task::Input,
) -> CoordinatorMessage {
    let lease = job.lease.as_ref().expect("dispatched job is leased");
    message(Kind::ExecuteTask(ExecuteTask {
        task_id: TaskId::format(&job.key),
        batch: job.key.batch,
        proof_type: job.key.proof_type.to_string(),
        fencing_token: lease.token.0,
        deadline_ms: lease.deadline,
        version: job.version.clone(),
        input_digest: batch.input_digest.0.to_vec(),
        input_size: input_size as u64,
        input: Some(input),
        public_values: batch.public_values.as_bytes().to_vec(),
    }))
}

/// One chunk of a task's input.
pub(crate) fn input_chunk(
    task_id: &str,
    token: FencingToken,
    offset: usize,
    data: Vec<u8>,
    last: bool,
) -> CoordinatorMessage {
    message(Kind::InputChunk(DataChunk {
        task_id: task_id.to_string(),
        fencing_token: token.0,
        offset: offset as u64,
        data,
        last,
    }))
}

pub(crate) fn heartbeat(seq: u64) -> CoordinatorMessage {
    message(Kind::Heartbeat(Heartbeat { seq }))
}

/// The answer to a heartbeat ack's probe (the prover's round trip).
pub(crate) fn heartbeat_echo(probe: u64) -> CoordinatorMessage {
    message(Kind::HeartbeatEcho(HeartbeatEcho { probe }))
}

/// Finish running tasks within `grace_ms`, then go.
pub(crate) fn shutdown(reason: &str, grace_ms: u32) -> CoordinatorMessage {
    message(Kind::Shutdown(Shutdown {
        reason: reason.into(),
        grace_ms,
    }))
}

/// A message of a kind this coordinator does not know.
pub(crate) fn unsupported() -> CoordinatorMessage {
    message(Kind::Unsupported(Unsupported {
        reason: format!(
            "message kind not supported by this coordinator (proofmill {})",
            env!("CARGO_PKG_VERSION")
        ),
    }))
}
