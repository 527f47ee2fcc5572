//! The coordinator service.
//!
//! Layout: a single **core** task owns the pure [`proofmill_scheduler::Scheduler`] and turns
//! its effects into store changes and prover messages; it does no I/O itself. A
//! **persister** task group-commits those changes and only then releases the messages (so
//! nothing a prover sees is ever unknown to the store). One **session** per prover stream
//! reads its messages, verifies proofs and feeds the core; the **admin** service and
//! **intake** sit on top; the admin calls are served over gRPC and, by the same
//! implementation, as JSON over HTTP with health and readiness ([`AdminHttp`]). Batch sources (the API, a rollup's sealer such as
//! `proofmill-devnet-node`) bring batches in through an [`Intake`]; L1 settlement
//! (`proofmill-settlement`) is a component apart that gets a [`SettlementPort`]. Nothing here
//! knows a rollup's layout: public values are opaque bytes, read only by the proof types'
//! backends.
//!
//! Each part gets a handle with only what it needs, built once by [`Coordinator::start`]:
//! sessions a `Sessions`, admin an `AdminSvc`, status a `StatusSource`, batch sources an
//! [`Intake`], settlement a [`SettlementPort`]; whether this coordinator is the active one is
//! a `Standing` they read. All of them reach the core only through its `CoreHandle`, one
//! method per request; none builds a core message or writes job rows.
//!
//! Modules depend downwards, with one circle left on purpose: `core` sends to provers through
//! their `outbox` (directly, or via the `persist`er once a change is durable), and a stream's
//! writer reports a task whose input it could not read back to the core (through its
//! mailbox's handle) as a result, like any failed attempt.

mod about;
mod admin;
mod admin_gate;
mod auth;
mod client;
mod config;
mod controls;
mod core;
mod error;
mod events;
mod health;
mod http;
mod identity;
mod inputs;
mod intake;
mod leadership;
mod limits;
mod listener;
mod market_port;
mod messages;
mod outbox;
mod partial;
mod pauses;
mod pausing;
mod persist;
mod results;
mod retention;
mod server;
mod session;
mod settled;
mod settlement_port;
mod settlement_steps;
mod shutdown;
mod standby;
mod standing;
mod status;
mod text;
mod tls;
mod verdict;
mod warnings;
mod watch;
mod wire;

pub use about::{About, ConfigValue};
pub use auth::{
    AdminAuth, AuthError, Caller, HASH_PREFIX, ProverAuth, ProverAuthError, ProverGrant, Role,
    TokenHash, new_token,
};
pub use client::FAILURE_REASON_HEADER;
pub use config::{ChainSpec, CoordinatorConfig, MarketHold};
pub use error::CoordinatorError;
pub use http::{
    AdminApi, AdminHttp, ConnectionLimits, IDLE_TIMEOUT, MAX_BODY_BYTES, MAX_CONNECTIONS,
    MAX_IN_FLIGHT,
};
pub use intake::Delivered;
pub use intake::{Intake, NewBatch};
pub use leadership::{Candidate, Leadership, LeaseCheck, LeaseSettings, default_url};
pub use limits::InFlight;
pub use listener::{LISTEN_BACKLOG, Listener, listen};
pub use market_port::MarketPort;
pub use pauses::{Component, Pause, PauseWatch, Pauses};
pub use proofmill_store::VerifyRecord;
pub use server::{Coordinator, Serving};
pub use settlement_port::SettlementPort;
pub use settlement_steps::{CommitNow, Committed, SettleNow, Settled};
pub use shutdown::Shutdown;
pub use standby::Standby;
pub use status::view::{JobCountsView, L1Seen, StatusView, StoreOutage};
pub use tls::ServerTls;
pub use warnings::{StatusWarning, WarningKind};
pub use watch::watch_event_json;

/// Wall-clock milliseconds: the only place the service reads the clock for the scheduler.
/// The chain id of a coordinator not told its chain ([`CoordinatorConfig::chain_id`]): batches
/// taken in before chains were named belong to it.
pub const DEFAULT_CHAIN_ID: u64 = 1;

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
