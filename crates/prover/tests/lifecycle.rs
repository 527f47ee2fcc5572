//! The ends of a task and of a session: cancellation (a backend that can stop frees its
//! slot at once, one that cannot keeps it) and a coordinator's Shutdown (waited out by
//! default, final with `exit_on_shutdown`), against the scripted fake coordinator.

mod support;
use support::*;

/// A backend that cannot stop mid-proof (an in-process proof system): only `prove`.
struct Stubborn(SimBackend);

impl Backend for Stubborn {
    fn name(&self) -> &str {
        "stubborn"
    }
    fn prove(
        &self,
        req: &proofmill_backend::ProveRequest<'_>,
    ) -> Result<Vec<u8>, proofmill_backend::BackendError> {
        self.0.prove(req)
    }
    fn verify(
        &self,
        public: &PublicValues,
        proof: &[u8],
    ) -> Result<(), proofmill_backend::VerifyError> {
        self.0.verify(public, proof)
    }
}

/// A backend that can stop (an external prover) frees the slot of a cancelled task at once.
#[tokio::test]
async fn cancel_frees_the_slot_of_a_backend_that_can_stop() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let backend = Arc::new(SimBackend::new().with_delay(Duration::from_secs(20)));
        let prover =
            RunningProver::spawn(config(&[&coord.url], 1, vec![("exec", backend.clone())]));
        let mut c = coord.next_conn().await;
        c.accept("p-1").await;
        c.recv_availability(1).await;
        c.send(C::ExecuteTask(task(1, "exec", 5, b"x")));
        c.recv_availability(0).await;
        let cancelled_at = Instant::now();
        c.send(C::TaskCancelled(TaskCancelled {
            task_id: "1/exec".to_string(),
            fencing_token: 5,
            reason: "reassigned".to_string(),
        }));
        c.recv_availability(1).await;
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(5),
            "slot freed after {:?}",
            cancelled_at.elapsed()
        );
        let s = prover.stats.snapshot();
        assert_eq!((s.tasks_completed, s.tasks_cancelled), (0, 1));
        assert_eq!(backend.calls(), 1);
        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}

#[tokio::test]
async fn cancelled_task_result_is_discarded() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let sim = SimBackend::new().with_delay(Duration::from_millis(700));
        let backend = Arc::new(Stubborn(sim));
        let prover =
            RunningProver::spawn(config(&[&coord.url], 1, vec![("exec", backend.clone())]));
        let mut c = coord.next_conn().await;
        c.accept("p-1").await;
        c.recv_availability(1).await;

        let started = Instant::now();
        c.send(C::ExecuteTask(task(1, "exec", 5, b"x")));
        c.recv_availability(0).await;
        c.send(C::TaskCancelled(TaskCancelled {
            task_id: "1/exec".to_string(),
            fencing_token: 5,
            reason: "reassigned".to_string(),
        }));
        c.send(C::Heartbeat(Heartbeat { seq: 9 }));
        let mut skipped = Vec::new();
        let hb = c
            .recv_until(&mut skipped, |m| match m {
                P::HeartbeatAck(h) => Some(h.clone()),
                _ => None,
            })
            .await;
        assert!(
            hb.running.is_empty(),
            "cancelled task not reported: {:?}",
            hb.running
        );

        // The slot stays busy until the proving thread ends, then frees; no result is sent.
        c.recv_availability(1).await;
        assert!(
            started.elapsed() >= Duration::from_millis(600),
            "slot freed while still proving"
        );
        c.assert_no_result_for(Duration::from_millis(400), "cancelled result sent")
            .await;
        assert_eq!(backend.0.calls(), 1);
        let s = prover.stats.snapshot();
        assert_eq!(
            (s.tasks_completed, s.tasks_cancelled, s.running_tasks),
            (0, 1, 0)
        );

        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}

#[tokio::test]
async fn shutdown_finishes_running_task_and_stops_reconnecting_when_asked_to() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let backend = Arc::new(SimBackend::new().with_delay(Duration::from_millis(400)));
        let mut cfg = config(&[&coord.url], 2, vec![("exec", backend)]);
        cfg.exit_on_shutdown = true;
        let mut prover = RunningProver::spawn(cfg);
        let mut c = coord.next_conn().await;
        c.accept("p-1").await;
        c.recv_availability(2).await;

        c.send(C::ExecuteTask(task(1, "exec", 3, b"x")));
        c.recv_availability(1).await;
        c.send(C::Shutdown(Shutdown {
            reason: "maintenance".to_string(),
            grace_ms: 5_000,
        }));
        c.recv_availability(0).await;
        // New work is declined while draining; the running task still completes.
        c.send(C::ExecuteTask(task(2, "exec", 4, b"y")));
        let mut skipped = Vec::new();
        let d = c
            .recv_until(&mut skipped, |m| match m {
                P::TaskDeclined(d) => Some(d.clone()),
                _ => None,
            })
            .await;
        assert_eq!(d.task_id, "2/exec");
        let r = c.recv_result().await;
        assert_eq!(proof_of(&r), pv(1).as_bytes());
        ack(&c, &r);

        // Then the prover closes the stream, never comes back, and (as this was its only
        // coordinator) `run` returns on its own.
        loop {
            if c.try_recv().await.is_none() {
                break;
            }
        }
        assert!(
            coord
                .conn_within(Duration::from_millis(800))
                .await
                .is_none(),
            "reconnected after Shutdown"
        );
        timeout(Duration::from_secs(5), &mut prover.join)
            .await
            .expect("run returned after the Shutdown")
            .unwrap()
            .unwrap();
        assert_eq!(prover.stats.snapshot().connected_coordinators, 0);
        drop(c);
        coord.stop().await;
    })
    .await;
}

/// By default a coordinator's Shutdown is waited out: the prover drains, closes the stream,
/// and comes back with the same id (a restarted or upgraded coordinator keeps its fleet).
/// A task still proving when the grace ends keeps running; its result goes to the
/// coordinator that is back.
#[tokio::test]
async fn shutdown_is_waited_out_and_the_prover_comes_back() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let backend = Arc::new(SimBackend::new().with_delay(Duration::from_millis(600)));
        let mut cfg = config(&[&coord.url], 1, vec![("exec", backend)]);
        cfg.reconnect_min = Duration::from_millis(50);
        let prover = RunningProver::spawn(cfg);
        let mut c = coord.next_conn().await;
        c.accept("p-1").await;
        c.recv_availability(1).await;
        c.send(C::ExecuteTask(task(1, "exec", 3, b"x")));
        c.recv_availability(0).await;
        // A grace shorter than the proof: the stream closes with the task still running.
        c.send(C::Shutdown(Shutdown {
            reason: "upgrade".to_string(),
            grace_ms: 100,
        }));
        while c.try_recv().await.is_some() {}
        drop(c);

        let mut c = coord.next_conn().await;
        let hello = c.accept("p-1").await;
        let P::Reconnect(r) = hello else {
            panic!("expected Reconnect, got {hello:?}")
        };
        assert_eq!(r.prover_id, "p-1");
        assert_eq!(
            r.running
                .iter()
                .map(|t| (t.task_id.as_str(), t.fencing_token))
                .collect::<Vec<_>>(),
            [("1/exec", 3)],
            "the task that outlived the grace is still reported"
        );
        let r = c.recv_result().await;
        assert_eq!(r.task_id, "1/exec");
        assert_eq!(proof_of(&r), pv(1).as_bytes());
        ack(&c, &r);
        assert_eq!(prover.stats.snapshot().connected_coordinators, 1);

        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}

/// A refused Reconnect (the coordinator does not know the id, or its secret) leaves nothing
/// of the old id behind: its running task is stopped and its unacknowledged result dropped
/// (both are fenced to the old id), so the new registration starts with every slot free.
#[tokio::test]
async fn a_refused_reconnect_abandons_the_old_ids_work() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let slow = Arc::new(SimBackend::new().with_delay(Duration::from_secs(20)));
        let fast = Arc::new(SimBackend::new());
        let prover = RunningProver::spawn(config(
            &[&coord.url],
            2,
            vec![("exec", slow.clone()), ("fast", fast)],
        ));
        let mut c = coord.next_conn().await;
        c.accept("p-1").await;
        c.recv_availability(2).await;
        c.send(C::ExecuteTask(task(1, "exec", 5, b"x")));
        c.send(C::ExecuteTask(task(2, "fast", 6, b"y")));
        let r = c.recv_result().await;
        assert_eq!(r.task_id, "2/fast");
        drop(c); // unacknowledged

        let mut c = coord.next_conn().await;
        let P::Reconnect(rc) = c.recv().await else {
            panic!("expected Reconnect")
        };
        let mut listed = running(&rc.running);
        listed.sort();
        assert_eq!(
            listed,
            [("1/exec".to_string(), 5), ("2/fast".to_string(), 6)]
        );
        c.send(C::RegisterResponse(RegisterResponse {
            accepted: false,
            code: ErrorCode::ReconnectRefused as i32,
            reason: "unknown prover id".to_string(),
            ..Default::default()
        }));
        drop(c);

        let mut c = coord.next_conn().await;
        let refused_at = Instant::now();
        let hello = c.accept("p-2").await;
        assert!(
            matches!(hello, P::Register(_)),
            "a fresh Register: {hello:?}"
        );
        let mut skipped = Vec::new();
        c.recv_until(&mut skipped, |m| {
            matches!(m, P::Availability(a) if a.free_slots == 2).then_some(())
        })
        .await;
        assert!(
            !skipped
                .iter()
                .any(|m| matches!(m, P::TaskResult(_) | P::ProofChunk(_))),
            "old id's result sent to the new id: {skipped:?}"
        );
        assert!(
            refused_at.elapsed() < Duration::from_secs(5),
            "slot freed after {:?}",
            refused_at.elapsed()
        );
        c.assert_no_result_for(
            Duration::from_millis(400),
            "old id's result sent to the new id",
        )
        .await;
        let s = prover.stats.snapshot();
        assert_eq!((s.tasks_cancelled, s.running_tasks), (1, 0));
        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}
