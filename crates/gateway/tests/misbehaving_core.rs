//! The gateway against a core API that misbehaves, served by axum on 127.0.0.1:0: every
//! misbehaviour is a clear error of its kind, retried with backoff, and leaves no batch
//! half-created. Batches go into a real coordinator (SQLite in a temp dir).

mod common;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use common::{batches, coordinator};
use proofmill_coordinator::Coordinator;
use proofmill_gateway::wire::{ProofGenerationData, WitnessInput};
use proofmill_gateway::{ClientConfig, ClientError, CoreClient, Gateway, Pull, PullConfig};
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test core does for one `proof_generation_data` call.
#[derive(Clone)]
enum Reply {
    Json(serde_json::Value),
    Garbage,
    Status500,
    Html,
    /// A chunked body of `n` MiB, generated as it is sent.
    Huge(usize),
    Hang,
    /// Some bytes of a declared-longer body, then the connection is dropped.
    CutShort,
}

#[derive(Clone, Default)]
struct Core {
    script: Arc<Mutex<VecDeque<Reply>>>,
    /// Replied when the script is empty.
    then: Arc<Mutex<Option<Reply>>>,
    requests: Arc<AtomicUsize>,
    /// MiB of a huge body actually produced.
    produced: Arc<AtomicUsize>,
}

async fn proof_generation_data(State(core): State<Core>, body: Bytes) -> Response {
    assert_eq!(&body[..], b"{}", "the request body is {{}}");
    core.requests.fetch_add(1, Ordering::SeqCst);
    let next = core.script.lock().unwrap().pop_front();
    let reply = next
        .or_else(|| core.then.lock().unwrap().clone())
        .unwrap_or(Reply::Json(json!({"Success": null})));
    match reply {
        Reply::Json(v) => {
            ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
        }
        Reply::Garbage => "\u{0}\u{1}garbage{{{".into_response(),
        Reply::Status500 => (StatusCode::INTERNAL_SERVER_ERROR, "database on fire").into_response(),
        Reply::Html => (
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
            .into_response(),
        Reply::Huge(mib) => {
            let produced = core.produced.clone();
            let stream = futures::stream::iter(0..mib).map(move |_| {
                produced.fetch_add(1, Ordering::SeqCst);
                Ok::<_, std::io::Error>(Bytes::from(vec![b' '; 1 << 20]))
            });
            Body::from_stream(stream).into_response()
        }
        Reply::Hang => {
            tokio::time::sleep(Duration::from_secs(600)).await;
            "late".into_response()
        }
        Reply::CutShort => {
            let stream = futures::stream::iter(vec![
                Ok(Bytes::from_static(b"{\"Success\": {\"l1_batch")),
                Err(std::io::Error::other("connection dropped")),
            ]);
            Body::from_stream(stream).into_response()
        }
    }
}

use futures::StreamExt as _;

async fn serve(core: Core) -> String {
    let app = Router::new()
        .route("/proof_generation_data", post(proof_generation_data))
        .with_state(core);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

fn client(url: &str) -> CoreClient {
    CoreClient::new(ClientConfig {
        urls: vec![url.to_string()],
        timeout: Duration::from_millis(500),
        max_body_bytes: 4 << 20,
        token: None,
    })
    .unwrap()
}

async fn one(reply: Reply) -> (Result<Option<ProofGenerationData>, ClientError>, Core) {
    let core = Core::default();
    core.script.lock().unwrap().push_back(reply);
    let url = serve(core.clone()).await;
    (client(&url).proof_generation_data().await, core)
}

#[tokio::test]
async fn each_bad_reply_is_an_error_of_its_kind() {
    let (r, _) = one(Reply::Garbage).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), "not_json", "{e}");
    assert!(e.to_string().contains("garbage"), "{e}");

    let (r, _) = one(Reply::Status500).await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, ClientError::Status { status: 500, body, .. } if body.contains("database on fire")),
        "{e}"
    );

    let (r, _) = one(Reply::Html).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), "not_json");
    assert!(e.to_string().contains("HTML page"), "{e}");

    let (r, _) = one(Reply::Json(json!({"Error": "no witness yet"}))).await;
    let e = r.unwrap_err();
    assert!(
        matches!(&e, ClientError::Core { message, .. } if message == "no witness yet"),
        "{e}"
    );

    let (r, _) = one(Reply::Json(json!({"Success": null}))).await;
    assert_eq!(r.unwrap(), None);

    // Valid JSON of the wrong shape.
    let (r, _) = one(Reply::Json(json!({"Success": {"l1_batch_number": "x"}}))).await;
    assert_eq!(r.unwrap_err().kind(), "not_json");
}

#[tokio::test]
async fn a_huge_reply_is_given_up_at_the_cap_without_reading_it() {
    // 1 GiB, chunked (no length to refuse it by up front).
    let (r, core) = one(Reply::Huge(1024)).await;
    let e = r.unwrap_err();
    assert!(
        matches!(e, ClientError::TooLarge { limit, .. } if limit == 4 << 20),
        "{e}"
    );
    // The server stops producing once the client hung up; far less than 1 GiB was made.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let produced = core.produced.load(Ordering::SeqCst);
    assert!(produced < 512, "{produced} MiB produced");
}

#[tokio::test]
async fn a_hang_times_out_and_a_reply_cut_short_is_a_body_error() {
    let (r, _) = one(Reply::Hang).await;
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Timeout {
                timeout_ms: 500,
                ..
            }
        ),
        "{e}"
    );

    let (r, _) = one(Reply::CutShort).await;
    let e = r.unwrap_err();
    assert_eq!(e.kind(), "body", "{e}");
}

#[tokio::test]
async fn replicas_are_tried_in_turn() {
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    let core = Core::default();
    let live = serve(core.clone()).await;
    let c = CoreClient::new(ClientConfig {
        urls: vec![dead.clone(), live.clone()],
        timeout: Duration::from_millis(500),
        max_body_bytes: 1 << 20,
        token: None,
    })
    .unwrap();
    let e = c.proof_generation_data().await.unwrap_err();
    assert_eq!(e.kind(), "connect", "{e}");
    assert!(e.to_string().contains(&dead[7..]), "{e}");
    assert_eq!(c.proof_generation_data().await.unwrap(), None);
    assert_eq!(core.requests.load(Ordering::SeqCst), 1);
}

/// `d` with other public values (the same old root, so the input check passes).
fn conflicting(d: &ProofGenerationData) -> ProofGenerationData {
    let w = WitnessInput::from_json(&d.witness_input_data).unwrap();
    let mut public = w.public_values.clone();
    *public.last_mut().unwrap() ^= 1;
    let mut c = d.clone();
    c.witness_input_data =
        serde_json::to_value(WitnessInput::new(&w.input, &public, vec![])).unwrap();
    c
}

fn success(d: &ProofGenerationData) -> Reply {
    Reply::Json(json!({ "Success": d }))
}

async fn wait_until(what: &str, mut f: impl AsyncFnMut() -> bool) {
    for _ in 0..200 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn the_fetcher_survives_every_misbehaviour_and_takes_only_good_batches() {
    let dir = tempfile::tempdir().unwrap();
    let coord = coordinator(dir.path()).await;
    let gateway = Gateway::open(coord.intake()).await.unwrap();
    let good = batches(2, 7);
    let other_chain = batches(1, 8).remove(0);
    let conflicting = conflicting(&good[0]);
    let mut zksync_witness = good[1].clone();
    zksync_witness.witness_input_data = json!({"vm_run_data": {}, "merkle_paths": {}});

    let core = Core::default();
    core.script.lock().unwrap().extend([
        Reply::Garbage,
        Reply::Status500,
        Reply::Html,
        Reply::Json(json!({"Error": "not ready"})),
        Reply::CutShort,
        success(&other_chain),
        success(&zksync_witness),
        success(&good[0]),
        success(&good[0]), // the same again: fine
        success(&conflicting),
        success(&good[1]),
    ]);
    let url = serve(core.clone()).await;
    let pull = Pull::start(
        gateway.clone(),
        PullConfig {
            client: ClientConfig {
                urls: vec![url],
                timeout: Duration::from_millis(500),
                max_body_bytes: 4 << 20,
                token: None,
            },
            poll_interval: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
        },
    )
    .unwrap();
    let store = coord.store().clone();
    wait_until("batch 2 stored", async || {
        store.batch(common::CHAIN, 2).await.unwrap().is_some()
    })
    .await;
    pull.stop().await;

    // Only the good batches, with their own content.
    assert_eq!(
        store.last_sealed_batch(common::CHAIN).await.unwrap(),
        Some(2)
    );
    let b1 = store.batch(common::CHAIN, 1).await.unwrap().unwrap();
    let w = WitnessInput::from_json(&good[0].witness_input_data).unwrap();
    assert_eq!(b1.input_digest, proofmill_types::Digest::sha256(&w.input));
    assert_eq!(b1.version, "0.28.0");
    let blob = coord.blobs().get(&b1.input_key).await.unwrap();
    assert_eq!(&blob[..], &w.input[..]);
    coord.drain("test over").await.unwrap();
}

fn pull_config(url: String, max_backoff_ms: u64) -> PullConfig {
    PullConfig {
        client: ClientConfig {
            urls: vec![url],
            timeout: Duration::from_millis(500),
            max_body_bytes: 4 << 20,
            token: None,
        },
        poll_interval: Duration::from_millis(50),
        max_backoff: Duration::from_millis(max_backoff_ms),
    }
}

/// Runs a pull against a core that replies `script`, then `{"Success": null}`, until
/// `last_error` contains `expected`; returns the coordinator to look at.
async fn refused(script: Vec<Reply>, expected: &str) -> (Coordinator, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let coord = coordinator(dir.path()).await;
    let gateway = Gateway::open(coord.intake()).await.unwrap();
    let core = Core::default();
    core.script.lock().unwrap().extend(script);
    let url = serve(core.clone()).await;
    let pull = Pull::start(gateway.clone(), pull_config(url, 100)).unwrap();
    wait_until(expected, async || {
        gateway
            .last_error()
            .is_some_and(|(_, e)| e.contains(expected))
    })
    .await;
    pull.stop().await;
    (coord, dir)
}

#[tokio::test]
async fn a_batch_of_another_chain_or_another_witness_form_is_refused_storing_nothing() {
    let other = batches(1, 9).remove(0);
    let (coord, _dir) = refused(
        vec![success(&other)],
        "batch 1 is of chain 9; this coordinator proves chain 7",
    )
    .await;
    assert_eq!(
        coord
            .store()
            .last_sealed_batch(common::CHAIN)
            .await
            .unwrap(),
        None
    );
    // Shown by the coordinator's status too.
    let status = coord.status().await.unwrap();
    let warning = status
        .warnings
        .iter()
        .find(|w| w.kind.as_str() == "source_error")
        .expect("a source_error warning");
    assert!(
        warning
            .message
            .contains("rollup core API: batch 1 is of chain 9"),
        "{}",
        warning.message
    );
    coord.drain("test over").await.unwrap();

    let mut zksync = batches(1, 7).remove(0);
    zksync.witness_input_data = json!({"vm_run_data": {}, "merkle_paths": {}});
    let (coord, _dir) = refused(vec![success(&zksync)], "not proofmill's form").await;
    assert_eq!(
        coord
            .store()
            .last_sealed_batch(common::CHAIN)
            .await
            .unwrap(),
        None
    );
    coord.drain("test over").await.unwrap();
}

#[tokio::test]
async fn the_same_number_with_different_data_is_refused_and_the_first_kept() {
    let good = batches(1, 7).remove(0);
    let (coord, _dir) = refused(
        vec![success(&good), success(&conflicting(&good))],
        "already exists with different content",
    )
    .await;
    let stored = coord
        .store()
        .batch(common::CHAIN, 1)
        .await
        .unwrap()
        .unwrap();
    let w = WitnessInput::from_json(&good.witness_input_data).unwrap();
    assert_eq!(stored.public_values.as_bytes(), &w.public_values[..]);
    coord.drain("test over").await.unwrap();
}

#[tokio::test]
async fn errors_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let coord = coordinator(dir.path()).await;
    let gateway = Gateway::open(coord.intake()).await.unwrap();
    let core = Core::default();
    *core.then.lock().unwrap() = Some(Reply::Status500);
    let url = serve(core.clone()).await;
    let pull = Pull::start(gateway.clone(), pull_config(url, 400)).unwrap();
    // Against a core that keeps failing, a second and a half brings a handful of requests
    // (200 ms doubling to 400 ms, halved at most by jitter), not hundreds.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let requests = core.requests.load(Ordering::SeqCst);
    assert!((2..=12).contains(&requests), "{requests} requests");
    let e = gateway.last_error().unwrap().1;
    assert!(
        e.contains("HTTP 500") && e.contains("database on fire"),
        "{e}"
    );
    pull.stop().await;
    assert_eq!(
        coord
            .store()
            .last_sealed_batch(common::CHAIN)
            .await
            .unwrap(),
        None
    );
    coord.drain("test over").await.unwrap();
}

#[tokio::test]
async fn the_fetcher_asks_again_at_once_while_the_core_has_a_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let coord = coordinator(dir.path()).await;
    let gateway = Gateway::open(coord.intake()).await.unwrap();
    let core = Core::default();
    core.script
        .lock()
        .unwrap()
        .extend(batches(5, 7).iter().map(success));
    let url = serve(core.clone()).await;
    let mut cfg = pull_config(url, 100);
    // Were it waited after each batch, five batches would take five minutes.
    cfg.poll_interval = Duration::from_secs(60);
    let pull = Pull::start(gateway.clone(), cfg).unwrap();
    let store = coord.store().clone();
    wait_until("all five batches stored", async || {
        store.last_sealed_batch(common::CHAIN).await.unwrap() == Some(5)
    })
    .await;
    pull.stop().await;
    coord.drain("test over").await.unwrap();
}
