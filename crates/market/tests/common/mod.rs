//! A deployed market with a client per role, on the embedded revm L1 or on anvil (the npm
//! `@foundry-rs/anvil` binary through `proofmill_testkit::TestAnvil`, port 0), a clock to move,
//! and a chain access that refuses large log ranges as public nodes do.
#![allow(dead_code)] // each test file uses a subset

use async_trait::async_trait;
use proofmill_l1::{
    BlockHead, DEV_ACCOUNTS, L1Error, LogEntry, RevmConfig, RevmL1, RpcConfig, RpcL1, TxOutcome,
};
use proofmill_market::{
    Address, ChainAccess, MarketClient, MarketError, MarketL1, MarketRevert, MarketSettings,
    MarketTx, RequestId, RequestParams, RevmMarket, RpcMarket, U256, deploy_market,
};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use proofmill_testkit::TestAnvil as Anvil;

/// Private keys of anvil's first five dev accounts (its well-known test mnemonic). DEV ONLY.
pub const DEV_KEYS: [&str; 5] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
];

pub const ACK_TIMEOUT: u64 = 600;
pub const MAX_TIMEOUT_AFTER: u64 = 3_600;
pub const VALIDATION_TIMEOUT: u64 = 1_800;
/// The rollup's chain id in request ids.
pub const CHAIN: u64 = 7;

pub fn account(i: usize) -> Address {
    DEV_ACCOUNTS[i].parse().unwrap()
}

/// `n` ETH in wei.
pub fn eth(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

pub fn id(batch: u64) -> RequestId {
    RequestId::new(CHAIN, batch)
}

pub fn params(max_reward: U256, timeout_after: u64) -> RequestParams {
    RequestParams {
        protocol_version: "devnet-v1".into(),
        inputs_url: "https://inputs.example/7/batch.bin".into(),
        inputs_digest: [0xab; 32],
        timeout_after,
        max_reward,
    }
}

pub fn settings() -> MarketSettings {
    MarketSettings {
        admin: account(0),
        submitter: account(1),
        ack_timeout: ACK_TIMEOUT,
        max_timeout_after: MAX_TIMEOUT_AFTER,
        validation_timeout: VALIDATION_TIMEOUT,
    }
}

/// The refusal of a call; panics on success or another error.
pub fn refused<T: std::fmt::Debug>(res: Result<T, MarketError>) -> MarketRevert {
    match res {
        Err(MarketError::Refused {
            revert,
            mined: None,
        }) => revert,
        other => panic!("expected a refusal before sending, got {other:?}"),
    }
}

/// A mined transaction; panics otherwise.
pub fn mined(res: Result<MarketTx, MarketError>) -> MarketTx {
    let tx = res.unwrap_or_else(|e| panic!("refused or failed: {e}"));
    assert!(tx.gas_used > 21_000, "{tx:?}");
    assert!(tx.block > 0 && tx.tx_hash != [0; 32], "{tx:?}");
    tx
}

/// The default sending policy with fast receipt polling (anvil mines at once).
pub fn fast_cfg() -> RpcConfig {
    RpcConfig {
        poll_interval: Duration::from_millis(10),
        ..RpcConfig::default()
    }
}

/// Where the market runs.
pub enum Chain {
    Revm(RevmL1),
    Anvil { anvil: Anvil, http: reqwest::Client },
}

/// A deployed market: admin (account 0), submitter (1), networks n1 (2) and n2 (3), and a
/// stranger (4), each with its own client.
pub struct Market {
    pub chain: Chain,
    pub address: Address,
    pub admin: Arc<dyn MarketL1>,
    pub submitter: Arc<dyn MarketL1>,
    pub n1: Arc<dyn MarketL1>,
    pub n2: Arc<dyn MarketL1>,
    pub stranger: Arc<dyn MarketL1>,
    /// The block the market was deployed in.
    pub deployed_at: u64,
}

impl Market {
    /// On the embedded L1, in memory (`log: None`) or durable.
    pub async fn revm(log: Option<&Path>) -> Market {
        let l1 = RevmL1::open(log, RevmConfig::dev(Default::default())).unwrap();
        let address = deploy_market(&l1.with_sender(account(0)), &settings())
            .await
            .unwrap();
        let deployed_at = l1.block_number();
        Self::on_revm(l1, address, deployed_at)
    }

    /// Clients of the market at `address` on this embedded chain.
    pub fn on_revm(l1: RevmL1, address: Address, deployed_at: u64) -> Market {
        let client = |i: usize| -> Arc<dyn MarketL1> {
            Arc::new(RevmMarket::new(l1.with_sender(account(i)), address))
        };
        Market {
            admin: client(0),
            submitter: client(1),
            n1: client(2),
            n2: client(3),
            stranger: client(4),
            chain: Chain::Revm(l1),
            address,
            deployed_at,
        }
    }

    pub async fn anvil() -> Market {
        // reqwest is built without a default crypto provider (no aws-lc build).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let anvil = Anvil::start();
        let deployer = RpcL1::new(&anvil.url, DEV_KEYS[0], Address::ZERO, fast_cfg())
            .await
            .unwrap();
        let address = deploy_market(&deployer, &settings()).await.unwrap();
        let deployed_at = deployer.block_number().await.unwrap();
        let mut clients = Vec::new();
        for (i, key) in DEV_KEYS.iter().enumerate() {
            let c = RpcMarket::connect(&anvil.url, key, address, fast_cfg())
                .await
                .unwrap();
            assert_eq!(c.sender(), account(i), "dev key {i}");
            clients.push(Arc::new(c) as Arc<dyn MarketL1>);
        }
        let mut c = clients.into_iter();
        Market {
            admin: c.next().unwrap(),
            submitter: c.next().unwrap(),
            n1: c.next().unwrap(),
            n2: c.next().unwrap(),
            stranger: c.next().unwrap(),
            chain: Chain::Anvil {
                anvil,
                http: reqwest::Client::new(),
            },
            address,
            deployed_at,
        }
    }

    pub fn name(&self) -> &'static str {
        match self.chain {
            Chain::Revm(_) => "revm",
            Chain::Anvil { .. } => "anvil",
        }
    }

    /// Whether transactions cost nothing (the embedded L1's gas price is 0), so balances
    /// move by exactly the amounts paid.
    pub fn gas_free(&self) -> bool {
        matches!(self.chain, Chain::Revm(_))
    }

    pub fn url(&self) -> Option<&str> {
        match &self.chain {
            Chain::Revm(_) => None,
            Chain::Anvil { anvil, .. } => Some(&anvil.url),
        }
    }

    /// Moves the chain's clock at least `secs` ahead.
    pub async fn advance(&self, secs: u64) {
        match &self.chain {
            Chain::Revm(l1) => {
                l1.advance_time(secs);
            }
            Chain::Anvil { anvil, http } => {
                rpc(http, &anvil.url, "evm_increaseTime", json!([secs])).await;
                rpc(http, &anvil.url, "evm_mine", json!([])).await;
            }
        }
    }

    /// Mines `n` empty blocks.
    pub async fn mine(&self, n: u64) {
        match &self.chain {
            Chain::Revm(l1) => {
                l1.advance_time(n * proofmill_l1::EMBEDDED_BLOCK_TIME);
            }
            Chain::Anvil { anvil, http } => {
                for _ in 0..n {
                    rpc(http, &anvil.url, "evm_mine", json!([])).await;
                }
            }
        }
    }

    /// Registers n1 and n2 (round-robin: odd-numbered requests go to n1 first).
    pub async fn register_networks(&self) {
        for n in [account(2), account(3)] {
            mined(self.admin.update_proving_network(n, true).await);
        }
    }

    /// A client of the market for `who` whose log queries over `limit` blocks are refused
    /// with a node's message, and the count of refusals.
    pub async fn range_limited(
        &self,
        who: usize,
        limit: u64,
    ) -> (Arc<MarketClient<RangeLimited>>, Arc<AtomicU64>) {
        let refusals = Arc::new(AtomicU64::new(0));
        let chain: Box<dyn ChainAccess> = match &self.chain {
            Chain::Revm(l1) => Box::new(l1.with_sender(account(who))),
            Chain::Anvil { anvil, .. } => Box::new(
                RpcL1::new(&anvil.url, DEV_KEYS[who], self.address, fast_cfg())
                    .await
                    .unwrap(),
            ),
        };
        let client = MarketClient::new(
            RangeLimited {
                inner: chain,
                limit,
                refusals: refusals.clone(),
            },
            self.address,
        );
        (Arc::new(client), refusals)
    }
}

async fn rpc(http: &reqwest::Client, url: &str, method: &str, params: Value) -> Value {
    let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let reply: Value = http
        .post(url)
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(reply.get("error").is_none(), "{method}: {reply}");
    reply["result"].clone()
}

/// A chain access whose node refuses `eth_getLogs` over more than `limit` blocks, with the
/// message geth gives.
pub struct RangeLimited {
    inner: Box<dyn ChainAccess>,
    limit: u64,
    refusals: Arc<AtomicU64>,
}

#[async_trait]
impl ChainAccess for RangeLimited {
    fn sender(&self) -> Address {
        self.inner.sender()
    }
    async fn transact(
        &self,
        to: Address,
        data: Vec<u8>,
        value: U256,
    ) -> Result<TxOutcome, L1Error> {
        self.inner.transact(to, data, value).await
    }
    async fn call(&self, to: Address, data: Vec<u8>) -> Result<Vec<u8>, L1Error> {
        self.inner.call(to, data).await
    }
    async fn deploy(&self, code: Vec<u8>) -> Result<Address, L1Error> {
        self.inner.deploy(code).await
    }
    async fn logs(&self, address: Address, from: u64, to: u64) -> Result<Vec<LogEntry>, L1Error> {
        if to - from + 1 > self.limit {
            self.refusals.fetch_add(1, Ordering::Relaxed);
            return Err(L1Error::Rpc(format!(
                "eth_getLogs: server returned an error response: error code -32000: exceed maximum block range: {}",
                self.limit
            )));
        }
        self.inner.logs(address, from, to).await
    }
    async fn head(&self) -> Result<BlockHead, L1Error> {
        self.inner.head().await
    }
    async fn block(&self, number: u64) -> Result<Option<BlockHead>, L1Error> {
        self.inner.block(number).await
    }
    async fn balance(&self, who: Address) -> Result<U256, L1Error> {
        self.inner.balance(who).await
    }
}
