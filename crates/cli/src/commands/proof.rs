//! `proofmill proof get|wait`: `ClientService.GetProof`, or `WaitProof` long polls until the
//! batch is terminal.

use super::status::{ClientApi, connect_client, request_failed};
use crate::args::{BatchRef, ProofGetArgs, ProofWaitArgs};
use anyhow::Context as _;
use proofmill_proto::v1::{BatchPhase, BatchProof, GetProofRequest, WaitProofRequest};
use std::path::Path;
use std::time::{Duration, Instant};

/// One long poll: the server's cap.
const POLL_MS: u64 = 60_000;

async fn connect(b: &BatchRef) -> anyhow::Result<ClientApi> {
    // A long poll takes up to its own timeout; the call's is a little longer.
    connect_client(
        &b.coordinator,
        &b.access,
        Duration::from_millis(POLL_MS + 15_000),
    )
    .await
}

pub async fn get(args: ProofGetArgs) -> anyhow::Result<()> {
    let b = &args.batch;
    let proofs = connect(b)
        .await?
        .get_proof(GetProofRequest {
            chain_id: b.chain_id,
            batch_number: b.batch,
            proof_type: args.proof_type.clone().unwrap_or_default(),
        })
        .await
        .map_err(|s| request_failed("GetProof", &b.coordinator, s))?
        .into_inner()
        .proofs;
    show(b.batch, &proofs, args.out.as_deref())
}

pub async fn wait(args: ProofWaitArgs) -> anyhow::Result<()> {
    let b = &args.batch;
    let mut client = connect(b).await?;
    let until = (args.timeout > 0).then(|| Instant::now() + Duration::from_millis(args.timeout));
    loop {
        let left = until.map_or(POLL_MS, |u| {
            u.saturating_duration_since(Instant::now()).as_millis() as u64
        });
        let r = client
            .wait_proof(WaitProofRequest {
                chain_id: b.chain_id,
                batch_number: b.batch,
                timeout_ms: left.clamp(1, POLL_MS) as u32,
            })
            .await
            .map_err(|s| request_failed("WaitProof", &b.coordinator, s))?
            .into_inner();
        let batch = r.batch.unwrap_or_default();
        if !r.timed_out {
            return match BatchPhase::try_from(batch.phase) {
                Ok(BatchPhase::BatchProven) => show(b.batch, &r.proofs, args.out.as_deref()),
                _ => anyhow::bail!(
                    "chain {} batch {}: {}: {}",
                    b.chain_id,
                    b.batch,
                    proofmill_proto::v1::FailureReason::try_from(batch.failure)
                        .map_or("FAILED", |f| f.as_str_name()),
                    batch.failure_detail
                ),
            };
        }
        if until.is_some_and(|u| Instant::now() >= u) {
            anyhow::bail!(
                "chain {} batch {}: not proven within {} ms (still proving)",
                b.chain_id,
                b.batch,
                args.timeout
            );
        }
    }
}

/// Prints each proof as `TYPE HEX`, or writes it to `out/batch-N.TYPE.proof`.
fn show(batch: u64, proofs: &[BatchProof], out: Option<&Path>) -> anyhow::Result<()> {
    for p in proofs {
        match out {
            Some(dir) => {
                let path = dir.join(format!("batch-{batch}.{}.proof", p.proof_type));
                std::fs::write(&path, &p.proof)
                    .with_context(|| format!("writing {}", path.display()))?;
                println!(
                    "{} {} bytes -> {}",
                    p.proof_type,
                    p.proof.len(),
                    path.display()
                );
            }
            None => println!("{} {}", p.proof_type, hex::encode(&p.proof)),
        }
    }
    Ok(())
}
