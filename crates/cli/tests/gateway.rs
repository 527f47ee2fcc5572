//! The coordinator as the prover gateway of a rollup core API, as an operator runs it: a
//! `proofmill coordinator` process and an `exec` prover process, against a core API served
//! by the test (axum on 127.0.0.1:0) that hands out real devnet batches.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::post;
use common::procs::{Proc, tail};
use proofmill_devnet::{Devnet, DevnetConfig, StateTransition};
use proofmill_gateway::wire::{
    BatchProof, PollGeneratedProofsResponse, ProofGenerationData, SubmitProofRequest, WitnessInput,
};
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Devnet batches 1..=n as a core hands them out, with what their proofs must attest.
fn devnet_batches(n: u64) -> Vec<(ProofGenerationData, StateTransition)> {
    let mut devnet = Devnet::new(DevnetConfig::default()).unwrap();
    (0..n)
        .map(|_| {
            let b = devnet.produce_batch();
            let public = b.transition.to_public_values();
            let data = ProofGenerationData {
                l1_batch_number: b.number,
                chain_id: 1,
                batch_sealed_at: "2026-12-05T12:00:00Z".into(),
                witness_input_data: serde_json::to_value(WitnessInput::new(
                    &b.input,
                    public.as_bytes(),
                    vec![],
                ))
                .unwrap(),
                protocol_version: VERSION.into(),
                l1_verifier_config: json!({"snark_wrapper_vk_hash": "0x00"}),
            };
            (data, b.transition)
        })
        .collect()
}

/// Checks an `exec` proof of a batch against its transition.
fn check_proof(proof: &BatchProof, expected: &StateTransition) {
    assert_eq!(proof.proofs.len(), 1, "{proof:?}");
    let p = &proof.proofs[0];
    assert_eq!(p.proof_type, "exec");
    let bytes = p.proof_bytes().unwrap();
    assert_eq!(StateTransition::decode(&bytes).unwrap(), *expected);
}

/// A pull-mode core: hands out the lowest batch not confirmed, again after 3 s if it got no
/// proof; accepts proofs (`"Success"`, also for a repeat) unless the gate is closed for the
/// batch.
#[derive(Default)]
struct PullCore {
    batches: Vec<(ProofGenerationData, StateTransition)>,
    handed: HashMap<u64, Instant>,
    confirmed: BTreeSet<u64>,
    /// Every submission: (batch, accepted, a repeat of a confirmed one).
    submissions: Vec<(u64, bool, bool)>,
    /// Batches from this one on get `{"Error": …}`.
    gate_from: Option<u64>,
}

type Shared = Arc<Mutex<PullCore>>;

async fn proof_generation_data(State(core): State<Shared>, body: Bytes) -> impl IntoResponse {
    assert_eq!(&body[..], b"{}");
    let mut core = core.lock().unwrap();
    let core = &mut *core;
    let next = core.batches.iter().find(|(d, _)| {
        let n = d.l1_batch_number;
        !core.confirmed.contains(&n)
            && core
                .handed
                .get(&n)
                .is_none_or(|at| at.elapsed() > Duration::from_secs(3))
    });
    let reply = match next {
        Some((d, _)) => {
            core.handed.insert(d.l1_batch_number, Instant::now());
            json!({ "Success": d })
        }
        None => json!({ "Success": null }),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        reply.to_string(),
    )
}

async fn submit_proof(
    State(core): State<Shared>,
    UrlPath(n): UrlPath<u64>,
    body: Bytes,
) -> impl IntoResponse {
    let request: SubmitProofRequest = serde_json::from_slice(&body).expect("a SubmitProofRequest");
    let mut core = core.lock().unwrap();
    let SubmitProofRequest::Proof(proof) = request else {
        panic!("batch {n} skipped: no batch is cancelled here");
    };
    check_proof(&proof, &core.batches[n as usize - 1].1);
    let reply = if core.gate_from.is_some_and(|g| n >= g) {
        core.submissions.push((n, false, false));
        json!({"Error": "not accepting proofs yet"})
    } else {
        let repeat = !core.confirmed.insert(n);
        core.submissions.push((n, true, repeat));
        json!("Success")
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        reply.to_string(),
    )
}

async fn serve_pull_core(core: Shared) -> String {
    let app = Router::new()
        .route("/proof_generation_data", post(proof_generation_data))
        .route("/submit_proof/{n}", post(submit_proof))
        .with_state(core);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// The protocol version of the test core's batches; provers must register it.
const VERSION: &str = "0.28.0";

/// An `exec` prover of [`VERSION`] named `name` serving `url`.
fn prover(dir: &Path, name: &str, url: &str) -> Proc {
    common::procs::prover_with(dir, name, url, &["--version-tag", VERSION])
}

fn coordinator(dir: &Path, extra: &[&str]) -> (Proc, String) {
    coordinator_at(dir, "127.0.0.1:0", extra)
}

/// [`coordinator`] listening on `listen`.
fn coordinator_at(dir: &Path, listen: &str, extra: &[&str]) -> (Proc, String) {
    let args: Vec<String> = [
        "coordinator",
        "--listen",
        listen,
        "--data-dir",
        "data",
        "--proof-types",
        "exec",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    let mut coord =
        Proc::spawn_appending("coordinator", &args, dir, dir.join("coordinator.log"), &[]);
    let url = format!(
        "http://{}",
        common::procs::listening_addr(&mut coord, Duration::from_secs(60))
    );
    (coord, url)
}

async fn wait_core(
    core: &Shared,
    coord: &mut Proc,
    what: &str,
    within: Duration,
    done: impl Fn(&PullCore) -> bool,
) {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if done(&core.lock().unwrap()) {
            return;
        }
        coord.check_alive();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let c = core.lock().unwrap();
    panic!(
        "timed out waiting for {what}; confirmed {:?}, submissions {:?}\n{}",
        c.confirmed,
        c.submissions,
        tail(&coord.log())
    );
}

/// Pull-mode flags of the kill -9 tests: the core at `core_url`, asked often, retried soon.
fn restart_flags(core_url: &str) -> [String; 6] {
    [
        "--core-api-url",
        core_url,
        "--core-api-poll-interval",
        "100",
        "--core-api-max-backoff",
        "300",
    ]
    .map(String::from)
}

/// A free loopback address, kept across a coordinator's restarts so that its prover
/// reconnects and keeps its leases.
fn restart_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

/// The accepted submissions, in the order the core got them.
fn accepted(core: &Shared) -> Vec<u64> {
    let c = core.lock().unwrap();
    c.submissions
        .iter()
        .filter(|(_, ok, _)| *ok)
        .map(|(n, _, _)| *n)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_sends_every_proof_back_in_order_once() {
    const N: u64 = 8;
    let dir = tempfile::tempdir().unwrap();
    let core: Shared = Arc::new(Mutex::new(PullCore {
        batches: devnet_batches(N),
        ..Default::default()
    }));
    let core_url = serve_pull_core(core.clone()).await;
    let (mut coord, url) = coordinator(
        dir.path(),
        &[
            "--core-api-url",
            &core_url,
            "--core-api-poll-interval",
            "100",
            "--metrics-listen",
            "127.0.0.1:0",
        ],
    );
    let _prover = prover(dir.path(), "p1", &url);
    wait_core(
        &core,
        &mut coord,
        "every proof",
        Duration::from_secs(120),
        |c| c.confirmed.len() == N as usize,
    )
    .await;
    assert_eq!(accepted(&core), (1..=N).collect::<Vec<_>>());
    let log = coord.log();
    assert!(log.contains("core API pull mode on"), "{}", tail(&log));

    // The gateway's series the deployment's dashboard queries (tests/metrics.rs runs no
    // gateway): requests by outcome, proofs confirmed, and the submit lag of all 8.
    let metrics =
        common::procs::logged_addr(&mut coord, "metrics listening", 0, Duration::from_secs(10));
    let mut conn = std::net::TcpStream::connect(&metrics).unwrap();
    write!(
        conn,
        "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut scraped = String::new();
    conn.read_to_string(&mut scraped).unwrap();
    for series in [
        "proofmill_gateway_requests_total{endpoint=\"submit_proof\",outcome=\"success\"} 8",
        "proofmill_gateway_proofs_submitted_total{kind=\"proof\"} 8",
        "proofmill_gateway_submit_lag_seconds_count 8",
    ] {
        assert!(scraped.contains(series), "no `{series}` in:\n{scraped}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_loses_nothing_and_keeps_order_across_kill_9() {
    const N: u64 = 8;
    let dir = tempfile::tempdir().unwrap();
    let core: Shared = Arc::new(Mutex::new(PullCore {
        batches: devnet_batches(N),
        gate_from: Some(5),
        ..Default::default()
    }));
    let core_url = serve_pull_core(core.clone()).await;
    let flags = restart_flags(&core_url);
    let flags = flags.each_ref().map(String::as_str);
    let listen = restart_address();
    let (mut coord, url) = coordinator_at(dir.path(), &listen, &flags);
    let _prover = prover(dir.path(), "p1", &url);
    // Batches 1-4 confirmed; 5 proven, sent, and refused by the core: unconfirmed.
    wait_core(
        &core,
        &mut coord,
        "batch 5 refused",
        Duration::from_secs(120),
        |c| c.confirmed.len() == 4 && c.submissions.iter().any(|(n, ok, _)| *n == 5 && !ok),
    )
    .await;
    assert!(coord.kill9());
    let (mut coord, _) = coordinator_at(dir.path(), &listen, &flags);
    core.lock().unwrap().gate_from = None;
    wait_core(
        &core,
        &mut coord,
        "every proof",
        Duration::from_secs(120),
        |c| c.confirmed.len() == N as usize,
    )
    .await;
    // Nothing lost, each confirmed once, in order; only batch 5 was ever refused (nothing
    // after it was sent before it).
    assert_eq!(accepted(&core), (1..=N).collect::<Vec<_>>());
    let c = core.lock().unwrap();
    assert!(
        c.submissions.iter().all(|(n, ok, _)| *ok || *n == 5),
        "{:?}",
        c.submissions
    );
}

/// kill -9 in the window between the core handing a batch out and the coordinator having
/// stored it (the core's answer is the only hand-over in pull mode: there is no
/// acknowledgement, so a batch handed out and lost would be lost for good unless the core
/// hands it out again). The kill comes the moment the core has answered, for each of three
/// batches in turn. The core hands an unconfirmed batch out again after 3 s; in the end
/// every batch is stored once, proven and confirmed.
///
/// Order is not kept here, and a proof may go back twice: a batch lost this way comes back
/// after later ones were taken (the gateway cannot tell a lost batch from a core that
/// starts at a later number), and taking it again moves the watermark back below batches
/// sent already, which are sent again (the core answers "Success" to a repeat).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_mode_survives_kill_9_right_after_the_core_hands_a_batch_out() {
    const N: u64 = 4;
    let dir = tempfile::tempdir().unwrap();
    let core: Shared = Arc::new(Mutex::new(PullCore {
        batches: devnet_batches(N),
        ..Default::default()
    }));
    let core_url = serve_pull_core(core.clone()).await;
    let flags = restart_flags(&core_url);
    let flags = flags.each_ref().map(String::as_str);
    let listen = restart_address();
    let (mut coord, url) = coordinator_at(dir.path(), &listen, &flags);
    let _prover = prover(dir.path(), "p1", &url);
    for k in 1..=3u64 {
        // Killed as soon as the core has handed batch k out (the test polls every 5 ms:
        // the coordinator is somewhere between reading the answer and storing it).
        let until = Instant::now() + Duration::from_secs(120);
        while !core.lock().unwrap().handed.contains_key(&k) {
            assert!(Instant::now() < until, "batch {k} never asked for");
            coord.check_alive();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(coord.kill9());
        (coord, _) = coordinator_at(dir.path(), &listen, &flags);
    }
    wait_core(
        &core,
        &mut coord,
        "every proof",
        Duration::from_secs(120),
        |c| c.confirmed.len() == N as usize,
    )
    .await;
    {
        let c = core.lock().unwrap();
        assert_eq!(c.confirmed, (1..=N).collect::<BTreeSet<_>>());
        assert!(
            c.submissions.iter().all(|(_, ok, _)| *ok),
            "{:?}",
            c.submissions
        );
        eprintln!("submissions (batch, accepted, repeat): {:?}", c.submissions);
    }
    coord.signal("TERM");
    let until = Instant::now() + Duration::from_secs(30);
    while coord.is_alive() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One batch per number, each with its one proof.
    assert!(!coord.is_alive(), "the coordinator did not stop on SIGTERM");
    let db = format!("sqlite://{}/data/proofmill.db", dir.path().display());
    let store = proofmill_store::open_store(&db).await.unwrap();
    let chain = proofmill_types::DEFAULT_CHAIN;
    assert_eq!(store.last_sealed_batch(chain).await.unwrap(), Some(N));
    assert_eq!(store.last_proven_batch(chain).await.unwrap(), Some(N));
}

/// `POST` of `body` to `http://addr{path}`; the status and body of the reply.
async fn post_json(addr: &str, path: &str, body: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8_lossy(&reply).to_string();
    let status = reply[9..12].parse().unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").unwrap();
    // Chunked or not, the JSON is on one line here.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body.lines().nth(1).unwrap_or("").to_string()
    } else {
        body.to_string()
    };
    (status, body)
}

/// The address in the coordinator's "core API push listening" line.
fn push_addr(coord: &mut Proc) -> String {
    common::procs::logged_addr(coord, "core API push listening", 0, Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_mode_takes_batches_and_hands_proofs_to_polls() {
    const N: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let (mut coord, url) = coordinator(dir.path(), &["--core-api-listen", "127.0.0.1:0"]);
    let addr = push_addr(&mut coord);
    let batches = devnet_batches(N);

    // Bad bodies: 400 with a reason, nothing taken.
    let (status, body) = post_json(&addr, "/submit_request_for_proofs", "{not json").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not a ProofGenerationData"), "{body}");
    let mut other_chain = batches[0].0.clone();
    other_chain.chain_id = 5;
    let (status, body) = post_json(
        &addr,
        "/submit_request_for_proofs",
        &serde_json::to_string(&other_chain).unwrap(),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("chain 5"), "{body}");
    let (status, body) = post_json(&addr, "/poll_generated_proofs", "{\"batch\": 1}").await;
    assert_eq!(status, 400, "{body}");
    // A batch never taken: null.
    let (status, body) = post_json(&addr, "/poll_generated_proofs", "{\"l1_batch_id\": 1}").await;
    assert_eq!((status, body.as_str()), (200, "null"));

    for (d, _) in &batches {
        let (status, body) = post_json(
            &addr,
            "/submit_request_for_proofs",
            &serde_json::to_string(d).unwrap(),
        )
        .await;
        assert_eq!((status, body.as_str()), (200, "null"));
    }
    let _prover = prover(dir.path(), "p1", &url);
    for (d, transition) in &batches {
        let n = d.l1_batch_number;
        let until = Instant::now() + Duration::from_secs(120);
        let proof = loop {
            assert!(
                Instant::now() < until,
                "no proof of batch {n}:\n{}",
                tail(&coord.log())
            );
            let (status, body) = post_json(
                &addr,
                "/poll_generated_proofs",
                &format!("{{\"l1_batch_id\": {n}}}"),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            if body != "null" {
                break serde_json::from_str::<PollGeneratedProofsResponse>(&body).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(proof.l1_batch_id, n);
        check_proof(&proof.proof, transition);
    }
}

#[test]
fn push_on_a_network_address_needs_admin_tokens_and_the_devnet_is_no_core() {
    let dir = tempfile::tempdir().unwrap();
    let out = common::proofmill()
        .args([
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
            "--prover-token",
            "fleet-secret",
            "--core-api-listen",
            "0.0.0.0:0",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("refusing to serve the core API push endpoints")
            && err.contains("--admin-tokens-file"),
        "{err}"
    );

    let out = common::proofmill()
        .args([
            "coordinator",
            "--devnet",
            "--core-api-url",
            "http://127.0.0.1:1",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("two batch sources"), "{err}");
}
