//! What a proof request's `inputs_url` points at: one batch's statement and input, in a
//! self-describing binary envelope ([`MarketInputs`]). The request carries the SHA-256 of
//! these bytes (`inputs_digest`), so a network checks what it fetched before it proves.
//!
//! The envelope carries the public values as well as the input: a network proves the
//! statement the rollup will check the proof against, and the input alone does not say it
//! for every proof system.
//!
//! Layout (integers big-endian):
//! `"PMIN"` · format `1u8` · chain id `u64` · batch `u64` · program version (`u16` length,
//! UTF-8) · proof type (`u16` length, UTF-8) · public values (`u32` length) · input (`u64`
//! length). Nothing may follow.

use proofmill_types::Digest;

const MAGIC: &[u8; 4] = b"PMIN";
const FORMAT: u8 = 1;

/// One batch as a proving network gets it.
#[derive(Clone, PartialEq, Eq)]
pub struct MarketInputs {
    pub chain_id: u64,
    pub batch: u64,
    /// The program version provers of this batch register (the coordinator's batch version).
    pub program_version: String,
    /// The proof type wanted (e.g. `exec`, `groth16`).
    pub proof_type: String,
    /// The statement the proof is checked against.
    pub public_values: Vec<u8>,
    /// The batch input the prover reads.
    pub input: Vec<u8>,
}

impl std::fmt::Debug for MarketInputs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketInputs")
            .field("chain_id", &self.chain_id)
            .field("batch", &self.batch)
            .field("program_version", &self.program_version)
            .field("proof_type", &self.proof_type)
            .field("public_values_len", &self.public_values.len())
            .field("input_len", &self.input.len())
            .finish()
    }
}

/// Why bytes are not a [`MarketInputs`] envelope (or one that may be made).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InputsError {
    #[error("not a proof inputs envelope (no PMIN header)")]
    NotAnEnvelope,
    #[error("proof inputs format {0} is not known here (this build reads format 1)")]
    UnknownFormat(u8),
    #[error("proof inputs cut short: {0} missing")]
    Truncated(&'static str),
    #[error("proof inputs: {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("proof inputs: {0} bytes after the input")]
    TrailingBytes(usize),
    #[error("proof inputs: {what} of {len} bytes is over the {max} the format holds")]
    TooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

impl MarketInputs {
    /// The envelope's bytes.
    pub fn encode(&self) -> Result<Vec<u8>, InputsError> {
        let too_long = |what, len, max| InputsError::TooLong { what, len, max };
        let (v, t) = (self.program_version.as_bytes(), self.proof_type.as_bytes());
        let v_len = u16::try_from(v.len())
            .map_err(|_| too_long("program version", v.len(), u16::MAX as usize))?;
        let t_len = u16::try_from(t.len())
            .map_err(|_| too_long("proof type", t.len(), u16::MAX as usize))?;
        let pv_len = u32::try_from(self.public_values.len())
            .map_err(|_| too_long("public values", self.public_values.len(), u32::MAX as usize))?;
        let mut out = Vec::with_capacity(
            4 + 1
                + 16
                + 2
                + v.len()
                + 2
                + t.len()
                + 4
                + self.public_values.len()
                + 8
                + self.input.len(),
        );
        out.extend_from_slice(MAGIC);
        out.push(FORMAT);
        out.extend_from_slice(&self.chain_id.to_be_bytes());
        out.extend_from_slice(&self.batch.to_be_bytes());
        out.extend_from_slice(&v_len.to_be_bytes());
        out.extend_from_slice(v);
        out.extend_from_slice(&t_len.to_be_bytes());
        out.extend_from_slice(t);
        out.extend_from_slice(&pv_len.to_be_bytes());
        out.extend_from_slice(&self.public_values);
        out.extend_from_slice(&(self.input.len() as u64).to_be_bytes());
        out.extend_from_slice(&self.input);
        Ok(out)
    }

    /// Reads an envelope; anything else is refused with the reason.
    pub fn decode(bytes: &[u8]) -> Result<MarketInputs, InputsError> {
        let mut r = Reader(bytes);
        if r.take(4, "header")
            .map_err(|_| InputsError::NotAnEnvelope)?
            != MAGIC
        {
            return Err(InputsError::NotAnEnvelope);
        }
        let format = r.take(1, "format")?[0];
        if format != FORMAT {
            return Err(InputsError::UnknownFormat(format));
        }
        let chain_id = r.u64("chain id")?;
        let batch = r.u64("batch")?;
        let v_len = r.u16("program version length")?;
        let program_version = r.text(usize::from(v_len), "program version")?;
        let t_len = r.u16("proof type length")?;
        let proof_type = r.text(usize::from(t_len), "proof type")?;
        let pv_len = r.u32("public values length")?;
        let public_values = r.take(pv_len as usize, "public values")?.to_vec();
        let in_len = r.u64("input length")?;
        let in_len = usize::try_from(in_len).map_err(|_| InputsError::Truncated("input"))?;
        let input = r.take(in_len, "input")?.to_vec();
        if !r.0.is_empty() {
            return Err(InputsError::TrailingBytes(r.0.len()));
        }
        Ok(MarketInputs {
            chain_id,
            batch,
            program_version,
            proof_type,
            public_values,
            input,
        })
    }

    /// SHA-256 of the envelope's bytes: the request's `inputs_digest`.
    pub fn digest_of(bytes: &[u8]) -> [u8; 32] {
        Digest::sha256(bytes).0
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], InputsError> {
        if self.0.len() < n {
            return Err(InputsError::Truncated(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u16(&mut self, what: &'static str) -> Result<u16, InputsError> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32, InputsError> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes(b.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &'static str) -> Result<u64, InputsError> {
        let b = self.take(8, what)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }
    fn text(&mut self, n: usize, what: &'static str) -> Result<String, InputsError> {
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| InputsError::NotUtf8(what))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> MarketInputs {
        MarketInputs {
            chain_id: 7,
            batch: 191,
            program_version: "devnet-v1".into(),
            proof_type: "exec".into(),
            public_values: vec![1, 2, 3],
            input: vec![9; 1000],
        }
    }

    #[test]
    fn round_trips_and_refuses_every_damage_with_its_reason() {
        let bytes = sample().encode().unwrap();
        assert_eq!(MarketInputs::decode(&bytes).unwrap(), sample());
        assert_eq!(
            MarketInputs::decode(b"GET / HTTP/1.1"),
            Err(InputsError::NotAnEnvelope)
        );
        assert_eq!(MarketInputs::decode(b"PM"), Err(InputsError::NotAnEnvelope));
        let mut future = bytes.clone();
        future[4] = 2;
        assert_eq!(
            MarketInputs::decode(&future),
            Err(InputsError::UnknownFormat(2))
        );
        // Every cut is refused, never read past.
        for cut in 5..bytes.len() {
            assert!(
                matches!(
                    MarketInputs::decode(&bytes[..cut]),
                    Err(InputsError::Truncated(_))
                ),
                "cut at {cut}"
            );
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            MarketInputs::decode(&longer),
            Err(InputsError::TrailingBytes(1))
        );
        // A length that claims more than there is: refused without allocating it.
        let mut huge = bytes[..bytes.len() - 1000 - 8].to_vec();
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(MarketInputs::decode(&huge).is_err());
        let mut bad_text = sample();
        bad_text.proof_type = "x".repeat(70_000);
        assert!(matches!(
            bad_text.encode(),
            Err(InputsError::TooLong { .. })
        ));
    }

    #[test]
    fn digest_is_sha256_of_the_bytes() {
        let bytes = sample().encode().unwrap();
        assert_eq!(MarketInputs::digest_of(&bytes), Digest::sha256(&bytes).0);
        assert_ne!(
            MarketInputs::digest_of(&bytes),
            MarketInputs::digest_of(b"")
        );
    }
}
