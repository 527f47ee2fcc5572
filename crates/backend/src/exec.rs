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

    fn check_input(&self, req: &ProveRequest<'_>) -> Result<(), BackendError> {
        check_devnet_input(req)
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

/// The cheap checks of a devnet batch input (the input of `exec`, `stark` and `groth16`):
/// it decodes, names `req.batch`, and starts from the expected old state root. Whether it
/// executes to the expected new root and commitment is known only by executing it, which is
/// the proving.
pub fn check_devnet_input(req: &ProveRequest<'_>) -> Result<(), BackendError> {
    let input = proofmill_devnet::BatchInput::decode(req.input)
        .map_err(|e| BackendError::BadInput(format!("malformed batch input: {e}")))?;
    if input.number != req.batch {
        return Err(BackendError::BadInput(format!(
            "the input is for batch {}, not {}",
            input.number, req.batch
        )));
    }
    let old_root = proofmill_devnet::fr_to_digest(input.old_root);
    if old_root != req.expected.old_state_root {
        return Err(BackendError::BadInput(format!(
            "the input starts from state root {old_root}, but the public values say {}",
            req.expected.old_state_root
        )));
    }
    Ok(())
}
