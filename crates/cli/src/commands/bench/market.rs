//! `proofmill bench market`: what buying proofs costs on L1, and how fast a silent network's
//! batch reaches the own fleet. In this process, on the embedded L1: the `ProofMarket`
//! contract, the rollup's coordinator (exec proofs of real devnet batches, every batch held
//! for the market) with its proof manager and one own prover, and a proving network (its own
//! coordinator, prover and `proofmill-network` daemon).
//!
//! 1. `--batches` batches go to the network (the market's preferred one): it acknowledges,
//!    proves and posts; the rollup checks and validates; the network claims its rewards once
//!    at the end. Every market transaction of either side is counted with its gas.
//! 2. `--silent-batches` batches go to a second registered network that runs nothing. Each
//!    is timed from the moment its acknowledgement deadline passes on the chain (the chain's
//!    clock jumps there) to its job proven by the own prover.
//!
//! Ends with `batches=<int> l1_txs_per_batch=<float> gas_per_batch=<int> fallback_s=<float>`
//! (the median fallback).

use crate::args::BenchMarketArgs;
use crate::commands::market_local::{
    self, LocalCluster, LocalNetwork, LocalNetworkSpec, NETWORKS, SUBMITTER,
};
use anyhow::{Context as _, bail};
use async_trait::async_trait;
use proofmill_backend::Backend;
use proofmill_coordinator::{CoordinatorConfig, MarketHold, NewBatch};
use proofmill_devnet::{Devnet, DevnetConfig, ExecBackend, SealedBatch};
use proofmill_l1::{RevmConfig, RevmL1};
use proofmill_market::{
    Address, BlockHead, MarketEvent, MarketEvents, MarketL1, MarketSettings, MarketTx,
    ProvingNetwork, Request, RequestId, RequestParams, RevmMarket, U256,
};
use proofmill_store::JobFilter;
use proofmill_types::{DEFAULT_CHAIN, JobKey, JobState, ProofType, ProvingMode};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VERSION: &str = "bench";
/// Generous on the embedded chain, whose clock moves 12 s a transaction: only the silent
/// phase's jump passes a deadline.
const ACK_TIMEOUT: u64 = 100_000;
const TIMEOUT_AFTER: u64 = 200_000;

/// Every market transaction mined, as (kind, gas).
type Ledger = Arc<Mutex<Vec<(&'static str, u64)>>>;

/// A market client that writes every transaction it gets mined into a ledger.
struct Metered {
    inner: RevmMarket,
    ledger: Ledger,
}

impl Metered {
    fn record(
        &self,
        kind: &'static str,
        r: proofmill_market::Result<MarketTx>,
    ) -> proofmill_market::Result<MarketTx> {
        if let Ok(tx) = &r {
            self.ledger
                .lock()
                .expect("ledger lock")
                .push((kind, tx.gas_used));
        }
        r
    }
}

#[async_trait]
impl MarketEvents for Metered {
    async fn head(&self) -> proofmill_market::Result<BlockHead> {
        self.inner.head().await
    }
    async fn block(&self, number: u64) -> proofmill_market::Result<BlockHead> {
        self.inner.block(number).await
    }
    async fn events(&self, from: u64, to: u64) -> proofmill_market::Result<Vec<MarketEvent>> {
        self.inner.events(from, to).await
    }
}

#[async_trait]
impl MarketL1 for Metered {
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
        self.record(
            "request",
            self.inner.submit_proof_request(id, params, value).await,
        )
    }
    async fn submit_validation_result(
        &self,
        id: RequestId,
        valid: bool,
    ) -> proofmill_market::Result<MarketTx> {
        self.record(
            "validation",
            self.inner.submit_validation_result(id, valid).await,
        )
    }
    async fn acknowledge(&self, id: RequestId, accept: bool) -> proofmill_market::Result<MarketTx> {
        self.record("acknowledge", self.inner.acknowledge(id, accept).await)
    }
    async fn submit_proof(
        &self,
        id: RequestId,
        proof: &[u8],
        requested_reward: U256,
    ) -> proofmill_market::Result<MarketTx> {
        self.record(
            "proof",
            self.inner.submit_proof(id, proof, requested_reward).await,
        )
    }
    async fn claim_reward(&self) -> proofmill_market::Result<MarketTx> {
        self.record("claim", self.inner.claim_reward().await)
    }
    async fn close_timed_out_request(&self, id: RequestId) -> proofmill_market::Result<MarketTx> {
        self.record("close", self.inner.close_timed_out_request(id).await)
    }
    async fn close_unvalidated_request(&self, id: RequestId) -> proofmill_market::Result<MarketTx> {
        self.record("close", self.inner.close_unvalidated_request(id).await)
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
        self.inner.request(id).await
    }
    async fn earned(&self, network: Address) -> proofmill_market::Result<U256> {
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
        self.inner.settings().await
    }
    async fn balance(&self, who: Address) -> proofmill_market::Result<U256> {
        self.inner.balance(who).await
    }
}

pub async fn market(a: BenchMarketArgs) -> anyhow::Result<()> {
    let total = (a.batches + a.silent_batches) as usize;
    let devnet_cfg = DevnetConfig {
        depth: 8,
        accounts: 64,
        ..DevnetConfig::default()
    };
    let sealed = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<SealedBatch>> {
        let mut devnet = Devnet::new(devnet_cfg)?;
        Ok((0..total).map(|_| devnet.produce_batch()).collect())
    })
    .await??;
    let dir = tempfile::tempdir()?;
    let l1 = RevmL1::open(None, RevmConfig::dev(Default::default()))?;
    let market = market_local::deploy(&l1, ACK_TIMEOUT, TIMEOUT_AFTER, &NETWORKS).await?;
    let (honest, silent) = (
        market_local::account(NETWORKS[0]),
        market_local::account(NETWORKS[1]),
    );
    let admin = RevmMarket::new(
        l1.with_sender(market_local::account(market_local::ADMIN)),
        market,
    );
    admin.update_preferred_network(Some(honest)).await?;
    let ledger: Ledger = Default::default();
    let metered = |who: usize| -> Arc<dyn MarketL1> {
        Arc::new(Metered {
            inner: RevmMarket::new(l1.with_sender(market_local::account(who)), market),
            ledger: ledger.clone(),
        })
    };

    // The rollup: its coordinator holds every batch for the market.
    let exec = ProofType::new("exec")?;
    let backend: Arc<dyn Backend> = Arc::new(ExecBackend);
    let mut backends = proofmill_backend::Backends::default();
    backends.insert(backend.clone());
    let config = CoordinatorConfig {
        proof_types: vec![(exec.clone(), "exec".into())],
        backends,
        market_hold: Some(MarketHold {
            mode: ProvingMode::Network,
            proof_type: exec.clone(),
        }),
        ..CoordinatorConfig::default()
    };
    let rollup = LocalCluster::start(
        &dir.path().join("rollup"),
        "own",
        config,
        1,
        (&exec, backend.clone()),
        VERSION,
    )
    .await?;
    let inputs_dir = dir.path().join("public");
    std::fs::create_dir_all(&inputs_dir)?;
    let poll = Duration::from_millis(a.poll_interval);
    let max_reward = U256::from(1_000_000_000u64);
    let manager = market_local::start_manager_with(
        &rollup.coord,
        metered(SUBMITTER),
        &inputs_dir,
        (VERSION, max_reward, TIMEOUT_AFTER),
        poll,
    )
    .await?;
    let network = LocalNetwork::start_with(
        metered(NETWORKS[0]),
        LocalNetworkSpec {
            account: NETWORKS[0],
            dir: dir.path().join("network"),
            inputs_dir: &inputs_dir,
            version: VERSION,
            proof_type: &exec,
            backend: backend.clone(),
            min_reward: U256::ZERO,
            max_in_flight: a.batches as usize,
            poll_interval: poll,
        },
    )
    .await?;
    eprintln!(
        "bench market: {} batches proven by a network, {} offered to a silent one; rounds every {} ms",
        a.batches, a.silent_batches, a.poll_interval
    );
    let deadline = Instant::now() + Duration::from_secs(a.timeout_s);
    let store = rollup.coord.store().clone();
    let proven = |n: u64| {
        let store = store.clone();
        let key = JobKey::new(DEFAULT_CHAIN, n, exec.clone());
        async move {
            store
                .job(&key)
                .await
                .ok()
                .flatten()
                .is_some_and(|j| j.state == JobState::Proven)
        }
    };
    let submit = |b: &SealedBatch| NewBatch {
        chain: DEFAULT_CHAIN,
        number: b.number,
        version: VERSION.into(),
        input: b.input.clone().into(),
        public_values: b.transition.to_public_values(),
        proof_types: Vec::new(),
    };

    // 1. The network proves; its rewards are claimed once everything is validated.
    for b in &sealed[..a.batches as usize] {
        rollup.coord.submit_batch(submit(b)).await?;
    }
    let table = store
        .clone()
        .proof_requests()
        .context("no proof request table")?;
    loop {
        let counts = table.proof_request_counts(DEFAULT_CHAIN).await?;
        let earned = admin.earned(honest).await?;
        if counts.proven_by_network == a.batches && earned.is_zero() && counts.fell_back == 0 {
            // Validated, and claimed (nothing left earned).
            break;
        }
        if counts.fell_back > 0 {
            bail!("the network's batches fell back: {counts:?}");
        }
        if Instant::now() > deadline {
            bail!(
                "the network proved {} of {} batches in {} s",
                counts.proven_by_network,
                a.batches,
                a.timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (txs, gas, by_kind) = {
        let ledger = ledger.lock().expect("ledger lock");
        let mut by_kind: std::collections::BTreeMap<&str, (u64, u64)> = Default::default();
        for (kind, g) in ledger.iter() {
            let e = by_kind.entry(kind).or_default();
            e.0 += 1;
            e.1 += g;
        }
        (
            ledger.len(),
            ledger.iter().map(|(_, g)| *g).sum::<u64>(),
            by_kind,
        )
    };
    for n in 1..=a.batches {
        if !proven(n).await {
            bail!("batch {n} is validated but not proven here");
        }
    }

    // 2. A silent network: time from its acknowledgement deadline passing to the own proof.
    admin.update_preferred_network(Some(silent)).await?;
    let mut fallbacks = Vec::new();
    for b in &sealed[a.batches as usize..] {
        rollup.coord.submit_batch(submit(b)).await?;
        let id = RequestId::new(DEFAULT_CHAIN, b.number);
        while admin.request(id).await?.is_none() {
            if Instant::now() > deadline {
                bail!("batch {} was never offered", b.number);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        l1.advance_time(ACK_TIMEOUT + 1);
        let silence = Instant::now();
        while !proven(b.number).await {
            if Instant::now() > deadline {
                bail!("batch {} never fell back to the own fleet", b.number);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        fallbacks.push(silence.elapsed().as_secs_f64());
    }
    let held = store
        .jobs(&JobFilter {
            state: Some(JobState::Held),
            ..Default::default()
        })
        .await?;
    manager.abort();
    network.stop().await;
    rollup.stop("bench finished").await;
    if !held.is_empty() {
        bail!("{} jobs still held at the end", held.len());
    }
    fallbacks.sort_by(f64::total_cmp);
    let fallback_s = fallbacks[fallbacks.len() / 2];
    let n = a.batches as f64;
    let kinds: Vec<String> = by_kind
        .iter()
        .map(|(k, (n, g))| format!("{k} {n}x{}", g / n))
        .collect();
    println!(
        "market: {txs} transactions for {} batches, {gas} gas (kind count x mean gas: {}); fallbacks {:?} s",
        a.batches,
        kinds.join(", "),
        fallbacks
    );
    println!(
        "batches={} l1_txs_per_batch={:.2} gas_per_batch={} fallback_s={:.3}",
        a.batches,
        txs as f64 / n,
        (gas as f64 / n).round() as u64,
        fallback_s
    );
    Ok(())
}
