//! `proofmill`: the command-line front end. Parsing and configuration live in [`args`] and
//! [`config`]; each subcommand is a module of [`commands`].

mod args;
mod backends;
mod commands;
mod config;
mod logging;
mod telemetry;

use std::process::ExitCode;

fn main() -> ExitCode {
    let (cli, effective) = match config::parse_effective(std::env::args_os()) {
        Ok((cli, effective)) if cli.global.print_config => {
            print!("{}", effective.render());
            return ExitCode::SUCCESS;
        }
        Ok(parsed) => parsed,
        Err(e) => match e.downcast::<clap::Error>() {
            // Usage errors, `--help` and `--version`: clap prints them and picks the exit code.
            Ok(clap_error) => clap_error.exit(),
            Err(e) => return fail(&e),
        },
    };
    // The demo and benchmarks print their own progress on stdout, and the monitor owns the
    // terminal: keep logs to warnings.
    let quiet = matches!(
        cli.command,
        args::Command::Demo(_) | args::Command::Bench { .. } | args::Command::Monitor(_)
    );
    if let Err(e) = logging::init(cli.global.log_format, quiet) {
        return fail(&e);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::new(e).context("cannot start the tokio runtime")),
    };
    match runtime.block_on(commands::run(cli.command, &effective)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&e),
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::FAILURE
}
