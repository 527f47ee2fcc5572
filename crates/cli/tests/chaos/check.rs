//! The invariants of a chaos run, checked on a [`History`] gathered once everything has
//! settled: a pure function of what the store, the provers' logs, L1 and the status polls
//! say, so the tests of this module can feed it crafted histories and see each violation
//! caught.

use std::collections::{BTreeMap, BTreeSet};

/// A job: (batch, proof type).
pub type Key = (u64, String);

/// What a chaos run left behind.
#[derive(Clone, Debug, Default)]
pub struct History {
    /// Highest batch in the store.
    pub last_sealed: u64,
    /// Highest batch in the store when the chaos stopped: every batch up to it must be proven
    /// and verified on L1 once the run has settled.
    pub sealed_at_chaos_end: u64,
    /// The store's jobs of batches `1..=last_sealed`, by key; a required proof type without
    /// a job is missing from the map.
    pub jobs: BTreeMap<Key, JobRecord>,
    /// Each batch's required proof types (from the store).
    pub required: BTreeMap<u64, Vec<String>>,
    /// Leases the provers received (logged `task started` or `task declined`), by job:
    /// (prover name, fencing token).
    pub issued: BTreeMap<Key, Vec<(String, u64)>>,
    /// Proofs the coordinator acknowledged as accepted (`result acknowledged`, `proof=true`
    /// in a prover's log), by job: (prover name, fencing token).
    pub acked: BTreeMap<Key, Vec<(String, u64)>>,
    /// `BatchesVerified` events of the rollup, in chain order: (first, last).
    pub l1_ranges: Vec<(u64, u64)>,
    /// The rollup's `lastVerifiedBatch`.
    pub l1_last_verified: u64,
    /// Successful `SystemStatus` polls, in the order they were made.
    pub polls: Vec<Poll>,
}

#[derive(Clone, Debug)]
pub struct JobRecord {
    /// `queued`, `leased`, `proven`, `failed` or `cancelled`.
    pub state: String,
    pub proof: Option<StoredProof>,
    /// Tokens of the job's leases the store committed (its attempts: each is written in the
    /// transaction of its lease).
    pub committed: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct StoredProof {
    pub prover_name: String,
    pub token: u64,
    /// Its bytes could be read (inline or from the blob store) and match its digest; else why not.
    pub readable: Result<(), String>,
}

/// One `SystemStatus` answer.
#[derive(Clone, Debug)]
pub struct Poll {
    /// Since the start of the run.
    pub at_ms: u64,
    pub coordinator: usize,
    /// `last_sealed_batch`, `last_proven_batch`, `last_committed_batch`,
    /// `last_verified_batch` (absent: not known yet, e.g. just after a restart).
    pub figures: [Option<u64>; 4],
}

pub const FIGURES: [&str; 4] = [
    "last_sealed_batch",
    "last_proven_batch",
    "last_committed_batch",
    "last_verified_batch",
];

/// Every invariant the history breaks, one line each (empty: all hold).
pub fn check(h: &History) -> Vec<String> {
    let mut v = Vec::new();
    check_proven(h, &mut v);
    check_fencing(h, &mut v);
    check_l1(h, &mut v);
    check_status(h, &mut v);
    v
}

fn task(key: &Key) -> String {
    format!("{}/{}", key.0, key.1)
}

/// Every batch sealed before the chaos stopped has every required proof, readable; every
/// acknowledged proof is in the store (an acknowledgement promises durability).
fn check_proven(h: &History, v: &mut Vec<String>) {
    for n in 1..=h.last_sealed {
        let Some(required) = h.required.get(&n) else {
            v.push(format!(
                "batch {n}: not in the store (sealed up to {})",
                h.last_sealed
            ));
            continue;
        };
        for pt in required {
            let key = (n, pt.clone());
            let job = h.jobs.get(&key);
            if n <= h.sealed_at_chaos_end {
                match job {
                    None => v.push(format!("{}: no job in the store", task(&key))),
                    Some(j) if j.state != "proven" => v.push(format!(
                        "{}: {} at the end, not proven (sealed before the chaos stopped)",
                        task(&key),
                        j.state
                    )),
                    Some(_) => {}
                }
            }
            if let Some(j) = job {
                if j.state == "proven" && j.proof.is_none() {
                    v.push(format!(
                        "{}: proven but no proof record (lost proof)",
                        task(&key)
                    ));
                }
                if let Some(Err(why)) = j.proof.as_ref().map(|p| &p.readable) {
                    v.push(format!(
                        "{}: proof not readable (lost proof): {why}",
                        task(&key)
                    ));
                }
            }
        }
    }
    for (key, acks) in &h.acked {
        let stored = h.jobs.get(key).and_then(|j| j.proof.as_ref());
        if stored.is_none() {
            v.push(format!(
                "{}: acknowledged to {} but not in the store (lost proof)",
                task(key),
                acks[0].0
            ));
        }
    }
}

/// Proven once, by the current lease: every acknowledged proof of a job carries the stored
/// token; the stored proof came from the prover that held that lease, and no later lease of
/// the job was handed out (a later lease means the stored one was stale when it was accepted;
/// backup copies of stragglers are off in chaos runs, so leases of a job never overlap).
fn check_fencing(h: &History, v: &mut Vec<String>) {
    for (key, acks) in &h.acked {
        let tokens: BTreeSet<u64> = acks.iter().map(|(_, t)| *t).collect();
        if tokens.len() > 1 {
            v.push(format!(
                "{}: proven more than once: accepted results under tokens {tokens:?} ({acks:?})",
                task(key)
            ));
        }
        if let Some(p) = h.jobs.get(key).and_then(|j| j.proof.as_ref())
            && let Some(other) = tokens.iter().find(|t| **t != p.token)
        {
            v.push(format!(
                "{}: a result under token {other} was acknowledged, but the store holds token {}",
                task(key),
                p.token
            ));
        }
    }
    for (key, job) in &h.jobs {
        let Some(p) = &job.proof else { continue };
        let issued = h.issued.get(key).map(Vec::as_slice).unwrap_or_default();
        if !issued
            .iter()
            .any(|(name, t)| *t == p.token && *name == p.prover_name)
        {
            v.push(format!(
                "{}: stored proof under token {} from {} matches no lease a prover received ({issued:?})",
                task(key),
                p.token,
                p.prover_name
            ));
        }
        // Only a later lease the store committed proves the stored one stale. A coordinator
        // sends tasks before their lease is durable (up to `max_uncommitted_dispatches`);
        // when it is killed or fenced before that commit, the earlier lease is still the
        // durable one (in that run or the next), and its result is rightly accepted by the
        // next active coordinator.
        if let Some((name, later)) = issued
            .iter()
            .filter(|(_, t)| *t > p.token && job.committed.contains(t))
            .max_by_key(|(_, t)| *t)
        {
            v.push(format!(
                "{}: stale result accepted: stored token {} (from {}), but a later lease {later} went to {name}",
                task(key),
                p.token,
                p.prover_name
            ));
        }
    }
}

/// Verified on L1 exactly once and in order: the `BatchesVerified` ranges tile `1..=last`
/// with no gap or overlap, end at `lastVerifiedBatch`, which covers every batch sealed before
/// the chaos stopped; and every verified batch is proven in the store.
fn check_l1(h: &History, v: &mut Vec<String>) {
    let mut next = 1;
    for &(first, last) in &h.l1_ranges {
        if first > last {
            v.push(format!("L1: empty range {first}..={last} verified"));
        } else if first < next {
            v.push(format!(
                "L1: batches {first}..={} verified again (range {first}..={last}, {} already verified)",
                last.min(next - 1),
                next - 1
            ));
        } else if first > next {
            v.push(format!(
                "L1: out of order: range {first}..={last} verified while {next} was not"
            ));
        }
        next = next.max(last + 1);
    }
    if next - 1 != h.l1_last_verified {
        v.push(format!(
            "L1: lastVerifiedBatch is {} but the BatchesVerified events cover 1..={}",
            h.l1_last_verified,
            next - 1
        ));
    }
    if h.l1_last_verified < h.sealed_at_chaos_end {
        v.push(format!(
            "L1: verified up to {} only, but {} batches were sealed before the chaos stopped",
            h.l1_last_verified, h.sealed_at_chaos_end
        ));
    }
    for n in 1..=h.l1_last_verified {
        for pt in h.required.get(&n).map(Vec::as_slice).unwrap_or_default() {
            let key = (n, pt.clone());
            if h.jobs.get(&key).is_none_or(|j| j.state != "proven") {
                v.push(format!(
                    "{}: verified on L1 but not proven in the store",
                    task(&key)
                ));
            }
        }
    }
}

/// Status never goes backwards: across all polls (of every coordinator, in order), no figure
/// is below one an earlier poll reported. An absent figure is not a value.
fn check_status(h: &History, v: &mut Vec<String>) {
    for (i, name) in FIGURES.iter().enumerate() {
        let mut high: Option<(u64, &Poll)> = None;
        for poll in &h.polls {
            let Some(x) = poll.figures[i] else { continue };
            match high {
                Some((top, at)) if x < top => {
                    v.push(format!(
                        "status went backwards: {name} {x} (coordinator {} at {:.1} s) after {top} (coordinator {} at {:.1} s)",
                        poll.coordinator,
                        poll.at_ms as f64 / 1e3,
                        at.coordinator,
                        at.at_ms as f64 / 1e3
                    ));
                    break; // one line per figure is enough
                }
                Some((top, _)) if x == top => {}
                _ => high = Some((x, poll)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TYPES: [&str; 2] = ["exec", "audit"];

    /// Three batches, each proven once per type by the lease that answered, verified on L1
    /// as 1..=2 then 3, status rising.
    fn good() -> History {
        let mut h = History {
            last_sealed: 3,
            sealed_at_chaos_end: 3,
            l1_ranges: vec![(1, 2), (3, 3)],
            l1_last_verified: 3,
            ..History::default()
        };
        let mut token = 10;
        for n in 1..=3 {
            h.required
                .insert(n, TYPES.iter().map(|s| s.to_string()).collect());
            for pt in TYPES {
                let key = (n, pt.to_string());
                // A first lease lost to a kill, then the one that proved it.
                h.issued
                    .entry(key.clone())
                    .or_default()
                    .extend([("p1".to_string(), token), ("p2".to_string(), token + 1)]);
                h.acked
                    .insert(key.clone(), vec![("p2".to_string(), token + 1); 2]);
                h.jobs.insert(
                    key,
                    JobRecord {
                        state: "proven".into(),
                        proof: Some(StoredProof {
                            prover_name: "p2".into(),
                            token: token + 1,
                            readable: Ok(()),
                        }),
                        committed: vec![token, token + 1],
                    },
                );
                token += 2;
            }
        }
        for (i, s) in [1, 2, 3].into_iter().enumerate() {
            h.polls.push(Poll {
                at_ms: i as u64 * 250,
                coordinator: 0,
                figures: [Some(s), Some(s - 1), None, Some(s - 1)],
            });
        }
        h
    }

    fn only(h: &History, needle: &str) {
        let v = check(h);
        assert!(
            !v.is_empty() && v.iter().all(|l| l.contains(needle)),
            "expected only {needle:?} violations, got {v:#?}"
        );
    }

    #[test]
    fn a_clean_history_passes() {
        assert_eq!(check(&good()), Vec::<String>::new());
    }

    #[test]
    fn a_batch_verified_twice_is_caught() {
        let mut h = good();
        h.l1_ranges = vec![(1, 2), (2, 3)];
        only(&h, "verified again");
    }

    #[test]
    fn batches_verified_out_of_order_are_caught() {
        let mut h = good();
        h.l1_ranges = vec![(2, 3), (1, 1)];
        let v = check(&h);
        assert!(v.iter().any(|l| l.contains("out of order")), "{v:#?}");
    }

    #[test]
    fn unverified_batches_are_caught() {
        let mut h = good();
        h.l1_ranges = vec![(1, 2)];
        h.l1_last_verified = 2;
        only(&h, "verified up to 2 only");
    }

    #[test]
    fn status_going_backwards_is_caught() {
        let mut h = good();
        h.polls.push(Poll {
            at_ms: 1000,
            coordinator: 1,
            figures: [Some(3), Some(1), None, None],
        });
        only(&h, "status went backwards: last_proven_batch 1");
    }

    #[test]
    fn absent_figures_and_failed_polls_are_not_regressions() {
        let mut h = good();
        h.polls.push(Poll {
            at_ms: 1000,
            coordinator: 0,
            figures: [None; 4],
        });
        assert_eq!(check(&h), Vec::<String>::new());
    }

    #[test]
    fn a_job_proven_twice_is_caught() {
        let mut h = good();
        h.acked
            .get_mut(&(2, "exec".to_string()))
            .unwrap()
            .push(("p1".into(), 12));
        let v = check(&h);
        assert!(
            v.iter()
                .any(|l| l.contains("2/exec: proven more than once")),
            "{v:#?}"
        );
    }

    #[test]
    fn a_stale_result_accepted_is_caught() {
        let mut h = good();
        // The stored proof answered p1's lease, but p2 got a later one.
        let key = (1, "audit".to_string());
        let stale = h.issued[&key][0].clone();
        // The later lease is from a later coordinator run, and the store committed it.
        let later = stale.1 + (1 << 32);
        h.issued.get_mut(&key).unwrap()[1].1 = later;
        let job = h.jobs.get_mut(&key).unwrap();
        job.committed = vec![stale.1, later];
        let p = job.proof.as_mut().unwrap();
        p.prover_name = stale.0.clone();
        p.token = stale.1;
        h.acked.insert(key, vec![stale]);
        only(&h, "1/audit: stale result accepted");
    }

    #[test]
    fn a_later_run_lease_never_committed_does_not_make_the_durable_one_stale() {
        let mut h = good();
        // p1's durable lease proved it; p2's lease of a later run went out ahead of its
        // commit, and that run was fenced before committing it (chaos seed
        // 1796495053677813626).
        let key = (1, "audit".to_string());
        let first = h.issued[&key][0].clone();
        h.issued.get_mut(&key).unwrap()[1].1 = first.1 + (1 << 32);
        let job = h.jobs.get_mut(&key).unwrap();
        job.committed = vec![first.1];
        let p = job.proof.as_mut().unwrap();
        p.prover_name = first.0.clone();
        p.token = first.1;
        h.acked.insert(key, vec![first]);
        assert_eq!(check(&h), Vec::<String>::new());
    }

    #[test]
    fn a_later_lease_of_the_same_run_may_have_been_lost_uncommitted() {
        let mut h = good();
        // p1's durable lease proved it; p2's later lease of the same run was sent ahead of
        // its commit by a coordinator killed before committing it.
        let key = (1, "audit".to_string());
        let first = h.issued[&key][0].clone();
        let job = h.jobs.get_mut(&key).unwrap();
        job.committed = vec![first.1];
        let p = job.proof.as_mut().unwrap();
        p.prover_name = first.0.clone();
        p.token = first.1;
        h.acked.insert(key, vec![first]);
        assert_eq!(check(&h), Vec::<String>::new());
    }

    #[test]
    fn a_proof_from_no_lease_is_caught() {
        let mut h = good();
        let key = (3, "exec".to_string());
        h.jobs
            .get_mut(&key)
            .unwrap()
            .proof
            .as_mut()
            .unwrap()
            .prover_name = "p9".into();
        only(&h, "3/exec: stored proof under token");
    }

    #[test]
    fn lost_proofs_are_caught() {
        let mut h = good();
        let key = (2, "audit".to_string());
        h.jobs.get_mut(&key).unwrap().proof = None;
        let v = check(&h);
        assert!(
            v.iter()
                .any(|l| l.contains("2/audit: proven but no proof record")),
            "{v:#?}"
        );
        assert!(
            v.iter()
                .any(|l| l.contains("2/audit: acknowledged to p2 but not in the store")),
            "{v:#?}"
        );
        let mut h = good();
        h.jobs
            .get_mut(&key)
            .unwrap()
            .proof
            .as_mut()
            .unwrap()
            .readable = Err("digest mismatch".into());
        only(&h, "2/audit: proof not readable");
    }

    #[test]
    fn an_unproven_batch_is_caught() {
        let mut h = good();
        let key = (3, "audit".to_string());
        h.jobs.insert(
            key.clone(),
            JobRecord {
                state: "queued".into(),
                proof: None,
                committed: Vec::new(),
            },
        );
        h.acked.remove(&key);
        let v = check(&h);
        assert!(
            v.iter().any(|l| l.contains("3/audit: queued at the end")),
            "{v:#?}"
        );
        assert!(
            v.iter()
                .any(|l| l.contains("3/audit: verified on L1 but not proven")),
            "{v:#?}"
        );
    }
}
