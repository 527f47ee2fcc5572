use crate::{BatchNumber, ChainId, JobKey, Millis, ProofType};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::fmt;

/// 32-byte value: state roots, commitments (field elements, big-endian) and SHA-256 digests.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn sha256(data: &[u8]) -> Self {
        Digest(Sha256::digest(data).into())
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(bytes).ok().map(Digest)
    }

    /// HMAC-SHA-256 (RFC 2104) of `data` under `key`: secrets derived from a stored key.
    pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Self {
        const BLOCK: usize = 64;
        let mut k = [0u8; BLOCK];
        if key.len() > BLOCK {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| k.map(|b| b ^ byte);
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(data)
            .finalize();
        let outer = Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize();
        Digest(outer.into())
    }

    /// Equality in time independent of where the values differ (for secrets).
    pub fn ct_eq(&self, other: &Digest) -> bool {
        self.0
            .iter()
            .zip(other.0.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s.strip_prefix("0x").unwrap_or(s)).ok()?;
        Self::from_slice(&bytes)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", self.to_hex())
    }
}
impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", self.to_hex())
    }
}

/// What a proof of a batch attests, in the rollup's own encoding. Opaque to proofmill: its
/// length and meaning are set by the rollup, and only the backend of a proof type reads it
/// (to prove it and to check a proof against it). The reference rollup's layout is
/// `proofmill_devnet::StateTransition`.
#[derive(Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct PublicValues(Vec<u8>);

impl PublicValues {
    /// Longest public values a coordinator takes in: they travel with every task and are
    /// kept in every batch row, so they are a statement, not data.
    pub const MAX_LEN: usize = 64 * 1024;

    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        PublicValues(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for PublicValues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicValues(0x{})", hex::encode(&self.0))
    }
}

/// A sealed batch as the coordinator keeps it. The input itself lives in the blob store.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Batch {
    /// The rollup it belongs to ([`crate::DEFAULT_CHAIN`] unless told otherwise).
    pub chain: ChainId,
    pub number: BatchNumber,
    /// Program/protocol version the batch must be proven with; only provers registered with
    /// the same version receive its jobs, so two versions can run side by side in an upgrade.
    pub version: String,
    /// Key of the input in the blob store.
    pub input_key: String,
    /// SHA-256 of the input bytes, checked whenever the input is read back.
    pub input_digest: Digest,
    pub input_size: u64,
    pub public_values: PublicValues,
    /// Proof types this batch needs before it counts as proven.
    pub required: Vec<ProofType>,
    pub created_at: Millis,
}

/// A batch's identity: its chain and its number there. Its text is the number on the default
/// chain, `<chain>:<number>` on others (as in a [`JobKey`]'s).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct BatchId {
    pub chain: ChainId,
    pub number: BatchNumber,
}

impl BatchId {
    pub fn new(chain: ChainId, number: BatchNumber) -> Self {
        BatchId { chain, number }
    }

    /// The key of this batch's job of `proof_type`.
    pub fn job(self, proof_type: ProofType) -> JobKey {
        JobKey::new(self.chain, self.number, proof_type)
    }
}

impl fmt::Display for BatchId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.chain != crate::DEFAULT_CHAIN {
            write!(f, "{}:", self.chain)?;
        }
        write!(f, "{}", self.number)
    }
}

impl Batch {
    pub fn id(&self) -> BatchId {
        BatchId::new(self.chain, self.number)
    }

    /// The key of this batch's job of `proof_type`.
    pub fn job_key(&self, proof_type: ProofType) -> JobKey {
        JobKey::new(self.chain, self.number, proof_type)
    }
}

#[cfg(test)]
mod tests {
    use super::Digest;

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // RFC 4231, test cases 2 (short key) and 6 (key longer than the block).
        let mac = Digest::hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            mac.to_hex(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mac = Digest::hmac_sha256(
            &[0xaa; 131],
            b"Test Using Larger Than Block-Size Key - Hash Key First",
        );
        assert_eq!(
            mac.to_hex(),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn ct_eq_compares_every_byte() {
        let a = Digest([7; 32]);
        let mut b = a;
        assert!(a.ct_eq(&b));
        b.0[31] ^= 1;
        assert!(!a.ct_eq(&b));
    }
}
