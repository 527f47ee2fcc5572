//! The start of a stream: the prover says who it is (`Register`, or after a reconnect
//! `Reconnect` with the tasks it still holds) and the coordinator answers with a
//! `RegisterResponse`: accepted, with an id, or refused and why.

use super::outgoing::OutgoingStream;
use crate::Settings;
use proofmill_proto::client::{error_chain, explain, is_transport_failure};
use proofmill_proto::v1::{
    CoordinatorMessage, ErrorCode, Reconnect, Register, RegisterResponse, RunningTask,
    coordinator_message, prover_message, prover_service_client::ProverServiceClient,
};
use std::time::Duration;
use tokio::time::timeout;
use tonic::Streaming;
use tonic::transport::Channel;
use tracing::{debug, warn};

/// The id a coordinator gave this prover and the secret that proves it on a reconnect.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub prover_id: String,
    pub secret: String,
}

/// An open stream the coordinator registered.
pub(crate) struct Registered {
    pub inbound: Streaming<CoordinatorMessage>,
    /// A new id, or the same again; `None` when the answer named none.
    pub identity: Option<Identity>,
    /// How often the coordinator sends heartbeats; `None` when it sends none.
    pub heartbeat_interval: Option<Duration>,
    /// The largest message the coordinator takes, if it said.
    pub max_message_bytes: Option<usize>,
    _client: ProverServiceClient<Channel>,
}

/// Why a stream did not get registered.
pub(crate) enum NotRegistered {
    /// The stream could not be opened, or no valid answer came (logged): try again.
    Unreachable,
    /// A standby coordinator refused the stream, naming the active one.
    Standby { active: String },
    /// The coordinator does not know the id presented, or its secret.
    ReconnectRefused { reason: String },
    /// Registration rejected (logged); `operator` means only an operator can fix it.
    Rejected { operator: bool },
    /// The coordinator refused the prover's credentials (its token): an operator must fix
    /// them. Not logged here: the caller says when it tries again.
    CredentialsRefused { reason: String },
}

/// The first message: `Register`, or `Reconnect` under `identity` with the tasks held.
pub(crate) fn hello(
    settings: &Settings,
    identity: Option<&Identity>,
    running: Vec<RunningTask>,
) -> prover_message::Kind {
    let register = Register {
        name: settings.name.clone(),
        proof_types: settings.proof_types.clone(),
        compute_capacity: settings.capacity,
        version: settings.version.clone(),
        token: settings.token.clone(),
        blob_access: settings.blob_reader.is_some(),
        max_message_bytes: settings.max_message_bytes.min(u32::MAX as usize) as u32,
    };
    match identity {
        None => prover_message::Kind::Register(register),
        Some(id) => prover_message::Kind::Reconnect(Reconnect {
            prover_id: id.prover_id.clone(),
            register: Some(register),
            running,
            secret: id.secret.clone(),
        }),
    }
}

/// Opens the stream to `url` with `requests` (the hello queued first) and reads the answer.
pub(crate) async fn register(
    settings: &Settings,
    url: &str,
    requests: OutgoingStream,
) -> Result<Registered, NotRegistered> {
    let (client, mut inbound) = open(settings, url, requests).await?;
    let answer = match timeout(settings.connect_timeout, inbound.message()).await {
        Err(_) => return Err(unreachable("no RegisterResponse in time")),
        Ok(Err(status)) => {
            warn!(code = ?status.code(), message = %status.message(), "stream failed before registration");
            return Err(NotRegistered::Unreachable);
        }
        Ok(Ok(None)) => return Err(unreachable("stream closed before registration")),
        Ok(Ok(Some(CoordinatorMessage {
            kind: Some(coordinator_message::Kind::RegisterResponse(r)),
        }))) => r,
        Ok(Ok(Some(other))) => {
            warn!(message = ?other.kind.map(|k| kind_name(&k)), "expected RegisterResponse first");
            return Err(NotRegistered::Unreachable);
        }
    };
    let RegisterResponse {
        accepted,
        code,
        reason,
        prover_id,
        reconnect_secret,
        heartbeat_interval_ms,
        max_message_bytes,
        ..
    } = answer;
    if !accepted && code == ErrorCode::ReconnectRefused as i32 {
        return Err(NotRegistered::ReconnectRefused { reason });
    }
    if !accepted && code == ErrorCode::Unauthenticated as i32 {
        return Err(NotRegistered::CredentialsRefused { reason });
    }
    if !accepted {
        let operator = matches!(
            ErrorCode::try_from(code),
            Ok(ErrorCode::VersionMismatch
                | ErrorCode::ProofTypeNotNeeded
                | ErrorCode::InvalidArgument)
        );
        warn!(code = crate::tasks::code_name(code), reason = %reason, "registration rejected");
        return Err(NotRegistered::Rejected { operator });
    }
    Ok(Registered {
        inbound,
        identity: (!prover_id.is_empty()).then_some(Identity {
            prover_id,
            secret: reconnect_secret,
        }),
        heartbeat_interval: (heartbeat_interval_ms > 0)
            .then(|| Duration::from_millis(heartbeat_interval_ms as u64)),
        max_message_bytes: (max_message_bytes > 0).then_some(max_message_bytes as usize),
        _client: client,
    })
}

fn unreachable(why: &str) -> NotRegistered {
    warn!("{why}");
    NotRegistered::Unreachable
}

async fn open(
    settings: &Settings,
    url: &str,
    requests: OutgoingStream,
) -> Result<(ProverServiceClient<Channel>, Streaming<CoordinatorMessage>), NotRegistered> {
    let unreachable = |e: String| {
        warn!(error = %e, "coordinator unreachable");
        NotRegistered::Unreachable
    };
    let t = settings.connect_timeout;
    let endpoint = proofmill_proto::client::endpoint(url, &settings.tls)
        .map_err(unreachable)?
        .connect_timeout(t)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true);
    let channel = match timeout(t, endpoint.connect()).await {
        Err(_) => return Err(unreachable("connect timed out".into())),
        Ok(Err(e)) => {
            let error = format!("connect failed: {}", error_chain(&e));
            return Err(unreachable(explain(url, &error).await));
        }
        Ok(Ok(channel)) => channel,
    };
    let mut client = ProverServiceClient::new(channel)
        .max_decoding_message_size(settings.max_message_bytes)
        .max_encoding_message_size(settings.max_message_bytes);
    let opened = match timeout(t, client.prover_stream(requests)).await {
        Err(_) => return Err(unreachable("opening the stream timed out".into())),
        Ok(Err(s)) if is_transport_failure(&s) => {
            let error = format!(
                "opening the stream failed: {} ({:?})",
                s.message(),
                s.code()
            );
            let explained = explain(url, &error).await;
            if explained != error {
                return Err(unreachable(explained));
            }
            Err(s)
        }
        Ok(other) => other,
    };
    let response = opened.map_err(|s| {
        let active = s
            .metadata()
            .get(proofmill_proto::ACTIVE_URL_HEADER)
            .and_then(|v| v.to_str().ok());
        match active {
            Some(active) if s.code() == tonic::Code::Unavailable => {
                debug!(message = %s.message(), "refused by a standby coordinator");
                NotRegistered::Standby {
                    active: active.to_string(),
                }
            }
            _ => unreachable(format!(
                "opening the stream failed: {} ({:?})",
                s.message(),
                s.code()
            )),
        }
    })?;
    Ok((client, response.into_inner()))
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
        Kind::HeartbeatEcho(_) => "HeartbeatEcho",
    }
}
