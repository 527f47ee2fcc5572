//! The one hash function of the devnet: Poseidon over the BN254 scalar field.
//!
//! The Groth16 circuit must reproduce every hash with the arkworks R1CS sponge gadget, so the
//! parameters and the calling convention below are part of the protocol. Changing any of them
//! changes every state root.

use ark_bn254::Fr;
use ark_crypto_primitives::sponge::poseidon::{
    PoseidonConfig, PoseidonSponge, find_poseidon_ark_and_mds,
};
use ark_crypto_primitives::sponge::{CryptographicSponge, FieldBasedCryptographicSponge};
use ark_ff::{BigInteger, PrimeField};
use proofmill_types::Digest;
use std::sync::OnceLock;

/// Sponge rate (field elements absorbed per permutation).
pub const POSEIDON_RATE: usize = 2;
/// Sponge capacity (state width = rate + capacity = 3).
pub const POSEIDON_CAPACITY: usize = 1;
/// S-box exponent `x^5` (gcd(5, r - 1) = 1 for BN254 Fr).
pub const POSEIDON_ALPHA: u64 = 5;
/// Full rounds (4 before and 4 after the partial rounds).
pub const POSEIDON_FULL_ROUNDS: usize = 8;
/// Partial rounds.
pub const POSEIDON_PARTIAL_ROUNDS: usize = 57;

/// The Poseidon parameters used for every devnet hash.
///
/// BN254 `Fr`, rate 2, capacity 1, alpha 5, 8 full rounds, 57 partial rounds. Round constants
/// and MDS come from `find_poseidon_ark_and_mds::<Fr>(254, 2, 8, 57, 0)` (Grain LFSR with
/// `prime_bits = Fr::MODULUS_BIT_SIZE`, `skip_matrices = 0`). Built once: the Grain LFSR is
/// slow relative to a hash.
pub fn poseidon_config() -> &'static PoseidonConfig<Fr> {
    static CONFIG: OnceLock<PoseidonConfig<Fr>> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let (ark, mds) = find_poseidon_ark_and_mds::<Fr>(
            u64::from(Fr::MODULUS_BIT_SIZE),
            POSEIDON_RATE,
            POSEIDON_FULL_ROUNDS as u64,
            POSEIDON_PARTIAL_ROUNDS as u64,
            0,
        );
        PoseidonConfig::new(
            POSEIDON_FULL_ROUNDS,
            POSEIDON_PARTIAL_ROUNDS,
            POSEIDON_ALPHA,
            mds,
            ark,
            POSEIDON_RATE,
            POSEIDON_CAPACITY,
        )
    })
}

/// `hash(inputs)`: a fresh `PoseidonSponge::new(poseidon_config())`, one
/// `absorb(&inputs)` of all elements in order, then one squeezed native field element.
///
/// In the circuit this is exactly `PoseidonSpongeVar::new(cs, poseidon_config())`,
/// `absorb(&input_vars)`, `squeeze_field_elements(1)[0]`. No length prefix, padding or domain
/// tag is added (so e.g. `hash([x]) == hash([x, 0])`); that is safe because every call site
/// has a fixed arity: 2 for leaves and nodes, 1 and 5 for the commitment chain.
pub fn hash(inputs: &[Fr]) -> Fr {
    let mut sponge = PoseidonSponge::new(poseidon_config());
    sponge.absorb(&inputs);
    sponge.squeeze_native_field_elements(1)[0]
}

/// Field element of a `u64` (balances, nonces, amounts, indices all enter the hash this way).
pub fn fr_from_u64(value: u64) -> Fr {
    Fr::from(value)
}

/// 32-byte big-endian canonical encoding, the form roots and commitments take on L1.
pub fn fr_to_digest(value: Fr) -> Digest {
    let bytes = value.into_bigint().to_bytes_be();
    let mut out = [0u8; 32];
    // BN254 Fr fits in 4 limbs = 32 bytes, so this copies the whole value.
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    Digest(out)
}

/// Inverse of [`fr_to_digest`]; `None` for values `>= r`, so every field element has exactly
/// one accepted encoding (no malleability of roots or witness siblings).
pub fn digest_to_fr(digest: &Digest) -> Option<Fr> {
    let value = Fr::from_be_bytes_mod_order(&digest.0);
    (fr_to_digest(value) == *digest).then_some(value)
}
