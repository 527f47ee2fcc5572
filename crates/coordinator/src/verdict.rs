//! What the coordinator makes of a prover's result, once checked, for the core to apply.

use proofmill_types::ProofRecord;

/// A result after its session checked it (a proof verified and stored, or why not).
pub(crate) enum Verdict {
    /// The proof verified and its bytes are stored.
    Proven(ProofRecord),
    /// The prover reported an error.
    Failed(String),
    /// The proof did not verify.
    Invalid(String),
    /// The prover declined the task (it cannot run it now); no fault of anyone's.
    Declined(String),
}
