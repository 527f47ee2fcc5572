//! EVM (EIP-196/197) encodings: the 256-byte proof wire format and the verifying-key words.
//!
//! Every coordinate is a 32-byte big-endian word `< q` (the BN254 base-field modulus).
//! G1 = `(x, y)`; G2 = `(x.c1, x.c0, y.c1, y.c0)` (imaginary part first, as EIP-197's
//! pairing precompile expects); the point at infinity is all-zero words.
//!
//! Proof: `a.x, a.y, b.x.c1, b.x.c0, b.y.c1, b.y.c0, c.x, c.y` = 8 words = 256 bytes, so the
//! bytes can be passed unchanged as `uint256[8]` to an on-chain verifier.

use ark_bn254::{Bn254, Fq, Fq2, G1Affine, G2Affine};
use ark_ec::AffineRepr;
use ark_ff::{BigInteger, PrimeField, Zero};
use ark_groth16::{Proof, VerifyingKey};

/// Length of an encoded proof.
pub const PROOF_LEN: usize = 256;

/// Why bytes are not a valid encoded proof.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProofDecodeError {
    #[error("proof must be {PROOF_LEN} bytes, got {0}")]
    Length(usize),
    #[error("word {word} is not a canonical base-field element (>= q)")]
    NonCanonical { word: usize },
    #[error("{point} is not on the curve")]
    NotOnCurve { point: &'static str },
    #[error("{point} is not in the prime-order subgroup")]
    NotInSubgroup { point: &'static str },
}

fn fq_word(x: &Fq) -> [u8; 32] {
    let bytes = x.into_bigint().to_bytes_be();
    let mut out = [0u8; 32];
    out[32 - bytes.len()..].copy_from_slice(&bytes);
    out
}

fn word_fq(bytes: &[u8], word: usize) -> Result<Fq, ProofDecodeError> {
    let w = &bytes[32 * word..32 * word + 32];
    let x = Fq::from_be_bytes_mod_order(w);
    if fq_word(&x)[..] != *w {
        return Err(ProofDecodeError::NonCanonical { word });
    }
    Ok(x)
}

/// G1 point as 2 words (infinity = zeros).
pub fn g1_words(p: &G1Affine) -> [[u8; 32]; 2] {
    match p.xy() {
        Some((x, y)) => [fq_word(&x), fq_word(&y)],
        None => [[0u8; 32]; 2],
    }
}

/// G2 point as 4 words, imaginary part first (infinity = zeros).
pub fn g2_words(p: &G2Affine) -> [[u8; 32]; 4] {
    match p.xy() {
        Some((x, y)) => [
            fq_word(&x.c1),
            fq_word(&x.c0),
            fq_word(&y.c1),
            fq_word(&y.c0),
        ],
        None => [[0u8; 32]; 4],
    }
}

/// Proof in the 256-byte EVM form.
pub fn encode_proof(proof: &Proof<Bn254>) -> Vec<u8> {
    let mut out = Vec::with_capacity(PROOF_LEN);
    for w in g1_words(&proof.a)
        .iter()
        .chain(g2_words(&proof.b).iter())
        .chain(g1_words(&proof.c).iter())
    {
        out.extend_from_slice(w);
    }
    out
}

fn g1_at(bytes: &[u8], word: usize, name: &'static str) -> Result<G1Affine, ProofDecodeError> {
    let (x, y) = (word_fq(bytes, word)?, word_fq(bytes, word + 1)?);
    if x.is_zero() && y.is_zero() {
        return Ok(G1Affine::zero());
    }
    let p = G1Affine::new_unchecked(x, y);
    if !p.is_on_curve() {
        return Err(ProofDecodeError::NotOnCurve { point: name });
    }
    // G1 of BN254 has cofactor 1, but check anyway: it is cheap and keeps this generic.
    if !p.is_in_correct_subgroup_assuming_on_curve() {
        return Err(ProofDecodeError::NotInSubgroup { point: name });
    }
    Ok(p)
}

fn g2_at(bytes: &[u8], word: usize, name: &'static str) -> Result<G2Affine, ProofDecodeError> {
    let x = Fq2::new(word_fq(bytes, word + 1)?, word_fq(bytes, word)?);
    let y = Fq2::new(word_fq(bytes, word + 3)?, word_fq(bytes, word + 2)?);
    if x.is_zero() && y.is_zero() {
        return Ok(G2Affine::zero());
    }
    let p = G2Affine::new_unchecked(x, y);
    if !p.is_on_curve() {
        return Err(ProofDecodeError::NotOnCurve { point: name });
    }
    if !p.is_in_correct_subgroup_assuming_on_curve() {
        return Err(ProofDecodeError::NotInSubgroup { point: name });
    }
    Ok(p)
}

/// Strict inverse of [`encode_proof`]: exact length, canonical coordinates, points on the
/// curve and in the subgroup. Never panics.
pub fn decode_proof(bytes: &[u8]) -> Result<Proof<Bn254>, ProofDecodeError> {
    if bytes.len() != PROOF_LEN {
        return Err(ProofDecodeError::Length(bytes.len()));
    }
    Ok(Proof {
        a: g1_at(bytes, 0, "A")?,
        b: g2_at(bytes, 2, "B")?,
        c: g1_at(bytes, 6, "C")?,
    })
}

/// Verifying key as EVM words: alpha (2), beta (4), gamma (4), delta (4), then IC\[i\] (2
/// each, `n + 1` points for `n` public inputs): 14 + 2(n + 1) = 16 + 2n words, 22 for this
/// circuit.
/// The layout of `vk` in the research verifier contract (`contracts/Groth16Verifier.sol`).
pub fn vk_words(vk: &VerifyingKey<Bn254>) -> Vec<[u8; 32]> {
    let mut out = Vec::with_capacity(14 + 2 * vk.gamma_abc_g1.len());
    out.extend(g1_words(&vk.alpha_g1));
    out.extend(g2_words(&vk.beta_g2));
    out.extend(g2_words(&vk.gamma_g2));
    out.extend(g2_words(&vk.delta_g2));
    for ic in &vk.gamma_abc_g1 {
        out.extend(g1_words(ic));
    }
    out
}
