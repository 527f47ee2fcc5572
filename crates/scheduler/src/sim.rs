//! The scheduler in simulated time: a fleet of provers of different speeds and capacities,
//! some leaving and joining, proving a stream of batches, to compare assignment policies by
//! makespan (`proofmill bench makespan`).
//!
//! No clock and no threads: events (batch arrivals, provers joining and leaving, tasks
//! finishing, heartbeats) run in time order, and the scheduler's own wake-ups in between. A
//! prover proves a task in `work_ms * 100 / speed_pct` ms, each of its slots in parallel;
//! a prover that leaves loses what it runs (its stream closes: the scheduler requeues those
//! tasks after `reconnect_grace_ms`). Deterministic for a given workload.

mod bound;
mod workload;

pub use bound::lower_bound;
pub use workload::{SimJob, SimProver, Workload};

use crate::{Effect, PolicyName, Scheduler, SchedulerConfig};
use proofmill_types::{BatchNumber, FencingToken, Job, JobKey, JobState, Millis, ProverId};
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// What one simulated run came to.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome {
    pub policy: &'static str,
    /// When the last job was proven.
    pub makespan_ms: Millis,
    /// [`lower_bound`] of the workload.
    pub lower_bound_ms: f64,
    /// Tasks sent to provers (backup copies and re-runs of lost tasks included).
    pub dispatched: u64,
    /// Tasks lost because their prover left.
    pub lost: u64,
    /// Mean time from a batch's first job arriving to its last job proven (what delays
    /// settlement).
    pub mean_batch_latency_ms: Millis,
}

impl Outcome {
    /// Makespan over the lower bound: 1.0 is optimal, and no schedule does better.
    pub fn ratio(&self) -> f64 {
        self.makespan_ms as f64 / self.lower_bound_ms
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SimError {
    #[error("the workload has no jobs")]
    NoJobs,
    #[error("job {0} cannot be proven: no prover of its proof type is ever there")]
    Unprovable(JobKey),
    #[error("job {key} failed: {reason}")]
    JobFailed { key: JobKey, reason: String },
    #[error("the run stalled at {at_ms} ms with {open} jobs open")]
    Stalled { at_ms: Millis, open: usize },
}

#[derive(Clone, Debug)]
enum Event {
    Arrive(usize),
    Join(usize),
    Leave(usize),
    Done {
        prover: usize,
        key: JobKey,
        token: FencingToken,
    },
    Heartbeat,
}

struct SimState {
    alive: bool,
    running: BTreeMap<JobKey, FencingToken>,
}

/// Runs `workload` under the built-in policy `policy`, with the scheduler's defaults
/// otherwise.
pub fn run(workload: &Workload, policy: PolicyName) -> Result<Outcome, SimError> {
    let config = SchedulerConfig {
        assignment_policy: policy,
        ..SchedulerConfig::default()
    };
    run_with(workload, config)
}

/// Runs `workload` with this scheduler configuration.
pub fn run_with(workload: &Workload, config: SchedulerConfig) -> Result<Outcome, SimError> {
    let lower_bound_ms = lower_bound(workload)?;
    let heartbeat = config.heartbeat_interval_ms.max(1);
    let mut sim = Sim {
        workload,
        scheduler: Scheduler::new(config, 0),
        ids: (0..workload.provers.len())
            .map(|i| ProverId(format!("sim-{i}-{}", workload.provers[i].name)))
            .collect(),
        provers: workload
            .provers
            .iter()
            .map(|_| SimState {
                alive: false,
                running: BTreeMap::new(),
            })
            .collect(),
        work: workload
            .jobs
            .iter()
            .map(|j| (j.key.clone(), j.work_ms))
            .collect(),
        events: BTreeMap::new(),
        seq: 0,
        now: 0,
        open: workload.jobs.iter().map(|j| j.key.clone()).collect(),
        last_proven: 0,
        batch_proven_at: BTreeMap::new(),
        dispatched: 0,
        lost: 0,
    };
    for (i, job) in workload.jobs.iter().enumerate() {
        sim.at(job.arrives_at, Event::Arrive(i));
    }
    for (i, p) in workload.provers.iter().enumerate() {
        sim.at(p.joins_at, Event::Join(i));
        if let Some(at) = p.leaves_at {
            sim.at(at, Event::Leave(i));
        }
    }
    sim.at(heartbeat, Event::Heartbeat);
    // Steps at one instant: enough for every event there, bounded against a livelock.
    let mut steps_now = 0usize;
    let max_steps_now = 100 * (workload.jobs.len() + workload.provers.len()) + 1_000;
    while !sim.open.is_empty() {
        let next_event = sim.events.keys().next().map(|(t, _)| *t);
        let wake = sim.scheduler.next_wakeup();
        let (t, tick) = match (next_event, wake) {
            (Some(e), Some(w)) if w <= e => (w, true),
            (Some(e), _) => (e, false),
            (None, Some(w)) => (w, true),
            (None, None) => break,
        };
        let t = t.max(sim.now);
        steps_now = if t == sim.now { steps_now + 1 } else { 0 };
        if steps_now > max_steps_now {
            break;
        }
        sim.now = t;
        if tick {
            let effects = sim.scheduler.tick(t);
            sim.apply(effects)?;
        } else {
            let (_, event) = sim.events.pop_first().expect("peeked");
            sim.handle(event, heartbeat)?;
        }
    }
    if !sim.open.is_empty() {
        return Err(SimError::Stalled {
            at_ms: sim.now,
            open: sim.open.len(),
        });
    }
    let mut arrived: BTreeMap<BatchNumber, Millis> = BTreeMap::new();
    for job in &workload.jobs {
        let at = arrived.entry(job.key.batch).or_insert(job.arrives_at);
        *at = (*at).min(job.arrives_at);
    }
    let latency: Millis = arrived
        .iter()
        .map(|(b, at)| sim.batch_proven_at[b].saturating_sub(*at))
        .sum();
    Ok(Outcome {
        policy: sim.scheduler.policy_name(),
        makespan_ms: sim.last_proven,
        lower_bound_ms,
        dispatched: sim.dispatched,
        lost: sim.lost,
        mean_batch_latency_ms: latency / arrived.len() as Millis,
    })
}

struct Sim<'w> {
    workload: &'w Workload,
    scheduler: Scheduler,
    ids: Vec<ProverId>,
    provers: Vec<SimState>,
    work: HashMap<JobKey, Millis>,
    events: BTreeMap<(Millis, u64), Event>,
    seq: u64,
    now: Millis,
    open: BTreeSet<JobKey>,
    last_proven: Millis,
    /// When the last job of each batch so far was proven.
    batch_proven_at: BTreeMap<BatchNumber, Millis>,
    dispatched: u64,
    lost: u64,
}

impl Sim<'_> {
    fn at(&mut self, t: Millis, event: Event) {
        self.seq += 1;
        self.events.insert((t, self.seq), event);
    }

    fn handle(&mut self, event: Event, heartbeat: Millis) -> Result<(), SimError> {
        let now = self.now;
        let effects = match event {
            Event::Arrive(i) => {
                let job = &self.workload.jobs[i];
                let queued = Job::new_queued(job.key.clone(), workload::VERSION.into(), now);
                self.scheduler.add_jobs([queued], now)
            }
            Event::Join(i) => {
                self.provers[i].alive = true;
                let info = self.workload.provers[i].info();
                self.scheduler
                    .register(self.ids[i].clone(), info, now)
                    .expect("each simulated prover registers once")
            }
            Event::Leave(i) => {
                let p = &mut self.provers[i];
                p.alive = false;
                self.lost += p.running.len() as u64;
                p.running.clear();
                self.scheduler.disconnect(&self.ids[i], now);
                Vec::new()
            }
            Event::Done { prover, key, token } => {
                let p = &mut self.provers[prover];
                if !p.alive || p.running.get(&key) != Some(&token) {
                    return Ok(());
                }
                p.running.remove(&key);
                // A copy superseded meanwhile is refused by its token: nothing to do.
                self.scheduler
                    .complete(&self.ids[prover], &key, token, now)
                    .unwrap_or_default()
            }
            Event::Heartbeat => {
                let mut effects = Vec::new();
                for (i, p) in self.provers.iter().enumerate() {
                    if p.alive {
                        let running: Vec<_> =
                            p.running.iter().map(|(k, t)| (k.clone(), *t)).collect();
                        effects.extend(self.scheduler.heartbeat(&self.ids[i], &running, now));
                    }
                }
                self.at(now + heartbeat, Event::Heartbeat);
                effects
            }
        };
        self.apply(effects)
    }

    fn apply(&mut self, effects: Vec<Effect>) -> Result<(), SimError> {
        for effect in effects {
            match effect {
                Effect::Dispatch { prover, job } => {
                    let i = self.index(&prover);
                    let token = job.lease.as_ref().expect("a dispatch has a lease").token;
                    self.dispatched += 1;
                    if !self.provers[i].alive {
                        continue;
                    }
                    self.provers[i].running.insert(job.key.clone(), token);
                    let work = self.work[&job.key];
                    let took = self.workload.provers[i].prove_ms(work);
                    self.at(
                        self.now + took,
                        Event::Done {
                            prover: i,
                            key: job.key,
                            token,
                        },
                    );
                }
                Effect::Cancel {
                    prover, key, token, ..
                } => {
                    let i = self.index(&prover);
                    let running = &mut self.provers[i].running;
                    if running.get(&key) == Some(&token) {
                        running.remove(&key);
                    }
                }
                Effect::Persist(job) => match job.state {
                    JobState::Proven => {
                        self.open.remove(&job.key);
                        self.last_proven = self.now;
                        self.batch_proven_at.insert(job.key.batch, self.now);
                    }
                    JobState::Failed | JobState::Cancelled => {
                        return Err(SimError::JobFailed {
                            key: job.key,
                            reason: job.last_error.unwrap_or_default(),
                        });
                    }
                    _ => {}
                },
                Effect::Disconnect { .. }
                | Effect::Cordon { .. }
                | Effect::AttemptStarted { .. }
                | Effect::AttemptEnded { .. } => {}
            }
        }
        Ok(())
    }

    fn index(&self, id: &ProverId) -> usize {
        self.ids
            .iter()
            .position(|i| i == id)
            .expect("the scheduler only knows simulated provers")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_proves_the_documented_workload_no_faster_than_the_bound() {
        let w = Workload::heterogeneous(1);
        for policy in PolicyName::ALL {
            let out = run(&w, policy).unwrap();
            assert_eq!(out.policy, policy.as_str());
            assert!(out.ratio() >= 1.0, "{out:?}");
            assert!(
                out.lost > 0,
                "the workload's leaving provers lose tasks: {out:?}"
            );
        }
    }

    #[test]
    fn runs_are_deterministic() {
        let w = Workload::heterogeneous(7);
        for policy in PolicyName::ALL {
            assert_eq!(run(&w, policy).unwrap(), run(&w, policy).unwrap());
        }
    }
}
