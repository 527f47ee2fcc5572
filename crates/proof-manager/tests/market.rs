//! The state machine driving the real `ProofMarket` bytecode on the embedded revm L1, with its
//! rows in a real (SQLite) store and the market's events read by `MarketWatcher` from the
//! stored cursor: the happy path with two networks taking turns (and the reward claimed
//! once), a network that refuses, one that never acknowledges, one that acknowledges and
//! never proves, one that posts an invalid proof, and a manager restarted between sending a
//! request and recording it.

use proofmill_l1::{DEV_ACCOUNTS, RevmConfig, RevmL1};
use proofmill_market::{
    Address, MarketError, MarketEvent, MarketEvents, MarketL1, MarketRevert, MarketSettings,
    MarketWatcher, RequestId, RequestStatus, RevmMarket, U256, WatcherConfig, deploy_market,
};
use proofmill_proof_manager::{
    Action, ManagerConfig, Outcome, ProvingMode, apply_event, apply_outcome, next_action,
};
use proofmill_store::{
    FallbackReason, MarketCursor, ProofRequest, ProofRequestFilter, ProofRequestStatus,
    ProofRequests, Store, ValidationStatus, open_store,
};
use proofmill_types::Digest;
use std::collections::HashMap;
use std::sync::Arc;

const CHAIN: u64 = 7;
const ACK_TIMEOUT: u64 = 600;
const TIMEOUT_AFTER: u64 = 1_200;

fn account(i: usize) -> Address {
    DEV_ACCOUNTS[i].parse().unwrap()
}

fn eth(n: u64) -> U256 {
    U256::from(n) * U256::from(10u64).pow(U256::from(18))
}

fn id(batch: u64) -> RequestId {
    RequestId::new(CHAIN, batch)
}

/// The proof a network must post for `batch` to pass the local check (the test's backend).
fn good_proof(batch: u64) -> Vec<u8> {
    vec![batch as u8; 64]
}

/// A chain with a deployed market and clients for the admin (0), the rollup's submitter (1),
/// and networks n1 (2) and n2 (3).
struct Chain {
    l1: RevmL1,
    market: Address,
    deployed_at: u64,
    admin: RevmMarket,
    n1: RevmMarket,
    n2: RevmMarket,
}

impl Chain {
    async fn new() -> Chain {
        let l1 = RevmL1::open(None, RevmConfig::dev(Default::default())).unwrap();
        let settings = MarketSettings {
            admin: account(0),
            submitter: account(1),
            ack_timeout: ACK_TIMEOUT,
            max_timeout_after: 3_600,
            validation_timeout: 86_400,
        };
        let market = deploy_market(&l1.with_sender(account(0)), &settings)
            .await
            .unwrap();
        let client = |i| RevmMarket::new(l1.with_sender(account(i)), market);
        let chain = Chain {
            deployed_at: l1.block_number(),
            admin: client(0),
            n1: client(2),
            n2: client(3),
            l1,
            market,
        };
        for n in [account(2), account(3)] {
            chain.admin.update_proving_network(n, true).await.unwrap();
        }
        chain
    }

    fn submitter(&self) -> Arc<RevmMarket> {
        Arc::new(RevmMarket::new(
            self.l1.with_sender(account(1)),
            self.market,
        ))
    }

    async fn status(&self, batch: u64) -> RequestStatus {
        self.admin.request(id(batch)).await.unwrap().unwrap().status
    }

    async fn escrow(&self) -> U256 {
        self.admin.balance(self.market).await.unwrap()
    }
}

/// The rollup's proof manager as a driver would run it: rows in the store, events from the
/// watcher, actions on the market; the own fleet and the proof blob store are recorded.
struct Manager {
    _store: Arc<dyn Store>,
    table: Arc<dyn ProofRequests>,
    submitter: Arc<RevmMarket>,
    watcher: MarketWatcher,
    cfg: ManagerConfig,
    market: String,
    deployed_at: u64,
    /// Proofs seen in `ProofRequestProven` events, by batch (the proof blob store).
    proofs: HashMap<u64, Vec<u8>>,
    /// Batches handed to the own provers.
    fell_back: Vec<(u64, FallbackReason)>,
    /// Valid proofs stored as their batch's proof.
    accepted: Vec<u64>,
    /// Every L1 transaction the manager sent (mined).
    sent: Vec<Action>,
    clock_ms: u64,
}

impl Manager {
    async fn open(chain: &Chain, store_url: &str) -> Manager {
        let store = open_store(store_url).await.unwrap();
        let table = store.clone().proof_requests().unwrap();
        let submitter = chain.submitter();
        let source: Arc<dyn MarketEvents> = submitter.clone();
        Manager {
            _store: store,
            table,
            watcher: MarketWatcher::new(
                source,
                WatcherConfig {
                    confirmations: 0,
                    max_block_range: 10_000,
                },
            ),
            cfg: ManagerConfig {
                protocol_version: "devnet-v1".into(),
                timeout_after: TIMEOUT_AFTER,
                max_reward: eth(1),
                ack_timeout: chain.admin.settings().await.unwrap().ack_timeout,
            },
            market: chain.market.to_string(),
            deployed_at: chain.deployed_at,
            submitter,
            proofs: HashMap::new(),
            fell_back: Vec::new(),
            accepted: Vec::new(),
            sent: Vec::new(),
            clock_ms: 1_000,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock_ms += 1;
        self.clock_ms
    }

    /// The readiness checker: `batch`'s inputs are published, it is offered.
    async fn offer(&mut self, batch: u64) {
        let now = self.tick();
        let row = ProofRequest::ready(
            CHAIN,
            batch,
            format!("https://inputs.example/{CHAIN}/{batch}.bin"),
            Digest::sha256(&batch.to_le_bytes()),
            now,
        );
        assert!(self.table.insert_proof_request(&row).await.unwrap());
    }

    async fn row(&self, batch: u64) -> ProofRequest {
        self.table
            .proof_request(CHAIN, batch)
            .await
            .unwrap()
            .unwrap()
    }

    /// One round: read the new events into the rows (with the cursor, in one write), then
    /// act on every open row until it waits.
    async fn round(&mut self) {
        let cursor = self
            .table
            .market_cursor(&self.market, CHAIN)
            .await
            .unwrap()
            .unwrap_or(self.deployed_at);
        let read = self.watcher.poll(cursor).await.unwrap();
        assert!(read.caught_up);
        let open = ProofRequestFilter {
            chain: Some(CHAIN),
            open_only: true,
            ..Default::default()
        };
        let mut rows = self.table.list_proof_requests(&open).await.unwrap();
        let now_ms = self.tick();
        let mut changed = Vec::new();
        for row in rows.iter_mut() {
            let mut touched = false;
            for e in &read.events {
                if let MarketEvent::Proven { id, proof, .. } = e
                    && id.batch == row.batch
                {
                    self.proofs.insert(row.batch, proof.clone());
                }
                touched |= apply_event(row, e, now_ms);
            }
            if touched {
                changed.push(row.clone());
            }
        }
        let cursor = MarketCursor {
            market: self.market.clone(),
            chain: CHAIN,
            last_block: read.last_processed,
        };
        self.table
            .update_proof_requests(&changed, Some(&cursor))
            .await
            .unwrap();
        // The chain time of the last processed block (0 confirmations: the head).
        let head = self.submitter.head().await.unwrap();
        assert_eq!(head.number, read.last_processed);
        let now = head.timestamp;
        for mut row in rows {
            for _ in 0..10 {
                let action = next_action(&row, now, &self.cfg);
                if action == Action::Wait {
                    break;
                }
                let outcome = self.perform(&action).await;
                let now_ms = self.tick();
                apply_outcome(&mut row, &outcome, &self.cfg, now_ms).unwrap();
                self.table
                    .update_proof_requests(std::slice::from_ref(&row), None)
                    .await
                    .unwrap();
            }
        }
    }

    async fn perform(&mut self, action: &Action) -> Outcome {
        let s = self.submitter.clone();
        match action {
            Action::Wait => unreachable!(),
            Action::SendRequest { id, params, escrow } => {
                match s.submit_proof_request(*id, params, *escrow).await {
                    Ok(tx) => {
                        self.sent.push(action.clone());
                        Outcome::RequestSent {
                            tx_hash: tx.tx_hash,
                        }
                    }
                    Err(MarketError::Refused {
                        revert: MarketRevert::RequestExists(_),
                        ..
                    }) => Outcome::RequestExists,
                    Err(MarketError::Refused { .. }) => Outcome::RequestRefused,
                    Err(e) => panic!("{e}"),
                }
            }
            Action::LookUpRequest(id) => Outcome::Found(s.request(*id).await.unwrap()),
            Action::VerifyProof(id) => {
                let proof = &self.proofs[&id.batch];
                let valid = *proof == good_proof(id.batch);
                if valid {
                    self.accepted.push(id.batch);
                }
                Outcome::Verified {
                    valid,
                    proof_url: Some(format!("mem://proofs/{}/{}", id.chain_id, id.batch)),
                }
            }
            Action::SendValidation { id, valid } => {
                match s.submit_validation_result(*id, *valid).await {
                    Ok(tx) => {
                        self.sent.push(action.clone());
                        Outcome::ValidationSent {
                            valid: *valid,
                            tx_hash: tx.tx_hash,
                        }
                    }
                    Err(MarketError::Refused {
                        revert: MarketRevert::AlreadyValidated(_),
                        ..
                    }) => Outcome::AlreadyValidated,
                    Err(e) => panic!("{e}"),
                }
            }
            Action::FallBack { id, reason } => {
                self.fell_back.push((id.batch, *reason));
                Outcome::FellBack { reason: *reason }
            }
            Action::CloseTimedOut(id) => match s.close_timed_out_request(*id).await {
                Ok(tx) => {
                    self.sent.push(action.clone());
                    Outcome::Closed {
                        tx_hash: tx.tx_hash,
                    }
                }
                Err(MarketError::Refused {
                    revert: MarketRevert::NotTimedOut(_),
                    ..
                }) => Outcome::Found(s.request(*id).await.unwrap()),
                Err(e) => panic!("{e}"),
            },
        }
    }

    fn sends(&self, kind: fn(&Action) -> bool) -> usize {
        self.sent.iter().filter(|a| kind(a)).count()
    }
}

fn is_request(a: &Action) -> bool {
    matches!(a, Action::SendRequest { .. })
}
fn is_validation(a: &Action) -> bool {
    matches!(a, Action::SendValidation { .. })
}
fn is_close(a: &Action) -> bool {
    matches!(a, Action::CloseTimedOut(_))
}

fn sqlite_url(dir: &tempfile::TempDir) -> String {
    format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("rollup.db").display()
    )
}

#[tokio::test]
async fn two_networks_take_turns_and_are_paid_once() {
    let chain = Chain::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manager::open(&chain, &sqlite_url(&dir)).await;
    let mode = ProvingMode::from_flags("network", None).unwrap();
    for batch in [1, 2] {
        assert!(mode.offers(batch));
        m.offer(batch).await;
    }
    m.round().await;
    // Round-robin: batch 1 to n1, batch 2 to n2; both escrows held.
    for (batch, network) in [(1, account(2)), (2, account(3))] {
        let row = m.row(batch).await;
        assert_eq!(row.status, ProofRequestStatus::RequestSentToL1, "{row:?}");
        assert_eq!(row.assigned_to, Some(network.to_string()));
        assert!(row.request_tx_hash.is_some() && row.request_sent_at.is_some());
        let on_l1 = chain.admin.request(id(batch)).await.unwrap().unwrap();
        assert_eq!(row.deadline, Some(on_l1.deadline));
        assert_eq!(row.ack_deadline, Some(on_l1.submitted_at + ACK_TIMEOUT));
        assert_eq!(on_l1.network, network);
    }
    assert_eq!(chain.escrow().await, eth(2));

    chain.n1.acknowledge(id(1), true).await.unwrap();
    chain.n2.acknowledge(id(2), true).await.unwrap();
    m.round().await;
    assert_eq!(m.row(1).await.status, ProofRequestStatus::Acknowledged);
    let reward = eth(1) / U256::from(4);
    chain
        .n1
        .submit_proof(id(1), &good_proof(1), reward)
        .await
        .unwrap();
    chain
        .n2
        .submit_proof(id(2), &good_proof(2), reward)
        .await
        .unwrap();
    m.round().await;

    for batch in [1, 2] {
        let row = m.row(batch).await;
        assert_eq!(
            row.status,
            ProofRequestStatus::ValidationResultSentToL1,
            "{row:?}"
        );
        assert_eq!(row.validation_status, ValidationStatus::Valid);
        assert!(!row.fallbacked && row.fallback_reason.is_none());
        assert!(row.validation_tx_hash.is_some() && row.validation_sent_at.is_some());
        assert_eq!(row.proof_url, Some(format!("mem://proofs/{CHAIN}/{batch}")));
        assert!(row.is_done());
        assert_eq!(chain.status(batch).await, RequestStatus::Validated);
    }
    assert_eq!(m.accepted, vec![1, 2]);
    assert!(m.fell_back.is_empty());
    assert_eq!((m.sends(is_request), m.sends(is_validation)), (2, 2));
    // The unasked part of each escrow went back; the rewards wait to be claimed, once.
    assert_eq!(chain.escrow().await, reward * U256::from(2));
    for n in [&chain.n1, &chain.n2] {
        n.claim_reward().await.unwrap();
        assert!(matches!(
            n.claim_reward().await.unwrap_err().refusal(),
            Some(MarketRevert::NothingToClaim { .. })
        ));
    }
    assert_eq!(chain.escrow().await, U256::ZERO);

    // The stored row says what L1 says: the hashes are those of the events.
    m.round().await;
    let events = chain
        .admin
        .events(chain.deployed_at, chain.admin.head().await.unwrap().number)
        .await
        .unwrap();
    let tx_of = |want: fn(&MarketEvent) -> bool| {
        events
            .iter()
            .find(|e| e.request_id() == Some(id(1)) && want(e))
            .map(|e| proofmill_market::hex_hash(&e.at().tx_hash))
    };
    let row = m.row(1).await;
    assert_eq!(
        row.request_tx_hash,
        tx_of(|e| matches!(e, MarketEvent::Submitted { .. }))
    );
    assert_eq!(
        row.validation_tx_hash,
        tx_of(|e| matches!(e, MarketEvent::ValidationResult { .. }))
    );
    // Nothing more to do, ever.
    assert_eq!(m.sent.len(), 4);
}

#[tokio::test]
async fn a_refusal_falls_back_at_once() {
    let chain = Chain::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manager::open(&chain, &sqlite_url(&dir)).await;
    m.offer(1).await;
    m.round().await;
    chain.n1.acknowledge(id(1), false).await.unwrap();
    m.round().await;
    let row = m.row(1).await;
    assert_eq!(row.status, ProofRequestStatus::Refused);
    assert_eq!(row.fallback_reason, Some(FallbackReason::Refused));
    assert!(row.fallbacked && row.is_done());
    assert_eq!(row.validation_status, ValidationStatus::None);
    assert_eq!(m.fell_back, vec![(1, FallbackReason::Refused)]);
    assert_eq!(chain.escrow().await, U256::ZERO, "refunded");
    // Nothing to close: the contract closed it.
    assert_eq!(m.sends(is_close), 0);
    m.round().await;
    assert_eq!(m.fell_back.len(), 1);
}

#[tokio::test]
async fn a_silent_network_is_fallen_back_on_after_the_ack_timeout() {
    let chain = Chain::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manager::open(&chain, &sqlite_url(&dir)).await;
    m.offer(1).await;
    m.round().await;
    let ack_deadline = m.row(1).await.ack_deadline.unwrap();
    // Up to the deadline itself, the network may still answer: nothing happens.
    let mut quiet_rounds = 0;
    while chain.admin.head().await.unwrap().timestamp + 120 <= ack_deadline {
        chain.l1.advance_time(120);
        m.round().await;
        quiet_rounds += 1;
        let row = m.row(1).await;
        assert_eq!(row.status, ProofRequestStatus::RequestSentToL1);
        assert!(!row.fallbacked && m.fell_back.is_empty());
    }
    assert!(quiet_rounds >= 3, "{quiet_rounds}");
    chain.l1.advance_time(ACK_TIMEOUT);
    m.round().await;
    let row = m.row(1).await;
    assert_eq!(row.status, ProofRequestStatus::TimedOut, "{row:?}");
    assert_eq!(row.fallback_reason, Some(FallbackReason::NotAcknowledged));
    assert!(row.fallbacked && row.is_done());
    assert_eq!(m.fell_back, vec![(1, FallbackReason::NotAcknowledged)]);
    assert_eq!(m.sends(is_close), 1);
    assert_eq!(chain.status(1).await, RequestStatus::TimedOut);
    assert_eq!(chain.escrow().await, U256::ZERO, "refunded");
    // Too late for the network now.
    assert!(matches!(
        chain
            .n1
            .acknowledge(id(1), true)
            .await
            .unwrap_err()
            .refusal(),
        Some(MarketRevert::WrongStatus { .. })
    ));
    m.round().await;
    assert_eq!((m.fell_back.len(), m.sends(is_close)), (1, 1));
}

#[tokio::test]
async fn an_accepted_request_never_proven_falls_back_after_the_deadline() {
    let chain = Chain::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manager::open(&chain, &sqlite_url(&dir)).await;
    m.offer(1).await;
    m.round().await;
    chain.n1.acknowledge(id(1), true).await.unwrap();
    // Past the acknowledgement timeout but not the deadline: accepted, so it waits.
    chain.l1.advance_time(ACK_TIMEOUT + 60);
    m.round().await;
    let row = m.row(1).await;
    assert_eq!(row.status, ProofRequestStatus::Acknowledged);
    assert!(!row.fallbacked);
    chain.l1.advance_time(TIMEOUT_AFTER);
    m.round().await;
    let row = m.row(1).await;
    assert_eq!(row.status, ProofRequestStatus::TimedOut, "{row:?}");
    assert_eq!(row.fallback_reason, Some(FallbackReason::NotProven));
    assert!(row.fallbacked && row.is_done());
    assert_eq!(m.fell_back, vec![(1, FallbackReason::NotProven)]);
    assert_eq!(chain.status(1).await, RequestStatus::TimedOut);
    assert_eq!(chain.escrow().await, U256::ZERO);
    assert!(matches!(
        chain
            .n1
            .submit_proof(id(1), &good_proof(1), U256::ZERO)
            .await
            .unwrap_err()
            .refusal(),
        Some(MarketRevert::WrongStatus { .. })
    ));
}

#[tokio::test]
async fn an_invalid_proof_is_answered_false_unpaid_and_fallen_back_on() {
    let chain = Chain::new().await;
    let dir = tempfile::tempdir().unwrap();
    let mut m = Manager::open(&chain, &sqlite_url(&dir)).await;
    m.offer(1).await;
    m.round().await;
    chain.n1.acknowledge(id(1), true).await.unwrap();
    chain
        .n1
        .submit_proof(id(1), &[0xee; 64], eth(1))
        .await
        .unwrap();
    m.round().await;
    let row = m.row(1).await;
    assert_eq!(row.status, ProofRequestStatus::ValidationResultSentToL1);
    assert_eq!(row.validation_status, ValidationStatus::Invalid);
    assert_eq!(row.fallback_reason, Some(FallbackReason::InvalidProof));
    assert!(row.fallbacked && row.is_done());
    assert!(m.accepted.is_empty());
    assert_eq!(m.fell_back, vec![(1, FallbackReason::InvalidProof)]);
    assert_eq!(
        m.sent
            .iter()
            .filter(|a| is_validation(a))
            .collect::<Vec<_>>(),
        vec![&Action::SendValidation {
            id: id(1),
            valid: false
        }]
    );
    assert_eq!(chain.status(1).await, RequestStatus::ValidationFailed);
    assert_eq!(chain.n1.earned(account(2)).await.unwrap(), U256::ZERO);
    assert!(matches!(
        chain.n1.claim_reward().await.unwrap_err().refusal(),
        Some(MarketRevert::NothingToClaim { .. })
    ));
    assert_eq!(chain.escrow().await, U256::ZERO, "all of it went back");
}

/// The manager sends a request and dies before recording it; restarted on the same store,
/// it sends nothing twice (the market says the request exists), reads the events it missed
/// from its cursor, and finishes the request.
#[tokio::test]
async fn a_restart_between_sending_and_recording_sends_nothing_twice() {
    let chain = Chain::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let mut m = Manager::open(&chain, &url).await;
    m.offer(1).await;
    m.offer(2).await;
    m.round().await;
    // Batch 3: sent, then the process dies before the row is written.
    m.offer(3).await;
    let row = m.row(3).await;
    let Action::SendRequest {
        id: rid,
        params,
        escrow,
    } = next_action(&row, 0, &m.cfg)
    else {
        panic!("a ready row is sent");
    };
    m.submitter
        .submit_proof_request(rid, &params, escrow)
        .await
        .unwrap();
    drop(m);
    chain.n1.acknowledge(id(1), true).await.unwrap();
    chain
        .n1
        .submit_proof(id(1), &good_proof(1), eth(1))
        .await
        .unwrap();
    chain.n2.acknowledge(id(2), false).await.unwrap();

    let mut m = Manager::open(&chain, &url).await;
    m.round().await;
    assert_eq!(m.sends(is_request), 0, "{:?}", m.sent);
    let row = m.row(3).await;
    assert_eq!(row.status, ProofRequestStatus::RequestSentToL1, "{row:?}");
    assert!(row.request_tx_hash.is_some(), "taken from the event");
    assert!(row.ack_deadline.is_some());
    let one = m.row(1).await;
    assert_eq!(one.status, ProofRequestStatus::ValidationResultSentToL1);
    assert_eq!(one.validation_status, ValidationStatus::Valid);
    let two = m.row(2).await;
    assert_eq!(
        (two.status, two.fallback_reason, two.fallbacked),
        (
            ProofRequestStatus::Refused,
            Some(FallbackReason::Refused),
            true
        )
    );
    // Only batch 3 is left open.
    let open = m
        .table
        .list_proof_requests(&ProofRequestFilter {
            open_only: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(open.iter().map(|r| r.batch).collect::<Vec<_>>(), vec![3]);
}
