//! L1 settlement end to end: a real coordinator (devnet batch source, raw wire-protocol
//! prover) settling on the embedded revm L1 and on a real anvil, over SQLite and Postgres.
//! One suite, every case run per (L1, store) combination.

mod support;

use proofmill_coordinator::{
    CoordinatorConfig, DevnetSourceConfig, Settlement, SettlementConfig, devnet_genesis_root,
};
use proofmill_devnet::DevnetConfig;
use proofmill_l1::{
    Address, DEV_SEQUENCER_KEY, L1, RevmConfig, RevmL1, RpcConfig, RpcL1, VerifierKind,
    deploy_rollup_with, dev_sequencer,
};
use proofmill_proto::v1::ExecuteTask;
use proofmill_store::Change;
use proofmill_types::{Digest, JobKey, JobState, ProofType, PublicValues};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use support::{Db, Env, RawProver, Running, fast_config, register, start, wait_for};

/// Anvil's second dev account: not the sequencer.
const OTHER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const LONG: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
enum Chain {
    Revm,
    Anvil,
}

/// Runs each case on revm+SQLite, anvil+SQLite and revm+Postgres.
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
);

// ---------------------------------------------------------------------------------------------
// L1s

use proofmill_testkit::TestAnvil as Anvil;

fn spawn_anvil() -> Anvil {
    Anvil::start()
}

/// The rollup deployed for the test devnet's genesis: a sequencer handle and an intruder's.
struct Chainside {
    l1: Arc<dyn L1>,
    intruder: Arc<dyn L1>,
    _anvil: Option<Anvil>,
}

fn devnet_cfg() -> DevnetConfig {
    DevnetConfig {
        seed: 7,
        depth: 8,
        accounts: 16,
        batch_size: 4,
        ..DevnetConfig::default()
    }
}

async fn open_l1(chain: Chain) -> Chainside {
    let genesis = devnet_genesis_root(devnet_cfg()).unwrap();
    match chain {
        Chain::Revm => {
            let revm = RevmL1::open(None, RevmConfig::dev(genesis)).unwrap();
            let other: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
                .parse()
                .unwrap();
            let intruder = Arc::new(revm.with_sender(other));
            Chainside {
                l1: Arc::new(revm),
                intruder,
                _anvil: None,
            }
        }
        Chain::Anvil => {
            let anvil = spawn_anvil();
            let cfg = RpcConfig {
                poll_interval: Duration::from_millis(10),
                ..RpcConfig::default()
            };
            let exec = ProofType::new("exec").unwrap();
            let rollup = deploy_rollup_with(
                cfg.clone(),
                &anvil.url,
                DEV_SEQUENCER_KEY,
                dev_sequencer(),
                genesis,
                &[exec],
                &[VerifierKind::DevExec],
            )
            .await
            .unwrap();
            let l1 = Arc::new(
                RpcL1::new(&anvil.url, DEV_SEQUENCER_KEY, rollup, cfg.clone())
                    .await
                    .unwrap(),
            );
            let intruder = Arc::new(
                RpcL1::new(&anvil.url, OTHER_KEY, rollup, cfg)
                    .await
                    .unwrap(),
            );
            Chainside {
                l1,
                intruder,
                _anvil: Some(anvil),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

struct Rig {
    env: Env,
    run: Running,
    chain: Chainside,
    committer: Settlement,
}

/// Coordinator with the devnet sealing `batches` batches, all of them committed on L1.
async fn rig(chain: Chain, db: Db, label: &str, batches: u64) -> Rig {
    rig_with(chain, db, label, batches, |_| {}).await
}

async fn rig_with(
    chain: Chain,
    db: Db,
    label: &str,
    batches: u64,
    tweak: impl FnOnce(&mut CoordinatorConfig),
) -> Rig {
    let chain = open_l1(chain).await;
    let env = Env::new(db, label);
    let mut config = fast_config();
    tweak(&mut config);
    let run = start(&env, config).await;
    devnet(&run, batches).await;
    let committer = run
        .coord
        .start_settlement(chain.l1.clone(), true, None)
        .await
        .unwrap();
    let l1 = chain.l1.clone();
    wait_for("batches committed on L1", LONG, || {
        let l1 = l1.clone();
        async move { l1.last_committed_batch().await.unwrap() == batches }
    })
    .await;
    Rig {
        env,
        run,
        chain,
        committer,
    }
}

async fn devnet(run: &Running, batches: u64) {
    let cfg = DevnetSourceConfig {
        devnet: devnet_cfg(),
        batch_interval_ms: 10,
        version: "v1".into(),
        max_batches: Some(batches),
    };
    run.coord.start_devnet(cfg).await.unwrap();
    let c = run.coord.clone();
    wait_for("batches sealed", LONG, || {
        let c = c.clone();
        async move { c.status().await.unwrap().last_sealed_batch == Some(batches) }
    })
    .await;
}

fn sender_cfg(max_batches_per_tx: u64) -> SettlementConfig {
    SettlementConfig {
        send_interval_ms: 100,
        max_batches_per_tx,
        max_gas_per_tx: 10_000_000,
        ..SettlementConfig::default()
    }
}

async fn prover(run: &Running, capacity: u32) -> RawProver {
    RawProver::register(&run.url(), register("p", &["exec"], capacity)).await
}

async fn prove(p: &mut RawProver, t: &ExecuteTask) {
    let ack = p
        .submit(&t.task_id, t.fencing_token, RawProver::proof_for(t))
        .await;
    assert!(ack.accepted, "{ack:?}");
}

/// Proves the next `n` tasks the coordinator hands out (capacity 1: in batch order).
async fn prove_next(p: &mut RawProver, n: u64) {
    for _ in 0..n {
        let t = p.task().await;
        prove(p, &t).await;
    }
}

async fn wait_verified(l1: &Arc<dyn L1>, n: u64) {
    let l1 = l1.clone();
    wait_for(&format!("batch {n} verified on L1"), LONG, || {
        let l1 = l1.clone();
        async move { l1.last_verified_batch().await.unwrap() >= n }
    })
    .await;
    assert_eq!(l1.last_verified_batch().await.unwrap(), n);
}

/// The per-batch records of `1..=last`: (first, last, tx) each, checked to be consistent.
async fn records(run: &Running, last: u64) -> Vec<(u64, u64, String)> {
    // Written right after the transaction is mined, in batch order.
    let c = run.coord.clone();
    wait_for("verify records", LONG, || {
        let c = c.clone();
        async move { c.verify_record(last).await.unwrap().is_some() }
    })
    .await;
    let mut out = Vec::new();
    for b in 1..=last {
        let r = run
            .coord
            .verify_record(b)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no verify record of batch {b}"));
        assert!(r.first_batch <= b && b <= r.last_batch, "{r:?}");
        assert!(
            r.tx_hash.starts_with("0x") && r.tx_hash.len() == 66 && r.gas_used > 21_000,
            "{r:?}"
        );
        out.push((r.first_batch, r.last_batch, r.tx_hash));
    }
    out
}

fn distinct_txs(recs: &[(u64, u64, String)]) -> usize {
    recs.iter().map(|r| &r.2).collect::<BTreeSet<_>>().len()
}

fn exec_key(batch: u64) -> JobKey {
    JobKey::new(batch, ProofType::new("exec").unwrap())
}

// ---------------------------------------------------------------------------------------------
// cases

async fn several_batches_in_one_transaction(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_many", 5).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 5).await;
    let _s = r
        .run
        .coord
        .start_settlement(r.chain.l1.clone(), false, Some(sender_cfg(32)))
        .await
        .unwrap();
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
    let _s = r
        .run
        .coord
        .start_settlement(r.chain.l1.clone(), false, Some(sender_cfg(32)))
        .await
        .unwrap();
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
    let mut bad: PublicValues = store.batch(3).await.unwrap().unwrap().public_values;
    bad.new_state_root = Digest::sha256(b"not the state root");
    rec.inline = Some(bad.encode().to_vec());
    rec.blob_key = String::new();
    store.apply(&[Change::Proof(rec)]).await.unwrap();

    let _s = r
        .run
        .coord
        .start_settlement(r.chain.l1.clone(), false, Some(sender_cfg(32)))
        .await
        .unwrap();
    // The prefix settles, the bad proof is deleted and its job requeued with the reason.
    let t = p.task().await;
    assert_eq!(t.batch, 3);
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
    let _s = r
        .run
        .coord
        .start_settlement(r.chain.l1.clone(), false, Some(sender_cfg(2)))
        .await
        .unwrap();
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
    let sender = r
        .run
        .coord
        .start_settlement(r.chain.l1.clone(), false, Some(sender_cfg(32)))
        .await
        .unwrap();
    wait_verified(&r.chain.l1, 3).await;
    // Restart the coordinator (the L1 stays up, as a real chain would).
    sender.stop();
    drop(r.committer);
    drop(p);
    r.run.stop().await;
    let run = start(&r.env, fast_config()).await;
    devnet(&run, 5).await;
    let _s = run
        .coord
        .start_settlement(r.chain.l1.clone(), true, Some(sender_cfg(32)))
        .await
        .unwrap();
    let mut p = prover(&run, 1).await;
    prove_next(&mut p, 2).await;
    wait_verified(&r.chain.l1, 5).await;
    assert_eq!(r.chain.l1.last_committed_batch().await.unwrap(), 5);
    let recs = records(&run, 5).await;
    assert!(recs[..3].iter().all(|x| (x.0, x.1) == (1, 3)), "{recs:?}");
    assert!(recs[3..].iter().all(|x| (x.0, x.1) == (4, 5)), "{recs:?}");
    assert_eq!(distinct_txs(&recs), 2, "{recs:?}");
    run.stop().await;
}

async fn non_proof_revert_deletes_nothing(chain: Chain, db: Db) {
    let r = rig(chain, db, "settle_intruder", 3).await;
    let mut p = prover(&r.run, 1).await;
    prove_next(&mut p, 3).await;
    // The sender signs with a key that is not the sequencer's: NotSequencer, not a proof failure.
    let bad = r
        .run
        .coord
        .start_settlement(r.chain.intruder.clone(), false, Some(sender_cfg(32)))
        .await
        .unwrap();
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
    let _s = r
        .run
        .coord
        .start_settlement(r.chain.l1.clone(), false, Some(sender_cfg(32)))
        .await
        .unwrap();
    wait_verified(&r.chain.l1, 3).await;
    r.run.stop().await;
}
