//! `proofmill batch replace|cancel`: one `AdminService.ReplaceBatchInput` or `CancelBatch`
//! call; `proofmill submit`: one `ClientService.SubmitBatch`, the input streamed from its
//! file.

use super::status::{check, connect, connect_client, request_failed};
use crate::args::{BatchCancelArgs, BatchReplaceArgs, SubmitArgs};
use anyhow::Context as _;
use proofmill_proto::v1::submit_batch_request::Part;
use proofmill_proto::v1::{
    BatchPhase, CancelBatchRequest, ReplaceBatchInputRequest, SubmitBatchRequest, SubmitHeader,
};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

/// Bytes of input per `SubmitBatch` message.
const CHUNK: usize = 1 << 20;
/// Longest a submission takes (a large input on a slow link).
const SUBMIT_TIMEOUT: Duration = Duration::from_secs(3600);

pub async fn submit(args: SubmitArgs) -> anyhow::Result<()> {
    let b = &args.batch;
    let url = &b.coordinator;
    let header = SubmitHeader {
        chain_id: b.chain_id,
        batch_number: b.batch,
        protocol_version: args.version_tag.clone(),
        proof_types: args.proof_types.clone(),
        public_values: args.public_values.0.clone(),
        input_url: args.input_url.clone().unwrap_or_default(),
        input_digest: args.digest.map(|d| d.to_vec()).unwrap_or_default(),
    };
    let first = SubmitBatchRequest {
        part: Some(Part::Header(header)),
    };
    let file = match &args.input {
        Some(path) => Some(
            tokio::fs::File::open(path)
                .await
                .with_context(|| format!("opening the input {}", path.display()))?,
        ),
        None => None,
    };
    // The file read as the call sends: never held whole.
    let chunks = futures::stream::unfold(file, |file| async move {
        let mut file = file?;
        let mut buf = Vec::with_capacity(CHUNK);
        match (&mut file).take(CHUNK as u64).read_to_end(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(_) => Some((
                SubmitBatchRequest {
                    part: Some(Part::Chunk(buf)),
                },
                Some(file),
            )),
        }
    });
    use futures::StreamExt as _;
    let messages = futures::stream::iter([first]).chain(chunks);
    let response = connect_client(url, &b.access, SUBMIT_TIMEOUT)
        .await?
        .submit_batch(messages)
        .await
        .map_err(|s| request_failed("SubmitBatch", url, s))?
        .into_inner();
    let phase = response
        .batch
        .as_ref()
        .and_then(|s| BatchPhase::try_from(s.phase).ok())
        .map_or("?", |p| p.as_str_name());
    println!(
        "chain {} batch {}: {} ({phase})",
        b.chain_id,
        b.batch,
        match response.created {
            true => "submitted",
            false => "already submitted with this input",
        }
    );
    Ok(())
}

pub async fn replace(args: BatchReplaceArgs) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let input = std::fs::read(&args.input)
        .with_context(|| format!("reading the input {}", args.input.display()))?;
    let response = connect(url, &args.access)
        .await?
        .replace_batch_input(ReplaceBatchInputRequest {
            chain_id: args.chain_id,
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
            chain_id: args.chain_id,
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
