//! One module per subcommand.

pub mod batch;
pub mod bench;
pub mod coordinator;
pub mod cordon;
pub mod demo;
pub mod devnet_node;
pub mod gateway;
pub mod job;
pub mod l1;
pub mod market_local;
pub mod monitor;
pub mod network;
pub mod pause;
pub mod proof;
pub mod proof_manager;
pub mod prover;
pub mod status;
pub mod token;
pub mod watch;

use crate::args::{
    BatchCommand, BenchCommand, Command, DevnetCommand, JobCommand, L1Command, ProofCommand,
};
use crate::config::Effective;

/// Runs `command`; `effective` is its configuration with each value's source (a
/// coordinator tells it in `StatusInfo`).
pub async fn run(command: Command, effective: &Effective) -> anyhow::Result<()> {
    match dispatch(command, effective).await {
        Err(e) => Err(status::explain_failure(e).await),
        ok => ok,
    }
}

async fn dispatch(command: Command, effective: &Effective) -> anyhow::Result<()> {
    match command {
        Command::Coordinator(args) => coordinator::run(args, effective.about_config()).await,
        Command::Prover(args) => prover::run(args).await,
        Command::Status(args) => status::run(args).await,
        Command::Watch(args) => watch::run(args).await,
        Command::Monitor(args) => monitor::run(args).await,
        Command::Cordon(args) => cordon::run(args, true).await,
        Command::Uncordon(args) => cordon::run(args, false).await,
        Command::Pause(args) => pause::pause(args).await,
        Command::Resume(args) => pause::resume(args).await,
        Command::SettleNow(args) => pause::settle_now(args).await,
        Command::CommitNow(args) => pause::commit_now(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Network(args) => network::run(args).await,
        Command::Token { command } => token::run(command),
        Command::Job {
            command: JobCommand::Show(args),
        } => job::show(args).await,
        Command::Job {
            command: JobCommand::Cancel(args),
        } => job::cancel(args).await,
        Command::Job {
            command: JobCommand::Retry(args),
        } => job::retry(args).await,
        Command::Submit(args) => batch::submit(args).await,
        Command::Proof {
            command: ProofCommand::Get(args),
        } => proof::get(args).await,
        Command::Proof {
            command: ProofCommand::Wait(args),
        } => proof::wait(args).await,
        Command::Batch {
            command: BatchCommand::Replace(args),
        } => batch::replace(args).await,
        Command::Batch {
            command: BatchCommand::Cancel(args),
        } => batch::cancel(args).await,
        Command::Bench {
            command: BenchCommand::Dispatch(args),
        } => bench::dispatch(args).await,
        Command::Bench {
            command: BenchCommand::Settle(args),
        } => bench::settle(args).await,
        Command::Bench {
            command: BenchCommand::Prove(args),
        } => bench::prove(args).await,
        Command::Bench {
            command: BenchCommand::Restart(args),
        } => bench::restart(args).await,
        Command::Bench {
            command: BenchCommand::Makespan(args),
        } => bench::makespan(args),
        Command::Bench {
            command: BenchCommand::Fleet(args),
        } => bench::fleet(args).await,
        Command::Bench {
            command: BenchCommand::Gateway(args),
        } => bench::gateway(args).await,
        Command::Bench {
            command: BenchCommand::SimProvers(args),
        } => bench::sim_provers(args).await,
        Command::Bench {
            command: BenchCommand::Market(args),
        } => bench::market(args).await,
        Command::L1 {
            command: L1Command::Deploy(args),
        } => l1::deploy(args).await,
        Command::L1 {
            command: L1Command::DeployMarket(args),
        } => l1::deploy_market(args).await,
        Command::L1 {
            command: L1Command::MarketNetwork(args),
        } => l1::market_network(args).await,
        Command::Devnet {
            command: DevnetCommand::Node(args),
        } => devnet_node::run(args, effective.about_config()).await,
    }
}

/// Resolves on SIGTERM or Ctrl-C, naming which.
pub async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "SIGINT";
        }
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    }
}
