//! What differs between SQLite and PostgreSQL for [`crate::sql::SqlStore`]: how a write
//! transaction starts and fences, row locks, the database's clock, ordering text by bytes,
//! how a table of rows travels as parameters, taking the lease from a hung holder (Postgres
//! only), connecting, and the health probe's diagnosis. Every query is written once, in
//! `sql.rs`, with these fragments; placeholders are `$N` on both (sqlx's SQLite binds `$N`
//! by number).

use crate::api::Result;
use crate::rows::{Columns, Rows};
use sqlx::{Database, Pool};
use std::future::Future;
use std::time::Duration;

/// The query type every statement is built as.
pub(crate) type Query<'q, DB> = sqlx::query::Query<'q, DB, <DB as Database>::Arguments>;

/// What [`Dialect::open`] hands the store.
pub(crate) struct Opened<D: Dialect> {
    pub dialect: D,
    /// Writes (SQLite: its single connection; Postgres: the pool).
    pub write: Pool<D::Db>,
    /// Reads (SQLite: `query_only` connections beside the writer; Postgres: the same pool).
    pub read: Pool<D::Db>,
    /// Lease renewals: one connection of their own, opened by the first renewal on the
    /// runtime it runs on (`SqlStore::renew_lease`).
    pub lease: Pool<D::Db>,
    /// Where the data lives, never with a password.
    pub endpoint: String,
}

pub(crate) trait Dialect: Send + Sync + Sized + 'static {
    type Db: Database;

    /// Starts a write transaction. SQLite's `BEGIN IMMEDIATE` takes the database's write lock
    /// at once, so no takeover commits between the fence check and the write.
    const BEGIN_WRITE: &'static str;
    /// Starts a read-only transaction in which every read sees one snapshot.
    const BEGIN_SNAPSHOT: &'static str;
    /// Appended to the fence check's read of the lease row. Postgres: a share lock until
    /// commit, so a takeover (an update of that row) waits for the write and no write of a
    /// deposed coordinator commits after it. SQLite: nothing (the write lock is held).
    const LOCK_LEASE_ROW: &'static str;
    /// Appended to a read of a row the transaction is about to rewrite, so that a concurrent
    /// rewrite waits (Postgres `FOR UPDATE`; SQLite has one writer).
    const LOCK_ROW: &'static str;
    /// The database's clock, Unix ms: the lease's expiry is kept in it, so coordinators'
    /// clocks do not matter.
    const NOW_MS: &'static str;
    /// Appended to a text column in `ORDER BY`: byte order, whatever the database's locale.
    const BYTE_ORDER: &'static str;
    /// Run first when taking the lease: how long to wait for the lease row's lock before
    /// looking for a hung holder (Postgres). `None`: waiting is bounded otherwise.
    const LEASE_LOCK_TIMEOUT: Option<&'static str>;
    /// Ends the database sessions that hold a lock on the lease row: a holder hung inside a
    /// write, once its lease expired. `None` where a hung writer cannot be ended (SQLite: it
    /// holds the file's write lock).
    const END_LEASE_LOCK_HOLDERS: Option<&'static str>;
    /// Bound of the health probe's query.
    const PROBE_TIMEOUT: Duration;

    /// Connects (pools and options), runs the migrations.
    fn open(url: &str) -> impl Future<Output = Result<Opened<Self>>> + Send;

    /// A subquery yielding `columns` by name, rows bound from parameter `$first` on by
    /// [`Dialect::bind_rows`].
    fn row_source(columns: &Columns, first: usize) -> String;

    /// Binds a table of rows for a [`Dialect::row_source`].
    fn bind_rows<'q>(query: Query<'q, Self::Db>, rows: &Rows) -> Query<'q, Self::Db>;

    fn rows_affected(result: &<Self::Db as Database>::QueryResult) -> u64;

    /// Whether `e` is the lock wait of [`Dialect::LEASE_LOCK_TIMEOUT`] running out.
    fn is_lock_timeout(e: &sqlx::Error) -> bool;

    /// Called after every committed write (SQLite's checkpointer watches them).
    fn committed(&self) {}

    /// Why the probe got no answer (`error`: how it failed; `None`: it timed out). `None`:
    /// the database answers after all.
    fn why_unreachable(
        &self,
        error: Option<sqlx::Error>,
    ) -> impl Future<Output = Option<String>> + Send;
}
