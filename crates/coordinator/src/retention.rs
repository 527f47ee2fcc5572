//! Keeps the job history from growing without bound: attempts that ended more than the
//! retention ago are deleted, a bounded number per statement, by the active coordinator
//! only (a standby writes nothing).

use crate::standing::Standing;
use proofmill_store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How often old attempts are looked for.
const EVERY: Duration = Duration::from_secs(600);
/// Rows deleted per statement: a large backlog goes in several short transactions.
const CHUNK: u32 = 10_000;
const DAY_MS: u64 = 24 * 3_600_000;

/// Prunes every [`EVERY`] (the first time soon after start) until shutdown. `days == 0`
/// keeps every attempt.
pub(crate) fn spawn(store: Arc<dyn Store>, standing: Standing, days: u32) {
    if days == 0 {
        return;
    }
    let shutdown = standing.shutdown();
    tokio::spawn(async move {
        let mut wait = Duration::from_secs(60);
        loop {
            tokio::select! {
                _ = shutdown.begun() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = EVERY;
            if standing.holds_lease() {
                let before = crate::now_ms().saturating_sub(u64::from(days) * DAY_MS);
                prune(store.as_ref(), before).await;
            }
        }
    });
}

/// Deletes every attempt that ended before `before`, [`CHUNK`] at a time.
pub(crate) async fn prune(store: &dyn Store, before: u64) {
    let mut total = 0;
    loop {
        match store.prune_attempts(before, CHUNK).await {
            Ok(n) => {
                total += n;
                if n < u64::from(CHUNK) {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pruning the job history failed; tried again later");
                break;
            }
        }
    }
    if total > 0 {
        tracing::info!(attempts = total, "job history pruned");
    }
}
