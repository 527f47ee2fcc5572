//! The property-test harness: a scheduler driven by random operations, the store modelled
//! as the coordinator uses it (rows committed later than dispatches go out, crashes losing
//! what was not committed yet, restarts as `server.rs` does them), and the provers' beliefs.
mod store;

use crate::common::*;
use proofmill_scheduler::{Effect, Failure, ResultCheck, Scheduler, SchedulerConfig};
use proofmill_types::{FencingToken, Job, JobKey, JobState, ProverId};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ops::RangeInclusive;

use store::{Group, StoreModel};

pub const TYPES: [&str; 2] = ["exec", "stark"];
pub const VERSIONS: [&str; 2] = ["v1", "v2"];

#[derive(Clone, Debug)]
pub enum Op {
    Register {
        prover: u8,
        types: u8,
        capacity: u32,
        version: u8,
    },
    AddBatch {
        version: u8,
    },
    /// A result for a task the prover runs, or (`stale`) for any token it was ever given.
    Complete {
        prover: u8,
        pick: usize,
        stale: bool,
    },
    /// An error (or, `invalid`, a proof that failed verification) for a task it runs.
    Fail {
        prover: u8,
        pick: usize,
        invalid: bool,
    },
    Decline {
        prover: u8,
        pick: usize,
    },
    Disconnect {
        prover: u8,
    },
    Reconnect {
        prover: u8,
        keep_mask: u8,
    },
    Heartbeat {
        prover: u8,
    },
    Availability {
        prover: u8,
        free: u32,
    },
    Advance {
        ms: u64,
    },
    /// The persister commits the oldest `n` pending groups (all of them if `all`).
    Commit {
        n: usize,
        all: bool,
    },
    /// The coordinator dies after committing `keep` more groups, and starts again.
    Crash {
        keep: usize,
    },
}

pub fn prover_id(n: u8) -> ProverId {
    pid(&format!("p{n}"))
}

pub fn type_set(mask: u8) -> Vec<&'static str> {
    TYPES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, t)| *t)
        .collect()
}

/// A token sent to a prover.
struct Issue {
    token: FencingToken,
    prover: ProverId,
    run: u32,
}

pub struct Harness {
    pub s: Scheduler,
    config: SchedulerConfig,
    pub now: u64,
    next_batch: u64,
    seq: u64,
    store: StoreModel,
    /// Runs of the coordinator so far (0 = the first).
    run: u32,
    /// This run's floor and orphan window, as `token_epoch` set them.
    floor: u64,
    orphans: RangeInclusive<u64>,
    /// Provers the scheduler cordoned by itself, with the reason.
    cordoned: BTreeMap<ProverId, String>,
    /// Every token ever sent, per job, in every run.
    issued: BTreeMap<JobKey, Vec<Issue>>,
    /// Tokens no run can take back any more: sent by a run before the last one that died,
    /// and never durable.
    dead: HashSet<(JobKey, FencingToken)>,
    /// Tasks each prover believes it runs or holds a result for.
    pub tasks: BTreeMap<ProverId, Vec<(JobKey, FencingToken)>>,
    /// Every token each prover was ever given, stale ones included.
    given: BTreeMap<ProverId, Vec<(JobKey, FencingToken)>>,
    pub infos: BTreeMap<ProverId, (u8, u32, u8)>,
    /// Provers with a stream open to the current run.
    pub session: BTreeSet<ProverId>,
    last_token: u64,
    /// Mutation check: take `known` from the job rows instead of the high-water mark.
    pub known_from_rows: bool,
    /// Attempts this run has begun (or restored) and not yet seen end.
    attempts: BTreeSet<(JobKey, FencingToken)>,
}

impl Harness {
    pub fn new(config: SchedulerConfig) -> Self {
        let mut h = Harness {
            s: Scheduler::new(config.clone(), 0),
            config,
            now: 0,
            next_batch: 1,
            seq: 0,
            store: StoreModel::default(),
            run: 0,
            floor: 0,
            orphans: 0..=0, // set by `start`
            issued: BTreeMap::new(),
            dead: HashSet::new(),
            cordoned: BTreeMap::new(),
            tasks: BTreeMap::new(),
            given: BTreeMap::new(),
            infos: BTreeMap::new(),
            session: BTreeSet::new(),
            last_token: 0,
            known_from_rows: false,
            attempts: BTreeSet::new(),
        };
        h.start();
        h
    }

    /// What `Coordinator::new` does with the store.
    fn start(&mut self) {
        let (known, floor) = self.store.token_epoch(self.known_from_rows);
        assert!(
            floor > self.last_token,
            "floor {floor} not above a token already sent"
        );
        self.floor = floor;
        self.orphans = known + 1..=floor;
        self.s = Scheduler::new(self.config.clone(), floor);
        self.s.set_orphan_tokens(self.orphans.clone());
        // Stored with the group of the failure that earned them; committed at once here.
        self.s.restore_cordons(self.cordoned.clone());
        let open = self.store.open_jobs();
        // Leases restored from the store: attempts begun by an earlier run, still open.
        self.attempts = open
            .iter()
            .filter_map(|j| j.lease.as_ref().map(|l| (j.key.clone(), l.token)))
            .collect();
        let effects = self.s.add_jobs(open, self.now);
        self.apply(effects, Vec::new());
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Why the scheduler must not take `token` of `key` now, if it must not.
    fn revoked(&self, key: &JobKey, token: FencingToken) -> Option<&'static str> {
        if self.dead.contains(&(key.clone(), token)) {
            return Some("sent by an earlier run and never made durable");
        }
        self.store.superseded(key, token)
    }

    /// A result or an orphan the scheduler just took as `prover`'s current lease.
    fn assert_legit(&self, prover: &ProverId, key: &JobKey, token: FencingToken, what: &str) {
        let sent = self.issued.get(key).into_iter().flatten();
        assert!(
            sent.into_iter()
                .any(|i| i.token == token && i.prover == *prover),
            "{what}: {key:?} token {token} was never sent to {prover}"
        );
        if let Some(why) = self.revoked(key, token) {
            panic!("{what}: revoked token {token} of {key:?} ({why})");
        }
    }

    /// Carries out the effects of one scheduler call: dispatches go out at once, the rest
    /// waits for the group's commit. `acks` are results this call accepted.
    pub fn apply(&mut self, effects: Vec<Effect>, acks: Vec<(ProverId, JobKey, FencingToken)>) {
        // The group is pending from the start, so its own rows are part of the view.
        self.store.pending.push_back(Group {
            acks,
            ..Group::default()
        });
        for e in effects {
            match e {
                Effect::Persist(job) => self.persist(job),
                Effect::Dispatch { prover, job } => self.dispatch(prover, job),
                Effect::Cancel {
                    prover, key, token, ..
                } => {
                    if self.session.contains(&prover) {
                        self.group().cancels.push((prover, key, token));
                    }
                }
                Effect::Disconnect { prover, .. } => {
                    // The stream closes; the prover keeps what it runs and may come back.
                    self.session.remove(&prover);
                }
                Effect::Cordon { prover, reason } => {
                    assert!(
                        self.cordoned.insert(prover, reason).is_none(),
                        "cordoned twice"
                    );
                }
                Effect::AttemptStarted { key, lease, .. } => {
                    assert!(
                        self.attempts.insert((key.clone(), lease.token)),
                        "attempt {key:?}/{} started twice",
                        lease.token
                    );
                }
                Effect::AttemptEnded { key, token, .. } => {
                    assert!(
                        self.attempts.remove(&(key.clone(), token)),
                        "attempt {key:?}/{token} ended but was not running"
                    );
                }
            }
        }
        if self.group().is_empty() {
            self.store.pending.pop_back();
        }
    }

    fn group(&mut self) -> &mut Group {
        self.store.pending.back_mut().expect("a group is open")
    }

    fn persist(&mut self, job: Job) {
        let before = self.store.view(&job.key).cloned();
        let before = before.unwrap_or_else(|| panic!("persist of unknown job {:?}", job.key));
        assert!(
            !before.state.is_terminal(),
            "{:?} changed after it was {:?} (proven twice?)",
            job.key,
            before.state
        );
        if let (Some(old), Some(new)) = (&before.lease, &job.lease) {
            assert_eq!(old, new, "two live leases of {:?}", job.key);
        }
        if let Some(lease) = job.lease.as_ref().filter(|l| l.token.0 <= self.floor) {
            // Not issued by this run: a task an earlier run sent, adopted on reconnect.
            assert!(before.lease.is_none(), "adopted over a lease");
            assert!(
                self.orphans.contains(&lease.token.0),
                "adopted token {} outside the orphan window {:?}",
                lease.token,
                self.orphans
            );
            let reported = self.tasks.get(&lease.prover).into_iter().flatten();
            assert!(
                reported
                    .into_iter()
                    .any(|t| *t == (job.key.clone(), lease.token)),
                "adopted a task its prover does not report"
            );
            self.assert_legit(&lease.prover, &job.key, lease.token, "adopted orphan");
        }
        let seq = self.next_seq();
        self.group().rows.push((seq, job));
    }

    fn dispatch(&mut self, prover: ProverId, job: Job) {
        let lease = job.lease.clone().expect("dispatched job has a lease");
        assert_eq!(lease.prover, prover);
        assert!(
            !self.cordoned.contains_key(&prover),
            "a cordoned prover gets no new task"
        );
        assert!(
            lease.token.0 > self.last_token,
            "tokens strictly increase, across restarts too"
        );
        assert!(lease.token.0 > self.floor, "a new token is above the floor");
        self.last_token = lease.token.0;
        assert_eq!(
            self.group().rows.last().map(|(_, j)| j),
            Some(&job),
            "dispatch right after its persist"
        );
        let (types, capacity, version) = self.infos[&prover];
        assert!(
            type_set(types).contains(&job.key.proof_type.as_str()),
            "type matched"
        );
        assert_eq!(job.version, VERSIONS[version as usize], "version matched");
        let running = self
            .s
            .provers()
            .into_iter()
            .find(|p| p.id == prover)
            .unwrap()
            .running
            .len();
        assert!(running as u32 <= capacity, "capacity respected");
        self.issued.entry(job.key.clone()).or_default().push(Issue {
            token: lease.token,
            prover: prover.clone(),
            run: self.run,
        });
        let task = (job.key, lease.token);
        self.given
            .entry(prover.clone())
            .or_default()
            .push(task.clone());
        self.tasks.entry(prover).or_default().push(task);
    }

    /// The persister commits the `n` oldest groups; their messages go out.
    pub fn commit(&mut self, n: usize) {
        for group in self.store.commit(n) {
            for (prover, key, token) in group.cancels {
                if self.session.contains(&prover) {
                    self.forget(&prover, &key, token);
                }
            }
        }
    }

    pub fn commit_all(&mut self) {
        self.commit(usize::MAX);
    }

    /// The coordinator dies after committing `keep` more groups; the rest is lost (results
    /// it accepted there were never acknowledged, so their provers still hold them). Then it
    /// starts again from the store; every prover has to reconnect.
    pub fn crash(&mut self, keep: usize) {
        self.commit(keep % (self.store.pending.len() + 1));
        for group in std::mem::take(&mut self.store.pending) {
            for (prover, key, token) in group.acks {
                self.tasks.entry(prover).or_default().push((key, token));
            }
        }
        // The next run's window starts above this run's floor: what earlier runs sent and
        // never made durable can no longer be taken back.
        for (key, sent) in &self.issued {
            for i in sent.iter().filter(|i| i.run < self.run) {
                if !self.store.ever_durable(key, i.token) {
                    self.dead.insert((key.clone(), i.token));
                }
            }
        }
        self.run += 1;
        self.session.clear();
        self.start();
    }

    fn pick(
        list: Option<&Vec<(JobKey, FencingToken)>>,
        pick: usize,
    ) -> Option<(JobKey, FencingToken)> {
        let t = list?;
        (!t.is_empty()).then(|| t[pick % t.len()].clone())
    }

    pub fn forget(&mut self, prover: &ProverId, key: &JobKey, token: FencingToken) {
        if let Some(t) = self.tasks.get_mut(prover) {
            t.retain(|(k, tok)| !(k == key && *tok == token));
        }
    }

    /// The prover sends a proof for (key, token); returns whether it was accepted.
    pub fn complete(&mut self, id: &ProverId, key: &JobKey, token: FencingToken) -> bool {
        let check = self.s.check_result(id, key, token);
        if check != ResultCheck::Current {
            let pending = self.store.pending.len();
            assert!(self.s.complete(id, key, token, self.now).is_err());
            assert_eq!(
                pending,
                self.store.pending.len(),
                "a rejected result changes nothing"
            );
            return false;
        }
        self.assert_legit(id, key, token, "accepted result");
        let durable = self.store.rows.get(key).map(|j| j.state);
        assert_ne!(durable, Some(JobState::Proven), "{key:?} proven twice");
        let effects = self.s.complete(id, key, token, self.now).unwrap();
        self.forget(id, key, token);
        self.apply(effects, vec![(id.clone(), key.clone(), token)]);
        assert_eq!(self.store.view(key).unwrap().state, JobState::Proven);
        true
    }

    pub fn step(&mut self, op: &Op) {
        match *op {
            Op::Register {
                prover,
                types,
                capacity,
                version,
            } => {
                let id = prover_id(prover);
                let inf = info(&type_set(types), capacity, VERSIONS[version as usize]);
                if let Ok(effects) = self.s.register(id.clone(), inf, self.now) {
                    self.infos.insert(id.clone(), (types, capacity, version));
                    self.session.insert(id);
                    self.apply(effects, Vec::new());
                }
            }
            Op::AddBatch { version } => {
                let b = self.next_batch;
                self.next_batch += 1;
                let jobs: Vec<Job> = TYPES
                    .iter()
                    .map(|t| job(b, t, VERSIONS[version as usize]))
                    .collect();
                for j in &jobs {
                    let seq = self.next_seq();
                    self.store.insert(seq, j.clone());
                }
                let effects = self.s.add_jobs(jobs, self.now);
                self.apply(effects, Vec::new());
            }
            Op::Complete {
                prover,
                pick,
                stale,
            } => {
                let id = prover_id(prover);
                if !self.session.contains(&id) {
                    return;
                }
                let list = if stale { &self.given } else { &self.tasks };
                let Some((key, token)) = Self::pick(list.get(&id), pick) else {
                    return;
                };
                if !self.complete(&id, &key, token) && !stale {
                    self.forget(&id, &key, token);
                }
            }
            Op::Fail { prover, pick, .. } | Op::Decline { prover, pick } => {
                let id = prover_id(prover);
                if !self.session.contains(&id) {
                    return;
                }
                let Some((key, token)) = Self::pick(self.tasks.get(&id), pick) else {
                    return;
                };
                if self.s.check_result(&id, &key, token) == ResultCheck::Current {
                    self.assert_legit(&id, &key, token, "accepted failure");
                }
                let res = if let Op::Fail { invalid, .. } = op {
                    let failure = if *invalid {
                        Failure::InvalidProof
                    } else {
                        Failure::Error
                    };
                    self.s.fail(&id, &key, token, "error", failure, self.now)
                } else {
                    self.s.decline(&id, &key, token, self.now)
                };
                self.forget(&id, &key, token);
                if let Ok(effects) = res {
                    self.apply(effects, Vec::new());
                }
            }
            Op::Disconnect { prover } => {
                let id = prover_id(prover);
                self.s.disconnect(&id, self.now);
                self.session.remove(&id);
            }
            Op::Reconnect { prover, keep_mask } => {
                let id = prover_id(prover);
                let Some(&(types, capacity, version)) = self.infos.get(&id) else {
                    return;
                };
                let all = self.tasks.get(&id).cloned().unwrap_or_default();
                let kept: Vec<_> = all
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| keep_mask & (1 << (i % 8)) != 0)
                    .map(|(_, t)| t.clone())
                    .collect();
                self.reconnect(&id, kept, (types, capacity, version));
            }
            Op::Heartbeat { prover } => {
                let id = prover_id(prover);
                if self.session.contains(&id) {
                    let running = self.tasks.get(&id).cloned().unwrap_or_default();
                    let effects = self.s.heartbeat(&id, &running, self.now);
                    self.apply(effects, Vec::new());
                }
            }
            Op::Availability { prover, free } => {
                let id = prover_id(prover);
                if self.session.contains(&id) {
                    let effects = self.s.availability(&id, free, self.now);
                    self.apply(effects, Vec::new());
                }
            }
            Op::Advance { ms } => {
                self.now += ms;
                let effects = self.s.tick(self.now);
                self.apply(effects, Vec::new());
            }
            Op::Commit { n, all } => self.commit(if all { usize::MAX } else { n }),
            Op::Crash { keep } => self.crash(keep),
        }
        self.check_invariants();
    }

    /// The prover comes back reporting `kept` (and forgets the rest).
    pub fn reconnect(
        &mut self,
        id: &ProverId,
        kept: Vec<(JobKey, FencingToken)>,
        inf: (u8, u32, u8),
    ) {
        let (types, capacity, version) = inf;
        self.infos.insert(id.clone(), inf);
        self.tasks.insert(id.clone(), kept.clone());
        self.session.insert(id.clone());
        let inf = info(&type_set(types), capacity, VERSIONS[version as usize]);
        let effects = self.s.reconnect(id.clone(), inf, &kept, self.now);
        self.apply(effects, Vec::new());
    }

    pub fn check_invariants(&self) {
        let mut holders: BTreeMap<JobKey, ProverId> = BTreeMap::new();
        for p in self.s.provers() {
            for key in &p.running {
                assert!(
                    holders.insert(key.clone(), p.id.clone()).is_none(),
                    "{key:?} leased twice"
                );
                let job = self.s.job(key).expect("running job is open");
                assert_eq!(job.lease.as_ref().unwrap().prover, p.id);
            }
        }
        let views = self.store.views();
        let open: BTreeSet<&JobKey> = self.s.open_jobs().map(|j| &j.key).collect();
        for (key, row) in &views {
            assert_eq!(
                !row.state.is_terminal(),
                open.contains(key),
                "{key:?} open in the scheduler iff open in the store"
            );
        }
        let leases: BTreeSet<(JobKey, FencingToken)> = self
            .s
            .open_jobs()
            .filter_map(|j| j.lease.as_ref().map(|l| (j.key.clone(), l.token)))
            .collect();
        assert_eq!(
            self.attempts, leases,
            "every lease is an attempt begun and not ended, and only those"
        );
        for job in self.s.open_jobs() {
            assert_eq!(
                views.get(&job.key),
                Some(job),
                "store mirror matches the scheduler"
            );
            match job.state {
                JobState::Leased => assert!(holders.contains_key(&job.key)),
                JobState::Queued => assert!(job.lease.is_none()),
                s => panic!("terminal job {s:?} kept open"),
            }
        }
    }

    pub fn all_proven(&self) -> bool {
        self.store.all_proven()
    }

    pub fn not_proven(&self) -> Vec<Job> {
        let views = self.store.views();
        views
            .into_values()
            .filter(|j| j.state != JobState::Proven)
            .collect()
    }
}
