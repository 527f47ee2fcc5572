//! The client API as JSON (`/v1/chains/{chain}/batches...`): the same implementation as the
//! gRPC `ClientService`; errors are `{"error": {"code", "message", "reason"}}` with the gRPC
//! code's name (`NOT_FOUND`, `ALREADY_EXISTS`, ...) and the `FailureReason` when there is
//! one. Bytes are hex (with or without `0x`), as the admin JSON takes them.

use super::AdminHttp;
use super::error::ApiError;
use super::routes::JsonBody;
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use proofmill_proto::v1::client_service_server::ClientService;
use proofmill_proto::v1::*;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use tonic::Request as Call;

type Answer<T> = Result<Json<T>, ApiError>;

/// Optional bytes as hex in JSON, with or without `0x`.
fn opt_hex<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
    let s = String::deserialize(d)?;
    let digits = s.strip_prefix("0x").unwrap_or(&s);
    hex::decode(digits)
        .map(Some)
        .map_err(|e| D::Error::custom(format!("not hex: {e}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SubmitBody {
    batch_number: u64,
    protocol_version: String,
    #[serde(default)]
    proof_types: Vec<String>,
    #[serde(deserialize_with = "opt_hex")]
    public_values: Option<Vec<u8>>,
    /// The input itself, or …
    #[serde(default, deserialize_with = "opt_hex")]
    input: Option<Vec<u8>>,
    /// … where the coordinator reads it, with its SHA-256.
    #[serde(default)]
    input_url: String,
    #[serde(default, deserialize_with = "opt_hex")]
    input_digest: Option<Vec<u8>>,
}

/// `POST /v1/chains/{chain}/batches`: 201 when the batch was created, 200 when the same
/// batch was there already.
pub(super) async fn submit_batch(
    State(http): State<AdminHttp>,
    path: Result<Path<u64>, PathRejection>,
    JsonBody(b): JsonBody<SubmitBody>,
) -> Result<(StatusCode, Json<SubmitBatchResponse>), ApiError> {
    let Path(chain_id) = path?;
    let client = http.api().client()?;
    let header = SubmitHeader {
        chain_id,
        batch_number: b.batch_number,
        protocol_version: b.protocol_version,
        proof_types: b.proof_types,
        public_values: b.public_values.unwrap_or_default(),
        input_url: b.input_url,
        input_digest: b.input_digest.unwrap_or_default(),
    };
    let r = client
        .take(header, b.input.map(Into::into))
        .await
        .map_err(ApiError::client)?;
    let status = match r.created {
        true => StatusCode::CREATED,
        false => StatusCode::OK,
    };
    Ok((status, Json(r)))
}

pub(super) async fn get_batch(
    State(http): State<AdminHttp>,
    path: Result<Path<(u64, u64)>, PathRejection>,
) -> Answer<BatchStatus> {
    let Path((chain_id, batch_number)) = path?;
    let client = http.api().client()?;
    let req = GetBatchRequest {
        chain_id,
        batch_number,
    };
    let r = client
        .get_batch(Call::new(req))
        .await
        .map_err(ApiError::client)?;
    Ok(Json(r.into_inner()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ProofQuery {
    proof_type: Option<String>,
}

pub(super) async fn get_proof(
    State(http): State<AdminHttp>,
    path: Result<Path<(u64, u64)>, PathRejection>,
    query: Result<Query<ProofQuery>, QueryRejection>,
) -> Answer<GetProofResponse> {
    let Path((chain_id, batch_number)) = path?;
    let Query(q) = query?;
    let client = http.api().client()?;
    let req = GetProofRequest {
        chain_id,
        batch_number,
        proof_type: q.proof_type.unwrap_or_default(),
    };
    let r = client
        .get_proof(Call::new(req))
        .await
        .map_err(ApiError::client)?;
    Ok(Json(r.into_inner()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WaitQuery {
    timeout_ms: Option<u32>,
}

pub(super) async fn wait_proof(
    State(http): State<AdminHttp>,
    path: Result<Path<(u64, u64)>, PathRejection>,
    query: Result<Query<WaitQuery>, QueryRejection>,
) -> Answer<WaitProofResponse> {
    let Path((chain_id, batch_number)) = path?;
    let Query(q) = query?;
    let client = http.api().client()?;
    let req = WaitProofRequest {
        chain_id,
        batch_number,
        timeout_ms: q.timeout_ms.unwrap_or(0),
    };
    let r = client
        .wait_proof(Call::new(req))
        .await
        .map_err(ApiError::client)?;
    Ok(Json(r.into_inner()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CancelBody {
    #[serde(default)]
    reason: String,
}

pub(super) async fn cancel_batch(
    State(http): State<AdminHttp>,
    path: Result<Path<(u64, u64)>, PathRejection>,
    JsonBody(b): JsonBody<CancelBody>,
) -> Answer<ClientCancelResponse> {
    let Path((chain_id, batch_number)) = path?;
    let client = http.api().client()?;
    let req = ClientCancelRequest {
        chain_id,
        batch_number,
        reason: b.reason,
    };
    let r = client
        .cancel_batch(Call::new(req))
        .await
        .map_err(ApiError::client)?;
    Ok(Json(r.into_inner()))
}

/// `GET …/{batch}/events`: `WatchBatch` as server-sent events named `batch`, each the
/// batch's state as JSON; ends once the batch is terminal.
pub(super) async fn watch_batch(
    State(http): State<AdminHttp>,
    path: Result<Path<(u64, u64)>, PathRejection>,
) -> Result<
    axum::response::sse::Sse<
        impl futures::Stream<Item = Result<axum::response::sse::Event, std::convert::Infallible>>,
    >,
    ApiError,
> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    use futures::StreamExt as _;
    let Path((chain_id, batch_number)) = path?;
    let client = http.api().client()?;
    let req = WatchBatchRequest {
        chain_id,
        batch_number,
    };
    let stream = client
        .watch_batch(Call::new(req))
        .await
        .map_err(ApiError::client)?
        .into_inner();
    let events = stream.map(|s| {
        Ok(match s {
            Ok(s) => Event::default()
                .event("batch")
                .data(serde_json::to_string(&s).unwrap_or_default()),
            Err(status) => Event::default().event("error").data(status.message()),
        })
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}
