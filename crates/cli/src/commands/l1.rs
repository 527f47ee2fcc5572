//! `proofmill l1 deploy`, `proofmill bench settle`, and opening the coordinator's L1.

use crate::args::{
    CoordinatorArgs, DEFAULT_DATA_DIR, L1DeployArgs, L1Mode, MarketDeployArgs, MarketNetworkArgs,
    ProofTypeSpec,
};
use crate::backends::{BackendContext, Built};
use anyhow::{Context as _, bail};
use proofmill_devnet::DevnetConfig;
use proofmill_groth16::vk_words;
use proofmill_l1::{
    Address, L1, RevmConfig, RevmL1, RpcConfig, RpcL1, VerifierKind, deploy_rollup,
};
use proofmill_types::ProofType;
use std::path::Path;
use std::sync::Arc;

/// Backends whose proofs the rollup contract can verify.
const ON_CHAIN_BACKENDS: &[&str] = &["exec", "groth16"];

/// The required proof types that go to L1, in order; the others (e.g. `stark`) are checked by
/// the coordinator only.
pub fn on_chain_types(specs: &[ProofTypeSpec]) -> Vec<ProofType> {
    specs
        .iter()
        .filter(|(_, b)| ON_CHAIN_BACKENDS.contains(&b.as_str()))
        .map(|(t, _)| t.clone())
        .collect()
}

/// The rollup's proof types and their verifiers: one per on-chain proof type.
fn rollup_verifiers(
    specs: &[ProofTypeSpec],
    built: &Built,
    what: &str,
) -> anyhow::Result<(Vec<ProofType>, Vec<VerifierKind>)> {
    let mut types = Vec::new();
    let mut kinds = Vec::new();
    for (pt, backend) in specs {
        let kind = match backend.as_str() {
            "exec" => VerifierKind::DevExec,
            "groth16" => {
                let g = built
                    .groth16
                    .as_ref()
                    .context("groth16 backend not built")?;
                let keys = g.keys().context("groth16 keys for the on-chain verifier")?;
                VerifierKind::Groth16(vk_words(&keys.vk))
            }
            _ => continue,
        };
        types.push(pt.clone());
        kinds.push(kind);
    }
    if types.is_empty() {
        bail!(
            "{what}: none of the proof types has an on-chain verifier (those of backends {}); \
             add one or use --l1 none",
            ON_CHAIN_BACKENDS.join(", ")
        );
    }
    Ok((types, kinds))
}

/// The embedded L1 for a devnet genesis, its transaction log at `state`.
pub fn open_embedded(
    state: &Path,
    devnet: DevnetConfig,
    specs: &[ProofTypeSpec],
    built: &Built,
) -> anyhow::Result<Arc<dyn L1>> {
    Ok(Arc::new(open_embedded_revm(state, devnet, specs, built)?))
}

/// [`open_embedded`] as the EVM itself, for more contracts on the same chain (the demo's
/// proof market).
pub fn open_embedded_revm(
    state: &Path,
    devnet: DevnetConfig,
    specs: &[ProofTypeSpec],
    built: &Built,
) -> anyhow::Result<RevmL1> {
    let (proof_types, verifier_kinds) = rollup_verifiers(specs, built, "--l1 embedded")?;
    if let Some(dir) = state.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let genesis = proofmill_devnet::genesis_root(devnet)?;
    let cfg = RevmConfig {
        proof_types,
        verifier_kinds,
        ..RevmConfig::dev(genesis)
    };
    RevmL1::open(Some(state), cfg)
        .with_context(|| format!("opening the embedded L1 at {}", state.display()))
}

/// Settlement on the embedded L1 whose state is `state`, for the store at `db`. Its start
/// checks that the L1 holds the store's chain; when not, the error names the file, since the
/// usual cause is a log another store left there (a run with another --db or --data-dir).
pub async fn start_embedded_settlement(
    port: proofmill_coordinator::SettlementPort,
    l1: Arc<dyn L1>,
    send: proofmill_settlement::SettlementConfig,
    (state, db): (&Path, &str),
) -> anyhow::Result<proofmill_settlement::Settlement> {
    proofmill_settlement::start(port, l1, true, Some(send))
        .await
        .with_context(|| {
            format!(
                "the embedded L1's state {} does not belong to the store {}: if another store \
                 left it there, move or delete that file, or give this store its own \
                 (--l1-state or --data-dir)",
                state.display(),
                db
            )
        })
}

/// The coordinator's L1 as configured, or `None` with `--l1 none`.
pub async fn open_for_coordinator(
    a: &CoordinatorArgs,
    devnet: DevnetConfig,
    built: &Built,
) -> anyhow::Result<Option<Arc<dyn L1>>> {
    match a.l1 {
        L1Mode::None => Ok(None),
        L1Mode::Embedded => open_embedded(a.l1_state(), devnet, &a.proof_types, built).map(Some),
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
    let built = a.backends.build(
        &a.proof_types,
        &BackendContext {
            devnet_shape: None,
            data_dir: Path::new(DEFAULT_DATA_DIR),
        },
    )?;
    built.warm_up().await?;
    let (types, kinds) = rollup_verifiers(&a.proof_types, &built, "l1 deploy")?;
    let key = a.rpc.key()?;
    let devnet = DevnetConfig {
        depth: a.tree_depth,
        accounts: a.accounts,
        ..DevnetConfig::default()
    };
    let genesis = proofmill_devnet::genesis_root(devnet)?;
    let sequencer = RpcL1::new(url, &key, Address::ZERO, RpcConfig::default())
        .await?
        .sender();
    let rollup = deploy_rollup(url, &key, sequencer, genesis, &types, &kinds)
        .await
        .context("deploying the rollup")?;
    println!("{rollup}");
    Ok(())
}

/// `proofmill l1 deploy-market`: prints the market's address.
pub async fn deploy_market(a: MarketDeployArgs) -> anyhow::Result<()> {
    let url = a
        .rpc
        .l1_rpc_url
        .as_deref()
        .context("l1 deploy-market needs --l1-rpc-url")?;
    let key = a.rpc.key()?;
    let l1 = RpcL1::new(url, &key, Address::ZERO, RpcConfig::default())
        .await
        .context("connecting to the L1 node")?;
    let settings = proofmill_market::MarketSettings {
        admin: L1::sender(&l1),
        submitter: a
            .market_submitter
            .parse()
            .context("bad --market-submitter")?,
        ack_timeout: a.market_ack_timeout,
        max_timeout_after: a.market_max_proof_timeout,
        validation_timeout: a.market_validation_timeout,
    };
    let market = proofmill_market::deploy_market(&l1, &settings)
        .await
        .context("deploying the proof market")?;
    println!("{market}");
    Ok(())
}

/// `proofmill l1 market-network`.
pub async fn market_network(a: MarketNetworkArgs) -> anyhow::Result<()> {
    use proofmill_market::MarketL1 as _;
    let url = a
        .rpc
        .l1_rpc_url
        .as_deref()
        .context("l1 market-network needs --l1-rpc-url")?;
    let market: Address = a.market_address.parse().context("bad --market-address")?;
    let network: Address = a.network_address.parse().context("bad --network-address")?;
    let admin =
        proofmill_market::RpcMarket::connect(url, &a.rpc.key()?, market, RpcConfig::default())
            .await
            .context("connecting to the market's node")?;
    let tx = admin
        .update_proving_network(network, a.active)
        .await
        .context("updating the proving network")?;
    println!(
        "network {network} {} (block {})",
        if a.active { "active" } else { "inactive" },
        tx.block
    );
    if let Some(preferred) = a.preferred {
        let tx = admin
            .update_preferred_network(preferred.then_some(network))
            .await
            .context("setting the preferred network")?;
        match preferred {
            true => println!("network {network} preferred (block {})", tx.block),
            false => println!("no preferred network: round-robin (block {})", tx.block),
        }
    }
    Ok(())
}
