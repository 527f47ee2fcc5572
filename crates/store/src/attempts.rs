//! The attempts table (migration 0009): the rows [`Change::AttemptStarted`] and
//! [`Change::AttemptEnded`] write, and how they read back.

use crate::Change;
use crate::api::{Result, StoreError};
use crate::codec::{RowExt, text, to_i64, to_u64};
use crate::rows::{Columns, Kind, Rows, Values};
use proofmill_types::{Attempt, AttemptOutcome, FencingToken, JobKey, ProofType, ProverId};

/// Columns of `attempts`, in the order [`decode_attempt`] reads them (by name).
pub(crate) const ATTEMPT_COLS: &str = "token, chain, batch, proof_type, prover, prover_name, backup, \
    started_at, ended_at, outcome, detail, prove_ms";

/// An attempt's row as it starts.
pub(crate) struct StartRow<'a> {
    token: i64,
    chain: i64,
    batch: i64,
    proof_type: &'a str,
    prover: &'a str,
    prover_name: &'a str,
    backup: i64,
    started_at: i64,
}

/// The end of an attempt, as written over its row.
pub(crate) struct EndRow<'a> {
    token: i64,
    ended_at: i64,
    outcome: &'static str,
    detail: &'a str,
    prove_ms: Option<i64>,
}

/// The attempts an `apply` starts and ends; an attempt started and ended by the same call
/// is inserted first, then ended.
#[derive(Default)]
pub(crate) struct AttemptPlan<'a> {
    pub started: Vec<StartRow<'a>>,
    pub ended: Vec<EndRow<'a>>,
}

impl<'a> AttemptPlan<'a> {
    /// Takes `change` if it is an attempt's; `Ok(false)` otherwise.
    pub fn take(&mut self, change: &'a Change) -> Result<bool> {
        match change {
            Change::AttemptStarted(a) => {
                self.started.push(StartRow {
                    token: to_i64(a.token.0, "attempt token")?,
                    chain: to_i64(a.key.chain, "attempt chain")?,
                    batch: to_i64(a.key.batch, "attempt batch")?,
                    proof_type: a.key.proof_type.as_str(),
                    prover: text(&a.prover.0, "attempt prover")?,
                    prover_name: text(&a.prover_name, "attempt prover name")?,
                    backup: i64::from(a.backup),
                    started_at: to_i64(a.started_at, "attempt start")?,
                });
            }
            Change::AttemptEnded {
                token,
                at,
                outcome,
                detail,
                prove_ms,
            } => self.ended.push(EndRow {
                token: to_i64(token.0, "attempt token")?,
                ended_at: to_i64(*at, "attempt end")?,
                outcome: outcome.as_str(),
                detail: text(detail, "attempt detail")?,
                prove_ms: prove_ms.map(|ms| to_i64(ms, "prove_ms")).transpose()?,
            }),
            _ => return Ok(false),
        }
        Ok(true)
    }

    pub fn is_empty(&self) -> bool {
        self.started.is_empty() && self.ended.is_empty()
    }
}

pub(crate) const START_COLUMNS: &Columns = &[
    ("token", Kind::Int),
    ("chain", Kind::Int),
    ("batch", Kind::Int),
    ("proof_type", Kind::Text),
    ("prover", Kind::Text),
    ("prover_name", Kind::Text),
    ("backup", Kind::Int),
    ("started_at", Kind::Int),
];

pub(crate) fn start_rows<'a>(rows: &[StartRow<'a>]) -> Rows<'a> {
    let int = |f: fn(&StartRow) -> i64| Values::Int(rows.iter().map(|r| Some(f(r))).collect());
    let text =
        |f: fn(&StartRow<'a>) -> &'a str| Values::Text(rows.iter().map(|r| Some(f(r))).collect());
    Rows::new(
        START_COLUMNS,
        rows.len(),
        vec![
            int(|r| r.token),
            int(|r| r.chain),
            int(|r| r.batch),
            text(|r| r.proof_type),
            text(|r| r.prover),
            text(|r| r.prover_name),
            int(|r| r.backup),
            int(|r| r.started_at),
        ],
    )
}

pub(crate) const END_COLUMNS: &Columns = &[
    ("token", Kind::Int),
    ("ended_at", Kind::Int),
    ("outcome", Kind::Text),
    ("detail", Kind::Text),
    ("prove_ms", Kind::Int),
];

pub(crate) fn end_rows<'a>(rows: &[EndRow<'a>]) -> Rows<'a> {
    Rows::new(
        END_COLUMNS,
        rows.len(),
        vec![
            Values::Int(rows.iter().map(|r| Some(r.token)).collect()),
            Values::Int(rows.iter().map(|r| Some(r.ended_at)).collect()),
            Values::Text(rows.iter().map(|r| Some(r.outcome)).collect()),
            Values::Text(rows.iter().map(|r| Some(r.detail)).collect()),
            Values::Int(rows.iter().map(|r| r.prove_ms).collect()),
        ],
    )
}

pub(crate) fn decode_attempt(row: &impl RowExt) -> Result<Attempt> {
    let token = FencingToken(row.u64("token")?);
    let proof_type = ProofType::new(row.text("proof_type")?)
        .map_err(|e| StoreError::Corrupt(format!("attempt {token}: {e}")))?;
    let outcome = match row.opt_text("outcome")? {
        None => None,
        Some(o) => Some(AttemptOutcome::parse(&o).ok_or_else(|| {
            StoreError::Corrupt(format!("attempt {token}: unknown outcome {o:?}"))
        })?),
    };
    Ok(Attempt {
        key: JobKey::new(row.u64("chain")?, row.u64("batch")?, proof_type),
        token,
        prover: ProverId(row.text("prover")?),
        prover_name: row.text("prover_name")?,
        backup: row.i64("backup")? != 0,
        started_at: row.u64("started_at")?,
        ended_at: row.opt_u64("ended_at")?,
        outcome,
        detail: row.text("detail")?,
        prove_ms: row
            .opt_i64("prove_ms")?
            .map(|ms| to_u64(ms, "prove_ms"))
            .transpose()?,
    })
}
