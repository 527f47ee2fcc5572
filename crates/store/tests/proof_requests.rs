//! The proof manager's table (`ProofRequests`): a row inserted once and read back with every
//! column; rewritten as given together with the watcher's cursor, in one transaction; listed
//! by chain, status and openness; refused when unstorable; never written by a fenced handle.
//! On SQLite and PostgreSQL.

#[macro_use]
mod common;

use common::*;
use proofmill_store::{
    FallbackReason, LeaseClaim, MarketCursor, ProofRequest, ProofRequestFilter, ProofRequestStatus,
    ProofRequests, StoreError, ValidationStatus,
};

store_test!(
    a_row_is_inserted_once_and_reads_back_whole,
    rows_and_the_cursor_are_written_together,
    rows_are_listed_by_chain_status_and_openness,
    an_unstorable_row_is_refused_and_changes_nothing,
);

const MARKET: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

fn table(store: &Arc<dyn Store>) -> Arc<dyn ProofRequests> {
    store
        .clone()
        .proof_requests()
        .expect("the SQL store has the table")
}

fn ready(chain: u64, batch: u64) -> ProofRequest {
    ProofRequest::ready(
        chain,
        batch,
        format!("https://inputs.example/{chain}/{batch}.bin"),
        digest(batch),
        batch.wrapping_add(1_700_000_000_000),
    )
}

/// A row with every optional column set: validated valid.
fn validated(chain: u64, batch: u64) -> ProofRequest {
    ProofRequest {
        status: ProofRequestStatus::ValidationResultSentToL1,
        assigned_to: Some("0x70997970C51812dc3A010C7d01b50e0d17dc79C8".into()),
        proof_url: Some(format!("file:///proofs/{chain}/{batch}.bin")),
        request_tx_hash: Some(format!("0x{}", "ab".repeat(32))),
        request_sent_at: Some(1_700_000_000_100),
        validation_tx_hash: Some(format!("0x{}", "cd".repeat(32))),
        validation_sent_at: Some(1_700_000_000_900),
        validation_status: ValidationStatus::Valid,
        deadline: Some(1_800_000_000),
        ack_deadline: Some(1_700_000_600),
        updated_at: 1_700_000_001_000,
        ..ready(chain, batch)
    }
}

async fn a_row_is_inserted_once_and_reads_back_whole(store: Arc<dyn Store>, _: &str) {
    let t = table(&store);
    assert_eq!(t.proof_request(7, 1).await.unwrap(), None);
    assert!(t.insert_proof_request(&ready(7, 1)).await.unwrap());
    assert_eq!(t.proof_request(7, 1).await.unwrap(), Some(ready(7, 1)));
    // Inserted again, even with other content: the stored row stays.
    assert!(!t.insert_proof_request(&validated(7, 1)).await.unwrap());
    assert_eq!(t.proof_request(7, 1).await.unwrap(), Some(ready(7, 1)));
    // Every column round-trips, each fallback reason and status too.
    assert!(t.insert_proof_request(&validated(7, 2)).await.unwrap());
    assert_eq!(t.proof_request(7, 2).await.unwrap(), Some(validated(7, 2)));
    for (i, status) in ProofRequestStatus::ALL.into_iter().enumerate() {
        let reason = FallbackReason::ALL[i % FallbackReason::ALL.len()];
        let row = ProofRequest {
            status,
            fallback_reason: Some(reason),
            fallbacked: i % 2 == 0,
            validation_status: ValidationStatus::Invalid,
            ..ready(8, i as u64)
        };
        assert!(t.insert_proof_request(&row).await.unwrap());
        assert_eq!(t.proof_request(8, i as u64).await.unwrap(), Some(row));
    }
    // Unknown and unstorable keys are simply absent.
    for (chain, batch) in [(7, 3), (9, 1), (u64::MAX, 1), (7, u64::MAX)] {
        assert_eq!(t.proof_request(chain, batch).await.unwrap(), None);
    }
}

async fn rows_and_the_cursor_are_written_together(store: Arc<dyn Store>, _: &str) {
    let t = table(&store);
    assert_eq!(t.market_cursor(MARKET, 7).await.unwrap(), None);
    t.insert_proof_request(&ready(7, 1)).await.unwrap();
    let cursor = |last_block| MarketCursor {
        market: MARKET.into(),
        chain: 7,
        last_block,
    };
    // A row changed and one new (written by the same call), with the block read up to.
    let sent = ProofRequest {
        status: ProofRequestStatus::RequestSentToL1,
        request_tx_hash: Some("0x01".into()),
        request_sent_at: Some(5),
        ..ready(7, 1)
    };
    t.update_proof_requests(&[sent.clone(), ready(7, 2)], Some(&cursor(40)))
        .await
        .unwrap();
    assert_eq!(t.proof_request(7, 1).await.unwrap(), Some(sent.clone()));
    assert_eq!(t.proof_request(7, 2).await.unwrap(), Some(ready(7, 2)));
    assert_eq!(t.market_cursor(MARKET, 7).await.unwrap(), Some(40));
    // Each (market, chain) has its own cursor.
    assert_eq!(t.market_cursor(MARKET, 8).await.unwrap(), None);
    assert_eq!(t.market_cursor("0x01", 7).await.unwrap(), None);
    // The cursor alone moves; rows alone leave it.
    t.update_proof_requests(&[], Some(&cursor(41)))
        .await
        .unwrap();
    t.update_proof_requests(&[ready(7, 3)], None).await.unwrap();
    assert_eq!(t.market_cursor(MARKET, 7).await.unwrap(), Some(41));

    // All or nothing: one unstorable row and neither the other row nor the cursor changes.
    let acked = ProofRequest {
        status: ProofRequestStatus::Acknowledged,
        ..sent.clone()
    };
    let bad = ProofRequest {
        proof_url: Some("bad\0url".into()),
        ..ready(7, 2)
    };
    let err = t
        .update_proof_requests(&[acked.clone(), bad], Some(&cursor(50)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unstorable(_)), "{err}");
    assert_eq!(t.proof_request(7, 1).await.unwrap(), Some(sent));
    assert_eq!(t.market_cursor(MARKET, 7).await.unwrap(), Some(41));
    // An unstorable cursor is refused the same way.
    let err = t
        .update_proof_requests(std::slice::from_ref(&acked), Some(&cursor(u64::MAX)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Unstorable(_)), "{err}");
    t.update_proof_requests(std::slice::from_ref(&acked), Some(&cursor(50)))
        .await
        .unwrap();
    assert_eq!(t.proof_request(7, 1).await.unwrap(), Some(acked));
    assert_eq!(t.market_cursor(MARKET, 7).await.unwrap(), Some(50));
}

async fn rows_are_listed_by_chain_status_and_openness(store: Arc<dyn Store>, _: &str) {
    let t = table(&store);
    let fell_back = ProofRequest {
        status: ProofRequestStatus::TimedOut,
        fallback_reason: Some(FallbackReason::NotAcknowledged),
        fallbacked: true,
        ..ready(7, 2)
    };
    // Refused on L1 but not handed to the own provers yet: not done.
    let refused = ProofRequest {
        status: ProofRequestStatus::Refused,
        fallback_reason: Some(FallbackReason::Refused),
        ..ready(7, 4)
    };
    // Validated invalid: done only once fallbacked.
    let invalid = ProofRequest {
        validation_status: ValidationStatus::Invalid,
        fallback_reason: Some(FallbackReason::InvalidProof),
        ..validated(8, 1)
    };
    let rows = [
        ready(7, 1),
        fell_back.clone(),
        validated(7, 3),
        refused.clone(),
        invalid.clone(),
        ready(8, 2),
    ];
    assert!(fell_back.is_done() && validated(7, 3).is_done());
    assert!(!refused.is_done() && !invalid.is_done() && !ready(7, 1).is_done());
    // Written out of order.
    for row in rows.iter().rev() {
        t.update_proof_requests(std::slice::from_ref(row), None)
            .await
            .unwrap();
    }
    let list = |filter: ProofRequestFilter| {
        let t = t.clone();
        async move {
            t.list_proof_requests(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|r| (r.chain, r.batch))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(ProofRequestFilter::default()).await,
        vec![(7, 1), (7, 2), (7, 3), (7, 4), (8, 1), (8, 2)]
    );
    assert_eq!(
        list(ProofRequestFilter {
            open_only: true,
            ..Default::default()
        })
        .await,
        vec![(7, 1), (7, 4), (8, 1), (8, 2)]
    );
    assert_eq!(
        list(ProofRequestFilter {
            chain: Some(7),
            open_only: true,
            from_batch: Some(2),
            ..Default::default()
        })
        .await,
        vec![(7, 4)]
    );
    assert_eq!(
        list(ProofRequestFilter {
            status: Some(ProofRequestStatus::ReadyToBeProven),
            limit: 1,
            ..Default::default()
        })
        .await,
        vec![(7, 1)]
    );
    assert_eq!(
        list(ProofRequestFilter {
            chain: Some(u64::MAX),
            ..Default::default()
        })
        .await,
        vec![]
    );
    assert_eq!(
        list(ProofRequestFilter {
            from_batch: Some(u64::MAX),
            ..Default::default()
        })
        .await,
        vec![]
    );
    // Once the invalid one has fallen back, it leaves the working set.
    let invalid_done = ProofRequest {
        fallbacked: true,
        ..invalid
    };
    t.update_proof_requests(&[invalid_done], None)
        .await
        .unwrap();
    assert_eq!(
        list(ProofRequestFilter {
            chain: Some(8),
            open_only: true,
            ..Default::default()
        })
        .await,
        vec![(8, 2)]
    );
}

async fn an_unstorable_row_is_refused_and_changes_nothing(store: Arc<dyn Store>, _: &str) {
    let t = table(&store);
    let cases = [
        ready(u64::MAX, 1),
        ready(7, u64::MAX),
        ProofRequest {
            deadline: Some(u64::MAX),
            ..ready(7, 1)
        },
        ProofRequest {
            assigned_to: Some("0x\0".into()),
            ..ready(7, 1)
        },
        ProofRequest {
            inputs_url: "https://x/\0".into(),
            ..ready(7, 1)
        },
    ];
    for row in cases {
        let err = t.insert_proof_request(&row).await.unwrap_err();
        assert!(matches!(err, StoreError::Unstorable(_)), "{err}");
        let err = t.update_proof_requests(&[row], None).await.unwrap_err();
        assert!(matches!(err, StoreError::Unstorable(_)), "{err}");
    }
    assert!(
        t.list_proof_requests(&ProofRequestFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

mod on_sqlite_handles {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_handle_writes_no_proof_request() {
        let b = crate::common::sqlite_backend().await;
        super::a_fenced_handle_writes_no_proof_request(b.store.clone(), &b.url).await;
    }
}
mod on_postgres_handles {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fenced_handle_writes_no_proof_request() {
        let b = crate::common::postgres_backend("a_fenced_handle_writes_no_proof_request").await;
        super::a_fenced_handle_writes_no_proof_request(b.store.clone(), &b.url).await;
    }
}

/// A proof manager whose coordinator lease was taken over writes nothing to its table,
/// through any of its writes; the new holder does.
async fn a_fenced_handle_writes_no_proof_request(store: Arc<dyn Store>, url: &str) {
    let claim = |holder: &str| LeaseClaim {
        holder: holder.into(),
        url: format!("http://{holder}:3900"),
        ttl_ms: 60_000,
        reclaim: false,
    };
    let old = store.acquire_lease(&claim("old")).await.unwrap().unwrap();
    store.fence_writes(old);
    let t = table(&store);
    assert!(t.insert_proof_request(&ready(7, 1)).await.unwrap());
    store.release_lease(old).await.unwrap();
    let other = open_store(url).await.unwrap();
    let new = other.acquire_lease(&claim("new")).await.unwrap().unwrap();
    other.fence_writes(new);
    let fenced = |r: Result<(), StoreError>, what: &str| match r {
        Err(StoreError::Fenced { epoch, current }) => {
            assert_eq!((epoch, current), (old, Some(new)), "{what}");
        }
        other => panic!("{what}: expected Fenced, got {other:?}"),
    };
    fenced(
        t.insert_proof_request(&ready(7, 2)).await.map(|_| ()),
        "insert",
    );
    let sent = ProofRequest {
        status: ProofRequestStatus::RequestSentToL1,
        ..ready(7, 1)
    };
    let cursor = MarketCursor {
        market: MARKET.into(),
        chain: 7,
        last_block: 9,
    };
    fenced(
        t.update_proof_requests(std::slice::from_ref(&sent), Some(&cursor))
            .await,
        "update",
    );
    let t2 = table(&other);
    assert_eq!(t2.proof_request(7, 1).await.unwrap(), Some(ready(7, 1)));
    assert_eq!(t2.proof_request(7, 2).await.unwrap(), None);
    assert_eq!(t2.market_cursor(MARKET, 7).await.unwrap(), None);
    t2.update_proof_requests(std::slice::from_ref(&sent), Some(&cursor))
        .await
        .unwrap();
    assert_eq!(t2.proof_request(7, 1).await.unwrap(), Some(sent));
    assert_eq!(t2.market_cursor(MARKET, 7).await.unwrap(), Some(9));
}
