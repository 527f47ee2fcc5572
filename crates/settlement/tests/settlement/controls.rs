//! An operator's controls over settlement: a paused proof sender sends nothing while batches
//! are proven and catches up in one transaction on resume; settle now ignores the interval;
//! commit now commits a batch by hand while the committer is paused.

use super::rig::*;
use super::support::{Db, start, wait_for};
use proofmill_coordinator::Component;
use proofmill_proto::v1::{CommitNowRequest, ErrorCode, SettleNowRequest};
use proofmill_settlement::SettlementConfig;
use std::time::Duration;

pub async fn paused_sender_catches_up_in_one_transaction(chain: Chain, db: Db) {
    let r = rig(chain, db, "pause_sender", 4).await;
    let (changed, _) = r
        .run
        .coord
        .pause(Component::Sender, "L1 fees")
        .await
        .unwrap();
    assert!(changed);
    let _s = start_sender(&r.run, r.chain.l1.clone(), sender_cfg(32)).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 4).await;
    // Proven rises, verified stays: several intervals (100 ms) pass without a send, while
    // L1 is still read for status.
    wait_for("proven 4", LONG, || async {
        r.run.coord.status().await.unwrap().last_proven_batch == Some(4)
    })
    .await;
    wait_for("L1 read while paused", LONG, || async {
        r.run.coord.status().await.unwrap().last_verified_batch == Some(0)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(r.chain.l1.last_verified_batch().await.unwrap(), 0);
    assert_eq!(r.run.coord.last_verify_tx().await.unwrap(), None);
    let mut admin = r.run.admin().await;
    let e = admin
        .settle_now(SettleNowRequest {})
        .await
        .unwrap()
        .into_inner()
        .error
        .expect("refused while paused");
    assert_eq!(
        e.code,
        ErrorCode::FailedPrecondition as i32,
        "{}",
        e.message
    );

    assert!(r.run.coord.resume(Component::Sender).await.unwrap());
    wait_verified(&r.chain.l1, 4).await;
    let recs = records(&r.run, 4).await;
    assert!(recs.iter().all(|x| (x.0, x.1) == (1, 4)), "{recs:?}");
    assert_eq!(distinct_txs(&recs), 1, "one transaction");
    drop(r.committer);
    r.run.stop().await;
}

pub async fn settle_now_ignores_the_interval(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_now", 3).await;
    let cfg = SettlementConfig {
        send_interval_ms: 3_600_000,
        ..sender_cfg(32)
    };
    let _s = start_sender(&r.run, r.chain.l1.clone(), cfg).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 3).await;
    wait_for("proven 3", LONG, || async {
        r.run.coord.status().await.unwrap().last_proven_batch == Some(3)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        r.chain.l1.last_verified_batch().await.unwrap(),
        0,
        "the hour has not passed"
    );
    let mut admin = r.run.admin().await;
    let done = admin
        .settle_now(SettleNowRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(done.error.is_none(), "{done:?}");
    assert_eq!((done.settled_batches, done.last_verified_batch), (3, 3));
    let tx = done.last_verify_tx.unwrap();
    assert_eq!((tx.first_batch, tx.last_batch), (1, 3));
    assert_eq!(r.chain.l1.last_verified_batch().await.unwrap(), 3);
    let again = admin
        .settle_now(SettleNowRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(again.error.is_none(), "{again:?}");
    assert_eq!((again.settled_batches, again.last_verified_batch), (0, 3));
    assert!(again.last_verify_tx.is_none());
    drop(r.committer);
    r.run.stop().await;
}

pub async fn commit_now_steps_a_paused_committer(chain: Chain, db: Db) {
    let side = open_l1(chain).await;
    let env = super::support::Env::new(db, "commit_now");
    let run = start(&env, super::support::fast_config()).await;
    run.coord.pause(Component::Committer, "").await.unwrap();
    devnet(&run, 3).await;
    let _committer =
        proofmill_settlement::start(run.coord.settlement_port(), side.l1.clone(), true, None)
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(side.l1.last_committed_batch().await.unwrap(), 0, "paused");
    let mut admin = run.admin().await;
    let done = admin
        .commit_now(CommitNowRequest { batch: 2 })
        .await
        .unwrap()
        .into_inner();
    assert!(done.error.is_none(), "{done:?}");
    assert_eq!((done.first_batch, done.last_batch), (1, 2));
    assert_eq!(side.l1.last_committed_batch().await.unwrap(), 2);
    let e = admin
        .commit_now(CommitNowRequest { batch: 2 })
        .await
        .unwrap()
        .into_inner()
        .error
        .unwrap();
    assert_eq!(
        e.code,
        ErrorCode::FailedPrecondition as i32,
        "{}",
        e.message
    );
    assert!(e.message.contains("committed already"), "{}", e.message);
    let e = admin
        .commit_now(CommitNowRequest { batch: 9 })
        .await
        .unwrap()
        .into_inner()
        .error
        .unwrap();
    assert_eq!(e.code, ErrorCode::JobNotFound as i32, "{}", e.message);
    assert!(e.message.contains("not sealed"), "{}", e.message);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        side.l1.last_committed_batch().await.unwrap(),
        2,
        "still paused"
    );
    assert!(run.coord.resume(Component::Committer).await.unwrap());
    let l1 = side.l1.clone();
    wait_for("the rest committed on resume", LONG, || {
        let l1 = l1.clone();
        async move { l1.last_committed_batch().await.unwrap() == 3 }
    })
    .await;
    run.stop().await;
}
