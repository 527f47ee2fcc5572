//! End-to-end tests of the Groth16 backend on real devnet batches.
//!
//! Shapes stay small (N = 3, depth 5) so setup and proving take about a second; run with
//! `--nocapture` to see constraint counts and timings.

use ark_bn254::Fr;
use ark_ff::{BigInteger, One, PrimeField, Zero};
use proofmill_backend::{Backend, BackendError, ProveRequest, VerifyError};
use proofmill_devnet::StateTransition;
use proofmill_devnet::{
    BatchInput, Devnet, DevnetConfig, SealedBatch, Transfer, execute_batch_input, fr_to_digest,
};
use proofmill_groth16::keys::{key_paths, load_keys, load_or_dev_setup};
use proofmill_groth16::{
    BatchCircuit, DEMO_SHAPE, Groth16Backend, KeyError, PROOF_LEN, Shape, constraint_count,
    decode_proof, encode_proof, public_inputs, vk_words,
};
use std::sync::LazyLock;
use std::time::Instant;

const N: usize = 3;
const DEPTH: u8 = 5;

fn shape() -> Shape {
    Shape::new(N, DEPTH).unwrap()
}

/// One backend (and key directory) shared by all tests: keys are generated once.
static BACKEND: LazyLock<(tempfile::TempDir, Groth16Backend)> = LazyLock::new(|| {
    let dir = tempfile::tempdir().unwrap();
    let backend = Groth16Backend::new(dir.path(), shape());
    let t = Instant::now();
    backend.keys().unwrap();
    println!("setup {} took {:?}", shape(), t.elapsed());
    (dir, backend)
});

fn backend() -> &'static Groth16Backend {
    &BACKEND.1
}

fn devnet(batch_size: u32) -> Devnet {
    Devnet::new(DevnetConfig {
        seed: 7,
        depth: DEPTH,
        accounts: 6,
        initial_balance: 1_000,
        batch_size,
    })
    .unwrap()
}

fn prove(b: &Groth16Backend, batch: &SealedBatch) -> Result<Vec<u8>, BackendError> {
    b.prove(&ProveRequest {
        batch: batch.number,
        input: &batch.input,
        expected: &batch.transition.to_public_values(),
    })
}

/// A proof of batch 1 of the test devnet, proved once.
static PROOF: LazyLock<(SealedBatch, Vec<u8>)> = LazyLock::new(|| {
    let batch = devnet(N as u32).produce_batch();
    let proof = prove(backend(), &batch).unwrap();
    (batch, proof)
});

fn bump(d: &proofmill_types::Digest) -> proofmill_types::Digest {
    let x = proofmill_devnet::digest_to_fr(d).unwrap();
    fr_to_digest(x + Fr::one())
}

#[test]
fn real_batches_prove_and_verify() {
    let b = backend();
    let mut net = devnet(N as u32);
    for _ in 0..3 {
        let batch = net.produce_batch();
        assert_eq!(batch.transfers, N);
        // The devnet's stateless executor and the sequencer agree...
        assert_eq!(execute_batch_input(&batch.input).unwrap(), batch.transition);
        // ...and the circuit's public inputs are exactly those values (satisfied system).
        let input = BatchInput::decode(&batch.input).unwrap();
        let circuit = BatchCircuit::from_input(shape(), &input).unwrap();
        assert_eq!(
            circuit.public.to_array(),
            public_inputs(&batch.transition).unwrap()
        );
        assert!(circuit.synthesize().unwrap().is_satisfied().unwrap());

        let t = Instant::now();
        let proof = prove(b, &batch).unwrap();
        let prove_time = t.elapsed();
        assert_eq!(proof.len(), PROOF_LEN);
        let t = Instant::now();
        b.verify(&batch.transition.to_public_values(), &proof)
            .unwrap();
        println!(
            "batch {} ({} transfers): prove {prove_time:?}, verify {:?}",
            batch.number,
            batch.transfers,
            t.elapsed()
        );
    }
}

#[test]
fn padded_and_empty_batches_prove() {
    let b = backend();
    let mut net = devnet(N as u32);
    net.submit(Transfer {
        from: 1,
        to: 20,
        amount: 33,
        nonce: 0,
    })
    .unwrap();
    let batch = net.seal().unwrap();
    assert_eq!(batch.transfers, 1);
    let proof = prove(b, &batch).unwrap();
    b.verify(&batch.transition.to_public_values(), &proof)
        .unwrap();

    // No transfers at all: roots unchanged, commitment = hash([number]).
    let empty = BatchInput {
        number: 9,
        depth: DEPTH,
        old_root: net.state_root(),
        transfers: vec![],
    };
    let input = empty.encode();
    let expected = execute_batch_input(&input).unwrap();
    assert_eq!(expected.old_state_root, expected.new_state_root);
    let proof = b
        .prove(&ProveRequest {
            batch: 9,
            input: &input,
            expected: &expected.to_public_values(),
        })
        .unwrap();
    b.verify(&expected.to_public_values(), &proof).unwrap();
    // A padded proof does not verify for the other batch's values.
    assert!(
        b.verify(&batch.transition.to_public_values(), &proof)
            .is_err()
    );
}

#[test]
fn forged_public_inputs_are_rejected() {
    let b = backend();
    let (batch, proof) = &*PROOF;
    b.verify(&batch.transition.to_public_values(), proof)
        .unwrap();
    let pv = batch.transition;
    let forged = [
        StateTransition {
            new_state_root: bump(&pv.new_state_root),
            ..pv
        },
        StateTransition {
            batch_commitment: bump(&pv.batch_commitment),
            ..pv
        },
        StateTransition {
            old_state_root: bump(&pv.old_state_root),
            ..pv
        },
        StateTransition {
            new_state_root: pv.old_state_root,
            ..pv
        },
    ];
    for f in forged {
        assert!(matches!(
            b.verify(&f.to_public_values(), proof),
            Err(VerifyError::Invalid(_))
        ));
    }
    // A public value >= r cannot be attested.
    let mut bad = pv;
    bad.new_state_root = proofmill_types::Digest([0xff; 32]);
    assert!(b.verify(&bad.to_public_values(), proof).is_err());
}

#[test]
fn tampered_proofs_are_rejected_without_panic() {
    let b = backend();
    let (batch, proof) = &*PROOF;
    // Flip a low byte of every coordinate word: a.x, a.y, b.*, c.x, c.y.
    for word in 0..8 {
        for bit in [0u8, 7] {
            let mut p = proof.clone();
            p[32 * word + 31] ^= 1 << bit;
            let r = b.verify(&batch.transition.to_public_values(), &p);
            assert!(r.is_err(), "word {word} bit {bit} accepted");
        }
    }
    // A high byte flip makes the coordinate non-canonical or moves it off the curve.
    for offset in [0usize, 64, 192] {
        let mut p = proof.clone();
        p[offset] ^= 0x80;
        assert!(matches!(
            b.verify(&batch.transition.to_public_values(), &p),
            Err(VerifyError::Malformed(_))
        ));
    }
    // Wrong lengths, all-zero (points at infinity) and all-ones.
    for p in [
        vec![],
        proof[..255].to_vec(),
        [proof.as_slice(), &[0]].concat(),
        vec![0u8; 256],
        vec![0xff; 256],
    ] {
        assert!(b.verify(&batch.transition.to_public_values(), &p).is_err());
    }
    // Swapping A and C keeps both points valid but breaks the pairing equation.
    let mut p = proof.clone();
    let (a, c) = (proof[..64].to_vec(), proof[192..].to_vec());
    p[..64].copy_from_slice(&c);
    p[192..].copy_from_slice(&a);
    assert!(matches!(
        b.verify(&batch.transition.to_public_values(), &p),
        Err(VerifyError::Invalid(_))
    ));
}

#[test]
fn proof_bytes_round_trip_and_vk_words() {
    let (_, proof) = &*PROOF;
    let decoded = decode_proof(proof).unwrap();
    assert_eq!(&encode_proof(&decoded), proof);
    let keys = backend().keys().unwrap();
    let words = vk_words(&keys.vk);
    assert_eq!(words.len(), 16 + 2 * 3);
    let q = ark_bn254::Fq::MODULUS.to_bytes_be();
    assert!(words.iter().all(|w| w.as_slice() < q.as_slice()));
    // G2 words are imaginary part first: beta.x.c1 is word 2.
    use ark_ec::AffineRepr;
    let (bx, _) = keys.vk.beta_g2.xy().unwrap();
    assert_eq!(words[2], fr_bytes(bx.c1));
}

fn fr_bytes(x: ark_bn254::Fq) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(&x.into_bigint().to_bytes_be());
    out
}

#[test]
fn prove_rejects_bad_requests() {
    let b = backend();
    // More than N transfers.
    let big = devnet(N as u32 + 1).produce_batch();
    assert_eq!(big.transfers, N + 1);
    assert!(matches!(prove(b, &big), Err(BackendError::BadInput(_))));
    // Another depth.
    let mut other = Devnet::new(DevnetConfig {
        seed: 1,
        depth: DEPTH + 1,
        accounts: 4,
        initial_balance: 100,
        batch_size: 2,
    })
    .unwrap();
    assert!(matches!(
        prove(b, &other.produce_batch()),
        Err(BackendError::BadInput(_))
    ));
    // Expected values that differ from the execution.
    let mut batch = devnet(N as u32).produce_batch();
    batch.transition.new_state_root = bump(&batch.transition.new_state_root);
    assert!(matches!(prove(b, &batch), Err(BackendError::BadInput(_))));
    // Garbage input.
    batch.input = b"not a batch".to_vec();
    assert!(matches!(prove(b, &batch), Err(BackendError::BadInput(_))));
}

#[test]
fn keys_are_cached_reloaded_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let s = Shape::new(1, 3).unwrap();
    let t = Instant::now();
    let keys = load_or_dev_setup(dir.path(), s).unwrap();
    println!("setup {s}: {:?}", t.elapsed());
    let (pk_path, vk_path) = key_paths(dir.path(), s);
    assert!(pk_path.exists() && vk_path.exists());
    assert!(pk_path.to_string_lossy().contains("v1-n1-d3"));
    let mtime = std::fs::metadata(&pk_path).unwrap().modified().unwrap();

    // Reload: identical keys, files untouched (no regeneration).
    let t = Instant::now();
    let again = load_or_dev_setup(dir.path(), s).unwrap();
    println!("reload {s}: {:?}", t.elapsed());
    assert_eq!(again.vk, keys.vk);
    assert_eq!(again.pk, keys.pk);
    assert_eq!(
        std::fs::metadata(&pk_path).unwrap().modified().unwrap(),
        mtime
    );
    assert_eq!(load_keys(&pk_path, &vk_path).unwrap().vk, keys.vk);
    // Dev setup is deterministic per shape.
    assert_eq!(proofmill_groth16::dev_setup(s).unwrap().vk, keys.vk);

    // A lone key file (a setup interrupted between its two writes): set up again.
    let lone = tempfile::tempdir().unwrap();
    let (lpk, lvk) = key_paths(lone.path(), s);
    std::fs::copy(&pk_path, &lpk).unwrap();
    assert_eq!(load_or_dev_setup(lone.path(), s).unwrap().vk, keys.vk);
    assert!(lvk.exists());

    // Keys of another shape under this shape's name: rejected by the shape check.
    let other = Shape::new(2, 3).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    load_or_dev_setup(other_dir.path(), other).unwrap();
    let (opk, ovk) = key_paths(other_dir.path(), other);
    let mixed = tempfile::tempdir().unwrap();
    let (mpk, mvk) = key_paths(mixed.path(), s);
    std::fs::copy(&opk, &mpk).unwrap();
    std::fs::copy(&ovk, &mvk).unwrap();
    assert!(matches!(
        load_or_dev_setup(mixed.path(), s),
        Err(KeyError::ShapeMismatch { .. })
    ));
    // A pk and vk from different shapes.
    assert!(matches!(
        load_keys(&pk_path, &ovk),
        Err(KeyError::ShapeMismatch { .. })
    ));

    // Corruptions: body byte flipped, truncated, wrong magic, wrong version, pk/vk swapped.
    let pk_bytes = std::fs::read(&pk_path).unwrap();
    let vk_bytes = std::fs::read(&vk_path).unwrap();
    let mut flipped = vk_bytes.clone();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    let mut version = pk_bytes.clone();
    version[8] = 9;
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("vk body flipped", flipped, false),
        (
            "vk truncated",
            vk_bytes[..vk_bytes.len() / 2].to_vec(),
            false,
        ),
        ("vk empty", vec![], false),
        ("pk truncated", pk_bytes[..100].to_vec(), true),
        ("pk version", version, true),
        ("vk given as pk", vk_bytes.clone(), true),
    ];
    for (name, bytes, is_pk) in cases {
        let bad = tempfile::tempdir().unwrap();
        let (bpk, bvk) = key_paths(bad.path(), s);
        std::fs::write(&bpk, if is_pk { &bytes } else { &pk_bytes }).unwrap();
        std::fs::write(&bvk, if is_pk { &vk_bytes } else { &bytes }).unwrap();
        let err = load_or_dev_setup(bad.path(), s).unwrap_err();
        println!("{name}: {err}");
        assert!(
            matches!(err, KeyError::Corrupt { .. } | KeyError::Version { .. }),
            "{name}: {err:?}"
        );
        // The backend surfaces it as a clean error too.
        let b = Groth16Backend::new(bad.path(), s);
        let pv = StateTransition {
            old_state_root: fr_to_digest(Fr::zero()),
            new_state_root: fr_to_digest(Fr::zero()),
            batch_commitment: fr_to_digest(Fr::zero()),
        };
        assert!(b.verify(&pv.to_public_values(), &[0u8; 256]).is_err());
    }
    // A valid file with a re-computed checksum but a garbage vk body is still caught.
    let mut body = vk_bytes[52..].to_vec();
    body[0] ^= 0x55;
    let mut forged = vk_bytes[..20].to_vec();
    use sha2::Digest as _;
    forged.extend_from_slice(&sha2::Sha256::digest(&body));
    forged.extend_from_slice(&body);
    let bad = tempfile::tempdir().unwrap();
    let (bpk, bvk) = key_paths(bad.path(), s);
    std::fs::write(&bpk, &pk_bytes).unwrap();
    std::fs::write(&bvk, &forged).unwrap();
    let err = load_or_dev_setup(bad.path(), s).unwrap_err();
    println!("vk body with valid checksum: {err}");
    assert!(matches!(
        err,
        KeyError::Corrupt { .. } | KeyError::Mismatch(_)
    ));
    // Missing files.
    assert!(matches!(
        load_keys(&dir.path().join("nope.pk"), &vk_path),
        Err(KeyError::Io { .. })
    ));
}

/// The proposed demo shape. Setup takes a while, so this is opt-in:
/// `cargo test -p proofmill-groth16 --release -- --ignored --nocapture demo_shape`.
#[test]
#[ignore]
fn demo_shape_timings() {
    let shape = demo_shape();
    println!(
        "demo shape {shape}: {} constraints",
        constraint_count(shape).unwrap()
    );
    let dir = tempfile::tempdir().unwrap();
    let b = Groth16Backend::new(dir.path(), shape);
    let t = Instant::now();
    b.keys().unwrap();
    println!("setup: {:?}", t.elapsed());
    let (pk, vk) = key_paths(dir.path(), shape);
    println!(
        "pk {} bytes, vk {} bytes",
        std::fs::metadata(&pk).unwrap().len(),
        std::fs::metadata(&vk).unwrap().len()
    );
    let t = Instant::now();
    load_keys(&pk, &vk).unwrap();
    println!("reload keys: {:?}", t.elapsed());
    let mut net = Devnet::new(DevnetConfig {
        seed: 3,
        depth: shape.depth,
        accounts: 64,
        initial_balance: 1_000_000,
        batch_size: shape.batch_size as u32,
    })
    .unwrap();
    for _ in 0..2 {
        let batch = net.produce_batch();
        let t = Instant::now();
        let proof = prove(&b, &batch).unwrap();
        let prove_time = t.elapsed();
        let t = Instant::now();
        b.verify(&batch.transition.to_public_values(), &proof)
            .unwrap();
        println!(
            "batch {} ({} transfers): prove {prove_time:?}, verify {:?}",
            batch.number,
            batch.transfers,
            t.elapsed()
        );
    }
}

/// [`DEMO_SHAPE`], or `DEMO_SHAPE=NxD` from the environment to try others.
fn demo_shape() -> Shape {
    std::env::var("DEMO_SHAPE")
        .ok()
        .map(|s| s.parse().unwrap())
        .unwrap_or(DEMO_SHAPE)
}

#[test]
fn shapes_parse_and_validate() {
    assert_eq!("4x16".parse::<Shape>().unwrap(), DEMO_SHAPE);
    assert_eq!(DEMO_SHAPE, Shape::new(4, 16).unwrap());
    for bad in ["", "4", "0x16", "4x0", "4x33", "x16", "4x16x1", "-1x4"] {
        assert!(bad.parse::<Shape>().is_err(), "{bad:?}");
    }
}
