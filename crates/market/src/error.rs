//! What can go wrong talking to the market: its refusals (the contract's custom errors,
//! decoded by selector, never by message), a node refusing a log range, and the rest of the
//! L1 errors.

use crate::contract::{ProofMarket, id_of};
use crate::{Address, MarketTx, RequestId, RequestStatus, U256};
use alloy::sol_types::SolInterface;
use proofmill_l1::{L1Error, Revert};

pub type Result<T, E = MarketError> = std::result::Result<T, E>;

/// Why the market contract refused a call: its custom errors, one variant each.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MarketRevert {
    #[error("NotAdmin({caller})")]
    NotAdmin { caller: Address },
    #[error("NotSubmitter({caller})")]
    NotSubmitter { caller: Address },
    #[error("NotAssignedNetwork(caller {caller}, assigned {assigned})")]
    NotAssignedNetwork { caller: Address, assigned: Address },
    #[error("UnknownRequest({0})")]
    UnknownRequest(RequestId),
    #[error("RequestExists({0})")]
    RequestExists(RequestId),
    /// `status` is `None` for the contract's `Status.None`.
    #[error("WrongStatus({id}, {status:?})")]
    WrongStatus {
        id: RequestId,
        status: Option<RequestStatus>,
    },
    #[error("ProofAlreadySubmitted({0})")]
    ProofAlreadySubmitted(RequestId),
    #[error("AlreadyValidated({0})")]
    AlreadyValidated(RequestId),
    #[error("AcknowledgementTooLate({id}, ack deadline {ack_deadline})")]
    AcknowledgementTooLate { id: RequestId, ack_deadline: u64 },
    #[error("ProofTooLate({id}, deadline {deadline})")]
    ProofTooLate { id: RequestId, deadline: u64 },
    #[error("ValidationTooLate({id}, validation deadline {validation_deadline})")]
    ValidationTooLate {
        id: RequestId,
        validation_deadline: u64,
    },
    #[error("NotTimedOut({0})")]
    NotTimedOut(RequestId),
    #[error("RewardOverCap(requested {requested}, max {max_reward})")]
    RewardOverCap { requested: U256, max_reward: U256 },
    #[error("EscrowMismatch(sent {sent}, max reward {max_reward})")]
    EscrowMismatch { sent: U256, max_reward: U256 },
    #[error("BadTimeout({timeout_after} s, max {max_timeout_after} s)")]
    BadTimeout {
        timeout_after: u64,
        max_timeout_after: u64,
    },
    #[error("NoActiveNetwork")]
    NoActiveNetwork,
    #[error("UnknownNetwork({0})")]
    UnknownNetwork(Address),
    #[error("NothingToClaim({caller})")]
    NothingToClaim { caller: Address },
    #[error("TransferFailed({amount} wei to {to})")]
    TransferFailed { to: Address, amount: U256 },
    #[error("BadConfig")]
    BadConfig,
    /// Anything else: another selector, `Error(string)`, a panic, or no data (out of gas).
    #[error("revert {}({} bytes)", selector.map(|s| format!("0x{} ", hex4(&s))).unwrap_or_default(), data.len())]
    Other {
        selector: Option<[u8; 4]>,
        data: Vec<u8>,
    },
}

fn hex4(s: &[u8; 4]) -> String {
    s.iter().map(|b| format!("{b:02x}")).collect()
}

impl MarketRevert {
    /// Decodes the market's revert data.
    pub fn decode(data: &[u8]) -> MarketRevert {
        use MarketRevert as R;
        use ProofMarket::ProofMarketErrors as E;
        match E::abi_decode(data) {
            Ok(E::NotAdmin(e)) => R::NotAdmin { caller: e.caller },
            Ok(E::NotSubmitter(e)) => R::NotSubmitter { caller: e.caller },
            Ok(E::NotAssignedNetwork(e)) => R::NotAssignedNetwork {
                caller: e.caller,
                assigned: e.assigned,
            },
            Ok(E::UnknownRequest(e)) => R::UnknownRequest(id_of(e.chainId, e.batchNumber)),
            Ok(E::RequestExists(e)) => R::RequestExists(id_of(e.chainId, e.batchNumber)),
            Ok(E::WrongStatus(e)) => R::WrongStatus {
                id: id_of(e.chainId, e.batchNumber),
                status: RequestStatus::from_code(e.status),
            },
            Ok(E::ProofAlreadySubmitted(e)) => {
                R::ProofAlreadySubmitted(id_of(e.chainId, e.batchNumber))
            }
            Ok(E::AlreadyValidated(e)) => R::AlreadyValidated(id_of(e.chainId, e.batchNumber)),
            Ok(E::AcknowledgementTooLate(e)) => R::AcknowledgementTooLate {
                id: id_of(e.chainId, e.batchNumber),
                ack_deadline: e.ackDeadline,
            },
            Ok(E::ProofTooLate(e)) => R::ProofTooLate {
                id: id_of(e.chainId, e.batchNumber),
                deadline: e.deadline,
            },
            Ok(E::ValidationTooLate(e)) => R::ValidationTooLate {
                id: id_of(e.chainId, e.batchNumber),
                validation_deadline: e.validationDeadline,
            },
            Ok(E::NotTimedOut(e)) => R::NotTimedOut(id_of(e.chainId, e.batchNumber)),
            Ok(E::RewardOverCap(e)) => R::RewardOverCap {
                requested: e.requested,
                max_reward: e.maxReward,
            },
            Ok(E::EscrowMismatch(e)) => R::EscrowMismatch {
                sent: e.sent,
                max_reward: e.maxReward,
            },
            Ok(E::BadTimeout(e)) => R::BadTimeout {
                timeout_after: e.timeoutAfter,
                max_timeout_after: e.maxTimeoutAfter,
            },
            Ok(E::NoActiveNetwork(_)) => R::NoActiveNetwork,
            Ok(E::UnknownNetwork(e)) => R::UnknownNetwork(e.network),
            Ok(E::NothingToClaim(e)) => R::NothingToClaim { caller: e.caller },
            Ok(E::TransferFailed(e)) => R::TransferFailed {
                to: e.to,
                amount: e.amount,
            },
            Ok(E::BadConfig(_)) => R::BadConfig,
            Err(_) => R::Other {
                selector: data.get(..4).map(|s| s.try_into().expect("4 bytes")),
                data: data.to_vec(),
            },
        }
    }

    /// The market's refusal carried by an L1 revert. `proofmill_l1` decodes reverts with the
    /// rollup's errors first; a market revert is one of its `Other`s, with the data intact.
    pub(crate) fn of_l1(revert: &Revert) -> MarketRevert {
        match revert {
            Revert::Other { data, .. } => MarketRevert::decode(data),
            // Only the rollup's own selectors decode as these (their data is not kept); no
            // market error has one of them (tested below).
            _ => MarketRevert::Other {
                selector: None,
                data: Vec::new(),
            },
        }
    }
}

/// Errors of [`MarketL1`](crate::MarketL1) and [`MarketWatcher`](crate::MarketWatcher).
#[derive(Debug, thiserror::Error)]
pub enum MarketError {
    /// The contract refused the call. `mined: None`: found by the pre-flight check, nothing
    /// was sent and nothing changed. `Some`: the transaction was mined and reverted (the
    /// state moved between the check and the block): gas was spent, nothing else changed.
    /// (Boxed: the rare case should not make every `Result` larger.)
    #[error("proof market refused: {revert}")]
    Refused {
        revert: MarketRevert,
        mined: Option<Box<MarketTx>>,
    },
    /// The node refused to return the logs of this block range (too many blocks or results);
    /// a smaller range may pass.
    #[error("the node refuses the logs of blocks {from}..={to}: {msg}")]
    RangeTooLarge { from: u64, to: u64, msg: String },
    /// Any other L1 error: transport, node, timeout, stuck transaction.
    #[error(transparent)]
    L1(L1Error),
    /// The contract answered something this client cannot decode (another contract?).
    #[error("proof market data: {0}")]
    Decode(String),
}

impl MarketError {
    /// Whether the same call may succeed if retried as is (a refusal will not; a range
    /// refusal needs a smaller range).
    pub fn is_transient(&self) -> bool {
        match self {
            MarketError::L1(e) => e.is_transient(),
            MarketError::Refused { .. }
            | MarketError::RangeTooLarge { .. }
            | MarketError::Decode(_) => false,
        }
    }

    /// The contract's refusal, if this is one.
    pub fn refusal(&self) -> Option<&MarketRevert> {
        match self {
            MarketError::Refused { revert, .. } => Some(revert),
            _ => None,
        }
    }
}

impl From<L1Error> for MarketError {
    fn from(e: L1Error) -> Self {
        match e {
            L1Error::Reverted(r) => MarketError::Refused {
                revert: MarketRevert::of_l1(&r),
                mined: None,
            },
            other => MarketError::L1(other),
        }
    }
}

/// Whether a node error is its refusal of an `eth_getLogs` range (too many blocks or too many
/// results), by the messages of common nodes and providers (geth, reth, erigon, Infura,
/// Alchemy, QuickNode, Ankr, ...). A rate limit is not one: it passes when retried.
pub fn is_range_refusal(e: &L1Error) -> bool {
    let msg = match e {
        L1Error::Transient(m) | L1Error::Rpc(m) => m.to_lowercase(),
        _ => return false,
    };
    if msg.contains("rate limit") || msg.contains("too many requests") {
        return false;
    }
    [
        "query returned more than",
        "block range",
        "range too large",
        "range is too large",
        "range too wide",
        "range is too wide",
        "response size exceeded",
        "exceeds max results",
        "exceeds max block",
        "exceed maximum block",
        "too many results",
        "too many blocks",
        "is limited to",
        "maximum allowed number of",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::sol_types::SolError;

    #[test]
    fn market_errors_decode_typed_and_the_rest_keeps_its_data() {
        let data = ProofMarket::WrongStatus {
            chainId: 7,
            batchNumber: 3,
            status: 3,
        }
        .abi_encode();
        assert_eq!(
            MarketRevert::decode(&data),
            MarketRevert::WrongStatus {
                id: RequestId::new(7, 3),
                status: Some(RequestStatus::Refused)
            }
        );
        // Through proofmill_l1's decoding (which knows the rollup's errors only).
        let via_l1 = MarketError::from(L1Error::Reverted(Revert::decode(
            &ProofMarket::NothingToClaim {
                caller: Address::repeat_byte(4),
            }
            .abi_encode(),
        )));
        assert_eq!(
            via_l1.refusal(),
            Some(&MarketRevert::NothingToClaim {
                caller: Address::repeat_byte(4)
            })
        );
        assert!(!via_l1.is_transient());
        let unknown = [0xde, 0xad, 0xbe, 0xef, 1, 2];
        assert_eq!(
            MarketRevert::decode(&unknown),
            MarketRevert::Other {
                selector: Some([0xde, 0xad, 0xbe, 0xef]),
                data: unknown.to_vec()
            }
        );
        assert!(matches!(
            MarketRevert::decode(&[]),
            MarketRevert::Other { selector: None, .. }
        ));
    }

    #[test]
    fn no_market_error_is_decoded_as_one_of_the_rollup() {
        // proofmill_l1 turns these four rollup selectors into its own variants (dropping the
        // data); every other revert, `BadConfig()` which both contracts have included, stays
        // `Other` with its data.
        use alloy::sol_types::{SolError, SolInterface};
        use proofmill_l1::Rollup;
        let rollup_typed = [
            Rollup::InvalidProof::SELECTOR,
            Rollup::NotSequencer::SELECTOR,
            Rollup::WrongBatchNumber::SELECTOR,
            Rollup::BatchNotCommitted::SELECTOR,
        ];
        for sel in ProofMarket::ProofMarketErrors::selectors() {
            assert!(!rollup_typed.contains(&sel), "{sel:?}");
        }
        let bad_config = MarketError::from(L1Error::Reverted(Revert::decode(
            &ProofMarket::BadConfig {}.abi_encode(),
        )));
        assert_eq!(bad_config.refusal(), Some(&MarketRevert::BadConfig));
    }

    #[test]
    fn transient_and_range_refusals_are_told_apart() {
        let transient = MarketError::L1(L1Error::Transient("connection refused".into()));
        assert!(transient.is_transient());
        assert!(!MarketError::L1(L1Error::Rpc("bad request".into())).is_transient());
        for msg in [
            "eth_getLogs: server returned an error response: error code -32005: query returned more than 10000 results",
            "eth_getLogs: error code -32602: Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
            "eth_getLogs: error code -32000: exceed maximum block range: 5000",
            "eth_getLogs: query exceeds max block range 100000",
            "eth_getLogs: eth_getLogs is limited to a 10,000 range",
            "eth_getLogs: block range is too wide",
        ] {
            assert!(is_range_refusal(&L1Error::Rpc(msg.into())), "{msg}");
            assert!(is_range_refusal(&L1Error::Transient(msg.into())), "{msg}");
        }
        for msg in [
            "eth_getLogs: error code 429: rate limit exceeded",
            "eth_getLogs: connection refused",
            "eth_getLogs: invalid params",
        ] {
            assert!(!is_range_refusal(&L1Error::Transient(msg.into())), "{msg}");
        }
        assert!(!is_range_refusal(&L1Error::Timeout {
            what: "eth_getLogs",
            after: std::time::Duration::from_secs(1)
        }));
    }
}
