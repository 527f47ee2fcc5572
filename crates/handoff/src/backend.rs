//! The handoff prover's backends: one per proof type, each waiting in the [`Hub`] for the
//! outside cluster's proof instead of proving.

use crate::hub::Hub;
use proofmill_backend::{Backend, BackendError, Cancel, ProveRequest, VerifyError};
use proofmill_types::{ProofType, PublicValues};
use std::sync::Arc;

pub struct HandoffBackend {
    proof_type: ProofType,
    hub: Arc<Hub>,
}

impl HandoffBackend {
    pub fn new(proof_type: ProofType, hub: Arc<Hub>) -> HandoffBackend {
        HandoffBackend { proof_type, hub }
    }
}

impl Backend for HandoffBackend {
    fn name(&self) -> &str {
        "handoff"
    }

    fn prove(&self, req: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError> {
        self.prove_cancellable(req, &Cancel::default())
    }

    fn prove_cancellable(
        &self,
        req: &ProveRequest<'_>,
        cancel: &Cancel,
    ) -> Result<Vec<u8>, BackendError> {
        self.hub
            .wait_for_proof(req.batch, &self.proof_type, req.input, req.expected, cancel)
    }

    /// The hub checked the proof with the proof type's own backend before accepting it.
    fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError> {
        match self.hub.config().verifiers.get(&self.proof_type) {
            Some(v) => v.verify(public, proof),
            None => Err(VerifyError::Malformed(format!(
                "no verifier for proof type {}",
                self.proof_type
            ))),
        }
    }
}
