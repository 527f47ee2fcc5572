//! PostgreSQL backend.
//!
//! [`Store::apply`] binds each kind of row as column arrays and writes them with one
//! `UNNEST` statement per kind (update jobs, delete proofs, upsert proofs), so a call costs a
//! few network round trips however many changes it carries.

use crate::api::{
    Change, JobCounts, JobFilter, LeaseClaim, LeaseHolder, Result, Store, StoreError,
};
use crate::codec::{
    self, BATCH_COLS, JOB_COLS, PROOF_COLS, Plan, RowExt, db_err, decode_batch, decode_job,
    decode_proof, is_unreachable, to_i64,
};
use async_trait::async_trait;
use proofmill_types::{Batch, BatchNumber, Job, JobKey, Millis, ProofRecord, ProofType, ProverId};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection as _, Row as _};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Jobs in batch order, then proof types in byte order (as SQLite's), whatever the
/// database's locale.
const JOB_ORDER: &str = "batch, proof_type COLLATE \"C\"";

const POOL_SIZE: u32 = 8;
/// Longest a call waits for a pooled connection, connecting included. The pool retries a
/// refused connection with a backoff capped at a fifth of this, so it is also about how
/// long the pool takes to notice that the server is back.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Bounds of [`Store::probe`]'s steps: a query through the pool (which may just be busy),
/// then a direct connection attempt.
const PROBE_POOL_TIMEOUT: Duration = Duration::from_millis(500);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) struct PgStore {
    pool: PgPool,
    /// To ask the server directly why the pool has no connection (the pool only says it
    /// timed out).
    options: PgConnectOptions,
    endpoint: String,
    /// Lease epoch every write must find current ([`Store::fence_writes`]); 0: unchecked.
    fence: AtomicU64,
}

impl PgStore {
    pub(crate) async fn open(url: &str) -> Result<PgStore> {
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
                let cause = cause.unwrap_or_else(|| format!("{e} (it connects now)"));
                return Err(StoreError::Unavailable(format!(
                    "connecting to {endpoint}: {cause}"
                )));
            }
            Err(e) => return Err(db_err(&format!("connecting to {endpoint}"), e)),
        };
        crate::migrate::postgres()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(format!("migrating {endpoint}: {e}")))?;
        Ok(PgStore {
            pool,
            options,
            endpoint,
            fence: AtomicU64::new(0),
        })
    }

    /// [`db_err`] naming the server.
    fn db_err(&self, context: &str, e: sqlx::Error) -> StoreError {
        db_err(&format!("{}: {context}", self.endpoint), e)
    }

    /// Begins a write transaction, failing with [`StoreError::Fenced`] unless the lease epoch
    /// this handle writes for is still current. The check takes a share lock on the lease
    /// row until commit, so a takeover (an update of that row) waits for this transaction and
    /// no write of a deposed coordinator commits after it.
    async fn begin_write(&self, what: &str) -> Result<sqlx::Transaction<'static, sqlx::Postgres>> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.db_err(&format!("{what}: begin"), e))?;
        let epoch = self.fence.load(Ordering::SeqCst);
        if epoch != 0 {
            let current: Option<i64> =
                sqlx::query_scalar("SELECT epoch FROM coordinator_lease WHERE id = 1 FOR SHARE")
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(|e| {
                        self.db_err(&format!("{what}: checking the coordinator lease"), e)
                    })?;
            let current = current.map(|c| c as u64);
            if current != Some(epoch) {
                return Err(StoreError::Fenced { epoch, current });
            }
        }
        Ok(tx)
    }
}

/// `postgres://user@host:port/db` (or the socket path), without the password.
fn endpoint(o: &PgConnectOptions) -> String {
    let at = match o.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => format!("{}:{}", o.get_host(), o.get_port()),
    };
    let db = o.get_database().unwrap_or(o.get_username());
    format!("postgres://{}@{at}/{db}", o.get_username())
}

/// Why no connection can be made right now: one direct attempt, bounded. `None` when it
/// connects after all.
async fn connect_cause(options: &PgConnectOptions) -> Option<String> {
    match tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(options)).await {
        Err(_) => Some(format!(
            "no answer to a connection attempt within {PROBE_TIMEOUT:?}"
        )),
        Ok(Err(e)) => Some(e.to_string()),
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            None
        }
    }
}

const UPDATE_JOBS: &str = "UPDATE jobs AS j SET state = v.state, version = v.version, \
    failed_attempts = v.failed_attempts, lost_attempts = v.lost_attempts, \
    lease_prover = v.lease_prover, lease_token = v.lease_token, leased_at = v.leased_at, \
    lease_deadline = v.lease_deadline, not_before = v.not_before, last_error = v.last_error, \
    updated_at = v.updated_at \
    FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[], \
    $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::text[], $13::int8[]) \
    AS v(batch, proof_type, state, version, failed_attempts, lost_attempts, lease_prover, \
    lease_token, leased_at, lease_deadline, not_before, last_error, updated_at) \
    WHERE j.batch = v.batch AND j.proof_type = v.proof_type";

/// The highest fencing token ever written, kept when its lease ends (see migration 0002).
const RAISE_TOKEN_HIGH: &str = "UPDATE token_high SET value = $1 WHERE id = 1 AND value < $1";

/// Operator actions, rare: one statement per prover. A cordon keeps the time it was first set
/// and takes the latest reason.
const CORDON: &str = "INSERT INTO cordons (prover_id, since, reason) VALUES ($1, $2, $3) \
     ON CONFLICT (prover_id) DO UPDATE SET reason = excluded.reason";
const UNCORDON: &str = "DELETE FROM cordons WHERE prover_id = $1";

const MISSING_JOBS: &str = "SELECT v.batch, v.proof_type FROM UNNEST($1::int8[], $2::text[]) \
    AS v(batch, proof_type) WHERE NOT EXISTS (SELECT 1 FROM jobs AS j \
    WHERE j.batch = v.batch AND j.proof_type = v.proof_type) LIMIT 5";

const DELETE_PROOFS: &str = "DELETE FROM proofs AS p USING UNNEST($1::int8[], $2::text[]) \
    AS v(batch, proof_type) WHERE p.batch = v.batch AND p.proof_type = v.proof_type";

const UPSERT_PROOFS: &str = "INSERT INTO proofs (batch, proof_type, blob_key, size, digest, \
    prover, prover_name, token, leased_at, received_at, prove_ms, inline_data) \
    SELECT * FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::int8[], $5::bytea[], \
    $6::text[], $7::text[], $8::int8[], $9::int8[], $10::int8[], $11::int8[], $12::bytea[]) \
    ON CONFLICT (batch, proof_type) DO UPDATE SET blob_key = EXCLUDED.blob_key, \
    size = EXCLUDED.size, digest = EXCLUDED.digest, prover = EXCLUDED.prover, \
    prover_name = EXCLUDED.prover_name, token = EXCLUDED.token, leased_at = EXCLUDED.leased_at, \
    received_at = EXCLUDED.received_at, prove_ms = EXCLUDED.prove_ms, \
    inline_data = EXCLUDED.inline_data";

/// The database's clock, Unix ms (the lease's expiry is kept in it, so coordinators'
/// clocks do not matter).
const NOW_MS: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT";

/// How long taking the lease waits for the row's lock.
const LEASE_LOCK_TIMEOUT: &str = "SET LOCAL lock_timeout = '1s'";

/// Postgres' `lock_not_available`, which a `lock_timeout` raises.
fn is_lock_timeout(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "55P03")
}

impl PgStore {
    /// The lease row stayed locked past [`LEASE_LOCK_TIMEOUT`]: its holder is inside a write
    /// (every write takes a share lock on the row, the fence) and does not finish it. If the
    /// lease has expired, that holder is hung (or paused): its database sessions that hold a
    /// lock on the row are terminated, which rolls its write back, so that the next attempt
    /// takes the lease. Returns who holds it meanwhile.
    async fn break_hung_holder(&self) -> Result<Result<u64, LeaseHolder>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.db_err("acquire_lease: reading the lease", e))?;
        let holder = self
            .read_lease(&mut conn)
            .await?
            .ok_or_else(|| StoreError::Corrupt("coordinator lease row vanished".into()))?;
        if holder.expires_in_ms <= 0 {
            let _ended: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(l.pid) FROM pg_locks l \
                 JOIN pg_class c ON c.oid = l.relation \
                 WHERE c.relname = 'coordinator_lease' AND l.granted \
                 AND l.pid <> pg_backend_pid()",
            )
            .fetch_all(&mut *conn)
            .await
            .map_err(|e| self.db_err("acquire_lease: ending a hung holder's sessions", e))?;
        }
        Ok(Err(holder))
    }

    async fn read_lease(&self, conn: &mut PgConnection) -> Result<Option<LeaseHolder>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT holder, url, epoch, expires_at - {NOW_MS} AS expires_in_ms \
             FROM coordinator_lease WHERE id = 1"
        )))
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| self.db_err("reading the coordinator lease", e))?;
        row.map(|r| {
            Ok(LeaseHolder {
                holder: r.text("holder")?,
                url: r.text("url")?,
                epoch: r.u64("epoch")?,
                expires_in_ms: r.i64("expires_in_ms")?,
            })
        })
        .transpose()
    }
}

#[async_trait]
impl Store for PgStore {
    async fn insert_batch(&self, batch: &Batch, now: Millis) -> Result<bool> {
        let number = to_i64(batch.number, "batch number")?;
        let input_size = to_i64(batch.input_size, "input_size")?;
        let created_at = to_i64(batch.created_at, "created_at")?;
        let now = to_i64(now, "now")?;
        let required = codec::unique_types(&batch.required);
        let ctx = |what: &str| format!("insert_batch {}: {what}", batch.number);
        let mut tx = self
            .begin_write(&format!("insert_batch {}", batch.number))
            .await?;
        let inserted = sqlx::query(
            "INSERT INTO batches (number, version, input_key, input_digest, input_size, \
             public_values, required, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (number) DO NOTHING",
        )
        .bind(number)
        .bind(&batch.version)
        .bind(&batch.input_key)
        .bind(&batch.input_digest.0[..])
        .bind(input_size)
        .bind(batch.public_values.as_bytes())
        .bind(codec::encode_required(&required))
        .bind(created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&ctx("insert"), e))?
        .rows_affected();
        if inserted == 0 {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {BATCH_COLS} FROM batches WHERE number = $1"
            )))
            .bind(number)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| self.db_err(&ctx("read existing"), e))?;
            let existing = decode_batch(&row)?;
            return if codec::same_batch_content(&existing, batch) {
                Ok(false)
            } else {
                Err(StoreError::BatchConflict(batch.number))
            };
        }
        insert_queued_jobs(&mut tx, number, &required, &batch.version, now)
            .await
            .map_err(|e| self.db_err(&ctx("insert jobs"), e))?;
        tx.commit()
            .await
            .map_err(|e| self.db_err(&ctx("commit"), e))?;
        Ok(true)
    }

    async fn batch(&self, number: BatchNumber) -> Result<Option<Batch>> {
        let Ok(n) = i64::try_from(number) else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BATCH_COLS} FROM batches WHERE number = $1"
        )))
        .bind(n)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db_err("reading batch", e))?;
        row.as_ref().map(decode_batch).transpose()
    }

    async fn last_sealed_batch(&self) -> Result<Option<BatchNumber>> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(number) FROM batches")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.db_err("last_sealed_batch", e))?;
        max.map(|v| codec::to_u64(v, "batch number")).transpose()
    }

    async fn last_proven_batch(&self) -> Result<Option<BatchNumber>> {
        let ctx = "last_proven_batch";
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(|e| self.db_err(ctx, e))?;
        let row = sqlx::query(
            "SELECT (SELECT MIN(number) FROM batches) AS first, \
             (SELECT MAX(number) FROM batches) AS last, \
             LEAST((SELECT MIN(batch) FROM jobs WHERE state = 'queued'), \
                   (SELECT MIN(batch) FROM jobs WHERE state = 'leased'), \
                   (SELECT MIN(batch) FROM jobs WHERE state = 'failed'), \
                   (SELECT MIN(batch) FROM jobs WHERE state = 'cancelled')) AS open",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err(ctx, e))?;
        let (Some(first), Some(last)) = (row.opt_u64("first")?, row.opt_u64("last")?) else {
            return Ok(None);
        };
        let Some(candidate) = codec::proven_candidate(first, last, row.opt_u64("open")?) else {
            return Ok(None);
        };
        let (lo, hi) = (to_i64(first, "first")?, to_i64(candidate, "candidate")?);
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM batches WHERE number BETWEEN $1 AND $2")
                .bind(lo)
                .bind(hi)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.db_err(ctx, e))?;
        if count == hi - lo + 1 {
            return Ok(Some(candidate));
        }
        let end: i64 = sqlx::query_scalar(
            "SELECT number FROM batches AS b WHERE number BETWEEN $1 AND $2 AND NOT EXISTS \
             (SELECT 1 FROM batches AS n WHERE n.number = b.number + 1) ORDER BY number LIMIT 1",
        )
        .bind(lo)
        .bind(hi)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err(ctx, e))?;
        Ok(Some(codec::to_u64(end, "batch number")?))
    }

    async fn open_jobs(&self) -> Result<Vec<Job>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM jobs WHERE state IN ('queued', 'leased') ORDER BY {JOB_ORDER}"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err("open_jobs", e))?;
        rows.iter().map(decode_job).collect()
    }

    async fn job(&self, key: &JobKey) -> Result<Option<Job>> {
        let Ok(batch) = i64::try_from(key.batch) else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM jobs WHERE batch = $1 AND proof_type = $2"
        )))
        .bind(batch)
        .bind(key.proof_type.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db_err("reading job", e))?;
        row.as_ref().map(decode_job).transpose()
    }

    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let (sql, args) = codec::jobs_query(filter, |i| format!("${i}"), JOB_ORDER)?;
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for arg in args {
            query = match arg {
                codec::Arg::Int(v) => query.bind(v),
                codec::Arg::Text(s) => query.bind(s),
            };
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(|e| self.db_err("listing jobs", e))?;
        rows.iter().map(decode_job).collect()
    }

    async fn job_counts(&self) -> Result<JobCounts> {
        let rows = sqlx::query(
            "SELECT proof_type, state, COUNT(*) AS n FROM jobs GROUP BY proof_type, state",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err("job_counts", e))?;
        codec::job_counts(&rows)
    }

    async fn apply(&self, changes: &[Change]) -> Result<()> {
        let plan = Plan::new(changes)?;
        if plan.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write("apply").await?;
        if !plan.jobs.is_empty() {
            let j = &plan.jobs;
            let batches: Vec<i64> = j.iter().map(|r| r.batch).collect();
            let types: Vec<&str> = j.iter().map(|r| r.proof_type).collect();
            let updated = sqlx::query(UPDATE_JOBS)
                .bind(&batches)
                .bind(&types)
                .bind(j.iter().map(|r| r.state).collect::<Vec<_>>())
                .bind(j.iter().map(|r| r.version).collect::<Vec<_>>())
                .bind(j.iter().map(|r| r.failed_attempts).collect::<Vec<_>>())
                .bind(j.iter().map(|r| r.lost_attempts).collect::<Vec<_>>())
                .bind(j.iter().map(|r| r.lease_prover).collect::<Vec<_>>())
                .bind(j.iter().map(|r| r.lease_token).collect::<Vec<_>>())
                .bind(j.iter().map(|r| r.leased_at).collect::<Vec<_>>())
                .bind(j.iter().map(|r| r.lease_deadline).collect::<Vec<_>>())
                .bind(j.iter().map(|r| r.not_before).collect::<Vec<_>>())
                .bind(j.iter().map(|r| r.last_error).collect::<Vec<_>>())
                .bind(j.iter().map(|r| r.updated_at).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(&format!("apply: writing {} jobs", j.len()), e))?
                .rows_affected();
            if updated != j.len() as u64 {
                let missing = sqlx::query(MISSING_JOBS)
                    .bind(&batches)
                    .bind(&types)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(|e| self.db_err("apply: checking jobs", e))?;
                return Err(codec::missing_jobs_error(&missing));
            }
        }
        if !plan.deletes.is_empty() {
            let d = &plan.deletes;
            sqlx::query(DELETE_PROOFS)
                .bind(d.iter().map(|r| r.0).collect::<Vec<_>>())
                .bind(d.iter().map(|r| r.1).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err("apply: deleting proofs", e))?;
        }
        if !plan.proofs.is_empty() {
            let p = &plan.proofs;
            sqlx::query(UPSERT_PROOFS)
                .bind(p.iter().map(|r| r.batch).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.proof_type).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.blob_key).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.size).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.digest).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.prover).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.prover_name).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.token).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.leased_at).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.received_at).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.prove_ms).collect::<Vec<_>>())
                .bind(p.iter().map(|r| r.inline).collect::<Vec<_>>())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    self.db_err(
                        &format!(
                            "apply: writing {} proofs (each needs an existing job)",
                            p.len()
                        ),
                        e,
                    )
                })?;
        }
        if plan.token_high > 0 {
            sqlx::query(RAISE_TOKEN_HIGH)
                .bind(plan.token_high)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err("apply: raising the token high-water mark", e))?;
        }
        for &(prover, on, since, reason) in &plan.cordons {
            let write = if on {
                sqlx::query(CORDON).bind(prover).bind(since).bind(reason)
            } else {
                sqlx::query(UNCORDON).bind(prover)
            };
            write
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err("apply: writing a cordon", e))?;
        }
        tx.commit()
            .await
            .map_err(|e| self.db_err("apply: commit", e))
    }

    async fn proof(&self, key: &JobKey) -> Result<Option<ProofRecord>> {
        let Ok(batch) = i64::try_from(key.batch) else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROOF_COLS} FROM proofs WHERE batch = $1 AND proof_type = $2"
        )))
        .bind(batch)
        .bind(key.proof_type.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| self.db_err("reading proof", e))?;
        row.as_ref().map(decode_proof).transpose()
    }

    async fn max_fencing_token(&self) -> Result<u64> {
        let max: Option<i64> = sqlx::query_scalar(
            "SELECT GREATEST((SELECT MAX(lease_token) FROM jobs), (SELECT MAX(token) FROM proofs), \
             (SELECT value FROM token_high))",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| self.db_err("max_fencing_token", e))?;
        codec::to_u64(max.unwrap_or(0), "fencing token")
    }

    async fn cordoned_provers(&self) -> Result<Vec<(ProverId, String)>> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT prover_id, reason FROM cordons ORDER BY prover_id COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err("cordoned_provers", e))?;
        Ok(rows
            .into_iter()
            .map(|(id, reason)| (ProverId(id), reason))
            .collect())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| self.db_err("get_meta", e))?;
        row.map(|r| {
            r.try_get::<String, _>(0)
                .map_err(|e| StoreError::Corrupt(format!("meta {key}: {e}")))
        })
        .transpose()
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.begin_write("set_meta").await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err("set_meta", e))?;
        tx.commit()
            .await
            .map_err(|e| self.db_err("set_meta: commit", e))?;
        Ok(())
    }

    async fn init_meta(&self, key: &str, value: &str) -> Result<String> {
        let mut tx = self.begin_write("init_meta").await?;
        // `DO UPDATE` to itself rather than `DO NOTHING`, so that `RETURNING` also yields the
        // value that was already there.
        let row = sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = meta.value RETURNING value",
        )
        .bind(key)
        .bind(value)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err("init_meta", e))?;
        tx.commit()
            .await
            .map_err(|e| self.db_err("init_meta: commit", e))?;
        row.try_get::<String, _>(0)
            .map_err(|e| StoreError::Corrupt(format!("meta {key}: {e}")))
    }

    async fn acquire_lease(&self, claim: &LeaseClaim) -> Result<Result<u64, LeaseHolder>> {
        let ttl = to_i64(claim.ttl_ms, "lease ttl")?;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(|e| self.db_err("acquire_lease: begin", e))?;
        // A holder hung inside a write keeps its share lock on the row (the fence): do not
        // wait on it for good, see below.
        sqlx::query(LEASE_LOCK_TIMEOUT)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err("acquire_lease: lock timeout", e))?;
        let taken: sqlx::Result<Option<i64>> = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO coordinator_lease (id, epoch, holder, url, expires_at) \
             VALUES (1, 1, $1, $2, {NOW_MS} + $3) \
             ON CONFLICT (id) DO UPDATE SET epoch = coordinator_lease.epoch + 1, \
             holder = EXCLUDED.holder, url = EXCLUDED.url, expires_at = EXCLUDED.expires_at \
             WHERE coordinator_lease.expires_at <= {NOW_MS} \
             OR ($4 AND coordinator_lease.url = EXCLUDED.url) RETURNING epoch"
        )))
        .bind(&claim.holder)
        .bind(&claim.url)
        .bind(ttl)
        .bind(claim.reclaim)
        .fetch_optional(&mut *tx)
        .await;
        let taken = match taken {
            Err(e) if is_lock_timeout(&e) => {
                drop(tx);
                return self.break_hung_holder().await;
            }
            other => other.map_err(|e| self.db_err("acquire_lease", e))?,
        };
        let outcome = match taken {
            Some(epoch) => Ok(codec::to_u64(epoch, "lease epoch")?),
            None => Err(self
                .read_lease(&mut tx)
                .await?
                .ok_or_else(|| StoreError::Corrupt("coordinator lease row vanished".into()))?),
        };
        tx.commit()
            .await
            .map_err(|e| self.db_err("acquire_lease: commit", e))?;
        Ok(outcome)
    }

    async fn renew_lease(&self, epoch: u64, ttl_ms: u64) -> Result<bool> {
        let renewed = sqlx::query(AssertSqlSafe(format!(
            "UPDATE coordinator_lease SET expires_at = {NOW_MS} + $2 WHERE id = 1 AND epoch = $1"
        )))
        .bind(to_i64(epoch, "lease epoch")?)
        .bind(to_i64(ttl_ms, "lease ttl")?)
        .execute(&self.pool)
        .await
        .map_err(|e| self.db_err("renew_lease", e))?
        .rows_affected();
        Ok(renewed == 1)
    }

    async fn release_lease(&self, epoch: u64) -> Result<()> {
        sqlx::query("UPDATE coordinator_lease SET expires_at = 0 WHERE id = 1 AND epoch = $1")
            .bind(to_i64(epoch, "lease epoch")?)
            .execute(&self.pool)
            .await
            .map_err(|e| self.db_err("release_lease", e))?;
        Ok(())
    }

    async fn lease_holder(&self) -> Result<Option<LeaseHolder>> {
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(|e| self.db_err("lease_holder", e))?;
        self.read_lease(&mut conn).await
    }

    fn fence_writes(&self, epoch: u64) {
        self.fence.store(epoch, Ordering::SeqCst);
    }

    async fn replace_batch(&self, batch: &Batch, now: Millis) -> Result<()> {
        let number = to_i64(batch.number, "batch number")?;
        let input_size = to_i64(batch.input_size, "input_size")?;
        let created_at = to_i64(batch.created_at, "created_at")?;
        let now = to_i64(now, "now")?;
        let required = codec::unique_types(&batch.required);
        let ctx = |what: &str| format!("replace_batch {}: {what}", batch.number);
        let mut tx = self
            .begin_write(&format!("replace_batch {}", batch.number))
            .await?;
        // The batch row locked first: a concurrent replace of the same batch waits here.
        let counts: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE batch = b.number), \
             (SELECT COUNT(*) FROM jobs WHERE batch = b.number AND state IN ('queued', 'leased')), \
             (SELECT COUNT(*) FROM jobs WHERE batch = b.number AND state = 'proven') \
             FROM batches AS b WHERE b.number = $1 FOR UPDATE",
        )
        .bind(number)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.db_err(&ctx("reading jobs"), e))?;
        codec::replaceable(batch.number, counts)?;
        for sql in [
            "UPDATE token_high SET value = GREATEST(value, \
             (SELECT COALESCE(MAX(lease_token), 0) FROM jobs WHERE batch = $1)) WHERE id = 1",
            "DELETE FROM proofs WHERE batch = $1",
            "DELETE FROM jobs WHERE batch = $1",
        ] {
            sqlx::query(sql)
                .bind(number)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(&ctx("clearing jobs"), e))?;
        }
        sqlx::query(
            "UPDATE batches SET version = $2, input_key = $3, input_digest = $4, \
             input_size = $5, public_values = $6, required = $7, \
             created_at = $8 WHERE number = $1",
        )
        .bind(number)
        .bind(&batch.version)
        .bind(&batch.input_key)
        .bind(&batch.input_digest.0[..])
        .bind(input_size)
        .bind(batch.public_values.as_bytes())
        .bind(codec::encode_required(&required))
        .bind(created_at)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(&ctx("update"), e))?;
        insert_queued_jobs(&mut tx, number, &required, &batch.version, now)
            .await
            .map_err(|e| self.db_err(&ctx("insert jobs"), e))?;
        tx.commit()
            .await
            .map_err(|e| self.db_err(&ctx("commit"), e))
    }

    async fn batch_gaps(
        &self,
        from: BatchNumber,
        limit: u32,
    ) -> Result<Vec<(BatchNumber, BatchNumber)>> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT b.number + 1 AS first, \
             (SELECT MIN(n.number) FROM batches AS n WHERE n.number > b.number) - 1 AS last \
             FROM batches AS b WHERE b.number >= $1 \
             AND b.number < (SELECT MAX(number) FROM batches) \
             AND NOT EXISTS (SELECT 1 FROM batches AS n WHERE n.number = b.number + 1) \
             ORDER BY b.number LIMIT $2",
        )
        .bind(from)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(|e| self.db_err("batch_gaps", e))?;
        codec::gap_ranges(rows)
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// `SELECT 1` through the pool; if that gets no answer, one direct connection attempt
    /// says why (a busy pool on a server that accepts connections counts as up).
    async fn probe(&self) -> Result<()> {
        let query = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&self.pool);
        match tokio::time::timeout(PROBE_POOL_TIMEOUT, query).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) if !is_unreachable(&e) => Err(self.db_err("probe", e)),
            _ => match connect_cause(&self.options).await {
                None => Ok(()),
                Some(cause) => Err(StoreError::Unavailable(format!(
                    "{}: {cause}",
                    self.endpoint
                ))),
            },
        }
    }
}

/// One `queued` job per proof type of a new (or replaced) batch.
async fn insert_queued_jobs(
    tx: &mut PgConnection,
    number: i64,
    required: &[ProofType],
    version: &str,
    now: i64,
) -> sqlx::Result<()> {
    let types: Vec<&str> = required.iter().map(|t| t.as_str()).collect();
    sqlx::query(
        "INSERT INTO jobs (batch, proof_type, state, version, failed_attempts, lost_attempts, \
         not_before, updated_at) SELECT $1, t, 'queued', $2, 0, 0, 0, $3 FROM UNNEST($4::text[]) AS t",
    )
    .bind(number)
    .bind(version)
    .bind(now)
    .bind(&types)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
