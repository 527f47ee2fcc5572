use crate::{DEFAULT_CHAIN, JobKey};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdError {
    #[error("proof type {0:?} is invalid: use 1-32 chars of [a-z0-9_-], starting with a letter")]
    ProofType(String),
    #[error(
        "task id {0:?} is invalid: expected <batch>/<proof_type> or <chain>:<batch>/<proof_type>"
    )]
    TaskId(String),
}

/// Name of a proof system a batch must be proven with (`exec`, `groth16`, `stark`, ...).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProofType(String);

impl ProofType {
    pub fn new(name: impl Into<String>) -> Result<Self, IdError> {
        let name = name.into();
        let valid = (1..=32).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if valid {
            Ok(Self(name))
        } else {
            Err(IdError::ProofType(name))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses a comma-separated list (`exec,groth16`), rejecting duplicates and empties.
    pub fn parse_list(list: &str) -> Result<Vec<ProofType>, IdError> {
        let mut out: Vec<ProofType> = Vec::new();
        for part in list.split(',').map(str::trim) {
            let pt = ProofType::new(part)?;
            if !out.contains(&pt) {
                out.push(pt);
            }
        }
        Ok(out)
    }
}

impl TryFrom<String> for ProofType {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        ProofType::new(s)
    }
}
impl From<ProofType> for String {
    fn from(p: ProofType) -> String {
        p.0
    }
}
impl std::str::FromStr for ProofType {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        ProofType::new(s)
    }
}
impl fmt::Display for ProofType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for ProofType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Identity the coordinator gives a prover at registration; the prover presents it again on
/// reconnect so its leases survive a dropped stream or a coordinator restart.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ProverId(pub String);

impl fmt::Display for ProverId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl fmt::Debug for ProverId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Monotonic lease number. Every lease gets a fresh one; a result is accepted only with the
/// token of the job's current lease, so a late result from a lost lease can never overwrite.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct FencingToken(pub u64);

impl fmt::Display for FencingToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A task is one job as seen on the wire: its [`JobKey`]'s text, `"<batch>/<proof_type>"` on
/// the default chain (what provers have always been sent) and `"<chain>:<batch>/<proof_type>"`
/// on others.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct TaskId;

impl TaskId {
    pub fn format(key: &JobKey) -> String {
        key.to_string()
    }

    pub fn parse(s: &str) -> Result<JobKey, IdError> {
        let err = || IdError::TaskId(s.chars().take(80).collect());
        let (job, t) = s.split_once('/').ok_or_else(err)?;
        let (chain, batch) = match job.split_once(':') {
            Some((c, b)) => (canonical_u64(c).ok_or_else(err)?, b),
            None => (DEFAULT_CHAIN, job),
        };
        // The default chain is never written out: one key, one text.
        if job.contains(':') && chain == DEFAULT_CHAIN {
            return Err(err());
        }
        let batch = canonical_u64(batch).ok_or_else(err)?;
        let pt = ProofType::new(t).map_err(|_| err())?;
        Ok(JobKey::new(chain, batch, pt))
    }
}

/// Only the canonical form `format` writes: digits, no sign, no leading zero.
fn canonical_u64(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_type_validation() {
        assert!(ProofType::new("exec").is_ok());
        assert!(ProofType::new("groth16").is_ok());
        assert!(ProofType::new("risc0-v2_x").is_ok());
        for bad in ["", "Exec", "1abc", "a b", "a/b", &"x".repeat(33)] {
            assert!(ProofType::new(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            ProofType::parse_list("exec, stark,exec").unwrap(),
            vec![
                ProofType::new("exec").unwrap(),
                ProofType::new("stark").unwrap()
            ]
        );
        assert!(ProofType::parse_list("exec,,stark").is_err());
    }

    #[test]
    fn task_id_round_trip() {
        let pt = ProofType::new("exec").unwrap();
        let home = JobKey::new(DEFAULT_CHAIN, 42, pt.clone());
        assert_eq!(TaskId::format(&home), "42/exec");
        assert_eq!(TaskId::parse("42/exec").unwrap(), home);
        let other = JobKey::new(7, 42, pt);
        assert_eq!(TaskId::format(&other), "7:42/exec");
        assert_eq!(TaskId::parse("7:42/exec").unwrap(), other);
        for bad in [
            "",
            "42",
            "x/exec",
            "42/",
            "42/BAD",
            "-1/exec",
            "+1/exec",
            "01/exec",
            " 1/exec",
            "1:42/exec",
            ":42/exec",
            "7:/exec",
            "07:42/exec",
            "7:42:1/exec",
            "x:42/exec",
        ] {
            assert!(TaskId::parse(bad).is_err(), "{bad:?} accepted");
        }
    }
}
