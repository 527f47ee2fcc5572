//! L1 over any Ethereum JSON-RPC node (alloy): EIP-1559 fees, fee bumps for stuck
//! transactions, a timeout on every call, receipt status checked, reverts decoded.

use crate::contracts::{self, View};
use crate::{
    BlockHead, CommittedBatch, L1, L1Error, LogEntry, Result, Revert, TxOutcome, TxStatus,
    VerifiedRange, VerifierKind,
};
use alloy::eips::BlockId;
use alloy::network::{EthereumWallet, NetworkTransactionBuilder, TransactionBuilder};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::providers::{Provider, RootProvider};
use alloy::rpc::types::{Filter, TransactionReceipt, TransactionRequest};
use alloy::signers::local::PrivateKeySigner;
use alloy::transports::http::reqwest::Url;
use alloy::transports::{RpcError, TransportError, TransportErrorKind};
use async_trait::async_trait;
use proofmill_types::{Digest, ProofType};
use std::future::Future;
use std::time::{Duration, Instant};

const GWEI: u128 = 1_000_000_000;

/// Sending policy of [`RpcL1`].
#[derive(Clone, Debug)]
pub struct RpcConfig {
    /// Timeout of every single RPC call.
    pub call_timeout: Duration,
    /// How long a sent transaction may stay unmined before it is re-sent (same nonce) with
    /// fees raised by at least 12.5%.
    pub bump_after: Duration,
    /// Fee bumps before giving up with [`L1Error::Stuck`].
    pub max_fee_bumps: u32,
    /// Never offer more than this max fee per gas (wei).
    pub max_fee_per_gas_cap: u128,
    /// Lower bound of the priority fee (wei); the node's suggestion is used when higher.
    pub min_priority_fee: u128,
    /// Added to the node's gas estimate, in percent.
    pub gas_margin_percent: u64,
    /// Receipt polling interval.
    pub poll_interval: Duration,
    /// Skip the pre-flight `eth_estimateGas` and send with this gas limit: a transaction that
    /// reverts is then mined (and paid for). Mostly for tests of the mined-revert path.
    pub fixed_gas_limit: Option<u64>,
    /// How far back (blocks) [`L1::verified_ranges`] and [`L1::committed_batches`] search the
    /// rollup's events.
    pub log_lookback_blocks: u64,
}

impl Default for RpcConfig {
    fn default() -> Self {
        RpcConfig {
            call_timeout: Duration::from_secs(15),
            bump_after: Duration::from_secs(60),
            max_fee_bumps: 5,
            max_fee_per_gas_cap: 500 * GWEI,
            min_priority_fee: GWEI,
            gas_margin_percent: 25,
            poll_interval: Duration::from_millis(500),
            fixed_gas_limit: None,
            // About two weeks of 12 s blocks: longer than any sensible downtime.
            log_lookback_blocks: 100_000,
        }
    }
}

/// The signing key; its `Debug` never shows it.
#[derive(Clone)]
struct Key(PrivateKeySigner);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<redacted key of {}>", self.0.address())
    }
}

/// L1 over JSON-RPC. One transaction in flight per client (sends are serialized).
pub struct RpcL1 {
    provider: RootProvider,
    /// `scheme://host:port` only: URLs often embed API keys.
    endpoint: String,
    key: Key,
    wallet: EthereumWallet,
    chain_id: u64,
    rollup: Address,
    cfg: RpcConfig,
    send_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RpcL1 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcL1")
            .field("endpoint", &self.endpoint)
            .field("key", &self.key)
            .field("chain_id", &self.chain_id)
            .field("rollup", &self.rollup)
            .field("cfg", &self.cfg)
            .finish()
    }
}

fn redact_url(url: &Url) -> String {
    match url.port() {
        Some(p) => format!("{}://{}:{p}", url.scheme(), url.host_str().unwrap_or("?")),
        None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("?")),
    }
}

/// Classifies a JSON-RPC/transport error: revert data → `Reverted`, retryable → `Transient`.
fn map_rpc(what: &'static str, e: TransportError) -> L1Error {
    match &e {
        RpcError::ErrorResp(p) => {
            if let Some(data) = p.as_revert_data() {
                return L1Error::Reverted(Revert::decode(&data));
            }
            let msg = p.message.to_lowercase();
            let transient = p.code == 429
                || p.code == -32005
                || [
                    "rate limit",
                    "timeout",
                    "timed out",
                    "header not found",
                    "try again",
                    "busy",
                ]
                .iter()
                .any(|m| msg.contains(m));
            if transient {
                L1Error::Transient(format!("{what}: {e}"))
            } else if msg.contains("execution reverted") || msg.contains("out of gas") {
                L1Error::Reverted(Revert::Other {
                    selector: None,
                    data: Vec::new(),
                })
            } else {
                L1Error::Rpc(format!("{what}: {e}"))
            }
        }
        RpcError::Transport(TransportErrorKind::NonRetryable(_)) => {
            L1Error::Rpc(format!("{what}: {e}"))
        }
        RpcError::Transport(TransportErrorKind::HttpError(h))
            if h.status < 500 && !h.is_rate_limit_err() =>
        {
            L1Error::Rpc(format!("{what}: {e}"))
        }
        RpcError::Transport(_) | RpcError::NullResp => L1Error::Transient(format!("{what}: {e}")),
        _ => L1Error::Rpc(format!("{what}: {e}")),
    }
}

fn install_crypto() {
    // reqwest is built without a default TLS provider (no aws-lc C build): use ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl RpcL1 {
    /// Connects to `rpc_url`, signing with `key` (hex private key: the caller reads it from
    /// the environment or a file; it is never logged), for the rollup at `rollup`.
    pub async fn new(rpc_url: &str, key: &str, rollup: Address, cfg: RpcConfig) -> Result<RpcL1> {
        install_crypto();
        let url: Url = rpc_url
            .parse()
            .map_err(|e| L1Error::Config(format!("bad L1 RPC URL: {e}")))?;
        let signer: PrivateKeySigner = key
            .trim()
            .parse()
            .map_err(|_| L1Error::Config("bad L1 signer key (expected 32 hex bytes)".into()))?;
        let endpoint = redact_url(&url);
        let provider = RootProvider::new_http(url);
        let mut l1 = RpcL1 {
            provider,
            endpoint,
            wallet: EthereumWallet::from(signer.clone()),
            key: Key(signer),
            chain_id: 0,
            rollup,
            cfg,
            send_lock: tokio::sync::Mutex::new(()),
        };
        l1.chain_id = l1.rpc("eth_chainId", l1.provider.get_chain_id()).await?;
        Ok(l1)
    }

    pub fn config(&self) -> &RpcConfig {
        &self.cfg
    }

    /// Runs one RPC call under the call timeout.
    async fn rpc<T>(
        &self,
        what: &'static str,
        fut: impl Future<Output = std::result::Result<T, TransportError>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.cfg.call_timeout, fut).await {
            Ok(res) => res.map_err(|e| map_rpc(what, e)),
            Err(_) => Err(L1Error::Timeout {
                what,
                after: self.cfg.call_timeout,
            }),
        }
    }

    fn request(&self, to: Option<Address>, data: Vec<u8>) -> TransactionRequest {
        let tx = TransactionRequest::default().with_from(self.key.0.address());
        match to {
            Some(to) => tx.with_to(to).with_input(Bytes::from(data)),
            None => tx.with_deploy_code(Bytes::from(data)),
        }
    }

    async fn view(&self, v: View) -> Result<[u8; 32]> {
        let tx = self.request(Some(self.rollup), v.calldata());
        let out = self
            .rpc("eth_call", self.provider.call(tx).into_future())
            .await?;
        View::word(&out)
    }

    async fn estimate(&self, tx: TransactionRequest) -> Result<u64> {
        self.rpc(
            "eth_estimateGas",
            self.provider.estimate_gas(tx).into_future(),
        )
        .await
    }

    /// Why a mined transaction reverted: re-run it with `eth_call` on the parent block's state.
    async fn mined_revert(&self, tx: TransactionRequest, receipt: &TransactionReceipt) -> Revert {
        let Some(block) = receipt.block_number else {
            return Revert::Other {
                selector: None,
                data: Vec::new(),
            };
        };
        let tx = tx.with_gas_limit(receipt.gas_used.max(21_000) * 2);
        let call = self
            .provider
            .call(tx)
            .block(BlockId::number(block.saturating_sub(1)));
        match self.rpc("eth_call", call.into_future()).await {
            Err(L1Error::Reverted(r)) => r,
            _ => Revert::Other {
                selector: None,
                data: Vec::new(),
            },
        }
    }

    /// Signs and sends, bumping fees while it stays unmined; returns the outcome and the
    /// created contract's address (deployments).
    async fn send(
        &self,
        to: Option<Address>,
        data: Vec<u8>,
    ) -> Result<(TxOutcome, Option<Address>)> {
        self.send_value(to, data, U256::ZERO).await
    }

    async fn send_value(
        &self,
        to: Option<Address>,
        data: Vec<u8>,
        value: U256,
    ) -> Result<(TxOutcome, Option<Address>)> {
        let _serial = self.send_lock.lock().await;
        let base = self.request(to, data).with_value(value);
        let gas = match self.cfg.fixed_gas_limit {
            Some(g) => g,
            None => {
                let est = self.estimate(base.clone()).await?;
                est + est * self.cfg.gas_margin_percent / 100
            }
        };
        let from = self.key.0.address();
        let nonce = self
            .rpc(
                "eth_getTransactionCount",
                self.provider
                    .get_transaction_count(from)
                    .pending()
                    .into_future(),
            )
            .await?;
        let fees = self
            .rpc("fee estimate", self.provider.estimate_eip1559_fees())
            .await?;
        let cap = self.cfg.max_fee_per_gas_cap;
        let mut prio = fees
            .max_priority_fee_per_gas
            .max(self.cfg.min_priority_fee)
            .min(cap);
        let mut max_fee = fees.max_fee_per_gas.max(prio).min(cap);

        let mut sent: Vec<B256> = Vec::new();
        for attempt in 0..=self.cfg.max_fee_bumps {
            let mut resend = true;
            if attempt > 0 {
                let (p, m) = (bump(prio).min(cap), bump(max_fee).min(cap));
                if m < bump(max_fee) && max_fee == cap {
                    resend = false; // at the cap: keep waiting for what was sent
                } else {
                    (prio, max_fee) = (p.min(m), m);
                }
            }
            if resend {
                let tx = base
                    .clone()
                    .with_nonce(nonce)
                    .with_gas_limit(gas)
                    .with_chain_id(self.chain_id)
                    .with_max_fee_per_gas(max_fee)
                    .with_max_priority_fee_per_gas(prio);
                let envelope = tx
                    .build(&self.wallet)
                    .await
                    .map_err(|e| L1Error::Config(format!("signing failed: {e}")))?;
                match self
                    .rpc(
                        "eth_sendRawTransaction",
                        self.provider.send_tx_envelope(envelope),
                    )
                    .await
                {
                    Ok(pending) => {
                        let hash = *pending.tx_hash();
                        tracing::debug!(%hash, nonce, attempt, max_fee, prio, "L1 tx sent");
                        sent.push(hash);
                    }
                    Err(e) if !sent.is_empty() && replacement_race(&e) => {
                        // An earlier version was mined meanwhile, or the node still prefers it.
                        tracing::debug!(nonce, attempt, "L1 fee bump not accepted: {e}");
                    }
                    Err(e) => return Err(e),
                }
            }
            let deadline = Instant::now() + self.cfg.bump_after;
            loop {
                for hash in sent.iter().rev() {
                    let receipt = self
                        .rpc(
                            "eth_getTransactionReceipt",
                            self.provider.get_transaction_receipt(*hash).into_future(),
                        )
                        .await?;
                    if let Some(r) = receipt {
                        return self.outcome(base.clone(), r).await;
                    }
                }
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(self.cfg.poll_interval).await;
            }
            tracing::warn!(
                nonce,
                attempt,
                "L1 tx not mined after {:?}: bumping fees",
                self.cfg.bump_after
            );
        }
        Err(L1Error::Stuck {
            nonce,
            bumps: self.cfg.max_fee_bumps,
            last_tx: sent.last().map(|h| h.to_string()).unwrap_or_default(),
        })
    }

    async fn outcome(
        &self,
        tx: TransactionRequest,
        r: TransactionReceipt,
    ) -> Result<(TxOutcome, Option<Address>)> {
        let status = if r.status() {
            TxStatus::Success
        } else {
            TxStatus::Reverted(self.mined_revert(tx, &r).await)
        };
        let out = TxOutcome {
            tx_hash: r.transaction_hash.0,
            gas_used: r.gas_used,
            block: r.block_number.unwrap_or_default(),
            status,
        };
        Ok((out, r.contract_address))
    }
}

/// +12.5% and one wei (replacement rules want ≥ 10% on both fee fields).
fn bump(x: u128) -> u128 {
    x + x / 8 + 1
}

fn replacement_race(e: &L1Error) -> bool {
    let msg = e.to_string().to_lowercase();
    [
        "nonce too low",
        "already known",
        "underpriced",
        "known transaction",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

/// Deploys one verifier per proof type, then the rollup; returns the rollup's address.
pub async fn deploy_rollup(
    rpc_url: &str,
    key: &str,
    sequencer: Address,
    genesis_root: Digest,
    proof_types: &[ProofType],
    verifier_kinds: &[VerifierKind],
) -> Result<Address> {
    deploy_rollup_with(
        RpcConfig::default(),
        rpc_url,
        key,
        sequencer,
        genesis_root,
        proof_types,
        verifier_kinds,
    )
    .await
}

/// [`deploy_rollup`] with an explicit sending policy.
pub async fn deploy_rollup_with(
    cfg: RpcConfig,
    rpc_url: &str,
    key: &str,
    sequencer: Address,
    genesis_root: Digest,
    proof_types: &[ProofType],
    verifier_kinds: &[VerifierKind],
) -> Result<Address> {
    let codes = contracts::check_deploy_args(proof_types, verifier_kinds)?;
    let deployer = RpcL1::new(rpc_url, key, Address::ZERO, cfg).await?;
    let mut verifiers = Vec::new();
    for code in codes {
        verifiers.push(deployer.deploy(code).await?);
    }
    let code = contracts::rollup_deploy_code(sequencer, genesis_root, proof_types, &verifiers);
    let rollup = deployer.deploy(code).await?;
    tracing::info!(%rollup, ?verifiers, "rollup deployed");
    Ok(rollup)
}

impl RpcL1 {
    /// Deploys `code` (creation code, constructor arguments appended) from this client's
    /// signer; returns the new contract's address.
    pub async fn deploy(&self, code: Vec<u8>) -> Result<Address> {
        let (out, addr) = self.send(None, code).await?;
        match (out.status, addr) {
            (TxStatus::Success, Some(a)) => Ok(a),
            (TxStatus::Reverted(r), _) => Err(L1Error::Reverted(r)),
            (TxStatus::Success, None) => Err(L1Error::Rpc(
                "deployment receipt has no contract address".into(),
            )),
        }
    }
}

#[async_trait]
impl L1 for RpcL1 {
    fn rollup_address(&self) -> Address {
        self.rollup
    }

    fn sender(&self) -> Address {
        self.key.0.address()
    }

    async fn last_committed_batch(&self) -> Result<u64> {
        self.view(View::LastCommitted)
            .await
            .map(contracts::word_u64)
    }

    async fn last_verified_batch(&self) -> Result<u64> {
        self.view(View::LastVerified).await.map(contracts::word_u64)
    }

    async fn state_root(&self, n: u64) -> Result<Digest> {
        self.view(View::StateRoot(n)).await.map(Digest)
    }

    async fn batch_commitment(&self, n: u64) -> Result<Digest> {
        self.view(View::Commitment(n)).await.map(Digest)
    }

    async fn commit_batch(
        &self,
        n: u64,
        new_root: Digest,
        commitment: Digest,
    ) -> Result<TxOutcome> {
        let data = contracts::commit_calldata(n, new_root, commitment);
        Ok(self.send(Some(self.rollup), data).await?.0)
    }

    async fn estimate_verify_gas(
        &self,
        first: u64,
        proofs: &[Vec<Vec<u8>>],
    ) -> Result<Result<u64, Revert>> {
        let tx = self.request(Some(self.rollup), contracts::verify_calldata(first, proofs));
        match self.estimate(tx).await {
            Ok(gas) => Ok(Ok(gas)),
            Err(L1Error::Reverted(r)) => Ok(Err(r)),
            Err(e) => Err(e),
        }
    }

    async fn verify_batches(&self, first: u64, proofs: &[Vec<Vec<u8>>]) -> Result<TxOutcome> {
        let data = contracts::verify_calldata(first, proofs);
        Ok(self.send(Some(self.rollup), data).await?.0)
    }

    async fn verified_ranges(&self, from_batch: u64) -> Result<Vec<VerifiedRange>> {
        use alloy::sol_types::SolEvent;
        let logs = self
            .rollup_logs(contracts::Rollup::BatchesVerified::SIGNATURE_HASH)
            .await?;
        let mut out = Vec::new();
        for log in logs {
            let Some((first, last)) = contracts::batches_verified(log.topics()) else {
                continue;
            };
            if last < from_batch || log.removed {
                continue;
            }
            let (hash, receipt) = self.receipt_of(&log, "BatchesVerified").await?;
            out.push(VerifiedRange {
                first,
                last,
                tx_hash: hash.0,
                gas_used: receipt.gas_used,
            });
        }
        Ok(out)
    }

    async fn committed_batches(&self, from_batch: u64) -> Result<Vec<CommittedBatch>> {
        use alloy::sol_types::SolEvent;
        let logs = self
            .rollup_logs(contracts::Rollup::BatchCommitted::SIGNATURE_HASH)
            .await?;
        let mut out = Vec::new();
        for log in logs {
            let Some(batch) = contracts::batch_committed(log.topics()) else {
                continue;
            };
            if batch < from_batch || log.removed {
                continue;
            }
            let (hash, receipt) = self.receipt_of(&log, "BatchCommitted").await?;
            out.push(CommittedBatch {
                batch,
                tx_hash: hash.0,
                gas_used: receipt.gas_used,
                block: receipt
                    .block_number
                    .or(log.block_number)
                    .unwrap_or_default(),
            });
        }
        Ok(out)
    }
}

impl RpcL1 {
    /// Chain id the node reported.
    pub fn chain_id(&self) -> u64 {
        self.chain_id
    }

    /// Sends a transaction to any contract with `value` wei, with the same fee, bump,
    /// pre-flight and receipt handling as the rollup's transactions.
    pub async fn transact(&self, to: Address, data: Vec<u8>, value: U256) -> Result<TxOutcome> {
        Ok(self.send_value(Some(to), data, value).await?.0)
    }

    /// `eth_call` of any contract from this client's signer: its output, or `Err(Reverted)`.
    pub async fn call(&self, to: Address, data: Vec<u8>) -> Result<Vec<u8>> {
        let tx = self.request(Some(to), data);
        let out = self
            .rpc("eth_call", self.provider.call(tx).into_future())
            .await?;
        Ok(out.to_vec())
    }

    /// Number and timestamp of the node's latest block.
    pub async fn head(&self) -> Result<BlockHead> {
        let block = self
            .rpc(
                "eth_getBlockByNumber",
                self.provider
                    .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
                    .into_future(),
            )
            .await?
            .ok_or_else(|| L1Error::Rpc("eth_getBlockByNumber: no latest block".into()))?;
        Ok(BlockHead {
            number: block.header.number,
            timestamp: block.header.timestamp,
        })
    }

    /// Number and timestamp of block `number`; `None` if the node has no such block yet.
    pub async fn block(&self, number: u64) -> Result<Option<BlockHead>> {
        let block = self
            .rpc(
                "eth_getBlockByNumber",
                self.provider
                    .get_block_by_number(alloy::eips::BlockNumberOrTag::Number(number))
                    .into_future(),
            )
            .await?;
        Ok(block.map(|b| BlockHead {
            number: b.header.number,
            timestamp: b.header.timestamp,
        }))
    }

    /// Balance of `who` in wei at the latest block.
    pub async fn balance(&self, who: Address) -> Result<U256> {
        self.rpc(
            "eth_getBalance",
            self.provider.get_balance(who).into_future(),
        )
        .await
    }

    /// Number of the node's latest block.
    pub async fn block_number(&self) -> Result<u64> {
        self.rpc(
            "eth_blockNumber",
            self.provider.get_block_number().into_future(),
        )
        .await
    }

    /// The logs `address` emitted in blocks `from..=to`, in chain order. The node's own
    /// refusal of a range (too many blocks or results) comes back as its error, unchanged.
    pub async fn logs(&self, address: Address, from: u64, to: u64) -> Result<Vec<LogEntry>> {
        let filter = Filter::new().address(address).from_block(from).to_block(to);
        let logs = self
            .rpc("eth_getLogs", self.provider.get_logs(&filter).into_future())
            .await?;
        logs.into_iter()
            .filter(|l| !l.removed)
            .map(|l| {
                let missing = |what| L1Error::Rpc(format!("eth_getLogs: a log without {what}"));
                Ok(LogEntry {
                    address: l.address(),
                    topics: l.topics().to_vec(),
                    data: l.data().data.to_vec(),
                    block: l.block_number.ok_or_else(|| missing("block number"))?,
                    tx_hash: l.transaction_hash.ok_or_else(|| missing("transaction"))?.0,
                    log_index: l.log_index.ok_or_else(|| missing("log index"))?,
                })
            })
            .collect()
    }

    /// The rollup's logs with event `signature` in the last `log_lookback_blocks` blocks.
    async fn rollup_logs(&self, signature: B256) -> Result<Vec<alloy::rpc::types::Log>> {
        let latest = self
            .rpc(
                "eth_blockNumber",
                self.provider.get_block_number().into_future(),
            )
            .await?;
        let filter = Filter::new()
            .address(self.rollup)
            .event_signature(signature)
            .from_block(latest.saturating_sub(self.cfg.log_lookback_blocks))
            .to_block(latest);
        self.rpc("eth_getLogs", self.provider.get_logs(&filter).into_future())
            .await
    }

    /// The transaction (hash and receipt) that emitted `log`, an `event` log.
    async fn receipt_of(
        &self,
        log: &alloy::rpc::types::Log,
        event: &str,
    ) -> Result<(B256, TransactionReceipt)> {
        let hash = log
            .transaction_hash
            .ok_or_else(|| L1Error::Rpc(format!("{event} log without a transaction")))?;
        let receipt = self
            .rpc(
                "eth_getTransactionReceipt",
                self.provider.get_transaction_receipt(hash).into_future(),
            )
            .await?
            .ok_or_else(|| L1Error::Rpc(format!("no receipt for {hash}")))?;
        Ok((hash, receipt))
    }
}
