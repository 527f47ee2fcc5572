//! Snapshots: a devnet restored from one continues exactly like the original, and bytes
//! that are not a snapshot of this devnet are refused.

use super::small;
use crate::tree::SparseMerkleTree;
use crate::{Devnet, DevnetConfig, SnapshotError, leaf_hash};

#[test]
fn restored_devnet_continues_the_same_chain() {
    let config = DevnetConfig {
        seed: 5,
        depth: 12,
        accounts: 16,
        batch_size: 8,
        ..DevnetConfig::default()
    };
    let mut a = Devnet::new(config).unwrap();
    for _ in 0..40 {
        a.produce_batch();
    }
    let snap = a.snapshot();
    let mut b = Devnet::from_snapshot(config, &snap).unwrap();
    assert_eq!(b.state_root(), a.state_root());
    assert_eq!(b.next_batch_number(), 41);
    for _ in 0..5 {
        assert_eq!(b.produce_batch(), a.produce_batch());
    }
    // A snapshot of a fresh devnet is genesis.
    let g = Devnet::new(config).unwrap();
    let r = Devnet::from_snapshot(config, &g.snapshot()).unwrap();
    assert_eq!(r.state_root(), g.state_root());
    assert_eq!(r.next_batch_number(), 1);
}

#[test]
fn bulk_tree_matches_leaf_by_leaf() {
    let leaves = [(0u32, 3u64), (1, 3), (2, 3), (7, 1), (200, 9), (255, 4)];
    let mut one = SparseMerkleTree::new(8).unwrap();
    for (i, b) in leaves {
        one.set_leaf(i, leaf_hash(b, 0));
    }
    let bulk = SparseMerkleTree::from_leaves(8, leaves.iter().map(|&(i, b)| (i, leaf_hash(b, 0))))
        .unwrap();
    assert_eq!(bulk.root(), one.root());
    for i in [0, 1, 6, 7, 200, 254, 255] {
        assert_eq!(bulk.path(i), one.path(i), "path of {i}");
    }
    assert!(SparseMerkleTree::from_leaves(8, [(256, leaf_hash(1, 0))]).is_none());
    assert!(
        SparseMerkleTree::from_leaves(8, [(3, leaf_hash(1, 0)), (3, leaf_hash(2, 0))]).is_none()
    );
}

#[test]
fn bad_snapshots_are_refused() {
    let mut d = small(1, 8, 4);
    for _ in 0..6 {
        d.produce_batch();
    }
    let config = *d.config();
    let snap = d.snapshot();
    assert_eq!(
        Devnet::from_snapshot(config, &snap[..5]).unwrap_err(),
        SnapshotError::BadMagic
    );
    let mut v = snap.clone();
    v[8] = 9;
    assert_eq!(
        Devnet::from_snapshot(config, &v).unwrap_err(),
        SnapshotError::Version(9)
    );
    let other = DevnetConfig { depth: 9, ..config };
    assert!(matches!(
        Devnet::from_snapshot(other, &snap),
        Err(SnapshotError::WrongDepth {
            expected: 9,
            got: 8
        })
    ));
    // Truncated body, and a count that promises more than the bytes hold (no allocation
    // follows the count).
    assert!(matches!(
        Devnet::from_snapshot(config, &snap[..snap.len() - 1]),
        Err(SnapshotError::Length { .. })
    ));
    let mut huge = snap.clone();
    huge[18..22].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        Devnet::from_snapshot(config, &huge),
        Err(SnapshotError::Length { .. })
    ));
    // An account index outside the tree.
    let mut out = snap.clone();
    let last = out.len() - 20;
    out[last..last + 4].copy_from_slice(&300u32.to_le_bytes());
    assert!(matches!(
        Devnet::from_snapshot(config, &out),
        Err(SnapshotError::BadAccount { index: 300 })
    ));
    // A flipped balance decodes but yields another root: the caller's root check catches it.
    let mut flipped = snap.clone();
    let first_balance = 22 + 4;
    flipped[first_balance] ^= 1;
    let f = Devnet::from_snapshot(config, &flipped).unwrap();
    assert_ne!(f.state_root(), d.state_root());
}
