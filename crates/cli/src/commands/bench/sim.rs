//! The simulated provers of `bench dispatch` and `bench fleet`: M provers of capacity 1 that
//! answer every task with the expected public values, at once or paced to an offered load
//! (`--rate`). The benches run them in a process of their own (`proofmill bench
//! sim-provers`, [`spawn`]), as real provers are, so the coordinator's runtime serves only
//! the coordinator.
//!
//! Each is a raw gRPC client (one connection and one `ProverStream` each), not the prover
//! library: a library prover runs its own runtime on an OS thread of its own, which one
//! process cannot hold 10,000 of. A connection refused, reset or ended is tried again after
//! the prover library's backoff (full jitter), as a real prover does; all of them connect at
//! once at the start, the thundering herd of a coordinator restart.
//!
//! Runs until `--jobs` results are accepted, or without `--jobs` until standard input
//! closes. Prints one line: `elapsed_s= round_trip_p50_ms= round_trip_p99_ms=
//! registrations= retries= heartbeats= heartbeat_gap_p99_ms= heartbeat_gap_max_ms=
//! lag_p99_ms= lag_max_ms=`, where the round trip is from sending a result to receiving the
//! next task, seen by the prover; a heartbeat gap is the time between two heartbeats a
//! stream received (the coordinator's interval, plus how late either side ran); the lag is
//! how late this process's runtime ran ([`super::lag`]).

use super::percentiles;
use crate::args::BenchSimProversArgs;
use anyhow::{Context as _, bail};
use proofmill_proto::v1::{
    ErrorCode, HeartbeatAck, ProverMessage, Register, TaskResult, coordinator_message::Kind as Out,
    prover_message::Kind as In, prover_service_client::ProverServiceClient, task_result::Outcome,
};
use proofmill_prover::backoff::Backoff;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;

/// Reconnect backoff bounds: the prover library's defaults.
const RECONNECT_MIN: Duration = proofmill_prover::DEFAULT_RECONNECT_MIN;
const RECONNECT_MAX: Duration = proofmill_prover::DEFAULT_RECONNECT_MAX;
/// One attempt (connect, open the stream, be answered) that takes longer is given up.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

pub async fn sim_provers(a: BenchSimProversArgs) -> anyhow::Result<()> {
    // One descriptor per connection; the bench checks the limit before it starts this.
    super::process::raise_fd_limit()?;
    let counters = Arc::new(Counters::default());
    let lag = super::lag::LagProbe::start();
    let (done_tx, mut done_rx) = watch::channel(false);
    if a.jobs.is_none() {
        let done_tx = done_tx.clone();
        // A blocking read on a thread of its own: the runtime has no stdin support here.
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 64];
            while matches!(stdin.read(&mut buf), Ok(n) if n > 0) {}
            let _ = done_tx.send(true);
        });
    }
    let start = Instant::now();
    let provers: Vec<_> = (0..a.provers)
        .map(|i| {
            let sim = SimProver {
                url: a.coordinator.clone(),
                index: i,
                counters: counters.clone(),
                done_tx: done_tx.clone(),
                total: a.jobs,
                pace: a.rate.map(|rate| Pace::new(rate, a.provers, i)),
                samples: Samples::default(),
            };
            tokio::spawn(sim.run())
        })
        .collect();
    // Without --jobs the parent decides when to stop (and kills this process if it must).
    let limit = a.jobs.map_or(Duration::MAX, |_| Duration::from_secs(600));
    let wait = tokio::time::timeout(limit, done_rx.wait_for(|d| *d)).await;
    let elapsed = start.elapsed();
    if wait.is_err() {
        bail!(
            "timed out: {} of {} jobs completed",
            counters.done.load(Ordering::SeqCst),
            a.jobs.unwrap_or_default()
        );
    }
    let (mut latencies, mut gaps) = (Vec::new(), Vec::new());
    for p in provers {
        let samples = p.await.context("prover task")??;
        latencies.extend(samples.round_trips);
        gaps.extend(samples.heartbeat_gaps);
    }
    let errors = counters.errors.lock().expect("errors lock");
    if !errors.is_empty() {
        eprintln!("sim-provers: attempts failed, by reason (tried again after backoff):");
        for (why, n) in errors.iter() {
            eprintln!("  {n} × {why}");
        }
    }
    let (p50, p99) = percentiles(&mut latencies);
    let (_, gap_p99) = percentiles(&mut gaps);
    let gap_max = gaps.last().copied().unwrap_or(f64::NAN);
    let (_, lag_p99, lag_max) = lag.take();
    println!(
        "elapsed_s={:.6} round_trip_p50_ms={p50:.3} round_trip_p99_ms={p99:.3} registrations={} retries={} \
         heartbeats={} heartbeat_gap_p99_ms={gap_p99:.0} heartbeat_gap_max_ms={gap_max:.0} \
         lag_p99_ms={lag_p99:.1} lag_max_ms={lag_max:.1}",
        elapsed.as_secs_f64(),
        counters.registrations.load(Ordering::SeqCst),
        counters.retries.load(Ordering::SeqCst),
        counters.heartbeats.load(Ordering::SeqCst),
    );
    Ok(())
}

/// Starts `proofmill bench sim-provers` against `url` (see the module doc), its standard
/// input piped: without `jobs` it runs until that is closed.
pub fn spawn(
    url: &str,
    provers: u32,
    jobs: Option<u64>,
    rate: Option<u32>,
) -> anyhow::Result<tokio::process::Child> {
    let exe = std::env::current_exe().context("locating the proofmill binary")?;
    let mut command = tokio::process::Command::new(&exe);
    command
        .args(["bench", "sim-provers", "--coordinator", url])
        .args(["--provers", &provers.to_string()]);
    if let Some(jobs) = jobs {
        command.args(["--jobs", &jobs.to_string()]);
    }
    if let Some(rate) = rate {
        command.args(["--rate", &rate.to_string()]);
    }
    command
        // A config file meant for the bench would hold keys the child does not know.
        .env_remove("PROOFMILL_CONFIG")
        // Real provers run on other machines. The load generator shares this one, so it keeps
        // to one runtime thread: more throughput and a shorter tail than with two (BENCHMARKS.md,
        // session 5).
        .env("TOKIO_WORKER_THREADS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting the simulated provers")
}

/// What the simulated provers' process printed.
pub struct SimReport {
    pub elapsed_s: f64,
    pub round_trip_p50_ms: f64,
    pub round_trip_p99_ms: f64,
    pub registrations: u64,
    pub retries: u64,
    pub heartbeats: u64,
    pub heartbeat_gap_p99_ms: f64,
    pub heartbeat_gap_max_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
}

impl SimReport {
    pub fn parse(stdout: &str) -> anyhow::Result<SimReport> {
        let value = |key: &str| -> anyhow::Result<f64> {
            stdout
                .split_whitespace()
                .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
                .with_context(|| format!("no {key} in the simulated provers' output: {stdout:?}"))?
                .parse()
                .with_context(|| format!("bad {key} in {stdout:?}"))
        };
        Ok(SimReport {
            elapsed_s: value("elapsed_s")?,
            round_trip_p50_ms: value("round_trip_p50_ms")?,
            round_trip_p99_ms: value("round_trip_p99_ms")?,
            registrations: value("registrations")? as u64,
            retries: value("retries")? as u64,
            heartbeats: value("heartbeats")? as u64,
            heartbeat_gap_p99_ms: value("heartbeat_gap_p99_ms")?,
            heartbeat_gap_max_ms: value("heartbeat_gap_max_ms")?,
            lag_p99_ms: value("lag_p99_ms")?,
            lag_max_ms: value("lag_max_ms")?,
        })
    }
}

/// Counts across all simulated provers.
#[derive(Default)]
struct Counters {
    /// Accepted results.
    done: AtomicU64,
    /// Accepted registrations (a prover that reconnects registers again).
    registrations: AtomicU64,
    /// Attempts that failed and were tried again.
    retries: AtomicU64,
    /// Heartbeats received (and answered).
    heartbeats: AtomicU64,
    /// Failed attempts by reason.
    errors: Mutex<BTreeMap<String, u64>>,
}

/// When one prover of a paced run answers: every `period` (M / rate), the provers' first
/// answers spread evenly over one period so that they do not arrive together.
struct Pace {
    period: Duration,
    next: tokio::time::Instant,
}

impl Pace {
    fn new(rate: u32, provers: u32, index: u32) -> Self {
        let period = Duration::from_secs_f64(f64::from(provers) / f64::from(rate));
        let offset = period.mul_f64(f64::from(index) / f64::from(provers));
        Pace {
            period,
            next: tokio::time::Instant::now() + offset,
        }
    }

    /// Waits for this prover's next slot. A prover that fell a period behind (its task came
    /// late) answers at once and starts its schedule again from now, rather than catching up
    /// in a burst the offered load does not have.
    async fn wait(&mut self) {
        let now = tokio::time::Instant::now();
        if self.next + self.period < now {
            self.next = now;
        }
        tokio::time::sleep_until(self.next).await;
        self.next += self.period;
    }
}

/// How one stream ended.
enum Ended {
    /// The run is over.
    Done,
    /// Connecting failed, or the stream was refused or lost: try again after backoff.
    Retry(String),
}

/// One prover of capacity 1.
struct SimProver {
    url: String,
    index: u32,
    counters: Arc<Counters>,
    /// Fires when the run is over.
    done_tx: watch::Sender<bool>,
    /// Accepted results to wait for, if any.
    total: Option<u64>,
    pace: Option<Pace>,
    samples: Samples,
}

/// What one prover measured, in milliseconds.
#[derive(Default)]
struct Samples {
    /// From sending a result to receiving the next task.
    round_trips: Vec<f64>,
    /// Between two heartbeats received on one stream.
    heartbeat_gaps: Vec<f64>,
}

impl SimProver {
    /// Connects (again, after backoff) until the run is over; returns the round trips.
    async fn run(mut self) -> anyhow::Result<Samples> {
        let mut backoff = Backoff::new(RECONNECT_MIN, RECONNECT_MAX);
        let mut done_rx = self.done_tx.subscribe();
        loop {
            let why = match self.stream(&mut backoff).await? {
                Ended::Done => return Ok(self.samples),
                Ended::Retry(why) => why,
            };
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            *self
                .counters
                .errors
                .lock()
                .expect("errors lock")
                .entry(without_ids(&why))
                .or_default() += 1;
            tokio::select! {
                _ = tokio::time::sleep(backoff.next_delay()) => {}
                _ = done_rx.wait_for(|d| *d) => return Ok(self.samples),
            }
        }
    }

    /// One connection and stream, until it ends. Errors only for what trying again cannot
    /// fix (a result or registration refused).
    async fn stream(&mut self, backoff: &mut Backoff) -> anyhow::Result<Ended> {
        let mut done_rx = self.done_tx.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let register = Register {
            name: format!("sim-{}", self.index),
            proof_types: vec!["exec".into()],
            compute_capacity: 1,
            version: "bench".into(),
            token: None,
            blob_access: false,
            max_message_bytes: 0,
        };
        tx.send(ProverMessage {
            kind: Some(In::Register(register)),
        })
        .await?;
        let open = async {
            let mut client = ProverServiceClient::connect(self.url.clone())
                .await
                .map_err(|e| format!("connect: {}", error_chain(&e)))?;
            client
                .prover_stream(ReceiverStream::new(rx))
                .await
                .map(|r| r.into_inner())
                .map_err(|s| format!("open stream: {:?}: {}", s.code(), s.message()))
        };
        let mut inbound = tokio::select! {
            opened = tokio::time::timeout(ATTEMPT_TIMEOUT, open) => match opened {
                Ok(Ok(inbound)) => inbound,
                Ok(Err(why)) => return Ok(Ended::Retry(why)),
                Err(_) => return Ok(Ended::Retry("open stream: timed out".into())),
            },
            _ = done_rx.wait_for(|d| *d) => return Ok(Ended::Done),
        };
        let mut sent_at: Option<Instant> = None;
        let mut last_heartbeat: Option<Instant> = None;
        loop {
            let msg = tokio::select! {
                m = inbound.message() => m,
                _ = done_rx.wait_for(|d| *d) => return Ok(Ended::Done),
            };
            let kind = match msg {
                Ok(Some(m)) => m.kind,
                Ok(None) => return Ok(Ended::Retry("stream ended by the coordinator".into())),
                Err(s) => {
                    return Ok(Ended::Retry(format!(
                        "stream: {:?}: {}",
                        s.code(),
                        s.message()
                    )));
                }
            };
            let Some(kind) = kind else { continue };
            let reply = match kind {
                Out::ExecuteTask(t) => {
                    if let Some(at) = sent_at.take() {
                        self.samples
                            .round_trips
                            .push(at.elapsed().as_secs_f64() * 1e3);
                    }
                    if let Some(pace) = &mut self.pace {
                        pace.wait().await;
                    }
                    sent_at = Some(Instant::now());
                    In::TaskResult(TaskResult {
                        task_id: t.task_id,
                        fencing_token: t.fencing_token,
                        outcome: Some(Outcome::Proof(t.public_values)),
                        prove_ms: 0,
                    })
                }
                Out::ResultAck(ack) => {
                    if !ack.accepted {
                        bail!("result rejected: {}", ack.reason);
                    }
                    let done = self.counters.done.fetch_add(1, Ordering::SeqCst) + 1;
                    if self.total == Some(done) {
                        let _ = self.done_tx.send(true);
                    }
                    continue;
                }
                Out::Heartbeat(h) => {
                    self.counters.heartbeats.fetch_add(1, Ordering::Relaxed);
                    let now = Instant::now();
                    if let Some(last) = last_heartbeat.replace(now) {
                        let gap = now - last;
                        self.samples.heartbeat_gaps.push(gap.as_secs_f64() * 1e3);
                    }
                    In::HeartbeatAck(HeartbeatAck {
                        seq: h.seq,
                        running: vec![],
                        probe: None,
                    })
                }
                Out::RegisterResponse(r) if r.accepted => {
                    self.counters.registrations.fetch_add(1, Ordering::SeqCst);
                    backoff.reset();
                    continue;
                }
                Out::RegisterResponse(r) => match r.code() {
                    // Full for now (too many provers registering at once, or it stands by):
                    // a real prover tries again later.
                    ErrorCode::SystemUnavailable | ErrorCode::ProverUnavailable => {
                        return Ok(Ended::Retry(format!("registration refused: {}", r.reason)));
                    }
                    _ => bail!("registration refused: {}", r.reason),
                },
                _ => continue,
            };
            if tx.send(ProverMessage { kind: Some(reply) }).await.is_err() {
                return Ok(Ended::Retry("request stream closed".into()));
            }
        }
    }
}

/// An error and its sources on one line (transport errors hide the cause, e.g. "connection
/// reset", in their sources).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `why` with prover ids elided, so that reasons count together.
fn without_ids(why: &str) -> String {
    why.split(' ')
        .map(|w| if w.starts_with("prv-") { "prv-…" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}
