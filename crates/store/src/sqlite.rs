//! SQLite backend.
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
//! [`Store::apply`] runs in one `BEGIN IMMEDIATE` transaction and writes all rows with one
//! multi-statement command whose rows are JSON parameters (see [`APPLY`]): a group commit of
//! 1,000 completions costs three hand-offs to the connection's thread (begin, write, commit).
//! Whether every changed job exists is checked by counting the updated rows, without per-row
//! reads.

use crate::api::{
    Change, JobCounts, JobFilter, LeaseClaim, LeaseHolder, Result, Store, StoreError,
};
use crate::codec::{
    self, BATCH_COLS, JOB_COLS, PROOF_COLS, Plan, RowExt, db_err, decode_batch, decode_job,
    decode_proof, to_i64,
};
use async_trait::async_trait;
use proofmill_types::{Batch, BatchNumber, Job, JobKey, Millis, ProofRecord, ProofType, ProverId};
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqlitePoolOptions, SqliteRow};
use sqlx::{AssertSqlSafe, ConnectOptions as _, Connection as _, Row as _};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::time::Duration;

mod url;
use url::parse_url;

const READ_POOL_SIZE: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// Bound of [`Store::probe`].
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// How often the background checkpointer runs while writes happen.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// WAL pages after which the writer checkpoints by itself: only a fallback (should the
/// checkpointer fall behind), far above what accumulates in [`CHECKPOINT_EVERY`].
const WRITER_AUTOCHECKPOINT_PAGES: &str = "16384";

pub(crate) struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    /// Write transactions committed, so the checkpointer can tell busy from idle.
    commits: Arc<AtomicU64>,
    /// Dropping it stops the checkpointer thread (none for in-memory databases).
    _checkpointer: Option<Sender<()>>,
    endpoint: String,
    /// Lease epoch every write must find current ([`Store::fence_writes`]); 0: unchecked.
    fence: AtomicU64,
}

impl SqliteStore {
    pub(crate) async fn open(url: &str) -> Result<SqliteStore> {
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
            .connect_with(writer_options)
            .await
            .map_err(|e| db_err(&format!("opening {url}"), e))?;
        crate::migrate::sqlite()
            .run(&write)
            .await
            .map_err(|e| StoreError::Database(format!("migrating {url}: {e}")))?;
        let commits = Arc::new(AtomicU64::new(0));
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
        Ok(SqliteStore {
            write,
            read,
            commits,
            _checkpointer: checkpointer,
            endpoint,
            fence: AtomicU64::new(0),
        })
    }
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

/// All of [`Store::apply`]'s writes as one multi-statement command, i.e. a single hand-off
/// to the connection's thread (sqlx runs each command there and waits for it). Rows travel as
/// JSON arrays (`?1` jobs, `?2` proof keys to delete, `?3` proofs, blobs hex-encoded), so the
/// text never changes and its statements stay prepared; `jsonb_each` drives primary-key
/// lookups and hands out each row as JSONB, which `->>` reads without reparsing text (a
/// fraction of the cost of `json_each` in profiles). `SELECT changes()` reports how many
/// jobs the `UPDATE` found.
const APPLY: &str = "UPDATE jobs SET state = v.value ->> 2, version = v.value ->> 3, \
    failed_attempts = v.value ->> 4, lost_attempts = v.value ->> 5, \
    lease_prover = v.value ->> 6, lease_token = v.value ->> 7, leased_at = v.value ->> 8, \
    lease_deadline = v.value ->> 9, not_before = v.value ->> 10, last_error = v.value ->> 11, \
    updated_at = v.value ->> 12 \
    FROM jsonb_each(?1) AS v WHERE jobs.batch = v.value ->> 0 AND jobs.proof_type = v.value ->> 1; \
    SELECT changes(); \
    DELETE FROM proofs WHERE (batch, proof_type) IN \
    (SELECT value ->> 0, value ->> 1 FROM jsonb_each(?2)); \
    INSERT INTO proofs (batch, proof_type, blob_key, size, digest, prover, prover_name, token, \
    leased_at, received_at, prove_ms, inline_data) \
    SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, unhex(value ->> 4), value ->> 5, \
    value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, unhex(value ->> 11) \
    FROM jsonb_each(?3) WHERE true \
    ON CONFLICT (batch, proof_type) DO UPDATE SET blob_key = excluded.blob_key, \
    size = excluded.size, digest = excluded.digest, prover = excluded.prover, \
    prover_name = excluded.prover_name, token = excluded.token, \
    leased_at = excluded.leased_at, received_at = excluded.received_at, \
    prove_ms = excluded.prove_ms, inline_data = excluded.inline_data";

/// The highest fencing token ever written, kept when its lease ends (see migration 0002). A
/// statement of its own: in a multi-statement command sqlx binds a statement's unnamed
/// leading parameters positionally, so a `?4` after statements using `?2` and `?3` would stay
/// unbound.
const RAISE_TOKEN_HIGH: &str = "UPDATE token_high SET value = ?1 WHERE id = 1 AND value < ?1";

/// Operator actions, rare: one statement per prover. A cordon keeps the time it was first set
/// and takes the latest reason.
const CORDON: &str = "INSERT INTO cordons (prover_id, since, reason) VALUES (?1, ?2, ?3) \
     ON CONFLICT (prover_id) DO UPDATE SET reason = excluded.reason";
const UNCORDON: &str = "DELETE FROM cordons WHERE prover_id = ?1";

/// Error path only: which of the keys (a JSON array of `[batch, proof_type]`) have no job.
const MISSING_JOBS: &str = "SELECT v.value ->> 0 AS batch, v.value ->> 1 AS proof_type \
    FROM json_each(?1) AS v WHERE NOT EXISTS (SELECT 1 FROM jobs AS j \
    WHERE j.batch = v.value ->> 0 AND j.proof_type = v.value ->> 1) LIMIT 5";

/// Ranges missing below the highest batch: each stored batch (from `?1` up) whose successor
/// is not stored starts one (ends before the next stored batch).
const BATCH_GAPS_SQLITE: &str = "SELECT b.number + 1 AS first, \
    (SELECT MIN(n.number) FROM batches AS n WHERE n.number > b.number) - 1 AS last \
    FROM batches AS b WHERE b.number >= ?1 AND b.number < (SELECT MAX(number) FROM batches) \
    AND NOT EXISTS (SELECT 1 FROM batches AS n WHERE n.number = b.number + 1) \
    ORDER BY b.number LIMIT ?2";

fn json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("encoding rows: {e}")))
}

/// The database's clock, Unix ms (the lease's expiry is kept in it).
const NOW_MS: &str = "CAST(unixepoch('subsec') * 1000 AS INTEGER)";

impl SqliteStore {
    /// Fails with [`StoreError::Fenced`] unless the lease epoch this handle writes for is
    /// still current. Run inside the write transaction: `BEGIN IMMEDIATE` holds the write
    /// lock, so no takeover can commit between the check and the write.
    async fn check_fence(&self, tx: &mut sqlx::SqliteConnection) -> Result<()> {
        let epoch = self.fence.load(Ordering::SeqCst);
        if epoch == 0 {
            return Ok(());
        }
        let current: Option<i64> =
            sqlx::query_scalar("SELECT epoch FROM coordinator_lease WHERE id = 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(|e| db_err("checking the coordinator lease", e))?;
        let current = current.map(|c| c as u64);
        if current == Some(epoch) {
            Ok(())
        } else {
            Err(StoreError::Fenced { epoch, current })
        }
    }

    async fn begin_write(&self, what: &str) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>> {
        let mut tx = self
            .write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_err(&format!("{what}: begin"), e))?;
        self.check_fence(&mut tx).await?;
        Ok(tx)
    }
}

#[async_trait]
impl Store for SqliteStore {
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
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (number) DO NOTHING",
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
        .map_err(|e| db_err(&ctx("insert"), e))?
        .rows_affected();
        if inserted == 0 {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {BATCH_COLS} FROM batches WHERE number = ?1"
            )))
            .bind(number)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_err(&ctx("read existing"), e))?;
            let existing = decode_batch(&row)?;
            return if codec::same_batch_content(&existing, batch) {
                Ok(false)
            } else {
                Err(StoreError::BatchConflict(batch.number))
            };
        }
        insert_queued_jobs(&mut tx, number, &required, &batch.version, now)
            .await
            .map_err(|e| db_err(&ctx("insert jobs"), e))?;
        tx.commit().await.map_err(|e| db_err(&ctx("commit"), e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    async fn batch(&self, number: BatchNumber) -> Result<Option<Batch>> {
        let Ok(n) = i64::try_from(number) else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BATCH_COLS} FROM batches WHERE number = ?1"
        )))
        .bind(n)
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading batch", e))?;
        row.as_ref().map(decode_batch).transpose()
    }

    async fn last_sealed_batch(&self) -> Result<Option<BatchNumber>> {
        let max: Option<i64> = sqlx::query_scalar("SELECT MAX(number) FROM batches")
            .fetch_one(&self.read)
            .await
            .map_err(|e| db_err("last_sealed_batch", e))?;
        max.map(|v| codec::to_u64(v, "batch number")).transpose()
    }

    async fn last_proven_batch(&self) -> Result<Option<BatchNumber>> {
        let ctx = "last_proven_batch";
        let mut tx = self.read.begin().await.map_err(|e| db_err(ctx, e))?;
        let row = sqlx::query(
            "SELECT (SELECT MIN(number) FROM batches) AS first, (SELECT MAX(number) FROM batches) AS last, \
             (SELECT MIN(b) FROM (\
               SELECT MIN(batch) AS b FROM jobs WHERE state = 'queued' \
               UNION ALL SELECT MIN(batch) FROM jobs WHERE state = 'leased' \
               UNION ALL SELECT MIN(batch) FROM jobs WHERE state = 'failed' \
               UNION ALL SELECT MIN(batch) FROM jobs WHERE state = 'cancelled')) AS open",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_err(ctx, e))?;
        let (Some(first), Some(last)) = (row.opt_u64("first")?, row.opt_u64("last")?) else {
            return Ok(None);
        };
        let Some(candidate) = codec::proven_candidate(first, last, row.opt_u64("open")?) else {
            return Ok(None);
        };
        let (lo, hi) = (to_i64(first, "first")?, to_i64(candidate, "candidate")?);
        let count: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM batches WHERE number BETWEEN ?1 AND ?2")
                .bind(lo)
                .bind(hi)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| db_err(ctx, e))?;
        if count == hi - lo + 1 {
            return Ok(Some(candidate));
        }
        // A gap below the candidate: the answer is the end of the first gap-free run.
        let end: i64 = sqlx::query_scalar(
            "SELECT number FROM batches AS b WHERE number BETWEEN ?1 AND ?2 AND NOT EXISTS \
             (SELECT 1 FROM batches AS n WHERE n.number = b.number + 1) ORDER BY number LIMIT 1",
        )
        .bind(lo)
        .bind(hi)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_err(ctx, e))?;
        Ok(Some(codec::to_u64(end, "batch number")?))
    }

    async fn open_jobs(&self) -> Result<Vec<Job>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM jobs WHERE state IN ('queued', 'leased') ORDER BY batch, proof_type"
        )))
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("open_jobs", e))?;
        rows.iter().map(decode_job).collect()
    }

    async fn job(&self, key: &JobKey) -> Result<Option<Job>> {
        let Ok(batch) = i64::try_from(key.batch) else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {JOB_COLS} FROM jobs WHERE batch = ?1 AND proof_type = ?2"
        )))
        .bind(batch)
        .bind(key.proof_type.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading job", e))?;
        row.as_ref().map(decode_job).transpose()
    }

    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let (sql, args) = codec::jobs_query(filter, |i| format!("?{i}"), "batch, proof_type")?;
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for arg in args {
            query = match arg {
                codec::Arg::Int(v) => query.bind(v),
                codec::Arg::Text(s) => query.bind(s),
            };
        }
        let rows = query
            .fetch_all(&self.read)
            .await
            .map_err(|e| db_err("listing jobs", e))?;
        rows.iter().map(decode_job).collect()
    }

    async fn job_counts(&self) -> Result<JobCounts> {
        let rows = sqlx::query(
            "SELECT proof_type, state, COUNT(*) AS n FROM jobs GROUP BY proof_type, state",
        )
        .fetch_all(&self.read)
        .await
        .map_err(|e| db_err("job_counts", e))?;
        codec::job_counts(&rows)
    }

    async fn apply(&self, changes: &[Change]) -> Result<()> {
        let plan = Plan::new(changes)?;
        if plan.is_empty() {
            return Ok(());
        }
        let (jobs, deletes, proofs) = plan.json_rows()?;
        let mut tx = self.begin_write("apply").await?;
        let written = sqlx::query(APPLY)
            .bind(jobs)
            .bind(deletes)
            .bind(proofs)
            .fetch_all(&mut *tx)
            .await;
        let updated = match &written {
            Ok(rows) => rows.first().and_then(|r| r.try_get::<i64, _>(0).ok()),
            Err(_) => None,
        };
        if updated != Some(plan.jobs.len() as i64) {
            // A missing job explains any failure (a proof needs its job), so look for one first.
            let keys: Vec<(i64, &str)> =
                plan.jobs.iter().map(|j| (j.batch, j.proof_type)).collect();
            let missing: sqlx::Result<Vec<SqliteRow>> = sqlx::query(MISSING_JOBS)
                .bind(json(&keys)?)
                .fetch_all(&mut *tx)
                .await;
            if let Ok(missing) = &missing
                && !missing.is_empty()
            {
                return Err(codec::missing_jobs_error(missing));
            }
            let what = format!(
                "apply: {} jobs, {} proofs",
                plan.jobs.len(),
                plan.proofs.len()
            );
            return Err(match written {
                Err(e) => db_err(&what, e),
                Ok(_) => StoreError::Database(format!("{what}: {updated:?} jobs updated")),
            });
        }
        if plan.token_high > 0 {
            sqlx::query(RAISE_TOKEN_HIGH)
                .bind(plan.token_high)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("apply: raising the token high-water mark", e))?;
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
                .map_err(|e| db_err("apply: writing a cordon", e))?;
        }
        tx.commit().await.map_err(|e| db_err("apply: commit", e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn proof(&self, key: &JobKey) -> Result<Option<ProofRecord>> {
        let Ok(batch) = i64::try_from(key.batch) else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {PROOF_COLS} FROM proofs WHERE batch = ?1 AND proof_type = ?2"
        )))
        .bind(batch)
        .bind(key.proof_type.as_str())
        .fetch_optional(&self.read)
        .await
        .map_err(|e| db_err("reading proof", e))?;
        row.as_ref().map(decode_proof).transpose()
    }

    async fn max_fencing_token(&self) -> Result<u64> {
        let max: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(t) FROM (SELECT MAX(lease_token) AS t FROM jobs \
             UNION ALL SELECT MAX(token) FROM proofs UNION ALL SELECT value FROM token_high)",
        )
        .fetch_one(&self.read)
        .await
        .map_err(|e| db_err("max_fencing_token", e))?;
        codec::to_u64(max.unwrap_or(0), "fencing token")
    }

    async fn cordoned_provers(&self) -> Result<Vec<(ProverId, String)>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT prover_id, reason FROM cordons ORDER BY prover_id")
                .fetch_all(&self.read)
                .await
                .map_err(|e| db_err("cordoned_provers", e))?;
        Ok(rows
            .into_iter()
            .map(|(id, reason)| (ProverId(id), reason))
            .collect())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = ?1")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(|e| db_err("get_meta", e))?;
        row.map(|r| {
            r.try_get::<String, _>(0)
                .map_err(|e| StoreError::Corrupt(format!("meta {key}: {e}")))
        })
        .transpose()
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.begin_write("set_meta").await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(|e| db_err("set_meta", e))?;
        tx.commit()
            .await
            .map_err(|e| db_err("set_meta: commit", e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn init_meta(&self, key: &str, value: &str) -> Result<String> {
        let mut tx = self.begin_write("init_meta").await?;
        // `DO UPDATE` to itself rather than `DO NOTHING`, so that `RETURNING` also yields the
        // value that was already there.
        let row = sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = meta.value RETURNING value",
        )
        .bind(key)
        .bind(value)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_err("init_meta", e))?;
        tx.commit()
            .await
            .map_err(|e| db_err("init_meta: commit", e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        row.try_get::<String, _>(0)
            .map_err(|e| StoreError::Corrupt(format!("meta {key}: {e}")))
    }

    async fn acquire_lease(&self, claim: &LeaseClaim) -> Result<Result<u64, LeaseHolder>> {
        let ttl = to_i64(claim.ttl_ms, "lease ttl")?;
        let mut tx = self
            .write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_err("acquire_lease: begin", e))?;
        let taken: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
            "INSERT INTO coordinator_lease (id, epoch, holder, url, expires_at) \
             VALUES (1, 1, ?1, ?2, {NOW_MS} + ?3) \
             ON CONFLICT (id) DO UPDATE SET epoch = coordinator_lease.epoch + 1, \
             holder = excluded.holder, url = excluded.url, expires_at = excluded.expires_at \
             WHERE coordinator_lease.expires_at <= {NOW_MS} \
             OR (?4 AND coordinator_lease.url = excluded.url) RETURNING epoch"
        )))
        .bind(&claim.holder)
        .bind(&claim.url)
        .bind(ttl)
        .bind(claim.reclaim)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_err("acquire_lease", e))?;
        let outcome = match taken {
            Some(epoch) => Ok(codec::to_u64(epoch, "lease epoch")?),
            None => Err(lease_holder(&mut tx)
                .await?
                .ok_or_else(|| StoreError::Corrupt("coordinator lease row vanished".into()))?),
        };
        tx.commit()
            .await
            .map_err(|e| db_err("acquire_lease: commit", e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(outcome)
    }

    async fn renew_lease(&self, epoch: u64, ttl_ms: u64) -> Result<bool> {
        let renewed = sqlx::query(AssertSqlSafe(format!(
            "UPDATE coordinator_lease SET expires_at = {NOW_MS} + ?2 WHERE id = 1 AND epoch = ?1"
        )))
        .bind(to_i64(epoch, "lease epoch")?)
        .bind(to_i64(ttl_ms, "lease ttl")?)
        .execute(&self.write)
        .await
        .map_err(|e| db_err("renew_lease", e))?
        .rows_affected();
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(renewed == 1)
    }

    async fn release_lease(&self, epoch: u64) -> Result<()> {
        sqlx::query("UPDATE coordinator_lease SET expires_at = 0 WHERE id = 1 AND epoch = ?1")
            .bind(to_i64(epoch, "lease epoch")?)
            .execute(&self.write)
            .await
            .map_err(|e| db_err("release_lease", e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn lease_holder(&self) -> Result<Option<LeaseHolder>> {
        let mut conn = self
            .read
            .acquire()
            .await
            .map_err(|e| db_err("lease_holder", e))?;
        lease_holder(&mut conn).await
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
        let counts: Option<(i64, i64, i64)> = sqlx::query_as(
            "SELECT COUNT(j.state), COALESCE(SUM(j.state IN ('queued', 'leased')), 0), \
             COALESCE(SUM(j.state = 'proven'), 0) FROM batches AS b \
             LEFT JOIN jobs AS j ON j.batch = b.number WHERE b.number = ?1 GROUP BY b.number",
        )
        .bind(number)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| db_err(&ctx("reading jobs"), e))?;
        codec::replaceable(batch.number, counts)?;
        for sql in [
            "UPDATE token_high SET value = (SELECT MAX(lease_token) FROM jobs WHERE batch = ?1) \
             WHERE id = 1 AND value < (SELECT MAX(lease_token) FROM jobs WHERE batch = ?1)",
            "DELETE FROM proofs WHERE batch = ?1",
            "DELETE FROM jobs WHERE batch = ?1",
        ] {
            sqlx::query(sql)
                .bind(number)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err(&ctx("clearing jobs"), e))?;
        }
        sqlx::query(
            "UPDATE batches SET version = ?2, input_key = ?3, input_digest = ?4, \
             input_size = ?5, public_values = ?6, required = ?7, \
             created_at = ?8 WHERE number = ?1",
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
        .map_err(|e| db_err(&ctx("update"), e))?;
        insert_queued_jobs(&mut tx, number, &required, &batch.version, now)
            .await
            .map_err(|e| db_err(&ctx("insert jobs"), e))?;
        tx.commit().await.map_err(|e| db_err(&ctx("commit"), e))?;
        self.commits.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn batch_gaps(
        &self,
        from: BatchNumber,
        limit: u32,
    ) -> Result<Vec<(BatchNumber, BatchNumber)>> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let rows: Vec<(i64, i64)> = sqlx::query_as(BATCH_GAPS_SQLITE)
            .bind(from)
            .bind(i64::from(limit))
            .fetch_all(&self.read)
            .await
            .map_err(|e| db_err("batch_gaps", e))?;
        codec::gap_ranges(rows)
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    async fn probe(&self) -> Result<()> {
        let query = sqlx::query_scalar::<_, i64>("SELECT 1").fetch_one(&self.read);
        match tokio::time::timeout(PROBE_TIMEOUT, query).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(db_err(&self.endpoint, e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "{}: no answer within {PROBE_TIMEOUT:?}",
                self.endpoint
            ))),
        }
    }
}

async fn lease_holder(conn: &mut sqlx::SqliteConnection) -> Result<Option<LeaseHolder>> {
    let row = sqlx::query(AssertSqlSafe(format!(
        "SELECT holder, url, epoch, expires_at - {NOW_MS} AS expires_in_ms \
         FROM coordinator_lease WHERE id = 1"
    )))
    .fetch_optional(&mut *conn)
    .await
    .map_err(|e| db_err("reading the coordinator lease", e))?;
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

/// One `queued` job per proof type of a new (or replaced) batch.
async fn insert_queued_jobs(
    tx: &mut SqliteConnection,
    number: i64,
    required: &[ProofType],
    version: &str,
    now: i64,
) -> sqlx::Result<()> {
    for pt in required {
        sqlx::query(
            "INSERT INTO jobs (batch, proof_type, state, version, failed_attempts, \
             lost_attempts, not_before, updated_at) VALUES (?1, ?2, 'queued', ?3, 0, 0, 0, ?4)",
        )
        .bind(number)
        .bind(pt.as_str())
        .bind(version)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
