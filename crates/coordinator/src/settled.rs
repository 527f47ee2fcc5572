//! Records of settling transactions, as settlement keeps them in the store, read here for
//! `status` and by operators' tools.

use crate::error::CoordinatorError;
use proofmill_store::Store;

/// One settling transaction, as recorded per batch (`l1/verify/{batch:012}`) and as the
/// latest (`l1/last_verify_tx`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyRecord {
    /// `0x`-prefixed hex.
    pub tx_hash: String,
    pub first_batch: u64,
    pub last_batch: u64,
    pub gas_used: u64,
}

/// Meta key of the latest settling transaction.
pub const LAST_VERIFY_TX_KEY: &str = "l1/last_verify_tx";
/// The range of a `verifyBatches` about to be sent, cleared once its outcome is recorded
/// (empty: none). After a crash it says what was in flight.
pub const PENDING_VERIFY_KEY: &str = "l1/pending_verify";

/// Meta key of the settling transaction of `batch`.
pub fn verify_key(batch: u64) -> String {
    format!("l1/verify/{batch:012}")
}

impl VerifyRecord {
    pub fn to_json(&self) -> String {
        serde_json::json!({
            "tx_hash": self.tx_hash,
            "first_batch": self.first_batch,
            "last_batch": self.last_batch,
            "gas_used": self.gas_used,
        })
        .to_string()
    }

    pub fn from_json(s: &str) -> Option<VerifyRecord> {
        let v: serde_json::Value = serde_json::from_str(s).ok()?;
        Some(VerifyRecord {
            tx_hash: v["tx_hash"].as_str()?.to_string(),
            first_batch: v["first_batch"].as_u64()?,
            last_batch: v["last_batch"].as_u64()?,
            gas_used: v["gas_used"].as_u64()?,
        })
    }
}

/// The settling transaction recorded for `batch`, if any.
pub(crate) async fn verify_record(
    store: &dyn Store,
    batch: u64,
) -> Result<Option<VerifyRecord>, CoordinatorError> {
    record(store, &verify_key(batch)).await
}

/// The range of a settling transaction sent but not yet recorded, if any.
pub(crate) async fn pending_verify(
    store: &dyn Store,
) -> Result<Option<(u64, u64)>, CoordinatorError> {
    Ok(record(store, PENDING_VERIFY_KEY)
        .await?
        .map(|r| (r.first_batch, r.last_batch)))
}

/// The latest settling transaction.
pub(crate) async fn last_verify_tx(
    store: &dyn Store,
) -> Result<Option<VerifyRecord>, CoordinatorError> {
    record(store, LAST_VERIFY_TX_KEY).await
}

async fn record(store: &dyn Store, key: &str) -> Result<Option<VerifyRecord>, CoordinatorError> {
    Ok(store
        .get_meta(key)
        .await?
        .as_deref()
        .and_then(VerifyRecord::from_json))
}
