//! The committer's records: every committed batch has its commit transaction (hash, gas,
//! block) in the store, the one L1's `BatchCommitted` event names; a commit whose receipt
//! was never seen is recorded after a restart, from the chain.

use super::faults::{Fault, Faulty};
use super::rig::*;
use super::support::{Db, Running, start, wait_for};
use proofmill_l1::L1;
use std::sync::Arc;

/// Waits until batches `1..=last` all have a record, and checks each against the chain.
async fn records_match_the_chain(run: &Running, l1: &Arc<dyn L1>, last: u64) {
    let store = run.coord.store();
    wait_for("commit records", LONG, || {
        let store = store.clone();
        async move { store.commit_records(1, last, 0).await.unwrap().len() as u64 == last }
    })
    .await;
    let on_chain = l1.committed_batches(1).await.unwrap();
    let batches: Vec<u64> = on_chain.iter().map(|c| c.batch).collect();
    assert_eq!(batches, (1..=last).collect::<Vec<_>>());
    for c in on_chain {
        let rec = store.commit_record(c.batch).await.unwrap().unwrap();
        assert_eq!(
            rec.tx_hash,
            format!("0x{}", hex::encode(c.tx_hash)),
            "{rec:?}"
        );
        assert_eq!((rec.gas_used, rec.block), (c.gas_used, c.block), "{rec:?}");
        assert!(rec.gas_used > 0 && rec.block > 0, "{rec:?}");
        assert!(rec.recorded_at > 0, "{rec:?}");
    }
    assert_eq!(
        store.last_commit_record().await.unwrap().unwrap().batch,
        last
    );
}

pub async fn commits_are_recorded(chain: Chain, db: Db) {
    let r = rig(chain, db, "commit_records", 3).await;
    records_match_the_chain(&r.run, &r.chain.l1, 3).await;
    r.run.stop().await;
}

/// `commitBatch` of batch 1 is mined but the committer never sees its receipt; it stops.
/// The next run finds the commit on L1 and records its transaction before going on.
pub async fn a_commit_without_receipt_is_recorded_after_restart(chain: Chain, db: Db) {
    let side = open_l1(chain).await;
    let env = super::support::Env::new(db, "commit_lost_receipt");
    let run = start(&env, super::support::fast_config()).await;
    devnet(&run, 3).await;
    let lossy = Faulty::new(side.l1.clone(), Fault::LoseCommitReceipt);
    let committer = proofmill_settlement::start(run.coord.settlement_port(), lossy, true, None)
        .await
        .unwrap();
    let l1 = side.l1.clone();
    wait_for("batch 1 committed", LONG, || {
        let l1 = l1.clone();
        async move { l1.last_committed_batch().await.unwrap() == 1 }
    })
    .await;
    assert_eq!(run.coord.store().commit_record(1).await.unwrap(), None);
    committer.stop();
    run.stop().await;

    let run = start(&env, super::support::fast_config()).await;
    let _committer =
        proofmill_settlement::start(run.coord.settlement_port(), side.l1.clone(), true, None)
            .await
            .unwrap();
    records_match_the_chain(&run, &side.l1, 3).await;
    run.stop().await;
}
