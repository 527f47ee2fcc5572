//! Settlement records as coordinators kept them in the meta table before migration 0008
//! (JSON values: `l1/verify/{batch:012}` per batch, `l1/last_verify_tx`, and
//! `l1/pending_verify`, empty when nothing is pending). The store moves them into the
//! `settlements` table once, when it opens (see `SqlStore::import_meta_settlements`): parsing
//! JSON is done here rather than in the migration's SQL, so that both databases read it the
//! same way and a record that does not parse is skipped, as the old reader did, instead of
//! failing the migration.

use crate::api::{Change, VerifyRecord};

/// The meta keys holding settlement records.
pub(crate) const SELECT_KEYS: &str = "SELECT key, value FROM meta \
    WHERE key LIKE 'l1/verify/%' OR key IN ('l1/last_verify_tx', 'l1/pending_verify')";
pub(crate) const DELETE_KEYS: &str = "DELETE FROM meta \
    WHERE key LIKE 'l1/verify/%' OR key IN ('l1/last_verify_tx', 'l1/pending_verify')";

const PENDING_KEY: &str = "l1/pending_verify";

/// The writes that recreate the records of the meta `entries` (key, value) in the table:
/// every distinct settled record and the pending mark. Their time is unknown: 0.
pub(crate) fn changes(entries: &[(String, String)]) -> Vec<Change> {
    let mut changes = Vec::new();
    for (key, value) in entries {
        let Some(record) = parse(value) else {
            continue;
        };
        if key == PENDING_KEY {
            changes.push(Change::PendingVerify {
                first_batch: record.first_batch,
                last_batch: record.last_batch,
                at: 0,
            });
        } else if record.first_batch <= record.last_batch {
            changes.push(Change::Verified { record, at: 0 });
        }
    }
    changes
}

fn parse(json: &str) -> Option<VerifyRecord> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let record = VerifyRecord {
        tx_hash: v["tx_hash"].as_str()?.to_owned(),
        first_batch: v["first_batch"].as_u64()?,
        last_batch: v["last_batch"].as_u64()?,
        gas_used: v["gas_used"].as_u64()?,
    };
    // Values the old writer could not have produced (they fail the write): skipped.
    let fits = |n: u64| i64::try_from(n).is_ok();
    (fits(record.first_batch)
        && fits(record.last_batch)
        && fits(record.gas_used)
        && record.first_batch <= record.last_batch
        && !record.tx_hash.contains('\0'))
    .then_some(record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, value: &str) -> (String, String) {
        (key.to_owned(), value.to_owned())
    }

    #[test]
    fn records_and_pending_mark_are_read_bad_ones_skipped() {
        let rec = r#"{"tx_hash":"0xab","first_batch":1,"last_batch":2,"gas_used":90}"#;
        let changes = changes(&[
            entry("l1/verify/000000000001", rec),
            entry("l1/verify/000000000002", rec),
            entry("l1/verify/000000000003", "not json"),
            entry(
                "l1/verify/000000000004",
                r#"{"tx_hash":"0x1","first_batch":5}"#,
            ),
            entry("l1/last_verify_tx", rec),
            entry(
                "l1/pending_verify",
                r#"{"tx_hash":"","first_batch":3,"last_batch":4,"gas_used":0}"#,
            ),
        ]);
        let record = VerifyRecord {
            tx_hash: "0xab".into(),
            first_batch: 1,
            last_batch: 2,
            gas_used: 90,
        };
        let verified = Change::Verified { record, at: 0 };
        let pending = Change::PendingVerify {
            first_batch: 3,
            last_batch: 4,
            at: 0,
        };
        assert_eq!(
            changes,
            vec![verified.clone(), verified.clone(), verified, pending]
        );
        // Cleared mark: nothing pending.
        assert!(super::changes(&[entry("l1/pending_verify", "")]).is_empty());
    }
}
