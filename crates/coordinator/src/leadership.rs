//! One active coordinator per store.
//!
//! Every coordinator started on a store asks for the store's lease
//! ([`Store::acquire_lease`]). The one that gets it is active: it fences its store handle with
//! the lease's epoch (so none of its writes commits once another has taken over) and renews
//! the lease every quarter of its lifetime. The others stand by, polling, and take the lease
//! once it expires (the active one died or hung) or is released (a clean stop). A coordinator
//! that finds its lease taken, or its writes fenced, stops being active at once.
//!
//! Renewals run on a runtime of their own ([`renewal_runtime`]), so a coordinator whose own
//! runtime is busy (a fleet of thousands connecting at once) still renews in time; only a
//! process that does not run at all (paused, frozen) lets its lease lapse.

use crate::error::CoordinatorError;
use proofmill_store::{LeaseClaim, LeaseHolder, Store};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What a coordinator claims the lease with.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    /// Where provers and admin clients reach this coordinator (named by standbys).
    pub url: String,
    /// How long the lease lasts without a renewal.
    pub ttl: Duration,
}

/// A coordinator that wants the lease: it knows who holds it meanwhile.
pub struct Candidate {
    store: Arc<dyn Store>,
    claim: LeaseClaim,
    first_claim: bool,
    holder: watch::Sender<Option<LeaseHolder>>,
    /// The holder last logged, so a standby says who is active once, not at every poll.
    told: Option<(String, u64)>,
}

impl Candidate {
    pub fn new(store: Arc<dyn Store>, settings: &LeaseSettings) -> Candidate {
        let holder = format!("{}#{:08x}", settings.url, rand::random::<u32>());
        Candidate {
            store,
            claim: LeaseClaim {
                holder,
                url: settings.url.clone(),
                ttl_ms: settings.ttl.as_millis().min(u64::MAX as u128) as u64,
                reclaim: true,
            },
            first_claim: true,
            holder: watch::channel(None).0,
            told: None,
        }
    }

    /// This run's holder id.
    pub fn id(&self) -> &str {
        &self.claim.holder
    }

    /// Who holds the lease, as last seen (kept up to date while [`Candidate::acquire`] waits).
    pub fn holder(&self) -> watch::Receiver<Option<LeaseHolder>> {
        self.holder.subscribe()
    }

    /// Waits until this coordinator holds the lease ([`Candidate::try_acquire`] until it
    /// succeeds).
    pub async fn acquire(&mut self) -> Leadership {
        loop {
            if let Some(leadership) = self.try_acquire().await {
                return leadership;
            }
            tokio::time::sleep(self.poll()).await;
        }
    }

    /// How often a standby asks for the lease.
    fn poll(&self) -> Duration {
        (Duration::from_millis(self.claim.ttl_ms) / 5)
            .clamp(Duration::from_millis(50), Duration::from_millis(500))
    }

    /// Asks for the lease once. The first attempt after start also reclaims a lease left at
    /// this coordinator's own URL by a previous run (which died: this run holds its address
    /// now), so a restart does not wait for the lease to expire. A store error is logged
    /// (and is a `None`).
    pub async fn try_acquire(&mut self) -> Option<Leadership> {
        let claim = LeaseClaim {
            reclaim: self.first_claim,
            ..self.claim.clone()
        };
        let asked = Instant::now();
        match self.store.acquire_lease(&claim).await {
            Ok(Ok(epoch)) => {
                self.first_claim = false;
                self.told = None;
                tracing::info!(epoch, url = %self.claim.url, "coordinator lease taken: this coordinator is active");
                let ttl = Duration::from_millis(self.claim.ttl_ms);
                Some(Leadership::start(self.store.clone(), epoch, ttl, asked))
            }
            Ok(Err(holder)) => {
                self.first_claim = false;
                let now = (holder.url.clone(), holder.epoch);
                if self.told.as_ref() != Some(&now) {
                    tracing::info!(active = %holder.url, epoch = holder.epoch, expires_in_ms = holder.expires_in_ms, "standing by: another coordinator holds the store's lease");
                    self.told = Some(now);
                }
                self.holder.send_replace(Some(holder));
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot ask for the coordinator lease; retrying");
                None
            }
        }
    }
}

/// This coordinator holds the lease; renewed in the background until dropped or released.
pub struct Leadership {
    store: Arc<dyn Store>,
    epoch: u64,
    ttl: Duration,
    lost: watch::Receiver<Option<String>>,
    /// When the last renewal that succeeded was asked for, as ms since `base`: the lease is
    /// surely ours until that plus the ttl.
    renewed: Arc<AtomicU64>,
    /// Set while renewals fail (the store does not answer), cleared by one that succeeds.
    failing: Arc<AtomicBool>,
    base: Instant,
    renewal: tokio::task::JoinHandle<()>,
}

/// A cheap check of whether the lease is surely still ours, for work outside the store
/// that another coordinator must not also do (L1 transactions).
#[derive(Clone)]
pub struct LeaseCheck {
    renewed: Arc<AtomicU64>,
    failing: Arc<AtomicBool>,
    base: Instant,
    ttl: Duration,
    lost: watch::Receiver<Option<String>>,
}

impl LeaseCheck {
    /// Renewed within the lease's lifetime and not known lost.
    pub fn is_held(&self) -> bool {
        if self.lost.borrow().is_some() {
            return false;
        }
        let renewed = Duration::from_millis(self.renewed.load(Ordering::SeqCst));
        self.base.elapsed() < renewed + self.ttl
    }

    /// The lease's lifetime has passed since the last renewal although no renewal failed:
    /// this process did not run (it was paused, or starved) and another coordinator may
    /// have taken over meanwhile; the renewal due now will tell.
    pub fn overdue(&self) -> bool {
        !self.failing.load(Ordering::SeqCst) && !self.is_held()
    }

    /// Why the lease was lost, once it is known lost (taken by another coordinator).
    pub fn lost(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// A check that always holds, for a coordinator that is alone on its store by design
    /// (tests, tools).
    pub fn always() -> LeaseCheck {
        LeaseCheck {
            renewed: Arc::new(AtomicU64::new(u64::MAX / 4)),
            failing: Arc::new(AtomicBool::new(false)),
            base: Instant::now(),
            ttl: Duration::ZERO,
            lost: watch::channel(None).1,
        }
    }
}

impl Leadership {
    fn start(store: Arc<dyn Store>, epoch: u64, ttl: Duration, asked: Instant) -> Leadership {
        let base = asked;
        let renewed = Arc::new(AtomicU64::new(0));
        let failing = Arc::new(AtomicBool::new(false));
        let (lost_tx, lost) = watch::channel(None);
        let renewal = renewal_runtime().spawn(renew(
            store.clone(),
            epoch,
            ttl,
            base,
            (renewed.clone(), failing.clone()),
            lost_tx,
        ));
        Leadership {
            store,
            epoch,
            ttl,
            lost,
            renewed,
            failing,
            base,
            renewal,
        }
    }

    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn check(&self) -> LeaseCheck {
        LeaseCheck {
            renewed: self.renewed.clone(),
            failing: self.failing.clone(),
            base: self.base,
            ttl: self.ttl,
            lost: self.lost.clone(),
        }
    }

    /// Resolves when the lease is found taken by another coordinator, with why.
    pub async fn lost(&self) -> String {
        let mut lost = self.lost.clone();
        match lost.wait_for(|l| l.is_some()).await {
            Ok(why) => why.clone().unwrap_or_default(),
            Err(_) => "lease renewal stopped".into(),
        }
    }

    /// Ends the lease at once (a clean stop), so that a standby takes over without waiting
    /// for it to expire.
    pub async fn release(self) -> Result<(), CoordinatorError> {
        self.renewal.abort();
        self.store.release_lease(self.epoch).await?;
        tracing::info!(epoch = self.epoch, "coordinator lease released");
        Ok(())
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        self.renewal.abort();
    }
}

/// The runtime lease renewals run on: one worker thread of its own, shared by every lease of
/// the process and never shut down. Never shut down, because the store's connection for
/// renewals is opened by the first renewal and stays registered with this runtime (the
/// store's handle outlives any one lease). Falls back to the caller's runtime if the OS refuses
/// a thread (renewals then wait behind the coordinator's work, as they did before).
fn renewal_runtime() -> tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("lease-renewal")
            .enable_all()
            .build()
            .inspect_err(|e| {
                tracing::warn!(error = %e, "no thread for lease renewals; they share the coordinator's runtime")
            })
            .ok()
    });
    match runtime {
        Some(rt) => rt.handle().clone(),
        None => tokio::runtime::Handle::current(),
    }
}

async fn renew(
    store: Arc<dyn Store>,
    epoch: u64,
    ttl: Duration,
    base: Instant,
    (renewed, failing): (Arc<AtomicU64>, Arc<AtomicBool>),
    lost: watch::Sender<Option<String>>,
) {
    let ttl_ms = ttl.as_millis().min(u64::MAX as u128) as u64;
    let every = ttl / 4;
    let mut warned = false;
    loop {
        tokio::time::sleep(every).await;
        let asked = base.elapsed();
        match store.renew_lease(epoch, ttl_ms).await {
            Ok(true) => {
                renewed.store(asked.as_millis() as u64, Ordering::SeqCst);
                failing.store(false, Ordering::SeqCst);
                if warned {
                    tracing::info!(epoch, "coordinator lease renewed again");
                    warned = false;
                }
            }
            Ok(false) => {
                let by = match store.lease_holder().await {
                    Ok(Some(h)) => format!("{} (epoch {})", h.url, h.epoch),
                    _ => "another coordinator".into(),
                };
                let why =
                    format!("the store's coordinator lease (epoch {epoch}) was taken over by {by}");
                tracing::error!("{why}; no longer active");
                lost.send_replace(Some(why));
                return;
            }
            Err(e) => {
                failing.store(true, Ordering::SeqCst);
                if !warned {
                    tracing::warn!(error = %e, epoch, "cannot renew the coordinator lease; retrying (a standby takes over if it expires)");
                    warned = true;
                }
            }
        }
    }
}

/// The URL to advertise for a listen address: `http://` and the address, with this host's
/// name for an unspecified one (0.0.0.0, ::).
pub fn default_url(listen: std::net::SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("http://{host}:{}", listen.port())
    } else {
        format!("http://{listen}")
    }
}
