//! Shared by the gateway's tests: a real coordinator and devnet batches as a core hands
//! them out.
#![allow(dead_code)] // not every test binary uses every helper

use proofmill_coordinator::{Coordinator, CoordinatorConfig};
use proofmill_devnet::{Devnet, DevnetConfig};
use proofmill_gateway::wire::{ProofGenerationData, WitnessInput};
use proofmill_store::{Blobs, open_store};
use proofmill_types::ProofType;
use serde_json::json;
use std::sync::Arc;

/// The chain of the tests' coordinator.
pub const CHAIN: u64 = 7;

/// A coordinator of the devnet's `exec` proofs, on chain 7, in `dir`.
pub async fn coordinator(dir: &std::path::Path) -> Coordinator {
    let store = open_store(&format!("sqlite://{}/db?mode=rwc", dir.display()))
        .await
        .unwrap();
    let blobs = Blobs::from_url(&format!("file://{}/blobs", dir.display())).unwrap();
    let mut config = CoordinatorConfig::default().prove_with(
        ProofType::new("exec").unwrap(),
        Arc::new(proofmill_devnet::ExecBackend),
    );
    config.chain_id = CHAIN;
    Coordinator::start(config, store, blobs).await.unwrap()
}

/// Devnet batches 1..=n as the core would hand them out.
pub fn batches(n: u64, chain_id: u64) -> Vec<ProofGenerationData> {
    let mut devnet = Devnet::new(DevnetConfig {
        depth: 8,
        batch_size: 4,
        ..DevnetConfig::default()
    })
    .unwrap();
    (0..n)
        .map(|_| {
            let b = devnet.produce_batch();
            data(
                b.number,
                chain_id,
                &b.input,
                b.transition.to_public_values().as_bytes(),
            )
        })
        .collect()
}

pub fn data(n: u64, chain_id: u64, input: &[u8], public: &[u8]) -> ProofGenerationData {
    ProofGenerationData {
        l1_batch_number: n,
        chain_id,
        batch_sealed_at: "2026-12-05T12:00:00Z".into(),
        witness_input_data: serde_json::to_value(WitnessInput::new(input, public, vec![])).unwrap(),
        protocol_version: "0.28.0".into(),
        l1_verifier_config: json!({"snark_wrapper_vk_hash": "0x00"}),
    }
}
