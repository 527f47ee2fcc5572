//! The scheduler of a coordinator, as a pure state machine.
//!
//! It owns the in-memory view of every open job (queued or leased) and of every prover, and
//! decides who proves what. It performs no IO and never reads a clock: every call takes `now`
//! and returns [`Effect`]s for the caller to carry out, in order: make every
//! [`Effect::Persist`] durable before sending the [`Effect::Cancel`] / [`Effect::Disconnect`]
//! and acknowledgements that follow it. An [`Effect::Dispatch`] may go out before its lease is
//! durable if a restart hands the tokens that may have been sent, and never committed, to
//! [`Scheduler::set_orphan_tokens`]. Mechanism (leases, fencing, liveness) lives here; policy
//! knobs (timeouts, attempts, backoff) come in through [`SchedulerConfig`], and which prover gets
//! which ready job is an [`AssignmentPolicy`] chosen there.
//!
//! Invariants (property-tested in `tests/properties.rs`):
//! - a job has at most one lease; two provers never hold the same (chain, batch, proof type);
//! - a prover holds at most `capacity` leases;
//! - a result is accepted only with the fencing token of the job's current lease;
//! - across crashes and restarts, a token once superseded (a later lease of its job, or a
//!   requeue, made durable) never becomes a lease again, nor does a token sent by a run
//!   before the last one and never made durable;
//! - while a matching prover keeps answering, every job is eventually proven;
//! - chains with ready jobs share the fleet by their weights ([`ChainShares`]), and no slot
//!   stays free while any chain has a job for it.

mod config;
mod policy;
mod prove_times;
mod provers;
mod queue;
mod scheduler;
mod shares;
pub mod sim;

pub use config::SchedulerConfig;
pub use policy::{AssignmentPolicy, EarliestFinish, OldestFirst, PolicyName, UnknownPolicy};
pub use provers::{ProverInfo, ProverLoad, ProverStats, ProverView};
pub use scheduler::{
    Dispatch, Effect, Failure, FleetFigures, NotEligible, ReadyGroup, ResultCheck, Scheduler,
    SchedulerError,
};
pub use shares::{ChainShares, ZeroWeight};
