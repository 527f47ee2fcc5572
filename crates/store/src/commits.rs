//! The commit_records table (migration 0011): the commit transaction of each batch, as the
//! committer records it ([`crate::Store::record_commit`]), and how it reads back.

use crate::api::{CommitRecord, Result};
use crate::codec::{RowExt, text, to_i64};

/// Columns of `commit_records`, in the order [`decode`] reads them (by name).
pub(crate) const COLS: &str = "batch, tx_hash, gas_used, block, recorded_at";

pub(crate) const UPSERT: &str = "INSERT INTO commit_records \
    (batch, tx_hash, gas_used, block, recorded_at) VALUES ($1, $2, $3, $4, $5) \
    ON CONFLICT (batch) DO UPDATE SET tx_hash = excluded.tx_hash, \
    gas_used = excluded.gas_used, block = excluded.block, recorded_at = excluded.recorded_at";

/// A record as bound to SQL, in [`UPSERT`]'s order.
pub(crate) struct Row<'a> {
    pub batch: i64,
    pub tx_hash: &'a str,
    pub gas_used: i64,
    pub block: i64,
    pub recorded_at: i64,
}

impl<'a> Row<'a> {
    pub fn new(r: &'a CommitRecord) -> Result<Self> {
        Ok(Row {
            batch: to_i64(r.batch, "committed batch")?,
            tx_hash: text(&r.tx_hash, "commit tx hash")?,
            gas_used: to_i64(r.gas_used, "commit gas")?,
            block: to_i64(r.block, "commit block")?,
            recorded_at: to_i64(r.recorded_at, "commit record time")?,
        })
    }
}

pub(crate) fn decode(row: &impl RowExt) -> Result<CommitRecord> {
    Ok(CommitRecord {
        batch: row.u64("batch")?,
        tx_hash: row.text("tx_hash")?,
        gas_used: row.u64("gas_used")?,
        block: row.u64("block")?,
        recorded_at: row.u64("recorded_at")?,
    })
}
