//! Domain types shared by every proofmill component.
//!
//! Everything here is plain data: no IO, no clocks. Times are milliseconds since the Unix
//! epoch ([`Millis`]) passed in by whoever owns the clock.

mod attempt;
mod batch;
mod ids;
mod job;
mod proving_mode;

pub use attempt::{Attempt, AttemptOutcome};
pub use batch::{Batch, BatchId, Digest, PublicValues};
pub use ids::{FencingToken, IdError, ProofType, ProverId, TaskId};
pub use job::{Job, JobKey, JobState, Lease, ProofRecord};
pub use proving_mode::{ModeError, ProvingMode};

/// Milliseconds since the Unix epoch. Time is always an input, never read inside libraries.
pub type Millis = u64;

/// Batch numbers start at 1; 0 means "none yet" in cursors. They count per chain.
pub type BatchNumber = u64;

/// A rollup's chain id. One proving cluster serves several chains; each numbers its own
/// batches.
pub type ChainId = u64;

/// The chain of a coordinator not told its chain, and of every batch stored before chains
/// were recorded.
pub const DEFAULT_CHAIN: ChainId = 1;
