//! The distributed-proving scenarios ethrex tests, and ours, at the state-machine level.
mod common;
use common::*;
use proofmill_scheduler::{
    Effect, Failure, ResultCheck, Scheduler, SchedulerConfig, SchedulerError,
};
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::{AttemptOutcome, FencingToken, JobKey, JobState};

fn sched() -> Scheduler {
    Scheduler::new(SchedulerConfig::default(), 0)
}

#[test]
fn two_provers_of_one_type_get_different_batches() {
    let mut s = sched();
    s.add_jobs((1..=3).map(|b| job(b, "exec", "v1")), 0);
    let d1 = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    let d2 = dispatches(&s.register(pid("b"), info(&["exec"], 1, "v1"), 0).unwrap());
    assert_eq!(d1.len(), 1);
    assert_eq!(d2.len(), 1);
    assert_eq!(d1[0].1.key.batch, 1, "oldest batch first");
    assert_eq!(d2[0].1.key.batch, 2);
    assert_ne!(
        d1[0].1.lease.as_ref().unwrap().token,
        d2[0].1.lease.as_ref().unwrap().token
    );
}

#[test]
fn provers_of_different_types_work_the_same_batch() {
    let mut s = sched();
    s.add_jobs([job(1, "exec", "v1"), job(1, "stark", "v1")], 0);
    let d1 = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    let d2 = dispatches(&s.register(pid("b"), info(&["stark"], 1, "v1"), 0).unwrap());
    assert_eq!(d1[0].1.key, JobKey::new(DEFAULT_CHAIN, 1, pt("exec")));
    assert_eq!(d2[0].1.key, JobKey::new(DEFAULT_CHAIN, 1, pt("stark")));
}

#[test]
fn capacity_bounds_concurrent_tasks_and_push_refills_on_completion() {
    let mut s = sched();
    s.add_jobs((1..=5).map(|b| job(b, "exec", "v1")), 0);
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 2, "v1"), 0).unwrap());
    assert_eq!(d.len(), 2);
    let token = d[0].1.lease.as_ref().unwrap().token;
    let effects = s.complete(&pid("a"), &d[0].1.key, token, 10).unwrap();
    assert!(matches!(&effects[0], Effect::Persist(j) if j.state == JobState::Proven));
    let next = dispatches(&effects);
    assert_eq!(next.len(), 1, "the freed slot is refilled at once");
    assert_eq!(next[0].1.key.batch, 3);
}

#[test]
fn versions_are_matched() {
    let mut s = sched();
    s.add_jobs([job(1, "exec", "v2"), job(2, "exec", "v1")], 0);
    let d = dispatches(&s.register(pid("old"), info(&["exec"], 2, "v1"), 0).unwrap());
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].1.key.batch, 2, "a v1 prover never gets a v2 batch");
}

#[test]
fn silent_prover_loses_lease_and_its_late_result_is_fenced() {
    let mut s = sched();
    s.add_jobs([job(1, "exec", "v1")], 0);
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    let old_token = d[0].1.lease.as_ref().unwrap().token;
    s.register(pid("b"), info(&["exec"], 1, "v1"), 0).unwrap();
    // b keeps answering heartbeats, a does not.
    s.heartbeat(&pid("b"), &[], 14_000);
    assert!(
        dispatches(&s.tick(14_999)).is_empty(),
        "not yet: 3 beats of 5 s"
    );
    let effects = s.tick(15_000);
    assert!(
        effects
            .iter()
            .any(|e| matches!(e, Effect::Disconnect { prover, .. } if *prover == pid("a")))
    );
    let d = dispatches(&effects);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0, pid("b"));
    let new_token = d[0].1.lease.as_ref().unwrap().token;
    assert!(new_token > old_token);
    assert_eq!(d[0].1.lost_attempts, 1);
    // a wakes up and submits: fenced off, nothing changes.
    let key = JobKey::new(DEFAULT_CHAIN, 1, pt("exec"));
    assert!(matches!(
        s.check_result(&pid("a"), &key, old_token),
        ResultCheck::Stale { .. }
    ));
    assert!(matches!(
        s.complete(&pid("a"), &key, old_token, 15_001),
        Err(SchedulerError::NotCurrent { .. })
    ));
    assert_eq!(
        s.job(&key).unwrap().lease.as_ref().unwrap().token,
        new_token
    );
    s.complete(&pid("b"), &key, new_token, 15_002).unwrap();
    assert_eq!(
        s.check_result(&pid("b"), &key, new_token),
        ResultCheck::NotOpen,
        "duplicate goes to the store"
    );
}

#[test]
fn hard_deadline_expires_even_with_heartbeats() {
    let mut s = Scheduler::new(
        SchedulerConfig {
            prover_timeout_ms: 20_000,
            ..Default::default()
        },
        0,
    );
    s.add_jobs([job(1, "exec", "v1")], 0);
    s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap();
    for t in (5_000..20_000).step_by(5_000) {
        s.heartbeat(&pid("a"), &[], t);
        assert!(s.tick(t).is_empty());
    }
    s.heartbeat(&pid("a"), &[], 20_000);
    let effects = s.tick(20_000);
    assert!(
        effects.iter().any(|e| matches!(e, Effect::Cancel { .. })),
        "prover told to stop"
    );
    let d = dispatches(&effects);
    assert_eq!(
        d.len(),
        1,
        "requeued and (only prover) re-leased: {effects:?}"
    );
    assert!(d[0].1.lease.as_ref().unwrap().token > FencingToken(1));
}

#[test]
fn failures_back_off_then_fail_after_max_attempts() {
    let cfg = SchedulerConfig {
        max_attempts: 3,
        ..Default::default()
    };
    let mut s = Scheduler::new(cfg, 0);
    s.add_jobs([job(1, "exec", "v1")], 0);
    let mut effects = s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap();
    let key = JobKey::new(DEFAULT_CHAIN, 1, pt("exec"));
    let mut now = 0;
    for attempt in 1..=3u32 {
        let d = dispatches(&effects);
        assert_eq!(d.len(), 1, "attempt {attempt}");
        let token = d[0].1.lease.as_ref().unwrap().token;
        effects = s
            .fail(&pid("a"), &key, token, "boom", Failure::Error, now)
            .unwrap();
        let persisted = match &effects[0] {
            Effect::Persist(j) => j.clone(),
            e => panic!("{e:?}"),
        };
        assert_eq!(persisted.failed_attempts, attempt);
        if attempt == 3 {
            assert_eq!(persisted.state, JobState::Failed);
            assert!(s.job(&key).is_none());
            return;
        }
        assert!(
            dispatches(&effects).is_empty(),
            "backoff: no immediate retry"
        );
        let wait = s.config().retry_delay_ms(attempt);
        assert_eq!(s.next_wakeup().unwrap().min(now + wait), now + wait);
        s.heartbeat(&pid("a"), &[], now + wait);
        now += wait;
        effects = s.tick(now);
    }
}

#[test]
fn retry_requeues_a_failed_job() {
    let mut s = Scheduler::new(
        SchedulerConfig {
            max_attempts: 1,
            ..Default::default()
        },
        0,
    );
    s.add_jobs([job(1, "exec", "v1")], 0);
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    let effects = s
        .fail(
            &pid("a"),
            &d[0].1.key,
            d[0].1.lease.as_ref().unwrap().token,
            "x",
            Failure::Error,
            1,
        )
        .unwrap();
    let failed = match &effects[0] {
        Effect::Persist(j) => j.clone(),
        e => panic!("{e:?}"),
    };
    assert_eq!(failed.state, JobState::Failed);
    let d = dispatches(&s.retry(failed, 2));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].1.failed_attempts, 0);
}

#[test]
fn decline_requeues_without_penalty_and_waits_for_availability() {
    let mut s = sched();
    s.add_jobs([job(1, "exec", "v1")], 0);
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    let token = d[0].1.lease.as_ref().unwrap().token;
    let effects = s.decline(&pid("a"), &d[0].1.key, token, 1).unwrap();
    assert!(dispatches(&effects).is_empty(), "no free slot advertised");
    let d = dispatches(&s.availability(&pid("a"), 1, 2));
    assert_eq!(d.len(), 1);
    assert_eq!((d[0].1.failed_attempts, d[0].1.lost_attempts), (0, 0));
}

#[test]
fn restart_keeps_leases_for_a_reconnecting_prover_and_requeues_missing_ones() {
    let mut s = sched();
    s.add_jobs([job(1, "exec", "v1"), job(2, "exec", "v1")], 0);
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 2, "v1"), 0).unwrap());
    let leased: Vec<_> = d.iter().map(|(_, j)| j.clone()).collect();
    let max_token = leased
        .iter()
        .map(|j| j.lease.as_ref().unwrap().token.0)
        .max()
        .unwrap();

    // A new coordinator process rebuilt from the store.
    let mut s2 = Scheduler::new(SchedulerConfig::default(), max_token);
    assert!(dispatches(&s2.add_jobs(leased.clone(), 100)).is_empty());
    let keep = (
        leased[0].key.clone(),
        leased[0].lease.as_ref().unwrap().token,
    );
    let effects = s2.reconnect(
        pid("a"),
        info(&["exec"], 2, "v1"),
        std::slice::from_ref(&keep),
        200,
    );
    let lost: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(j) if j.state == JobState::Queued && j.lost_attempts == 1 => {
                Some(j.key.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(lost, vec![leased[1].key.clone()]);
    let d = dispatches(&effects);
    assert_eq!(
        d.len(),
        1,
        "the missing task is leased again, with a new token"
    );
    assert!(d[0].1.lease.as_ref().unwrap().token.0 > max_token);
    assert_eq!(
        s2.check_result(&pid("a"), &keep.0, keep.1),
        ResultCheck::Current
    );
}

#[test]
fn ghost_leases_expire_if_the_prover_never_returns() {
    let mut s = sched();
    s.add_jobs([job(1, "exec", "v1")], 0);
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    let mut s2 = sched();
    s2.add_jobs([d[0].1.clone()], 1_000);
    s2.register(pid("b"), info(&["exec"], 1, "v1"), 1_000)
        .unwrap();
    s2.heartbeat(&pid("b"), &[], 16_000);
    let d = dispatches(&s2.tick(16_000));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].0, pid("b"));
}

#[test]
fn heartbeat_cancels_tasks_the_prover_should_not_run() {
    let mut s = sched();
    s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap();
    let bogus = (JobKey::new(DEFAULT_CHAIN, 9, pt("exec")), FencingToken(77));
    let effects = s.heartbeat(&pid("a"), &[bogus], 1);
    assert!(matches!(
        &effects[..],
        [Effect::Cancel {
            token: FencingToken(77),
            ..
        }]
    ));
}

#[test]
fn drain_stops_dispatch_but_accepts_results() {
    let mut s = sched();
    s.add_jobs((1..=2).map(|b| job(b, "exec", "v1")), 0);
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    s.drain();
    let effects = s
        .complete(
            &pid("a"),
            &d[0].1.key,
            d[0].1.lease.as_ref().unwrap().token,
            1,
        )
        .unwrap();
    assert!(dispatches(&effects).is_empty());
    // The job's row, and the end of its attempt.
    assert_eq!(effects.len(), 2);
    assert!(matches!(&effects[0], Effect::Persist(j) if j.state == JobState::Proven));
    assert!(matches!(
        &effects[1],
        Effect::AttemptEnded {
            outcome: AttemptOutcome::Proven,
            ..
        }
    ));
}

#[test]
fn paused_dispatch_holds_jobs_and_a_resume_dispatches_them() {
    let mut s = sched();
    s.add_jobs((1..=2).map(|b| job(b, "exec", "v1")), 0);
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    assert!(s.pause_dispatch(true, 1).is_empty());
    assert!(s.is_dispatch_paused());
    // Neither a result nor a new prover gets work out while paused; the result counts.
    let effects = s
        .complete(
            &pid("a"),
            &d[0].1.key,
            d[0].1.lease.as_ref().unwrap().token,
            2,
        )
        .unwrap();
    assert!(matches!(&effects[0], Effect::Persist(j) if j.state == JobState::Proven));
    assert!(dispatches(&effects).is_empty());
    let b = s.register(pid("b"), info(&["exec"], 1, "v1"), 3).unwrap();
    assert!(dispatches(&b).is_empty());
    assert!(dispatches(&s.tick(100)).is_empty());
    // Resumed: the queued job goes out at once.
    let resumed = dispatches(&s.pause_dispatch(false, 101));
    assert_eq!(resumed.len(), 1);
    assert_eq!(resumed[0].1.key, JobKey::new(DEFAULT_CHAIN, 2, pt("exec")));
    assert!(!s.is_dispatch_paused());
}

#[test]
fn cancel_job_tells_the_owner() {
    let mut s = sched();
    s.add_jobs([job(1, "exec", "v1")], 0);
    s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap();
    let key = JobKey::new(DEFAULT_CHAIN, 1, pt("exec"));
    let effects = s.cancel_job(&key, "operator", 5).unwrap();
    assert!(matches!(&effects[0], Effect::Persist(j) if j.state == JobState::Cancelled));
    assert!(matches!(&effects[1], Effect::Cancel { prover, .. } if *prover == pid("a")));
    assert!(s.cancel_job(&key, "again", 6).is_err());
}

/// A restarted coordinator whose last run sent tasks before their leases were committed.
fn restarted_with_orphans() -> Scheduler {
    let mut s = Scheduler::new(SchedulerConfig::default(), 0);
    s.set_orphan_tokens(11..=100);
    // The store shows these jobs queued: their leases (tokens 11..) never became durable.
    s.add_jobs(
        [
            job(1, "exec", "v1"),
            job(2, "exec", "v1"),
            job(3, "exec", "v2"),
        ],
        0,
    );
    s
}

#[test]
fn restart_gives_back_tasks_sent_before_their_lease_was_durable() {
    let mut s = restarted_with_orphans();
    let orphan = (JobKey::new(DEFAULT_CHAIN, 1, pt("exec")), FencingToken(42));
    let stale = (JobKey::new(DEFAULT_CHAIN, 2, pt("exec")), FencingToken(7));
    let effects = s.reconnect(
        pid("a"),
        info(&["exec"], 2, "v1"),
        &[orphan.clone(), stale.clone()],
        50,
    );
    let adopted: Vec<_> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::Persist(j) if j.key == orphan.0 => j.lease.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(adopted.len(), 1, "{effects:?}");
    assert_eq!(adopted[0].token, orphan.1);
    assert_eq!(adopted[0].prover, pid("a"));
    assert_eq!(
        s.check_result(&pid("a"), &orphan.0, orphan.1),
        ResultCheck::Current
    );
    // A token below the window was durable once and then superseded: fenced as before.
    assert!(effects.iter().any(|e| matches!(
        e,
        Effect::Cancel { key, token, .. } if *key == stale.0 && *token == stale.1
    )));
    // The free slot gets job 2 again, with a token above the window.
    let d = dispatches(&effects);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].1.key, stale.0);
    assert!(d[0].1.lease.as_ref().unwrap().token.0 > 100);
    s.complete(&pid("a"), &orphan.0, orphan.1, 60).unwrap();
}

#[test]
fn orphan_tasks_are_cancelled_when_the_job_went_elsewhere_or_does_not_fit() {
    let mut s = restarted_with_orphans();
    let d = dispatches(&s.register(pid("b"), info(&["exec"], 1, "v1"), 10).unwrap());
    assert_eq!(d[0].1.key, JobKey::new(DEFAULT_CHAIN, 1, pt("exec")));
    // `a` comes back later with its orphan of job 1 (now leased to `b`) and one of job 3,
    // whose version it does not run.
    let late = [
        (JobKey::new(DEFAULT_CHAIN, 1, pt("exec")), FencingToken(12)),
        (JobKey::new(DEFAULT_CHAIN, 3, pt("exec")), FencingToken(13)),
    ];
    let effects = s.reconnect(pid("a"), info(&["exec"], 2, "v1"), &late, 20);
    for (key, token) in &late {
        assert!(
            effects.iter().any(|e| matches!(
                e,
                Effect::Cancel { key: k, token: t, .. } if k == key && t == token
            )),
            "{key} not cancelled: {effects:?}"
        );
        assert_ne!(s.check_result(&pid("a"), key, *token), ResultCheck::Current);
    }
}

#[test]
fn an_orphan_is_not_taken_back_once_this_run_leased_its_job() {
    let mut s = restarted_with_orphans();
    let key = JobKey::new(DEFAULT_CHAIN, 1, pt("exec"));
    // This run leases job 1 itself, above the window, and the lease fails: queued again.
    let d = dispatches(&s.register(pid("b"), info(&["exec"], 1, "v1"), 10).unwrap());
    assert_eq!(d[0].1.key, key);
    let newer = d[0].1.lease.as_ref().unwrap().token;
    s.fail(&pid("b"), &key, newer, "error", Failure::Error, 20)
        .unwrap();
    assert!(matches!(s.job(&key), Some(j) if j.state == JobState::Queued));
    // `a` comes back with the task the last run sent: superseded by `newer`, so cancelled.
    let orphan = FencingToken(12);
    let effects = s.reconnect(
        pid("a"),
        info(&["exec"], 1, "v1"),
        &[(key.clone(), orphan)],
        30,
    );
    assert!(
        !effects
            .iter()
            .any(|e| matches!(e, Effect::Persist(j) if j.lease.as_ref().is_some_and(|l| l.token == orphan))),
        "a token older than one this run issued became the lease again: {effects:?}"
    );
    assert!(effects.iter().any(
        |e| matches!(e, Effect::Cancel { key: k, token, .. } if *k == key && *token == orphan)
    ));
    assert_ne!(
        s.check_result(&pid("a"), &key, orphan),
        ResultCheck::Current
    );
}

#[test]
fn a_cordoned_prover_gets_no_new_tasks_but_finishes_its_own() {
    let mut s = sched();
    s.add_jobs((1..=3).map(|b| job(b, "exec", "v1")), 0);
    assert!(matches!(
        s.cordon(&pid("nobody"), true, "maintenance", 0),
        Err(SchedulerError::UnknownProver(_))
    ));
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    let token = d[0].1.lease.as_ref().unwrap().token;
    assert!(
        s.cordon(&pid("a"), true, "maintenance", 1)
            .unwrap()
            .is_empty()
    );
    assert!(s.provers()[0].cordoned.is_some());
    // Its running task still completes, and its slot is not refilled.
    let effects = s.complete(&pid("a"), &d[0].1.key, token, 2).unwrap();
    assert!(matches!(&effects[0], Effect::Persist(j) if j.state == JobState::Proven));
    assert!(dispatches(&effects).is_empty());
    // Other provers still get work; the cordon survives a reconnect.
    let d = dispatches(&s.register(pid("b"), info(&["exec"], 1, "v1"), 3).unwrap());
    assert_eq!(d[0].1.key.batch, 2);
    s.disconnect(&pid("a"), 3);
    assert!(dispatches(&s.reconnect(pid("a"), info(&["exec"], 1, "v1"), &[], 4)).is_empty());
    // Back in rotation: the waiting job goes out at once.
    let d = dispatches(&s.cordon(&pid("a"), false, "maintenance", 5).unwrap());
    assert_eq!(
        (d.len(), d[0].0.clone(), d[0].1.key.batch),
        (1, pid("a"), 3)
    );
    assert!(s.provers()[0].cordoned.is_none());
    assert!(
        s.cordon(&pid("nobody"), false, "maintenance", 6).is_err(),
        "only ids cordoned earlier may be put back unseen"
    );
}

/// Cordons restored from the store (a restart) hold for provers not yet reconnected.
#[test]
fn restored_cordons_hold_when_their_provers_reconnect() {
    let mut s = sched();
    s.restore_cordons([
        (pid("a"), "maintenance".into()),
        (pid("gone"), "maintenance".into()),
    ]);
    s.add_jobs((1..=2).map(|b| job(b, "exec", "v1")), 0);
    assert!(
        s.cordon(&pid("gone"), true, "maintenance", 1)
            .unwrap()
            .is_empty(),
        "idempotent"
    );
    assert!(dispatches(&s.reconnect(pid("a"), info(&["exec"], 1, "v1"), &[], 2)).is_empty());
    assert!(s.provers()[0].cordoned.is_some());
    assert!(
        s.cordon(&pid("gone"), false, "maintenance", 3)
            .unwrap()
            .is_empty()
    );
    let d = dispatches(&s.cordon(&pid("a"), false, "maintenance", 4).unwrap());
    assert_eq!((d.len(), d[0].1.key.batch), (1, 1));
    assert!(
        s.cordon(&pid("gone"), true, "maintenance", 5).is_err(),
        "lifted: unknown again"
    );
}

/// What the metrics' fleet gauges read: connected provers, their slots in rotation and
/// their running tasks per proof type; cordoned slots and disconnected provers left out.
#[test]
fn fleet_by_type_counts_connected_slots_and_running_tasks() {
    use proofmill_scheduler::FleetFigures;
    let mut s = sched();
    s.add_jobs((1..=2).map(|b| job(b, "exec", "v1")), 0);
    s.register(pid("a"), info(&["exec", "stark"], 2, "v1"), 0)
        .unwrap();
    s.register(pid("b"), info(&["exec"], 3, "v1"), 0).unwrap();
    s.register(pid("c"), info(&["exec"], 4, "v1"), 0).unwrap();
    s.cordon(&pid("b"), true, "maintenance", 1).unwrap();
    s.disconnect(&pid("c"), 2);
    let fleet = s.fleet_by_type();
    let running: u64 = fleet[&pt("exec")].busy;
    assert_eq!(running, 2, "both jobs run");
    assert_eq!(
        fleet[&pt("exec")],
        FleetFigures {
            connected: 2,
            capacity: 2,
            busy: 2
        },
        "b is cordoned (its slots out of rotation), c is gone"
    );
    assert_eq!(
        fleet[&pt("stark")],
        FleetFigures {
            connected: 1,
            capacity: 2,
            busy: 0
        }
    );
}
