//! The world the tests play in: the embedded L1 with the market, the rollup's submitter, the
//! network's account, a coordinator with its exec prover, devnet batches and their inputs.

use proofmill_coordinator::{Coordinator, CoordinatorConfig, Serving};
use proofmill_devnet::{Devnet, DevnetConfig, ExecBackend, SealedBatch};
use proofmill_l1::{DEV_ACCOUNTS, RevmConfig, RevmL1};
use proofmill_market::{
    Address, MarketEvent, MarketEvents as _, MarketInputs, MarketL1, MarketSettings, RequestId,
    RequestParams, RequestStatus, RevmMarket, U256, WatcherConfig, deploy_market,
};
use proofmill_network::{
    CoordinatorAccess, CoordinatorProver, Network, NetworkConfig, NetworkState, ProofService,
    Shutdown, Status,
};
use proofmill_prover::{Prover, ProverConfig};
use proofmill_store::{Blobs, open_store};
use proofmill_types::{ProofType, PublicValues};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub const VERSION: &str = "devnet-v1";
pub const CHAIN: u64 = proofmill_types::DEFAULT_CHAIN;
pub const ACK_TIMEOUT: u64 = 600;
/// Seconds the rollup has to answer a posted proof before the network may close it.
pub const VALIDATION_TIMEOUT: u64 = 3_600;

pub fn account(i: usize) -> Address {
    DEV_ACCOUNTS[i].parse().unwrap()
}

pub fn eth(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

pub fn id(batch: u64) -> RequestId {
    RequestId::new(CHAIN, batch)
}

/// The chain, the market, the rollup's submitter, the network's own account (2), a
/// coordinator proving `exec` (with or without its prover) and a directory of inputs.
pub struct World {
    pub market: Address,
    pub submitter: RevmMarket,
    pub network: Arc<RevmMarket>,
    pub coordinator: Coordinator,
    pub serving: Option<Serving>,
    pub coordinator_url: String,
    pub prover: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    pub devnet: Devnet,
    pub batches: Vec<SealedBatch>,
    pub dir: tempfile::TempDir,
}

impl World {
    pub async fn new() -> World {
        let l1 = RevmL1::open(None, RevmConfig::dev(Default::default())).unwrap();
        let settings = MarketSettings {
            admin: account(0),
            submitter: account(1),
            ack_timeout: ACK_TIMEOUT,
            max_timeout_after: 3_600,
            validation_timeout: VALIDATION_TIMEOUT,
        };
        let market = deploy_market(&l1.with_sender(account(0)), &settings)
            .await
            .unwrap();
        let admin = RevmMarket::new(l1.with_sender(account(0)), market);
        admin
            .update_proving_network(account(2), true)
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("inputs")).unwrap();
        let (coordinator, serving, coordinator_url) =
            start_coordinator(&dir.path().join("c1")).await;
        World {
            submitter: RevmMarket::new(l1.with_sender(account(1)), market),
            network: Arc::new(RevmMarket::new(l1.with_sender(account(2)), market)),
            market,
            coordinator,
            serving: Some(serving),
            coordinator_url,
            prover: None,
            devnet: Devnet::new(DevnetConfig {
                depth: 8,
                batch_size: 4,
                ..DevnetConfig::default()
            })
            .unwrap(),
            batches: Vec::new(),
            dir,
        }
    }

    /// Starts the coordinator's exec prover.
    pub fn start_prover(&mut self) {
        let prover = Prover::new(ProverConfig {
            coordinators: vec![self.coordinator_url.clone()],
            name: "p1".into(),
            capacity: 2,
            version: VERSION.into(),
            backends: vec![(ProofType::new("exec").unwrap(), Arc::new(ExecBackend))],
            reconnect_min: Duration::from_millis(50),
            reconnect_max: Duration::from_millis(500),
            ..ProverConfig::default()
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = prover
                .run(async move {
                    let _ = rx.await;
                })
                .await;
        });
        self.prover = Some((tx, task));
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("network-state")
    }

    pub fn inputs_dir(&self) -> PathBuf {
        self.dir.path().join("inputs")
    }

    pub fn config(&self) -> NetworkConfig {
        let mut cfg = NetworkConfig::new(self.state_dir());
        cfg.watcher = WatcherConfig {
            confirmations: 0,
            max_block_range: 1_000,
        };
        cfg.poll_interval = Duration::from_millis(100);
        cfg.max_backoff = Duration::from_millis(500);
        cfg.expected_prove_secs = 30;
        cfg.admission.min_reward = eth(1) / U256::from(10);
        cfg.admission.deadline_margin_secs = 60;
        cfg.admission.safety_factor_percent = 200;
        cfg.fetch.file_dirs = vec![self.inputs_dir()];
        cfg.from_block = Some(1);
        cfg.wait_step = Duration::from_millis(300);
        cfg
    }

    /// Starts the daemon; its shutdown and task.
    pub fn start_network(
        &self,
        cfg: NetworkConfig,
    ) -> (
        Shutdown,
        tokio::task::JoinHandle<Result<(), proofmill_network::NetworkError>>,
    ) {
        self.start_network_on(self.network.clone(), cfg)
    }

    /// [`World::start_network`] reaching L1 through `market`.
    pub fn start_network_on(
        &self,
        market: Arc<dyn MarketL1>,
        cfg: NetworkConfig,
    ) -> (
        Shutdown,
        tokio::task::JoinHandle<Result<(), proofmill_network::NetworkError>>,
    ) {
        self.start_network_with(market, Arc::new(self.prover_client()), cfg)
    }

    pub fn prover_client(&self) -> CoordinatorProver {
        CoordinatorProver::new(&CoordinatorAccess {
            url: self.coordinator_url.clone(),
            token: None,
            tls: Default::default(),
        })
        .unwrap()
    }

    /// [`World::start_network`] reaching L1 through `market` and proving with `prover`.
    pub fn start_network_with(
        &self,
        market: Arc<dyn MarketL1>,
        prover: Arc<dyn ProofService>,
        cfg: NetworkConfig,
    ) -> (
        Shutdown,
        tokio::task::JoinHandle<Result<(), proofmill_network::NetworkError>>,
    ) {
        let net = Network::new(market, prover, cfg).unwrap();
        assert_eq!(net.address(), account(2));
        let shutdown = Shutdown::default();
        let task = tokio::spawn(net.run(shutdown.clone()));
        (shutdown, task)
    }

    /// Requests the next devnet batch (1 ETH, 1,200 s) and waits until the network has posted
    /// its proof; its number.
    pub async fn request_next_until_posted(&mut self) -> u64 {
        let (n, url, digest) = self.next_batch();
        self.request(n, &url, digest, eth(1), 1_200).await;
        self.until_entry(n, Status::ProofPosted).await;
        n
    }

    /// The next devnet batch, its inputs envelope written to the inputs directory: its
    /// number, URL and the envelope's digest.
    pub fn next_batch(&mut self) -> (u64, String, [u8; 32]) {
        self.next_batch_of("exec")
    }

    /// [`World::next_batch`] asking for a proof of `proof_type`.
    pub fn next_batch_of(&mut self, proof_type: &str) -> (u64, String, [u8; 32]) {
        let batch = self.devnet.produce_batch();
        let inputs = MarketInputs {
            chain_id: CHAIN,
            batch: batch.number,
            program_version: VERSION.into(),
            proof_type: proof_type.into(),
            public_values: batch.transition.to_public_values().as_bytes().to_vec(),
            input: batch.input.clone(),
        };
        let bytes = inputs.encode().unwrap();
        let path = self.inputs_dir().join(format!("{}.bin", batch.number));
        std::fs::write(&path, &bytes).unwrap();
        let url = url_of(&path);
        let n = batch.number;
        self.batches.push(batch);
        (n, url, MarketInputs::digest_of(&bytes))
    }

    pub fn public_values(&self, batch: u64) -> PublicValues {
        self.batches
            .iter()
            .find(|b| b.number == batch)
            .unwrap()
            .transition
            .to_public_values()
    }

    pub async fn request(
        &self,
        batch: u64,
        url: &str,
        digest: [u8; 32],
        reward: U256,
        timeout: u64,
    ) {
        let params = RequestParams {
            protocol_version: VERSION.into(),
            inputs_url: url.to_string(),
            inputs_digest: digest,
            timeout_after: timeout,
            max_reward: reward,
        };
        self.submitter
            .submit_proof_request(id(batch), &params, reward)
            .await
            .unwrap();
    }

    pub async fn status(&self, batch: u64) -> RequestStatus {
        self.submitter
            .request(id(batch))
            .await
            .unwrap()
            .unwrap()
            .status
    }

    /// Waits until request `batch` is in `want` on L1.
    pub async fn until_status(&self, batch: u64, want: RequestStatus) {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            let now = self.status(batch).await;
            if now == want {
                return;
            }
            assert!(
                Instant::now() < until,
                "batch {batch}: {now:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn entry(&self, batch: u64) -> Option<proofmill_network::Entry> {
        NetworkState::load(&self.state_dir(), self.market, account(2))
            .unwrap()
            .and_then(|s| s.requests.get(&id(batch)).cloned())
    }

    /// Waits until the daemon's state has request `batch` in `want`.
    pub async fn until_entry(&self, batch: u64, want: Status) -> proofmill_network::Entry {
        let until = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(e) = self.entry(batch)
                && e.status == want
            {
                return e;
            }
            assert!(
                Instant::now() < until,
                "batch {batch}: {:?}, not {want:?}",
                self.entry(batch)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn events(&self) -> Vec<MarketEvent> {
        let head = self.submitter.head().await.unwrap().number;
        self.submitter.events(1, head).await.unwrap()
    }

    /// Another coordinator takes this one's place, with none of its data (a network whose
    /// coordinator lost its store).
    pub async fn replace_coordinator(&mut self) {
        let (c, serving, url) = start_coordinator(&self.dir.path().join("c2")).await;
        let old = std::mem::replace(&mut self.coordinator, c);
        let _ = old.flush().await;
        if let Some(s) = self.serving.replace(serving) {
            let _ = s.stop().await;
        }
        self.coordinator_url = url;
    }

    pub async fn stop(mut self) {
        if let Some((tx, task)) = self.prover.take() {
            let _ = tx.send(());
            let _ = task.await;
        }
        let _ = self.coordinator.flush().await;
        if let Some(s) = self.serving.take() {
            let _ = s.stop().await;
        }
    }
}

/// A coordinator proving `exec` with its data in `dir`, serving on a free port.
pub async fn start_coordinator(dir: &Path) -> (Coordinator, Serving, String) {
    std::fs::create_dir_all(dir).unwrap();
    let store = open_store(&format!("sqlite://{}/c.db?mode=rwc", dir.display()))
        .await
        .unwrap();
    let blobs = Blobs::from_url(&format!("file://{}/blobs", dir.display())).unwrap();
    let mut cfg = CoordinatorConfig::default()
        .prove_with(ProofType::new("exec").unwrap(), Arc::new(ExecBackend));
    cfg.scheduler.heartbeat_interval_ms = 200;
    let coordinator = Coordinator::start(cfg, store, blobs).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let serving = coordinator.spawn_serve(listener);
    (coordinator, serving, url)
}

pub fn url_of(p: &Path) -> String {
    url::Url::from_file_path(p).unwrap().to_string()
}

pub async fn stop(
    shutdown: Shutdown,
    task: tokio::task::JoinHandle<Result<(), proofmill_network::NetworkError>>,
) {
    shutdown.begin();
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the daemon stops")
        .unwrap()
        .unwrap();
}

pub fn count(events: &[MarketEvent], what: fn(&MarketEvent) -> bool) -> usize {
    events.iter().filter(|e| what(e)).count()
}
