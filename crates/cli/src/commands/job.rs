//! `proofmill job show|cancel|retry`: a job with its history of attempts, and the
//! operator's controls over one job.

use super::status::{Admin, age_s, check, connect, request_failed, table};
use crate::args::{JobCancelArgs, JobRetryArgs, JobShowArgs};
use proofmill_proto::v1::{
    AttemptInfo, CancelJobRequest, JobStatusRequest, JobStatusResponse, JobsListRequest,
    RetryJobRequest,
};
use serde_json::{Value, json};
use std::fmt::Write as _;

pub async fn show(args: JobShowArgs) -> anyhow::Result<()> {
    let jobs = &args.jobs;
    let url = &jobs.coordinator;
    let mut admin = connect(url, &jobs.access).await?;
    let types = match &jobs.proof_type {
        Some(t) => vec![t.clone()],
        None => batch_types(&mut admin, url, (jobs.chain_id, jobs.batch)).await?,
    };
    if types.is_empty() {
        anyhow::bail!("JOB_NOT_FOUND: no jobs of batch {}", jobs.batch);
    }
    for proof_type in types {
        let status = admin
            .job_status(JobStatusRequest {
                chain_id: jobs.chain_id,
                batch: jobs.batch,
                proof_type,
            })
            .await
            .map_err(|s| request_failed("JobStatus", url, s))?
            .into_inner();
        check(status.error.clone())?;
        if args.json {
            println!("{}", serde_json::to_string(&job_json(&status))?);
        } else {
            print!("{}", render(&status));
        }
    }
    Ok(())
}

/// The proof types of the jobs of `batch` of `chain_id` (0: the coordinator's own chain).
async fn batch_types(
    admin: &mut Admin,
    url: &str,
    (chain_id, batch): (u64, u64),
) -> anyhow::Result<Vec<String>> {
    let listed = admin
        .jobs_list(JobsListRequest {
            chain_id,
            from_batch: batch,
            limit: 1000,
            ..Default::default()
        })
        .await
        .map_err(|s| request_failed("JobsList", url, s))?
        .into_inner();
    check(listed.error)?;
    Ok(listed
        .jobs
        .into_iter()
        .filter(|j| j.batch == batch)
        .map(|j| j.proof_type)
        .collect())
}

fn render(s: &JobStatusResponse) -> String {
    let mut out = String::new();
    let Some(job) = &s.job else { return out };
    let _ = write!(
        out,
        "job {}/{}: {} (failed attempts {}, lost {})",
        job.batch, job.proof_type, job.state, job.failed_attempts, job.lost_attempts
    );
    if s.proof_size > 0 {
        let _ = write!(
            out,
            ", proof of {} bytes by {}",
            s.proof_size, s.proof_prover
        );
    }
    out.push('\n');
    if !job.last_error.is_empty() {
        let _ = writeln!(out, "  last error: {}", job.last_error);
    }
    if let Some(t) = &job.commit_tx {
        let _ = writeln!(
            out,
            "  commit tx {} (block {}, gas {})",
            t.tx_hash, t.block, t.gas_used
        );
    }
    if let Some(t) = &job.verify_tx {
        let _ = writeln!(
            out,
            "  verify tx {} (batches {}..={}, gas {})",
            t.tx_hash, t.first_batch, t.last_batch, t.gas_used
        );
    }
    if s.attempts.is_empty() {
        let _ = writeln!(out, "  no attempts recorded");
        return out;
    }
    let mut rows = vec![
        [
            "token", "prover", "started", "ran", "outcome", "prove", "detail",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for a in &s.attempts {
        rows.push(vec![
            a.fencing_token.to_string(),
            prover(a),
            format!("{}s ago", age_s(a.started_at_ms)),
            ran(a),
            if a.outcome.is_empty() {
                "running".into()
            } else {
                a.outcome.clone()
            },
            a.prove_ms.map(|ms| format!("{ms} ms")).unwrap_or_default(),
            a.detail.clone(),
        ]);
    }
    table(
        &mut out,
        &rows,
        &[true, false, true, true, false, true, false],
    );
    out
}

fn prover(a: &AttemptInfo) -> String {
    let backup = if a.backup { " (backup)" } else { "" };
    format!("{} {}{backup}", a.prover_name, a.prover_id)
}

/// How long the attempt ran (so far, while it runs).
fn ran(a: &AttemptInfo) -> String {
    let ms = if a.ended_at_ms > 0 {
        a.ended_at_ms.saturating_sub(a.started_at_ms)
    } else {
        age_s(a.started_at_ms) * 1000
    };
    format!("{:.1}s", ms as f64 / 1000.0)
}

fn job_json(s: &JobStatusResponse) -> Value {
    let job = s.job.clone().unwrap_or_default();
    let attempts: Vec<Value> = s
        .attempts
        .iter()
        .map(|a| {
            json!({
                "fencing_token": a.fencing_token,
                "prover_id": a.prover_id,
                "prover_name": a.prover_name,
                "backup": a.backup,
                "started_at_ms": a.started_at_ms,
                "ended_at_ms": (a.ended_at_ms > 0).then_some(a.ended_at_ms),
                "outcome": (!a.outcome.is_empty()).then_some(&a.outcome),
                "detail": a.detail,
                "prove_ms": a.prove_ms,
            })
        })
        .collect();
    json!({
        "batch": job.batch,
        "proof_type": job.proof_type,
        "state": job.state,
        "failed_attempts": job.failed_attempts,
        "lost_attempts": job.lost_attempts,
        "last_error": (!job.last_error.is_empty()).then_some(&job.last_error),
        "proof_size": (s.proof_size > 0).then_some(s.proof_size),
        "proof_prover": (!s.proof_prover.is_empty()).then_some(&s.proof_prover),
        "commit_tx": job.commit_tx,
        "verify_tx": job.verify_tx,
        "attempts": attempts,
    })
}

pub async fn cancel(args: JobCancelArgs) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let response = connect(url, &args.access)
        .await?
        .cancel_job(CancelJobRequest {
            chain_id: args.chain_id,
            batch: args.batch,
            proof_type: args.proof_type.clone(),
            reason: args.reason.clone(),
        })
        .await
        .map_err(|s| request_failed("CancelJob", url, s))?
        .into_inner();
    check(response.error)?;
    let what = if response.cancelled {
        "cancelled; `proofmill job retry` queues it again"
    } else {
        "was cancelled already"
    };
    println!("job {}/{} {what}", args.batch, args.proof_type);
    Ok(())
}

pub async fn retry(args: JobRetryArgs) -> anyhow::Result<()> {
    let jobs = &args.jobs;
    let url = &jobs.coordinator;
    let response = connect(url, &jobs.access)
        .await?
        .retry_job(RetryJobRequest {
            chain_id: jobs.chain_id,
            batch: jobs.batch,
            proof_type: jobs.proof_type.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| request_failed("RetryJob", url, s))?
        .into_inner();
    check(response.error)?;
    match &jobs.proof_type {
        Some(t) => println!("job {}/{t} queued again", jobs.batch),
        None => println!(
            "batch {}: {} failed jobs queued again",
            jobs.batch, response.retried
        ),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofmill_proto::v1::JobInfo;

    #[test]
    fn a_job_renders_with_its_attempts() {
        let attempt = |token: u64, outcome: &str, backup: bool| AttemptInfo {
            fencing_token: token,
            prover_id: format!("prv-{token}"),
            prover_name: "p1".into(),
            backup,
            started_at_ms: 1_000,
            ended_at_ms: if outcome.is_empty() { 0 } else { 3_500 },
            outcome: outcome.into(),
            detail: if outcome == "failed" {
                "out of memory".into()
            } else {
                String::new()
            },
            prove_ms: (outcome == "proven").then_some(2_400),
        };
        let status = JobStatusResponse {
            job: Some(JobInfo {
                batch: 7,
                proof_type: "groth16".into(),
                state: "proven".into(),
                failed_attempts: 1,
                ..Default::default()
            }),
            proof_size: 256,
            proof_prover: "p1".into(),
            error: None,
            attempts: vec![
                attempt(1, "failed", false),
                attempt(2, "proven", false),
                attempt(3, "", true),
            ],
        };
        let text = render(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "job 7/groth16: proven (failed attempts 1, lost 0), proof of 256 bytes by p1"
        );
        assert!(
            lines[2].contains("failed") && lines[2].contains("out of memory"),
            "{text}"
        );
        assert!(lines[2].contains("2.5s"), "ran from start to end: {text}");
        assert!(
            lines[3].contains("proven") && lines[3].contains("2400 ms"),
            "{text}"
        );
        assert!(
            lines[4].contains("running") && lines[4].contains("(backup)"),
            "{text}"
        );
        let v = job_json(&status);
        assert_eq!(v["attempts"][2]["outcome"], Value::Null);
        assert_eq!(v["attempts"][1]["prove_ms"], 2400);
        assert_eq!(v["commit_tx"], Value::Null);
    }

    #[test]
    fn a_settled_job_names_its_transactions() {
        use proofmill_proto::v1::{CommitTxInfo, VerifyTxInfo};
        let status = JobStatusResponse {
            job: Some(JobInfo {
                batch: 7,
                proof_type: "exec".into(),
                state: "proven".into(),
                commit_tx: Some(CommitTxInfo {
                    tx_hash: "0xc0".into(),
                    gas_used: 51_000,
                    block: 12,
                    recorded_at_ms: 5,
                }),
                verify_tx: Some(VerifyTxInfo {
                    tx_hash: "0x5e".into(),
                    first_batch: 6,
                    last_batch: 8,
                    gas_used: 90_000,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let text = render(&status);
        assert!(
            text.contains("  commit tx 0xc0 (block 12, gas 51000)\n"),
            "{text}"
        );
        assert!(
            text.contains("  verify tx 0x5e (batches 6..=8, gas 90000)\n"),
            "{text}"
        );
        let v = job_json(&status);
        assert_eq!(v["commit_tx"]["tx_hash"], "0xc0");
        assert_eq!(v["commit_tx"]["block"], 12);
        assert_eq!(v["verify_tx"]["last_batch"], 8);
    }
}
