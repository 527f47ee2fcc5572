//! `proofmill bench …`: the benchmarks' options.

use super::parse::*;
use super::{L1RpcArgs, ProofTypeSpec};
use crate::backends::BackendArgs;
use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};
use proofmill_scheduler::PolicyName;

#[derive(Debug, Clone, Args)]
pub struct BenchSettleArgs {
    /// Batches settled by the measured transaction.
    #[arg(long, env = "PROOFMILL_BATCHES_PER_TX", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub batches_per_tx: u64,
    /// Proofs settled: exec (synthetic batches, DEV verifier) or groth16 (real devnet
    /// batches of the --groth16-shape, proven first, then settled).
    #[arg(long, env = "PROOFMILL_PROOF_TYPE", value_enum, default_value_t = SettleProofs::Exec)]
    pub proof_type: SettleProofs,
    #[command(flatten)]
    pub backends: BackendArgs,
    /// Without --l1-rpc-url: the embedded L1 (in memory).
    #[command(flatten)]
    pub rpc: L1RpcArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SettleProofs {
    Exec,
    Groth16,
}

#[derive(Debug, Clone, Args)]
pub struct BenchProveArgs {
    /// Proof type to measure: `name` or `name:backend`.
    #[arg(long, env = "PROOFMILL_PROOF_TYPE", default_value = "groth16", value_parser = parse_proof_type_spec)]
    pub proof_type: ProofTypeSpec,
    /// Transfers per batch (for groth16, the circuit's batch size).
    #[arg(long, env = "PROOFMILL_BATCH_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// State tree depth (1..=32).
    #[arg(long, env = "PROOFMILL_TREE_DEPTH", default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub tree_depth: u8,
    /// Batches measured each way; the medians are reported.
    #[arg(long, env = "PROOFMILL_REPEAT", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub repeat: u32,
    #[command(flatten)]
    pub backends: BackendArgs,
}

#[derive(Debug, Clone, Args)]
pub struct BenchGatewayArgs {
    /// Batches the core seals.
    #[arg(long, env = "PROOFMILL_BATCHES", default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub batches: u64,
    /// Exec provers of the cluster (one task at a time each).
    #[arg(long, env = "PROOFMILL_PROVERS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub provers: u32,
    /// Batches the core seals a second; 0: all at the start (a backlog).
    #[arg(long, env = "PROOFMILL_RATE", default_value_t = 0.0)]
    pub rate: f64,
    /// The gateway's poll interval when the core has nothing, ms.
    #[arg(long, env = "PROOFMILL_CORE_API_POLL_INTERVAL", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub core_api_poll_interval: u64,
    /// Transfers per batch.
    #[arg(long, env = "PROOFMILL_BATCH_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// State tree depth (1..=32).
    #[arg(long, env = "PROOFMILL_TREE_DEPTH", default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub tree_depth: u8,
    /// Give up after this many seconds.
    #[arg(long, env = "PROOFMILL_TIMEOUT_S", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_s: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BenchRestartArgs {
    /// Batches in the store before the measured restart.
    #[arg(long, env = "PROOFMILL_BATCHES", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub batches: u64,
    /// Batches sealed after the newest snapshot before the kill (replayed by the restart).
    #[arg(long, env = "PROOFMILL_REPLAY_BATCHES", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000_000))]
    pub replay_batches: u64,
    /// Database URL; default: a fresh SQLite file in a temporary directory.
    #[arg(long, env = "PROOFMILL_DB", value_parser = parse_db_url)]
    pub db: Option<String>,
}

/// The store a benchmark's coordinator writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchStore {
    /// A fresh SQLite file in a temporary directory.
    Sqlite,
    /// A throwaway PostgreSQL server the bench starts on loopback (initdb and pg_ctl from
    /// the local installation, or PROOFMILL_PG_BIN), its commits synchronous.
    Postgres,
}

/// The store a bench runs on.
#[derive(Debug, Clone, Args)]
pub struct BenchTarget {
    /// Store to run on (ignored with --db).
    #[arg(long, env = "PROOFMILL_STORE", value_enum, default_value_t = BenchStore::Sqlite)]
    pub store: BenchStore,
    /// Database URL of an empty store, instead of one the bench makes.
    #[arg(long, env = "PROOFMILL_DB", value_parser = parse_db_url)]
    pub db: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchFleetArgs {
    /// Simulated provers, all connecting at once.
    #[arg(long, env = "PROOFMILL_PROVERS", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub provers: u32,
    /// Jobs run through the fleet once every prover has registered.
    #[arg(long, env = "PROOFMILL_JOBS", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: u64,
    #[command(flatten)]
    pub target: BenchTarget,
}

#[derive(Debug, Clone, Args)]
pub struct BenchDispatchArgs {
    /// Simulated provers.
    #[arg(long, env = "PROOFMILL_PROVERS", default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    pub provers: u32,
    /// Jobs to dispatch.
    #[arg(long, env = "PROOFMILL_JOBS", default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: u64,
    #[command(flatten)]
    pub target: BenchTarget,
    /// Offered load: results per second the simulated provers send in all, each prover
    /// pacing its answers. Unset: every prover answers at once (a closed loop that saturates
    /// the machine, so latencies there are queueing).
    #[arg(long, env = "PROOFMILL_RATE", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
    /// Run the coordinator without the store's lease, its writes unchecked (not fenced):
    /// to measure what the lease costs.
    #[arg(long, env = "PROOFMILL_NO_LEASE", value_parser = BoolishValueParser::new())]
    pub no_lease: bool,
}

#[derive(Debug, Clone, Args)]
pub struct BenchMakespanArgs {
    /// Seed of the workload's job sizes.
    #[arg(long, env = "PROOFMILL_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Run only this assignment policy (default: every built-in one).
    #[arg(long, env = "PROOFMILL_POLICY", value_parser = parse_assignment_policy)]
    pub policy: Option<PolicyName>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchSimProversArgs {
    /// The coordinator under test.
    #[arg(long, env = "PROOFMILL_COORDINATOR", value_parser = parse_http_url)]
    pub coordinator: String,
    /// Simulated provers.
    #[arg(long, env = "PROOFMILL_PROVERS", value_parser = clap::value_parser!(u32).range(1..))]
    pub provers: u32,
    /// Completions to wait for before stopping; unset: run until standard input closes.
    #[arg(long, env = "PROOFMILL_JOBS", value_parser = clap::value_parser!(u64).range(1..))]
    pub jobs: Option<u64>,
    /// Results per second sent in all, paced; unset: answer every task at once.
    #[arg(long, env = "PROOFMILL_RATE", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct BenchMarketArgs {
    /// Batches a proving network proves for the rollup (the L1 cost is per batch of these).
    #[arg(long, env = "PROOFMILL_BATCHES", default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batches: u64,
    /// Batches then offered to a network that never answers (each timed from its silence to
    /// its proof by the own fleet; the median is reported).
    #[arg(long, env = "PROOFMILL_SILENT_BATCHES", default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=1_000))]
    pub silent_batches: u64,
    /// The proof manager's and the network's pause between rounds, ms.
    #[arg(long, env = "PROOFMILL_POLL_INTERVAL", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub poll_interval: u64,
    /// Give up after this many seconds.
    #[arg(long, env = "PROOFMILL_TIMEOUT_S", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_s: u64,
}
