//! The AIR: trace layout, public inputs, constraints and assertions (see the crate docs for
//! the statement in words).

use crate::hash::{self, PERIOD, WIDTH, mat_vec, params};
use winterfell::math::fields::f128::BaseElement as Felt;
use winterfell::math::{FieldElement, ToElements};
use winterfell::{
    Air, AirContext, Assertion, EvaluationFrame, ProofOptions, TraceInfo,
    TransitionConstraintDegree,
};

/// Rows per transfer slot: one per bit of a 64-bit range check.
pub const SLOT_ROWS: usize = PERIOD;
/// Fewest slots a trace has (winterfell needs a few rows; this also hides tiny batch sizes
/// behind one trace shape).
pub const MIN_SLOTS: usize = 8;

// Slot columns: constant over the 64 rows of a slot.
pub const REAL: usize = 0;
pub const FROM: usize = 1;
pub const TO: usize = 2;
pub const AMOUNT: usize = 3;
/// The transfer's nonce, which is also the sender's nonce before it (one column for both).
pub const NONCE: usize = 4;
pub const SENDER_BALANCE: usize = 5;
pub const RECEIVER_BALANCE: usize = 6;
pub const RECEIVER_NONCE: usize = 7;
pub const INV_AMOUNT: usize = 8;
pub const INV_FROM_MINUS_TO: usize = 9;
const SLOT_COLS: usize = 10;
/// First of the [`NUM_RANGE`] bit accumulators (MSB first: row `k` of a slot holds the top
/// `k + 1` bits of the value, row 63 the whole value).
pub const ACC: usize = SLOT_COLS;
/// Values range-checked to `[0, 2^64)`, in accumulator order; see [`range_values`].
pub const NUM_RANGE: usize = 7;
/// First of the [`WIDTH`] sponge state columns.
pub const HASH: usize = ACC + NUM_RANGE;
pub const TRACE_WIDTH: usize = HASH + WIDTH;

/// Rows of a slot at which the sponge absorbs two slot columns (into lanes 0 and 1).
const ABSORB: [(usize, [usize; 2]); 4] = [
    (0, [REAL, FROM]),
    (16, [TO, AMOUNT]),
    (32, [NONCE, SENDER_BALANCE]),
    (48, [RECEIVER_BALANCE, RECEIVER_NONCE]),
];

/// The range-checked values of a row, as expressions of its slot columns: amount, sender
/// balance before/after, receiver balance before/after, sender nonce before/after.
pub fn range_values<E: FieldElement>(row: &[E]) -> [E; NUM_RANGE] {
    let (a, sb, rb, n) = (
        row[AMOUNT],
        row[SENDER_BALANCE],
        row[RECEIVER_BALANCE],
        row[NONCE],
    );
    [a, sb, sb - a, rb, rb + a, n, n + E::ONE]
}

/// What the sponge absorbs at row `k` of a slot (zero on rows that absorb nothing).
pub fn absorbed(k: usize, row: &[Felt]) -> [Felt; 2] {
    ABSORB
        .iter()
        .find(|(at, _)| *at == k)
        .map_or([Felt::ZERO; 2], |(_, cols)| [row[cols[0]], row[cols[1]]])
}

/// Slots for `n` transfers: a power of two, at least [`MIN_SLOTS`].
pub fn slots_for(n: usize) -> usize {
    n.max(MIN_SLOTS).next_power_of_two()
}

/// Public inputs: the transfer count, the coordinator's public values as 64-bit limbs, and
/// the final sponge digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicInputs {
    pub n: u32,
    pub limbs: [Felt; 12],
    pub digest: [Felt; 2],
}

impl PublicInputs {
    /// Initial sponge state: a domain tag, `n` and the trace's slot count, then the 12 limbs
    /// absorbed by the native sponge. Fixes row 0 of the trace.
    pub fn seed(&self) -> [Felt; WIDTH] {
        let tag = Felt::new(u128::from_le_bytes(*b"proofmill-stark1"));
        let n = self.n as usize;
        hash::sponge(
            [
                tag,
                Felt::new(n as u128),
                Felt::new(slots_for(n) as u128),
                Felt::ZERO,
            ],
            &self.limbs,
        )
    }
}

impl ToElements<Felt> for PublicInputs {
    fn to_elements(&self) -> Vec<Felt> {
        let mut out = vec![Felt::new(u128::from(self.n))];
        out.extend_from_slice(&self.limbs);
        out.extend_from_slice(&self.digest);
        out
    }
}

pub struct BatchAir {
    context: AirContext<Felt>,
    public: PublicInputs,
    seed: [Felt; WIDTH],
}

/// Periodic columns, in this order: first row of a slot, not-last row, row 62, absorb
/// selectors for rows 16/32/48 (row 0's is the first-row column), then C1 and C2 lanes.
const P_FIRST: usize = 0;
const P_NOT_LAST: usize = 1;
const P_PRE_LAST: usize = 2;
const P_SEL: usize = 3;
const P_C1: usize = 6;
const P_C2: usize = P_C1 + WIDTH;

fn transition_degrees() -> Vec<TransitionConstraintDegree> {
    let cyc = |base| TransitionConstraintDegree::with_cycles(base, vec![SLOT_ROWS]);
    let mut d = Vec::new();
    d.extend((0..SLOT_COLS).map(|_| cyc(1))); // slot columns constant
    d.extend((1..SLOT_COLS).map(|_| TransitionConstraintDegree::new(2))); // padding is zero
    d.push(TransitionConstraintDegree::new(2)); // real is a bit
    d.push(TransitionConstraintDegree::new(2)); // real never goes 0 -> 1
    d.push(TransitionConstraintDegree::new(3)); // amount != 0
    d.push(TransitionConstraintDegree::new(3)); // from != to
    d.extend((0..NUM_RANGE).map(|_| cyc(2))); // accumulator starts with a bit
    d.extend((0..NUM_RANGE).map(|_| cyc(2))); // accumulator doubles and adds a bit
    d.extend((0..NUM_RANGE).map(|_| cyc(1))); // accumulator ends at the value
    d.extend((0..WIDTH).map(|_| TransitionConstraintDegree::new(3))); // sponge round
    d
}

/// Number of transition constraints (for tests and docs).
pub fn num_constraints() -> usize {
    transition_degrees().len()
}

impl BatchAir {
    fn num_assertions(n: usize, slots: usize) -> usize {
        WIDTH + 2 + usize::from(n >= 1) + usize::from(n < slots)
    }
}

impl Air for BatchAir {
    type BaseField = Felt;
    type PublicInputs = PublicInputs;

    /// The caller (`verify`) has checked that the trace has [`TRACE_WIDTH`] columns and
    /// `64 · slots_for(n)` rows, so the assertions below are in range.
    fn new(trace_info: TraceInfo, public: PublicInputs, options: ProofOptions) -> Self {
        let n = public.n as usize;
        let slots = slots_for(n);
        let context = AirContext::new(
            trace_info,
            transition_degrees(),
            Self::num_assertions(n, slots),
            options,
        );
        let seed = public.seed();
        BatchAir {
            context,
            public,
            seed,
        }
    }

    fn context(&self) -> &AirContext<Felt> {
        &self.context
    }

    fn get_periodic_column_values(&self) -> Vec<Vec<Felt>> {
        let p = params();
        let bit = |f: &dyn Fn(usize) -> bool| {
            (0..SLOT_ROWS)
                .map(|k| if f(k) { Felt::ONE } else { Felt::ZERO })
                .collect::<Vec<_>>()
        };
        let mut cols = vec![
            bit(&|k| k == 0),
            bit(&|k| k != SLOT_ROWS - 1),
            bit(&|k| k == SLOT_ROWS - 2),
        ];
        for (at, _) in &ABSORB[1..] {
            cols.push(bit(&|k| k == *at));
        }
        for i in 0..WIDTH {
            cols.push(p.c1.iter().map(|c| c[i]).collect());
        }
        for i in 0..WIDTH {
            cols.push(p.c2.iter().map(|c| c[i]).collect());
        }
        cols
    }

    fn evaluate_transition<E: FieldElement<BaseField = Felt>>(
        &self,
        frame: &EvaluationFrame<E>,
        periodic: &[E],
        result: &mut [E],
    ) {
        let cur = frame.current();
        let next = frame.next();
        let (first, not_last, pre_last) = (
            periodic[P_FIRST],
            periodic[P_NOT_LAST],
            periodic[P_PRE_LAST],
        );
        let real = cur[REAL];
        let mut out = result.iter_mut();
        let mut put = |v: E| {
            if let Some(slot) = out.next() {
                *slot = v;
            }
        };

        for c in 0..SLOT_COLS {
            put(not_last * (next[c] - cur[c]));
        }
        for &c in &cur[1..SLOT_COLS] {
            put((E::ONE - real) * c);
        }
        put(real * (real - E::ONE));
        put((E::ONE - real) * next[REAL]);
        put(real * (cur[AMOUNT] * cur[INV_AMOUNT] - E::ONE));
        put(real * ((cur[FROM] - cur[TO]) * cur[INV_FROM_MINUS_TO] - E::ONE));

        let two = E::from(2u32);
        for j in 0..NUM_RANGE {
            let acc = cur[ACC + j];
            put(first * acc * (acc - E::ONE));
        }
        for j in 0..NUM_RANGE {
            let bit = next[ACC + j] - two * cur[ACC + j];
            put(not_last * bit * (bit - E::ONE));
        }
        let values = range_values(next);
        for (j, v) in values.iter().enumerate() {
            put(pre_last * (next[ACC + j] - *v));
        }

        // (MDS^-1 · (s' - C2))^3 = MDS · s^3 + C1 + absorbed
        let p = params();
        let s = &cur[HASH..HASH + WIDTH];
        let cubed: Vec<E> = s.iter().map(|&x| x * x * x).collect();
        let mut rhs = mat_vec(&p.mds, &cubed);
        let sel = [
            first,
            periodic[P_SEL],
            periodic[P_SEL + 1],
            periodic[P_SEL + 2],
        ];
        for (lane, r) in rhs.iter_mut().take(2).enumerate() {
            for ((_, cols), sel) in ABSORB.iter().zip(sel) {
                *r += sel * cur[cols[lane]];
            }
        }
        let shifted: Vec<E> = (0..WIDTH)
            .map(|i| next[HASH + i] - periodic[P_C2 + i])
            .collect();
        let lhs = mat_vec(&p.mds_inv, &shifted);
        for i in 0..WIDTH {
            put(lhs[i] * lhs[i] * lhs[i] - rhs[i] - periodic[P_C1 + i]);
        }
    }

    fn get_assertions(&self) -> Vec<Assertion<Felt>> {
        let n = self.public.n as usize;
        let slots = slots_for(n);
        let last = self.trace_length() - 1;
        let mut out: Vec<Assertion<Felt>> = (0..WIDTH)
            .map(|i| Assertion::single(HASH + i, 0, self.seed[i]))
            .collect();
        out.push(Assertion::single(HASH, last, self.public.digest[0]));
        out.push(Assertion::single(HASH + 1, last, self.public.digest[1]));
        // `real` is a bit that never rises, so these two pin exactly n real slots, first.
        if n >= 1 {
            out.push(Assertion::single(REAL, SLOT_ROWS * (n - 1), Felt::ONE));
        }
        if n < slots {
            out.push(Assertion::single(REAL, SLOT_ROWS * n, Felt::ZERO));
        }
        out
    }
}
