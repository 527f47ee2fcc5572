//! Test support: a coordinator on a real loopback socket over SQLite or Postgres, and a
//! hand-driven prover client that speaks the wire protocol directly.
#![allow(dead_code)]

use proofmill_coordinator::{Coordinator, CoordinatorConfig, NewBatch, Serving};
use proofmill_proto::v1::{
    CoordinatorMessage, ExecuteTask, HeartbeatAck, ProverMessage, Reconnect, Register,
    RegisterResponse, ResultAck, RunningTask, TaskResult, admin_service_client::AdminServiceClient,
    coordinator_message::Kind as Out, prover_message::Kind as In,
    prover_service_client::ProverServiceClient, task_result::Outcome,
};
use proofmill_store::{Blobs, open_store};
use proofmill_types::{Digest, ProofType, PublicValues};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per store backend.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() { super::$name(super::support::Db::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() { super::$name(super::support::Db::Postgres).await }
        })*
    };
}

pub struct Env {
    pub dir: tempfile::TempDir,
    pub db_url: String,
    pub blobs_url: String,
}

impl Env {
    pub fn new(db: Db, label: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let db_url = match db {
            Db::Sqlite => format!("sqlite://{}/c.db?mode=rwc", dir.path().display()),
            Db::Postgres => proofmill_testkit::shared_database(label).expect("test postgres"),
        };
        let blobs_url = format!("file://{}/blobs", dir.path().display());
        Env {
            dir,
            db_url,
            blobs_url,
        }
    }
}

pub struct Running {
    pub coord: Coordinator,
    pub addr: SocketAddr,
    server: Serving,
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops serving and waits until every state change is durable.
    pub async fn stop(self) {
        let _ = self.coord.flush().await;
        self.server.stop().await.unwrap();
    }

    pub async fn admin(&self) -> AdminServiceClient<tonic::transport::Channel> {
        AdminServiceClient::connect(self.url()).await.unwrap()
    }
}

/// The devnet's `exec` proof type, with fast retries and heartbeats.
pub fn fast_config() -> CoordinatorConfig {
    let mut c = CoordinatorConfig::default().prove_with(
        proofmill_types::ProofType::new("exec").unwrap(),
        std::sync::Arc::new(proofmill_devnet::ExecBackend),
    );
    c.scheduler.heartbeat_interval_ms = 200;
    c.scheduler.retry_backoff_base_ms = 50;
    c.scheduler.retry_backoff_max_ms = 200;
    c
}

pub async fn start(env: &Env, config: CoordinatorConfig) -> Running {
    let store = open_store(&env.db_url).await.unwrap();
    let blobs = Blobs::from_url(&env.blobs_url).unwrap();
    let coord = Coordinator::start(config, store, blobs).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = coord.spawn_serve(listener);
    Running {
        coord,
        addr,
        server,
    }
}

/// Public values of batch `n` in tests: the old root is a field element (the `exec`
/// backend's intake check compares it with the input's), the rest arbitrary.
pub fn public(n: u64) -> PublicValues {
    transition(n).to_public_values()
}

/// [`public`] in the devnet's layout.
pub fn transition(n: u64) -> proofmill_devnet::StateTransition {
    proofmill_devnet::StateTransition {
        old_state_root: proofmill_devnet::fr_to_digest(proofmill_devnet::fr_from_u64(n)),
        new_state_root: Digest::sha256(&(n + 1).to_be_bytes()),
        batch_commitment: Digest::sha256(b"commit"),
    }
}

/// An input of batch `n` that passes the `exec` backend's intake check for [`public`]`(n)`
/// (it decodes, names `n`, starts from the old root) without executing to those values
/// (the exec verifier only compares public values): a depth-1 devnet batch input with at
/// least `min_len` bytes of transfer records whose bytes follow `seed`.
pub fn input_for(n: u64, min_len: usize, seed: u32) -> Vec<u8> {
    use proofmill_devnet::input::{BatchInput, HEADER_LEN, record_len};
    let mut out = BatchInput {
        number: n,
        depth: 1,
        old_root: proofmill_devnet::fr_from_u64(n),
        transfers: vec![],
    }
    .encode();
    let len = record_len(1);
    let records = min_len.saturating_sub(HEADER_LEN).div_ceil(len).max(1);
    out[HEADER_LEN - 4..HEADER_LEN].copy_from_slice(&(records as u32).to_le_bytes());
    for r in 0..records {
        let start = out.len();
        out.extend((0..len).map(|i| ((r * len + i) as u32).wrapping_add(seed) as u8 % 251));
        // The two path siblings (field elements) start at these offsets: a zero top byte
        // keeps them below the field modulus.
        out[start + 40] = 0;
        out[start + 88] = 0;
    }
    out
}

/// A batch with an input the exec verifier does not care about (it compares public values).
pub async fn submit(coord: &Coordinator, n: u64, types: &[&str]) {
    let nb = NewBatch {
        chain: proofmill_types::DEFAULT_CHAIN,
        number: n,
        version: "v1".into(),
        input: input_for(n, 0, 0).into(),
        public_values: public(n),
        proof_types: types.iter().map(|t| ProofType::new(*t).unwrap()).collect(),
    };
    assert!(coord.submit_batch(nb).await.unwrap());
}

pub fn register(name: &str, types: &[&str], capacity: u32) -> Register {
    Register {
        name: name.into(),
        proof_types: types.iter().map(|t| t.to_string()).collect(),
        compute_capacity: capacity,
        version: "v1".into(),
        token: None,
        blob_access: false,
        max_message_bytes: 0,
    }
}

/// What a prover reports running when it holds these tasks.
pub fn running_of(tasks: &[&ExecuteTask]) -> Vec<RunningTask> {
    tasks
        .iter()
        .map(|t| RunningTask {
            task_id: t.task_id.clone(),
            fencing_token: t.fencing_token,
        })
        .collect()
}

/// A prover id with the secret that lets it reconnect.
#[derive(Clone, Debug)]
pub struct Who {
    pub id: String,
    pub secret: String,
}

/// A prover driven step by step by the test.
pub struct RawProver {
    pub tx: mpsc::Sender<ProverMessage>,
    pub rx: Streaming<CoordinatorMessage>,
    pub id: String,
    pub secret: String,
    /// Answer heartbeats automatically while waiting for other messages.
    pub answer_heartbeats: bool,
    pub running: Vec<RunningTask>,
    /// Tasks that arrived while waiting for something else.
    pub pending: std::collections::VecDeque<ExecuteTask>,
}

pub async fn open(
    url: &str,
    first: In,
) -> (mpsc::Sender<ProverMessage>, Streaming<CoordinatorMessage>) {
    let mut client = ProverServiceClient::connect(url.to_string()).await.unwrap();
    let (tx, rx) = mpsc::channel(64);
    tx.send(ProverMessage { kind: Some(first) }).await.unwrap();
    let stream = client
        .prover_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    (tx, stream)
}

pub async fn first_response(rx: &mut Streaming<CoordinatorMessage>) -> RegisterResponse {
    match tokio::time::timeout(Duration::from_secs(10), rx.message()).await {
        Ok(Ok(Some(CoordinatorMessage {
            kind: Some(Out::RegisterResponse(r)),
        }))) => r,
        other => panic!("expected RegisterResponse, got {other:?}"),
    }
}

impl RawProver {
    pub async fn register(url: &str, reg: Register) -> RawProver {
        let (tx, mut rx) = open(url, In::Register(reg)).await;
        let r = first_response(&mut rx).await;
        assert!(r.accepted, "registration refused: {r:?}");
        RawProver {
            tx,
            rx,
            id: r.prover_id,
            secret: r.reconnect_secret,
            answer_heartbeats: true,
            running: Vec::new(),
            pending: Default::default(),
        }
    }

    pub fn who(&self) -> Who {
        Who {
            id: self.id.clone(),
            secret: self.secret.clone(),
        }
    }

    pub async fn reconnect(
        url: &str,
        who: &Who,
        reg: Register,
        running: Vec<RunningTask>,
    ) -> RawProver {
        let hello = In::Reconnect(Reconnect {
            prover_id: who.id.clone(),
            register: Some(reg),
            running: running.clone(),
            secret: who.secret.clone(),
        });
        let (tx, mut rx) = open(url, hello).await;
        let r = first_response(&mut rx).await;
        assert!(r.accepted, "reconnect refused: {r:?}");
        assert_eq!(r.prover_id, who.id);
        assert_eq!(r.reconnect_secret, who.secret, "the same secret for the id");
        RawProver {
            tx,
            rx,
            id: r.prover_id,
            secret: r.reconnect_secret,
            answer_heartbeats: true,
            running,
            pending: Default::default(),
        }
    }

    pub async fn send(&self, kind: In) {
        self.tx
            .send(ProverMessage { kind: Some(kind) })
            .await
            .unwrap();
    }

    /// Next message that is not a heartbeat (heartbeats are answered if configured).
    pub async fn next(&mut self, within: Duration) -> Option<Out> {
        let until = tokio::time::Instant::now() + within;
        loop {
            let m = tokio::time::timeout_at(until, self.rx.message())
                .await
                .ok()?;
            let kind = m.ok()??.kind?;
            if let Out::Heartbeat(h) = &kind {
                if self.answer_heartbeats {
                    let ack = HeartbeatAck {
                        seq: h.seq,
                        running: self.running.clone(),
                        probe: None,
                    };
                    self.send(In::HeartbeatAck(ack)).await;
                }
                continue;
            }
            return Some(kind);
        }
    }

    pub async fn task(&mut self) -> ExecuteTask {
        if let Some(t) = self.pending.pop_front() {
            self.running.push(RunningTask {
                task_id: t.task_id.clone(),
                fencing_token: t.fencing_token,
            });
            return t;
        }
        match self.next(Duration::from_secs(10)).await {
            Some(Out::ExecuteTask(t)) => {
                self.running.push(RunningTask {
                    task_id: t.task_id.clone(),
                    fencing_token: t.fencing_token,
                });
                t
            }
            other => panic!("expected ExecuteTask, got {other:?}"),
        }
    }

    pub async fn ack(&mut self) -> ResultAck {
        match self.next(Duration::from_secs(10)).await {
            Some(Out::ResultAck(a)) => a,
            other => panic!("expected ResultAck, got {other:?}"),
        }
    }

    /// Submits a proof and returns the coordinator's acknowledgement, skipping other messages.
    pub async fn submit(&mut self, task_id: &str, token: u64, proof: Vec<u8>) -> ResultAck {
        self.running.retain(|r| r.task_id != task_id);
        let r = TaskResult {
            task_id: task_id.into(),
            fencing_token: token,
            outcome: Some(Outcome::Proof(proof)),
            prove_ms: 1,
        };
        self.send(In::TaskResult(r)).await;
        self.ack_for(task_id, token).await
    }

    pub async fn ack_for(&mut self, task_id: &str, token: u64) -> ResultAck {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Some(Out::ResultAck(a)) if a.task_id == task_id && a.fencing_token == token => {
                    return a;
                }
                Some(Out::ExecuteTask(t)) => self.pending.push_back(t),
                Some(_) => continue,
                None => panic!("no ack for {task_id}/{token}"),
            }
        }
    }

    /// The next TaskCancelled, skipping other messages.
    pub async fn cancelled(&mut self) -> proofmill_proto::v1::TaskCancelled {
        loop {
            match self.next(Duration::from_secs(10)).await {
                Some(Out::TaskCancelled(c)) => return c,
                Some(_) => continue,
                None => panic!("no TaskCancelled"),
            }
        }
    }

    /// The correct exec proof for a task: its expected public values.
    pub fn proof_for(task: &ExecuteTask) -> Vec<u8> {
        task.public_values.clone()
    }
}

pub async fn wait_for<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < until {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for {what}");
}
