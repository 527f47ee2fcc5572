//! The rollup's side of the proof market (issue 22): the proof manager's core, as a library.
//!
//! * [`ProvingMode`]: which batches are offered to proving networks (`cluster`, `network`,
//!   `mixed` with a share), decided by batch number alone.
//! * [`machine`]: the pure state machine of one request over its durable row
//!   ([`proofmill_store::ProofRequest`]): the market's events in ([`apply_event`]), the next
//!   action out ([`next_action`]: send the request with its escrow, look it up, verify the
//!   proof, send the validation result, fall back to the own provers, close a timed-out
//!   request), and what came of it back in ([`apply_outcome`]). No IO; time is an input.
//!
//! * [`ProofManager`]: the driver, a component of the rollup's coordinator: the readiness
//!   checker publishing held batches' inputs ([`inputs_key`]), the sender and the watcher loop,
//!   over `proofmill_market::MarketL1`, the coordinator's `MarketPort` and
//!   `proofmill_store::ProofRequests`.

mod driver;
pub mod machine;
mod readiness;

pub use driver::{DriverConfig, DriverError, ProofManager, Round, proof_key};
pub use machine::{
    Action, ManagerConfig, Outcome, UnexpectedOutcome, apply_event, apply_outcome, next_action,
    request_id,
};
/// Which batches go to the market: shared with the coordinator, which holds their jobs.
pub use proofmill_types::{ModeError, ProvingMode};
pub use readiness::inputs_key;
