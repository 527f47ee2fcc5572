//! Records of settling and commit transactions, as settlement keeps them in the store, read
//! here for `status`, the job listings and operators' tools.

use crate::error::CoordinatorError;
use proofmill_store::{CommitRecord, Store, VerifyRecord};
use std::collections::{BTreeMap, BTreeSet};

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

/// The L1 transactions recorded for some batches: each one's commit and the settlement that
/// verified it (absent when none is recorded).
#[derive(Debug, Default)]
pub(crate) struct BatchTxs {
    pub commits: BTreeMap<u64, CommitRecord>,
    pub verifies: BTreeMap<u64, VerifyRecord>,
}

/// The L1 transactions of `batches`, in a few reads: one range read of commit records when
/// the batches are dense (a read per batch otherwise), and one read per settlement found
/// (its range covers the next batches) or per batch below the last settled one.
pub(crate) async fn batch_txs(
    store: &dyn Store,
    batches: &BTreeSet<u64>,
) -> Result<BatchTxs, CoordinatorError> {
    let mut txs = BatchTxs::default();
    let (Some(&first), Some(&last)) = (batches.first(), batches.last()) else {
        return Ok(txs);
    };
    if last - first < 4 * batches.len() as u64 {
        for r in store.commit_records(first, last, 0).await? {
            if batches.contains(&r.batch) {
                txs.commits.insert(r.batch, r);
            }
        }
    } else {
        for &b in batches {
            if let Some(r) = store.commit_record(b).await? {
                txs.commits.insert(b, r);
            }
        }
    }
    let settled = store
        .last_verify_record()
        .await?
        .map_or(0, |r| r.last_batch);
    let mut covering: Option<VerifyRecord> = None;
    for &b in batches.range(..=settled) {
        if !covering
            .as_ref()
            .is_some_and(|r| (r.first_batch..=r.last_batch).contains(&b))
        {
            covering = store.verify_record(b).await?;
        }
        if let Some(r) = covering.as_ref().filter(|r| r.last_batch >= b) {
            txs.verifies.insert(b, r.clone());
        }
    }
    Ok(txs)
}
