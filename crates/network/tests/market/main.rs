//! The network's daemon against the real `ProofMarket` bytecode on the embedded revm L1, with
//! a real coordinator and an `exec` prover on loopback sockets, and real devnet batches; the
//! test plays the rollup (the submitter posts requests with inputs in a `file://` directory
//! and validates proofs with the exec backend's verify). The happy path up to the claim, a
//! reward under the minimum, a deadline too close, inputs whose digest is not the request's,
//! a daemon stopped after acknowledging and started again on the same state directory, and
//! faults of the L1 node and the coordinator (`faults`).

mod faults;
mod world;

use world::*;

use proofmill_backend::Backend as _;
use proofmill_devnet::ExecBackend;
use proofmill_market::{MarketEvent, MarketL1, RequestStatus, U256};
use proofmill_network::{NetworkState, Status};
use proofmill_proto::v1::client_service_client::ClientServiceClient;
use proofmill_proto::v1::{BatchPhase, GetBatchRequest};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_accepted_proven_posted_validated_and_paid_once() {
    let mut w = World::new().await;
    w.start_prover();
    let mut cfg = w.config();
    let ask = eth(1) / U256::from(2);
    cfg.ask_reward = Some(ask);
    let (shutdown, task) = w.start_network(cfg);
    let (n, url, digest) = w.next_batch();
    let balance_before = w.submitter.balance(account(2)).await.unwrap();
    w.request(n, &url, digest, eth(1), 1_200).await;

    w.until_status(n, RequestStatus::Proven).await;
    let events = w.events().await;
    let proof = events
        .iter()
        .find_map(|e| match e {
            MarketEvent::Proven {
                id: i,
                proof,
                requested_reward,
                network,
                ..
            } if *i == id(n) => {
                assert_eq!((*requested_reward, *network), (ask, account(2)));
                Some(proof.clone())
            }
            _ => None,
        })
        .expect("a Proven event");
    ExecBackend
        .verify(&w.public_values(n), &proof)
        .expect("the posted proof is valid");
    let entry = w.until_entry(n, Status::ProofPosted).await;
    assert!(
        entry.ack_tx.is_some() && entry.proof_tx.is_some(),
        "{entry:?}"
    );
    assert_eq!(entry.proof_type.as_deref(), Some("exec"));

    w.submitter
        .submit_validation_result(id(n), true)
        .await
        .unwrap();
    let entry = w.until_entry(n, Status::Claimed).await;
    assert!(entry.claim_tx.is_some(), "{entry:?}");
    assert_eq!(entry.earned, Some(ask.to_string()));
    assert_eq!(w.network.earned(account(2)).await.unwrap(), U256::ZERO);
    // Paid exactly the asked reward (the embedded L1 charges no gas).
    assert_eq!(
        w.submitter.balance(account(2)).await.unwrap(),
        balance_before + ask
    );
    // A few more rounds: nothing is sent again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop(shutdown, task).await;
    let events = w.events().await;
    let mine = |e: &MarketEvent| e.network() == Some(account(2));
    assert_eq!(
        count(&events, |e| matches!(
            e,
            MarketEvent::Acknowledged { accepted: true, .. }
        )),
        1
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Proven { .. })),
        1
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::RewardClaimed { .. })),
        1
    );
    assert!(events.iter().filter(|e| e.request_id().is_some()).all(mine));
    let state = NetworkState::load(&w.state_dir(), w.market, account(2))
        .unwrap()
        .unwrap();
    assert!(!state.prove_secs.is_empty(), "the prove time was measured");
    w.stop().await;
}

/// A new state directory without `from_block` reads from the start of the last
/// acknowledgement window: a request assigned before the daemon's first start is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_made_before_the_first_start_is_taken() {
    let mut w = World::new().await;
    w.start_prover();
    let (n, url, digest) = w.next_batch();
    w.request(n, &url, digest, eth(1), 1_200).await;
    let mut cfg = w.config();
    cfg.from_block = None;
    let (shutdown, task) = w.start_network(cfg);
    w.until_status(n, RequestStatus::Proven).await;
    stop(shutdown, task).await;
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_it_cannot_serve_are_refused_with_the_reason() {
    let mut w = World::new().await;
    let (shutdown, task) = w.start_network(w.config());
    // A reward under the minimum (0.1 ETH).
    let (cheap, url, digest) = w.next_batch();
    w.request(cheap, &url, digest, eth(1) / U256::from(20), 1_200)
        .await;
    // A deadline closer than the estimate (30 s × 2 + 60 s = 120 s).
    let (rushed, url, digest) = w.next_batch();
    w.request(rushed, &url, digest, eth(1), 100).await;
    // Inputs that are not those the request names.
    let (forged, url, _) = w.next_batch();
    w.request(forged, &url, [0x5a; 32], eth(1), 1_200).await;
    // No such file.
    let (lost, _, digest) = w.next_batch();
    let missing = url_of(&w.inputs_dir().join("nowhere.bin"));
    w.request(lost, &missing, digest, eth(1), 1_200).await;
    // A proof type its coordinator does not prove.
    let (alien, url, digest) = w.next_batch_of("groth16");
    w.request(alien, &url, digest, eth(1), 1_200).await;

    for (batch, reason) in [
        (cheap, "under the minimum"),
        (rushed, "left to the deadline"),
        (forged, "SHA-256"),
        (lost, "not a file under"),
        (alien, "the coordinator refuses them"),
    ] {
        w.until_status(batch, RequestStatus::Refused).await;
        let e = w.until_entry(batch, Status::Refused).await;
        let why = e.reason.clone().unwrap_or_default();
        assert!(why.contains(reason), "batch {batch}: {why}");
        assert!(e.ack_tx.is_some());
    }
    stop(shutdown, task).await;
    // Nothing reached the coordinator, nothing was posted.
    for batch in [cheap, rushed, forged, lost, alien] {
        assert!(
            w.coordinator
                .store()
                .batch(CHAIN, batch)
                .await
                .unwrap()
                .is_none(),
            "batch {batch}"
        );
    }
    let events = w.events().await;
    assert_eq!(
        count(&events, |e| matches!(
            e,
            MarketEvent::Acknowledged {
                accepted: false,
                ..
            }
        )),
        5
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Proven { .. })),
        0
    );
    w.stop().await;
}

/// A world with its prover, and the network started taking at most one unvalidated proof
/// per rollup.
async fn one_unvalidated_proof_per_rollup() -> (
    World,
    proofmill_network::Shutdown,
    tokio::task::JoinHandle<Result<(), proofmill_network::NetworkError>>,
) {
    let mut w = World::new().await;
    w.start_prover();
    let mut cfg = w.config();
    cfg.admission.max_awaiting_validation = 1;
    let (shutdown, task) = w.start_network(cfg);
    (w, shutdown, task)
}

/// A rollup that leaves the network's proofs unvalidated gets no more work from it until it
/// validates them (so a rollup that never does cannot grow the network's state either).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_that_does_not_validate_gets_no_more_work_until_it_does() {
    let (mut w, shutdown, task) = one_unvalidated_proof_per_rollup().await;
    let first = w.request_next_until_posted().await;

    let (second, url, digest) = w.next_batch();
    w.request(second, &url, digest, eth(1), 1_200).await;
    w.until_status(second, RequestStatus::Refused).await;
    let why = w.until_entry(second, Status::Refused).await.reason;
    let expected = format!("1 of this network's proofs for chain {CHAIN} await");
    assert!(
        why.as_deref().is_some_and(|r| r.contains(&expected)),
        "{why:?}"
    );

    w.submitter
        .submit_validation_result(id(first), true)
        .await
        .unwrap();
    w.until_entry(first, Status::Claimed).await;
    w.request_next_until_posted().await;
    stop(shutdown, task).await;
    w.stop().await;
}

/// A rollup that never answers a proof does not keep the network's pay: once the market's
/// validation timeout has passed, the network closes the request, is paid what it asked (and
/// claims it once), the rollup's late verdict is refused, and the rollup gets work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proof_left_unanswered_is_paid_once_the_validation_timeout_passes() {
    let (mut w, shutdown, task) = one_unvalidated_proof_per_rollup().await;
    let first = w.request_next_until_posted().await;
    // Within the window the network waits for the verdict.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(w.status(first).await, RequestStatus::Proven);
    let due = w.submitter.request(id(first)).await.unwrap().unwrap();
    assert!(due.validation_deadline > 0, "{due:?}");

    w.network.chain().advance_time(VALIDATION_TIMEOUT + 1);
    let entry = w.until_entry(first, Status::Claimed).await;
    assert_eq!(w.status(first).await, RequestStatus::ValidationTimedOut);
    assert_eq!(entry.earned, Some(eth(1).to_string()), "{entry:?}");
    assert_eq!(entry.validation_deadline, Some(due.validation_deadline));
    let late = w.submitter.submit_validation_result(id(first), false).await;
    assert!(
        matches!(
            late,
            Err(proofmill_market::MarketError::Refused {
                revert: proofmill_market::MarketRevert::AlreadyValidated(_),
                ..
            })
        ),
        "{late:?}"
    );
    let events = w.events().await;
    assert_eq!(
        count(
            &events,
            |e| matches!(e, MarketEvent::ValidationTimedOut { reward, .. } if *reward == eth(1))
        ),
        1
    );
    assert_eq!(
        count(&events, |e| matches!(
            e,
            MarketEvent::ValidationResult { .. }
        )),
        0
    );
    assert_eq!(
        count(
            &events,
            |e| matches!(e, MarketEvent::RewardClaimed { amount, .. } if *amount == eth(1))
        ),
        1
    );

    // No longer awaiting a verdict, so the rollup's next request is taken.
    w.request_next_until_posted().await;
    stop(shutdown, task).await;
    w.stop().await;
}

/// Stopped after it acknowledged (no prover yet, so no proof), the daemon starts again on the
/// same state directory: it takes the request up where it was and posts its proof once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_the_acknowledgement_proves_and_posts_once() {
    let mut w = World::new().await;
    let (shutdown, task) = w.start_network(w.config());
    let (n, url, digest) = w.next_batch();
    w.request(n, &url, digest, eth(1), 1_200).await;
    w.until_status(n, RequestStatus::Committed).await;
    w.until_entry(n, Status::Proving).await;
    stop(shutdown, task).await;
    assert_eq!(w.status(n).await, RequestStatus::Committed);

    w.start_prover();
    let (shutdown, task) = w.start_network(w.config());
    w.until_status(n, RequestStatus::Proven).await;
    w.until_entry(n, Status::ProofPosted).await;
    w.submitter
        .submit_validation_result(id(n), true)
        .await
        .unwrap();
    w.until_entry(n, Status::Claimed).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    stop(shutdown, task).await;

    // Once more on the same state: nothing left to do, nothing sent.
    let before = w.events().await.len();
    let (shutdown, task) = w.start_network(w.config());
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop(shutdown, task).await;
    let events = w.events().await;
    assert_eq!(events.len(), before);
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Acknowledged { .. })),
        1
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Proven { .. })),
        1
    );
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::RewardClaimed { .. })),
        1
    );
    let proof = events
        .iter()
        .find_map(|e| match e {
            MarketEvent::Proven { proof, .. } => Some(proof.clone()),
            _ => None,
        })
        .unwrap();
    ExecBackend.verify(&w.public_values(n), &proof).unwrap();
    w.stop().await;
}

/// With room for one request, a second is refused; the first, accepted but never proven (no
/// prover), is given up once the last moment to post it passed on the chain's clock, and
/// never posted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_capacity_a_request_is_refused_and_one_not_proven_in_time_is_given_up() {
    let mut w = World::new().await;
    let mut cfg = w.config();
    cfg.admission.max_in_flight = 1;
    let (shutdown, task) = w.start_network(cfg);
    let (first, url, digest) = w.next_batch();
    w.request(first, &url, digest, eth(1), 1_200).await;
    w.until_entry(first, Status::Proving).await;
    let (second, url, digest) = w.next_batch();
    w.request(second, &url, digest, eth(1), 1_200).await;
    let e = w.until_entry(second, Status::Refused).await;
    assert!(e.reason.unwrap().contains("at capacity"));
    assert_eq!(w.status(second).await, RequestStatus::Refused);

    // Past the deadline less the margin (60 s): not posted, given up.
    w.network.chain().advance_time(1_200 - 30);
    let e = w.until_entry(first, Status::GivenUp).await;
    assert!(e.reason.unwrap().contains("not proven in time"));
    assert_eq!(w.status(first).await, RequestStatus::Committed);
    // It was handed over, and its coordinator was told to stop proving it.
    let mut client = ClientServiceClient::connect(w.coordinator_url.clone())
        .await
        .unwrap();
    let state = client
        .get_batch(GetBatchRequest {
            chain_id: CHAIN,
            batch_number: first,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(state.phase, BatchPhase::BatchCancelled as i32, "{state:?}");
    w.start_prover();
    tokio::time::sleep(Duration::from_millis(800)).await;
    stop(shutdown, task).await;
    let events = w.events().await;
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Proven { .. })),
        0
    );
    w.stop().await;
}

/// Stopped after it acknowledged, the daemon starts again against a coordinator that does not
/// hold the batch: it fetches the inputs again, hands them over, proves and posts once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_against_a_coordinator_without_the_batch_fetches_it_again() {
    let mut w = World::new().await;
    let (shutdown, task) = w.start_network(w.config());
    let (n, url, digest) = w.next_batch();
    w.request(n, &url, digest, eth(1), 1_200).await;
    w.until_entry(n, Status::Proving).await;
    stop(shutdown, task).await;
    w.replace_coordinator().await;
    assert!(
        w.coordinator
            .store()
            .batch(CHAIN, n)
            .await
            .unwrap()
            .is_none()
    );
    w.start_prover();
    let (shutdown, task) = w.start_network(w.config());
    w.until_status(n, RequestStatus::Proven).await;
    w.until_entry(n, Status::ProofPosted).await;
    stop(shutdown, task).await;
    assert!(
        w.coordinator
            .store()
            .batch(CHAIN, n)
            .await
            .unwrap()
            .is_some()
    );
    let events = w.events().await;
    assert_eq!(
        count(&events, |e| matches!(e, MarketEvent::Acknowledged { .. })),
        1
    );
    let proofs: Vec<Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            MarketEvent::Proven { proof, .. } => Some(proof.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(proofs.len(), 1);
    ExecBackend.verify(&w.public_values(n), &proofs[0]).unwrap();
    w.stop().await;
}
