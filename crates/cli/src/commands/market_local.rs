//! The proof market in one process, for `proofmill demo --market` and `proofmill bench
//! market`: the `ProofMarket` contract on an embedded L1, and proving networks each with its
//! own coordinator (a store and blob directory of its own, a gRPC port on loopback), provers
//! and `proofmill-network` daemon, all in this process.

use super::coordinator;
use anyhow::Context as _;
use proofmill_backend::Backend;
use proofmill_coordinator::{Coordinator, CoordinatorConfig, Serving};
use proofmill_l1::{DEV_ACCOUNTS, RevmL1};
use proofmill_market::{Address, MarketL1, MarketSettings, RevmMarket, WatcherConfig};
use proofmill_network::{
    AdmissionConfig, CoordinatorAccess, CoordinatorProver, Network, NetworkConfig, Shutdown,
};
use proofmill_prover::{Prover, ProverConfig};
use proofmill_types::ProofType;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Dev account of the market's admin (DEV ONLY; funded on the embedded L1).
pub const ADMIN: usize = 0;
/// Dev account of the rollup's submitter.
pub const SUBMITTER: usize = 1;
/// Dev accounts of the networks, in order.
pub const NETWORKS: [usize; 2] = [2, 3];

pub fn account(i: usize) -> Address {
    DEV_ACCOUNTS[i].parse().expect("a dev account")
}

/// Seconds the local rollup has to answer a network's proof (it answers within a round).
const VALIDATION_TIMEOUT: u64 = 3_600;

/// Deploys a market on `l1` with the dev accounts' roles and registers `networks`; returns
/// its address.
pub async fn deploy(
    l1: &RevmL1,
    ack_timeout: u64,
    max_timeout_after: u64,
    networks: &[usize],
) -> anyhow::Result<Address> {
    let settings = MarketSettings {
        admin: account(ADMIN),
        submitter: account(SUBMITTER),
        ack_timeout,
        max_timeout_after,
        validation_timeout: VALIDATION_TIMEOUT,
    };
    let market = proofmill_market::deploy_market(&l1.with_sender(account(ADMIN)), &settings)
        .await
        .context("deploying the proof market")?;
    let admin = RevmMarket::new(l1.with_sender(account(ADMIN)), market);
    for n in networks {
        admin
            .update_proving_network(account(*n), true)
            .await
            .context("registering a proving network")?;
    }
    Ok(market)
}

/// A coordinator with its own provers on loopback, in this process.
pub struct LocalCluster {
    pub coord: Coordinator,
    pub url: String,
    /// Renewed while held: dropped, the coordinator would soon stand down.
    _lease: proofmill_coordinator::Leadership,
    server: Serving,
    stop: tokio::sync::watch::Sender<bool>,
    provers: Vec<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl LocalCluster {
    /// A coordinator over SQLite and blobs in `dir`, with `provers` provers of one slot
    /// proving `proof_type` with `backend`.
    pub async fn start(
        dir: &Path,
        name: &str,
        config: CoordinatorConfig,
        provers: u32,
        (proof_type, backend): (&ProofType, Arc<dyn Backend>),
        version: &str,
    ) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let db = format!("sqlite://{}/proofmill.db?mode=rwc", dir.display());
        let blobs = format!("file://{}/blobs", dir.display());
        let (coord, lease) = coordinator::open(&db, &blobs, config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let server = coord.spawn_serve(listener);
        let (stop, rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for i in 0..provers {
            let mut rx = rx.clone();
            let prover = Prover::new(ProverConfig {
                coordinators: vec![url.clone()],
                name: format!("{name}-prover-{}", i + 1),
                capacity: 1,
                version: version.into(),
                backends: vec![(proof_type.clone(), backend.clone())],
                ..ProverConfig::default()
            });
            tasks.push(tokio::spawn(prover.run(async move {
                let _ = rx.wait_for(|s| *s).await;
            })));
        }
        Ok(LocalCluster {
            coord,
            url,
            _lease: lease,
            server,
            stop,
            provers: tasks,
        })
    }

    pub async fn stop(self, why: &str) {
        let _ = self.coord.drain(why).await;
        let _ = self.stop.send(true);
        for p in self.provers {
            let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
        }
        let _ = self.server.stop().await;
    }
}

/// A proving network in this process: its daemon acting as dev account `account` on the
/// market, proving with its own [`LocalCluster`].
pub struct LocalNetwork {
    pub address: Address,
    cluster: LocalCluster,
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), proofmill_network::NetworkError>>,
}

/// How a local network behaves.
pub struct LocalNetworkSpec<'a> {
    pub account: usize,
    /// Its directory (state, store, blobs).
    pub dir: PathBuf,
    /// Where the rollup publishes inputs (`file://` URLs are read only under it).
    pub inputs_dir: &'a Path,
    pub version: &'a str,
    pub proof_type: &'a ProofType,
    pub backend: Arc<dyn Backend>,
    /// Smallest reward it takes (a network that wants more than the escrow refuses all).
    pub min_reward: proofmill_market::U256,
    /// Requests it takes at once (more are refused).
    pub max_in_flight: usize,
    pub poll_interval: Duration,
}

impl LocalNetwork {
    /// Acting as `spec.account` on the market at `market` on `l1`.
    pub async fn start(
        l1: &RevmL1,
        market: Address,
        spec: LocalNetworkSpec<'_>,
    ) -> anyhow::Result<LocalNetwork> {
        let client: Arc<dyn MarketL1> = Arc::new(RevmMarket::new(
            l1.with_sender(account(spec.account)),
            market,
        ));
        LocalNetwork::start_with(client, spec).await
    }

    /// Acting through `client` (whose sender is `spec.account`).
    pub async fn start_with(
        client: Arc<dyn MarketL1>,
        spec: LocalNetworkSpec<'_>,
    ) -> anyhow::Result<LocalNetwork> {
        let name = format!("network-{}", spec.account);
        let mut backends = proofmill_backend::Backends::default();
        backends.insert(spec.backend.clone());
        let config = CoordinatorConfig {
            proof_types: vec![(spec.proof_type.clone(), spec.backend.name().to_string())],
            backends,
            ..CoordinatorConfig::default()
        };
        let cluster = LocalCluster::start(
            &spec.dir.join("coordinator"),
            &name,
            config,
            1,
            (spec.proof_type, spec.backend.clone()),
            spec.version,
        )
        .await?;
        let prover = CoordinatorProver::new(&CoordinatorAccess {
            url: cluster.url.clone(),
            token: None,
            tls: Default::default(),
        })
        .map_err(anyhow::Error::msg)?;
        let mut cfg = NetworkConfig::new(spec.dir.join("state"));
        cfg.admission = AdmissionConfig {
            min_reward: spec.min_reward,
            max_in_flight: spec.max_in_flight,
            // A rollup here validates within a round; a long run must not wait on that.
            max_awaiting_validation: spec.max_in_flight.max(64),
            protocol_versions: vec![spec.version.to_string()],
            ..AdmissionConfig::default()
        };
        cfg.expected_prove_secs = 10;
        cfg.watcher = WatcherConfig {
            confirmations: 0,
            ..WatcherConfig::default()
        };
        cfg.from_block = Some(0);
        cfg.poll_interval = spec.poll_interval;
        cfg.wait_step = Duration::from_millis(500);
        cfg.fetch.file_dirs = vec![spec.inputs_dir.to_path_buf()];
        let network = Network::new(client, Arc::new(prover), cfg)?;
        let address = network.address();
        let shutdown = Shutdown::default();
        let task = tokio::spawn(network.run(shutdown.clone()));
        Ok(LocalNetwork {
            address,
            cluster,
            shutdown,
            task,
        })
    }

    pub async fn stop(self) {
        self.shutdown.begin();
        if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(10), self.task).await {
            tracing::warn!(error = %e, "proving network stopped");
        }
        self.cluster.stop("the network stopped").await;
    }
}

/// The rollup's proof manager for `coord` (which holds batches for the market), sending as
/// the submitter on `l1`, publishing inputs to `inputs_dir`.
pub async fn start_manager(
    coord: &Coordinator,
    l1: &RevmL1,
    market: Address,
    inputs_dir: &Path,
    request: (&str, proofmill_market::U256, u64),
    poll_interval: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let client: Arc<dyn MarketL1> =
        Arc::new(RevmMarket::new(l1.with_sender(account(SUBMITTER)), market));
    start_manager_with(coord, client, inputs_dir, request, poll_interval).await
}

/// [`start_manager`] through `client` (whose sender is the market's submitter); `request`:
/// the protocol version, the escrow and the proof timeout of every request.
pub async fn start_manager_with(
    coord: &Coordinator,
    client: Arc<dyn MarketL1>,
    inputs_dir: &Path,
    (version, max_reward, timeout_after): (&str, proofmill_market::U256, u64),
    poll_interval: Duration,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let port = coord
        .market_port()
        .context("the coordinator holds no batches for a market")?;
    std::fs::create_dir_all(inputs_dir)
        .with_context(|| format!("creating {}", inputs_dir.display()))?;
    let public_url = format!("file://{}", inputs_dir.display());
    let public = proofmill_store::Blobs::from_url(&public_url)?;
    let manager = proofmill_proof_manager::ProofManager::new(
        port,
        client,
        public,
        proofmill_proof_manager::DriverConfig {
            manager: proofmill_proof_manager::ManagerConfig {
                protocol_version: version.into(),
                timeout_after,
                max_reward,
                ack_timeout: 0,
            },
            watcher: WatcherConfig {
                confirmations: 0,
                ..WatcherConfig::default()
            },
            from_block: 0,
            poll_interval,
            inputs_public_url: public_url,
        },
    )
    .await
    .context("starting the proof manager")?;
    Ok(tokio::spawn(manager.run()))
}
