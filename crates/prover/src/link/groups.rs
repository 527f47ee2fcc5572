//! Coordinator URLs that are one store's active and standby coordinators.
//!
//! A prover is given URLs; each starts as a link of its own. A standby refuses the stream
//! naming the active coordinator's URL; when that is another link's URL, the refused link
//! (holding nothing) hands its URLs over and ends. The active one's link then knows both:
//! when its coordinator dies, it goes to the other URL under the same identity, with its
//! running tasks and unacknowledged results (every coordinator on a store accepts the ids
//! and secrets the store issued), and the standby that took over keeps their leases.

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

pub(crate) struct Groups {
    /// Live links by the URL they started with, and how to hand them another URL.
    links: Mutex<HashMap<String, mpsc::Sender<String>>>,
    /// URLs the prover was given: the most a link can ever be handed, since a URL moves
    /// from link to link and the link that gives its URLs away ends.
    urls: usize,
}

impl Groups {
    /// Groups of the `urls` distinct URLs the prover was given.
    pub fn new(urls: usize) -> Self {
        Groups {
            links: Mutex::default(),
            urls: urls.max(1),
        }
    }

    /// Registers the link that started with `url`; it receives URLs handed over to it.
    pub fn join(&self, url: &str) -> mpsc::Receiver<String> {
        let (tx, rx) = mpsc::channel(self.urls);
        self.lock().insert(key(url).to_string(), tx);
        rx
    }

    pub fn leave(&self, url: &str) {
        self.lock().remove(key(url));
    }

    /// Hands `urls` to the link that started with `active`; false if there is none or it
    /// has no room for them (then the caller keeps them).
    pub fn hand_over(&self, active: &str, urls: &[String]) -> bool {
        let links = self.lock();
        let Some(tx) = links.get(key(active)) else {
            return false;
        };
        // Every send goes through this lock, so the room cannot shrink in between.
        if tx.capacity() < urls.len() {
            return false;
        }
        urls.iter().all(|u| tx.try_send(u.clone()).is_ok())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<String>>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// URLs compare without a trailing slash.
fn key(url: &str) -> &str {
    url.trim_end_matches('/')
}

pub(crate) fn same_url(a: &str, b: &str) -> bool {
    key(a) == key(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_handed_over_fit_and_more_than_the_prover_has_are_refused() {
        let groups = Groups::new(2);
        let mut active = groups.join("http://a:1/");
        let _standby = groups.join("http://b:1");
        assert!(
            !groups.hand_over("http://c:1", &["http://b:1".into()]),
            "no such link"
        );
        assert!(groups.hand_over("http://a:1", &["http://b:1".into()]));
        assert_eq!(active.try_recv().unwrap(), "http://b:1");
        let three: Vec<String> = ["x", "y", "z"].map(|h| format!("http://{h}:1")).into();
        assert!(
            !groups.hand_over("http://a:1", &three),
            "more than two URLs"
        );
        assert!(
            active.try_recv().is_err(),
            "nothing of a refused hand-over arrives"
        );
        groups.leave("http://a:1");
        assert!(!groups.hand_over("http://a:1", &["http://b:1".into()]));
        assert!(same_url("http://a:1/", "http://a:1"));
    }
}
