//! The batch input: a stateless witness of one batch, and its binary encoding.
//!
//! Layout (version 1), all integers little-endian, field elements 32-byte big-endian
//! canonical (`< r`):
//!
//! ```text
//! header (50 bytes):
//!   magic    4   b"PMDB"
//!   version  1   0x01
//!   depth    1   1..=32
//!   number   8   u64 batch number
//!   old_root 32  Fr
//!   count    4   u32 number of transfers, <= 2^20
//! count records of 56 + 64 * depth bytes each:
//!   from u32 | to u32 | amount u64 | nonce u64
//!   sender_balance u64 | sender_nonce u64 | sender_path depth x Fr (bottom-up)
//!   receiver_balance u64 | receiver_nonce u64 | receiver_path depth x Fr (bottom-up)
//! ```
//!
//! Paths have exactly `depth` siblings, so no per-path length is stored. Nothing may follow
//! the last record.

use crate::poseidon::{digest_to_fr, fr_to_digest};
use crate::transfer::{Account, Transfer};
use crate::tree::{MAX_DEPTH, MIN_DEPTH};
use ark_bn254::Fr;
use proofmill_types::Digest;

/// First bytes of every encoded batch input.
pub const MAGIC: [u8; 4] = *b"PMDB";
/// Current format version.
pub const VERSION: u8 = 1;
/// Most transfers a batch input may declare; bounds decoding work and memory.
pub const MAX_TRANSFERS: u32 = 1 << 20;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 4 + 1 + 1 + 8 + 32 + 4;

/// Encoded size of one transfer record at `depth`.
pub fn record_len(depth: u8) -> usize {
    56 + 64 * usize::from(depth)
}

/// One transfer with everything needed to check and apply it without the state.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TransferWitness {
    pub transfer: Transfer,
    /// Sender's leaf preimage before the transfer.
    pub sender: Account,
    /// Sender's siblings (bottom-up) against the root before this transfer.
    pub sender_path: Vec<Fr>,
    /// Receiver's leaf preimage before the transfer.
    pub receiver: Account,
    /// Receiver's siblings (bottom-up) against the root after the sender's leaf is updated;
    /// one of them changed with the sender's update, hence the second path.
    pub receiver_path: Vec<Fr>,
}

/// Everything the `exec` backend and the circuit need to re-execute one batch.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct BatchInput {
    /// Batch number (bound by the commitment).
    pub number: u64,
    /// Tree depth; every path has this many siblings.
    pub depth: u8,
    /// State root before the batch.
    pub old_root: Fr,
    /// Transfers in execution order, each with its witness.
    pub transfers: Vec<TransferWitness>,
}

/// Why bytes are not a valid batch input encoding.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("input too short for the header: {len} bytes, need {HEADER_LEN}")]
    TooShort { len: usize },
    #[error("bad magic: not a proofmill devnet batch input")]
    BadMagic,
    #[error("unsupported batch input version {0} (supported: {VERSION})")]
    UnsupportedVersion(u8),
    #[error("tree depth {0} outside {MIN_DEPTH}..={MAX_DEPTH}")]
    BadDepth(u8),
    #[error("{0} transfers declared, at most {MAX_TRANSFERS} allowed")]
    TooManyTransfers(u32),
    #[error("body is {got} bytes, but {count} transfers at depth {depth} need {expected}")]
    LengthMismatch {
        count: u32,
        depth: u8,
        expected: u64,
        got: u64,
    },
    #[error("non-canonical field element at byte offset {offset}")]
    NonCanonical { offset: usize },
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    // Lengths are validated up front, so running short here means a bug in the length check;
    // callers still get an error rather than a panic.
    fn take<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or(DecodeError::TooShort {
            len: self.bytes.len(),
        })?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take::<1>()?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.take()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.take()?))
    }
    fn fr(&mut self) -> Result<Fr, DecodeError> {
        let offset = self.pos;
        digest_to_fr(&Digest(self.take()?)).ok_or(DecodeError::NonCanonical { offset })
    }
    fn account(&mut self) -> Result<Account, DecodeError> {
        Ok(Account {
            balance: self.u64()?,
            nonce: self.u64()?,
        })
    }
    fn path(&mut self, depth: u8) -> Result<Vec<Fr>, DecodeError> {
        (0..depth).map(|_| self.fr()).collect()
    }
}

impl BatchInput {
    /// Encodes in the layout described in the module docs. Paths must have `depth` siblings
    /// each (as [`crate::Devnet`] produces them); anything else will not decode.
    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(HEADER_LEN + self.transfers.len() * record_len(self.depth));
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(self.depth);
        out.extend_from_slice(&self.number.to_le_bytes());
        out.extend_from_slice(&fr_to_digest(self.old_root).0);
        out.extend_from_slice(&(self.transfers.len() as u32).to_le_bytes());
        for w in &self.transfers {
            let t = &w.transfer;
            out.extend_from_slice(&t.from.to_le_bytes());
            out.extend_from_slice(&t.to.to_le_bytes());
            out.extend_from_slice(&t.amount.to_le_bytes());
            out.extend_from_slice(&t.nonce.to_le_bytes());
            for (account, path) in [(&w.sender, &w.sender_path), (&w.receiver, &w.receiver_path)] {
                out.extend_from_slice(&account.balance.to_le_bytes());
                out.extend_from_slice(&account.nonce.to_le_bytes());
                for sibling in path {
                    out.extend_from_slice(&fr_to_digest(*sibling).0);
                }
            }
        }
        out
    }

    /// Strict inverse of [`BatchInput::encode`]: exactly one accepted encoding per input.
    /// Never panics; the declared count is checked against the length before allocating.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < HEADER_LEN {
            return Err(DecodeError::TooShort { len: bytes.len() });
        }
        let mut r = Reader { bytes, pos: 0 };
        if r.take::<4>()? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let depth = r.u8()?;
        if !(MIN_DEPTH..=MAX_DEPTH).contains(&depth) {
            return Err(DecodeError::BadDepth(depth));
        }
        let number = r.u64()?;
        let old_root = r.fr()?;
        let count = r.u32()?;
        if count > MAX_TRANSFERS {
            return Err(DecodeError::TooManyTransfers(count));
        }
        let expected = u64::from(count) * record_len(depth) as u64;
        let got = (bytes.len() - HEADER_LEN) as u64;
        if expected != got {
            return Err(DecodeError::LengthMismatch {
                count,
                depth,
                expected,
                got,
            });
        }
        let mut transfers = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let transfer = Transfer {
                from: r.u32()?,
                to: r.u32()?,
                amount: r.u64()?,
                nonce: r.u64()?,
            };
            let sender = r.account()?;
            let sender_path = r.path(depth)?;
            let receiver = r.account()?;
            let receiver_path = r.path(depth)?;
            transfers.push(TransferWitness {
                transfer,
                sender,
                sender_path,
                receiver,
                receiver_path,
            });
        }
        Ok(BatchInput {
            number,
            depth,
            old_root,
            transfers,
        })
    }
}
