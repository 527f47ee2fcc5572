//! The store on a SQL database: one implementation for SQLite and PostgreSQL, each query
//! written once over a [`Dialect`] that holds what differs between them.
//!
//! The code is generic over `sqlx::Database` (the dialect names it, with its fragments and
//! hooks). Rejected: sqlx's `Any` driver, which converts every value at runtime, has no
//! arrays (Postgres' `UNNEST` of column arrays, the fast way to write a group of rows) and no
//! typed connect options (SQLite's pragmas, WAL and `synchronous`); and one generic function
//! per query over an executor, which needs the same bounds on every function instead of on
//! one `impl`.
//!
//! [`Store::apply`] writes each kind of row (jobs, deleted proofs, proofs) with one statement
//! whatever their number: the rows travel as parameters (a JSON array on SQLite, column
//! arrays on Postgres, see [`Dialect::bind_rows`]), so the statement text never changes and
//! stays prepared. Whether every changed job exists is checked by counting the updated
//! rows, without per-row reads.

use crate::api::{
    Change, CommitRecord, JobCounts, JobFilter, LeaseClaim, LeaseHolder, PausedComponent, Result,
    Store, StoreError, VerifyRecord,
};
use crate::codec::{
    self, BATCH_COLS, JOB_COLS, PROOF_COLS, Plan, RowExt, db_err, decode_batch, decode_job,
    decode_proof, is_unreachable, to_i64,
};
use crate::dialect::{Dialect, Query};
use crate::market::ProofRequests;
use crate::rows::{self, JOB_COLUMNS, KEY_COLUMNS, PROOF_COLUMNS, TYPE_COLUMNS};
use crate::{attempts, commits, legacy};
use async_trait::async_trait;
use proofmill_types::{
    Attempt, Batch, BatchNumber, ChainId, Job, JobKey, JobState, Millis, ProofRecord, ProofType,
    ProverId,
};
use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, Pool, Transaction, Type};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub(crate) struct SqlStore<D: Dialect> {
    write: Pool<D::Db>,
    pub(crate) read: Pool<D::Db>,
    /// Lease renewals only. A connection goes back to its pool through a task spawned on the
    /// runtime that drops it, so on the write pool a renewal could wait for a busy (or
    /// blocked) coordinator runtime to return the single writer; this pool's connection is
    /// opened, used and returned on the renewals' own runtime.
    lease: Pool<D::Db>,
    dialect: D,
    /// [`Store::apply`]'s statements, built once from the dialect's row sources.
    apply_sql: ApplySql,
    endpoint: String,
    /// Lease epoch every write must find current ([`Store::fence_writes`]); 0: unchecked.
    fence: AtomicU64,
}

struct ApplySql {
    update_jobs: String,
    missing_jobs: String,
    delete_proofs: String,
    upsert_proofs: String,
    start_attempts: String,
    end_attempts: String,
}

impl ApplySql {
    fn new<D: Dialect>() -> ApplySql {
        let jobs = D::row_source(JOB_COLUMNS, 1);
        let keys = D::row_source(KEY_COLUMNS, 1);
        let proofs = D::row_source(PROOF_COLUMNS, 1);
        let started = D::row_source(attempts::START_COLUMNS, 1);
        let ended = D::row_source(attempts::END_COLUMNS, 1);
        ApplySql {
            start_attempts: format!(
                "INSERT INTO attempts (token, chain, batch, proof_type, prover, prover_name, \
                 backup, started_at, detail) SELECT v.token, v.chain, v.batch, v.proof_type, v.prover, \
                 v.prover_name, v.backup, v.started_at, '' FROM {started} AS v \
                 WHERE true ON CONFLICT (token) DO NOTHING"
            ),
            end_attempts: format!(
                "UPDATE attempts SET ended_at = v.ended_at, outcome = v.outcome, \
                 detail = v.detail, prove_ms = v.prove_ms FROM {ended} AS v \
                 WHERE attempts.token = v.token AND attempts.ended_at IS NULL"
            ),
            update_jobs: format!(
                "UPDATE jobs SET state = v.state, version = v.version, \
                 failed_attempts = v.failed_attempts, lost_attempts = v.lost_attempts, \
                 lease_prover = v.lease_prover, lease_token = v.lease_token, \
                 leased_at = v.leased_at, lease_deadline = v.lease_deadline, \
                 not_before = v.not_before, last_error = v.last_error, updated_at = v.updated_at \
                 FROM {jobs} AS v WHERE jobs.chain = v.chain AND jobs.batch = v.batch \
                 AND jobs.proof_type = v.proof_type"
            ),
            // Error path only: which of the keys have no job.
            missing_jobs: format!(
                "SELECT v.chain, v.batch, v.proof_type FROM {keys} AS v WHERE NOT EXISTS \
                 (SELECT 1 FROM jobs AS j WHERE j.chain = v.chain AND j.batch = v.batch \
                 AND j.proof_type = v.proof_type) LIMIT 5"
            ),
            delete_proofs: format!(
                "DELETE FROM proofs WHERE (chain, batch, proof_type) IN \
                 (SELECT v.chain, v.batch, v.proof_type FROM {keys} AS v)"
            ),
            // `WHERE true`: SQLite would read `ON CONFLICT` as a join's `ON` otherwise.
            upsert_proofs: format!(
                "INSERT INTO proofs ({PROOF_COLS}) SELECT {PROOF_COLS} FROM {proofs} AS v \
                 WHERE true ON CONFLICT (chain, batch, proof_type) DO UPDATE SET \
                 blob_key = excluded.blob_key, size = excluded.size, digest = excluded.digest, \
                 prover = excluded.prover, prover_name = excluded.prover_name, \
                 token = excluded.token, leased_at = excluded.leased_at, \
                 received_at = excluded.received_at, prove_ms = excluded.prove_ms, \
                 inline_data = excluded.inline_data"
            ),
        }
    }
}

/// The highest fencing token ever written, kept when its lease ends (see migration 0002).
const RAISE_TOKEN_HIGH: &str = "UPDATE token_high SET value = $1 WHERE id = 1 AND value < $1";

/// Operator actions, rare: one statement per prover. A cordon keeps the time it was first set
/// and takes the latest reason.
const CORDON: &str = "INSERT INTO cordons (prover_id, since, reason) VALUES ($1, $2, $3) \
     ON CONFLICT (prover_id) DO UPDATE SET reason = excluded.reason";
const UNCORDON: &str = "DELETE FROM cordons WHERE prover_id = $1";

/// Operator actions too: a pause keeps the time it was first set and takes the latest reason.
const PAUSE: &str = "INSERT INTO controls (component, reason, since) VALUES ($1, $2, $3) \
     ON CONFLICT (component) DO UPDATE SET reason = excluded.reason";
const RESUME: &str = "DELETE FROM controls WHERE component = $1";

const CLEAR_PENDING_VERIFY: &str = "DELETE FROM settlements WHERE state = 'pending'";
const MARK_PENDING_VERIFY: &str = "INSERT INTO settlements \
    (state, first_batch, last_batch, tx_hash, gas_used, recorded_at) \
    VALUES ('pending', $1, $2, '', 0, $3)";
const RECORD_VERIFIED: &str = "INSERT INTO settlements \
    (state, first_batch, last_batch, tx_hash, gas_used, recorded_at) \
    VALUES ('settled', $1, $2, $3, $4, $5) ON CONFLICT (state, first_batch) DO UPDATE SET \
    last_batch = excluded.last_batch, tx_hash = excluded.tx_hash, \
    gas_used = excluded.gas_used, recorded_at = excluded.recorded_at";
const VERIFY_COLS: &str = "first_batch, last_batch, tx_hash, gas_used";

fn decode_verify(row: &impl RowExt) -> Result<VerifyRecord> {
    Ok(VerifyRecord {
        tx_hash: row.text("tx_hash")?,
        first_batch: row.u64("first_batch")?,
        last_batch: row.u64("last_batch")?,
        gas_used: row.u64("gas_used")?,
    })
}

impl<D> SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Row: RowExt,
    for<'a> i64: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> &'a [u8]: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> bool: Encode<'a, D::Db> + Type<D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
{
    pub(crate) async fn open(url: &str) -> Result<Self> {
        let opened = D::open(url).await?;
        let store = SqlStore {
            write: opened.write,
            read: opened.read,
            lease: opened.lease,
            dialect: opened.dialect,
            apply_sql: ApplySql::new::<D>(),
            endpoint: opened.endpoint,
            fence: AtomicU64::new(0),
        };
        store.import_meta_settlements().await?;
        Ok(store)
    }

    /// [`db_err`] naming the database.
    pub(crate) fn db_err(&self, context: &str, e: sqlx::Error) -> StoreError {
        db_err(&format!("{}: {context}", self.endpoint), e)
    }

    /// Begins a write transaction, failing with [`StoreError::Fenced`] unless the lease epoch
    /// this handle writes for is still current (checked inside the transaction, see
    /// [`Dialect::BEGIN_WRITE`] and [`Dialect::LOCK_LEASE_ROW`]).
    pub(crate) async fn begin_write(&self, what: &str) -> Result<Transaction<'static, D::Db>> {
        let mut tx = self
            .write
            .begin_with(D::BEGIN_WRITE)
            .await
            .map_err(|e| self.db_err(&format!("{what}: begin"), e))?;
        let epoch = self.fence.load(Ordering::SeqCst);
        if epoch != 0 {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT epoch FROM coordinator_lease WHERE id = 1{}",
                D::LOCK_LEASE_ROW
            )))
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| self.db_err(&format!("{what}: checking the coordinator lease"), e))?;
            let current = row.map(|r| r.u64("epoch")).transpose()?;
            if current != Some(epoch) {
                return Err(StoreError::Fenced { epoch, current });
            }
        }
        Ok(tx)
    }

    /// Commits a write transaction.
    pub(crate) async fn commit(&self, tx: Transaction<'static, D::Db>, what: &str) -> Result<()> {
        tx.commit()
            .await
            .map_err(|e| self.db_err(&format!("{what}: commit"), e))?;
        self.dialect.committed();
        Ok(())
    }

    async fn read_lease<'e, E>(&self, executor: E) -> Result<Option<LeaseHolder>>
    where
        E: Executor<'e, Database = D::Db>,
    {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT holder, url, epoch, expires_at - {} AS expires_in_ms \
             FROM coordinator_lease WHERE id = 1",
            D::NOW_MS
        )))
        .fetch_optional(executor)
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

    /// The lease row stayed locked past [`Dialect::LEASE_LOCK_TIMEOUT`]: its holder is inside
    /// a write (every write locks the row, the fence) and does not finish it. If the lease
    /// has expired, that holder is hung (or paused): its sessions that hold a lock on the row
    /// are ended, which rolls its write back, so that the next attempt takes the lease.
    /// Returns who holds it meanwhile.
    async fn break_hung_holder(&self) -> Result<Result<u64, LeaseHolder>> {
        let holder = self
            .read_lease(&self.write)
            .await?
            .ok_or_else(|| StoreError::Corrupt("coordinator lease row vanished".into()))?;
        if holder.expires_in_ms <= 0
            && let Some(end) = D::END_LEASE_LOCK_HOLDERS
        {
            sqlx::query(end)
                .execute(&self.write)
                .await
                .map_err(|e| self.db_err("acquire_lease: ending a hung holder's sessions", e))?;
        }
        Ok(Err(holder))
    }

    /// Writes a batch row: new, or (`replace`) new content of an existing one. Returns the
    /// rows written.
    async fn write_batch(
        &self,
        tx: &mut <D::Db as Database>::Connection,
        batch: &Batch,
        required: &[ProofType],
        replace: bool,
    ) -> Result<u64> {
        let sql = if replace {
            "UPDATE batches SET version = $2, input_key = $3, input_digest = $4, \
             input_size = $5, public_values = $6, required = $7, created_at = $8 \
             WHERE number = $1 AND chain = $9"
        } else {
            "INSERT INTO batches (number, version, input_key, input_digest, input_size, \
             public_values, required, created_at, chain) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (chain, number) DO NOTHING"
        };
        let required = codec::encode_required(required);
        let done = sqlx::query(sql)
            .bind(to_i64(batch.number, "batch number")?)
            .bind(batch.version.as_str())
            .bind(batch.input_key.as_str())
            .bind(&batch.input_digest.0[..])
            .bind(to_i64(batch.input_size, "input_size")?)
            .bind(batch.public_values.as_bytes())
            .bind(required.as_str())
            .bind(to_i64(batch.created_at, "created_at")?)
            .bind(to_i64(batch.chain, "chain")?)
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                let what = if replace { "update" } else { "insert" };
                self.db_err(&format!("batch {}: {what}", batch.id()), e)
            })?;
        Ok(D::rows_affected(&done))
    }

    /// One job in `state` (`queued`, or `held`) per proof type of a new (or replaced) batch.
    async fn insert_jobs(
        &self,
        tx: &mut <D::Db as Database>::Connection,
        (chain, number): (i64, i64),
        types: &[ProofType],
        state: JobState,
        version: &str,
        now: i64,
    ) -> sqlx::Result<()> {
        if types.is_empty() {
            return Ok(());
        }
        let types: Vec<&str> = types.iter().map(ProofType::as_str).collect();
        // The state is one of the enum's own names, never input.
        let sql = format!(
            "INSERT INTO jobs (chain, batch, proof_type, state, version, failed_attempts, \
             lost_attempts, not_before, updated_at) \
             SELECT $4, $1, v.proof_type, '{}', $2, 0, 0, 0, $3 FROM {} AS v",
            state.as_str(),
            D::row_source(TYPE_COLUMNS, 5)
        );
        let query = sqlx::query(AssertSqlSafe(sql))
            .bind(number)
            .bind(version)
            .bind(now)
            .bind(chain);
        D::bind_rows(query, &rows::type_rows(&types))
            .execute(&mut *tx)
            .await?;
        Ok(())
    }

    /// Checks the numbers of a batch before its transaction starts: its (chain, number)
    /// and `now`.
    fn batch_numbers(batch: &Batch, now: Millis) -> Result<((i64, i64), i64)> {
        to_i64(batch.input_size, "input_size")?;
        to_i64(batch.created_at, "created_at")?;
        let id = (
            to_i64(batch.chain, "chain")?,
            to_i64(batch.number, "batch number")?,
        );
        Ok((id, to_i64(now, "now")?))
    }

    /// The row of `table` (jobs or proofs) with this key, if any.
    async fn row_by_key(
        &self,
        columns: &str,
        table: &str,
        key: &JobKey,
    ) -> Result<Option<<D::Db as Database>::Row>> {
        let (Ok(chain), Ok(batch)) = (i64::try_from(key.chain), i64::try_from(key.batch)) else {
            return Ok(None);
        };
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {columns} FROM {table} WHERE chain = $3 AND batch = $1 AND proof_type = $2"
        )))
        .bind(batch)
        .bind(key.proof_type.as_str())
        .bind(chain)
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err(&format!("reading {table}"), e))
    }

    async fn fetch_all_jobs(&self, query: Query<'_, D::Db>, what: &str) -> Result<Vec<Job>> {
        let rows = query
            .fetch_all(&self.read)
            .await
            .map_err(|e| self.db_err(what, e))?;
        rows.iter().map(decode_job).collect()
    }

    async fn fetch_verify(
        &self,
        query: Query<'_, D::Db>,
        what: &str,
    ) -> Result<Option<VerifyRecord>> {
        let row = query
            .fetch_optional(&self.read)
            .await
            .map_err(|e| self.db_err(what, e))?;
        row.as_ref().map(decode_verify).transpose()
    }

    /// Moves the settlement records a coordinator kept in the meta table before migration
    /// 0008 into their table, in one transaction, so that an upgraded store keeps its
    /// history (see [`crate::legacy`]). Nothing to do once moved.
    async fn import_meta_settlements(&self) -> Result<()> {
        let what = "moving settlement records out of the meta table";
        let rows = sqlx::query(legacy::SELECT_KEYS)
            .fetch_all(&self.write)
            .await
            .map_err(|e| self.db_err(what, e))?;
        if rows.is_empty() {
            return Ok(());
        }
        let entries = rows
            .iter()
            .map(|r| Ok((r.text("key")?, r.text("value")?)))
            .collect::<Result<Vec<_>>>()?;
        let changes = legacy::changes(&entries);
        let plan = Plan::new(&changes)?;
        let mut tx = self.begin_write(what).await?;
        self.write_settlements(&mut tx, &plan).await?;
        sqlx::query(legacy::DELETE_KEYS)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(what, e))?;
        self.commit(tx, what).await
    }

    /// The attempt writes of an `apply`: starts first, so that an attempt begun and ended in
    /// one call is ended.
    async fn write_attempts(
        &self,
        tx: &mut <D::Db as Database>::Connection,
        plan: &attempts::AttemptPlan<'_>,
    ) -> Result<()> {
        if !plan.started.is_empty() {
            let query = sqlx::query(AssertSqlSafe(self.apply_sql.start_attempts.as_str()));
            D::bind_rows(query, &attempts::start_rows(&plan.started))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err("apply: recording attempts", e))?;
        }
        if !plan.ended.is_empty() {
            let query = sqlx::query(AssertSqlSafe(self.apply_sql.end_attempts.as_str()));
            D::bind_rows(query, &attempts::end_rows(&plan.ended))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err("apply: ending attempts", e))?;
        }
        Ok(())
    }

    /// The settlement writes of an `apply` (see [`Change::PendingVerify`]).
    async fn write_settlements(
        &self,
        tx: &mut <D::Db as Database>::Connection,
        plan: &Plan<'_>,
    ) -> Result<()> {
        if let Some(pending) = plan.pending {
            sqlx::query(CLEAR_PENDING_VERIFY)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err("apply: clearing the pending settlement", e))?;
            if let Some((first, last, at)) = pending {
                sqlx::query(MARK_PENDING_VERIFY)
                    .bind(first)
                    .bind(last)
                    .bind(at)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.db_err("apply: marking a settlement pending", e))?;
            }
        }
        for v in &plan.verified {
            sqlx::query(RECORD_VERIFIED)
                .bind(v.first_batch)
                .bind(v.last_batch)
                .bind(v.tx_hash)
                .bind(v.gas_used)
                .bind(v.at)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err("apply: recording a settlement", e))?;
        }
        Ok(())
    }
}

#[async_trait]
impl<D> Store for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Row: RowExt,
    for<'a> i64: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> &'a [u8]: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> bool: Encode<'a, D::Db> + Type<D::Db>,
    // The proof manager's table (`proof_requests`) has nullable columns.
    for<'a> Option<i64>: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> Option<&'a str>: Encode<'a, D::Db> + Type<D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
{
    async fn insert_batch_holding(
        &self,
        batch: &Batch,
        held: &[ProofType],
        now: Millis,
    ) -> Result<bool> {
        let (id, now) = Self::batch_numbers(batch, now)?;
        let required = codec::unique_types(&batch.required);
        let (held, queued): (Vec<ProofType>, Vec<ProofType>) =
            required.iter().cloned().partition(|t| held.contains(t));
        let name = batch.id();
        let ctx = |what: &str| format!("insert_batch {name}: {what}");
        let mut tx = self.begin_write(&format!("insert_batch {name}")).await?;
        let inserted = self.write_batch(&mut tx, batch, &required, false).await?;
        if inserted == 0 {
            let row = sqlx::query(AssertSqlSafe(format!(
                "SELECT {BATCH_COLS} FROM batches WHERE chain = $1 AND number = $2"
            )))
            .bind(id.0)
            .bind(id.1)
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
        for (types, state) in [(&queued, JobState::Queued), (&held, JobState::Held)] {
            self.insert_jobs(&mut tx, id, types, state, &batch.version, now)
                .await
                .map_err(|e| self.db_err(&ctx("insert jobs"), e))?;
        }
        self.commit(tx, &ctx("insert")).await?;
        Ok(true)
    }

    async fn batch(&self, chain: ChainId, number: BatchNumber) -> Result<Option<Batch>> {
        let (Ok(c), Ok(n)) = (i64::try_from(chain), i64::try_from(number)) else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {BATCH_COLS} FROM batches WHERE chain = $1 AND number = $2"
        )))
        .bind(c)
        .bind(n)
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err("reading batch", e))?;
        row.as_ref().map(decode_batch).transpose()
    }

    async fn last_sealed_batch(&self, chain: ChainId) -> Result<Option<BatchNumber>> {
        let Ok(chain) = i64::try_from(chain) else {
            return Ok(None);
        };
        let row = sqlx::query("SELECT MAX(number) AS n FROM batches WHERE chain = $1")
            .bind(chain)
            .fetch_one(&self.read)
            .await
            .map_err(|e| self.db_err("last_sealed_batch", e))?;
        row.opt_u64("n")
    }

    async fn last_proven_batch(&self, chain: ChainId) -> Result<Option<BatchNumber>> {
        let ctx = "last_proven_batch";
        let Ok(chain) = i64::try_from(chain) else {
            return Ok(None);
        };
        let mut tx = self
            .read
            .begin_with(D::BEGIN_SNAPSHOT)
            .await
            .map_err(|e| self.db_err(ctx, e))?;
        let row = sqlx::query(
            "SELECT (SELECT MIN(number) FROM batches WHERE chain = $1) AS first, \
             (SELECT MAX(number) FROM batches WHERE chain = $1) AS last, \
             (SELECT MIN(b) FROM (\
               SELECT MIN(batch) AS b FROM jobs WHERE state = 'queued' AND chain = $1 \
               UNION ALL SELECT MIN(batch) FROM jobs WHERE state = 'leased' AND chain = $1 \
               UNION ALL SELECT MIN(batch) FROM jobs WHERE state = 'held' AND chain = $1 \
               UNION ALL SELECT MIN(batch) FROM jobs WHERE state = 'failed' AND chain = $1 \
               UNION ALL SELECT MIN(batch) FROM jobs \
               WHERE state = 'cancelled' AND chain = $1) AS o) AS open",
        )
        .bind(chain)
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
        let count = sqlx::query(
            "SELECT COUNT(*) AS n FROM batches WHERE chain = $3 AND number BETWEEN $1 AND $2",
        )
        .bind(lo)
        .bind(hi)
        .bind(chain)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err(ctx, e))?
        .i64("n")?;
        if count == hi - lo + 1 {
            return Ok(Some(candidate));
        }
        // A gap below the candidate: the answer is the end of the first gap-free run.
        let end = sqlx::query(
            "SELECT number FROM batches AS b WHERE chain = $3 AND number BETWEEN $1 AND $2 \
             AND NOT EXISTS (SELECT 1 FROM batches AS n \
             WHERE n.chain = b.chain AND n.number = b.number + 1) ORDER BY number LIMIT 1",
        )
        .bind(lo)
        .bind(hi)
        .bind(chain)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| self.db_err(ctx, e))?;
        Ok(Some(end.u64("number")?))
    }

    async fn open_jobs(&self) -> Result<Vec<Job>> {
        let sql = format!(
            "SELECT {JOB_COLS} FROM jobs WHERE state IN ('queued', 'leased') \
             ORDER BY chain, batch, proof_type{}",
            D::BYTE_ORDER
        );
        self.fetch_all_jobs(sqlx::query(AssertSqlSafe(sql)), "open_jobs")
            .await
    }

    async fn job(&self, key: &JobKey) -> Result<Option<Job>> {
        let row = self.row_by_key(JOB_COLS, "jobs", key).await?;
        row.as_ref().map(decode_job).transpose()
    }

    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>> {
        let order = format!("chain, batch, proof_type{}", D::BYTE_ORDER);
        let (sql, args) = codec::jobs_query(filter, |i| format!("${i}"), &order)?;
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for arg in &args {
            query = match arg {
                codec::Arg::Int(v) => query.bind(*v),
                codec::Arg::Text(s) => query.bind(s.as_str()),
            };
        }
        self.fetch_all_jobs(query, "listing jobs").await
    }

    async fn job_counts(&self, chain: Option<ChainId>) -> Result<JobCounts> {
        let rows = match chain.map(i64::try_from) {
            None => sqlx::query(
                "SELECT proof_type, state, COUNT(*) AS n FROM jobs GROUP BY proof_type, state",
            ),
            Some(Err(_)) => return Ok(JobCounts::new()),
            Some(Ok(chain)) => sqlx::query(
                "SELECT proof_type, state, COUNT(*) AS n FROM jobs WHERE chain = $1 \
                 GROUP BY proof_type, state",
            )
            .bind(chain),
        }
        .fetch_all(&self.read)
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
            let query = sqlx::query(AssertSqlSafe(self.apply_sql.update_jobs.as_str()));
            let written = D::bind_rows(query, &rows::job_rows(&plan.jobs))
                .execute(&mut *tx)
                .await;
            let updated = written.as_ref().ok().map(D::rows_affected);
            if updated != Some(plan.jobs.len() as u64) {
                // A missing job explains any failure, so look for one first (where the
                // failure did not end the transaction).
                let keys: Vec<(i64, i64, &str)> = plan
                    .jobs
                    .iter()
                    .map(|j| (j.chain, j.batch, j.proof_type))
                    .collect();
                let query = sqlx::query(AssertSqlSafe(self.apply_sql.missing_jobs.as_str()));
                let missing = D::bind_rows(query, &rows::key_rows(&keys))
                    .fetch_all(&mut *tx)
                    .await;
                if let Ok(missing) = &missing
                    && !missing.is_empty()
                {
                    return Err(codec::missing_jobs_error(missing));
                }
                let what = format!("apply: writing {} jobs", plan.jobs.len());
                return Err(match written {
                    Err(e) => self.db_err(&what, e),
                    Ok(_) => StoreError::Database(format!("{what}: {updated:?} jobs updated")),
                });
            }
        }
        if !plan.deletes.is_empty() {
            let query = sqlx::query(AssertSqlSafe(self.apply_sql.delete_proofs.as_str()));
            D::bind_rows(query, &rows::key_rows(&plan.deletes))
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err("apply: deleting proofs", e))?;
        }
        if !plan.proofs.is_empty() {
            let query = sqlx::query(AssertSqlSafe(self.apply_sql.upsert_proofs.as_str()));
            D::bind_rows(query, &rows::proof_rows(&plan.proofs))
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    let what = format!(
                        "apply: writing {} proofs (each needs an existing job)",
                        plan.proofs.len()
                    );
                    self.db_err(&what, e)
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
        for &(component, paused, since, reason) in &plan.controls {
            let write = if paused {
                sqlx::query(PAUSE).bind(component).bind(reason).bind(since)
            } else {
                sqlx::query(RESUME).bind(component)
            };
            write
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err("apply: writing a control", e))?;
        }
        self.write_settlements(&mut tx, &plan).await?;
        self.write_attempts(&mut tx, &plan.attempts).await?;
        self.commit(tx, "apply").await
    }

    async fn proof(&self, key: &JobKey) -> Result<Option<ProofRecord>> {
        let row = self.row_by_key(PROOF_COLS, "proofs", key).await?;
        row.as_ref().map(decode_proof).transpose()
    }

    async fn max_fencing_token(&self) -> Result<u64> {
        let row = sqlx::query(
            "SELECT MAX(t) AS t FROM (SELECT MAX(lease_token) AS t FROM jobs \
             UNION ALL SELECT MAX(token) FROM proofs UNION ALL SELECT value FROM token_high) AS m",
        )
        .fetch_one(&self.read)
        .await
        .map_err(|e| self.db_err("max_fencing_token", e))?;
        Ok(row.opt_u64("t")?.unwrap_or(0))
    }

    async fn attempts(
        &self,
        chain: ChainId,
        batch: BatchNumber,
        proof_type: Option<&ProofType>,
        limit: u32,
    ) -> Result<Vec<Attempt>> {
        let (Ok(chain), Ok(batch)) = (i64::try_from(chain), i64::try_from(batch)) else {
            return Ok(Vec::new());
        };
        let cols = attempts::ATTEMPT_COLS;
        let rows = match proof_type {
            None => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {cols} FROM attempts WHERE chain = $3 AND batch = $1 \
                     ORDER BY token LIMIT $2"
                )))
                .bind(batch)
                .bind(i64::from(limit))
                .bind(chain)
                .fetch_all(&self.read)
                .await
            }
            Some(t) => {
                sqlx::query(AssertSqlSafe(format!(
                    "SELECT {cols} FROM attempts WHERE chain = $4 AND batch = $1 \
                     AND proof_type = $2 ORDER BY token LIMIT $3"
                )))
                .bind(batch)
                .bind(t.as_str())
                .bind(i64::from(limit))
                .bind(chain)
                .fetch_all(&self.read)
                .await
            }
        }
        .map_err(|e| self.db_err("reading attempts", e))?;
        rows.iter().map(attempts::decode_attempt).collect()
    }

    async fn prune_attempts(&self, before: Millis, limit: u32) -> Result<u64> {
        let before = i64::try_from(before).unwrap_or(i64::MAX);
        let what = "pruning attempts";
        let mut tx = self.begin_write(what).await?;
        let done = sqlx::query(
            "DELETE FROM attempts WHERE token IN (SELECT token FROM attempts \
             WHERE ended_at IS NOT NULL AND ended_at < $1 ORDER BY ended_at LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err(what, e))?;
        let deleted = D::rows_affected(&done);
        self.commit(tx, what).await?;
        Ok(deleted)
    }

    async fn cordoned_provers(&self) -> Result<Vec<(ProverId, String)>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT prover_id, reason FROM cordons ORDER BY prover_id{}",
            D::BYTE_ORDER
        )))
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err("cordoned_provers", e))?;
        rows.iter()
            .map(|r| Ok((ProverId(r.text("prover_id")?), r.text("reason")?)))
            .collect()
    }

    async fn paused_components(&self) -> Result<Vec<PausedComponent>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT component, reason, since FROM controls ORDER BY component{}",
            D::BYTE_ORDER
        )))
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err("paused_components", e))?;
        rows.iter()
            .map(|r| {
                Ok(PausedComponent {
                    component: r.text("component")?,
                    reason: r.text("reason")?,
                    since: r.u64("since")?,
                })
            })
            .collect()
    }

    async fn verify_record(&self, batch: BatchNumber) -> Result<Option<VerifyRecord>> {
        let Ok(batch) = i64::try_from(batch) else {
            return Ok(None);
        };
        // The settlement starting last at or below `batch`, if it reaches it (settled
        // ranges do not overlap).
        let query = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERIFY_COLS} FROM (SELECT {VERIFY_COLS} FROM settlements \
             WHERE state = 'settled' AND first_batch <= $1 ORDER BY first_batch DESC LIMIT 1) \
             AS s WHERE last_batch >= $1"
        )))
        .bind(batch);
        self.fetch_verify(query, "verify_record").await
    }

    async fn last_verify_record(&self) -> Result<Option<VerifyRecord>> {
        let query = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERIFY_COLS} FROM settlements WHERE state = 'settled' \
             ORDER BY first_batch DESC LIMIT 1"
        )));
        self.fetch_verify(query, "last_verify_record").await
    }

    async fn record_commit(&self, record: &CommitRecord) -> Result<()> {
        let what = "record_commit";
        let row = commits::Row::new(record)?;
        let mut tx = self.begin_write(what).await?;
        sqlx::query(commits::UPSERT)
            .bind(row.batch)
            .bind(row.tx_hash)
            .bind(row.gas_used)
            .bind(row.block)
            .bind(row.recorded_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(what, e))?;
        self.commit(tx, what).await
    }

    async fn commit_record(&self, batch: BatchNumber) -> Result<Option<CommitRecord>> {
        let Ok(batch) = i64::try_from(batch) else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM commit_records WHERE batch = $1",
            commits::COLS
        )))
        .bind(batch)
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err("commit_record", e))?;
        row.as_ref().map(commits::decode).transpose()
    }

    async fn commit_records(
        &self,
        first: BatchNumber,
        last: BatchNumber,
        limit: u32,
    ) -> Result<Vec<CommitRecord>> {
        let first = i64::try_from(first).unwrap_or(i64::MAX);
        let last = i64::try_from(last).unwrap_or(i64::MAX);
        let limit = if limit == 0 {
            i64::MAX
        } else {
            i64::from(limit)
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM commit_records WHERE batch >= $1 AND batch <= $2 \
             ORDER BY batch LIMIT $3",
            commits::COLS
        )))
        .bind(first)
        .bind(last)
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err("commit_records", e))?;
        rows.iter().map(commits::decode).collect()
    }

    async fn last_commit_record(&self) -> Result<Option<CommitRecord>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {} FROM commit_records ORDER BY batch DESC LIMIT 1",
            commits::COLS
        )))
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err("last_commit_record", e))?;
        row.as_ref().map(commits::decode).transpose()
    }

    async fn pending_verify(&self) -> Result<Option<(BatchNumber, BatchNumber)>> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERIFY_COLS} FROM settlements WHERE state = 'pending'"
        )))
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err("pending_verify", e))?;
        row.map(|r| Ok((r.u64("first_batch")?, r.u64("last_batch")?)))
            .transpose()
    }

    async fn get_meta(&self, key: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(|e| self.db_err("get_meta", e))?;
        row.map(|r| r.text("value")).transpose()
    }

    async fn set_meta(&self, key: &str, value: &str) -> Result<()> {
        let mut tx = self.begin_write("set_meta").await?;
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&mut *tx)
        .await
        .map_err(|e| self.db_err("set_meta", e))?;
        self.commit(tx, "set_meta").await
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
        self.commit(tx, "init_meta").await?;
        row.text("value")
    }

    async fn acquire_lease(&self, claim: &LeaseClaim) -> Result<Result<u64, LeaseHolder>> {
        let ttl = to_i64(claim.ttl_ms, "lease ttl")?;
        let mut tx = self
            .write
            .begin_with(D::BEGIN_WRITE)
            .await
            .map_err(|e| self.db_err("acquire_lease: begin", e))?;
        // A holder hung inside a write keeps its lock on the row (the fence): do not wait on
        // it for good, see below.
        if let Some(timeout) = D::LEASE_LOCK_TIMEOUT {
            sqlx::query(timeout)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err("acquire_lease: lock timeout", e))?;
        }
        let now = D::NOW_MS;
        let taken = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO coordinator_lease (id, epoch, holder, url, expires_at) \
             VALUES (1, 1, $1, $2, {now} + $3) \
             ON CONFLICT (id) DO UPDATE SET epoch = coordinator_lease.epoch + 1, \
             holder = excluded.holder, url = excluded.url, expires_at = excluded.expires_at \
             WHERE coordinator_lease.expires_at <= {now} \
             OR ($4 AND coordinator_lease.url = excluded.url) RETURNING epoch"
        )))
        .bind(claim.holder.as_str())
        .bind(claim.url.as_str())
        .bind(ttl)
        .bind(claim.reclaim)
        .fetch_optional(&mut *tx)
        .await;
        let taken = match taken {
            Err(e) if D::is_lock_timeout(&e) => {
                drop(tx);
                return self.break_hung_holder().await;
            }
            other => other.map_err(|e| self.db_err("acquire_lease", e))?,
        };
        let outcome = match taken {
            Some(row) => Ok(row.u64("epoch")?),
            None => Err(self
                .read_lease(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::Corrupt("coordinator lease row vanished".into()))?),
        };
        self.commit(tx, "acquire_lease").await?;
        Ok(outcome)
    }

    async fn renew_lease(&self, epoch: u64, ttl_ms: u64) -> Result<bool> {
        let renewed = sqlx::query(AssertSqlSafe(format!(
            "UPDATE coordinator_lease SET expires_at = {} + $2 WHERE id = 1 AND epoch = $1",
            D::NOW_MS
        )))
        .bind(to_i64(epoch, "lease epoch")?)
        .bind(to_i64(ttl_ms, "lease ttl")?)
        .execute(&self.lease)
        .await
        .map_err(|e| self.db_err("renew_lease", e))?;
        self.dialect.committed();
        Ok(D::rows_affected(&renewed) == 1)
    }

    async fn release_lease(&self, epoch: u64) -> Result<()> {
        sqlx::query("UPDATE coordinator_lease SET expires_at = 0 WHERE id = 1 AND epoch = $1")
            .bind(to_i64(epoch, "lease epoch")?)
            .execute(&self.write)
            .await
            .map_err(|e| self.db_err("release_lease", e))?;
        self.dialect.committed();
        Ok(())
    }

    async fn lease_holder(&self) -> Result<Option<LeaseHolder>> {
        self.read_lease(&self.read).await
    }

    fn fence_writes(&self, epoch: u64) {
        self.fence.store(epoch, Ordering::SeqCst);
    }

    async fn replace_batch(&self, batch: &Batch, now: Millis) -> Result<()> {
        let (id, now) = Self::batch_numbers(batch, now)?;
        let required = codec::unique_types(&batch.required);
        let name = batch.id();
        let ctx = |what: &str| format!("replace_batch {name}: {what}");
        let mut tx = self.begin_write(&format!("replace_batch {name}")).await?;
        // The batch row locked first: a concurrent replace of the same batch waits here.
        let counts = sqlx::query(AssertSqlSafe(format!(
            "SELECT (SELECT COUNT(*) FROM jobs WHERE chain = b.chain AND batch = b.number) \
               AS total, \
             (SELECT COUNT(*) FROM jobs WHERE chain = b.chain AND batch = b.number \
               AND state IN ('queued', 'leased')) AS open, \
             (SELECT COUNT(*) FROM jobs WHERE chain = b.chain AND batch = b.number \
               AND state = 'proven') AS proven \
             FROM batches AS b WHERE b.chain = $2 AND b.number = $1{}",
            D::LOCK_ROW
        )))
        .bind(id.1)
        .bind(id.0)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| self.db_err(&ctx("reading jobs"), e))?;
        let counts = counts
            .map(|r| Ok((r.i64("total")?, r.i64("open")?, r.i64("proven")?)))
            .transpose()?;
        codec::replaceable(batch.number, counts)?;
        for sql in [
            "UPDATE token_high SET value = (SELECT MAX(lease_token) FROM jobs \
               WHERE chain = $2 AND batch = $1) \
             WHERE id = 1 AND value < (SELECT MAX(lease_token) FROM jobs \
               WHERE chain = $2 AND batch = $1)",
            "DELETE FROM proofs WHERE chain = $2 AND batch = $1",
            "DELETE FROM jobs WHERE chain = $2 AND batch = $1",
        ] {
            sqlx::query(sql)
                .bind(id.1)
                .bind(id.0)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(&ctx("clearing jobs"), e))?;
        }
        self.write_batch(&mut tx, batch, &required, true).await?;
        self.insert_jobs(
            &mut tx,
            id,
            &required,
            JobState::Queued,
            &batch.version,
            now,
        )
        .await
        .map_err(|e| self.db_err(&ctx("insert jobs"), e))?;
        self.commit(tx, &ctx("replace")).await
    }

    async fn batch_gaps(
        &self,
        chain: ChainId,
        from: BatchNumber,
        limit: u32,
    ) -> Result<Vec<(BatchNumber, BatchNumber)>> {
        let from = i64::try_from(from).unwrap_or(i64::MAX);
        let Ok(chain) = i64::try_from(chain) else {
            return Ok(Vec::new());
        };
        // Each stored batch (from `from` up) whose successor is not stored starts a gap
        // (which ends before the next stored batch).
        let rows = sqlx::query(
            "SELECT b.number + 1 AS first, \
             (SELECT MIN(n.number) FROM batches AS n \
               WHERE n.chain = b.chain AND n.number > b.number) - 1 AS last \
             FROM batches AS b WHERE b.chain = $3 AND b.number >= $1 \
             AND b.number < (SELECT MAX(number) FROM batches WHERE chain = $3) \
             AND NOT EXISTS (SELECT 1 FROM batches AS n \
               WHERE n.chain = b.chain AND n.number = b.number + 1) \
             ORDER BY b.number LIMIT $2",
        )
        .bind(from)
        .bind(i64::from(limit))
        .bind(chain)
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err("batch_gaps", e))?;
        let rows = rows
            .iter()
            .map(|r| Ok((r.i64("first")?, r.i64("last")?)))
            .collect::<Result<Vec<_>>>()?;
        codec::gap_ranges(rows)
    }

    fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    fn proof_requests(self: Arc<Self>) -> Option<Arc<dyn ProofRequests>> {
        Some(self)
    }

    /// `SELECT 1` within [`Dialect::PROBE_TIMEOUT`]; if that gets no answer, the dialect
    /// says why (Postgres: a direct connection attempt; a busy pool on a server that accepts
    /// connections counts as up).
    async fn probe(&self) -> Result<()> {
        let query = sqlx::query("SELECT 1").execute(&self.read);
        let error = match tokio::time::timeout(D::PROBE_TIMEOUT, query).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if !is_unreachable(&e) => return Err(self.db_err("probe", e)),
            Ok(Err(e)) => Some(e),
            Err(_) => None,
        };
        match self.dialect.why_unreachable(error).await {
            None => Ok(()),
            Some(cause) => Err(StoreError::Unavailable(format!(
                "{}: {cause}",
                self.endpoint
            ))),
        }
    }
}
