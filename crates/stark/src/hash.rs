//! The algebraic sponge the AIR runs over the trace (and natively, to derive the seed).
//!
//! A Rescue-style permutation over winterfell's 128-bit prime field
//! `p = 2^128 - 45·2^40 + 1`: state width 4 (rate 2, capacity 2), one round per trace row:
//!
//! ```text
//! round_k(s) = MDS · (MDS · s^3 + C1[k] + a)^(1/3) + C2[k]     (k = row mod 64)
//! ```
//!
//! where `a = (a0, a1, 0, 0)` is what the row absorbs (zero on most rows). It is added between
//! the two half-rounds so the AIR relation `(MDS^-1 · (s' - C2))^3 = MDS · s^3 + C1 + a` stays
//! of degree 3 (absorbing into `s` would cube the periodic selectors). `x -> x^3` is a
//! permutation because `gcd(3, p - 1) = 1`; the inverse S-box gives high degree in both
//! directions, as in Rescue. `MDS` is the Cauchy matrix `1 / (i + j + 6)`; the round constants
//! are BLAKE3 outputs of a fixed label. **These are ad-hoc parameters, not a standardised or
//! cryptanalysed instance**: see the crate docs for what the digest is (not) relied on for.

use std::sync::OnceLock;
use winterfell::crypto::hashers::Blake3_256;
use winterfell::crypto::{Digest as _, Hasher};
use winterfell::math::fields::f128::BaseElement as Felt;
use winterfell::math::{FieldElement, StarkField};

/// State width.
pub const WIDTH: usize = 4;
/// Rounds per slot: the round constants repeat with this period (one round per row).
pub const PERIOD: usize = 64;

/// `d` with `x^(3d) = x`: `3d ≡ 1 (mod p - 1)`. `p - 1 ≡ 1 (mod 3)`, so with
/// `p - 2 = 3k`, `d = 2k + 1`.
const INV_ALPHA: u128 = 2 * ((Felt::MODULUS - 2) / 3) + 1;

/// Matrices and round constants, derived once.
pub struct Params {
    pub mds: [[Felt; WIDTH]; WIDTH],
    pub mds_inv: [[Felt; WIDTH]; WIDTH],
    /// `c1[k]`, `c2[k]` for round `k` of the period.
    pub c1: [[Felt; WIDTH]; PERIOD],
    pub c2: [[Felt; WIDTH]; PERIOD],
}

pub fn params() -> &'static Params {
    static PARAMS: OnceLock<Params> = OnceLock::new();
    PARAMS.get_or_init(|| {
        let mut mds = [[Felt::ZERO; WIDTH]; WIDTH];
        for (i, row) in mds.iter_mut().enumerate() {
            for (j, m) in row.iter_mut().enumerate() {
                // Cauchy matrix 1/(x_i + y_j), x = 1..=4, y = 5..=8: every square submatrix is
                // non-singular, i.e. MDS.
                *m = Felt::new((i + j + 6) as u128).inv();
            }
        }
        let constant = |set: u8, k: usize, i: usize| {
            let label = format!("proofmill-stark/v1/rescue/c{set}/{k}/{i}");
            let bytes = Blake3_256::<Felt>::hash(label.as_bytes()).as_bytes();
            let mut limb = [0u8; 16];
            limb.copy_from_slice(&bytes[..16]);
            Felt::new(u128::from_le_bytes(limb))
        };
        let mut c1 = [[Felt::ZERO; WIDTH]; PERIOD];
        let mut c2 = [[Felt::ZERO; WIDTH]; PERIOD];
        for k in 0..PERIOD {
            for i in 0..WIDTH {
                c1[k][i] = constant(1, k, i);
                c2[k][i] = constant(2, k, i);
            }
        }
        Params {
            mds,
            mds_inv: invert(mds),
            c1,
            c2,
        }
    })
}

/// Gauss-Jordan inverse of a non-singular 4x4 matrix (the Cauchy matrix always is).
fn invert(m: [[Felt; WIDTH]; WIDTH]) -> [[Felt; WIDTH]; WIDTH] {
    let mut a = m;
    let mut inv = [[Felt::ZERO; WIDTH]; WIDTH];
    for (i, row) in inv.iter_mut().enumerate() {
        row[i] = Felt::ONE;
    }
    for col in 0..WIDTH {
        let pivot = (col..WIDTH)
            .find(|&r| a[r][col] != Felt::ZERO)
            .unwrap_or(col);
        a.swap(col, pivot);
        inv.swap(col, pivot);
        let scale = a[col][col].inv();
        for j in 0..WIDTH {
            a[col][j] *= scale;
            inv[col][j] *= scale;
        }
        for r in 0..WIDTH {
            if r != col {
                let f = a[r][col];
                for j in 0..WIDTH {
                    let (ac, ic) = (a[col][j], inv[col][j]);
                    a[r][j] -= f * ac;
                    inv[r][j] -= f * ic;
                }
            }
        }
    }
    inv
}

/// `m · v` over any extension of the base field (the AIR evaluates over extensions too).
pub fn mat_vec<E: FieldElement + From<Felt>>(m: &[[Felt; WIDTH]; WIDTH], v: &[E]) -> [E; WIDTH] {
    let mut out = [E::ZERO; WIDTH];
    for (o, row) in out.iter_mut().zip(m) {
        for (&c, &x) in row.iter().zip(v) {
            *o += E::from(c) * x;
        }
    }
    out
}

/// One round: `round_k(s)` absorbing `absorb` into the first two lanes.
pub fn round(state: &mut [Felt; WIDTH], k: usize, absorb: [Felt; 2]) {
    let p = params();
    let cubed = state.map(|x| x * x * x);
    let mut mid = mat_vec(&p.mds, &cubed);
    mid[0] += absorb[0];
    mid[1] += absorb[1];
    for (m, c) in mid.iter_mut().zip(&p.c1[k % PERIOD]) {
        *m = (*m + *c).exp(INV_ALPHA);
    }
    let out = mat_vec(&p.mds, &mid);
    for (i, s) in state.iter_mut().enumerate() {
        *s = out[i] + p.c2[k % PERIOD][i];
    }
}

/// Native sponge: absorbs `values` two at a time (zero-padded), each pair followed by a full
/// period of rounds. Used only for the seed, which the verifier computes itself.
pub fn sponge(init: [Felt; WIDTH], values: &[Felt]) -> [Felt; WIDTH] {
    let mut state = init;
    for pair in values.chunks(2) {
        let absorb = [pair[0], pair.get(1).copied().unwrap_or(Felt::ZERO)];
        round(&mut state, 0, absorb);
        for k in 1..PERIOD {
            round(&mut state, k, [Felt::ZERO; 2]);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_alpha_inverts_the_cube() {
        for x in [2u128, 3, 12345, Felt::MODULUS - 1] {
            let x = Felt::new(x);
            assert_eq!(x.exp(3).exp(INV_ALPHA), x);
        }
    }

    #[test]
    fn mds_inverse_is_an_inverse() {
        let p = params();
        let v = [Felt::new(1), Felt::new(7), Felt::new(99), Felt::new(5)];
        assert_eq!(mat_vec(&p.mds_inv, &mat_vec(&p.mds, &v)), v);
    }

    #[test]
    fn round_satisfies_the_air_relation() {
        let p = params();
        let s = [Felt::new(3), Felt::new(4), Felt::new(5), Felt::new(6)];
        let a = [Felt::new(10), Felt::new(20)];
        let mut next = s;
        round(&mut next, 5, a);
        let lhs: Vec<Felt> = (0..WIDTH).map(|i| next[i] - p.c2[5][i]).collect();
        let lhs = mat_vec(&p.mds_inv, &lhs).map(|x| x * x * x);
        let mut rhs = mat_vec(&p.mds, &s.map(|x| x * x * x));
        rhs[0] += a[0];
        rhs[1] += a[1];
        for i in 0..WIDTH {
            assert_eq!(lhs[i], rhs[i] + p.c1[5][i]);
        }
    }
}
