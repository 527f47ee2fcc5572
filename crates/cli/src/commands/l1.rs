//! `proofmill l1 deploy`, `proofmill bench settle`, and opening the coordinator's L1.

use crate::args::{BenchSettleArgs, CoordinatorArgs, L1DeployArgs, L1Mode, ProofTypeSpec};
use anyhow::{Context as _, bail};
use proofmill_devnet::DevnetConfig;
use proofmill_l1::{
    Address, L1, RevmConfig, RevmL1, RpcConfig, RpcL1, VerifierKind, deploy_rollup, settle_gas,
    synthetic_digest,
};
use std::path::Path;
use std::sync::Arc;

/// Only `exec` has an on-chain verifier today.
fn verifier_kinds(types: &[ProofTypeSpec], what: &str) -> anyhow::Result<Vec<VerifierKind>> {
    types
        .iter()
        .map(|(pt, _)| match pt.as_str() {
            "exec" => Ok(VerifierKind::DevExec),
            other => bail!(
                "{what}: proof type {other} has no on-chain verifier (only exec has one); \
                 use --proof-types exec or --l1 none"
            ),
        })
        .collect()
}

/// The embedded L1 for a devnet genesis, its transaction log at `state`.
pub fn open_embedded(
    state: &Path,
    devnet: DevnetConfig,
    types: &[ProofTypeSpec],
) -> anyhow::Result<Arc<dyn L1>> {
    verifier_kinds(types, "--l1 embedded")?;
    if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let genesis = proofmill_coordinator::devnet_genesis_root(devnet)?;
    let l1 = RevmL1::open(Some(state), RevmConfig::dev(genesis))
        .with_context(|| format!("opening the embedded L1 at {}", state.display()))?;
    Ok(Arc::new(l1))
}

/// The coordinator's L1 as configured, or `None` with `--l1 none`.
pub async fn open_for_coordinator(
    a: &CoordinatorArgs,
    devnet: DevnetConfig,
) -> anyhow::Result<Option<Arc<dyn L1>>> {
    match a.l1 {
        L1Mode::None => Ok(None),
        L1Mode::Embedded => open_embedded(&a.l1_state, devnet, &a.proof_types).map(Some),
        L1Mode::Rpc => {
            let url = a
                .rpc
                .l1_rpc_url
                .as_deref()
                .context("--l1 rpc needs --l1-rpc-url")?;
            let rollup: Address = a
                .l1_rollup_address
                .as_deref()
                .context("--l1 rpc needs --l1-rollup-address")?
                .parse()
                .context("bad --l1-rollup-address")?;
            let key = a.rpc.key()?;
            let l1 = RpcL1::new(url, &key, rollup, RpcConfig::default())
                .await
                .context("connecting to the L1 node")?;
            Ok(Some(Arc::new(l1)))
        }
    }
}

pub async fn deploy(a: L1DeployArgs) -> anyhow::Result<()> {
    let url = a
        .rpc
        .l1_rpc_url
        .as_deref()
        .context("l1 deploy needs --l1-rpc-url")?;
    let kinds = verifier_kinds(&a.proof_types, "l1 deploy")?;
    let key = a.rpc.key()?;
    let devnet = DevnetConfig {
        depth: a.tree_depth,
        accounts: a.accounts,
        ..DevnetConfig::default()
    };
    let genesis = proofmill_coordinator::devnet_genesis_root(devnet)?;
    let sequencer = RpcL1::new(url, &key, Address::ZERO, RpcConfig::default())
        .await?
        .sender();
    let types: Vec<_> = a.proof_types.iter().map(|(t, _)| t.clone()).collect();
    let rollup = deploy_rollup(url, &key, sequencer, genesis, &types, &kinds)
        .await
        .context("deploying the rollup")?;
    println!("{rollup}");
    Ok(())
}

pub async fn bench_settle(a: BenchSettleArgs) -> anyhow::Result<()> {
    let genesis = synthetic_digest(b"genesis", 0);
    let l1: Box<dyn L1> = match a.rpc.l1_rpc_url.as_deref() {
        None => Box::new(RevmL1::open(None, RevmConfig::dev(genesis))?),
        Some(url) => {
            let key = a.rpc.key()?;
            let sequencer = RpcL1::new(url, &key, Address::ZERO, RpcConfig::default())
                .await?
                .sender();
            let exec = proofmill_types::ProofType::new("exec").expect("valid");
            let rollup = deploy_rollup(
                url,
                &key,
                sequencer,
                genesis,
                &[exec],
                &[VerifierKind::DevExec],
            )
            .await?;
            Box::new(RpcL1::new(url, &key, rollup, RpcConfig::default()).await?)
        }
    };
    let gas = settle_gas(&*l1, a.batches_per_tx)
        .await
        .context("settling")?;
    println!("gas_per_batch={gas} batches_per_tx={}", a.batches_per_tx);
    Ok(())
}
