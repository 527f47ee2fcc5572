//! The chaos run: real Postgres, anvil, `proofmill coordinator` and `proofmill prover`
//! processes, killed -9 and restarted at random (seeded) for a while; then a quiet period
//! until every batch sealed meanwhile is verified on L1 (bounded), then the [`History`] is
//! gathered and checked.

use crate::check::{self, History, JobRecord, Poll, StoredProof};
use crate::common::procs::{Proc, listening_addr, tail};
use proofmill_l1::{Address, L1 as _, RpcConfig, RpcL1};
use proofmill_proto::v1::SystemStatusRequest;
use proofmill_proto::v1::admin_service_client::AdminServiceClient;
use proofmill_store::{Blobs, Store, open_store};
use proofmill_testkit::{TestAnvil, TestPostgres};
use proofmill_types::DEFAULT_CHAIN;
use proofmill_types::{Digest, JobKey, ProofType};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The required proof types: two, so "once per proof type" means something. `exec`
/// re-executes the batch (settled on L1 by the DEV exec verifier); `slow` is an external
/// command that takes half a second (checked by the coordinator only), so kills often hit a
/// task in flight and leases get lost, re-leased and answered late.
const PROOF_TYPES: &str = "exec,slow:command";
/// The `slow` proof: the public values, after a pause.
const SLOW_PROVE: &str = "sleep 0.5 && cp {public} {output}";
const SLOW_VERIFY: &str = "cmp -s {proof} {public}";

/// Heartbeats asked of provers, ms; three missed lose a prover's leases.
const HEARTBEAT_MS: u64 = 1_000;
/// A paused prover stays stopped this long (ms, uniform), beyond the 3 heartbeats.
const PAUSE_MS: (u64, u64) = (4 * HEARTBEAT_MS, 7 * HEARTBEAT_MS);
const PAUSE_LONGEST: Duration = Duration::from_millis(PAUSE_MS.1);
/// The coordinators' lease: a standby takes over this long after the active one stops.
const LEASE_TTL_MS: u64 = 2_000;
/// A paused coordinator stays stopped this long (ms, uniform): below or past its lease.
const COORDINATOR_PAUSE_MS: (u64, u64) = (LEASE_TTL_MS / 2, 3 * LEASE_TTL_MS);

/// The command backend's options, for every process that builds the proof types.
fn slow_args() -> Vec<String> {
    vec![
        format!("--command-prove={SLOW_PROVE}"),
        format!("--command-verify={SLOW_VERIFY}"),
    ]
}
const JSON_LOGS: &[(&str, &str)] = &[("RUST_LOG", "info"), ("PROOFMILL_LOG_FORMAT", "json")];

#[derive(Clone, Debug)]
pub struct Config {
    /// How long processes are killed and restarted.
    pub duration: Duration,
    pub coordinators: usize,
    pub provers: usize,
    /// Seeds the kill schedule.
    pub seed: u64,
    /// An external Postgres (never killed); default: a throwaway server of our own, which is
    /// crashed now and then too.
    pub db: Option<String>,
    /// Devnet: ms between sealed batches.
    pub batch_interval_ms: u64,
    /// Mean time between two kills.
    pub mean_kill_interval: Duration,
    /// Bound on the quiet period: everything sealed during the chaos must be verified on L1
    /// within it.
    pub settle_within: Duration,
}

impl Config {
    /// `PROOFMILL_CHAOS_*` variables (set by `scripts/chaos`) over the defaults.
    pub fn from_env() -> Config {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
            match std::env::var(format!("PROOFMILL_CHAOS_{name}")) {
                Ok(v) => v.parse().unwrap_or_else(|_| {
                    panic!("PROOFMILL_CHAOS_{name}={v:?} is not a valid value")
                }),
                Err(_) => default,
            }
        }
        Config {
            duration: Duration::from_secs(var("DURATION_S", 120)),
            coordinators: var("COORDINATORS", 2),
            provers: var("PROVERS", 4),
            seed: var("SEED", 1),
            db: std::env::var("PROOFMILL_CHAOS_DB")
                .ok()
                .filter(|s| !s.is_empty()),
            batch_interval_ms: var("BATCH_INTERVAL_MS", 500),
            mean_kill_interval: Duration::from_millis(var("KILL_INTERVAL_MS", 2_500)),
            settle_within: Duration::from_secs(var("SETTLE_S", 300)),
        }
    }
}

#[derive(Debug, Default)]
pub struct Kills {
    pub coordinator: u32,
    pub prover: u32,
    /// SIGSTOP for longer than the heartbeat timeout, then SIGCONT: the prover loses its
    /// lease while alive and answers late, under a stale token.
    pub prover_pause: u32,
    /// SIGSTOP of a coordinator, sometimes past its lease (a standby takes over and the
    /// paused one, continued, finds itself deposed), sometimes not.
    pub coordinator_pause: u32,
    pub postgres: u32,
}

#[derive(Debug)]
pub struct Report {
    pub batches: u64,
    pub sealed_at_chaos_end: u64,
    pub verified: u64,
    pub l1_txs: usize,
    pub kills: Kills,
    /// Processes that exited without being killed (restarted like killed ones), with the
    /// reason they printed.
    pub exits: Vec<String>,
    pub proofs: usize,
    pub leases: usize,
    pub acks: usize,
    /// Results the coordinators refused, as the provers logged them, by error code
    /// (`STALE_FENCING_TOKEN`: a lease lost while its prover lived).
    pub rejected: std::collections::BTreeMap<String, usize>,
    pub polls: usize,
    pub failed_polls: usize,
    pub settle: Duration,
    pub violations: Vec<String>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "chaos: batches={} sealed_at_chaos_end={} verified_on_l1={} l1_verify_txs={} proofs={} leases={} acks={} rejected={:?}",
            self.batches,
            self.sealed_at_chaos_end,
            self.verified,
            self.l1_txs,
            self.proofs,
            self.leases,
            self.acks,
            self.rejected
        )?;
        writeln!(
            f,
            "chaos: kills coordinator={} prover={} prover_pause={} coordinator_pause={} postgres={} unexpected_exits={} status_polls={} failed_polls={} settle_s={:.1}",
            self.kills.coordinator,
            self.kills.prover,
            self.kills.prover_pause,
            self.kills.coordinator_pause,
            self.kills.postgres,
            self.exits.len(),
            self.polls,
            self.failed_polls,
            self.settle.as_secs_f64()
        )?;
        for e in &self.exits {
            writeln!(f, "chaos: exited on its own: {e}")?;
        }
        if self.violations.is_empty() {
            write!(f, "chaos: every invariant holds")
        } else {
            writeln!(f, "chaos: {} INVARIANT VIOLATIONS:", self.violations.len())?;
            for v in &self.violations {
                writeln!(f, "  {v}")?;
            }
            Ok(())
        }
    }
}

/// splitmix64: a seeded schedule without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo + 1))
    }
}

/// A process the run restarts: its arguments, log, and when it is due to come back.
struct Member {
    name: String,
    args: Vec<String>,
    log: PathBuf,
    proc: Option<Proc>,
    restart_at: Option<Instant>,
    /// Stopped (SIGSTOP) until then.
    paused_until: Option<Instant>,
}

impl Member {
    fn start(&mut self, cwd: &Path) {
        self.proc = Some(Proc::spawn_appending(
            self.name.clone(),
            &self.args,
            cwd,
            self.log.clone(),
            JSON_LOGS,
        ));
        self.restart_at = None;
    }

    fn up(&self) -> bool {
        self.proc.is_some()
    }

    /// kill -9, to be restarted after `down`.
    fn kill(&mut self, down: Duration) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
        self.paused_until = None;
        self.restart_at = Some(Instant::now() + down);
    }

    /// SIGSTOP, for `pause` (then SIGCONT by [`Member::resume_if_due`]).
    fn pause(&mut self, pause: Duration) {
        if let Some(p) = &self.proc {
            signal(p, "STOP");
            self.paused_until = Some(Instant::now() + pause);
        }
    }

    fn resume_if_due(&mut self, now: Instant) {
        if self.paused_until.is_some_and(|t| now >= t) {
            if let Some(p) = &self.proc {
                signal(p, "CONT");
            }
            self.paused_until = None;
        }
    }

    /// If it exited without being killed: the reason it printed, and a restart in a second.
    fn exited(&mut self) -> Option<String> {
        let p = self.proc.as_mut()?;
        let status = p.child.try_wait().ok()??;
        let log = p.log();
        let why = log
            .lines()
            .rev()
            .find(|l| l.starts_with("error:") || l.contains("\"level\":\"ERROR\""))
            .unwrap_or("(no error line)")
            .chars()
            .take(300)
            .collect::<String>();
        self.proc = None;
        self.restart_at = Some(Instant::now() + Duration::from_secs(1));
        Some(format!("{} ({status}): {why}", self.name))
    }

    /// Its log's last task line is `task started`: it is proving now.
    fn proving(&self) -> bool {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|l| {
                let m = l["fields"]["message"].as_str()?.to_string();
                m.starts_with("task ").then_some(m)
            })
            .is_some_and(|m| m == "task started")
    }

    fn due(&self) -> bool {
        self.restart_at.is_some_and(|t| Instant::now() >= t)
    }
}

/// Runs the whole thing; panics only on setup failures (each with its reason), and reports
/// invariant violations in the [`Report`].
pub fn run(cfg: &Config) -> Report {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("proofmill-chaos-")
        .tempdir()
        .unwrap();
    let d = dir.path();
    println!("chaos: {cfg:?}; logs in {} (kept on failure)", d.display());

    let pg = match &cfg.db {
        Some(_) => None,
        None => Some(TestPostgres::start_durable().expect("starting the chaos run's Postgres")),
    };
    let db = cfg
        .db
        .clone()
        .unwrap_or_else(|| pg.as_ref().unwrap().url.clone());
    let anvil = TestAnvil::start();
    let key_file = d.join("l1.key");
    std::fs::write(&key_file, proofmill_l1::DEV_SEQUENCER_KEY).unwrap();
    let rollup = deploy(d, &anvil.url, &key_file);
    println!("chaos: postgres {db}, anvil {}, rollup {rollup}", anvil.url);

    let coordinator_args = |listen: &str| -> Vec<String> {
        let mut a: Vec<String> = [
            "coordinator",
            "--listen",
            listen,
            "--db",
            &db,
            "--blobs",
            &format!("file://{}/blobs", d.display()),
            "--proof-types",
            PROOF_TYPES,
            "--devnet",
            "--l1",
            "rpc",
            "--l1-rpc-url",
            &anvil.url,
            "--l1-rollup-address",
            &rollup,
            "--send-interval",
            "1000",
            // Backup copies of stragglers would make two leases of a job live at once, and
            // "the stored proof answered the latest lease" unverifiable from outside.
            "--straggler-factor",
            "0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.push(format!("--l1-key-file={}", key_file.display()));
        a.push(format!("--batch-interval={}", cfg.batch_interval_ms));
        // A paused prover (see PAUSE_MS) misses its heartbeats and loses its leases.
        a.push(format!("--heartbeat-interval={HEARTBEAT_MS}"));
        a.push(format!("--lease-ttl={LEASE_TTL_MS}"));
        a.extend(slow_args());
        a
    };

    // Coordinators: the first start picks a port; restarts reuse it, since provers know it.
    let mut coordinators: Vec<Member> = Vec::new();
    let mut urls = Vec::new();
    for i in 0..cfg.coordinators {
        let log = d.join(format!("c{i}.log"));
        let mut first = Proc::spawn_appending(
            format!("coordinator c{i}"),
            &coordinator_args("127.0.0.1:0"),
            d,
            log.clone(),
            JSON_LOGS,
        );
        let addr = listening_addr(&mut first, Duration::from_secs(120));
        urls.push(format!("http://{addr}"));
        coordinators.push(Member {
            name: format!("coordinator c{i}"),
            args: coordinator_args(&addr),
            log,
            proc: Some(first),
            restart_at: None,
            paused_until: None,
        });
    }
    let mut provers: Vec<Member> = (0..cfg.provers)
        .map(|i| {
            let name = format!("p{i}");
            let mut args: Vec<String> = [
                "prover",
                "--coordinators",
                &urls.join(","),
                "--backend",
                PROOF_TYPES,
                "--name",
                &name,
                "--capacity",
                "1",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(slow_args());
            // Half of them keep their id and unacknowledged results across kills.
            if i % 2 == 0 {
                args.push(format!("--state-dir={}/{name}-state", d.display()));
            }
            let mut m = Member {
                log: d.join(format!("{name}.log")),
                name,
                args,
                proc: None,
                restart_at: None,
                paused_until: None,
            };
            m.start(d);
            m
        })
        .collect();

    // Status poller: every 250 ms, every coordinator.
    let polls = Arc::new(Mutex::new((Vec::<Poll>::new(), 0usize)));
    let stop_polling = Arc::new(AtomicBool::new(false));
    let poller = {
        let (polls, stop, urls) = (polls.clone(), stop_polling.clone(), urls.clone());
        let handle = rt.handle().clone();
        std::thread::spawn(move || {
            handle.block_on(poll_status(&urls, started, &stop, &polls));
        })
    };

    // The chaos.
    let mut rng = Rng(cfg.seed);
    let mut kills = Kills::default();
    let mut exits = Vec::new();
    let mut pg_back_at: Option<Instant> = None;
    let chaos_until = Instant::now() + cfg.duration;
    let mean = cfg.mean_kill_interval.as_millis() as u64;
    let mut next_kill = Instant::now() + rng.millis(mean / 2, mean * 3 / 2);
    let restarts = |members: &mut [Member], exits: &mut Vec<String>| {
        for m in members.iter_mut() {
            m.resume_if_due(Instant::now());
            if let Some(e) = m.exited() {
                println!("chaos: {e}");
                exits.push(e);
            }
            if !m.up() && m.due() {
                m.start(d);
            }
        }
    };
    while Instant::now() < chaos_until {
        std::thread::sleep(Duration::from_millis(50));
        if let (Some(pg), Some(at)) = (&pg, pg_back_at)
            && Instant::now() >= at
        {
            pg.restart().expect("restarting Postgres after its crash");
            pg_back_at = None;
        }
        restarts(&mut coordinators, &mut exits);
        restarts(&mut provers, &mut exits);
        if Instant::now() < next_kill {
            continue;
        }
        next_kill = Instant::now() + rng.millis(mean / 2, mean * 3 / 2);
        let r = rng.unit();
        if r < 0.06
            && let Some(pg) = &pg
            && pg_back_at.is_none()
        {
            pg.crash().expect("crashing Postgres");
            kills.postgres += 1;
            pg_back_at = Some(Instant::now() + rng.millis(1_000, 5_000));
            println!(
                "chaos: {:>5.1} s: postgres crashed",
                started.elapsed().as_secs_f64()
            );
        } else if r < 0.14 && coordinators.len() > 1 {
            let pick = (0..coordinators.len())
                .filter(|&i| coordinators[i].up() && coordinators[i].paused_until.is_none())
                .collect::<Vec<_>>();
            if !pick.is_empty() {
                let m = &mut coordinators[pick[rng.below(pick.len() as u64) as usize]];
                m.pause(rng.millis(COORDINATOR_PAUSE_MS.0, COORDINATOR_PAUSE_MS.1));
                kills.coordinator_pause += 1;
                println!(
                    "chaos: {:>5.1} s: kill -STOP {}",
                    started.elapsed().as_secs_f64(),
                    m.name
                );
            }
        } else if r < 0.40 {
            if let Some(m) = pick_up(&mut coordinators, &mut rng) {
                m.kill(rng.millis(0, 3_000));
                kills.coordinator += 1;
                println!(
                    "chaos: {:>5.1} s: kill -9 {}",
                    started.elapsed().as_secs_f64(),
                    m.name
                );
            }
        } else if r < 0.60 {
            // Pausing an idle prover tests little: prefer one that is proving.
            let busy: Vec<usize> = (0..provers.len())
                .filter(|&i| {
                    provers[i].up() && provers[i].paused_until.is_none() && provers[i].proving()
                })
                .collect();
            let pick = match busy.len() {
                0 => pick_up(&mut provers, &mut rng),
                n => Some(&mut provers[busy[rng.below(n as u64) as usize]]),
            };
            if let Some(m) = pick {
                m.pause(rng.millis(PAUSE_MS.0, PAUSE_MS.1));
                kills.prover_pause += 1;
                println!(
                    "chaos: {:>5.1} s: kill -STOP {}",
                    started.elapsed().as_secs_f64(),
                    m.name
                );
            }
        } else if let Some(m) = pick_up(&mut provers, &mut rng) {
            m.kill(rng.millis(0, 2_000));
            kills.prover += 1;
            println!(
                "chaos: {:>5.1} s: kill -9 {}",
                started.elapsed().as_secs_f64(),
                m.name
            );
        }
    }

    // Quiet: everything back up, until every batch sealed so far is verified on L1.
    if let (Some(pg), Some(_)) = (&pg, pg_back_at) {
        pg.restart().expect("restarting Postgres after its crash");
    }
    for m in coordinators.iter_mut().chain(provers.iter_mut()) {
        m.resume_if_due(chaos_until + PAUSE_LONGEST);
        if !m.up() {
            m.start(d);
        }
    }
    let quiet = Instant::now();
    let store = rt.block_on(async {
        loop {
            match open_store(&db).await {
                Ok(s) => break s,
                Err(e) if quiet.elapsed() < Duration::from_secs(60) => {
                    println!("chaos: store not open yet: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => panic!("cannot open the store {db} after the chaos: {e}"),
            }
        }
    });
    let sealed_at_chaos_end = rt
        .block_on(store.last_sealed_batch(DEFAULT_CHAIN))
        .expect("reading the last sealed batch")
        .unwrap_or(0);
    println!(
        "chaos: {:>5.1} s: chaos over, {sealed_at_chaos_end} batches sealed; settling",
        started.elapsed().as_secs_f64()
    );
    let l1 = rt
        .block_on(RpcL1::new(
            &anvil.url,
            proofmill_l1::DEV_SEQUENCER_KEY,
            rollup.parse::<Address>().unwrap(),
            RpcConfig::default(),
        ))
        .expect("connecting to anvil");
    let mut last_report = Instant::now();
    loop {
        restarts(&mut coordinators, &mut exits);
        restarts(&mut provers, &mut exits);
        let verified = rt.block_on(l1.last_verified_batch()).unwrap_or(0);
        if verified >= sealed_at_chaos_end {
            break;
        }
        if quiet.elapsed() > cfg.settle_within {
            println!(
                "chaos: only {verified} of {sealed_at_chaos_end} batches verified on L1 after {:?}",
                cfg.settle_within
            );
            break;
        }
        if last_report.elapsed() > Duration::from_secs(15) {
            println!("chaos: settling: {verified}/{sealed_at_chaos_end} verified on L1");
            last_report = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let settle = quiet.elapsed();
    // A last second of polls, then everything stops: the store, logs and chain are final.
    std::thread::sleep(Duration::from_secs(1));
    stop_polling.store(true, Ordering::Relaxed);
    poller.join().expect("status poller");
    for m in coordinators.iter_mut().chain(provers.iter_mut()) {
        if let Some(mut p) = m.proc.take() {
            p.kill9();
        }
    }

    let mut h = rt.block_on(gather_store(&store, &db, d, sealed_at_chaos_end));
    let rejected = rejections(&provers);
    gather_logs(&mut h, &provers);
    let ranges = rt
        .block_on(l1.verified_ranges(0))
        .expect("reading BatchesVerified events");
    h.l1_ranges = ranges.iter().map(|r| (r.first, r.last)).collect();
    h.l1_last_verified = rt
        .block_on(l1.last_verified_batch())
        .expect("reading lastVerifiedBatch");
    let (poll_list, failed_polls) = std::mem::take(&mut *polls.lock().unwrap());
    h.polls = poll_list;

    let violations = check::check(&h);
    let report = Report {
        batches: h.last_sealed,
        sealed_at_chaos_end,
        verified: h.l1_last_verified,
        l1_txs: ranges.len(),
        kills,
        exits,
        proofs: h.jobs.values().filter(|j| j.proof.is_some()).count(),
        leases: h.issued.values().map(Vec::len).sum(),
        acks: h.acked.values().map(Vec::len).sum(),
        rejected,
        polls: h.polls.len(),
        failed_polls,
        settle,
        violations,
    };
    if !report.violations.is_empty() || std::env::var_os("PROOFMILL_CHAOS_KEEP_LOGS").is_some() {
        // Keep the logs for the post-mortem.
        let kept = dir.keep();
        println!("chaos: logs kept in {}", kept.display());
    }
    if !report.violations.is_empty() {
        for m in coordinators.iter().chain(provers.iter()) {
            let log = crate::common::procs::strip_ansi(
                &std::fs::read_to_string(&m.log).unwrap_or_default(),
            );
            println!("--- {} (last lines)\n{}", m.name, tail(&log));
        }
    }
    drop(pg);
    drop(anvil);
    report
}

/// `kill -SIG pid`.
fn signal(p: &Proc, sig: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(p.child.id().to_string())
        .status();
}

/// A random member that is up.
fn pick_up<'a>(members: &'a mut [Member], rng: &mut Rng) -> Option<&'a mut Member> {
    let up: Vec<usize> = (0..members.len()).filter(|&i| members[i].up()).collect();
    if up.is_empty() {
        return None;
    }
    let i = up[rng.below(up.len() as u64) as usize];
    Some(&mut members[i])
}

/// `proofmill l1 deploy` of the rollup with one DEV exec verifier per proof type.
fn deploy(dir: &Path, rpc: &str, key_file: &Path) -> String {
    let out = crate::common::proofmill()
        .current_dir(dir)
        .args([
            "l1",
            "deploy",
            "--l1-rpc-url",
            rpc,
            "--proof-types",
            PROOF_TYPES,
        ])
        .arg(format!("--l1-key-file={}", key_file.display()))
        .args(slow_args())
        .output()
        .expect("running proofmill l1 deploy");
    assert!(
        out.status.success(),
        "proofmill l1 deploy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        addr.parse::<Address>().is_ok(),
        "proofmill l1 deploy printed {addr:?}, not an address"
    );
    addr
}

async fn poll_status(
    urls: &[String],
    started: Instant,
    stop: &AtomicBool,
    out: &Mutex<(Vec<Poll>, usize)>,
) {
    let mut clients: Vec<Option<AdminServiceClient<tonic::transport::Channel>>> =
        vec![None; urls.len()];
    while !stop.load(Ordering::Relaxed) {
        for (i, url) in urls.iter().enumerate() {
            let call = async {
                if clients[i].is_none() {
                    clients[i] = Some(AdminServiceClient::connect(url.clone()).await.ok()?);
                }
                let c = clients[i].as_mut()?;
                c.system_status(SystemStatusRequest {}).await.ok()
            };
            let answer = tokio::time::timeout(Duration::from_secs(2), call)
                .await
                .ok()
                .flatten();
            let mut out = out.lock().unwrap();
            match answer.map(|s| s.into_inner()) {
                // Figures flagged as from memory (the store did not answer, or the
                // coordinator's lease is in doubt) are not live: skipped like a failed poll.
                Some(s) if s.from_memory => out.1 += 1,
                Some(s) => {
                    out.0.push(Poll {
                        at_ms: started.elapsed().as_millis() as u64,
                        coordinator: i,
                        figures: [
                            s.last_sealed_batch,
                            s.last_proven_batch,
                            s.last_committed_batch,
                            s.last_verified_batch,
                        ],
                    });
                }
                None => {
                    out.1 += 1;
                    clients[i] = None; // reconnect: the coordinator may have been restarted
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// The store's batches, jobs and proofs (each proof's bytes read back and hashed).
async fn gather_store(
    store: &Arc<dyn Store>,
    db: &str,
    dir: &Path,
    sealed_at_chaos_end: u64,
) -> History {
    let blobs = Blobs::from_url(&format!("file://{}/blobs", dir.display())).unwrap();
    let last_sealed = store
        .last_sealed_batch(DEFAULT_CHAIN)
        .await
        .unwrap_or_else(|e| panic!("reading {db}: {e}"))
        .unwrap_or(0);
    let mut h = History {
        last_sealed,
        sealed_at_chaos_end,
        ..History::default()
    };
    for n in 1..=last_sealed {
        let Some(batch) = store
            .batch(DEFAULT_CHAIN, n)
            .await
            .expect("reading a batch")
        else {
            continue;
        };
        let required: Vec<String> = batch.required.iter().map(ProofType::to_string).collect();
        for pt in &batch.required {
            let key = JobKey::new(DEFAULT_CHAIN, n, pt.clone());
            let Some(job) = store.job(&key).await.expect("reading a job") else {
                continue;
            };
            let proof = match store.proof(&key).await.expect("reading a proof") {
                None => None,
                Some(p) => {
                    let bytes = match &p.inline {
                        Some(b) => Ok(b.clone()),
                        None => blobs
                            .get(&p.blob_key)
                            .await
                            .map(|b| b.to_vec())
                            .map_err(|e| format!("blob {}: {e}", p.blob_key)),
                    };
                    let readable = bytes.and_then(|b| {
                        (Digest::sha256(&b) == p.digest)
                            .then_some(())
                            .ok_or_else(|| "its bytes do not match its digest".to_string())
                    });
                    Some(StoredProof {
                        prover_name: p.prover_name,
                        token: p.token.0,
                        readable,
                    })
                }
            };
            let committed = store
                .attempts(DEFAULT_CHAIN, n, Some(pt), 1000)
                .await
                .expect("reading attempts")
                .iter()
                .map(|a| a.token.0)
                .collect();
            h.jobs.insert(
                (n, pt.to_string()),
                JobRecord {
                    state: job.state.to_string(),
                    proof,
                    committed,
                },
            );
        }
        h.required.insert(n, required);
    }
    h
}

/// `task started` / `task declined` (leases received) and `result acknowledged` with a
/// proof (accepted results) from every prover's log.
fn gather_logs(h: &mut History, provers: &[Member]) {
    for p in provers {
        let text = std::fs::read_to_string(&p.log).unwrap_or_default();
        for line in text.lines() {
            let Ok(l) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            let f = &l["fields"];
            let (Some(task), Some(token)) = (f["task"].as_str(), f["token"].as_u64()) else {
                continue;
            };
            let Some((batch, pt)) = task.split_once('/') else {
                continue;
            };
            let Ok(batch) = batch.parse::<u64>() else {
                continue;
            };
            let key = (batch, pt.to_string());
            let entry = (p.name.clone(), token);
            match f["message"].as_str() {
                Some("task started" | "task declined") => {
                    h.issued.entry(key).or_default().push(entry)
                }
                Some("result acknowledged") if f["proof"] == true => {
                    h.acked.entry(key).or_default().push(entry)
                }
                _ => {}
            }
        }
    }
}

/// `result rejected by the coordinator; dropped` lines of the provers, by code.
fn rejections(provers: &[Member]) -> std::collections::BTreeMap<String, usize> {
    let mut out = std::collections::BTreeMap::new();
    for p in provers {
        for l in std::fs::read_to_string(&p.log).unwrap_or_default().lines() {
            let Ok(l) = serde_json::from_str::<serde_json::Value>(l) else {
                continue;
            };
            if l["fields"]["message"] == "result rejected by the coordinator; dropped" {
                let code = l["fields"]["code"].as_str().unwrap_or("?").to_string();
                *out.entry(code).or_insert(0) += 1;
            }
        }
    }
    out
}
