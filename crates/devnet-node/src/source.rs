//! The reference rollup as a batch source: seals a batch every `batch_interval_ms` and
//! submits it through the coordinator's [`Intake`], whose numbering it reserves (its batches
//! chain). It first rebuilds the devnet state in the background, from the newest snapshot
//! ([`crate::snapshots`]) plus the stored batches after it, so a restarted coordinator
//! continues the same chain; provers and the API are served meanwhile (jobs of stored batches
//! need only their stored inputs), and sealing starts once the state is back.

use crate::snapshots::DevnetSnapshots;
use proofmill_coordinator::{Component, CoordinatorError, Intake, NewBatch};
use proofmill_devnet::{Devnet, DevnetConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

#[derive(Clone, Debug)]
pub struct DevnetSourceConfig {
    pub devnet: DevnetConfig,
    pub batch_interval_ms: u64,
    /// Program version the batches carry (provers must register the same).
    pub version: String,
    /// Stop sealing after this batch number.
    pub max_batches: Option<u64>,
    /// Save a state snapshot after every this many batches (0: only after a rebuild that
    /// replayed batches, and at a clean stop).
    pub snapshot_every: u64,
}

/// Default of [`DevnetSourceConfig::snapshot_every`]: a restart replays at most this many
/// batches (about 15 ms each); a snapshot of the default devnet is at most 1.3 MB.
pub const DEFAULT_SNAPSHOT_EVERY: u64 = 128;

/// What the rebuild came to: the next batch number, or why it failed.
type Rebuilt = Option<Result<u64, String>>;

/// A running devnet source (see [`DevnetSource::start`]).
pub struct DevnetSource {
    stop: Arc<Notify>,
    rebuilt: watch::Receiver<Rebuilt>,
    task: JoinHandle<()>,
}

impl DevnetSource {
    /// Waits until the devnet state is rebuilt and sealing can start; returns the number the
    /// next batch gets. An error means the rebuild failed and the source has stopped (e.g.
    /// the data was made with other devnet settings).
    pub async fn rebuilt(&mut self) -> Result<u64, CoordinatorError> {
        let r = self
            .rebuilt
            .wait_for(Option::is_some)
            .await
            .map_err(|_| CoordinatorError::Unavailable)?;
        match r.clone() {
            Some(Ok(next)) => Ok(next),
            Some(Err(why)) => Err(CoordinatorError::Config(why)),
            None => Err(CoordinatorError::Unavailable),
        }
    }

    /// Stops sealing; once the state is rebuilt, saves a snapshot of it. Returns when done.
    pub async fn stop(self) {
        self.stop.notify_one();
        let _ = self.task.await;
    }
}

impl DevnetSource {
    /// Starts the devnet; the API then refuses outside batches (one chain per coordinator).
    /// Returns at once: the state is rebuilt in the background ([`DevnetSource::rebuilt`]).
    pub async fn start(
        intake: Intake,
        cfg: DevnetSourceConfig,
    ) -> Result<DevnetSource, CoordinatorError> {
        Devnet::new(cfg.devnet).map_err(|e| CoordinatorError::Config(e.to_string()))?;
        intake.reserve_numbering("devnet");
        let stop = Arc::new(Notify::new());
        let (tx, rebuilt) = watch::channel::<Rebuilt>(None);
        let this = Sealer { intake };
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            // A store that does not answer (Postgres restarting) is waited out: only a chain
            // the settings cannot rebuild ends the rebuild.
            let devnet = loop {
                let attempt = tokio::select! {
                    r = this.rebuild_devnet(&cfg) => r,
                    _ = stopped.notified() => return,
                };
                match attempt {
                    Err(CoordinatorError::Store(
                        e @ proofmill_store::StoreError::Unavailable(_),
                    )) => {
                        tracing::warn!(error = %e, "devnet state rebuild: store unavailable; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                            _ = stopped.notified() => return,
                        }
                    }
                    other => break other,
                }
            };
            match devnet {
                Ok(devnet) => {
                    let _ = tx.send(Some(Ok(devnet.next_batch_number())));
                    this.devnet_loop(devnet, cfg, stopped).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "devnet state rebuild failed; not sealing");
                    let _ = tx.send(Some(Err(e.to_string())));
                }
            }
        });
        Ok(DevnetSource {
            stop,
            rebuilt,
            task,
        })
    }
}

/// The task that rebuilds the state and seals.
struct Sealer {
    intake: Intake,
}

impl Sealer {
    fn snapshots(&self) -> DevnetSnapshots {
        DevnetSnapshots::new(
            self.intake.store().clone(),
            self.intake.blobs().clone(),
            self.intake.chain_id(),
        )
    }

    /// The newest usable snapshot, then every stored batch after it.
    async fn rebuild_devnet(&self, cfg: &DevnetSourceConfig) -> Result<Devnet, CoordinatorError> {
        let snapshots = self.snapshots();
        let mut devnet = snapshots.load(cfg.devnet).await?;
        let from = devnet.next_batch_number();
        let (store, chain) = (self.intake.store(), self.intake.chain_id());
        let last = store.last_sealed_batch(chain).await?.unwrap_or(0);
        for n in from..=last {
            let batch = store.batch(chain, n).await?.ok_or_else(|| {
                CoordinatorError::Config(format!("devnet replay: batch {n} missing from the store"))
            })?;
            let input = self.intake.blobs().get(&batch.input_key).await?;
            let (d, public) = tokio::task::spawn_blocking(move || {
                let r = devnet.replay(&input);
                (devnet, r)
            })
            .await
            .map_err(|e| CoordinatorError::Config(format!("devnet replay crashed: {e}")))?;
            devnet = d;
            let public = public.map_err(|e| {
                CoordinatorError::Config(format!("devnet replay of batch {n} failed (different --seed or devnet settings than the data dir was made with?): {e}"))
            })?;
            if public.to_public_values() != batch.public_values {
                return Err(CoordinatorError::Config(format!(
                    "devnet replay of batch {n} gave different public values"
                )));
            }
        }
        let replayed = (last + 1).saturating_sub(from);
        tracing::info!(
            snapshot = from - 1,
            replayed,
            next = devnet.next_batch_number(),
            "devnet state rebuilt"
        );
        // So that the next restart does not replay these again (a crash loop would).
        if replayed > 0
            && let Err(e) = snapshots.save(&devnet).await
        {
            tracing::warn!(error = %e, "could not save a devnet snapshot");
        }
        Ok(devnet)
    }

    async fn devnet_loop(self, mut devnet: Devnet, cfg: DevnetSourceConfig, stop: Arc<Notify>) {
        let snapshots = self.snapshots();
        let mut tick = tokio::time::interval(Duration::from_millis(cfg.batch_interval_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let shutdown = self.intake.shutdown();
        let pauses = self.intake.pauses();
        // An operator's pause of sealing, or of intake, holds the next batch back (the devnet
        // has not advanced yet, so nothing is lost); a resume seals at once.
        let held = [Component::Sealing, Component::Intake];
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stop.notified() => break,
                _ = shutdown.begun() => break,
            }
            if held.iter().any(|c| pauses.is_paused(*c)) {
                tracing::info!("sealing paused by an operator");
                tokio::select! {
                    _ = pauses.resumed(&held) => {}
                    _ = stop.notified() => break,
                    _ = shutdown.begun() => break,
                }
                tracing::info!("sealing resumed");
            }
            let number = devnet.next_batch_number();
            if cfg.max_batches.is_some_and(|max| number > max) {
                tracing::info!(
                    max = number - 1,
                    "devnet reached --max-batches; no more sealing"
                );
                break;
            }
            let (d, sealed) = match tokio::task::spawn_blocking(move || {
                let s = devnet.produce_batch();
                (devnet, s)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "devnet sealing crashed");
                    return;
                }
            };
            devnet = d;
            let nb = NewBatch {
                chain: self.intake.chain_id(),
                number: sealed.number,
                version: cfg.version.clone(),
                input: sealed.input.into(),
                public_values: sealed.transition.to_public_values(),
                proof_types: Vec::new(),
            };
            // Retry until stored: the devnet has advanced, so this batch must not be skipped.
            let mut delay = Duration::from_millis(100);
            loop {
                match self.intake.submit_own(nb.clone()).await {
                    Ok(_) => break,
                    // Not stored: no snapshot may claim it either.
                    Err(CoordinatorError::Unavailable) => return,
                    Err(e) => {
                        tracing::error!(batch = nb.number, error = %e, "could not store sealed batch; retrying");
                        tokio::time::sleep(delay).await;
                        // Capped low: once the store is back, sealing resumes within 1 s.
                        delay = (delay * 2).min(Duration::from_secs(1));
                    }
                }
            }
            tracing::info!(
                batch = sealed.number,
                transfers = sealed.transfers,
                "devnet sealed batch"
            );
            if cfg.snapshot_every > 0
                && sealed.number % cfg.snapshot_every == 0
                && let Err(e) = snapshots.save(&devnet).await
            {
                tracing::warn!(error = %e, "could not save a devnet snapshot");
            }
        }
        // A clean stop: every batch the devnet sealed is stored.
        match snapshots.save(&devnet).await {
            Ok(()) => tracing::info!(
                batch = devnet.next_batch_number() - 1,
                "devnet snapshot saved at stop"
            ),
            Err(e) => tracing::warn!(error = %e, "could not save a devnet snapshot at stop"),
        }
    }
}
