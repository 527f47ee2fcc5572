//! [`Groth16Backend`]: proves devnet batches with the shape's circuit and verifies the
//! 256-byte EVM-form proofs against the prepared verifying key.

use crate::circuit::BatchCircuit;
use crate::evm::{decode_proof, encode_proof};
use crate::keys::{KeyError, Keys, load_or_dev_setup};
use crate::{Shape, public_inputs};
use ark_bn254::Bn254;
use ark_groth16::Groth16;
use ark_snark::SNARK;
use ark_std::rand::SeedableRng;
use ark_std::rand::rngs::StdRng;
use proofmill_backend::{Backend, BackendError, ProveRequest, VerifyError};
use proofmill_devnet::StateTransition;
use proofmill_devnet::{BatchInput, fr_to_digest};
use proofmill_types::PublicValues;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Groth16/BN254 backend for one shape. Keys are loaded from (or, **DEV ONLY**, generated
/// into) `key_dir` on first use and shared by all threads; clone the `Arc` around it or
/// share `&self` freely.
pub struct Groth16Backend {
    shape: Shape,
    key_dir: Option<PathBuf>,
    keys: Mutex<Option<Arc<Keys>>>,
}

impl std::fmt::Debug for Groth16Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Groth16Backend")
            .field("shape", &self.shape)
            .field("key_dir", &self.key_dir)
            .finish_non_exhaustive()
    }
}

impl Groth16Backend {
    /// A backend whose keys live in `key_dir`: loaded if cached, otherwise generated with
    /// the **DEV-ONLY** [`crate::dev_setup`] and cached. Nothing happens until first use
    /// (or [`Groth16Backend::keys`]).
    pub fn new(key_dir: impl Into<PathBuf>, shape: Shape) -> Self {
        Groth16Backend {
            shape,
            key_dir: Some(key_dir.into()),
            keys: Mutex::new(None),
        }
    }

    /// A backend with given keys (e.g. from a ceremony via [`crate::load_keys`]).
    pub fn with_keys(keys: Keys) -> Self {
        Groth16Backend {
            shape: keys.shape,
            key_dir: None,
            keys: Mutex::new(Some(Arc::new(keys))),
        }
    }

    pub fn shape(&self) -> Shape {
        self.shape
    }

    pub fn key_dir(&self) -> Option<&Path> {
        self.key_dir.as_deref()
    }

    /// The keys, loading or generating them on first call. Concurrent first callers wait for
    /// one load instead of generating twice. A failure is not cached (the next call retries).
    pub fn keys(&self) -> Result<Arc<Keys>, KeyError> {
        let mut slot = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(keys) = slot.as_ref() {
            return Ok(keys.clone());
        }
        let dir = self
            .key_dir
            .as_deref()
            .ok_or_else(|| KeyError::Setup("no keys and no key directory".into()))?;
        let keys = Arc::new(load_or_dev_setup(dir, self.shape)?);
        *slot = Some(keys.clone());
        Ok(keys)
    }
}

impl Backend for Groth16Backend {
    fn name(&self) -> &str {
        "groth16"
    }

    fn check_input(&self, req: &ProveRequest<'_>) -> Result<(), BackendError> {
        proofmill_devnet::backend::check_input(req)
    }

    fn prove(&self, req: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError> {
        let input =
            BatchInput::decode(req.input).map_err(|e| BackendError::BadInput(e.to_string()))?;
        let circuit = BatchCircuit::from_input(self.shape, &input)
            .map_err(|e| BackendError::BadInput(e.to_string()))?;
        let public = StateTransition {
            old_state_root: fr_to_digest(circuit.public.old_root),
            new_state_root: fr_to_digest(circuit.public.new_root),
            batch_commitment: fr_to_digest(circuit.public.commitment),
        };
        let expected = StateTransition::from_public_values(req.expected)
            .map_err(|e| BackendError::BadInput(e.to_string()))?;
        if public != expected {
            return Err(BackendError::BadInput(format!(
                "batch {} executes to {public:?}, but the request expects {expected:?}",
                req.batch
            )));
        }
        let keys = self
            .keys()
            .map_err(|e| BackendError::Failed(e.to_string()))?;
        let inputs = circuit.public.to_array();
        let mut rng = StdRng::from_seed(rand::random());
        // The witness comes from a batch that executed, so an unsatisfied system would be a
        // bug here. The prover only `debug_assert!`s satisfaction (a panic in debug builds,
        // an invalid proof in release): catch the former, and self-verify below for the
        // latter. A separate `is_satisfied` pre-check would cost about as much as proving.
        let proved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Groth16::<Bn254>::prove(&keys.pk, circuit, &mut rng)
        }));
        let proof = match proved {
            Ok(Ok(proof)) => proof,
            Ok(Err(e)) => return Err(BackendError::Failed(format!("prove: {e}"))),
            Err(_) => {
                return Err(BackendError::Failed(
                    "prover panicked (unsatisfied constraint system?)".into(),
                ));
            }
        };
        match Groth16::<Bn254>::verify_with_processed_vk(&keys.pvk, &inputs, &proof) {
            Ok(true) => Ok(encode_proof(&proof)),
            Ok(false) => Err(BackendError::Failed(
                "produced proof does not verify (unsatisfied witness, or a proving key that \
                 does not match the verifying key)"
                    .into(),
            )),
            Err(e) => Err(BackendError::Failed(format!("self-verification: {e}"))),
        }
    }

    fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError> {
        let public = StateTransition::from_public_values(public)
            .map_err(|e| VerifyError::Invalid(format!("the batch's {e}")))?;
        let proof = decode_proof(proof).map_err(|e| VerifyError::Malformed(e.to_string()))?;
        let inputs = public_inputs(&public).map_err(|e| VerifyError::Invalid(e.to_string()))?;
        let keys = self
            .keys()
            .map_err(|e| VerifyError::Invalid(format!("verifying key unavailable: {e}")))?;
        match Groth16::<Bn254>::verify_with_processed_vk(&keys.pvk, &inputs, &proof) {
            Ok(true) => Ok(()),
            Ok(false) => Err(VerifyError::Invalid("pairing check failed".into())),
            Err(e) => Err(VerifyError::Invalid(e.to_string())),
        }
    }
}
