//! Durable state of a coordinator.
//!
//! [`Store`] keeps batches, jobs (with their leases) and proof records; [`Blobs`] keeps the
//! bytes (batch inputs, proofs). The scheduler owns job state in memory and the store mirrors
//! it: every transition is written as a [`Change`] through [`Store::apply`] *before* its
//! effect is sent to a prover, so a coordinator killed at any moment restarts from the store
//! without losing a batch, job, lease or proof.

mod api;
pub use api::*;
