//! The market's events, typed, each with where the chain recorded it.

use crate::contract::{ProofMarket, id_of, non_zero};
use crate::{Address, RequestId, U256};
use alloy::sol_types::SolEventInterface;
use proofmill_l1::LogEntry;

/// Where an event is on the chain: events are ordered by `(block, log_index)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LogPosition {
    pub block: u64,
    /// Position of the log in its block.
    pub log_index: u64,
    /// The transaction that emitted it.
    pub tx_hash: [u8; 32],
}

/// One event of the market contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MarketEvent {
    /// `ProofRequestSubmitted`: a request was posted and assigned to `network`.
    Submitted {
        at: LogPosition,
        id: RequestId,
        network: Address,
        protocol_version: String,
        inputs_url: String,
        inputs_digest: [u8; 32],
        /// Chain time by which the proof must be posted.
        deadline: u64,
        max_reward: U256,
    },
    /// `ProofRequestAcknowledged`: the assigned network accepted or refused.
    Acknowledged {
        at: LogPosition,
        id: RequestId,
        network: Address,
        accepted: bool,
    },
    /// `ProofRequestProven`: the network posted its proof.
    Proven {
        at: LogPosition,
        id: RequestId,
        network: Address,
        proof: Vec<u8>,
        requested_reward: U256,
    },
    /// `ProofValidationResult`: the submitter's verdict; `reward` is what the network earned.
    ValidationResult {
        at: LogPosition,
        id: RequestId,
        network: Address,
        valid: bool,
        reward: U256,
    },
    /// `ProofRequestTimedOut`: closed after a missed acknowledgement or deadline.
    TimedOut {
        at: LogPosition,
        id: RequestId,
        network: Address,
    },
    /// `ProofValidationTimedOut`: the submitter did not answer the proof within the market's
    /// validation timeout; the network earned `reward` wei.
    ValidationTimedOut {
        at: LogPosition,
        id: RequestId,
        network: Address,
        reward: U256,
    },
    /// `RewardClaimed`: `network` was paid `amount` wei.
    RewardClaimed {
        at: LogPosition,
        network: Address,
        amount: U256,
    },
    /// `ProvingNetworkUpdated`: registered, or its `active` flag changed.
    NetworkUpdated {
        at: LogPosition,
        network: Address,
        active: bool,
    },
    /// `PreferredNetworkUpdated` (`None`: round-robin).
    PreferredNetworkUpdated {
        at: LogPosition,
        network: Option<Address>,
    },
}

impl MarketEvent {
    pub fn at(&self) -> &LogPosition {
        use MarketEvent::*;
        match self {
            Submitted { at, .. }
            | Acknowledged { at, .. }
            | Proven { at, .. }
            | ValidationResult { at, .. }
            | TimedOut { at, .. }
            | ValidationTimedOut { at, .. }
            | RewardClaimed { at, .. }
            | NetworkUpdated { at, .. }
            | PreferredNetworkUpdated { at, .. } => at,
        }
    }

    /// The request this event is about, if it is about one.
    pub fn request_id(&self) -> Option<RequestId> {
        use MarketEvent::*;
        match self {
            Submitted { id, .. }
            | Acknowledged { id, .. }
            | Proven { id, .. }
            | ValidationResult { id, .. }
            | TimedOut { id, .. }
            | ValidationTimedOut { id, .. } => Some(*id),
            RewardClaimed { .. } | NetworkUpdated { .. } | PreferredNetworkUpdated { .. } => None,
        }
    }

    /// The proving network the event concerns (`None` only for a preferred network reset).
    pub fn network(&self) -> Option<Address> {
        use MarketEvent::*;
        match self {
            Submitted { network, .. }
            | Acknowledged { network, .. }
            | Proven { network, .. }
            | ValidationResult { network, .. }
            | TimedOut { network, .. }
            | ValidationTimedOut { network, .. }
            | RewardClaimed { network, .. }
            | NetworkUpdated { network, .. } => Some(*network),
            PreferredNetworkUpdated { network, .. } => *network,
        }
    }

    /// Decodes a log of the market; `None` for a log it does not know.
    pub fn decode(log: &LogEntry) -> Option<MarketEvent> {
        use ProofMarket::ProofMarketEvents as E;
        let at = LogPosition {
            block: log.block,
            log_index: log.log_index,
            tx_hash: log.tx_hash,
        };
        let event = match E::decode_raw_log(&log.topics, &log.data).ok()? {
            E::ProofRequestSubmitted(e) => MarketEvent::Submitted {
                at,
                id: id_of(e.chainId, e.batchNumber),
                network: e.network,
                protocol_version: e.protocolVersion,
                inputs_url: e.inputsUrl,
                inputs_digest: e.inputsDigest.0,
                deadline: e.deadline,
                max_reward: e.maxReward,
            },
            E::ProofRequestAcknowledged(e) => MarketEvent::Acknowledged {
                at,
                id: id_of(e.chainId, e.batchNumber),
                network: e.network,
                accepted: e.accepted,
            },
            E::ProofRequestProven(e) => MarketEvent::Proven {
                at,
                id: id_of(e.chainId, e.batchNumber),
                network: e.network,
                proof: e.proof.to_vec(),
                requested_reward: e.requestedReward,
            },
            E::ProofValidationResult(e) => MarketEvent::ValidationResult {
                at,
                id: id_of(e.chainId, e.batchNumber),
                network: e.network,
                valid: e.valid,
                reward: e.reward,
            },
            E::ProofRequestTimedOut(e) => MarketEvent::TimedOut {
                at,
                id: id_of(e.chainId, e.batchNumber),
                network: e.network,
            },
            E::ProofValidationTimedOut(e) => MarketEvent::ValidationTimedOut {
                at,
                id: id_of(e.chainId, e.batchNumber),
                network: e.network,
                reward: e.reward,
            },
            E::RewardClaimed(e) => MarketEvent::RewardClaimed {
                at,
                network: e.network,
                amount: e.amount,
            },
            E::ProvingNetworkUpdated(e) => MarketEvent::NetworkUpdated {
                at,
                network: e.network,
                active: e.active,
            },
            E::PreferredNetworkUpdated(e) => MarketEvent::PreferredNetworkUpdated {
                at,
                network: non_zero(e.network),
            },
        };
        Some(event)
    }
}
