//! A zero-work backend for tests and benchmarks.
//!
//! [`SimBackend`] does not look at the input: it "proves" by returning the expected public
//! values verbatim (for the devnet's public values, the exec proof format), optionally after sleeping, so a
//! prover can be exercised without the devnet. It can also be configured to fail or to return
//! garbage of a chosen size (e.g. to exercise chunked proof upload).

use proofmill_backend::{Backend, BackendError, Cancel, ProveRequest, VerifyError};
use proofmill_types::PublicValues;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimMode {
    /// Return the expected public values verbatim: a valid exec proof of devnet-layout ones.
    Correct,
    /// Return `BackendError::Failed` with this message.
    Fail(String),
    /// Return `BackendError::BadInput` with this message.
    BadInput(String),
    /// Return this many deterministic pseudo-random bytes ([`SimBackend::garbage_bytes`]).
    Garbage(usize),
}

#[derive(Debug)]
pub struct SimBackend {
    name: String,
    delay: Duration,
    mode: SimMode,
    calls: AtomicU64,
}

impl Default for SimBackend {
    fn default() -> Self {
        SimBackend::new()
    }
}

impl SimBackend {
    /// Correct proofs, no delay.
    pub fn new() -> Self {
        SimBackend {
            name: "sim".to_string(),
            delay: Duration::ZERO,
            mode: SimMode::Correct,
            calls: AtomicU64::new(0),
        }
    }

    pub fn with_mode(mut self, mode: SimMode) -> Self {
        self.mode = mode;
        self
    }

    /// Sleeps this long in every `prove` (simulated proving time; blocks the thread).
    pub fn with_delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    pub fn failing(message: impl Into<String>) -> Self {
        SimBackend::new().with_mode(SimMode::Fail(message.into()))
    }

    pub fn garbage(len: usize) -> Self {
        SimBackend::new().with_mode(SimMode::Garbage(len))
    }

    /// Number of `prove` calls so far (including ones still sleeping).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// The bytes [`SimMode::Garbage`] returns for `batch`: deterministic, so tests can check
    /// a reassembled proof.
    pub fn garbage_bytes(batch: u64, len: usize) -> Vec<u8> {
        let mut x = batch ^ 0x9E37_79B9_7F4A_7C15 ^ (len as u64).rotate_left(32);
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            // xorshift64*
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

impl Backend for SimBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn prove(&self, req: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError> {
        self.prove_cancellable(req, &Cancel::default())
    }

    /// The delay ends early on a cancel, as an external prover's would.
    fn prove_cancellable(
        &self,
        req: &ProveRequest<'_>,
        cancel: &Cancel,
    ) -> Result<Vec<u8>, BackendError> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let until = std::time::Instant::now() + self.delay;
        while std::time::Instant::now() < until {
            if cancel.is_cancelled() {
                return Err(BackendError::Failed("cancelled".into()));
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            std::thread::sleep(left.min(std::time::Duration::from_millis(10)));
        }
        match &self.mode {
            SimMode::Correct => Ok(req.expected.as_bytes().to_vec()),
            SimMode::Fail(msg) => Err(BackendError::Failed(msg.clone())),
            SimMode::BadInput(msg) => Err(BackendError::BadInput(msg.clone())),
            SimMode::Garbage(len) => Ok(SimBackend::garbage_bytes(req.batch, *len)),
        }
    }

    fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError> {
        if proof == public.as_bytes() {
            Ok(())
        } else {
            Err(VerifyError::Invalid("public values differ".to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv() -> PublicValues {
        PublicValues::new([[1u8; 32], [2; 32], [3; 32]].concat())
    }

    #[test]
    fn modes() {
        let req = ProveRequest {
            batch: 7,
            input: b"x",
            expected: &pv(),
        };
        let b = SimBackend::new();
        let proof = b.prove(&req).unwrap();
        assert_eq!(proof, pv().as_bytes());
        assert!(b.verify(&pv(), &proof).is_ok());
        assert!(b.verify(&PublicValues::default(), &proof).is_err());
        assert_eq!(b.calls(), 1);

        assert!(
            matches!(SimBackend::failing("boom").prove(&req), Err(BackendError::Failed(m)) if m == "boom")
        );
        let g = SimBackend::garbage(1001).prove(&req).unwrap();
        assert_eq!(g.len(), 1001);
        assert_eq!(g, SimBackend::garbage_bytes(7, 1001));
        assert_ne!(g, SimBackend::garbage_bytes(8, 1001));
        assert!(SimBackend::new().verify(&pv(), &g).is_err());
    }
}
