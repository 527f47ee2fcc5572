//! Property tests: random interleavings of prover and job events, checked against invariants
//! and against a mirror of the store built only from `Persist` effects.
mod common;
use common::*;
use proofmill_scheduler::{Effect, ResultCheck, Scheduler, SchedulerConfig};
use proofmill_types::{FencingToken, Job, JobKey, JobState, ProverId};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};

const TYPES: [&str; 2] = ["exec", "stark"];
const VERSIONS: [&str; 2] = ["v1", "v2"];

#[derive(Clone, Debug)]
enum Op {
    Register {
        prover: u8,
        types: u8,
        capacity: u32,
        version: u8,
    },
    AddBatch {
        version: u8,
    },
    Complete {
        prover: u8,
        pick: usize,
        stale: bool,
    },
    Fail {
        prover: u8,
        pick: usize,
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
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..5u8, 1..4u8, 1..4u32, 0..2u8).prop_map(|(prover, types, capacity, version)| Op::Register { prover, types, capacity, version }),
        1 => (0..2u8).prop_map(|version| Op::AddBatch { version }),
        3 => (0..5u8, any::<usize>(), any::<bool>()).prop_map(|(prover, pick, stale)| Op::Complete { prover, pick, stale }),
        1 => (0..5u8, any::<usize>()).prop_map(|(prover, pick)| Op::Fail { prover, pick }),
        1 => (0..5u8, any::<usize>()).prop_map(|(prover, pick)| Op::Decline { prover, pick }),
        1 => (0..5u8).prop_map(|prover| Op::Disconnect { prover }),
        1 => (0..5u8, any::<u8>()).prop_map(|(prover, keep_mask)| Op::Reconnect { prover, keep_mask }),
        2 => (0..5u8).prop_map(|prover| Op::Heartbeat { prover }),
        1 => (0..5u8, 0..4u32).prop_map(|(prover, free)| Op::Availability { prover, free }),
        2 => (0..20_000u64).prop_map(|ms| Op::Advance { ms }),
    ]
}

/// What the test knows: the store mirror and what each prover was told.
struct Harness {
    s: Scheduler,
    now: u64,
    next_batch: u64,
    /// Job rows as the store would hold them (from Persist effects, and inserts).
    store: BTreeMap<JobKey, Job>,
    /// Latest token dispatched per job: the only one that may ever be accepted.
    dispatched: HashMap<JobKey, (ProverId, FencingToken)>,
    /// Tasks each prover believes it runs (it learns of cancels and dispatches).
    tasks: BTreeMap<ProverId, Vec<(JobKey, FencingToken)>>,
    infos: BTreeMap<ProverId, (u8, u32, u8)>,
    last_token: u64,
    proven_with: HashMap<JobKey, FencingToken>,
}

impl Harness {
    fn new(config: SchedulerConfig) -> Self {
        Harness {
            s: Scheduler::new(config, 0),
            now: 0,
            next_batch: 1,
            store: BTreeMap::new(),
            dispatched: HashMap::new(),
            tasks: BTreeMap::new(),
            infos: BTreeMap::new(),
            last_token: 0,
            proven_with: HashMap::new(),
        }
    }

    fn apply(&mut self, effects: Vec<Effect>) {
        for e in effects {
            match e {
                Effect::Persist(job) => {
                    assert!(
                        self.store.contains_key(&job.key),
                        "persist of unknown job {:?}",
                        job.key
                    );
                    self.store.insert(job.key.clone(), job);
                }
                Effect::Dispatch { prover, job } => {
                    let lease = job.lease.clone().expect("dispatched job has a lease");
                    assert_eq!(lease.prover, prover);
                    assert!(lease.token.0 > self.last_token, "tokens strictly increase");
                    self.last_token = lease.token.0;
                    assert_eq!(
                        self.store.get(&job.key),
                        Some(&job),
                        "dispatch only after its persist"
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
                    assert!(
                        !self.proven_with.contains_key(&job.key),
                        "proven job dispatched again"
                    );
                    self.dispatched
                        .insert(job.key.clone(), (prover.clone(), lease.token));
                    self.tasks
                        .entry(prover)
                        .or_default()
                        .push((job.key, lease.token));
                }
                Effect::Cancel {
                    prover, key, token, ..
                } => {
                    if let Some(t) = self.tasks.get_mut(&prover) {
                        t.retain(|(k, tok)| !(*k == key && *tok == token));
                    }
                }
                Effect::Disconnect { prover, .. } => {
                    self.tasks.remove(&prover);
                }
            }
        }
    }

    fn pick(&self, prover: &ProverId, pick: usize) -> Option<(JobKey, FencingToken)> {
        let t = self.tasks.get(prover)?;
        if t.is_empty() {
            None
        } else {
            Some(t[pick % t.len()].clone())
        }
    }

    fn forget(&mut self, prover: &ProverId, key: &JobKey, token: FencingToken) {
        if let Some(t) = self.tasks.get_mut(prover) {
            t.retain(|(k, tok)| !(k == key && *tok == token));
        }
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Register {
                prover,
                types,
                capacity,
                version,
            } => {
                let id = pid(&format!("p{prover}"));
                let inf = info(&type_set(types), capacity, VERSIONS[version as usize]);
                if let Ok(effects) = self.s.register(id.clone(), inf, self.now) {
                    self.infos.insert(id, (types, capacity, version));
                    self.apply(effects);
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
                    self.store.insert(j.key.clone(), j.clone());
                }
                let effects = self.s.add_jobs(jobs, self.now);
                self.apply(effects);
            }
            Op::Complete {
                prover,
                pick,
                stale,
            } => {
                let id = pid(&format!("p{prover}"));
                let Some((key, mut token)) = self.pick(&id, pick) else {
                    return;
                };
                if stale {
                    token = FencingToken(token.0.wrapping_sub(1));
                }
                let current = self.dispatched.get(&key) == Some(&(id.clone(), token));
                let check = self.s.check_result(&id, &key, token);
                if check == ResultCheck::Current {
                    assert!(
                        current,
                        "accepted a token that is not the latest dispatched one"
                    );
                    let effects = self.s.complete(&id, &key, token, self.now).unwrap();
                    assert!(
                        self.proven_with.insert(key.clone(), token).is_none(),
                        "proven twice"
                    );
                    self.apply(effects);
                    assert_eq!(self.store[&key].state, JobState::Proven);
                } else {
                    let before = self.store.clone();
                    assert!(self.s.complete(&id, &key, token, self.now).is_err());
                    assert_eq!(before, self.store, "a rejected result changes nothing");
                }
                if !stale {
                    self.forget(&id, &key, token);
                }
            }
            Op::Fail { prover, pick } | Op::Decline { prover, pick } => {
                let id = pid(&format!("p{prover}"));
                let Some((key, token)) = self.pick(&id, pick) else {
                    return;
                };
                let res = if matches!(op, Op::Fail { .. }) {
                    self.s.fail(&id, &key, token, "error", self.now)
                } else {
                    self.s.decline(&id, &key, token, self.now)
                };
                self.forget(&id, &key, token);
                if let Ok(effects) = res {
                    self.apply(effects);
                }
            }
            Op::Disconnect { prover } => self.s.disconnect(&pid(&format!("p{prover}"))),
            Op::Reconnect { prover, keep_mask } => {
                let id = pid(&format!("p{prover}"));
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
                self.tasks.insert(id.clone(), kept.clone());
                let inf = info(&type_set(types), capacity, VERSIONS[version as usize]);
                let effects = self.s.reconnect(id, inf, &kept, self.now);
                self.apply(effects);
            }
            Op::Heartbeat { prover } => {
                let id = pid(&format!("p{prover}"));
                let running = self.tasks.get(&id).cloned().unwrap_or_default();
                let effects = self.s.heartbeat(&id, &running, self.now);
                self.apply(effects);
            }
            Op::Availability { prover, free } => {
                let effects = self
                    .s
                    .availability(&pid(&format!("p{prover}")), free, self.now);
                self.apply(effects);
            }
            Op::Advance { ms } => {
                self.now += ms;
                let effects = self.s.tick(self.now);
                self.apply(effects);
            }
        }
        self.check_invariants();
    }

    fn check_invariants(&self) {
        let mut holders: HashMap<JobKey, ProverId> = HashMap::new();
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
        for job in self.s.open_jobs() {
            assert_eq!(
                self.store.get(&job.key),
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
}

fn type_set(mask: u8) -> Vec<&'static str> {
    TYPES
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, t)| *t)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Safety under arbitrary interleavings, with the default (small) budgets so jobs also
    /// reach `failed`.
    #[test]
    fn invariants_hold(ops in prop::collection::vec(op(), 1..120)) {
        let mut h = Harness::new(SchedulerConfig { max_attempts: 3, max_lost_attempts: 3, ..Default::default() });
        for op in &ops {
            h.step(op);
        }
    }

    /// Liveness: after any prefix, once matching provers exist and keep answering, every job
    /// is proven (budgets are large so that no job may give up).
    #[test]
    fn every_batch_is_eventually_proven(ops in prop::collection::vec(op(), 1..80)) {
        let mut h = Harness::new(SchedulerConfig { max_attempts: 1_000, max_lost_attempts: 1_000, ..Default::default() });
        for op in &ops {
            h.step(op);
        }
        // Honest provers for every (type, version), ids outside the random range.
        let mut honest = Vec::new();
        for (v, _) in VERSIONS.iter().enumerate() {
            let id = pid(&format!("honest{v}"));
            h.infos.insert(id.clone(), (0b11, 2, v as u8));
            let effects = h.s.register(id.clone(), info(&TYPES, 2, VERSIONS[v]), h.now).unwrap();
            h.apply(effects);
            honest.push(id);
        }
        for _round in 0..400 {
            if h.store.values().all(|j| j.state == JobState::Proven) {
                break;
            }
            for id in &honest {
                let tasks = h.tasks.get(id).cloned().unwrap_or_default();
                for (key, token) in tasks {
                    h.forget(id, &key, token);
                    if h.s.check_result(id, &key, token) == ResultCheck::Current {
                        let effects = h.s.complete(id, &key, token, h.now).unwrap();
                        prop_assert!(h.proven_with.insert(key.clone(), token).is_none());
                        h.apply(effects);
                    }
                }
            }
            h.now += 5_000;
            for id in &honest {
                let running = h.tasks.get(id).cloned().unwrap_or_default();
                let effects = h.s.heartbeat(id, &running, h.now);
                h.apply(effects);
            }
            let effects = h.s.tick(h.now);
            h.apply(effects);
            h.check_invariants();
        }
        let open: Vec<_> = h.store.values().filter(|j| j.state != JobState::Proven).collect();
        prop_assert!(open.is_empty(), "not proven: {:?}", open);
    }
}
