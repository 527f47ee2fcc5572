//! Conversions between domain types and SQL column values, shared by both dialects.

use crate::api::{Change, Result, StoreError, VerifyRecord};
use crate::attempts::AttemptPlan;
use proofmill_types::{
    Batch, BatchNumber, Digest, FencingToken, Job, JobKey, JobState, Lease, Millis, ProofRecord,
    ProofType, ProverId, PublicValues,
};
use std::collections::HashMap;

/// Columns of `jobs`, in the order [`decode_job`] expects (by name, so order is cosmetic).
pub(crate) const JOB_COLS: &str = "chain, batch, proof_type, state, version, failed_attempts, \
    lost_attempts, lease_prover, lease_token, leased_at, lease_deadline, not_before, \
    last_error, updated_at";
pub(crate) const BATCH_COLS: &str = "chain, number, version, input_key, input_digest, input_size, \
    public_values, required, created_at";
pub(crate) const PROOF_COLS: &str = "chain, batch, proof_type, blob_key, size, digest, prover, \
    prover_name, token, leased_at, received_at, prove_ms, inline_data";

/// u64 → BIGINT. Values above `i64::MAX` are rejected rather than wrapped.
pub(crate) fn to_i64(value: u64, what: &str) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        StoreError::Unstorable(format!(
            "{what} = {value} is larger than the largest storable value {} (i64::MAX)",
            i64::MAX
        ))
    })
}

pub(crate) fn to_u64(value: i64, what: &str) -> Result<u64> {
    u64::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} is negative: {value}")))
}

pub(crate) fn to_u32(value: i64, what: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("{what} out of range: {value}")))
}

pub(crate) fn to_digest(bytes: &[u8], what: &str) -> Result<Digest> {
    Digest::from_slice(bytes).ok_or_else(|| {
        StoreError::Corrupt(format!("{what} has {} bytes, expected 32", bytes.len()))
    })
}

pub(crate) fn to_proof_type(s: String) -> Result<ProofType> {
    ProofType::new(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn to_state(s: &str) -> Result<JobState> {
    JobState::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown job state {s:?}")))
}

pub(crate) fn encode_required(required: &[ProofType]) -> String {
    let names: Vec<&str> = required.iter().map(ProofType::as_str).collect();
    names.join(",")
}

pub(crate) fn decode_required(s: &str) -> Result<Vec<ProofType>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',').map(|p| to_proof_type(p.to_owned())).collect()
}

/// A database error with what was being done; one that means the database could not be
/// reached is [`StoreError::Unavailable`].
pub(crate) fn db_err(context: &str, e: sqlx::Error) -> StoreError {
    if is_unreachable(&e) {
        StoreError::Unavailable(format!("{context}: {e}"))
    } else {
        StoreError::Database(format!("{context}: {e}"))
    }
}

/// The connection failed or none could be had, as opposed to the database refusing the work.
pub(crate) fn is_unreachable(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed
    )
}

/// Typed column access with decode failures mapped to [`StoreError::Corrupt`].
pub(crate) trait RowExt {
    fn i64(&self, col: &str) -> Result<i64>;
    fn opt_i64(&self, col: &str) -> Result<Option<i64>>;
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn blob(&self, col: &str) -> Result<Vec<u8>>;
    fn opt_blob(&self, col: &str) -> Result<Option<Vec<u8>>>;

    fn u64(&self, col: &str) -> Result<u64> {
        to_u64(self.i64(col)?, col)
    }
    fn opt_u64(&self, col: &str) -> Result<Option<u64>> {
        self.opt_i64(col)?.map(|v| to_u64(v, col)).transpose()
    }
    fn digest(&self, col: &str) -> Result<Digest> {
        to_digest(&self.blob(col)?, col)
    }
}

macro_rules! impl_row_ext {
    ($row:ty) => {
        impl RowExt for $row {
            fn i64(&self, col: &str) -> Result<i64> {
                get(self, col)
            }
            fn opt_i64(&self, col: &str) -> Result<Option<i64>> {
                get(self, col)
            }
            fn text(&self, col: &str) -> Result<String> {
                get(self, col)
            }
            fn opt_text(&self, col: &str) -> Result<Option<String>> {
                get(self, col)
            }
            fn blob(&self, col: &str) -> Result<Vec<u8>> {
                get(self, col)
            }
            fn opt_blob(&self, col: &str) -> Result<Option<Vec<u8>>> {
                get(self, col)
            }
        }
    };
}
impl_row_ext!(sqlx::sqlite::SqliteRow);
impl_row_ext!(sqlx::postgres::PgRow);

fn get<'r, R, T>(row: &'r R, col: &str) -> Result<T>
where
    R: sqlx::Row,
    T: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    for<'a> &'a str: sqlx::ColumnIndex<R>,
{
    row.try_get(col)
        .map_err(|e| StoreError::Corrupt(format!("column {col}: {e}")))
}

/// A job's key from its `chain`, `batch` and `proof_type` columns.
pub(crate) fn decode_key(row: &impl RowExt) -> Result<JobKey> {
    Ok(JobKey::new(
        row.u64("chain")?,
        row.u64("batch")?,
        to_proof_type(row.text("proof_type")?)?,
    ))
}

pub(crate) fn decode_batch(row: &impl RowExt) -> Result<Batch> {
    Ok(Batch {
        chain: row.u64("chain")?,
        number: row.u64("number")?,
        version: row.text("version")?,
        input_key: row.text("input_key")?,
        input_digest: row.digest("input_digest")?,
        input_size: row.u64("input_size")?,
        public_values: PublicValues::new(row.blob("public_values")?),
        required: decode_required(&row.text("required")?)?,
        created_at: row.u64("created_at")?,
    })
}

pub(crate) fn decode_job(row: &impl RowExt) -> Result<Job> {
    let key = decode_key(row)?;
    let lease = match (
        row.opt_text("lease_prover")?,
        row.opt_u64("lease_token")?,
        row.opt_u64("leased_at")?,
        row.opt_u64("lease_deadline")?,
    ) {
        (None, None, None, None) => None,
        (Some(prover), Some(token), Some(leased_at), Some(deadline)) => Some(Lease {
            prover: ProverId(prover),
            token: FencingToken(token),
            leased_at,
            deadline,
        }),
        _ => {
            return Err(StoreError::Corrupt(format!(
                "job {key}: lease columns are partially null"
            )));
        }
    };
    Ok(Job {
        state: to_state(&row.text("state")?)?,
        version: row.text("version")?,
        failed_attempts: to_u32(row.i64("failed_attempts")?, "failed_attempts")?,
        lost_attempts: to_u32(row.i64("lost_attempts")?, "lost_attempts")?,
        lease,
        not_before: row.u64("not_before")?,
        last_error: row.opt_text("last_error")?,
        updated_at: row.u64("updated_at")?,
        key,
    })
}

pub(crate) fn decode_proof(row: &impl RowExt) -> Result<ProofRecord> {
    Ok(ProofRecord {
        key: decode_key(row)?,
        blob_key: row.text("blob_key")?,
        size: row.u64("size")?,
        digest: row.digest("digest")?,
        prover: ProverId(row.text("prover")?),
        prover_name: row.text("prover_name")?,
        token: FencingToken(row.u64("token")?),
        leased_at: row.u64("leased_at")?,
        received_at: row.u64("received_at")?,
        prove_ms: row.u64("prove_ms")?,
        inline: row.opt_blob("inline_data")?,
    })
}

/// A job row as bound to SQL (u64s checked and converted).
pub(crate) struct JobRow<'a> {
    pub chain: i64,
    pub batch: i64,
    pub proof_type: &'a str,
    pub state: &'static str,
    pub version: &'a str,
    pub failed_attempts: i64,
    pub lost_attempts: i64,
    pub lease_prover: Option<&'a str>,
    pub lease_token: Option<i64>,
    pub leased_at: Option<i64>,
    pub lease_deadline: Option<i64>,
    pub not_before: i64,
    pub last_error: Option<&'a str>,
    pub updated_at: i64,
}

impl<'a> JobRow<'a> {
    pub fn new(job: &'a Job) -> Result<Self> {
        let lease = job.lease.as_ref();
        Ok(JobRow {
            chain: to_i64(job.key.chain, "job chain")?,
            batch: to_i64(job.key.batch, "job batch")?,
            proof_type: job.key.proof_type.as_str(),
            state: job.state.as_str(),
            version: text(&job.version, "job version")?,
            failed_attempts: i64::from(job.failed_attempts),
            lost_attempts: i64::from(job.lost_attempts),
            lease_prover: lease
                .map(|l| text(&l.prover.0, "lease prover"))
                .transpose()?,
            lease_token: lease
                .map(|l| to_i64(l.token.0, "lease token"))
                .transpose()?,
            leased_at: lease
                .map(|l| to_i64(l.leased_at, "leased_at"))
                .transpose()?,
            lease_deadline: lease
                .map(|l| to_i64(l.deadline, "lease deadline"))
                .transpose()?,
            not_before: to_i64(job.not_before, "not_before")?,
            last_error: job
                .last_error
                .as_deref()
                .map(|e| text(e, "last_error"))
                .transpose()?,
            updated_at: to_i64(job.updated_at, "updated_at")?,
        })
    }
}

/// Text as bound to SQL. PostgreSQL text cannot hold NUL; SQLite refuses it too, so that
/// both stores take the same values.
pub(crate) fn text<'a>(value: &'a str, what: &str) -> Result<&'a str> {
    if value.contains('\0') {
        return Err(StoreError::Unstorable(format!(
            "{what} contains a NUL character"
        )));
    }
    Ok(value)
}

/// A proof row as bound to SQL.
pub(crate) struct ProofRow<'a> {
    pub chain: i64,
    pub batch: i64,
    pub proof_type: &'a str,
    pub blob_key: &'a str,
    pub size: i64,
    pub digest: &'a [u8],
    pub prover: &'a str,
    pub prover_name: &'a str,
    pub token: i64,
    pub leased_at: i64,
    pub received_at: i64,
    pub prove_ms: i64,
    pub inline: Option<&'a [u8]>,
}

impl<'a> ProofRow<'a> {
    pub fn new(p: &'a ProofRecord) -> Result<Self> {
        Ok(ProofRow {
            chain: to_i64(p.key.chain, "proof chain")?,
            batch: to_i64(p.key.batch, "proof batch")?,
            proof_type: p.key.proof_type.as_str(),
            blob_key: text(&p.blob_key, "proof blob key")?,
            size: to_i64(p.size, "proof size")?,
            digest: &p.digest.0[..],
            prover: text(&p.prover.0, "proof prover")?,
            prover_name: text(&p.prover_name, "proof prover_name")?,
            token: to_i64(p.token.0, "proof token")?,
            leased_at: to_i64(p.leased_at, "proof leased_at")?,
            received_at: to_i64(p.received_at, "proof received_at")?,
            prove_ms: to_i64(p.prove_ms, "prove_ms")?,
            inline: p.inline.as_deref(),
        })
    }
}

/// The net effect of a list of changes: the last write per key wins. A proof key ends up either
/// upserted or deleted.
#[derive(Default)]
pub(crate) struct Plan<'a> {
    pub jobs: Vec<JobRow<'a>>,
    pub proofs: Vec<ProofRow<'a>>,
    /// Proofs deleted: (chain, batch, proof type).
    pub deletes: Vec<(i64, i64, &'a str)>,
    /// The last cordon change per prover: (prover id, on, since).
    pub cordons: Vec<(&'a str, bool, i64, &'a str)>,
    /// The last control change per component: (component, paused, since, reason).
    pub controls: Vec<(&'a str, bool, i64, &'a str)>,
    /// The highest fencing token among all the changes, including leases a later change
    /// of the same job replaced: the store's high-water mark never misses a token it saw.
    pub token_high: i64,
    /// The pending settlement mark: untouched (`None`), cleared (`Some(None)`) or set to
    /// (first batch, last batch, time).
    pub pending: Option<Option<(i64, i64, i64)>>,
    /// Settled transactions, the last per first batch.
    pub verified: Vec<VerifiedRow<'a>>,
    pub attempts: AttemptPlan<'a>,
}

/// A settled transaction as bound to SQL.
pub(crate) struct VerifiedRow<'a> {
    pub first_batch: i64,
    pub last_batch: i64,
    pub tx_hash: &'a str,
    pub gas_used: i64,
    pub at: i64,
}

impl<'a> VerifiedRow<'a> {
    fn new(r: &'a VerifyRecord, at: Millis) -> Result<Self> {
        if r.last_batch < r.first_batch {
            return Err(StoreError::Unstorable(format!(
                "settlement of batches {}..={}: the range is empty",
                r.first_batch, r.last_batch
            )));
        }
        Ok(VerifiedRow {
            first_batch: to_i64(r.first_batch, "settled first batch")?,
            last_batch: to_i64(r.last_batch, "settled last batch")?,
            tx_hash: text(&r.tx_hash, "settlement tx hash")?,
            gas_used: to_i64(r.gas_used, "settlement gas")?,
            at: to_i64(at, "settlement time")?,
        })
    }
}

impl<'a> Plan<'a> {
    pub fn new(changes: &'a [Change]) -> Result<Self> {
        enum ProofOp<'a> {
            Put(&'a ProofRecord),
            Delete(&'a JobKey),
        }
        let mut jobs: Vec<&'a Job> = Vec::new();
        let mut job_slot: HashMap<&'a JobKey, usize> = HashMap::new();
        let mut proofs: Vec<ProofOp<'a>> = Vec::new();
        let mut proof_slot: HashMap<&'a JobKey, usize> = HashMap::new();
        let mut cordons: Vec<(&'a str, bool, i64, &'a str)> = Vec::new();
        let mut cordon_slot: HashMap<&'a str, usize> = HashMap::new();
        let mut controls: Vec<(&'a str, bool, i64, &'a str)> = Vec::new();
        let mut token_high = 0;
        let mut pending = None;
        let mut verified: Vec<VerifiedRow<'a>> = Vec::new();
        let mut attempts = AttemptPlan::default();
        for change in changes {
            if attempts.take(change)? {
                continue;
            }
            let token = match change {
                Change::Job(job) => job.lease.as_ref().map_or(0, |l| l.token.0),
                Change::Proof(p) => p.token.0,
                _ => 0,
            };
            token_high = token_high.max(token);
            match change {
                Change::Job(job) => match job_slot.get(&job.key) {
                    Some(&i) => jobs[i] = job,
                    None => {
                        job_slot.insert(&job.key, jobs.len());
                        jobs.push(job);
                    }
                },
                Change::Proof(p) => {
                    upsert_slot(&mut proofs, &mut proof_slot, &p.key, ProofOp::Put(p))
                }
                Change::DeleteProof(key) => {
                    upsert_slot(&mut proofs, &mut proof_slot, key, ProofOp::Delete(key))
                }
                Change::Cordon {
                    prover,
                    on,
                    at,
                    reason,
                } => {
                    let row = (
                        prover.0.as_str(),
                        *on,
                        to_i64(*at, "cordon time")?,
                        reason.as_str(),
                    );
                    match cordon_slot.get(prover.0.as_str()) {
                        Some(&i) => cordons[i] = row,
                        None => {
                            cordon_slot.insert(prover.0.as_str(), cordons.len());
                            cordons.push(row);
                        }
                    }
                }
                Change::Control {
                    component,
                    paused,
                    at,
                    reason,
                } => {
                    let row = (
                        text(component, "control component")?,
                        *paused,
                        to_i64(*at, "control time")?,
                        text(reason, "control reason")?,
                    );
                    match controls.iter_mut().find(|c| c.0 == row.0) {
                        Some(slot) => *slot = row,
                        None => controls.push(row),
                    }
                }
                Change::PendingVerify {
                    first_batch,
                    last_batch,
                    at,
                } => {
                    if last_batch < first_batch {
                        return Err(StoreError::Unstorable(format!(
                            "pending settlement of batches {first_batch}..={last_batch}: the range is empty"
                        )));
                    }
                    pending = Some(Some((
                        to_i64(*first_batch, "pending first batch")?,
                        to_i64(*last_batch, "pending last batch")?,
                        to_i64(*at, "pending time")?,
                    )));
                }
                Change::ClearPendingVerify => pending = Some(None),
                Change::Verified { record, at } => {
                    let row = VerifiedRow::new(record, *at)?;
                    match verified
                        .iter_mut()
                        .find(|v| v.first_batch == row.first_batch)
                    {
                        Some(slot) => *slot = row,
                        None => verified.push(row),
                    }
                }
                Change::AttemptStarted(_) | Change::AttemptEnded { .. } => {
                    unreachable!("taken by the attempt plan")
                }
            }
        }
        fn upsert_slot<'a, T>(
            items: &mut Vec<T>,
            slots: &mut HashMap<&'a JobKey, usize>,
            key: &'a JobKey,
            item: T,
        ) {
            match slots.get(key) {
                Some(&i) => items[i] = item,
                None => {
                    slots.insert(key, items.len());
                    items.push(item);
                }
            }
        }
        let mut plan = Plan {
            jobs: jobs.into_iter().map(JobRow::new).collect::<Result<_>>()?,
            token_high: to_i64(token_high, "fencing token")?,
            cordons,
            controls,
            pending,
            verified,
            attempts,
            ..Plan::default()
        };
        for op in proofs {
            match op {
                ProofOp::Put(p) => plan.proofs.push(ProofRow::new(p)?),
                ProofOp::Delete(k) => plan.deletes.push((
                    to_i64(k.chain, "deleted proof chain")?,
                    to_i64(k.batch, "deleted proof batch")?,
                    k.proof_type.as_str(),
                )),
            }
        }
        Ok(plan)
    }
}

/// Public values and digest identity used by the idempotency check of `insert_batch`.
pub(crate) fn same_batch_content(a: &Batch, b: &Batch) -> bool {
    a.input_digest == b.input_digest && a.public_values == b.public_values
}

/// Candidate for the last proven batch from `first` (lowest stored batch), `max` (highest)
/// and `first_open` (lowest batch with a job that is not proven): `None` when the first batch
/// is open. The caller still checks `[first, candidate]` for gaps in numbering.
pub(crate) fn proven_candidate(first: u64, max: u64, first_open: Option<u64>) -> Option<u64> {
    match first_open {
        Some(open) if open <= first => None,
        Some(open) => Some(max.min(open - 1)),
        None => Some(max),
    }
}

impl Plan<'_> {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.proofs.is_empty()
            && self.deletes.is_empty()
            && self.cordons.is_empty()
            && self.controls.is_empty()
            && self.pending.is_none()
            && self.verified.is_empty()
            && self.attempts.is_empty()
    }
}

/// Removes repeated proof types, keeping the first occurrence of each.
pub(crate) fn unique_types(required: &[ProofType]) -> Vec<ProofType> {
    let mut out: Vec<ProofType> = Vec::with_capacity(required.len());
    for pt in required {
        if !out.contains(pt) {
            out.push(pt.clone());
        }
    }
    out
}

/// The error for `Change::Job`s whose job does not exist; `rows` have `chain`, `batch`,
/// `proof_type`.
pub(crate) fn missing_jobs_error(rows: &[impl RowExt]) -> StoreError {
    let keys: Vec<String> = rows
        .iter()
        .map(|r| match decode_key(r) {
            Ok(key) => key.to_string(),
            Err(_) => "?".into(),
        })
        .collect();
    StoreError::Database(format!(
        "apply: job(s) {} do not exist (jobs are created by insert_batch); nothing was written",
        keys.join(", ")
    ))
}

/// Rows of `SELECT proof_type, state, COUNT(*) AS n ... GROUP BY proof_type, state`.
pub(crate) fn job_counts(rows: &[impl RowExt]) -> Result<crate::api::JobCounts> {
    let mut counts = crate::api::JobCounts::new();
    for row in rows {
        let pt = to_proof_type(row.text("proof_type")?)?;
        let state = to_state(&row.text("state")?)?;
        counts.entry(pt).or_default().insert(state, row.u64("n")?);
    }
    Ok(counts)
}

pub(crate) enum Arg {
    Int(i64),
    Text(String),
}

/// SQL and arguments for [`crate::Store::jobs`]; `ph(i)` renders placeholder number `i`,
/// `order` the ORDER BY list (byte order of proof types on both stores). A `limit` of 0
/// means no limit.
pub(crate) fn jobs_query(
    filter: &crate::api::JobFilter,
    ph: impl Fn(usize) -> String,
    order: &str,
) -> Result<(String, Vec<Arg>)> {
    let mut sql = format!("SELECT {JOB_COLS} FROM jobs WHERE true");
    let mut args = Vec::new();
    if let Some(chain) = filter.chain {
        let Ok(chain) = i64::try_from(chain) else {
            return Ok((format!("{sql} AND false"), args));
        };
        args.push(Arg::Int(chain));
        sql += &format!(" AND chain = {}", ph(args.len()));
    }
    if let Some(pt) = &filter.proof_type {
        args.push(Arg::Text(pt.as_str().to_owned()));
        sql += &format!(" AND proof_type = {}", ph(args.len()));
    }
    if let Some(state) = filter.state {
        args.push(Arg::Text(state.as_str().to_owned()));
        sql += &format!(" AND state = {}", ph(args.len()));
    }
    if let Some(from) = filter.from_batch {
        let Ok(from) = i64::try_from(from) else {
            // No batch can be that high: an always-false condition keeps the query shape.
            return Ok((format!("{sql} AND false"), args));
        };
        args.push(Arg::Int(from));
        sql += &format!(" AND batch >= {}", ph(args.len()));
    }
    sql += &format!(" ORDER BY {order}");
    if filter.limit > 0 {
        args.push(Arg::Int(i64::from(filter.limit)));
        sql += &format!(" LIMIT {}", ph(args.len()));
    }
    Ok((sql, args))
}

/// Whether [`crate::Store::replace_batch`] may go on, from the batch's job counts (`None`:
/// no such batch).
pub(crate) fn replaceable(number: BatchNumber, counts: Option<(i64, i64, i64)>) -> Result<()> {
    match counts {
        None => Err(StoreError::BatchNotFound(number)),
        Some((_, open, _)) if open > 0 => Err(StoreError::BatchOpen(number)),
        Some((total, _, proven)) if total > 0 && proven == total => {
            Err(StoreError::BatchProven(number))
        }
        Some(_) => Ok(()),
    }
}

/// Missing ranges from the rows of a gaps query (`first`, `last`).
pub(crate) fn gap_ranges(rows: Vec<(i64, i64)>) -> Result<Vec<(BatchNumber, BatchNumber)>> {
    rows.into_iter()
        .map(|(first, last)| {
            Ok((
                to_u64(first, "batch number")?,
                to_u64(last, "batch number")?,
            ))
        })
        .collect()
}
