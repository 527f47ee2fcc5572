//! `exec`: re-executes the batch and returns its public values. No cryptography: the
//! "proof" is the 96-byte [`PublicValues`] encoding, checked by comparison.

use crate::{Backend, BackendError, ProveRequest, VerifyError};
use proofmill_types::PublicValues;

#[derive(Clone, Copy, Debug, Default)]
pub struct ExecBackend;

impl Backend for ExecBackend {
    fn name(&self) -> &str {
        "exec"
    }

    fn prove(&self, req: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError> {
        let public = proofmill_devnet::execute_batch_input(req.input)
            .map_err(|e| BackendError::BadInput(e.to_string()))?;
        Ok(public.encode().to_vec())
    }

    fn verify_is_cheap(&self) -> bool {
        true
    }

    fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError> {
        let got = PublicValues::decode(proof).ok_or_else(|| {
            VerifyError::Malformed(format!("exec proof must be 96 bytes, got {}", proof.len()))
        })?;
        if got == *public {
            return Ok(());
        }
        let mut diffs = Vec::new();
        if got.old_state_root != public.old_state_root {
            diffs.push(format!(
                "old root {} != {}",
                got.old_state_root, public.old_state_root
            ));
        }
        if got.new_state_root != public.new_state_root {
            diffs.push(format!(
                "new root {} != {}",
                got.new_state_root, public.new_state_root
            ));
        }
        if got.batch_commitment != public.batch_commitment {
            diffs.push(format!(
                "commitment {} != {}",
                got.batch_commitment, public.batch_commitment
            ));
        }
        Err(VerifyError::Invalid(diffs.join("; ")))
    }
}
