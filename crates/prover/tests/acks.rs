//! What the prover does with the coordinator's answer to a result: a refusal for a passing
//! reason keeps the proof and offers it again; a final answer lets it go. And a slot is free
//! again by the time the coordinator can answer the result.

mod support;
use support::*;

fn refuse(conn: &FakeConn, r: &TaskResult, code: ErrorCode) {
    conn.send(C::ResultAck(ResultAck {
        task_id: r.task_id.clone(),
        fencing_token: r.fencing_token,
        accepted: false,
        reason: "refused by the test".into(),
        code: code as i32,
    }));
}

/// A fake coordinator and a registered exec prover of capacity 1.
async fn one_prover() -> (FakeCoordinator, RunningProver, FakeConn) {
    let mut coord = FakeCoordinator::start().await;
    let prover = RunningProver::spawn(config(
        &[&coord.url],
        1,
        vec![("exec", Arc::new(SimBackend::new()))],
    ));
    let mut c = coord.next_conn().await;
    c.accept("p-1").await;
    (coord, prover, c)
}

#[tokio::test]
async fn result_refused_for_a_passing_reason_is_resent_on_the_same_stream() {
    bounded(async {
        let (coord, prover, mut c) = one_prover().await;

        c.send(C::ExecuteTask(task(5, "exec", 7, b"batch five")));
        let first = c.recv_result().await;
        refuse(&c, &first, ErrorCode::SystemUnavailable);
        let again = c.recv_result().await;
        assert_eq!(again, first, "the same result, on the same stream");
        refuse(&c, &again, ErrorCode::Internal);
        let third = c.recv_result().await;
        assert_eq!(third, first);
        ack(&c, &third);
        c.assert_no_result_for(Duration::from_millis(1500), "result sent again")
            .await;

        let s = prover.stats.snapshot();
        assert_eq!((s.results_acked, s.results_rejected), (1, 0));
        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}

#[tokio::test]
async fn result_refused_for_good_is_dropped() {
    bounded(async {
        let (coord, prover, mut c) = one_prover().await;

        c.send(C::ExecuteTask(task(5, "exec", 7, b"batch five")));
        let r = c.recv_result().await;
        refuse(&c, &r, ErrorCode::StaleFencingToken);
        c.assert_no_result_for(Duration::from_millis(1500), "result sent again")
            .await;

        let s = prover.stats.snapshot();
        assert_eq!((s.results_acked, s.results_rejected), (0, 1));
        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}

/// A coordinator hands a prover of capacity 1 its next task the moment the last result is
/// acknowledged; the prover must never decline it for want of a slot.
#[tokio::test]
async fn next_task_right_after_the_ack_finds_the_slot_free() {
    bounded(async {
        let (coord, prover, mut c) = one_prover().await;
        for n in 1..=200u64 {
            c.send(C::ExecuteTask(task(n, "exec", n, b"input")));
            let mut skipped = Vec::new();
            let r = c
                .recv_until(&mut skipped, |m| match m {
                    P::TaskResult(r) => Some(r.clone()),
                    _ => None,
                })
                .await;
            assert_eq!(r.fencing_token, n);
            assert!(
                !skipped.iter().any(|m| matches!(m, P::TaskDeclined(_))),
                "task {n} declined: {skipped:?}"
            );
            ack(&c, &r);
        }
        let s = prover.stats.snapshot();
        assert_eq!((s.tasks_completed, s.tasks_declined), (200, 0));
        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}
