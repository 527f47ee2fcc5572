//! The proof market contract (`contracts/ProofMarket.sol`), the same bytecode on the embedded
//! revm and on anvil: a request's whole life (submitted, acknowledged or refused, proven,
//! validated or not, timed out), round-robin and preferred assignment, escrow paid out
//! exactly (rewards claimed once, the rest back to the submitter), and every refusal with
//! its custom error.

mod common;

use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol;
use alloy::sol_types::{SolCall, SolConstructor, SolEvent, SolInterface};
use common::evm::{Evm, Receipt, account, eth};

sol!(
    #[allow(clippy::too_many_arguments)] // the event's constructor
    #[derive(Debug, PartialEq, Eq)]
    ProofMarket,
    "../../contracts/out/ProofMarket.json"
);

use ProofMarket::{ProofMarketErrors as E, RequestId, RequestParams};

const ACK_TIMEOUT: u64 = 60;
const MAX_TIMEOUT_AFTER: u64 = 3_600;
/// Long enough that no proof here is closed unanswered (that path: `proofmill-market`'s tests).
const VALIDATION_TIMEOUT: u64 = 86_400;

struct Market {
    evm: Evm,
    at: Address,
    admin: Address,
    submitter: Address,
    n1: Address,
    n2: Address,
}

fn id(batch: u64) -> RequestId {
    RequestId {
        chainId: 7,
        batchNumber: batch,
    }
}

fn params(max_reward: U256, timeout_after: u64) -> RequestParams {
    RequestParams {
        protocolVersion: "devnet-v1".into(),
        inputsUrl: "https://inputs.example/7/1.bin".into(),
        inputsDigest: B256::repeat_byte(0xab),
        timeoutAfter: timeout_after,
        maxReward: max_reward,
    }
}

fn code() -> Vec<u8> {
    let artifact: serde_json::Value =
        serde_json::from_str(include_str!("../../../contracts/out/ProofMarket.json")).unwrap();
    let code: Bytes = artifact["bytecode"].as_str().unwrap().parse().unwrap();
    code.to_vec()
}

impl Market {
    async fn deploy(mut evm: Evm) -> Market {
        let (admin, submitter) = (account(0), account(1));
        let mut creation = code();
        creation.extend(
            ProofMarket::constructorCall {
                admin_: admin,
                submitter_: submitter,
                ackTimeout_: ACK_TIMEOUT,
                maxTimeoutAfter_: MAX_TIMEOUT_AFTER,
                validationTimeout_: VALIDATION_TIMEOUT,
            }
            .abi_encode(),
        );
        let at = evm.deploy(admin, creation).await;
        Market {
            evm,
            at,
            admin,
            submitter,
            n1: account(2),
            n2: account(3),
        }
    }

    async fn send(&mut self, from: Address, call: impl SolCall, value: U256) -> Receipt {
        self.evm.send(from, self.at, value, call.abi_encode()).await
    }

    /// Sends and expects success.
    async fn ok(&mut self, from: Address, call: impl SolCall, value: U256) -> Receipt {
        let r = self.send(from, call, value).await;
        if let Some(revert) = &r.revert {
            panic!(
                "{}: reverted with {:?}",
                self.evm.name(),
                E::abi_decode(revert)
            );
        }
        r
    }

    /// Sends and expects a refusal: the decoded custom error.
    async fn refused(&mut self, from: Address, call: impl SolCall, value: U256) -> E {
        let r = self.send(from, call, value).await;
        let revert = r
            .revert
            .unwrap_or_else(|| panic!("{}: not refused", self.evm.name()));
        E::abi_decode(&revert).unwrap_or_else(|e| panic!("undecodable revert {revert:?}: {e}"))
    }

    async fn request(&mut self, batch: u64) -> ProofMarket::Request {
        let out = self
            .evm
            .call(
                self.at,
                ProofMarket::getRequestCall { id: id(batch) }.abi_encode(),
            )
            .await
            .unwrap();
        ProofMarket::getRequestCall::abi_decode_returns(&out).unwrap()
    }

    async fn earned(&mut self, who: Address) -> U256 {
        let out = self
            .evm
            .call(self.at, ProofMarket::earnedCall(who).abi_encode())
            .await
            .unwrap();
        ProofMarket::earnedCall::abi_decode_returns(&out).unwrap()
    }

    async fn submit(&mut self, batch: u64, max_reward: U256, timeout_after: u64) -> Address {
        let call = ProofMarket::submitProofRequestCall {
            id: id(batch),
            params: params(max_reward, timeout_after),
        };
        let r = self.ok(self.submitter, call, max_reward).await;
        let (topics, data) = &r.logs[0];
        let ev = ProofMarket::ProofRequestSubmitted::decode_raw_log(topics.iter().copied(), data)
            .unwrap();
        assert_eq!((ev.chainId, ev.batchNumber), (7, batch));
        assert_eq!(ev.maxReward, max_reward);
        assert_eq!(ev.inputsUrl, "https://inputs.example/7/1.bin");
        ev.network
    }

    async fn ack(&mut self, by: Address, batch: u64, accept: bool) -> Receipt {
        let call = ProofMarket::acknowledgeProofRequestCall {
            id: id(batch),
            accept,
        };
        self.ok(by, call, U256::ZERO).await
    }

    fn prove_call(batch: u64, reward: U256) -> ProofMarket::submitProofCall {
        ProofMarket::submitProofCall {
            id: id(batch),
            proof: Bytes::from(vec![batch as u8; 96]),
            requestedReward: reward,
        }
    }

    fn validate_call(batch: u64, valid: bool) -> ProofMarket::submitProofValidationResultCall {
        ProofMarket::submitProofValidationResultCall {
            id: id(batch),
            valid,
        }
    }
}

// `ProofMarket.Status`, in its declaration order.
const REFUSED: u8 = 3;
const VALIDATED: u8 = 5;
const VALIDATION_FAILED: u8 = 6;
const TIMED_OUT: u8 = 7;

async fn whole_market(evm: Evm) {
    let mut m = Market::deploy(evm).await;
    let name = m.evm.name();
    let (admin, submitter, n1, n2, stranger) = (m.admin, m.submitter, m.n1, m.n2, account(4));
    let submit = |batch, reward: U256, t| ProofMarket::submitProofRequestCall {
        id: id(batch),
        params: params(reward, t),
    };

    // No network yet; only the admin registers one.
    assert_eq!(
        m.refused(submitter, submit(1, eth(1), 600), eth(1)).await,
        E::NoActiveNetwork(ProofMarket::NoActiveNetwork {})
    );
    let register = |who, active| ProofMarket::updateProvingNetworkCall {
        network: who,
        isActive: active,
    };
    assert!(matches!(
        m.refused(stranger, register(n1, true), U256::ZERO).await,
        E::NotAdmin(_)
    ));
    for n in [n1, n2] {
        m.ok(admin, register(n, true), U256::ZERO).await;
    }

    // Only the submitter requests; the escrow must be the maximum reward; the timeout bounded.
    assert!(matches!(
        m.refused(stranger, submit(1, eth(1), 600), eth(1)).await,
        E::NotSubmitter(_)
    ));
    assert!(matches!(
        m.refused(submitter, submit(1, eth(1), 600), eth(2)).await,
        E::EscrowMismatch(_)
    ));
    assert!(matches!(
        m.refused(submitter, submit(1, eth(1), 0), eth(1)).await,
        E::BadTimeout(_)
    ));
    assert!(matches!(
        m.refused(submitter, submit(1, eth(1), MAX_TIMEOUT_AFTER + 1), eth(1))
            .await,
        E::BadTimeout(_)
    ));

    // Round-robin: batches 1..=5 go to n1, n2, n1, n2, n1.
    let escrow = m.evm.balance(m.at).await;
    for (batch, want) in [(1, n1), (2, n2), (3, n1), (4, n2), (5, n1)] {
        assert_eq!(
            m.submit(batch, eth(1), 600).await,
            want,
            "{name}: batch {batch}"
        );
    }
    assert_eq!(
        m.evm.balance(m.at).await,
        escrow + eth(5),
        "{name}: escrow held"
    );
    assert!(matches!(
        m.refused(submitter, submit(1, eth(1), 600), eth(1)).await,
        E::RequestExists(_)
    ));
    let ack_call = |batch, accept| ProofMarket::acknowledgeProofRequestCall {
        id: id(batch),
        accept,
    };
    assert!(matches!(
        m.refused(n1, ack_call(99, true), U256::ZERO).await,
        E::UnknownRequest(_)
    ));

    // Batch 1: n1 accepts, proves for 0.4 of 1 ETH, the proof is valid, n1 claims once.
    assert!(matches!(
        m.refused(n2, ack_call(1, true), U256::ZERO).await,
        E::NotAssignedNetwork(_)
    ));
    m.ack(n1, 1, true).await;
    assert!(matches!(
        m.refused(n1, ack_call(1, true), U256::ZERO).await,
        E::WrongStatus(_)
    ));
    assert!(matches!(
        m.refused(n1, Market::prove_call(1, eth(2)), U256::ZERO)
            .await,
        E::RewardOverCap(_)
    ));
    assert!(matches!(
        m.refused(n2, Market::prove_call(1, eth(0)), U256::ZERO)
            .await,
        E::NotAssignedNetwork(_)
    ));
    let reward = eth(2) / U256::from(5);
    let r = m.ok(n1, Market::prove_call(1, reward), U256::ZERO).await;
    let (topics, data) = &r.logs[0];
    let proven =
        ProofMarket::ProofRequestProven::decode_raw_log(topics.iter().copied(), data).unwrap();
    assert_eq!((proven.network, proven.requestedReward), (n1, reward));
    assert_eq!(proven.proof.to_vec(), vec![1u8; 96]);
    assert!(matches!(
        m.refused(n1, Market::prove_call(1, reward), U256::ZERO)
            .await,
        E::ProofAlreadySubmitted(_)
    ));
    assert!(matches!(
        m.refused(n1, Market::validate_call(1, true), U256::ZERO)
            .await,
        E::NotSubmitter(_)
    ));
    let before = m.evm.balance(m.at).await;
    m.ok(submitter, Market::validate_call(1, true), U256::ZERO)
        .await;
    assert_eq!(
        m.evm.balance(m.at).await,
        before - (eth(1) - reward),
        "{name}: unasked part refunded"
    );
    assert_eq!(m.request(1).await.status, VALIDATED);
    assert_eq!(m.earned(n1).await, reward);
    assert!(matches!(
        m.refused(submitter, Market::validate_call(1, false), U256::ZERO)
            .await,
        E::AlreadyValidated(_)
    ));
    assert!(matches!(
        m.refused(n2, ProofMarket::claimRewardCall {}, U256::ZERO)
            .await,
        E::NothingToClaim(_)
    ));

    // Batch 2: n2 refuses; the whole escrow goes back.
    let before = m.evm.balance(m.at).await;
    m.ack(n2, 2, false).await;
    assert_eq!(
        m.evm.balance(m.at).await,
        before - eth(1),
        "{name}: refusal refunded"
    );
    assert_eq!(m.request(2).await.status, REFUSED);
    assert!(matches!(
        m.refused(n2, Market::prove_call(2, eth(0)), U256::ZERO)
            .await,
        E::WrongStatus(_)
    ));

    // Batch 5: n1 accepts and proves wrongly: validation false, nothing earned, all refunded.
    m.ack(n1, 5, true).await;
    m.ok(n1, Market::prove_call(5, eth(1)), U256::ZERO).await;
    let before = m.evm.balance(m.at).await;
    m.ok(submitter, Market::validate_call(5, false), U256::ZERO)
        .await;
    assert_eq!(m.evm.balance(m.at).await, before - eth(1));
    assert_eq!(
        m.earned(n1).await,
        reward,
        "{name}: an invalid proof earns nothing"
    );
    assert_eq!(m.request(5).await.status, VALIDATION_FAILED);

    // Batch 4: n2 accepts; batch 3 stays unacknowledged. Not timed out yet.
    m.ack(n2, 4, true).await;
    let close = |batch| ProofMarket::closeTimedOutRequestCall { id: id(batch) };
    assert!(matches!(
        m.refused(stranger, close(3), U256::ZERO).await,
        E::NotTimedOut(_)
    ));
    assert!(matches!(
        m.refused(stranger, close(4), U256::ZERO).await,
        E::NotTimedOut(_)
    ));
    // Past the acknowledgement timeout: too late to acknowledge batch 3; anyone closes it.
    m.evm.advance(ACK_TIMEOUT + 1).await;
    assert!(matches!(
        m.refused(n1, ack_call(3, true), U256::ZERO).await,
        E::AcknowledgementTooLate(_)
    ));
    let before = m.evm.balance(m.at).await;
    m.ok(stranger, close(3), U256::ZERO).await;
    assert_eq!(m.evm.balance(m.at).await, before - eth(1));
    // Past batch 4's deadline: too late to prove; closed, refunded.
    m.evm.advance(600).await;
    assert!(matches!(
        m.refused(n2, Market::prove_call(4, eth(0)), U256::ZERO)
            .await,
        E::ProofTooLate(_)
    ));
    m.ok(stranger, close(4), U256::ZERO).await;
    assert_eq!(m.request(4).await.status, TIMED_OUT);
    assert!(matches!(
        m.refused(stranger, close(4), U256::ZERO).await,
        E::NotTimedOut(_)
    ));

    // The reward is paid once; what is left in escrow is exactly what nobody has claimed.
    let before = m.evm.balance(m.at).await;
    let r = m.ok(n1, ProofMarket::claimRewardCall {}, U256::ZERO).await;
    let (topics, data) = &r.logs[0];
    let claimed = ProofMarket::RewardClaimed::decode_raw_log(topics.iter().copied(), data).unwrap();
    assert_eq!((claimed.network, claimed.amount), (n1, reward));
    assert_eq!(m.evm.balance(m.at).await, before - reward);
    assert_eq!(
        m.evm.balance(m.at).await,
        escrow,
        "{name}: nothing left in escrow"
    );
    assert!(matches!(
        m.refused(n1, ProofMarket::claimRewardCall {}, U256::ZERO)
            .await,
        E::NothingToClaim(_)
    ));

    // A preferred network takes every request while active; unknown ones are refused.
    let prefer = |n| ProofMarket::updatePreferredProvingNetworkCall { network: n };
    assert!(matches!(
        m.refused(admin, prefer(stranger), U256::ZERO).await,
        E::UnknownNetwork(_)
    ));
    assert!(matches!(
        m.refused(stranger, prefer(n2), U256::ZERO).await,
        E::NotAdmin(_)
    ));
    m.ok(admin, prefer(n2), U256::ZERO).await;
    assert_eq!(m.submit(6, eth(1), 600).await, n2);
    assert_eq!(m.submit(7, eth(1), 600).await, n2);
    // Inactive, it is passed over, as an inactive network is in the round-robin.
    m.ok(admin, register(n2, false), U256::ZERO).await;
    assert_eq!(m.submit(8, eth(1), 600).await, n1);
    assert_eq!(m.submit(9, eth(1), 600).await, n1);
}

#[tokio::test]
async fn the_whole_market_on_the_embedded_evm() {
    whole_market(Evm::revm()).await;
}

#[tokio::test]
async fn the_whole_market_on_anvil() {
    whole_market(Evm::anvil().await).await;
}
