//! Proving backends.
//!
//! A backend proves that a batch input moves the state from `old_state_root` to
//! `new_state_root` with `batch_commitment`, and checks such proofs. Provers call
//! [`Backend::prove`]; the coordinator calls [`Backend::verify`] on every result before
//! storing it.

mod exec;

pub use exec::ExecBackend;

use proofmill_types::{ProofType, PublicValues};
use std::sync::Arc;

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum BackendError {
    /// The input cannot be proven (malformed, or it does not execute).
    #[error("bad input: {0}")]
    BadInput(String),
    /// The backend itself failed (crash, timeout, resource exhaustion); may succeed on retry.
    #[error("prover failed: {0}")]
    Failed(String),
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed proof: {0}")]
    Malformed(String),
    #[error("proof does not verify: {0}")]
    Invalid(String),
}

/// A task as a backend sees it.
#[derive(Clone, Debug)]
pub struct ProveRequest<'a> {
    pub batch: u64,
    pub input: &'a [u8],
    /// What the coordinator expects the proof to attest.
    pub expected: PublicValues,
}

/// One proof system. `prove` is blocking and CPU-heavy: call it from a blocking thread.
pub trait Backend: Send + Sync + 'static {
    /// Name of the backend implementation (`exec`, `groth16`, ...).
    fn name(&self) -> &str;

    fn prove(&self, req: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError>;

    /// Checks that `proof` attests exactly `public`. Must not need the batch input.
    fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError>;
}

/// Looks a backend up by name; `None` for an unknown name.
pub fn backend_by_name(name: &str) -> Option<Arc<dyn Backend>> {
    match name {
        "exec" => Some(Arc::new(ExecBackend)),
        _ => None,
    }
}

/// Backend names this build knows.
pub const BACKENDS: &[&str] = &["exec"];

/// A proof type served by a backend: `name` or `name:backend` (e.g. `audit:exec`, a second,
/// independent exec attestation). Without `:backend` the backend is the type's own name.
pub fn parse_proof_type_spec(spec: &str) -> Result<(ProofType, String), String> {
    let (pt, backend) = match spec.split_once(':') {
        Some((pt, b)) => (pt.trim(), b.trim()),
        None => (spec.trim(), spec.trim()),
    };
    let pt = ProofType::new(pt).map_err(|e| e.to_string())?;
    if !BACKENDS.contains(&backend) {
        return Err(format!(
            "unknown backend {backend:?} for proof type {pt}; known: {}",
            BACKENDS.join(", ")
        ));
    }
    Ok((pt, backend.to_string()))
}
