//! The reference rollup as a batch source: seals a batch every `batch_interval_ms` and
//! submits it. On start it rebuilds the devnet state by replaying the stored batch inputs,
//! so a restarted coordinator continues the same chain instead of starting over.

use crate::error::CoordinatorError;
use crate::intake::NewBatch;
use crate::server::Coordinator;
use proofmill_devnet::{Devnet, DevnetConfig};
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::task::JoinHandle;

#[derive(Clone, Debug)]
pub struct DevnetSourceConfig {
    pub devnet: DevnetConfig,
    pub batch_interval_ms: u64,
    /// Program version the batches carry (provers must register the same).
    pub version: String,
    /// Stop sealing after this batch number.
    pub max_batches: Option<u64>,
}

impl Coordinator {
    /// Starts the devnet; the API then refuses outside batches (one chain per coordinator).
    pub async fn start_devnet(
        &self,
        cfg: DevnetSourceConfig,
    ) -> Result<JoinHandle<()>, CoordinatorError> {
        self.shared.devnet_source.store(true, Ordering::SeqCst);
        let devnet = self.replay_devnet(&cfg).await?;
        let this = self.clone();
        Ok(tokio::spawn(
            async move { this.devnet_loop(devnet, cfg).await },
        ))
    }

    async fn replay_devnet(&self, cfg: &DevnetSourceConfig) -> Result<Devnet, CoordinatorError> {
        let mut devnet =
            Devnet::new(cfg.devnet).map_err(|e| CoordinatorError::Config(e.to_string()))?;
        let last = self.store().last_sealed_batch().await?.unwrap_or(0);
        for n in 1..=last {
            let batch = self.store().batch(n).await?.ok_or_else(|| {
                CoordinatorError::Config(format!("devnet replay: batch {n} missing from the store"))
            })?;
            let input = self.blobs().get(&batch.input_key).await?;
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
            if public != batch.public_values {
                return Err(CoordinatorError::Config(format!(
                    "devnet replay of batch {n} gave different public values"
                )));
            }
        }
        if last > 0 {
            tracing::info!(batches = last, "devnet state rebuilt from stored batches");
        }
        Ok(devnet)
    }

    async fn devnet_loop(self, mut devnet: Devnet, cfg: DevnetSourceConfig) {
        let mut tick = tokio::time::interval(Duration::from_millis(cfg.batch_interval_ms.max(1)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if self.shared.draining() {
                return;
            }
            let number = devnet.next_batch_number();
            if cfg.max_batches.is_some_and(|max| number > max) {
                tracing::info!(
                    max = number - 1,
                    "devnet reached --max-batches; no more sealing"
                );
                return;
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
                number: sealed.number,
                version: cfg.version.clone(),
                input: sealed.input.into(),
                public_values: sealed.public_values,
                proof_types: Vec::new(),
            };
            // Retry until stored: the devnet has advanced, so this batch must not be skipped.
            let mut delay = Duration::from_millis(100);
            loop {
                match self.submit_batch(nb.clone()).await {
                    Ok(_) => break,
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
        }
    }
}
