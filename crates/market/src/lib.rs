//! The proof market's L1 access: everything the rollup's proof manager and a proving network
//! (and the market's admin) do with the `ProofMarket` contract (`contracts/ProofMarket.sol`,
//! compiled artifact in `contracts/out/`).
//!
//! * [`MarketL1`]: every contract call and read, each call's typed outcome ([`MarketTx`]) or
//!   its typed refusal ([`MarketRevert`], the contract's custom errors), told apart from
//!   transport errors by [`MarketError::is_transient`].
//! * [`MarketClient`]: the implementation over any [`ChainAccess`]: [`RpcMarket`] (any
//!   JSON-RPC node through `proofmill_l1::RpcL1`, one signer per client) and [`RevmMarket`]
//!   (the embedded revm L1, any sender, with a clock that tests move ahead).
//! * [`MarketEvents`] and [`MarketWatcher`]: the contract's events, typed ([`MarketEvent`]),
//!   read from a last processed block after N confirmations, with the block range halved when
//!   the node refuses a large query.
//! * [`MarketInputs`]: what a request's inputs URL points at (a batch's statement and input).

mod client;
mod contract;
mod error;
mod event;
mod inputs;
mod watcher;

use async_trait::async_trait;

pub use alloy::primitives::{Address, U256};
pub use client::{ChainAccess, MarketClient, RevmMarket, RpcMarket, deploy_market};
pub use contract::ProofMarket;
pub use error::{MarketError, MarketRevert, Result, is_range_refusal};
pub use event::{LogPosition, MarketEvent};
pub use inputs::{InputsError, MarketInputs};
pub use proofmill_l1::{BlockHead, RevmL1, RpcConfig, RpcL1};
pub use watcher::{MarketWatcher, WatchBatch, WatcherConfig};

/// `0x` and the lowercase hex of a 32-byte hash (a transaction's, a digest), as the rollup's
/// and the networks' records keep them.
pub fn hex_hash(hash: &[u8; 32]) -> String {
    let mut s = String::with_capacity(66);
    s.push_str("0x");
    for b in hash {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A proof request's key: the rollup's chain id and the batch number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId {
    pub chain_id: u64,
    pub batch: u64,
}

impl RequestId {
    pub fn new(chain_id: u64, batch: u64) -> Self {
        RequestId { chain_id, batch }
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chain {} batch {}", self.chain_id, self.batch)
    }
}

/// What a proof request asks (the contract's `RequestParams`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestParams {
    pub protocol_version: String,
    /// Where anyone can read the proof inputs (e.g. an https URL of a public bucket).
    pub inputs_url: String,
    /// sha256 of the inputs, checked by the network after fetching them.
    pub inputs_digest: [u8; 32],
    /// Seconds from submission to the proof deadline (`1..=max_timeout_after`).
    pub timeout_after: u64,
    /// Wei held in escrow: the request must carry exactly this value.
    pub max_reward: U256,
}

/// A request's status on L1 (`ProofMarket.Status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestStatus {
    /// Assigned, waiting for the network's acknowledgement.
    PendingAcknowledgement,
    /// Accepted by its network.
    Committed,
    /// Refused by its network (escrow returned).
    Refused,
    /// A proof was posted, not yet validated.
    Proven,
    /// The proof was valid: the network earned its reward.
    Validated,
    /// The proof was invalid: nothing earned, escrow returned.
    ValidationFailed,
    /// Closed after the acknowledgement timeout or the deadline passed (escrow returned).
    TimedOut,
    /// The submitter did not answer the proof within the validation timeout: the network
    /// earned its reward.
    ValidationTimedOut,
    /// A status this client does not know (a newer contract).
    Unknown(u8),
}

impl RequestStatus {
    /// `None` for the contract's `Status.None` (no such request).
    pub fn from_code(code: u8) -> Option<RequestStatus> {
        use RequestStatus::*;
        Some(match code {
            0 => return None,
            1 => PendingAcknowledgement,
            2 => Committed,
            3 => Refused,
            4 => Proven,
            5 => Validated,
            6 => ValidationFailed,
            7 => TimedOut,
            8 => ValidationTimedOut,
            other => Unknown(other),
        })
    }
}

/// A request as the contract stores it (`getRequest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The network it is assigned to.
    pub network: Address,
    pub status: RequestStatus,
    /// Chain time (block timestamp) of the submission.
    pub submitted_at: u64,
    /// Chain time by which the proof must be posted.
    pub deadline: u64,
    /// Chain time by which the submitter must answer the posted proof (0 before one).
    pub validation_deadline: u64,
    pub max_reward: U256,
    /// What the network asked when it posted its proof (0 before).
    pub reward: U256,
    pub inputs_digest: [u8; 32],
    /// keccak256 of the posted proof (zero before).
    pub proof_hash: [u8; 32],
}

/// The market's fixed settings (constructor arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketSettings {
    pub admin: Address,
    pub submitter: Address,
    /// Seconds a network has to acknowledge a request.
    pub ack_timeout: u64,
    /// Longest `timeout_after` a request may ask.
    pub max_timeout_after: u64,
    /// Seconds the submitter has to answer a posted proof; after that anyone may close the
    /// request and the network earns its reward.
    pub validation_timeout: u64,
}

/// A registered proving network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProvingNetwork {
    pub address: Address,
    pub active: bool,
}

/// A transaction the market accepted, as mined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarketTx {
    pub tx_hash: [u8; 32],
    pub gas_used: u64,
    pub block: u64,
}

/// The contract's events, read by block range: what a watcher needs.
#[async_trait]
pub trait MarketEvents: Send + Sync {
    /// The chain's latest block.
    async fn head(&self) -> Result<BlockHead>;
    /// Block `number` (its timestamp: the chain's time once that block is processed).
    async fn block(&self, number: u64) -> Result<BlockHead>;
    /// The market's events in blocks `from_block..=to_block`, in chain order. A node that
    /// refuses the range (too many blocks or results) is [`MarketError::RangeTooLarge`].
    async fn events(&self, from_block: u64, to_block: u64) -> Result<Vec<MarketEvent>>;
}

/// Every `ProofMarket` call and read. Calls are sent from [`MarketL1::sender`]; each returns
/// the mined transaction or [`MarketError::Refused`] with the contract's custom error (checked
/// before sending: a refused call changes nothing and costs nothing).
#[async_trait]
pub trait MarketL1: MarketEvents {
    /// The market contract.
    fn market_address(&self) -> Address;
    /// Address calls are sent from.
    fn sender(&self) -> Address;

    // The rollup's submitter.

    /// Posts a request with `value` wei of escrow (the contract wants `params.max_reward`).
    async fn submit_proof_request(
        &self,
        id: RequestId,
        params: &RequestParams,
        value: U256,
    ) -> Result<MarketTx>;
    /// Posts the result of checking the request's proof: valid earns the network its reward.
    async fn submit_validation_result(&self, id: RequestId, valid: bool) -> Result<MarketTx>;

    // The assigned proving network.

    async fn acknowledge(&self, id: RequestId, accept: bool) -> Result<MarketTx>;
    async fn submit_proof(
        &self,
        id: RequestId,
        proof: &[u8],
        requested_reward: U256,
    ) -> Result<MarketTx>;
    /// Pays the sender everything its validated proofs earned ([`MarketL1::earned`]).
    async fn claim_reward(&self) -> Result<MarketTx>;

    // Anyone.

    /// Closes a request not acknowledged in time or not proven by its deadline; its escrow
    /// goes back to the submitter (`closeTimedOutRequest`).
    async fn close_timed_out_request(&self, id: RequestId) -> Result<MarketTx>;
    /// Closes a proven request the submitter did not answer within the validation timeout:
    /// the network earns its reward (`closeUnvalidatedRequest`).
    async fn close_unvalidated_request(&self, id: RequestId) -> Result<MarketTx>;

    // The admin.

    /// Registers `network`, or changes whether it takes requests.
    async fn update_proving_network(&self, network: Address, active: bool) -> Result<MarketTx>;
    /// Every request goes to `network` while it is active; `None`: round-robin.
    async fn update_preferred_network(&self, network: Option<Address>) -> Result<MarketTx>;

    // Reads.

    /// The request, `None` if there is none with this id.
    async fn request(&self, id: RequestId) -> Result<Option<Request>>;
    /// What `network` has earned and not claimed yet, in wei.
    async fn earned(&self, network: Address) -> Result<U256>;
    /// The network the next request goes to (refused with `NoActiveNetwork` if none).
    async fn next_network(&self) -> Result<Address>;
    /// Every registered network, in registration order.
    async fn proving_networks(&self) -> Result<Vec<ProvingNetwork>>;
    async fn preferred_network(&self) -> Result<Option<Address>>;
    async fn settings(&self) -> Result<MarketSettings>;
    /// Balance of any account in wei (the escrow is the market's own balance).
    async fn balance(&self, who: Address) -> Result<U256>;
}
