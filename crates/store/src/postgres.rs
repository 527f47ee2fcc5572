//! PostgreSQL dialect: a table of rows travels as one array parameter per column, unpacked by
//! `UNNEST`, so a group of rows costs one statement; a write takes a share lock on the lease
//! row (the fence); a holder hung inside a write is ended once its lease has expired.

use crate::api::{Result, StoreError};
use crate::codec::is_unreachable;
use crate::dialect::{Dialect, Opened, Query};
use crate::rows::{Columns, Kind, Rows, Values};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgQueryResult};
use std::str::FromStr;
use std::time::Duration;

const POOL_SIZE: u32 = 8;
/// Longest a call waits for a pooled connection, connecting included. The pool retries a
/// refused connection with a backoff capped at a fifth of this, so it is also about how
/// long the pool takes to notice that the server is back.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bound of a direct connection attempt that says why the server cannot be reached.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The PostgreSQL dialect and what a Postgres store keeps besides its pool.
pub(crate) struct Postgres {
    /// To ask the server directly why the pool has no connection (the pool only says it
    /// timed out).
    options: PgConnectOptions,
}

impl Dialect for Postgres {
    type Db = sqlx::Postgres;

    const BEGIN_WRITE: &'static str = "BEGIN";
    const BEGIN_SNAPSHOT: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY";
    const LOCK_LEASE_ROW: &'static str = " FOR SHARE";
    const LOCK_ROW: &'static str = " FOR UPDATE";
    const NOW_MS: &'static str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";
    const BYTE_ORDER: &'static str = " COLLATE \"C\"";
    const LEASE_LOCK_TIMEOUT: Option<&'static str> = Some("SET LOCAL lock_timeout = '1s'");
    const END_LEASE_LOCK_HOLDERS: Option<&'static str> = Some(
        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
         JOIN pg_class c ON c.oid = l.relation \
         WHERE c.relname = 'coordinator_lease' AND l.granted AND l.pid <> pg_backend_pid()",
    );
    /// A query through the pool (which may just be busy); then a direct connection attempt.
    const PROBE_TIMEOUT: Duration = Duration::from_millis(500);

    async fn open(url: &str) -> Result<Opened<Postgres>> {
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl {
            url: crate::redact(url),
            reason: e.to_string(),
        })?;
        let endpoint = endpoint(&options);
        let pool = match PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
        {
            Ok(pool) => pool,
            Err(e) if is_unreachable(&e) => {
                let cause = connect_cause(&options).await;
                let cause = cause.unwrap_or_else(|| {
                    format!("{} (it connects now)", connect_error(&e, &options))
                });
                return Err(StoreError::Unavailable(format!(
                    "connecting to {endpoint}: {cause}"
                )));
            }
            Err(e) => {
                return Err(StoreError::Database(format!(
                    "connecting to {endpoint}: {}",
                    connect_error(&e, &options)
                )));
            }
        };
        crate::migrate::postgres()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrating {endpoint}: {e}")))?;
        // Opened by the first renewal, so its socket belongs to the renewals' runtime.
        let lease = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(0)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_lazy_with(options.clone());
        Ok(Opened {
            dialect: Postgres { options },
            write: pool.clone(),
            read: pool,
            lease,
            endpoint,
        })
    }

    /// `(SELECT * FROM UNNEST($first::int8[], …) AS u(c0, …))`.
    fn row_source(columns: &Columns, first: usize) -> String {
        let arrays: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| {
                let ty = match kind {
                    Kind::Int => "int8",
                    Kind::Text => "text",
                    Kind::Bytes => "bytea",
                };
                format!("${}::{ty}[]", first + i)
            })
            .collect();
        let names: Vec<&str> = columns.iter().map(|c| c.0).collect();
        format!(
            "(SELECT * FROM UNNEST({}) AS u({}))",
            arrays.join(", "),
            names.join(", ")
        )
    }

    fn bind_rows<'q>(
        mut query: Query<'q, sqlx::Postgres>,
        rows: &Rows,
    ) -> Query<'q, sqlx::Postgres> {
        for column in &rows.columns {
            query = match column {
                Values::Int(v) => query.bind(v),
                Values::Text(v) => query.bind(v),
                Values::Bytes(v) => query.bind(v),
            };
        }
        query
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }

    /// Postgres' `lock_not_available`, which a `lock_timeout` raises.
    fn is_lock_timeout(e: &sqlx::Error) -> bool {
        e.as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c == "55P03")
    }

    async fn why_unreachable(&self, _: Option<sqlx::Error>) -> Option<String> {
        connect_cause(&self.options).await
    }
}

/// `postgres://user@host:port/db` (or the socket path), without the password.
fn endpoint(o: &PgConnectOptions) -> String {
    let at = server(o);
    let db = o.get_database().unwrap_or(o.get_username());
    format!("postgres://{}@{at}/{db}", o.get_username())
}

/// Why no connection can be made right now: one direct attempt, bounded. `None` when it
/// connects after all.
async fn connect_cause(options: &PgConnectOptions) -> Option<String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(options)).await {
        Err(_) => Some(format!(
            "no answer to a connection attempt within {CONNECT_TIMEOUT:?}"
        )),
        Ok(Err(e)) => Some(connect_error(&e, options)),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            None
        }
    }
}

/// Why a connection attempt failed, for an operator: a refused connection said as such, and
/// the server's own message without the line of its source it was raised at.
fn connect_error(e: &sqlx::Error, o: &PgConnectOptions) -> String {
    let at = server(o);
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("connection refused: nothing listens at {at} (is PostgreSQL running there?)")
        }
        sqlx::Error::Io(io) => format!("cannot reach {at}: {io}"),
        sqlx::Error::Database(d) => match d.code().as_deref() {
            // invalid_catalog_name
            Some("3D000") => format!(
                "database \"{}\" does not exist on the server at {at}: create it (createdb) or \
                 name another in the URL",
                o.get_database().unwrap_or(o.get_username())
            ),
            // invalid_password, invalid_authorization_specification
            Some("28P01" | "28000") => {
                format!("the server at {at} refused the login: {}", d.message())
            }
            _ => d.message().to_string(),
        },
        other => other.to_string(),
    }
}

/// `host:port`, or the socket path.
fn server(o: &PgConnectOptions) -> String {
    match o.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", o.get_host(), o.get_port()),
    }
}
