//! `proofmill watch` against a running devnet coordinator, as an operator runs it: what it
//! prints as a prover connects, proves and settles on the embedded L1, is cordoned and is
//! killed.

use std::time::{Duration, Instant};

mod common;
use common::procs::{Proc, devnet_coordinator, prover, tail};
use common::proofmill;
use serde_json::Value;

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Waits until the watcher has printed an event that `matches`, returning it.
fn seen(watcher: &Proc, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(e) = watcher.json_lines().into_iter().find(|e| matches(e)) {
            return e;
        }
        assert!(
            Instant::now() < until,
            "no {what} in the watch:\n{}",
            tail(&watcher.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn watch_prints_jobs_attempts_provers_and_l1_as_they_happen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let (coord, url) = devnet_coordinator(
        path,
        &[
            "--batch-size",
            "2",
            "--batch-interval",
            "300",
            "--send-interval",
            "500",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let watcher = Proc::spawn(
        "watch",
        &args(&["watch", "--json", "--coordinator", &url]),
        path,
        path.join("watch.log"),
        &[],
    );
    // The watch sees what happens from its call on: wait for it to be in place (a batch the
    // sealer takes in every 300 ms is the first thing it prints).
    seen(&watcher, "batch taken in", |e| e["kind"] == "batches_taken");
    let mut prover = prover(path, "w1", &url);

    let connected = seen(&watcher, "prover_connected", |e| {
        e["kind"] == "prover_connected" && e["name"] == "w1"
    });
    assert_eq!(connected["proof_types"], serde_json::json!(["exec"]));
    let id = connected["prover_id"].as_str().unwrap().to_string();
    let started = seen(&watcher, "attempt_started", |e| {
        e["kind"] == "attempt_started" && e["prover_name"] == "w1"
    });
    assert_eq!(started["prover_id"], id.as_str());
    assert_eq!(started["proof_type"], "exec");
    let token = started["fencing_token"].as_u64().unwrap();
    let ended = seen(&watcher, "its end", |e| {
        e["kind"] == "attempt_ended" && e["fencing_token"] == token
    });
    assert_eq!(ended["outcome"], "proven", "{ended}");
    assert!(ended["prove_ms"].is_u64(), "{ended}");
    seen(&watcher, "its job proven", |e| {
        e["kind"] == "job" && e["batch"] == started["batch"] && e["state"] == "proven"
    });
    seen(&watcher, "a batch verified on L1", |e| {
        e["kind"] == "chain" && e["last_verified_batch"].as_u64().is_some_and(|b| b >= 1)
    });

    let cordon = proofmill()
        .args(["cordon", "--coordinator", &url, "--prover-id", "w1"])
        .output()
        .unwrap();
    assert!(cordon.status.success(), "{cordon:?}");
    seen(&watcher, "the cordon", |e| {
        e["kind"] == "cordon" && e["prover_id"] == id.as_str() && e["cordoned"] == true
    });

    assert!(prover.kill9());
    seen(&watcher, "the prover leaving", |e| {
        e["kind"] == "prover_disconnected" && e["prover_id"] == id.as_str()
    });

    // The same events over HTTP, as server-sent events (`curl -N .../events`).
    let admin = admin_addr(&coord);
    let sse = read_until(&admin, "/events", "event: batches_taken\ndata: {");
    let data = sse
        .split("event: batches_taken\ndata: ")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .unwrap();
    let event: Value = serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {data}"));
    assert_eq!(event["kind"], "batches_taken");
    assert!(
        event["first_batch"].is_u64() && event["at_ms"].is_u64(),
        "{event}"
    );
    assert!(sse.starts_with("HTTP/1.1 200"), "{sse}");
    assert!(sse.contains("content-type: text/event-stream"), "{sse}");

    // Pausing the sender over HTTP is an event too; an unknown component changes nothing.
    let paused = post(
        &admin,
        "/v1/components/sender/pause",
        r#"{"reason":"L1 incident"}"#,
    );
    assert!(paused.starts_with("HTTP/1.1 200"), "{paused}");
    seen(&watcher, "the pause", |e| {
        e["kind"] == "paused" && e["component"] == "sender" && e["reason"] == "L1 incident"
    });
    let unknown = post(&admin, "/v1/components/everything/pause", "{}");
    assert!(unknown.starts_with("HTTP/1.1 400"), "{unknown}");
    assert!(
        unknown.contains("INVALID_ARGUMENT") && unknown.contains("dispatch"),
        "{unknown}"
    );
    let resumed = post(&admin, "/v1/components/sender/resume", "{}");
    assert!(resumed.starts_with("HTTP/1.1 200"), "{resumed}");
    seen(&watcher, "the resume", |e| {
        e["kind"] == "paused" && e["component"] == "sender" && e["paused"] == false
    });
    assert_eq!(
        watcher
            .json_lines()
            .iter()
            .filter(|e| e["kind"] == "paused")
            .count(),
        2,
        "the refused pause is no event"
    );

    // Text, and a bounded watch for scripts: it ends by itself.
    let out = proofmill()
        .args(["watch", "--coordinator", &url, "--max-events", "2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    for line in text.lines() {
        let (clock, what) = line.split_at(12);
        assert!(
            clock.as_bytes()[2] == b':' && clock.as_bytes()[8] == b'.' && what.len() > 2,
            "a time of day, then the event: {line}"
        );
    }

    // A stopped coordinator ends every watch.
    coord.signal("TERM");
    let until = Instant::now() + Duration::from_secs(60);
    let mut watcher = watcher;
    while watcher.is_alive() {
        assert!(Instant::now() < until, "the watch outlived its coordinator");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        watcher.log().contains("ended the stream"),
        "{}",
        watcher.log()
    );
}

/// The admin HTTP address the coordinator logged.
fn admin_addr(coord: &Proc) -> String {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(addr) = coord.log().lines().find_map(|l| {
            l.contains("admin HTTP listening")
                .then(|| l.split("addr=").nth(1))
                .flatten()
                .map(|a| a.split_whitespace().next().unwrap().to_string())
        }) {
            return addr;
        }
        assert!(
            Instant::now() < until,
            "no admin address:\n{}",
            tail(&coord.log())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET path` over plain HTTP/1.1, read until `needle` shows up in what came back (a stream
/// that does not end by itself), panicking after 60 s.
fn read_until(addr: &str, path: &str, needle: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
    )
    .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains(needle) {
        let n = conn.read(&mut buf).expect("the stream goes on");
        assert!(n > 0, "the stream ended: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// `POST path` with a JSON body over plain HTTP/1.1; the whole answer.
fn post(addr: &str, path: &str, body: &str) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    answer
}
