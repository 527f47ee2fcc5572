//! The network's daemon against the real `ProofMarket` bytecode on the embedded revm L1, with
//! a real coordinator and an `exec` prover on loopback sockets, and real devnet batches; the
//! test plays the rollup (the submitter posts requests with inputs in a `file://` directory
//! and validates proofs with the exec backend's verify). The happy path up to the claim, a
//! reward under the minimum, a deadline too close, inputs whose digest is not the request's,
//! and a daemon stopped after acknowledging and started again on the same state directory.

use async_trait::async_trait;
use proofmill_backend::Backend as _;
use proofmill_coordinator::{Coordinator, CoordinatorConfig, Serving};
use proofmill_devnet::{Devnet, DevnetConfig, ExecBackend, SealedBatch};
use proofmill_l1::L1Error;
use proofmill_l1::{DEV_ACCOUNTS, RevmConfig, RevmL1};
use proofmill_market::{
    Address, BlockHead, MarketError, MarketEvent, MarketEvents as _, MarketInputs, MarketL1,
    MarketSettings, MarketTx, ProvingNetwork, Request, RequestId, RequestParams, RequestStatus,
    RevmMarket, U256, WatcherConfig, deploy_market,
};
use proofmill_network::{
    CoordinatorAccess, CoordinatorProver, Network, NetworkConfig, NetworkState, ProofService,
    ProofState, ProveError, Shutdown, Status,
};
use proofmill_proto::v1::client_service_client::ClientServiceClient;
use proofmill_proto::v1::{BatchPhase, GetBatchRequest};
use proofmill_prover::{Prover, ProverConfig};
use proofmill_store::{Blobs, open_store};
use proofmill_types::{ProofType, PublicValues};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

const VERSION: &str = "devnet-v1";
const CHAIN: u64 = proofmill_types::DEFAULT_CHAIN;
const ACK_TIMEOUT: u64 = 600;

fn account(i: usize) -> Address {
    DEV_ACCOUNTS[i].parse().unwrap()
}

fn eth(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

fn id(batch: u64) -> RequestId {
    RequestId::new(CHAIN, batch)
}

/// The chain, the market, the rollup's submitter, the network's own account (2), a
/// coordinator proving `exec` (with or without its prover) and a directory of inputs.
struct World {
    market: Address,
    submitter: RevmMarket,
    network: Arc<RevmMarket>,
    coordinator: Coordinator,
    serving: Option<Serving>,
    coordinator_url: String,
    prover: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    devnet: Devnet,
    batches: Vec<SealedBatch>,
    dir: tempfile::TempDir,
}

impl World {
    async fn new() -> World {
        let l1 = RevmL1::open(None, RevmConfig::dev(Default::default())).unwrap();
        let settings = MarketSettings {
            admin: account(0),
            submitter: account(1),
            ack_timeout: ACK_TIMEOUT,
            max_timeout_after: 3_600,
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
    fn start_prover(&mut self) {
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

    fn state_dir(&self) -> PathBuf {
        self.dir.path().join("network-state")
    }

    fn inputs_dir(&self) -> PathBuf {
        self.dir.path().join("inputs")
    }

    fn config(&self) -> NetworkConfig {
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
    fn start_network(
        &self,
        cfg: NetworkConfig,
    ) -> (
        Shutdown,
        tokio::task::JoinHandle<Result<(), proofmill_network::NetworkError>>,
    ) {
        self.start_network_on(self.network.clone(), cfg)
    }

    /// [`World::start_network`] reaching L1 through `market`.
    fn start_network_on(
        &self,
        market: Arc<dyn MarketL1>,
        cfg: NetworkConfig,
    ) -> (
        Shutdown,
        tokio::task::JoinHandle<Result<(), proofmill_network::NetworkError>>,
    ) {
        self.start_network_with(market, Arc::new(self.prover_client()), cfg)
    }

    fn prover_client(&self) -> CoordinatorProver {
        CoordinatorProver::new(&CoordinatorAccess {
            url: self.coordinator_url.clone(),
            token: None,
            tls: Default::default(),
        })
        .unwrap()
    }

    /// [`World::start_network`] reaching L1 through `market` and proving with `prover`.
    fn start_network_with(
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

    /// The next devnet batch, its inputs envelope written to the inputs directory: its
    /// number, URL and the envelope's digest.
    fn next_batch(&mut self) -> (u64, String, [u8; 32]) {
        self.next_batch_of("exec")
    }

    /// [`World::next_batch`] asking for a proof of `proof_type`.
    fn next_batch_of(&mut self, proof_type: &str) -> (u64, String, [u8; 32]) {
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

    fn public_values(&self, batch: u64) -> PublicValues {
        self.batches
            .iter()
            .find(|b| b.number == batch)
            .unwrap()
            .transition
            .to_public_values()
    }

    async fn request(&self, batch: u64, url: &str, digest: [u8; 32], reward: U256, timeout: u64) {
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

    async fn status(&self, batch: u64) -> RequestStatus {
        self.submitter
            .request(id(batch))
            .await
            .unwrap()
            .unwrap()
            .status
    }

    /// Waits until request `batch` is in `want` on L1.
    async fn until_status(&self, batch: u64, want: RequestStatus) {
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

    fn entry(&self, batch: u64) -> Option<proofmill_network::Entry> {
        NetworkState::load(&self.state_dir(), self.market, account(2))
            .unwrap()
            .and_then(|s| s.requests.get(&id(batch)).cloned())
    }

    /// Waits until the daemon's state has request `batch` in `want`.
    async fn until_entry(&self, batch: u64, want: Status) -> proofmill_network::Entry {
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

    async fn events(&self) -> Vec<MarketEvent> {
        let head = self.submitter.head().await.unwrap().number;
        self.submitter.events(1, head).await.unwrap()
    }

    /// Another coordinator takes this one's place, with none of its data (a network whose
    /// coordinator lost its store).
    async fn replace_coordinator(&mut self) {
        let (c, serving, url) = start_coordinator(&self.dir.path().join("c2")).await;
        let old = std::mem::replace(&mut self.coordinator, c);
        let _ = old.flush().await;
        if let Some(s) = self.serving.replace(serving) {
            let _ = s.stop().await;
        }
        self.coordinator_url = url;
    }

    async fn stop(mut self) {
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
async fn start_coordinator(dir: &Path) -> (Coordinator, Serving, String) {
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

fn url_of(p: &Path) -> String {
    url::Url::from_file_path(p).unwrap().to_string()
}

async fn stop(
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

fn count(events: &[MarketEvent], what: fn(&MarketEvent) -> bool) -> usize {
    events.iter().filter(|e| what(e)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_accepted_proven_posted_validated_and_paid_once() {
    let mut w = World::new().await;
    w.start_prover();
    let mut cfg = w.config();
    let ask = eth(1) / U256::from(2);
    cfg.ask_reward = Some(ask);
    let (shutdown, task) = w.start_network(cfg);
    let (n, url, digest) = w.next_batch();
    let balance_before = w.submitter.balance(account(2)).await.unwrap();
    w.request(n, &url, digest, eth(1), 1_200).await;

    w.until_status(n, RequestStatus::Proven).await;
    let events = w.events().await;
    let proof = events
        .iter()
        .find_map(|e| match e {
            MarketEvent::Proven {
                id: i,
                proof,
                requested_reward,
                network,
                ..
            } if *i == id(n) => {
                assert_eq!((*requested_reward, *network), (ask, account(2)));
                Some(proof.clone())
            }
            _ => None,
        })
        .expect("a Proven event");
    ExecBackend
        .verify(&w.public_values(n), &proof)
        .expect("the posted proof is valid");
    let entry = w.until_entry(n, Status::ProofPosted).await;
    assert!(
        entry.ack_tx.is_some() && entry.proof_tx.is_some(),
        "{entry:?}"
    );
    assert_eq!(entry.proof_type.as_deref(), Some("exec"));

    w.submitter
        .submit_validation_result(id(n), true)
        .await
        .unwrap();
    let entry = w.until_entry(n, Status::Claimed).await;
    assert!(entry.claim_tx.is_some(), "{entry:?}");
    assert_eq!(entry.earned, Some(ask.to_string()));
    assert_eq!(w.network.earned(account(2)).await.unwrap(), U256::ZERO);
    // Paid exactly the asked reward (the embedded L1 charges no gas).
    assert_eq!(
        w.submitter.balance(account(2)).await.unwrap(),
        balance_before + ask
    );
    // A few more rounds: nothing is sent again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop(shutdown, task).await;
    let events = w.events().await;
    let mine = |e: &MarketEvent| e.network() == Some(account(2));
    assert_eq!(
        count(&events, |e| matches!(
            e,
            MarketEvent::Acknowledged { accepted: true, .. }
        )),
        1
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Proven { .. })),
        1
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::RewardClaimed { .. })),
        1
    );
    assert!(events.iter().filter(|e| e.request_id().is_some()).all(mine));
    let state = NetworkState::load(&w.state_dir(), w.market, account(2))
        .unwrap()
        .unwrap();
    assert!(!state.prove_secs.is_empty(), "the prove time was measured");
    w.stop().await;
}

/// A new state directory without `from_block` reads from the start of the last
/// acknowledgement window: a request assigned before the daemon's first start is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_made_before_the_first_start_is_taken() {
    let mut w = World::new().await;
    w.start_prover();
    let (n, url, digest) = w.next_batch();
    w.request(n, &url, digest, eth(1), 1_200).await;
    let mut cfg = w.config();
    cfg.from_block = None;
    let (shutdown, task) = w.start_network(cfg);
    w.until_status(n, RequestStatus::Proven).await;
    stop(shutdown, task).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_it_cannot_serve_are_refused_with_the_reason() {
    let mut w = World::new().await;
    let (shutdown, task) = w.start_network(w.config());
    // A reward under the minimum (0.1 ETH).
    let (cheap, url, digest) = w.next_batch();
    w.request(cheap, &url, digest, eth(1) / U256::from(20), 1_200)
        .await;
    // A deadline closer than the estimate (30 s × 2 + 60 s = 120 s).
    let (rushed, url, digest) = w.next_batch();
    w.request(rushed, &url, digest, eth(1), 100).await;
    // Inputs that are not those the request names.
    let (forged, url, _) = w.next_batch();
    w.request(forged, &url, [0x5a; 32], eth(1), 1_200).await;
    // No such file.
    let (lost, _, digest) = w.next_batch();
    let missing = url_of(&w.inputs_dir().join("nowhere.bin"));
    w.request(lost, &missing, digest, eth(1), 1_200).await;
    // A proof type its coordinator does not prove.
    let (alien, url, digest) = w.next_batch_of("groth16");
    w.request(alien, &url, digest, eth(1), 1_200).await;

    for (batch, reason) in [
        (cheap, "under the minimum"),
        (rushed, "left to the deadline"),
        (forged, "SHA-256"),
        (lost, "not a file under"),
        (alien, "the coordinator refuses them"),
    ] {
        w.until_status(batch, RequestStatus::Refused).await;
        let e = w.until_entry(batch, Status::Refused).await;
        let why = e.reason.clone().unwrap_or_default();
        assert!(why.contains(reason), "batch {batch}: {why}");
        assert!(e.ack_tx.is_some());
    }
    stop(shutdown, task).await;
    // Nothing reached the coordinator, nothing was posted.
    for batch in [cheap, rushed, forged, lost, alien] {
        assert!(
            w.coordinator
                .store()
                .batch(CHAIN, batch)
                .await
                .unwrap()
                .is_none(),
            "batch {batch}"
        );
    }
    let events = w.events().await;
    assert_eq!(
        count(&events, |e| matches!(
            e,
            MarketEvent::Acknowledged {
                accepted: false,
                ..
            }
        )),
        5
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Proven { .. })),
        0
    );
    w.stop().await;
}

/// A rollup that leaves the network's proofs unvalidated gets no more work from it until it
/// validates them (so a rollup that never does cannot grow the network's state either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_that_does_not_validate_gets_no_more_work_until_it_does() {
    let mut w = World::new().await;
    w.start_prover();
    let mut cfg = w.config();
    cfg.admission.max_awaiting_validation = 1;
    let (shutdown, task) = w.start_network(cfg);
    let (first, url, digest) = w.next_batch();
    w.request(first, &url, digest, eth(1), 1_200).await;
    w.until_entry(first, Status::ProofPosted).await;

    let (second, url, digest) = w.next_batch();
    w.request(second, &url, digest, eth(1), 1_200).await;
    w.until_status(second, RequestStatus::Refused).await;
    let why = w.until_entry(second, Status::Refused).await.reason;
    let expected = format!("1 of this network's proofs for chain {CHAIN} await");
    assert!(
        why.as_deref().is_some_and(|r| r.contains(&expected)),
        "{why:?}"
    );

    w.submitter
        .submit_validation_result(id(first), true)
        .await
        .unwrap();
    w.until_entry(first, Status::Claimed).await;
    let (third, url, digest) = w.next_batch();
    w.request(third, &url, digest, eth(1), 1_200).await;
    w.until_entry(third, Status::ProofPosted).await;
    stop(shutdown, task).await;
    w.stop().await;
}

/// Stopped after it acknowledged (no prover yet, so no proof), the daemon starts again on the
/// same state directory: it takes the request up where it was and posts its proof once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_acknowledgement_proves_and_posts_once() {
    let mut w = World::new().await;
    let (shutdown, task) = w.start_network(w.config());
    let (n, url, digest) = w.next_batch();
    w.request(n, &url, digest, eth(1), 1_200).await;
    w.until_status(n, RequestStatus::Committed).await;
    w.until_entry(n, Status::Proving).await;
    stop(shutdown, task).await;
    assert_eq!(w.status(n).await, RequestStatus::Committed);

    w.start_prover();
    let (shutdown, task) = w.start_network(w.config());
    w.until_status(n, RequestStatus::Proven).await;
    w.until_entry(n, Status::ProofPosted).await;
    w.submitter
        .submit_validation_result(id(n), true)
        .await
        .unwrap();
    w.until_entry(n, Status::Claimed).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop(shutdown, task).await;

    // Once more on the same state: nothing left to do, nothing sent.
    let before = w.events().await.len();
    let (shutdown, task) = w.start_network(w.config());
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop(shutdown, task).await;
    let events = w.events().await;
    assert_eq!(events.len(), before);
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Acknowledged { .. })),
        1
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Proven { .. })),
        1
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::RewardClaimed { .. })),
        1
    );
    let proof = events
        .iter()
        .find_map(|e| match e {
            MarketEvent::Proven { proof, .. } => Some(proof.clone()),
            _ => None,
        })
        .unwrap();
    ExecBackend.verify(&w.public_values(n), &proof).unwrap();
    w.stop().await;
}

/// With room for one request, a second is refused; the first, accepted but never proven (no
/// prover), is given up once the last moment to post it passed on the chain's clock, and
/// never posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_capacity_a_request_is_refused_and_one_not_proven_in_time_is_given_up() {
    let mut w = World::new().await;
    let mut cfg = w.config();
    cfg.admission.max_in_flight = 1;
    let (shutdown, task) = w.start_network(cfg);
    let (first, url, digest) = w.next_batch();
    w.request(first, &url, digest, eth(1), 1_200).await;
    w.until_entry(first, Status::Proving).await;
    let (second, url, digest) = w.next_batch();
    w.request(second, &url, digest, eth(1), 1_200).await;
    let e = w.until_entry(second, Status::Refused).await;
    assert!(e.reason.unwrap().contains("at capacity"));
    assert_eq!(w.status(second).await, RequestStatus::Refused);

    // Past the deadline less the margin (60 s): not posted, given up.
    w.network.chain().advance_time(1_200 - 30);
    let e = w.until_entry(first, Status::GivenUp).await;
    assert!(e.reason.unwrap().contains("not proven in time"));
    assert_eq!(w.status(first).await, RequestStatus::Committed);
    // It was handed over, and its coordinator was told to stop proving it.
    let mut client = ClientServiceClient::connect(w.coordinator_url.clone())
        .await
        .unwrap();
    let state = client
        .get_batch(GetBatchRequest {
            chain_id: CHAIN,
            batch_number: first,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.phase, BatchPhase::BatchCancelled as i32, "{state:?}");
    w.start_prover();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop(shutdown, task).await;
    let events = w.events().await;
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Proven { .. })),
        0
    );
    w.stop().await;
}

/// Stopped after it acknowledged, the daemon starts again against a coordinator that does not
/// hold the batch: it fetches the inputs again, hands them over, proves and posts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_against_a_coordinator_without_the_batch_fetches_it_again() {
    let mut w = World::new().await;
    let (shutdown, task) = w.start_network(w.config());
    let (n, url, digest) = w.next_batch();
    w.request(n, &url, digest, eth(1), 1_200).await;
    w.until_entry(n, Status::Proving).await;
    stop(shutdown, task).await;
    w.replace_coordinator().await;
    assert!(
        w.coordinator
            .store()
            .batch(CHAIN, n)
            .await
            .unwrap()
            .is_none()
    );
    w.start_prover();
    let (shutdown, task) = w.start_network(w.config());
    w.until_status(n, RequestStatus::Proven).await;
    w.until_entry(n, Status::ProofPosted).await;
    stop(shutdown, task).await;
    assert!(
        w.coordinator
            .store()
            .batch(CHAIN, n)
            .await
            .unwrap()
            .is_some()
    );
    let events = w.events().await;
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Acknowledged { .. })),
        1
    );
    let proofs: Vec<Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Proven { proof, .. } => Some(proof.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(proofs.len(), 1);
    ExecBackend.verify(&w.public_values(n), &proofs[0]).unwrap();
    w.stop().await;
}

/// The network's L1 access, failing the way a node does: one read in five with a transport
/// error, and the first acknowledgement, proof and claim each *after* it was mined (the
/// receipt lost), so the daemon must find out from L1 what it did.
struct Flaky {
    inner: Arc<RevmMarket>,
    calls: std::sync::atomic::AtomicU64,
    lost: std::sync::Mutex<std::collections::HashSet<&'static str>>,
    failures: std::sync::atomic::AtomicU64,
}

impl Flaky {
    fn new(inner: Arc<RevmMarket>) -> Flaky {
        Flaky {
            inner,
            calls: Default::default(),
            lost: Default::default(),
            failures: Default::default(),
        }
    }

    fn transient(&self, what: &str) -> MarketError {
        self.failures
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        MarketError::L1(L1Error::Transient(format!(
            "{what}: connection reset (test)"
        )))
    }

    /// One read in five fails, at pseudo-random (a fixed period could line up with a
    /// caller's pattern of reads and fail the same one each time).
    fn read(&self, what: &str) -> Result<(), MarketError> {
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // splitmix64
        let mut z = n.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        match (z ^ (z >> 31)) % 5 {
            0 => Err(self.transient(what)),
            _ => Ok(()),
        }
    }

    /// The first call of `what` is mined, then its receipt is lost.
    fn sent(
        &self,
        what: &'static str,
        r: Result<MarketTx, MarketError>,
    ) -> Result<MarketTx, MarketError> {
        let tx = r?;
        if self.lost.lock().unwrap().insert(what) {
            return Err(self.transient(what));
        }
        Ok(tx)
    }
}

#[async_trait]
impl proofmill_market::MarketEvents for Flaky {
    async fn head(&self) -> proofmill_market::Result<BlockHead> {
        self.read("head")?;
        self.inner.head().await
    }
    async fn block(&self, number: u64) -> proofmill_market::Result<BlockHead> {
        self.read("block")?;
        self.inner.block(number).await
    }
    async fn events(&self, from: u64, to: u64) -> proofmill_market::Result<Vec<MarketEvent>> {
        self.read("events")?;
        self.inner.events(from, to).await
    }
}

#[async_trait]
impl MarketL1 for Flaky {
    fn market_address(&self) -> Address {
        self.inner.market_address()
    }
    fn sender(&self) -> Address {
        self.inner.sender()
    }
    async fn submit_proof_request(
        &self,
        id: RequestId,
        params: &RequestParams,
        value: U256,
    ) -> proofmill_market::Result<MarketTx> {
        self.inner.submit_proof_request(id, params, value).await
    }
    async fn submit_validation_result(
        &self,
        id: RequestId,
        valid: bool,
    ) -> proofmill_market::Result<MarketTx> {
        self.inner.submit_validation_result(id, valid).await
    }
    async fn acknowledge(&self, id: RequestId, accept: bool) -> proofmill_market::Result<MarketTx> {
        self.sent("acknowledge", self.inner.acknowledge(id, accept).await)
    }
    async fn submit_proof(
        &self,
        id: RequestId,
        proof: &[u8],
        reward: U256,
    ) -> proofmill_market::Result<MarketTx> {
        self.sent(
            "submit_proof",
            self.inner.submit_proof(id, proof, reward).await,
        )
    }
    async fn claim_reward(&self) -> proofmill_market::Result<MarketTx> {
        self.sent("claim_reward", self.inner.claim_reward().await)
    }
    async fn close_timed_out_request(&self, id: RequestId) -> proofmill_market::Result<MarketTx> {
        self.inner.close_timed_out_request(id).await
    }
    async fn update_proving_network(
        &self,
        network: Address,
        active: bool,
    ) -> proofmill_market::Result<MarketTx> {
        self.inner.update_proving_network(network, active).await
    }
    async fn update_preferred_network(
        &self,
        network: Option<Address>,
    ) -> proofmill_market::Result<MarketTx> {
        self.inner.update_preferred_network(network).await
    }
    async fn request(&self, id: RequestId) -> proofmill_market::Result<Option<Request>> {
        self.read("request")?;
        self.inner.request(id).await
    }
    async fn earned(&self, network: Address) -> proofmill_market::Result<U256> {
        self.read("earned")?;
        self.inner.earned(network).await
    }
    async fn next_network(&self) -> proofmill_market::Result<Address> {
        self.inner.next_network().await
    }
    async fn proving_networks(&self) -> proofmill_market::Result<Vec<ProvingNetwork>> {
        self.inner.proving_networks().await
    }
    async fn preferred_network(&self) -> proofmill_market::Result<Option<Address>> {
        self.inner.preferred_network().await
    }
    async fn settings(&self) -> proofmill_market::Result<MarketSettings> {
        self.read("settings")?;
        self.inner.settings().await
    }
    async fn balance(&self, who: Address) -> proofmill_market::Result<U256> {
        self.inner.balance(who).await
    }
}

/// The coordinator's client API failing every other call (unreachable, overloaded).
struct FlakyProver {
    inner: CoordinatorProver,
    calls: std::sync::atomic::AtomicU64,
}

impl FlakyProver {
    fn fail(&self, what: &str) -> Result<(), ProveError> {
        let n = self
            .calls
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        match n % 2 {
            0 => Err(ProveError::Transient(format!("{what}: Unavailable (test)"))),
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl ProofService for FlakyProver {
    async fn submit(&self, inputs: &MarketInputs) -> Result<(), ProveError> {
        self.fail("SubmitBatch")?;
        self.inner.submit(inputs).await
    }
    async fn wait(
        &self,
        chain_id: u64,
        batch: u64,
        proof_type: &str,
        wait: Duration,
    ) -> Result<ProofState, ProveError> {
        self.fail("WaitProof")?;
        self.inner.wait(chain_id, batch, proof_type, wait).await
    }
    async fn cancel(&self, chain_id: u64, batch: u64, reason: &str) -> Result<(), ProveError> {
        self.inner.cancel(chain_id, batch, reason).await
    }
}

/// Through a node that drops one read in five and loses the receipts of the first
/// acknowledgement, proof and claim, and a coordinator failing every other call, two
/// requests are still each acknowledged once, proven and posted once, and the reward is
/// claimed once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l1_errors_and_lost_receipts_are_retried_without_acting_twice() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let mut w = World::new().await;
    w.start_prover();
    let flaky = Arc::new(Flaky::new(w.network.clone()));
    let prover = Arc::new(FlakyProver {
        inner: w.prover_client(),
        calls: Default::default(),
    });
    let (shutdown, task) = w.start_network_with(flaky.clone(), prover.clone(), w.config());
    let mut batches = Vec::new();
    for _ in 0..2 {
        let (n, url, digest) = w.next_batch();
        w.request(n, &url, digest, eth(1), 1_200).await;
        batches.push(n);
    }
    for n in &batches {
        w.until_status(*n, RequestStatus::Proven).await;
        w.until_entry(*n, Status::ProofPosted).await;
        w.submitter
            .submit_validation_result(id(*n), true)
            .await
            .unwrap();
    }
    for n in &batches {
        w.until_entry(*n, Status::Claimed).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop(shutdown, task).await;
    assert!(
        flaky.failures.load(std::sync::atomic::Ordering::Relaxed) >= 6,
        "the node failed calls"
    );
    assert_eq!(
        flaky.lost.lock().unwrap().len(),
        3,
        "every receipt kind was lost once"
    );
    assert!(prover.calls.load(std::sync::atomic::Ordering::Relaxed) >= 4);
    let events = w.events().await;
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Acknowledged { .. })),
        2
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Proven { .. })),
        2
    );
    let claimed: Vec<U256> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::RewardClaimed { amount, .. } => Some(*amount),
            _ => None,
        })
        .collect();
    // One claim or two (a validation may land between them), paying both rewards once.
    assert_eq!(
        claimed.iter().fold(U256::ZERO, |a, b| a + *b),
        eth(2),
        "{claimed:?}"
    );
    assert_eq!(w.network.earned(account(2)).await.unwrap(), U256::ZERO);
    w.stop().await;
}
