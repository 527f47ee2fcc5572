//! The proof manager driver (`ProofManager`) with a real coordinator (SQLite store, file
//! blobs, gRPC server, one own prover over the network) and the real `ProofMarket` bytecode
//! on the embedded revm; the test plays the proving networks with their own accounts.
//!
//! Batches offered to the market start held: the own prover does not get them. Then: a
//! network's valid proof becomes the batch's proof (validation true, reward earned and
//! claimed once); an invalid proof gets validation false and the batch falls back to the own
//! prover; a refusal and a network that never acknowledges fall back too (the latter's
//! request closed, its escrow back); a manager stopped mid-flow and started again sends
//! nothing twice; one down past the validation window still checks and uses the proofs the
//! networks were paid for by default.

use proofmill_coordinator::{Coordinator, CoordinatorConfig, MarketHold, NewBatch};
use proofmill_l1::{DEV_ACCOUNTS, RevmConfig, RevmL1};
use proofmill_market::{
    Address, MarketEvent, MarketEvents, MarketInputs, MarketL1, MarketSettings, RequestId,
    RequestStatus, RevmMarket, U256, WatcherConfig, deploy_market,
};
use proofmill_proof_manager::{DriverConfig, ManagerConfig, ProofManager, ProvingMode};
use proofmill_prover::sim::SimBackend;
use proofmill_prover::{Prover, ProverConfig};
use proofmill_store::{
    Blobs, FallbackReason, ProofRequestStatus, Store, ValidationStatus, open_store,
};
use proofmill_types::{DEFAULT_CHAIN, JobKey, JobState, ProofType, PublicValues};
use std::sync::Arc;
use std::time::Duration;

const ACK_TIMEOUT: u64 = 600;
const TIMEOUT_AFTER: u64 = 1_200;
const VALIDATION_TIMEOUT: u64 = 86_400;
const VERSION: &str = "v1";

fn account(i: usize) -> Address {
    DEV_ACCOUNTS[i].parse().unwrap()
}

fn exec() -> ProofType {
    ProofType::new("exec").unwrap()
}

fn public(n: u64) -> Vec<u8> {
    format!("public values of batch {n}").into_bytes()
}

fn id(batch: u64) -> RequestId {
    RequestId::new(DEFAULT_CHAIN, batch)
}

struct World {
    _dir: tempfile::TempDir,
    l1: RevmL1,
    market: Address,
    deployed_at: u64,
    n1: RevmMarket,
    n2: RevmMarket,
    coord: Coordinator,
    store: Arc<dyn Store>,
    public_dir: std::path::PathBuf,
    stop_prover: tokio::sync::watch::Sender<bool>,
    prover: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl World {
    async fn new() -> World {
        World::with_mode(ProvingMode::Network).await
    }

    async fn with_mode(mode: ProvingMode) -> World {
        let dir = tempfile::tempdir().unwrap();
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
        for n in [account(2), account(3)] {
            admin.update_proving_network(n, true).await.unwrap();
        }
        let deployed_at = l1.block_number();
        let db = format!("sqlite://{}/c.db?mode=rwc", dir.path().display());
        let store = open_store(&db).await.unwrap();
        let blobs = Blobs::from_url(&format!("file://{}/blobs", dir.path().display())).unwrap();
        let mut config =
            CoordinatorConfig::default().prove_with(exec(), Arc::new(SimBackend::new()));
        config.scheduler.heartbeat_interval_ms = 200;
        config.market_hold = Some(MarketHold {
            mode,
            proof_type: exec(),
        });
        let coord = Coordinator::start(config, store.clone(), blobs)
            .await
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        // The server runs until the test's runtime ends.
        std::mem::forget(coord.spawn_serve(listener));
        let (stop_prover, rx) = tokio::sync::watch::channel(false);
        let prover = tokio::spawn(
            Prover::new(ProverConfig {
                coordinators: vec![url],
                name: "own".into(),
                capacity: 2,
                version: VERSION.into(),
                backends: vec![(exec(), Arc::new(SimBackend::new()) as _)],
                ..ProverConfig::default()
            })
            .run(async move {
                let mut rx = rx;
                let _ = rx.wait_for(|s| *s).await;
            }),
        );
        let public_dir = dir.path().join("public");
        World {
            n1: RevmMarket::new(l1.with_sender(account(2)), market),
            n2: RevmMarket::new(l1.with_sender(account(3)), market),
            l1,
            market,
            deployed_at,
            coord,
            store,
            public_dir,
            stop_prover,
            prover,
            _dir: dir,
        }
    }

    async fn manager(&self) -> ProofManager {
        let submitter: Arc<dyn MarketL1> = Arc::new(RevmMarket::new(
            self.l1.with_sender(account(1)),
            self.market,
        ));
        let public = Blobs::from_url(&format!("file://{}", self.public_dir.display())).unwrap();
        ProofManager::new(
            self.coord.market_port().unwrap(),
            submitter,
            public,
            DriverConfig {
                manager: ManagerConfig {
                    protocol_version: VERSION.into(),
                    timeout_after: TIMEOUT_AFTER,
                    max_reward: U256::from(1_000_000u64),
                    ack_timeout: 0,
                },
                watcher: WatcherConfig {
                    confirmations: 0,
                    max_block_range: 10_000,
                },
                from_block: self.deployed_at,
                poll_interval: Duration::from_millis(50),
                inputs_public_url: format!("file://{}", self.public_dir.display()),
            },
        )
        .await
        .unwrap()
    }

    async fn submit(&self, n: u64) {
        let created = self
            .coord
            .submit_batch(NewBatch {
                chain: DEFAULT_CHAIN,
                number: n,
                version: VERSION.into(),
                input: format!("input {n}").into_bytes().into(),
                public_values: PublicValues::new(public(n)),
                proof_types: Vec::new(),
            })
            .await
            .unwrap();
        assert!(created);
    }

    async fn job(&self, n: u64) -> proofmill_types::Job {
        self.store
            .job(&JobKey::new(DEFAULT_CHAIN, n, exec()))
            .await
            .unwrap()
            .unwrap()
    }

    async fn row(&self, n: u64) -> proofmill_store::ProofRequest {
        let table = self.store.clone().proof_requests().unwrap();
        table
            .proof_request(DEFAULT_CHAIN, n)
            .await
            .unwrap()
            .unwrap()
    }

    fn network(&self, who: Address) -> &RevmMarket {
        if who == account(2) {
            &self.n1
        } else {
            &self.n2
        }
    }

    /// Every `ProofRequestSubmitted` and `ProofValidationResult` the market emitted, by batch.
    async fn sent(&self) -> (Vec<u64>, Vec<(u64, bool)>) {
        let head = self.n1.head().await.unwrap().number;
        let events = self.n1.events(self.deployed_at, head).await.unwrap();
        let mut requests = Vec::new();
        let mut validations = Vec::new();
        for e in events {
            match e {
                MarketEvent::Submitted { id, .. } => requests.push(id.batch),
                MarketEvent::ValidationResult { id, valid, .. } => {
                    validations.push((id.batch, valid))
                }
                _ => {}
            }
        }
        (requests, validations)
    }

    async fn wait_proven(&self, n: u64) {
        for _ in 0..200 {
            if self.job(n).await.state == JobState::Proven {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("batch {n} not proven: {:?}", self.job(n).await);
    }

    async fn stop(self) {
        let _ = self.stop_prover.send(true);
        let _ = self.prover.await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_market_proves_falls_back_and_is_paid_once() {
    let w = World::new().await;
    for n in 1..=4 {
        w.submit(n).await;
    }
    // Held: the own prover, connected and idle, gets none of them.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for n in 1..=4 {
        assert_eq!(w.job(n).await.state, JobState::Held, "batch {n}");
    }

    let mut m = w.manager().await;
    let r = m.round().await.unwrap();
    assert_eq!(r.published, 4);
    // Inputs published where the requests say, with their digest.
    for n in 1..=4 {
        let row = w.row(n).await;
        assert_eq!(row.status, ProofRequestStatus::RequestSentToL1, "batch {n}");
        let path = row.inputs_url.strip_prefix("file://").unwrap();
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(MarketInputs::digest_of(&bytes), row.inputs_digest.0);
        let inputs = MarketInputs::decode(&bytes).unwrap();
        assert_eq!((inputs.chain_id, inputs.batch), (DEFAULT_CHAIN, n));
        assert_eq!(inputs.public_values, public(n));
        assert_eq!(inputs.input, format!("input {n}").into_bytes());
        assert_eq!(inputs.proof_type, "exec");
    }
    // Round-robin: 1 and 3 to one network, 2 and 4 to the other.
    let assigned: Vec<Address> = {
        let mut v = Vec::new();
        for n in 1..=4 {
            v.push(w.n1.request(id(n)).await.unwrap().unwrap().network);
        }
        v
    };
    assert_eq!(assigned[0], assigned[2]);
    assert_eq!(assigned[1], assigned[3]);
    assert_ne!(assigned[0], assigned[1]);

    // 1: valid proof. 2: acknowledged, invalid proof. 3: refused. 4: silence.
    let net = |n: u64| w.network(assigned[n as usize - 1]);
    net(1).acknowledge(id(1), true).await.unwrap();
    net(1)
        .submit_proof(id(1), &public(1), U256::from(400_000u64))
        .await
        .unwrap();
    net(2).acknowledge(id(2), true).await.unwrap();
    net(2)
        .submit_proof(id(2), b"not the proof", U256::from(1u64))
        .await
        .unwrap();
    net(3).acknowledge(id(3), false).await.unwrap();
    m.round().await.unwrap();

    let row1 = w.row(1).await;
    assert_eq!(row1.status, ProofRequestStatus::ValidationResultSentToL1);
    assert_eq!(row1.validation_status, ValidationStatus::Valid);
    assert!(!row1.fallbacked);
    let proof = w
        .store
        .proof(&JobKey::new(DEFAULT_CHAIN, 1, exec()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(proof.prover.0, format!("market:{}", assigned[0]));
    assert_eq!(w.job(1).await.state, JobState::Proven);

    let row2 = w.row(2).await;
    assert_eq!(row2.validation_status, ValidationStatus::Invalid);
    assert_eq!(row2.fallback_reason, Some(FallbackReason::InvalidProof));
    assert!(row2.fallbacked);
    let row3 = w.row(3).await;
    assert_eq!(row3.status, ProofRequestStatus::Refused);
    assert!(row3.fallbacked);
    // The own prover proves what fell back (its proof: the public values).
    w.wait_proven(2).await;
    w.wait_proven(3).await;
    let own = w
        .store
        .proof(&JobKey::new(DEFAULT_CHAIN, 2, exec()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(own.prover_name, "own");
    assert_eq!(w.job(4).await.state, JobState::Held);

    // Silence: past the acknowledgement deadline the batch falls back, then the request
    // is closed and its escrow comes back.
    w.l1.advance_time(ACK_TIMEOUT + 60);
    m.round().await.unwrap();
    m.round().await.unwrap();
    let row4 = w.row(4).await;
    assert!(row4.fallbacked);
    assert_eq!(row4.fallback_reason, Some(FallbackReason::NotAcknowledged));
    assert_eq!(row4.status, ProofRequestStatus::TimedOut);
    assert_eq!(
        w.n1.request(id(4)).await.unwrap().unwrap().status,
        RequestStatus::TimedOut
    );
    w.wait_proven(4).await;

    // Paid for batch 1 only, once.
    let winner = net(1);
    assert_eq!(
        winner.earned(winner.sender()).await.unwrap(),
        U256::from(400_000u64)
    );
    winner.claim_reward().await.unwrap();
    assert!(winner.claim_reward().await.is_err());
    let other = net(2);
    assert_eq!(other.earned(other.sender()).await.unwrap(), U256::ZERO);
    // Every escrow is settled: the market holds nothing.
    assert_eq!(w.n1.balance(w.market).await.unwrap(), U256::ZERO);

    let (requests, validations) = w.sent().await;
    assert_eq!(requests, vec![1, 2, 3, 4]);
    assert_eq!(validations, vec![(1, true), (2, false)]);
    // Further rounds send nothing.
    m.round().await.unwrap();
    assert_eq!(w.sent().await, (requests, validations));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manager_started_again_sends_nothing_twice() {
    let w = World::new().await;
    w.submit(1).await;
    w.submit(2).await;
    let mut first = w.manager().await;
    first.round().await.unwrap();
    drop(first);
    // A proof arrives while no manager runs.
    let network1 = w.n1.request(id(1)).await.unwrap().unwrap().network;
    let n = w.network(network1);
    n.acknowledge(id(1), true).await.unwrap();
    n.submit_proof(id(1), &public(1), U256::from(5u64))
        .await
        .unwrap();
    let mut second = w.manager().await;
    second.round().await.unwrap();
    second.round().await.unwrap();
    assert_eq!(w.job(1).await.state, JobState::Proven);
    assert_eq!(w.row(1).await.validation_status, ValidationStatus::Valid);
    assert_eq!(w.job(2).await.state, JobState::Held);
    let (requests, validations) = w.sent().await;
    assert_eq!(requests, vec![1, 2]);
    assert_eq!(validations, vec![(1, true)]);
    w.stop().await;
}

/// The manager is down while three proofs arrive and for the whole validation window. The
/// networks close two of the requests and are paid by default; the third stays open. Started
/// again, the manager still checks all three: the valid proofs become batches 1 and 3's
/// proofs (no fallback), the invalid one sends batch 2 to the own prover. It sends no
/// verdict: the contract refuses batch 3's as late, which closes its row too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_left_unanswered_past_the_validation_window_are_still_checked_and_used() {
    let w = World::new().await;
    for n in 1..=3 {
        w.submit(n).await;
    }
    let mut first = w.manager().await;
    first.round().await.unwrap();
    drop(first);
    for (n, proof) in [(1, public(1)), (2, b"garbage".to_vec()), (3, public(3))] {
        let network = w.n1.request(id(n)).await.unwrap().unwrap().network;
        let net = w.network(network);
        net.acknowledge(id(n), true).await.unwrap();
        net.submit_proof(id(n), &proof, U256::from(5u64))
            .await
            .unwrap();
    }
    w.l1.advance_time(VALIDATION_TIMEOUT + 1);
    for n in [1, 2] {
        w.n1.close_unvalidated_request(id(n)).await.unwrap();
        let r = w.n1.request(id(n)).await.unwrap().unwrap();
        assert_eq!(r.status, RequestStatus::ValidationTimedOut);
    }

    let mut second = w.manager().await;
    for _ in 0..4 {
        second.round().await.unwrap();
    }
    for n in [1, 3] {
        let row = w.row(n).await;
        assert_eq!(row.status, ProofRequestStatus::ValidationResultSentToL1);
        assert_eq!(row.validation_status, ValidationStatus::Valid);
        assert!(
            !row.fallbacked && row.validation_tx_hash.is_none(),
            "{row:?}"
        );
        assert_eq!(w.job(n).await.state, JobState::Proven);
    }
    let open = w.n1.request(id(3)).await.unwrap().unwrap();
    assert_eq!(open.status, RequestStatus::Proven, "nobody closed it yet");
    let row = w.row(2).await;
    assert_eq!(row.status, ProofRequestStatus::ValidationResultSentToL1);
    assert_eq!(row.validation_status, ValidationStatus::Invalid);
    assert!(row.fallbacked, "{row:?}");
    assert_eq!(row.fallback_reason, Some(FallbackReason::InvalidProof));
    w.wait_proven(2).await;
    let (requests, validations) = w.sent().await;
    assert_eq!(requests, vec![1, 2, 3]);
    assert!(validations.is_empty(), "{validations:?}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_market_held_jobs_go_to_the_own_provers() {
    let w = World::new().await;
    w.submit(1).await;
    assert_eq!(w.job(1).await.state, JobState::Held);
    let db = format!("sqlite://{}/c.db?mode=rwc", w._dir.path().display());
    // The same store opened by a coordinator without a market: the job is released.
    let store = open_store(&db).await.unwrap();
    let blobs = Blobs::from_url(&format!("file://{}/blobs", w._dir.path().display())).unwrap();
    let config = CoordinatorConfig::default().prove_with(exec(), Arc::new(SimBackend::new()));
    let _plain = Coordinator::start(config, store.clone(), blobs)
        .await
        .unwrap();
    let job = store
        .job(&JobKey::new(DEFAULT_CHAIN, 1, exec()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.state, JobState::Queued);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_that_acknowledges_and_never_proves_is_fallen_back_on_at_its_deadline() {
    let w = World::new().await;
    w.submit(1).await;
    let mut m = w.manager().await;
    m.round().await.unwrap();
    let network = w.n1.request(id(1)).await.unwrap().unwrap().network;
    w.network(network).acknowledge(id(1), true).await.unwrap();
    m.round().await.unwrap();
    assert_eq!(w.row(1).await.status, ProofRequestStatus::Acknowledged);
    // Before the deadline: still the network's.
    w.l1.advance_time(TIMEOUT_AFTER / 2);
    m.round().await.unwrap();
    assert_eq!(w.job(1).await.state, JobState::Held);
    w.l1.advance_time(TIMEOUT_AFTER);
    m.round().await.unwrap();
    m.round().await.unwrap();
    let row = w.row(1).await;
    assert!(row.fallbacked);
    assert_eq!(row.fallback_reason, Some(FallbackReason::NotProven));
    assert_eq!(row.status, ProofRequestStatus::TimedOut);
    w.wait_proven(1).await;
    // Too late now: the market refuses its proof.
    assert!(
        w.network(network)
            .submit_proof(id(1), &public(1), U256::from(1u64))
            .await
            .is_err()
    );
    w.stop().await;
}

/// `mixed` with a share of one half: every other batch is held and offered, the others go
/// to the own prover at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixed_mode_offers_its_share_and_proves_the_rest_at_once() {
    let w = World::with_mode(ProvingMode::Mixed { share_ppm: 500_000 }).await;
    for n in 1..=6 {
        w.submit(n).await;
    }
    let mode = ProvingMode::Mixed { share_ppm: 500_000 };
    let offered: Vec<u64> = (1..=6).filter(|n| mode.offers(*n)).collect();
    assert_eq!(offered.len(), 3);
    for n in 1..=6 {
        if offered.contains(&n) {
            assert_eq!(w.job(n).await.state, JobState::Held, "batch {n}");
        } else {
            w.wait_proven(n).await;
        }
    }
    let mut m = w.manager().await;
    m.round().await.unwrap();
    let (requests, _) = w.sent().await;
    assert_eq!(requests, offered);
    w.stop().await;
}
