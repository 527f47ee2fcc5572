//! The HTTP admin API from the outside: the built binary with `--admin-listen`, and a client
//! that knows only what the README documents (plain HTTP/1.1 over a TCP socket, JSON read
//! as untyped values; none of our types). Liveness and readiness, status while batches
//! flow, a job's history, cordon by name, the errors of bad calls (unknown job, batch and
//! prover, a proven job, malformed and oversized bodies, unknown routes) with their codes
//! and no state change, readiness failing while the store is down (Postgres stopped) and
//! on a standby, the standby taking over on the same admin address, and a hung active one
//! coming back as a standby (Postgres). Batch fixtures are made with the devnet's crate, as a
//! rollup's sequencer would make them; the client itself speaks only HTTP.

mod common;

use common::http::{get, http, post, wait_for};
use common::procs::{Proc, listening_addr, tail};
use proofmill_testkit::TestPostgres;
use serde_json::{Value, json};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const JSON_LOGS: &[(&str, &str)] = &[("RUST_LOG", "info"), ("PROOFMILL_LOG_FORMAT", "json")];

/// The address of a coordinator's "admin HTTP listening" log line (JSON logs).
fn admin_addr(coord: &mut Proc) -> String {
    wait_for("the admin HTTP address", Duration::from_secs(60), || {
        coord.check_alive();
        coord.json_lines().into_iter().find_map(|l| {
            (l["fields"]["message"] == "admin HTTP listening")
                .then(|| l["fields"]["addr"].as_str().map(str::to_string))
                .flatten()
        })
    })
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// A coordinator proving the devnet's batches with the `exec` proof type.
fn coordinator(dir: &std::path::Path, name: &str, db: &str, extra: &[&str]) -> Proc {
    let mut args = strings(&[
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--db",
        db,
        "--blobs",
        &format!("file://{}/blobs", dir.display()),
        "--proof-types",
        "exec",
        "--devnet",
        "--batch-interval",
        "150",
        "--l1",
        "none",
    ]);
    args.extend(strings(extra));
    Proc::spawn_appending(name, &args, dir, dir.join(format!("{name}.log")), JSON_LOGS)
}

fn prover(dir: &std::path::Path, name: &str, url: &str) -> Proc {
    let args = strings(&["prover", "--coordinators", url, "--name", name]);
    Proc::spawn(name, &args, dir, dir.join(format!("{name}.log")), JSON_LOGS)
}

fn component<'a>(ready: &'a Value, name: &str) -> &'a Value {
    ready["components"]
        .as_array()
        .expect("components")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name}: {ready}"))
}

/// Everything an operator does over HTTP against one running coordinator, with `db` as its
/// store. Returns the coordinator and its admin address for store-specific checks.
fn operate(dir: &std::path::Path, db: &str) -> (Proc, String, Proc) {
    let mut coord = coordinator(dir, "coordinator", db, &["--max-message-bytes", "2097152"]);
    let admin = admin_addr(&mut coord);
    let url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    let p = prover(dir, "p-http", &url);

    // Liveness, readiness.
    let live = get(&admin, "/health");
    assert_eq!(
        (live.status, &live.body["status"]),
        (200, &json!("alive")),
        "{live:?}"
    );
    let ready = wait_for("ready", Duration::from_secs(30), || {
        let r = get(&admin, "/ready");
        (r.status == 200).then_some(r)
    });
    assert_eq!(ready.body["ready"], true);
    assert_eq!(ready.body["role"], "active");
    for name in ["store", "blobs", "core"] {
        let c = component(&ready.body, name);
        assert_eq!(
            (&c["state"], &c["ready"]),
            (&json!("ok"), &json!(true)),
            "{c}"
        );
    }
    assert_eq!(component(&ready.body, "leadership")["state"], "active");
    assert_eq!(component(&ready.body, "settlement")["state"], "off");

    // Status while batches flow: proven batches rise.
    let first = wait_for("a proven batch", Duration::from_secs(60), || {
        let s = get(&admin, "/v1/status");
        assert_eq!(s.status, 200, "{s:?}");
        s.body["last_proven_batch"].as_u64().filter(|n| *n >= 1)
    });
    wait_for("more proven batches", Duration::from_secs(60), || {
        let s = get(&admin, "/v1/status").body;
        (s["last_proven_batch"].as_u64()? > first).then_some(())
    });
    let status = get(&admin, "/v1/status").body;
    assert_eq!(status["required_proof_types"], json!(["exec"]), "{status}");
    assert!(
        status["jobs"]["exec"]["proven"].as_u64().unwrap() >= 2,
        "{status}"
    );
    let info = get(&admin, "/v1/info");
    assert_eq!(info.status, 200);
    assert_eq!(info.body["l1"], "none");
    assert!(info.body["uptime_ms"].as_u64().unwrap() > 0);
    assert_eq!(info.body["paused"], json!([]), "{:?}", info.body);
    // A paused component is listed by StatusInfo too (this coordinator does not settle:
    // pausing its sender changes nothing else).
    let paused = post(
        &admin,
        "/v1/components/sender/pause",
        json!({"reason": "L1 incident"}),
    );
    assert_eq!(paused.status, 200, "{paused:?}");
    let info = get(&admin, "/v1/info").body;
    let listed = info["paused"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{info}");
    assert_eq!(
        (&listed[0]["component"], &listed[0]["reason"]),
        (&json!("sender"), &json!("L1 incident"))
    );
    assert!(listed[0]["since_ms"].as_u64().unwrap() > 0);
    assert_eq!(
        post(&admin, "/v1/components/sender/resume", json!({})).status,
        200
    );
    assert_eq!(get(&admin, "/v1/info").body["paused"], json!([]));
    let health = get(&admin, "/v1/health").body;
    assert_eq!(
        (&health["serving"], &health["standby"]),
        (&json!(true), &json!(false))
    );

    // Jobs: listed by state, one shown with its history.
    let proven = get(&admin, "/v1/jobs?state=proven&limit=5");
    assert_eq!(proven.status, 200, "{proven:?}");
    let jobs = proven.body["jobs"].as_array().unwrap();
    assert!(!jobs.is_empty() && jobs.len() <= 5, "{jobs:?}");
    assert!(jobs.iter().all(|j| j["state"] == "proven"), "{jobs:?}");
    let bad_state = get(&admin, "/v1/jobs?state=baked");
    assert_eq!(
        (bad_state.status, bad_state.error_code()),
        (400, "INVALID_ARGUMENT")
    );
    let bad_query = get(&admin, "/v1/jobs?stat=proven");
    assert_eq!(
        (bad_query.status, bad_query.error_code()),
        (400, "INVALID_ARGUMENT")
    );
    let job = get(&admin, "/v1/jobs/1/exec");
    assert_eq!(job.status, 200, "{job:?}");
    assert_eq!(job.body["job"]["state"], "proven");
    assert_eq!(job.body["proof_prover"], "p-http");
    let attempts = job.body["attempts"].as_array().unwrap();
    assert!(
        attempts.iter().any(|a| a["outcome"] == "proven"),
        "{attempts:?}"
    );

    // Unknown things: 404 with the gRPC API's code.
    let missing = get(&admin, "/v1/jobs/999999/exec");
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "JOB_NOT_FOUND")
    );
    let missing = post(&admin, "/v1/jobs/999999/exec/retry", json!({}));
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "JOB_NOT_FOUND")
    );
    let missing = post(
        &admin,
        "/v1/jobs/999999/exec/cancel",
        json!({"reason": "test"}),
    );
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "JOB_NOT_FOUND")
    );
    let missing = post(&admin, "/v1/batches/999999/retry", json!({}));
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "JOB_NOT_FOUND")
    );
    let missing = post(&admin, "/v1/provers/nobody/cordon", json!({}));
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "PROVER_UNAVAILABLE")
    );
    let not_a_number = get(&admin, "/v1/jobs/first/exec");
    assert_eq!(
        (not_a_number.status, not_a_number.error_code()),
        (400, "INVALID_ARGUMENT")
    );

    // A proven job cannot be cancelled or retried (409) and stays proven.
    let cancel = post(&admin, "/v1/jobs/1/exec/cancel", json!({"reason": "oops"}));
    assert_eq!(
        (cancel.status, cancel.error_code()),
        (409, "FAILED_PRECONDITION"),
        "{cancel:?}"
    );
    let retry = post(&admin, "/v1/jobs/1/exec/retry", json!({}));
    assert_eq!(
        (retry.status, retry.error_code()),
        (409, "FAILED_PRECONDITION"),
        "{retry:?}"
    );
    let after = get(&admin, "/v1/jobs/1/exec").body;
    assert_eq!(after["job"]["state"], "proven");
    assert_eq!(
        after["attempts"], job.body["attempts"],
        "no attempt changed"
    );

    // Bad bodies: malformed JSON, unknown fields, bad hex, too large.
    let malformed = http(
        &admin,
        "POST",
        "/v1/jobs/1/exec/cancel",
        Some(b"{\"reason\":"),
    );
    assert_eq!(
        (malformed.status, malformed.error_code()),
        (400, "INVALID_ARGUMENT")
    );
    let message = malformed.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("malformed JSON") && message.contains("EOF"),
        "{message}"
    );
    let unknown = post(
        &admin,
        "/v1/provers/p-http/cordon",
        json!({"forever": true}),
    );
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (400, "INVALID_ARGUMENT")
    );
    assert!(
        unknown.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `forever`"),
        "{unknown:?}"
    );
    let bad_hex = post(
        &admin,
        "/v1/batches",
        json!({"batch": 999999, "version": "devnet-v1", "input": "zz", "public_values": "00"}),
    );
    assert_eq!(
        (bad_hex.status, bad_hex.error_code()),
        (400, "INVALID_ARGUMENT")
    );
    let message = bad_hex.body["error"]["message"].as_str().unwrap();
    assert!(message.contains("not hex"), "{message}");
    let huge = vec![b' '; (1 << 20) + 1];
    let too_large = http(&admin, "POST", "/v1/jobs/1/exec/cancel", Some(&huge));
    assert_eq!(
        (too_large.status, too_large.error_code()),
        (413, "PAYLOAD_TOO_LARGE")
    );
    // A batch's input may be larger (up to --max-message-bytes, here 2 MiB), not more.
    let input = "00".repeat(1 << 20);
    let body =
        json!({"batch": 999999, "version": "devnet-v1", "input": input, "public_values": "00"});
    let too_large = post(&admin, "/v1/batches", body);
    assert_eq!(
        (too_large.status, too_large.error_code()),
        (413, "PAYLOAD_TOO_LARGE")
    );
    let input = "00".repeat(1 << 19);
    let body =
        json!({"batch": 999999, "version": "devnet-v1", "input": input, "public_values": "00"});
    let refused = post(&admin, "/v1/batches", body);
    assert_eq!(
        (refused.status, refused.error_code()),
        (400, "INVALID_ARGUMENT"),
        "a 1 MiB input is read, and refused for what it is: {:?}",
        refused.body
    );
    let message = refused.body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("takes the batches of chain 1 from its devnet"),
        "{message}"
    );
    assert_eq!(
        get(&admin, "/v1/jobs/999999/exec").status,
        404,
        "nothing stored"
    );

    // Unknown routes and methods.
    let nowhere = get(&admin, "/v1/nowhere");
    assert_eq!((nowhere.status, nowhere.error_code()), (404, "NOT_FOUND"));
    let wrong = http(&admin, "DELETE", "/v1/provers", None);
    assert_eq!(
        (wrong.status, wrong.error_code()),
        (405, "METHOD_NOT_ALLOWED")
    );

    // Cordon by name, and back.
    let cordon = post(&admin, "/v1/provers/p-http/cordon", json!({}));
    assert_eq!(cordon.status, 200, "{cordon:?}");
    let listed = get(&admin, "/v1/provers").body;
    let me = |list: &Value| {
        list["provers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "p-http")
            .cloned()
            .expect("p-http listed")
    };
    assert_eq!(me(&listed)["cordoned"], true, "{listed}");
    let uncordon = http(&admin, "POST", "/v1/provers/p-http/uncordon", None);
    assert_eq!(uncordon.status, 200, "{uncordon:?}");
    assert_eq!(me(&get(&admin, "/v1/provers").body)["cordoned"], false);

    coord.check_alive();
    (coord, admin, p)
}

#[test]
fn http_admin_api_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/proofmill.db?mode=rwc", dir.path().display());
    let (mut coord, admin, _prover) = operate(dir.path(), &db);
    // SIGTERM: the admin server does not hold the process up, and is gone with it.
    coord.signal("TERM");
    let exited = wait_for("the coordinator to exit", Duration::from_secs(60), || {
        coord.child.try_wait().unwrap()
    });
    assert!(exited.success(), "{exited}: {}", tail(&coord.log()));
    assert!(TcpStream::connect(&admin).is_err(), "admin HTTP closed");
}

/// With Postgres, the store can go away under the coordinator: readiness fails naming the
/// store, liveness does not, and both recover with it.
#[test]
fn http_admin_api_on_postgres_and_a_store_outage() {
    let pg = TestPostgres::start_durable().expect("test postgres");
    let dir = tempfile::tempdir().unwrap();
    let (mut coord, admin, _prover) = operate(dir.path(), &pg.url);
    pg.crash().unwrap();
    let down = wait_for("not ready", Duration::from_secs(30), || {
        let r = get(&admin, "/ready");
        (r.status == 503).then_some(r)
    });
    let store = component(&down.body, "store");
    assert_eq!(
        (&store["state"], &store["required"]),
        (&json!("down"), &json!(true)),
        "{}",
        down.body
    );
    assert!(
        store["detail"]
            .as_str()
            .unwrap()
            .contains(&pg.port.to_string()),
        "names the endpoint: {store}"
    );
    let started = Instant::now();
    let live = get(&admin, "/health");
    assert_eq!(live.status, 200, "liveness is not the store's: {live:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    let health = get(&admin, "/v1/health").body;
    assert_eq!(health["serving"], false, "{health}");
    pg.restart().unwrap();
    wait_for("ready again", Duration::from_secs(60), || {
        (get(&admin, "/ready").status == 200).then_some(())
    });
    coord.check_alive();
}

/// A standby is live and not ready (a load balancer must send provers to the active one);
/// its calls name the active coordinator; once the active one is killed it takes over, and
/// the same admin address is ready.
#[test]
fn a_standby_is_not_ready_until_it_takes_over() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/proofmill.db?mode=rwc", dir.path().display());
    let lease = ["--lease-ttl", "1500"];
    let mut active = coordinator(dir.path(), "active", &db, &lease);
    let active_admin = admin_addr(&mut active);
    let active_url = format!(
        "http://{}",
        listening_addr(&mut active, Duration::from_secs(60))
    );
    wait_for("the active one ready", Duration::from_secs(30), || {
        (get(&active_admin, "/ready").status == 200).then_some(())
    });
    let mut standby = coordinator(dir.path(), "standby", &db, &lease);
    let admin = admin_addr(&mut standby);
    let ready = wait_for("a standby's readiness", Duration::from_secs(30), || {
        let r = get(&admin, "/ready");
        (r.body["role"] == "standby").then_some(r)
    });
    assert_eq!(
        (ready.status, &ready.body["ready"]),
        (503, &json!(false)),
        "{ready:?}"
    );
    let leadership = component(&ready.body, "leadership");
    assert_eq!(leadership["state"], "standby");
    assert!(
        leadership["detail"].as_str().unwrap().contains(&active_url),
        "names the active one: {leadership}"
    );
    assert_eq!(component(&ready.body, "store")["state"], "ok");
    let live = get(&admin, "/health");
    assert_eq!((live.status, &live.body["role"]), (200, &json!("standby")));
    let status = get(&admin, "/v1/status");
    assert_eq!(
        (status.status, &status.body["standby"]),
        (200, &json!(true))
    );
    let refused = get(&admin, "/v1/provers");
    assert_eq!(
        (refused.status, refused.error_code()),
        (503, "SYSTEM_UNAVAILABLE")
    );
    assert_eq!(refused.body["error"]["active_url"], active_url.as_str());
    assert_eq!(
        refused.header("proofmill-active-url"),
        Some(active_url.as_str())
    );
    let refused = post(&admin, "/v1/provers/anyone/cordon", json!({}));
    assert_eq!(refused.status, 503, "{refused:?}");

    active.kill9();
    let took_over = wait_for("the standby active", Duration::from_secs(30), || {
        standby.check_alive();
        let r = get(&admin, "/ready");
        (r.status == 200).then_some(r)
    });
    assert_eq!(took_over.body["role"], "active", "{}", tail(&standby.log()));
    assert_eq!(get(&admin, "/v1/provers").status, 200);
}

/// The demo serves the HTTP admin API by default and prints where.
#[test]
fn the_demo_prints_its_admin_address() {
    let dir = tempfile::tempdir().unwrap();
    let args = strings(&[
        "demo",
        "--proof-types",
        "exec",
        "--batches",
        "1000",
        "--provers",
        "1",
        "--data-dir",
        "data",
    ]);
    let demo = Proc::spawn("demo", &args, dir.path(), dir.path().join("demo.log"), &[]);
    let url = wait_for("the demo's admin address", Duration::from_secs(60), || {
        let log = demo.log();
        let rest = log.split("admin HTTP at ").nth(1)?;
        Some(rest.split_whitespace().next()?.to_string())
    });
    let addr = url.strip_prefix("http://").expect("an http URL");
    let ready = wait_for("the demo ready", Duration::from_secs(30), || {
        let r = get(addr, "/ready");
        (r.status == 200).then_some(r)
    });
    assert_eq!(ready.body["role"], "active");
    assert_eq!(
        get(addr, "/v1/status").body["required_proof_types"],
        json!(["exec"])
    );
}

/// A devnet batch input of batch `n` from root `root`, and public values that match it, as
/// hex: what a rollup would send (made with the devnet's crate, as its sequencer would).
fn devnet_batch(n: u64, root: u64) -> (String, String) {
    let old_root = proofmill_devnet::fr_from_u64(root);
    let input = proofmill_devnet::BatchInput {
        number: n,
        depth: 1,
        old_root,
        transfers: vec![],
    }
    .encode();
    let public = proofmill_devnet::StateTransition {
        old_state_root: proofmill_devnet::fr_to_digest(old_root),
        new_state_root: proofmill_types::Digest::sha256(b"new"),
        batch_commitment: proofmill_types::Digest::sha256(b"commitment"),
    }
    .to_public_values();
    (
        hex::encode(input),
        format!("0x{}", hex::encode(public.as_bytes())),
    )
}

/// Batches from outside (no devnet): launched, cancelled, retried and given a new input
/// over HTTP; each answer as documented, and the job's state after it.
#[test]
fn batches_over_http() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}/proofmill.db?mode=rwc", dir.path().display());
    let args = strings(&[
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--admin-listen",
        "127.0.0.1:0",
        "--db",
        &db,
        "--blobs",
        &format!("file://{}/blobs", dir.path().display()),
        "--proof-types",
        "exec",
        "--l1",
        "none",
    ]);
    let log = dir.path().join("c.log");
    let mut coord = Proc::spawn("coordinator", &args, dir.path(), log, JSON_LOGS);
    let admin = admin_addr(&mut coord);
    wait_for("ready", Duration::from_secs(30), || {
        (get(&admin, "/ready").status == 200).then_some(())
    });
    let (input, public_values) = devnet_batch(1, 7);
    let launch = json!({"batch": 1, "version": "devnet-v1", "input": input,
                        "public_values": public_values, "proof_types": ["exec"]});
    let created = post(&admin, "/v1/batches", launch.clone());
    assert_eq!(
        (created.status, &created.body),
        (201, &json!({"created": true}))
    );
    let again = post(&admin, "/v1/batches", launch);
    assert_eq!(
        (again.status, &again.body),
        (200, &json!({"created": false}))
    );
    let state = |admin: &str| get(admin, "/v1/jobs/1/exec").body["job"]["state"].clone();
    assert_eq!(state(&admin), "queued");

    let cancelled = post(
        &admin,
        "/v1/batches/1/cancel",
        json!({"reason": "wrong input"}),
    );
    assert_eq!(
        (cancelled.status, &cancelled.body),
        (200, &json!({"cancelled": 1}))
    );
    let job = get(&admin, "/v1/jobs/1/exec").body;
    assert_eq!(job["job"]["state"], "cancelled");
    assert!(
        job["job"]["last_error"]
            .as_str()
            .unwrap()
            .contains("wrong input"),
        "{job}"
    );
    let retried = post(&admin, "/v1/jobs/1/exec/retry", json!({}));
    assert_eq!(
        (retried.status, &retried.body),
        (200, &json!({"retried": 1}))
    );
    // The retry is in the core when it returns, and in the store a moment later.
    wait_for("the job queued again", Duration::from_secs(10), || {
        (state(&admin) == "queued").then_some(())
    });

    let (input, public_values) = devnet_batch(1, 7);
    let replace = json!({"version": "devnet-v1", "input": input, "public_values": public_values});
    let replaced = http(
        &admin,
        "PUT",
        "/v1/batches/1/input",
        Some(replace.to_string().as_bytes()),
    );
    assert_eq!(
        (replaced.status, &replaced.body),
        (200, &json!({})),
        "{replaced:?}"
    );
    assert_eq!(state(&admin), "queued");
    let (input, public_values) = devnet_batch(9, 7);
    let replace = json!({"version": "devnet-v1", "input": input, "public_values": public_values});
    let unknown = http(
        &admin,
        "PUT",
        "/v1/batches/9/input",
        Some(replace.to_string().as_bytes()),
    );
    assert_eq!(
        (unknown.status, unknown.error_code()),
        (404, "JOB_NOT_FOUND"),
        "{unknown:?}"
    );

    let one = post(&admin, "/v1/jobs/1/exec/cancel", json!({}));
    assert_eq!((one.status, &one.body), (200, &json!({"cancelled": true})));
    let twice = post(&admin, "/v1/jobs/1/exec/cancel", json!({}));
    assert_eq!(
        (twice.status, &twice.body),
        (200, &json!({"cancelled": false}))
    );
    assert_eq!(state(&admin), "cancelled");
    coord.check_alive();
}

/// On Postgres, an active coordinator that hangs (SIGSTOP) is replaced; once it runs again
/// it finds itself deposed and stands by: its admin address stays, and says so.
#[test]
fn a_hung_active_comes_back_not_ready_on_postgres() {
    let pg = TestPostgres::start().expect("test postgres");
    let dir = tempfile::tempdir().unwrap();
    let lease = ["--lease-ttl", "1500"];
    let mut first = coordinator(dir.path(), "first", &pg.url, &lease);
    let first_admin = admin_addr(&mut first);
    wait_for("the first one ready", Duration::from_secs(30), || {
        (get(&first_admin, "/ready").status == 200).then_some(())
    });
    let mut second = coordinator(dir.path(), "second", &pg.url, &lease);
    let second_admin = admin_addr(&mut second);
    let second_url = format!(
        "http://{}",
        listening_addr(&mut second, Duration::from_secs(60))
    );
    wait_for(
        "the second one standing by",
        Duration::from_secs(30),
        || (get(&second_admin, "/ready").body["role"] == "standby").then_some(()),
    );

    first.signal("STOP");
    wait_for("the second one active", Duration::from_secs(30), || {
        second.check_alive();
        (get(&second_admin, "/ready").status == 200).then_some(())
    });
    first.signal("CONT");
    let back = wait_for("the first one standing by", Duration::from_secs(30), || {
        first.check_alive();
        let r = get(&first_admin, "/ready");
        (r.body["role"] == "standby").then_some(r)
    });
    assert_eq!(back.status, 503, "{back:?}");
    let leadership = component(&back.body, "leadership");
    assert!(
        leadership["detail"].as_str().unwrap().contains(&second_url),
        "names the new active one: {leadership}"
    );
    assert_eq!(get(&second_admin, "/ready").status, 200);
}
