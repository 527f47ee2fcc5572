//! End-to-end tests of the prover against a scripted fake coordinator (`support`).

mod support;
use support::*;

// ---------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn result_is_resent_after_reconnect_until_acked() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let prover = RunningProver::spawn(config(
            &[&coord.url],
            2,
            vec![("exec", Arc::new(SimBackend::new()))],
        ));

        let mut c1 = coord.next_conn().await;
        let P::Register(reg) = c1.accept("p-1").await else {
            panic!("expected Register")
        };
        assert_eq!(reg.name, "test-prover");
        assert_eq!(reg.proof_types, vec!["exec".to_string()]);
        assert_eq!(reg.compute_capacity, 2);
        assert_eq!(reg.version, "v1");
        assert_eq!(reg.token.as_deref(), Some("secret"));
        assert!(!reg.blob_access);
        assert!(matches!(c1.recv().await, P::Availability(a) if a.free_slots == 2));

        c1.send(C::ExecuteTask(task(5, "exec", 7, b"batch five")));
        let r1 = c1.recv_result().await;
        assert_eq!((r1.task_id.as_str(), r1.fencing_token), ("5/exec", 7));
        assert_eq!(proof_of(&r1), pv(5).as_bytes());
        // Drop the stream without acknowledging.
        drop(c1);

        let mut c2 = coord.next_conn().await;
        let P::Reconnect(rc) = c2.accept("p-1").await else {
            panic!("expected Reconnect")
        };
        assert_eq!(rc.prover_id, "p-1");
        assert_eq!(
            rc.register.as_ref().map(|r| r.name.as_str()),
            Some("test-prover")
        );
        assert_eq!(running(&rc.running), vec![("5/exec".to_string(), 7)]);
        let r2 = c2.recv_result().await;
        assert_eq!(r2, r1, "the same result is resent");
        ack(&c2, &r2);
        c2.send(C::Heartbeat(Heartbeat { seq: 1 }));
        let mut skipped = Vec::new();
        let hb = c2
            .recv_until(&mut skipped, |m| match m {
                P::HeartbeatAck(h) => Some(h.clone()),
                _ => None,
            })
            .await;
        assert_eq!(hb.seq, 1);
        assert!(
            hb.running.is_empty(),
            "acked result no longer listed: {:?}",
            hb.running
        );
        assert!(!skipped.iter().any(|m| matches!(m, P::TaskResult(_))));
        drop(c2);

        // After the ack the result is gone: not listed, not resent.
        let mut c3 = coord.next_conn().await;
        let P::Reconnect(rc) = c3.accept("p-1").await else {
            panic!("expected Reconnect")
        };
        assert!(rc.running.is_empty());
        c3.assert_no_result_for(Duration::from_millis(400), "resent after ack")
            .await;

        let s = prover.stats.snapshot();
        assert_eq!(
            (s.tasks_completed, s.results_acked, s.connected_coordinators),
            (1, 1, 1)
        );
        prover.stop().await;
        drop(c3);
        coord.stop().await;
    })
    .await;
}

#[tokio::test]
async fn heartbeats_answered_while_proving_and_full_prover_declines() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let backend = Arc::new(SimBackend::new().with_delay(Duration::from_millis(2000)));
        let prover =
            RunningProver::spawn(config(&[&coord.url], 1, vec![("exec", backend.clone())]));
        let mut c = coord.next_conn().await;
        c.accept("p-1").await;
        c.recv_availability(1).await;

        c.send(C::ExecuteTask(task(1, "exec", 11, b"one")));
        c.send(C::ExecuteTask(task(2, "exec", 12, b"two")));
        let mut skipped = Vec::new();
        let declined = c
            .recv_until(&mut skipped, |m| match m {
                P::TaskDeclined(d) => Some(d.clone()),
                _ => None,
            })
            .await;
        assert_eq!(
            (declined.task_id.as_str(), declined.fencing_token),
            ("2/exec", 12)
        );
        assert!(!declined.reason.is_empty());

        // The backend sleeps 2 s; heartbeats are answered promptly meanwhile (generous bound
        // for loaded machines: a starved runtime would answer only after the proof).
        for seq in 1..=3u64 {
            let sent = Instant::now();
            c.send(C::Heartbeat(Heartbeat { seq }));
            let hb = c
                .recv_until(&mut skipped, |m| match m {
                    P::HeartbeatAck(h) => Some(h.clone()),
                    _ => None,
                })
                .await;
            let rtt = sent.elapsed();
            assert_eq!(hb.seq, seq);
            assert_eq!(running(&hb.running), vec![("1/exec".to_string(), 11)]);
            assert!(
                rtt < Duration::from_millis(500),
                "heartbeat {seq} took {rtt:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            !skipped.iter().any(|m| matches!(m, P::TaskResult(_))),
            "still proving"
        );
        assert!(
            skipped
                .iter()
                .any(|m| matches!(m, P::Availability(a) if a.free_slots == 0))
        );

        let r = c.recv_result().await;
        assert_eq!((r.task_id.as_str(), r.fencing_token), ("1/exec", 11));
        assert_eq!(proof_of(&r), pv(1).as_bytes());
        assert!(r.prove_ms >= 1900, "prove_ms {}", r.prove_ms);
        c.recv_availability(1).await;
        assert_eq!(
            backend.calls(),
            1,
            "the declined task never reached the backend"
        );
        let s = prover.stats.snapshot();
        assert_eq!((s.tasks_completed, s.tasks_declined), (1, 1));

        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}

#[tokio::test]
async fn chunked_input_and_chunked_proof() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let mut cfg = config(
            &[&coord.url],
            2,
            vec![
                ("exec", Arc::new(SimBackend::new())),
                ("big", Arc::new(SimBackend::garbage(200_000))),
            ],
        );
        cfg.max_message_bytes = 64 * 1024; // chunk threshold 32 KiB
        let prover = RunningProver::spawn(cfg);
        let mut c = coord.next_conn().await;
        c.accept("p-1").await;

        // Chunked input, sent out of order; the prover reassembles by offset.
        let input: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut t = task(1, "exec", 21, &input);
        t.input = Some(execute_task::Input::Chunked(true));
        c.send(C::ExecuteTask(t));
        let chunk = |offset: usize, end: usize, last: bool| {
            C::InputChunk(DataChunk {
                task_id: "1/exec".to_string(),
                fencing_token: 21,
                offset: offset as u64,
                data: input[offset..end].to_vec(),
                last,
            })
        };
        c.send(chunk(40_000, 80_000, false));
        c.send(chunk(0, 40_000, false));
        c.send(chunk(80_000, 100_000, true));
        let r = c.recv_result().await;
        assert_eq!((r.task_id.as_str(), r.fencing_token), ("1/exec", 21));
        assert_eq!(proof_of(&r), pv(1).as_bytes());
        ack(&c, &r);

        // Same, with a digest that does not match: an error result, nothing proven.
        let mut t = task(2, "exec", 22, &input);
        t.input = Some(execute_task::Input::Chunked(true));
        t.input_digest = Digest::sha256(b"something else").0.to_vec();
        c.send(C::ExecuteTask(t));
        for (offset, end) in [(0, 50_000), (50_000, 100_000)] {
            c.send(C::InputChunk(DataChunk {
                task_id: "2/exec".to_string(),
                fencing_token: 22,
                offset: offset as u64,
                data: input[offset..end].to_vec(),
                last: end == 100_000,
            }));
        }
        let r = c.recv_result().await;
        assert_eq!((r.task_id.as_str(), r.fencing_token), ("2/exec", 22));
        match &r.outcome {
            Some(task_result::Outcome::Error(e)) => assert!(e.contains("digest"), "{e}"),
            other => panic!("expected an error, got {other:?}"),
        }
        ack(&c, &r);

        // Inline input with a wrong digest: an error result too.
        let mut t = task(4, "exec", 24, b"four");
        t.input_digest = Digest::sha256(b"five").0.to_vec();
        c.send(C::ExecuteTask(t));
        let r = c.recv_result().await;
        assert!(
            matches!(&r.outcome, Some(task_result::Outcome::Error(e)) if e.contains("digest")),
            "{r:?}"
        );
        ack(&c, &r);

        // A 200 kB proof goes as chunks of at most 32 KiB, then ChunkedProof.
        c.send(C::ExecuteTask(task(3, "big", 23, b"three")));
        let mut proof = Vec::new();
        let mut chunks = 0;
        let closing = loop {
            match c.recv().await {
                P::ProofChunk(ch) => {
                    assert_eq!((ch.task_id.as_str(), ch.fencing_token), ("3/big", 23));
                    assert_eq!(ch.offset as usize, proof.len());
                    assert!(ch.data.len() <= 32 * 1024);
                    assert_eq!(ch.last, proof.len() + ch.data.len() == 200_000);
                    proof.extend_from_slice(&ch.data);
                    chunks += 1;
                }
                P::TaskResult(r) => break r,
                _ => {}
            }
        };
        assert!(chunks >= 7, "{chunks} chunks");
        assert_eq!(proof, SimBackend::garbage_bytes(3, 200_000));
        match &closing.outcome {
            Some(task_result::Outcome::ProofChunked(cp)) => {
                assert_eq!(cp.size, 200_000);
                assert_eq!(cp.digest, Digest::sha256(&proof).0.to_vec());
            }
            other => panic!("expected proof_chunked, got {other:?}"),
        }
        ack(&c, &closing);

        let s = prover.stats.snapshot();
        assert_eq!((s.tasks_completed, s.tasks_failed), (2, 2));
        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}

#[tokio::test]
async fn two_coordinators_share_capacity() {
    bounded(async {
        let mut a = FakeCoordinator::start().await;
        let mut b = FakeCoordinator::start().await;
        let backend = Arc::new(SimBackend::new().with_delay(Duration::from_millis(800)));
        let prover = RunningProver::spawn(config(&[&a.url, &b.url], 2, vec![("exec", backend)]));
        let mut ca = a.next_conn().await;
        let mut cb = b.next_conn().await;
        assert!(matches!(ca.accept("pa").await, P::Register(_)));
        assert!(matches!(cb.accept("pb").await, P::Register(_)));
        ca.recv_availability(2).await;
        cb.recv_availability(2).await;

        ca.send(C::ExecuteTask(task(1, "exec", 1, b"a1")));
        ca.recv_availability(1).await;
        cb.recv_availability(1).await;

        cb.send(C::ExecuteTask(task(2, "exec", 2, b"b1")));
        ca.recv_availability(0).await;
        cb.recv_availability(0).await;

        // A is out of date (or racing): the prover is full, so it declines.
        ca.send(C::ExecuteTask(task(3, "exec", 3, b"a2")));
        let mut skipped = Vec::new();
        let d = ca
            .recv_until(&mut skipped, |m| match m {
                P::TaskDeclined(d) => Some(d.clone()),
                _ => None,
            })
            .await;
        assert_eq!(d.task_id, "3/exec");
        assert_eq!(prover.stats.snapshot().connected_coordinators, 2);

        // Each coordinator gets its own result; both then see the slots come back.
        let ra = ca.recv_result().await;
        assert_eq!(
            (ra.task_id.as_str(), proof_of(&ra)),
            ("1/exec", pv(1).as_bytes())
        );
        let rb = cb.recv_result().await;
        assert_eq!(
            (rb.task_id.as_str(), proof_of(&rb)),
            ("2/exec", pv(2).as_bytes())
        );
        ca.recv_availability(2).await;
        cb.recv_availability(2).await;
        ack(&ca, &ra);
        ack(&cb, &rb);

        let s = prover.stats.snapshot();
        assert_eq!(
            (s.tasks_completed, s.tasks_declined, s.free_slots),
            (2, 1, 2)
        );
        prover.stop().await;
        drop((ca, cb));
        a.stop().await;
        b.stop().await;
    })
    .await;
}

#[tokio::test]
async fn rejected_registration_is_retried_with_backoff() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        // reconnect_max is 400 ms: operator-fixable rejections wait 200..400 ms each.
        let prover = RunningProver::spawn(config(
            &[&coord.url],
            1,
            vec![("exec", Arc::new(SimBackend::new()))],
        ));
        let window = Duration::from_millis(2_000);
        let start = Instant::now();
        let mut attempts = 0;
        while start.elapsed() < window {
            let Some(mut c) = coord
                .conn_within(window.saturating_sub(start.elapsed()))
                .await
            else {
                break;
            };
            attempts += 1;
            assert!(
                matches!(c.recv().await, P::Register(_)),
                "never registered, so never Reconnect"
            );
            c.send(C::RegisterResponse(RegisterResponse {
                accepted: false,
                code: ErrorCode::Unauthenticated as i32,
                reason: "bad token".to_string(),
                ..Default::default()
            }));
            // The prover closes the stream after the rejection.
            assert!(c.try_recv().await.is_none());
        }
        assert!(
            (3..=12).contains(&attempts),
            "{attempts} attempts in {window:?}"
        );
        let s = prover.stats.snapshot();
        assert_eq!(s.connected_coordinators, 0);
        assert!(
            !prover.join.is_finished(),
            "a rejecting coordinator must not end the prover"
        );

        // Once the coordinator accepts, the prover registers normally.
        let mut c = coord.next_conn().await;
        assert!(matches!(c.accept("p-1").await, P::Register(_)));
        c.recv_availability(1).await;

        prover.stop().await;
        drop(c);
        coord.stop().await;
    })
    .await;
}

/// Credentials refused: each wait is at least as long as the one before (the window doubles
/// from `reconnect_max` up to `refused_max`), instead of the same few seconds forever.
#[tokio::test]
async fn refused_credentials_back_off_exponentially() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let prover = RunningProver::spawn(ProverConfig {
            reconnect_max: Duration::from_millis(40),
            refused_max: Duration::from_secs(10),
            ..config(
                &[&coord.url],
                1,
                vec![("exec", Arc::new(SimBackend::new()))],
            )
        });
        // Windows 40, 80, 160, 320, 640 ms: each wait in the upper half of its window.
        let mut at = Vec::new();
        while at.len() < 6 {
            let mut c = coord.next_conn().await;
            at.push(Instant::now());
            assert!(matches!(c.recv().await, P::Register(_)));
            c.send(C::RegisterResponse(RegisterResponse {
                accepted: false,
                code: ErrorCode::Unauthenticated as i32,
                reason: "missing or wrong prover token".to_string(),
                ..Default::default()
            }));
            assert!(c.try_recv().await.is_none());
        }
        let gaps: Vec<Duration> = at.windows(2).map(|w| w[1] - w[0]).collect();
        let window = |i: usize| Duration::from_millis(40 << i);
        for (i, gap) in gaps.iter().enumerate() {
            assert!(
                *gap >= window(i) / 2,
                "wait {i} was {gap:?}, under half its window {:?}: {gaps:?}",
                window(i)
            );
        }
        // The last wait is in [320, 640] ms (plus the handshake), the first in [20, 40]:
        // a constant backoff would keep them alike.
        assert!(gaps[4] >= gaps[0] * 4, "the waits did not grow: {gaps:?}");
        assert!(!prover.join.is_finished());
        prover.stop().await;
        coord.stop().await;
    })
    .await;
}

#[tokio::test]
async fn unreachable_coordinator_does_not_block_the_other() {
    bounded(async {
        // A port with nothing listening.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            format!("http://{}", l.local_addr().unwrap())
        };
        let mut live = FakeCoordinator::start().await;
        let prover = RunningProver::spawn(config(
            &[&dead, &live.url],
            1,
            vec![("exec", Arc::new(SimBackend::new()))],
        ));
        let mut c = live.next_conn().await;
        c.accept("p-1").await;
        c.send(C::ExecuteTask(task(9, "exec", 1, b"nine")));
        let r = c.recv_result().await;
        assert_eq!(proof_of(&r), pv(9).as_bytes());
        ack(&c, &r);
        assert_eq!(prover.stats.snapshot().connected_coordinators, 1);
        prover.stop().await;
        drop(c);
        live.stop().await;
    })
    .await;
}
