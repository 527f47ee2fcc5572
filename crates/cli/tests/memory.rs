//! The coordinator as a separate process, flooded by hostile clients on a real socket: its
//! resident memory (VmRSS) stays put. Proof chunks for tasks a client does not hold are not
//! kept, however many streams send them, and a client that never reads its replies is
//! closed with RESOURCE_EXHAUSTED instead of growing its reply queue.

use proofmill_proto::v1::{
    CoordinatorMessage, DataChunk, ProverMessage, Register, coordinator_message::Kind as Out,
    prover_message::Kind as In, prover_service_client::ProverServiceClient,
};
use std::net::SocketAddr;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;

mod common;
use common::proofmill;

const MIB: usize = 1 << 20;

/// A coordinator process, killed and reaped on drop.
struct Coordinator {
    child: Child,
    url: String,
}

impl Coordinator {
    fn start(dir: &std::path::Path) -> Coordinator {
        let log = dir.join("coordinator.log");
        let file = std::fs::File::create(&log).unwrap();
        let child = proofmill()
            .args([
                "coordinator",
                "--listen",
                "127.0.0.1:0",
                "--db",
                &format!("sqlite://{}/c.db?mode=rwc", dir.display()),
                "--blobs",
                &format!("file://{}/blobs", dir.display()),
                "--l1",
                "none",
                "--heartbeat-interval",
                "60000",
            ])
            .env("RUST_LOG", "info")
            .env("PROOFMILL_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        let url = format!("http://127.0.0.1:{}", bound_port(&log));
        Coordinator { child, url }
    }

    /// Resident memory, bytes.
    fn rss(&self) -> usize {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: usize = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS");
        kb * 1024
    }
}

impl Drop for Coordinator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn bound_port(log: &std::path::Path) -> u16 {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|l| {
                (l["fields"]["message"] == "coordinator listening")
                    .then(|| l["fields"]["addr"].as_str()?.parse::<SocketAddr>().ok())
                    .flatten()
            });
        if let Some(addr) = found {
            return addr.port();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no 'coordinator listening' line in {}", log.display());
}

/// A registered prover stream: what to send on, and its replies.
async fn register(
    url: &str,
    name: &str,
) -> (mpsc::Sender<ProverMessage>, Streaming<CoordinatorMessage>) {
    let mut client = ProverServiceClient::connect(url.to_string())
        .await
        .unwrap()
        .max_encoding_message_size(usize::MAX);
    let (tx, rx) = mpsc::channel(8);
    let reg = Register {
        name: name.into(),
        proof_types: vec!["exec".into()],
        compute_capacity: 1,
        version: "v1".into(),
        token: None,
        blob_access: false,
        max_message_bytes: 0,
    };
    tx.send(ProverMessage {
        kind: Some(In::Register(reg)),
    })
    .await
    .unwrap();
    let mut replies = client
        .prover_stream(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    match replies.message().await.unwrap().unwrap().kind {
        Some(Out::RegisterResponse(r)) => assert!(r.accepted, "{r:?}"),
        other => panic!("expected RegisterResponse, got {other:?}"),
    }
    (tx, replies)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_leave_the_coordinators_memory_alone() {
    let dir = tempfile::tempdir().unwrap();
    let c = Coordinator::start(dir.path());
    let before = c.rss();

    // Two streams send 300 MiB each of proof chunks for tasks they do not hold (the issue's
    // two streams took the coordinator from 35 MB to 582 MB). Their refusals are read.
    let mut floods = Vec::new();
    for s in 0..2 {
        let (tx, mut replies) = register(&c.url, &format!("hostile{s}")).await;
        floods.push(tokio::spawn(async move {
            let reader =
                tokio::spawn(async move { while let Ok(Some(_)) = replies.message().await {} });
            for i in 0..300u64 {
                let chunk = DataChunk {
                    task_id: format!("{}/exec", 1 + i % 2),
                    fencing_token: 1,
                    offset: (i / 2) * MIB as u64,
                    data: vec![7; MIB],
                    last: false,
                };
                let m = ProverMessage {
                    kind: Some(In::ProofChunk(chunk)),
                };
                tx.send(m).await.expect("stream open");
            }
            drop(tx);
            reader.abort();
        }));
    }
    for f in floods {
        f.await.unwrap();
    }
    let after_chunks = c.rss();

    // A client that keeps sending messages that are each answered, and never reads.
    let (tx, mut replies) = register(&c.url, "deaf").await;
    let flood = tokio::spawn(async move {
        for _ in 0..300_000 {
            if tx.send(ProverMessage { kind: None }).await.is_err() {
                return;
            }
        }
    });
    let _ = tokio::time::timeout(Duration::from_secs(60), flood).await;
    let after_deaf = c.rss();
    let grown = |after: usize| after.saturating_sub(before) / MIB;
    eprintln!(
        "VmRSS before {} MiB, after the chunk floods +{} MiB, after the deaf client +{} MiB",
        before / MIB,
        grown(after_chunks),
        grown(after_deaf)
    );
    // Transient buffers (a message being decoded, allocator slack) only.
    assert!(grown(after_chunks) < 64, "+{} MiB", grown(after_chunks));
    assert!(grown(after_deaf) < 64, "+{} MiB", grown(after_deaf));
    let status = loop {
        match tokio::time::timeout(Duration::from_secs(10), replies.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) => panic!("closed with OK"),
            Ok(Err(s)) => break s,
            Err(_) => panic!("the deaf stream is still open"),
        }
    };
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
}
