//! A coordinator's jobs handed to an outside proving cluster, the way a rollup core hands
//! batches to its prover gateway (zkSync's `proof_data_handler`): the cluster asks for
//! work, proves it with its own fleet and posts the proofs back.
//!
//! The handoff is a prover of the coordinator like any other: its backends
//! ([`HandoffBackend`], one per proof type) do not prove, they put the task in a [`Hub`] and
//! wait until the cluster's proof for it arrives, so leases, heartbeats, retries, fencing
//! and the coordinator's own check of every proof stay as they are for local provers. The
//! hub is served to the cluster by the core API, pulled (the cluster asks) or pushed (this
//! side sends and polls).

mod backend;
mod hub;
pub mod push;
pub mod serve;

pub use backend::HandoffBackend;
pub use hub::{Hub, HubConfig, Offer, OfferedType, SubmitError};
pub use push::PushConfig;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
