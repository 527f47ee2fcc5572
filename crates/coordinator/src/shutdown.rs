//! The one shutdown signal every task of a coordinator awaits (or checks between steps):
//! given once, by [`crate::Coordinator::drain`], never taken back.

use tokio::sync::watch;

/// Cheap to clone; every clone sees the same signal.
#[derive(Clone, Debug)]
pub struct Shutdown(watch::Sender<bool>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(watch::channel(false).0)
    }
}

impl Shutdown {
    pub(crate) fn begin(&self) {
        self.0.send_replace(true);
    }

    /// Whether shutdown has begun.
    pub fn is_begun(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has begun (at once if it has).
    pub async fn begun(&self) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so this ends only by the signal.
        let _ = rx.wait_for(|b| *b).await;
    }
}
