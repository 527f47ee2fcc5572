//! Push mode, the core's side: each ready batch is posted to a proving cluster's gateway
//! (`POST /submit_request_for_proofs`), and every batch out is polled for its proof
//! (`POST /poll_generated_proofs`) each round, not only the oldest, so one slow batch does
//! not hold the others' proofs back (zkSync's core polls only its oldest).

use crate::hub::Hub;
use crate::serve::{generation_data, take_proofs};
use proofmill_core_api::{Backoff, ClientConfig, ClientError, CoreClient};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct PushConfig {
    /// The cluster's gateway.
    pub client: ClientConfig,
    pub chain_id: u64,
    /// Between polls for proofs.
    pub poll_interval: Duration,
}

/// Runs until `shutdown` resolves.
pub async fn run(
    hub: Arc<Hub>,
    cfg: PushConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ClientError> {
    let client = CoreClient::new(cfg.client.clone())?;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(30));
    loop {
        let wait = match round(&hub, &client, &cfg).await {
            Ok(()) => {
                backoff.reset();
                let next = hub
                    .next_ready_at(Instant::now())
                    .map(|t| t.saturating_duration_since(Instant::now()));
                next.map_or(cfg.poll_interval, |d| d.min(cfg.poll_interval))
            }
            Err(e) => {
                let d = backoff.next_delay();
                tracing::warn!(error = %e, kind = e.kind(), retry_in_ms = d.as_millis() as u64, "pushing to the proving cluster");
                d
            }
        };
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(wait) => {}
            () = hub.arrived() => {}
        }
    }
}

/// Posts every ready batch, then polls every batch out once.
async fn round(hub: &Arc<Hub>, client: &CoreClient, cfg: &PushConfig) -> Result<(), ClientError> {
    while let Some(offer) = hub.take_offer(Instant::now()) {
        let data = generation_data(&offer, cfg.chain_id, crate::now_ms());
        if let Err(e) = client.submit_request_for_proofs(&data).await {
            // Posted again next round; a repeat is harmless (the gateway keeps the first).
            hub.return_offer(&offer);
            return Err(e);
        }
        tracing::info!(batch = offer.batch, "batch pushed to the proving cluster");
    }
    for batch in hub.handed_out() {
        if let Some(reply) = client.poll_generated_proofs(batch).await? {
            if reply.l1_batch_id != batch {
                tracing::warn!(
                    asked = batch,
                    got = reply.l1_batch_id,
                    "the proving cluster answered for another batch"
                );
                continue;
            }
            if let Err(message) = take_proofs(hub, batch, &reply.proof).await {
                tracing::warn!(batch, %message, "proof from the proving cluster refused");
            }
        }
    }
    Ok(())
}
