//! `proofmill bench settle`: L1 gas of settling K batches in one `verifyBatches`, on the
//! embedded EVM or any node (`--l1-rpc-url`). Ends with `gas_per_batch=<int> batches_per_tx=<int>`.
//!
//! * `--proof-type exec`: synthetic batches with the DEV-ONLY exec verifier (the contract's
//!   own bookkeeping cost).
//! * `--proof-type groth16`: K real consecutive devnet batches of the `--groth16-shape`,
//!   proven first (not timed), then settled through the Groth16 batch verifier.

use crate::args::{BenchSettleArgs, DEFAULT_DATA_DIR, SettleProofs};
use crate::backends::BackendContext;
use anyhow::Context as _;
use proofmill_backend::{Backend, ProveRequest};
use proofmill_devnet::StateTransition;
use proofmill_devnet::{Devnet, DevnetConfig, fr_to_digest};
use proofmill_groth16::vk_words;
use proofmill_l1::{
    Address, L1, RevmConfig, RevmL1, RpcConfig, RpcL1, VerifierKind, deploy_rollup, settle_gas,
    settle_proofs_gas, synthetic_digest,
};
use proofmill_types::{Digest, ProofType};
use std::path::Path;

pub async fn settle(a: BenchSettleArgs) -> anyhow::Result<()> {
    let gas = match a.proof_type {
        SettleProofs::Exec => {
            let l1 = open_l1(
                &a,
                synthetic_digest(b"genesis", 0),
                "exec",
                VerifierKind::DevExec,
            )
            .await?;
            settle_gas(&*l1, a.batches_per_tx)
                .await
                .context("settling")?
        }
        SettleProofs::Groth16 => {
            let (genesis, kind, proven) = prove_groth16_batches(&a).await?;
            let l1 = open_l1(&a, genesis, "groth16", kind).await?;
            settle_proofs_gas(&*l1, &proven).await.context("settling")?
        }
    };
    println!("gas_per_batch={gas} batches_per_tx={}", a.batches_per_tx);
    Ok(())
}

/// A fresh rollup with one proof type: in memory, or deployed on the node.
async fn open_l1(
    a: &BenchSettleArgs,
    genesis: Digest,
    proof_type: &str,
    kind: VerifierKind,
) -> anyhow::Result<Box<dyn L1>> {
    let pt = ProofType::new(proof_type)?;
    Ok(match a.rpc.l1_rpc_url.as_deref() {
        None => Box::new(RevmL1::open(
            None,
            RevmConfig {
                proof_types: vec![pt],
                verifier_kinds: vec![kind],
                ..RevmConfig::dev(genesis)
            },
        )?),
        Some(url) => {
            let key = a.rpc.key()?;
            let sequencer = RpcL1::new(url, &key, Address::ZERO, RpcConfig::default())
                .await?
                .sender();
            let rollup = deploy_rollup(url, &key, sequencer, genesis, &[pt], &[kind]).await?;
            Box::new(RpcL1::new(url, &key, rollup, RpcConfig::default()).await?)
        }
    })
}

/// The devnet genesis root, the Groth16 verifier, and K proven consecutive batches.
async fn prove_groth16_batches(
    a: &BenchSettleArgs,
) -> anyhow::Result<(Digest, VerifierKind, Vec<(StateTransition, Vec<u8>)>)> {
    let spec = (ProofType::new("groth16")?, "groth16".to_string());
    let built = a.backends.build(
        std::slice::from_ref(&spec),
        &BackendContext {
            devnet_shape: None,
            data_dir: Path::new(DEFAULT_DATA_DIR),
        },
    )?;
    built.warm_up().await?;
    let g = built.groth16.clone().context("groth16 backend")?;
    let shape = g.shape();
    let k = a.batches_per_tx;
    eprintln!("bench settle: proving {k} devnet batches of shape {shape} (not timed) ...");
    tokio::task::spawn_blocking(move || {
        let mut devnet = Devnet::new(DevnetConfig {
            depth: shape.depth,
            batch_size: shape.batch_size as u32,
            accounts: (1u64 << shape.depth).min(64) as u32,
            ..DevnetConfig::default()
        })?;
        let genesis = fr_to_digest(devnet.state_root());
        let vk = VerifierKind::Groth16(vk_words(&g.keys()?.vk));
        let mut proven = Vec::new();
        for _ in 0..k {
            let b = devnet.produce_batch();
            let proof = g.prove(&ProveRequest {
                batch: b.number,
                input: &b.input,
                expected: &b.transition.to_public_values(),
            })?;
            proven.push((b.transition, proof));
        }
        Ok((genesis, vk, proven))
    })
    .await?
}
