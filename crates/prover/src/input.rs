//! Reassembly of a chunked task input (`input_chunk` messages).

use std::collections::BTreeMap;

/// Most chunks of one input that may wait for a gap before them to be filled. A coordinator
/// sends an input in order on an ordered stream, so any number is a courtesy; without a
/// bound, a coordinator sending tiny chunks out of order would make the prover keep one map
/// entry per byte of a 1 GiB input. Beyond it the input is refused (an error result).
pub const MAX_CHUNKS_AHEAD: usize = 1024;

/// Collects the chunks of one input. Chunks are placed by offset, so a chunk that arrives
/// early waits until the gap before it is filled; overlaps, chunks past `input_size` and a
/// `last` chunk that does not end at `input_size` are errors, and so is a chunk beyond
/// [`MAX_CHUNKS_AHEAD`] waiting ones.
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
            if self.pending.len() >= MAX_CHUNKS_AHEAD {
                return Err(format!(
                    "more than {MAX_CHUNKS_AHEAD} chunks wait for the data before them"
                ));
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
    fn chunks_waiting_for_a_gap_are_bounded() {
        let n = MAX_CHUNKS_AHEAD as u64;
        let mut a = ChunkAssembler::new(n + 2);
        // Byte 0 missing: every chunk after it waits.
        for offset in 1..=n {
            assert_eq!(a.push(offset, vec![1], false), Ok(false), "chunk {offset}");
        }
        let e = a.push(n + 1, vec![1], true).unwrap_err();
        assert!(e.contains("chunks wait"), "{e}");
        // In order, any number of chunks is fine.
        let mut a = ChunkAssembler::new(3 * n);
        for offset in 0..3 * n {
            let last = offset + 1 == 3 * n;
            assert_eq!(a.push(offset, vec![1], last), Ok(last));
        }
        // Filling the gap takes the waiting ones in, making room again.
        let mut a = ChunkAssembler::new(n + 2);
        for offset in 1..=n {
            a.push(offset, vec![1], false).unwrap();
        }
        assert_eq!(a.push(0, vec![1], false), Ok(false));
        assert_eq!(a.push(n + 1, vec![1], true), Ok(true));
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
