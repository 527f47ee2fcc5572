//! Reassembly of a chunked task input (`input_chunk` messages).

use std::collections::BTreeMap;

/// Collects the chunks of one input. Chunks are placed by offset, so a chunk that arrives
/// early waits until the gap before it is filled; overlaps, chunks past `input_size` and a
/// `last` chunk that does not end at `input_size` are errors.
pub(crate) struct ChunkAssembler {
    expected: u64,
    buf: Vec<u8>,
    pending: BTreeMap<u64, Vec<u8>>,
    pending_bytes: u64,
    end: Option<u64>,
}

impl ChunkAssembler {
    /// `expected` must already be checked against the prover's limit.
    pub fn new(expected: u64) -> Self {
        // Do not trust the announced size for the up-front allocation beyond a few MiB.
        let initial = expected.min(8 << 20) as usize;
        ChunkAssembler {
            expected,
            buf: Vec::with_capacity(initial),
            pending: BTreeMap::new(),
            pending_bytes: 0,
            end: None,
        }
    }

    pub fn received(&self) -> u64 {
        self.buf.len() as u64 + self.pending_bytes
    }

    /// Adds a chunk; `Ok(true)` once the input is complete.
    pub fn push(&mut self, offset: u64, data: Vec<u8>, last: bool) -> Result<bool, String> {
        let len = data.len() as u64;
        let end = offset
            .checked_add(len)
            .ok_or_else(|| format!("chunk at offset {offset} overflows"))?;
        if end > self.expected {
            return Err(format!(
                "chunk [{offset}, {end}) exceeds the announced input_size {}",
                self.expected
            ));
        }
        if last {
            if end != self.expected {
                return Err(format!(
                    "last chunk ends at {end}, but input_size is {}",
                    self.expected
                ));
            }
            if self.end.is_some() {
                return Err("two chunks marked last".to_string());
            }
            self.end = Some(end);
        }
        let have = self.buf.len() as u64;
        if offset < have {
            return Err(format!(
                "chunk at offset {offset} overlaps data already received up to {have}"
            ));
        }
        if offset == have {
            self.buf.extend_from_slice(&data);
        } else {
            if self.pending.contains_key(&offset) {
                return Err(format!("duplicate chunk at offset {offset}"));
            }
            self.pending_bytes += len;
            if self.pending_bytes > self.expected {
                return Err("chunks overlap".to_string());
            }
            self.pending.insert(offset, data);
        }
        while let Some(entry) = self.pending.first_entry() {
            let at = *entry.key();
            let have = self.buf.len() as u64;
            if at > have {
                break;
            }
            if at < have {
                return Err(format!(
                    "chunk at offset {at} overlaps data already received up to {have}"
                ));
            }
            let data = entry.remove();
            self.pending_bytes -= data.len() as u64;
            self.buf.extend_from_slice(&data);
        }
        Ok(self.end.is_some_and(|e| self.buf.len() as u64 == e))
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order() {
        let mut a = ChunkAssembler::new(6);
        assert_eq!(a.push(0, b"abc".to_vec(), false), Ok(false));
        assert_eq!(a.push(3, b"def".to_vec(), true), Ok(true));
        assert_eq!(a.into_bytes(), b"abcdef");
    }

    #[test]
    fn out_of_order() {
        let mut a = ChunkAssembler::new(9);
        assert_eq!(a.push(6, b"ghi".to_vec(), true), Ok(false));
        assert_eq!(a.push(3, b"def".to_vec(), false), Ok(false));
        assert_eq!(a.received(), 6);
        assert_eq!(a.push(0, b"abc".to_vec(), false), Ok(true));
        assert_eq!(a.into_bytes(), b"abcdefghi");
    }

    #[test]
    fn empty_input() {
        let mut a = ChunkAssembler::new(0);
        assert_eq!(a.push(0, Vec::new(), true), Ok(true));
        assert!(a.into_bytes().is_empty());
    }

    #[test]
    fn errors() {
        assert!(
            ChunkAssembler::new(4)
                .push(2, b"abc".to_vec(), false)
                .is_err()
        );
        assert!(
            ChunkAssembler::new(4)
                .push(0, b"abc".to_vec(), true)
                .is_err()
        );
        assert!(
            ChunkAssembler::new(4)
                .push(u64::MAX, b"a".to_vec(), false)
                .is_err()
        );
        let mut a = ChunkAssembler::new(6);
        a.push(0, b"abc".to_vec(), false).unwrap();
        assert!(a.push(2, b"cde".to_vec(), false).is_err());
        let mut a = ChunkAssembler::new(6);
        a.push(4, b"ef".to_vec(), true).unwrap();
        assert!(a.push(4, b"ef".to_vec(), false).is_err());
        let mut a = ChunkAssembler::new(6);
        a.push(3, b"def".to_vec(), true).unwrap();
        a.push(2, b"xy".to_vec(), false).unwrap();
        assert!(
            a.push(0, b"ab".to_vec(), false).is_err(),
            "pending overlap detected"
        );
    }
}
