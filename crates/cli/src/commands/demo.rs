// WIRE: temporary scaffolding; the body is written by whoever wires the demo.
use crate::args::DemoArgs;

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let _ = args;
    Err(anyhow::anyhow!("not wired yet"))
}
