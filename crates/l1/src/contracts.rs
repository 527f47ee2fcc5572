//! ABI bindings generated from the committed artifacts in `contracts/out/`.

use crate::{Revert, VerifierKind};
use alloy::primitives::{Address, B256, Bytes, U256};
use alloy::sol;
use alloy::sol_types::{SolCall, SolConstructor, SolInterface};
use proofmill_types::{Digest, ProofType};

sol!(
    #[derive(Debug, PartialEq, Eq)]
    Rollup,
    "../../contracts/out/Rollup.json"
);

sol!(
    #[derive(Debug, PartialEq, Eq)]
    DevExecVerifier,
    "../../contracts/out/DevExecVerifier.json"
);

sol!(
    #[derive(Debug, PartialEq, Eq)]
    Groth16BatchVerifier,
    "../../contracts/out/Groth16BatchVerifier.json"
);

pub(crate) fn u64_of(v: U256) -> u64 {
    u64::try_from(v).unwrap_or(u64::MAX)
}

pub(crate) fn decode_revert(data: &[u8]) -> Revert {
    use Rollup::RollupErrors as E;
    match E::abi_decode(data) {
        Ok(E::InvalidProof(e)) => Revert::InvalidProof {
            batch: u64_of(e.batchNumber),
            proof_type: u64_of(e.proofType),
        },
        Ok(E::NotSequencer(e)) => Revert::NotSequencer { sender: e.sender },
        Ok(E::WrongBatchNumber(e)) => Revert::WrongBatchNumber {
            expected: u64_of(e.expected),
            got: u64_of(e.got),
        },
        Ok(E::BatchNotCommitted(e)) => Revert::BatchNotCommitted(u64_of(e.batchNumber)),
        _ => Revert::Other {
            selector: data.get(..4).map(|s| s.try_into().expect("4 bytes")),
            data: data.to_vec(),
        },
    }
}

/// Deploy code of the rollup with its constructor arguments appended.
pub(crate) fn rollup_deploy_code(
    sequencer: Address,
    genesis_root: Digest,
    proof_types: &[ProofType],
    verifiers: &[Address],
) -> Vec<u8> {
    let args = Rollup::constructorCall {
        sequencer_: sequencer,
        genesisStateRoot: B256::from(genesis_root.0),
        proofTypes_: proof_types.iter().map(|p| p.as_str().to_string()).collect(),
        verifiers_: verifiers.to_vec(),
    }
    .abi_encode();
    let mut code = Rollup::BYTECODE.to_vec();
    code.extend_from_slice(&args);
    code
}

/// Deploy code of `Groth16BatchVerifier` for a verifying key given as
/// [`GROTH16_VK_WORDS`](crate::GROTH16_VK_WORDS) words.
pub(crate) fn groth16_deploy_code(vk: &[[u8; 32]]) -> crate::Result<Vec<u8>> {
    let words: [[u8; 32]; crate::GROTH16_VK_WORDS] = vk.try_into().map_err(|_| {
        crate::L1Error::Config(format!(
            "a Groth16 verifying key for 3 public inputs has {} words, got {}",
            crate::GROTH16_VK_WORDS,
            vk.len()
        ))
    })?;
    let args = Groth16BatchVerifier::constructorCall {
        vk: words.map(U256::from_be_bytes),
    }
    .abi_encode();
    let mut code = Groth16BatchVerifier::BYTECODE.to_vec();
    code.extend_from_slice(&args);
    Ok(code)
}

/// Checks the deployment arguments; returns the verifiers' deploy code, in order.
pub(crate) fn check_deploy_args(
    proof_types: &[ProofType],
    verifier_kinds: &[VerifierKind],
) -> crate::Result<Vec<Vec<u8>>> {
    if proof_types.is_empty() || proof_types.len() != verifier_kinds.len() {
        return Err(crate::L1Error::Config(format!(
            "need one verifier per proof type and at least one: {} proof types, {} verifiers",
            proof_types.len(),
            verifier_kinds.len()
        )));
    }
    verifier_kinds
        .iter()
        .map(VerifierKind::deploy_code)
        .collect()
}

pub(crate) fn commit_calldata(n: u64, new_root: Digest, commitment: Digest) -> Vec<u8> {
    Rollup::commitBatchCall {
        batchNumber: U256::from(n),
        newStateRoot: B256::from(new_root.0),
        commitment: B256::from(commitment.0),
    }
    .abi_encode()
}

pub(crate) fn verify_calldata(first: u64, proofs: &[Vec<Vec<u8>>]) -> Vec<u8> {
    Rollup::verifyBatchesCall {
        firstBatchNumber: U256::from(first),
        proofs: proofs
            .iter()
            .map(|per_type| per_type.iter().map(|p| Bytes::copy_from_slice(p)).collect())
            .collect(),
    }
    .abi_encode()
}

/// Read-only calls of the rollup, shared by both L1 implementations.
pub(crate) enum View {
    LastCommitted,
    LastVerified,
    StateRoot(u64),
    Commitment(u64),
}

impl View {
    pub(crate) fn calldata(&self) -> Vec<u8> {
        match self {
            View::LastCommitted => Rollup::lastCommittedBatchCall {}.abi_encode(),
            View::LastVerified => Rollup::lastVerifiedBatchCall {}.abi_encode(),
            View::StateRoot(n) => Rollup::stateRootCall {
                batchNumber: U256::from(*n),
            }
            .abi_encode(),
            View::Commitment(n) => Rollup::batchCommitmentCall {
                batchNumber: U256::from(*n),
            }
            .abi_encode(),
        }
    }

    /// Decodes the 32-byte return word: a number (u64) or a digest.
    pub(crate) fn word(out: &[u8]) -> crate::Result<[u8; 32]> {
        <[u8; 32]>::try_from(out).map_err(|_| {
            crate::L1Error::Rpc(format!("unexpected return data ({} bytes)", out.len()))
        })
    }
}

pub(crate) fn word_u64(w: [u8; 32]) -> u64 {
    u64_of(U256::from_be_bytes(w))
}

/// The batch number of a rollup log if it is a `BatchCommitted` event.
pub(crate) fn batch_committed(topics: &[B256]) -> Option<u64> {
    use alloy::sol_types::SolEvent;
    match topics {
        [sig, n] if *sig == Rollup::BatchCommitted::SIGNATURE_HASH => {
            Some(u64_of(U256::from_be_bytes(n.0)))
        }
        _ => None,
    }
}

/// `(first, last)` of a rollup log if it is a `BatchesVerified` event.
pub(crate) fn batches_verified(topics: &[B256]) -> Option<(u64, u64)> {
    use alloy::sol_types::SolEvent;
    match topics {
        [sig, first, last] if *sig == Rollup::BatchesVerified::SIGNATURE_HASH => Some((
            u64_of(U256::from_be_bytes(first.0)),
            u64_of(U256::from_be_bytes(last.0)),
        )),
        _ => None,
    }
}
