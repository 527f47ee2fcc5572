//! Records of settling transactions, as settlement keeps them in the store, read here for
//! `status` and by operators' tools.

use crate::error::CoordinatorError;
use proofmill_store::{Store, VerifyRecord};

/// The settling transaction recorded for `batch`, if any.
pub(crate) async fn verify_record(
    store: &dyn Store,
    batch: u64,
) -> Result<Option<VerifyRecord>, CoordinatorError> {
    Ok(store.verify_record(batch).await?)
}

/// The range of a settling transaction sent but not yet recorded, if any.
pub(crate) async fn pending_verify(
    store: &dyn Store,
) -> Result<Option<(u64, u64)>, CoordinatorError> {
    Ok(store.pending_verify().await?)
}

/// The latest settling transaction.
pub(crate) async fn last_verify_tx(
    store: &dyn Store,
) -> Result<Option<VerifyRecord>, CoordinatorError> {
    Ok(store.last_verify_record().await?)
}
