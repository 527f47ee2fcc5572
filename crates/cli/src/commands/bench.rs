// WIRE: temporary scaffolding; the body is written by whoever wires the dispatch benchmark.
// `args.db` is `None` unless given: create `sqlite://` + a temporary file then.
use crate::args::BenchDispatchArgs;

pub async fn dispatch(args: BenchDispatchArgs) -> anyhow::Result<()> {
    let _ = args;
    Err(anyhow::anyhow!("not wired yet"))
}
