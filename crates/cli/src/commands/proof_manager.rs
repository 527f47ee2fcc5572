//! The rollup's proof manager beside an active coordinator (`--proving-mode network|mixed`):
//! the held batches offered on the `ProofMarket` contract, their inputs published to
//! `--market-blobs`, and the fallback to the own provers.

use crate::args::CoordinatorArgs;
use anyhow::Context as _;
use proofmill_coordinator::{Coordinator, MarketHold};
use proofmill_market::{Address, MarketL1, RpcConfig, RpcMarket, U256, WatcherConfig};
use proofmill_proof_manager::{DriverConfig, ManagerConfig, ProofManager};
use proofmill_store::Blobs;
use proofmill_types::ProofType;
use std::sync::Arc;
use std::time::Duration;

/// What the coordinator holds for the market, from the flags (`None`: `--proving-mode
/// cluster`). The flags were checked when parsed.
pub fn market_hold(a: &CoordinatorArgs) -> Option<MarketHold> {
    if !a.market.offers() {
        return None;
    }
    let mode = a.market.mode().ok()?;
    let proof_type = match &a.market.market_proof_type {
        Some(t) => ProofType::new(t).ok()?,
        None => a.proof_types.first()?.0.clone(),
    };
    Some(MarketHold { mode, proof_type })
}

/// Starts the proof manager for `coord` when batches are offered; it stops with the
/// coordinator's shutdown signal.
pub async fn start(
    a: &CoordinatorArgs,
    coord: &Coordinator,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(port) = coord.market_port() else {
        return Ok(None);
    };
    let m = &a.market;
    let market: Address = m
        .market_address
        .as_deref()
        .context("--market-address")?
        .parse()
        .context("bad --market-address")?;
    let url = m
        .market_rpc_url
        .as_deref()
        .or(a.rpc.l1_rpc_url.as_deref())
        .context("the market needs --market-rpc-url or --l1-rpc-url")?;
    let key = m.key()?;
    if a.rpc.key().ok().is_some_and(|k| same_key(&k, &key)) {
        anyhow::bail!(
            "--market-key is the L1 settlement key: give the market's submitter a key of its \
             own (each client keeps its own nonces)"
        );
    }
    let client: Arc<dyn MarketL1> = Arc::new(
        RpcMarket::connect(url, &key, market, RpcConfig::default())
            .await
            .context("connecting to the market's node")?,
    );
    let blobs_url = m.market_blobs.as_deref().context("--market-blobs")?;
    let public = Blobs::from_url(blobs_url).context("opening --market-blobs")?;
    let cfg = DriverConfig {
        manager: ManagerConfig {
            protocol_version: a.version_tag.clone(),
            timeout_after: m.market_proof_timeout,
            max_reward: U256::from(m.market_max_reward),
            ack_timeout: 0,
        },
        watcher: WatcherConfig {
            confirmations: m.market_confirmations,
            max_block_range: m.market_max_block_range,
        },
        from_block: m.market_from_block,
        poll_interval: Duration::from_millis(m.market_poll_interval),
        inputs_public_url: m
            .market_blobs_public_url
            .clone()
            .unwrap_or_else(|| blobs_url.to_string()),
    };
    let manager = ProofManager::new(port, client, public, cfg)
        .await
        .context("starting the proof manager")?;
    tracing::info!(%market, mode = ?m.proving_mode, "proof market on: offered batches are held for proving networks");
    Ok(Some(tokio::spawn(manager.run())))
}

fn same_key(a: &str, b: &str) -> bool {
    let norm = |k: &str| k.trim().trim_start_matches("0x").to_ascii_lowercase();
    norm(a) == norm(b)
}
