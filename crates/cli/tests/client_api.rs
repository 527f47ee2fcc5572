//! The client API from the outside: the built binary, a coordinator proving `exec` with an
//! `exec` prover process, and clients that know only the server: gRPC (`ClientService`,
//! generated client) and the JSON mirror over plain HTTP/1.1. Inputs by inline stream (one
//! of 64 MiB), `file://` in an allowed directory and outside it, `http://` from a tiny
//! server of the test's own (and its 404), a wrong digest; idempotence, ALREADY_EXISTS,
//! unknown chains; WatchBatch to the end, WaitProof and GetProof of a real exec proof,
//! CancelBatch twice.
//!
//! The 64 MiB input is no devnet batch (exec's input check refuses it), so it goes to a
//! second proof type, `big`, backed by the `command` backend, whose input check takes any
//! bytes: it is streamed, stored (its blob checked on disk) and then cancelled; no prover
//! serves `big`.

mod common;

use common::procs::{Proc, listening_addr, prover, tail};
use proofmill_proto::v1::client_service_client::ClientServiceClient;
use proofmill_proto::v1::submit_batch_request::Part;
use proofmill_proto::v1::*;
use proofmill_types::Digest;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};
use tonic::Code;

const VERSION: &str = "devnet-v1";
const BIG: usize = 64 << 20;

/// A devnet batch `n` from root `root` (no transfers) and its true public values.
fn devnet_batch(n: u64, root: u64) -> (Vec<u8>, Vec<u8>) {
    let input = proofmill_devnet::BatchInput {
        number: n,
        depth: 1,
        old_root: proofmill_devnet::fr_from_u64(root),
        transfers: vec![],
    }
    .encode();
    let public = proofmill_devnet::execute_batch_input(&input)
        .expect("a valid batch")
        .to_public_values();
    (input, public.as_bytes().to_vec())
}

fn header(n: u64, public: &[u8], proof_types: &[&str]) -> SubmitHeader {
    SubmitHeader {
        chain_id: 1,
        batch_number: n,
        protocol_version: VERSION.into(),
        proof_types: proof_types.iter().map(|s| s.to_string()).collect(),
        public_values: public.to_vec(),
        input_url: String::new(),
        input_digest: Vec::new(),
    }
}

fn messages(h: SubmitHeader, input: Vec<u8>, chunk: usize) -> Vec<SubmitBatchRequest> {
    let mut m = vec![SubmitBatchRequest {
        part: Some(Part::Header(h)),
    }];
    m.extend(input.chunks(chunk).map(|c| SubmitBatchRequest {
        part: Some(Part::Chunk(c.to_vec())),
    }));
    m
}

type Client = ClientServiceClient<tonic::transport::Channel>;

async fn submit(
    c: &mut Client,
    msgs: Vec<SubmitBatchRequest>,
) -> Result<SubmitBatchResponse, tonic::Status> {
    c.submit_batch(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// The failure reason a status carries, by its trailer, checked against its message.
fn reason(s: &tonic::Status) -> String {
    let r = s
        .metadata()
        .get("proofmill-failure-reason")
        .unwrap_or_else(|| panic!("no failure reason: {s:?}"))
        .to_str()
        .unwrap()
        .to_string();
    assert!(s.message().starts_with(&r), "{s:?}");
    r
}

async fn get(c: &mut Client, n: u64) -> Result<BatchStatus, tonic::Status> {
    c.get_batch(GetBatchRequest {
        chain_id: 1,
        batch_number: n,
    })
    .await
    .map(|r| r.into_inner())
}

/// A tiny HTTP server: `/input.bin` answers `body`, anything else 404. Serves until the
/// test ends (a thread blocked in accept; it holds no state).
fn input_server(body: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            let found = head.starts_with("GET /input.bin ");
            let (status, data) = match found {
                true => ("200 OK", body.as_slice()),
                false => ("404 Not Found", &b"no such input"[..]),
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                data.len()
            );
            let _ = conn.write_all(data);
        }
    });
    format!("http://{addr}")
}

/// One HTTP/1.1 request on a connection of its own: (status, body as JSON).
fn http(addr: &str, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(90)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    let body = serde_json::from_slice(&raw[split + 4..])
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&raw[split + 4..])));
    (status, body)
}

/// `proofmill <args>` (a coordinator) in `dir` with JSON logs: the process, its gRPC URL and
/// its HTTP admin address.
fn coordinator(dir: &std::path::Path, args: &[String]) -> (Proc, String, String) {
    let log = dir.join("c.log");
    let mut coord = Proc::spawn("coordinator", args, dir, log, &JSON_LOGS);
    let url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    let admin = admin_addr(&mut coord);
    (coord, url, admin)
}

const JSON_LOGS: [(&str, &str); 2] = [("RUST_LOG", "info"), ("PROOFMILL_LOG_FORMAT", "json")];

/// The address of the coordinator's "admin HTTP listening" log line (JSON logs).
fn admin_addr(coord: &mut Proc) -> String {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        coord.check_alive();
        let found = coord.json_lines().into_iter().find_map(|l| {
            (l["fields"]["message"] == "admin HTTP listening")
                .then(|| l["fields"]["addr"].as_str().map(str::to_string))
                .flatten()
        });
        if let Some(a) = found {
            return a;
        }
        assert!(
            Instant::now() < until,
            "no admin HTTP line:\n{}",
            tail(&coord.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_client_api_from_a_client_that_knows_only_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    let inputs = dir.path().join("inputs");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&inputs).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let args: Vec<String> = [
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--db",
        &format!("sqlite://{path}/c.db?mode=rwc"),
        "--blobs",
        &format!("file://{path}/blobs"),
        "--proof-types",
        "exec,big:command",
        "--l1",
        "none",
        "--input-fetch-dirs",
        &inputs.display().to_string(),
        "--max-input-bytes",
        &BIG.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let (coord, url, admin) = coordinator(dir.path(), &args);
    let rt = tokio::runtime::Runtime::new().unwrap();
    // The prover outlives the gRPC part: the HTTP part proves a batch too.
    let _prover = rt.block_on(async {
        // It listens first, as a standby, until it holds the store's lease.
        let mut c = None;
        for _ in 0..600 {
            if let Ok(mut client) = ClientServiceClient::connect(url.clone()).await {
                match get(&mut client, 1).await {
                    Err(s) if s.code() == Code::NotFound => {
                        c = Some(client);
                        break;
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut c = c
            .unwrap_or_else(|| panic!("the client API did not answer:\n{}", tail(&coord.log())))
            .max_encoding_message_size(usize::MAX)
            .max_decoding_message_size(usize::MAX);

        // Unknown chain: NOT_FOUND, for reads and submissions alike.
        let e = c
            .get_batch(GetBatchRequest {
                chain_id: 7,
                batch_number: 1,
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound);
        assert_eq!(
            e.message(),
            "unknown chain 7 (this coordinator proves chain 1)"
        );
        let (input1, public1) = devnet_batch(1, 11);
        let mut h = header(1, &public1, &[]);
        h.chain_id = 7;
        let e = submit(&mut c, messages(h, input1.clone(), 64))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "{e:?}");

        // Batch 1 inline, in small chunks, before any prover: created, then the same again
        // is not, and other content under its number is ALREADY_EXISTS.
        let r = submit(
            &mut c,
            messages(header(1, &public1, &["exec"]), input1.clone(), 64),
        )
        .await
        .unwrap();
        assert!(r.created);
        let state = r.batch.unwrap();
        assert_eq!(state.phase, BatchPhase::BatchProving as i32);
        assert_eq!(state.input_digest, Digest::sha256(&input1).0.to_vec());
        let r = submit(
            &mut c,
            messages(header(1, &public1, &["exec"]), input1.clone(), 64),
        )
        .await
        .unwrap();
        assert!(!r.created, "the same request again");
        let (other, other_public) = devnet_batch(1, 12);
        let e = submit(
            &mut c,
            messages(header(1, &other_public, &["exec"]), other, 64),
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
        assert_eq!(
            get(&mut c, 1).await.unwrap().input_digest,
            state.input_digest
        );

        // An input the exec backend cannot decode: INPUT_REFUSED, nothing stored.
        let junk = messages(header(20, &public1, &["exec"]), b"not a batch".to_vec(), 64);
        let e = submit(&mut c, junk).await.unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::InvalidArgument, "INPUT_REFUSED")
        );
        assert_eq!(get(&mut c, 20).await.unwrap_err().code(), Code::NotFound);

        // WatchBatch from before the prover: its first message is the state now, its last
        // the terminal one, and it ends there.
        let mut watch = c
            .watch_batch(WatchBatchRequest {
                chain_id: 1,
                batch_number: 1,
            })
            .await
            .unwrap()
            .into_inner();
        let first = watch.message().await.unwrap().unwrap();
        assert!(!first.terminal);
        let mut prover = prover(dir.path(), "p1", &url);
        let watched = tokio::time::timeout(Duration::from_secs(120), async {
            let mut seen = vec![first];
            while let Some(s) = watch.message().await.unwrap() {
                seen.push(s);
            }
            seen
        })
        .await
        .unwrap_or_else(|_| panic!("WatchBatch did not end:\n{}", tail(&prover.log())));
        let last = watched.last().unwrap();
        assert_eq!(last.phase, BatchPhase::BatchProven as i32, "{watched:?}");
        assert!(watched[..watched.len() - 1].iter().all(|s| !s.terminal));
        // Safe to call after the end: the terminal state once.
        let mut again = c
            .watch_batch(WatchBatchRequest {
                chain_id: 1,
                batch_number: 1,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(again.message().await.unwrap().unwrap().terminal);
        assert!(again.message().await.unwrap().is_none());

        // WaitProof and GetProof: the real exec proof, which the exec backend verifies.
        let w = c
            .wait_proof(WaitProofRequest {
                chain_id: 1,
                batch_number: 1,
                timeout_ms: 30_000,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!w.timed_out);
        assert_eq!(w.proofs.len(), 1);
        let proof = &w.proofs[0];
        assert_eq!(
            (proof.proof_type.as_str(), &proof.public_values),
            ("exec", &public1)
        );
        use proofmill_backend::Backend as _;
        proofmill_devnet::ExecBackend
            .verify(
                &proofmill_types::PublicValues::new(proof.public_values.clone()),
                &proof.proof,
            )
            .expect("a valid exec proof");
        let g = c
            .get_proof(GetProofRequest {
                chain_id: 1,
                batch_number: 1,
                proof_type: String::new(),
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(g.proofs, w.proofs);

        // file:// inside the allowed directory is fetched; outside it, refused, nothing stored.
        let (input2, public2) = devnet_batch(2, 21);
        std::fs::write(inputs.join("2.bin"), &input2).unwrap();
        std::fs::write(outside.join("2.bin"), &input2).unwrap();
        let by_url = |n: u64, public: &[u8], url: String, digest: Vec<u8>| {
            let mut h = header(n, public, &["exec"]);
            h.input_url = url;
            h.input_digest = digest;
            vec![SubmitBatchRequest {
                part: Some(Part::Header(h)),
            }]
        };
        let digest2 = Digest::sha256(&input2).0.to_vec();
        let e = submit(
            &mut c,
            by_url(
                2,
                &public2,
                format!("file://{}", outside.join("2.bin").display()),
                digest2.clone(),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::InvalidArgument, "INPUT_REFUSED")
        );
        assert_eq!(get(&mut c, 2).await.unwrap_err().code(), Code::NotFound);
        // A wrong digest: DIGEST_MISMATCH, nothing stored.
        let e = submit(
            &mut c,
            by_url(
                2,
                &public2,
                format!("file://{}", inputs.join("2.bin").display()),
                vec![7; 32],
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(reason(&e), "DIGEST_MISMATCH");
        assert_eq!(get(&mut c, 2).await.unwrap_err().code(), Code::NotFound);
        let r = submit(
            &mut c,
            by_url(
                2,
                &public2,
                format!("file://{}", inputs.join("2.bin").display()),
                digest2,
            ),
        )
        .await
        .unwrap();
        assert!(r.created);

        // http:// from the test's server; a 404 there is INPUT_UNREACHABLE.
        let (input3, public3) = devnet_batch(3, 31);
        let server = input_server(input3.clone());
        let digest3 = Digest::sha256(&input3).0.to_vec();
        let e = submit(
            &mut c,
            by_url(
                3,
                &public3,
                format!("{server}/missing.bin"),
                digest3.clone(),
            ),
        )
        .await
        .unwrap_err();
        assert_eq!(reason(&e), "INPUT_UNREACHABLE", "{e:?}");
        assert_eq!(get(&mut c, 3).await.unwrap_err().code(), Code::NotFound);
        let r = submit(
            &mut c,
            by_url(3, &public3, format!("{server}/input.bin"), digest3),
        )
        .await
        .unwrap();
        assert!(r.created);
        for n in [2, 3] {
            let w = c
                .wait_proof(WaitProofRequest {
                    chain_id: 1,
                    batch_number: n,
                    timeout_ms: 60_000,
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                w.batch.unwrap().phase,
                BatchPhase::BatchProven as i32,
                "batch {n}"
            );
        }

        // 64 MiB streamed in 1 MiB chunks (the cap exactly), stored whole; one byte more is
        // refused while it streams, and nothing is stored.
        let big: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
        let mut h = header(10, b"big public values", &["big"]);
        h.input_digest = Digest::sha256(&big).0.to_vec();
        let r = submit(&mut c, messages(h, big.clone(), 1 << 20))
            .await
            .unwrap();
        assert!(r.created);
        assert_eq!(r.batch.as_ref().unwrap().input_size, BIG as u64);
        let blob = dir.path().join("blobs/inputs/000000000010.bin");
        assert_eq!(std::fs::metadata(&blob).unwrap().len(), BIG as u64);
        let mut over = big;
        over.push(0);
        let e = submit(
            &mut c,
            messages(header(11, b"big public values", &["big"]), over, 1 << 20),
        )
        .await
        .unwrap_err();
        assert_eq!(
            (e.code(), reason(&e).as_str()),
            (Code::ResourceExhausted, "INPUT_TOO_LARGE")
        );
        assert_eq!(get(&mut c, 11).await.unwrap_err().code(), Code::NotFound);

        // CancelBatch returns once the batch is terminal; again, it changes nothing.
        let cancel = ClientCancelRequest {
            chain_id: 1,
            batch_number: 10,
            reason: "no prover of big".into(),
        };
        let r = c.cancel_batch(cancel.clone()).await.unwrap().into_inner();
        assert_eq!(r.cancelled_jobs, 1);
        let b = r.batch.unwrap();
        assert_eq!(
            (b.phase, b.terminal),
            (BatchPhase::BatchCancelled as i32, true)
        );
        assert_eq!(b.failure, FailureReason::Cancelled as i32);
        let r = c.cancel_batch(cancel).await.unwrap().into_inner();
        assert_eq!(r.cancelled_jobs, 0);
        assert_eq!(r.batch.unwrap().phase, BatchPhase::BatchCancelled as i32);
        prover.check_alive();
        prover
    });

    // The JSON mirror over HTTP/1.1.
    let (input4, public4) = devnet_batch(4, 41);
    let body = json!({
        "batch_number": 4,
        "protocol_version": VERSION,
        "proof_types": ["exec"],
        "public_values": hex::encode(&public4),
        "input": hex::encode(&input4),
    });
    let (status, r) = http(&admin, "POST", "/v1/chains/1/batches", Some(body.clone()));
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["created"], true);
    let (status, r) = http(&admin, "POST", "/v1/chains/1/batches", Some(body));
    assert_eq!((status, &r["created"]), (200, &json!(false)), "{r}");
    let (status, r) = http(&admin, "GET", "/v1/chains/9/batches/4", None);
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{r}"
    );
    let (status, r) = http(
        &admin,
        "GET",
        "/v1/chains/1/batches/4/wait?timeout_ms=60000",
        None,
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["batch"]["phase"], "BATCH_PROVEN", "{r}");
    assert_eq!(r["proofs"][0]["public_values"], hex::encode(&public4));
    let (status, p) = http(&admin, "GET", "/v1/chains/1/batches/4/proofs", None);
    assert_eq!(status, 200);
    assert_eq!(p["proofs"], r["proofs"]);
    let (status, s) = http(&admin, "GET", "/v1/chains/1/batches/4", None);
    assert_eq!((status, &s["terminal"]), (200, &json!(true)), "{s}");
    assert_eq!(s["jobs"][0]["state"], "proven");
    let (status, r) = http(
        &admin,
        "POST",
        "/v1/chains/1/batches/4/cancel",
        Some(json!({})),
    );
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (&r["cancelled_jobs"], &r["batch"]["phase"]),
        (&json!(0), &json!("BATCH_PROVEN"))
    );
    let (status, r) = http(&admin, "GET", "/v1/chains/1/batches/5/proofs", None);
    assert_eq!(
        (status, r["error"]["code"].as_str()),
        (404, Some("NOT_FOUND")),
        "{r}"
    );
    let (status, r) = http(
        &admin,
        "POST",
        "/v1/chains/1/batches",
        Some(json!({
            "batch_number": 5,
            "protocol_version": VERSION,
            "public_values": "00",
            "input_url": format!("file://{}/x", outside.display()),
            "input_digest": hex::encode([0u8; 32]),
        })),
    );
    assert_eq!(status, 400, "{r}");
    assert_eq!(r["error"]["reason"], "INPUT_REFUSED", "{r}");
    // WatchBatch as server-sent events: a terminal batch's state once, then the end.
    let events = sse(&admin, "/v1/chains/1/batches/4/events");
    assert_eq!(events.matches("event: batch").count(), 1, "{events}");
    assert!(events.contains("BATCH_PROVEN"), "{events}");

    // The CLI: `submit` streams a file, `proof wait` writes the proof; `proof get` of a
    // batch not there is NOT_FOUND.
    let (input6, public6) = devnet_batch(6, 61);
    std::fs::write(dir.path().join("6.bin"), &input6).unwrap();
    let run = |args: &[&str]| {
        let out = common::proofmill()
            .args(args)
            .args(["--coordinator", &url])
            .current_dir(dir.path())
            .output()
            .unwrap();
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (out.status.success(), text(out.stdout), text(out.stderr))
    };
    let public6 = hex::encode(&public6);
    let submit6 = [
        "submit",
        "--batch",
        "6",
        "--input",
        "6.bin",
        "--public-values",
        &public6,
        "--proof-types",
        "exec",
    ];
    let (ok, out, err) = run(&submit6);
    assert!(ok, "{err}");
    assert!(out.contains("chain 1 batch 6: submitted"), "{out}");
    let (ok, out, _) = run(&submit6);
    assert!(ok && out.contains("already submitted"), "{out}");
    std::fs::create_dir_all(dir.path().join("proofs")).unwrap();
    let (ok, out, err) = run(&["proof", "wait", "--batch", "6", "--out", "proofs"]);
    assert!(ok, "{err}");
    assert!(out.contains("exec"), "{out}");
    let proof = std::fs::read(dir.path().join("proofs/batch-6.exec.proof")).unwrap();
    use proofmill_backend::Backend as _;
    proofmill_devnet::ExecBackend
        .verify(
            &proofmill_types::PublicValues::new(hex::decode(&public6).unwrap()),
            &proof,
        )
        .expect("a valid exec proof");
    let (ok, _, err) = run(&["proof", "get", "--batch", "99"]);
    assert!(!ok, "{err}");
    assert!(err.contains("no batch 99 of chain 1"), "{err}");
}

/// A server-sent event stream read to its end (the server closes it).
fn sse(addr: &str, path: &str) -> String {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).expect("the stream ends");
    String::from_utf8_lossy(&raw).to_string()
}

/// `request` with `authorization: Bearer token`.
fn bearer<T>(request: T, token: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(request);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    r
}

/// One HTTP/1.1 request with a bearer token: its status.
fn http_status(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> u16 {
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        conn,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{auth}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).unwrap();
    String::from_utf8_lossy(&raw)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap()
}

/// With admin tokens, reads need read-only and writes operator; a refused call changes
/// nothing, over gRPC (UNAUTHENTICATED, PERMISSION_DENIED) and HTTP (401, 403).
#[test]
fn client_calls_need_a_token_with_their_role() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().display().to_string();
    let (ops, view) = (
        "an-operator-token-for-the-rollup",
        "a-read-only-token-for-dashboards",
    );
    let hash = |t: &str| proofmill_coordinator::TokenHash::of(t).to_string();
    std::fs::write(
        dir.path().join("admin.tokens"),
        format!(
            "ops operator {}\ndash read-only {}\n",
            hash(ops),
            hash(view)
        ),
    )
    .unwrap();
    let args: Vec<String> = [
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--db",
        &format!("sqlite://{path}/c.db?mode=rwc"),
        "--blobs",
        &format!("file://{path}/blobs"),
        "--proof-types",
        "exec",
        "--l1",
        "none",
        "--admin-tokens-file",
        "admin.tokens",
    ]
    .map(String::from)
    .to_vec();
    let (coord, url, admin) = coordinator(dir.path(), &args);
    let (input, public) = devnet_batch(1, 5);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = None;
        for _ in 0..600 {
            if let Ok(mut client) = ClientServiceClient::connect(url.clone()).await {
                let req = GetBatchRequest {
                    chain_id: 1,
                    batch_number: 1,
                };
                if let Err(s) = client.get_batch(bearer(req, view)).await
                    && s.code() == Code::NotFound
                {
                    c = Some(client);
                    break;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut c = c.unwrap_or_else(|| panic!("no client API:\n{}", tail(&coord.log())));
        let read = || GetBatchRequest {
            chain_id: 1,
            batch_number: 1,
        };
        let e = c.get_batch(read()).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let msgs = || futures::stream::iter(messages(header(1, &public, &[]), input.clone(), 1024));
        let e = c.submit_batch(msgs()).await.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
        let e = c.submit_batch(bearer(msgs(), view)).await.unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let e = c.get_batch(bearer(read(), ops)).await.unwrap_err();
        assert_eq!(e.code(), Code::NotFound, "nothing was stored: {e:?}");
        let r = c
            .submit_batch(bearer(msgs(), ops))
            .await
            .unwrap()
            .into_inner();
        assert!(r.created);
        let cancel = ClientCancelRequest {
            chain_id: 1,
            batch_number: 1,
            reason: String::new(),
        };
        let e = c
            .cancel_batch(bearer(cancel.clone(), view))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
        let state = c
            .get_batch(bearer(read(), view))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            state.phase,
            BatchPhase::BatchProving as i32,
            "not cancelled"
        );
    });
    // HTTP: the same tokens and roles.
    let body = json!({"reason": ""}).to_string();
    let cancel = "/v1/chains/1/batches/1/cancel";
    assert_eq!(
        http_status(&admin, "GET", "/v1/chains/1/batches/1", None, ""),
        401
    );
    assert_eq!(
        http_status(&admin, "GET", "/v1/chains/1/batches/1", Some(view), ""),
        200
    );
    assert_eq!(http_status(&admin, "POST", cancel, None, &body), 401);
    assert_eq!(http_status(&admin, "POST", cancel, Some(view), &body), 403);
    let (_, s) = http(&admin, "GET", "/v1/chains/1/batches/1", None);
    assert_eq!(s["error"]["code"], "UNAUTHENTICATED");
    assert_eq!(http_status(&admin, "POST", cancel, Some(ops), &body), 200);
}
