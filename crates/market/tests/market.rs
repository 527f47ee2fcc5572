//! The market client against the real `ProofMarket` bytecode, the same suite on the embedded
//! revm L1 and on anvil: a request's whole life through [`MarketL1`], refusal, invalid proof,
//! late acknowledgement and late proof with the clock moved, every wrong caller's typed
//! refusal, and the watcher reading back every event in order through a node that refuses
//! large log ranges.

mod common;

use alloy::primitives::keccak256;
use common::*;
use proofmill_l1::{RevmL1, RpcConfig};
use proofmill_market::{
    MarketError, MarketEvent, MarketEvents, MarketL1, MarketRevert, MarketSettings, MarketWatcher,
    ProvingNetwork, RequestStatus, RevmMarket, RpcMarket, U256, WatcherConfig, deploy_market,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// One test on each chain.
macro_rules! on_both_chains {
    ($suite:ident, $revm:ident, $anvil:ident) => {
        #[tokio::test]
        async fn $revm() {
            $suite(Market::revm(None).await).await;
        }

        #[tokio::test]
        async fn $anvil() {
            $suite(Market::anvil().await).await;
        }
    };
}

async fn status(m: &Market, batch: u64) -> RequestStatus {
    m.submitter
        .request(id(batch))
        .await
        .unwrap()
        .expect("request exists")
        .status
}

async fn escrow(m: &Market) -> U256 {
    m.stranger.balance(m.address).await.unwrap()
}

/// Every event since the deployment, read at once.
async fn all_events(m: &Market) -> Vec<MarketEvent> {
    let head = m.stranger.head().await.unwrap().number;
    m.stranger.events(m.deployed_at, head).await.unwrap()
}

async fn whole_life(m: Market) {
    let name = m.name();
    let (submitter, n1) = (m.submitter.clone(), m.n1.clone());
    assert_eq!(m.stranger.settings().await.unwrap(), settings());
    assert_eq!(m.stranger.proving_networks().await.unwrap(), vec![]);
    m.register_networks().await;
    assert_eq!(
        m.stranger.proving_networks().await.unwrap(),
        vec![
            ProvingNetwork {
                address: account(2),
                active: true
            },
            ProvingNetwork {
                address: account(3),
                active: true
            }
        ]
    );
    assert_eq!(submitter.next_network().await.unwrap(), account(2));
    assert_eq!(submitter.request(id(1)).await.unwrap(), None);

    // Submitted with its escrow.
    let submitter_start = submitter.balance(account(1)).await.unwrap();
    let submit_tx = mined(
        submitter
            .submit_proof_request(id(1), &params(eth(1), 1200), eth(1))
            .await,
    );
    assert_eq!(escrow(&m).await, eth(1), "{name}: escrow held");
    if m.gas_free() {
        assert_eq!(
            submitter.balance(account(1)).await.unwrap(),
            submitter_start - eth(1)
        );
    }
    let r = submitter.request(id(1)).await.unwrap().unwrap();
    assert_eq!(r.network, account(2));
    assert_eq!(r.status, RequestStatus::PendingAcknowledgement);
    assert_eq!(r.submitted_at, submitter.head().await.unwrap().timestamp);
    assert_eq!(r.deadline, r.submitted_at + 1200);
    assert_eq!((r.max_reward, r.reward), (eth(1), U256::ZERO));
    assert_eq!(r.inputs_digest, [0xab; 32]);

    // Accepted, proven for 0.4 ETH, valid.
    let ack_tx = mined(n1.acknowledge(id(1), true).await);
    assert_eq!(status(&m, 1).await, RequestStatus::Committed);
    let proof = vec![0x5a; 96];
    let reward = eth(2) / U256::from(5);
    let proof_tx = mined(n1.submit_proof(id(1), &proof, reward).await);
    let r = submitter.request(id(1)).await.unwrap().unwrap();
    assert_eq!(r.status, RequestStatus::Proven);
    assert_eq!(r.reward, reward);
    assert_eq!(r.proof_hash, keccak256(&proof).0);
    let submitter_before = submitter.balance(account(1)).await.unwrap();
    let valid_tx = mined(submitter.submit_validation_result(id(1), true).await);
    assert_eq!(status(&m, 1).await, RequestStatus::Validated);
    assert_eq!(
        escrow(&m).await,
        reward,
        "{name}: the unasked part went back"
    );
    if m.gas_free() {
        assert_eq!(
            submitter.balance(account(1)).await.unwrap(),
            submitter_before + (eth(1) - reward)
        );
    }
    assert_eq!(n1.earned(account(2)).await.unwrap(), reward);

    // Claimed exactly once.
    let n1_before = n1.balance(account(2)).await.unwrap();
    let claim_tx = mined(n1.claim_reward().await);
    let n1_after = n1.balance(account(2)).await.unwrap();
    if m.gas_free() {
        assert_eq!(n1_after, n1_before + reward);
    } else {
        // Paid the reward, less the claim's gas.
        assert!(
            n1_after > n1_before && n1_after < n1_before + reward,
            "{name}"
        );
    }
    assert_eq!(escrow(&m).await, U256::ZERO, "{name}: nothing left");
    assert_eq!(n1.earned(account(2)).await.unwrap(), U256::ZERO);
    assert_eq!(
        refused(n1.claim_reward().await),
        MarketRevert::NothingToClaim { caller: account(2) }
    );
    assert_eq!(n1.balance(account(2)).await.unwrap(), n1_after);

    // The chain tells the same story, typed, in order, with each transaction's hash.
    let events = all_events(&m).await;
    assert_eq!(events.len(), 7, "{name}: {events:#?}");
    assert!(matches!(
        &events[0],
        MarketEvent::NetworkUpdated { network, active: true, .. } if *network == account(2)
    ));
    assert!(matches!(
        &events[1],
        MarketEvent::NetworkUpdated { network, active: true, .. } if *network == account(3)
    ));
    let at = |i: usize| *events[i].at();
    assert_eq!(
        events[2],
        MarketEvent::Submitted {
            at: at(2),
            id: id(1),
            network: account(2),
            protocol_version: "devnet-v1".into(),
            inputs_url: "https://inputs.example/7/batch.bin".into(),
            inputs_digest: [0xab; 32],
            deadline: r.deadline,
            max_reward: eth(1),
        }
    );
    assert_eq!(
        events[3],
        MarketEvent::Acknowledged {
            at: at(3),
            id: id(1),
            network: account(2),
            accepted: true
        }
    );
    assert_eq!(
        events[4],
        MarketEvent::Proven {
            at: at(4),
            id: id(1),
            network: account(2),
            proof: proof.clone(),
            requested_reward: reward
        }
    );
    assert_eq!(
        events[5],
        MarketEvent::ValidationResult {
            at: at(5),
            id: id(1),
            network: account(2),
            valid: true,
            reward
        }
    );
    assert_eq!(
        events[6],
        MarketEvent::RewardClaimed {
            at: at(6),
            network: account(2),
            amount: reward
        }
    );
    for (i, tx) in [
        (2, submit_tx),
        (3, ack_tx),
        (4, proof_tx),
        (5, valid_tx),
        (6, claim_tx),
    ] {
        assert_eq!(
            (at(i).tx_hash, at(i).block),
            (tx.tx_hash, tx.block),
            "{name}: event {i}"
        );
    }

    // A watcher over any `MarketL1` client (upcast to its events) reads the same, the
    // newest blocks included with 0 confirmations.
    let source: Arc<dyn MarketEvents> = m.stranger.clone();
    let mut w = MarketWatcher::new(
        source,
        WatcherConfig {
            confirmations: 0,
            max_block_range: 10_000,
        },
    );
    let batch = w.poll(m.deployed_at).await.unwrap();
    assert!(batch.caught_up);
    assert_eq!(batch.last_processed, claim_tx.block);
    assert_eq!(batch.events, events);
}

async fn refusal(m: Market) {
    let name = m.name();
    m.register_networks().await;
    let submitter_start = m.submitter.balance(account(1)).await.unwrap();
    mined(
        m.submitter
            .submit_proof_request(id(1), &params(eth(1), 1200), eth(1))
            .await,
    );
    mined(m.n1.acknowledge(id(1), false).await);
    assert_eq!(status(&m, 1).await, RequestStatus::Refused);
    assert_eq!(escrow(&m).await, U256::ZERO, "{name}: refusal refunded");
    if m.gas_free() {
        assert_eq!(
            m.submitter.balance(account(1)).await.unwrap(),
            submitter_start
        );
    }
    let wrong_status = MarketRevert::WrongStatus {
        id: id(1),
        status: Some(RequestStatus::Refused),
    };
    assert_eq!(
        refused(m.n1.submit_proof(id(1), &[1; 32], U256::ZERO).await),
        wrong_status
    );
    assert_eq!(refused(m.n1.acknowledge(id(1), true).await), wrong_status);
    assert_eq!(
        refused(m.stranger.close_timed_out_request(id(1)).await),
        MarketRevert::NotTimedOut(id(1))
    );
    let events = all_events(&m).await;
    assert!(
        matches!(
            events.last(),
            Some(MarketEvent::Acknowledged { id: i, accepted: false, network, .. })
                if *i == id(1) && *network == account(2)
        ),
        "{name}: {events:?}"
    );
    // Round-robin: the next request goes to the other network.
    assert_eq!(m.submitter.next_network().await.unwrap(), account(3));
}

async fn invalid_proof(m: Market) {
    let name = m.name();
    m.register_networks().await;
    mined(
        m.submitter
            .submit_proof_request(id(1), &params(eth(1), 1200), eth(1))
            .await,
    );
    mined(m.n1.acknowledge(id(1), true).await);
    mined(m.n1.submit_proof(id(1), &[0xee; 64], eth(1)).await);
    assert_eq!(
        refused(m.n1.submit_proof(id(1), &[0xee; 64], eth(1)).await),
        MarketRevert::ProofAlreadySubmitted(id(1))
    );
    let submitter_before = m.submitter.balance(account(1)).await.unwrap();
    mined(m.submitter.submit_validation_result(id(1), false).await);
    assert_eq!(status(&m, 1).await, RequestStatus::ValidationFailed);
    assert_eq!(escrow(&m).await, U256::ZERO, "{name}: all of it went back");
    if m.gas_free() {
        assert_eq!(
            m.submitter.balance(account(1)).await.unwrap(),
            submitter_before + eth(1)
        );
    }
    assert_eq!(m.n1.earned(account(2)).await.unwrap(), U256::ZERO);
    assert_eq!(
        refused(m.n1.claim_reward().await),
        MarketRevert::NothingToClaim { caller: account(2) }
    );
    assert_eq!(
        refused(m.submitter.submit_validation_result(id(1), true).await),
        MarketRevert::AlreadyValidated(id(1))
    );
    assert!(matches!(
        all_events(&m).await.last(),
        Some(MarketEvent::ValidationResult { valid: false, reward, .. }) if reward.is_zero()
    ));
}

async fn late(m: Market) {
    let name = m.name();
    m.register_networks().await;
    for batch in [1, 2] {
        mined(
            m.submitter
                .submit_proof_request(id(batch), &params(eth(1), 1200), eth(1))
                .await,
        );
    }
    // Batch 2 (n2) is accepted in time; batch 1 (n1) is never acknowledged.
    mined(m.n2.acknowledge(id(2), true).await);
    for batch in [1, 2] {
        assert_eq!(
            refused(m.stranger.close_timed_out_request(id(batch)).await),
            MarketRevert::NotTimedOut(id(batch))
        );
    }

    m.advance(ACK_TIMEOUT + 1).await;
    let r1 = m.n1.request(id(1)).await.unwrap().unwrap();
    assert_eq!(
        refused(m.n1.acknowledge(id(1), true).await),
        MarketRevert::AcknowledgementTooLate {
            id: id(1),
            ack_deadline: r1.submitted_at + ACK_TIMEOUT
        },
        "{name}"
    );
    mined(m.stranger.close_timed_out_request(id(1)).await);
    assert_eq!(status(&m, 1).await, RequestStatus::TimedOut);
    assert_eq!(
        refused(m.stranger.close_timed_out_request(id(1)).await),
        MarketRevert::NotTimedOut(id(1))
    );
    assert!(matches!(
        all_events(&m).await.last(),
        Some(MarketEvent::TimedOut { id: i, network, .. }) if *i == id(1) && *network == account(2)
    ));
    assert_eq!(escrow(&m).await, eth(1), "{name}: batch 1 refunded");

    // Past batch 2's deadline: too late to prove; closed, refunded.
    m.advance(1200).await;
    let r2 = m.n2.request(id(2)).await.unwrap().unwrap();
    assert!(m.n2.head().await.unwrap().timestamp > r2.deadline);
    assert_eq!(
        refused(m.n2.submit_proof(id(2), &[2; 32], U256::ZERO).await),
        MarketRevert::ProofTooLate {
            id: id(2),
            deadline: r2.deadline
        }
    );
    mined(m.stranger.close_timed_out_request(id(2)).await);
    assert_eq!(status(&m, 2).await, RequestStatus::TimedOut);
    assert_eq!(escrow(&m).await, U256::ZERO, "{name}: batch 2 refunded");
}

async fn wrong_callers(m: Market) {
    let (admin, submitter, n1, n2, stranger) = (
        m.admin.clone(),
        m.submitter.clone(),
        m.n1.clone(),
        m.n2.clone(),
        m.stranger.clone(),
    );
    let (a_n1, a_n2, a_stranger) = (account(2), account(3), account(4));
    let p = params(eth(1), 1200);

    // No network yet.
    assert_eq!(
        refused(submitter.next_network().await),
        MarketRevert::NoActiveNetwork
    );
    assert_eq!(
        refused(submitter.submit_proof_request(id(1), &p, eth(1)).await),
        MarketRevert::NoActiveNetwork
    );
    assert_eq!(
        refused(stranger.update_proving_network(a_n1, true).await),
        MarketRevert::NotAdmin { caller: a_stranger }
    );
    m.register_networks().await;

    // Only the submitter requests, with the right escrow and a bounded timeout, once.
    assert_eq!(
        refused(stranger.submit_proof_request(id(1), &p, eth(1)).await),
        MarketRevert::NotSubmitter { caller: a_stranger }
    );
    assert_eq!(
        refused(submitter.submit_proof_request(id(1), &p, eth(2)).await),
        MarketRevert::EscrowMismatch {
            sent: eth(2),
            max_reward: eth(1)
        }
    );
    for t in [0, MAX_TIMEOUT_AFTER + 1] {
        assert_eq!(
            refused(
                submitter
                    .submit_proof_request(id(1), &params(eth(1), t), eth(1))
                    .await
            ),
            MarketRevert::BadTimeout {
                timeout_after: t,
                max_timeout_after: MAX_TIMEOUT_AFTER
            }
        );
    }
    mined(submitter.submit_proof_request(id(1), &p, eth(1)).await);
    assert_eq!(
        refused(submitter.submit_proof_request(id(1), &p, eth(1)).await),
        MarketRevert::RequestExists(id(1))
    );

    // Only the assigned network acknowledges and proves, within the cap.
    let not_assigned = MarketRevert::NotAssignedNetwork {
        caller: a_n2,
        assigned: a_n1,
    };
    assert_eq!(refused(n2.acknowledge(id(1), true).await), not_assigned);
    assert_eq!(
        refused(n1.acknowledge(id(99), true).await),
        MarketRevert::UnknownRequest(id(99))
    );
    assert_eq!(submitter.request(id(99)).await.unwrap(), None);
    assert_eq!(
        refused(n1.submit_proof(id(1), &[1; 32], U256::ZERO).await),
        MarketRevert::WrongStatus {
            id: id(1),
            status: Some(RequestStatus::PendingAcknowledgement)
        }
    );
    mined(n1.acknowledge(id(1), true).await);
    assert_eq!(
        refused(n1.submit_proof(id(1), &[1; 32], eth(2)).await),
        MarketRevert::RewardOverCap {
            requested: eth(2),
            max_reward: eth(1)
        }
    );
    assert_eq!(
        refused(n2.submit_proof(id(1), &[1; 32], U256::ZERO).await),
        not_assigned
    );
    mined(n1.submit_proof(id(1), &[1; 32], U256::ZERO).await);
    // Only the submitter validates.
    assert_eq!(
        refused(n1.submit_validation_result(id(1), true).await),
        MarketRevert::NotSubmitter { caller: a_n1 }
    );

    // Only the admin picks a preferred network, a registered one.
    assert_eq!(
        refused(admin.update_preferred_network(Some(a_stranger)).await),
        MarketRevert::UnknownNetwork(a_stranger)
    );
    assert_eq!(
        refused(stranger.update_preferred_network(Some(a_n2)).await),
        MarketRevert::NotAdmin { caller: a_stranger }
    );
    mined(admin.update_preferred_network(Some(a_n2)).await);
    assert_eq!(stranger.preferred_network().await.unwrap(), Some(a_n2));
    assert_eq!(stranger.next_network().await.unwrap(), a_n2);
    mined(admin.update_preferred_network(None).await);
    assert_eq!(stranger.preferred_network().await.unwrap(), None);
    let events = all_events(&m).await;
    assert!(matches!(
        &events[events.len() - 2..],
        [
            MarketEvent::PreferredNetworkUpdated { network: Some(n), .. },
            MarketEvent::PreferredNetworkUpdated { network: None, .. },
        ] if *n == a_n2
    ));

    // A transaction sent without the pre-flight check is mined, reverts (gas spent), and
    // still comes back as the typed refusal.
    let unchecked: Arc<dyn MarketL1> = match &m.chain {
        Chain::Revm(l1) => Arc::new(RevmMarket::new(
            l1.with_sender(a_stranger).with_preflight(false),
            m.address,
        )),
        Chain::Anvil { anvil, .. } => Arc::new(
            RpcMarket::connect(
                &anvil.url,
                DEV_KEYS[4],
                m.address,
                RpcConfig {
                    fixed_gas_limit: Some(300_000),
                    ..fast_cfg()
                },
            )
            .await
            .unwrap(),
        ),
    };
    match unchecked.claim_reward().await {
        Err(MarketError::Refused {
            revert,
            mined: Some(tx),
        }) => {
            assert_eq!(revert, MarketRevert::NothingToClaim { caller: a_stranger });
            assert!(tx.gas_used > 21_000 && tx.block > 0, "{tx:?}");
        }
        other => panic!("{}: expected a mined refusal, got {other:?}", m.name()),
    }

    // Deployments the constructor refuses.
    let no_ack = MarketSettings {
        ack_timeout: 0,
        ..settings()
    };
    let no_validation = MarketSettings {
        validation_timeout: 0,
        ..settings()
    };
    for bad in [no_ack, no_validation] {
        let res = match &m.chain {
            Chain::Revm(l1) => deploy_market(&l1.with_sender(account(0)), &bad).await,
            Chain::Anvil { anvil, .. } => {
                let l1 = proofmill_l1::RpcL1::new(&anvil.url, DEV_KEYS[0], m.address, fast_cfg())
                    .await
                    .unwrap();
                deploy_market(&l1, &bad).await
            }
        };
        assert_eq!(refused(res), MarketRevert::BadConfig, "{bad:?}");
    }
}

/// A rollup that leaves a proof unanswered cannot keep the network's pay: past the
/// validation timeout its verdict is refused, anyone may close the request, and the network
/// earns what it asked (the rest of the escrow goes back). In time, the verdict still counts.
async fn unvalidated(m: Market) {
    let name = m.name();
    m.register_networks().await;
    for batch in [1, 2, 3] {
        mined(
            m.submitter
                .submit_proof_request(id(batch), &params(eth(2), 1200), eth(2))
                .await,
        );
    }
    // Round-robin: batches 1 and 3 go to n1, batch 2 to n2.
    for (n, batch) in [(&m.n1, 1), (&m.n2, 2), (&m.n1, 3)] {
        mined(n.acknowledge(id(batch), true).await);
    }
    assert_eq!(
        refused(m.stranger.close_unvalidated_request(id(3)).await),
        MarketRevert::WrongStatus {
            id: id(3),
            status: Some(RequestStatus::Committed)
        },
        "{name}: no proof yet"
    );
    assert_eq!(
        refused(m.stranger.close_unvalidated_request(id(9)).await),
        MarketRevert::UnknownRequest(id(9))
    );
    mined(m.n1.submit_proof(id(1), &[1; 32], eth(1)).await);
    mined(m.n2.submit_proof(id(2), &[2; 32], eth(1)).await);
    let r1 = m.n1.request(id(1)).await.unwrap().unwrap();
    let posted = m.n1.head().await.unwrap().timestamp;
    assert!(
        r1.validation_deadline >= posted && r1.validation_deadline <= posted + VALIDATION_TIMEOUT,
        "{name}: {r1:?} (head at {posted})"
    );
    assert_eq!(
        refused(m.stranger.close_unvalidated_request(id(1)).await),
        MarketRevert::NotTimedOut(id(1)),
        "{name}: within the window"
    );
    mined(m.submitter.submit_validation_result(id(2), true).await);

    m.advance(VALIDATION_TIMEOUT + 1).await;
    assert_eq!(
        refused(m.submitter.submit_validation_result(id(1), false).await),
        MarketRevert::ValidationTooLate {
            id: id(1),
            validation_deadline: r1.validation_deadline
        },
        "{name}"
    );
    let escrow_before = escrow(&m).await;
    mined(m.stranger.close_unvalidated_request(id(1)).await);
    assert_eq!(status(&m, 1).await, RequestStatus::ValidationTimedOut);
    assert!(matches!(
        all_events(&m).await.last(),
        Some(MarketEvent::ValidationTimedOut { id: i, network, reward, .. })
            if *i == id(1) && *network == account(2) && *reward == eth(1)
    ));
    assert_eq!(
        escrow(&m).await,
        escrow_before - eth(1),
        "{name}: what n1 did not ask went back"
    );
    assert_eq!(m.n1.earned(account(2)).await.unwrap(), eth(1));
    // Once closed it stays closed, for everyone.
    for res in [
        m.stranger.close_unvalidated_request(id(1)).await,
        m.submitter.submit_validation_result(id(1), true).await,
        m.stranger.close_unvalidated_request(id(2)).await,
    ] {
        assert!(matches!(refused(res), MarketRevert::AlreadyValidated(_)));
    }
    assert_eq!(
        refused(m.n1.submit_proof(id(1), &[1; 32], eth(1)).await),
        MarketRevert::ProofAlreadySubmitted(id(1))
    );
    mined(m.n1.claim_reward().await);
    assert_eq!(m.n1.earned(account(2)).await.unwrap(), U256::ZERO);
}

/// Drives a market through every kind of event: (the events it expects, in order, as
/// `(kind, batch)`).
async fn busy_market(m: &Market) -> Vec<(&'static str, Option<u64>)> {
    let mut want = vec![("NetworkUpdated", None), ("NetworkUpdated", None)];
    m.register_networks().await;
    for batch in 1..=5 {
        mined(
            m.submitter
                .submit_proof_request(id(batch), &params(eth(1), 1200), eth(1))
                .await,
        );
        want.push(("Submitted", Some(batch)));
    }
    // 1 (n1): proven valid; 2 (n2): refused; 3 (n1): proven invalid; 4 (n2): never answered;
    // 5 (n1): proven, its proof never answered.
    mined(m.n1.acknowledge(id(1), true).await);
    mined(m.n2.acknowledge(id(2), false).await);
    mined(m.n1.acknowledge(id(3), true).await);
    mined(m.n1.acknowledge(id(5), true).await);
    want.extend([
        ("Acknowledged", Some(1)),
        ("Acknowledged", Some(2)),
        ("Acknowledged", Some(3)),
        ("Acknowledged", Some(5)),
    ]);
    mined(
        m.n1.submit_proof(id(1), &[1; 40], eth(1) / U256::from(2))
            .await,
    );
    mined(m.n1.submit_proof(id(3), &[3; 40], eth(1)).await);
    mined(m.n1.submit_proof(id(5), &[5; 40], eth(1)).await);
    mined(m.submitter.submit_validation_result(id(1), true).await);
    mined(m.submitter.submit_validation_result(id(3), false).await);
    want.extend([
        ("Proven", Some(1)),
        ("Proven", Some(3)),
        ("Proven", Some(5)),
        ("ValidationResult", Some(1)),
        ("ValidationResult", Some(3)),
    ]);
    // Past both the acknowledgement and the validation windows.
    m.advance(ACK_TIMEOUT.max(VALIDATION_TIMEOUT) + 1).await;
    mined(m.stranger.close_timed_out_request(id(4)).await);
    mined(m.stranger.close_unvalidated_request(id(5)).await);
    mined(m.admin.update_preferred_network(Some(account(3))).await);
    want.extend([
        ("TimedOut", Some(4)),
        ("ValidationTimedOut", Some(5)),
        ("PreferredNetworkUpdated", None),
    ]);
    want
}

fn kind(e: &MarketEvent) -> (&'static str, Option<u64>) {
    let name = match e {
        MarketEvent::Submitted { .. } => "Submitted",
        MarketEvent::Acknowledged { .. } => "Acknowledged",
        MarketEvent::Proven { .. } => "Proven",
        MarketEvent::ValidationResult { .. } => "ValidationResult",
        MarketEvent::TimedOut { .. } => "TimedOut",
        MarketEvent::ValidationTimedOut { .. } => "ValidationTimedOut",
        MarketEvent::RewardClaimed { .. } => "RewardClaimed",
        MarketEvent::NetworkUpdated { .. } => "NetworkUpdated",
        MarketEvent::PreferredNetworkUpdated { .. } => "PreferredNetworkUpdated",
    };
    (name, e.request_id().map(|i| i.batch))
}

async fn watcher(m: Market) {
    let name = m.name();
    let mut want = busy_market(&m).await;
    // The last two blocks (the preferred network's update, then the claim) are not read
    // until they have their confirmations.
    let claim_tx = mined(m.n1.claim_reward().await);
    let unconfirmed = want.pop().unwrap();

    let (limited, refusals) = m.range_limited(4, 3).await;
    let cfg = WatcherConfig {
        confirmations: 2,
        max_block_range: 1_000,
    };
    let mut w = MarketWatcher::new(limited.clone(), cfg);
    let mut seen = Vec::new();
    let mut last = m.deployed_at;
    loop {
        let batch = w.poll(last).await.unwrap();
        seen.extend(batch.events);
        last = batch.last_processed;
        if batch.caught_up {
            break;
        }
    }
    assert!(
        refusals.load(Ordering::Relaxed) > 0,
        "{name}: the range was never refused"
    );
    assert!(w.block_range() <= 3, "{name}: {}", w.block_range());
    let head = m.stranger.head().await.unwrap().number;
    assert_eq!(last, head - 2, "{name}");
    assert_eq!(seen.iter().map(kind).collect::<Vec<_>>(), want, "{name}");
    // Exactly what one unlimited query of the same blocks returns, in chain order.
    assert_eq!(seen, m.stranger.events(m.deployed_at, last).await.unwrap());
    for pair in seen.windows(2) {
        let (a, b) = (pair[0].at(), pair[1].at());
        assert!((a.block, a.log_index) < (b.block, b.log_index), "{name}");
    }
    // The limited client refuses what the watcher never asks: a range over the limit.
    assert!(matches!(
        limited.events(m.deployed_at, head).await,
        Err(MarketError::RangeTooLarge { .. })
    ));

    // Two more blocks confirm both.
    assert_eq!(claim_tx.block, head, "{name}");
    m.mine(2).await;
    let batch = w.poll(last).await.unwrap();
    assert!(batch.caught_up);
    assert_eq!(batch.last_processed, claim_tx.block);
    // The chain's time as far as the events go: that block's, not the head's.
    let block = m.stranger.block(claim_tx.block).await.unwrap();
    let now = m.stranger.head().await.unwrap();
    assert_eq!(batch.last_processed_at, block.timestamp, "{name}");
    assert!(
        block.timestamp > 0 && block.timestamp <= now.timestamp,
        "{name}: {block:?} {now:?}"
    );
    assert_eq!(kind(&batch.events[0]), unconfirmed, "{name}");
    assert!(
        matches!(
            &batch.events[1..],
            [MarketEvent::RewardClaimed { network, at, .. }]
                if *network == account(2) && at.tx_hash == claim_tx.tx_hash
        ),
        "{name}: {:?}",
        batch.events
    );
}

on_both_chains!(whole_life, whole_life_on_revm, whole_life_on_anvil);
on_both_chains!(refusal, refusal_on_revm, refusal_on_anvil);
on_both_chains!(invalid_proof, invalid_proof_on_revm, invalid_proof_on_anvil);
on_both_chains!(
    late,
    late_ack_and_proof_on_revm,
    late_ack_and_proof_on_anvil
);
on_both_chains!(wrong_callers, wrong_callers_on_revm, wrong_callers_on_anvil);
on_both_chains!(unvalidated, unvalidated_on_revm, unvalidated_on_anvil);
on_both_chains!(watcher, watcher_on_revm, watcher_on_anvil);

/// The embedded L1's transaction log replays the market: escrow moved by value transfers and
/// the clock moved by skipped blocks come back the same after a restart.
#[tokio::test]
async fn the_embedded_market_replays_from_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.log");
    let m = Market::revm(Some(&path)).await;
    let want = busy_market(&m).await;
    m.advance(300).await; // skipped, then carried by the next transaction's block number
    mined(m.n1.claim_reward().await);
    let head = m.stranger.head().await.unwrap();
    let events = all_events(&m).await;
    assert_eq!(events.len(), want.len() + 1);
    let balances = [
        escrow(&m).await,
        m.stranger.balance(account(1)).await.unwrap(),
        m.stranger.balance(account(2)).await.unwrap(),
    ];
    let requests: Vec<_> = requests_1_to_4(&m).await;
    let (address, deployed_at) = (m.address, m.deployed_at);
    drop(m);

    let l1 = RevmL1::open(
        Some(&path),
        proofmill_l1::RevmConfig::dev(Default::default()),
    )
    .unwrap();
    let m = Market::on_revm(l1, address, deployed_at);
    assert_eq!(m.stranger.head().await.unwrap(), head);
    assert_eq!(all_events(&m).await, events);
    assert_eq!(
        [
            escrow(&m).await,
            m.stranger.balance(account(1)).await.unwrap(),
            m.stranger.balance(account(2)).await.unwrap(),
        ],
        balances
    );
    assert_eq!(requests_1_to_4(&m).await, requests);
    // And it goes on from there.
    mined(
        m.submitter
            .submit_proof_request(id(9), &params(eth(1), 1200), eth(1))
            .await,
    );
}

async fn requests_1_to_4(m: &Market) -> Vec<Option<proofmill_market::Request>> {
    let mut out = Vec::new();
    for batch in 1..=4 {
        out.push(m.stranger.request(id(batch)).await.unwrap());
    }
    out
}

/// A node that goes away: every call, and the watcher's poll, comes back as a transient error
/// value (retry later), never a refusal and never a panic.
#[tokio::test]
async fn a_dead_node_is_a_transient_error_value() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let anvil = Anvil::start();
    let deployer =
        proofmill_l1::RpcL1::new(&anvil.url, DEV_KEYS[0], Default::default(), fast_cfg())
            .await
            .unwrap();
    let address = deploy_market(&deployer, &settings()).await.unwrap();
    let submitter: Arc<dyn MarketL1> = Arc::new(
        RpcMarket::connect(&anvil.url, DEV_KEYS[1], address, fast_cfg())
            .await
            .unwrap(),
    );
    let mut w = MarketWatcher::new(submitter.clone(), WatcherConfig::default());
    assert!(w.poll(0).await.unwrap().caught_up);
    let url = anvil.url.clone();
    drop(anvil); // killed and reaped

    let err = w.poll(0).await.unwrap_err();
    assert!(err.is_transient() && err.refusal().is_none(), "{err:?}");
    let err = submitter
        .submit_proof_request(id(1), &params(eth(1), 1200), eth(1))
        .await
        .unwrap_err();
    assert!(err.is_transient() && err.refusal().is_none(), "{err:?}");
    let err = submitter.request(id(1)).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    let err = RpcMarket::connect(&url, DEV_KEYS[1], address, fast_cfg())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}
