//! [`StarkBackend`]: proving, verification, and the bounds checks that keep winterfell's
//! deserializer away from attacker-chosen allocation sizes.

use crate::air::{BatchAir, PublicInputs, SLOT_ROWS, TRACE_WIDTH, slots_for};
use crate::prover::{BatchProver, Coin, Commit, Hash, SlotValues, build_trace};
use crate::{
    HEADER_LEN, Header, MIN_SECURITY_BITS, SlotError, header, proof_options, public_limbs,
};
use proofmill_backend::{Backend, BackendError, ProveRequest, VerifyError};
use proofmill_devnet::BatchInput;
use proofmill_devnet::StateTransition;
use proofmill_types::PublicValues;
use std::panic::{AssertUnwindSafe, catch_unwind};
use winter_utils::{ByteReader, Serializable, SliceReader};
use winterfell::math::fields::f128::BaseElement as Felt;
use winterfell::math::{FieldElement, StarkField};
use winterfell::{AcceptableOptions, Proof, Prover, TraceInfo, TraceTable};

/// The `stark` backend. Stateless: no keys, no setup.
#[derive(Clone, Copy, Debug, Default)]
pub struct StarkBackend;

impl Backend for StarkBackend {
    fn name(&self) -> &str {
        "stark"
    }

    fn prove(&self, req: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError> {
        let input =
            BatchInput::decode(req.input).map_err(|e| BackendError::BadInput(e.to_string()))?;
        let public = input
            .execute()
            .map_err(|e| BackendError::BadInput(e.to_string()))?
            .transition();
        let expected = StateTransition::from_public_values(req.expected)
            .map_err(|e| BackendError::BadInput(e.to_string()))?;
        if public != expected {
            return Err(BackendError::BadInput(format!(
                "batch {} executes to {public:?}, but the request expects {expected:?}",
                req.batch
            )));
        }
        prove_batch(&input, &expected)
    }

    fn check_input(&self, req: &ProveRequest<'_>) -> Result<(), BackendError> {
        proofmill_devnet::backend::check_input(req)
    }

    fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError> {
        let public = StateTransition::from_public_values(public)
            .map_err(|e| VerifyError::Invalid(format!("the batch's {e}")))?;
        verify_proof(&public, proof)
    }
}

/// Seed, trace and public inputs for `input` under `public`.
pub(crate) fn witness(
    input: &BatchInput,
    public: &StateTransition,
) -> Result<(TraceTable<Felt>, [Felt; 2], PublicInputs), SlotError> {
    if input.transfers.len() > crate::MAX_TRANSFERS as usize {
        return Err(SlotError::TooMany(input.transfers.len()));
    }
    let slots = input
        .transfers
        .iter()
        .enumerate()
        .map(|(i, w)| SlotValues::from_witness(i, w))
        .collect::<Result<Vec<_>, _>>()?;
    let mut inputs = PublicInputs {
        // At most MAX_TRANSFERS (checked above), so this fits.
        n: slots.len() as u32,
        limbs: public_limbs(public),
        digest: [Felt::ZERO; 2],
    };
    let (trace, digest) = build_trace(&slots, inputs.seed());
    inputs.digest = digest;
    Ok((trace, digest, inputs))
}

/// Proves `input`'s records bound to `public` (no execution or public-value check: callers
/// wanting those use [`StarkBackend::prove`]). Pure and blocking; handy for benchmarks.
pub fn prove_batch(input: &BatchInput, public: &StateTransition) -> Result<Vec<u8>, BackendError> {
    let (trace, digest, inputs) =
        witness(input, public).map_err(|e| BackendError::BadInput(e.to_string()))?;
    let head = Header {
        n: inputs.n,
        h: digest.map(|x| x.as_int()),
    };
    let prover = BatchProver::new(proof_options(), inputs);
    // winterfell asserts internally (e.g. constraint checks in debug builds); an unsatisfied
    // trace would be our bug, so report it as a failure rather than unwinding the worker.
    let proved = catch_unwind(AssertUnwindSafe(|| prover.prove(trace)));
    let proof = match proved {
        Ok(Ok(proof)) => proof,
        Ok(Err(e)) => return Err(BackendError::Failed(format!("prove: {e}"))),
        Err(_) => return Err(BackendError::Failed("winterfell prover panicked".into())),
    };
    let mut out = Vec::with_capacity(HEADER_LEN + 64 * 1024);
    out.extend_from_slice(&head.encode());
    out.extend_from_slice(&proof.to_bytes());
    verify_proof(public, &out)
        .map_err(|e| BackendError::Failed(format!("produced proof does not verify: {e}")))?;
    Ok(out)
}

/// Checks that `proof` is a `stark` proof bound to exactly `public` (see the crate docs for
/// what that means). Neither unwinds nor aborts on any input: lengths are bounds-checked
/// before winterfell parses, and a panic inside winterfell is caught and reported.
pub fn verify_proof(public: &StateTransition, proof: &[u8]) -> Result<(), VerifyError> {
    let (head, body) = header(proof)?;
    let malformed = |m: &str| VerifyError::Malformed(m.to_string());
    // winterfell's parser asserts on some option values; the context (trace shape, field,
    // options) is fixed by `n`, so demand its exact bytes before parsing anything.
    let prefix = context_prefix(head.n);
    if !body.starts_with(&prefix) {
        return Err(malformed(
            "proof context (trace shape, field or options) is not ours",
        ));
    }
    check_layout(&body[prefix.len()..])
        .ok_or_else(|| malformed("proof layout: a length exceeds the bytes present"))?;
    let parsed = catch_unwind(|| Proof::from_bytes(body))
        .map_err(|_| malformed("winterfell proof parser panicked"))?
        .map_err(|e| VerifyError::Malformed(format!("winterfell: {e}")))?;
    // One encoding per proof: no trailing bytes, nothing the parser normalised.
    if parsed.to_bytes() != body {
        return Err(malformed("proof bytes are not canonical"));
    }
    check_shape(&parsed, head.n)?;
    let inputs = PublicInputs {
        n: head.n,
        limbs: public_limbs(public),
        digest: head.h.map(Felt::new),
    };
    let acceptable = AcceptableOptions::MinConjecturedSecurity(MIN_SECURITY_BITS);
    let verified = catch_unwind(AssertUnwindSafe(|| {
        winterfell::verify::<BatchAir, Hash, Coin, Commit>(parsed, inputs, &acceptable)
    }));
    match verified {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(VerifyError::Invalid(e.to_string())),
        Err(_) => Err(VerifyError::Invalid("winterfell verifier panicked".into())),
    }
}

/// How winterfell serialises the context of our proofs for `n` transfers, up to (not
/// including) the constraint count: trace info, field modulus, proof options.
fn context_prefix(n: u32) -> Vec<u8> {
    let rows = slots_for(n as usize) * SLOT_ROWS;
    let mut out = TraceInfo::new(TRACE_WIDTH, rows).to_bytes();
    let modulus = Felt::get_modulus_le_bytes();
    out.push(modulus.len() as u8);
    out.extend_from_slice(&modulus);
    out.extend_from_slice(&proof_options().to_bytes());
    out
}

/// The AIR constructor asserts on its context, so everything it reads from the proof must
/// already match what this backend produces: options, width, length, one segment.
fn check_shape(proof: &Proof, n: u32) -> Result<(), VerifyError> {
    let info = proof.trace_info();
    let rows = slots_for(n as usize) * SLOT_ROWS;
    let field_ok = proof.context.field_modulus_bytes() == Felt::get_modulus_le_bytes();
    let problem = if proof.options() != &proof_options() {
        Some("proof options differ from this backend's".to_string())
    } else if !field_ok {
        Some("proof is over another field".to_string())
    } else if info.is_multi_segment() || info.main_trace_width() != TRACE_WIDTH {
        Some(format!(
            "trace has {} main columns (multi-segment: {}), expected {TRACE_WIDTH}",
            info.main_trace_width(),
            info.is_multi_segment()
        ))
    } else if info.length() != rows {
        Some(format!(
            "trace has {} rows, {n} transfers need {rows}",
            info.length()
        ))
    } else if proof.num_unique_queries == 0 || proof.trace_queries.len() != 1 {
        Some("wrong number of queries or trace segments".to_string())
    } else {
        None
    };
    problem.map_or(Ok(()), |m| Err(VerifyError::Malformed(m)))
}

/// winterfell's parser allocates `Vec::with_capacity(count)` for counts read from the proof
/// (byte vectors, Merkle node lists), so a forged count would abort the process on
/// allocation. Walk the layout after the context first and reject any count the remaining
/// bytes cannot back, and any trailing bytes.
fn check_layout(rest: &[u8]) -> Option<()> {
    let mut r = SliceReader::new(rest);
    r.read_usize().ok()?; // constraint count
    r.read_u8().ok()?; // unique queries
    let len = r.read_u16().ok()?; // commitments
    r.read_slice(usize::from(len)).ok()?;
    // Trace queries (one segment), then constraint queries: values, then a Merkle opening.
    for _ in 0..2 {
        let len = r.read_usize().ok()?;
        r.read_slice(len).ok()?;
        let len = r.read_usize().ok()?;
        check_batch_opening(r.read_slice(len).ok()?)?;
    }
    for _ in 0..2 {
        let len = r.read_u16().ok()?; // out-of-domain frame: trace, then quotients
        r.read_slice(usize::from(len)).ok()?;
    }
    let layers = r.read_u8().ok()?; // FRI layers: values, then a Merkle opening
    for _ in 0..layers {
        let len = r.read_u32().ok()?;
        r.read_slice(len as usize).ok()?;
        let len = r.read_u32().ok()?;
        check_batch_opening(r.read_slice(len as usize).ok()?)?;
    }
    let len = r.read_u16().ok()?; // FRI remainder
    r.read_slice(usize::from(len)).ok()?;
    r.read_u8().ok()?; // FRI partitions
    r.read_u64().ok()?; // grinding nonce
    (!r.has_more_bytes()).then_some(())
}

/// `BatchMerkleProof` layout: depth u8, usize count of node vectors, each a usize count of
/// 32-byte digests. Every count must fit in the bytes that remain.
fn check_batch_opening(bytes: &[u8]) -> Option<()> {
    let mut r = SliceReader::new(bytes);
    r.read_u8().ok()?;
    let vectors = r.read_usize().ok()?;
    if vectors > bytes.len() {
        return None;
    }
    for _ in 0..vectors {
        let digests = r.read_usize().ok()?;
        r.read_slice(digests.checked_mul(32)?).ok()?;
    }
    Some(())
}
