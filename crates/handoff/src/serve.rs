//! Pull mode, the core's side: `POST /proof_generation_data` hands the oldest ready batch
//! out, `POST /submit_proof/{n}` takes its proofs back (`docs/core-api.md`).

use crate::hub::{Hub, Offer, OfferedType};
use axum::Json;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use proofmill_core_api::wire::{
    BatchProof, ProofGenerationData, ProofGenerationDataResponse, SubmitProofRequest,
    SubmitProofResponse, TypedProof, WitnessInput, rfc3339_utc,
};
use proofmill_types::ProofType;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
struct Served {
    hub: Arc<Hub>,
    chain_id: u64,
}

/// The routes of the core API's pull mode over `hub`; request bodies over `max_body_bytes`
/// are refused (413).
pub fn router(hub: Arc<Hub>, chain_id: u64, max_body_bytes: usize) -> axum::Router {
    axum::Router::new()
        .route("/proof_generation_data", post(proof_generation_data))
        .route("/submit_proof/{l1_batch_number}", post(submit_proof))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(Served { hub, chain_id })
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: Arc<Hub>,
    chain_id: u64,
    max_body_bytes: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(hub, chain_id, max_body_bytes))
        .with_graceful_shutdown(shutdown)
        .await
}

/// `ProofGenerationData` of a handed-out batch.
pub fn generation_data(offer: &Offer, chain_id: u64, now_ms: u64) -> ProofGenerationData {
    let types = offer.proof_types.iter().map(|t| t.to_string()).collect();
    let witness = WitnessInput::new(&offer.input, offer.public_values.as_bytes(), types);
    ProofGenerationData {
        l1_batch_number: offer.batch,
        chain_id,
        batch_sealed_at: rfc3339_utc(now_ms),
        witness_input_data: serde_json::to_value(witness).expect("strings encode"),
        protocol_version: offer.protocol_version.clone(),
        l1_verifier_config: serde_json::Value::Null,
    }
}

/// A refusal the caller can read: `{"Error": "…"}` with `status`.
fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(SubmitProofResponse::Error(message))).into_response()
}

async fn proof_generation_data(State(s): State<Served>, body: axum::body::Bytes) -> Response {
    // The body is `{}`; an empty one is taken too, anything else is a caller's mistake.
    let trimmed = body.trim_ascii();
    if !trimmed.is_empty()
        && serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(trimmed).is_err()
    {
        return refuse(StatusCode::BAD_REQUEST, "the body must be {}".into());
    }
    let reply = s
        .hub
        .take_offer(Instant::now())
        .map(|offer| Box::new(generation_data(&offer, s.chain_id, crate::now_ms())));
    if let Some(data) = &reply {
        tracing::info!(
            batch = data.l1_batch_number,
            "batch handed out to the proving cluster"
        );
    }
    Json(ProofGenerationDataResponse::Success(reply)).into_response()
}

async fn submit_proof(
    State(s): State<Served>,
    Path(batch): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Ok(batch) = batch.parse::<u64>() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            format!("{batch:?} is not a batch number"),
        );
    };
    let request: SubmitProofRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body is not {{\"Proof\": …}} or \"SkippedProofGeneration\": {e}"),
            );
        }
    };
    let outcome = match request {
        SubmitProofRequest::SkippedProofGeneration => {
            // Also `Success` when nothing waits: a repeat whose first reply was lost.
            match s.hub.skip(batch, "the proving cluster skipped the batch") {
                0 => tracing::info!(batch, "the proving cluster skipped a batch not out now"),
                n => tracing::warn!(
                    batch,
                    tasks = n,
                    "the proving cluster skipped a batch: retried"
                ),
            }
            Ok(())
        }
        SubmitProofRequest::Proof(proof) => take_proofs(&s.hub, batch, &proof).await,
    };
    match outcome {
        Ok(()) => Json(SubmitProofResponse::Success).into_response(),
        Err(message) => {
            tracing::warn!(batch, %message, "proof from the proving cluster refused");
            Json(SubmitProofResponse::Error(message)).into_response()
        }
    }
}

/// Decodes a posted proof and gives it to the hub (which checks it off the async threads).
pub async fn take_proofs(hub: &Arc<Hub>, batch: u64, proof: &BatchProof) -> Result<(), String> {
    let proofs = decode(proof)?;
    let hub = hub.clone();
    let taken = tokio::task::spawn_blocking(move || hub.submit(batch, &proofs))
        .await
        .map_err(|e| format!("checking the proof: {e}"))?;
    taken.map_err(|e| e.to_string())?;
    tracing::info!(batch, "proof from the proving cluster accepted");
    Ok(())
}

fn decode(proof: &BatchProof) -> Result<Vec<OfferedType>, String> {
    proof
        .proofs
        .iter()
        .map(|p: &TypedProof| {
            let proof_type = ProofType::new(p.proof_type.clone())
                .map_err(|e| format!("proof_type {:?}: {e}", p.proof_type))?;
            Ok(OfferedType {
                proof_type,
                proof: p.proof_bytes()?,
            })
        })
        .collect()
}
