// WIRE: temporary scaffolding; the body is written by whoever wires the prover.
use crate::args::ProverArgs;

pub async fn run(args: ProverArgs) -> anyhow::Result<()> {
    let _ = args;
    Err(anyhow::anyhow!("not wired yet"))
}
