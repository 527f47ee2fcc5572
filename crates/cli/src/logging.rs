//! Logging to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).

use crate::args::LogFormat;
use anyhow::anyhow;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

pub fn init(format: LogFormat, quiet: bool) -> anyhow::Result<()> {
    let level = if quiet {
        LevelFilter::WARN
    } else {
        LevelFilter::INFO
    };
    let filter = EnvFilter::builder()
        .with_default_directive(level.into())
        .from_env()
        .map_err(|e| anyhow!("invalid RUST_LOG: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Pretty => builder.pretty().try_init(),
        LogFormat::Compact => builder.compact().try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    result.map_err(|e| anyhow!("cannot initialise logging: {e}"))
}
