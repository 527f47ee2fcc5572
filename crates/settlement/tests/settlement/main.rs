//! L1 settlement end to end: a real coordinator (devnet batch source, raw wire-protocol
//! prover) settling on the embedded revm L1 and on a real anvil, over SQLite and Postgres.
//! One suite, every case run per (L1, store) combination.

#[path = "../../../coordinator/tests/support/mod.rs"]
mod support;

mod commits;
mod controls;
mod faults;
mod rig;

use commits::*;
use controls::*;
use faults::{Fault, Faulty};
use proofmill_l1::L1;
use proofmill_settlement::{Settlement, SettlementConfig};
use proofmill_store::Change;
use proofmill_types::{Digest, JobState, ProofType};
use rig::*;
use std::sync::Arc;
use std::time::Duration;
use support::{Db, RawProver, fast_config, register, start, wait_for};

/// Runs each case on every (L1, store) pair.
macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        $(mod $name {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn revm_sqlite() { super::$name(Chain::Revm, Db::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn anvil_sqlite() { super::$name(Chain::Anvil, Db::Sqlite).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn revm_postgres() { super::$name(Chain::Revm, Db::Postgres).await }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn anvil_postgres() { super::$name(Chain::Anvil, Db::Postgres).await }
        })*
    };
}

suite!(
    several_batches_in_one_transaction,
    gap_stops_the_range,
    invalid_proof_is_isolated_and_reproven,
    cap_splits_into_transactions,
    restart_between_sends,
    non_proof_revert_deletes_nothing,
    crash_between_send_and_receipt,
    unattributed_revert_isolates_one_batch_per_transaction,
    gas_cap_halves_the_range,
    mined_revert_deletes_nothing,
    offchain_proof_types_gate_settlement,
    paused_sender_catches_up_in_one_transaction,
    settle_now_ignores_the_interval,
    commit_now_steps_a_paused_committer,
    commits_are_recorded,
    a_commit_without_receipt_is_recorded_after_restart,
);

// ---------------------------------------------------------------------------------------------
// cases

async fn several_batches_in_one_transaction(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_many", 5).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 5).await;
    let _s = start_sender(&r.run, r.chain.l1.clone(), sender_cfg(32)).await;
    wait_verified(&r.chain.l1, 5).await;
    let recs = records(&r.run, 5).await;
    assert!(recs.iter().all(|x| (x.0, x.1) == (1, 5)), "{recs:?}");
    assert_eq!(distinct_txs(&recs), 1);
    wait_for("status shows settlement", LONG, || async {
        let s = r.run.coord.status().await.unwrap();
        s.last_verified_batch == Some(5) && s.last_committed_batch == Some(5)
    })
    .await;
    let s = r.run.coord.status().await.unwrap();
    let tx = s.last_verify_tx.unwrap();
    assert_eq!(
        (tx.first_batch, tx.last_batch, tx.tx_hash),
        (1, 5, recs[0].2.clone())
    );
    drop(r.committer);
    r.run.stop().await;
    drop(r.env);
}

async fn gap_stops_the_range(chain: Chain, db: Db) {
    // Batch 3 is held unanswered for a while: keep its lease through missed heartbeats.
    let r = rig_with(chain, db, "settle_gap", 5, |c| {
        c.scheduler.missed_heartbeats = 1_000
    })
    .await;
    // Capacity 3: tasks of batches 1-3 at once, 4 and 5 as 1 and 2 finish. Batch 3 is held.
    let mut p = prover(&r.run, 3).await;
    let mut held = None;
    let mut proven = 0;
    while proven < 4 {
        let t = p.task().await;
        if t.batch == 3 {
            held = Some(t);
            continue;
        }
        prove(&mut p, &t).await;
        proven += 1;
    }
    let _s = start_sender(&r.run, r.chain.l1.clone(), sender_cfg(32)).await;
    wait_verified(&r.chain.l1, 2).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        r.chain.l1.last_verified_batch().await.unwrap(),
        2,
        "sent past the gap at batch 3"
    );
    assert!(r.run.coord.verify_record(3).await.unwrap().is_none());
    prove(&mut p, &held.unwrap()).await;
    wait_verified(&r.chain.l1, 5).await;
    let recs = records(&r.run, 5).await;
    assert_eq!((recs[0].0, recs[0].1), (1, 2), "{recs:?}");
    assert!(recs[2..].iter().all(|x| (x.0, x.1) == (3, 5)), "{recs:?}");
    r.run.stop().await;
}

async fn invalid_proof_is_isolated_and_reproven(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_invalid", 5).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 5).await;
    // Test setup: the coordinator checks proofs on arrival, so a bad one can only reach L1 if
    // it is written straight into the store. Replace batch 3's proof with one that claims
    // another new state root.
    let key = exec_key(3);
    let store = r.run.coord.store().clone();
    let mut rec = store.proof(&key).await.unwrap().unwrap();
    let stored = store
        .batch(proofmill_types::DEFAULT_CHAIN, 3)
        .await
        .unwrap()
        .unwrap()
        .public_values;
    let mut bad = proofmill_devnet::StateTransition::from_public_values(&stored).unwrap();
    bad.new_state_root = Digest::sha256(b"not the state root");
    rec.inline = Some(bad.encode().to_vec());
    rec.blob_key = String::new();
    store.apply(&[Change::Proof(rec)]).await.unwrap();

    let _s = start_sender(&r.run, r.chain.l1.clone(), sender_cfg(32)).await;
    // The prefix settles, the bad proof is deleted and its job requeued with the reason.
    let t = p.task().await;
    assert_eq!(t.batch, 3);
    // A task goes out before its lease is committed: wait for the commit before reading.
    r.run.coord.flush().await.unwrap();
    assert_eq!(r.chain.l1.last_verified_batch().await.unwrap(), 2);
    assert!(
        store.proof(&key).await.unwrap().is_none(),
        "invalid proof not deleted"
    );
    let job = store.job(&key).await.unwrap().unwrap();
    assert_eq!(job.state, JobState::Leased);
    assert!(
        job.last_error
            .as_deref()
            .unwrap_or("")
            .contains("L1 rejected the proof"),
        "{job:?}"
    );
    prove(&mut p, &t).await;
    wait_verified(&r.chain.l1, 5).await;
    let recs = records(&r.run, 5).await;
    assert_eq!((recs[0].0, recs[0].1, recs[1].1), (1, 2, 2), "{recs:?}");
    assert!(recs[2..].iter().all(|x| (x.0, x.1) == (3, 5)), "{recs:?}");
    r.run.stop().await;
}

async fn cap_splits_into_transactions(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_cap", 5).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 5).await;
    let _s = start_sender(&r.run, r.chain.l1.clone(), sender_cfg(2)).await;
    wait_verified(&r.chain.l1, 5).await;
    let recs = records(&r.run, 5).await;
    assert!(recs.iter().all(|x| x.1 - x.0 < 2), "{recs:?}");
    assert!(distinct_txs(&recs) >= 3, "{recs:?}");
    r.run.stop().await;
}

async fn restart_between_sends(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_restart", 5).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 3).await;
    let sender = start_sender(&r.run, r.chain.l1.clone(), sender_cfg(32)).await;
    wait_verified(&r.chain.l1, 3).await;
    // Restart the coordinator (the L1 stays up, as a real chain would).
    drop(p);
    let (run, _s) = restart_and_prove_the_rest(&r.env, &r.chain, sender, r.committer, r.run).await;
    assert_eq!(r.chain.l1.last_committed_batch().await.unwrap(), 5);
    let recs = records(&run, 5).await;
    assert!(recs[..3].iter().all(|x| (x.0, x.1) == (1, 3)), "{recs:?}");
    assert!(recs[3..].iter().all(|x| (x.0, x.1) == (4, 5)), "{recs:?}");
    assert_eq!(distinct_txs(&recs), 2, "{recs:?}");
    run.stop().await;
}

/// Stops the sender and the coordinator, starts a new coordinator on the same store with its
/// committer and sender, and proves batches 4 and 5; returns once all 5 are verified on L1.
async fn restart_and_prove_the_rest(
    env: &support::Env,
    chain: &Chainside,
    sender: Settlement,
    committer: Settlement,
    run: support::Running,
) -> (support::Running, Settlement) {
    sender.stop();
    drop(committer);
    run.stop().await;
    let run = start(env, fast_config()).await;
    devnet(&run, 5).await;
    let settlement = proofmill_settlement::start(
        run.coord.settlement_port(),
        chain.l1.clone(),
        true,
        Some(sender_cfg(32)),
    )
    .await
    .unwrap();
    let mut p = prover(&run, 1).await;
    prove_next(&mut p, 2).await;
    wait_verified(&chain.l1, 5).await;
    (run, settlement)
}

async fn non_proof_revert_deletes_nothing(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_intruder", 3).await;
    let intruder = r.chain.intruder.clone();
    rejected_sender_keeps_every_proof(r, intruder).await;
}

/// The same with the intruder's transaction mined and reverted (no pre-flight): the receipt
/// status is what tells, and it deletes nothing either.
async fn mined_revert_deletes_nothing(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_mined_revert", 3).await;
    let intruder = r.chain.intruder_mined.clone();
    rejected_sender_keeps_every_proof(r, intruder).await;
}

async fn rejected_sender_keeps_every_proof(r: Rig, intruder: Arc<dyn L1>) {
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 3).await;
    // The sender signs with a key that is not the sequencer's: NotSequencer, not a proof failure.
    let bad = start_sender(&r.run, intruder, sender_cfg(32)).await;
    let c = r.run.coord.clone();
    wait_for("the rejection reported", LONG, || {
        let c = c.clone();
        async move {
            c.l1_seen()
                .and_then(|s| s.last_error)
                .is_some_and(|e| e.contains("NotSequencer"))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r.chain.l1.last_verified_batch().await.unwrap(), 0);
    let store = r.run.coord.store();
    for b in 1..=3 {
        assert!(
            store.proof(&exec_key(b)).await.unwrap().is_some(),
            "proof of batch {b} deleted"
        );
        assert_eq!(
            store.job(&exec_key(b)).await.unwrap().unwrap().state,
            JobState::Proven
        );
    }
    // The same proofs settle once the right key sends them.
    bad.stop();
    let _s = start_sender(&r.run, r.chain.l1.clone(), sender_cfg(32)).await;
    wait_verified(&r.chain.l1, 3).await;
    r.run.stop().await;
}

/// The sender sends `verifyBatches`, the chain mines it, and the coordinator dies before it
/// sees the receipt. After the restart the range is recorded from the chain's events (with the
/// transaction that settled it), nothing is sent twice and the next batches settle.
async fn crash_between_send_and_receipt(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_lost_receipt", 5).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 3).await;
    let lossy = Faulty::new(r.chain.l1.clone(), Fault::LoseReceipt);
    let sender = start_sender(&r.run, lossy, sender_cfg(32)).await;
    wait_verified(&r.chain.l1, 3).await;
    // Mined, but the sender still waits for its receipt: in flight, not recorded.
    assert_eq!(r.run.coord.pending_verify().await.unwrap(), Some((1, 3)));
    assert!(r.run.coord.verify_record(1).await.unwrap().is_none());

    drop(p);
    let (run, _s) = restart_and_prove_the_rest(&r.env, &r.chain, sender, r.committer, r.run).await;
    let recs = records(&run, 5).await;
    let on_chain = r.chain.l1.verified_ranges(1).await.unwrap();
    let ranges: Vec<(u64, u64)> = on_chain.iter().map(|v| (v.first, v.last)).collect();
    assert_eq!(ranges, [(1, 3), (4, 5)], "a range settled twice or skipped");
    let first_tx = format!("0x{}", hex::encode(on_chain[0].tx_hash));
    assert!(
        recs[..3]
            .iter()
            .all(|x| (x.0, x.1) == (1, 3) && x.2 == first_tx),
        "{recs:?}"
    );
    assert!(recs[3..].iter().all(|x| (x.0, x.1) == (4, 5)), "{recs:?}");
    // The pending mark is cleared right after the records are written, in its own write.
    let c = run.coord.clone();
    wait_for("the pending settlement cleared", LONG, || {
        let c = c.clone();
        async move { c.pending_verify().await.unwrap().is_none() }
    })
    .await;
    run.stop().await;
}

/// A revert that names no batch: the sender falls back to one batch per transaction.
async fn unattributed_revert_isolates_one_batch_per_transaction(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_unattributed", 3).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 3).await;
    let l1 = Faulty::new(r.chain.l1.clone(), Fault::NoAttribution);
    let _s = start_sender(&r.run, l1, sender_cfg(32)).await;
    wait_verified(&r.chain.l1, 3).await;
    let recs = records(&r.run, 3).await;
    assert!(recs.iter().all(|x| x.0 == x.1), "{recs:?}");
    assert_eq!(distinct_txs(&recs), 3, "{recs:?}");
    r.run.stop().await;
}

/// `max_gas_per_tx` set to what the first two batches cost: a run of five is halved until it
/// fits.
async fn gas_cap_halves_the_range(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_gas_cap", 5).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 5).await;
    let store = r.run.coord.store();
    let mut two = Vec::new();
    for b in 1..=2 {
        let rec = store.proof(&exec_key(b)).await.unwrap().unwrap();
        two.push(rec.inline.expect("exec proofs are kept inline"));
    }
    let gas_of_two = r
        .chain
        .l1
        .estimate_verify_gas(1, &[two])
        .await
        .unwrap()
        .unwrap();
    let cfg = SettlementConfig {
        max_gas_per_tx: gas_of_two,
        ..sender_cfg(32)
    };
    let _s = start_sender(&r.run, r.chain.l1.clone(), cfg).await;
    wait_verified(&r.chain.l1, 5).await;
    let recs = records(&r.run, 5).await;
    // The first run is halved to fit; later ones are cheaper (the contract's counters are
    // warm), so they may hold more batches, but never more gas.
    assert_eq!((recs[0].0, recs[0].1), (1, 2), "{recs:?}");
    assert!(distinct_txs(&recs) >= 2, "{recs:?}");
    for b in 1..=5 {
        let used = r
            .run
            .coord
            .verify_record(b)
            .await
            .unwrap()
            .unwrap()
            .gas_used;
        assert!(
            used <= gas_of_two,
            "batch {b}: {used} gas > cap {gas_of_two}"
        );
    }
    r.run.stop().await;
}

/// Two required proof types, one verified on L1 (`exec`) and one by the coordinator only
/// (`audit`, standing in for `stark`): a batch settles only once both are proven.
async fn offchain_proof_types_gate_settlement(chain: Chain, db: Db) {
    let exec = ProofType::new("exec").unwrap();
    let audit = ProofType::new("audit").unwrap();
    let types = vec![
        (exec.clone(), "exec".into()),
        (audit.clone(), "exec".into()),
    ];
    let r = rig_with(chain, db, "settle_offchain", 3, |c| c.proof_types = types).await;
    let not_required = SettlementConfig {
        l1_proof_types: Some(vec![ProofType::new("stark").unwrap()]),
        ..sender_cfg(32)
    };
    assert!(
        proofmill_settlement::start(
            r.run.coord.settlement_port(),
            r.chain.l1.clone(),
            false,
            Some(not_required)
        )
        .await
        .is_err()
    );
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 3).await;
    let cfg = SettlementConfig {
        l1_proof_types: Some(vec![exec]),
        ..sender_cfg(32)
    };
    let s = start_sender(&r.run, r.chain.l1.clone(), cfg.clone()).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        r.chain.l1.last_verified_batch().await.unwrap(),
        0,
        "settled before the off-chain proof type was proven"
    );
    // Paused while the audit proofs come in, so that a send tick between two of them cannot
    // split the settlement this test expects in one transaction.
    s.stop();
    let mut a = RawProver::register(&r.run.url(), register("a", &["audit"], 1)).await;
    prove_next(&mut a, 3).await;
    let _s = start_sender(&r.run, r.chain.l1.clone(), cfg).await;
    wait_verified(&r.chain.l1, 3).await;
    assert_eq!(distinct_txs(&records(&r.run, 3).await), 1);
    r.run.stop().await;
}
