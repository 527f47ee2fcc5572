//! What the monitor shows, updated from status snapshots and watch events; no IO here, so a
//! test builds a model from fixture messages and checks it (and its rendering).

use proofmill_proto::v1::watch_event::Event;
use proofmill_proto::v1::{
    JobCounts, JobInfo, PausedComponent, ProverInfo, StatusWarning, SystemStatusResponse,
    VerifyTxInfo, WatchEvent,
};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;

/// Job rows kept (the newest batches'); older rows are dropped as new ones come in.
pub const MAX_JOBS: usize = 1000;
/// Lines of the event log kept.
pub const MAX_EVENTS: usize = 200;
/// Running attempts remembered (to tie an attempt's end to its job and prover).
pub const MAX_ATTEMPTS: usize = 4096;
/// Settlement transactions remembered (to name the verify tx of a batch row).
pub const MAX_VERIFY_TXS: usize = 32;
/// Throughput is counted in buckets of this many ms, over `THROUGHPUT_BUCKETS` buckets.
pub const THROUGHPUT_BUCKET_MS: u64 = 10_000;
pub const THROUGHPUT_BUCKETS: usize = 30;
/// The component `p` pauses and `s` resumes.
pub const SENDER: &str = "sender";

/// What one refresh read from the coordinator.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub status: SystemStatusResponse,
    /// The newest jobs (JobsList), any order.
    pub jobs: Vec<JobInfo>,
    /// Per proof type, when its oldest queued job was last updated (Unix ms).
    pub oldest_queued_ms: BTreeMap<String, u64>,
}

/// The table that arrow keys move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Focus {
    Jobs,
    Provers,
}

/// A key, as the monitor understands it (the terminal loop maps its events to these).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    Char(char),
    Tab,
    Up,
    Down,
    PageUp,
    PageDown,
    Home,
    End,
    Esc,
}

/// An admin call a key asks for; the terminal loop runs it and reports with
/// [`Model::action_done`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `prover` is the id the call takes; `name` is for the operator.
    Cordon {
        prover: String,
        name: String,
        cordoned: bool,
    },
    Retry {
        batch: u64,
        proof_type: String,
    },
    Cancel {
        batch: u64,
        proof_type: String,
    },
    Pause {
        component: String,
    },
    Resume {
        component: String,
    },
}

impl Action {
    /// What it does, for the status line.
    pub fn describe(&self) -> String {
        match self {
            Action::Cordon {
                name,
                cordoned: true,
                ..
            } => format!("cordon {name}"),
            Action::Cordon { name, .. } => format!("uncordon {name}"),
            Action::Retry { batch, proof_type } => format!("retry job {batch}/{proof_type}"),
            Action::Cancel { batch, proof_type } => format!("cancel job {batch}/{proof_type}"),
            Action::Pause { component } => format!("pause {component}"),
            Action::Resume { component } => format!("resume {component}"),
        }
    }
}

/// What a key press asks of the loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOutcome {
    Nothing,
    Quit,
    Run(Action),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub at_ms: u64,
    pub severity: Severity,
    pub text: String,
}

/// One job, as the batches table shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobRow {
    pub batch: u64,
    pub proof_type: String,
    pub state: String,
    /// Prover holding its lease, or that proved it (a name when known, else its id).
    pub prover: String,
    /// What the prover reported the proof took.
    pub prove_ms: Option<u64>,
    pub failed_attempts: u32,
    pub last_error: String,
    /// The batch's commit transaction on L1, as JobsList names it (once recorded).
    pub commit_tx: Option<String>,
    /// The settling transaction that verified the batch, as JobsList names it.
    pub verify_tx: Option<String>,
}

#[derive(Debug, Clone)]
struct Attempt {
    batch: u64,
    proof_type: String,
    prover_id: String,
    prover_name: String,
}

/// The status line: the last action's result, or a problem of the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusLine {
    pub text: String,
    pub error: bool,
}

#[derive(Debug)]
pub struct Model {
    coordinator: String,
    now_ms: u64,
    status: SystemStatusResponse,
    has_status: bool,
    /// Sorted by name, then id.
    provers: Vec<ProverInfo>,
    jobs: BTreeMap<(u64, String), JobRow>,
    attempts: HashMap<u64, Attempt>,
    attempt_order: VecDeque<u64>,
    verify_txs: VecDeque<VerifyTxInfo>,
    oldest_queued_ms: BTreeMap<String, u64>,
    /// (bucket start, proofs) oldest first, at most THROUGHPUT_BUCKETS.
    throughput: VecDeque<(u64, u64)>,
    events: VecDeque<LogLine>,
    focus: Focus,
    /// The selected rows, by key: a row keeps its selection while new batches and provers
    /// come in above it (a key acts on what the operator chose). None: the first row.
    selected_job: Option<(u64, String)>,
    selected_prover: Option<String>,
    status_line: Option<StatusLine>,
    /// Why the last status read failed; cleared by the next snapshot.
    feed_error: Option<String>,
    feed: String,
    needs_refresh: bool,
}

impl Model {
    pub fn new(coordinator: impl Into<String>) -> Self {
        Model {
            coordinator: coordinator.into(),
            now_ms: 0,
            status: SystemStatusResponse::default(),
            has_status: false,
            provers: Vec::new(),
            jobs: BTreeMap::new(),
            attempts: HashMap::new(),
            attempt_order: VecDeque::new(),
            verify_txs: VecDeque::new(),
            oldest_queued_ms: BTreeMap::new(),
            throughput: VecDeque::new(),
            events: VecDeque::new(),
            focus: Focus::Jobs,
            selected_job: None,
            selected_prover: None,
            status_line: None,
            feed_error: None,
            feed: "connecting".into(),
            needs_refresh: true,
        }
    }

    /// The clock the ages and the throughput window are measured against (Unix ms).
    pub fn tick(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
        self.trim_throughput();
    }

    /// Replaces what the snapshot covers: chain, counts, provers, the newest jobs.
    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        let Snapshot {
            status,
            jobs,
            oldest_queued_ms,
        } = snapshot;
        self.provers = status.provers.clone();
        self.provers
            .sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        if let Some(tx) = &status.last_verify_tx {
            self.remember_verify_tx(tx.clone());
        }
        self.status = status;
        self.has_status = true;
        for job in jobs {
            let key = (job.batch, job.proof_type.clone());
            let known = self.jobs.get(&key);
            let row = JobRow {
                batch: job.batch,
                proof_type: job.proof_type,
                state: job.state,
                prover: if job.lease_owner.is_empty() {
                    known.map(|r| r.prover.clone()).unwrap_or_default()
                } else {
                    self.prover_label(&job.lease_owner)
                },
                prove_ms: known.and_then(|r| r.prove_ms),
                failed_attempts: job.failed_attempts,
                last_error: job.last_error,
                // A record does not go away: one read before stays.
                commit_tx: job
                    .commit_tx
                    .map(|t| t.tx_hash)
                    .or_else(|| known.and_then(|r| r.commit_tx.clone())),
                verify_tx: job
                    .verify_tx
                    .map(|t| t.tx_hash)
                    .or_else(|| known.and_then(|r| r.verify_tx.clone())),
            };
            self.jobs.insert(key, row);
        }
        self.trim_jobs();
        self.oldest_queued_ms = oldest_queued_ms;
        self.needs_refresh = false;
        self.feed_error = None;
    }

    /// Applies one watch event.
    pub fn apply_event(&mut self, event: &WatchEvent) {
        let at = event.at_ms;
        let Some(e) = &event.event else { return };
        match e {
            Event::Job(j) => {
                let key = (j.batch, j.proof_type.clone());
                let prover = (!j.prover_id.is_empty()).then(|| self.prover_label(&j.prover_id));
                let old = self.jobs.get(&key).map(|r| r.state.clone());
                if old.as_deref() != Some(j.state.as_str()) {
                    self.count_move(&j.proof_type, old.as_deref(), &j.state);
                    if j.state == "proven" {
                        self.count_proof(at);
                    }
                }
                let row = self.jobs.entry(key).or_insert_with(|| JobRow {
                    batch: j.batch,
                    proof_type: j.proof_type.clone(),
                    ..Default::default()
                });
                row.state = j.state.clone();
                if let Some(p) = prover {
                    row.prover = p;
                }
                row.failed_attempts = j.failed_attempts;
                row.last_error = j.last_error.clone();
                if j.state == "proven" {
                    self.advance_proven();
                }
                if j.state == "failed" {
                    let why = if j.last_error.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", j.last_error)
                    };
                    self.log(
                        at,
                        Severity::Error,
                        format!("job {}/{} failed{why}", j.batch, j.proof_type),
                    );
                }
                self.trim_jobs();
            }
            Event::AttemptStarted(a) => {
                self.remember_attempt(
                    a.fencing_token,
                    Attempt {
                        batch: a.batch,
                        proof_type: a.proof_type.clone(),
                        prover_id: a.prover_id.clone(),
                        prover_name: a.prover_name.clone(),
                    },
                );
                let task = format!("{}/{}", a.batch, a.proof_type);
                let now = self.now_ms.max(at);
                // The task id as status lists it (`batch/type`); a snapshot may hold it already.
                if let Some(p) = self.prover_mut(&a.prover_id) {
                    if !p.running_tasks.contains(&task) {
                        p.running_tasks.push(task);
                    }
                    p.last_seen_ms = now;
                }
                if let Some(row) = self.jobs.get_mut(&(a.batch, a.proof_type.clone())) {
                    row.prover = a.prover_name.clone();
                }
            }
            Event::AttemptEnded(a) => {
                let attempt = self.attempts.remove(&a.fencing_token);
                let what = match &attempt {
                    Some(t) => format!("{}/{} on {}", t.batch, t.proof_type, t.prover_name),
                    None => format!("attempt {}", a.fencing_token),
                };
                if let Some(t) = &attempt {
                    let task = format!("{}/{}", t.batch, t.proof_type);
                    let now = self.now_ms.max(at);
                    if let Some(p) = self.prover_mut(&t.prover_id) {
                        if let Some(i) = p.running_tasks.iter().position(|r| *r == task) {
                            p.running_tasks.remove(i);
                        }
                        p.last_seen_ms = now;
                        match a.outcome.as_str() {
                            "proven" => p.proofs_accepted += 1,
                            "failed" | "declined" => p.task_errors += 1,
                            "invalid_proof" => p.invalid_proofs += 1,
                            _ => {}
                        }
                    }
                    if a.outcome == "proven"
                        && let Some(row) = self.jobs.get_mut(&(t.batch, t.proof_type.clone()))
                    {
                        row.prove_ms = a.prove_ms;
                        row.prover = t.prover_name.clone();
                    }
                }
                let detail = if a.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", a.detail)
                };
                match a.outcome.as_str() {
                    "invalid_proof" => self.log(
                        at,
                        Severity::Error,
                        format!("proof rejected, {what}{detail}"),
                    ),
                    "lost" => self.log(at, Severity::Warn, format!("lease lost, {what}{detail}")),
                    "failed" | "declined" => self.log(
                        at,
                        Severity::Warn,
                        format!("attempt {}, {what}{detail}", a.outcome),
                    ),
                    _ => {}
                }
            }
            Event::Cordon(c) => {
                let name = self.prover_label(&c.prover_id);
                if let Some(p) = self.prover_mut(&c.prover_id) {
                    p.cordoned = c.cordoned;
                    p.cordon_reason = c.reason.clone();
                }
                let text = if c.cordoned {
                    format!("prover {name} cordoned ({})", c.reason)
                } else {
                    format!("prover {name} back in rotation")
                };
                self.log(at, Severity::Warn, text);
            }
            Event::ProverConnected(c) => {
                let now = self.now_ms.max(at);
                match self.prover_mut(&c.prover_id) {
                    Some(p) => {
                        p.connected = true;
                        p.name = c.name.clone();
                        p.proof_types = c.proof_types.clone();
                        p.capacity = c.capacity;
                        p.last_seen_ms = now;
                    }
                    None => {
                        let info = ProverInfo {
                            id: c.prover_id.clone(),
                            name: c.name.clone(),
                            proof_types: c.proof_types.clone(),
                            capacity: c.capacity,
                            connected: true,
                            last_seen_ms: now,
                            ..Default::default()
                        };
                        let i = self
                            .provers
                            .partition_point(|p| (&p.name, &p.id) < (&info.name, &info.id));
                        self.provers.insert(i, info);
                    }
                }
                self.log(
                    at,
                    Severity::Info,
                    format!(
                        "prover {} connected: {} × {}",
                        c.name,
                        c.proof_types.join(","),
                        c.capacity
                    ),
                );
            }
            Event::ProverDisconnected(d) => {
                let now = self.now_ms.max(at);
                if let Some(p) = self.prover_mut(&d.prover_id) {
                    p.connected = false;
                    p.running_tasks.clear();
                    p.last_seen_ms = now;
                }
                self.log(
                    at,
                    Severity::Warn,
                    format!("prover {} disconnected", d.name),
                );
            }
            Event::BatchesTaken(b) => {
                let sealed = &mut self.status.last_sealed_batch;
                *sealed = Some(sealed.unwrap_or(0).max(b.last_batch));
            }
            Event::Chain(c) => {
                if c.last_committed_batch.is_some() {
                    self.status.last_committed_batch = c.last_committed_batch;
                }
                if c.last_verified_batch.is_some() {
                    self.status.last_verified_batch = c.last_verified_batch;
                }
                if !c.error.is_empty() {
                    self.log(at, Severity::Error, format!("L1: {}", c.error));
                }
            }
            Event::Paused(p) => {
                self.status.paused.retain(|c| c.component != p.component);
                if p.paused {
                    self.status.paused.push(PausedComponent {
                        component: p.component.clone(),
                        reason: p.reason.clone(),
                        since_ms: at,
                    });
                    self.status
                        .paused
                        .sort_by(|a, b| a.component.cmp(&b.component));
                    self.log(
                        at,
                        Severity::Warn,
                        format!("{} paused ({})", p.component, p.reason),
                    );
                } else {
                    self.log(at, Severity::Info, format!("{} resumed", p.component));
                }
            }
            Event::Missed(n) => {
                self.needs_refresh = true;
                self.log(
                    at,
                    Severity::Warn,
                    format!("missed {n} events (read too slowly); reading status again"),
                );
            }
        }
    }

    /// Handles a key: moves the selection, or names the admin call to run.
    pub fn on_key(&mut self, key: Key) -> KeyOutcome {
        match key {
            Key::Char('q') | Key::Esc => return KeyOutcome::Quit,
            Key::Tab => {
                self.focus = match self.focus {
                    Focus::Jobs => Focus::Provers,
                    Focus::Provers => Focus::Jobs,
                }
            }
            Key::Up => self.move_selection(-1),
            Key::Down => self.move_selection(1),
            Key::PageUp => self.move_selection(-10),
            Key::PageDown => self.move_selection(10),
            Key::Home => self.move_selection(isize::MIN / 2),
            Key::End => self.move_selection(isize::MAX / 2),
            Key::Char(c @ ('c' | 'u')) => {
                return match self.selected_prover_info() {
                    Some(p) if self.focus == Focus::Provers => KeyOutcome::Run(Action::Cordon {
                        prover: p.id.clone(),
                        name: p.name.clone(),
                        cordoned: c == 'c',
                    }),
                    _ => self.hint("select a prover first (tab to the provers table)"),
                };
            }
            Key::Char(c @ ('r' | 'x')) => {
                return match self.selected_job_row() {
                    Some(j) if self.focus == Focus::Jobs => {
                        let (batch, proof_type) = (j.batch, j.proof_type.clone());
                        KeyOutcome::Run(if c == 'r' {
                            Action::Retry { batch, proof_type }
                        } else {
                            Action::Cancel { batch, proof_type }
                        })
                    }
                    _ => self.hint("select a job first (tab to the batches table)"),
                };
            }
            Key::Char('p') => {
                return KeyOutcome::Run(Action::Pause {
                    component: SENDER.into(),
                });
            }
            Key::Char('s') => {
                return KeyOutcome::Run(Action::Resume {
                    component: SENDER.into(),
                });
            }
            Key::Char(_) => {}
        }
        KeyOutcome::Nothing
    }

    /// The result of an action the loop ran: shown in the status line.
    pub fn action_done(&mut self, action: &Action, result: Result<String, String>) {
        self.status_line = Some(match result {
            Ok(done) => StatusLine {
                text: format!("{}: {done}", action.describe()),
                error: false,
            },
            Err(e) => StatusLine {
                text: format!("{} failed: {e}", action.describe()),
                error: true,
            },
        });
        // Its effect shows in the next snapshot at the latest.
        self.needs_refresh = true;
    }

    /// How the feed is doing ("watching", or why it is not), shown in the title.
    pub fn set_feed(&mut self, feed: impl Into<String>) {
        self.feed = feed.into();
    }

    /// A problem reading the coordinator's status: shown in the status line (over the last
    /// action's result) until a read succeeds.
    pub fn feed_error(&mut self, text: impl Into<String>) {
        self.feed_error = Some(text.into());
    }

    /// True after a `missed` event or an action, until the next snapshot.
    pub fn needs_refresh(&self) -> bool {
        self.needs_refresh
    }

    // ---- read by the view (and tests) ----

    pub fn coordinator(&self) -> &str {
        &self.coordinator
    }
    pub fn now_ms(&self) -> u64 {
        self.now_ms
    }
    pub fn feed(&self) -> &str {
        &self.feed
    }
    pub fn has_status(&self) -> bool {
        self.has_status
    }
    pub fn status(&self) -> &SystemStatusResponse {
        &self.status
    }
    pub fn provers(&self) -> &[ProverInfo] {
        &self.provers
    }
    pub fn job_counts(&self) -> &std::collections::HashMap<String, JobCounts> {
        &self.status.jobs
    }
    pub fn warnings(&self) -> &[StatusWarning] {
        &self.status.warnings
    }
    /// Job rows, newest batch first.
    pub fn jobs(&self) -> impl ExactSizeIterator<Item = &JobRow> + DoubleEndedIterator {
        self.jobs.values().rev()
    }
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }
    pub fn oldest_queued_ms(&self, proof_type: &str) -> Option<u64> {
        self.oldest_queued_ms.get(proof_type).copied()
    }
    pub fn events(&self) -> &VecDeque<LogLine> {
        &self.events
    }
    pub fn focus(&self) -> Focus {
        self.focus
    }
    /// Index of the selected job row (newest first); a selected row that is gone leaves
    /// the selection on the row after it.
    pub fn selected_job(&self) -> usize {
        let i = self.selected_job.as_ref().map_or(0, |key| {
            self.jobs
                .range((Bound::Excluded(key.clone()), Bound::Unbounded))
                .count()
        });
        i.min(self.jobs.len().saturating_sub(1))
    }
    /// Index of the selected prover row (by name); the first row when the selected one is gone.
    pub fn selected_prover(&self) -> usize {
        self.selected_prover
            .as_ref()
            .and_then(|id| self.provers.iter().position(|p| p.id == *id))
            .unwrap_or(0)
    }
    /// What the status line shows: a failed status read, else the last action's result.
    pub fn status_line(&self) -> Option<StatusLine> {
        match &self.feed_error {
            Some(e) => Some(StatusLine {
                text: e.clone(),
                error: true,
            }),
            None => self.status_line.clone(),
        }
    }
    /// True while the watch stream is in place.
    pub fn watching(&self) -> bool {
        self.feed == "watching"
    }

    /// The settlement transaction that verified `batch`, among those seen.
    pub fn verify_tx_of(&self, batch: u64) -> Option<&VerifyTxInfo> {
        self.verify_txs
            .iter()
            .rev()
            .find(|t| (t.first_batch..=t.last_batch).contains(&batch))
    }

    /// Proofs per `THROUGHPUT_BUCKET_MS`, oldest bucket first, ending at the current one;
    /// always `THROUGHPUT_BUCKETS` long (empty buckets are 0).
    pub fn throughput(&self) -> Vec<u64> {
        let current = self.now_ms / THROUGHPUT_BUCKET_MS * THROUGHPUT_BUCKET_MS;
        (0..THROUGHPUT_BUCKETS as u64)
            .rev()
            .map(|back| {
                let start = current.saturating_sub(back * THROUGHPUT_BUCKET_MS);
                self.throughput
                    .iter()
                    .find(|(s, _)| *s == start)
                    .map_or(0, |(_, n)| *n)
            })
            .collect()
    }

    /// Proofs per second over the last minute: the six whole buckets before the current one
    /// (exact for a steady rate, at most one bucket late).
    pub fn proofs_per_second(&self) -> f64 {
        let current = self.now_ms / THROUGHPUT_BUCKET_MS * THROUGHPUT_BUCKET_MS;
        let since = current.saturating_sub(60_000);
        let n: u64 = self
            .throughput
            .iter()
            .filter(|(s, _)| (since..current).contains(s))
            .map(|(_, n)| n)
            .sum();
        n as f64 / 60.0
    }

    // ---- internals ----

    fn selected_prover_info(&self) -> Option<&ProverInfo> {
        self.provers.get(self.selected_prover())
    }

    fn selected_job_row(&self) -> Option<&JobRow> {
        self.jobs.values().rev().nth(self.selected_job())
    }

    fn hint(&mut self, text: &str) -> KeyOutcome {
        self.status_line = Some(StatusLine {
            text: text.into(),
            error: true,
        });
        KeyOutcome::Nothing
    }

    fn move_selection(&mut self, by: isize) {
        let moved = |from: usize, len: usize| {
            let last = len.saturating_sub(1) as isize;
            (from as isize).saturating_add(by).clamp(0, last) as usize
        };
        match self.focus {
            Focus::Jobs => {
                let i = moved(self.selected_job(), self.jobs.len());
                self.selected_job = self.jobs.keys().rev().nth(i).cloned();
            }
            Focus::Provers => {
                let i = moved(self.selected_prover(), self.provers.len());
                self.selected_prover = self.provers.get(i).map(|p| p.id.clone());
            }
        }
    }

    fn prover_mut(&mut self, id: &str) -> Option<&mut ProverInfo> {
        self.provers.iter_mut().find(|p| p.id == id)
    }

    fn prover_label(&self, id: &str) -> String {
        self.provers
            .iter()
            .find(|p| p.id == id)
            .map_or_else(|| id.to_string(), |p| p.name.clone())
    }

    fn count_move(&mut self, proof_type: &str, from: Option<&str>, to: &str) {
        let counts = self.status.jobs.entry(proof_type.to_string()).or_default();
        if let Some(n) = from.and_then(|s| count_of(counts, s)) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = count_of(counts, to) {
            *n += 1;
        }
    }

    /// Moves the last proven batch up over the batches now proven in every required proof
    /// type (as far as the rows kept show; the next snapshot has the store's figure).
    fn advance_proven(&mut self) {
        let types = &self.status.required_proof_types;
        if types.is_empty() {
            return;
        }
        let mut last = self.status.last_proven_batch.unwrap_or(0);
        while types.iter().all(|t| {
            self.jobs
                .get(&(last + 1, t.clone()))
                .is_some_and(|r| r.state == "proven")
        }) {
            last += 1;
        }
        if last > 0 {
            self.status.last_proven_batch = Some(last);
        }
    }

    fn count_proof(&mut self, at_ms: u64) {
        let start = at_ms / THROUGHPUT_BUCKET_MS * THROUGHPUT_BUCKET_MS;
        match self.throughput.iter_mut().find(|(s, _)| *s == start) {
            Some((_, n)) => *n += 1,
            None => {
                let i = self.throughput.partition_point(|(s, _)| *s < start);
                self.throughput.insert(i, (start, 1));
            }
        }
        self.trim_throughput();
    }

    fn trim_throughput(&mut self) {
        let newest = self
            .now_ms
            .max(self.throughput.back().map_or(0, |(s, _)| *s));
        let horizon = (newest / THROUGHPUT_BUCKET_MS * THROUGHPUT_BUCKET_MS)
            .saturating_sub((THROUGHPUT_BUCKETS as u64 - 1) * THROUGHPUT_BUCKET_MS);
        while self.throughput.front().is_some_and(|(s, _)| *s < horizon)
            || self.throughput.len() > THROUGHPUT_BUCKETS
        {
            self.throughput.pop_front();
        }
    }

    fn remember_attempt(&mut self, token: u64, attempt: Attempt) {
        if self.attempts.insert(token, attempt).is_none() {
            self.attempt_order.push_back(token);
        }
        while self.attempt_order.len() > MAX_ATTEMPTS {
            if let Some(old) = self.attempt_order.pop_front() {
                self.attempts.remove(&old);
            }
        }
        // Ended attempts leave their tokens in the order queue; drop them when it grows.
        if self.attempt_order.len() > 2 * self.attempts.len() + 64 {
            let attempts = &self.attempts;
            self.attempt_order.retain(|t| attempts.contains_key(t));
        }
    }

    fn remember_verify_tx(&mut self, tx: VerifyTxInfo) {
        if self.verify_txs.back() != Some(&tx) {
            self.verify_txs.push_back(tx);
        }
        while self.verify_txs.len() > MAX_VERIFY_TXS {
            self.verify_txs.pop_front();
        }
    }

    fn trim_jobs(&mut self) {
        while self.jobs.len() > MAX_JOBS {
            self.jobs.pop_first();
        }
    }

    fn log(&mut self, at_ms: u64, severity: Severity, text: String) {
        self.events.push_back(LogLine {
            at_ms,
            severity,
            text,
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
    }
}

fn count_of<'a>(counts: &'a mut JobCounts, state: &str) -> Option<&'a mut u64> {
    match state {
        "queued" => Some(&mut counts.queued),
        "leased" => Some(&mut counts.leased),
        "proven" => Some(&mut counts.proven),
        "failed" => Some(&mut counts.failed),
        "cancelled" => Some(&mut counts.cancelled),
        _ => None,
    }
}
