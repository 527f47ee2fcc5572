//! Durable state of a coordinator.
//!
//! [`Store`] keeps batches, jobs (with their leases), proof records and the records of L1
//! settlement and commit transactions ([`VerifyRecord`], [`CommitRecord`]) and, through
//! [`ProofRequests`], the proof manager's requests to the proof market; [`Blobs`] keeps the bytes (batch inputs,
//! proofs). The scheduler owns job state in memory and the store mirrors
//! it: every transition is written as a [`Change`] through [`Store::apply`] *before* its
//! effect is sent to a prover, so a coordinator killed at any moment restarts from the store
//! without losing a batch, job, lease or proof.
//!
//! [`open_store`] opens SQLite (`sqlite://path?mode=rwc`, `sqlite:path`, `sqlite::memory:`;
//! see [`sqlite`](crate::sqlite) docs for durability: `synchronous=full` by default,
//! `?synchronous=normal`) or PostgreSQL
//! (`postgres://…`, `postgresql://…`) and runs the embedded migrations. Both backends have
//! the same behaviour. Unsigned 64-bit values are stored as signed BIGINTs: values above
//! `i64::MAX` are rejected with [`StoreError::Unstorable`] instead of wrapping. One
//! implementation serves both (`sql.rs`); what differs between them is their dialect
//! (`dialect.rs`, `sqlite.rs`, `postgres.rs`).
//!
//! In [`JobFilter`], a `limit` of 0 means "no limit".

mod api;
mod attempts;
mod blobs;
mod capped;
mod codec;
mod commits;
mod dialect;
mod legacy;
mod market;
mod migrate;
mod postgres;
mod rows;
mod sql;
mod sqlite;
mod url_fetch;

pub use api::*;
pub use blobs::{Blobs, get_url, parse_blob_url, validate_key};
pub use capped::{Capped, OverCap};
pub use market::{
    FallbackReason, MarketCursor, ProofRequest, ProofRequestCounts, ProofRequestFilter,
    ProofRequestStatus, ProofRequests, ValidationStatus,
};
pub use url_fetch::{FETCH_TIMEOUT, FetchError, UrlFetch};

use sql::SqlStore;
use std::sync::Arc;

/// Opens (creating if needed) and migrates the store at `url`.
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    let scheme = url.split_once(':').map(|(s, _)| s).unwrap_or("");
    match scheme {
        "sqlite" => Ok(Arc::new(SqlStore::<sqlite::Sqlite>::open(url).await?)),
        "postgres" | "postgresql" => Ok(Arc::new(SqlStore::<postgres::Postgres>::open(url).await?)),
        _ => Err(StoreError::InvalidUrl {
            url: redact(url),
            reason: "unsupported store: use sqlite://path?mode=rwc, sqlite::memory: or postgres://user@host/db"
                .into(),
        }),
    }
}

/// Hides a password in a URL we echo back in an error.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}
