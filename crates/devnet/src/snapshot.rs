//! Snapshots of the committed devnet state, so a restart rebuilds it without replaying the
//! chain from genesis.
//!
//! A snapshot holds the tree depth, the next batch number and every touched account; the
//! tree is rebuilt from the accounts. It carries no checksum of its own: the rebuilt root is a
//! Poseidon commitment to every account, so the caller checks it against the stored batch's
//! state root, which catches corruption and a snapshot of another chain alike. The mempool is
//! not part of it (a restored devnet starts with an empty one).
//!
//! Layout, little-endian: `PMDEVSNP`, version `1` (u8), depth (u8), next batch (u64),
//! account count (u32), then per account in ascending index order: index (u32), balance
//! (u64), nonce (u64).

use crate::sequencer::{ConfigError, Devnet, DevnetConfig};
use crate::transfer::Account;
use crate::tree::{SparseMerkleTree, capacity};
use std::collections::{BTreeMap, VecDeque};

const MAGIC: &[u8; 8] = b"PMDEVSNP";
const VERSION: u8 = 1;
const HEADER: usize = 8 + 1 + 1 + 8 + 4;
const ACCOUNT: usize = 4 + 8 + 8;

/// Why bytes are not a usable snapshot for a devnet config.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a devnet snapshot (bad magic or too short)")]
    BadMagic,
    #[error("unsupported snapshot version {0}")]
    Version(u8),
    #[error("snapshot is of a tree of depth {got}, the devnet's is {expected}")]
    WrongDepth { expected: u8, got: u8 },
    #[error("snapshot says {count} accounts but holds {bytes} bytes of them")]
    Length { count: u32, bytes: usize },
    #[error("snapshot account {index} is out of order or outside the tree")]
    BadAccount { index: u32 },
    #[error("snapshot next batch must be at least 1")]
    BadBatch,
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl Devnet {
    /// The committed state as snapshot bytes (see the module docs).
    pub fn snapshot(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER + ACCOUNT * self.accounts.len());
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.push(self.config.depth);
        out.extend_from_slice(&self.next_batch.to_le_bytes());
        // A u32 index space holds at most 2^32 accounts; the count saturates only past that.
        out.extend_from_slice(&(self.accounts.len().min(u32::MAX as usize) as u32).to_le_bytes());
        for (idx, a) in &self.accounts {
            out.extend_from_slice(&idx.to_le_bytes());
            out.extend_from_slice(&a.balance.to_le_bytes());
            out.extend_from_slice(&a.nonce.to_le_bytes());
        }
        out
    }

    /// A devnet with `config` in the state `bytes` describe (its mempool empty). Checks the
    /// format and the depth; the caller checks [`Devnet::state_root`] against its chain.
    pub fn from_snapshot(config: DevnetConfig, bytes: &[u8]) -> Result<Devnet, SnapshotError> {
        config.validate()?;
        if bytes.len() < HEADER || &bytes[..8] != MAGIC {
            return Err(SnapshotError::BadMagic);
        }
        if bytes[8] != VERSION {
            return Err(SnapshotError::Version(bytes[8]));
        }
        let depth = bytes[9];
        if depth != config.depth {
            return Err(SnapshotError::WrongDepth {
                expected: config.depth,
                got: depth,
            });
        }
        let next_batch = u64::from_le_bytes(bytes[10..18].try_into().expect("8 bytes"));
        if next_batch == 0 {
            return Err(SnapshotError::BadBatch);
        }
        let count = u32::from_le_bytes(bytes[18..22].try_into().expect("4 bytes"));
        let body = &bytes[HEADER..];
        // Checked before anything is allocated: the size follows from the bytes at hand.
        if body.len() as u64 != u64::from(count) * ACCOUNT as u64 {
            return Err(SnapshotError::Length {
                count,
                bytes: body.len(),
            });
        }
        let mut accounts = BTreeMap::new();
        let mut last: Option<u32> = None;
        for rec in body.chunks_exact(ACCOUNT) {
            let idx = u32::from_le_bytes(rec[..4].try_into().expect("4 bytes"));
            if last.is_some_and(|l| l >= idx) || u64::from(idx) >= capacity(depth) {
                return Err(SnapshotError::BadAccount { index: idx });
            }
            last = Some(idx);
            let account = Account {
                balance: u64::from_le_bytes(rec[4..12].try_into().expect("8 bytes")),
                nonce: u64::from_le_bytes(rec[12..20].try_into().expect("8 bytes")),
            };
            accounts.insert(idx, account);
        }
        let tree =
            SparseMerkleTree::from_leaves(depth, accounts.iter().map(|(i, a)| (*i, a.leaf())))
                // Indices were checked above, so this cannot fail; kept as an error, not a panic.
                .ok_or(SnapshotError::BadAccount { index: 0 })?;
        Ok(Devnet {
            config,
            tree,
            accounts,
            pending: VecDeque::new(),
            overlay: BTreeMap::new(),
            next_batch,
        })
    }
}
