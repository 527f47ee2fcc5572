//! [`MarketL1`] over any chain access: JSON-RPC (`RpcL1`) or the embedded revm (`RevmL1`).

use crate::contract::{self, ProofMarket, non_zero, returns};
use crate::error::{MarketError, MarketRevert, Result, is_range_refusal};
use crate::event::MarketEvent;
use crate::{
    Address, BlockHead, MarketEvents, MarketL1, MarketSettings, MarketTx, ProvingNetwork, Request,
    RequestId, RequestParams, U256,
};
use alloy::primitives::Bytes;
use alloy::sol_types::SolCall;
use async_trait::async_trait;
use proofmill_l1::{L1Error, LogEntry, RevmL1, RpcConfig, RpcL1, TxOutcome, TxStatus};

type L1Result<T> = std::result::Result<T, L1Error>;

/// What the market client needs of a chain: send from one sender (with a value), call, deploy,
/// read logs, the head and balances.
#[async_trait]
pub trait ChainAccess: Send + Sync {
    /// Address transactions are sent from.
    fn sender(&self) -> Address;
    /// A transaction to `to` carrying `value` wei; a call that would revert is
    /// `Err(L1Error::Reverted)` and is not sent.
    async fn transact(&self, to: Address, data: Vec<u8>, value: U256) -> L1Result<TxOutcome>;
    async fn call(&self, to: Address, data: Vec<u8>) -> L1Result<Vec<u8>>;
    async fn deploy(&self, code: Vec<u8>) -> L1Result<Address>;
    /// The logs `address` emitted in blocks `from..=to`, in chain order.
    async fn logs(&self, address: Address, from: u64, to: u64) -> L1Result<Vec<LogEntry>>;
    async fn head(&self) -> L1Result<BlockHead>;
    /// Block `number`; `None` if the chain has no such block yet.
    async fn block(&self, number: u64) -> L1Result<Option<BlockHead>>;
    async fn balance(&self, who: Address) -> L1Result<U256>;
}

#[async_trait]
impl ChainAccess for RpcL1 {
    fn sender(&self) -> Address {
        proofmill_l1::L1::sender(self)
    }
    async fn transact(&self, to: Address, data: Vec<u8>, value: U256) -> L1Result<TxOutcome> {
        RpcL1::transact(self, to, data, value).await
    }
    async fn call(&self, to: Address, data: Vec<u8>) -> L1Result<Vec<u8>> {
        RpcL1::call(self, to, data).await
    }
    async fn deploy(&self, code: Vec<u8>) -> L1Result<Address> {
        RpcL1::deploy(self, code).await
    }
    async fn logs(&self, address: Address, from: u64, to: u64) -> L1Result<Vec<LogEntry>> {
        RpcL1::logs(self, address, from, to).await
    }
    async fn head(&self) -> L1Result<BlockHead> {
        RpcL1::head(self).await
    }
    async fn balance(&self, who: Address) -> L1Result<U256> {
        RpcL1::balance(self, who).await
    }
    async fn block(&self, number: u64) -> L1Result<Option<BlockHead>> {
        RpcL1::block(self, number).await
    }
}

#[async_trait]
impl ChainAccess for RevmL1 {
    fn sender(&self) -> Address {
        proofmill_l1::L1::sender(self)
    }
    async fn transact(&self, to: Address, data: Vec<u8>, value: U256) -> L1Result<TxOutcome> {
        RevmL1::transact(self, to, data, value)
    }
    async fn call(&self, to: Address, data: Vec<u8>) -> L1Result<Vec<u8>> {
        RevmL1::call(self, to, data)
    }
    async fn deploy(&self, code: Vec<u8>) -> L1Result<Address> {
        RevmL1::deploy(self, code)
    }
    async fn logs(&self, address: Address, from: u64, to: u64) -> L1Result<Vec<LogEntry>> {
        Ok(RevmL1::logs(self, address, from, to))
    }
    async fn head(&self) -> L1Result<BlockHead> {
        Ok(RevmL1::head(self))
    }
    async fn balance(&self, who: Address) -> L1Result<U256> {
        Ok(RevmL1::balance(self, who))
    }
    async fn block(&self, number: u64) -> L1Result<Option<BlockHead>> {
        Ok(RevmL1::block(self, number))
    }
}

/// Deploys a market with these settings from `chain`'s sender; returns its address. Settings
/// the contract rejects are refused with `BadConfig`.
pub async fn deploy_market(chain: &dyn ChainAccess, settings: &MarketSettings) -> Result<Address> {
    let address = chain.deploy(contract::deploy_code(settings)).await?;
    tracing::info!(market = %address, ?settings, "proof market deployed");
    Ok(address)
}

/// The market contract at an address, through a chain access. See [`RpcMarket`] and
/// [`RevmMarket`].
pub struct MarketClient<A> {
    chain: A,
    market: Address,
}

/// The market over JSON-RPC: one signer per client, EIP-1559 fees with bumps, receipts
/// checked (everything `proofmill_l1::RpcL1` does for the rollup). Sends are serialized per
/// client, and nonces are taken from the node: give each key one client.
pub type RpcMarket = MarketClient<RpcL1>;
/// The market on the embedded revm L1. Clients for several senders share one chain
/// ([`RevmMarket::as_sender`]). Every transaction is a block `EMBEDDED_BLOCK_TIME` (12 s)
/// after the last; `RevmL1::advance_time` moves the clock further (anvil's dev accounts are
/// funded at genesis, so they can pay escrow).
pub type RevmMarket = MarketClient<RevmL1>;

impl<A> std::fmt::Debug for MarketClient<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketClient")
            .field("market", &self.market)
            .finish_non_exhaustive()
    }
}

impl<A: ChainAccess> MarketClient<A> {
    pub fn new(chain: A, market: Address) -> Self {
        MarketClient { chain, market }
    }

    /// The chain access underneath (e.g. to move the embedded chain's clock).
    pub fn chain(&self) -> &A {
        &self.chain
    }

    async fn send(&self, call: impl SolCall, value: U256) -> Result<MarketTx> {
        let out = self
            .chain
            .transact(self.market, call.abi_encode(), value)
            .await?;
        let tx = MarketTx {
            tx_hash: out.tx_hash,
            gas_used: out.gas_used,
            block: out.block,
        };
        match out.status {
            TxStatus::Success => Ok(tx),
            TxStatus::Reverted(r) => Err(MarketError::Refused {
                revert: MarketRevert::of_l1(&r),
                mined: Some(Box::new(tx)),
            }),
        }
    }

    async fn view<C: SolCall>(&self, call: C) -> Result<C::Return> {
        let out = self.chain.call(self.market, call.abi_encode()).await?;
        returns::<C>(&out)
    }
}

impl RpcMarket {
    /// Connects to the market at `market` through `rpc_url`, signing with `key` (hex private
    /// key; never logged).
    pub async fn connect(
        rpc_url: &str,
        key: &str,
        market: Address,
        cfg: RpcConfig,
    ) -> Result<Self> {
        Ok(MarketClient::new(
            RpcL1::new(rpc_url, key, market, cfg).await?,
            market,
        ))
    }
}

impl RevmMarket {
    /// A client of the same market on the same chain that sends from `sender`.
    pub fn as_sender(&self, sender: Address) -> RevmMarket {
        MarketClient::new(self.chain.with_sender(sender), self.market)
    }
}

#[async_trait]
impl<A: ChainAccess> MarketEvents for MarketClient<A> {
    async fn head(&self) -> Result<BlockHead> {
        Ok(self.chain.head().await?)
    }

    async fn block(&self, number: u64) -> Result<BlockHead> {
        self.chain.block(number).await?.ok_or_else(|| {
            MarketError::L1(proofmill_l1::L1Error::Transient(format!(
                "block {number} is not on the node yet"
            )))
        })
    }

    async fn events(&self, from_block: u64, to_block: u64) -> Result<Vec<MarketEvent>> {
        if from_block > to_block {
            return Ok(Vec::new());
        }
        let logs = match self.chain.logs(self.market, from_block, to_block).await {
            Ok(logs) => logs,
            Err(e) if is_range_refusal(&e) => {
                return Err(MarketError::RangeTooLarge {
                    from: from_block,
                    to: to_block,
                    msg: e.to_string(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let mut events: Vec<MarketEvent> = logs
            .iter()
            .filter_map(|log| {
                let event = MarketEvent::decode(log);
                if event.is_none() {
                    tracing::warn!(
                        block = log.block,
                        log_index = log.log_index,
                        "a market log this client does not know; skipped"
                    );
                }
                event
            })
            .collect();
        events.sort_by_key(|e| (e.at().block, e.at().log_index));
        Ok(events)
    }
}

#[async_trait]
impl<A: ChainAccess> MarketL1 for MarketClient<A> {
    fn market_address(&self) -> Address {
        self.market
    }

    fn sender(&self) -> Address {
        self.chain.sender()
    }

    async fn submit_proof_request(
        &self,
        id: RequestId,
        params: &RequestParams,
        value: U256,
    ) -> Result<MarketTx> {
        let call = ProofMarket::submitProofRequestCall {
            id: id.into(),
            params: params.into(),
        };
        self.send(call, value).await
    }

    async fn submit_validation_result(&self, id: RequestId, valid: bool) -> Result<MarketTx> {
        let call = ProofMarket::submitProofValidationResultCall {
            id: id.into(),
            valid,
        };
        self.send(call, U256::ZERO).await
    }

    async fn acknowledge(&self, id: RequestId, accept: bool) -> Result<MarketTx> {
        let call = ProofMarket::acknowledgeProofRequestCall {
            id: id.into(),
            accept,
        };
        self.send(call, U256::ZERO).await
    }

    async fn submit_proof(
        &self,
        id: RequestId,
        proof: &[u8],
        requested_reward: U256,
    ) -> Result<MarketTx> {
        let call = ProofMarket::submitProofCall {
            id: id.into(),
            proof: Bytes::copy_from_slice(proof),
            requestedReward: requested_reward,
        };
        self.send(call, U256::ZERO).await
    }

    async fn claim_reward(&self) -> Result<MarketTx> {
        self.send(ProofMarket::claimRewardCall {}, U256::ZERO).await
    }

    async fn close_timed_out_request(&self, id: RequestId) -> Result<MarketTx> {
        let call = ProofMarket::closeTimedOutRequestCall { id: id.into() };
        self.send(call, U256::ZERO).await
    }

    async fn close_unvalidated_request(&self, id: RequestId) -> Result<MarketTx> {
        let call = ProofMarket::closeUnvalidatedRequestCall { id: id.into() };
        self.send(call, U256::ZERO).await
    }

    async fn update_proving_network(&self, network: Address, active: bool) -> Result<MarketTx> {
        let call = ProofMarket::updateProvingNetworkCall {
            network,
            isActive: active,
        };
        self.send(call, U256::ZERO).await
    }

    async fn update_preferred_network(&self, network: Option<Address>) -> Result<MarketTx> {
        let call = ProofMarket::updatePreferredProvingNetworkCall {
            network: network.unwrap_or(Address::ZERO),
        };
        self.send(call, U256::ZERO).await
    }

    async fn request(&self, id: RequestId) -> Result<Option<Request>> {
        let r = self
            .view(ProofMarket::getRequestCall { id: id.into() })
            .await?;
        Ok(contract::request_of(r))
    }

    async fn earned(&self, network: Address) -> Result<U256> {
        self.view(ProofMarket::earnedCall(network)).await
    }

    async fn next_network(&self) -> Result<Address> {
        self.view(ProofMarket::nextNetworkCall {}).await
    }

    async fn proving_networks(&self) -> Result<Vec<ProvingNetwork>> {
        let addresses = self.view(ProofMarket::provingNetworksCall {}).await?;
        let mut out = Vec::with_capacity(addresses.len());
        for address in addresses {
            let active = self.view(ProofMarket::activeCall(address)).await?;
            out.push(ProvingNetwork { address, active });
        }
        Ok(out)
    }

    async fn preferred_network(&self) -> Result<Option<Address>> {
        Ok(non_zero(
            self.view(ProofMarket::preferredNetworkCall {}).await?,
        ))
    }

    async fn settings(&self) -> Result<MarketSettings> {
        Ok(MarketSettings {
            admin: self.view(ProofMarket::adminCall {}).await?,
            submitter: self.view(ProofMarket::submitterCall {}).await?,
            ack_timeout: self.view(ProofMarket::ackTimeoutCall {}).await?,
            max_timeout_after: self.view(ProofMarket::maxTimeoutAfterCall {}).await?,
            validation_timeout: self.view(ProofMarket::validationTimeoutCall {}).await?,
        })
    }

    async fn balance(&self, who: Address) -> Result<U256> {
        Ok(self.chain.balance(who).await?)
    }
}
