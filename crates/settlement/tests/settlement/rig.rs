//! The settlement suite's rig: L1s (embedded revm, anvil) with the rollup deployed for the test
//! devnet, a coordinator whose devnet batches are all committed, and a raw prover.

use super::support::{Db, Env, RawProver, Running, fast_config, register, start, wait_for};
use proofmill_coordinator::CoordinatorConfig;
use proofmill_devnet::DevnetConfig;
use proofmill_devnet::genesis_root as devnet_genesis_root;
use proofmill_devnet_node::DevnetSourceConfig;
use proofmill_l1::{
    Address, DEV_SEQUENCER_KEY, L1, RevmConfig, RevmL1, RpcConfig, RpcL1, VerifierKind,
    deploy_rollup_with, dev_sequencer,
};
use proofmill_proto::v1::ExecuteTask;
use proofmill_settlement::{Settlement, SettlementConfig};
use proofmill_types::{JobKey, ProofType};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Anvil's second dev account: not the sequencer.
pub const OTHER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
pub const LONG: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
pub enum Chain {
    Revm,
    Anvil,
}

// ---------------------------------------------------------------------------------------------
// L1s

use proofmill_testkit::TestAnvil as Anvil;

pub fn spawn_anvil() -> Anvil {
    Anvil::start()
}

/// The rollup deployed for the test devnet's genesis: a sequencer handle and an intruder's,
/// whose transactions are rejected before sending (`intruder`) or mined and reverted
/// (`intruder_mined`: no pre-flight).
pub struct Chainside {
    pub l1: Arc<dyn L1>,
    pub intruder: Arc<dyn L1>,
    pub intruder_mined: Arc<dyn L1>,
    pub _anvil: Option<Anvil>,
}

pub fn devnet_cfg() -> DevnetConfig {
    DevnetConfig {
        seed: 7,
        depth: 8,
        accounts: 16,
        batch_size: 4,
        ..DevnetConfig::default()
    }
}

pub async fn open_l1(chain: Chain) -> Chainside {
    let genesis = devnet_genesis_root(devnet_cfg()).unwrap();
    match chain {
        Chain::Revm => {
            let revm = RevmL1::open(None, RevmConfig::dev(genesis)).unwrap();
            let other: Address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
                .parse()
                .unwrap();
            let intruder = Arc::new(revm.with_sender(other));
            let intruder_mined = Arc::new(revm.with_sender(other).with_preflight(false));
            Chainside {
                l1: Arc::new(revm),
                intruder,
                intruder_mined,
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
                RpcL1::new(&anvil.url, OTHER_KEY, rollup, cfg.clone())
                    .await
                    .unwrap(),
            );
            let no_preflight = RpcConfig {
                fixed_gas_limit: Some(2_000_000),
                ..cfg
            };
            let intruder_mined = Arc::new(
                RpcL1::new(&anvil.url, OTHER_KEY, rollup, no_preflight)
                    .await
                    .unwrap(),
            );
            Chainside {
                l1,
                intruder,
                intruder_mined,
                _anvil: Some(anvil),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// helpers

pub struct Rig {
    pub env: Env,
    pub run: Running,
    pub chain: Chainside,
    pub committer: Settlement,
}

/// Coordinator with the devnet sealing `batches` batches, all of them committed on L1.
pub async fn rig(chain: Chain, db: Db, label: &str, batches: u64) -> Rig {
    rig_with(chain, db, label, batches, |_| {}).await
}

pub async fn rig_with(
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
    let committer =
        proofmill_settlement::start(run.coord.settlement_port(), chain.l1.clone(), true, None)
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

pub async fn devnet(run: &Running, batches: u64) {
    let cfg = DevnetSourceConfig {
        devnet: devnet_cfg(),
        batch_interval_ms: 10,
        version: "v1".into(),
        max_batches: Some(batches),
        snapshot_every: proofmill_devnet_node::DEFAULT_SNAPSHOT_EVERY,
    };
    proofmill_devnet_node::DevnetSource::start(run.coord.intake(), cfg)
        .await
        .unwrap();
    let c = run.coord.clone();
    wait_for("batches sealed", LONG, || {
        let c = c.clone();
        async move { c.status().await.unwrap().last_sealed_batch == Some(batches) }
    })
    .await;
}

pub fn sender_cfg(max_batches_per_tx: u64) -> SettlementConfig {
    SettlementConfig {
        send_interval_ms: 100,
        max_batches_per_tx,
        max_gas_per_tx: 10_000_000,
        ..SettlementConfig::default()
    }
}

/// Starts only the proof sender, on `l1`.
pub async fn start_sender(run: &Running, l1: Arc<dyn L1>, cfg: SettlementConfig) -> Settlement {
    proofmill_settlement::start(run.coord.settlement_port(), l1, false, Some(cfg))
        .await
        .unwrap()
}

pub async fn prover(run: &Running, capacity: u32) -> RawProver {
    RawProver::register(&run.url(), register("p", &["exec"], capacity)).await
}

pub async fn prove(p: &mut RawProver, t: &ExecuteTask) {
    let ack = p
        .submit(&t.task_id, t.fencing_token, RawProver::proof_for(t))
        .await;
    assert!(ack.accepted, "{ack:?}");
}

/// Proves the next `n` tasks the coordinator hands out (capacity 1: in batch order).
pub async fn prove_next(p: &mut RawProver, n: u64) {
    for _ in 0..n {
        let t = p.task().await;
        prove(p, &t).await;
    }
}

pub async fn wait_verified(l1: &Arc<dyn L1>, n: u64) {
    let l1 = l1.clone();
    wait_for(&format!("batch {n} verified on L1"), LONG, || {
        let l1 = l1.clone();
        async move { l1.last_verified_batch().await.unwrap() >= n }
    })
    .await;
    assert_eq!(l1.last_verified_batch().await.unwrap(), n);
}

/// The per-batch records of `1..=last`: (first, last, tx) each, checked to be consistent.
pub async fn records(run: &Running, last: u64) -> Vec<(u64, u64, String)> {
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

pub fn distinct_txs(recs: &[(u64, u64, String)]) -> usize {
    recs.iter().map(|r| &r.2).collect::<BTreeSet<_>>().len()
}

pub fn exec_key(batch: u64) -> JobKey {
    JobKey::new(
        proofmill_types::DEFAULT_CHAIN,
        batch,
        ProofType::new("exec").unwrap(),
    )
}
