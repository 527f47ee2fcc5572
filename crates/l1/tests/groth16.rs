//! `Groth16BatchVerifier` behind the rollup, on the embedded revm L1 and on anvil, with real
//! Groth16 proofs of real consecutive devnet batches: valid ranges settle in one multi-pairing,
//! forged public inputs and tampered proofs are attributed to exactly their batch, and the
//! native verifier (`Groth16Backend::verify`) agrees with the contract on every case.
//!
//! The circuit shape is small (2 transfers, depth 4): the verifier does not depend on it (3
//! public inputs always). Keys come from the deterministic DEV-ONLY setup, in memory.

mod common;

use alloy::primitives::U256;
use ark_bn254::{Fq, Fq2, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{BigInteger, PrimeField};
use common::{Chain, expect_revert, ok};
use proofmill_backend::{Backend, ProveRequest};
use proofmill_devnet::StateTransition;
use proofmill_devnet::{Devnet, DevnetConfig, fr_to_digest};
use proofmill_groth16::{Groth16Backend, PROOF_LEN, Shape, dev_setup, vk_words};
use proofmill_l1::{
    GROTH16_VK_WORDS, L1, L1Error, Revert, RevmConfig, RevmL1, VerifierKind, settle_proofs_gas,
};
use proofmill_types::{Digest, ProofType};
use std::sync::LazyLock;
use std::time::Instant;

/// A batch as committed on L1 (public values) with its proof.
type Batch = (StateTransition, Vec<u8>);

const DEPTH: u8 = 4;
const BATCH_SIZE: usize = 2;
/// Batches every suite uses: k = 1, 1, 4 and 16 valid, then 4 for the tampering cases.
const FIXTURE_BATCHES: usize = 26;

fn devnet() -> Devnet {
    Devnet::new(DevnetConfig {
        seed: 11,
        depth: DEPTH,
        accounts: 6,
        initial_balance: 1_000,
        batch_size: BATCH_SIZE as u32,
    })
    .unwrap()
}

static BACKEND: LazyLock<Groth16Backend> = LazyLock::new(|| {
    let shape = Shape::new(BATCH_SIZE, DEPTH).unwrap();
    Groth16Backend::with_keys(dev_setup(shape).unwrap())
});

/// The devnet's genesis root and its first `count` batches, each proven.
fn prove_chain(count: usize) -> (Digest, Vec<Batch>) {
    let mut net = devnet();
    let genesis = fr_to_digest(net.state_root());
    let t = Instant::now();
    let batches = (0..count)
        .map(|_| {
            let b = net.produce_batch();
            let req = ProveRequest {
                batch: b.number,
                input: &b.input,
                expected: &b.transition.to_public_values(),
            };
            (b.transition, BACKEND.prove(&req).unwrap())
        })
        .collect();
    println!("proved {count} batches in {:?}", t.elapsed());
    (genesis, batches)
}

/// Proven once per test binary, shared by all tests.
static FIXTURE: LazyLock<(Digest, Vec<Batch>)> = LazyLock::new(|| prove_chain(FIXTURE_BATCHES));

fn genesis() -> Digest {
    FIXTURE.0
}

/// Batch `n` (1-based) of the fixture.
fn batch(n: u64) -> &'static Batch {
    &FIXTURE.1[n as usize - 1]
}

/// Batches `first..=last` of the fixture.
fn batches(first: u64, last: u64) -> Vec<Batch> {
    (first..=last).map(|n| batch(n).clone()).collect()
}

fn groth16_kind() -> VerifierKind {
    VerifierKind::Groth16(vk_words(&BACKEND.keys().unwrap().vk))
}

async fn deploy(chain: &Chain) -> Box<dyn L1> {
    let types = [ProofType::new("groth16").unwrap()];
    chain.deploy(genesis(), &types, &[groth16_kind()]).await
}

fn proofs_of(batches: &[Batch]) -> Vec<Vec<Vec<u8>>> {
    vec![batches.iter().map(|(_, p)| p.clone()).collect()]
}

/// Commits `batches` as batches `first..`, with their public values as given.
async fn commit(l1: &dyn L1, first: u64, batches: &[Batch]) {
    for (n, (pv, _)) in (first..).zip(batches) {
        ok(l1
            .commit_batch(n, pv.new_state_root, pv.batch_commitment)
            .await);
    }
}

/// Index of the first proof the native verifier rejects, if any.
fn native_first_invalid(batches: &[Batch]) -> Option<usize> {
    batches
        .iter()
        .position(|(pv, proof)| BACKEND.verify(&pv.to_public_values(), proof).is_err())
}

/// Index of the first proof the rollup rejects when settling from `first` (pre-flight only).
async fn chain_first_invalid(l1: &dyn L1, first: u64, batches: &[Batch]) -> Option<usize> {
    match l1
        .estimate_verify_gas(first, &proofs_of(batches))
        .await
        .unwrap()
    {
        Ok(_) => None,
        Err(Revert::InvalidProof {
            batch,
            proof_type: 0,
        }) => Some((batch - first) as usize),
        Err(other) => panic!("unexpected revert {other}"),
    }
}

/// Both verifiers find exactly `expected` as the first invalid proof (`None`: all valid).
async fn assert_verdict(
    l1: &dyn L1,
    first: u64,
    batches: &[Batch],
    expected: Option<usize>,
    what: &str,
) {
    assert_eq!(native_first_invalid(batches), expected, "{what}: native");
    assert_eq!(
        chain_first_invalid(l1, first, batches).await,
        expected,
        "{what}: on-chain"
    );
}

/// Settles the fixture's batches 1..=22 as k = 1, 1, 4 and 16 per transaction on a fresh
/// rollup; returns (k, verifyBatches gas). The first settlement also pays for setting
/// `lastVerifiedBatch` from zero (about 17k gas more), so the second k = 1 is the fair one.
async fn settle_valid(l1: &dyn L1) -> Vec<(u64, u64)> {
    let mut gas = Vec::new();
    let mut first = 1;
    for k in [1, 1, 4, 16] {
        let range = batches(first, first + k - 1);
        commit(l1, first, &range).await;
        assert_verdict(l1, first, &range, None, &format!("k={k}")).await;
        let out = ok(l1.verify_batches(first, &proofs_of(&range)).await);
        gas.push((k, out.gas_used));
        first += k;
    }
    assert_eq!(l1.last_verified_batch().await.unwrap(), 22);
    gas
}

// ---------------------------------------------------------------------------------------------
// tampering

fn q() -> U256 {
    U256::from_limbs(Fq::MODULUS.0)
}

fn set_word(p: &mut [u8], w: usize, v: U256) {
    p[32 * w..32 * w + 32].copy_from_slice(&v.to_be_bytes::<32>());
}

/// Replaces word `w` by `f(word)`.
fn map_word(p: &mut [u8], w: usize, f: impl Fn(U256) -> U256) {
    let v = U256::from_be_slice(&p[32 * w..32 * w + 32]);
    set_word(p, w, f(v));
}

/// A point on the G2 twist outside the prime-order subgroup, as EIP-197 words.
fn g2_off_subgroup() -> [[u8; 32]; 4] {
    for x in 1u64.. {
        let x = Fq2::new(Fq::from(x), Fq::from(1u64));
        if let Some(p) = G2Affine::get_point_from_x_unchecked(x, true)
            && p.is_on_curve()
            && !p.is_in_correct_subgroup_assuming_on_curve()
        {
            let (x, y) = p.xy().unwrap();
            let be = |f: Fq| <[u8; 32]>::try_from(f.into_bigint().to_bytes_be()).unwrap();
            return [be(x.c1), be(x.c0), be(y.c1), be(y.c0)];
        }
    }
    unreachable!()
}

/// A way to break a valid 256-byte proof.
type Tamper = Box<dyn Fn(&mut Vec<u8>)>;

/// Ways to break a valid 256-byte proof: each yields a proof both verifiers must reject.
fn tampers() -> Vec<(&'static str, Tamper)> {
    vec![
        ("A.x low byte flipped", Box::new(|p| p[31] ^= 1)),
        ("B.y.c0 low byte flipped", Box::new(|p| p[191] ^= 1)),
        ("C.y high byte flipped", Box::new(|p| p[224] ^= 0x10)),
        (
            "A not on the curve",
            Box::new(|p| {
                set_word(p, 0, U256::from(1));
                set_word(p, 1, U256::from(3));
            }),
        ),
        (
            "C = G1 generator (on the curve, wrong)",
            Box::new(|p| {
                set_word(p, 6, U256::from(1));
                set_word(p, 7, U256::from(2));
            }),
        ),
        (
            "A negated (on the curve, wrong)",
            Box::new(|p| map_word(p, 1, |y| q() - y)),
        ),
        (
            "A.y + Q (non-canonical)",
            Box::new(|p| map_word(p, 1, |y| y + q())),
        ),
        (
            "C.x + Q (non-canonical)",
            Box::new(|p| map_word(p, 6, |x| x + q())),
        ),
        (
            "B on the twist, outside the subgroup",
            Box::new(|p| p[64..192].copy_from_slice(&g2_off_subgroup().concat())),
        ),
        ("A at infinity", Box::new(|p| p[..64].fill(0))),
        ("one byte short", Box::new(|p| p.truncate(p.len() - 1))),
        ("one byte long", Box::new(|p| p.push(0))),
        ("empty", Box::new(|p| p.clear())),
    ]
}

/// Batches 23..=26 (committed, valid) with every kind of broken proof at every position, a
/// proof of another batch, and two broken proofs; then they settle with the right proofs.
async fn tampered_proofs_are_attributed(l1: &dyn L1, name: &str) {
    let first = 23;
    let good = batches(first, first + 3);
    commit(l1, first, &good).await;
    assert_verdict(l1, first, &good, None, name).await;
    for (what, tamper) in tampers() {
        // Every position: the combined check and each bisection step see it.
        for pos in 0..good.len() {
            let mut bad = good.clone();
            tamper(&mut bad[pos].1);
            assert_ne!(bad[pos].1, good[pos].1);
            let what = format!("{name}: {what} at {pos}");
            assert_verdict(l1, first, &bad, Some(pos), &what).await;
        }
    }
    // A valid proof of another batch (well-formed points, wrong statement).
    let mut swapped = good.clone();
    swapped[2].1 = good[1].1.clone();
    assert_verdict(l1, first, &swapped, Some(2), "swapped").await;
    // Two broken proofs: the first one is named.
    let mut two = good.clone();
    two[1].1[31] ^= 1;
    two[3].1.pop();
    assert_verdict(l1, first, &two, Some(1), "two broken").await;

    // The transaction itself reverts naming the batch, and nothing changes.
    let mut bad = good.clone();
    bad[2].1[100] ^= 1;
    assert_eq!(
        expect_revert(l1.verify_batches(first, &proofs_of(&bad)).await),
        Revert::InvalidProof {
            batch: 25,
            proof_type: 0
        },
        "{name}"
    );
    assert_eq!(l1.last_verified_batch().await.unwrap(), 22);
    ok(l1.verify_batches(first, &proofs_of(&good)).await);
    assert_eq!(l1.last_verified_batch().await.unwrap(), 26);
}

/// Rollups where batch 3 of 4 is committed with forged public values: the rollup rejects it,
/// naming batch 3, and batches 1..=2 still settle.
async fn forged_public_inputs_are_attributed(chain: &Chain) {
    let name = chain.name();
    fn bump(d: Digest) -> Digest {
        let x = proofmill_devnet::digest_to_fr(&d).unwrap();
        fr_to_digest(x + ark_bn254::Fr::from(1u64))
    }
    type Forge = fn(&mut StateTransition);
    let forgeries: [(&str, Forge); 4] = [
        ("new root + 1", |pv| {
            pv.new_state_root = bump(pv.new_state_root)
        }),
        ("commitment + 1", |pv| {
            pv.batch_commitment = bump(pv.batch_commitment)
        }),
        ("new root >= R", |pv| pv.new_state_root = Digest([0xff; 32])),
        ("commitment >= R", |pv| {
            pv.batch_commitment = Digest([0xff; 32])
        }),
    ];
    for (what, forge) in forgeries {
        let l1 = deploy(chain).await;
        let mut forged = batches(1, 4);
        forge(&mut forged[2].0);
        // The rollup rebuilds batch 4's old root from batch 3's committed new root.
        forged[3].0.old_state_root = forged[2].0.new_state_root;
        commit(&*l1, 1, &forged).await;
        let what = format!("{name}: {what}");
        assert_verdict(&*l1, 1, &forged, Some(2), &what).await;
        assert_eq!(
            expect_revert(l1.verify_batches(1, &proofs_of(&forged)).await),
            Revert::InvalidProof {
                batch: 3,
                proof_type: 0
            },
            "{what}"
        );
        ok(l1.verify_batches(1, &proofs_of(&forged[..2])).await);
        assert_eq!(l1.last_verified_batch().await.unwrap(), 2, "{what}");
    }
}

async fn suite(chain: &Chain) {
    let l1 = deploy(chain).await;
    let gas = settle_valid(&*l1).await;
    // One multi-pairing for 16 proofs: at most 40% of the single-proof gas per batch.
    let (one, sixteen) = (gas[1].1, gas[3].1 / 16);
    assert!(
        sixteen * 10 <= one * 4,
        "{}: {sixteen} gas/batch at k=16 vs {one} at k=1",
        chain.name()
    );
    tampered_proofs_are_attributed(&*l1, chain.name()).await;
    forged_public_inputs_are_attributed(chain).await;
}

#[tokio::test]
async fn groth16_settlement_on_revm() {
    suite(&Chain::Revm).await;
}

#[tokio::test]
async fn groth16_settlement_on_anvil() {
    suite(&Chain::anvil()).await;
}

#[tokio::test]
async fn groth16_gas_is_identical_on_revm_and_anvil() {
    let anvil = Chain::anvil();
    let g_revm = settle_valid(&*deploy(&Chain::Revm).await).await;
    let g_anvil = settle_valid(&*deploy(&anvil).await).await;
    for ((k, r), (_, a)) in g_revm.iter().zip(&g_anvil) {
        println!(
            "groth16 verifyBatches k={k:>2}: revm {r}, anvil {a}, {} gas/batch",
            r / k
        );
    }
    assert_eq!(g_revm, g_anvil);
}

/// The rollup's verdict on `verifyBatches(first, proofs)` run by `eth_call` with `gas` gas:
/// `None` if it succeeds, else the decoded revert.
async fn call_with_gas(
    l1: &dyn L1,
    url: &str,
    first: u64,
    batches: &[Batch],
    gas: u64,
) -> Option<Revert> {
    use alloy::network::TransactionBuilder;
    use alloy::providers::{Provider, RootProvider};
    use alloy::sol_types::SolCall;
    let data = proofmill_l1::Rollup::verifyBatchesCall {
        firstBatchNumber: U256::from(first),
        proofs: proofs_of(batches)
            .into_iter()
            .map(|t| t.into_iter().map(Into::into).collect())
            .collect(),
    }
    .abi_encode();
    let tx = alloy::rpc::types::TransactionRequest::default()
        .with_from(l1.sender())
        .with_to(l1.rollup_address())
        .with_input(data)
        .with_gas_limit(gas);
    let provider = RootProvider::<alloy::network::Ethereum>::new_http(url.parse().unwrap());
    match provider.call(tx).await {
        Ok(_) => None,
        Err(alloy::transports::RpcError::ErrorResp(e)) => Some(Revert::decode(
            &e.as_revert_data().map(|d| d.to_vec()).unwrap_or_default(),
        )),
        Err(e) => panic!("eth_call: {e}"),
    }
}

/// A transaction too short of gas for the precompiles reverts without blaming a proof (the
/// verifier checks the gas before each precompile call), and never blames the wrong one.
#[tokio::test]
async fn low_gas_never_blames_the_wrong_proof() {
    let chain = Chain::anvil();
    let Chain::Anvil(anvil) = &chain else {
        unreachable!()
    };
    let l1 = deploy(&chain).await;
    let four = batches(1, 4);
    commit(&*l1, 1, &four).await;
    let mut bad = four.clone();
    bad[2].1[31] ^= 1;
    let (mut starved, mut passed) = (0, 0);
    for gas in (60_000..=700_000).step_by(10_000) {
        // k = 1 is the sharpest case: the ecMuls fit, the pairing does not, and a starved
        // pairing would leave just enough gas (1/64) to return "proof 0 is invalid".
        for good in [&four[..1], &four] {
            match call_with_gas(&*l1, &anvil.url, 1, good, gas).await {
                None => passed += 1,
                Some(Revert::InvalidProof { batch, .. }) => {
                    panic!("{gas} gas: a valid proof (batch {batch}) was blamed")
                }
                Some(_) => starved += 1,
            }
        }
        match call_with_gas(&*l1, &anvil.url, 1, &bad, gas).await {
            None => panic!("{gas} gas: an invalid proof passed"),
            Some(Revert::InvalidProof { batch, .. }) => assert_eq!(batch, 3, "{gas} gas"),
            Some(_) => {}
        }
    }
    assert!(
        starved > 0 && passed > 0,
        "{starved} starved, {passed} passed"
    );
}

// ---------------------------------------------------------------------------------------------
// deployment and the benchmark helper

#[tokio::test]
async fn settle_proofs_gas_commits_and_settles_real_proofs() {
    let l1 = deploy(&Chain::Revm).await;
    // Batches that do not chain from the rollup's state are refused before anything is sent.
    let err = settle_proofs_gas(&*l1, &batches(2, 3)).await.unwrap_err();
    assert!(matches!(err, L1Error::Config(_)), "{err:?}");
    assert!(settle_proofs_gas(&*l1, &[]).await.is_err());
    assert_eq!(l1.last_committed_batch().await.unwrap(), 0);

    let one = settle_proofs_gas(&*l1, &batches(1, 1)).await.unwrap();
    let four = settle_proofs_gas(&*l1, &batches(2, 5)).await.unwrap();
    assert!(four < one, "{four} >= {one}");
    assert_eq!(l1.last_verified_batch().await.unwrap(), 5);
    // A rejected proof is the contract's InvalidProof.
    let mut bad = batches(6, 7);
    bad[1].1[40] ^= 1;
    let err = settle_proofs_gas(&*l1, &bad).await.unwrap_err();
    assert_eq!(
        err.revert(),
        Some(&Revert::InvalidProof {
            batch: 7,
            proof_type: 0
        })
    );
}

#[tokio::test]
async fn groth16_verifier_deployment_checks_the_key() {
    let types = vec![ProofType::new("groth16").unwrap()];
    let open = |vk: Vec<[u8; 32]>| {
        RevmL1::open(
            None,
            RevmConfig {
                proof_types: types.clone(),
                verifier_kinds: vec![VerifierKind::Groth16(vk)],
                ..RevmConfig::dev(genesis())
            },
        )
    };
    let VerifierKind::Groth16(vk) = groth16_kind() else {
        unreachable!()
    };
    assert_eq!(vk.len(), GROTH16_VK_WORDS);
    open(vk.clone()).unwrap();
    // Wrong number of words: refused before deploying.
    let err = open(vk[..21].to_vec()).unwrap_err();
    assert!(matches!(err, L1Error::Config(_)), "{err:?}");
    // A G1 point (IC_2) or a G2 point (delta) off the curve: the constructor reverts.
    for w in [18, 12] {
        let mut bad = vk.clone();
        bad[w][31] ^= 1;
        let err = open(bad).unwrap_err();
        assert!(matches!(err, L1Error::Evm(_)), "word {w}: {err:?}");
    }
}

/// Gas report (not a test of anything): `cargo test -p proofmill-l1 --test groth16 --
/// --ignored --nocapture gas_report`. Proves 86 batches; the first settlement is a warm-up
/// (see [`settle_valid`]).
#[tokio::test]
#[ignore]
async fn gas_report() {
    let (genesis, all) = prove_chain(1 + 1 + 4 + 16 + 64);
    let types = [ProofType::new("groth16").unwrap()];
    let mut results = Vec::new();
    for chain in [Chain::Revm, Chain::anvil()] {
        let l1 = chain.deploy(genesis, &types, &[groth16_kind()]).await;
        settle_proofs_gas(&*l1, &all[..1]).await.unwrap();
        let mut per_batch = Vec::new();
        let mut at = 1;
        for k in [1, 4, 16, 64] {
            per_batch.push(settle_proofs_gas(&*l1, &all[at..at + k]).await.unwrap());
            at += k;
        }
        println!(
            "{}: gas per batch at k = 1, 4, 16, 64: {per_batch:?}",
            chain.name()
        );
        results.push(per_batch);
        if let Chain::Anvil(anvil) = &chain {
            let gas = verifier_gas(&*l1, &anvil.url, &all[0]).await;
            println!("verifier alone, one proof: {gas} gas");
        }
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(all[0].1.len(), PROOF_LEN);
}

/// `eth_estimateGas` of calling the rollup's verifier directly with one batch (21,000 of it
/// is the transaction base cost).
async fn verifier_gas(l1: &dyn L1, url: &str, (pv, proof): &Batch) -> u64 {
    use alloy::network::TransactionBuilder;
    use alloy::primitives::B256;
    use alloy::providers::{Provider, RootProvider};
    use alloy::sol_types::SolCall;
    use proofmill_l1::{Groth16BatchVerifier, Rollup};
    let provider = RootProvider::<alloy::network::Ethereum>::new_http(url.parse().unwrap());
    let call = |to, data: Vec<u8>| {
        alloy::rpc::types::TransactionRequest::default()
            .with_from(l1.sender())
            .with_to(to)
            .with_input(data)
    };
    let out = provider
        .call(call(
            l1.rollup_address(),
            Rollup::verifiersCall {}.abi_encode(),
        ))
        .await
        .unwrap();
    let verifier = Rollup::verifiersCall::abi_decode_returns(&out).unwrap()[0];
    let data = Groth16BatchVerifier::verifyBatchesCall {
        publicInputs: [pv.old_state_root, pv.new_state_root, pv.batch_commitment]
            .map(|d| B256::from(d.0))
            .to_vec(),
        proofs: vec![proof.clone().into()],
    }
    .abi_encode();
    provider.estimate_gas(call(verifier, data)).await.unwrap()
}
