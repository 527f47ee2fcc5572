//! Faults the daemon must survive: an L1 node that drops reads and loses receipts, a
//! coordinator that fails every other call.

use super::world::*;

use async_trait::async_trait;
use proofmill_l1::L1Error;
use proofmill_market::{
    Address, BlockHead, MarketError, MarketEvent, MarketInputs, MarketL1, MarketSettings, MarketTx,
    ProvingNetwork, Request, RequestId, RequestParams, RequestStatus, RevmMarket, U256,
};
use proofmill_network::{CoordinatorProver, ProofService, ProofState, ProveError, Status};
use std::sync::Arc;
use std::time::Duration;

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
    async fn close_unvalidated_request(&self, id: RequestId) -> proofmill_market::Result<MarketTx> {
        self.inner.close_unvalidated_request(id).await
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
