//! The parts of a coordinator an operator can pause, and which of them are paused now: the
//! store's record (`controls` table) as this coordinator acts on it. Read by each part (the
//! settlement loops, the devnet sealer, intake, status); changed only by [`crate::pausing`].

use crate::error::CoordinatorError;
use proofmill_types::Millis;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::watch;

/// A part an operator can pause.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    /// The L1 proof sender: no `verifyBatches` goes out (it keeps reading L1).
    Sender,
    /// The L1 committer: no `commitBatch` goes out by itself (it keeps reading L1).
    Committer,
    /// The rollup's sealer beside the coordinator (the devnet's): no new batch is sealed.
    Sealing,
    /// Batches coming in: `LaunchProof` is refused, sources wait.
    Intake,
    /// No new task is leased to a prover; running tasks finish and their results count.
    Dispatch,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::Sender,
        Component::Committer,
        Component::Sealing,
        Component::Intake,
        Component::Dispatch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Component::Sender => "sender",
            Component::Committer => "committer",
            Component::Sealing => "sealing",
            Component::Intake => "intake",
            Component::Dispatch => "dispatch",
        }
    }

    /// The component named `name`, or `InvalidArgument` listing the valid names.
    pub fn parse(name: &str) -> Result<Component, CoordinatorError> {
        Component::ALL
            .into_iter()
            .find(|c| c.as_str() == name)
            .ok_or_else(|| {
                let valid: Vec<&str> = Component::ALL.iter().map(|c| c.as_str()).collect();
                CoordinatorError::InvalidArgument(format!(
                    "unknown component {:?}; one of {}",
                    name.chars().take(64).collect::<String>(),
                    valid.join(", ")
                ))
            })
    }
}

impl std::fmt::Display for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why and since when a component is paused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pause {
    /// The operator's reason ("" when none was given).
    pub reason: String,
    /// Unix ms.
    pub since: Millis,
}

/// Which components are paused now (see the module doc). Cheap to clone; every clone sees
/// the same state.
#[derive(Clone)]
pub struct Pauses(Arc<watch::Sender<BTreeMap<Component, Pause>>>);

impl Default for Pauses {
    fn default() -> Self {
        Pauses(Arc::new(watch::channel(BTreeMap::new()).0))
    }
}

impl Pauses {
    /// Whether (and why) `c` is paused.
    pub fn get(&self, c: Component) -> Option<Pause> {
        self.0.borrow().get(&c).cloned()
    }

    pub fn is_paused(&self, c: Component) -> bool {
        self.0.borrow().contains_key(&c)
    }

    /// Every paused component, in [`Component`] order.
    pub fn all(&self) -> BTreeMap<Component, Pause> {
        self.0.borrow().clone()
    }

    /// A receiver of every change, for a loop that must act at once on a resume.
    pub fn watch(&self) -> PauseWatch {
        PauseWatch(self.0.subscribe())
    }

    /// Resolves once none of `parts` is paused (at once if none is).
    pub async fn resumed(&self, parts: &[Component]) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so this ends only by a resume.
        let _ = rx
            .wait_for(|paused| parts.iter().all(|c| !paused.contains_key(c)))
            .await;
    }

    pub(crate) fn set(&self, c: Component, pause: Option<Pause>) {
        self.0.send_modify(|paused| match pause {
            Some(p) => {
                paused.insert(c, p);
            }
            None => {
                paused.remove(&c);
            }
        });
    }
}

/// See [`Pauses::watch`].
pub struct PauseWatch(watch::Receiver<BTreeMap<Component, Pause>>);

impl PauseWatch {
    /// Resolves at the next pause or resume of any component.
    pub async fn changed(&mut self) {
        if self.0.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    pub fn is_paused(&self, c: Component) -> bool {
        self.0.borrow().contains_key(&c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_an_unknown_one_lists_the_valid_ones() {
        for c in Component::ALL {
            assert_eq!(Component::parse(c.as_str()).unwrap(), c);
        }
        let e = Component::parse("prover").unwrap_err().to_string();
        assert!(
            e.contains("\"prover\"") && e.contains("sender, committer, sealing, intake, dispatch"),
            "{e}"
        );
        assert!(Component::parse("Sender").is_err(), "names are exact");
    }

    #[tokio::test]
    async fn resumed_waits_for_every_part_named() {
        let pauses = Pauses::default();
        let pause = Pause {
            reason: String::new(),
            since: 1,
        };
        pauses.set(Component::Sealing, Some(pause.clone()));
        pauses.set(Component::Intake, Some(pause));
        let waiting = tokio::spawn({
            let pauses = pauses.clone();
            async move {
                pauses
                    .resumed(&[Component::Sealing, Component::Intake])
                    .await
            }
        });
        pauses.set(Component::Sealing, None);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "intake is still paused");
        pauses.set(Component::Intake, None);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("resumed")
            .unwrap();
    }
}
