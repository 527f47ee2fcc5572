//! Logging to stderr through `tracing`, filtered by `RUST_LOG` (default `info`).
//!
//! Colour only when stderr is a terminal and `NO_COLOR` is unset (or empty, as
//! <https://no-color.org> says): escape codes in a file or journald are noise. `auto`, the
//! default format, is `pretty` on a terminal and one line per event (`compact`) elsewhere.

use crate::args::LogFormat;
use anyhow::anyhow;
use std::io::IsTerminal as _;
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
    let terminal = std::io::stderr().is_terminal();
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal && !no_color && format != LogFormat::Json);
    let result = match resolve(format, terminal) {
        LogFormat::Pretty => builder.pretty().try_init(),
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Compact | LogFormat::Auto => builder.compact().try_init(),
    };
    result.map_err(|e| anyhow!("cannot initialise logging: {e}"))
}

/// The format `auto` stands for: multi-line `pretty` for a person at a terminal, one line per
/// event for files, pipes and journald.
fn resolve(format: LogFormat, terminal: bool) -> LogFormat {
    match format {
        LogFormat::Auto if terminal => LogFormat::Pretty,
        LogFormat::Auto => LogFormat::Compact,
        other => other,
    }
}
