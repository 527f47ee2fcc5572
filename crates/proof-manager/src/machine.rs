//! The life of one proof request, as a pure state machine over its stored row
//! ([`ProofRequest`]): no IO, time is an input.
//!
//! A driver loops over the open rows: it applies the market's events to them
//! ([`apply_event`], in chain order, from the watcher), asks what to do next
//! ([`next_action`]), does it (an L1 call, a local check, handing the batch to the own
//! provers) and records what came of it ([`apply_outcome`]), writing the row back after each
//! change. Every action is decided from the row alone, so a driver killed anywhere resumes
//! from the stored row; an action repeated because its outcome was lost is harmless (the
//! contract refuses a second request or validation, and says so: [`Outcome::RequestExists`],
//! [`Outcome::AlreadyValidated`]).
//!
//! Time: `now` is the **chain time of the last block whose events were all applied** (the
//! watcher's last processed block), not the wall clock nor the head. A network's
//! acknowledgement or proof is accepted by the contract up to its deadline inclusive, so once
//! a processed block is past the deadline with no such event seen, none can come: falling back
//! then is never premature (zkSync's manager once fell back prematurely, #4771).
//!
//! Fallback goes first, closing second: when a network misses a deadline the batch is handed
//! to the own provers at once ([`Action::FallBack`]) and only then is the request closed on
//! L1 to get the escrow back ([`Action::CloseTimedOut`]). An invalid proof is fallen back on
//! first too, then answered with validation `false`.
//!
//! A proof left unanswered past the market's validation timeout (the manager was down) is
//! paid to its network by default; the manager still checks it and uses it if valid, and
//! the row closes with its own verdict and no validation transaction.

use proofmill_market::{
    Address, MarketEvent, Request, RequestId, RequestParams, RequestStatus, U256, hex_hash,
};
use proofmill_store::{FallbackReason, ProofRequest, ProofRequestStatus, ValidationStatus};
use proofmill_types::Millis;

use ProofRequestStatus as S;

/// What the manager sends with every request, and the market's acknowledgement timeout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagerConfig {
    pub protocol_version: String,
    /// Seconds from submission to the proof deadline.
    pub timeout_after: u64,
    /// Wei held in escrow with each request; the most a network can earn for it.
    pub max_reward: U256,
    /// The market's acknowledgement timeout (`MarketSettings::ack_timeout`), seconds.
    pub ack_timeout: u64,
}

/// What to do next for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing until an event comes or time passes (or nothing ever: the row is done).
    Wait,
    /// `submitProofRequest` with `escrow` wei. Mined: [`Outcome::RequestSent`]; refused
    /// with `RequestExists`: [`Outcome::RequestExists`]; refused otherwise:
    /// [`Outcome::RequestRefused`]; a transport error: retry later, record nothing.
    SendRequest {
        id: RequestId,
        params: RequestParams,
        escrow: U256,
    },
    /// Read the request on L1 (`getRequest`): [`Outcome::Found`]. Reads may repeat freely.
    LookUpRequest(RequestId),
    /// Check the proof the network posted (its `ProofRequestProven` event) with the proof
    /// type's backend. A valid proof is stored as the batch's proof *before* the verdict is
    /// reported ([`Outcome::Verified`]), so that a valid verdict on record always has its proof.
    VerifyProof(RequestId),
    /// `submitProofValidationResult`. Mined: [`Outcome::ValidationSent`]; refused with
    /// `AlreadyValidated`: [`Outcome::AlreadyValidated`].
    SendValidation { id: RequestId, valid: bool },
    /// Hand the batch to the own provers (idempotently: the coordinator's batch insert), then
    /// report [`Outcome::FellBack`].
    FallBack {
        id: RequestId,
        reason: FallbackReason,
    },
    /// `closeTimedOutRequest` (the escrow comes back). Mined: [`Outcome::Closed`]; refused
    /// (`NotTimedOut`: L1 has moved on): look the request up and report [`Outcome::Found`].
    CloseTimedOut(RequestId),
}

impl Action {
    /// Whether this action sends an L1 transaction.
    pub fn is_send(&self) -> bool {
        matches!(
            self,
            Action::SendRequest { .. } | Action::SendValidation { .. } | Action::CloseTimedOut(_)
        )
    }
}

/// What came of an [`Action`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    RequestSent {
        tx_hash: [u8; 32],
    },
    /// The request was on L1 already (sent before a restart lost its receipt).
    RequestExists,
    /// The market would not take the request (no active network, its limits): the batch
    /// falls back without one.
    RequestRefused,
    /// The request on L1 (`None`: there is none).
    Found(Option<Request>),
    /// The local check's verdict, and where the proof was stored.
    Verified {
        valid: bool,
        proof_url: Option<String>,
    },
    ValidationSent {
        valid: bool,
        tx_hash: [u8; 32],
    },
    /// A validation result was on L1 already, or the validation window closed (the contract
    /// refused a late verdict: the network is paid by default). The row keeps its own verdict.
    AlreadyValidated,
    /// The batch is with the own provers.
    FellBack {
        reason: FallbackReason,
    },
    Closed {
        tx_hash: [u8; 32],
    },
}

/// An outcome that does not fit the row: the driver's mistake. The row is left unchanged.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("proof request {id}: outcome {outcome} does not fit status {status}")]
pub struct UnexpectedOutcome {
    pub id: RequestId,
    pub status: ProofRequestStatus,
    pub outcome: &'static str,
}

/// The request id of a row.
pub fn request_id(row: &ProofRequest) -> RequestId {
    RequestId::new(row.chain, row.batch)
}

/// An address as the store keeps it (checksummed `0x` hex).
pub fn address_text(a: &Address) -> String {
    a.to_string()
}

/// Order of the open statuses; every closed one ranks above them.
fn rank(s: ProofRequestStatus) -> u8 {
    match s {
        S::ReadyToBeProven => 0,
        S::RequestSentToL1 => 1,
        S::Acknowledged => 2,
        S::ReceivedProof => 3,
        _ => 4,
    }
}

/// Why a request closed without a proof falls back, judged from where it was.
fn timeout_reason(row: &ProofRequest) -> FallbackReason {
    if row.status == S::Acknowledged {
        FallbackReason::NotProven
    } else {
        FallbackReason::NotAcknowledged
    }
}

/// Moves the row forward to `target` if the story allows it; never backward, never out of a
/// closed status. Returns whether it moved.
fn advance(row: &mut ProofRequest, target: ProofRequestStatus) -> bool {
    let current = row.status;
    if current.is_closed() {
        return false;
    }
    let allowed = match target {
        S::RequestSentToL1 | S::Acknowledged | S::ReceivedProof => rank(target) > rank(current),
        // A network refuses, and a request times out, only before a proof.
        S::Refused | S::TimedOut => rank(current) <= rank(S::Acknowledged),
        S::ValidationResultSentToL1 => true,
        S::ReadyToBeProven | S::NotSent => false,
    };
    if !allowed {
        return false;
    }
    match target {
        S::Refused => {
            row.fallback_reason.get_or_insert(FallbackReason::Refused);
        }
        S::TimedOut => {
            let reason = timeout_reason(row);
            row.fallback_reason.get_or_insert(reason);
        }
        _ => {}
    }
    row.status = target;
    true
}

fn fill<T>(slot: &mut Option<T>, value: T) -> bool {
    if slot.is_none() {
        *slot = Some(value);
        true
    } else {
        false
    }
}

/// Applies one market event to the row it is about; events of other requests and of no
/// request change nothing. Idempotent: applying an event again (a replay after a restart)
/// changes nothing more. Returns whether the row changed (`updated_at` is then `now_ms`).
pub fn apply_event(row: &mut ProofRequest, event: &MarketEvent, now_ms: Millis) -> bool {
    if event.request_id() != Some(request_id(row)) || row.status == S::NotSent {
        return false;
    }
    let mut changed = false;
    if let Some(network) = event.network() {
        changed |= fill(&mut row.assigned_to, address_text(&network));
    }
    match event {
        MarketEvent::Submitted { at, deadline, .. } => {
            changed |= fill(&mut row.deadline, *deadline);
            if fill(&mut row.request_tx_hash, hex_hash(&at.tx_hash)) {
                changed = true;
                fill(&mut row.request_sent_at, now_ms);
            }
            changed |= advance(row, S::RequestSentToL1);
        }
        MarketEvent::Acknowledged { accepted, .. } => {
            let target = if *accepted {
                S::Acknowledged
            } else {
                S::Refused
            };
            changed |= advance(row, target);
        }
        MarketEvent::Proven { .. } => changed |= advance(row, S::ReceivedProof),
        MarketEvent::ValidationResult { at, valid, .. } => {
            if advance(row, S::ValidationResultSentToL1) {
                changed = true;
                changed |= record_validation(row, *valid);
            }
            if row.status == S::ValidationResultSentToL1
                && fill(&mut row.validation_tx_hash, hex_hash(&at.tx_hash))
            {
                changed = true;
                fill(&mut row.validation_sent_at, now_ms);
            }
        }
        MarketEvent::TimedOut { .. } => changed |= advance(row, S::TimedOut),
        MarketEvent::ValidationTimedOut { .. } => changed |= validation_window_closed(row),
        MarketEvent::RewardClaimed { .. }
        | MarketEvent::NetworkUpdated { .. }
        | MarketEvent::PreferredNetworkUpdated { .. } => {}
    }
    if changed {
        row.updated_at = now_ms;
    }
    changed
}

/// The request was closed unanswered (the network was paid by default): a proof the row
/// has a verdict on is done with (a valid one is the batch's proof, an invalid one falls
/// back); one not checked yet stays to be checked, then its verdict is refused as late.
fn validation_window_closed(row: &mut ProofRequest) -> bool {
    if row.status == S::ReceivedProof && row.validation_status != ValidationStatus::None {
        advance(row, S::ValidationResultSentToL1)
    } else {
        advance(row, S::ReceivedProof)
    }
}

/// Records the validation result on L1 for the row: what was sent is what counts.
fn record_validation(row: &mut ProofRequest, valid: bool) -> bool {
    let mut changed = false;
    let sent = if valid {
        ValidationStatus::Valid
    } else {
        ValidationStatus::Invalid
    };
    if row.validation_status != sent {
        row.validation_status = sent;
        changed = true;
    }
    if row.validation_status != ValidationStatus::Valid {
        changed |= fill(&mut row.fallback_reason, FallbackReason::InvalidProof);
    }
    changed
}

/// What to do next for the row, at chain time `now` (see the module documentation).
pub fn next_action(row: &ProofRequest, now: u64, cfg: &ManagerConfig) -> Action {
    let id = request_id(row);
    if row.status.is_closed() {
        if row.fallbacked {
            return Action::Wait;
        }
        let reason = match row.status {
            S::ValidationResultSentToL1 if row.validation_status == ValidationStatus::Valid => {
                return Action::Wait;
            }
            S::ValidationResultSentToL1 => FallbackReason::InvalidProof,
            S::Refused => FallbackReason::Refused,
            S::NotSent => FallbackReason::NotSent,
            _ => timeout_reason(row),
        };
        let reason = row.fallback_reason.unwrap_or(reason);
        return Action::FallBack { id, reason };
    }
    // A deadline passed: the batch falls back first, the request is closed second.
    let missed = |deadline: u64, reason: FallbackReason| {
        if now <= deadline {
            Action::Wait
        } else if !row.fallbacked {
            Action::FallBack { id, reason }
        } else {
            Action::CloseTimedOut(id)
        }
    };
    match row.status {
        S::ReadyToBeProven if row.fallbacked => Action::Wait,
        S::ReadyToBeProven => Action::SendRequest {
            id,
            params: RequestParams {
                protocol_version: cfg.protocol_version.clone(),
                inputs_url: row.inputs_url.clone(),
                inputs_digest: row.inputs_digest.0,
                timeout_after: cfg.timeout_after,
                max_reward: cfg.max_reward,
            },
            escrow: cfg.max_reward,
        },
        S::RequestSentToL1 => match row.ack_deadline {
            None => Action::LookUpRequest(id),
            Some(ack) => missed(ack, FallbackReason::NotAcknowledged),
        },
        S::Acknowledged => match row.deadline {
            None => Action::LookUpRequest(id),
            Some(deadline) => missed(deadline, FallbackReason::NotProven),
        },
        S::ReceivedProof => match (row.fallbacked, row.validation_status) {
            // A proof after the batch fell back is never used, so never paid.
            (true, _) => Action::SendValidation { id, valid: false },
            (false, ValidationStatus::None) => Action::VerifyProof(id),
            (false, ValidationStatus::Valid) => Action::SendValidation { id, valid: true },
            (false, ValidationStatus::Invalid) => Action::FallBack {
                id,
                reason: FallbackReason::InvalidProof,
            },
        },
        // Closed statuses were handled above.
        _ => Action::Wait,
    }
}

/// Records what came of an action decided by [`next_action`] for this row. An outcome that
/// does not fit is refused and changes nothing.
pub fn apply_outcome(
    row: &mut ProofRequest,
    outcome: &Outcome,
    cfg: &ManagerConfig,
    now_ms: Millis,
) -> Result<(), UnexpectedOutcome> {
    let unexpected = |row: &ProofRequest, outcome: &'static str| UnexpectedOutcome {
        id: request_id(row),
        status: row.status,
        outcome,
    };
    match outcome {
        Outcome::RequestSent { tx_hash } => {
            if row.status == S::NotSent {
                return Err(unexpected(row, "request sent"));
            }
            if fill(&mut row.request_tx_hash, hex_hash(tx_hash)) {
                row.request_sent_at = Some(now_ms);
            }
            advance(row, S::RequestSentToL1);
        }
        Outcome::RequestExists => {
            if row.status == S::NotSent {
                return Err(unexpected(row, "request exists"));
            }
            advance(row, S::RequestSentToL1);
        }
        Outcome::RequestRefused => {
            if row.status != S::ReadyToBeProven {
                return Err(unexpected(row, "request refused"));
            }
            row.status = S::NotSent;
            row.fallback_reason.get_or_insert(FallbackReason::NotSent);
        }
        Outcome::Found(None) => {
            // No such request on L1 after all: the block that had it was reorganized away.
            // Sent again, unless the batch fell back already.
            if row.status.is_closed() || row.status == S::ReadyToBeProven {
                return Ok(());
            }
            if row.fallbacked {
                row.status = S::NotSent;
            } else {
                row.status = S::ReadyToBeProven;
                row.assigned_to = None;
                row.request_tx_hash = None;
                row.request_sent_at = None;
                row.deadline = None;
                row.ack_deadline = None;
            }
        }
        Outcome::Found(Some(request)) => {
            if row.status == S::NotSent {
                return Err(unexpected(row, "request found"));
            }
            row.assigned_to = Some(address_text(&request.network));
            row.deadline = Some(request.deadline);
            row.ack_deadline = Some(request.submitted_at.saturating_add(cfg.ack_timeout));
            match request.status {
                RequestStatus::PendingAcknowledgement => {
                    advance(row, S::RequestSentToL1);
                }
                RequestStatus::Committed => {
                    advance(row, S::Acknowledged);
                }
                RequestStatus::Refused => {
                    advance(row, S::Refused);
                }
                RequestStatus::Proven => {
                    advance(row, S::ReceivedProof);
                }
                RequestStatus::Validated | RequestStatus::ValidationFailed => {
                    if advance(row, S::ValidationResultSentToL1) {
                        record_validation(row, request.status == RequestStatus::Validated);
                    }
                }
                RequestStatus::TimedOut => {
                    advance(row, S::TimedOut);
                }
                RequestStatus::ValidationTimedOut => {
                    validation_window_closed(row);
                }
                RequestStatus::Unknown(_) => {}
            }
        }
        Outcome::Verified { valid, proof_url } => {
            if row.status != S::ReceivedProof {
                return Err(unexpected(row, "verified"));
            }
            if row.validation_status == ValidationStatus::None {
                // After a fallback the proof is not used, whatever it is worth.
                row.validation_status = if *valid && !row.fallbacked {
                    ValidationStatus::Valid
                } else {
                    ValidationStatus::Invalid
                };
                if !valid {
                    row.fallback_reason
                        .get_or_insert(FallbackReason::InvalidProof);
                }
            }
            if let Some(url) = proof_url {
                fill(&mut row.proof_url, url.clone());
            }
        }
        Outcome::ValidationSent { valid, tx_hash } => {
            if row.status != S::ReceivedProof && row.status != S::ValidationResultSentToL1 {
                return Err(unexpected(row, "validation sent"));
            }
            advance(row, S::ValidationResultSentToL1);
            record_validation(row, *valid);
            if fill(&mut row.validation_tx_hash, hex_hash(tx_hash)) {
                row.validation_sent_at = Some(now_ms);
            }
        }
        Outcome::AlreadyValidated => {
            if row.status != S::ReceivedProof && row.status != S::ValidationResultSentToL1 {
                return Err(unexpected(row, "already validated"));
            }
            advance(row, S::ValidationResultSentToL1);
        }
        Outcome::FellBack { reason } => {
            row.fallback_reason.get_or_insert(*reason);
            row.fallbacked = true;
        }
        Outcome::Closed { .. } => {
            if !matches!(
                row.status,
                S::RequestSentToL1 | S::Acknowledged | S::TimedOut
            ) {
                return Err(unexpected(row, "closed"));
            }
            advance(row, S::TimedOut);
        }
    }
    row.updated_at = now_ms;
    Ok(())
}
