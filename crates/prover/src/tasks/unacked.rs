//! Results finished and not yet acknowledged. Each is kept (in memory, and in the state dir
//! when there is one, so that a restarted prover still offers it) until the coordinator
//! answers it for good; one it could not take for a passing reason is offered again later.

use super::Assignment;
use super::proving::FinishedTask;
use crate::state::CoordinatorState;
use proofmill_proto::v1::ErrorCode;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// First wait before offering again a result the coordinator could not take; it doubles on
/// each further refusal, up to [`RESEND_MAX`].
const RESEND_FIRST: Duration = Duration::from_millis(500);
const RESEND_MAX: Duration = Duration::from_secs(30);

pub(crate) struct UnackedResults {
    results: BTreeMap<Assignment, Unacked>,
    state: Option<CoordinatorState>,
}

struct Unacked {
    finished: Arc<FinishedTask>,
    /// Set once the coordinator could not take it for a passing reason.
    resend: Option<Resend>,
}

/// When to send a refused result again (`None` once sent, until the next answer), and the
/// last wait.
#[derive(Clone, Copy)]
struct Resend {
    due: Option<Instant>,
    wait: Duration,
}

/// What a coordinator's `ResultAck` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// No result of that task waits for an answer.
    NotPending,
    /// Refused for a passing reason (`SYSTEM_UNAVAILABLE`, `INTERNAL`): kept, offered again
    /// after this wait.
    ResendAfter(Duration),
    /// Taken for good: dropped.
    Accepted { proof: bool },
    /// Refused for good: dropped.
    Rejected,
}

impl UnackedResults {
    /// The results the last process left in `state`, if any.
    pub fn restore(state: Option<CoordinatorState>) -> Self {
        let results = state
            .as_ref()
            .map(|s| s.results())
            .unwrap_or_default()
            .into_iter()
            .map(|(task, finished)| {
                let finished = Arc::new(finished);
                (task, Unacked::new(finished))
            })
            .collect();
        UnackedResults { results, state }
    }

    pub fn len(&self) -> usize {
        self.results.len()
    }

    pub fn is_empty(&self) -> bool {
        self.results.is_empty()
    }

    pub fn get(&self, task: &Assignment) -> Option<&Arc<FinishedTask>> {
        self.results.get(task).map(|u| &u.finished)
    }

    pub fn tasks(&self) -> impl Iterator<Item = &Assignment> {
        self.results.keys()
    }

    /// Every result, in task order: what a new stream offers first.
    pub fn all(&self) -> Vec<(Assignment, Arc<FinishedTask>)> {
        self.results
            .iter()
            .map(|(task, u)| (task.clone(), u.finished.clone()))
            .collect()
    }

    pub fn keep(&mut self, task: Assignment, finished: FinishedTask) -> Arc<FinishedTask> {
        if let Some(state) = &self.state {
            state.save_result(&task, &finished);
        }
        let finished = Arc::new(finished);
        self.results.insert(task, Unacked::new(finished.clone()));
        finished
    }

    /// Applies the coordinator's answer to the result of `task`.
    pub fn answer(&mut self, task: &Assignment, accepted: bool, code: i32) -> Answer {
        let Some(unacked) = self.results.get_mut(task) else {
            return Answer::NotPending;
        };
        let passing = matches!(
            ErrorCode::try_from(code),
            Ok(ErrorCode::SystemUnavailable | ErrorCode::Internal)
        );
        if !accepted && passing {
            // The coordinator could not take it now (a store or blob write failed): keep the
            // proof and offer it again; only a final answer lets it go.
            let wait = unacked
                .resend
                .map_or(RESEND_FIRST, |r| (r.wait * 2).min(RESEND_MAX));
            unacked.resend = Some(Resend {
                due: Some(Instant::now() + wait),
                wait,
            });
            return Answer::ResendAfter(wait);
        }
        let unacked = self.results.remove(task).expect("looked up above");
        if let Some(state) = &self.state {
            state.remove_result(task);
        }
        if accepted {
            let proof = matches!(unacked.finished.output, super::TaskOutput::Proof { .. });
            Answer::Accepted { proof }
        } else {
            Answer::Rejected
        }
    }

    /// The results whose resend time has come, marked as sent.
    pub fn due(&mut self, now: Instant) -> Vec<(Assignment, Arc<FinishedTask>)> {
        let mut due = Vec::new();
        for (task, u) in &mut self.results {
            if let Some(r) = &mut u.resend
                && r.due.is_some_and(|at| at <= now)
            {
                r.due = None;
                due.push((task.clone(), u.finished.clone()));
            }
        }
        due
    }

    /// Drops every result, here and in the state dir: they can never be accepted.
    pub fn forget_all(&mut self) {
        self.results.clear();
        if let Some(state) = &self.state {
            state.remove_all_results();
        }
    }
}

impl Unacked {
    fn new(finished: Arc<FinishedTask>) -> Self {
        Unacked {
            finished,
            resend: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::TaskOutput;

    fn task(n: u64) -> Assignment {
        Assignment {
            task_id: format!("{n}/exec"),
            token: n,
        }
    }

    fn error(text: &str) -> FinishedTask {
        FinishedTask {
            output: TaskOutput::Error(text.into()),
            prove_ms: 1,
        }
    }

    #[test]
    fn a_passing_refusal_keeps_the_result_and_doubles_the_wait_up_to_the_cap() {
        let mut results = UnackedResults::restore(None);
        results.keep(task(1), error("e"));
        let unavailable = ErrorCode::SystemUnavailable as i32;
        let mut waits = Vec::new();
        for _ in 0..8 {
            match results.answer(&task(1), false, unavailable) {
                Answer::ResendAfter(wait) => waits.push(wait),
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(waits[0], RESEND_FIRST);
        assert_eq!(waits[1], RESEND_FIRST * 2);
        assert_eq!(*waits.last().unwrap(), RESEND_MAX);
        assert!(results.due(Instant::now()).is_empty(), "not due yet");
        let later = Instant::now() + RESEND_MAX;
        assert_eq!(results.due(later).len(), 1);
        assert!(results.due(later).is_empty(), "sent once per refusal");
        assert_eq!(
            results.answer(&task(1), false, ErrorCode::StaleFencingToken as i32),
            Answer::Rejected
        );
        assert!(results.is_empty());
        assert_eq!(results.answer(&task(1), true, 0), Answer::NotPending);
    }

    #[test]
    fn an_accepted_result_is_dropped_from_the_state_dir_too() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = crate::StateDir::open(tmp.path()).unwrap();
        let state = dir.coordinator("http://127.0.0.1:1").unwrap();
        let mut results = UnackedResults::restore(Some(state.clone()));
        results.keep(task(1), error("e"));
        results.keep(
            task(2),
            FinishedTask {
                output: TaskOutput::Proof {
                    bytes: vec![7],
                    digest: proofmill_types::Digest::sha256(&[7]),
                },
                prove_ms: 2,
            },
        );
        assert_eq!(UnackedResults::restore(Some(state.clone())).len(), 2);
        assert_eq!(
            results.answer(&task(2), true, 0),
            Answer::Accepted { proof: true }
        );
        let restored = UnackedResults::restore(Some(state.clone()));
        assert_eq!(restored.tasks().collect::<Vec<_>>(), [&task(1)]);
        results.forget_all();
        assert!(UnackedResults::restore(Some(state)).is_empty());
    }
}
