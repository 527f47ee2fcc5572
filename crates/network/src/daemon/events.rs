//! What the market's events do to the network's state: a request only moves forward.

use crate::state::{EARNED_BY_DEFAULT, Entry, NetworkState, Status, now_ms};
use proofmill_market::{MarketEvent, RequestId, hex_hash};

/// The order of statuses: a request only moves up.
pub(super) fn rank(s: Status) -> u8 {
    match s {
        Status::Seen => 0,
        Status::Accepted => 1,
        Status::Proving => 2,
        Status::ProofPosted => 3,
        Status::Validated => 4,
        Status::Claimed | Status::Refused | Status::Invalid | Status::GivenUp | Status::Closed => {
            10
        }
    }
}

/// One of this network's events into the state.
pub(super) fn apply_event(s: &mut NetworkState, event: &MarketEvent) {
    let now = now_ms();
    let mut set = |id: &RequestId, status: Status, f: &dyn Fn(&mut Entry)| {
        if let Some(e) = s.requests.get_mut(id)
            && rank(status) > rank(e.status)
        {
            tracing::info!(request = %id, from = ?e.status, to = ?status, "request status (event)");
            e.status = status;
            e.updated_at_ms = now;
            f(e);
        }
    };
    match event {
        MarketEvent::Submitted {
            id,
            protocol_version,
            inputs_url,
            inputs_digest,
            deadline,
            max_reward,
            ..
        } => {
            if s.requests.contains_key(id) {
                return;
            }
            tracing::info!(request = %id, %max_reward, deadline, "request assigned to this network");
            s.requests.insert(
                *id,
                Entry {
                    chain_id: id.chain_id,
                    batch: id.batch,
                    status: Status::Seen,
                    protocol_version: protocol_version.clone(),
                    inputs_url: inputs_url.clone(),
                    inputs_digest: hex::encode(inputs_digest),
                    deadline: *deadline,
                    max_reward: max_reward.to_string(),
                    submitted_at: None,
                    proof_type: None,
                    ack_tx: None,
                    proof_tx: None,
                    claim_tx: None,
                    requested_reward: None,
                    validation_deadline: None,
                    earned: None,
                    reason: None,
                    updated_at_ms: now,
                },
            );
        }
        MarketEvent::Proven {
            at,
            id,
            requested_reward,
            ..
        } => set(id, Status::ProofPosted, &|e| {
            e.proof_tx.get_or_insert_with(|| hex_hash(&at.tx_hash));
            e.requested_reward = Some(requested_reward.to_string());
        }),
        MarketEvent::ValidationResult {
            id, valid, reward, ..
        } => {
            if *valid {
                set(id, Status::Validated, &|e| {
                    e.earned = Some(reward.to_string())
                });
            } else {
                set(id, Status::Invalid, &|e| {
                    e.reason = Some("the proof was found invalid".into())
                });
            }
        }
        MarketEvent::ValidationTimedOut { id, reward, .. } => set(id, Status::Validated, &|e| {
            e.earned = Some(reward.to_string());
            e.reason = Some(EARNED_BY_DEFAULT.into());
        }),
        MarketEvent::TimedOut { id, .. } => set(id, Status::Closed, &|e| {
            e.reason = Some("timed out on L1".into())
        }),
        MarketEvent::RewardClaimed { amount, .. } => {
            tracing::info!(%amount, "reward paid");
        }
        MarketEvent::Acknowledged { .. }
        | MarketEvent::NetworkUpdated { .. }
        | MarketEvent::PreferredNetworkUpdated { .. } => {}
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use proofmill_market::{Address, LogPosition, U256};

    fn at(block: u64) -> LogPosition {
        LogPosition {
            block,
            log_index: 0,
            tx_hash: [block as u8; 32],
        }
    }

    fn submitted(batch: u64) -> MarketEvent {
        MarketEvent::Submitted {
            at: at(1),
            id: RequestId::new(7, batch),
            network: Address::repeat_byte(2),
            protocol_version: "v1".into(),
            inputs_url: "https://x/1".into(),
            inputs_digest: [3; 32],
            deadline: 1_000,
            max_reward: U256::from(50),
        }
    }

    /// Events read again (a crash before the cursor was saved) never move a request back,
    /// and a request the state does not know is not made up from a later event.
    #[test]
    fn events_only_move_a_request_forward() {
        let mut s = NetworkState::new(Address::ZERO, Address::repeat_byte(2), 0);
        let id = RequestId::new(7, 1);
        apply_event(&mut s, &submitted(1));
        assert_eq!(s.requests[&id].status, Status::Seen);
        assert_eq!(s.requests[&id].max_reward(), U256::from(50));
        assert_eq!(s.requests[&id].digest(), Some([3; 32]));
        let proven = MarketEvent::Proven {
            at: at(5),
            id,
            network: Address::repeat_byte(2),
            proof: vec![1],
            requested_reward: U256::from(40),
        };
        apply_event(&mut s, &proven);
        assert_eq!(s.requests[&id].status, Status::ProofPosted);
        assert_eq!(s.requests[&id].proof_tx, Some(hex_hash(&[5; 32])));
        let validated = MarketEvent::ValidationResult {
            at: at(6),
            id,
            network: Address::repeat_byte(2),
            valid: true,
            reward: U256::from(40),
        };
        apply_event(&mut s, &validated);
        assert_eq!(s.requests[&id].status, Status::Validated);
        assert_eq!(s.requests[&id].earned.as_deref(), Some("40"));
        // The same range read again: nothing changes.
        let before = s.clone();
        for e in [submitted(1), proven.clone(), validated] {
            apply_event(&mut s, &e);
        }
        assert_eq!(s, before);
        // A time-out of a finished or unknown request changes nothing either.
        s.requests.get_mut(&id).unwrap().status = Status::Claimed;
        let before = s.clone();
        for batch in [1, 2] {
            apply_event(
                &mut s,
                &MarketEvent::TimedOut {
                    at: at(9),
                    id: RequestId::new(7, batch),
                    network: Address::repeat_byte(2),
                },
            );
        }
        assert_eq!(s, before);
        assert_eq!(rank(Status::Seen), 0);
        assert!(rank(Status::Proving) < rank(Status::ProofPosted));
        assert!(rank(Status::Validated) < rank(Status::Claimed));
    }
}
