//! ABI bindings generated from the committed artifact `contracts/out/ProofMarket.json`, and
//! the conversions between them and this crate's types.

use crate::{Address, MarketSettings, Request, RequestId, RequestParams, RequestStatus, Result};
use alloy::primitives::B256;
use alloy::sol;
use alloy::sol_types::{SolCall, SolConstructor};

sol!(
    #[allow(clippy::too_many_arguments)] // the events' constructors
    #[derive(Debug, PartialEq, Eq)]
    ProofMarket,
    "../../contracts/out/ProofMarket.json"
);

impl From<RequestId> for ProofMarket::RequestId {
    fn from(id: RequestId) -> Self {
        ProofMarket::RequestId {
            chainId: id.chain_id,
            batchNumber: id.batch,
        }
    }
}

impl From<&RequestParams> for ProofMarket::RequestParams {
    fn from(p: &RequestParams) -> Self {
        ProofMarket::RequestParams {
            protocolVersion: p.protocol_version.clone(),
            inputsUrl: p.inputs_url.clone(),
            inputsDigest: B256::from(p.inputs_digest),
            timeoutAfter: p.timeout_after,
            maxReward: p.max_reward,
        }
    }
}

/// Creation code of the market with its constructor arguments appended.
pub(crate) fn deploy_code(settings: &MarketSettings) -> Vec<u8> {
    let mut code = ProofMarket::BYTECODE.to_vec();
    code.extend(
        ProofMarket::constructorCall {
            admin_: settings.admin,
            submitter_: settings.submitter,
            ackTimeout_: settings.ack_timeout,
            maxTimeoutAfter_: settings.max_timeout_after,
            validationTimeout_: settings.validation_timeout,
        }
        .abi_encode(),
    );
    code
}

/// Decodes a call's return data.
pub(crate) fn returns<C: SolCall>(out: &[u8]) -> Result<C::Return> {
    C::abi_decode_returns(out).map_err(|e| {
        crate::MarketError::Decode(format!(
            "{} returned {} undecodable bytes: {e}",
            C::SIGNATURE,
            out.len()
        ))
    })
}

pub(crate) fn request_of(r: ProofMarket::Request) -> Option<Request> {
    Some(Request {
        network: r.network,
        status: RequestStatus::from_code(r.status)?,
        submitted_at: r.submittedAt,
        deadline: r.deadline,
        validation_deadline: r.validationDeadline,
        max_reward: r.maxReward,
        reward: r.reward,
        inputs_digest: r.inputsDigest.0,
        proof_hash: r.proofHash.0,
    })
}

/// `None` for the zero address (how the contract says "none").
pub(crate) fn non_zero(a: Address) -> Option<Address> {
    (a != Address::ZERO).then_some(a)
}

pub(crate) fn id_of(chain_id: u64, batch: u64) -> RequestId {
    RequestId { chain_id, batch }
}
