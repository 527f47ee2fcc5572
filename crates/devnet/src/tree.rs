//! Sparse binary Merkle tree of account leaves.
//!
//! Leaf `i` holds `hash([balance, nonce])` of account `i`; an account never touched is
//! `(0, 0)`, so the empty leaf is `hash([0, 0])` and a transfer to a fresh account needs no
//! special case (in the circuit either). Interior node = `hash([left, right])`. Only nodes that
//! differ from the empty subtree of their height are stored, so depth 32 costs nothing extra.

use crate::poseidon::{fr_from_u64, hash};
use ark_bn254::Fr;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Smallest supported tree depth.
pub const MIN_DEPTH: u8 = 1;
/// Largest supported tree depth: account indices are `u32`.
pub const MAX_DEPTH: u8 = 32;

/// Leaf commitment of an account: `hash([balance, nonce])`.
pub fn leaf_hash(balance: u64, nonce: u64) -> Fr {
    hash(&[fr_from_u64(balance), fr_from_u64(nonce)])
}

/// Roots of empty subtrees: `empty_subtree(0)` is the empty leaf, `empty_subtree(h)` is
/// `hash([e, e])` with `e = empty_subtree(h - 1)`. Computed once for all depths.
pub fn empty_subtree(height: u8) -> Fr {
    static EMPTY: OnceLock<Vec<Fr>> = OnceLock::new();
    let table = EMPTY.get_or_init(|| {
        let mut v = vec![leaf_hash(0, 0)];
        for h in 0..usize::from(MAX_DEPTH) {
            v.push(hash(&[v[h], v[h]]));
        }
        v
    });
    table[usize::from(height.min(MAX_DEPTH))]
}

/// Number of leaves of a tree of `depth` levels (`2^depth`).
pub fn capacity(depth: u8) -> u64 {
    1u64 << depth.min(MAX_DEPTH)
}

/// Root implied by `leaf` at `index` with `siblings` listed bottom-up.
///
/// At level `l`, bit `l` of `index` says which side the running node is on: 0 means it is the
/// left child (`hash([node, sibling])`), 1 the right child (`hash([sibling, node])`). The
/// circuit uses the same bit decomposition of the index.
pub fn compute_root(leaf: Fr, index: u32, siblings: &[Fr]) -> Fr {
    let mut node = leaf;
    for (level, sibling) in siblings.iter().enumerate() {
        let bit = u64::from(index).checked_shr(level as u32).unwrap_or(0) & 1;
        node = if bit == 0 {
            hash(&[node, *sibling])
        } else {
            hash(&[*sibling, node])
        };
    }
    node
}

/// Whether `siblings` prove `leaf` at `index` under `root`.
pub fn verify_path(root: Fr, leaf: Fr, index: u32, siblings: &[Fr]) -> bool {
    compute_root(leaf, index, siblings) == root
}

/// The account tree; stores only nodes that are not empty subtrees.
#[derive(Clone, Debug)]
pub struct SparseMerkleTree {
    depth: u8,
    /// `(height, index at that height)`; height 0 is the leaves, height `depth` the root.
    nodes: HashMap<(u8, u32), Fr>,
}

impl SparseMerkleTree {
    /// An all-empty tree; `None` unless `1 <= depth <= 32`.
    pub fn new(depth: u8) -> Option<Self> {
        (MIN_DEPTH..=MAX_DEPTH)
            .contains(&depth)
            .then(|| SparseMerkleTree {
                depth,
                nodes: HashMap::new(),
            })
    }

    /// A tree whose leaves `0..count` all equal `leaf`, the rest empty (genesis). Identical
    /// sibling pairs are hashed once, so this costs O(depth) hashes plus O(count) inserts.
    pub fn with_uniform_prefix(depth: u8, count: u32, leaf: Fr) -> Option<Self> {
        let mut tree = Self::new(depth)?;
        let mut n = u64::from(count).min(capacity(depth));
        if leaf != empty_subtree(0) {
            tree.nodes.extend((0..n).map(|i| ((0, i as u32), leaf)));
        }
        for h in 0..depth {
            let next = n.div_ceil(2);
            let mut memo: Option<(Fr, Fr, Fr)> = None;
            for i in 0..next {
                let (l, r) = (
                    tree.node(h, (2 * i) as u32),
                    tree.node(h, (2 * i + 1) as u32),
                );
                let v = match memo {
                    Some((ml, mr, mv)) if ml == l && mr == r => mv,
                    _ => hash(&[l, r]),
                };
                memo = Some((l, r, v));
                if v != empty_subtree(h + 1) {
                    tree.nodes.insert((h + 1, i as u32), v);
                }
            }
            n = next;
        }
        Some(tree)
    }

    /// Number of levels below the root.
    pub fn depth(&self) -> u8 {
        self.depth
    }

    fn node(&self, height: u8, index: u32) -> Fr {
        self.nodes
            .get(&(height, index))
            .copied()
            .unwrap_or_else(|| empty_subtree(height))
    }

    /// Current root.
    pub fn root(&self) -> Fr {
        self.node(self.depth, 0)
    }

    /// Leaf at `index` (the empty leaf if never set or out of range).
    pub fn leaf(&self, index: u32) -> Fr {
        self.node(0, index)
    }

    /// Siblings of leaf `index`, bottom-up, for [`compute_root`]/[`verify_path`].
    pub fn path(&self, index: u32) -> Vec<Fr> {
        (0..self.depth)
            .map(|h| {
                let at = u64::from(index) >> h;
                self.node(h, (at ^ 1) as u32)
            })
            .collect()
    }

    /// Sets leaf `index` and rehashes its path to the root. Indices outside `2^depth` are a
    /// caller bug (they would alias another leaf), so they are ignored and `false` returned.
    pub fn set_leaf(&mut self, index: u32, leaf: Fr) -> bool {
        if u64::from(index) >= capacity(self.depth) {
            return false;
        }
        let mut node = leaf;
        let mut at = u64::from(index);
        for h in 0..=self.depth {
            // Dropping empty nodes keeps the map proportional to the touched accounts.
            if node == empty_subtree(h) {
                self.nodes.remove(&(h, at as u32));
            } else {
                self.nodes.insert((h, at as u32), node);
            }
            if h == self.depth {
                break;
            }
            let sibling = self.node(h, (at ^ 1) as u32);
            node = if at & 1 == 0 {
                hash(&[node, sibling])
            } else {
                hash(&[sibling, node])
            };
            at >>= 1;
        }
        true
    }
}

impl SparseMerkleTree {
    /// A tree holding `leaves` (`(index, leaf)`, strictly ascending indices below `2^depth`),
    /// the rest empty; `None` on a bad depth, an index out of range or out of order. Builds
    /// level by level, so it costs one hash per non-empty node (identical sibling pairs, as
    /// in a genesis prefix, are hashed once), instead of `depth` hashes per leaf.
    pub fn from_leaves(depth: u8, leaves: impl IntoIterator<Item = (u32, Fr)>) -> Option<Self> {
        let mut tree = Self::new(depth)?;
        let mut level: Vec<(u64, Fr)> = Vec::new();
        for (i, leaf) in leaves {
            let i = u64::from(i);
            if i >= capacity(depth) || level.last().is_some_and(|(prev, _)| *prev >= i) {
                return None;
            }
            level.push((i, leaf));
        }
        level.retain(|(_, leaf)| *leaf != empty_subtree(0));
        for (i, leaf) in &level {
            tree.nodes.insert((0, *i as u32), *leaf);
        }
        for h in 0..depth {
            let mut next = Vec::with_capacity(level.len().div_ceil(2));
            let mut memo: Option<(Fr, Fr, Fr)> = None;
            let mut k = 0;
            while k < level.len() {
                let (i, node) = level[k];
                let (l, r) = if i & 1 == 0 {
                    match level.get(k + 1) {
                        Some(&(j, right)) if j == i + 1 => {
                            k += 1;
                            (node, right)
                        }
                        _ => (node, empty_subtree(h)),
                    }
                } else {
                    (empty_subtree(h), node)
                };
                k += 1;
                let v = match memo {
                    Some((ml, mr, mv)) if ml == l && mr == r => mv,
                    _ => hash(&[l, r]),
                };
                memo = Some((l, r, v));
                if v != empty_subtree(h + 1) {
                    tree.nodes.insert((h + 1, (i >> 1) as u32), v);
                    next.push((i >> 1, v));
                }
            }
            level = next;
        }
        Some(tree)
    }
}
