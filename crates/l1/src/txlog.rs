//! Append-only log of the transactions the embedded L1 executed.
//!
//! File: the 8-byte magic `PML1TXv1`, then records `len: u32 LE ‖ payload ‖ check` where
//! `check` is the first 8 bytes of `keccak256(len ‖ payload)`. A record is appended and
//! fsynced before its state is committed in memory. On open, a torn last record (short, or
//! with a bad checksum and nothing after it) is dropped and truncated away; a bad record
//! followed by more data is corruption and an error.
//!
//! The target byte of a record is 0 (create) or 1 (call); a transaction that carries ETH uses
//! 2 (create) or 3 (call) followed by the 32-byte big-endian value, so logs written before
//! value transfers existed read the same.

use crate::{L1Error, Result};
use alloy::primitives::{Address, U256, keccak256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"PML1TXv1";
const CHECK_LEN: usize = 8;
/// Larger lengths can only come from a torn or corrupt length prefix.
const MAX_RECORD: usize = 64 << 20;

/// One executed transaction and what it produced (checked again on replay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogRecord {
    pub block: u64,
    pub caller: Address,
    pub nonce: u64,
    pub gas_limit: u64,
    /// `None`: contract creation.
    pub to: Option<Address>,
    /// Wei sent with the transaction.
    pub value: U256,
    pub data: Vec<u8>,
    pub success: bool,
    pub gas_used: u64,
}

impl LogRecord {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(70 + self.data.len());
        out.extend_from_slice(&self.block.to_le_bytes());
        out.extend_from_slice(self.caller.as_slice());
        out.extend_from_slice(&self.nonce.to_le_bytes());
        out.extend_from_slice(&self.gas_limit.to_le_bytes());
        let with_value = if self.value.is_zero() { 0 } else { 2 };
        match self.to {
            None => out.push(with_value),
            Some(to) => {
                out.push(with_value + 1);
                out.extend_from_slice(to.as_slice());
            }
        }
        if !self.value.is_zero() {
            out.extend_from_slice(&self.value.to_be_bytes::<32>());
        }
        out.push(self.success as u8);
        out.extend_from_slice(&self.gas_used.to_le_bytes());
        out.extend_from_slice(&self.data);
        out
    }

    fn decode(mut b: &[u8]) -> Option<Self> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
            if b.len() < n {
                return None;
            }
            let (head, tail) = b.split_at(n);
            *b = tail;
            Some(head)
        }
        let u64le = |s: &[u8]| u64::from_le_bytes(s.try_into().unwrap());
        let block = u64le(take(&mut b, 8)?);
        let caller = Address::from_slice(take(&mut b, 20)?);
        let nonce = u64le(take(&mut b, 8)?);
        let gas_limit = u64le(take(&mut b, 8)?);
        let tag = take(&mut b, 1)?[0];
        let to = match tag {
            0 | 2 => None,
            1 | 3 => Some(Address::from_slice(take(&mut b, 20)?)),
            _ => return None,
        };
        let value = if tag >= 2 {
            let v = U256::from_be_slice(take(&mut b, 32)?);
            if v.is_zero() {
                return None; // a zero value is written without one
            }
            v
        } else {
            U256::ZERO
        };
        let success = match take(&mut b, 1)?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let gas_used = u64le(take(&mut b, 8)?);
        Some(LogRecord {
            block,
            caller,
            nonce,
            gas_limit,
            to,
            value,
            data: b.to_vec(),
            success,
            gas_used,
        })
    }
}

fn check(len: &[u8], payload: &[u8]) -> [u8; CHECK_LEN] {
    let mut buf = Vec::with_capacity(len.len() + payload.len());
    buf.extend_from_slice(len);
    buf.extend_from_slice(payload);
    keccak256(&buf).0[..CHECK_LEN].try_into().unwrap()
}

pub(crate) struct TxLog {
    file: File,
    path: PathBuf,
}

impl TxLog {
    /// Opens (creating if needed) the log and returns the intact records.
    pub(crate) fn open(path: &Path) -> Result<(TxLog, Vec<LogRecord>)> {
        let err = |msg: String| L1Error::Log {
            path: path.display().to_string(),
            msg,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| err(format!("open: {e}")))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| err(format!("read: {e}")))?;

        let mut records = Vec::new();
        let valid_len = if bytes.len() < MAGIC.len() {
            // Empty, or a crash while writing the header: start over.
            if !MAGIC.starts_with(&bytes) {
                return Err(err("not a proofmill L1 log (bad magic)".into()));
            }
            0
        } else {
            if &bytes[..MAGIC.len()] != MAGIC {
                return Err(err("not a proofmill L1 log (bad magic)".into()));
            }
            let mut pos = MAGIC.len();
            loop {
                let rest = &bytes[pos..];
                if rest.is_empty() {
                    break;
                }
                if rest.len() < 4 {
                    break; // torn length prefix
                }
                let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
                if len > MAX_RECORD || rest.len() < 4 + len + CHECK_LEN {
                    break; // torn record
                }
                let end = 4 + len + CHECK_LEN;
                let payload = &rest[4..4 + len];
                let ok = rest[4 + len..end] == check(&rest[..4], payload);
                let rec = if ok { LogRecord::decode(payload) } else { None };
                match rec {
                    Some(rec) => {
                        records.push(rec);
                        pos += end;
                    }
                    None if end == rest.len() => break, // torn last record
                    None => {
                        return Err(err(format!(
                            "corrupt record at offset {pos} followed by {} more bytes",
                            rest.len() - end
                        )));
                    }
                }
            }
            pos
        };
        if valid_len < bytes.len() || bytes.len() < MAGIC.len() {
            if valid_len < bytes.len() {
                tracing::warn!(
                    path = %path.display(),
                    dropped = bytes.len() - valid_len,
                    "L1 log: dropping a torn trailing record"
                );
            }
            file.set_len(valid_len as u64)
                .map_err(|e| err(format!("truncate: {e}")))?;
            if valid_len == 0 {
                file.seek(SeekFrom::Start(0))
                    .map_err(|e| err(format!("seek: {e}")))?;
                file.write_all(MAGIC)
                    .map_err(|e| err(format!("write: {e}")))?;
            }
            file.sync_all().map_err(|e| err(format!("sync: {e}")))?;
        }
        file.seek(SeekFrom::End(0))
            .map_err(|e| err(format!("seek: {e}")))?;
        Ok((
            TxLog {
                file,
                path: path.to_path_buf(),
            },
            records,
        ))
    }

    /// Appends a record durably (written and fsynced before returning).
    pub(crate) fn append(&mut self, rec: &LogRecord) -> Result<()> {
        let payload = rec.encode();
        let len = (payload.len() as u32).to_le_bytes();
        let mut buf = Vec::with_capacity(4 + payload.len() + CHECK_LEN);
        buf.extend_from_slice(&len);
        buf.extend_from_slice(&payload);
        buf.extend_from_slice(&check(&len, &payload));
        let res = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data());
        res.map_err(|e| L1Error::Log {
            path: self.path.display().to_string(),
            msg: format!("append: {e}"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u64) -> LogRecord {
        LogRecord {
            block: i,
            caller: Address::repeat_byte(7),
            nonce: i,
            gas_limit: 1_000_000,
            to: if i == 0 {
                None
            } else {
                Some(Address::repeat_byte(9))
            },
            // Some records carry ETH (a call or a create with value).
            value: if i % 3 == 2 {
                U256::from(i) << 70
            } else {
                U256::ZERO
            },
            data: vec![i as u8; 40 + i as usize],
            success: i.is_multiple_of(2),
            gas_used: 21_000 + i,
        }
    }

    #[test]
    fn records_with_and_without_value_decode_as_written() {
        for to in [None, Some(Address::repeat_byte(9))] {
            for value in [U256::ZERO, U256::from(1), U256::MAX] {
                let r = LogRecord {
                    to,
                    value,
                    ..rec(3)
                };
                assert_eq!(LogRecord::decode(&r.encode()), Some(r));
            }
        }
        // Without value the encoding is the one written before value transfers existed.
        assert_eq!(rec(1).encode()[44], 1);
        assert_eq!(rec(0).encode()[44], 0);
    }

    #[test]
    fn round_trip_and_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l1.log");
        {
            let (mut log, recs) = TxLog::open(&path).unwrap();
            assert!(recs.is_empty());
            for i in 0..3 {
                log.append(&rec(i)).unwrap();
            }
        }
        let (_, recs) = TxLog::open(&path).unwrap();
        assert_eq!(recs, (0..3).map(rec).collect::<Vec<_>>());

        // Tear the last record at every possible point: the first two always survive.
        let full = std::fs::read(&path).unwrap();
        let last_len = 4 + rec(2).encode().len() + CHECK_LEN;
        for cut in 1..last_len {
            std::fs::write(&path, &full[..full.len() - cut]).unwrap();
            let (mut log, recs) = TxLog::open(&path).unwrap();
            assert_eq!(recs, (0..2).map(rec).collect::<Vec<_>>(), "cut {cut}");
            log.append(&rec(5)).unwrap();
            drop(log);
            let (_, recs) = TxLog::open(&path).unwrap();
            assert_eq!(recs, vec![rec(0), rec(1), rec(5)], "cut {cut}");
        }

        // A flipped byte in the last record's checksum: torn, dropped.
        let mut bad = full.clone();
        *bad.last_mut().unwrap() ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert_eq!(TxLog::open(&path).unwrap().1.len(), 2);

        // A flipped byte in the middle record: corruption, not silently dropped.
        let mut bad = full.clone();
        bad[MAGIC.len() + 4 + rec(0).encode().len() + CHECK_LEN + 10] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        assert!(matches!(TxLog::open(&path), Err(L1Error::Log { .. })));

        // Torn header.
        std::fs::write(&path, &MAGIC[..3]).unwrap();
        assert!(TxLog::open(&path).unwrap().1.is_empty());
        assert_eq!(std::fs::read(&path).unwrap(), MAGIC);
        std::fs::write(&path, b"garbage!!").unwrap();
        assert!(TxLog::open(&path).is_err());
    }
}
