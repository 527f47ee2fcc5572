//! The handlers: each turns its path, query and body into the gRPC call's request, runs the
//! call, and answers its response as JSON (or its error as an [`ApiError`]).

use super::AdminHttp;
use super::error::ApiError;
use super::ready::{self, Component};
use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use proofmill_proto::v1::*;
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tonic::Request as Call;

type Answer<T> = Result<Json<T>, ApiError>;

/// A call's response, or the error it carries.
fn answered<T>(error: Option<AdminError>, body: T) -> Answer<T> {
    match error {
        Some(e) => Err(e.into()),
        None => Ok(Json(body)),
    }
}

/// A JSON request body; an empty one reads as `{}`. The Content-Type is not checked (so a
/// plain `curl -d` works); the body's size is capped by the route's `DefaultBodyLimit`.
pub(super) struct JsonBody<T>(pub(super) T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state).await?;
        let text: &[u8] = if body.trim_ascii().is_empty() {
            b"{}"
        } else {
            &body
        };
        serde_json::from_slice(text)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid(format!("malformed JSON body: {e}")))
    }
}

/// The body of a call that takes none: `{}` or nothing.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct NoFields {}

/// Bytes as hex in JSON, with or without `0x`.
fn hex_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    let s = String::deserialize(d)?;
    let digits = s.strip_prefix("0x").unwrap_or(&s);
    hex::decode(digits).map_err(|e| D::Error::custom(format!("not hex: {e}")))
}

#[derive(Serialize)]
pub(super) struct Live {
    status: &'static str,
    version: &'static str,
    role: &'static str,
    draining: bool,
}

/// Liveness: the process answers. Touches nothing else (a store outage is for `/ready`:
/// restarting the process would not cure it).
pub(super) async fn live(State(http): State<AdminHttp>) -> Json<Live> {
    let api = http.api();
    Json(Live {
        status: "alive",
        version: env!("CARGO_PKG_VERSION"),
        role: api.role.as_str(),
        draining: api.standing.as_ref().is_some_and(|s| s.draining()),
    })
}

#[derive(Serialize)]
pub(super) struct Ready {
    ready: bool,
    role: &'static str,
    components: Vec<Component>,
}

/// Readiness: 200 when every required component is ready, else 503; both list them all.
pub(super) async fn ready(State(http): State<AdminHttp>) -> (StatusCode, Json<Ready>) {
    let api = http.api();
    let (ready, components) = ready::check(&api.probes).await;
    let status = match ready {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    let role = api.role.as_str();
    (
        status,
        Json(Ready {
            ready,
            role,
            components,
        }),
    )
}

/// Runs the request if a slot is free ([`super::MAX_IN_FLIGHT`]), else refuses it at once.
pub(super) async fn bounded(
    State(slots): State<Arc<Semaphore>>,
    request: Request,
    next: Next,
) -> Response {
    match slots.try_acquire() {
        Ok(_slot) => next.run(request).await,
        Err(_) => ApiError::unavailable(format!(
            "more than {} admin requests at once; try again shortly",
            super::MAX_IN_FLIGHT
        ))
        .into_response(),
    }
}

/// Runs the request if its bearer token has the group's role ([`crate::AdminAuth`], the
/// same tokens the gRPC admin service takes), else answers 401 or 403 without running it.
/// Operator calls are logged with the token's name, never its value.
pub(super) async fn authorized(
    State((auth, needed)): State<(Arc<crate::AdminAuth>, crate::Role)>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("malformed"));
    match auth.authorize(header, needed) {
        Ok(caller) => {
            if needed == crate::Role::Operator && !auth.is_open() {
                tracing::info!(caller = %caller.name, method = %request.method(), path = %request.uri().path(), "admin HTTP call");
            }
            next.run(request).await
        }
        Err(e) => {
            tracing::warn!(method = %request.method(), path = %request.uri().path(), reason = %e, "admin HTTP call refused");
            ApiError::from(e).into_response()
        }
    }
}

/// `GET /events`: the `Watch` stream as server-sent events, one per event, named by its
/// kind, its data the event as a flat JSON object. Ends when the coordinator stops.
pub(super) async fn events(
    State(http): State<AdminHttp>,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt as _;
    let admin = http.api().admin()?;
    let stream = admin.watch(Call::new(WatchRequest {})).await?.into_inner();
    let events = stream.map(|e| {
        Ok(match e {
            Ok(e) => {
                let (kind, data) = crate::watch::watch_event_json(&e);
                Event::default().event(kind).data(data.to_string())
            }
            // The stream's items are all `Ok`; an error would end it anyway.
            Err(status) => Event::default().event("error").data(status.message()),
        })
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

pub(super) async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::no_route(format!("no route {method} {}", uri.path()))
}

pub(super) async fn no_method(method: Method, uri: Uri) -> ApiError {
    ApiError::no_method(format!("{} does not take {method}", uri.path()))
}

pub(super) async fn health_check(State(http): State<AdminHttp>) -> Answer<HealthCheckResponse> {
    let admin = http.api().admin()?;
    let r = admin.health_check(Call::new(HealthCheckRequest {})).await?;
    Ok(Json(r.into_inner()))
}

pub(super) async fn system_status(State(http): State<AdminHttp>) -> Answer<SystemStatusResponse> {
    let admin = http.api().admin()?;
    let r = admin
        .system_status(Call::new(SystemStatusRequest {}))
        .await?;
    Ok(Json(r.into_inner()))
}

pub(super) async fn status_info(State(http): State<AdminHttp>) -> Answer<StatusInfoResponse> {
    let admin = http.api().admin()?;
    let r = admin.status_info(Call::new(StatusInfoRequest {})).await?;
    Ok(Json(r.into_inner()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct JobsQuery {
    /// Only this chain's jobs (the coordinator's own chain when absent).
    chain: Option<u64>,
    proof_type: Option<String>,
    state: Option<String>,
    from_batch: Option<u64>,
    limit: Option<u32>,
}

pub(super) async fn jobs_list(
    State(http): State<AdminHttp>,
    query: Result<Query<JobsQuery>, QueryRejection>,
) -> Answer<JobsListResponse> {
    let Query(q) = query?;
    let admin = http.api().admin()?;
    let req = JobsListRequest {
        chain_id: q.chain.unwrap_or(0),
        proof_type: q.proof_type.unwrap_or_default(),
        state: q.state.unwrap_or_default(),
        from_batch: q.from_batch.unwrap_or(0),
        limit: q.limit.unwrap_or(0),
    };
    let mut r = admin.jobs_list(Call::new(req)).await?.into_inner();
    answered(r.error.take(), r)
}

pub(super) async fn job_status(
    State(http): State<AdminHttp>,
    path: Result<Path<(u64, String)>, PathRejection>,
) -> Answer<JobStatusResponse> {
    let Path((batch, proof_type)) = path?;
    let admin = http.api().admin()?;
    let req = JobStatusRequest {
        batch,
        proof_type,
        chain_id: 0,
    };
    let mut r = admin.job_status(Call::new(req)).await?.into_inner();
    answered(r.error.take(), r)
}

pub(super) async fn provers_list(State(http): State<AdminHttp>) -> Answer<ProversListResponse> {
    let admin = http.api().admin()?;
    let r = admin.provers_list(Call::new(ProversListRequest {})).await?;
    Ok(Json(r.into_inner()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LaunchBody {
    /// The batch's chain (absent or 0: the coordinator's own).
    #[serde(default)]
    chain_id: u64,
    batch: u64,
    version: String,
    #[serde(deserialize_with = "hex_bytes")]
    input: Vec<u8>,
    #[serde(deserialize_with = "hex_bytes")]
    public_values: Vec<u8>,
    #[serde(default)]
    proof_types: Vec<String>,
}

/// 201 when the batch was created, 200 when the same batch was there already.
pub(super) async fn launch_proof(
    State(http): State<AdminHttp>,
    JsonBody(b): JsonBody<LaunchBody>,
) -> Result<(StatusCode, Json<LaunchProofResponse>), ApiError> {
    let admin = http.api().admin()?;
    let req = LaunchProofRequest {
        chain_id: b.chain_id,
        batch: b.batch,
        version: b.version,
        input: b.input,
        public_values: b.public_values,
        proof_types: b.proof_types,
    };
    let mut r = admin.launch_proof(Call::new(req)).await?.into_inner();
    let created = r.created;
    let Json(r) = answered(r.error.take(), r)?;
    let status = match created {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    };
    Ok((status, Json(r)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct InputBody {
    version: String,
    #[serde(deserialize_with = "hex_bytes")]
    input: Vec<u8>,
    #[serde(deserialize_with = "hex_bytes")]
    public_values: Vec<u8>,
    #[serde(default)]
    proof_types: Vec<String>,
}

pub(super) async fn replace_batch_input(
    State(http): State<AdminHttp>,
    path: Result<Path<u64>, PathRejection>,
    JsonBody(b): JsonBody<InputBody>,
) -> Answer<ReplaceBatchInputResponse> {
    let Path(batch) = path?;
    let admin = http.api().admin()?;
    let req = ReplaceBatchInputRequest {
        chain_id: 0,
        batch,
        version: b.version,
        input: b.input,
        public_values: b.public_values,
        proof_types: b.proof_types,
    };
    let mut r = admin
        .replace_batch_input(Call::new(req))
        .await?
        .into_inner();
    answered(r.error.take(), r)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReasonBody {
    #[serde(default)]
    reason: String,
}

pub(super) async fn cancel_batch(
    State(http): State<AdminHttp>,
    path: Result<Path<u64>, PathRejection>,
    JsonBody(b): JsonBody<ReasonBody>,
) -> Answer<CancelBatchResponse> {
    let Path(batch) = path?;
    let admin = http.api().admin()?;
    let req = CancelBatchRequest {
        chain_id: 0,
        batch,
        reason: b.reason,
    };
    let mut r = admin.cancel_batch(Call::new(req)).await?.into_inner();
    answered(r.error.take(), r)
}

/// Every failed job of the batch.
pub(super) async fn retry_batch(
    State(http): State<AdminHttp>,
    path: Result<Path<u64>, PathRejection>,
    JsonBody(NoFields {}): JsonBody<NoFields>,
) -> Answer<RetryJobResponse> {
    let Path(batch) = path?;
    retry(&http, batch, String::new()).await
}

pub(super) async fn retry_job(
    State(http): State<AdminHttp>,
    path: Result<Path<(u64, String)>, PathRejection>,
    JsonBody(NoFields {}): JsonBody<NoFields>,
) -> Answer<RetryJobResponse> {
    let Path((batch, proof_type)) = path?;
    // The gRPC call reads an empty type as "every failed job of the batch".
    if proof_type.is_empty() {
        return Err(ApiError::invalid("empty proof type"));
    }
    retry(&http, batch, proof_type).await
}

async fn retry(http: &AdminHttp, batch: u64, proof_type: String) -> Answer<RetryJobResponse> {
    let admin = http.api().admin()?;
    let req = RetryJobRequest {
        batch,
        proof_type,
        chain_id: 0,
    };
    let mut r = admin.retry_job(Call::new(req)).await?.into_inner();
    answered(r.error.take(), r)
}

pub(super) async fn cancel_job(
    State(http): State<AdminHttp>,
    path: Result<Path<(u64, String)>, PathRejection>,
    JsonBody(b): JsonBody<ReasonBody>,
) -> Answer<CancelJobResponse> {
    let Path((batch, proof_type)) = path?;
    let admin = http.api().admin()?;
    let req = CancelJobRequest {
        chain_id: 0,
        batch,
        proof_type,
        reason: b.reason,
    };
    let mut r = admin.cancel_job(Call::new(req)).await?.into_inner();
    answered(r.error.take(), r)
}

pub(super) async fn cordon(
    State(http): State<AdminHttp>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(NoFields {}): JsonBody<NoFields>,
) -> Answer<CordonProverResponse> {
    set_cordon(&http, path?.0, true).await
}

pub(super) async fn uncordon(
    State(http): State<AdminHttp>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(NoFields {}): JsonBody<NoFields>,
) -> Answer<CordonProverResponse> {
    set_cordon(&http, path?.0, false).await
}

pub(super) async fn pause(
    State(http): State<AdminHttp>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(b): JsonBody<ReasonBody>,
) -> Answer<PauseComponentResponse> {
    let admin = http.api().admin()?;
    let req = PauseComponentRequest {
        component: path?.0,
        reason: b.reason,
    };
    let mut r = admin.pause_component(Call::new(req)).await?.into_inner();
    answered(r.error.take(), r)
}

pub(super) async fn resume(
    State(http): State<AdminHttp>,
    path: Result<Path<String>, PathRejection>,
    JsonBody(NoFields {}): JsonBody<NoFields>,
) -> Answer<ResumeComponentResponse> {
    let admin = http.api().admin()?;
    let req = ResumeComponentRequest { component: path?.0 };
    let mut r = admin.resume_component(Call::new(req)).await?.into_inner();
    answered(r.error.take(), r)
}

pub(super) async fn settle_now(
    State(http): State<AdminHttp>,
    JsonBody(NoFields {}): JsonBody<NoFields>,
) -> Answer<SettleNowResponse> {
    let admin = http.api().admin()?;
    let mut r = admin
        .settle_now(Call::new(SettleNowRequest {}))
        .await?
        .into_inner();
    answered(r.error.take(), r)
}

pub(super) async fn commit_now(
    State(http): State<AdminHttp>,
    path: Result<Path<u64>, PathRejection>,
    JsonBody(NoFields {}): JsonBody<NoFields>,
) -> Answer<CommitNowResponse> {
    let admin = http.api().admin()?;
    let req = CommitNowRequest { batch: path?.0 };
    let mut r = admin.commit_now(Call::new(req)).await?.into_inner();
    answered(r.error.take(), r)
}

async fn set_cordon(
    http: &AdminHttp,
    prover_id: String,
    cordoned: bool,
) -> Answer<CordonProverResponse> {
    let admin = http.api().admin()?;
    let req = CordonProverRequest {
        prover_id,
        cordoned,
    };
    let mut r = admin.cordon_prover(Call::new(req)).await?.into_inner();
    answered(r.error.take(), r)
}
