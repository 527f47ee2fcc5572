//! `proofmill network`: the proving network's daemon (`proofmill_network`) over JSON-RPC,
//! proving with the coordinator at `--coordinator`, until SIGTERM or Ctrl-C.

use crate::args::NetworkArgs;
use anyhow::{Context as _, anyhow};
use proofmill_market::{Address, MarketL1, RpcConfig, RpcMarket, WatcherConfig};
use proofmill_network::{
    AdmissionConfig, CoordinatorAccess, CoordinatorProver, FetchConfig, Network, NetworkConfig,
    Shutdown,
};
use std::sync::Arc;
use std::time::Duration;

pub async fn run(a: NetworkArgs) -> anyhow::Result<()> {
    let market: Address = a.market_address.parse().context("bad --market-address")?;
    let key = a.key()?;
    let shutdown = Shutdown::default();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        let name = super::shutdown_signal().await;
        tracing::info!(signal = name, "shutting down");
        signal.begin();
    });
    // The node may be down at start: wait for it as for any later error.
    let mut wait = Duration::from_millis(500);
    let client = loop {
        match RpcMarket::connect(&a.l1_rpc_url, &key, market, RpcConfig::default()).await {
            Ok(c) => break c,
            Err(e) if e.is_transient() => {
                tracing::warn!(error = %e, url = %a.l1_rpc_url, retry_in = ?wait, "cannot reach the L1 node");
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.begun() => return Ok(()),
                }
                wait = (wait * 2).min(Duration::from_millis(a.max_backoff));
            }
            Err(e) => return Err(anyhow!(e).context("connecting to the L1 node")),
        }
    };
    let prover = CoordinatorProver::new(&CoordinatorAccess {
        url: a.coordinator.clone(),
        token: a.access.admin_token.clone(),
        tls: a.access.tls.load()?,
    })
    .map_err(|e| anyhow!("--coordinator: {e}"))?;
    let cfg = NetworkConfig {
        admission: AdmissionConfig {
            max_in_flight: a.max_in_flight as usize,
            min_reward: a.min_reward,
            safety_factor_percent: a.safety_factor_percent,
            deadline_margin_secs: a.deadline_margin_secs,
            protocol_versions: a.protocol_versions.clone(),
            max_awaiting_validation: a.max_awaiting_validation as usize,
        },
        ask_reward: a.ask_reward,
        expected_prove_secs: a.expected_prove_secs,
        watcher: WatcherConfig {
            confirmations: a.confirmations,
            max_block_range: a.max_block_range,
        },
        from_block: a.from_block,
        poll_interval: Duration::from_millis(a.poll_interval),
        fetch: FetchConfig {
            file_dirs: a.inputs_file_dirs.clone(),
            max_bytes: a.fetch_max_bytes,
            timeout: Duration::from_millis(a.fetch_timeout),
        },
        state_dir: a.state_dir.clone(),
        max_backoff: Duration::from_millis(a.max_backoff),
        ..NetworkConfig::new(&a.state_dir)
    };
    let client: Arc<dyn MarketL1> = Arc::new(client);
    let network = Network::new(client, Arc::new(prover), cfg)?;
    tracing::info!(
        network = %network.address(),
        %market,
        coordinator = %a.coordinator,
        state_dir = %a.state_dir.display(),
        "proving network starting"
    );
    network.run(shutdown).await?;
    Ok(())
}
