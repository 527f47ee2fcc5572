//! Trace generation and the winterfell `Prover`.

use crate::air::{
    ACC, AMOUNT, BatchAir, FROM, HASH, INV_AMOUNT, INV_FROM_MINUS_TO, NONCE, NUM_RANGE,
    PublicInputs, REAL, RECEIVER_BALANCE, RECEIVER_NONCE, SENDER_BALANCE, SLOT_ROWS, TO,
    TRACE_WIDTH, absorbed, slots_for,
};
use crate::hash::{WIDTH, round};
use proofmill_devnet::TransferWitness;
use winterfell::crypto::hashers::Blake3_256;
use winterfell::crypto::{DefaultRandomCoin, MerkleTree};
use winterfell::math::FieldElement;
use winterfell::math::fields::f128::BaseElement as Felt;
use winterfell::matrix::ColMatrix;
use winterfell::{
    AuxRandElements, CompositionPoly, CompositionPolyTrace, ConstraintCompositionCoefficients,
    DefaultConstraintCommitment, DefaultConstraintEvaluator, DefaultTraceLde, PartitionOptions,
    ProofOptions, Prover, StarkDomain, TraceInfo, TracePolyTable, TraceTable,
};

pub type Hash = Blake3_256<Felt>;
pub type Coin = DefaultRandomCoin<Hash>;
pub type Commit = MerkleTree<Hash>;

/// A transfer's values as they enter the trace (all u64 arithmetic already checked).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotValues {
    pub from: u32,
    pub to: u32,
    pub amount: u64,
    pub nonce: u64,
    pub sender_balance: u64,
    pub receiver_balance: u64,
    pub receiver_nonce: u64,
}

/// Why a transfer cannot fill a slot (the AIR would be unsatisfiable).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    #[error("transfer {0}: zero amount")]
    ZeroAmount(usize),
    #[error("transfer {0}: sender and receiver are the same account")]
    SelfTransfer(usize),
    #[error("transfer {index}: nonce {got} is not the sender's nonce {expected}")]
    Nonce {
        index: usize,
        expected: u64,
        got: u64,
    },
    #[error("transfer {0}: balance or nonce arithmetic leaves u64")]
    Range(usize),
    #[error("{0} transfers, at most {max} per stark proof", max = crate::MAX_TRANSFERS)]
    TooMany(usize),
}

impl SlotValues {
    /// Checks exactly what the AIR enforces for a real slot.
    pub fn from_witness(index: usize, w: &TransferWitness) -> Result<Self, SlotError> {
        let t = &w.transfer;
        if t.amount == 0 {
            return Err(SlotError::ZeroAmount(index));
        }
        if t.from == t.to {
            return Err(SlotError::SelfTransfer(index));
        }
        if t.nonce != w.sender.nonce {
            return Err(SlotError::Nonce {
                index,
                expected: w.sender.nonce,
                got: t.nonce,
            });
        }
        let ok = w.sender.balance.checked_sub(t.amount).is_some()
            && w.receiver.balance.checked_add(t.amount).is_some()
            && t.nonce.checked_add(1).is_some();
        if !ok {
            return Err(SlotError::Range(index));
        }
        Ok(SlotValues {
            from: t.from,
            to: t.to,
            amount: t.amount,
            nonce: t.nonce,
            sender_balance: w.sender.balance,
            receiver_balance: w.receiver.balance,
            receiver_nonce: w.receiver.nonce,
        })
    }

    /// The slot columns of a real slot, or of padding (`None`: all zero).
    fn columns(slot: Option<&SlotValues>) -> [Felt; ACC] {
        let mut row = [Felt::ZERO; ACC];
        if let Some(v) = slot {
            let f = |x: u64| Felt::new(u128::from(x));
            row[REAL] = Felt::ONE;
            row[FROM] = f(u64::from(v.from));
            row[TO] = f(u64::from(v.to));
            row[AMOUNT] = f(v.amount);
            row[NONCE] = f(v.nonce);
            row[SENDER_BALANCE] = f(v.sender_balance);
            row[RECEIVER_BALANCE] = f(v.receiver_balance);
            row[RECEIVER_NONCE] = f(v.receiver_nonce);
            row[INV_AMOUNT] = row[AMOUNT].inv();
            row[INV_FROM_MINUS_TO] = (row[FROM] - row[TO]).inv();
        }
        row
    }

    /// The range-checked values as integers, in accumulator order (padding: nonce + 1 = 1).
    fn range_ints(slot: Option<&SlotValues>) -> [u64; NUM_RANGE] {
        let v = slot.copied().unwrap_or_default();
        [
            v.amount,
            v.sender_balance,
            v.sender_balance.wrapping_sub(v.amount),
            v.receiver_balance,
            v.receiver_balance.wrapping_add(v.amount),
            v.nonce,
            v.nonce.wrapping_add(1),
        ]
    }
}

/// Builds the trace for `slots` (already validated by [`SlotValues::from_witness`]) and
/// returns it with its final digest. Padding slots follow the real ones.
pub fn build_trace(slots: &[SlotValues], seed: [Felt; WIDTH]) -> (TraceTable<Felt>, [Felt; 2]) {
    let total = slots_for(slots.len());
    let len = total * SLOT_ROWS;
    let mut columns = vec![vec![Felt::ZERO; len]; TRACE_WIDTH];
    let mut state = seed;
    let mut row = [Felt::ZERO; TRACE_WIDTH];
    for s in 0..total {
        let slot = slots.get(s);
        row[..ACC].copy_from_slice(&SlotValues::columns(slot));
        let ints = SlotValues::range_ints(slot);
        for k in 0..SLOT_ROWS {
            let i = s * SLOT_ROWS + k;
            for (j, v) in ints.iter().enumerate() {
                // MSB-first accumulator: the top k + 1 bits.
                row[ACC + j] = Felt::new(u128::from(v >> (SLOT_ROWS - 1 - k)));
            }
            row[HASH..HASH + WIDTH].copy_from_slice(&state);
            for (c, col) in columns.iter_mut().enumerate() {
                col[i] = row[c];
            }
            if i + 1 < len {
                round(&mut state, k, absorbed(k, &row));
            }
        }
    }
    (TraceTable::init(columns), [state[0], state[1]])
}

pub struct BatchProver {
    options: ProofOptions,
    public: PublicInputs,
}

impl BatchProver {
    pub fn new(options: ProofOptions, public: PublicInputs) -> Self {
        BatchProver { options, public }
    }
}

impl Prover for BatchProver {
    type BaseField = Felt;
    type Air = BatchAir;
    type Trace = TraceTable<Felt>;
    type HashFn = Hash;
    type VC = Commit;
    type RandomCoin = Coin;
    type TraceLde<E: FieldElement<BaseField = Felt>> = DefaultTraceLde<E, Hash, Commit>;
    type ConstraintCommitment<E: FieldElement<BaseField = Felt>> =
        DefaultConstraintCommitment<E, Hash, Commit>;
    type ConstraintEvaluator<'a, E: FieldElement<BaseField = Felt>> =
        DefaultConstraintEvaluator<'a, BatchAir, E>;

    fn get_pub_inputs(&self, _trace: &Self::Trace) -> PublicInputs {
        self.public.clone()
    }

    fn options(&self) -> &ProofOptions {
        &self.options
    }

    fn new_trace_lde<E: FieldElement<BaseField = Felt>>(
        &self,
        trace_info: &TraceInfo,
        main_trace: &ColMatrix<Felt>,
        domain: &StarkDomain<Felt>,
        partition_option: PartitionOptions,
    ) -> (Self::TraceLde<E>, TracePolyTable<E>) {
        DefaultTraceLde::new(trace_info, main_trace, domain, partition_option)
    }

    fn build_constraint_commitment<E: FieldElement<BaseField = Felt>>(
        &self,
        composition_poly_trace: CompositionPolyTrace<E>,
        num_constraint_composition_columns: usize,
        domain: &StarkDomain<Felt>,
        partition_options: PartitionOptions,
    ) -> (Self::ConstraintCommitment<E>, CompositionPoly<E>) {
        DefaultConstraintCommitment::new(
            composition_poly_trace,
            num_constraint_composition_columns,
            domain,
            partition_options,
        )
    }

    fn new_evaluator<'a, E: FieldElement<BaseField = Felt>>(
        &self,
        air: &'a BatchAir,
        aux_rand_elements: Option<AuxRandElements<E>>,
        composition_coefficients: ConstraintCompositionCoefficients<E>,
    ) -> Self::ConstraintEvaluator<'a, E> {
        DefaultConstraintEvaluator::new(air, aux_rand_elements, composition_coefficients)
    }
}
