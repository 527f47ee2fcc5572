use crate::config::SchedulerConfig;
use crate::policy::AssignmentPolicy;
use crate::provers::{ProverEntry, ProverInfo};
use crate::queue::ReadyQueue;
use proofmill_types::{
    AttemptOutcome, FencingToken, Job, JobKey, JobState, Lease, Millis, ProverId,
};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::RangeInclusive;
use std::sync::Arc;

mod dispatch;
mod faults;
mod liveness;
mod operator;
mod reconcile;
mod speculation;

pub use dispatch::{Dispatch, NotEligible, ReadyGroup};
pub use faults::Failure;
pub use operator::FleetFigures;
use speculation::CopyEnd;

/// Something the caller must do. Carry out every `Persist` of one call durably *before* any
/// message of the same call is sent, so a crash never leaves a prover working on a lease the
/// store does not know, nor acknowledges a result the store does not have.
#[derive(Clone, Debug, PartialEq)]
pub enum Effect {
    /// Write this job row exactly (state, attempts, lease).
    Persist(Job),
    /// Send the task to the prover; `job.lease` holds its token and deadline.
    Dispatch { prover: ProverId, job: Job },
    /// Tell the prover to stop a task it should not be running.
    Cancel {
        prover: ProverId,
        key: JobKey,
        token: FencingToken,
        reason: String,
    },
    /// The prover was declared dead: close its stream if one is still open.
    Disconnect { prover: ProverId, reason: String },
    /// The scheduler took the prover out of rotation by itself (it kept sending invalid
    /// proofs): store the cordon with its reason, as an operator's would be.
    Cordon { prover: ProverId, reason: String },
    /// An attempt began: `lease` (its token names the attempt) was handed to its prover, as
    /// the job's lease or as a `backup` copy. For the job's history.
    AttemptStarted {
        key: JobKey,
        lease: Lease,
        backup: bool,
    },
    /// The attempt with `token` ended, and how (`detail`: the error or the reason). For the
    /// job's history.
    AttemptEnded {
        key: JobKey,
        token: FencingToken,
        outcome: AttemptOutcome,
        detail: String,
    },
}

/// Whether a result for (job, token) from a prover may be accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResultCheck {
    /// It answers the job's current lease: verify it, then call `complete` or `fail`.
    Current,
    /// Fenced off: the lease was lost or belongs to someone else.
    Stale { reason: String },
    /// The job is not open here (proven, failed, cancelled, or never existed); the caller
    /// consults the store to tell a duplicate of an accepted result from an unknown job.
    NotOpen,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedulerError {
    #[error("prover {0} is already registered")]
    DuplicateProver(ProverId),
    #[error("unknown prover {0}")]
    UnknownProver(ProverId),
    #[error("result for {key} with token {token} is not current: {reason}")]
    NotCurrent {
        key: JobKey,
        token: FencingToken,
        reason: String,
    },
    #[error("job {0} is not open")]
    NotOpen(JobKey),
}

pub struct Scheduler {
    config: SchedulerConfig,
    /// Open jobs only (queued or leased); terminal jobs leave memory and live in the store.
    jobs: HashMap<JobKey, Job>,
    provers: BTreeMap<ProverId, ProverEntry>,
    queue: ReadyQueue,
    /// Hard lease deadlines.
    deadlines: BTreeSet<(Millis, JobKey)>,
    next_token: u64,
    /// Tokens an earlier run issued that the store never saw (see [`Self::set_orphan_tokens`]).
    orphan_tokens: Option<RangeInclusive<u64>>,
    /// Jobs that may still take back an orphan: queued when added, never leased by this run.
    /// Once this run leased a job, its orphans are older than a token it issued itself.
    orphan_jobs: HashSet<JobKey>,
    /// Provers out of rotation, with the reason: no new tasks (see [`Self::cordon`]).
    cordoned: BTreeMap<ProverId, String>,
    /// Provers that failed each open job (an error or an invalid proof): the job goes to
    /// another prover while one that has not failed it can take it.
    failed_by: HashMap<JobKey, BTreeSet<ProverId>>,
    /// Backup copies of straggling tasks (see [`speculation`]), not in the job's row.
    backups: HashMap<JobKey, Lease>,
    durations: speculation::Durations,
    last_straggler_check: Millis,
    draining: bool,
    /// Dispatch paused by an operator ([`Self::pause_dispatch`]).
    dispatch_paused: bool,
    /// Who gets which ready job (see [`AssignmentPolicy`]); chosen by the config's
    /// `assignment_policy` unless given to [`Self::with_policy`].
    policy: Arc<dyn AssignmentPolicy>,
    /// When the policy asked to dispatch again, if it keeps jobs for busy provers.
    policy_revisit: Option<Millis>,
    /// How chains share the fleet: who is owed the next slot (see [`crate::ChainShares`]).
    fair: crate::shares::FairClock,
    /// No prover goes silent past the liveness timeout, nor past its reconnect grace with
    /// tasks, before this (see [`Self::next_wakeup`]).
    provers_due: Option<Millis>,
}

impl Scheduler {
    /// `last_token` is the highest fencing token ever issued (from the store), so tokens stay
    /// monotonic across restarts.
    pub fn new(config: SchedulerConfig, last_token: u64) -> Self {
        let policy = config.assignment_policy.policy();
        Self::with_policy(config, last_token, policy)
    }

    /// Like [`Self::new`], with a policy of the caller's instead of the config's choice.
    pub fn with_policy(
        config: SchedulerConfig,
        last_token: u64,
        policy: Arc<dyn AssignmentPolicy>,
    ) -> Self {
        Scheduler {
            config,
            jobs: HashMap::new(),
            provers: BTreeMap::new(),
            queue: ReadyQueue::default(),
            deadlines: BTreeSet::new(),
            next_token: last_token.saturating_add(1),
            orphan_tokens: None,
            orphan_jobs: HashSet::new(),
            cordoned: BTreeMap::new(),
            failed_by: HashMap::new(),
            backups: HashMap::new(),
            durations: Default::default(),
            last_straggler_check: 0,
            draining: false,
            dispatch_paused: false,
            policy,
            policy_revisit: None,
            provers_due: None,
            fair: Default::default(),
        }
    }

    /// Declares tokens an earlier run of the coordinator issued but never made durable (it
    /// sends tasks before their leases are committed, and stopped in between). A prover that
    /// reconnects reporting a task with such a token, for a job that is still queued and that
    /// it may run, keeps that task as its lease instead of having it cancelled: no work is
    /// lost to the restart. The range must lie above every token in the store and at or
    /// below `last_token`, so none of these tokens is issued again. Call it before
    /// [`Self::add_jobs`]: only jobs added queued after it, and not leased since (a token
    /// this run issued supersedes every orphan), take orphans back.
    pub fn set_orphan_tokens(&mut self, range: RangeInclusive<u64>) {
        self.next_token = self.next_token.max(range.end().saturating_add(1));
        self.orphan_tokens = Some(range);
    }

    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// Name of the assignment policy in use.
    pub fn policy_name(&self) -> &'static str {
        self.policy.name()
    }

    /// Adds open jobs: new ones from fresh batches, or every open job from the store after a
    /// restart (leases included: their owners get one liveness window to reconnect). Jobs
    /// already known and terminal jobs are ignored. New jobs are persisted by the caller
    /// already, so only dispatches come back.
    pub fn add_jobs(&mut self, jobs: impl IntoIterator<Item = Job>, now: Millis) -> Vec<Effect> {
        for job in jobs {
            if job.state.is_terminal() || self.jobs.contains_key(&job.key) {
                continue;
            }
            self.next_token = self
                .next_token
                .max(job.lease.as_ref().map_or(0, |l| l.token.0) + 1);
            match (&job.state, &job.lease) {
                (JobState::Leased, Some(lease)) => {
                    let owner = self
                        .provers
                        .entry(lease.prover.clone())
                        .or_insert_with(|| ProverEntry::ghost(now));
                    owner.running.insert(job.key.clone());
                    self.prover_due_by(now.saturating_add(self.config.liveness_timeout_ms()));
                    self.deadlines.insert((lease.deadline, job.key.clone()));
                    self.jobs.insert(job.key.clone(), job);
                }
                _ => {
                    let mut job = job;
                    job.state = JobState::Queued;
                    job.lease = None;
                    if self.orphan_tokens.is_some() {
                        self.orphan_jobs.insert(job.key.clone());
                    }
                    self.queue.push(&job.key, &job.version, job.not_before, now);
                    self.jobs.insert(job.key.clone(), job);
                }
            }
        }
        self.dispatch(now)
    }

    /// Requeues a failed or cancelled job (loaded from the store) with a fresh attempt budget.
    pub fn retry(&mut self, mut job: Job, now: Millis) -> Vec<Effect> {
        if self.jobs.contains_key(&job.key) {
            return Vec::new();
        }
        job.state = JobState::Queued;
        job.lease = None;
        job.failed_attempts = 0;
        job.lost_attempts = 0;
        self.failed_by.remove(&job.key);
        job.not_before = now;
        job.updated_at = now;
        self.queue.push(&job.key, &job.version, now, now);
        self.jobs.insert(job.key.clone(), job.clone());
        let mut effects = vec![Effect::Persist(job)];
        effects.extend(self.dispatch(now));
        effects
    }

    /// A new prover with an id chosen by the caller.
    pub fn register(
        &mut self,
        id: ProverId,
        info: ProverInfo,
        now: Millis,
    ) -> Result<Vec<Effect>, SchedulerError> {
        if self.provers.contains_key(&id) {
            return Err(SchedulerError::DuplicateProver(id));
        }
        self.provers.insert(id, ProverEntry::new(info, now));
        self.prover_due_by(now.saturating_add(self.config.liveness_timeout_ms()));
        Ok(self.dispatch(now))
    }

    /// A prover presents an id from an earlier registration with the tasks it still runs or
    /// holds finished results for. Its leases that it reports stay; those it does not report
    /// are lost; tasks it reports that are not its current leases are cancelled.
    pub fn reconnect(
        &mut self,
        id: ProverId,
        info: ProverInfo,
        running: &[(JobKey, FencingToken)],
        now: Millis,
    ) -> Vec<Effect> {
        let entry = self
            .provers
            .entry(id.clone())
            .or_insert_with(|| ProverEntry::ghost(now));
        entry.info = info;
        entry.connected = true;
        entry.disconnected_at = None;
        entry.last_seen = now;
        entry.advertised_free = None;
        let held: Vec<JobKey> = entry.running.iter().cloned().collect();
        self.prover_due_by(now.saturating_add(self.config.liveness_timeout_ms()));
        let mut effects = self.adopt_orphans(&id, running, now);
        effects.extend(self.cancel_unknown(&id, running));
        for key in held {
            let token = match self.backups.get(&key) {
                Some(b) if b.prover == id => Some(b.token),
                _ => self.jobs[&key].lease.as_ref().map(|l| l.token),
            };
            let reported = running.iter().any(|(k, t)| *k == key && Some(*t) == token);
            if !reported {
                self.lose_task(
                    &id,
                    &key,
                    "prover reconnected without this task",
                    now,
                    &mut effects,
                );
            }
        }
        effects.extend(self.dispatch(now));
        effects
    }

    /// The prover says how many more tasks it can take (it may serve other coordinators).
    pub fn availability(&mut self, id: &ProverId, free_slots: u32, now: Millis) -> Vec<Effect> {
        let Some(p) = self.provers.get_mut(id) else {
            return Vec::new();
        };
        p.last_seen = now;
        p.advertised_free = Some(free_slots);
        self.dispatch(now)
    }

    /// Checks a result's fencing token without changing anything.
    pub fn check_result(
        &self,
        prover: &ProverId,
        key: &JobKey,
        token: FencingToken,
    ) -> ResultCheck {
        let Some(job) = self.jobs.get(key) else {
            return ResultCheck::NotOpen;
        };
        if self.is_backup(prover, key, token) {
            return ResultCheck::Current;
        }
        match &job.lease {
            Some(l) if l.token == token && l.prover == *prover => ResultCheck::Current,
            Some(l) if l.token == token => ResultCheck::Stale {
                reason: format!("lease {token} of {key} belongs to another prover"),
            },
            Some(l) => ResultCheck::Stale {
                reason: format!(
                    "token {token} of {key} is stale: the current lease is {}",
                    l.token
                ),
            },
            None => ResultCheck::Stale {
                reason: format!("token {token} of {key} is stale: the job is queued again"),
            },
        }
    }

    /// A verified proof for the current lease (or its backup copy): the job is proven and
    /// leaves memory; the other copy, if any, is cancelled.
    pub fn complete(
        &mut self,
        prover: &ProverId,
        key: &JobKey,
        token: FencingToken,
        now: Millis,
    ) -> Result<Vec<Effect>, SchedulerError> {
        let mut effects = Vec::new();
        let lost = "another copy of the task finished first";
        let (mut job, won) = if self.is_backup(prover, key, token) {
            let proven = CopyEnd::Ended(AttemptOutcome::Proven, "");
            let backup = self
                .drop_backup(key, proven, &mut effects)
                .expect("checked");
            let mut job = self.jobs.remove(key).expect("a job with a backup is open");
            let primary = job.lease.take().expect("a job with a backup is leased");
            if let Some(p) = self.provers.get_mut(&primary.prover) {
                p.stats.superseded += 1;
            }
            effects.push(Effect::Cancel {
                prover: primary.prover.clone(),
                key: key.clone(),
                token: primary.token,
                reason: lost.into(),
            });
            let end = (AttemptOutcome::Superseded, lost);
            self.release_slot(&primary, key, end, &mut effects);
            (job, backup)
        } else {
            let leased = self.jobs.get(key).and_then(|j| j.lease.clone());
            let proven = (AttemptOutcome::Proven, "");
            let job = self.take_current(prover, key, token, proven, &mut effects)?;
            let stop = CopyEnd::Stopped(AttemptOutcome::Superseded, lost);
            self.drop_backup(key, stop, &mut effects);
            (job, leased.expect("a current result has a lease"))
        };
        let took = now.saturating_sub(won.leased_at);
        self.durations.record(&key.proof_type, took);
        if let Some(p) = self.provers.get_mut(&won.prover) {
            p.prove_times.record(&key.proof_type, took);
        }
        job.state = JobState::Proven;
        job.last_error = None;
        job.updated_at = now;
        self.failed_by.remove(key);
        if let Some(p) = self.provers.get_mut(prover) {
            p.stats.proven += 1;
            p.stats.invalid_in_a_row = 0;
        }
        effects.insert(0, Effect::Persist(job));
        effects.extend(self.dispatch(now));
        Ok(effects)
    }

    /// The prover could not take the task (no free slot after all): requeue at once, no
    /// attempt counted, and send it nothing more until it reports availability again.
    pub fn decline(
        &mut self,
        prover: &ProverId,
        key: &JobKey,
        token: FencingToken,
        now: Millis,
    ) -> Result<Vec<Effect>, SchedulerError> {
        let mut effects = Vec::new();
        let end = (AttemptOutcome::Declined, "the prover had no free slot");
        let job = self.end_copy(prover, key, token, end, &mut effects)?;
        if let Some(p) = self.provers.get_mut(prover) {
            p.advertised_free = Some(0);
        }
        if let Some(mut job) = job {
            job.updated_at = now;
            if !self.promote_backup(&mut job) {
                job.state = JobState::Queued;
                job.not_before = now;
                self.queue.push(&job.key, &job.version, now, now);
                self.jobs.insert(job.key.clone(), job.clone());
            }
            effects.push(Effect::Persist(job));
        }
        effects.extend(self.dispatch(now));
        Ok(effects)
    }

    /// An operator cancels an open job.
    pub fn cancel_job(
        &mut self,
        key: &JobKey,
        reason: &str,
        now: Millis,
    ) -> Result<Vec<Effect>, SchedulerError> {
        let mut job = self
            .jobs
            .remove(key)
            .ok_or_else(|| SchedulerError::NotOpen(key.clone()))?;
        let mut effects = Vec::new();
        let stop = CopyEnd::Stopped(AttemptOutcome::Cancelled, reason);
        self.drop_backup(key, stop, &mut effects);
        if let Some(lease) = job.lease.take() {
            effects.push(Effect::Cancel {
                prover: lease.prover.clone(),
                key: key.clone(),
                token: lease.token,
                reason: reason.to_string(),
            });
            let end = (AttemptOutcome::Cancelled, reason);
            self.release_slot(&lease, key, end, &mut effects);
        } else {
            self.queue.remove(key, &job.version, job.not_before);
            self.orphan_jobs.remove(key);
        }
        self.failed_by.remove(key);
        job.state = JobState::Cancelled;
        job.last_error = Some(reason.to_string());
        job.updated_at = now;
        effects.insert(0, Effect::Persist(job));
        effects.extend(self.dispatch(now));
        Ok(effects)
    }

    /// Stops handing out work (graceful shutdown). Results are still accepted.
    pub fn drain(&mut self) {
        self.draining = true;
    }

    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// Pauses (`paused`) or resumes handing out work, for an operator: no new lease (nor
    /// backup copy) while paused; running tasks go on and their results are accepted as
    /// ever. Resuming dispatches what is ready at once.
    pub fn pause_dispatch(&mut self, paused: bool, now: Millis) -> Vec<Effect> {
        self.dispatch_paused = paused;
        if paused {
            Vec::new()
        } else {
            self.dispatch(now)
        }
    }

    pub fn is_dispatch_paused(&self) -> bool {
        self.dispatch_paused
    }

    pub fn job(&self, key: &JobKey) -> Option<&Job> {
        self.jobs.get(key)
    }

    pub fn open_jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    pub fn ready_len(&self) -> usize {
        self.queue.ready_len()
    }

    pub fn is_connected(&self, id: &ProverId) -> bool {
        self.provers.get(id).is_some_and(|p| p.connected)
    }

    /// Ends the copy of `key` that `prover` runs with `token`, which ended without a proof:
    /// a backup copy just ends (`None`: the job and its row do not change); the lease is
    /// taken off the job, which is returned for the caller to requeue or close.
    pub(super) fn end_copy(
        &mut self,
        prover: &ProverId,
        key: &JobKey,
        token: FencingToken,
        end: (AttemptOutcome, &str),
        effects: &mut Vec<Effect>,
    ) -> Result<Option<Job>, SchedulerError> {
        if self.is_backup(prover, key, token) {
            self.drop_backup(key, CopyEnd::Ended(end.0, end.1), effects);
            return Ok(None);
        }
        self.take_current(prover, key, token, end, effects)
            .map(Some)
    }

    /// Removes the job's current lease held by `prover` with `token` (its attempt ended as
    /// `end` says), returning the job.
    fn take_current(
        &mut self,
        prover: &ProverId,
        key: &JobKey,
        token: FencingToken,
        end: (AttemptOutcome, &str),
        effects: &mut Vec<Effect>,
    ) -> Result<Job, SchedulerError> {
        match self.check_result(prover, key, token) {
            ResultCheck::Current => {}
            ResultCheck::Stale { reason } => {
                return Err(SchedulerError::NotCurrent {
                    key: key.clone(),
                    token,
                    reason,
                });
            }
            ResultCheck::NotOpen => return Err(SchedulerError::NotOpen(key.clone())),
        }
        let mut job = self.jobs.remove(key).expect("checked current");
        let lease = job.lease.take().expect("checked current");
        self.release_slot(&lease, key, end, effects);
        Ok(job)
    }

    /// Frees the slot a lease or backup copy held: its attempt ended as `end` says. Every
    /// attempt ends here, so every one is reported once.
    fn release_slot(
        &mut self,
        lease: &Lease,
        key: &JobKey,
        (outcome, detail): (AttemptOutcome, &str),
        effects: &mut Vec<Effect>,
    ) {
        self.deadlines.remove(&(lease.deadline, key.clone()));
        if let Some(p) = self.provers.get_mut(&lease.prover) {
            p.running.remove(key);
        }
        effects.push(Effect::AttemptEnded {
            key: key.clone(),
            token: lease.token,
            outcome,
            detail: detail.to_string(),
        });
    }
}
