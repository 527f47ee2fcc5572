//! `proofmill-stark`: a STARK backend (`stark`, winterfell 0.13) for devnet batches.
//!
//! # The statement a `stark` proof proves
//!
//! The coordinator verifies with nothing but the [`StateTransition`] `P` (old state root, new
//! state root, batch commitment: Poseidon digests over BN254, which a 128-bit-field AIR cannot
//! recompute). So this STARK proves a weaker, arithmetic statement and *binds* it to `P`.
//!
//! **Public inputs:** `P` (each digest as four big-endian 64-bit limbs) and, from the proof
//! header, a transfer count `n` and a digest `h ∈ F_p²`, `p = 2^128 − 45·2^40 + 1`.
//!
//! **Proven:** the prover knows `n` transfer records
//! `(from, to, amount, nonce, sender_balance, receiver_balance, receiver_nonce)` such that,
//! for every record, over the integers:
//!
//! * `amount ≥ 1` and `from ≠ to`;
//! * `amount`, `sender_balance`, `receiver_balance`, `nonce` are in `[0, 2^64)`, and so are
//!   `sender_balance − amount` (no overdraft), `receiver_balance + amount` (no overflow) and
//!   `nonce + 1` (no nonce overflow): the arithmetic of the devnet's `debit_sender` /
//!   `credit_receiver`, with the transfer's nonce equal to the sender's nonce (one trace
//!   column holds both). Range checks are 64-bit binary decompositions in the trace;
//! * `h` is the [`hash`] sponge, started from a seed derived from `P`, `n` and the slot
//!   count, run over every record in order and then over the all-zero padding slots (the
//!   trace has `max(8, n).next_power_of_two()` slots of 64 rows).
//!
//! **Not proven** (all of it is the Groth16 backend's job):
//!
//! * anything about the Poseidon digests: that the records' accounts are leaves under
//!   `old_state_root` (Merkle paths are not checked), that `new_state_root` is the root after
//!   applying them, that `batch_commitment` commits to these transfers or the batch number;
//! * consistency between records: two records touching one account need not chain (the
//!   second's "balance before" is not tied to the first's "balance after");
//! * any range for `from`, `to` (not even `< 2^32`, let alone `< 2^depth`) or
//!   `receiver_nonce`: they are only hashed (and `from ≠ to` checked).
//!
//! So `P` is **bound** to the proof (it seeds the sponge and enters the Fiat–Shamir
//! transcript: a proof for `P` does not verify for any `P' ≠ P`), but **not justified** by it:
//! anyone can prove some well-formed records under any `P`. Settling on `groth16,stark` gets
//! its soundness from Groth16; this backend adds a transparent (no trusted setup), hash-based
//! proof of the balance arithmetic. Whoever holds the batch input can check that a proof was
//! made over the batch's actual transfers by comparing [`input_digest`] with [`header`]`.h`;
//! that check is only as strong as the ad-hoc sponge in [`hash`] (not a vetted hash).
//!
//! **Soundness parameters:** [`proof_options`]: f128 without extension, blowup 8, 28 queries,
//! 16 grinding bits, BLAKE3-256 commitments: 99 bits of conjectured security.
//! [`verify_proof`] (what [`StarkBackend`] runs) accepts only these exact options and requires ≥
//! [`MIN_SECURITY_BITS`].
//!
//! # Proof bytes
//!
//! A 41-byte header, then winterfell's `Proof::to_bytes()`:
//! `magic b"PMSK" | version 1 | n u32 LE | h0 u128 LE | h1 u128 LE`.

pub mod air;
mod backend;
pub mod hash;
pub mod prover;

pub use backend::{StarkBackend, prove_batch, verify_proof};
pub use prover::SlotError;

use proofmill_backend::VerifyError;
use proofmill_devnet::BatchInput;
use proofmill_devnet::StateTransition;
use proofmill_types::Digest;
use winterfell::math::fields::f128::BaseElement as Felt;
use winterfell::math::{FieldElement, StarkField};
use winterfell::{BatchingMethod, FieldExtension, ProofOptions};

/// First bytes of every `stark` proof.
pub const MAGIC: [u8; 4] = *b"PMSK";
/// Proof format (and statement) version.
pub const VERSION: u8 = 1;
/// Header length in bytes.
pub const HEADER_LEN: usize = 4 + 1 + 4 + 16 + 16;
/// Minimum conjectured security the verifier demands.
pub const MIN_SECURITY_BITS: u32 = 95;
/// Most transfers one proof covers. Bounds prover memory: 4096 transfers are 2^18 trace rows,
/// a 2^21-row low-degree extension of 21 columns (~0.7 GB) plus commitments. Larger batches
/// are refused as unprovable (`BadInput`), and larger counts in a header as malformed.
pub const MAX_TRANSFERS: u32 = 4096;

/// The only proof options produced and accepted: 28 queries × log2(8) + 16 grinding bits
/// = 100, minus 1: 99 bits conjectured (the field gives 128, BLAKE3-256 gives 128).
pub fn proof_options() -> ProofOptions {
    ProofOptions::new(
        28,
        8,
        16,
        FieldExtension::None,
        8,
        31,
        BatchingMethod::Linear,
        BatchingMethod::Linear,
    )
}

/// The proof header: transfer count and final sponge digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub n: u32,
    pub h: [u128; 2],
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = VERSION;
        out[5..9].copy_from_slice(&self.n.to_le_bytes());
        out[9..25].copy_from_slice(&self.h[0].to_le_bytes());
        out[25..41].copy_from_slice(&self.h[1].to_le_bytes());
        out
    }
}

/// Splits a proof into its header and winterfell bytes; rejects anything non-canonical.
pub fn header(proof: &[u8]) -> Result<(Header, &[u8]), VerifyError> {
    let bad = |m: String| Err(VerifyError::Malformed(m));
    if proof.len() < HEADER_LEN {
        return bad(format!(
            "stark proof is {} bytes, shorter than its {HEADER_LEN}-byte header",
            proof.len()
        ));
    }
    if proof[..4] != MAGIC {
        return bad("bad magic: not a proofmill stark proof".into());
    }
    if proof[4] != VERSION {
        return bad(format!("unsupported stark proof version {}", proof[4]));
    }
    let u128_at = |at: usize| {
        let mut b = [0u8; 16];
        b.copy_from_slice(&proof[at..at + 16]);
        u128::from_le_bytes(b)
    };
    let mut n = [0u8; 4];
    n.copy_from_slice(&proof[5..9]);
    let n = u32::from_le_bytes(n);
    if n > MAX_TRANSFERS {
        return bad(format!("{n} transfers declared, at most {MAX_TRANSFERS}"));
    }
    let h = [u128_at(9), u128_at(25)];
    if h.iter().any(|&x| x >= Felt::MODULUS) {
        return bad("digest is not a canonical field element".into());
    }
    Ok((Header { n, h }, &proof[HEADER_LEN..]))
}

/// The public values as the AIR's 12 limbs (64-bit big-endian chunks of each digest).
pub fn public_limbs(public: &StateTransition) -> [Felt; 12] {
    let digests: [&Digest; 3] = [
        &public.old_state_root,
        &public.new_state_root,
        &public.batch_commitment,
    ];
    let mut out = [Felt::ZERO; 12];
    for (i, d) in digests.iter().enumerate() {
        for (j, chunk) in d.0.chunks_exact(8).enumerate() {
            let mut b = [0u8; 8];
            b.copy_from_slice(chunk);
            out[4 * i + j] = Felt::new(u128::from(u64::from_be_bytes(b)));
        }
    }
    out
}

/// The digest `h` an honest proof of `input` under `public` carries in its header (for
/// audits by whoever holds the input). Errors exactly when the records cannot be proven.
pub fn input_digest(input: &BatchInput, public: &StateTransition) -> Result<[u128; 2], SlotError> {
    let (_, digest, _) = backend::witness(input, public)?;
    Ok(digest.map(|x| x.as_int()))
}
