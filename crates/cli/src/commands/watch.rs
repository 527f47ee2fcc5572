//! `proofmill watch`: `AdminService.Watch`, one line per event as it happens (text or JSON),
//! until the coordinator stops, `--max-events` were printed, or Ctrl-C.

use super::status::{connect, request_failed};
use crate::args::WatchArgs;
use proofmill_proto::v1::watch_event::Event;
use proofmill_proto::v1::{WatchEvent, WatchRequest};
use std::io::Write as _;

pub async fn run(args: WatchArgs) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let mut events = connect(url, &args.access)
        .await?
        .watch(WatchRequest {})
        .await
        .map_err(|s| request_failed("Watch", url, s))?
        .into_inner();
    let mut printed = 0u64;
    let mut out = std::io::stdout().lock();
    while args.max_events.is_none_or(|max| printed < max) {
        let Some(event) = events
            .message()
            .await
            .map_err(|s| request_failed("Watch", url, s))?
        else {
            eprintln!("the coordinator at {url} ended the stream (it stopped)");
            break;
        };
        let line = if args.json {
            serde_json::to_string(&proofmill_coordinator::watch_event_json(&event).1)?
        } else {
            event_text(&event)
        };
        // A closed pipe (`| head`) ends the command quietly.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            break;
        }
        printed += 1;
    }
    Ok(())
}

fn event_text(e: &WatchEvent) -> String {
    let at = clock(e.at_ms);
    let what = match &e.event {
        Some(Event::Job(j)) => {
            let mut s = format!("job {}/{} {}", j.batch, j.proof_type, j.state);
            if !j.prover_id.is_empty() {
                s += &format!(" on {}", j.prover_id);
            }
            if !j.last_error.is_empty() {
                s += &format!(" ({})", j.last_error);
            }
            s
        }
        Some(Event::AttemptStarted(a)) => format!(
            "attempt {} of {}/{} started on {} ({}){}",
            a.fencing_token,
            a.batch,
            a.proof_type,
            a.prover_name,
            a.prover_id,
            if a.backup { ", a backup copy" } else { "" }
        ),
        Some(Event::AttemptEnded(a)) => {
            let mut s = format!("attempt {} ended: {}", a.fencing_token, a.outcome);
            if let Some(ms) = a.prove_ms {
                s += &format!(" in {ms} ms");
            }
            if !a.detail.is_empty() {
                s += &format!(" ({})", a.detail);
            }
            s
        }
        Some(Event::Cordon(c)) if c.cordoned => {
            format!("prover {} cordoned ({})", c.prover_id, c.reason)
        }
        Some(Event::Cordon(c)) => format!("prover {} back in rotation", c.prover_id),
        Some(Event::ProverConnected(p)) => format!(
            "prover {} ({}) connected: {} × {}",
            p.name,
            p.prover_id,
            p.proof_types.join(","),
            p.capacity
        ),
        Some(Event::ProverDisconnected(p)) => {
            format!("prover {} ({}) disconnected", p.name, p.prover_id)
        }
        Some(Event::BatchesTaken(b)) if b.first_batch == b.last_batch => {
            format!("batch {} taken in", b.first_batch)
        }
        Some(Event::BatchesTaken(b)) => {
            format!("batches {}..={} taken in", b.first_batch, b.last_batch)
        }
        Some(Event::Chain(c)) => {
            let n = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
            let mut s = format!(
                "L1: committed {}, verified {}",
                n(c.last_committed_batch),
                n(c.last_verified_batch)
            );
            if !c.error.is_empty() {
                s += &format!(" (settlement stalled: {})", c.error);
            }
            s
        }
        Some(Event::Paused(p)) if p.paused => {
            format!("{} paused ({})", p.component, p.reason)
        }
        Some(Event::Paused(p)) => format!("{} resumed", p.component),
        Some(Event::Missed(n)) => {
            format!("missed {n} events (this watcher read too slowly); `status` shows the state")
        }
        None => "an event this build does not know".into(),
    };
    format!("{at} {what}")
}

/// Time of day in UTC, `HH:MM:SS.mmm`: a watch is read as it happens.
fn clock(at_ms: u64) -> String {
    let ms_of_day = at_ms % 86_400_000;
    let (h, m, s, ms) = (
        ms_of_day / 3_600_000,
        ms_of_day / 60_000 % 60,
        ms_of_day / 1000 % 60,
        ms_of_day % 1000,
    );
    format!("{h:02}:{m:02}:{s:02}.{ms:03}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofmill_proto::v1::{AttemptEnded, JobChanged};

    #[test]
    fn a_clock_is_utc_time_of_day() {
        // 2026-12-05 13:04:06.789 UTC
        assert_eq!(clock(1_796_475_846_789), "13:04:06.789");
    }

    #[test]
    fn json_lines_are_flat_objects_with_their_kind() {
        let e = WatchEvent {
            at_ms: 5,
            event: Some(Event::Job(JobChanged {
                batch: 7,
                proof_type: "exec".into(),
                state: "proven".into(),
                ..Default::default()
            })),
        };
        let v = proofmill_coordinator::watch_event_json(&e).1;
        assert_eq!(v["kind"], "job");
        assert_eq!(v["batch"], 7);
        assert_eq!(v["state"], "proven");
        assert_eq!(v["at_ms"], 5);
        let ended = WatchEvent {
            at_ms: 0,
            event: Some(Event::AttemptEnded(AttemptEnded {
                fencing_token: 3,
                outcome: "failed".into(),
                detail: "out of memory".into(),
                prove_ms: None,
            })),
        };
        assert_eq!(
            event_text(&ended),
            "00:00:00.000 attempt 3 ended: failed (out of memory)"
        );
    }
}
