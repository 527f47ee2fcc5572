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

use crate::admission::{AdmissionConfig, Offer, ProveTimes, Refusal};
use crate::clock::ChainClock;
use crate::fetch::{FetchConfig, FetchError, InputsFetcher};
use crate::prove::{ProofService, ProofState, ProveError};
use crate::state::{Entry, NetworkState, StateError, Status, now_ms};
use crate::{Backoff, Shutdown};
use proofmill_market::{
    Address, MarketError, MarketEvent, MarketInputs, MarketL1, MarketRevert, MarketWatcher,
    RequestId, RequestStatus, U256, WatcherConfig, hex_hash,
};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// How a step of a request's task ended.
enum Step {
    /// Go on with the request's next status.
    Next,
    /// A transient error: try again after a backoff.
    Retry(String),
    /// Nothing more for this task.
    Done,
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

    /// One request's task (see the module documentation).
    async fn drive(self: Arc<Self>, id: RequestId, ack_timeout: u64, shutdown: Shutdown) {
        let mut work = Work::default();
        let mut backoff = Backoff::new(self.cfg.max_backoff);
        let mut reconciled = false;
        let mut was_proving = false;
        loop {
            if shutdown.is_begun() {
                break;
            }
            let Some(entry) = self.entry(id) else { break };
            if entry.status == Status::Closed && was_proving {
                // Timed out on L1 while proving: nobody will take the proof.
                self.cancel(id, "the request timed out on L1").await;
            }
            was_proving = matches!(entry.status, Status::Accepted | Status::Proving);
            let step = async {
                if !reconciled {
                    let s = self.reconcile(&entry).await;
                    reconciled = matches!(s, Step::Next);
                    return s;
                }
                match entry.status {
                    Status::Seen => self.admit(&entry, ack_timeout, &mut work).await,
                    Status::Accepted => self.hand_over(&entry, &mut work).await,
                    Status::Proving => self.prove_and_post(&entry, &mut work).await,
                    _ => Step::Done,
                }
            };
            // A step may wait long (a long poll, a transaction): shutdown does not wait for
            // it. What it sent and did not record, the next start reads back from L1.
            let step = tokio::select! {
                s = step => s,
                () = shutdown.begun() => break,
            };
            match step {
                Step::Next => backoff.reset(),
                Step::Done => break,
                Step::Retry(why) => {
                    let pause = backoff.next();
                    tracing::warn!(request = %id, error = %why, retry_in = ?pause, "request step failed");
                    // Any refusal or race on L1 sends the task back to L1's view first.
                    reconciled = false;
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.begun() => break,
                    }
                }
            }
        }
        self.shared.lock().unwrap().reserved.remove(&id);
    }

    /// Takes the request's status from L1: what a crash may have left unrecorded.
    async fn reconcile(&self, entry: &Entry) -> Step {
        let id = entry.id();
        let request = match self.market.request(id).await {
            Ok(r) => r,
            Err(e) => return Step::Retry(format!("reading the request: {e}")),
        };
        let Some(r) = request else {
            self.finish(id, Status::Closed, "no such request on L1");
            return Step::Done;
        };
        if r.network != self.me {
            self.finish(id, Status::Closed, format!("assigned to {}", r.network));
            return Step::Done;
        }
        if entry.submitted_at.is_none() {
            let _ = self.update(|s| {
                if let Some(e) = s.requests.get_mut(&id) {
                    e.submitted_at = Some(r.submitted_at);
                }
            });
        }
        match r.status {
            RequestStatus::PendingAcknowledgement => {}
            RequestStatus::Committed => {
                self.advance(id, Status::Accepted, |_| {});
            }
            RequestStatus::Refused => self.finish(id, Status::Refused, "refused on L1"),
            RequestStatus::TimedOut => self.finish(id, Status::Closed, "timed out on L1"),
            RequestStatus::Proven => {
                self.advance(id, Status::ProofPosted, |e| {
                    e.requested_reward = Some(r.reward.to_string())
                });
            }
            RequestStatus::Validated => {
                self.advance(id, Status::Validated, |e| {
                    e.requested_reward = Some(r.reward.to_string());
                    e.earned = Some(r.reward.to_string());
                });
            }
            RequestStatus::ValidationFailed => {
                self.advance(id, Status::Invalid, |e| {
                    e.reason = Some("the proof was found invalid".into())
                });
            }
            RequestStatus::Unknown(code) => {
                return Step::Retry(format!("request status {code} is not known here"));
            }
        }
        Step::Next
    }

    /// Admission, inputs, hand-over, then the acknowledgement (accept or refuse).
    async fn admit(&self, entry: &Entry, ack_timeout: u64, work: &mut Work) -> Step {
        let id = entry.id();
        let now = match self.now().await {
            Ok(t) => t,
            Err(e) => return Step::Retry(e),
        };
        let submitted_at = entry.submitted_at.unwrap_or(now);
        let ack_deadline = submitted_at.saturating_add(ack_timeout);
        if now > ack_deadline {
            self.finish(id, Status::Closed, "the acknowledgement window passed");
            return Step::Done;
        }
        let decision = {
            let mut shared = self.shared.lock().unwrap();
            let estimate = shared.times.estimate();
            let held = shared.state.as_ref().map_or(0, NetworkState::in_flight)
                + shared.reserved.iter().filter(|r| **r != id).count();
            let offer = Offer {
                protocol_version: &entry.protocol_version,
                max_reward: entry.max_reward(),
                deadline: entry.deadline,
            };
            let d = self.cfg.admission.decide(&offer, now, held, estimate);
            if d.is_ok() {
                shared.reserved.insert(id);
            }
            d
        };
        let decision = match decision {
            Ok(()) => {
                // Work before the acknowledgement stops in time for it.
                let budget = ack_deadline.saturating_sub(now + ACK_MARGIN_SECS);
                let prepared =
                    tokio::time::timeout(Duration::from_secs(budget), self.prepare(entry, work))
                        .await;
                match prepared {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(refusal)) => Err(refusal),
                    Err(_) => {
                        // It may be at the coordinator by now.
                        self.cancel(id, "not ready before the acknowledgement deadline")
                            .await;
                        Err(Refusal::BadInputs(
                            "not fetched and handed over before the acknowledgement deadline"
                                .into(),
                        ))
                    }
                }
            }
            Err(r) => Err(r),
        };
        let accept = decision.is_ok();
        let result = self.market.acknowledge(id, accept).await;
        let step = self.acknowledged(id, result, decision, work).await;
        // Only now: an accepted request holds its place as `proving` from here on.
        self.shared.lock().unwrap().reserved.remove(&id);
        step
    }

    /// Records the acknowledgement's outcome.
    async fn acknowledged(
        &self,
        id: RequestId,
        result: Result<proofmill_market::MarketTx, MarketError>,
        decision: Result<(), Refusal>,
        work: &mut Work,
    ) -> Step {
        match result {
            Ok(tx) => {
                let tx = hex_hash(&tx.tx_hash);
                match decision {
                    Ok(()) => {
                        tracing::info!(request = %id, tx = %tx, "request accepted");
                        self.advance(id, Status::Proving, |e| {
                            e.ack_tx = Some(tx);
                            e.proof_type = work.inputs.as_ref().map(|i| i.proof_type.clone());
                        });
                        // The coordinator holds them now (and they are fetched again if not).
                        work.inputs = None;
                        Step::Next
                    }
                    Err(refusal) => {
                        tracing::info!(request = %id, tx = %tx, %refusal, "request refused");
                        self.advance(id, Status::Refused, |e| {
                            e.ack_tx = Some(tx);
                            e.reason = Some(refusal.to_string());
                        });
                        Step::Done
                    }
                }
            }
            Err(MarketError::Refused {
                revert: MarketRevert::AcknowledgementTooLate { .. },
                ..
            }) => {
                self.cancel(id, "the acknowledgement came too late").await;
                self.finish(id, Status::Closed, "the acknowledgement came too late");
                Step::Done
            }
            Err(e) => {
                if decision.is_ok() && !e.is_transient() {
                    // Refused by L1: the coordinator need not prove it (handed over again if
                    // L1 says it is ours after all).
                    self.cancel(id, "the acknowledgement was refused").await;
                }
                Step::Retry(format!("acknowledging: {e}"))
            }
        }
    }

    /// Fetches and checks the inputs and hands them to the coordinator (before accepting:
    /// what it cannot take is refused, not given up later). Transient errors are retried
    /// until the caller's timeout.
    async fn prepare(&self, entry: &Entry, work: &mut Work) -> Result<(), Refusal> {
        let mut backoff = Backoff::new(self.cfg.max_backoff);
        loop {
            match self.inputs(entry, work).await {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    tracing::warn!(request = %entry.id(), error = %e, "fetching the inputs failed");
                    tokio::time::sleep(backoff.next()).await;
                }
                Err(e) => return Err(Refusal::BadInputs(e.to_string())),
            }
        }
        let inputs = work.inputs.as_ref().expect("fetched");
        if !self
            .cfg
            .admission
            .protocol_versions
            .contains(&inputs.program_version)
        {
            return Err(Refusal::UnknownVersion(inputs.program_version.clone()));
        }
        loop {
            match self.prover.submit(inputs).await {
                Ok(()) => {
                    work.proving_since = Some(Instant::now());
                    return Ok(());
                }
                Err(ProveError::Transient(e)) => {
                    tracing::warn!(request = %entry.id(), error = %e, "handing over failed");
                    tokio::time::sleep(backoff.next()).await;
                }
                Err(e) => {
                    return Err(Refusal::BadInputs(format!(
                        "the coordinator refuses them: {e}"
                    )));
                }
            }
        }
    }

    async fn inputs(&self, entry: &Entry, work: &mut Work) -> Result<(), FetchError> {
        if work.inputs.is_some() {
            return Ok(());
        }
        let digest = entry
            .digest()
            .ok_or_else(|| FetchError::Refused("the request's digest is not 32 bytes".into()))?;
        let inputs = self
            .fetcher
            .inputs(entry.id(), &entry.inputs_url, &digest)
            .await?;
        work.inputs = Some(inputs);
        Ok(())
    }

    /// The chain time after which no proof of `entry` is posted.
    fn last_post(&self, entry: &Entry) -> u64 {
        entry
            .deadline
            .saturating_sub(self.cfg.admission.deadline_margin_secs)
    }

    /// Accepted on L1 (before a restart) but maybe not at the coordinator: hands it over.
    async fn hand_over(&self, entry: &Entry, work: &mut Work) -> Step {
        let id = entry.id();
        match self.ensure_handed_over(entry, work).await {
            Ok(()) => {
                self.advance(id, Status::Proving, |_| {});
                Step::Next
            }
            Err(step) => step,
        }
    }

    async fn ensure_handed_over(&self, entry: &Entry, work: &mut Work) -> Result<(), Step> {
        let id = entry.id();
        let now = self.now().await.map_err(Step::Retry)?;
        if now > self.last_post(entry) {
            self.give_up(id, "not proven in time").await;
            return Err(Step::Done);
        }
        match self.inputs(entry, work).await {
            Ok(()) => {}
            Err(e) if e.is_transient() => return Err(Step::Retry(format!("fetching: {e}"))),
            Err(e) => {
                self.give_up(id, format!("inputs: {e}")).await;
                return Err(Step::Done);
            }
        }
        let inputs = work.inputs.as_ref().expect("fetched");
        match self.prover.submit(inputs).await {
            Ok(()) => {
                work.proving_since = Some(Instant::now());
                let proof_type = inputs.proof_type.clone();
                let _ = self.update(|s| {
                    if let Some(e) = s.requests.get_mut(&id) {
                        e.proof_type = Some(proof_type);
                    }
                });
                // The coordinator holds them now (and they are fetched again if not).
                work.inputs = None;
                Ok(())
            }
            Err(ProveError::Transient(e)) => Err(Step::Retry(format!("handing over: {e}"))),
            Err(e) => {
                self.give_up(id, format!("the coordinator refuses it: {e}"))
                    .await;
                Err(Step::Done)
            }
        }
    }

    /// Waits for the proof until the last moment to post it, then posts it.
    async fn prove_and_post(&self, entry: &Entry, work: &mut Work) -> Step {
        let id = entry.id();
        let proof_type = match (&entry.proof_type, &work.inputs) {
            (Some(t), _) => t.clone(),
            (None, Some(i)) => i.proof_type.clone(),
            // Accepted before a restart that lost the proof type: from the inputs again.
            (None, None) => match self.ensure_handed_over(entry, work).await {
                Ok(()) => return Step::Next,
                Err(step) => return step,
            },
        };
        while work.proof.is_none() {
            let now = match self.now().await {
                Ok(t) => t,
                Err(e) => return Step::Retry(e),
            };
            let last = self.last_post(entry);
            if now >= last {
                self.give_up(id, "not proven in time").await;
                return Step::Done;
            }
            let wait = Duration::from_secs(last - now).min(self.cfg.wait_step);
            match self
                .prover
                .wait(id.chain_id, id.batch, &proof_type, wait)
                .await
            {
                Ok(ProofState::Pending) => {}
                Ok(ProofState::Proven(proof)) => {
                    if let Some(since) = work.proving_since.take() {
                        self.record_prove_time(since.elapsed());
                    }
                    tracing::info!(request = %id, bytes = proof.len(), "proof ready");
                    work.proof = Some(proof);
                }
                Ok(ProofState::Failed(why)) => {
                    self.give_up(id, format!("proving failed: {why}")).await;
                    return Step::Done;
                }
                Err(ProveError::NotFound(_)) => {
                    // The coordinator lost it (or was another one): hand it over again.
                    if let Err(step) = self.ensure_handed_over(entry, work).await {
                        return step;
                    }
                }
                Err(ProveError::Transient(e)) => return Step::Retry(format!("waiting: {e}")),
                Err(e) => {
                    self.give_up(id, format!("proving: {e}")).await;
                    return Step::Done;
                }
            }
        }
        self.post_proof(entry, work).await
    }

    async fn post_proof(&self, entry: &Entry, work: &mut Work) -> Step {
        let id = entry.id();
        let now = match self.now().await {
            Ok(t) => t,
            Err(e) => return Step::Retry(e),
        };
        if now >= self.last_post(entry) {
            self.give_up(id, "proven too late to post").await;
            return Step::Done;
        }
        let max = entry.max_reward();
        let reward = self.cfg.ask_reward.map_or(max, |a| a.min(max));
        let proof = work.proof.as_deref().expect("proven");
        match self.market.submit_proof(id, proof, reward).await {
            Ok(tx) => {
                let tx = hex_hash(&tx.tx_hash);
                tracing::info!(request = %id, tx = %tx, %reward, "proof posted");
                self.advance(id, Status::ProofPosted, |e| {
                    e.proof_tx = Some(tx);
                    e.requested_reward = Some(reward.to_string());
                });
                Step::Done
            }
            Err(MarketError::Refused {
                revert: MarketRevert::ProofAlreadySubmitted(_),
                ..
            }) => {
                self.advance(id, Status::ProofPosted, |_| {});
                Step::Done
            }
            Err(MarketError::Refused {
                revert: MarketRevert::ProofTooLate { .. },
                ..
            }) => {
                self.finish(
                    id,
                    Status::GivenUp,
                    "the deadline passed before the proof was posted",
                );
                Step::Done
            }
            Err(e) => Step::Retry(format!("posting the proof: {e}")),
        }
    }

    fn record_prove_time(&self, took: Duration) {
        let secs = took.as_secs().max(1);
        let recent = {
            let mut shared = self.shared.lock().unwrap();
            shared.times.record(secs);
            shared.times.recent()
        };
        let _ = self.update(|s| s.prove_secs = recent);
    }

    /// Gives a request up (never posted late) and stops its proving.
    async fn give_up(&self, id: RequestId, why: impl Into<String>) {
        let why = why.into();
        self.cancel(id, &why).await;
        self.finish(id, Status::GivenUp, why);
    }

    /// Best effort: the coordinator stops proving a batch nobody will post.
    async fn cancel(&self, id: RequestId, why: &str) {
        if let Err(e) = self.prover.cancel(id.chain_id, id.batch, why).await {
            tracing::info!(request = %id, error = %e, "cancelling at the coordinator failed");
        }
    }

    /// Claims what validated proofs earned: once per earning (the contract pays everything
    /// earned at once, and only once).
    async fn claim(&self) {
        let validated: Vec<RequestId> = {
            let shared = self.shared.lock().unwrap();
            let Some(state) = shared.state.as_ref() else {
                return;
            };
            state
                .requests
                .values()
                .filter(|e| e.status == Status::Validated)
                .map(|e| e.id())
                .collect()
        };
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

/// What a request's task holds in memory between steps (lost at a restart, fetched again).
#[derive(Default)]
struct Work {
    inputs: Option<MarketInputs>,
    proof: Option<Vec<u8>>,
    /// When this process handed the batch over (its prove time is measured from there).
    proving_since: Option<Instant>,
}

/// The order of statuses: a request only moves up.
fn rank(s: Status) -> u8 {
    match s {
        Status::Seen => 0,
        Status::Accepted => 1,
        Status::Proving => 2,
        Status::ProofPosted => 3,
        Status::Validated => 4,
        Status::Claimed | Status::Refused | Status::Invalid | Status::GivenUp | Status::Closed => {
            10
        }
    }
}

/// One of this network's events into the state.
fn apply_event(s: &mut NetworkState, event: &MarketEvent) {
    let now = now_ms();
    let mut set = |id: &RequestId, status: Status, f: &dyn Fn(&mut Entry)| {
        if let Some(e) = s.requests.get_mut(id)
            && rank(status) > rank(e.status)
        {
            tracing::info!(request = %id, from = ?e.status, to = ?status, "request status (event)");
            e.status = status;
            e.updated_at_ms = now;
            f(e);
        }
    };
    match event {
        MarketEvent::Submitted {
            id,
            protocol_version,
            inputs_url,
            inputs_digest,
            deadline,
            max_reward,
            ..
        } => {
            if s.requests.contains_key(id) {
                return;
            }
            tracing::info!(request = %id, %max_reward, deadline, "request assigned to this network");
            s.requests.insert(
                *id,
                Entry {
                    chain_id: id.chain_id,
                    batch: id.batch,
                    status: Status::Seen,
                    protocol_version: protocol_version.clone(),
                    inputs_url: inputs_url.clone(),
                    inputs_digest: hex::encode(inputs_digest),
                    deadline: *deadline,
                    max_reward: max_reward.to_string(),
                    submitted_at: None,
                    proof_type: None,
                    ack_tx: None,
                    proof_tx: None,
                    claim_tx: None,
                    requested_reward: None,
                    earned: None,
                    reason: None,
                    updated_at_ms: now,
                },
            );
        }
        MarketEvent::Proven {
            at,
            id,
            requested_reward,
            ..
        } => set(id, Status::ProofPosted, &|e| {
            e.proof_tx.get_or_insert_with(|| hex_hash(&at.tx_hash));
            e.requested_reward = Some(requested_reward.to_string());
        }),
        MarketEvent::ValidationResult {
            id, valid, reward, ..
        } => {
            if *valid {
                set(id, Status::Validated, &|e| {
                    e.earned = Some(reward.to_string())
                });
            } else {
                set(id, Status::Invalid, &|e| {
                    e.reason = Some("the proof was found invalid".into())
                });
            }
        }
        MarketEvent::TimedOut { id, .. } => set(id, Status::Closed, &|e| {
            e.reason = Some("timed out on L1".into())
        }),
        MarketEvent::RewardClaimed { amount, .. } => {
            tracing::info!(%amount, "reward paid");
        }
        MarketEvent::Acknowledged { .. }
        | MarketEvent::NetworkUpdated { .. }
        | MarketEvent::PreferredNetworkUpdated { .. } => {}
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

#[cfg(test)]
mod tests {
    use super::*;
    use proofmill_market::LogPosition;

    fn at(block: u64) -> LogPosition {
        LogPosition {
            block,
            log_index: 0,
            tx_hash: [block as u8; 32],
        }
    }

    fn submitted(batch: u64) -> MarketEvent {
        MarketEvent::Submitted {
            at: at(1),
            id: RequestId::new(7, batch),
            network: Address::repeat_byte(2),
            protocol_version: "v1".into(),
            inputs_url: "https://x/1".into(),
            inputs_digest: [3; 32],
            deadline: 1_000,
            max_reward: U256::from(50),
        }
    }

    /// Events read again (a crash before the cursor was saved) never move a request back,
    /// and a request the state does not know is not made up from a later event.
    #[test]
    fn events_only_move_a_request_forward() {
        let mut s = NetworkState::new(Address::ZERO, Address::repeat_byte(2), 0);
        let id = RequestId::new(7, 1);
        apply_event(&mut s, &submitted(1));
        assert_eq!(s.requests[&id].status, Status::Seen);
        assert_eq!(s.requests[&id].max_reward(), U256::from(50));
        assert_eq!(s.requests[&id].digest(), Some([3; 32]));
        let proven = MarketEvent::Proven {
            at: at(5),
            id,
            network: Address::repeat_byte(2),
            proof: vec![1],
            requested_reward: U256::from(40),
        };
        apply_event(&mut s, &proven);
        assert_eq!(s.requests[&id].status, Status::ProofPosted);
        assert_eq!(s.requests[&id].proof_tx, Some(hex_hash(&[5; 32])));
        let validated = MarketEvent::ValidationResult {
            at: at(6),
            id,
            network: Address::repeat_byte(2),
            valid: true,
            reward: U256::from(40),
        };
        apply_event(&mut s, &validated);
        assert_eq!(s.requests[&id].status, Status::Validated);
        assert_eq!(s.requests[&id].earned.as_deref(), Some("40"));
        // The same range read again: nothing changes.
        let before = s.clone();
        for e in [submitted(1), proven.clone(), validated] {
            apply_event(&mut s, &e);
        }
        assert_eq!(s, before);
        // A time-out of a finished or unknown request changes nothing either.
        s.requests.get_mut(&id).unwrap().status = Status::Claimed;
        let before = s.clone();
        for batch in [1, 2] {
            apply_event(
                &mut s,
                &MarketEvent::TimedOut {
                    at: at(9),
                    id: RequestId::new(7, batch),
                    network: Address::repeat_byte(2),
                },
            );
        }
        assert_eq!(s, before);
        assert_eq!(rank(Status::Seen), 0);
        assert!(rank(Status::Proving) < rank(Status::ProofPosted));
        assert!(rank(Status::Validated) < rank(Status::Claimed));
    }
}
