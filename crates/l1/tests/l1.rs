//! One suite, run against the embedded revm L1 and against anvil (RPC), plus revm durability,
//! RPC behaviour (fee bumps, timeouts, redaction) and the committed-artifacts check.
//!
//! Anvil and solc come from `tools/node` (`npm ci --prefix tools/node`); when they are missing
//! the tests fail (they do not skip).

mod common;

use common::{Anvil, deploy_rpc, expect_revert, fast_cfg, ok};
use proofmill_l1::{
    Address, DEV_SEQUENCER_KEY, L1, L1Error, Revert, RevmConfig, RevmL1, RpcConfig, RpcL1,
    TxOutcome, TxStatus, VerifiedRange, VerifierKind, dev_sequencer, exec_proof, settle_gas,
    synthetic_digest,
};
use proofmill_types::{Digest, ProofType};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Anvil's second dev account (index 1).
const OTHER_KEY: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn genesis() -> Digest {
    synthetic_digest(b"genesis", 0)
}
fn root(n: u64) -> Digest {
    synthetic_digest(b"root", n)
}
fn commitment(n: u64) -> Digest {
    synthetic_digest(b"commitment", n)
}
fn prev_root(n: u64) -> Digest {
    if n == 1 { genesis() } else { root(n - 1) }
}
/// Valid `exec` proofs for batches `first..=last`, in the single proof type's slot.
fn proofs(first: u64, last: u64) -> Vec<Vec<Vec<u8>>> {
    vec![
        (first..=last)
            .map(|n| exec_proof(prev_root(n), root(n), commitment(n)))
            .collect(),
    ]
}

// ---------------------------------------------------------------------------------------------
// harnesses

struct Harness {
    name: &'static str,
    /// The sequencer.
    l1: Box<dyn L1>,
    /// Another account, with pre-flight checks (rejected before sending).
    intruder: Box<dyn L1>,
    /// Another account that sends without pre-flight: its reverts are mined.
    intruder_mined: Box<dyn L1>,
    _anvil: Option<Anvil>,
}

fn revm_harness() -> Harness {
    let l1 = RevmL1::open(None, RevmConfig::dev(genesis())).unwrap();
    let other: Address = OTHER_KEY
        .parse::<alloy::signers::local::PrivateKeySigner>()
        .unwrap()
        .address();
    Harness {
        name: "revm",
        intruder: Box::new(l1.with_sender(other)),
        intruder_mined: Box::new(l1.with_sender(other).with_preflight(false)),
        l1: Box::new(l1),
        _anvil: None,
    }
}

async fn anvil_harness() -> Harness {
    let anvil = Anvil::start();
    let exec = vec![ProofType::new("exec").unwrap()];
    let l1 = deploy_rpc(&anvil.url, genesis(), &exec, &[VerifierKind::DevExec]).await;
    let rollup = l1.rollup_address();
    let intruder = RpcL1::new(&anvil.url, OTHER_KEY, rollup, fast_cfg())
        .await
        .unwrap();
    let mined_cfg = RpcConfig {
        fixed_gas_limit: Some(500_000),
        ..fast_cfg()
    };
    let intruder_mined = RpcL1::new(&anvil.url, OTHER_KEY, rollup, mined_cfg)
        .await
        .unwrap();
    Harness {
        name: "anvil",
        l1: Box::new(l1),
        intruder: Box::new(intruder),
        intruder_mined: Box::new(intruder_mined),
        _anvil: Some(anvil),
    }
}

// ---------------------------------------------------------------------------------------------
// the suite

async fn suite(h: &Harness) {
    let l1 = &*h.l1;
    let name = h.name;
    // Fresh deployment: same deterministic address on both L1s (CREATE(sequencer, 1)).
    assert_eq!(l1.rollup_address(), dev_sequencer().create(1), "{name}");
    assert_eq!(l1.last_committed_batch().await.unwrap(), 0);
    assert_eq!(l1.last_verified_batch().await.unwrap(), 0);
    assert_eq!(l1.state_root(0).await.unwrap(), genesis());
    assert!(matches!(
        l1.state_root(1).await,
        Err(L1Error::Reverted(Revert::BatchNotCommitted(1)))
    ));

    // Commit: numbers strictly consecutive, sequencer only.
    assert_eq!(
        expect_revert(l1.commit_batch(2, root(2), commitment(2)).await),
        Revert::WrongBatchNumber {
            expected: 1,
            got: 2
        },
        "{name}"
    );
    let other = h.intruder.sender();
    assert_ne!(other, l1.sender());
    assert!(matches!(
        h.intruder.commit_batch(1, root(1), commitment(1)).await,
        Err(L1Error::Reverted(Revert::NotSequencer { sender })) if sender == other
    ));
    // Mined revert: the receipt status is checked and the revert decoded from the chain.
    let mined = h
        .intruder_mined
        .commit_batch(1, root(1), commitment(1))
        .await
        .unwrap();
    assert_eq!(
        mined.status,
        TxStatus::Reverted(Revert::NotSequencer { sender: other }),
        "{name}"
    );
    assert!(mined.gas_used > 21_000 && mined.block > 0);
    assert_eq!(l1.last_committed_batch().await.unwrap(), 0);

    let mut last_block = 0;
    for n in 1..=6 {
        let out = ok(l1.commit_batch(n, root(n), commitment(n)).await);
        assert!(out.block > last_block);
        last_block = out.block;
    }
    assert_eq!(l1.last_committed_batch().await.unwrap(), 6);
    for n in 1..=6 {
        assert_eq!(l1.state_root(n).await.unwrap(), root(n));
        assert_eq!(l1.batch_commitment(n).await.unwrap(), commitment(n));
    }

    // Verify: batch 7 is not committed.
    assert_eq!(
        expect_revert(l1.verify_batches(1, &proofs(1, 7)).await),
        Revert::BatchNotCommitted(7),
        "{name}"
    );
    // Only the sequencer settles.
    assert!(matches!(
        expect_revert(h.intruder.verify_batches(1, &proofs(1, 1)).await),
        Revert::NotSequencer { .. }
    ));
    // One batch.
    let first_tx = ok(l1.verify_batches(1, &proofs(1, 1)).await);
    assert_eq!(l1.last_verified_batch().await.unwrap(), 1);
    // Ranges start right after the last verified batch.
    assert_eq!(
        expect_revert(l1.verify_batches(3, &proofs(3, 4)).await),
        Revert::WrongBatchNumber {
            expected: 2,
            got: 3
        }
    );
    assert_eq!(
        expect_revert(l1.verify_batches(1, &proofs(1, 2)).await),
        Revert::WrongBatchNumber {
            expected: 2,
            got: 1
        }
    );

    // An invalid proof in the middle names exactly that batch; nothing changes.
    let mut bad = proofs(2, 5);
    bad[0][2][70] ^= 1; // batch 4: commitment mismatch
    let expected = Revert::InvalidProof {
        batch: 4,
        proof_type: 0,
    };
    assert_eq!(
        l1.estimate_verify_gas(2, &bad).await.unwrap(),
        Err(expected.clone()),
        "{name}"
    );
    assert_eq!(
        expect_revert(l1.verify_batches(2, &bad).await),
        expected,
        "{name}"
    );
    let mut short = proofs(2, 5);
    short[0][1].pop(); // batch 3: 95 bytes
    assert_eq!(
        expect_revert(l1.verify_batches(2, &short).await),
        Revert::InvalidProof {
            batch: 3,
            proof_type: 0
        }
    );
    let mut swapped = proofs(2, 5);
    swapped[0].swap(2, 3); // batches 4 and 5 swapped: 4 is the first invalid one
    assert_eq!(
        expect_revert(l1.verify_batches(2, &swapped).await),
        Revert::InvalidProof {
            batch: 4,
            proof_type: 0
        }
    );
    assert_eq!(l1.last_verified_batch().await.unwrap(), 1);

    // Malformed requests: another custom error, reported with its selector.
    for bad in [
        vec![vec![]],
        vec![],
        proofs(2, 3).into_iter().chain(proofs(2, 3)).collect(),
    ] {
        match expect_revert(l1.verify_batches(2, &bad).await) {
            Revert::Other {
                selector: Some(_),
                data,
            } => assert!(data.len() > 4),
            other => panic!("{name}: {other:?}"),
        }
    }

    // Several batches in one transaction.
    let est = l1
        .estimate_verify_gas(2, &proofs(2, 6))
        .await
        .unwrap()
        .unwrap();
    let out = ok(l1.verify_batches(2, &proofs(2, 6)).await);
    assert!(
        est >= out.gas_used,
        "{name}: estimate {est} < used {}",
        out.gas_used
    );
    assert_eq!(l1.last_verified_batch().await.unwrap(), 6);
    assert_eq!(l1.last_committed_batch().await.unwrap(), 6);
    assert_eq!(
        expect_revert(l1.verify_batches(7, &proofs(7, 7)).await),
        Revert::BatchNotCommitted(7)
    );

    // The chain's record of what settled: every successful range once, with its receipt.
    let range = |first, last, o: &TxOutcome| VerifiedRange {
        first,
        last,
        tx_hash: o.tx_hash,
        gas_used: o.gas_used,
    };
    let all = vec![range(1, 1, &first_tx), range(2, 6, &out)];
    assert_eq!(l1.verified_ranges(0).await.unwrap(), all, "{name}");
    assert_eq!(l1.verified_ranges(2).await.unwrap(), all[1..], "{name}");
    assert!(l1.verified_ranges(7).await.unwrap().is_empty(), "{name}");
}

/// Verify gas of k = 1, 4, 16 batches in one transaction each, on a fresh deployment.
async fn verify_gas(l1: &dyn L1) -> Vec<(u64, u64)> {
    for n in 1..=21 {
        ok(l1.commit_batch(n, root(n), commitment(n)).await);
    }
    let mut out = Vec::new();
    let mut first = 1;
    for k in [1, 4, 16] {
        let tx = ok(l1
            .verify_batches(first, &proofs(first, first + k - 1))
            .await);
        out.push((k, tx.gas_used));
        first += k;
    }
    out
}

#[tokio::test]
async fn suite_on_revm() {
    suite(&revm_harness()).await;
}

#[tokio::test]
async fn suite_on_anvil() {
    suite(&anvil_harness().await).await;
}

#[tokio::test]
async fn verify_gas_is_identical_on_revm_and_anvil() {
    let revm = revm_harness();
    let anvil = anvil_harness().await;
    let g_revm = verify_gas(&*revm.l1).await;
    let g_anvil = verify_gas(&*anvil.l1).await;
    for ((k, r), (_, a)) in g_revm.iter().zip(&g_anvil) {
        println!(
            "verifyBatches k={k:>2}: revm {r} gas, anvil {a} gas, {} gas/batch",
            r / k
        );
    }
    assert_eq!(g_revm, g_anvil);
    // Settling more batches per transaction is cheaper per batch.
    assert!(g_revm[2].1 / 16 < g_revm[0].1);
}

#[tokio::test]
async fn settle_gas_helper() {
    let l1 = RevmL1::open(None, RevmConfig::dev(genesis())).unwrap();
    let one = settle_gas(&l1, 1).await.unwrap();
    let many = settle_gas(&l1, 8).await.unwrap();
    assert!(many < one, "{many} >= {one}");
    assert_eq!(l1.last_verified_batch().await.unwrap(), 9);
    assert!(settle_gas(&l1, 0).await.is_err());
}

// ---------------------------------------------------------------------------------------------
// revm durability

#[tokio::test]
async fn revm_state_survives_restart_and_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l1.log");
    let cfg = RevmConfig::dev(genesis());
    let (rollup, block) = {
        let l1 = RevmL1::open(Some(&path), cfg.clone()).unwrap();
        for n in 1..=3 {
            ok(l1.commit_batch(n, root(n), commitment(n)).await);
        }
        ok(l1.verify_batches(1, &proofs(1, 2)).await);
        // A mined revert is part of history too (block and nonce move).
        let other = Address::repeat_byte(0x42);
        let r = l1
            .with_sender(other)
            .with_preflight(false)
            .commit_batch(4, root(4), commitment(4))
            .await;
        assert_eq!(expect_revert(r), Revert::NotSequencer { sender: other });
        (l1.rollup_address(), l1.block_number())
    };
    let check = |l1: RevmL1, block: u64| async move {
        assert_eq!(l1.rollup_address(), rollup);
        assert_eq!(l1.block_number(), block);
        assert_eq!(l1.last_committed_batch().await.unwrap(), 3);
        assert_eq!(l1.last_verified_batch().await.unwrap(), 2);
        for n in 1..=3 {
            assert_eq!(l1.state_root(n).await.unwrap(), root(n));
        }
        l1
    };
    let l1 = check(RevmL1::open(Some(&path), cfg.clone()).unwrap(), block).await;
    drop(l1);

    // A crash in the middle of an append: the torn record is ignored.
    let len_before = std::fs::metadata(&path).unwrap().len();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
    }
    let l1 = check(RevmL1::open(Some(&path), cfg.clone()).unwrap(), block).await;
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        len_before,
        "torn tail truncated"
    );
    // The chain goes on (nonces rebuilt), and that survives a restart as well.
    ok(l1.commit_batch(4, root(4), commitment(4)).await);
    ok(l1.verify_batches(3, &proofs(3, 4)).await);
    drop(l1);
    let l1 = RevmL1::open(Some(&path), cfg.clone()).unwrap();
    assert_eq!(l1.last_verified_batch().await.unwrap(), 4);
    assert_eq!(l1.block_number(), block + 2);

    // A crash during the very first deployment: the next open finishes it.
    let fresh = dir.path().join("fresh.log");
    drop(RevmL1::open(Some(&fresh), cfg.clone()).unwrap());
    let bytes = std::fs::read(&fresh).unwrap();
    let first_record = 8 + 4 + u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize + 8;
    std::fs::write(&fresh, &bytes[..first_record + 5]).unwrap(); // verifier deployed, rollup torn
    let l1 = RevmL1::open(Some(&fresh), cfg.clone()).unwrap();
    assert_eq!(l1.rollup_address(), rollup);
    assert_eq!(l1.state_root(0).await.unwrap(), genesis());
    assert_eq!(std::fs::read(&fresh).unwrap(), bytes);
    drop(l1);

    // A log made for another deployment is refused.
    let other = RevmConfig::dev(synthetic_digest(b"other genesis", 0));
    assert!(matches!(
        RevmL1::open(Some(&path), other),
        Err(L1Error::Config(_))
    ));
}

#[tokio::test]
async fn revm_is_deterministic() {
    let a = RevmL1::open(None, RevmConfig::dev(genesis())).unwrap();
    let b = RevmL1::open(None, RevmConfig::dev(genesis())).unwrap();
    for n in 1..=2 {
        let x = ok(a.commit_batch(n, root(n), commitment(n)).await);
        let y = ok(b.commit_batch(n, root(n), commitment(n)).await);
        assert_eq!(x, y);
    }
    assert_eq!(a.rollup_address(), dev_sequencer().create(1));
    assert_eq!(a.verifier_addresses(), &[dev_sequencer().create(0)]);
}

// ---------------------------------------------------------------------------------------------
// RPC behaviour

#[tokio::test]
async fn rpc_fee_bump_replaces_a_stuck_transaction() {
    use alloy::providers::{Provider, RootProvider};
    let h = anvil_harness().await;
    let url = h._anvil.as_ref().unwrap().url.clone();
    let raw = RootProvider::<alloy::network::Ethereum>::new_http(url.parse().unwrap());
    let fees = raw.estimate_eip1559_fees().await.unwrap();
    let rollup = h.l1.rollup_address();
    let cfg = RpcConfig {
        bump_after: Duration::from_millis(300),
        max_fee_bumps: 4,
        ..fast_cfg()
    };
    let l1 = RpcL1::new(&url, DEV_SEQUENCER_KEY, rollup, cfg)
        .await
        .unwrap();

    // Stop mining: the first send stays pending and gets replaced with higher fees.
    let _: serde_json::Value = raw
        .raw_request("evm_setAutomine".into(), (false,))
        .await
        .unwrap();
    let task = tokio::spawn(async move { l1.commit_batch(1, root(1), commitment(1)).await });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let _: serde_json::Value = raw.raw_request("evm_mine".into(), ()).await.unwrap();
    let out = ok(task.await.unwrap());
    let tx: serde_json::Value = raw
        .raw_request(
            "eth_getTransactionByHash".into(),
            (alloy::primitives::B256::from(out.tx_hash),),
        )
        .await
        .unwrap();
    let max_fee = u128::from_str_radix(
        tx["maxFeePerGas"]
            .as_str()
            .unwrap()
            .trim_start_matches("0x"),
        16,
    )
    .unwrap();
    let initial = fees
        .max_fee_per_gas
        .max(RpcConfig::default().min_priority_fee);
    assert!(
        max_fee >= initial + initial / 8,
        "mined tx max fee {max_fee} not bumped from {initial}"
    );
    assert_eq!(h.l1.last_committed_batch().await.unwrap(), 1);
}

#[tokio::test]
async fn rpc_errors_are_classified_and_timed_out() {
    // A socket that accepts connections but never answers: the call timeout fires.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let cfg = RpcConfig {
        call_timeout: Duration::from_millis(300),
        ..RpcConfig::default()
    };
    let err = RpcL1::new(&url, DEV_SEQUENCER_KEY, Address::ZERO, cfg.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, L1Error::Timeout { .. }) && err.is_transient(),
        "{err:?}"
    );
    drop(silent);
    // Nothing listening: connection refused is transient.
    let err = RpcL1::new(&url, DEV_SEQUENCER_KEY, Address::ZERO, cfg.clone())
        .await
        .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    // Bad configuration is permanent.
    let err = RpcL1::new(&url, "0x1234", Address::ZERO, cfg)
        .await
        .unwrap_err();
    assert!(matches!(err, L1Error::Config(_)) && !err.is_transient());
    assert!(!err.to_string().contains("1234"));
}

#[tokio::test]
async fn rpc_debug_redacts_key_and_url_secrets() {
    let anvil = Anvil::start();
    let url =
        anvil.url.replace("http://", "http://user:secret-password@") + "/?apikey=secret-api-key";
    let l1 = RpcL1::new(&url, DEV_SEQUENCER_KEY, Address::ZERO, RpcConfig::default()).await;
    // anvil ignores credentials and query, so the client works; its Debug shows no secret.
    let dbg = format!("{:?}", l1.unwrap());
    assert!(!dbg.contains(&DEV_SEQUENCER_KEY[2..]), "{dbg}");
    assert!(!dbg.contains("secret"), "{dbg}");
    assert!(dbg.contains("redacted"), "{dbg}");
}

// ---------------------------------------------------------------------------------------------
// artifacts

#[test]
fn committed_contract_artifacts_match_sources() {
    let root = workspace_root();
    assert!(
        root.join("tools/node/node_modules/solc/package.json")
            .is_file(),
        "solc is not installed: run `npm ci --prefix tools/node`"
    );
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(root.join("scripts/compile-contracts"))
        .arg(out.path())
        .status()
        .expect("running scripts/compile-contracts (needs bash and node)");
    assert!(status.success(), "scripts/compile-contracts failed");
    let list = |dir: &Path| {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    let committed = root.join("contracts/out");
    assert_eq!(
        list(&committed),
        list(out.path()),
        "contracts/out has stale or missing artifacts"
    );
    for f in list(out.path()) {
        assert!(
            std::fs::read(committed.join(&f)).unwrap()
                == std::fs::read(out.path().join(&f)).unwrap(),
            "contracts/out/{f} does not match contracts/*.sol: run scripts/compile-contracts"
        );
    }
}
