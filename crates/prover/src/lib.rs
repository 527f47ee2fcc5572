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
//! Every finished result (proof or error) is kept unacknowledged, per coordinator, until the
//! coordinator acknowledges it with a `ResultAck` for its task id and fencing token. After a
//! reconnect the prover presents `Reconnect{prover_id, running}` and resends every
//! unacknowledged result.
//!
//! # Limits
//!
//! Nothing a coordinator sends makes the prover's memory grow without bound:
//!
//! - messages to a coordinator wait in a bounded queue (the results a link may hold plus
//!   1024 replies); a coordinator that lets it fill does not read its stream, and the
//!   stream is closed and opened again (its results are kept and offered again);
//! - a link holds at most [`max_unacknowledged_results`] results and running tasks; beyond,
//!   new tasks are declined ("results await acknowledgement") until acks come;
//! - tasks collecting or proving hold a slot of the capacity, so there are at most
//!   `capacity` of them, and as many reports of finished proving threads;
//! - a chunked input is at most [`MAX_CHUNKED_INPUT_BYTES`], with at most
//!   [`MAX_CHUNKS_AHEAD`] chunks waiting for a gap before them;
//! - a link is handed at most as many URLs as the prover was given.
//!
//! # Glossary
//!
//! - [`Prover`]: the process's prover; [`ProverConfig`] configures it, and `Settings` is
//!   the part of that every link reads.
//! - `CoordinatorLink` (`link`): the prover's link to one coordinator, or to one store's
//!   active and standby coordinators (`Groups`): connects, reconnects with backoff, fails
//!   over, and keeps its `Identity` (prover id and reconnect secret) and its `Tasks` from
//!   one stream to the next.
//! - handshake: the first message of a stream (`Register`, or `Reconnect` with the tasks
//!   held) and the coordinator's `RegisterResponse`; `Registered` is a stream it accepted.
//! - `Session`: one registered stream: reads the coordinator's messages, sends replies
//!   through `Outgoing` (the bounded queue of messages to the coordinator), answers
//!   heartbeats, reports free slots, notices silence, drains at a `Shutdown`.
//! - `Tasks` (`tasks`): the task lifecycle of one link, from `ExecuteTask` to the answer to
//!   its result; a task is identified by its `Assignment` (task id and fencing token).
//! - `ProvingJob`, `Proved`: what a blocking proving thread gets, and reports back;
//!   `FinishedTask` is a task's `TaskOutput` (a proof or an error) with its proving time.
//! - `UnackedResults`: finished tasks whose result the coordinator has not answered for
//!   good, kept in memory and in the [`StateDir`].
//! - `Capacity`, `ProvingSlot`: the prover's slots, shared by all links; a task holds one
//!   while it is collected and proven.
//! - `Counters`, [`ProverStats`], [`ProverStatsHandle`]: what the prover counts, and the
//!   public view of it.

pub mod backoff;
mod capacity;
mod input;
mod link;
pub mod sim;
mod state;
mod stats;
mod tasks;

pub use input::MAX_CHUNKS_AHEAD;
pub use state::{StateDir, StateDirError};
pub use stats::{ProverStats, ProverStatsHandle};
pub use tasks::max_unacknowledged_results;

use anyhow::{Context as _, bail};
use capacity::Capacity;
use proofmill_backend::Backend;
use proofmill_types::ProofType;
use stats::Counters;
use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{oneshot, watch};
use tracing::{Instrument as _, error, info, info_span, warn};

/// Default reconnect backoff bounds.
pub const DEFAULT_RECONNECT_MIN: Duration = Duration::from_millis(100);
pub const DEFAULT_RECONNECT_MAX: Duration = Duration::from_secs(5);
/// Default longest wait between registrations refused for a reason only an operator can fix.
pub const DEFAULT_REFUSED_MAX: Duration = Duration::from_secs(300);
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
    /// Token sent in `Register` if set: the fleet's shared secret or this prover's own.
    pub token: Option<String>,
    /// TLS of `https://` coordinators (CA, client certificate for mutual TLS).
    pub tls: proofmill_proto::client::ClientTls,
    /// Proof types this prover serves and the backend proving each.
    pub backends: Vec<(ProofType, Arc<dyn Backend>)>,
    /// Reconnect backoff bounds (exponential, jittered).
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Longest wait after registrations refused for a reason only an operator can fix
    /// (credentials, version, proof types): the wait starts at `reconnect_max` and doubles
    /// per refusal up to this.
    pub refused_max: Duration,
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
            tls: Default::default(),
            backends: Vec::new(),
            reconnect_min: DEFAULT_RECONNECT_MIN,
            reconnect_max: DEFAULT_RECONNECT_MAX,
            refused_max: DEFAULT_REFUSED_MAX,
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
            .field("tls", &self.tls)
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
            .field("refused_max", &self.refused_max)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("connect_timeout", &self.connect_timeout)
            .field("blob_access", &self.blob_reader.is_some())
            .field("exit_on_shutdown", &self.exit_on_shutdown)
            .field("state_dir", &self.state_dir)
            .finish()
    }
}

/// What every link reads of the prover's configuration, fixed for the process's life.
pub(crate) struct Settings {
    pub name: String,
    pub capacity: u32,
    pub version: String,
    pub token: Option<String>,
    /// TLS of `https://` coordinators.
    pub tls: proofmill_proto::client::ClientTls,
    /// Proof type name → backend.
    pub backends: HashMap<String, Arc<dyn Backend>>,
    pub proof_types: Vec<String>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    pub refused_max: Duration,
    pub max_message_bytes: usize,
    pub connect_timeout: Duration,
    pub blob_reader: Option<Arc<dyn BlobReader>>,
    pub exit_on_shutdown: bool,
}

pub struct Prover {
    settings: Arc<Settings>,
    capacity: Arc<Capacity>,
    counters: Arc<Counters>,
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
        let settings = Arc::new(Settings {
            name: config.name,
            capacity: config.capacity,
            version: config.version,
            token: config.token,
            tls: config.tls,
            backends,
            proof_types,
            reconnect_min,
            reconnect_max: config.reconnect_max.max(reconnect_min),
            refused_max: config.refused_max,
            max_message_bytes: config.max_message_bytes.max(MIN_MESSAGE_BYTES),
            connect_timeout: config.connect_timeout,
            blob_reader: config.blob_reader,
            exit_on_shutdown: config.exit_on_shutdown,
        });
        Prover {
            capacity: Capacity::new(settings.capacity),
            settings,
            counters: Arc::default(),
            coordinators: config.coordinators,
            state_dir: config.state_dir,
        }
    }

    pub fn stats(&self) -> ProverStatsHandle {
        ProverStatsHandle::new(self.counters.clone(), self.capacity.clone())
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
        let settings = &self.settings;
        info!(
            name = %settings.name,
            capacity = settings.capacity,
            version = %settings.version,
            proof_types = ?settings.proof_types,
            coordinators = ?urls,
            state_dir = ?state.as_ref().map(|s| s.path()),
            "prover starting"
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let (done_tx, mut done_rx) = oneshot::channel::<anyhow::Result<()>>();
        let max_blocking = settings.capacity as usize + 16;
        let parts = (self.settings, self.capacity, self.counters);
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
                        rt.block_on(run_links(parts, urls, state, stop_rx));
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
        if self.settings.capacity == 0 {
            bail!("capacity must be at least 1");
        }
        if self.settings.backends.is_empty() {
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

async fn run_links(
    parts: (Arc<Settings>, Arc<Capacity>, Arc<Counters>),
    urls: Vec<String>,
    state: Option<StateDir>,
    stop: watch::Receiver<bool>,
) {
    let mut set = tokio::task::JoinSet::new();
    let groups = Arc::new(link::Groups::new(urls.len()));
    for url in urls {
        let span = info_span!("coordinator", url = %url);
        let kept = state.as_ref().and_then(|s| match s.coordinator(&url) {
            Ok(kept) => Some(kept),
            Err(e) => {
                error!(%url, error = %e, "state dir unusable for this coordinator; a restart will register anew");
                None
            }
        });
        let link =
            link::CoordinatorLink::new(url, groups.clone(), parts.clone(), stop.clone(), kept);
        set.spawn(link.run().instrument(span));
    }
    while let Some(res) = set.join_next().await {
        if let Err(e) = res {
            error!(error = %e, "coordinator link task failed");
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
