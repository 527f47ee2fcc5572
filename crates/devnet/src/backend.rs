//! `exec`: re-executes the batch and returns its state transition. No cryptography: the
//! "proof" is the 96-byte [`StateTransition`] encoding, checked by comparison.

use crate::transition::StateTransition;
use proofmill_backend::{Backend, BackendError, ProveRequest, VerifyError};
use proofmill_types::PublicValues;

#[derive(Clone, Copy, Debug, Default)]
pub struct ExecBackend;

impl Backend for ExecBackend {
    fn name(&self) -> &str {
        "exec"
    }

    fn prove(&self, req: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError> {
        let transition = crate::execute_batch_input(req.input)
            .map_err(|e| BackendError::BadInput(e.to_string()))?;
        Ok(transition.encode().to_vec())
    }

    fn check_input(&self, req: &ProveRequest<'_>) -> Result<(), BackendError> {
        check_input(req)
    }

    fn verify_is_cheap(&self) -> bool {
        true
    }

    fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError> {
        let expected = StateTransition::from_public_values(public)
            .map_err(|e| VerifyError::Invalid(format!("the batch's {e}")))?;
        let got = StateTransition::decode(proof).map_err(|e| {
            VerifyError::Malformed(format!("exec proof must be 96 bytes, got {}", e.0))
        })?;
        if got == expected {
            return Ok(());
        }
        let mut diffs = Vec::new();
        if got.old_state_root != expected.old_state_root {
            diffs.push(format!(
                "old root {} != {}",
                got.old_state_root, expected.old_state_root
            ));
        }
        if got.new_state_root != expected.new_state_root {
            diffs.push(format!(
                "new root {} != {}",
                got.new_state_root, expected.new_state_root
            ));
        }
        if got.batch_commitment != expected.batch_commitment {
            diffs.push(format!(
                "commitment {} != {}",
                got.batch_commitment, expected.batch_commitment
            ));
        }
        Err(VerifyError::Invalid(diffs.join("; ")))
    }
}

/// The cheap checks of a devnet batch (the input of `exec`, `stark` and `groth16`): its public
/// values are a [`StateTransition`], its input decodes, names `req.batch`, and starts from the
/// expected old state root. Whether it executes to the expected new root and commitment is
/// known only by executing it, which is the proving.
pub fn check_input(req: &ProveRequest<'_>) -> Result<(), BackendError> {
    let expected = StateTransition::from_public_values(req.expected)
        .map_err(|e| BackendError::BadInput(e.to_string()))?;
    let input = crate::BatchInput::decode(req.input)
        .map_err(|e| BackendError::BadInput(format!("malformed batch input: {e}")))?;
    if input.number != req.batch {
        return Err(BackendError::BadInput(format!(
            "the input is for batch {}, not {}",
            input.number, req.batch
        )));
    }
    let old_root = crate::fr_to_digest(input.old_root);
    if old_root != expected.old_state_root {
        return Err(BackendError::BadInput(format!(
            "the input starts from state root {old_root}, but the public values say {}",
            expected.old_state_root
        )));
    }
    Ok(())
}
