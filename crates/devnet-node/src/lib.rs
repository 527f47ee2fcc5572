//! The reference rollup (`proofmill-devnet`) run beside a coordinator: its sealer as a batch
//! source ([`DevnetSource`], through the coordinator's `Intake`) and the snapshots that let a
//! restart continue its chain without replaying all of it ([`DevnetSnapshots`]).

mod snapshots;
mod source;

pub use snapshots::{DevnetSnapshots, SNAPSHOTS_META};
pub use source::{DEFAULT_SNAPSHOT_EVERY, DevnetSource, DevnetSourceConfig};
