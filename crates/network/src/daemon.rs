//! The network's daemon: one loop reads the market's events from the durable cursor (requests
//! assigned to this network, their proofs, validations, time-outs), saves them with the
//! cursor in one write, claims earned rewards, and starts one task per open request.
//!
//! A request's task takes it as far as it can go:
//! `seen` → (admission; inputs fetched and checked; handed to the coordinator) →
//! acknowledged on L1: `proving` (or `refused`) → the coordinator's proof, posted on L1 before
//! `deadline - margin`: `proof_posted` (or `given_up`). Validation and the claim come from the
//! loop. Each task first reads the request on L1 and takes its status from there, so a
//! restart never acknowledges or posts twice; every state is saved before the next step.
//! Errors of the L1 node or the coordinator are logged and retried with backoff, within the
//! request's own time limits; one request's failure never touches another.
//!
//! Here: the loop, the state's keeping and the claims; a request's task in [`request`], what
//! the events do to the state in [`events`].

use crate::admission::{AdmissionConfig, ProveTimes};
use crate::clock::ChainClock;
use crate::fetch::{FetchConfig, InputsFetcher};
use crate::prove::ProofService;
use crate::state::{EARNED_BY_DEFAULT, Entry, NetworkState, StateError, Status, now_ms};
use crate::{Backoff, Shutdown};
use proofmill_market::{
    Address, MarketError, MarketEvent, MarketL1, MarketRevert, MarketWatcher, RequestId,
    RequestStatus, U256, WatcherConfig, hex_hash,
};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod events;
mod request;

use events::{apply_event, rank};

/// Seconds kept before the acknowledgement deadline for the acknowledgement itself (two L1
/// blocks): work before it (fetching, handing over) stops there.
const ACK_MARGIN_SECS: u64 = 24;
/// Requests being admitted (read, checked, acknowledged) at once, beyond the accepted ones.
const MAX_ADMITTING: usize = 32;

/// Everything the daemon is told.
#[derive(Clone, Debug)]
pub struct NetworkConfig {
    pub admission: AdmissionConfig,
    /// The reward asked when posting a proof, wei (capped at the request's `max_reward`);
    /// `None`: the request's `max_reward`.
    pub ask_reward: Option<U256>,
    /// The prove time expected before any was measured, seconds.
    pub expected_prove_secs: u64,
    pub watcher: WatcherConfig,
    /// The first block read when the state directory is new (default: the first block of
    /// the market's last acknowledgement timeout).
    pub from_block: Option<u64>,
    /// Between polls of the market's events once caught up.
    pub poll_interval: Duration,
    pub fetch: FetchConfig,
    /// Where the state file lives (created if missing).
    pub state_dir: PathBuf,
    /// Longest wait between retries after an error.
    pub max_backoff: Duration,
    /// Longest single wait for a proof at the coordinator (a long poll; the deadline is
    /// checked between two).
    pub wait_step: Duration,
}

impl NetworkConfig {
    pub fn new(state_dir: impl Into<PathBuf>) -> NetworkConfig {
        NetworkConfig {
            admission: AdmissionConfig::default(),
            ask_reward: None,
            expected_prove_secs: 60,
            watcher: WatcherConfig::default(),
            from_block: None,
            poll_interval: Duration::from_secs(2),
            fetch: FetchConfig::default(),
            state_dir: state_dir.into(),
            max_backoff: Duration::from_secs(30),
            wait_step: Duration::from_secs(30),
        }
    }
}

/// Why the daemon stopped other than by its shutdown signal.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error("{0}")]
    Config(String),
    /// A state change could not be saved: going on could act twice after a restart.
    #[error("the network's state could not be saved: {0}")]
    Unsaved(String),
}

/// The proving network's daemon (see the module documentation).
pub struct Network {
    inner: Arc<Inner>,
}

struct Inner {
    market: Arc<dyn MarketL1>,
    prover: Arc<dyn ProofService>,
    fetcher: InputsFetcher,
    cfg: NetworkConfig,
    me: Address,
    shared: Mutex<Shared>,
    clock: Mutex<ChainClock>,
}

struct Shared {
    /// `None` until the daemon has read its state (or made one).
    state: Option<NetworkState>,
    times: ProveTimes,
    /// Requests between admission and their acknowledgement: they hold a place too.
    reserved: HashSet<RequestId>,
    /// A state write failed: the daemon stops (going on could act twice after a restart).
    fatal: Option<String>,
}

impl Network {
    /// A daemon acting as `market.sender()`, proving with `prover`.
    pub fn new(
        market: Arc<dyn MarketL1>,
        prover: Arc<dyn ProofService>,
        cfg: NetworkConfig,
    ) -> Result<Network, NetworkError> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(|source| StateError::Io {
            path: cfg.state_dir.clone(),
            source,
        })?;
        let fetcher = InputsFetcher::new(&cfg.fetch).map_err(NetworkError::Config)?;
        if cfg.admission.max_in_flight == 0 {
            return Err(NetworkError::Config(
                "max in flight must be at least 1".into(),
            ));
        }
        let me = market.sender();
        let times = ProveTimes::new(cfg.expected_prove_secs, &[]);
        Ok(Network {
            inner: Arc::new(Inner {
                market,
                prover,
                fetcher,
                me,
                shared: Mutex::new(Shared {
                    state: None,
                    times,
                    reserved: HashSet::new(),
                    fatal: None,
                }),
                clock: Mutex::new(ChainClock::default()),
                cfg,
            }),
        })
    }

    /// The network's address.
    pub fn address(&self) -> Address {
        self.inner.me
    }

    /// Runs until `shutdown` (then waits for the requests' tasks to stop), or until the state
    /// cannot be written.
    pub async fn run(self, shutdown: Shutdown) -> Result<(), NetworkError> {
        let inner = self.inner;
        let Some((ack_timeout, mut cursor)) = inner.open(&shutdown).await? else {
            return Ok(());
        };
        let mut watcher = MarketWatcher::new(inner.market.clone(), inner.cfg.watcher);
        let mut tasks: HashMap<RequestId, tokio::task::JoinHandle<()>> = HashMap::new();
        let mut backoff = Backoff::new(inner.cfg.max_backoff);
        tracing::info!(network = %inner.me, market = %inner.market.market_address(), cursor, "proving network started");
        let result = loop {
            if shutdown.is_begun() {
                break Ok(());
            }
            if let Some(fatal) = inner.shared.lock().unwrap().fatal.clone() {
                break Err(NetworkError::Unsaved(fatal));
            }
            let mut pause = inner.cfg.poll_interval;
            let polled = tokio::select! {
                p = watcher.poll(cursor) => p,
                () = shutdown.begun() => break Ok(()),
            };
            match polled {
                Ok(batch) => {
                    if let Err(e) = inner.apply_events(&batch.events, batch.last_processed) {
                        break Err(e.into());
                    }
                    cursor = batch.last_processed;
                    backoff.reset();
                    if !batch.caught_up {
                        pause = Duration::ZERO;
                    }
                }
                Err(e) => {
                    pause = backoff.next();
                    tracing::warn!(error = %e, retry_in = ?pause, "reading the market's events failed");
                }
            }
            tasks.retain(|_, t| !t.is_finished());
            // Accepted requests first; new ones (each refused or accepted in a few calls)
            // a bounded number at a time, however many arrive at once.
            let cap = inner.cfg.admission.max_in_flight + MAX_ADMITTING;
            for id in inner.open_requests() {
                if tasks.len() >= cap {
                    break;
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = tasks.entry(id) {
                    let (inner, shutdown) = (inner.clone(), shutdown.clone());
                    slot.insert(tokio::spawn(async move {
                        inner.drive(id, ack_timeout, shutdown).await
                    }));
                }
            }
            inner.close_unvalidated().await;
            inner.claim().await;
            inner.prune();
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = shutdown.begun() => {}
            }
        };
        if result.is_err() {
            shutdown.begin();
        }
        for (_, t) in tasks {
            let _ = t.await;
        }
        tracing::info!(network = %inner.me, "proving network stopped");
        result
    }
}

impl Inner {
    /// Reads the market's settings and the state (or starts one): the ack timeout and the
    /// cursor; `None` at shutdown.
    async fn open(&self, shutdown: &Shutdown) -> Result<Option<(u64, u64)>, NetworkError> {
        let market = self.market.market_address();
        let dir = &self.cfg.state_dir;
        let loaded = NetworkState::load(dir, market, self.me)?;
        let mut backoff = Backoff::new(self.cfg.max_backoff);
        loop {
            let read = async {
                let settings = self.market.settings().await?;
                let head = self.market.head().await?;
                // A new state directory without --from-block reads from the first block of
                // the last acknowledgement window: a request assigned before the first start
                // that can still be acknowledged is seen.
                let window_start = match (&loaded, self.cfg.from_block) {
                    (None, None) => {
                        let since = head.timestamp.saturating_sub(settings.ack_timeout);
                        first_block_since(self.market.as_ref(), since, head.number).await?
                    }
                    _ => head.number,
                };
                Ok::<_, MarketError>((settings, head, window_start))
            };
            match read.await {
                Ok((settings, head, window_start)) => {
                    self.clock
                        .lock()
                        .unwrap()
                        .observe(head.number, head.timestamp);
                    let state = match loaded {
                        Some(s) => {
                            if self.cfg.from_block.is_some() {
                                tracing::info!(
                                    cursor = s.cursor,
                                    "the state directory has a cursor: --from-block is not used"
                                );
                            }
                            s
                        }
                        None => {
                            let cursor = match self.cfg.from_block {
                                Some(b) => b.saturating_sub(1),
                                None => window_start.saturating_sub(1),
                            };
                            let s = NetworkState::new(market, self.me, cursor);
                            s.save(dir)?;
                            s
                        }
                    };
                    let cursor = state.cursor;
                    let mut shared = self.shared.lock().unwrap();
                    shared.times = ProveTimes::new(self.cfg.expected_prove_secs, &state.prove_secs);
                    shared.state = Some(state);
                    return Ok(Some((settings.ack_timeout, cursor)));
                }
                Err(e) => {
                    let pause = backoff.next();
                    tracing::warn!(error = %e, retry_in = ?pause, "reading the market failed");
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.begun() => return Ok(None),
                    }
                }
            }
        }
    }

    /// Changes the state with `f` and saves it; a failed save stops the daemon.
    fn update<R>(&self, f: impl FnOnce(&mut NetworkState) -> R) -> Result<R, StateError> {
        let mut shared = self.shared.lock().unwrap();
        let state = shared.state.as_mut().expect("opened");
        let r = f(state);
        if let Err(e) = state.save(&self.cfg.state_dir) {
            tracing::error!(error = %e, "cannot save the network's state: stopping");
            shared.fatal = Some(e.to_string());
            return Err(e);
        }
        Ok(r)
    }

    fn entry(&self, id: RequestId) -> Option<Entry> {
        let shared = self.shared.lock().unwrap();
        shared.state.as_ref()?.requests.get(&id).cloned()
    }

    /// Moves request `id` to `status` (and changes it with `f`), unless it is finished or
    /// further already.
    fn advance(&self, id: RequestId, status: Status, f: impl FnOnce(&mut Entry)) -> bool {
        let moved = self.update(|s| match s.requests.get_mut(&id) {
            Some(e) if rank(status) > rank(e.status) => {
                tracing::info!(request = %id, from = ?e.status, to = ?status, reason = ?e.reason, "request status");
                e.status = status;
                e.updated_at_ms = now_ms();
                f(e);
                true
            }
            _ => false,
        });
        moved.unwrap_or(false)
    }

    fn finish(&self, id: RequestId, status: Status, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::warn!(request = %id, ?status, %reason, "request finished without a proof");
        self.advance(id, status, |e| e.reason = Some(reason));
    }

    /// Requests a task must move on.
    fn open_requests(&self) -> Vec<RequestId> {
        let shared = self.shared.lock().unwrap();
        let Some(state) = shared.state.as_ref() else {
            return Vec::new();
        };
        let mut open: Vec<&Entry> = state
            .requests
            .values()
            .filter(|e| matches!(e.status, Status::Seen | Status::Accepted | Status::Proving))
            .collect();
        // Accepted ones first, then the new ones by deadline.
        open.sort_by_key(|e| (e.status == Status::Seen, e.deadline));
        open.into_iter().map(Entry::id).collect()
    }

    /// What `f` takes of each request in `status`, now.
    fn requests_in<T>(&self, status: Status, f: impl Fn(&Entry) -> T) -> Vec<T> {
        let shared = self.shared.lock().unwrap();
        let Some(state) = shared.state.as_ref() else {
            return Vec::new();
        };
        state
            .requests
            .values()
            .filter(|e| e.status == status)
            .map(f)
            .collect()
    }

    /// Takes in the events of a block range and its cursor, in one write.
    fn apply_events(&self, events: &[MarketEvent], cursor: u64) -> Result<(), StateError> {
        let me = self.me;
        self.update(|s| {
            for event in events {
                if event.network() != Some(me) {
                    continue;
                }
                apply_event(s, event);
            }
            s.cursor = cursor;
        })
    }

    /// Chain time now: a fresh head when the node answers, else the clock's reckoning.
    async fn now(&self) -> Result<u64, String> {
        match self.market.head().await {
            Ok(h) => {
                let mut clock = self.clock.lock().unwrap();
                clock.observe(h.number, h.timestamp);
                Ok(clock.now().unwrap_or(h.timestamp))
            }
            Err(e) => match self.clock.lock().unwrap().now() {
                Some(t) => Ok(t),
                None => Err(format!("reading the chain's head: {e}")),
            },
        }
    }

    /// Closes the requests whose posted proof the rollup left unanswered past the market's
    /// validation timeout: the contract then pays the network what it asked, as if validated.
    /// A rollup cannot keep a network's pay by staying silent. Each proof's validation
    /// deadline is read from L1 once; a close the contract refuses (too early by the node's
    /// clock, or validated meanwhile: its event comes) is tried again next round or dropped.
    async fn close_unvalidated(&self) {
        let posted = self.requests_in(Status::ProofPosted, |e| (e.id(), e.validation_deadline));
        if posted.is_empty() {
            return;
        }
        let now = match self.now().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "reading the chain's time failed");
                return;
            }
        };
        for (id, due) in posted {
            let due = match due {
                Some(due) => due,
                None => match self.market.request(id).await {
                    Ok(Some(r)) if r.status == RequestStatus::Proven => {
                        let due = r.validation_deadline;
                        let saved = self.update(|s| {
                            if let Some(e) = s.requests.get_mut(&id) {
                                e.validation_deadline = Some(due);
                            }
                        });
                        if saved.is_err() {
                            return;
                        }
                        due
                    }
                    // Answered or closed meanwhile: its event moves the request on.
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(request = %id, error = %e, "reading the request failed");
                        continue;
                    }
                },
            };
            if now <= due {
                continue;
            }
            match self.market.close_unvalidated_request(id).await {
                Ok(tx) => {
                    let tx = hex_hash(&tx.tx_hash);
                    tracing::warn!(request = %id, tx = %tx, validation_deadline = due, "the rollup did not answer the proof in time: closed, the reward is earned");
                    self.advance(id, Status::Validated, |e| {
                        e.earned = e.requested_reward.clone();
                        e.reason = Some(EARNED_BY_DEFAULT.into());
                    });
                }
                Err(MarketError::Refused { revert, .. }) => {
                    tracing::info!(request = %id, refusal = %revert, "closing the unanswered proof was refused");
                }
                Err(e) => {
                    tracing::warn!(request = %id, error = %e, "closing the unanswered proof failed");
                }
            }
        }
    }

    /// Claims what validated proofs earned: once per earning (the contract pays everything
    /// earned at once, and only once).
    async fn claim(&self) {
        let validated = self.requests_in(Status::Validated, Entry::id);
        if validated.is_empty() {
            return;
        }
        // Read after the validations were seen: what they earned is in it, unless claimed.
        let earned = match self.market.earned(self.me).await {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(error = %e, "reading the earned rewards failed");
                return;
            }
        };
        let tx = if earned.is_zero() {
            // Claimed already (before a restart), or they earned nothing.
            None
        } else {
            match self.market.claim_reward().await {
                Ok(tx) => {
                    let tx = hex_hash(&tx.tx_hash);
                    tracing::info!(amount = %earned, tx = %tx, requests = validated.len(), "reward claimed");
                    Some(tx)
                }
                Err(MarketError::Refused {
                    revert: MarketRevert::NothingToClaim { .. },
                    ..
                }) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming the reward failed");
                    return;
                }
            }
        };
        for id in validated {
            self.advance(id, Status::Claimed, |e| e.claim_tx = tx.clone());
        }
    }

    fn prune(&self) {
        let mut shared = self.shared.lock().unwrap();
        if let Some(s) = shared.state.as_mut() {
            let before = s.requests.len();
            s.prune(crate::state::KEEP_FINISHED);
            if s.requests.len() != before
                && let Err(e) = s.save(&self.cfg.state_dir)
            {
                shared.fatal = Some(e.to_string());
            }
        }
    }
}

/// The first block stamped at `since` or later, at most `head` (a binary search over the
/// blocks' timestamps, which never decrease).
async fn first_block_since(
    market: &dyn MarketL1,
    since: u64,
    head: u64,
) -> Result<u64, MarketError> {
    let (mut lo, mut hi) = (0u64, head);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if market.block(mid).await?.timestamp >= since {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}
