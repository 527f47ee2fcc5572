// WIRE: temporary scaffolding; the body is written by whoever wires the coordinator.
use crate::args::CoordinatorArgs;

pub async fn run(args: CoordinatorArgs) -> anyhow::Result<()> {
    let _ = args;
    Err(anyhow::anyhow!("not wired yet"))
}
