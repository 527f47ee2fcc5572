//! The proofmill prover: a process that proves tasks for one or more coordinators.
//!
//! A [`Prover`] opens one `ProverService.ProverStream` per coordinator URL and serves
//! whichever coordinator has work. Its capacity is shared: every coordinator is told how many
//! slots are free across all of them (`Availability`), and a task that arrives when another
//! coordinator took the last slot is declined.
//!
//! # Threads
//!
//! [`Prover::run`] drives all networking on a dedicated tokio runtime living on its own OS
//! thread (`proofmill-prover-net`), so a busy caller runtime cannot starve heartbeats, and
//! proving never runs on an async worker: each task is proven on a blocking thread
//! (`spawn_blocking`) of that runtime, which also hashes the input for its digest check and
//! the proof for its chunked digest.
//!
//! # Results
//!
//! Every finished result (proof or error) is kept in a per-coordinator outbox until the
//! coordinator acknowledges it with a `ResultAck` for its task id and fencing token. After a
//! reconnect the prover presents `Reconnect{prover_id, running}` and resends the whole outbox.

pub mod backoff;
mod conn;
mod input;
pub mod sim;
mod state;

pub use state::{StateDir, StateDirError};

use anyhow::{Context as _, bail};
use proofmill_backend::Backend;
use proofmill_types::ProofType;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tracing::{Instrument as _, error, info, info_span, warn};

/// Default reconnect backoff bounds.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Default gRPC message limit (both directions).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024 * 1024;
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest chunked input a prover accepts.
pub const MAX_CHUNKED_INPUT_BYTES: u64 = 1 << 30;

/// Smallest accepted `max_message_bytes`; smaller values are raised to it.
const MIN_MESSAGE_BYTES: usize = 4 * 1024;

pub struct ProverConfig {
    /// Coordinator URLs (`http://host:port`); the prover connects to every one.
    pub coordinators: Vec<String>,
    pub name: String,
    /// Concurrent tasks in total, across all coordinators.
    pub capacity: u32,
    /// Program/protocol version, sent in `Register`.
    pub version: String,
    /// Shared secret sent in `Register` if set.
    pub token: Option<String>,
    /// Proof types this prover serves and the backend proving each.
    pub backends: Vec<(ProofType, Arc<dyn Backend>)>,
    /// Reconnect backoff bounds (exponential, jittered).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// gRPC decode/encode limit; proofs larger than half of it are sent as chunks.
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    /// Reads inputs from the coordinator's blob store. When set, the prover registers with
    /// `blob_access` and large inputs arrive as URLs instead of chunks on the stream.
    pub blob_reader: Option<Arc<dyn BlobReader>>,
    /// Stop serving a coordinator once it sends `Shutdown` (and, with one coordinator, return
    /// from `run`). Off by default: a prover drains, then reconnects with backoff, so a
    /// coordinator restart or upgrade does not take the fleet down with it.
    pub exit_on_shutdown: bool,
    /// Keep the prover's id and its unacknowledged results here, so that a restarted
    /// process reconnects as the same prover and still offers what it finished. `None`: a
    /// restart registers anew.
    pub state_dir: Option<std::path::PathBuf>,
}

/// Reads a blob URL of the coordinator's store (`file://`, `s3://`, `gs://`). The prover
/// checks the input digest itself, so a reader only fetches.
pub trait BlobReader: Send + Sync + 'static {
    fn read(&self, url: &str) -> BoxFuture<Result<Vec<u8>, String>>;
}

/// A boxed `Send` future.
pub type BoxFuture<T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl Default for ProverConfig {
    /// No coordinators and no backends (both must be filled in); capacity 1, empty version.
    fn default() -> Self {
        ProverConfig {
            coordinators: Vec::new(),
            name: "prover".to_string(),
            capacity: 1,
            version: String::new(),
            token: None,
            backends: Vec::new(),
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            blob_reader: None,
            exit_on_shutdown: false,
            state_dir: None,
        }
    }
}

impl std::fmt::Debug for ProverConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProverConfig")
            .field("coordinators", &self.coordinators)
            .field("name", &self.name)
            .field("capacity", &self.capacity)
            .field("version", &self.version)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "backends",
                &self
                    .backends
                    .iter()
                    .map(|(pt, b)| format!("{pt}:{}", b.name()))
                    .collect::<Vec<_>>(),
            )
            .field("reconnect_min", &self.reconnect_min)
            .field("reconnect_max", &self.reconnect_max)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("blob_access", &self.blob_reader.is_some())
            .field("exit_on_shutdown", &self.exit_on_shutdown)
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

/// Configuration and state shared by every coordinator connection.
pub(crate) struct Shared {
    pub name: String,
    pub capacity: u32,
    pub version: String,
    pub token: Option<String>,
    /// Proof type name → backend.
    pub backends: HashMap<String, Arc<dyn Backend>>,
    pub proof_types: Vec<String>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    pub blob_reader: Option<Arc<dyn BlobReader>>,
    pub exit_on_shutdown: bool,
    /// Slots in use across all coordinators. Receivers are notified on every change.
    running: watch::Sender<u32>,
    pub stats: StatsInner,
}

impl Shared {
    /// Takes a slot if one is free; the slot is released when the guard drops.
    pub fn try_acquire(self: &Arc<Self>) -> Option<SlotGuard> {
        let cap = self.capacity;
        let taken = self.running.send_if_modified(|r| {
            if *r < cap {
                *r += 1;
                true
            } else {
                false
            }
        });
        taken.then(|| SlotGuard(self.clone()))
    }

    pub fn free_slots(&self) -> u32 {
        self.capacity.saturating_sub(*self.running.borrow())
    }

    pub fn subscribe_running(&self) -> watch::Receiver<u32> {
        self.running.subscribe()
    }
}

/// One busy slot of the prover's global capacity.
pub(crate) struct SlotGuard(Arc<Shared>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.running.send_modify(|r| *r = r.saturating_sub(1));
    }
}

#[derive(Default)]
pub(crate) struct StatsInner {
    pub completed: AtomicU64,
    pub failed: AtomicU64,
    pub declined: AtomicU64,
    pub cancelled: AtomicU64,
    pub acked: AtomicU64,
    pub proofs_acked: AtomicU64,
    pub rejected: AtomicU64,
    pub connected: AtomicU64,
    pub connect_attempts: AtomicU64,
}

impl StatsInner {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A point-in-time copy of a prover's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProverStats {
    /// Tasks proven successfully (counted when the proof is produced, not when acknowledged).
    pub tasks_completed: u64,
    /// Tasks that produced an error result (bad input, digest mismatch, backend error).
    pub tasks_failed: u64,
    /// Tasks answered with `TaskDeclined`.
    pub tasks_declined: u64,
    /// Tasks cancelled by a coordinator, or abandoned when it refused the prover's id.
    pub tasks_cancelled: u64,
    /// Results acknowledged as accepted / rejected by a coordinator.
    pub results_acked: u64,
    /// Of `results_acked`, those that carried a proof (not an error). Each (task, token)
    /// counts once, so across provers it is the number of proofs coordinators accepted.
    pub proofs_acked: u64,
    pub results_rejected: u64,
    /// Coordinators with a live, registered stream.
    pub connected_coordinators: u64,
    /// Stream attempts (initial connections and reconnects) across all coordinators.
    pub connect_attempts: u64,
    /// Slots in use and free right now.
    pub running_tasks: u32,
    pub free_slots: u32,
}

/// Cheap, cloneable view of a prover's counters; stays valid after `run` returns.
#[derive(Clone)]
pub struct ProverStatsHandle(Arc<Shared>);

impl ProverStatsHandle {
    pub fn snapshot(&self) -> ProverStats {
        let s = &self.0.stats;
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let running = *self.0.running.borrow();
        ProverStats {
            tasks_completed: get(&s.completed),
            tasks_failed: get(&s.failed),
            tasks_declined: get(&s.declined),
            tasks_cancelled: get(&s.cancelled),
            results_acked: get(&s.acked),
            proofs_acked: get(&s.proofs_acked),
            results_rejected: get(&s.rejected),
            connected_coordinators: get(&s.connected),
            connect_attempts: get(&s.connect_attempts),
            running_tasks: running,
            free_slots: self.0.capacity.saturating_sub(running),
        }
    }

    pub fn tasks_completed(&self) -> u64 {
        self.snapshot().tasks_completed
    }
    pub fn tasks_failed(&self) -> u64 {
        self.snapshot().tasks_failed
    }
    pub fn tasks_declined(&self) -> u64 {
        self.snapshot().tasks_declined
    }
    pub fn connected_coordinators(&self) -> u64 {
        self.snapshot().connected_coordinators
    }
}

impl std::fmt::Debug for ProverStatsHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.snapshot().fmt(f)
    }
}

pub struct Prover {
    shared: Arc<Shared>,
    coordinators: Vec<String>,
    state_dir: Option<std::path::PathBuf>,
}

impl Prover {
    pub fn new(config: ProverConfig) -> Self {
        let mut backends = HashMap::new();
        let mut proof_types = Vec::new();
        for (pt, backend) in config.backends {
            if backends.insert(pt.as_str().to_string(), backend).is_none() {
                proof_types.push(pt.as_str().to_string());
            } else {
                warn!(proof_type = %pt, "proof type listed twice; the last backend wins");
            }
        }
        let reconnect_min = config.reconnect_min.max(Duration::from_millis(1));
        let (running, _) = watch::channel(0u32);
        let shared = Arc::new(Shared {
            name: config.name,
            capacity: config.capacity,
            version: config.version,
            token: config.token,
            backends,
            proof_types,
            reconnect_min,
            reconnect_max: config.reconnect_max.max(reconnect_min),
            max_message_bytes: config.max_message_bytes.max(MIN_MESSAGE_BYTES),
            connect_timeout: config.connect_timeout,
            blob_reader: config.blob_reader,
            exit_on_shutdown: config.exit_on_shutdown,
            running,
            stats: StatsInner::default(),
        });
        Prover {
            shared,
            coordinators: config.coordinators,
            state_dir: config.state_dir,
        }
    }

    pub fn stats(&self) -> ProverStatsHandle {
        ProverStatsHandle(self.shared.clone())
    }

    /// Runs until `shutdown` resolves or every coordinator sent `Shutdown`.
    ///
    /// A coordinator's `Shutdown` stops taking its tasks, lets running ones finish within
    /// its grace period and sends their results before closing that stream for good.
    /// When `shutdown` resolves, new tasks are declined, results already finished get up
    /// to one second to be acknowledged, and running tasks are abandoned (their leases
    /// expire at the coordinator).
    ///
    /// Errors only on an invalid configuration; a coordinator that is down or rejects the
    /// prover is retried with backoff, never fatal.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> anyhow::Result<()> {
        let urls = self.validate()?;
        let state = match &self.state_dir {
            Some(dir) => Some(StateDir::open(dir)?),
            None => None,
        };
        let shared = self.shared;
        info!(
            name = %shared.name,
            capacity = shared.capacity,
            version = %shared.version,
            proof_types = ?shared.proof_types,
            coordinators = ?urls,
            state_dir = ?state.as_ref().map(|s| s.path()),
            "prover starting"
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = oneshot::channel::<anyhow::Result<()>>();
        let max_blocking = shared.capacity as usize + 16;
        std::thread::Builder::new()
            .name("proofmill-prover-net".to_string())
            .spawn(move || {
                let res = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .max_blocking_threads(max_blocking)
                    .thread_name("proofmill-prover")
                    .enable_all()
                    .build()
                    .context("building the prover runtime")
                    .map(|rt| {
                        rt.block_on(run_connections(shared, urls, state, stop_rx));
                        // Abandoned proving threads keep running until their backend returns;
                        // do not wait for them.
                        rt.shutdown_background();
                    });
                let _ = done_tx.send(res);
            })
            .context("spawning the prover network thread")?;

        let flatten = |r: Result<anyhow::Result<()>, oneshot::error::RecvError>| {
            r.unwrap_or_else(|_| bail!("prover network thread panicked"))
        };
        let shutdown = std::pin::pin!(shutdown);
        tokio::select! {
            r = &mut done_rx => return flatten(r),
            _ = shutdown => {
                info!("prover shutdown requested");
                let _ = stop_tx.send(true);
            }
        }
        let res = flatten(done_rx.await);
        info!("prover stopped");
        res
    }

    fn validate(&self) -> anyhow::Result<Vec<String>> {
        if self.coordinators.is_empty() {
            bail!("no coordinator URL given");
        }
        if self.shared.capacity == 0 {
            bail!("capacity must be at least 1");
        }
        if self.shared.backends.is_empty() {
            bail!("no proof type / backend configured");
        }
        let mut urls: Vec<String> = Vec::new();
        for url in &self.coordinators {
            let url = url.trim().to_string();
            tonic::transport::Endpoint::from_shared(url.clone())
                .with_context(|| format!("invalid coordinator URL {url:?}"))?;
            if urls.contains(&url) {
                warn!(%url, "coordinator listed twice; connecting once");
            } else {
                urls.push(url);
            }
        }
        Ok(urls)
    }
}

async fn run_connections(
    shared: Arc<Shared>,
    urls: Vec<String>,
    state: Option<StateDir>,
    stop: watch::Receiver<bool>,
) {
    let mut set = tokio::task::JoinSet::new();
    let groups = Arc::new(conn::Groups::default());
    for url in urls {
        let span = info_span!("coordinator", url = %url);
        let kept = state.as_ref().and_then(|s| match s.coordinator(&url) {
            Ok(kept) => Some(kept),
            Err(e) => {
                error!(%url, error = %e, "state dir unusable for this coordinator; a restart will register anew");
                None
            }
        });
        let conn = conn::Conn::new(url, groups.clone(), shared.clone(), stop.clone(), kept);
        set.spawn(conn.run().instrument(span));
    }
    while let Some(res) = set.join_next().await {
        if let Err(e) = res {
            error!(error = %e, "coordinator connection task failed");
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
