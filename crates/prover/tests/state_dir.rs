//! A prover with a state dir comes back from a restart as the same prover, with the results
//! it finished and never had acknowledged.
mod support;
use support::*;

fn with_state(coord: &FakeCoordinator, dir: &tempfile::TempDir) -> ProverConfig {
    let mut cfg = config(
        &[&coord.url],
        1,
        vec![("exec", Arc::new(SimBackend::new()))],
    );
    cfg.state_dir = Some(dir.path().to_path_buf());
    cfg
}

fn accept_with_secret(c: &FakeConn, id: &str, secret: &str) {
    c.send(C::RegisterResponse(RegisterResponse {
        prover_id: id.to_string(),
        accepted: true,
        reconnect_secret: secret.to_string(),
        ..Default::default()
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_prover_reconnects_under_its_id_with_its_unacknowledged_results() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let mut coord = FakeCoordinator::start().await;
        let prover = RunningProver::spawn(with_state(&coord, &dir));
        let mut c = coord.next_conn().await;
        assert!(matches!(c.recv().await, P::Register(_)));
        accept_with_secret(&c, "prv-kept", "s3cret");
        c.send(C::ExecuteTask(task(1, "exec", 5, b"x")));
        let first = c.recv_result().await;
        // Never acknowledged: the process stops (as a kill would leave it) with it pending.
        prover.stop().await;
        drop(c);

        let second = RunningProver::spawn(with_state(&coord, &dir));
        let mut c = coord.next_conn().await;
        let P::Reconnect(rc) = c.recv().await else {
            panic!("expected a Reconnect under the stored id")
        };
        assert_eq!(
            (rc.prover_id.as_str(), rc.secret.as_str()),
            ("prv-kept", "s3cret")
        );
        assert_eq!(running(&rc.running), [("1/exec".to_string(), 5)]);
        accept_with_secret(&c, "prv-kept", "s3cret");
        let again = c.recv_result().await;
        assert_eq!((again.task_id.as_str(), again.fencing_token), ("1/exec", 5));
        assert_eq!(
            proof_of(&again),
            proof_of(&first),
            "the same proof, not proven again"
        );
        assert_eq!(second.stats.tasks_completed(), 0);
        ack(&c, &again);
        // Acknowledged: a third start has nothing to offer.
        tokio::time::sleep(Duration::from_millis(200)).await;
        second.stop().await;
        drop(c);
        let third = RunningProver::spawn(with_state(&coord, &dir));
        let mut c = coord.next_conn().await;
        let P::Reconnect(rc) = c.recv().await else {
            panic!("expected a Reconnect")
        };
        assert!(rc.running.is_empty(), "{:?}", rc.running);
        // A refused id is forgotten: the next start registers anew.
        c.send(C::RegisterResponse(RegisterResponse {
            accepted: false,
            code: ErrorCode::ReconnectRefused as i32,
            reason: "unknown prover id".to_string(),
            ..Default::default()
        }));
        drop(c);
        let mut c = coord.next_conn().await;
        assert!(matches!(c.recv().await, P::Register(_)));
        accept_with_secret(&c, "prv-new", "other");
        tokio::time::sleep(Duration::from_millis(200)).await;
        third.stop().await;
        drop(c);
        let fourth = RunningProver::spawn(with_state(&coord, &dir));
        let mut c = coord.next_conn().await;
        let P::Reconnect(rc) = c.recv().await else {
            panic!("expected a Reconnect")
        };
        assert_eq!(rc.prover_id, "prv-new");
        accept_with_secret(&c, "prv-new", "other");
        fourth.stop().await;
        coord.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_provers_cannot_share_a_state_dir() {
    bounded(async {
        let dir = tempfile::tempdir().unwrap();
        let mut coord = FakeCoordinator::start().await;
        let first = RunningProver::spawn(with_state(&coord, &dir));
        let mut c = coord.next_conn().await;
        c.accept("prv-1").await;
        let err = Prover::new(with_state(&coord, &dir))
            .run(std::future::pending())
            .await
            .expect_err("a second prover on the same state dir");
        assert!(
            err.to_string().contains("in use by another prover"),
            "{err}"
        );
        first.stop().await;
        coord.stop().await;
    })
    .await;
}
