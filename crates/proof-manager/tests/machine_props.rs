//! Property tests of the request state machine.
//!
//! * Against a model of the `ProofMarket` contract and a proving network with random behavior
//!   (accepts, refuses or stays silent, proves in time, late, never, or wrongly), with the
//!   watcher lagging by random confirmations, random time steps, and crashes that lose an
//!   action's outcome or everything since the last write, and a validation window the
//!   manager may miss (the network then closes the request and is paid by default): every
//!   request ends done (validated valid, or fallen back with the right reason), no transaction succeeds twice, nothing is
//!   decided twice for one state without a crash, a batch is never both fallen back and
//!   validated valid, and an invalid proof always gets validation `false` and a fallback.
//! * Against an adversarial world that sends this request's events in any order, repeated,
//!   and answers actions arbitrarily (within what each action can return): the row's status
//!   never goes back, validation `true` is never sent for a batch that fell back, and a row
//!   never ends both fallen back and validated valid.

use proofmill_market::{
    Address, LogPosition, MarketEvent, Request, RequestId, RequestStatus, U256,
};
use proofmill_proof_manager::{
    Action, ManagerConfig, Outcome, apply_event, apply_outcome, next_action,
};
use proofmill_store::{FallbackReason, ProofRequest, ProofRequestStatus, ValidationStatus};
use proofmill_types::Digest;
use proptest::prelude::*;

const CHAIN: u64 = 7;
const BATCH: u64 = 3;
const BLOCK_TIME: u64 = 12;
const ACK_TIMEOUT: u64 = 600;
const TIMEOUT_AFTER: u64 = 1_800;

fn cfg() -> ManagerConfig {
    ManagerConfig {
        protocol_version: "v1".into(),
        timeout_after: TIMEOUT_AFTER,
        max_reward: U256::from(1_000u64),
        ack_timeout: ACK_TIMEOUT,
    }
}

fn id() -> RequestId {
    RequestId::new(CHAIN, BATCH)
}

fn network() -> Address {
    Address::repeat_byte(0x22)
}

fn fresh_row() -> ProofRequest {
    ProofRequest::ready(
        CHAIN,
        BATCH,
        "https://inputs.example/7/3.bin".into(),
        Digest::sha256(b"inputs"),
        1,
    )
}

/// What the network does with its request.
#[derive(Clone, Copy, Debug)]
enum Ack {
    Accept { after: u64 },
    Refuse { after: u64 },
    Silent,
}

#[derive(Clone, Copy, Debug)]
enum Prove {
    Valid { after: u64 },
    Invalid { after: u64 },
    Never,
}

#[derive(Clone, Debug)]
struct Scenario {
    no_network: bool,
    ack: Ack,
    prove: Prove,
    /// The market's validation timeout, seconds: short ones are often missed.
    validation_timeout: u64,
    /// Per step: seconds the chain moves on, the watcher's lag in blocks, crash kind.
    steps: Vec<(u64, u64, u8)>,
}

fn scenario(crashes: bool) -> impl Strategy<Value = Scenario> {
    let ack = prop_oneof![
        (0u64..900).prop_map(|after| Ack::Accept { after }),
        (0u64..900).prop_map(|after| Ack::Refuse { after }),
        Just(Ack::Silent),
    ];
    let prove = prop_oneof![
        (0u64..2_400).prop_map(|after| Prove::Valid { after }),
        (0u64..2_400).prop_map(|after| Prove::Invalid { after }),
        Just(Prove::Never),
    ];
    let crash = if crashes { 0u8..6 } else { 0u8..1 };
    let validation_timeout = prop_oneof![Just(24u64), Just(120), Just(100_000)];
    (
        proptest::bool::weighted(0.1),
        ack,
        prove,
        validation_timeout,
        proptest::collection::vec((0u64..240, 0u64..4, crash), 400),
    )
        .prop_map(
            |(no_network, ack, prove, validation_timeout, steps)| Scenario {
                no_network,
                ack,
                prove,
                validation_timeout,
                steps,
            },
        )
}

/// The contract, reduced to one request, with a log of blocks.
struct Model {
    /// Chain time of the head block; block `n` has time `n * BLOCK_TIME`.
    time: u64,
    request: Option<Request>,
    proof_valid: Option<bool>,
    validation_timeout: u64,
    events: Vec<MarketEvent>,
    posted_requests: u32,
    posted_validations: Vec<bool>,
    posted_closes: u32,
    next_tx: u8,
}

impl Model {
    fn head(&self) -> u64 {
        self.time / BLOCK_TIME
    }

    /// A transaction: mined in the next block.
    fn mine(&mut self) -> (u64, [u8; 32]) {
        self.time = (self.head() + 1) * BLOCK_TIME;
        self.next_tx = self.next_tx.wrapping_add(1);
        (self.time, [self.next_tx; 32])
    }

    fn at(&self, tx: [u8; 32]) -> LogPosition {
        LogPosition {
            block: self.head(),
            log_index: 0,
            tx_hash: tx,
        }
    }

    fn submit(&mut self) -> [u8; 32] {
        let (now, tx) = self.mine();
        let deadline = now + TIMEOUT_AFTER;
        self.request = Some(Request {
            network: network(),
            status: RequestStatus::PendingAcknowledgement,
            submitted_at: now,
            deadline,
            validation_deadline: 0,
            max_reward: U256::from(1_000u64),
            reward: U256::ZERO,
            inputs_digest: [0; 32],
            proof_hash: [0; 32],
        });
        self.posted_requests += 1;
        self.events.push(MarketEvent::Submitted {
            at: self.at(tx),
            id: id(),
            network: network(),
            protocol_version: "v1".into(),
            inputs_url: String::new(),
            inputs_digest: [0; 32],
            deadline,
            max_reward: U256::from(1_000u64),
        });
        tx
    }

    /// The network's move, if its time has come and the contract takes it.
    fn network_acts(&mut self, s: &Scenario) {
        let Some(r) = self.request.clone() else {
            return;
        };
        let next_time = (self.head() + 1) * BLOCK_TIME;
        match (r.status, s.ack, s.prove) {
            (RequestStatus::PendingAcknowledgement, Ack::Accept { after }, _)
            | (RequestStatus::PendingAcknowledgement, Ack::Refuse { after }, _)
                if next_time >= r.submitted_at + after
                    && next_time <= r.submitted_at + ACK_TIMEOUT =>
            {
                let accepted = matches!(s.ack, Ack::Accept { .. });
                let (_, tx) = self.mine();
                self.request.as_mut().unwrap().status = if accepted {
                    RequestStatus::Committed
                } else {
                    RequestStatus::Refused
                };
                self.events.push(MarketEvent::Acknowledged {
                    at: self.at(tx),
                    id: id(),
                    network: network(),
                    accepted,
                });
            }
            (RequestStatus::Committed, _, Prove::Valid { after } | Prove::Invalid { after })
                if next_time >= r.submitted_at + after && next_time <= r.deadline =>
            {
                let (now, tx) = self.mine();
                let req = self.request.as_mut().unwrap();
                req.status = RequestStatus::Proven;
                req.validation_deadline = now + self.validation_timeout;
                self.proof_valid = Some(matches!(s.prove, Prove::Valid { .. }));
                self.events.push(MarketEvent::Proven {
                    at: self.at(tx),
                    id: id(),
                    network: network(),
                    proof: vec![1, 2, 3],
                    requested_reward: U256::from(10u64),
                });
            }
            // Unanswered past the window: the network closes it at once and is paid.
            (RequestStatus::Proven, _, _) if next_time > r.validation_deadline => {
                let (_, tx) = self.mine();
                self.request.as_mut().unwrap().status = RequestStatus::ValidationTimedOut;
                self.events.push(MarketEvent::ValidationTimedOut {
                    at: self.at(tx),
                    id: id(),
                    network: network(),
                    reward: U256::from(10u64),
                });
            }
            _ => {}
        }
    }

    /// Carries out an action as the driver would; `None`: nothing to record.
    fn perform(&mut self, action: &Action, no_network: bool) -> Option<Outcome> {
        match action {
            Action::Wait => None,
            Action::SendRequest { escrow, params, .. } => {
                assert_eq!(*escrow, params.max_reward);
                if self.request.is_some() {
                    Some(Outcome::RequestExists)
                } else if no_network {
                    Some(Outcome::RequestRefused)
                } else {
                    Some(Outcome::RequestSent {
                        tx_hash: self.submit(),
                    })
                }
            }
            Action::LookUpRequest(_) => Some(Outcome::Found(self.request.clone())),
            Action::VerifyProof(_) => Some(Outcome::Verified {
                valid: self.proof_valid.expect("verifying a proof that was posted"),
                proof_url: Some("file:///proof".into()),
            }),
            Action::SendValidation { valid, .. } => {
                let r = self.request.clone().expect("validating a request");
                let next_time = (self.head() + 1) * BLOCK_TIME;
                match r.status {
                    // Refused as `ValidationTooLate`, which the driver takes as this.
                    RequestStatus::Proven if next_time > r.validation_deadline => {
                        Some(Outcome::AlreadyValidated)
                    }
                    RequestStatus::Proven => {
                        let (_, tx) = self.mine();
                        let req = self.request.as_mut().unwrap();
                        req.status = if *valid {
                            RequestStatus::Validated
                        } else {
                            RequestStatus::ValidationFailed
                        };
                        self.posted_validations.push(*valid);
                        self.events.push(MarketEvent::ValidationResult {
                            at: self.at(tx),
                            id: id(),
                            network: network(),
                            valid: *valid,
                            reward: U256::ZERO,
                        });
                        Some(Outcome::ValidationSent {
                            valid: *valid,
                            tx_hash: tx,
                        })
                    }
                    RequestStatus::Validated
                    | RequestStatus::ValidationFailed
                    | RequestStatus::ValidationTimedOut => Some(Outcome::AlreadyValidated),
                    other => panic!("validation sent for a request in {other:?}"),
                }
            }
            Action::FallBack { reason, .. } => Some(Outcome::FellBack { reason: *reason }),
            Action::CloseTimedOut(_) => {
                let r = self.request.clone().expect("closing a request");
                let next_time = (self.head() + 1) * BLOCK_TIME;
                let late = (r.status == RequestStatus::PendingAcknowledgement
                    && next_time > r.submitted_at + ACK_TIMEOUT)
                    || (r.status == RequestStatus::Committed && next_time > r.deadline);
                if late {
                    let (_, tx) = self.mine();
                    self.request.as_mut().unwrap().status = RequestStatus::TimedOut;
                    self.posted_closes += 1;
                    self.events.push(MarketEvent::TimedOut {
                        at: self.at(tx),
                        id: id(),
                        network: network(),
                    });
                    Some(Outcome::Closed { tx_hash: tx })
                } else {
                    // Refused (NotTimedOut): the driver looks the request up.
                    Some(Outcome::Found(Some(r)))
                }
            }
        }
    }
}

fn kind(a: &Action) -> &'static str {
    match a {
        Action::Wait => "wait",
        Action::SendRequest { .. } => "request",
        Action::LookUpRequest(_) => "lookup",
        Action::VerifyProof(_) => "verify",
        Action::SendValidation { .. } => "validation",
        Action::FallBack { .. } => "fallback",
        Action::CloseTimedOut(_) => "close",
    }
}

/// Runs a scenario to its end; returns the row, the model and the actions decided.
fn run(s: &Scenario) -> (ProofRequest, Model, Vec<Action>, Vec<FallbackReason>) {
    let mut m = Model {
        time: 10 * BLOCK_TIME,
        request: None,
        proof_valid: None,
        validation_timeout: s.validation_timeout,
        events: Vec::new(),
        posted_requests: 0,
        posted_validations: Vec::new(),
        posted_closes: 0,
        next_tx: 0,
    };
    let cfg = cfg();
    // What is durable (row and the watcher's cursor, written together) and what is in memory.
    let mut stored = (fresh_row(), m.head());
    let (mut row, mut cursor) = stored.clone();
    let mut decided = Vec::new();
    let mut fell_back = Vec::new();
    for (i, &(secs, lag, crash)) in s.steps.iter().enumerate() {
        let ms = 1_000 + i as u64;
        // The watcher: confirmed blocks after the cursor, in chain order.
        let visible = m.head().saturating_sub(lag).max(cursor);
        for e in m.events.iter().filter(|e| {
            let b = e.at().block;
            b > cursor && b <= visible
        }) {
            apply_event(&mut row, e, ms);
        }
        cursor = visible;
        let now = cursor * BLOCK_TIME;

        let action = next_action(&row, now, &cfg);
        if action != Action::Wait {
            decided.push(action.clone());
        }
        if let Action::SendValidation { valid: true, .. } = action {
            assert!(
                !row.fallbacked,
                "validation true for a batch that fell back"
            );
        }
        if let Some(outcome) = m.perform(&action, s.no_network) {
            if let Outcome::FellBack { reason } = outcome {
                fell_back.push(reason);
            }
            // Crash 1: the outcome is lost (the driver died before recording it).
            if crash != 1 {
                apply_outcome(&mut row, &outcome, &cfg, ms)
                    .unwrap_or_else(|e| panic!("{e} after {action:?}"));
            }
        }
        // Crash 2: everything since the last write is lost; otherwise it is written.
        if crash == 2 {
            (row, cursor) = stored.clone();
        } else {
            stored = (row.clone(), cursor);
        }
        // Never both, at any moment.
        assert!(
            !(row.fallbacked && row.validation_status == ValidationStatus::Valid),
            "{row:?}"
        );
        m.network_acts(s);
        m.time += secs;
    }
    // Then the chain goes on quietly until the request is settled.
    for i in 0..200 {
        let ms = 10_000 + i;
        for e in m.events.iter().filter(|e| e.at().block > cursor) {
            apply_event(&mut row, e, ms);
        }
        cursor = m.head();
        let action = next_action(&row, cursor * BLOCK_TIME, &cfg);
        if action != Action::Wait {
            decided.push(action.clone());
        }
        if let Some(outcome) = m.perform(&action, s.no_network) {
            if let Outcome::FellBack { reason } = outcome {
                fell_back.push(reason);
            }
            apply_outcome(&mut row, &outcome, &cfg, ms).unwrap();
        }
        m.network_acts(s);
        m.time += 60;
    }
    (row, m, decided, fell_back)
}

fn check(s: &Scenario, crashes: bool) -> Result<(), TestCaseError> {
    let (row, m, decided, fell_back) = run(s);
    let ctx = format!("{s:?}\nrow {row:?}\ndecided {decided:?}");
    prop_assert!(row.is_done(), "not done: {ctx}");
    prop_assert_eq!(next_action(&row, u64::MAX, &cfg()), Action::Wait, "{}", ctx);
    // Nothing succeeded twice on L1.
    prop_assert!(m.posted_requests <= 1, "{ctx}");
    prop_assert!(m.posted_validations.len() <= 1, "{ctx}");
    prop_assert!(m.posted_closes <= 1, "{ctx}");
    if !crashes {
        // Without a crash, nothing is even decided twice.
        for k in ["request", "verify", "validation", "fallback", "close"] {
            let n = decided.iter().filter(|a| kind(a) == k).count();
            prop_assert!(n <= 1, "{k} decided {n} times: {ctx}");
        }
    }
    let validated_valid = m.posted_validations == [true];
    prop_assert!(!validated_valid || fell_back.is_empty(), "{ctx}");
    prop_assert_eq!(row.fallbacked, !fell_back.is_empty(), "{}", ctx);
    let final_status = m.request.as_ref().map(|r| r.status);
    let unanswered = final_status == Some(RequestStatus::ValidationTimedOut);
    if unanswered {
        prop_assert!(m.posted_validations.is_empty(), "{ctx}");
    }
    if m.proof_valid == Some(false) {
        if !unanswered {
            prop_assert_eq!(&m.posted_validations, &vec![false], "{}", ctx);
        }
        prop_assert!(row.fallbacked, "{ctx}");
        prop_assert_eq!(row.fallback_reason, Some(FallbackReason::InvalidProof));
    }
    // Each story ends as it should, with the right reason.
    let want = match final_status {
        None => {
            prop_assert!(s.no_network, "{ctx}");
            (ProofRequestStatus::NotSent, Some(FallbackReason::NotSent))
        }
        Some(RequestStatus::Validated) => (ProofRequestStatus::ValidationResultSentToL1, None),
        Some(RequestStatus::ValidationFailed) => (
            ProofRequestStatus::ValidationResultSentToL1,
            Some(FallbackReason::InvalidProof),
        ),
        Some(RequestStatus::Refused) => {
            (ProofRequestStatus::Refused, Some(FallbackReason::Refused))
        }
        // Paid by default; the manager still used a valid proof and fell back on an invalid one.
        Some(RequestStatus::ValidationTimedOut) if m.proof_valid == Some(true) => {
            prop_assert_eq!(row.validation_status, ValidationStatus::Valid, "{}", ctx);
            prop_assert!(!row.fallbacked, "{ctx}");
            (ProofRequestStatus::ValidationResultSentToL1, None)
        }
        Some(RequestStatus::ValidationTimedOut) => (
            ProofRequestStatus::ValidationResultSentToL1,
            Some(FallbackReason::InvalidProof),
        ),
        Some(RequestStatus::TimedOut) => {
            let accepted = m
                .events
                .iter()
                .any(|e| matches!(e, MarketEvent::Acknowledged { accepted: true, .. }));
            let reason = if accepted {
                FallbackReason::NotProven
            } else {
                FallbackReason::NotAcknowledged
            };
            (ProofRequestStatus::TimedOut, Some(reason))
        }
        other => return Err(TestCaseError::fail(format!("L1 left in {other:?}: {ctx}"))),
    };
    prop_assert_eq!((row.status, row.fallback_reason), want, "{}", ctx);
    if validated_valid {
        prop_assert_eq!(row.validation_status, ValidationStatus::Valid);
        prop_assert!(!row.fallbacked);
        prop_assert!(row.validation_tx_hash.is_some() && row.request_tx_hash.is_some());
    }
    for reason in &fell_back {
        prop_assert_eq!(Some(*reason), row.fallback_reason, "{}", ctx);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_request_settles_once_without_crashes(s in scenario(false)) {
        check(&s, false)?;
    }

    #[test]
    fn every_request_settles_through_crashes(s in scenario(true)) {
        check(&s, true)?;
    }
}

/// An adversarial world's next move.
#[derive(Clone, Debug)]
enum Move {
    Event(u8, bool),
    /// Answer the pending action with the `n`-th outcome it may have.
    Answer(u8, bool),
    Time(u64),
}

fn moves() -> impl Strategy<Value = Vec<Move>> {
    let one = prop_oneof![
        (0u8..5, any::<bool>()).prop_map(|(k, b)| Move::Event(k, b)),
        (0u8..7, any::<bool>()).prop_map(|(n, b)| Move::Answer(n, b)),
        (0u64..2_000).prop_map(Move::Time),
    ];
    proptest::collection::vec(one, 0..120)
}

/// A status L1 may show for the request: validated only as the manager sent it.
fn l1_status(n: u8, sent: Option<bool>) -> RequestStatus {
    use RequestStatus::*;
    match (n % 7, sent) {
        (0, _) => PendingAcknowledgement,
        (1, _) => Committed,
        (2, _) => Refused,
        (3, _) => Proven,
        (4, _) => TimedOut,
        (6, None) => ValidationTimedOut,
        (_, Some(true)) => Validated,
        (_, Some(false)) => ValidationFailed,
        (_, None) => Proven,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    #[test]
    fn no_event_order_or_answer_breaks_the_invariants(moves in moves()) {
        let cfg = cfg();
        let mut row = fresh_row();
        let mut now = 0u64;
        let mut sent: Option<bool> = None;
        let at = |n: u8| LogPosition { block: u64::from(n), log_index: 0, tx_hash: [n; 32] };
        for (i, mv) in moves.into_iter().enumerate() {
            let before = row.clone();
            let ms = i as u64;
            match mv {
                Move::Event(k, flag) => {
                    let e = match k {
                        0 => MarketEvent::Submitted {
                            at: at(1), id: id(), network: network(), protocol_version: "v1".into(),
                            inputs_url: String::new(), inputs_digest: [0; 32],
                            deadline: now + TIMEOUT_AFTER, max_reward: U256::ZERO,
                        },
                        1 => MarketEvent::Acknowledged { at: at(2), id: id(), network: network(), accepted: flag },
                        2 => MarketEvent::Proven {
                            at: at(3), id: id(), network: network(), proof: vec![], requested_reward: U256::ZERO,
                        },
                        3 => MarketEvent::TimedOut { at: at(4), id: id(), network: network() },
                        _ => MarketEvent::ValidationTimedOut {
                            at: at(6), id: id(), network: network(), reward: U256::ZERO,
                        },
                    };
                    apply_event(&mut row, &e, ms);
                    // The same event again (a replay) changes nothing more.
                    let mut replayed = row.clone();
                    prop_assert!(!apply_event(&mut replayed, &e, ms + 1));
                    prop_assert_eq!(&replayed, &row);
                    // Another request's event changes nothing.
                    let mut other = row.clone();
                    let mut e2 = e.clone();
                    if let MarketEvent::Acknowledged { id, .. } = &mut e2 { id.batch += 1; }
                    if e2 != e { prop_assert!(!apply_event(&mut other, &e2, ms)); }
                }
                Move::Time(secs) => now += secs,
                Move::Answer(n, flag) => {
                    let action = next_action(&row, now, &cfg);
                    if let Action::SendValidation { valid, .. } = action {
                        prop_assert!(!(valid && row.fallbacked), "{row:?}");
                        sent = Some(valid);
                    }
                    let request = |status| Request {
                        network: network(), status, submitted_at: now, deadline: now + TIMEOUT_AFTER,
                        validation_deadline: now + TIMEOUT_AFTER, max_reward: U256::ZERO, reward: U256::ZERO, inputs_digest: [0; 32], proof_hash: [0; 32],
                    };
                    let outcome = match (&action, n % 3) {
                        (Action::Wait, _) => None,
                        (Action::SendRequest { .. }, 0) => Some(Outcome::RequestSent { tx_hash: [9; 32] }),
                        (Action::SendRequest { .. }, 1) => Some(Outcome::RequestExists),
                        (Action::SendRequest { .. }, _) => Some(Outcome::RequestRefused),
                        (Action::LookUpRequest(_), _) if flag && n == 3 => Some(Outcome::Found(None)),
                        (Action::LookUpRequest(_), _) => Some(Outcome::Found(Some(request(l1_status(n, sent))))),
                        (Action::VerifyProof(_), _) => Some(Outcome::Verified { valid: flag, proof_url: None }),
                        (Action::SendValidation { valid, .. }, 0) => {
                            // The event of our own transaction comes too, sooner or later.
                            let e = MarketEvent::ValidationResult {
                                at: at(5), id: id(), network: network(), valid: *valid, reward: U256::ZERO,
                            };
                            apply_event(&mut row, &e, ms);
                            Some(Outcome::ValidationSent { valid: *valid, tx_hash: [5; 32] })
                        }
                        (Action::SendValidation { valid, .. }, 1) => {
                            Some(Outcome::ValidationSent { valid: *valid, tx_hash: [5; 32] })
                        }
                        // Refused: validated already, or too late.
                        (Action::SendValidation { .. }, _) => Some(Outcome::AlreadyValidated),
                        (Action::FallBack { reason, .. }, _) => Some(Outcome::FellBack { reason: *reason }),
                        (Action::CloseTimedOut(_), 0) => Some(Outcome::Closed { tx_hash: [6; 32] }),
                        (Action::CloseTimedOut(_), _) => Some(Outcome::Found(Some(request(l1_status(n, sent))))),
                    };
                    if let Some(o) = outcome {
                        let fits = apply_outcome(&mut row, &o, &cfg, ms);
                        prop_assert!(fits.is_ok(), "{o:?} after {action:?}: {fits:?}");
                    }
                }
            }
            // Only a lookup that finds no request (a reorg) takes a row back.
            let back = |r: &ProofRequest| match r.status {
                ProofRequestStatus::ReadyToBeProven => 0,
                ProofRequestStatus::RequestSentToL1 => 1,
                ProofRequestStatus::Acknowledged => 2,
                ProofRequestStatus::ReceivedProof => 3,
                _ => 4,
            };
            if back(&row) < back(&before) {
                prop_assert_eq!(row.status, ProofRequestStatus::ReadyToBeProven);
                prop_assert!(!before.fallbacked);
            }
            if before.status.is_closed() {
                prop_assert_eq!(row.status, before.status, "a closed request stays closed");
            }
            prop_assert!(before.fallbacked <= row.fallbacked, "a fallback is never undone");
            prop_assert!(
                !(row.fallbacked && row.validation_status == ValidationStatus::Valid),
                "{row:?}"
            );
            if row.fallbacked {
                prop_assert!(row.fallback_reason.is_some());
            }
        }
    }
}

/// The scenarios above reach every ending: none of the checks is vacuous.
#[test]
fn the_scenarios_reach_every_ending() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut endings = std::collections::BTreeMap::new();
    for _ in 0..300 {
        let s = scenario(true).new_tree(&mut runner).unwrap().current();
        let (row, _, _, _) = run(&s);
        *endings
            .entry(format!("{} {:?}", row.status, row.fallback_reason))
            .or_insert(0u32) += 1;
    }
    let want = [
        "validation_result_sent_to_l1 None",
        "validation_result_sent_to_l1 Some(InvalidProof)",
        "refused Some(Refused)",
        "timed_out Some(NotAcknowledged)",
        "timed_out Some(NotProven)",
        "not_sent Some(NotSent)",
    ];
    for w in want {
        assert!(endings.contains_key(w), "{w} never reached: {endings:?}");
    }
    assert_eq!(endings.len(), want.len(), "{endings:?}");
    // Proofs left unanswered past the window, valid and invalid, are among them.
    let mut unanswered = std::collections::BTreeSet::new();
    for _ in 0..300 {
        let s = scenario(true).new_tree(&mut runner).unwrap().current();
        let (_, m, _, _) = run(&s);
        if m.request.as_ref().map(|r| r.status) == Some(RequestStatus::ValidationTimedOut) {
            unanswered.insert(m.proof_valid);
        }
    }
    assert_eq!(
        unanswered,
        [Some(false), Some(true)].into(),
        "the validation window is never missed"
    );
}
