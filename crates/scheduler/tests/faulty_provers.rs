//! One faulty prover, one bad batch or one killed prover must not stall the others.
mod common;
use common::*;
use proofmill_scheduler::{Effect, Failure, Scheduler, SchedulerConfig};
use proofmill_types::{AttemptOutcome, FencingToken, Job, JobKey, JobState};

fn sched() -> Scheduler {
    Scheduler::new(SchedulerConfig::default(), 0)
}

fn token(job: &Job) -> FencingToken {
    job.lease.as_ref().unwrap().token
}

fn persisted(effects: &[Effect]) -> Job {
    match &effects[0] {
        Effect::Persist(j) => j.clone(),
        e => panic!("expected a persist first: {e:?}"),
    }
}

/// The prover reports that the task it was dispatched (`job`, with its lease) failed.
fn fail_task(
    s: &mut Scheduler,
    prover: &str,
    job: &Job,
    error: &str,
    failure: Failure,
    now: u64,
) -> Vec<Effect> {
    s.fail(&pid(prover), &job.key, token(job), error, failure, now)
        .unwrap()
}

fn cordons(effects: &[Effect]) -> Vec<String> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Cordon { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

/// The outside tester's garbage prover got the same two jobs five times each: whenever a
/// backoff ended it was the idle prover that had waited longest.
#[test]
fn a_failed_job_goes_to_another_prover_not_back_to_the_one_that_failed_it() {
    let mut s = sched();
    s.add_jobs((1..=2).map(|b| job(b, "exec", "v1")), 0);
    let bad = dispatches(&s.register(pid("bad"), info(&["exec"], 1, "v1"), 0).unwrap());
    let good = dispatches(
        &s.register(pid("good"), info(&["exec"], 1, "v1"), 0)
            .unwrap(),
    );
    assert_eq!((bad[0].1.key.batch, good[0].1.key.batch), (1, 2));
    let key1 = bad[0].1.key.clone();
    let effects = s
        .fail(
            &pid("bad"),
            &key1,
            token(&bad[0].1),
            "garbage",
            Failure::InvalidProof,
            10,
        )
        .unwrap();
    let job = persisted(&effects);
    assert_eq!(
        (job.state, job.not_before),
        (JobState::Queued, 10),
        "no backoff: another prover can take it"
    );
    assert!(
        dispatches(&effects).is_empty(),
        "not handed back to the prover that failed it"
    );
    // The good prover finishes its batch and gets the failed one next.
    let effects = s
        .complete(&pid("good"), &good[0].1.key, token(&good[0].1), 20)
        .unwrap();
    let d = dispatches(&effects);
    assert_eq!(
        (d.len(), d[0].0.clone(), d[0].1.key.clone()),
        (1, pid("good"), key1.clone())
    );
    s.complete(&pid("good"), &key1, token(&d[0].1), 30).unwrap();
    let views = s.provers();
    let bad_view = views.iter().find(|p| p.id == pid("bad")).unwrap();
    let good_view = views.iter().find(|p| p.id == pid("good")).unwrap();
    assert_eq!((bad_view.stats.invalid, bad_view.stats.proven), (1, 0));
    assert_eq!((good_view.stats.invalid, good_view.stats.proven), (0, 2));
}

#[test]
fn one_prover_alone_cannot_exhaust_the_attempts_while_another_is_connected() {
    let cfg = SchedulerConfig {
        max_attempts: 1,
        ..Default::default()
    };
    let mut s = Scheduler::new(cfg, 0);
    s.add_jobs([job(1, "exec", "v1")], 0);
    let d = dispatches(&s.register(pid("bad"), info(&["exec"], 1, "v1"), 0).unwrap());
    s.register(pid("good"), info(&["exec"], 1, "v1"), 0)
        .unwrap();
    let key = d[0].1.key.clone();
    let effects = s
        .fail(&pid("bad"), &key, token(&d[0].1), "oom", Failure::Error, 5)
        .unwrap();
    assert_eq!(
        persisted(&effects).state,
        JobState::Queued,
        "another prover has not tried it"
    );
    let d = dispatches(&effects);
    assert_eq!(d[0].0, pid("good"));
    // Once every connected prover has failed it, the attempt budget rules again.
    let effects = s
        .fail(&pid("good"), &key, token(&d[0].1), "oom", Failure::Error, 6)
        .unwrap();
    let job = persisted(&effects);
    assert_eq!((job.state, job.failed_attempts), (JobState::Failed, 2));
}

#[test]
fn the_only_prover_still_gets_its_failed_job_back_after_the_backoff() {
    let mut s = sched();
    s.add_jobs([job(1, "exec", "v1")], 0);
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    let effects = fail_task(&mut s, "a", &d[0].1, "flaky", Failure::Error, 0);
    assert!(dispatches(&effects).is_empty(), "backoff first");
    s.heartbeat(&pid("a"), &[], 1_000);
    let d = dispatches(&s.tick(1_000));
    assert_eq!(
        (d.len(), d[0].0.clone()),
        (1, pid("a")),
        "no one else can take it"
    );
}

#[test]
fn a_prover_sending_invalid_proofs_is_cordoned_by_itself_until_uncordoned() {
    let mut s = sched();
    s.add_jobs((1..=6).map(|b| job(b, "exec", "v1")), 0);
    let mut d = dispatches(&s.register(pid("bad"), info(&["exec"], 1, "v1"), 0).unwrap());
    // A valid proof in between resets the run: only invalid proofs in a row count.
    let effects = fail_task(&mut s, "bad", &d[0].1, "bad", Failure::InvalidProof, 1);
    // Only prover: the next batch goes to it while the failed one backs off.
    d = dispatches(&effects);
    assert!(cordons(&effects).is_empty());
    let effects = s
        .complete(&pid("bad"), &d[0].1.key, token(&d[0].1), 1_001)
        .unwrap();
    d = dispatches(&effects);
    let mut now = 1_002;
    let mut earned = Vec::new();
    for _ in 0..3 {
        let effects = fail_task(&mut s, "bad", &d[0].1, "bad", Failure::InvalidProof, now);
        earned.extend(cordons(&effects));
        d = dispatches(&effects);
        if !earned.is_empty() {
            break;
        }
        assert_eq!(d.len(), 1, "still in rotation");
        now += 1;
    }
    assert_eq!(earned.len(), 1, "cordoned after 3 invalid proofs in a row");
    assert!(
        earned[0].contains("3 invalid proofs in a row"),
        "{earned:?}"
    );
    assert!(d.is_empty(), "no new task once cordoned");
    let view = &s.provers()[0];
    assert_eq!(view.cordoned.as_deref(), Some(earned[0].as_str()));
    assert_eq!(
        (
            view.stats.invalid,
            view.stats.invalid_in_a_row,
            view.stats.proven
        ),
        (4, 3, 1)
    );
    // Errors are the prover saying it could not prove: they never cordon.
    let mut s2 = sched();
    s2.add_jobs((1..=5).map(|b| job(b, "exec", "v1")), 0);
    let mut d2 = dispatches(
        &s2.register(pid("err"), info(&["exec"], 1, "v1"), 0)
            .unwrap(),
    );
    for i in 0..4u64 {
        let effects = fail_task(&mut s2, "err", &d2[0].1, "oom", Failure::Error, i);
        assert!(cordons(&effects).is_empty());
        d2 = dispatches(&effects);
    }
    assert_eq!(s2.provers()[0].stats.errors, 4);
    assert!(s2.provers()[0].cordoned.is_none());
    // Uncordon puts the first prover back, with a fresh run.
    let d = dispatches(&s.cordon(&pid("bad"), false, "", now).unwrap());
    assert_eq!(d.len(), 1);
    assert_eq!(s.provers()[0].stats.invalid_in_a_row, 0);
    let effects = fail_task(&mut s, "bad", &d[0].1, "bad", Failure::InvalidProof, now);
    assert!(
        cordons(&effects).is_empty(),
        "one more invalid proof is not three in a row"
    );
}

#[test]
fn a_job_failed_on_several_provers_is_failed_as_a_problem_of_its_batch() {
    let mut s = sched();
    s.add_jobs([job(1, "exec", "v1")], 0);
    let key = JobKey::new(proofmill_types::DEFAULT_CHAIN, 1, pt("exec"));
    for p in ["a", "b", "c", "d"] {
        s.register(pid(p), info(&["exec"], 1, "v1"), 0).unwrap();
    }
    let mut holder = s.job(&key).unwrap().lease.clone().unwrap();
    for (i, _) in ["first", "second"].iter().enumerate() {
        let effects = s
            .fail(
                &holder.prover,
                &key,
                holder.token,
                "input does not parse",
                Failure::Error,
                i as u64,
            )
            .unwrap();
        assert_eq!(persisted(&effects).state, JobState::Queued);
        let d = dispatches(&effects);
        assert_ne!(d[0].0, holder.prover);
        holder = d[0].1.lease.clone().unwrap();
    }
    let effects = s
        .fail(
            &holder.prover,
            &key,
            holder.token,
            "input does not parse",
            Failure::Error,
            3,
        )
        .unwrap();
    let job = persisted(&effects);
    assert_eq!(
        job.state,
        JobState::Failed,
        "three different provers failed it, a fourth is idle"
    );
    let why = job.last_error.unwrap();
    assert!(
        why.contains("3 different provers") && why.contains("batch"),
        "{why}"
    );
    assert!(why.contains("input does not parse"), "{why}");
    assert_eq!(job.failed_attempts, 3);
}

/// A killed prover's stream closes at once; its leases must not wait out three heartbeats.
#[test]
fn a_closed_stream_gets_a_short_grace_then_its_leases_go_back_to_the_queue() {
    let mut s = sched();
    s.add_jobs((1..=2).map(|b| job(b, "exec", "v1")), 0);
    let d = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    let held = d[0].1.clone();
    s.register(pid("b"), info(&["exec"], 1, "v1"), 0).unwrap();
    s.disconnect(&pid("a"), 100);
    assert_eq!(s.next_wakeup(), Some(1_100), "woken when the grace ends");
    assert!(s.tick(1_099).is_empty(), "still within the grace");
    // A reconnect within the grace keeps the lease.
    s.reconnect(
        pid("a"),
        info(&["exec"], 1, "v1"),
        &[(held.key.clone(), token(&held))],
        1_050,
    );
    assert!(s.tick(2_000).is_empty(), "reconnected: no grace running");
    s.disconnect(&pid("a"), 3_000);
    let effects = s.tick(4_000);
    let job = persisted(&effects);
    assert_eq!(
        (job.key.clone(), job.state, job.lost_attempts),
        (held.key.clone(), JobState::Queued, 1)
    );
    assert!(job.last_error.unwrap().contains("did not reconnect"));
    // The restarted prover comes back later under its id, without the task: nothing to lose.
    let effects = s.reconnect(pid("a"), info(&["exec"], 1, "v1"), &[], 4_500);
    assert!(effects.iter().all(
        |e| !matches!(e, Effect::Persist(j) if j.key == held.key && j.state == JobState::Queued)
    ));
}

/// Five 100 ms tasks of `exec` proven by `a`, then job 6 leased to `a` at t = 10 000 and `b`
/// registered idle: the scheduler knows the normal duration (p90 100 ms, so a task is a
/// straggler after max(3 × 100 ms, 1 s)).
fn with_a_straggler() -> (Scheduler, Job) {
    let mut s = sched();
    s.add_jobs((1..=6).map(|b| job(b, "exec", "v1")), 0);
    let mut d = dispatches(&s.register(pid("a"), info(&["exec"], 1, "v1"), 0).unwrap());
    let mut now = 0;
    for _ in 0..5 {
        now += 100;
        let effects = s
            .complete(&pid("a"), &d[0].1.key, token(&d[0].1), now)
            .unwrap();
        d = dispatches(&effects);
        if d.is_empty() {
            break;
        }
    }
    assert_eq!(d[0].1.key.batch, 6);
    // Leased at 500; `b` comes to nothing to do.
    s.register(pid("b"), info(&["exec"], 1, "v1"), 500).unwrap();
    (s, d[0].1.clone())
}

fn keep_alive(s: &mut Scheduler, now: u64) {
    s.heartbeat(&pid("a"), &[], now);
    s.heartbeat(&pid("b"), &[], now);
}

#[test]
fn a_straggler_gets_a_backup_copy_and_the_first_valid_result_wins() {
    let (mut s, primary) = with_a_straggler();
    keep_alive(&mut s, 1_400);
    assert!(
        dispatches(&s.tick(1_400)).is_empty(),
        "900 ms: not yet a straggler"
    );
    // Checked every 500 ms.
    keep_alive(&mut s, 1_900);
    let effects = s.tick(1_900);
    let d = dispatches(&effects);
    assert_eq!(d.len(), 1, "{effects:?}");
    let backup = d[0].1.clone();
    assert_eq!(
        (d[0].0.clone(), backup.key.clone()),
        (pid("b"), primary.key.clone())
    );
    assert!(token(&backup) > token(&primary));
    assert!(
        effects.iter().all(|e| !matches!(e, Effect::Persist(_))),
        "the job's row keeps its lease"
    );
    assert!(dispatches(&s.tick(3_000)).is_empty(), "one backup per task");
    assert!(
        effects.iter().any(|e| matches!(e, Effect::AttemptStarted { lease, backup: true, .. } if lease.token == token(&backup))),
        "the backup is an attempt of its own: {effects:?}"
    );
    // Both copies are current; the backup finishes first and wins.
    let effects = s
        .complete(&pid("b"), &backup.key, token(&backup), 3_100)
        .unwrap();
    let job = persisted(&effects);
    assert_eq!(job.state, JobState::Proven);
    assert!(effects.iter().any(|e| matches!(e, Effect::Cancel { prover, token: t, .. } if *prover == pid("a") && *t == token(&primary))));
    // Both attempts end: the backup proven, the first copy superseded.
    let ended: Vec<(FencingToken, AttemptOutcome)> = effects
        .iter()
        .filter_map(|e| match e {
            Effect::AttemptEnded { token, outcome, .. } => Some((*token, *outcome)),
            _ => None,
        })
        .collect();
    assert_eq!(ended.len(), 2, "{effects:?}");
    assert!(ended.contains(&(token(&backup), AttemptOutcome::Proven)));
    assert!(ended.contains(&(token(&primary), AttemptOutcome::Superseded)));
    assert!(
        s.complete(&pid("a"), &primary.key, token(&primary), 3_200)
            .is_err(),
        "the loser's late proof counts nothing"
    );
    let views = s.provers();
    let (a, b) = (&views[0], &views[1]);
    assert_eq!(
        (a.stats.proven, a.stats.superseded, a.running.len()),
        (5, 1, 0)
    );
    assert_eq!(
        (b.stats.proven, b.stats.superseded, b.running.len()),
        (1, 0, 0)
    );
}

#[test]
fn when_the_first_copy_wins_the_backup_is_cancelled() {
    let (mut s, primary) = with_a_straggler();
    keep_alive(&mut s, 1_600);
    let backup = dispatches(&s.tick(1_600))[0].1.clone();
    let effects = s
        .complete(&pid("a"), &primary.key, token(&primary), 1_700)
        .unwrap();
    assert_eq!(persisted(&effects).state, JobState::Proven);
    assert!(effects.iter().any(|e| matches!(e, Effect::Cancel { prover, token: t, .. } if *prover == pid("b") && *t == token(&backup))));
    assert_eq!(s.provers()[1].stats.superseded, 1);
    assert!(
        s.provers()[1].running.is_empty(),
        "the backup's slot is free"
    );
}

#[test]
fn a_backup_takes_over_when_the_first_copy_is_lost_and_is_dropped_when_it_fails() {
    let (mut s, primary) = with_a_straggler();
    keep_alive(&mut s, 1_600);
    let backup = dispatches(&s.tick(1_600))[0].1.clone();
    // The holder's stream closes and it does not come back: the backup is now the lease,
    // the job is not requeued.
    s.disconnect(&pid("a"), 1_700);
    s.heartbeat(&pid("b"), &[], 3_000);
    let effects = s.tick(3_000);
    let job = persisted(&effects);
    assert_eq!(job.state, JobState::Leased);
    assert_eq!(
        job.lease.as_ref().map(|l| (l.prover.clone(), l.token)),
        Some((pid("b"), token(&backup)))
    );
    assert!(dispatches(&effects).is_empty());
    s.complete(&pid("b"), &backup.key, token(&backup), 3_100)
        .unwrap();
    let _ = primary;

    // A failing backup ends; the first copy runs on untouched.
    let (mut s, primary) = with_a_straggler();
    keep_alive(&mut s, 1_600);
    let backup = dispatches(&s.tick(1_600))[0].1.clone();
    let effects = fail_task(&mut s, "b", &backup, "oom", Failure::Error, 1_700);
    assert!(
        effects.iter().all(|e| !matches!(e, Effect::Persist(_))),
        "{effects:?}"
    );
    assert_eq!(
        s.job(&primary.key).unwrap().lease.as_ref().map(|l| l.token),
        Some(token(&primary))
    );
    keep_alive(&mut s, 5_000);
    assert!(
        dispatches(&s.tick(5_000)).is_empty(),
        "not backed up again on the prover that failed it"
    );
    assert_eq!(
        persisted(
            &s.complete(&pid("a"), &primary.key, token(&primary), 5_100)
                .unwrap()
        )
        .state,
        JobState::Proven
    );
}
