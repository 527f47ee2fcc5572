//! Coordinator URLs that are one store's active and standby coordinators.
//!
//! A prover is given URLs; each starts as a connection of its own. A standby refuses the
//! stream naming the active coordinator's URL; when that is another connection's URL, the
//! refused connection (holding nothing) hands its URL over and ends. The active one's
//! connection then knows both: when its coordinator dies, it goes to the other URL under the
//! same identity, with its running tasks and unacknowledged results (every coordinator on a
//! store accepts the ids and secrets the store issued), and the standby that took over keeps
//! their leases.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

#[derive(Default)]
pub(crate) struct Groups {
    /// Live connections by the URL they started with, and how to hand them another URL.
    conns: Mutex<HashMap<String, mpsc::UnboundedSender<String>>>,
}

impl Groups {
    /// Registers the connection that started with `url`; it receives URLs handed over to it.
    pub fn join(&self, url: &str) -> mpsc::UnboundedReceiver<String> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.lock().insert(key(url).to_string(), tx);
        rx
    }

    pub fn leave(&self, url: &str) {
        self.lock().remove(key(url));
    }

    /// Hands `urls` to the connection that started with `active`; false if there is none
    /// (then the caller keeps them).
    pub fn hand_over(&self, active: &str, urls: &[String]) -> bool {
        let conns = self.lock();
        let Some(tx) = conns.get(key(active)) else {
            return false;
        };
        urls.iter().all(|u| tx.send(u.clone()).is_ok())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<String>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// URLs compare without a trailing slash.
fn key(url: &str) -> &str {
    url.trim_end_matches('/')
}

pub(crate) fn same_url(a: &str, b: &str) -> bool {
    key(a) == key(b)
}
