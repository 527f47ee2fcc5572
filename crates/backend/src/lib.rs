//! Proving backends.
//!
//! A backend proves that a batch input yields the batch's public values (the statement, in
//! the rollup's own encoding: only backends read it), and checks such proofs. Provers call
//! [`Backend::prove`]; the coordinator calls [`Backend::verify`] on every result before
//! storing it. The reference rollup's backends live with it (`proofmill_devnet::ExecBackend`,
//! the groth16 and stark crates); [`CommandBackend`] runs any external prover.

mod command;

pub use command::{
    CommandBackend, CommandConfig, CommandConfigError, DEFAULT_MAX_PROOF_BYTES, DEFAULT_TIMEOUT,
};

use proofmill_types::PublicValues;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

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
    pub expected: &'a PublicValues,
}

/// Asks a running proof to stop (the task was cancelled or passed its deadline); cheap to
/// clone, shared by the prover and the proving thread.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// One proof system. `prove` is blocking and CPU-heavy: call it from a blocking thread.
pub trait Backend: Send + Sync + 'static {
    /// Name of the backend implementation (`exec`, `groth16`, ...).
    fn name(&self) -> &str;

    fn prove(&self, req: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError>;

    /// `prove` that may stop early once `cancel` is set, returning an error (the caller
    /// discards the result then). Backends that can stop (an external process) override it,
    /// so a cancelled task frees its slot at once; in-process proof systems run to the end.
    fn prove_cancellable(
        &self,
        req: &ProveRequest<'_>,
        cancel: &Cancel,
    ) -> Result<Vec<u8>, BackendError> {
        let _ = cancel;
        self.prove(req)
    }

    /// Checks that `proof` attests exactly `public`. Must not need the batch input.
    fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError>;

    /// Checks an input and its public values before a coordinator takes them in, without
    /// proving: only what is cheap to know (the public values have this proof system's
    /// layout, the input decodes, is for `req.batch`, starts where `req.expected` says).
    /// `Err` says why the input can never be proven to `req.expected`, so the submission is
    /// refused instead of failing at every prover. Default: accepts all.
    fn check_input(&self, req: &ProveRequest<'_>) -> Result<(), BackendError> {
        let _ = req;
        Ok(())
    }

    /// Whether `verify` takes microseconds (no pairing, no subprocess), so callers on an async
    /// runtime may run it in place instead of on a blocking thread.
    fn verify_is_cheap(&self) -> bool {
        false
    }
}

/// Backends by name, built once at startup by whoever knows their configuration (the binary)
/// and shared by the coordinator (verifying) and provers (proving).
#[derive(Clone, Default)]
pub struct Backends(BTreeMap<String, Arc<dyn Backend>>);

/// A proof type names a backend that was not configured.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("unknown backend {name:?}; configured: {known}")]
pub struct UnknownBackend {
    pub name: String,
    pub known: String,
}

impl Backends {
    /// Adds (or replaces) a backend under its [`Backend::name`].
    pub fn insert(&mut self, backend: Arc<dyn Backend>) {
        self.0.insert(backend.name().to_string(), backend);
    }

    pub fn get(&self, name: &str) -> Result<Arc<dyn Backend>, UnknownBackend> {
        self.0.get(name).cloned().ok_or_else(|| UnknownBackend {
            name: name.to_string(),
            known: self.names().join(", "),
        })
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Backends").field(&self.names()).finish()
    }
}
