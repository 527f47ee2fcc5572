//! Settlement records (`Change::PendingVerify`, `Change::Verified`): read back per batch, as
//! the latest and as the pending mark; written all or nothing with the other changes of an
//! `apply`, never by a fenced handle; and moved out of the meta table, where stores before
//! migration 0008 kept them, when such a store is opened. On SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::*;
use proofmill_store::{LeaseClaim, StoreError, VerifyRecord};
use sqlx::AssertSqlSafe;

store_test!(
    records_are_found_by_batch,
    pending_mark_is_set_replaced_and_cleared,
    a_failed_apply_writes_no_record,
    a_settlement_of_an_empty_range_is_refused,
);

fn record(first: u64, last: u64, tx: &str) -> VerifyRecord {
    VerifyRecord {
        tx_hash: tx.into(),
        first_batch: first,
        last_batch: last,
        gas_used: 1000 + last.saturating_sub(first),
    }
}

fn verified(first: u64, last: u64, tx: &str) -> Change {
    Change::Verified {
        record: record(first, last, tx),
        at: 1_700_000_000_000,
    }
}

fn pending(first: u64, last: u64) -> Change {
    Change::PendingVerify {
        first_batch: first,
        last_batch: last,
        at: 1_700_000_000_000,
    }
}

async fn records_are_found_by_batch(store: Arc<dyn Store>, _: &str) {
    assert_eq!(store.verify_record(1).await.unwrap(), None);
    assert_eq!(store.last_verify_record().await.unwrap(), None);
    store
        .apply(&[verified(1, 3, "0xa"), verified(6, 6, "0xb")])
        .await
        .unwrap();
    store.apply(&[verified(7, 9, "0xc")]).await.unwrap();
    for b in 1..=3 {
        assert_eq!(
            store.verify_record(b).await.unwrap(),
            Some(record(1, 3, "0xa"))
        );
    }
    // Batches no settlement covers: below the first, in a gap, above the last.
    for b in [0, 4, 5, 10, u64::MAX] {
        assert_eq!(store.verify_record(b).await.unwrap(), None, "batch {b}");
    }
    assert_eq!(
        store.verify_record(6).await.unwrap(),
        Some(record(6, 6, "0xb"))
    );
    assert_eq!(
        store.verify_record(8).await.unwrap(),
        Some(record(7, 9, "0xc"))
    );
    assert_eq!(
        store.last_verify_record().await.unwrap(),
        Some(record(7, 9, "0xc"))
    );
    // The same first batch again: the record is replaced (the last write wins, within one
    // apply as across them).
    store
        .apply(&[verified(7, 8, "0xd"), verified(7, 9, "0xe")])
        .await
        .unwrap();
    assert_eq!(
        store.verify_record(9).await.unwrap(),
        Some(record(7, 9, "0xe"))
    );
    // Records are not pending marks.
    assert_eq!(store.pending_verify().await.unwrap(), None);
}

async fn pending_mark_is_set_replaced_and_cleared(store: Arc<dyn Store>, _: &str) {
    assert_eq!(store.pending_verify().await.unwrap(), None);
    store.apply(&[pending(1, 4)]).await.unwrap();
    assert_eq!(store.pending_verify().await.unwrap(), Some((1, 4)));
    // A pending mark is no record.
    assert_eq!(store.verify_record(1).await.unwrap(), None);
    assert_eq!(store.last_verify_record().await.unwrap(), None);
    store.apply(&[pending(1, 2)]).await.unwrap();
    assert_eq!(store.pending_verify().await.unwrap(), Some((1, 2)));
    // Recorded and cleared in one call.
    store
        .apply(&[verified(1, 2, "0xa"), Change::ClearPendingVerify])
        .await
        .unwrap();
    assert_eq!(store.pending_verify().await.unwrap(), None);
    assert_eq!(
        store.verify_record(2).await.unwrap(),
        Some(record(1, 2, "0xa"))
    );
    // Within one call, the last pending change wins.
    store
        .apply(&[Change::ClearPendingVerify, pending(3, 5)])
        .await
        .unwrap();
    assert_eq!(store.pending_verify().await.unwrap(), Some((3, 5)));
    store
        .apply(&[pending(3, 4), Change::ClearPendingVerify])
        .await
        .unwrap();
    assert_eq!(store.pending_verify().await.unwrap(), None);
    // Clearing what is not there is no error.
    store.apply(&[Change::ClearPendingVerify]).await.unwrap();
}

/// The record, the cleared mark and a job change of one apply: one of them fails (the job
/// does not exist), so none is written.
async fn a_failed_apply_writes_no_record(store: Arc<dyn Store>, _: &str) {
    store.insert_batch(&batch(1, &["exec"]), 5).await.unwrap();
    store.apply(&[pending(1, 1)]).await.unwrap();
    let err = store
        .apply(&[
            verified(1, 1, "0xa"),
            Change::ClearPendingVerify,
            Change::Job(with_state(key(1, "exec"), JobState::Proven, 6)),
            Change::Job(leased(key(2, "exec"), 7, 6)),
        ])
        .await
        .expect_err("job 2/exec does not exist");
    assert!(err.to_string().contains("2/exec"), "{err}");
    assert_eq!(store.verify_record(1).await.unwrap(), None);
    assert_eq!(store.last_verify_record().await.unwrap(), None);
    assert_eq!(store.pending_verify().await.unwrap(), Some((1, 1)));
    assert_eq!(
        store.job(&key(1, "exec")).await.unwrap().unwrap().state,
        JobState::Queued
    );
}

async fn a_settlement_of_an_empty_range_is_refused(store: Arc<dyn Store>, _: &str) {
    for change in [verified(5, 4, "0xa"), pending(5, 4)] {
        let err = store.apply(&[change]).await.unwrap_err();
        assert!(matches!(err, StoreError::Unstorable(_)), "{err}");
    }
    let err = store
        .apply(&[verified(u64::MAX - 1, u64::MAX, "0xa")])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("i64::MAX"), "{err}");
    assert_eq!(store.last_verify_record().await.unwrap(), None);
    assert_eq!(store.pending_verify().await.unwrap(), None);
}

macro_rules! two_handle_test {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite_handles {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = crate::common::sqlite_backend().await;
                    super::$name(b.store.clone(), &b.url).await;
                }
            )*
        }
        mod on_postgres_handles {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let b = crate::common::postgres_backend(stringify!($name)).await;
                    super::$name(b.store.clone(), &b.url).await;
                }
            )*
        }
    };
}

two_handle_test!(
    a_fenced_apply_writes_no_record,
    records_in_the_meta_table_move_into_their_table,
);

/// A coordinator whose lease was taken over writes neither its record nor the cleared mark.
async fn a_fenced_apply_writes_no_record(store: Arc<dyn Store>, url: &str) {
    let claim = |holder: &str| LeaseClaim {
        holder: holder.into(),
        url: format!("http://{holder}:3900"),
        ttl_ms: 60_000,
        reclaim: false,
    };
    let old = store.acquire_lease(&claim("old")).await.unwrap().unwrap();
    store.fence_writes(old);
    store.apply(&[pending(1, 2)]).await.unwrap();
    store.release_lease(old).await.unwrap();
    let other = open_store(url).await.unwrap();
    let new = other.acquire_lease(&claim("new")).await.unwrap().unwrap();
    let err = store
        .apply(&[verified(1, 2, "0xa"), Change::ClearPendingVerify])
        .await
        .unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { epoch, current: Some(c) } if epoch == old && c == new),
        "{err}"
    );
    assert_eq!(other.verify_record(1).await.unwrap(), None);
    assert_eq!(other.pending_verify().await.unwrap(), Some((1, 2)));
}

/// Runs SQL on the store's database directly (what an older proofmill left behind).
async fn run_sql(url: &str, statements: &[String]) {
    if url.starts_with("sqlite") {
        run_on::<sqlx::SqliteConnection>(url, statements).await
    } else {
        run_on::<sqlx::PgConnection>(url, statements).await
    }
}

async fn run_on<C>(url: &str, statements: &[String])
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    let mut conn = C::connect(url).await.unwrap();
    for s in statements {
        sqlx::raw_sql(AssertSqlSafe(s.clone()))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    conn.close().await.unwrap();
}

fn old_json(first: u64, last: u64, tx: &str, gas: u64) -> String {
    format!(r#"{{"tx_hash":"{tx}","first_batch":{first},"last_batch":{last},"gas_used":{gas}}}"#)
}

/// A store as a proofmill before migration 0008 left it (schema up to 0006, settlement
/// records as JSON in the meta table) keeps its history once opened: every record, the
/// latest and the pending mark are in the table, the meta keys are gone, other meta stays.
async fn records_in_the_meta_table_move_into_their_table(store: Arc<dyn Store>, url: &str) {
    store.set_meta("cursor", "7").await.unwrap();
    drop(store);
    let a = old_json(1, 2, "0xa", 2000);
    let b = old_json(3, 5, "0xb", 3000);
    let mut old = vec![
        "DROP TABLE settlements".to_owned(),
        "DELETE FROM _sqlx_migrations WHERE version = 8".to_owned(),
    ];
    let mut meta = vec![
        ("l1/last_verify_tx".to_owned(), b.clone()),
        ("l1/pending_verify".to_owned(), old_json(6, 7, "", 0)),
        // Unreadable: skipped, as the old reader did.
        ("l1/verify/000000000009".to_owned(), "{".to_owned()),
    ];
    for n in 1..=2 {
        meta.push((format!("l1/verify/{n:012}"), a.clone()));
    }
    for n in 3..=5 {
        meta.push((format!("l1/verify/{n:012}"), b.clone()));
    }
    for (k, v) in &meta {
        old.push(format!(
            "INSERT INTO meta (key, value) VALUES ('{k}', '{v}')"
        ));
    }
    run_sql(url, &old).await;

    let store = open_store(url).await.unwrap();
    assert_eq!(
        store.verify_record(1).await.unwrap(),
        Some(record_gas(1, 2, "0xa", 2000))
    );
    assert_eq!(
        store.verify_record(4).await.unwrap(),
        Some(record_gas(3, 5, "0xb", 3000))
    );
    assert_eq!(store.verify_record(9).await.unwrap(), None);
    assert_eq!(
        store.last_verify_record().await.unwrap(),
        Some(record_gas(3, 5, "0xb", 3000))
    );
    assert_eq!(store.pending_verify().await.unwrap(), Some((6, 7)));
    for (k, _) in &meta {
        assert_eq!(store.get_meta(k).await.unwrap(), None, "{k}");
    }
    assert_eq!(
        store.get_meta("cursor").await.unwrap().as_deref(),
        Some("7")
    );

    // Moved once: what is written since survives the next open.
    store
        .apply(&[verified(6, 7, "0xc"), Change::ClearPendingVerify])
        .await
        .unwrap();
    drop(store);
    let store = open_store(url).await.unwrap();
    assert_eq!(
        store.last_verify_record().await.unwrap(),
        Some(record(6, 7, "0xc"))
    );
    assert_eq!(store.pending_verify().await.unwrap(), None);
    assert_eq!(
        store.verify_record(2).await.unwrap(),
        Some(record_gas(1, 2, "0xa", 2000))
    );
}

fn record_gas(first: u64, last: u64, tx: &str, gas: u64) -> VerifyRecord {
    VerifyRecord {
        gas_used: gas,
        ..record(first, last, tx)
    }
}
