//! `--metrics-listen` end to end: a devnet coordinator (exec proofs, embedded L1) and a
//! prover as processes, each serving `/metrics` on a free port it logs. While batches flow,
//! both are scraped twice over plain HTTP, the text format parsed, and the figures that must
//! move are checked to move.

mod common;
use common::procs::{Proc, listening_addr, tail};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// The address in the process's JSON "metrics listening" log line, waiting for it.
fn metrics_addr(p: &mut Proc) -> String {
    let until = Instant::now() + Duration::from_secs(60);
    while Instant::now() < until {
        p.check_alive();
        let found = p.json_lines().into_iter().find_map(|l| {
            (l["fields"]["message"] == "metrics listening")
                .then(|| l["fields"]["addr"].as_str().map(str::to_string))
                .flatten()
        });
        if let Some(addr) = found {
            return addr;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "{}: no 'metrics listening' line:\n{}",
        p.name,
        tail(&p.log())
    );
}

/// `GET /metrics` over a plain TCP connection: the status line and the body.
fn scrape(addr: &str) -> (String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// One scrape, parsed: series (name and labels) to value, and the `# TYPE` of each name.
struct Scrape {
    series: Vec<(String, HashMap<String, String>, f64)>,
    types: HashMap<String, String>,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut series = Vec::new();
        let mut types = HashMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            if line.starts_with('#') || line.trim().is_empty() {
                continue;
            }
            let (key, value) = line.rsplit_once(' ').expect("series value");
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("value of {line}"));
            let (name, labels) = match key.split_once('{') {
                Some((name, rest)) => {
                    let inner = rest.strip_suffix('}').expect("closing brace");
                    let labels = inner
                        .split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| {
                            let (k, v) = p.split_once('=').expect("label=value");
                            (k.to_string(), v.trim_matches('"').to_string())
                        })
                        .collect();
                    (name.to_string(), labels)
                }
                None => (key.to_string(), HashMap::new()),
            };
            series.push((name, labels, value));
        }
        Scrape { series, types }
    }

    /// The sum of the series of `name` that carry every label of `labels`.
    fn sum(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.series
            .iter()
            .filter(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
            .sum()
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.series.iter().any(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
    }
}

fn scrape_parsed(addr: &str) -> Scrape {
    let (status, body) = scrape(addr);
    assert!(status.contains(" 200 "), "{status}\n{body}");
    Scrape::parse(&body)
}

/// Scrapes until `ok` holds, up to `within`.
fn wait_scrape(addr: &str, what: &str, within: Duration, ok: impl Fn(&Scrape) -> bool) -> Scrape {
    let until = Instant::now() + within;
    loop {
        let s = scrape_parsed(addr);
        if ok(&s) {
            return s;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

const PROVEN: (&str, &str) = ("outcome", "proven");
const EXEC: (&str, &str) = ("proof_type", "exec");

#[test]
fn coordinator_and_prover_metrics_move_while_batches_flow() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("RUST_LOG", "info"), ("PROOFMILL_LOG_FORMAT", "json")];
    let data = dir.path().join("coordinator");
    let coordinator_args = |listen: &str| {
        strings(&[
            "coordinator",
            "--listen",
            listen,
            "--data-dir",
            data.to_str().unwrap(),
            "--proof-types",
            "exec",
            "--devnet",
            // Proofs of some tens of milliseconds, sealed about as fast: batches keep flowing.
            // (With proofs of ~2 ms, a lone prover was seen to stop getting tasks once it
            // caught up, before and apart from metrics.)
            "--batch-size",
            "16",
            "--tree-depth",
            "8",
            "--batch-interval",
            "100",
            "--send-interval",
            "300",
            "--heartbeat-interval",
            "200",
            "--metrics-listen",
            "127.0.0.1:0",
            "--metrics-per-prover",
        ])
    };
    let mut coordinator = Proc::spawn(
        "coordinator",
        &coordinator_args("127.0.0.1:0"),
        dir.path(),
        dir.path().join("coordinator.log"),
        &env,
    );
    let addr = listening_addr(&mut coordinator, Duration::from_secs(60));
    let coord_metrics = metrics_addr(&mut coordinator);
    // The prover comes once a few batches wait, so the queue gauges have something to show.
    wait_scrape(
        &coord_metrics,
        "sealed batches",
        Duration::from_secs(60),
        |s| s.sum("proofmill_batches_taken_in_total", &[("source", "devnet")]) >= 5.0,
    );
    let mut prover = Proc::spawn(
        "prover",
        &strings(&[
            "prover",
            "--coordinators",
            &format!("http://{addr}"),
            "--backend",
            "exec",
            "--name",
            "metrics-p1",
            "--data-dir",
            dir.path().join("prover").to_str().unwrap(),
            "--metrics-listen",
            "127.0.0.1:0",
        ]),
        dir.path(),
        dir.path().join("prover.log"),
        &env,
    );
    let prover_metrics = metrics_addr(&mut prover);

    let first = wait_scrape(
        &coord_metrics,
        "proven jobs",
        Duration::from_secs(60),
        |s| s.sum("proofmill_jobs_closed_total", &[EXEC, PROVEN]) >= 2.0,
    );
    let p_first = scrape_parsed(&prover_metrics);
    // Then again, once more batches were proven, sealed and committed on L1.
    let moved = |s: &Scrape, name: &str, labels: &[(&str, &str)], by: f64| {
        s.sum(name, labels) >= first.sum(name, labels) + by
    };
    let second = wait_scrape(
        &coord_metrics,
        "figures moving",
        Duration::from_secs(30),
        |s| {
            moved(s, "proofmill_jobs_closed_total", &[EXEC, PROVEN], 3.0)
                && moved(s, "proofmill_batches_taken_in_total", &[], 1.0)
                && moved(s, "proofmill_l1_last_committed_batch", &[], 1.0)
        },
    );
    let p_second = scrape_parsed(&prover_metrics);
    coordinator.check_alive();
    prover.check_alive();

    // Counters and histogram counts that must grow while batches flow.
    for (name, labels) in [
        ("proofmill_jobs_closed_total", vec![EXEC, PROVEN]),
        ("proofmill_attempts_ended_total", vec![EXEC, PROVEN]),
        (
            "proofmill_batches_taken_in_total",
            vec![("source", "devnet")],
        ),
        ("proofmill_prove_duration_seconds_count", vec![EXEC]),
        (
            "proofmill_prove_duration_seconds_count",
            vec![EXEC, ("prover", "metrics-p1")],
        ),
        ("proofmill_queue_wait_seconds_count", vec![EXEC]),
        ("proofmill_batch_sealed_to_proven_seconds_count", vec![]),
        ("proofmill_store_commit_seconds_count", vec![]),
        ("proofmill_dispatch_latency_seconds_count", vec![]),
        (
            "proofmill_l1_transactions_total",
            vec![("kind", "commit"), ("outcome", "success")],
        ),
        ("proofmill_l1_last_committed_batch", vec![]),
    ] {
        let (a, b) = (first.sum(name, &labels), second.sum(name, &labels));
        assert!(b > a, "{name}{labels:?} did not grow: {a} then {b}");
    }
    // Gauges from the core's state (refreshed every second): one prover of one slot, serving
    // exec.
    let second = wait_scrape(
        &coord_metrics,
        "fleet gauges",
        Duration::from_secs(5),
        |s| s.sum("proofmill_provers_connected", &[EXEC]) == 1.0,
    );
    assert_eq!(second.sum("proofmill_prover_capacity_slots", &[EXEC]), 1.0);
    for (name, kind) in [
        ("proofmill_jobs_closed_total", "counter"),
        ("proofmill_jobs", "gauge"),
        ("proofmill_prove_duration_seconds", "histogram"),
        ("proofmill_l1_transaction_gas", "histogram"),
    ] {
        assert_eq!(
            second.types.get(name).map(String::as_str),
            Some(kind),
            "{name}"
        );
    }
    let busy = second.sum("proofmill_prover_busy_slots", &[EXEC]);
    assert!((0.0..=1.0).contains(&busy), "busy slots {busy}");
    for state in ["queued", "leased"] {
        assert!(
            second.has("proofmill_jobs", &[EXEC, ("state", state)]),
            "no proofmill_jobs for {state}"
        );
    }
    let oldest = second.sum("proofmill_oldest_queued_job_age_seconds", &[EXEC]);
    assert!(
        (0.0..60.0).contains(&oldest),
        "oldest queued job age {oldest}"
    );
    assert_eq!(
        second.sum("proofmill_prover_connects_total", &[("kind", "register")]),
        1.0
    );
    // Proven batches get verified on L1 (every 300 ms here).
    wait_scrape(
        &coord_metrics,
        "batches verified on L1",
        Duration::from_secs(30),
        |s| {
            s.sum("proofmill_l1_last_verified_batch", &[]) >= 1.0
                && s.sum("proofmill_l1_transaction_gas_count", &[("kind", "verify")]) >= 1.0
                && s.sum("proofmill_l1_batch_gas_count", &[("kind", "verify")]) >= 1.0
                && s.sum("proofmill_batch_proven_to_verified_seconds_count", &[]) >= 1.0
                && s.sum(
                    "proofmill_l1_transactions_total",
                    &[("kind", "verify"), ("outcome", "success")],
                ) >= 1.0
        },
    );
    // No batch numbers or prover ids as labels.
    for (name, labels, _) in &second.series {
        for key in labels.keys() {
            assert!(
                [
                    "proof_type",
                    "state",
                    "outcome",
                    "reason",
                    "kind",
                    "source",
                    "prover",
                    // The configured chains only (--chain-id, --chains): bounded.
                    "chain",
                    "le"
                ]
                .contains(&key.as_str()),
                "{name} has label {key}"
            );
        }
    }

    // Heartbeats every 200 ms: their round trip on the coordinator, their spacing on the
    // prover.
    assert!(second.sum("proofmill_heartbeat_round_trip_seconds_count", &[]) >= 1.0);
    let gaps = wait_scrape(
        &prover_metrics,
        "heartbeat gaps",
        Duration::from_secs(5),
        |s| s.sum("proofmill_prover_heartbeat_gap_seconds_count", &[]) >= 2.0,
    );
    let mean_gap = gaps.sum("proofmill_prover_heartbeat_gap_seconds_sum", &[])
        / gaps.sum("proofmill_prover_heartbeat_gap_seconds_count", &[]);
    assert!(
        (0.1..2.0).contains(&mean_gap),
        "mean heartbeat gap {mean_gap} s"
    );
    // And the prover's round trip: its answers' probes echoed by the coordinator.
    let trips = wait_scrape(
        &prover_metrics,
        "heartbeat round trips",
        Duration::from_secs(5),
        |s| s.sum("proofmill_prover_heartbeat_round_trip_seconds_count", &[]) >= 2.0,
    );
    assert_eq!(
        trips.types["proofmill_prover_heartbeat_round_trip_seconds"],
        "histogram"
    );
    assert!(trips.sum("proofmill_prover_heartbeat_round_trip_seconds_sum", &[]) > 0.0);

    // The prover's own figures.
    let proofs = |s: &Scrape| {
        s.sum(
            "proofmill_prover_prove_duration_seconds_count",
            &[EXEC, ("outcome", "proof")],
        )
    };
    assert!(proofs(&p_first) >= 1.0, "no proofs counted by the prover");
    assert!(
        proofs(&p_second) > proofs(&p_first),
        "prover's proof count did not grow: {} then {}",
        proofs(&p_first),
        proofs(&p_second)
    );
    let running = p_second.sum("proofmill_prover_tasks_running", &[EXEC]);
    assert!(
        p_second.has("proofmill_prover_tasks_running", &[EXEC]) && (0.0..=1.0).contains(&running),
        "prover tasks running {running}"
    );
    assert_eq!(
        p_second
            .types
            .get("proofmill_prover_prove_duration_seconds")
            .map(String::as_str),
        Some("histogram")
    );

    // Every metric the deployment's Grafana dashboard queries is one of ours, and exported by
    // a running coordinator or prover; only those a fault makes appear may be missing here.
    const ON_A_FAULT: &[&str] = &[
        "proofmill_results_rejected_total",
        "proofmill_l1_errors_total",
        "proofmill_store_commit_errors_total",
        "proofmill_provers_declared_dead_total",
        "proofmill_prover_result_resends_total",
        "proofmill_prover_reconnects_total",
    ];
    // Exported by a coordinator taking batches from a rollup's core API; tests/gateway.rs
    // checks them on one (failed requests only once one fails).
    const WITH_A_GATEWAY: &[&str] = &[
        "proofmill_gateway_requests_total",
        "proofmill_gateway_http_errors_total",
        "proofmill_gateway_submit_lag_seconds",
    ];
    let exported: Vec<&String> = second.types.keys().chain(p_second.types.keys()).collect();
    let dashboard = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../deploy/grafana/dashboards/proofmill.json"),
    )
    .unwrap();
    let dashboard: serde_json::Value = serde_json::from_str(&dashboard).unwrap();
    let mut queried = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("proofmill_") {
                    let base = ["_bucket", "_sum", "_count"]
                        .iter()
                        .find_map(|s| word.strip_suffix(s))
                        .unwrap_or(word);
                    queried.push(base.to_string());
                }
            }
        }
    }
    assert!(queried.len() >= 20, "{queried:?}");
    for name in &queried {
        assert!(
            proofmill_telemetry::names::ALL
                .iter()
                .any(|m| m.name == name),
            "the dashboard queries {name}, which proofmill does not define"
        );
        assert!(
            exported.contains(&name)
                || ON_A_FAULT.contains(&name.as_str())
                || WITH_A_GATEWAY.contains(&name.as_str()),
            "the dashboard queries {name}, which a running coordinator and prover did not export"
        );
    }

    // Anything but /metrics is not found.
    let mut s = std::net::TcpStream::connect(&coord_metrics).unwrap();
    write!(
        s,
        "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    s.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 404"), "{response}");

    // The metrics server stops with the process: SIGTERM drains and exits.
    coordinator.signal("TERM");
    let until = Instant::now() + Duration::from_secs(30);
    while coordinator.is_alive() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !coordinator.is_alive(),
        "coordinator did not stop on SIGTERM"
    );
    assert!(std::net::TcpStream::connect(&coord_metrics).is_err());

    // Back at its address: the prover reconnects as the same prover, and both count it.
    let mut coordinator = Proc::spawn(
        "coordinator (restarted)",
        &coordinator_args(&addr),
        dir.path(),
        dir.path().join("coordinator-2.log"),
        &env,
    );
    let coord_metrics = metrics_addr(&mut coordinator);
    wait_scrape(
        &coord_metrics,
        "the prover's reconnect",
        Duration::from_secs(30),
        |s| {
            s.sum("proofmill_prover_connects_total", &[("kind", "reconnect")]) == 1.0
                && s.sum("proofmill_prover_connects_total", &[("kind", "register")]) == 0.0
        },
    );
    wait_scrape(
        &prover_metrics,
        "the prover's reconnect",
        Duration::from_secs(10),
        |s| s.sum("proofmill_prover_reconnects_total", &[]) == 1.0,
    );
    prover.check_alive();
}
