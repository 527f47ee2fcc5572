//! `proofmill cordon` / `uncordon`: one `AdminService.CordonProver` call.

use super::status::{check, connect, request_failed};
use crate::args::CordonArgs;
use proofmill_proto::v1::CordonProverRequest;

pub async fn run(args: CordonArgs, cordoned: bool) -> anyhow::Result<()> {
    let url = &args.coordinator;
    let response = connect(url, &args.access)
        .await?
        .cordon_prover(CordonProverRequest {
            prover_id: args.prover_id.clone(),
            cordoned,
        })
        .await
        .map_err(|s| request_failed("CordonProver", url, s))?
        .into_inner();
    check(response.error)?;
    let what = if cordoned {
        "cordoned: it gets no new tasks"
    } else {
        "back in rotation"
    };
    println!("prover {} {what}", args.prover_id);
    Ok(())
}
