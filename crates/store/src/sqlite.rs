//! SQLite backend.
//!
//! Durability: WAL journal with `synchronous=NORMAL` by default. A committed transaction
//! survives the process being killed (`kill -9`); an OS crash or power loss may lose the last
//! few committed transactions (never corrupts the database). Add `?synchronous=full` to the
//! URL to also survive power loss, at the cost of an fsync per commit.
//!
//! Connections: one pool with a single connection for writes (SQLite has one writer, so
//! writers queue in the pool instead of spinning on `SQLITE_BUSY`) and a small `query_only`
//! pool for reads, which WAL lets run concurrently with the writer. `sqlite::memory:` uses
//! the single connection for everything (each connection would otherwise see its own
//! database).
//!
//! [`Store::apply`] runs in one `BEGIN IMMEDIATE` transaction and writes rows with multi-row
//! statements (`UPDATE … FROM (VALUES …)` for jobs, `INSERT … VALUES … ON CONFLICT DO UPDATE`
//! for proofs) in chunks of up to 256 rows, so a group commit of 1,000 completions costs about
//! a dozen statements. Whether every changed job exists is checked by comparing the number of
//! updated rows, without per-row reads.

use crate::api::{Change, JobCounts, JobFilter, Result, Store, StoreError};
use crate::codec::{
    self, BATCH_COLS, JOB_COLS, PROOF_COLS, Plan, RowExt, db_err, decode_batch, decode_job,
    decode_proof, to_i64,
};
use async_trait::async_trait;
use proofmill_types::{Batch, BatchNumber, Job, JobKey, Millis, ProofRecord};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row as _};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const READ_POOL_SIZE: u32 = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

fn invalid(url: &str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// Splits our own parameters (`synchronous`) off the URL; the rest goes to sqlx.
fn parse_url(url: &str) -> Result<(SqliteConnectOptions, bool)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut synchronous = SqliteSynchronous::Normal;
    let mut passed = Vec::new();
    let mut has_mode = false;
    let mut memory = base.ends_with(":memory:");
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "synchronous" => {
                synchronous = match v.to_ascii_lowercase().as_str() {
                    "normal" => SqliteSynchronous::Normal,
                    "full" => SqliteSynchronous::Full,
                    "extra" => SqliteSynchronous::Extra,
                    other => {
                        return Err(invalid(
                            url,
                            format!("synchronous={other:?}: use normal, full or extra"),
                        ));
                    }
                }
            }
            _ => {
                if k == "mode" {
                    has_mode = true;
                    memory |= v == "memory";
                }
                passed.push(pair);
            }
        }
    }
    let rest = if passed.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", passed.join("&"))
    };
    if !memory {
        let path = base.trim_start_matches("sqlite:").trim_start_matches("//");
        if path.is_empty() {
            return Err(invalid(
                url,
                "no database file path (use sqlite://path/to/db or sqlite::memory:)",
            ));
        }
    }
    let mut options =
        SqliteConnectOptions::from_str(&rest).map_err(|e| invalid(url, e.to_string()))?;
    if !has_mode && !memory {
        options = options.create_if_missing(true);
    }
    let options = options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(synchronous)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true);
    Ok((options, memory))
}

impl SqliteStore {
    pub(crate) async fn open(url: &str) -> Result<SqliteStore> {
        let (options, memory) = parse_url(url)?;
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await
            .map_err(|e| db_err(&format!("opening {url}"), e))?;
        crate::migrate::sqlite()
            .run(&write)
            .await
            .map_err(|e| StoreError::Database(format!("migrating {url}: {e}")))?;
        let read = if memory {
            write.clone()
        } else {
            SqlitePoolOptions::new()
                .max_connections(READ_POOL_SIZE)
                .min_connections(0)
                .connect_with(options.pragma("query_only", "ON"))
                .await
                .map_err(|e| db_err(&format!("opening {url} for reading"), e))?
        };
        Ok(SqliteStore { write, read })
    }
}

/// Rows per multi-row statement: a call's rows are written in chunks of these sizes
/// (largest first), so each statement text is one of a few, prepared once per connection.
const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

fn chunk_sizes(mut n: usize) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        let size = CHUNKS.into_iter().find(|&c| c <= n)?;
        n -= size;
        Some(size)
    })
}

fn values_list(rows: usize, cols: usize) -> String {
    let row = format!("({})", vec!["?"; cols].join(", "));
    vec![row; rows].join(", ")
}

/// Multi-row statements, one per chunk size (index as in [`CHUNKS`]).
struct Statements {
    update_jobs: Vec<Arc<str>>,
    upsert_proofs: Vec<Arc<str>>,
}

fn statements() -> &'static Statements {
    static STATEMENTS: OnceLock<Statements> = OnceLock::new();
    STATEMENTS.get_or_init(|| Statements {
        update_jobs: CHUNKS
            .iter()
            .map(|&n| {
                format!(
                    "UPDATE jobs SET state = v.column3, version = v.column4, \
                     failed_attempts = v.column5, lost_attempts = v.column6, \
                     lease_prover = v.column7, lease_token = v.column8, leased_at = v.column9, \
                     lease_deadline = v.column10, not_before = v.column11, \
                     last_error = v.column12, updated_at = v.column13 \
                     FROM (VALUES {}) AS v \
                     WHERE jobs.batch = v.column1 AND jobs.proof_type = v.column2",
                    values_list(n, 13)
                )
                .into()
            })
            .collect(),
        upsert_proofs: CHUNKS
            .iter()
            .map(|&n| {
                format!(
                    "INSERT INTO proofs ({PROOF_COLS}) VALUES {} \
                     ON CONFLICT (batch, proof_type) DO UPDATE SET blob_key = excluded.blob_key, \
                     size = excluded.size, digest = excluded.digest, prover = excluded.prover, \
                     prover_name = excluded.prover_name, token = excluded.token, \
                     leased_at = excluded.leased_at, received_at = excluded.received_at, \
                     prove_ms = excluded.prove_ms, inline_data = excluded.inline_data",
                    values_list(n, 12)
                )
                .into()
            })
            .collect(),
    })
}

/// Error path only: which of the keys (a JSON array of `[batch, proof_type]`) have no job.
const MISSING_JOBS: &str = "SELECT v.value ->> 0 AS batch, v.value ->> 1 AS proof_type \
    FROM json_each(?1) AS v WHERE NOT EXISTS (SELECT 1 FROM jobs AS j \
    WHERE j.batch = v.value ->> 0 AND j.proof_type = v.value ->> 1) LIMIT 5";

fn json(value: &impl serde::Serialize) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("encoding rows: {e}")))
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
            .write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_err(&ctx("begin"), e))?;
        let inserted = sqlx::query(
            "INSERT INTO batches (number, version, input_key, input_digest, input_size, old_root, \
             new_root, commitment, required, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT (number) DO NOTHING",
        )
        .bind(number)
        .bind(&batch.version)
        .bind(&batch.input_key)
        .bind(&batch.input_digest.0[..])
        .bind(input_size)
        .bind(&batch.public_values.old_state_root.0[..])
        .bind(&batch.public_values.new_state_root.0[..])
        .bind(&batch.public_values.batch_commitment.0[..])
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
        for pt in &required {
            sqlx::query(
                "INSERT INTO jobs (batch, proof_type, state, version, failed_attempts, \
                 lost_attempts, not_before, updated_at) VALUES (?1, ?2, 'queued', ?3, 0, 0, 0, ?4)",
            )
            .bind(number)
            .bind(pt.as_str())
            .bind(&batch.version)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(|e| db_err(&ctx(&format!("insert job {pt}")), e))?;
        }
        tx.commit().await.map_err(|e| db_err(&ctx("commit"), e))?;
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
        let (sql, args) = codec::jobs_query(filter, |i| format!("?{i}"))?;
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
        let mut tx = self
            .write
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(|e| db_err("apply: begin", e))?;
        let stmts = statements();
        let mut rest = &plan.jobs[..];
        let mut updated = 0;
        for size in chunk_sizes(plan.jobs.len()) {
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            let idx = CHUNKS.iter().position(|&c| c == size).expect("chunk size");
            let mut query = sqlx::query(AssertSqlSafe(stmts.update_jobs[idx].clone()));
            for j in chunk {
                query = query
                    .bind(j.batch)
                    .bind(j.proof_type)
                    .bind(j.state)
                    .bind(j.version)
                    .bind(j.failed_attempts)
                    .bind(j.lost_attempts)
                    .bind(j.lease_prover)
                    .bind(j.lease_token)
                    .bind(j.leased_at)
                    .bind(j.lease_deadline)
                    .bind(j.not_before)
                    .bind(j.last_error)
                    .bind(j.updated_at);
            }
            updated += query
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err(&format!("apply: writing {} jobs", plan.jobs.len()), e))?
                .rows_affected();
        }
        if updated != plan.jobs.len() as u64 {
            let keys: Vec<(i64, &str)> =
                plan.jobs.iter().map(|j| (j.batch, j.proof_type)).collect();
            let missing: Vec<SqliteRow> = sqlx::query(MISSING_JOBS)
                .bind(json(&keys)?)
                .fetch_all(&mut *tx)
                .await
                .map_err(|e| db_err("apply: checking jobs", e))?;
            return Err(codec::missing_jobs_error(&missing));
        }
        for (batch, proof_type) in &plan.deletes {
            sqlx::query("DELETE FROM proofs WHERE batch = ?1 AND proof_type = ?2")
                .bind(batch)
                .bind(*proof_type)
                .execute(&mut *tx)
                .await
                .map_err(|e| db_err("apply: deleting proof", e))?;
        }
        let mut rest = &plan.proofs[..];
        for size in chunk_sizes(plan.proofs.len()) {
            let (chunk, tail) = rest.split_at(size);
            rest = tail;
            let idx = CHUNKS.iter().position(|&c| c == size).expect("chunk size");
            let mut query = sqlx::query(AssertSqlSafe(stmts.upsert_proofs[idx].clone()));
            for p in chunk {
                query = query
                    .bind(p.batch)
                    .bind(p.proof_type)
                    .bind(p.blob_key)
                    .bind(p.size)
                    .bind(p.digest)
                    .bind(p.prover)
                    .bind(p.prover_name)
                    .bind(p.token)
                    .bind(p.leased_at)
                    .bind(p.received_at)
                    .bind(p.prove_ms)
                    .bind(p.inline);
            }
            query.execute(&mut *tx).await.map_err(|e| {
                db_err(
                    &format!(
                        "apply: writing {} proofs (each needs an existing job)",
                        plan.proofs.len()
                    ),
                    e,
                )
            })?;
        }
        tx.commit().await.map_err(|e| db_err("apply: commit", e))
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
             UNION ALL SELECT MAX(token) FROM proofs)",
        )
        .fetch_one(&self.read)
        .await
        .map_err(|e| db_err("max_fencing_token", e))?;
        codec::to_u64(max.unwrap_or(0), "fencing token")
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
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.write)
        .await
        .map_err(|e| db_err("set_meta", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_parsing() {
        assert!(parse_url("sqlite::memory:").unwrap().1);
        assert!(
            !parse_url("sqlite:///tmp/x.db?mode=rwc&synchronous=full")
                .unwrap()
                .1
        );
        assert!(!parse_url("sqlite:x.db").unwrap().1);
        assert!(parse_url("sqlite:x.db?synchronous=off").is_err());
        assert!(parse_url("sqlite://").is_err());
        assert!(parse_url("sqlite:x.db?bogus=1").is_err());
    }
}
