//! End-to-end tests of the `stark` backend on real devnet batches, plus soundness checks
//! (traces that break a rule must not yield a verifying proof) and tampering.
//!
//! Run with `--nocapture` for timings; `-- --ignored` runs the measurement test.

use proofmill_backend::{Backend, BackendError, ProveRequest, VerifyError};
use proofmill_devnet::StateTransition;
use proofmill_devnet::{BatchInput, Devnet, DevnetConfig, SealedBatch, execute_batch_input};
use proofmill_stark::air::{PublicInputs, SLOT_ROWS, TRACE_WIDTH, slots_for};
use proofmill_stark::prover::{BatchProver, SlotValues, build_trace};
use proofmill_stark::{
    HEADER_LEN, MAX_TRANSFERS, StarkBackend, header, input_digest, proof_options, prove_batch,
    public_limbs, verify_proof,
};
use proofmill_types::Digest;
use std::sync::LazyLock;
use std::time::{Duration, Instant};
use winterfell::Prover;
use winterfell::math::fields::f128::BaseElement as Felt;
use winterfell::math::{FieldElement, StarkField};

fn devnet(batch_size: u32, depth: u8) -> Devnet {
    Devnet::new(DevnetConfig {
        seed: 11,
        depth,
        accounts: 12,
        initial_balance: 1_000_000,
        batch_size,
    })
    .unwrap()
}

fn prove(batch: &SealedBatch) -> Result<Vec<u8>, BackendError> {
    StarkBackend.prove(&ProveRequest {
        batch: batch.number,
        input: &batch.input,
        expected: &batch.transition.to_public_values(),
    })
}

/// Batch 1 (4 transfers, depth 16) and its proof, proved once.
static PROOF: LazyLock<(SealedBatch, Vec<u8>)> = LazyLock::new(|| {
    let batch = devnet(4, 16).produce_batch();
    let proof = prove(&batch).unwrap();
    (batch, proof)
});

#[test]
fn real_batches_prove_and_verify() {
    let (batch, proof) = &*PROOF;
    assert_eq!(StarkBackend.name(), "stark");
    assert_eq!(batch.transfers, 4);
    StarkBackend
        .verify(&batch.transition.to_public_values(), proof)
        .unwrap();
    let (head, _) = header(proof).unwrap();
    assert_eq!(head.n, 4);
    // The header digest is what anyone holding the input recomputes.
    let input = BatchInput::decode(&batch.input).unwrap();
    assert_eq!(input_digest(&input, &batch.transition).unwrap(), head.h);

    // Consecutive batches of one devnet (accounts reused across batches).
    let mut net = devnet(16, 16);
    for _ in 0..2 {
        let batch = net.produce_batch();
        let t = Instant::now();
        let proof = prove(&batch).unwrap();
        let prove_time = t.elapsed();
        let t = Instant::now();
        StarkBackend
            .verify(&batch.transition.to_public_values(), &proof)
            .unwrap();
        println!(
            "batch {} ({} transfers): prove {prove_time:?}, verify {:?}, {} bytes",
            batch.number,
            batch.transfers,
            t.elapsed(),
            proof.len()
        );
    }
}

#[test]
fn batch_sizes_with_padding() {
    for size in [1u32, 4, 16] {
        let batch = devnet(size, 8).produce_batch();
        assert_eq!(batch.transfers, size as usize);
        let proof = prove(&batch).unwrap();
        StarkBackend
            .verify(&batch.transition.to_public_values(), &proof)
            .unwrap();
        assert_eq!(header(&proof).unwrap().0.n, size);
    }
    // 8 transfers fill all 8 slots: no padding slot at all.
    let batch = devnet(8, 8).produce_batch();
    let proof = prove(&batch).unwrap();
    StarkBackend
        .verify(&batch.transition.to_public_values(), &proof)
        .unwrap();

    // An empty batch: all slots are padding.
    let net = devnet(4, 8);
    let empty = BatchInput {
        number: 1,
        depth: 8,
        old_root: net.state_root(),
        transfers: vec![],
    }
    .encode();
    let expected = execute_batch_input(&empty).unwrap();
    let proof = StarkBackend
        .prove(&ProveRequest {
            batch: 1,
            input: &empty,
            expected: &expected.to_public_values(),
        })
        .unwrap();
    StarkBackend
        .verify(&expected.to_public_values(), &proof)
        .unwrap();
}

fn flip(d: &Digest, byte: usize) -> Digest {
    let mut d = *d;
    d.0[byte] ^= 0x01;
    d
}

#[test]
fn forged_public_values_are_rejected() {
    let (batch, proof) = &*PROOF;
    let pv = batch.transition;
    for byte in [0, 17, 31] {
        let forged = [
            StateTransition {
                old_state_root: flip(&pv.old_state_root, byte),
                ..pv
            },
            StateTransition {
                new_state_root: flip(&pv.new_state_root, byte),
                ..pv
            },
            StateTransition {
                batch_commitment: flip(&pv.batch_commitment, byte),
                ..pv
            },
        ];
        for f in forged {
            assert!(
                matches!(
                    StarkBackend.verify(&f.to_public_values(), proof),
                    Err(VerifyError::Invalid(_))
                ),
                "forged {f:?} accepted"
            );
        }
    }
    // Another batch's values (batch 2 of the same devnet) do not verify either.
    let mut net = devnet(4, 16);
    net.produce_batch();
    let second = net.produce_batch();
    assert!(
        StarkBackend
            .verify(&second.transition.to_public_values(), proof)
            .is_err()
    );
}

#[test]
fn tampered_proofs_are_rejected_without_panicking() {
    let (batch, proof) = &*PROOF;
    let pv = &batch.transition.to_public_values();
    let b = StarkBackend;
    let body = proof.len() - HEADER_LEN;
    // Header fields (magic, version, n, both digest words) and spread-out body positions.
    let mut positions = vec![0, 4, 5, 6, 9, 24, 25, 40];
    positions.extend((1..40).map(|i| HEADER_LEN + body * i / 40));
    positions.push(proof.len() - 1);
    for &pos in &positions {
        for mask in [0x01u8, 0x80] {
            let mut t = proof.clone();
            t[pos] ^= mask;
            assert!(
                b.verify(pv, &t).is_err(),
                "flip {mask:#x} at {pos} accepted"
            );
        }
    }
    // The declared transfer count must match the trace: n = 3 or 5 is no proof of n = 4.
    for n in [3u32, 5, 9, u32::MAX] {
        let mut t = proof.clone();
        t[5..9].copy_from_slice(&n.to_le_bytes());
        assert!(b.verify(pv, &t).is_err(), "n = {n} accepted");
    }
    for len in [
        0,
        1,
        HEADER_LEN - 1,
        HEADER_LEN,
        HEADER_LEN + 1,
        proof.len() / 2,
    ] {
        let r = b.verify(pv, &proof[..len]);
        assert!(matches!(r, Err(VerifyError::Malformed(_))), "{len}: {r:?}");
    }
    let mut longer = proof.clone();
    longer.push(0);
    assert!(b.verify(pv, &longer).is_err());
    assert!(matches!(b.verify(pv, &[]), Err(VerifyError::Malformed(_))));
    let garbage: Vec<u8> = (0..proof.len()).map(|i| (i * 131 + 7) as u8).collect();
    assert!(matches!(
        b.verify(pv, &garbage),
        Err(VerifyError::Malformed(_))
    ));
    let mut garbage_body = proof[..HEADER_LEN].to_vec();
    garbage_body.extend(&garbage[..garbage.len() - HEADER_LEN]);
    assert!(b.verify(pv, &garbage_body).is_err());
    // An exec proof (the 96-byte public values) is not a stark proof.
    assert!(b.verify(pv, pv.as_bytes()).is_err());
}

/// A huge node count in a Merkle opening must be rejected before winterfell allocates it.
#[test]
fn forged_opening_counts_are_malformed() {
    let (batch, proof) = &*PROOF;
    let (mut tried, mut rejected) = (0, 0);
    // Overwrite 9-byte windows with the 9-byte usize encoding of 2^56 (first byte 0 means
    // "8 more bytes follow"), everywhere in the first part of the body.
    let huge = {
        let mut v = vec![0u8];
        v.extend((1u64 << 56).to_le_bytes());
        v
    };
    for at in (HEADER_LEN..proof.len().min(HEADER_LEN + 4000)).step_by(7) {
        let mut t = proof.clone();
        let end = (at + huge.len()).min(t.len());
        t[at..end].copy_from_slice(&huge[..end - at]);
        tried += 1;
        if StarkBackend
            .verify(&batch.transition.to_public_values(), &t)
            .is_err()
        {
            rejected += 1;
        }
    }
    assert_eq!(rejected, tried);
}

#[test]
fn prove_refuses_inputs_that_do_not_match() {
    let (batch, _) = &*PROOF;
    let pv = batch.transition;
    let wrong = StateTransition {
        new_state_root: flip(&pv.new_state_root, 31),
        ..pv
    };
    let r = StarkBackend.prove(&ProveRequest {
        batch: batch.number,
        input: &batch.input,
        expected: &wrong.to_public_values(),
    });
    assert!(matches!(r, Err(BackendError::BadInput(_))), "{r:?}");

    // Inputs that do not decode or do not execute (an overdraft in the witness).
    for input in [vec![], b"PMDB".to_vec()] {
        let r = StarkBackend.prove(&ProveRequest {
            batch: 1,
            input: &input,
            expected: &pv.to_public_values(),
        });
        assert!(matches!(r, Err(BackendError::BadInput(_))), "{r:?}");
    }
    let mut input = BatchInput::decode(&batch.input).unwrap();
    input.transfers[0].transfer.amount = input.transfers[0].sender.balance + 1;
    let r = StarkBackend.prove(&ProveRequest {
        batch: 1,
        input: &input.encode(),
        expected: &pv.to_public_values(),
    });
    assert!(matches!(r, Err(BackendError::BadInput(_))), "{r:?}");
    // prove_batch skips execution but still refuses records the AIR cannot satisfy.
    assert!(matches!(
        prove_batch(&input, &pv),
        Err(BackendError::BadInput(_))
    ));
    // More transfers than one stark proof covers.
    let mut big = BatchInput::decode(&batch.input).unwrap();
    big.transfers = vec![big.transfers[0].clone(); MAX_TRANSFERS as usize + 1];
    assert!(matches!(
        prove_batch(&big, &pv),
        Err(BackendError::BadInput(_))
    ));
}

/// Proving a batch again gives a valid proof, the same bytes but for the proof-of-work nonce:
/// winterfell (`concurrent`) searches for the nonce on several threads and takes whichever
/// valid one a thread finds first, so under load another nonce may win, and the query
/// positions drawn from it differ. With the same nonce (most runs), every byte is the same.
#[test]
fn proving_is_deterministic_but_for_the_grinding_nonce() {
    let (batch, proof) = &*PROOF;
    let again = prove(batch).unwrap();
    StarkBackend
        .verify(&batch.transition.to_public_values(), &again)
        .unwrap();
    // The nonce is the proof's last field (see `backend.rs`, which reads it last).
    let nonce = |p: &[u8]| p[p.len() - 8..].to_vec();
    if nonce(&again) == nonce(proof) {
        assert_eq!(&again, proof);
    }
}

fn good_slot() -> SlotValues {
    SlotValues {
        from: 1,
        to: 2,
        amount: 10,
        nonce: 3,
        sender_balance: 100,
        receiver_balance: 5,
        receiver_nonce: 0,
    }
}

/// Proves an arbitrary (possibly rule-breaking) record list, bypassing every input check,
/// and returns whether the result verifies.
fn forge(slots: &[SlotValues]) -> bool {
    let public = PROOF.0.transition;
    let mut inputs = PublicInputs {
        n: slots.len() as u32,
        limbs: public_limbs(&public),
        digest: [Felt::ZERO; 2],
    };
    let (trace, digest) = build_trace(slots, inputs.seed());
    inputs.digest = digest;
    let proof = match BatchProver::new(proof_options(), inputs).prove(trace) {
        Ok(p) => p,
        Err(_) => return false,
    };
    let mut bytes = vec![];
    bytes.extend_from_slice(b"PMSK\x01");
    bytes.extend_from_slice(&(slots.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&digest[0].as_int().to_le_bytes());
    bytes.extend_from_slice(&digest[1].as_int().to_le_bytes());
    bytes.extend_from_slice(&proof.to_bytes());
    verify_proof(&public, &bytes).is_ok()
}

/// The AIR, not just the prover's input checks, enforces the rules: a trace that breaks one
/// yields no verifying proof.
#[test]
fn rule_breaking_records_do_not_verify() {
    assert!(
        forge(&[good_slot(), good_slot()]),
        "control case must verify"
    );
    let g = good_slot();
    let cases = [
        ("overdraft", SlotValues { amount: 101, ..g }),
        ("zero amount", SlotValues { amount: 0, ..g }),
        ("self transfer", SlotValues { to: 1, ..g }),
        (
            "receiver overflow",
            SlotValues {
                receiver_balance: u64::MAX - 5,
                ..g
            },
        ),
        (
            "nonce overflow",
            SlotValues {
                nonce: u64::MAX,
                ..g
            },
        ),
    ];
    for (what, bad) in cases {
        assert!(!forge(&[g, bad]), "{what} verified");
    }
}

#[test]
fn trace_shape() {
    assert_eq!(slots_for(0), 8);
    assert_eq!(slots_for(9), 16);
    let (trace, _) = build_trace(&[good_slot()], [Felt::ONE; 4]);
    use winterfell::Trace;
    assert_eq!(trace.info().main_trace_width(), TRACE_WIDTH);
    assert_eq!(trace.info().length(), 8 * SLOT_ROWS);
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Prove/verify time and size for 4, 16, 64 transfers at depth 16, median of 3.
#[test]
#[ignore]
fn measure() {
    for size in [4u32, 16, 64] {
        let batch = devnet(size, 16).produce_batch();
        let (mut p, mut v, mut len) = (vec![], vec![], 0);
        for _ in 0..3 {
            let t = Instant::now();
            let proof = prove(&batch).unwrap();
            p.push(t.elapsed());
            let t = Instant::now();
            StarkBackend
                .verify(&batch.transition.to_public_values(), &proof)
                .unwrap();
            v.push(t.elapsed());
            len = proof.len();
        }
        println!(
            "n={size}: prove {:?} verify {:?} size {len} B",
            median(p),
            median(v)
        );
    }
}
