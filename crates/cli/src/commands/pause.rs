//! `proofmill pause` / `resume` / `settle-now` / `commit-now`: an operator's controls, one
//! `AdminService` call each.

use super::status::{check, connect, request_failed};
use crate::args::{CommitNowArgs, PauseArgs, ResumeArgs, SettleNowArgs};
use proofmill_proto::v1::{
    CommitNowRequest, PauseComponentRequest, ResumeComponentRequest, SettleNowRequest,
};

pub async fn pause(args: PauseArgs) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let response = connect(url, &args.access)
        .await?
        .pause_component(PauseComponentRequest {
            component: args.component.clone(),
            reason: args.reason.clone(),
        })
        .await
        .map_err(|s| request_failed("PauseComponent", url, s))?
        .into_inner();
    check(response.error)?;
    let since = response.pause.map_or(0, |p| p.since_ms);
    let age = super::status::age_s(since);
    if response.changed {
        println!("{} paused", args.component);
    } else {
        println!(
            "{} was paused already ({age} s ago); unchanged",
            args.component
        );
    }
    Ok(())
}

pub async fn resume(args: ResumeArgs) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let response = connect(url, &args.access)
        .await?
        .resume_component(ResumeComponentRequest {
            component: args.component.clone(),
        })
        .await
        .map_err(|s| request_failed("ResumeComponent", url, s))?
        .into_inner();
    check(response.error)?;
    if response.changed {
        println!("{} resumed", args.component);
    } else {
        println!("{} was not paused; unchanged", args.component);
    }
    Ok(())
}

pub async fn settle_now(args: SettleNowArgs) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let response = connect(url, &args.access)
        .await?
        .settle_now(SettleNowRequest {})
        .await
        .map_err(|s| request_failed("SettleNow", url, s))?
        .into_inner();
    check(response.error)?;
    match response.last_verify_tx {
        Some(t) if response.settled_batches > 0 => println!(
            "settled {} batches; last verified batch {} (last tx {}, batches {}..={}, gas {})",
            response.settled_batches,
            response.last_verified_batch,
            t.tx_hash,
            t.first_batch,
            t.last_batch,
            t.gas_used
        ),
        _ => println!(
            "settled {} batches; last verified batch {}",
            response.settled_batches, response.last_verified_batch
        ),
    }
    Ok(())
}

pub async fn commit_now(args: CommitNowArgs) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let response = connect(url, &args.access)
        .await?
        .commit_now(CommitNowRequest { batch: args.batch })
        .await
        .map_err(|s| request_failed("CommitNow", url, s))?
        .into_inner();
    check(response.error)?;
    if response.first_batch == response.last_batch {
        println!("committed batch {}", response.last_batch);
    } else {
        println!(
            "committed batches {}..={}",
            response.first_batch, response.last_batch
        );
    }
    Ok(())
}
