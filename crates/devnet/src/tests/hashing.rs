//! Poseidon, digests and the Merkle tree.

use crate::poseidon::{POSEIDON_FULL_ROUNDS, POSEIDON_PARTIAL_ROUNDS};
use crate::tree::{SparseMerkleTree, empty_subtree};
use crate::{
    Fr, compute_root, digest_to_fr, fr_to_digest, hash, leaf_hash, poseidon_config, verify_path,
};
use ark_ff::{BigInteger, Field, PrimeField, Zero};
use proofmill_types::Digest;

fn f(v: u64) -> Fr {
    Fr::from(v)
}

/// Independent textbook Poseidon permutation over the same constants: state is
/// `[capacity, rate0, rate1]`, each round adds constants, applies x^5 (to all or the first
/// element), multiplies by the MDS matrix.
fn reference_hash2(a: Fr, b: Fr) -> Fr {
    let cfg = poseidon_config();
    let mut state = [Fr::zero(), a, b];
    let half = POSEIDON_FULL_ROUNDS / 2;
    for r in 0..POSEIDON_FULL_ROUNDS + POSEIDON_PARTIAL_ROUNDS {
        for (s, c) in state.iter_mut().zip(&cfg.ark[r]) {
            *s += c;
        }
        let full = r < half || r >= half + POSEIDON_PARTIAL_ROUNDS;
        for (i, s) in state.iter_mut().enumerate() {
            if full || i == 0 {
                *s = s.pow([5u64]);
            }
        }
        let old = state;
        for (i, s) in state.iter_mut().enumerate() {
            *s = (0..3).map(|j| old[j] * cfg.mds[i][j]).sum();
        }
    }
    state[1]
}

#[test]
fn poseidon_parameters() {
    let cfg = poseidon_config();
    assert_eq!((cfg.rate, cfg.capacity, cfg.alpha), (2, 1, 5));
    assert_eq!((cfg.full_rounds, cfg.partial_rounds), (8, 57));
    assert_eq!(cfg.ark.len(), 65);
    assert!(cfg.ark.iter().all(|row| row.len() == 3));
    assert_eq!(cfg.mds.len(), 3);
    assert!(
        std::ptr::eq(cfg, poseidon_config()),
        "config must be cached"
    );
}

#[test]
fn poseidon_deterministic_and_order_sensitive() {
    let h12 = hash(&[f(1), f(2)]);
    assert_eq!(h12, hash(&[f(1), f(2)]));
    assert_ne!(h12, hash(&[f(2), f(1)]));
    assert_ne!(h12, hash(&[f(1), f(2), f(0)]), "arity must matter");
    // The sponge has no padding: trailing zeros within one rate block do not change the hash.
    // Harmless because every call site has a fixed arity; documented on `hash`.
    assert_eq!(hash(&[f(1)]), hash(&[f(1), f(0)]));
    assert_ne!(h12, Fr::zero());
    // Known answer: the sponge equals an independent implementation of the permutation.
    assert_eq!(h12, reference_hash2(f(1), f(2)));
    assert_eq!(hash(&[f(7), -f(3)]), reference_hash2(f(7), -f(3)));
    // Pinned value: changing any parameter changes every root and breaks the circuit.
    assert_eq!(fr_to_digest(h12).to_hex(), PINNED_HASH_1_2);
}

const PINNED_HASH_1_2: &str = "0fca49b798923ab0239de1c9e7a4a9a2210312b6a2f616d18b5a87f9b628ae29";

#[test]
fn digest_round_trip_and_canonicity() {
    for v in [Fr::zero(), f(1), f(u64::MAX), -f(1), hash(&[f(9)])] {
        assert_eq!(digest_to_fr(&fr_to_digest(v)), Some(v));
    }
    let one = fr_to_digest(f(1));
    assert_eq!(one.0[31], 1);
    assert!(one.0[..31].iter().all(|&b| b == 0), "big-endian");
    let mut modulus = [0u8; 32];
    let be = Fr::MODULUS.to_bytes_be();
    modulus.copy_from_slice(&be);
    assert_eq!(digest_to_fr(&Digest(modulus)), None);
    assert_eq!(digest_to_fr(&Digest([0xff; 32])), None);
    modulus[31] -= 1;
    assert_eq!(digest_to_fr(&Digest(modulus)), Some(-f(1)));
}

#[test]
fn tree_matches_dense_computation() {
    let depth = 4u8;
    let mut tree = SparseMerkleTree::new(depth).unwrap();
    let mut leaves = vec![leaf_hash(0, 0); 16];
    for (i, bal) in [(3u32, 10u64), (0, 5), (15, 7), (8, 1)] {
        leaves[i as usize] = leaf_hash(bal, 2);
        assert!(tree.set_leaf(i, leaf_hash(bal, 2)));
    }
    let mut level = leaves;
    while level.len() > 1 {
        level = level.chunks(2).map(|p| hash(&[p[0], p[1]])).collect();
    }
    assert_eq!(tree.root(), level[0]);
    assert!(
        !tree.set_leaf(16, leaf_hash(1, 1)),
        "out of range index must be refused"
    );
    assert_eq!(tree.root(), level[0]);
}

#[test]
fn tree_update_and_paths() {
    let mut tree = SparseMerkleTree::new(16).unwrap();
    assert_eq!(tree.root(), empty_subtree(16));
    let r0 = tree.root();
    tree.set_leaf(5, leaf_hash(100, 0));
    let r1 = tree.root();
    assert_ne!(r0, r1, "root must change on update");
    tree.set_leaf(40_000, leaf_hash(1, 1));
    assert_ne!(tree.root(), r1);

    let root = tree.root();
    for idx in [5u32, 40_000, 6, 0, 65_535] {
        let path = tree.path(idx);
        assert_eq!(path.len(), 16);
        assert!(
            verify_path(root, tree.leaf(idx), idx, &path),
            "real path of {idx}"
        );
        let mut bad = path.clone();
        bad[idx as usize % 16] += Fr::from(1u64);
        assert!(
            !verify_path(root, tree.leaf(idx), idx, &bad),
            "tampered sibling of {idx}"
        );
        if tree.leaf(idx) != tree.leaf(idx ^ 1) {
            assert!(
                !verify_path(root, tree.leaf(idx), idx ^ 1, &path),
                "wrong index for {idx}"
            );
        }
        assert!(
            !verify_path(root, leaf_hash(7, 7), idx, &path),
            "wrong leaf for {idx}"
        );
    }
    // Setting a leaf back to empty restores the earlier root and prunes storage.
    tree.set_leaf(40_000, leaf_hash(0, 0));
    assert_eq!(tree.root(), r1);
    assert_eq!(compute_root(tree.leaf(5), 5, &tree.path(5)), r1);
}

#[test]
fn depth_32_is_sparse_and_works() {
    let mut tree = SparseMerkleTree::new(32).unwrap();
    tree.set_leaf(u32::MAX, leaf_hash(3, 0));
    tree.set_leaf(0, leaf_hash(4, 0));
    let root = tree.root();
    assert!(verify_path(
        root,
        leaf_hash(3, 0),
        u32::MAX,
        &tree.path(u32::MAX)
    ));
    assert!(verify_path(root, leaf_hash(4, 0), 0, &tree.path(0)));
    assert!(SparseMerkleTree::new(0).is_none());
    assert!(SparseMerkleTree::new(33).is_none());
}

#[test]
fn uniform_prefix_equals_incremental() {
    for (depth, count) in [(1u8, 1u32), (1, 2), (5, 13), (5, 32), (6, 1), (16, 64)] {
        let leaf = leaf_hash(1000, 0);
        let bulk = SparseMerkleTree::with_uniform_prefix(depth, count, leaf).unwrap();
        let mut inc = SparseMerkleTree::new(depth).unwrap();
        for i in 0..count {
            inc.set_leaf(i, leaf);
        }
        assert_eq!(bulk.root(), inc.root(), "depth {depth} count {count}");
        for i in [0, count - 1, count] {
            if u64::from(i) < 1 << depth {
                assert_eq!(bulk.path(i), inc.path(i));
            }
        }
    }
}
