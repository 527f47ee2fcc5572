//! Assignment policies: what the measured policy (`earliest-finish`) does with the prove
//! times it learns, and the mechanism's rules it cannot bend.
mod common;
use common::*;
use proofmill_scheduler::{Effect, Failure, PolicyName, Scheduler, SchedulerConfig};
use proofmill_types::{FencingToken, JobKey, Millis, ProverId};

fn sched(policy: PolicyName) -> Scheduler {
    // No backup copies: they would blur which prover a task went to.
    let config = SchedulerConfig {
        assignment_policy: policy,
        straggler_factor: 0,
        ..SchedulerConfig::default()
    };
    Scheduler::new(config, 0)
}

fn token_of(effects: &[Effect], prover: &ProverId) -> (JobKey, FencingToken) {
    dispatches(effects)
        .into_iter()
        .find(|(p, _)| p == prover)
        .map(|(_, j)| (j.key, j.lease.unwrap().token))
        .unwrap_or_else(|| panic!("nothing dispatched to {prover}: {effects:?}"))
}

/// `slow` (id sorting first) proves an exec task in 4 s and `fast` in 1 s; both are idle at
/// 4 s, `fast` assigned last. Returns the scheduler and the time.
fn measured_pair(policy: PolicyName) -> (Scheduler, Millis) {
    let (slow, fast) = (pid("a-slow"), pid("z-fast"));
    let mut s = sched(policy);
    s.register(slow.clone(), info(&["exec"], 1, "v1"), 0)
        .unwrap();
    s.register(fast.clone(), info(&["exec"], 1, "v1"), 0)
        .unwrap();
    let effects = s.add_jobs([job(1, "exec", "v1"), job(2, "exec", "v1")], 0);
    let (slow_key, slow_token) = token_of(&effects, &slow);
    let (fast_key, fast_token) = token_of(&effects, &fast);
    s.complete(&fast, &fast_key, fast_token, 1_000).unwrap();
    s.complete(&slow, &slow_key, slow_token, 4_000).unwrap();
    (s, 4_000)
}

#[test]
fn a_fast_prover_gets_the_next_task() {
    let (mut s, now) = measured_pair(PolicyName::EarliestFinish);
    let d = dispatches(&s.add_jobs([job(3, "exec", "v1")], now));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0, pid("z-fast"), "it finishes in 1 s, not 4 s");
    // Today's policy knows no speeds: the prover that waited longest gets it.
    let (mut s, now) = measured_pair(PolicyName::OldestFirst);
    let d = dispatches(&s.add_jobs([job(3, "exec", "v1")], now));
    assert_eq!(d[0].0, pid("a-slow"));
}

#[test]
fn a_job_waits_for_a_much_faster_busy_prover_but_not_for_one_that_hangs() {
    let (mut s, now) = measured_pair(PolicyName::EarliestFinish);
    let (slow, fast) = (pid("a-slow"), pid("z-fast"));
    let effects = s.add_jobs([job(3, "exec", "v1")], now);
    let (key3, token3) = token_of(&effects, &fast);
    // The fast prover is expected to be free at 5 s: a job arriving at 4.5 s finishes at
    // 6 s there, at 8.5 s on the idle slow prover. It waits.
    assert!(dispatches(&s.add_jobs([job(4, "exec", "v1")], 4_500)).is_empty());
    assert!(
        s.next_wakeup().is_some_and(|w| w <= 5_000),
        "it looks again when due"
    );
    let effects = s.complete(&fast, &key3, token3, 5_000).unwrap();
    let (key4, token4) = token_of(&effects, &fast);
    assert_eq!(key4.batch, 4);

    // Now the fast prover hangs on batch 4 (heart-beating): batch 5 waits a while, then goes
    // to the slow prover rather than waiting for the hung one's hard deadline.
    assert!(dispatches(&s.add_jobs([job(5, "exec", "v1")], 5_100)).is_empty());
    let given_at = loop {
        let now = s
            .next_wakeup()
            .expect("a job waits: the scheduler must look again");
        assert!(now < 60_000, "batch 5 still waits at {now} ms");
        s.heartbeat(&fast, &[(key4.clone(), token4)], now);
        s.heartbeat(&slow, &[], now);
        if let Some((_, job)) = dispatches(&s.tick(now))
            .into_iter()
            .find(|(p, _)| *p == slow)
        {
            assert_eq!(job.key.batch, 5);
            break now;
        }
    };
    assert!(
        given_at > 6_000,
        "not before the fast one is overdue: {given_at}"
    );
}

#[test]
fn an_unknown_prover_still_gets_work_one_task_at_a_time_until_measured() {
    let (mut s, now) = measured_pair(PolicyName::EarliestFinish);
    // Batch 3 goes to the fast prover, 6 to the slow one; the rest wait for the fast one.
    let effects = s.add_jobs((3..=9).map(|b| job(b, "exec", "v1")), now);
    assert_eq!(dispatches(&effects).len(), 2, "{effects:?}");
    let new = pid("m-new");
    let effects = s
        .register(new.clone(), info(&["exec"], 4, "v1"), now + 100)
        .unwrap();
    let to_new = dispatches(&effects);
    assert_eq!(to_new.len(), 1, "tried, with one task: {effects:?}");
    assert_eq!(to_new[0].0, new);
    let (key, token) = token_of(&effects, &new);
    // Measured at 1 s, as fast as the fastest: it takes all four jobs still waiting.
    let effects = s.complete(&new, &key, token, now + 1_100).unwrap();
    let d = dispatches(&effects);
    assert_eq!(d.len(), 4, "{effects:?}");
    assert!(d.iter().all(|(p, _)| *p == new));
}

#[test]
fn the_mechanism_rules_hold_under_the_measured_policy() {
    let (mut s, now) = measured_pair(PolicyName::EarliestFinish);
    let (slow, fast) = (pid("a-slow"), pid("z-fast"));
    // The fast prover fails batch 3: it goes to the slow one, not back to the faster.
    let effects = s.add_jobs([job(3, "exec", "v1")], now);
    let (key, token) = token_of(&effects, &fast);
    let effects = s
        .fail(&fast, &key, token, "boom", Failure::Error, now + 10)
        .unwrap();
    let d = dispatches(&effects);
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].0.clone(), d[0].1.key.batch), (slow.clone(), 3));
    // A cordoned prover gets nothing, however fast.
    s.cordon(&fast, true, "maintenance", now + 20).unwrap();
    let effects = s.add_jobs([job(4, "exec", "v1")], now + 30);
    assert!(
        dispatches(&effects).iter().all(|(p, _)| *p != fast),
        "{effects:?}"
    );
    // Capacity: uncordoned, the fast prover (one slot) takes one task of many.
    let effects = s.cordon(&fast, false, "", now + 40).unwrap();
    let to_fast = dispatches(&effects)
        .iter()
        .filter(|(p, _)| *p == fast)
        .count();
    assert_eq!(to_fast, 1);
    let effects = s.add_jobs((5..=9).map(|b| job(b, "exec", "v1")), now + 50);
    assert!(dispatches(&effects).iter().all(|(p, _)| *p != fast));
    assert!(
        s.provers()
            .iter()
            .all(|p| p.running.len() as u32 <= p.info.capacity)
    );
}
