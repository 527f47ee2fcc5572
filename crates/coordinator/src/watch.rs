//! `AdminService.Watch`: a watcher's events ([`crate::events`]) as wire messages, until the
//! watcher hangs up or the coordinator stops.

use crate::events::{Event, Next, Stamped, Watcher};
use crate::shutdown::Shutdown;
use proofmill_proto::v1::{self as pb, WatchEvent, watch_event::Event as Wire};
use std::pin::Pin;
use tonic::Status;

pub(crate) type WatchStream =
    Pin<Box<dyn futures::Stream<Item = Result<WatchEvent, Status>> + Send>>;

/// The stream a watcher reads. It holds nothing but the watcher's place in the broadcast:
/// tonic polls it only as the client reads, so a slow client costs the buffer, no more.
pub(crate) fn stream(watcher: Watcher, shutdown: Shutdown) -> WatchStream {
    Box::pin(futures::stream::unfold(
        (watcher, shutdown),
        |(mut watcher, shutdown)| async move {
            let next = tokio::select! {
                next = watcher.next() => next?,
                () = shutdown.begun() => return None,
            };
            let event = match next {
                Next::Event(e) => wire(&e),
                Next::Missed(n) => WatchEvent {
                    at_ms: crate::now_ms(),
                    event: Some(Wire::Missed(n)),
                },
            };
            Some((Ok(event), (watcher, shutdown)))
        },
    ))
}

/// An event as one flat JSON object, `{"at_ms", "kind", …its fields}` (`/events`), and its
/// kind: `job`, `attempt_started`, `attempt_ended`, `cordon`, `prover_connected`,
/// `prover_disconnected`, `batches_taken`, `chain`, `missed` (`{"count"}`).
pub fn watch_event_json(e: &WatchEvent) -> (&'static str, serde_json::Value) {
    use serde_json::{Value, json, to_value};
    let (kind, fields) = match &e.event {
        Some(Wire::Job(x)) => ("job", to_value(x)),
        Some(Wire::AttemptStarted(x)) => ("attempt_started", to_value(x)),
        Some(Wire::AttemptEnded(x)) => ("attempt_ended", to_value(x)),
        Some(Wire::Cordon(x)) => ("cordon", to_value(x)),
        Some(Wire::ProverConnected(x)) => ("prover_connected", to_value(x)),
        Some(Wire::ProverDisconnected(x)) => ("prover_disconnected", to_value(x)),
        Some(Wire::BatchesTaken(x)) => ("batches_taken", to_value(x)),
        Some(Wire::Chain(x)) => ("chain", to_value(x)),
        Some(Wire::Paused(x)) => ("paused", to_value(x)),
        Some(Wire::Missed(n)) => ("missed", Ok(json!({ "count": n }))),
        None => ("unknown", Ok(json!({}))),
    };
    let mut object = json!({ "at_ms": e.at_ms, "kind": kind });
    if let (Value::Object(o), Ok(Value::Object(f))) = (&mut object, fields) {
        o.extend(f);
    }
    (kind, object)
}

fn wire(stamped: &Stamped) -> WatchEvent {
    let event = match &stamped.event {
        Event::Job {
            key,
            state,
            prover,
            failed_attempts,
            last_error,
        } => Wire::Job(pb::JobChanged {
            batch: key.batch,
            proof_type: key.proof_type.to_string(),
            state: state.to_string(),
            prover_id: prover.as_ref().map(|p| p.to_string()).unwrap_or_default(),
            failed_attempts: *failed_attempts,
            last_error: last_error.clone().unwrap_or_default(),
        }),
        Event::AttemptStarted {
            key,
            token,
            prover,
            prover_name,
            backup,
        } => Wire::AttemptStarted(pb::AttemptStarted {
            batch: key.batch,
            proof_type: key.proof_type.to_string(),
            fencing_token: token.0,
            prover_id: prover.to_string(),
            prover_name: prover_name.clone(),
            backup: *backup,
        }),
        Event::AttemptEnded {
            token,
            outcome,
            detail,
            prove_ms,
        } => Wire::AttemptEnded(pb::AttemptEnded {
            fencing_token: token.0,
            outcome: outcome.as_str().to_string(),
            detail: detail.clone(),
            prove_ms: *prove_ms,
        }),
        Event::Cordon { prover, on, reason } => Wire::Cordon(pb::ProverCordoned {
            prover_id: prover.to_string(),
            cordoned: *on,
            reason: reason.clone(),
        }),
        Event::ProverConnected {
            prover,
            name,
            proof_types,
            capacity,
        } => Wire::ProverConnected(pb::ProverConnected {
            prover_id: prover.to_string(),
            name: name.clone(),
            proof_types: proof_types.iter().map(|t| t.to_string()).collect(),
            capacity: *capacity,
        }),
        Event::ProverDisconnected { prover, name } => {
            Wire::ProverDisconnected(pb::ProverDisconnected {
                prover_id: prover.to_string(),
                name: name.clone(),
            })
        }
        Event::BatchesTaken { chain, first, last } => Wire::BatchesTaken(pb::BatchesTaken {
            first_batch: *first,
            last_batch: *last,
            chain_id: *chain,
        }),
        Event::Paused {
            component,
            paused,
            reason,
        } => Wire::Paused(pb::ComponentPaused {
            component: component.clone(),
            paused: *paused,
            reason: reason.clone(),
        }),
        Event::Chain {
            last_committed_batch,
            last_verified_batch,
            error,
        } => Wire::Chain(pb::ChainSeen {
            last_committed_batch: *last_committed_batch,
            last_verified_batch: *last_verified_batch,
            error: error.clone().unwrap_or_default(),
        }),
    };
    WatchEvent {
        at_ms: stamped.at,
        event: Some(event),
    }
}
