//! The batch-transition circuit: proves that a devnet [`BatchInput`] moves the state root
//! `old_root -> new_root` and has batch commitment `commitment`, with exactly the rules of
//! `proofmill_devnet::BatchInput::execute`.
//!
//! Public inputs, in order: `[old_root, new_root, batch_commitment]`.
//!
//! The shape `(batch_size N, depth D)` is fixed per key pair. Every one of the `N` slots is
//! either active (a real transfer) or a no-op; active slots must form a prefix, and no-op
//! slots change neither the root nor the commitment. Per active slot:
//!
//! * `from`, `to` are decomposed into `D` bits (so both are `< 2^D`) and those bits steer the
//!   Merkle paths (bit `l` = 1: running node is the right child at level `l`);
//! * `amount > 0` and `from != to` (each by an inverse witness: `x * x_inv == active`);
//! * every balance and nonce (old and new) is range-checked to 64 bits by bit decomposition,
//!   so `sender_balance - amount` fitting in 64 bits is the no-overdraft check and
//!   `receiver_balance + amount`, `sender_nonce + 1` fitting in 64 bits are the overflow
//!   checks;
//! * sender leaf `hash([bal, nonce])` + path hashes to the running root; the new sender leaf
//!   `hash([bal - amount, nonce + 1])` along the same path gives the intermediate root;
//!   the receiver leaf + its path hashes to the intermediate root; the new receiver leaf
//!   `hash([bal + amount, nonce])` gives the next root;
//! * the transfer nonce is the sender's nonce (the devnet requires them equal), and the
//!   commitment steps `c' = hash([c, from, to, amount, nonce])`.
//!
//! The batch number is range-checked to 64 bits and starts the chain, `c0 = hash([number])`.
//! Every hash is `PoseidonSpongeVar` with the devnet's `poseidon_config()`: absorb all,
//! squeeze one, exactly like the native `proofmill_devnet::hash`.

use crate::Shape;
use ark_bn254::Fr;
use ark_crypto_primitives::sponge::constraints::CryptographicSpongeVar;
use ark_crypto_primitives::sponge::poseidon::constraints::PoseidonSpongeVar;
use ark_ff::{Field, Zero};
use ark_r1cs_std::fields::fp::FpVar;
use ark_r1cs_std::prelude::*;
use ark_relations::gr1cs::{
    ConstraintSynthesizer, ConstraintSystem, ConstraintSystemRef, OptimizationGoal, SynthesisError,
    SynthesisMode,
};
use proofmill_devnet::{Account, BatchInput, ExecOutput, poseidon_config};

/// Why a batch input cannot be turned into a witness for a shape.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WitnessError {
    #[error("batch has tree depth {got}, the circuit is for depth {expected}")]
    WrongDepth { expected: u8, got: u8 },
    #[error("batch has {got} transfers, the circuit takes at most {max}")]
    TooManyTransfers { max: usize, got: usize },
    #[error("transfer {transfer}: Merkle paths must have {depth} siblings")]
    PathLength { transfer: usize, depth: u8 },
    #[error("transfer {transfer}: account index {index} outside a depth-{depth} tree")]
    IndexOutOfRange {
        transfer: usize,
        index: u32,
        depth: u8,
    },
    #[error("batch does not execute: {0}")]
    Exec(String),
}

/// One slot's private inputs. Inactive slots hold all-zero data.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotWitness {
    pub active: bool,
    pub from: u32,
    pub to: u32,
    pub amount: u64,
    pub sender: Account,
    pub sender_path: Vec<Fr>,
    pub receiver: Account,
    pub receiver_path: Vec<Fr>,
}

impl SlotWitness {
    fn noop(depth: u8) -> Self {
        SlotWitness {
            active: false,
            from: 0,
            to: 0,
            amount: 0,
            sender: Account::default(),
            sender_path: vec![Fr::zero(); usize::from(depth)],
            receiver: Account::default(),
            receiver_path: vec![Fr::zero(); usize::from(depth)],
        }
    }
}

/// The three public inputs as field elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicInputs {
    pub old_root: Fr,
    pub new_root: Fr,
    pub commitment: Fr,
}

impl PublicInputs {
    /// In the order the verifier takes them.
    pub fn to_array(self) -> [Fr; 3] {
        [self.old_root, self.new_root, self.commitment]
    }
}

impl From<ExecOutput> for PublicInputs {
    fn from(o: ExecOutput) -> Self {
        PublicInputs {
            old_root: o.old_root,
            new_root: o.new_root,
            commitment: o.commitment,
        }
    }
}

/// The circuit for one shape, carrying a (possibly blank) witness.
#[derive(Clone, Debug)]
pub struct BatchCircuit {
    pub shape: Shape,
    pub number: u64,
    pub public: PublicInputs,
    /// Exactly `shape.batch_size` slots.
    pub slots: Vec<SlotWitness>,
}

impl BatchCircuit {
    /// All-no-op circuit: what the key generator synthesizes (values are irrelevant there).
    pub fn blank(shape: Shape) -> Self {
        BatchCircuit {
            shape,
            number: 0,
            public: PublicInputs {
                old_root: Fr::zero(),
                new_root: Fr::zero(),
                commitment: Fr::zero(),
            },
            slots: vec![SlotWitness::noop(shape.depth); shape.batch_size],
        }
    }

    /// Witness for `input` with *claimed* public inputs, without executing it: an invalid
    /// batch gives a circuit whose constraints are unsatisfied (used by the tests). Only the
    /// shape is checked: depth, count, path lengths and index range.
    pub fn with_public(
        shape: Shape,
        input: &BatchInput,
        public: PublicInputs,
    ) -> Result<Self, WitnessError> {
        if input.depth != shape.depth {
            return Err(WitnessError::WrongDepth {
                expected: shape.depth,
                got: input.depth,
            });
        }
        if input.transfers.len() > shape.batch_size {
            return Err(WitnessError::TooManyTransfers {
                max: shape.batch_size,
                got: input.transfers.len(),
            });
        }
        let depth = usize::from(shape.depth);
        let cap = 1u64 << shape.depth;
        let mut slots = Vec::with_capacity(shape.batch_size);
        for (i, w) in input.transfers.iter().enumerate() {
            if w.sender_path.len() != depth || w.receiver_path.len() != depth {
                return Err(WitnessError::PathLength {
                    transfer: i,
                    depth: shape.depth,
                });
            }
            for index in [w.transfer.from, w.transfer.to] {
                if u64::from(index) >= cap {
                    return Err(WitnessError::IndexOutOfRange {
                        transfer: i,
                        index,
                        depth: shape.depth,
                    });
                }
            }
            slots.push(SlotWitness {
                active: true,
                from: w.transfer.from,
                to: w.transfer.to,
                amount: w.transfer.amount,
                sender: w.sender,
                sender_path: w.sender_path.clone(),
                receiver: w.receiver,
                receiver_path: w.receiver_path.clone(),
            });
        }
        slots.resize(shape.batch_size, SlotWitness::noop(shape.depth));
        Ok(BatchCircuit {
            shape,
            number: input.number,
            public,
            slots,
        })
    }

    /// Executes `input` with the devnet's stateless executor and builds the witness whose
    /// public inputs are the executor's output. Fails if the batch does not execute.
    pub fn from_input(shape: Shape, input: &BatchInput) -> Result<Self, WitnessError> {
        let out = input
            .execute()
            .map_err(|e| WitnessError::Exec(e.to_string()))?;
        Self::with_public(shape, input, out.into())
    }

    /// Synthesizes the circuit into a fresh constraint system (prove mode, same optimization
    /// goal as the Groth16 prover) and returns it, for satisfaction checks and counting.
    pub fn synthesize(self) -> Result<ConstraintSystemRef<Fr>, SynthesisError> {
        let cs = ConstraintSystem::<Fr>::new_ref();
        cs.set_optimization_goal(OptimizationGoal::Constraints);
        cs.set_mode(SynthesisMode::Prove {
            construct_matrices: true,
            generate_lc_assignments: false,
        });
        self.generate_constraints(cs.clone())?;
        cs.finalize();
        Ok(cs)
    }
}

/// Number of constraints of a shape's circuit (synthesized in setup mode, finalized).
pub fn constraint_count(shape: Shape) -> Result<usize, SynthesisError> {
    let cs = ConstraintSystem::<Fr>::new_ref();
    cs.set_optimization_goal(OptimizationGoal::Constraints);
    cs.set_mode(SynthesisMode::Setup);
    BatchCircuit::blank(shape).generate_constraints(cs.clone())?;
    cs.finalize();
    Ok(cs.num_constraints())
}

/// `hash(inputs)` in the circuit: a fresh `PoseidonSpongeVar` with `poseidon_config()`,
/// absorb all inputs, squeeze one element. Mirrors `proofmill_devnet::hash`.
pub fn hash_var(
    cs: &ConstraintSystemRef<Fr>,
    inputs: &[FpVar<Fr>],
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut sponge = PoseidonSpongeVar::new(cs.clone(), poseidon_config());
    sponge.absorb(&inputs)?;
    let mut out = sponge.squeeze_field_elements(1)?;
    out.pop().ok_or(SynthesisError::Unsatisfiable)
}

/// Allocates `bits` boolean witnesses for the low bits of `value` and returns them with the
/// field element they compose (a linear combination: no extra constraint). The result is
/// therefore range-checked to `bits` bits.
fn alloc_bits(
    cs: &ConstraintSystemRef<Fr>,
    value: u64,
    bits: usize,
) -> Result<(FpVar<Fr>, Vec<Boolean<Fr>>), SynthesisError> {
    let bits = (0..bits)
        .map(|i| Boolean::new_witness(cs.clone(), || Ok((value >> i) & 1 == 1)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((Boolean::le_bits_to_fp(&bits)?, bits))
}

/// A 64-bit value as a range-checked field element.
fn alloc_u64(cs: &ConstraintSystemRef<Fr>, value: u64) -> Result<FpVar<Fr>, SynthesisError> {
    Ok(alloc_bits(cs, value, 64)?.0)
}

/// Witness for `x * inv == active`: `1/x` in an active slot (none if `x` is 0, so the
/// constraint fails), 0 in an inactive one.
fn alloc_inverse(
    cs: &ConstraintSystemRef<Fr>,
    x: Fr,
    active: bool,
) -> Result<FpVar<Fr>, SynthesisError> {
    let inv = if active {
        x.inverse().unwrap_or(Fr::zero())
    } else {
        Fr::zero()
    };
    FpVar::new_witness(cs.clone(), || Ok(inv))
}

/// Root implied by `leaf` under `siblings` (bottom-up), with `bits[l]` = 1 meaning the
/// running node is the right child at level `l`. One constraint per level for the swap.
fn path_root(
    cs: &ConstraintSystemRef<Fr>,
    leaf: FpVar<Fr>,
    bits: &[Boolean<Fr>],
    siblings: &[FpVar<Fr>],
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut node = leaf;
    for (bit, sibling) in bits.iter().zip(siblings) {
        let left = bit.select(sibling, &node)?;
        let right = &node + sibling - &left;
        node = hash_var(cs, &[left, right])?;
    }
    Ok(node)
}

impl ConstraintSynthesizer<Fr> for BatchCircuit {
    /// Synthesizes with no tracing subscriber on this thread, whatever the process installed
    /// (see [`untraced`]). Every synthesis goes through here: key setup, key checks, proving,
    /// counting.
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        untraced(|| self.constrain(cs))
    }
}

/// Runs `f` with no tracing dispatcher on the current thread.
///
/// arkworks' gadgets open an INFO span (target `gr1cs`) per namespace and never close it
/// (`ark_relations::ns!` forgets it), and the constraint system keeps a clone of the current
/// span for every constraint. Under a subscriber that enables INFO for `gr1cs`, the default,
/// synthesizing the demo circuit keeps millions of spans alive: gigabytes, and minutes.
/// Without a dispatcher no span exists, so the cost no longer depends on `RUST_LOG`. (What is
/// lost: constraint traces naming the gadget of an unsatisfied constraint, a debugging aid
/// that needs arkworks' own `ConstraintLayer` anyway.)
fn untraced<R>(f: impl FnOnce() -> R) -> R {
    tracing::dispatcher::with_default(&tracing::Dispatch::none(), f)
}

impl BatchCircuit {
    fn constrain(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let depth = usize::from(self.shape.depth);
        if self.slots.len() != self.shape.batch_size
            || self
                .slots
                .iter()
                .any(|s| s.sender_path.len() != depth || s.receiver_path.len() != depth)
        {
            // Never a different circuit for the same shape: refuse instead.
            return Err(SynthesisError::Unsatisfiable);
        }
        let old_root = FpVar::new_input(cs.clone(), || Ok(self.public.old_root))?;
        let new_root = FpVar::new_input(cs.clone(), || Ok(self.public.new_root))?;
        let commitment_pub = FpVar::new_input(cs.clone(), || Ok(self.public.commitment))?;

        let number = alloc_u64(&cs, self.number)?;
        let mut commitment = hash_var(&cs, &[number])?;
        let mut root = old_root;
        let mut prev_active = Boolean::TRUE;

        for slot in &self.slots {
            let active = Boolean::new_witness(cs.clone(), || Ok(slot.active))?;
            // Active slots form a prefix: active => previous slot active.
            prev_active.conditional_enforce_equal(&Boolean::TRUE, &active)?;
            let active_fp = FpVar::from(active.clone());

            let (from, from_bits) = alloc_bits(&cs, u64::from(slot.from), depth)?;
            let (to, to_bits) = alloc_bits(&cs, u64::from(slot.to), depth)?;
            let amount = alloc_u64(&cs, slot.amount)?;
            let s_bal = alloc_u64(&cs, slot.sender.balance)?;
            let s_nonce = alloc_u64(&cs, slot.sender.nonce)?;
            let r_bal = alloc_u64(&cs, slot.receiver.balance)?;
            let r_nonce = alloc_u64(&cs, slot.receiver.nonce)?;

            // amount > 0 and from != to, when active.
            let amount_inv = alloc_inverse(&cs, Fr::from(slot.amount), slot.active)?;
            amount.mul_equals(&amount_inv, &active_fp)?;
            let diff = &from - &to;
            let diff_inv =
                alloc_inverse(&cs, Fr::from(slot.from) - Fr::from(slot.to), slot.active)?;
            diff.mul_equals(&diff_inv, &active_fp)?;

            // New values, each range-checked to 64 bits (no overdraft / no overflow).
            let s_bal_new = alloc_u64(&cs, slot.sender.balance.wrapping_sub(slot.amount))?;
            s_bal_new.enforce_equal(&(&s_bal - &amount))?;
            let s_nonce_new = alloc_u64(&cs, slot.sender.nonce.wrapping_add(1))?;
            s_nonce_new.enforce_equal(&(&s_nonce + Fr::from(1u64)))?;
            let r_bal_new = alloc_u64(&cs, slot.receiver.balance.wrapping_add(slot.amount))?;
            r_bal_new.enforce_equal(&(&r_bal + &amount))?;

            let s_path =
                Vec::<FpVar<Fr>>::new_witness(cs.clone(), || Ok(slot.sender_path.clone()))?;
            let r_path =
                Vec::<FpVar<Fr>>::new_witness(cs.clone(), || Ok(slot.receiver_path.clone()))?;

            // Sender: old leaf under the running root, new leaf gives the intermediate root.
            let s_leaf = hash_var(&cs, &[s_bal, s_nonce.clone()])?;
            path_root(&cs, s_leaf, &from_bits, &s_path)?
                .conditional_enforce_equal(&root, &active)?;
            let s_leaf_new = hash_var(&cs, &[s_bal_new, s_nonce_new])?;
            let mid_root = path_root(&cs, s_leaf_new, &from_bits, &s_path)?;

            // Receiver: old leaf under the intermediate root, new leaf gives the next root.
            let r_leaf = hash_var(&cs, &[r_bal, r_nonce.clone()])?;
            path_root(&cs, r_leaf, &to_bits, &r_path)?
                .conditional_enforce_equal(&mid_root, &active)?;
            let r_leaf_new = hash_var(&cs, &[r_bal_new, r_nonce])?;
            let next_root = path_root(&cs, r_leaf_new, &to_bits, &r_path)?;

            // Commitment step; the transfer nonce is the sender nonce.
            let step = hash_var(&cs, &[commitment.clone(), from, to, amount, s_nonce])?;

            root = active.select(&next_root, &root)?;
            commitment = active.select(&step, &commitment)?;
            prev_active = active;
        }

        root.enforce_equal(&new_root)?;
        commitment.enforce_equal(&commitment_pub)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofmill_devnet::{compute_root, hash};

    #[test]
    fn hash_gadget_matches_native() {
        let cs = ConstraintSystem::<Fr>::new_ref();
        for n in 1..=5u64 {
            let xs: Vec<Fr> = (0..n).map(|i| Fr::from(i * 7 + 3)).collect();
            let vars = Vec::<FpVar<Fr>>::new_witness(cs.clone(), || Ok(xs.clone())).unwrap();
            let h = hash_var(&cs, &vars).unwrap();
            assert_eq!(h.value().unwrap(), hash(&xs), "arity {n}");
        }
        assert!(cs.is_satisfied().unwrap());
    }

    #[test]
    fn path_gadget_matches_native() {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let siblings: Vec<Fr> = (0..6u64).map(|i| Fr::from(1000 + i)).collect();
        for index in [0u32, 1, 2, 37, 63] {
            let leaf = Fr::from(u64::from(index) + 5);
            let (_, bits) = alloc_bits(&cs, u64::from(index), 6).unwrap();
            let leaf_var = FpVar::new_witness(cs.clone(), || Ok(leaf)).unwrap();
            let sib = Vec::<FpVar<Fr>>::new_witness(cs.clone(), || Ok(siblings.clone())).unwrap();
            let root = path_root(&cs, leaf_var, &bits, &sib).unwrap();
            assert_eq!(root.value().unwrap(), compute_root(leaf, index, &siblings));
        }
        assert!(cs.is_satisfied().unwrap());
    }
}
