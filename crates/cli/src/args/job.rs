//! `proofmill job …`: an operator's controls over single jobs.

use super::AdminAccess;
use super::parse::{parse_http_url, parse_non_empty};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Show a job (or every job of a batch) with its history: every attempt, its prover,
    /// when it began and ended, how it ended and why.
    Show(JobShowArgs),
    /// Cancel a job that is not proven: its prover is told to stop, a late result is
    /// refused. `job retry` queues it again.
    Cancel(JobCancelArgs),
    /// Queue a failed or cancelled job again with a fresh attempt budget; without
    /// `--proof-type`, every failed job of the batch.
    Retry(JobRetryArgs),
}

#[derive(Debug, Clone, Args)]
pub struct JobCancelArgs {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
    /// The batch number.
    #[arg(long, env = "PROOFMILL_BATCH", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// The batch's chain (0: the coordinator's own, its --chain-id).
    #[arg(long, env = "PROOFMILL_CHAIN_ID", default_value_t = 0)]
    pub chain_id: u64,
    /// The job's proof type.
    #[arg(long, env = "PROOFMILL_PROOF_TYPE", value_parser = parse_non_empty)]
    pub proof_type: String,
    /// Why, kept as the job's last error (default: "cancelled by an operator").
    #[arg(long, env = "PROOFMILL_REASON", default_value = "")]
    pub reason: String,
}

/// A job, or every job of a batch.
#[derive(Debug, Clone, Args)]
pub struct JobsOfBatch {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
    /// The batch number.
    #[arg(long, env = "PROOFMILL_BATCH", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
    /// The batch's chain (0: the coordinator's own, its --chain-id).
    #[arg(long, env = "PROOFMILL_CHAIN_ID", default_value_t = 0)]
    pub chain_id: u64,
    /// The job's proof type; without it, the batch's jobs.
    #[arg(long, env = "PROOFMILL_PROOF_TYPE")]
    pub proof_type: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct JobRetryArgs {
    #[command(flatten)]
    pub jobs: JobsOfBatch,
}

#[derive(Debug, Clone, Args)]
pub struct JobShowArgs {
    #[command(flatten)]
    pub jobs: JobsOfBatch,
    /// Print JSON (one object per job) instead of tables.
    #[arg(long, env = "PROOFMILL_JSON", value_parser = clap::builder::BoolishValueParser::new())]
    pub json: bool,
}
