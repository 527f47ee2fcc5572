//! Every stream the coordinator ends says why, as a gRPC status a client sees (not an OK
//! with the reason only in its log); a message of a kind it does not know is answered and
//! the stream kept; reflection (v1 and v1alpha) and grpc.health.v1 are served; text from
//! provers cannot forge lines in its log. On a real loopback socket, SQLite and Postgres.
mod support;

use proofmill_proto::v1::{
    CoordinatorMessage, DataChunk, HeartbeatAck, ProverError, ProverMessage, RunningTask,
    coordinator_message::Kind as Out, prover_message::Kind as In,
};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use support::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status, Streaming};

/// Reads the stream to its end (answering nothing) and returns the status it ended with.
async fn end_status(rx: &mut Streaming<CoordinatorMessage>) -> Status {
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(until, rx.message()).await {
            Err(_) => panic!("stream still open"),
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("stream ended with OK and no reason"),
            Ok(Err(status)) => return status,
        }
    }
}

fn assert_status(s: &Status, code: Code, text: &str) {
    assert_eq!(s.code(), code, "{s:?}");
    assert!(s.message().contains(text), "{text:?} not in {s:?}");
}

/// Prost messages that are wire-compatible with ours but can say what ours cannot: a name
/// that is not UTF-8, a message kind from a newer protocol.
mod raw {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Register {
        #[prost(bytes = "vec", tag = "1")]
        pub name: Vec<u8>,
        #[prost(string, repeated, tag = "2")]
        pub proof_types: Vec<String>,
        #[prost(uint32, tag = "3")]
        pub compute_capacity: u32,
        #[prost(string, tag = "4")]
        pub version: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ProverMessage {
        #[prost(message, optional, tag = "1")]
        pub register: Option<Register>,
        /// A kind this coordinator was built without.
        #[prost(bytes = "vec", optional, tag = "99")]
        pub from_the_future: Option<Vec<u8>>,
    }
}

/// Opens a prover stream with a client that speaks `raw::ProverMessage`.
async fn open_raw(
    url: &str,
    first: Option<raw::ProverMessage>,
) -> (
    mpsc::Sender<raw::ProverMessage>,
    Streaming<CoordinatorMessage>,
) {
    let mut grpc = tonic::client::Grpc::new(channel(url).await);
    grpc.ready().await.unwrap();
    let (tx, rx) = mpsc::channel(16);
    if let Some(m) = first {
        tx.send(m).await.unwrap();
    }
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/proofmill.v1.ProverService/ProverStream",
    );
    let codec = tonic_prost::ProstCodec::<raw::ProverMessage, CoordinatorMessage>::default();
    let stream = grpc
        .streaming(tonic::Request::new(ReceiverStream::new(rx)), path, codec)
        .await
        .unwrap()
        .into_inner();
    (tx, stream)
}

fn raw_register(name: &[u8]) -> raw::ProverMessage {
    raw::ProverMessage {
        register: Some(raw::Register {
            name: name.to_vec(),
            proof_types: vec!["exec".into()],
            compute_capacity: 1,
            version: "v1".into(),
        }),
        from_the_future: None,
    }
}

async fn every_closed_stream_says_why(db: Db) {
    let env = Env::new(db, "refusals");
    let mut config = fast_config();
    config.register_timeout_ms = 300;
    config.max_message_bytes = 64 << 10;
    let c = start(&env, config).await;

    // Nothing sent within the registration timeout.
    let (_tx, mut rx) = open_raw(&c.url(), None).await;
    assert_status(
        &end_status(&mut rx).await,
        Code::DeadlineExceeded,
        "no Register or Reconnect within 300 ms",
    );

    // A refused registration: its RegisterResponse, then a status with the same reason.
    let (_tx, mut rx) = open(&c.url(), In::Register(register("a", &["groth16"], 1))).await;
    let r = first_response(&mut rx).await;
    assert!(!r.accepted);
    assert_status(
        &end_status(&mut rx).await,
        Code::FailedPrecondition,
        "is needed here",
    );

    // A name that is not UTF-8 does not decode.
    let (_tx, mut rx) = open_raw(&c.url(), Some(raw_register(b"a\xff"))).await;
    let s = end_status(&mut rx).await;
    assert_status(&s, Code::InvalidArgument, "cannot be decoded");
    assert!(s.message().contains("UTF-8"), "{s:?}");

    // A second Register on a registered stream.
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    a.send(In::Register(register("a", &["exec"], 1))).await;
    assert_status(
        &end_status(&mut a.rx).await,
        Code::FailedPrecondition,
        "sent again",
    );

    // A heartbeat answer listing more tasks than any prover can run.
    let a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    let running = (0..4097)
        .map(|i| RunningTask {
            task_id: format!("{}/exec", i + 1),
            fencing_token: 1,
        })
        .collect();
    a.send(In::HeartbeatAck(HeartbeatAck {
        seq: 1,
        running,
        probe: None,
    }))
    .await;
    let mut rx = a.rx;
    assert_status(
        &end_status(&mut rx).await,
        Code::InvalidArgument,
        "at most 4096",
    );

    // A frame over the coordinator's message limit.
    let a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    a.send(In::ProofChunk(DataChunk {
        task_id: "1/exec".into(),
        fencing_token: 1,
        offset: 0,
        data: vec![7; 100 << 10],
        last: false,
    }))
    .await;
    let mut rx = a.rx;
    let s = end_status(&mut rx).await;
    assert_status(&s, Code::ResourceExhausted, "limit");

    wait_for(
        "every refused stream to end",
        Duration::from_secs(10),
        || {
            let n = c.coord.open_sessions();
            async move { n == 0 }
        },
    )
    .await;
    c.stop().await;
}

/// A newer prover may send a kind this coordinator does not know: it is answered as
/// unsupported, the stream stays, and work goes on. An empty message (which protobuf cannot
/// tell apart from one) is answered alike.
/// The reason of the next `Unsupported` (heartbeats skipped).
async fn unsupported(rx: &mut Streaming<CoordinatorMessage>) -> String {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), rx.message())
            .await
            .expect("an answer")
            .expect("stream open")
            .expect("stream open");
        match m.kind {
            Some(Out::Unsupported(u)) => return u.reason,
            Some(Out::Heartbeat(_)) => continue,
            other => panic!("expected Unsupported, got {other:?}"),
        }
    }
}

async fn channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn an_unknown_message_kind_is_answered_not_punished(db: Db) {
    let env = Env::new(db, "unknown_kind");
    let c = start(&env, fast_config()).await;
    let (tx, mut rx) = open_raw(&c.url(), Some(raw_register(b"newer"))).await;
    let r = first_response(&mut rx).await;
    assert!(r.accepted, "{r:?}");
    tx.send(raw::ProverMessage {
        register: None,
        from_the_future: Some(b"hello from v2".to_vec()),
    })
    .await
    .unwrap();
    let reason = unsupported(&mut rx).await;
    assert!(reason.contains("not supported"), "{reason}");
    // The generated client's empty message.
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    a.tx.send(ProverMessage { kind: None }).await.unwrap();
    match a.next(Duration::from_secs(10)).await {
        Some(Out::Unsupported(u)) => assert!(u.reason.contains("not supported")),
        other => panic!("expected Unsupported, got {other:?}"),
    }
    // Both streams are still served: a task goes out and its proof is accepted.
    drop((tx, rx));
    submit(&c.coord, 1, &[]).await;
    let t = a.task().await;
    let ack = a
        .submit(&t.task_id, t.fencing_token, RawProver::proof_for(&t))
        .await;
    assert!(ack.accepted, "{ack:?}");
    c.stop().await;
}

async fn reflection_v1_v1alpha_and_health(db: Db) {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let env = Env::new(db, "reflection");
    let mut config = fast_config();
    config.shutdown_grace_ms = 100;
    let c = start(&env, config).await;

    // v1alpha: what Python's stock reflection client speaks.
    {
        use tonic_reflection::pb::v1alpha::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel(&c.url()).await);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        };
        let mut resp = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let Some(MessageResponse::ListServicesResponse(list)) =
            resp.message().await.unwrap().unwrap().message_response
        else {
            panic!("no service list")
        };
        let names: Vec<_> = list.service.into_iter().map(|s| s.name).collect();
        for want in [
            "proofmill.v1.ProverService",
            "proofmill.v1.AdminService",
            "grpc.health.v1.Health",
        ] {
            assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
        }
    }
    {
        use tonic_reflection::pb::v1::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new(channel(&c.url()).await);
        let req = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "proofmill.v1.ProverService".into(),
            )),
        };
        let mut resp = client
            .server_reflection_info(tokio_stream::iter([req]))
            .await
            .unwrap()
            .into_inner();
        let m = resp.message().await.unwrap().unwrap().message_response;
        assert!(
            matches!(m, Some(MessageResponse::FileDescriptorResponse(ref f)) if !f.file_descriptor_proto.is_empty()),
            "{m:?}"
        );
    }

    let mut health = HealthClient::new(channel(&c.url()).await);
    let check = |service: &str| HealthCheckRequest {
        service: service.into(),
    };
    for service in [
        "",
        "proofmill.v1.ProverService",
        "proofmill.v1.AdminService",
    ] {
        let s = health.check(check(service)).await.unwrap().into_inner();
        assert_eq!(s.status, ServingStatus::Serving as i32, "{service:?}");
    }
    let unknown = health.check(check("no.such.Service")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    c.coord.drain("test").await.unwrap();
    wait_for(
        "NOT_SERVING while draining",
        Duration::from_secs(10),
        || {
            let mut health = health.clone();
            async move {
                let s = health.check(check("")).await.unwrap().into_inner();
                s.status == ServingStatus::NotServing as i32
            }
        },
    )
    .await;
    c.stop().await;
}

on_both_stores!(
    every_closed_stream_says_why,
    an_unknown_message_kind_is_answered_not_punished,
    reflection_v1_v1alpha_and_health,
);

/// Everything logged by this test binary.
fn captured_log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("proofmill_coordinator=debug")
            .with_ansi(false)
            .with_writer(move || Tee(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buf
    })
    .clone()
}

struct Tee(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Tee {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Text a prover sends (an error report, a decline reason, a refused proof type) is logged
/// escaped: an embedded newline cannot start a line of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prover_text_cannot_forge_log_lines() {
    let log = captured_log();
    let env = Env::new(Db::Sqlite, "log_escape");
    let c = start(&env, fast_config()).await;
    let forged = "boom\n2026-01-01T00:00:00Z ERROR forged: all provers lost\r\n";
    let (_tx, mut rx) = open(
        &c.url(),
        In::Register(register("a", &[&format!("x{forged}")], 1)),
    )
    .await;
    assert!(!first_response(&mut rx).await.accepted);
    let mut a = RawProver::register(&c.url(), register("a", &["exec"], 1)).await;
    a.send(In::ProverError(ProverError {
        code: 0,
        message: forged.into(),
    }))
    .await;
    submit(&c.coord, 1, &[]).await;
    let t = a.task().await;
    a.running.clear();
    a.send(In::TaskDeclined(proofmill_proto::v1::TaskDeclined {
        task_id: t.task_id.clone(),
        fencing_token: t.fencing_token,
        reason: forged.into(),
    }))
    .await;
    let text = || String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    wait_for(
        "the three reports in the log",
        Duration::from_secs(10),
        || {
            let t = text();
            async move {
                [
                    "registration rejected",
                    "prover reported an error",
                    "task declined",
                ]
                .iter()
                .all(|m| t.lines().any(|l| l.contains(m)))
            }
        },
    )
    .await;
    // The forged text stays on the line of what came before it in the prover's text.
    for line in text().lines().filter(|l| l.contains("forged")) {
        assert!(line.contains("boom"), "a line of its own: {line:?}");
    }
    c.stop().await;
}
