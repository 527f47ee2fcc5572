//! A rollup core's prover interface, as zkSync's and Via's cores expose it
//! (`docs/core-api.md` has the exact JSON): the messages ([`wire`]), proofmill's forms of
//! the two fields the core leaves to its prover (the witness and the proof), and a client
//! that bounds every request ([`client`]). Both sides use it: the gateway of a proving
//! cluster (`proofmill-gateway`) and a rollup node handing its batches out
//! (`proofmill-handoff`).

pub mod backoff;
pub mod client;
pub mod wire;

pub use backoff::Backoff;
pub use client::{ClientConfig, ClientError, CoreClient};
