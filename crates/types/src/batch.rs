use crate::{BatchNumber, Millis, ProofType};
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

/// What a proof of a batch attests: the state transition and the batch's content commitment.
/// These are the public inputs of every proof system and what L1 settles.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct PublicValues {
    pub old_state_root: Digest,
    pub new_state_root: Digest,
    pub batch_commitment: Digest,
}

impl PublicValues {
    pub const ENCODED_LEN: usize = 96;

    /// Canonical encoding: the three 32-byte words concatenated (the ABI layout on L1).
    pub fn encode(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        out[..32].copy_from_slice(&self.old_state_root.0);
        out[32..64].copy_from_slice(&self.new_state_root.0);
        out[64..].copy_from_slice(&self.batch_commitment.0);
        out
    }

    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != Self::ENCODED_LEN {
            return None;
        }
        Some(PublicValues {
            old_state_root: Digest::from_slice(&bytes[..32])?,
            new_state_root: Digest::from_slice(&bytes[32..64])?,
            batch_commitment: Digest::from_slice(&bytes[64..])?,
        })
    }
}

/// A sealed batch as the coordinator keeps it. The input itself lives in the blob store.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Batch {
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
