//! What the prover does at the limits of what it holds for a coordinator, against hostile
//! fake coordinators: one that never reads its stream, one that never acknowledges, one that
//! floods cancels and acks for tasks that do not exist.

mod support;
use proofmill_proto::v1::HeartbeatAck;
use proofmill_prover::max_unacknowledged_results;
use support::*;

/// A task refused on sight: its input digest is not 32 bytes.
fn malformed(n: u64) -> ExecuteTask {
    let mut t = task(1, "exec", n, b"input");
    t.task_id = format!("{n}/exec");
    t.input_digest = vec![1, 2, 3];
    t
}

/// Sends a heartbeat and waits for its ack; what came before it is appended to `before`.
async fn heartbeat(c: &mut FakeConn, seq: u64, before: &mut Vec<P>) -> HeartbeatAck {
    c.send(C::Heartbeat(Heartbeat { seq }));
    c.recv_until(before, |m| match m {
        P::HeartbeatAck(h) => Some(h.clone()),
        _ => None,
    })
    .await
}

fn files_under(dir: &std::path::Path, name: &str) -> usize {
    let mut found = 0;
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found += if path.file_name().is_some_and(|n| n == name) {
                std::fs::read_dir(&path).unwrap().count()
            } else {
                files_under(&path, name)
            };
        }
    }
    found
}

/// A coordinator that keeps asking for a result it does not read fills the prover's queue of
/// messages to it: the prover closes that stream, comes back, and offers the result again.
#[tokio::test]
async fn a_coordinator_that_does_not_read_has_its_stream_closed() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let proof_len = 1 << 20;
        let prover = RunningProver::spawn(config(
            &[&coord.url],
            1,
            vec![("big", Arc::new(SimBackend::garbage(proof_len)))],
        ));
        let mut c = coord.next_conn().await;
        c.accept("p-1").await;
        c.send(C::ExecuteTask(task(1, "big", 5, b"one")));
        let first = c.recv_result().await;
        assert_eq!(proof_of(&first).len(), proof_len);

        // Ask for it again and again without reading: each repeat queues the 1 MiB result.
        // (Without a bound the prover would queue every repeat and keep the stream open.)
        for _ in 0..20_000 {
            let again = C::ExecuteTask(task(1, "big", 5, b"one"));
            if c.tx
                .send(Ok(CoordinatorMessage { kind: Some(again) }))
                .is_err()
            {
                break;
            }
        }
        let mut c2 = coord.next_conn().await;
        let P::Reconnect(rc) = c2.accept("p-1").await else {
            panic!("expected a Reconnect")
        };
        assert_eq!(running(&rc.running), [("1/big".to_string(), 5)]);
        let again = c2.recv_result().await;
        assert_eq!(again, first, "the result is kept and offered again");
        ack(&c2, &again);
        // Acks are taken in order: once the heartbeat after it is answered, it is in.
        let hb = heartbeat(&mut c2, 1, &mut Vec::new()).await;
        assert!(hb.running.is_empty(), "{:?}", hb.running);
        let s = prover.stats.snapshot();
        assert_eq!((s.tasks_completed, s.results_acked), (1, 1));
        assert!(s.connect_attempts >= 2);
        prover.stop().await;
        drop((c, c2));
        coord.stop().await;
    })
    .await;
}

/// A coordinator that never acknowledges cannot make the prover hold more than
/// `max_unacknowledged_results`: further tasks are declined, saying why, until acks come.
#[tokio::test]
async fn a_coordinator_that_never_acknowledges_has_its_further_tasks_declined() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let mut coord = FakeCoordinator::start().await;
        let mut cfg = config(
            &[&coord.url],
            1,
            vec![("exec", Arc::new(SimBackend::new()))],
        );
        cfg.state_dir = Some(dir.path().to_path_buf());
        let prover = RunningProver::spawn(cfg);
        let mut c = coord.next_conn().await;
        c.accept("p-1").await;

        // Tasks refused on sight (a malformed input digest): each leaves an error result.
        let limit = max_unacknowledged_results(1);
        let flood = 500u64;
        for n in 1..=flood {
            c.send(C::ExecuteTask(malformed(n)));
        }
        let mut got = Vec::new();
        let hb = heartbeat(&mut c, 1, &mut got).await;
        let (mut results, mut declined) = (Vec::new(), Vec::new());
        for m in got {
            match m {
                P::TaskResult(r) => results.push(r),
                P::TaskDeclined(d) => declined.push(d),
                _ => {}
            }
        }
        assert_eq!(results.len(), limit);
        assert_eq!(declined.len(), flood as usize - limit);
        assert!(
            declined[0].reason.contains("await acknowledgement"),
            "{}",
            declined[0].reason
        );
        assert_eq!(hb.running.len(), limit, "what the prover holds is listed");
        assert_eq!(
            files_under(dir.path(), "results"),
            limit,
            "and kept on disk"
        );

        // A sound task is declined too, until an ack makes room.
        c.send(C::ExecuteTask(task(100, "exec", 1000, b"x")));
        let mut skipped = Vec::new();
        let d = c
            .recv_until(&mut skipped, |m| match m {
                P::TaskDeclined(d) => Some(d.clone()),
                _ => None,
            })
            .await;
        assert_eq!((d.task_id.as_str(), d.fencing_token), ("100/exec", 1000));
        ack(&c, &results[0]);
        c.send(C::ExecuteTask(task(101, "exec", 1001, b"y")));
        let r = c.recv_result().await;
        assert_eq!(proof_of(&r), pv(101).as_bytes());
        let s = prover.stats.snapshot();
        assert_eq!(
            (s.tasks_failed, s.tasks_declined, s.tasks_completed),
            (limit as u64, flood - limit as u64 + 1, 1)
        );
        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}

/// Cancels and acks for tasks the prover never had leave nothing behind and get no answer.
#[tokio::test]
async fn a_flood_of_cancels_and_acks_for_unknown_tasks_leaves_nothing_behind() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let prover = RunningProver::spawn(config(
            &[&coord.url],
            1,
            vec![("exec", Arc::new(SimBackend::new()))],
        ));
        let mut c = coord.next_conn().await;
        c.accept("p-1").await;
        c.recv_availability(1).await;
        for n in 0..20_000u64 {
            c.send(C::TaskCancelled(TaskCancelled {
                task_id: format!("{n}/exec"),
                fencing_token: n,
                reason: "flood".into(),
            }));
            c.send(C::ResultAck(ResultAck {
                task_id: format!("{n}/exec"),
                fencing_token: n,
                accepted: true,
                ..Default::default()
            }));
        }
        c.send(C::Heartbeat(Heartbeat { seq: 7 }));
        let m = c.recv().await;
        let P::HeartbeatAck(hb) = m else {
            panic!("nothing but the heartbeat's ack: {m:?}")
        };
        assert_eq!((hb.seq, hb.running.len()), (7, 0));
        // And the prover still works.
        c.send(C::ExecuteTask(task(1, "exec", 1, b"x")));
        let r = c.recv_result().await;
        assert_eq!(proof_of(&r), pv(1).as_bytes());
        let s = prover.stats.snapshot();
        assert_eq!((s.tasks_cancelled, s.results_acked), (0, 0));
        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}
