//! `proofmill devnet node` from the outside: the built binary, and a proving cluster played
//! by a client that knows only docs/core-api.md (plain HTTP, JSON read and written as
//! untyped values) and proves with the devnet's `exec` backend, as a cluster's prover would.
//! The node hands its batches out, refuses a proof that does not verify (and hands that
//! batch out again), settles what it gets on its L1, and keeps it all across a kill -9.
//! Then the three-process setup of the README: the node, a proving cluster's coordinator
//! (no L1 access) and a prover, in pull mode (the cluster killed -9 and restarted midway)
//! and in push mode.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::admin::wait_status;
use common::core_api::{next_batch, prove};
use common::http::post;
use common::procs::{Proc, logged_addr, prover};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

const BATCHES: u64 = 3;
const JSON_LOGS: [(&str, &str); 2] = [("RUST_LOG", "info"), ("PROOFMILL_LOG_FORMAT", "json")];

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Lines in `dir/NAME.log` so far: a process started again appends to its log, and its
/// addresses are those logged after them.
fn lines_of(dir: &Path, name: &str) -> usize {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).map_or(0, |l| l.lines().count())
}

/// A devnet node settling `batches` on its embedded L1, with `extra` options; its gRPC URL.
fn node_with(dir: &Path, batches: u64, extra: &[&str]) -> (Proc, String) {
    let mut args = strings(&[
        "devnet",
        "node",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        "node",
        "--proof-types",
        "exec",
        "--l1",
        "embedded",
        "--send-interval",
        "300",
        "--heartbeat-interval",
        "300",
        "--max-batches",
    ]);
    args.push(batches.to_string());
    args.extend(strings(extra));
    let skip = lines_of(dir, "node");
    let mut node = Proc::spawn_appending("node", &args, dir, dir.join("node.log"), &JSON_LOGS);
    let url = logged_addr(
        &mut node,
        "coordinator listening",
        skip,
        Duration::from_secs(60),
    );
    (node, format!("http://{url}"))
}

/// A node serving the core API's pull mode: the node, its gRPC URL and the core API address.
fn node(dir: &Path) -> (Proc, String, String) {
    let skip = lines_of(dir, "node");
    let (mut node, url) = node_with(dir, BATCHES, &["--handoff-listen", "127.0.0.1:0"]);
    let core = logged_addr(
        &mut node,
        "core API (pull) listening",
        skip,
        Duration::from_secs(60),
    );
    (node, url, core)
}

/// A proving cluster's coordinator (no L1, no devnet) listening on `listen`, with `extra`.
fn cluster(dir: &Path, listen: &str, extra: &[&str]) -> (Proc, String) {
    let mut args = strings(&[
        "coordinator",
        "--listen",
        listen,
        "--data-dir",
        "cluster",
        "--proof-types",
        "exec",
        "--heartbeat-interval",
        "300",
    ]);
    args.extend(strings(extra));
    let skip = lines_of(dir, "cluster");
    let log = dir.join("cluster.log");
    let mut coord = Proc::spawn_appending("cluster", &args, dir, log, &JSON_LOGS);
    let addr = logged_addr(
        &mut coord,
        "coordinator listening",
        skip,
        Duration::from_secs(60),
    );
    (coord, format!("http://{addr}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_that_knows_only_the_core_api_proves_the_nodes_batches_and_the_node_settles_them()
{
    let dir = tempfile::tempdir().unwrap();
    let (mut node_proc, url, core) = node(dir.path());

    // Batch 1 handed out: the data is the documented shape, for the node's chain.
    let first = tokio::task::block_in_place(|| next_batch(&core));
    assert_eq!(first["l1_batch_number"], 1, "{first}");
    assert_eq!(first["chain_id"], 1, "{first}");
    assert_eq!(first["protocol_version"], "devnet-v1", "{first}");
    assert!(
        first["batch_sealed_at"].as_str().unwrap().ends_with('Z'),
        "{first}"
    );

    // A proof that does not verify is refused, with the reason, and the batch comes out again.
    let garbage = json!({"Proof": {"proofs": [{
        "proof_type": "exec", "proof": BASE64.encode([7u8; 96]), "public_values": "0x00"
    }]}});
    let refused = post(&core, "/submit_proof/1", garbage);
    assert_eq!(refused.status, 200, "{refused:?}");
    let why = refused.body["Error"].as_str().expect("an Error reply");
    assert!(
        why.contains("does not verify") || why.contains("malformed"),
        "{why}"
    );
    // Malformed bodies and numbers: 400 with a reason, nothing changes.
    let bad = common::http::http(&core, "POST", "/submit_proof/1", Some(b"{not json"));
    assert_eq!(bad.status, 400, "{bad:?}");
    assert!(
        bad.body["Error"].as_str().unwrap().contains("not"),
        "{bad:?}"
    );
    let bad = post(&core, "/submit_proof/one", json!("SkippedProofGeneration"));
    assert_eq!(bad.status, 400, "{bad:?}");

    // Prove every batch as it comes out (batch 1 again among them), until all are settled.
    let mut proven = Vec::new();
    while proven.len() < BATCHES as usize {
        let data = tokio::task::block_in_place(|| next_batch(&core));
        let (batch, body) = prove(&data);
        let reply = post(&core, &format!("/submit_proof/{batch}"), body.clone());
        assert_eq!(reply.body, json!("Success"), "batch {batch}: {reply:?}");
        // The reply was lost, say, and the cluster posts again: still Success.
        let again = post(&core, &format!("/submit_proof/{batch}"), body);
        assert_eq!(
            again.body,
            json!("Success"),
            "batch {batch} again: {again:?}"
        );
        if !proven.contains(&batch) {
            proven.push(batch);
        }
    }
    proven.sort();
    assert_eq!(proven, (1..=BATCHES).collect::<Vec<_>>());
    wait_status(
        &url,
        "the node settling every batch",
        Duration::from_secs(120),
        |s| s.last_verified_batch == Some(BATCHES),
    )
    .await;

    // kill -9 and back: what was settled stays, and nothing is handed out again.
    assert!(node_proc.kill9());
    let (_node_proc, url, core) = node(dir.path());
    let s = wait_status(&url, "the restarted node", Duration::from_secs(60), |s| {
        s.last_verified_batch == Some(BATCHES)
    })
    .await;
    assert_eq!(s.last_proven_batch, Some(BATCHES));
    let reply = post(&core, "/proof_generation_data", json!({}));
    assert_eq!(reply.body, json!({"Success": null}), "{reply:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_cluster_and_prover_settle_every_batch_in_pull_mode_across_a_cluster_kill_9() {
    const N: u64 = 6;
    let dir = tempfile::tempdir().unwrap();
    let skip = lines_of(dir.path(), "node");
    let (mut node, node_url) = node_with(dir.path(), N, &["--handoff-listen", "127.0.0.1:0"]);
    let core = logged_addr(
        &mut node,
        "core API (pull) listening",
        skip,
        Duration::from_secs(60),
    );
    let core_url = format!("http://{core}");
    let pull = [
        "--core-api-url",
        &core_url,
        "--core-api-poll-interval",
        "200",
    ];
    let (mut coord, url) = cluster(dir.path(), "127.0.0.1:0", &pull);
    let _prover = prover(dir.path(), "p1", &url);

    // Some batches through, then the cluster dies hard and comes back at its address.
    wait_status(
        &node_url,
        "a first batch settled",
        Duration::from_secs(120),
        |s| s.last_verified_batch >= Some(1),
    )
    .await;
    assert!(coord.kill9());
    let listen = url.trim_start_matches("http://").to_string();
    let (_coord, _) = cluster(dir.path(), &listen, &pull);
    let s = wait_status(
        &node_url,
        "every batch settled",
        Duration::from_secs(180),
        |s| s.last_verified_batch == Some(N),
    )
    .await;
    assert_eq!(s.last_proven_batch, Some(N));
    // The node's only prover is its handoff; the cluster never settles on L1.
    let provers: Vec<&str> = s.provers.iter().map(|p| p.name.as_str()).collect();
    assert!(provers.iter().all(|n| *n == "handoff"), "{provers:?}");
    let cluster_log = std::fs::read_to_string(dir.path().join("cluster.log")).unwrap();
    assert!(
        !cluster_log.contains("L1 settlement on"),
        "the cluster settles nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_pushes_to_a_cluster_and_settles_what_it_polls_back() {
    const N: u64 = 3;
    let dir = tempfile::tempdir().unwrap();
    let skip = lines_of(dir.path(), "cluster");
    let listen = ["--core-api-listen", "127.0.0.1:0"];
    let (mut coord, url) = cluster(dir.path(), "127.0.0.1:0", &listen);
    let push = logged_addr(
        &mut coord,
        "core API push listening",
        skip,
        Duration::from_secs(60),
    );
    let _prover = prover(dir.path(), "p1", &url);
    let push_url = format!("http://{push}");
    let extra = [
        "--handoff-push-url",
        &push_url,
        "--handoff-poll-interval",
        "200",
    ];
    let (_node, node_url) = node_with(dir.path(), N, &extra);
    wait_status(
        &node_url,
        "every pushed batch settled",
        Duration::from_secs(180),
        |s| s.last_verified_batch == Some(N),
    )
    .await;
    let node_log = std::fs::read_to_string(dir.path().join("node.log")).unwrap();
    assert!(node_log.contains("batch pushed to the proving cluster"));
    assert!(node_log.contains("proof from the proving cluster accepted"));
}
