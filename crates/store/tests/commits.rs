//! Commit records (`Store::record_commit`): read back per batch, by range and as the last;
//! replaced when written again; refused when unstorable; never written by a fenced handle.
//! On SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::*;
use proofmill_store::{CommitRecord, LeaseClaim, StoreError};

store_test!(
    records_are_found_by_batch_and_range,
    a_record_written_again_is_replaced,
    an_unstorable_record_is_refused,
);

fn record(batch: u64, tx: &str) -> CommitRecord {
    CommitRecord {
        batch,
        tx_hash: tx.into(),
        gas_used: batch.wrapping_add(50_000),
        block: batch.wrapping_add(100),
        recorded_at: batch.wrapping_add(1_700_000_000_000),
    }
}

async fn records_are_found_by_batch_and_range(store: Arc<dyn Store>, _: &str) {
    assert_eq!(store.commit_record(1).await.unwrap(), None);
    assert_eq!(store.last_commit_record().await.unwrap(), None);
    assert!(
        store
            .commit_records(0, u64::MAX, 0)
            .await
            .unwrap()
            .is_empty()
    );
    for (b, tx) in [(3, "0xc"), (1, "0xa"), (2, "0xb"), (7, "0xg")] {
        store.record_commit(&record(b, tx)).await.unwrap();
    }
    assert_eq!(
        store.commit_record(2).await.unwrap(),
        Some(record(2, "0xb"))
    );
    for b in [0, 4, 6, 8, u64::MAX] {
        assert_eq!(store.commit_record(b).await.unwrap(), None, "batch {b}");
    }
    assert_eq!(
        store.last_commit_record().await.unwrap(),
        Some(record(7, "0xg"))
    );
    let range = store.commit_records(2, 7, 0).await.unwrap();
    assert_eq!(
        range,
        vec![record(2, "0xb"), record(3, "0xc"), record(7, "0xg")]
    );
    let limited = store.commit_records(0, u64::MAX, 2).await.unwrap();
    assert_eq!(limited, vec![record(1, "0xa"), record(2, "0xb")]);
    assert!(store.commit_records(4, 6, 0).await.unwrap().is_empty());
}

async fn a_record_written_again_is_replaced(store: Arc<dyn Store>, _: &str) {
    store.record_commit(&record(5, "0xa")).await.unwrap();
    let mut again = record(5, "0xb");
    again.block = 999;
    store.record_commit(&again).await.unwrap();
    assert_eq!(store.commit_record(5).await.unwrap(), Some(again));
    assert_eq!(store.commit_records(0, 10, 0).await.unwrap().len(), 1);
}

async fn an_unstorable_record_is_refused(store: Arc<dyn Store>, _: &str) {
    let err = store
        .record_commit(&record(u64::MAX, "0xa"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unstorable(_)), "{err}");
    let err = store.record_commit(&record(1, "0x\0")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unstorable(_)), "{err}");
    assert_eq!(store.last_commit_record().await.unwrap(), None);
}

mod on_sqlite_handles {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_handle_records_no_commit() {
        let b = crate::common::sqlite_backend().await;
        super::a_fenced_handle_records_no_commit(b.store.clone(), &b.url).await;
    }
}
mod on_postgres_handles {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_handle_records_no_commit() {
        let b = crate::common::postgres_backend("a_fenced_handle_records_no_commit").await;
        super::a_fenced_handle_records_no_commit(b.store.clone(), &b.url).await;
    }
}

/// A coordinator whose lease was taken over records no commit (the new one does).
async fn a_fenced_handle_records_no_commit(store: Arc<dyn Store>, url: &str) {
    let claim = |holder: &str| LeaseClaim {
        holder: holder.into(),
        url: format!("http://{holder}:3900"),
        ttl_ms: 60_000,
        reclaim: false,
    };
    let old = store.acquire_lease(&claim("old")).await.unwrap().unwrap();
    store.fence_writes(old);
    store.record_commit(&record(1, "0xa")).await.unwrap();
    store.release_lease(old).await.unwrap();
    let other = open_store(url).await.unwrap();
    let new = other.acquire_lease(&claim("new")).await.unwrap().unwrap();
    let err = store.record_commit(&record(2, "0xb")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Fenced { epoch, current: Some(c) } if epoch == old && c == new),
        "{err}"
    );
    assert_eq!(other.commit_record(2).await.unwrap(), None);
    assert_eq!(
        other.commit_record(1).await.unwrap(),
        Some(record(1, "0xa"))
    );
}
