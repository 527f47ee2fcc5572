//! What a proof of a devnet batch attests: the state transition and the batch's content
//! commitment, the public inputs of every devnet proof system and what its L1 contract
//! settles. To proofmill these are opaque [`PublicValues`]; this is their devnet layout.

use proofmill_types::{Digest, PublicValues};

#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct StateTransition {
    pub old_state_root: Digest,
    pub new_state_root: Digest,
    pub batch_commitment: Digest,
}

/// Public values that are not a devnet state transition.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("devnet public values must be 96 bytes (old root, new root, commitment), got {0}")]
pub struct NotATransition(pub usize);

impl StateTransition {
    pub const ENCODED_LEN: usize = 96;

    /// Canonical encoding: the three 32-byte words concatenated (the ABI layout on L1).
    pub fn encode(&self) -> [u8; 96] {
        let mut out = [0u8; 96];
        out[..32].copy_from_slice(&self.old_state_root.0);
        out[32..64].copy_from_slice(&self.new_state_root.0);
        out[64..].copy_from_slice(&self.batch_commitment.0);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, NotATransition> {
        let word = |i: usize| Digest::from_slice(&bytes[32 * i..32 * (i + 1)]);
        match (bytes.len() == Self::ENCODED_LEN).then(|| (word(0), word(1), word(2))) {
            Some((Some(old_state_root), Some(new_state_root), Some(batch_commitment))) => {
                Ok(StateTransition {
                    old_state_root,
                    new_state_root,
                    batch_commitment,
                })
            }
            _ => Err(NotATransition(bytes.len())),
        }
    }

    /// As the coordinator keeps it.
    pub fn to_public_values(&self) -> PublicValues {
        PublicValues::new(self.encode().to_vec())
    }

    pub fn from_public_values(public: &PublicValues) -> Result<Self, NotATransition> {
        Self::decode(public.as_bytes())
    }
}
