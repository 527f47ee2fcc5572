//! SQLite dialect of the SQL store ([`crate::sql`]): connections, durability, checkpoints.
//!
//! Durability: WAL journal with `synchronous=FULL` by default: a committed transaction
//! survives the process being killed (`kill -9`), an OS crash and a power loss (the WAL is
//! fsynced at every commit; group commit makes that one fsync per group). `?synchronous=normal`
//! fsyncs only at checkpoints: a committed transaction still survives `kill -9`, but an OS
//! crash or power loss may lose the last few (never corrupting the database).
//!
//! Connections: one pool with a single connection for writes (SQLite has one writer, so
//! writers queue in the pool instead of spinning on `SQLITE_BUSY`) and a small `query_only`
//! pool for reads, which WAL lets run concurrently with the writer. `sqlite::memory:` uses
//! the single connection for everything (each connection would otherwise see its own
//! database).
//!
//! Checkpoints: the writer's own auto-checkpoint (which runs inside the commit that crosses
//! the threshold, copying pages and fsyncing) is pushed far out; a background thread with its
//! own connection runs `PASSIVE` checkpoints every [`CHECKPOINT_EVERY`] while writes happen,
//! and a `TRUNCATE` once writes stop, so commit latency stays flat and the WAL stays small.
//!
//! Writes run in `BEGIN IMMEDIATE` transactions. A table of rows travels as one JSON
//! parameter (see [`Sqlite::row_source`]): `jsonb_each` drives primary-key lookups and hands
//! out each row as JSONB, which `->>` reads without reparsing text (a fraction of the cost of
//! `json_each` in profiles).

use crate::api::{Result, StoreError};
use crate::codec::db_err;
use crate::dialect::{Dialect, Opened, Query};
use crate::rows::{Columns, Kind, Rows, Values};
use sqlx::sqlite::{SqliteConnection, SqlitePoolOptions, SqliteQueryResult};
use sqlx::{ConnectOptions as _, Connection as _};
use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::time::Duration;

mod url;
use url::parse_url;

const READ_POOL_SIZE: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the background checkpointer runs while writes happen.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages after which the writer checkpoints by itself: only a fallback (should the
/// checkpointer fall behind), far above what accumulates in [`CHECKPOINT_EVERY`].
const WRITER_AUTOCHECKPOINT_PAGES: &str = "16384";

/// The SQLite dialect and what a SQLite store keeps besides its pools.
pub(crate) struct Sqlite {
    /// Write transactions committed, so the checkpointer can tell busy from idle.
    commits: Arc<AtomicU64>,
    /// Dropping it stops the checkpointer thread (none for in-memory databases).
    _checkpointer: Option<Sender<()>>,
}

impl Dialect for Sqlite {
    type Db = sqlx::Sqlite;

    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    /// WAL: a read transaction sees the snapshot of its first read.
    const BEGIN_SNAPSHOT: &'static str = "BEGIN";
    const LOCK_LEASE_ROW: &'static str = "";
    const LOCK_ROW: &'static str = "";
    const NOW_MS: &'static str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";
    /// SQLite's default collation (`BINARY`) is byte order.
    const BYTE_ORDER: &'static str = "";
    /// `BEGIN IMMEDIATE` waits for the write lock up to the busy timeout.
    const LEASE_LOCK_TIMEOUT: Option<&'static str> = None;
    const END_LEASE_LOCK_HOLDERS: Option<&'static str> = None;
    const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

    async fn open(url: &str) -> Result<Opened<Sqlite>> {
        let (options, memory) = parse_url(url)?;
        let endpoint = if memory {
            "sqlite::memory:".to_owned()
        } else {
            format!("sqlite://{}", options.get_filename().display())
        };
        let writer_options = if memory {
            options.clone()
        } else {
            options
                .clone()
                .pragma("wal_autocheckpoint", WRITER_AUTOCHECKPOINT_PAGES)
        };
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(writer_options.clone())
            .await
            .map_err(|e| db_err(&format!("opening {url}"), e))?;
        crate::migrate::sqlite()
            .run(&write)
            .await
            .map_err(|e| StoreError::Database(format!("migrating {url}: {e}")))?;
        let commits = Arc::new(AtomicU64::new(0));
        let lease = if memory {
            // One in-memory database per connection: everything shares the writer.
            write.clone()
        } else {
            // A second writer for renewals only: `BEGIN IMMEDIATE` elsewhere and the busy
            // timeout make the two take turns, as two coordinators on one file do.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(0)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_lazy_with(writer_options)
        };
        let (read, checkpointer) = if memory {
            (write.clone(), None)
        } else {
            let conn = options
                .connect()
                .await
                .map_err(|e| db_err(&format!("opening {url} for checkpoints"), e))?;
            let checkpointer = spawn_checkpointer(conn, commits.clone())
                .map_err(|e| StoreError::Database(format!("starting checkpointer: {e}")))?;
            let read = SqlitePoolOptions::new()
                .max_connections(READ_POOL_SIZE)
                .min_connections(0)
                .connect_with(options.pragma("query_only", "ON"))
                .await
                .map_err(|e| db_err(&format!("opening {url} for reading"), e))?;
            (read, Some(checkpointer))
        };
        Ok(Opened {
            dialect: Sqlite {
                commits,
                _checkpointer: checkpointer,
            },
            write,
            read,
            lease,
            endpoint,
        })
    }

    /// `(SELECT value ->> 0 AS c0, … FROM jsonb_each($first))`: the rows are one JSON array
    /// of row arrays ([`Sqlite::bind_rows`]), blobs hex-encoded.
    fn row_source(columns: &Columns, first: usize) -> String {
        let cols: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (name, kind))| match kind {
                Kind::Bytes => format!("unhex(value ->> {i}) AS {name}"),
                Kind::Int | Kind::Text => format!("value ->> {i} AS {name}"),
            })
            .collect();
        format!("(SELECT {} FROM jsonb_each(${first}))", cols.join(", "))
    }

    fn bind_rows<'q>(query: Query<'q, sqlx::Sqlite>, rows: &Rows) -> Query<'q, sqlx::Sqlite> {
        query.bind(json_rows(rows))
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }

    fn is_lock_timeout(_: &sqlx::Error) -> bool {
        false
    }

    fn committed(&self) {
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    async fn why_unreachable(&self, error: Option<sqlx::Error>) -> Option<String> {
        Some(match error {
            Some(e) => e.to_string(),
            None => format!("no answer within {:?}", Self::PROBE_TIMEOUT),
        })
    }
}

/// A table as a JSON array of row arrays, blobs hex-encoded.
fn json_rows(rows: &Rows) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(64 + rows.len * 16 * rows.columns.len());
    out.push(b'[');
    for i in 0..rows.len {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (c, column) in rows.columns.iter().enumerate() {
            if c > 0 {
                out.push(b',');
            }
            // Writing to a Vec cannot fail; strings are escaped by serde_json.
            let _ = match column {
                Values::Int(v) => match v[i] {
                    Some(n) => write!(out, "{n}"),
                    None => out.write_all(b"null"),
                },
                Values::Text(v) => match v[i] {
                    Some(s) => serde_json::to_writer(&mut out, s).map_err(std::io::Error::other),
                    None => out.write_all(b"null"),
                },
                Values::Bytes(v) => match v[i] {
                    Some(b) => write!(out, "\"{}\"", hex::encode(b)),
                    None => out.write_all(b"null"),
                },
            };
        }
        out.push(b']');
    }
    out.push(b']');
    // Only JSON text was written.
    String::from_utf8(out).unwrap_or_default()
}

/// Checkpoints the WAL on its own thread and connection until the returned sender is dropped.
/// `PASSIVE` never blocks the writer; `TRUNCATE` (once idle) needs the write lock, so the
/// connection does not wait for locks: a busy attempt is simply retried on a later tick.
/// Errors are retried too; meanwhile the writer's fallback auto-checkpoint bounds the WAL.
fn spawn_checkpointer(
    mut conn: SqliteConnection,
    commits: Arc<AtomicU64>,
) -> std::io::Result<Sender<()>> {
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let _ = block_on(sqlx::query("PRAGMA busy_timeout = 0").execute(&mut conn));
            let (mut seen, mut truncated) = (0, true);
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY) {
                let now = commits.load(Ordering::Relaxed);
                let sql = if now != seen {
                    (seen, truncated) = (now, false);
                    "PRAGMA wal_checkpoint(PASSIVE)"
                } else if !truncated {
                    "PRAGMA wal_checkpoint(TRUNCATE)"
                } else {
                    continue;
                };
                // One row: (busy, WAL frames, frames checkpointed).
                let done = block_on(sqlx::query_scalar::<_, i64>(sql).fetch_one(&mut conn));
                if sql.contains("TRUNCATE") && matches!(done, Ok(0)) {
                    truncated = true;
                }
            }
            let _ = block_on(conn.close());
        })?;
    Ok(stop)
}

/// Drives a future on the calling (non-async) thread: sqlx's SQLite futures only wait on
/// their connection's worker thread, never on an async runtime.
fn block_on<F: std::future::Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Arc::new(Unpark(std::thread::current())).into();
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}
