//! Push mode (zkSync's reversed gateway): proofmill serves the core.
//!
//! - `POST /submit_request_for_proofs`, body `ProofGenerationData`: the batch is taken in;
//!   the reply is `null` (200). A body that is not one is 400 with the reason; a batch that
//!   is refused (another chain, proofmill's witness form not met, a known number with
//!   different content) is 400 too; a batch that cannot be stored now (store down, intake
//!   paused, shutting down) is 503, and the core sends it again.
//! - `POST /poll_generated_proofs`, body `{"l1_batch_id": N}`: `{"l1_batch_id": N, "proof":
//!   …}` once the batch is proven, else `null` (also for a batch never taken in).
//!
//! Refusals are `{"Error": "…"}`. Bodies are capped (413 over it). Every call needs a bearer
//! token of the coordinator's admin tokens with the operator role (none configured: open,
//! which the CLI allows on loopback only).

use crate::Gateway;
use crate::count_request;
use crate::proofs::{self, Outcome};
use crate::taking::{Mode, TakeError};
use crate::wire::{PollGeneratedProofsRequest, PollGeneratedProofsResponse, ProofGenerationData};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use proofmill_coordinator::{AdminAuth, Component, Role};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone, Debug)]
pub struct PushConfig {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Who may call (operator role).
    pub auth: AdminAuth,
}

#[derive(Clone)]
struct PushState {
    gateway: Arc<Gateway>,
    auth: Arc<AdminAuth>,
}

/// The push listener's server; [`PushServing::stop`] ends it.
pub struct PushServing {
    stop: watch::Sender<bool>,
    task: JoinHandle<std::io::Result<()>>,
}

impl PushServing {
    pub async fn stop(self) -> std::io::Result<()> {
        self.stop.send_replace(true);
        self.task.await.unwrap_or(Ok(()))
    }
}

/// The routes, for [`serve`] or a test.
pub fn router(gateway: Arc<Gateway>, cfg: PushConfig) -> Router {
    let state = PushState {
        gateway,
        auth: Arc::new(cfg.auth),
    };
    Router::new()
        .route(
            "/submit_request_for_proofs",
            post(submit_request_for_proofs),
        )
        .route("/poll_generated_proofs", post(poll_generated_proofs))
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .with_state(state)
}

/// Serves push mode on `listener` until stopped or the coordinator shuts down.
pub fn serve(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    cfg: PushConfig,
) -> PushServing {
    let (stop, mut stopped) = watch::channel(false);
    let shutdown = gateway.intake.shutdown();
    let app = router(gateway, cfg);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = stopped.wait_for(|s| *s) => {}
                    _ = shutdown.begun() => {}
                }
            })
            .await
    });
    PushServing { stop, task }
}

/// A JSON object of type `T` (serde would also take a struct from an array).
fn object<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => serde_json::from_slice(body).map_err(|e| e.to_string()),
        _ => Err("expected a JSON object".into()),
    }
}

fn refusal(status: StatusCode, message: String) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        serde_json::json!({ "Error": message }).to_string(),
    )
        .into_response()
}

fn json(value: &impl serde::Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (
            StatusCode::OK,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response(),
        Err(e) => refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// 401/403 unless the bearer token has the operator role.
fn authorize(state: &PushState, headers: &HeaderMap, endpoint: &'static str) -> Option<Response> {
    let header = headers
        .get(axum::http::header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("malformed"));
    match state.auth.authorize(header, Role::Operator) {
        Ok(_) => None,
        Err(e) => {
            count_request(endpoint, "unauthorized");
            tracing::warn!(endpoint, reason = %e, "core API push call refused");
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            Some(refusal(status, e.to_string()))
        }
    }
}

async fn submit_request_for_proofs(
    State(state): State<PushState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const ENDPOINT: &str = "submit_request_for_proofs";
    if let Some(refused) = authorize(&state, &headers, ENDPOINT) {
        return refused;
    }
    let data: ProofGenerationData = match object(&body) {
        Ok(data) => data,
        Err(e) => {
            count_request(ENDPOINT, "refused");
            return refusal(
                StatusCode::BAD_REQUEST,
                format!("the body is not a ProofGenerationData: {e}"),
            );
        }
    };
    let gateway = &state.gateway;
    if let Some(p) = gateway.intake.pauses().get(Component::Intake) {
        count_request(ENDPOINT, "unavailable");
        return refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "intake is paused by an operator since {} (Unix ms){}: send the batch again later",
                p.since,
                if p.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", p.reason)
                }
            ),
        );
    }
    match gateway.take(&data, Mode::Push).await {
        Ok(_) => {
            count_request(ENDPOINT, "success");
            json(&())
        }
        Err(e @ (TakeError::Unavailable { .. } | TakeError::Stopping)) => {
            count_request(ENDPOINT, "unavailable");
            refusal(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        Err(e) => {
            count_request(ENDPOINT, "refused");
            refusal(StatusCode::BAD_REQUEST, e.to_string())
        }
    }
}

async fn poll_generated_proofs(
    State(state): State<PushState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    const ENDPOINT: &str = "poll_generated_proofs";
    if let Some(refused) = authorize(&state, &headers, ENDPOINT) {
        return refused;
    }
    let request: PollGeneratedProofsRequest = match object(&body) {
        Ok(r) => r,
        Err(e) => {
            count_request(ENDPOINT, "refused");
            return refusal(
                StatusCode::BAD_REQUEST,
                format!("the body is not {{\"l1_batch_id\": N}}: {e}"),
            );
        }
    };
    let n = request.l1_batch_id;
    let intake = &state.gateway.intake;
    match proofs::outcome(
        intake.store().as_ref(),
        intake.blobs(),
        (intake.chain_id(), n),
    )
    .await
    {
        Ok(Some(Outcome::Proven { proof, .. })) => {
            count_request(ENDPOINT, "proof");
            metrics::counter!(
                proofmill_telemetry::names::GATEWAY_PROOFS_SUBMITTED_TOTAL,
                proofmill_telemetry::names::KIND => "proof"
            )
            .increment(1);
            json(&Some(PollGeneratedProofsResponse {
                l1_batch_id: n,
                proof,
            }))
        }
        Ok(_) => {
            count_request(ENDPOINT, "pending");
            json(&None::<PollGeneratedProofsResponse>)
        }
        Err(e) => {
            count_request(ENDPOINT, "unavailable");
            refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot read batch {n}: {e}"),
            )
        }
    }
}
