//! A proving network's side of the proof market (`contracts/ProofMarket.sol`): a daemon that
//! watches the requests the market assigns to its address, admits only those it can finish
//! ([`AdmissionConfig`]), acknowledges them before the acknowledgement deadline, fetches and
//! checks their inputs ([`InputsFetcher`]), proves them with its own proofmill coordinator
//! ([`CoordinatorProver`], or any [`ProofService`]), posts the proofs before their
//! deadlines, and claims the rewards validations earn.
//!
//! Its state ([`NetworkState`]: the events' cursor and each request's status) is one JSON
//! file in a state directory, written atomically; a restarted daemon reconciles each open
//! request with L1 before acting, so it never acknowledges, posts or claims twice.
//!
//! ```no_run
//! # async fn example(market: std::sync::Arc<dyn proofmill_market::MarketL1>) {
//! use proofmill_network::*;
//! let prover = CoordinatorProver::new(&CoordinatorAccess {
//!     url: "http://127.0.0.1:3900".into(),
//!     token: None,
//!     tls: Default::default(),
//! })
//! .unwrap();
//! let network = Network::new(market, std::sync::Arc::new(prover), NetworkConfig::new("state"))
//!     .unwrap();
//! let shutdown = Shutdown::default();
//! network.run(shutdown.clone()).await.unwrap();
//! # }
//! ```

mod admission;
mod clock;
mod daemon;
mod fetch;
mod prove;
mod state;

pub use admission::{AdmissionConfig, Offer, ProveTimes, RECENT_PROVE_TIMES, Refusal};
pub use daemon::{Network, NetworkConfig, NetworkError};
pub use fetch::{FetchConfig, FetchError, InputsFetcher};
pub use prove::{CoordinatorAccess, CoordinatorProver, ProofService, ProofState, ProveError};
pub use state::{Entry, KEEP_FINISHED, NetworkState, STATE_FILE, StateError, Status};

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The one shutdown signal the daemon and every request's task await. Cheap to clone; every
/// clone sees the same signal; given once, never taken back.
#[derive(Clone, Debug)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown(Arc::new(watch::channel(false).0))
    }
}

impl Shutdown {
    pub fn begin(&self) {
        self.0.send_replace(true);
    }

    pub fn is_begun(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown has begun (at once if it has).
    pub async fn begun(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(|b| *b).await;
    }
}

/// Exponential backoff from 100 ms to a maximum, with jitter (up to a quarter), so retries
/// of many requests do not line up.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);

impl Backoff {
    pub(crate) fn new(max: Duration) -> Backoff {
        Backoff {
            next: BACKOFF_MIN,
            max: max.max(BACKOFF_MIN),
        }
    }

    pub(crate) fn next(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let jitter = base.mul_f64(f64::from(nanos % 1_000) / 4_000.0);
        (base + jitter).min(self.max)
    }

    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1));
        let first = b.next();
        assert!(first >= BACKOFF_MIN && first < BACKOFF_MIN * 2, "{first:?}");
        let waits: Vec<Duration> = (0..8).map(|_| b.next()).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_secs(1)));
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(1));
        b.reset();
        assert!(b.next() < BACKOFF_MIN * 2);
    }
}
