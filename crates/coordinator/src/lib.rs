//! The coordinator service.
//!
//! Layout: a single **core** task owns the pure [`proofmill_scheduler::Scheduler`] and turns
//! its effects into store changes and prover messages; a **persister** task group-commits
//! those changes and only then releases the messages (so nothing a prover sees is ever
//! unknown to the store); one **session** per prover stream reads its messages, verifies
//! proofs and feeds the core; the **admin** service and **intake** (API, devnet) sit on top;
//! **settlement** commits batches to L1 and sends their proofs there.

mod admin;
mod config;
mod core;
mod devnet_snapshot;
mod devnet_source;
mod error;
mod health;
mod identity;
mod inputs;
mod intake;
mod leadership;
mod limits;
mod listener;
mod outbox;
mod partial;
pub use intake::NewBatch;
mod persist;
mod results;
mod server;
mod session;
mod settlement;
mod standby;
mod status;
mod warnings;
mod wire;

pub use config::CoordinatorConfig;
pub use devnet_snapshot::{DevnetSnapshots, SNAPSHOTS_META};
pub use devnet_source::{DEFAULT_SNAPSHOT_EVERY, DevnetSource, DevnetSourceConfig};
pub use error::CoordinatorError;
pub use leadership::{Candidate, Leadership, LeaseCheck, LeaseSettings, default_url};
pub use limits::InFlight;
pub use listener::{LISTEN_BACKLOG, Listener, listen};
pub use server::{Coordinator, Serving};
pub use settlement::{L1Seen, Settlement, SettlementConfig, VerifyRecord, devnet_genesis_root};
pub use standby::Standby;
pub use status::{JobCountsView, StatusView, StoreOutage};
pub use warnings::{StatusWarning, WarningKind};

/// Wall-clock milliseconds: the only place the service reads the clock for the scheduler.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
