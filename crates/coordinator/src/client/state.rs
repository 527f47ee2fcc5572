//! A batch's state as the client API tells it: per proof type its job, and the batch's phase
//! and failure made of them.

use crate::error::CoordinatorError;
use crate::intake::Intake;
use proofmill_proto::v1::{BatchPhase, BatchStatus, FailureReason, ProofJobStatus};
use proofmill_types::{BatchId, Job, JobState};

/// The state of batch `id` from the store; `None` if there is no such batch.
pub(crate) async fn read(
    intake: &Intake,
    id: BatchId,
) -> Result<Option<BatchStatus>, CoordinatorError> {
    let Some(batch) = intake.store().batch(id.chain, id.number).await? else {
        return Ok(None);
    };
    let mut jobs = intake.batch_jobs(id).await?;
    // Only the batch's current proof types (a replaced input may have named others).
    jobs.retain(|j| batch.required.contains(&j.key.proof_type));
    jobs.sort_by(|a, b| a.key.proof_type.cmp(&b.key.proof_type));
    let (phase, failure, detail) = phase(&jobs, batch.required.len());
    Ok(Some(BatchStatus {
        chain_id: id.chain,
        batch_number: id.number,
        protocol_version: batch.version.clone(),
        phase: phase as i32,
        terminal: phase != BatchPhase::BatchProving,
        jobs: jobs.iter().map(job_status).collect(),
        failure: failure as i32,
        failure_detail: detail,
        input_digest: batch.input_digest.0.to_vec(),
        input_size: batch.input_size,
        created_at_ms: batch.created_at,
        lagged: false,
    }))
}

fn job_failure(state: JobState) -> FailureReason {
    match state {
        JobState::Failed => FailureReason::ProvingFailed,
        JobState::Cancelled => FailureReason::Cancelled,
        _ => FailureReason::Unspecified,
    }
}

fn job_status(j: &Job) -> ProofJobStatus {
    ProofJobStatus {
        proof_type: j.key.proof_type.to_string(),
        state: j.state.to_string(),
        failed_attempts: j.failed_attempts,
        lost_attempts: j.lost_attempts,
        failure: job_failure(j.state) as i32,
        last_error: j.last_error.clone().unwrap_or_default(),
    }
}

/// Terminal once every job is: cancelled if one was, else failed if one did, else proven.
/// Until then (also before its jobs are stored) proving.
fn phase(jobs: &[Job], required: usize) -> (BatchPhase, FailureReason, String) {
    let all_terminal = jobs.len() >= required.max(1) && jobs.iter().all(|j| j.state.is_terminal());
    if !all_terminal {
        return (
            BatchPhase::BatchProving,
            FailureReason::Unspecified,
            String::new(),
        );
    }
    let first = |state: JobState| jobs.iter().find(|j| j.state == state);
    let detail = |j: &Job| {
        let error = j.last_error.as_deref().unwrap_or("");
        match j.state {
            JobState::Failed => format!(
                "{} failed after {} failed attempts: {error}",
                j.key.proof_type, j.failed_attempts
            ),
            _ => format!("{} cancelled: {error}", j.key.proof_type),
        }
    };
    if let Some(j) = first(JobState::Cancelled) {
        (
            BatchPhase::BatchCancelled,
            FailureReason::Cancelled,
            detail(j),
        )
    } else if let Some(j) = first(JobState::Failed) {
        (
            BatchPhase::BatchFailed,
            FailureReason::ProvingFailed,
            detail(j),
        )
    } else {
        (
            BatchPhase::BatchProven,
            FailureReason::Unspecified,
            String::new(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofmill_types::{JobKey, ProofType};

    fn job(t: &str, state: JobState) -> Job {
        let mut j = Job::new_queued(
            JobKey::new(
                proofmill_types::DEFAULT_CHAIN,
                1,
                ProofType::new(t).unwrap(),
            ),
            "v1".into(),
            0,
        );
        j.state = state;
        j
    }

    #[test]
    fn a_batch_is_terminal_once_every_job_is() {
        use JobState::*;
        let p = |jobs: &[Job], n| phase(jobs, n).0;
        assert_eq!(p(&[], 1), BatchPhase::BatchProving);
        assert_eq!(
            p(&[job("a", Proven)], 2),
            BatchPhase::BatchProving,
            "a job not stored yet"
        );
        assert_eq!(
            p(&[job("a", Proven), job("b", Leased)], 2),
            BatchPhase::BatchProving
        );
        assert_eq!(
            p(&[job("a", Proven), job("b", Proven)], 2),
            BatchPhase::BatchProven
        );
        assert_eq!(
            p(&[job("a", Proven), job("b", Failed)], 2),
            BatchPhase::BatchFailed
        );
        assert_eq!(
            p(&[job("a", Failed), job("b", Cancelled)], 2),
            BatchPhase::BatchCancelled
        );
        let (_, why, detail) = phase(&[job("a", Failed)], 1);
        assert_eq!(why, FailureReason::ProvingFailed);
        assert!(
            detail.starts_with("a failed after 0 failed attempts"),
            "{detail}"
        );
    }
}
