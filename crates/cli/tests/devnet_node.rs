//! `proofmill devnet node` from the outside: the built binary, and a proving cluster played
//! by a client that knows only docs/core-api.md (plain HTTP, JSON read and written as
//! untyped values) and proves with the devnet's `exec` backend, as a cluster's prover would.
//! The node hands its batches out, refuses a proof that does not verify (and hands that
//! batch out again), settles what it gets on its L1, and keeps it all across a kill -9.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::admin::wait_status;
use common::http::{post, wait_for};
use common::procs::Proc;
use proofmill_backend::{Backend, ProveRequest};
use proofmill_types::PublicValues;
use serde_json::{Value, json};
use std::path::Path;
use std::time::Duration;

const BATCHES: u64 = 3;

fn node(dir: &Path) -> (Proc, String, String) {
    let args: Vec<String> = [
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
        "--handoff-listen",
        "127.0.0.1:0",
        "--max-batches",
        &BATCHES.to_string(),
        "--send-interval",
        "300",
        "--heartbeat-interval",
        "300",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let envs = [("RUST_LOG", "info"), ("PROOFMILL_LOG_FORMAT", "json")];
    // One log for every run: the addresses are those of the last run's lines.
    let runs = std::fs::read_to_string(dir.join("node.log")).map_or(0, |l| l.lines().count());
    let mut node = Proc::spawn_appending("node", &args, dir, dir.join("node.log"), &envs);
    let url = format!(
        "http://{}",
        logged_addr(&mut node, runs, "coordinator listening")
    );
    let core = logged_addr(&mut node, runs, "core API (pull) listening");
    (node, url, core)
}

/// The `addr` of the first line logging `message` after the first `skip` lines.
fn logged_addr(node: &mut Proc, skip: usize, message: &str) -> String {
    wait_for(message, Duration::from_secs(60), || {
        node.check_alive();
        let log = node.log();
        log.lines().skip(skip).find_map(|l| {
            let l: Value = serde_json::from_str(l).ok()?;
            (l["fields"]["message"] == message)
                .then(|| l["fields"]["addr"].as_str().map(str::to_string))
                .flatten()
        })
    })
}

/// Asks the node for a batch until it hands one out.
fn next_batch(core: &str) -> Value {
    wait_for("a batch from the core API", Duration::from_secs(60), || {
        let reply = post(core, "/proof_generation_data", json!({}));
        assert_eq!(reply.status, 200, "{reply:?}");
        let data = &reply.body["Success"];
        (!data.is_null()).then(|| data.clone())
    })
}

fn hex_decode(s: &str) -> Vec<u8> {
    hex::decode(s.strip_prefix("0x").expect("0x-prefixed")).expect("hex")
}

/// What the cluster's prover does with `ProofGenerationData`: an exec proof of its input.
fn prove(data: &Value) -> (u64, Value) {
    let batch = data["l1_batch_number"].as_u64().expect("l1_batch_number");
    let witness = &data["witness_input_data"];
    assert_eq!(witness["proof_types"], json!(["exec"]), "{data}");
    let input = BASE64
        .decode(witness["input"].as_str().expect("input"))
        .expect("base64");
    let public = PublicValues::new(hex_decode(witness["public_values"].as_str().unwrap()));
    let proof = proofmill_devnet::ExecBackend
        .prove(&ProveRequest {
            batch,
            input: &input,
            expected: &public,
        })
        .expect("exec proves the handed-out input");
    let body = json!({"Proof": {"proofs": [{
        "proof_type": "exec",
        "proof": BASE64.encode(&proof),
        "public_values": witness["public_values"],
    }]}});
    (batch, body)
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
