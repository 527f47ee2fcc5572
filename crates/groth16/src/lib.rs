//! `proofmill-groth16`: a Groth16 (BN254) proving backend for the devnet rollup.
//!
//! * [`circuit`]: the batch-transition circuit (exactly `proofmill_devnet`'s stateless
//!   execution, public inputs `[old_root, new_root, batch_commitment]`), for a fixed shape
//!   `(batch_size, depth)` with no-op padding slots.
//! * [`keys`]: per-shape keys. [`keys::dev_setup`] is **DEV ONLY (known toxic waste)**; keys
//!   are cached on disk and real ceremony keys can be loaded with [`keys::load_keys`].
//! * [`evm`]: the 256-byte EIP-197 proof wire format and [`vk_words`] for a Solidity verifier.
//! * [`Groth16Backend`]: the `proofmill_backend::Backend` implementation.

pub mod backend;
pub mod circuit;
pub mod evm;
pub mod keys;

pub use backend::Groth16Backend;
pub use circuit::{BatchCircuit, PublicInputs, WitnessError, constraint_count};
pub use evm::{PROOF_LEN, ProofDecodeError, decode_proof, encode_proof, vk_words};
pub use keys::{KeyError, Keys, dev_setup, load_keys, load_or_dev_setup};

use ark_bn254::Fr;
use proofmill_devnet::StateTransition;

/// Largest batch size a shape may have (bounds key size and setup time).
pub const MAX_BATCH_SIZE: usize = 4096;

/// A circuit shape: at most `batch_size` transfers on a tree of `depth` levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Shape {
    pub batch_size: usize,
    pub depth: u8,
}

/// Why a shape is unusable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ShapeError {
    #[error("batch size {0} outside 1..={MAX_BATCH_SIZE}")]
    BatchSize(usize),
    #[error("tree depth {0} outside 1..=32")]
    Depth(u8),
}

impl Shape {
    pub fn new(batch_size: usize, depth: u8) -> Result<Self, ShapeError> {
        if !(1..=MAX_BATCH_SIZE).contains(&batch_size) {
            return Err(ShapeError::BatchSize(batch_size));
        }
        if !(1..=32).contains(&depth) {
            return Err(ShapeError::Depth(depth));
        }
        Ok(Shape { batch_size, depth })
    }
}

/// The proposed demo shape: 4 transfers per proof on a depth-16 tree (65,536 accounts),
/// 70,962 constraints; a proof takes about 1.7-4.5 s on 2 loaded cores at opt-level 3.
pub const DEMO_SHAPE: Shape = Shape {
    batch_size: 4,
    depth: 16,
};

impl std::str::FromStr for Shape {
    type Err = String;

    /// `"<batch_size>x<depth>"`, e.g. `"4x16"`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, d) = s
            .split_once('x')
            .ok_or_else(|| format!("shape {s:?} is not <batch_size>x<depth>, e.g. 4x16"))?;
        let n = n
            .trim()
            .parse()
            .map_err(|e| format!("batch size in {s:?}: {e}"))?;
        let d = d
            .trim()
            .parse()
            .map_err(|e| format!("depth in {s:?}: {e}"))?;
        Shape::new(n, d).map_err(|e| e.to_string())
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "(n={}, depth={})", self.batch_size, self.depth)
    }
}

/// A public value that is not a canonical BN254 scalar (`>= r`), so no proof can attest it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a canonical BN254 scalar field element")]
pub struct NonCanonicalPublicValue(pub &'static str);

/// The circuit's public inputs `[old_root, new_root, batch_commitment]` from the 32-byte
/// digests (via `proofmill_devnet::digest_to_fr`, which rejects values `>= r`).
pub fn public_inputs(public: &StateTransition) -> Result<[Fr; 3], NonCanonicalPublicValue> {
    let f = |d, name| proofmill_devnet::digest_to_fr(d).ok_or(NonCanonicalPublicValue(name));
    Ok([
        f(&public.old_state_root, "old_state_root")?,
        f(&public.new_state_root, "new_state_root")?,
        f(&public.batch_commitment, "batch_commitment")?,
    ])
}
