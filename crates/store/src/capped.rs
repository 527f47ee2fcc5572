//! Bytes taken in piece by piece (a batch input streamed by a client, a download), under a
//! cap.

use bytes::Bytes;

/// The bytes would pass the cap of a [`Capped`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("over the size cap")]
pub struct OverCap;

/// An input taken in piece by piece, never holding more than `max` bytes: it grows by
/// doubling as a `Vec` would, but never past the cap (a 64 MiB input under a 64 MiB cap
/// takes 64 MiB, not the 128 MiB plain doubling may reserve).
pub struct Capped {
    data: Vec<u8>,
    max: u64,
}

impl Capped {
    pub fn new(max: u64) -> Capped {
        Capped {
            data: Vec::new(),
            max,
        }
    }

    /// Appends `piece`; [`OverCap`] (and nothing appended) when the bytes would pass the cap.
    pub fn push(&mut self, piece: &[u8]) -> Result<(), OverCap> {
        let needed = self.data.len() + piece.len();
        if needed as u64 > self.max {
            return Err(OverCap);
        }
        if needed > self.data.capacity() {
            let target = needed
                .max(self.data.capacity() * 2)
                .min(usize::try_from(self.max).unwrap_or(usize::MAX));
            self.data.reserve_exact(target - self.data.len());
        }
        self.data.extend_from_slice(piece);
        Ok(())
    }

    pub fn into_bytes(self) -> Bytes {
        self.data.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_input_grows_to_the_cap_and_no_further() {
        let mut c = Capped::new(10);
        for _ in 0..3 {
            c.push(b"abc").unwrap();
        }
        assert_eq!(c.push(b"de"), Err(OverCap), "11 bytes");
        c.push(b"d").unwrap();
        assert!(c.data.capacity() <= 10, "{}", c.data.capacity());
        assert_eq!(&c.into_bytes()[..], b"abcabcabcd");
    }
}
