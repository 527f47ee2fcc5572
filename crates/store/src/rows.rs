//! Tables of rows passed to one statement as parameters, so that a statement writes any
//! number of rows in one call. The statements read the rows by column name from a row source
//! ([`crate::dialect::Dialect::row_source`]); how a table travels is the dialect's (one JSON
//! parameter on SQLite, one array parameter per column on PostgreSQL).

use crate::codec::{JobRow, ProofRow};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Int,
    Text,
    Bytes,
}

/// Name and kind of each column of a table, in parameter order.
pub(crate) type Columns = [(&'static str, Kind)];

/// One column's values, row by row.
pub(crate) enum Values<'a> {
    Int(Vec<Option<i64>>),
    Text(Vec<Option<&'a str>>),
    Bytes(Vec<Option<&'a [u8]>>),
}

impl Values<'_> {
    pub(crate) fn kind(&self) -> Kind {
        match self {
            Values::Int(_) => Kind::Int,
            Values::Text(_) => Kind::Text,
            Values::Bytes(_) => Kind::Bytes,
        }
    }
}

/// Columns of equal length, in the order of their [`Columns`].
pub(crate) struct Rows<'a> {
    pub len: usize,
    pub columns: Vec<Values<'a>>,
}

impl<'a> Rows<'a> {
    pub(crate) fn new(spec: &Columns, len: usize, columns: Vec<Values<'a>>) -> Self {
        debug_assert!(
            spec.iter()
                .map(|c| c.1)
                .eq(columns.iter().map(Values::kind))
        );
        Rows { len, columns }
    }
}

pub(crate) const JOB_COLUMNS: &Columns = &[
    ("chain", Kind::Int),
    ("batch", Kind::Int),
    ("proof_type", Kind::Text),
    ("state", Kind::Text),
    ("version", Kind::Text),
    ("failed_attempts", Kind::Int),
    ("lost_attempts", Kind::Int),
    ("lease_prover", Kind::Text),
    ("lease_token", Kind::Int),
    ("leased_at", Kind::Int),
    ("lease_deadline", Kind::Int),
    ("not_before", Kind::Int),
    ("last_error", Kind::Text),
    ("updated_at", Kind::Int),
];

pub(crate) fn job_rows<'a>(jobs: &[JobRow<'a>]) -> Rows<'a> {
    let int = |f: fn(&JobRow) -> Option<i64>| Values::Int(jobs.iter().map(f).collect());
    let text = |f: fn(&JobRow<'a>) -> Option<&'a str>| Values::Text(jobs.iter().map(f).collect());
    Rows::new(
        JOB_COLUMNS,
        jobs.len(),
        vec![
            int(|j| Some(j.chain)),
            int(|j| Some(j.batch)),
            text(|j| Some(j.proof_type)),
            text(|j| Some(j.state)),
            text(|j| Some(j.version)),
            int(|j| Some(j.failed_attempts)),
            int(|j| Some(j.lost_attempts)),
            text(|j| j.lease_prover),
            int(|j| j.lease_token),
            int(|j| j.leased_at),
            int(|j| j.lease_deadline),
            int(|j| Some(j.not_before)),
            text(|j| j.last_error),
            int(|j| Some(j.updated_at)),
        ],
    )
}

pub(crate) const KEY_COLUMNS: &Columns = &[
    ("chain", Kind::Int),
    ("batch", Kind::Int),
    ("proof_type", Kind::Text),
];

/// Job keys: (chain, batch, proof type).
pub(crate) fn key_rows<'a>(keys: &[(i64, i64, &'a str)]) -> Rows<'a> {
    Rows::new(
        KEY_COLUMNS,
        keys.len(),
        vec![
            Values::Int(keys.iter().map(|k| Some(k.0)).collect()),
            Values::Int(keys.iter().map(|k| Some(k.1)).collect()),
            Values::Text(keys.iter().map(|k| Some(k.2)).collect()),
        ],
    )
}

pub(crate) const PROOF_COLUMNS: &Columns = &[
    ("chain", Kind::Int),
    ("batch", Kind::Int),
    ("proof_type", Kind::Text),
    ("blob_key", Kind::Text),
    ("size", Kind::Int),
    ("digest", Kind::Bytes),
    ("prover", Kind::Text),
    ("prover_name", Kind::Text),
    ("token", Kind::Int),
    ("leased_at", Kind::Int),
    ("received_at", Kind::Int),
    ("prove_ms", Kind::Int),
    ("inline_data", Kind::Bytes),
];

pub(crate) fn proof_rows<'a>(proofs: &[ProofRow<'a>]) -> Rows<'a> {
    let int = |f: fn(&ProofRow) -> i64| Values::Int(proofs.iter().map(|p| Some(f(p))).collect());
    let text =
        |f: fn(&ProofRow<'a>) -> &'a str| Values::Text(proofs.iter().map(|p| Some(f(p))).collect());
    Rows::new(
        PROOF_COLUMNS,
        proofs.len(),
        vec![
            int(|p| p.chain),
            int(|p| p.batch),
            text(|p| p.proof_type),
            text(|p| p.blob_key),
            int(|p| p.size),
            Values::Bytes(proofs.iter().map(|p| Some(p.digest)).collect()),
            text(|p| p.prover),
            text(|p| p.prover_name),
            int(|p| p.token),
            int(|p| p.leased_at),
            int(|p| p.received_at),
            int(|p| p.prove_ms),
            Values::Bytes(proofs.iter().map(|p| p.inline).collect()),
        ],
    )
}

pub(crate) const TYPE_COLUMNS: &Columns = &[("proof_type", Kind::Text)];

pub(crate) fn type_rows<'a>(types: &[&'a str]) -> Rows<'a> {
    Rows::new(
        TYPE_COLUMNS,
        types.len(),
        vec![Values::Text(types.iter().map(|t| Some(*t)).collect())],
    )
}
