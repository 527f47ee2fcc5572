//! A proving cluster's side of the core API (docs/core-api.md) as a client that knows only
//! the document: plain HTTP, JSON read and written as untyped values, proofs made with the
//! devnet's `exec` backend as a cluster's prover would.
#![allow(dead_code)] // not every test binary plays a cluster

use super::http::{post, wait_for};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proofmill_backend::{Backend, ProveRequest};
use proofmill_types::PublicValues;
use serde_json::{Value, json};
use std::time::Duration;

/// Asks the node for a batch until it hands one out.
pub fn next_batch(core: &str) -> Value {
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
pub fn prove(data: &Value) -> (u64, Value) {
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
