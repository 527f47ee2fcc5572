//! Property tests: random interleavings of prover and job events, coordinator crashes and
//! restarts included, checked against invariants and against a model of the store built
//! only from `Persist` effects (committed later than the dispatches go out). See `harness`.
//! Every property is checked under every built-in assignment policy: the mechanism, not the
//! policy, is what keeps them.
mod common;
mod harness;
use common::*;
use harness::*;
use proofmill_scheduler::{PolicyName, SchedulerConfig};
use proptest::prelude::*;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..5u8, 1..4u8, 1..4u32, 0..2u8).prop_map(|(prover, types, capacity, version)| Op::Register { prover, types, capacity, version }),
        1 => (0..2u8).prop_map(|version| Op::AddBatch { version }),
        3 => (0..5u8, any::<usize>(), any::<bool>()).prop_map(|(prover, pick, stale)| Op::Complete { prover, pick, stale }),
        1 => (0..5u8, any::<usize>(), any::<bool>()).prop_map(|(prover, pick, invalid)| Op::Fail { prover, pick, invalid }),
        1 => (0..5u8, any::<usize>()).prop_map(|(prover, pick)| Op::Decline { prover, pick }),
        1 => (0..5u8).prop_map(|prover| Op::Disconnect { prover }),
        2 => (0..5u8, any::<u8>()).prop_map(|(prover, keep_mask)| Op::Reconnect { prover, keep_mask }),
        2 => (0..5u8).prop_map(|prover| Op::Heartbeat { prover }),
        1 => (0..5u8, 0..4u32).prop_map(|(prover, free)| Op::Availability { prover, free }),
        2 => (0..20_000u64).prop_map(|ms| Op::Advance { ms }),
        3 => (0..4usize, any::<bool>()).prop_map(|(n, all)| Op::Commit { n, all }),
        1 => any::<usize>().prop_map(|keep| Op::Crash { keep }),
    ]
}

/// Honest provers for every (type, version), ids outside the random range, and a crash
/// at round `crash_at` (keeping `keep` pending groups) after which they reconnect.
fn prove_everything(h: &mut Harness, crash_at: Option<(usize, usize)>) {
    let honest: Vec<_> = (0..VERSIONS.len())
        .map(|v| (pid(&format!("honest{v}")), (0b11, 2, v as u8)))
        .collect();
    for (id, inf) in &honest {
        h.reconnect(id, Vec::new(), *inf);
    }
    for round in 0..400 {
        if h.all_proven() {
            break;
        }
        if let Some((at, keep)) = crash_at
            && at == round
        {
            h.crash(keep);
            for (id, inf) in &honest {
                let tasks = h.tasks.get(id).cloned().unwrap_or_default();
                h.reconnect(id, tasks, *inf);
            }
        }
        for (id, _) in &honest {
            for (key, token) in h.tasks.get(id).cloned().unwrap_or_default() {
                if !h.complete(id, &key, token) {
                    h.forget(id, &key, token);
                }
            }
        }
        h.commit_all();
        h.now += 5_000;
        for (id, _) in &honest {
            let running = h.tasks.get(id).cloned().unwrap_or_default();
            let effects = h.s.heartbeat(id, &running, h.now);
            h.apply(effects, Vec::new());
        }
        let effects = h.s.tick(h.now);
        h.apply(effects, Vec::new());
        h.commit_all();
        h.check_invariants();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Safety under arbitrary interleavings, with the default (small) budgets so jobs also
    /// reach `failed`.
    #[test]
    fn invariants_hold(ops in prop::collection::vec(op(), 1..120)) {
        // Backup copies break the one-lease-per-job model the harness checks; they have their
        // own scenarios (tests/faulty_provers.rs).
        for assignment_policy in PolicyName::ALL {
            let mut h = Harness::new(SchedulerConfig { max_attempts: 3, max_lost_attempts: 3, straggler_factor: 0, assignment_policy, ..Default::default() });
            for op in &ops {
                h.step(op);
            }
        }
    }

    /// Liveness: after any prefix, once matching provers exist and keep answering, every job
    /// is proven (budgets are large so that no job may give up), even across one more crash.
    #[test]
    fn every_batch_is_eventually_proven(
        ops in prop::collection::vec(op(), 1..80),
        crash_at in prop::option::of((0..6usize, any::<usize>())),
    ) {
        // No prover is cordoned for its invalid proofs nor a batch given up for its failures
        // here: liveness is asked of a fleet that keeps answering.
        for assignment_policy in PolicyName::ALL {
            let mut h = Harness::new(SchedulerConfig { max_attempts: 1_000, max_lost_attempts: 1_000, cordon_after_invalid: 0, batch_failure_provers: 0, straggler_factor: 0, assignment_policy, ..Default::default() });
            for op in &ops {
                h.step(op);
            }
            prove_everything(&mut h, crash_at);
            prop_assert!(h.all_proven(), "{assignment_policy}: not proven: {:?}", h.not_proven());
        }
    }
}
