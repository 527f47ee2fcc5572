//! `proofmill job cancel` / `job retry`: one `AdminService` call each.

use super::status::{check, connect, request_failed};
use crate::args::{JobCancelArgs, JobRetryArgs};
use proofmill_proto::v1::{CancelJobRequest, RetryJobRequest};

pub async fn cancel(args: JobCancelArgs) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let response = connect(url)
        .await?
        .cancel_job(CancelJobRequest {
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
    let url = &args.coordinator;
    let response = connect(url)
        .await?
        .retry_job(RetryJobRequest {
            batch: args.batch,
            proof_type: args.proof_type.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| request_failed("RetryJob", url, s))?
        .into_inner();
    check(response.error)?;
    match &args.proof_type {
        Some(t) => println!("job {}/{t} queued again", args.batch),
        None => println!(
            "batch {}: {} failed jobs queued again",
            args.batch, response.retried
        ),
    }
    Ok(())
}
