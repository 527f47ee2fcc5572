//! `proofmill-devnet`: the reference rollup proofmill ships.
//!
//! Accounts (`u64` balance, `u64` nonce) live in a sparse binary Merkle tree hashed with
//! Poseidon over BN254 `Fr` ([`poseidon`]); the sequencer ([`Devnet`]) accepts valid
//! transfers into a mempool, generates deterministic random traffic and seals batches whose
//! stateless witnesses ([`BatchInput`]) the `exec` backend ([`ExecBackend`]) re-executes
//! ([`execute_batch_input`]) and the Groth16 circuit proves; what their proofs attest is a
//! [`StateTransition`], the devnet's layout of the opaque public values. Every hash is a plain Poseidon
//! sponge call ([`hash`]) and every rule a u64 comparison, so the circuit can mirror this
//! crate exactly.

pub mod backend;
pub mod exec;
pub mod input;
pub mod poseidon;
pub mod sequencer;
pub mod snapshot;
pub mod transfer;
pub mod transition;
pub mod tree;

#[cfg(test)]
mod tests;

pub use ark_bn254::Fr;
pub use backend::ExecBackend;
pub use exec::{ExecError, ExecOutput, execute_batch_input};
pub use input::{BatchInput, DecodeError, TransferWitness};
pub use poseidon::{digest_to_fr, fr_from_u64, fr_to_digest, hash, poseidon_config};
pub use sequencer::{ConfigError, Devnet, DevnetConfig, SealedBatch, genesis_root};
pub use snapshot::SnapshotError;
pub use transfer::{Account, RejectReason, Transfer, batch_commitment};
pub use transition::{NotATransition, StateTransition};
pub use tree::{SparseMerkleTree, compute_root, leaf_hash, verify_path};

/// Re-exported so callers (the circuit crate) name the same parameter type.
pub use ark_crypto_primitives::sponge::poseidon::PoseidonConfig;
