//! Readiness, component by component: each is checked at every `/ready` (all at once, each
//! for at most [`PROBE_WAIT`]), so the answer is about now and comes within that bound
//! whatever a component does.

use crate::standing::Standing;
use crate::status::view::SeenOnL1;
use futures::future::BoxFuture;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// Longest a component's check may take; a slower one counts as down.
pub const PROBE_WAIT: Duration = Duration::from_secs(2);

/// One component's state, as `/ready` lists it.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    /// One word: `ok` or `down` for a dependency; `active`, `standby`, `draining`, `deposed`
    /// or `starting` for leadership; `degraded` for settlement that fails its rounds.
    pub state: String,
    pub ready: bool,
    /// Whether `/ready` fails while this one is not ready.
    pub required: bool,
    /// What it is (an endpoint) or why it is not ready.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// A component's check.
pub(crate) type Probe = Arc<dyn Fn() -> BoxFuture<'static, Component> + Send + Sync>;

/// A check whose answer is known without asking anything.
pub(crate) fn fixed(component: Component) -> Probe {
    Arc::new(move || {
        let c = component.clone();
        Box::pin(async move { c })
    })
}

/// A check that reads its component's state anew each time (no I/O: for what the process
/// knows itself, such as leadership).
pub(crate) fn state(f: impl Fn() -> Component + Send + Sync + 'static) -> Probe {
    Arc::new(move || {
        let c = f();
        Box::pin(async move { c })
    })
}

/// A dependency's check: `ok` with `check`'s detail, or `down` with its reason (or because
/// it took longer than [`PROBE_WAIT`]).
pub(crate) fn probe<F, Fut>(name: &str, required: bool, check: F) -> Probe
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<String, String>> + Send + 'static,
{
    let name = name.to_string();
    Arc::new(move || {
        let name = name.clone();
        let checked = check();
        Box::pin(async move {
            let (ready, detail) = match tokio::time::timeout(PROBE_WAIT, checked).await {
                Ok(Ok(detail)) => (true, detail),
                Ok(Err(why)) => (false, why),
                Err(_) => (false, format!("no answer within {PROBE_WAIT:?}")),
            };
            Component {
                name,
                state: if ready { "ok" } else { "down" }.into(),
                ready,
                required,
                detail,
            }
        })
    })
}

/// An active coordinator's leadership: ready while it takes work; not once it drains (so a
/// load balancer stops sending it new connections first) or finds itself deposed.
pub(crate) fn leadership(standing: &Standing) -> Component {
    let (state, ready, detail) = if let Some(why) = standing.deposed() {
        ("deposed", false, why)
    } else if standing.draining() {
        ("draining", false, "shutting down: no new work".to_string())
    } else {
        let url = standing.lease_url();
        let detail = match url.is_empty() {
            true => String::new(),
            false => format!("{url} (lease epoch {})", standing.lease_epoch()),
        };
        ("active", true, detail)
    };
    Component {
        name: "leadership".into(),
        state: state.into(),
        ready,
        required: true,
        detail,
    }
}

/// Settlement (committer, proof sender) as it last reported: `degraded` while its rounds
/// fail, `off` until it reports (or when it does not run). Not required: provers should
/// still reach the one active coordinator while L1 is unreachable.
pub(crate) fn settlement(seen: SeenOnL1) -> Probe {
    state(move || {
        let (state, ready, detail) = match seen.get() {
            None => ("off", true, "not running".to_string()),
            Some(seen) => match seen.last_error {
                Some(error) => ("degraded", false, error),
                None => {
                    let n = |b: Option<u64>| b.map_or("none".to_string(), |b| b.to_string());
                    let detail = format!(
                        "last committed batch {}, last verified batch {}",
                        n(seen.last_committed_batch),
                        n(seen.last_verified_batch)
                    );
                    ("ok", true, detail)
                }
            },
        };
        Component {
            name: "settlement".into(),
            state: state.into(),
            ready,
            required: false,
            detail,
        }
    })
}

/// Every component now, and whether all required ones are ready.
pub(crate) async fn check(probes: &[Probe]) -> (bool, Vec<Component>) {
    let components = futures::future::join_all(probes.iter().map(|p| p())).await;
    let ready = components.iter().all(|c| c.ready || !c.required);
    (ready, components)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_required_component_down_fails_readiness_and_an_optional_one_does_not() {
        let up = probe("store", true, || async { Ok("sqlite".to_string()) });
        let optional = probe("l1", false, || async { Err("refused".to_string()) });
        let (ready, components) = check(&[up.clone(), optional]).await;
        assert!(ready);
        assert_eq!(components[1].state, "down");
        assert_eq!(components[1].detail, "refused");
        let down = probe("blobs", true, || async { Err("gone".to_string()) });
        assert!(!check(&[up, down]).await.0);
    }

    #[tokio::test]
    async fn a_check_that_hangs_is_down_after_the_wait() {
        let hangs = probe("store", true, std::future::pending);
        let (ready, components) = check(&[hangs]).await;
        assert!(!ready);
        assert!(components[0].detail.contains("no answer"), "{components:?}");
    }
}
