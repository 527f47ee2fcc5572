//! The proof manager's table (migration 0013): one row per batch a rollup offers to the proof
//! market ([`ProofRequest`], keyed by chain id and batch number), and the market watcher's
//! last processed block ([`MarketCursor`]). Written through [`ProofRequests`], fenced like
//! every other write of the store.

use crate::api::{Result, StoreError};
use crate::codec::{RowExt, text, to_i64};
use crate::dialect::Dialect;
use crate::sql::SqlStore;
use async_trait::async_trait;
use proofmill_types::{BatchNumber, ChainId, Digest, Millis};
use sqlx::{AssertSqlSafe, Database, Encode, Executor, IntoArguments, Type};

/// Where a proof request is. The first five are zkSync's proof manager's; the last three
/// close a request without a valid proof (the batch falls back to the own provers).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProofRequestStatus {
    /// Its inputs are published at `inputs_url`; no request on L1 yet.
    ReadyToBeProven,
    /// `submitProofRequest` was mined (or found on L1): waiting for the acknowledgement.
    RequestSentToL1,
    /// The assigned network accepted it.
    Acknowledged,
    /// The network posted a proof: to be checked locally.
    ReceivedProof,
    /// `submitProofValidationResult` was mined with `validation_status`.
    ValidationResultSentToL1,
    /// The assigned network refused it (the market returned the escrow).
    Refused,
    /// Closed on L1 after a missed acknowledgement or proof deadline.
    TimedOut,
    /// The market refused to take the request (no active network, its limits): nothing was
    /// posted.
    NotSent,
}

impl ProofRequestStatus {
    pub const ALL: [ProofRequestStatus; 8] = [
        ProofRequestStatus::ReadyToBeProven,
        ProofRequestStatus::RequestSentToL1,
        ProofRequestStatus::Acknowledged,
        ProofRequestStatus::ReceivedProof,
        ProofRequestStatus::ValidationResultSentToL1,
        ProofRequestStatus::Refused,
        ProofRequestStatus::TimedOut,
        ProofRequestStatus::NotSent,
    ];

    pub fn as_str(self) -> &'static str {
        use ProofRequestStatus::*;
        match self {
            ReadyToBeProven => "ready_to_be_proven",
            RequestSentToL1 => "request_sent_to_l1",
            Acknowledged => "acknowledged",
            ReceivedProof => "received_proof",
            ValidationResultSentToL1 => "validation_result_sent_to_l1",
            Refused => "refused",
            TimedOut => "timed_out",
            NotSent => "not_sent",
        }
    }

    pub fn parse(s: &str) -> Option<ProofRequestStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Whether the request is over on L1: nothing more happens to it there.
    pub fn is_closed(self) -> bool {
        use ProofRequestStatus::*;
        matches!(
            self,
            ValidationResultSentToL1 | Refused | TimedOut | NotSent
        )
    }
}

impl std::fmt::Display for ProofRequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The rollup's verdict on the network's proof, checked locally with the proof type's
/// backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValidationStatus {
    /// Not checked (no proof yet).
    None,
    Valid,
    /// Failed the check, or came after the batch fell back (never used, never paid).
    Invalid,
}

impl ValidationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ValidationStatus::None => "none",
            ValidationStatus::Valid => "valid",
            ValidationStatus::Invalid => "invalid",
        }
    }

    pub fn parse(s: &str) -> Option<ValidationStatus> {
        [
            ValidationStatus::None,
            ValidationStatus::Valid,
            ValidationStatus::Invalid,
        ]
        .into_iter()
        .find(|v| v.as_str() == s)
    }
}

/// Why a batch offered to the market goes to the own provers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The network did not acknowledge by the acknowledgement deadline.
    NotAcknowledged,
    /// The network refused the request.
    Refused,
    /// The network accepted but posted no proof by the deadline.
    NotProven,
    /// The network's proof failed the local check.
    InvalidProof,
    /// The market refused to take the request.
    NotSent,
}

impl FallbackReason {
    pub const ALL: [FallbackReason; 5] = [
        FallbackReason::NotAcknowledged,
        FallbackReason::Refused,
        FallbackReason::NotProven,
        FallbackReason::InvalidProof,
        FallbackReason::NotSent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FallbackReason::NotAcknowledged => "not_acknowledged",
            FallbackReason::Refused => "refused",
            FallbackReason::NotProven => "not_proven",
            FallbackReason::InvalidProof => "invalid_proof",
            FallbackReason::NotSent => "not_sent",
        }
    }

    pub fn parse(s: &str) -> Option<FallbackReason> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl std::fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One batch offered to the proof market: the proof manager's row. Chain times (`deadline`,
/// `ack_deadline`) are L1 block timestamps in Unix seconds, as the contract keeps them;
/// the `*_at` times are Unix ms when the manager recorded the event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofRequest {
    pub chain: ChainId,
    pub batch: BatchNumber,
    pub status: ProofRequestStatus,
    /// Why the batch falls back to the own provers, once that is decided.
    pub fallback_reason: Option<FallbackReason>,
    /// The batch was handed to the own provers.
    pub fallbacked: bool,
    /// The proving network the market assigned (`0x` address).
    pub assigned_to: Option<String>,
    /// Public URL of the batch's proof inputs.
    pub inputs_url: String,
    /// sha256 of the inputs.
    pub inputs_digest: Digest,
    /// Where the network's proof was stored.
    pub proof_url: Option<String>,
    /// `submitProofRequest` (`0x` hex), and when it was recorded.
    pub request_tx_hash: Option<String>,
    pub request_sent_at: Option<Millis>,
    /// `submitProofValidationResult` (`0x` hex), and when it was recorded.
    pub validation_tx_hash: Option<String>,
    pub validation_sent_at: Option<Millis>,
    pub validation_status: ValidationStatus,
    /// Chain time by which the proof must be posted.
    pub deadline: Option<u64>,
    /// Chain time by which the network must acknowledge.
    pub ack_deadline: Option<u64>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

impl ProofRequest {
    /// A new row: its inputs are published, nothing sent.
    pub fn ready(
        chain: ChainId,
        batch: BatchNumber,
        inputs_url: String,
        inputs_digest: Digest,
        now: Millis,
    ) -> ProofRequest {
        ProofRequest {
            chain,
            batch,
            status: ProofRequestStatus::ReadyToBeProven,
            fallback_reason: None,
            fallbacked: false,
            assigned_to: None,
            inputs_url,
            inputs_digest,
            proof_url: None,
            request_tx_hash: None,
            request_sent_at: None,
            validation_tx_hash: None,
            validation_sent_at: None,
            validation_status: ValidationStatus::None,
            deadline: None,
            ack_deadline: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Nothing is left to do for it: closed on L1, and either proven by the network (valid)
    /// or handed to the own provers.
    pub fn is_done(&self) -> bool {
        self.status.is_closed()
            && (self.fallbacked
                || (self.status == ProofRequestStatus::ValidationResultSentToL1
                    && self.validation_status == ValidationStatus::Valid))
    }
}

/// The market watcher's last processed block, per market contract and chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketCursor {
    /// The market contract (`0x` address).
    pub market: String,
    pub chain: ChainId,
    pub last_block: u64,
}

/// A chain's requests counted ([`ProofRequests::proof_request_counts`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProofRequestCounts {
    pub by_status: std::collections::BTreeMap<ProofRequestStatus, u64>,
    /// Handed to the own provers.
    pub fell_back: u64,
    /// Closed with a valid proof from a network.
    pub proven_by_network: u64,
}

/// Which rows [`ProofRequests::list_proof_requests`] returns, ordered by (chain, batch).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProofRequestFilter {
    pub chain: Option<ChainId>,
    /// Only rows with something left to do (not [`ProofRequest::is_done`]).
    pub open_only: bool,
    pub status: Option<ProofRequestStatus>,
    /// Only batches >= this.
    pub from_batch: Option<BatchNumber>,
    /// At most this many (0: no limit).
    pub limit: u32,
}

/// The proof manager's durable table. Every write is fenced like the store's others
/// ([`crate::Store::fence_writes`]). One task writes a chain's rows: a write replaces the
/// row as given.
#[async_trait]
pub trait ProofRequests: Send + Sync {
    /// Adds `row` unless its (chain, batch) has one: `Ok(false)` then, and the stored row
    /// is left as it is.
    async fn insert_proof_request(&self, row: &ProofRequest) -> Result<bool>;

    async fn proof_request(
        &self,
        chain: ChainId,
        batch: BatchNumber,
    ) -> Result<Option<ProofRequest>>;

    async fn list_proof_requests(&self, filter: &ProofRequestFilter) -> Result<Vec<ProofRequest>>;

    /// Writes `rows` as given (inserting any that is missing) and, when given, the
    /// watcher's cursor, in one transaction: the events a watcher read and what they changed
    /// are recorded together, or not at all.
    async fn update_proof_requests(
        &self,
        rows: &[ProofRequest],
        cursor: Option<&MarketCursor>,
    ) -> Result<()>;

    /// How many of `chain`'s requests are in each status, and how many fell back or were
    /// proven by a network (for status).
    async fn proof_request_counts(&self, chain: ChainId) -> Result<ProofRequestCounts>;

    /// The last processed block recorded for `market` and `chain`.
    async fn market_cursor(&self, market: &str, chain: ChainId) -> Result<Option<u64>>;
}

const COLS: &str = "chain, batch, status, fallback_reason, fallbacked, assigned_to, inputs_url, \
    inputs_digest, proof_url, request_tx_hash, request_sent_at, validation_tx_hash, \
    validation_sent_at, validation_status, deadline, ack_deadline, done, created_at, updated_at";

const VALUES: &str = "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
    $17, $18, $19)";

const UPDATE_SET: &str = "status = excluded.status, fallback_reason = excluded.fallback_reason, \
    fallbacked = excluded.fallbacked, assigned_to = excluded.assigned_to, \
    inputs_url = excluded.inputs_url, inputs_digest = excluded.inputs_digest, \
    proof_url = excluded.proof_url, request_tx_hash = excluded.request_tx_hash, \
    request_sent_at = excluded.request_sent_at, validation_tx_hash = excluded.validation_tx_hash, \
    validation_sent_at = excluded.validation_sent_at, \
    validation_status = excluded.validation_status, deadline = excluded.deadline, \
    ack_deadline = excluded.ack_deadline, done = excluded.done, \
    created_at = excluded.created_at, updated_at = excluded.updated_at";

const UPSERT_CURSOR: &str = "INSERT INTO market_cursors (market, chain, last_block) \
    VALUES ($1, $2, $3) ON CONFLICT (market, chain) DO UPDATE SET last_block = excluded.last_block";

/// A row as bound to SQL, in [`COLS`]' order.
struct Row<'a> {
    chain: i64,
    batch: i64,
    status: &'static str,
    fallback_reason: Option<&'static str>,
    fallbacked: i64,
    assigned_to: Option<&'a str>,
    inputs_url: &'a str,
    inputs_digest: &'a [u8],
    proof_url: Option<&'a str>,
    request_tx_hash: Option<&'a str>,
    request_sent_at: Option<i64>,
    validation_tx_hash: Option<&'a str>,
    validation_sent_at: Option<i64>,
    validation_status: &'static str,
    deadline: Option<i64>,
    ack_deadline: Option<i64>,
    done: i64,
    created_at: i64,
    updated_at: i64,
}

fn opt_text<'a>(v: &'a Option<String>, what: &str) -> Result<Option<&'a str>> {
    v.as_deref().map(|s| text(s, what)).transpose()
}

fn opt_i64(v: Option<u64>, what: &str) -> Result<Option<i64>> {
    v.map(|n| to_i64(n, what)).transpose()
}

impl<'a> Row<'a> {
    fn new(r: &'a ProofRequest) -> Result<Self> {
        Ok(Row {
            chain: to_i64(r.chain, "proof request chain")?,
            batch: to_i64(r.batch, "proof request batch")?,
            status: r.status.as_str(),
            fallback_reason: r.fallback_reason.map(FallbackReason::as_str),
            fallbacked: i64::from(r.fallbacked),
            assigned_to: opt_text(&r.assigned_to, "assigned_to")?,
            inputs_url: text(&r.inputs_url, "inputs_url")?,
            inputs_digest: &r.inputs_digest.0,
            proof_url: opt_text(&r.proof_url, "proof_url")?,
            request_tx_hash: opt_text(&r.request_tx_hash, "request_tx_hash")?,
            request_sent_at: opt_i64(r.request_sent_at, "request_sent_at")?,
            validation_tx_hash: opt_text(&r.validation_tx_hash, "validation_tx_hash")?,
            validation_sent_at: opt_i64(r.validation_sent_at, "validation_sent_at")?,
            validation_status: r.validation_status.as_str(),
            deadline: opt_i64(r.deadline, "deadline")?,
            ack_deadline: opt_i64(r.ack_deadline, "ack_deadline")?,
            done: i64::from(r.is_done()),
            created_at: to_i64(r.created_at, "created_at")?,
            updated_at: to_i64(r.updated_at, "updated_at")?,
        })
    }
}

fn decode(row: &impl RowExt) -> Result<ProofRequest> {
    let (chain, batch) = (row.u64("chain")?, row.u64("batch")?);
    let corrupt =
        |what: String| StoreError::Corrupt(format!("proof request {chain}:{batch}: {what}"));
    let status = row.text("status")?;
    let status = ProofRequestStatus::parse(&status)
        .ok_or_else(|| corrupt(format!("unknown status {status:?}")))?;
    let fallback_reason = match row.opt_text("fallback_reason")? {
        None => None,
        Some(r) => Some(
            FallbackReason::parse(&r)
                .ok_or_else(|| corrupt(format!("unknown fallback reason {r:?}")))?,
        ),
    };
    let validation = row.text("validation_status")?;
    let validation_status = ValidationStatus::parse(&validation)
        .ok_or_else(|| corrupt(format!("unknown validation status {validation:?}")))?;
    Ok(ProofRequest {
        chain,
        batch,
        status,
        fallback_reason,
        fallbacked: row.i64("fallbacked")? != 0,
        assigned_to: row.opt_text("assigned_to")?,
        inputs_url: row.text("inputs_url")?,
        inputs_digest: row.digest("inputs_digest")?,
        proof_url: row.opt_text("proof_url")?,
        request_tx_hash: row.opt_text("request_tx_hash")?,
        request_sent_at: row.opt_u64("request_sent_at")?,
        validation_tx_hash: row.opt_text("validation_tx_hash")?,
        validation_sent_at: row.opt_u64("validation_sent_at")?,
        validation_status,
        deadline: row.opt_u64("deadline")?,
        ack_deadline: row.opt_u64("ack_deadline")?,
        created_at: row.u64("created_at")?,
        updated_at: row.u64("updated_at")?,
    })
}

/// A query binding a row's values, in [`COLS`]' order.
fn bind_row<'q, DB: Database>(
    sql: &'q str,
    r: &Row<'q>,
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments>
where
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    &'q [u8]: Encode<'q, DB> + Type<DB>,
{
    sqlx::query(AssertSqlSafe(sql))
        .bind(r.chain)
        .bind(r.batch)
        .bind(r.status)
        .bind(r.fallback_reason)
        .bind(r.fallbacked)
        .bind(r.assigned_to)
        .bind(r.inputs_url)
        .bind(r.inputs_digest)
        .bind(r.proof_url)
        .bind(r.request_tx_hash)
        .bind(r.request_sent_at)
        .bind(r.validation_tx_hash)
        .bind(r.validation_sent_at)
        .bind(r.validation_status)
        .bind(r.deadline)
        .bind(r.ack_deadline)
        .bind(r.done)
        .bind(r.created_at)
        .bind(r.updated_at)
}

#[async_trait]
impl<D> ProofRequests for SqlStore<D>
where
    D: Dialect,
    for<'c> &'c mut <D::Db as Database>::Connection: Executor<'c, Database = D::Db>,
    <D::Db as Database>::Row: RowExt,
    for<'a> i64: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> Option<i64>: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> &'a str: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> Option<&'a str>: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> &'a [u8]: Encode<'a, D::Db> + Type<D::Db>,
    for<'a> bool: Encode<'a, D::Db> + Type<D::Db>,
    <D::Db as Database>::Arguments: IntoArguments<D::Db>,
{
    async fn insert_proof_request(&self, row: &ProofRequest) -> Result<bool> {
        let what = format!("insert_proof_request {}:{}", row.chain, row.batch);
        let r = Row::new(row)?;
        let sql = format!(
            "INSERT INTO proof_requests ({COLS}) VALUES {VALUES} \
             ON CONFLICT (chain, batch) DO NOTHING"
        );
        let mut tx = self.begin_write(&what).await?;
        let done = bind_row::<D::Db>(&sql, &r)
            .execute(&mut *tx)
            .await
            .map_err(|e| self.db_err(&what, e))?;
        let inserted = D::rows_affected(&done) == 1;
        self.commit(tx, &what).await?;
        Ok(inserted)
    }

    async fn proof_request(
        &self,
        chain: ChainId,
        batch: BatchNumber,
    ) -> Result<Option<ProofRequest>> {
        let (Ok(chain), Ok(batch)) = (i64::try_from(chain), i64::try_from(batch)) else {
            return Ok(None);
        };
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLS} FROM proof_requests WHERE chain = $1 AND batch = $2"
        )))
        .bind(chain)
        .bind(batch)
        .fetch_optional(&self.read)
        .await
        .map_err(|e| self.db_err("proof_request", e))?;
        row.as_ref().map(decode).transpose()
    }

    async fn list_proof_requests(&self, filter: &ProofRequestFilter) -> Result<Vec<ProofRequest>> {
        // Out-of-range numbers match nothing; the query keeps its shape.
        let chain = filter.chain.map(|c| i64::try_from(c).unwrap_or(-1));
        let from = filter
            .from_batch
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX))
            .unwrap_or(0);
        let limit = if filter.limit == 0 {
            i64::MAX
        } else {
            i64::from(filter.limit)
        };
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLS} FROM proof_requests WHERE ($1 IS NULL OR chain = $1) \
             AND ($2 = 0 OR done = 0) AND ($3 IS NULL OR status = $3) AND batch >= $4 \
             ORDER BY chain, batch LIMIT $5"
        )))
        .bind(chain)
        .bind(i64::from(filter.open_only))
        .bind(filter.status.map(ProofRequestStatus::as_str))
        .bind(from)
        .bind(limit)
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err("list_proof_requests", e))?;
        rows.iter().map(decode).collect()
    }

    async fn update_proof_requests(
        &self,
        rows: &[ProofRequest],
        cursor: Option<&MarketCursor>,
    ) -> Result<()> {
        let what = "update_proof_requests";
        let bound = rows.iter().map(Row::new).collect::<Result<Vec<_>>>()?;
        let cursor = cursor
            .map(|c| -> Result<_> {
                Ok((
                    text(&c.market, "market address")?,
                    to_i64(c.chain, "market cursor chain")?,
                    to_i64(c.last_block, "market cursor block")?,
                ))
            })
            .transpose()?;
        let sql = format!(
            "INSERT INTO proof_requests ({COLS}) VALUES {VALUES} \
             ON CONFLICT (chain, batch) DO UPDATE SET {UPDATE_SET}"
        );
        let mut tx = self.begin_write(what).await?;
        for r in &bound {
            bind_row::<D::Db>(&sql, r)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(&format!("{what} {}:{}", r.chain, r.batch), e))?;
        }
        if let Some((market, chain, block)) = cursor {
            sqlx::query(UPSERT_CURSOR)
                .bind(market)
                .bind(chain)
                .bind(block)
                .execute(&mut *tx)
                .await
                .map_err(|e| self.db_err(&format!("{what}: market cursor"), e))?;
        }
        self.commit(tx, what).await
    }

    async fn proof_request_counts(&self, chain: ChainId) -> Result<ProofRequestCounts> {
        let mut counts = ProofRequestCounts::default();
        let Ok(chain) = i64::try_from(chain) else {
            return Ok(counts);
        };
        let rows = sqlx::query(
            "SELECT status, fallbacked, validation_status, COUNT(*) AS n FROM proof_requests \
             WHERE chain = $1 GROUP BY status, fallbacked, validation_status",
        )
        .bind(chain)
        .fetch_all(&self.read)
        .await
        .map_err(|e| self.db_err("proof_request_counts", e))?;
        for row in &rows {
            let status = row.text("status")?;
            let status = ProofRequestStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("proof request status {status:?}")))?;
            let n = row.u64("n")?;
            *counts.by_status.entry(status).or_default() += n;
            if row.i64("fallbacked")? != 0 {
                counts.fell_back += n;
            } else if status == ProofRequestStatus::ValidationResultSentToL1
                && row.text("validation_status")? == ValidationStatus::Valid.as_str()
            {
                counts.proven_by_network += n;
            }
        }
        Ok(counts)
    }

    async fn market_cursor(&self, market: &str, chain: ChainId) -> Result<Option<u64>> {
        let Ok(chain) = i64::try_from(chain) else {
            return Ok(None);
        };
        let row =
            sqlx::query("SELECT last_block FROM market_cursors WHERE market = $1 AND chain = $2")
                .bind(market)
                .bind(chain)
                .fetch_optional(&self.read)
                .await
                .map_err(|e| self.db_err("market_cursor", e))?;
        row.map(|r| r.u64("last_block")).transpose()
    }
}
