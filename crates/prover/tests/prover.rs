//! End-to-end tests of the prover against a scripted fake coordinator (a tonic
//! `ProverService` server on 127.0.0.1:0 whose every stream is handed to the test).

use proofmill_backend::Backend;
use proofmill_proto::v1::coordinator_message::Kind as C;
use proofmill_proto::v1::prover_message::Kind as P;
use proofmill_proto::v1::prover_service_server::{ProverService, ProverServiceServer};
use proofmill_proto::v1::{
    CoordinatorMessage, DataChunk, ErrorCode, ExecuteTask, Heartbeat, ProverMessage,
    RegisterResponse, ResultAck, RunningTask, Shutdown, TaskCancelled, TaskResult, execute_task,
    task_result,
};
use proofmill_prover::sim::SimBackend;
use proofmill_prover::{Prover, ProverConfig, ProverStatsHandle};
use proofmill_types::{Digest, ProofType, PublicValues};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tonic::{Request, Response, Status, Streaming};

const TEST_TIMEOUT: Duration = Duration::from_secs(30);
const RECV_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Fake coordinator

type Outbound = mpsc::UnboundedSender<Result<CoordinatorMessage, Status>>;

struct FakeService {
    conns: mpsc::UnboundedSender<FakeConn>,
}

#[tonic::async_trait]
impl ProverService for FakeService {
    type ProverStreamStream = UnboundedReceiverStream<Result<CoordinatorMessage, Status>>;

    async fn prover_stream(
        &self,
        request: Request<Streaming<ProverMessage>>,
    ) -> Result<Response<Self::ProverStreamStream>, Status> {
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = self.conns.send(FakeConn {
            rx: request.into_inner(),
            tx,
        });
        Ok(Response::new(UnboundedReceiverStream::new(rx)))
    }
}

/// One prover stream as the fake coordinator sees it. Dropping it ends the stream.
struct FakeConn {
    rx: Streaming<ProverMessage>,
    tx: Outbound,
}

impl FakeConn {
    fn send(&self, kind: C) {
        self.tx
            .send(Ok(CoordinatorMessage { kind: Some(kind) }))
            .expect("stream open");
    }

    /// Next message from the prover; `None` when the prover closed the stream.
    async fn try_recv(&mut self) -> Option<P> {
        match timeout(RECV_TIMEOUT, self.rx.message())
            .await
            .expect("prover message in time")
        {
            Ok(Some(m)) => Some(m.kind.expect("message kind set")),
            Ok(None) | Err(_) => None,
        }
    }

    async fn recv(&mut self) -> P {
        self.try_recv().await.expect("stream still open")
    }

    /// Receives until `pick` returns `Some`; every message skipped is appended to `skipped`.
    async fn recv_until<T>(
        &mut self,
        skipped: &mut Vec<P>,
        mut pick: impl FnMut(&P) -> Option<T>,
    ) -> T {
        loop {
            let m = self.recv().await;
            if let Some(t) = pick(&m) {
                return t;
            }
            skipped.push(m);
        }
    }

    async fn recv_result(&mut self) -> TaskResult {
        let mut skipped = Vec::new();
        self.recv_until(&mut skipped, |m| match m {
            P::TaskResult(r) => Some(r.clone()),
            _ => None,
        })
        .await
    }

    async fn recv_availability(&mut self, free: u32) {
        let mut skipped = Vec::new();
        self.recv_until(&mut skipped, |m| {
            matches!(m, P::Availability(a) if a.free_slots == free).then_some(())
        })
        .await;
    }

    /// Expects a Register or Reconnect first and accepts it.
    async fn accept(&mut self, prover_id: &str) -> P {
        let hello = self.recv().await;
        assert!(
            matches!(hello, P::Register(_) | P::Reconnect(_)),
            "first message: {hello:?}"
        );
        self.send(C::RegisterResponse(RegisterResponse {
            prover_id: prover_id.to_string(),
            accepted: true,
            heartbeat_interval_ms: 0,
            ..Default::default()
        }));
        hello
    }
}

struct FakeCoordinator {
    url: String,
    conns: mpsc::UnboundedReceiver<FakeConn>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
}

impl FakeCoordinator {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (conns_tx, conns) = mpsc::unbounded_channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let service = ProverServiceServer::new(FakeService { conns: conns_tx })
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = stop_rx.await;
                })
                .await;
        });
        FakeCoordinator {
            url,
            conns,
            stop: Some(stop_tx),
            server: Some(server),
        }
    }

    async fn next_conn(&mut self) -> FakeConn {
        timeout(RECV_TIMEOUT, self.conns.recv())
            .await
            .expect("prover connected in time")
            .expect("server running")
    }

    /// Waits `window` and returns whether the prover opened a stream in it.
    async fn conn_within(&mut self, window: Duration) -> Option<FakeConn> {
        timeout(window, self.conns.recv()).await.ok().flatten()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        self.conns.close();
        while self.conns.try_recv().is_ok() {}
        if let Some(mut server) = self.server.take()
            && timeout(Duration::from_secs(5), &mut server).await.is_err()
        {
            server.abort();
        }
    }
}

impl Drop for FakeCoordinator {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
        }
    }
}

// ---------------------------------------------------------------------------------------
// Prover under test

struct RunningProver {
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<anyhow::Result<()>>,
    stats: ProverStatsHandle,
}

impl RunningProver {
    fn spawn(config: ProverConfig) -> Self {
        let prover = Prover::new(config);
        let stats = prover.stats();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let join = tokio::spawn(prover.run(async {
            let _ = stop_rx.await;
        }));
        RunningProver {
            stop: Some(stop_tx),
            join,
            stats,
        }
    }

    async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        timeout(Duration::from_secs(10), &mut self.join)
            .await
            .expect("prover stopped in time")
            .expect("prover task did not panic")
            .expect("prover run returned Ok");
    }
}

impl Drop for RunningProver {
    fn drop(&mut self) {
        self.join.abort();
    }
}

fn config(urls: &[&str], capacity: u32, backends: Vec<(&str, Arc<dyn Backend>)>) -> ProverConfig {
    ProverConfig {
        coordinators: urls.iter().map(|u| u.to_string()).collect(),
        name: "test-prover".to_string(),
        capacity,
        version: "v1".to_string(),
        token: Some("secret".to_string()),
        backends: backends
            .into_iter()
            .map(|(pt, b)| (ProofType::new(pt).unwrap(), b))
            .collect(),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(400),
        max_message_bytes: 4 << 20,
        connect_timeout: Duration::from_secs(2),
    }
}

fn pv(batch: u64) -> PublicValues {
    PublicValues {
        old_state_root: Digest([batch as u8; 32]),
        new_state_root: Digest([batch as u8 + 1; 32]),
        batch_commitment: Digest::sha256(&batch.to_be_bytes()),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn task(batch: u64, proof_type: &str, token: u64, input: &[u8]) -> ExecuteTask {
    ExecuteTask {
        task_id: format!("{batch}/{proof_type}"),
        batch,
        proof_type: proof_type.to_string(),
        fencing_token: token,
        deadline_ms: now_ms() + 60_000,
        version: "v1".to_string(),
        input_digest: Digest::sha256(input).0.to_vec(),
        input_size: input.len() as u64,
        input: Some(execute_task::Input::Inline(input.to_vec())),
        public_values: pv(batch).encode().to_vec(),
    }
}

fn proof_of(r: &TaskResult) -> &[u8] {
    match &r.outcome {
        Some(task_result::Outcome::Proof(p)) => p,
        other => panic!("expected an inline proof, got {other:?}"),
    }
}

fn running(list: &[RunningTask]) -> Vec<(String, u64)> {
    list.iter()
        .map(|r| (r.task_id.clone(), r.fencing_token))
        .collect()
}

fn ack(conn: &FakeConn, r: &TaskResult) {
    conn.send(C::ResultAck(ResultAck {
        task_id: r.task_id.clone(),
        fencing_token: r.fencing_token,
        accepted: true,
        ..Default::default()
    }));
}

async fn bounded<F: Future<Output = ()>>(f: F) {
    timeout(TEST_TIMEOUT, f).await.expect("test timed out");
}

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
        assert_eq!(proof_of(&r1), pv(5).encode());
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
        let quiet = timeout(Duration::from_millis(400), async {
            loop {
                let m = c3.recv().await;
                assert!(
                    !matches!(m, P::TaskResult(_) | P::ProofChunk(_)),
                    "resent after ack: {m:?}"
                );
            }
        })
        .await;
        assert!(quiet.is_err());

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
        assert_eq!(proof_of(&r), pv(1).encode());
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
        assert_eq!(proof_of(&r), pv(1).encode());
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
            ("1/exec", &pv(1).encode()[..])
        );
        let rb = cb.recv_result().await;
        assert_eq!(
            (rb.task_id.as_str(), proof_of(&rb)),
            ("2/exec", &pv(2).encode()[..])
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
async fn cancelled_task_result_is_discarded() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let backend = Arc::new(SimBackend::new().with_delay(Duration::from_millis(700)));
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
        let quiet = timeout(Duration::from_millis(400), async {
            loop {
                let m = c.recv().await;
                assert!(
                    !matches!(m, P::TaskResult(_)),
                    "cancelled result sent: {m:?}"
                );
            }
        })
        .await;
        assert!(quiet.is_err());
        assert_eq!(backend.calls(), 1);
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
async fn shutdown_finishes_running_task_and_stops_reconnecting() {
    bounded(async {
        let mut coord = FakeCoordinator::start().await;
        let backend = Arc::new(SimBackend::new().with_delay(Duration::from_millis(400)));
        let mut prover = RunningProver::spawn(config(&[&coord.url], 2, vec![("exec", backend)]));
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
        assert_eq!(proof_of(&r), pv(1).encode());
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
        assert_eq!(proof_of(&r), pv(9).encode());
        ack(&c, &r);
        assert_eq!(prover.stats.snapshot().connected_coordinators, 1);
        prover.stop().await;
        drop(c);
        live.stop().await;
    })
    .await;
}
