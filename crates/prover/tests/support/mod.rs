//! A scripted fake coordinator for the prover's tests: a tonic `ProverService` on
//! 127.0.0.1:0 whose every stream is handed to the test.
// Shared by several test binaries: each uses a different part.
#![allow(dead_code, unused_imports)]

pub use proofmill_backend::Backend;
pub use proofmill_proto::v1::coordinator_message::Kind as C;
pub use proofmill_proto::v1::prover_message::Kind as P;
pub use proofmill_proto::v1::prover_service_server::{ProverService, ProverServiceServer};
pub use proofmill_proto::v1::{
    CoordinatorMessage, DataChunk, ErrorCode, ExecuteTask, Heartbeat, ProverMessage,
    RegisterResponse, ResultAck, RunningTask, Shutdown, TaskCancelled, TaskResult, execute_task,
    task_result,
};
pub use proofmill_prover::sim::SimBackend;
pub use proofmill_prover::{Prover, ProverConfig, ProverStatsHandle};
pub use proofmill_types::{Digest, ProofType, PublicValues};
pub use std::future::Future;
pub use std::sync::Arc;
pub use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
pub use tokio::sync::{mpsc, oneshot};
pub use tokio::task::JoinHandle;
pub use tokio::time::timeout;
pub use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
pub use tonic::{Request, Response, Status, Streaming};

pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);
pub const RECV_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------------------
// Fake coordinator

pub type Outbound = mpsc::UnboundedSender<Result<CoordinatorMessage, Status>>;

pub struct FakeService {
    pub conns: mpsc::UnboundedSender<FakeConn>,
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
pub struct FakeConn {
    pub rx: Streaming<ProverMessage>,
    pub tx: Outbound,
}

impl FakeConn {
    pub fn send(&self, kind: C) {
        self.tx
            .send(Ok(CoordinatorMessage { kind: Some(kind) }))
            .expect("stream open");
    }

    /// Next message from the prover; `None` when the prover closed the stream.
    pub async fn try_recv(&mut self) -> Option<P> {
        match timeout(RECV_TIMEOUT, self.rx.message())
            .await
            .expect("prover message in time")
        {
            Ok(Some(m)) => Some(m.kind.expect("message kind set")),
            Ok(None) | Err(_) => None,
        }
    }

    pub async fn recv(&mut self) -> P {
        self.try_recv().await.expect("stream still open")
    }

    /// Receives until `pick` returns `Some`; every message skipped is appended to `skipped`.
    pub async fn recv_until<T>(
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

    pub async fn recv_result(&mut self) -> TaskResult {
        let mut skipped = Vec::new();
        self.recv_until(&mut skipped, |m| match m {
            P::TaskResult(r) => Some(r.clone()),
            _ => None,
        })
        .await
    }

    pub async fn recv_availability(&mut self, free: u32) {
        let mut skipped = Vec::new();
        self.recv_until(&mut skipped, |m| {
            matches!(m, P::Availability(a) if a.free_slots == free).then_some(())
        })
        .await;
    }

    /// Reads until `quiet` passes without a result (a TaskResult or ProofChunk), which
    /// fails the test (`what` says why none was expected); the stream must stay open.
    pub async fn assert_no_result_for(&mut self, quiet: Duration, what: &str) {
        let waited = timeout(quiet, async {
            loop {
                let m = self.recv().await;
                assert!(
                    !matches!(m, P::TaskResult(_) | P::ProofChunk(_)),
                    "{what}: {m:?}"
                );
            }
        })
        .await;
        assert!(waited.is_err(), "the stream stayed open");
    }

    /// Expects a Register or Reconnect first and accepts it.
    pub async fn accept(&mut self, prover_id: &str) -> P {
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

pub struct FakeCoordinator {
    pub url: String,
    pub conns: mpsc::UnboundedReceiver<FakeConn>,
    pub stop: Option<oneshot::Sender<()>>,
    pub server: Option<JoinHandle<()>>,
}

impl FakeCoordinator {
    pub async fn start() -> Self {
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

    pub async fn next_conn(&mut self) -> FakeConn {
        timeout(RECV_TIMEOUT, self.conns.recv())
            .await
            .expect("prover connected in time")
            .expect("server running")
    }

    /// Waits `window` and returns whether the prover opened a stream in it.
    pub async fn conn_within(&mut self, window: Duration) -> Option<FakeConn> {
        timeout(window, self.conns.recv()).await.ok().flatten()
    }

    pub async fn stop(mut self) {
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

pub struct RunningProver {
    pub stop: Option<oneshot::Sender<()>>,
    pub join: JoinHandle<anyhow::Result<()>>,
    pub stats: ProverStatsHandle,
}

impl RunningProver {
    pub fn spawn(config: ProverConfig) -> Self {
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

    pub async fn stop(mut self) {
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

pub fn config(
    urls: &[&str],
    capacity: u32,
    backends: Vec<(&str, Arc<dyn Backend>)>,
) -> ProverConfig {
    ProverConfig {
        coordinators: urls.iter().map(|u| u.to_string()).collect(),
        name: "test-prover".to_string(),
        capacity,
        version: "v1".to_string(),
        token: Some("secret".to_string()),
        tls: Default::default(),
        backends: backends
            .into_iter()
            .map(|(pt, b)| (ProofType::new(pt).unwrap(), b))
            .collect(),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(400),
        refused_max: Duration::from_millis(400),
        max_message_bytes: 4 << 20,
        connect_timeout: Duration::from_secs(2),
        blob_reader: None,
        exit_on_shutdown: false,
        state_dir: None,
    }
}

/// Public values of a batch, in the devnet's 96-byte layout (old root, new root, commitment).
pub fn pv(batch: u64) -> PublicValues {
    let words = [
        Digest([batch as u8; 32]),
        Digest([batch as u8 + 1; 32]),
        Digest::sha256(&batch.to_be_bytes()),
    ];
    PublicValues::new(words.iter().flat_map(|d| d.0).collect::<Vec<u8>>())
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

pub fn task(batch: u64, proof_type: &str, token: u64, input: &[u8]) -> ExecuteTask {
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
        public_values: pv(batch).into_bytes(),
    }
}

pub fn proof_of(r: &TaskResult) -> &[u8] {
    match &r.outcome {
        Some(task_result::Outcome::Proof(p)) => p,
        other => panic!("expected an inline proof, got {other:?}"),
    }
}

pub fn running(list: &[RunningTask]) -> Vec<(String, u64)> {
    list.iter()
        .map(|r| (r.task_id.clone(), r.fencing_token))
        .collect()
}

pub fn ack(conn: &FakeConn, r: &TaskResult) {
    conn.send(C::ResultAck(ResultAck {
        task_id: r.task_id.clone(),
        fencing_token: r.fencing_token,
        accepted: true,
        ..Default::default()
    }));
}

pub async fn bounded<F: Future<Output = ()>>(f: F) {
    timeout(TEST_TIMEOUT, f).await.expect("test timed out");
}
