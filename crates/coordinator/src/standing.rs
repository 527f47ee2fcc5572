//! Whether this coordinator is the active one: its shutdown signal, the store lease it holds,
//! and whether a write of its was fenced. Read by everything that must stop acting once it is
//! not (the gate on every request, health, status, settlement); written only by `attach` and
//! the persister.

use crate::shutdown::Shutdown;
use std::sync::{Arc, OnceLock};
use tokio::sync::watch;

/// See the module doc. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Standing {
    shutdown: Shutdown,
    lease: Arc<OnceLock<HeldLease>>,
    fenced: Arc<watch::Sender<Option<String>>>,
    /// Set once this coordinator has stepped down: what it still serves must end.
    retired: Arc<watch::Sender<Option<String>>>,
}

/// The lease a coordinator holds and where it is reached (see [`crate::leadership`]).
pub(crate) struct HeldLease {
    pub url: String,
    pub epoch: u64,
    pub check: crate::leadership::LeaseCheck,
}

impl Default for Standing {
    fn default() -> Self {
        Standing {
            shutdown: Shutdown::default(),
            lease: Arc::default(),
            fenced: Arc::new(watch::channel(None).0),
            retired: Arc::new(watch::channel(None).0),
        }
    }
}

impl Standing {
    pub fn shutdown(&self) -> Shutdown {
        self.shutdown.clone()
    }

    pub fn draining(&self) -> bool {
        self.shutdown.is_begun()
    }

    /// Records the store lease held (once; later calls change nothing).
    pub fn attach(&self, lease: HeldLease) {
        let _ = self.lease.set(lease);
    }

    /// Where the attached lease says this coordinator is reached ("" when none).
    pub fn lease_url(&self) -> String {
        self.lease.get().map(|l| l.url.clone()).unwrap_or_default()
    }

    pub fn lease_epoch(&self) -> u64 {
        self.lease.get().map_or(0, |l| l.epoch)
    }

    /// What the persister signals when a write is fenced.
    pub fn fenced_signal(&self) -> Arc<watch::Sender<Option<String>>> {
        self.fenced.clone()
    }

    /// Resolves, with the store's error, once a write of this coordinator was fenced.
    pub async fn fenced(&self) -> String {
        let mut rx = self.fenced.subscribe();
        match rx.wait_for(|f| f.is_some()).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    /// Marks this coordinator as no longer active, for good (it stepped down): every prover
    /// stream it serves is closed with `why`, so that its provers go to the active one. A
    /// stream left open would be served by a core whose writes are fenced: its results
    /// would never be acknowledged, while its heartbeats still were, so the prover would
    /// never leave (even when this process becomes active again on the same listener).
    pub fn retire(&self, why: &str) {
        self.retired.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(why.to_string());
            true
        });
        self.shutdown.begin();
    }

    /// Resolves, with why, once [`Standing::retire`] was called.
    pub async fn retired(&self) -> String {
        let mut rx = self.retired.subscribe();
        // The guard is let go before any await (a future held across one is not `Send`).
        let why = rx.wait_for(|r| r.is_some()).await.map(|r| r.clone());
        match why {
            Ok(why) => why.unwrap_or_default(),
            Err(_) => std::future::pending().await,
        }
    }

    /// Whether this coordinator surely holds the store's lease (always, when none was
    /// attached: a coordinator alone on its store by design). Work outside the store that
    /// two coordinators must not both do (L1 transactions) is done only then.
    pub fn holds_lease(&self) -> bool {
        self.fenced.borrow().is_none() && self.lease.get().is_none_or(|l| l.check.is_held())
    }

    /// Why this coordinator is no longer active, once it knows (a write was fenced, its
    /// lease was found taken), or may not be (its lease overdue: it did not run for a while).
    pub fn deposed(&self) -> Option<String> {
        let fenced = self.fenced.borrow().clone();
        fenced.or_else(|| {
            let check = &self.lease.get()?.check;
            check.lost().or_else(|| {
                check.overdue().then(|| {
                    "its lease was not renewed in time (the process was paused?); \
                     another coordinator may hold it"
                        .to_string()
                })
            })
        })
    }
}
