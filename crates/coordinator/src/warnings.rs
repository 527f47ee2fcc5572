//! Status warnings: what cannot progress as things stand (queued work no prover in rotation
//! can take, batch numbers missing below the highest one), each with a line for an operator.

use crate::core::Backlog;
use proofmill_scheduler::ProverView;
use proofmill_types::{BatchNumber, ProofType};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WarningKind {
    /// Queued jobs of a version no connected prover in rotation runs (for their proof type).
    UnservedVersion,
    /// A required proof type no connected prover in rotation proves.
    UnservedProofType,
    /// Batch numbers missing below the highest stored batch: settlement stops before them.
    BatchGap,
    /// The batch source (e.g. the gateway to a rollup's core API) failed last time it tried
    /// ([`crate::Intake::report_source_error`]).
    SourceError,
}

impl WarningKind {
    pub fn as_str(self) -> &'static str {
        match self {
            WarningKind::UnservedVersion => "unserved_version",
            WarningKind::UnservedProofType => "unserved_proof_type",
            WarningKind::BatchGap => "batch_gap",
            WarningKind::SourceError => "source_error",
        }
    }
}

/// The last error a batch source reported, until it reports success: (source, error, Unix
/// ms). Written by the source through its intake, read by status.
#[derive(Default)]
pub(crate) struct SourceError(std::sync::Mutex<Option<(String, String, u64)>>);

impl SourceError {
    pub(crate) fn set(&self, error: Option<(String, String, u64)>) {
        *self.0.lock().expect("source error lock") = error;
    }

    /// Replaces any source warning in `warnings` with the current one.
    pub(crate) fn warn(&self, warnings: &mut Vec<StatusWarning>) {
        warnings.retain(|w| w.kind != WarningKind::SourceError);
        if let Some((source, error, at)) = self.0.lock().expect("source error lock").clone() {
            warnings.push(StatusWarning {
                kind: WarningKind::SourceError,
                message: format!("{source}: {error} (at {at} Unix ms)"),
                version: None,
                proof_type: None,
                first_batch: 0,
                last_batch: 0,
            });
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StatusWarning {
    pub kind: WarningKind,
    pub message: String,
    pub version: Option<String>,
    pub proof_type: Option<ProofType>,
    /// The queued batches concerned, or the missing range.
    pub first_batch: BatchNumber,
    pub last_batch: BatchNumber,
}

/// The warnings for this backlog of queued jobs, these provers, required proof types and
/// missing batch ranges.
pub(crate) fn warnings(
    backlog: &[Backlog],
    provers: &[ProverView],
    required: &[ProofType],
    gaps: &[(BatchNumber, BatchNumber)],
) -> Vec<StatusWarning> {
    let serving: Vec<&ProverView> = provers
        .iter()
        .filter(|p| p.connected && p.cordoned.is_none())
        .collect();
    let proves = |t: &ProofType| serving.iter().any(|p| p.info.proof_types.contains(t));
    let mut out = Vec::new();
    for t in required {
        if proves(t) {
            continue;
        }
        let queued: Vec<&Backlog> = backlog.iter().filter(|b| b.proof_type == *t).collect();
        let jobs: u64 = queued.iter().map(|b| b.jobs).sum();
        let first = queued.iter().map(|b| b.first_batch).min().unwrap_or(0);
        let last = queued.iter().map(|b| b.last_batch).max().unwrap_or(0);
        let waiting = if jobs > 0 {
            format!("; {jobs} jobs wait (batches {first}..={last})")
        } else {
            String::new()
        };
        out.push(StatusWarning {
            kind: WarningKind::UnservedProofType,
            message: format!("no connected prover in rotation proves {t}{waiting}"),
            version: None,
            proof_type: Some(t.clone()),
            first_batch: first,
            last_batch: last,
        });
    }
    for b in backlog {
        let t = &b.proof_type;
        if !proves(t) {
            continue; // Said above, for the whole proof type.
        }
        let runs = serving
            .iter()
            .any(|p| p.info.version == b.version && p.info.proof_types.contains(t));
        if runs {
            continue;
        }
        let mut versions: Vec<&str> = serving
            .iter()
            .filter(|p| p.info.proof_types.contains(t))
            .map(|p| p.info.version.as_str())
            .collect();
        versions.sort_unstable();
        versions.dedup();
        out.push(StatusWarning {
            kind: WarningKind::UnservedVersion,
            message: format!(
                "{} {t} jobs of version {:?} wait (batches {}..={}), but no connected prover \
                 in rotation runs that version (they run: {})",
                b.jobs,
                b.version,
                b.first_batch,
                b.last_batch,
                versions.join(", ")
            ),
            version: Some(b.version.clone()),
            proof_type: Some(t.clone()),
            first_batch: b.first_batch,
            last_batch: b.last_batch,
        });
    }
    for &(first, last) in gaps {
        let what = if first == last {
            format!("batch {first} is missing")
        } else {
            format!("batches {first}..={last} are missing")
        };
        out.push(StatusWarning {
            kind: WarningKind::BatchGap,
            message: format!("{what}: settlement stops before {first} until they are submitted"),
            version: None,
            proof_type: None,
            first_batch: first,
            last_batch: last,
        });
    }
    out
}
