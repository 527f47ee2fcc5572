//! The submitter's order and durable progress, cancelled batches as
//! `"SkippedProofGeneration"`, and the push endpoints' refusals, against a real coordinator
//! over real HTTP.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::routing::post;
use common::{batches, coordinator};
use proofmill_coordinator::{AdminAuth, Role, TokenHash};
use proofmill_gateway::wire::{ProofGenerationData, SubmitProofRequest};
use proofmill_gateway::{ClientConfig, Gateway, Pull, PullConfig, PushConfig};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Hands out its batches once each, then nothing; records every submission.
#[derive(Clone, Default)]
struct Core {
    to_hand_out: Arc<Mutex<VecDeque<ProofGenerationData>>>,
    submitted: Arc<Mutex<Vec<(u64, SubmitProofRequest)>>>,
}

async fn serve(core: Core) -> String {
    async fn fetch(State(core): State<Core>) -> String {
        let next = core.to_hand_out.lock().unwrap().pop_front();
        json!({ "Success": next }).to_string()
    }
    async fn submit(State(core): State<Core>, Path(n): Path<u64>, body: Bytes) -> String {
        let request = serde_json::from_slice(&body).unwrap();
        core.submitted.lock().unwrap().push((n, request));
        json!("Success").to_string()
    }
    let app = Router::new()
        .route("/proof_generation_data", post(fetch))
        .route("/submit_proof/{n}", post(submit))
        .with_state(core);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn cancelled_batches_go_back_skipped_in_order_and_progress_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let coord = coordinator(dir.path()).await;
    let gateway = Gateway::open(coord.intake()).await.unwrap();
    let core = Core::default();
    core.to_hand_out.lock().unwrap().extend(batches(2, 7));
    let url = serve(core.clone()).await;
    let pull = Pull::start(
        gateway.clone(),
        PullConfig {
            client: ClientConfig {
                urls: vec![url],
                timeout: Duration::from_secs(5),
                max_body_bytes: 4 << 20,
                token: None,
            },
            poll_interval: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
        },
    )
    .unwrap();
    let store = coord.store().clone();
    for _ in 0..100 {
        if store.batch(common::CHAIN, 2).await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // No prover: batch 1 stays queued. Batch 2 cancelled must still wait for it.
    coord
        .intake()
        .cancel_batch(proofmill_types::BatchId::new(common::CHAIN, 2), "test")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(core.submitted.lock().unwrap().is_empty());
    assert_eq!(gateway.sent_through().await, 0);

    coord
        .intake()
        .cancel_batch(proofmill_types::BatchId::new(common::CHAIN, 1), "test")
        .await
        .unwrap();
    for _ in 0..100 {
        if gateway.sent_through().await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gateway.sent_through().await, 2);
    pull.stop().await;
    let submitted = core.submitted.lock().unwrap().clone();
    assert_eq!(
        submitted,
        vec![
            (1, SubmitProofRequest::SkippedProofGeneration),
            (2, SubmitProofRequest::SkippedProofGeneration)
        ]
    );
    // The watermark is in the store: a gateway opened again starts from it.
    let again = Gateway::open(coord.intake()).await.unwrap();
    assert_eq!(again.sent_through().await, 2);
    coord.drain("test over").await.unwrap();
}

/// `POST` of `body` to `http://addr{path}` with an optional bearer token: status and body.
async fn http_post(addr: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading all of a large body.
    let _ = s.write_all(body).await;
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply).await;
    let reply = String::from_utf8_lossy(&reply).to_string();
    let status = reply[9..12].parse().unwrap();
    let body = reply.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

#[tokio::test]
async fn push_needs_an_operator_token_and_refuses_bad_bodies_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let coord = coordinator(dir.path()).await;
    let gateway = Gateway::open(coord.intake()).await.unwrap();
    let mut auth = AdminAuth::open();
    auth.add("core", Role::Operator, TokenHash::of("op-secret"))
        .unwrap();
    auth.add("viewer", Role::ReadOnly, TokenHash::of("ro-secret"))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let serving = proofmill_gateway::push::serve(
        gateway.clone(),
        listener,
        PushConfig {
            max_body_bytes: 64 << 10,
            auth,
        },
    );
    let batch = serde_json::to_vec(&batches(1, 7)[0]).unwrap();
    const SUBMIT: &str = "/submit_request_for_proofs";

    let (status, body) = http_post(&addr, SUBMIT, None, &batch).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("missing admin token"), "{body}");
    let (status, body) = http_post(&addr, SUBMIT, Some("ro-secret"), &batch).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = http_post(
        &addr,
        SUBMIT,
        Some("op-secret"),
        b"{\"l1_batch_number\": 1}",
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.contains("not a ProofGenerationData") && body.contains("chain_id"),
        "{body}"
    );
    let (status, _) = http_post(&addr, SUBMIT, Some("op-secret"), &vec![b' '; 100 << 10]).await;
    assert_eq!(status, 413);
    let mut other = batches(1, 7).remove(0);
    other.chain_id = 3;
    let other = serde_json::to_vec(&other).unwrap();
    let (status, body) = http_post(&addr, SUBMIT, Some("op-secret"), &other).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("chain 3"), "{body}");
    assert_eq!(
        coord
            .store()
            .last_sealed_batch(common::CHAIN)
            .await
            .unwrap(),
        None
    );

    let (status, body) = http_post(&addr, SUBMIT, Some("op-secret"), &batch).await;
    assert_eq!((status, body.as_str()), (200, "null"));
    // Again: the same batch is fine.
    let (status, body) = http_post(&addr, SUBMIT, Some("op-secret"), &batch).await;
    assert_eq!((status, body.as_str()), (200, "null"));
    assert_eq!(
        coord
            .store()
            .last_sealed_batch(common::CHAIN)
            .await
            .unwrap(),
        Some(1)
    );

    const POLL: &str = "/poll_generated_proofs";
    // Not proven (no prover here), and never taken: both null.
    for n in [1, 99] {
        let request = format!("{{\"l1_batch_id\": {n}}}");
        let (status, body) = http_post(&addr, POLL, Some("op-secret"), request.as_bytes()).await;
        assert_eq!((status, body.as_str()), (200, "null"));
    }
    let (status, body) = http_post(&addr, POLL, Some("op-secret"), b"[1]").await;
    assert_eq!(status, 400, "{body}");
    serving.stop().await.unwrap();
    coord.drain("test over").await.unwrap();
}
