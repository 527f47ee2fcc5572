//! An operator's pause and resume of a component: durable first (a row of the store's
//! `controls` table, written through this coordinator's fenced store handle, so a deposed
//! coordinator writes none), then acted on: dispatch by the core, which owns the scheduler,
//! the other parts by reading [`Pauses`]. A restart reads the rows back
//! ([`restore`]), so a pause holds until it is resumed.

use crate::core::CoreHandle;
use crate::error::CoordinatorError;
use crate::now_ms;
use crate::pauses::{Component, Pause, Pauses};
use proofmill_store::{Change, Store};
use std::sync::Arc;

/// See the module doc. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Pausing {
    pub store: Arc<dyn Store>,
    pub core: CoreHandle,
    pub pauses: Pauses,
    /// One pause or resume at a time, so that "already paused" and the write agree.
    pub lock: Arc<tokio::sync::Mutex<()>>,
    pub events: crate::events::EventBus,
}

impl Pausing {
    /// Pauses `c` with `reason`; returns whether this call paused it (`false`: it was paused
    /// already, and stays as it was) and the pause now in force. Returns once it is durable
    /// and in force.
    pub async fn pause(
        &self,
        c: Component,
        reason: &str,
    ) -> Result<(bool, Pause), CoordinatorError> {
        let _one = self.lock.lock().await;
        if let Some(p) = self.pauses.get(c) {
            return Ok((false, p));
        }
        let pause = Pause {
            reason: reason.to_string(),
            since: now_ms(),
        };
        let change = Change::Control {
            component: c.as_str().into(),
            paused: true,
            at: pause.since,
            reason: pause.reason.clone(),
        };
        self.store.apply(std::slice::from_ref(&change)).await?;
        self.events.publish_changes(&[change]);
        if c == Component::Dispatch {
            self.core.pause_dispatch(true).await?;
        }
        self.pauses.set(c, Some(pause.clone()));
        tracing::info!(component = %c, reason = %pause.reason, "paused by an operator");
        Ok((true, pause))
    }

    /// Resumes `c`; returns whether this call resumed it (`false`: it was not paused).
    /// The part acts at once (dispatch hands out what is ready, the settlement loops run a
    /// round).
    pub async fn resume(&self, c: Component) -> Result<bool, CoordinatorError> {
        let _one = self.lock.lock().await;
        if !self.pauses.is_paused(c) {
            return Ok(false);
        }
        let change = Change::Control {
            component: c.as_str().into(),
            paused: false,
            at: now_ms(),
            reason: String::new(),
        };
        self.store.apply(std::slice::from_ref(&change)).await?;
        self.events.publish_changes(&[change]);
        if c == Component::Dispatch {
            self.core.pause_dispatch(false).await?;
        }
        self.pauses.set(c, None);
        tracing::info!(component = %c, "resumed by an operator");
        Ok(true)
    }
}

/// The pauses in the store, for a coordinator that starts. A row of a component this
/// version does not know (written by a newer one) is skipped with a warning.
pub(crate) async fn restore(store: &dyn Store) -> Result<Pauses, CoordinatorError> {
    let pauses = Pauses::default();
    for row in store.paused_components().await? {
        match Component::parse(&row.component) {
            Ok(c) => {
                tracing::warn!(component = %c, reason = %row.reason, since = row.since, "paused (kept in the store): `proofmill resume` resumes it");
                pauses.set(
                    c,
                    Some(Pause {
                        reason: row.reason,
                        since: row.since,
                    }),
                );
            }
            Err(e) => tracing::warn!(error = %e, "a stored pause is not known here; ignored"),
        }
    }
    Ok(pauses)
}
