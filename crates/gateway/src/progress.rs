//! How far pull mode has sent proofs back: one durable watermark, `gateway.sent_through`
//! in the store's meta table, the highest batch number `n` such that every stored batch up
//! to `n` was confirmed by the core (`"Success"`).
//!
//! Why a watermark is enough: proofs go back strictly in batch order, one at a time, and
//! the watermark moves to a batch only once the core confirmed it, so the batches to send
//! are exactly the stored ones above it, and the next is the lowest of them. A batch the
//! core hands out below the watermark (one it handed out before and now wants again, or one
//! that filled a gap) lowers the watermark to just below it, durably, *before* it is taken
//! in: then it, and the batches after it, go back again (repeats, which a core must accept).
//! A crash loses nothing: a batch not stored yet is handed out again by the core; a proof
//! not confirmed yet is above the watermark and is sent again.

use proofmill_store::{Store, StoreError};
use proofmill_types::ChainId;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Meta key of the watermark.
pub const SENT_THROUGH: &str = "gateway.sent_through";

pub struct Progress {
    store: Arc<dyn Store>,
    /// The watermark as stored; the lock orders its writes.
    value: Mutex<u64>,
}

impl Progress {
    /// Reads the watermark; on a store the gateway never ran on, sets it to the highest
    /// stored batch (batches from before the gateway are not the core's to get).
    pub async fn open(store: Arc<dyn Store>, chain: ChainId) -> Result<Progress, StoreError> {
        let highest = store.last_sealed_batch(chain).await?.unwrap_or(0);
        let stored = store.init_meta(SENT_THROUGH, &highest.to_string()).await?;
        let value = stored
            .parse::<u64>()
            .map_err(|_| StoreError::Corrupt(format!("{SENT_THROUGH} = {stored:?}")))?;
        Ok(Progress {
            store,
            value: Mutex::new(value),
        })
    }

    pub async fn get(&self) -> u64 {
        *self.value.lock().await
    }

    /// Batch `n` is (again) to be sent: the watermark goes below it if it is not already.
    pub async fn reopen(&self, n: u64) -> Result<(), StoreError> {
        let mut value = self.value.lock().await;
        if n <= *value {
            let lowered = n.saturating_sub(1);
            self.store
                .set_meta(SENT_THROUGH, &lowered.to_string())
                .await?;
            tracing::info!(
                batch = n,
                from = *value,
                to = lowered,
                "the core handed out a batch at or below the sent watermark: sending from it again"
            );
            *value = lowered;
        }
        Ok(())
    }

    /// The core confirmed batch `n`, picked when the watermark was `seen`: the watermark
    /// moves to `n` unless it was lowered meanwhile (then `n` goes back again). Returns
    /// whether it moved.
    pub async fn advance(&self, seen: u64, n: u64) -> Result<bool, StoreError> {
        let mut value = self.value.lock().await;
        if *value != seen || n <= seen {
            return Ok(false);
        }
        self.store.set_meta(SENT_THROUGH, &n.to_string()).await?;
        *value = n;
        Ok(true)
    }
}
