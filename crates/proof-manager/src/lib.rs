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
//! The driver (the readiness checker publishing inputs, the sender, the watcher loop) is
//! built on these with `proofmill_market::MarketL1`, `proofmill_market::MarketWatcher` and
//! `proofmill_store::ProofRequests`.

pub mod machine;
mod mode;

pub use machine::{
    Action, ManagerConfig, Outcome, UnexpectedOutcome, apply_event, apply_outcome, next_action,
    request_id,
};
pub use mode::{ModeError, ProvingMode};
