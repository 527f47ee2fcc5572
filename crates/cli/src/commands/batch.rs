//! `proofmill batch replace|cancel`: one `AdminService.ReplaceBatchInput` or `CancelBatch`
//! call.

use super::status::{check, connect, request_failed};
use crate::args::{BatchCancelArgs, BatchReplaceArgs};
use anyhow::Context as _;
use proofmill_proto::v1::{CancelBatchRequest, ReplaceBatchInputRequest};

pub async fn replace(args: BatchReplaceArgs) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let input = std::fs::read(&args.input)
        .with_context(|| format!("reading the input {}", args.input.display()))?;
    let response = connect(url, &args.access)
        .await?
        .replace_batch_input(ReplaceBatchInputRequest {
            batch: args.batch,
            version: args.version_tag.clone(),
            input,
            public_values: args.public_values.0.clone(),
            proof_types: args.proof_types.clone(),
        })
        .await
        .map_err(|s| request_failed("ReplaceBatchInput", url, s))?
        .into_inner();
    check(response.error)?;
    println!(
        "batch {}: input replaced; its earlier tasks are cancelled and it is proven afresh",
        args.batch
    );
    Ok(())
}

pub async fn cancel(args: BatchCancelArgs) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let response = connect(url, &args.access)
        .await?
        .cancel_batch(CancelBatchRequest {
            batch: args.batch,
            reason: args.reason.clone(),
        })
        .await
        .map_err(|s| request_failed("CancelBatch", url, s))?
        .into_inner();
    check(response.error)?;
    println!(
        "batch {}: {} jobs cancelled; submit its number again (LaunchProof) to prove it anew",
        args.batch, response.cancelled
    );
    Ok(())
}
