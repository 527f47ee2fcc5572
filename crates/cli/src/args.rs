//! Command-line schema of every subcommand.
//!
//! Every option is a long flag `--some-option`, an environment variable
//! `PROOFMILL_SOME_OPTION` and a key `some_option` of the `--config` TOML file (see
//! [`crate::config`]). The `env` names below follow that rule mechanically; a test walks the
//! whole command tree and fails on any option that does not.

use crate::backends::BackendArgs;
use anyhow::{Context as _, bail};
use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};
use proofmill_scheduler::PolicyName;
use proofmill_types::ProofType;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod admin;
mod bench;
mod client;
mod job;
mod market;
mod network;
mod parse;
pub use admin::{
    AdminAccess, BatchCancelArgs, BatchReplaceArgs, ClientTlsArgs, CommitNowArgs, CordonArgs,
    MonitorArgs, PauseArgs, ResumeArgs, SettleNowArgs, StatusArgs, WatchArgs,
};
pub use bench::{
    BenchDispatchArgs, BenchFleetArgs, BenchGatewayArgs, BenchMakespanArgs, BenchMarketArgs,
    BenchProveArgs, BenchRestartArgs, BenchSettleArgs, BenchSimProversArgs, BenchStore,
    SettleProofs,
};
pub use client::{BatchRef, ProofCommand, ProofGetArgs, ProofWaitArgs, SubmitArgs};
pub use job::{JobCancelArgs, JobCommand, JobRetryArgs, JobShowArgs};
pub use market::{MarketArgs, MarketDeployArgs, MarketNetworkArgs};
pub use network::NetworkArgs;
use parse::*;

/// Proof type with the backend that proves/verifies it: `name` or `name:backend`.
/// Without `:backend` the backend is the proof type's own name.
pub type ProofTypeSpec = (ProofType, String);

/// The default `--data-dir`, where the defaults of `--db`, `--blobs`, `--l1-state` and
/// `--groth16-keys` keep their files.
pub const DEFAULT_DATA_DIR: &str = "./proofmill-data";
/// Longest duration option, ms (a year): a deadline, now plus one, always fits the store.
const MAX_MS: u64 = 365 * 24 * 3_600_000;

#[derive(Debug, Parser)]
#[command(
    name = "proofmill",
    version,
    about = "Distributed proving coordinator for ZK rollups",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// TOML file with option values (keys are the long option names with `-` → `_`).
    /// Precedence: flag > environment > config file > built-in default.
    #[arg(long, global = true, env = "PROOFMILL_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log output format (stderr; filter with RUST_LOG, default `info`). `auto`: `pretty` on a
    /// terminal, else `compact` (one line per event). Colours only on a terminal, never with
    /// NO_COLOR set.
    #[arg(long, global = true, env = "PROOFMILL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// Print the subcommand's effective configuration, each value with its source
    /// (default, config file, environment, flag; secrets redacted), and exit.
    #[arg(long, global = true, env = "PROOFMILL_PRINT_CONFIG", value_parser = BoolishValueParser::new())]
    pub print_config: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Auto,
    Pretty,
    Compact,
    Json,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once at startup; boxing buys nothing
pub enum Command {
    /// Run a coordinator: stores batches, schedules proof jobs and serves provers.
    Coordinator(CoordinatorArgs),
    /// Run a prover that connects to one or more coordinators.
    Prover(ProverArgs),
    /// Show the status of a running coordinator.
    Status(StatusArgs),
    /// Print what happens on a running coordinator as it happens: jobs, attempts, provers,
    /// batches taken in, L1.
    Watch(WatchArgs),
    /// A terminal UI for an operator: chain, batches, provers, queues, throughput and recent
    /// events of a running coordinator, with keys to cordon provers, retry or cancel jobs
    /// and pause or resume the sender.
    Monitor(MonitorArgs),
    /// Take a prover out of rotation: it finishes what it runs but gets no new tasks.
    Cordon(CordonArgs),
    /// Put a cordoned prover back in rotation.
    Uncordon(CordonArgs),
    /// Pause a component, durably (until `resume`): sender, committer, sealing, intake or
    /// dispatch.
    Pause(PauseArgs),
    /// Resume a paused component; it acts at once.
    Resume(ResumeArgs),
    /// Run the L1 proof sender once now, whatever its interval.
    SettleNow(SettleNowArgs),
    /// Commit a sealed batch to L1 now (with the uncommitted batches before it).
    CommitNow(CommitNowArgs),
    /// Submit a batch through the client API: its input streamed from a file, or a URL the
    /// coordinator fetches.
    Submit(SubmitArgs),
    /// Get a batch's proofs, or wait for them (client API).
    #[command(subcommand_required = true)]
    Proof {
        #[command(subcommand)]
        command: ProofCommand,
    },
    /// Replace the input of a batch that is not proven yet, or cancel its jobs.
    #[command(subcommand_required = true)]
    Batch {
        #[command(subcommand)]
        command: BatchCommand,
    },
    /// Cancel or retry a job.
    #[command(subcommand_required = true)]
    Job {
        #[command(subcommand)]
        command: JobCommand,
    },
    /// Make tokens, and the hashes a coordinator's tokens files hold.
    #[command(subcommand_required = true)]
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Run a proving network on the proof market: take the requests the market assigns to
    /// this network's address that it can finish, prove them with its own coordinator, post
    /// the proofs and claim the rewards.
    Network(NetworkArgs),
    /// Run a self-contained devnet demo: coordinator, provers and batches in one process.
    Demo(DemoArgs),
    /// L1 contract management.
    #[command(subcommand_required = true)]
    L1 {
        #[command(subcommand)]
        command: L1Command,
    },
    /// The reference rollup as a node of its own.
    #[command(subcommand_required = true)]
    Devnet {
        #[command(subcommand)]
        command: DevnetCommand,
    },
    /// Benchmarks.
    #[command(subcommand_required = true)]
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Measure job dispatch throughput of the scheduler and store.
    Dispatch(BenchDispatchArgs),
    /// Measure the L1 gas of settling K batches in one transaction.
    Settle(BenchSettleArgs),
    /// Measure proving and verifying one batch, directly and through a coordinator.
    Prove(BenchProveArgs),
    /// Measure a devnet coordinator's restart after kill -9 with N batches stored.
    Restart(BenchRestartArgs),
    /// Simulate the scheduler over a heterogeneous fleet and compare assignment policies by
    /// makespan over a lower bound.
    Makespan(BenchMakespanArgs),
    /// Measure a coordinator holding N idle provers: memory per prover, time until all
    /// registered when they connect at once, then jobs run through them.
    Fleet(BenchFleetArgs),
    /// Measure batches through the core API's pull mode (an in-process rollup core, a
    /// coordinator with the gateway and exec provers): sealed to proof back at the core.
    Gateway(BenchGatewayArgs),
    /// The proof market's L1 cost per batch and the fallback's reaction time: the rollup's
    /// proof manager, a proving network and the own fleet in this process, on the embedded
    /// L1. Ends with `batches=<int> l1_txs_per_batch=<float> gas_per_batch=<int>
    /// fallback_s=<float>`.
    Market(BenchMarketArgs),
    /// The simulated provers of `bench dispatch` and `bench fleet`, run by them in a process
    /// of their own.
    #[command(hide = true)]
    SimProvers(BenchSimProversArgs),
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Print a new random token (256 bits, hex) and, on the next line, its hash for a
    /// tokens file. Give the token to the prover or operator; keep only the hash.
    New,
    /// Read a token from standard input (one line) and print its hash, `sha256:HEX`.
    Hash,
}

#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Give a batch that is not fully proven a new input: its running tasks are cancelled
    /// (their late results refused), its proofs dropped, and it is proven afresh.
    Replace(BatchReplaceArgs),
    /// Cancel the jobs of a batch that is not fully proven; `LaunchProof` of its number then
    /// takes it anew, with any input.
    Cancel(BatchCancelArgs),
}

#[derive(Debug, Subcommand)]
pub enum DevnetCommand {
    /// The reference rollup as a rollup node: sequencer, L1 committer and proof sender, its
    /// batches handed to an outside proving cluster over the rollup core API (pulled from
    /// --handoff-listen, or pushed to --handoff-push-url) and the proofs taken back. Takes
    /// every coordinator option; needs no prover of its own.
    Node(DevnetNodeArgs),
}

#[derive(Debug, Clone, Args)]
pub struct DevnetNodeArgs {
    #[command(flatten)]
    pub coordinator: CoordinatorArgs,
    /// Serve the core API's pull mode here, `HOST:PORT` (`POST /proof_generation_data`,
    /// `POST /submit_proof/{n}`; docs/core-api.md): a proving cluster started with
    /// `--core-api-url` asks it for batches. Not authenticated: a non-loopback address needs
    /// --insecure.
    #[arg(long, env = "PROOFMILL_HANDOFF_LISTEN", value_parser = parse_listen_addr)]
    pub handoff_listen: Option<SocketAddr>,
    /// Push mode: post batches to this proving cluster's gateway
    /// (`POST /submit_request_for_proofs`) and poll it for proofs; comma list of replicas.
    #[arg(long, env = "PROOFMILL_HANDOFF_PUSH_URL", value_delimiter = ',')]
    pub handoff_push_url: Vec<String>,
    /// Push mode: bearer token for the cluster's push listener (an admin token with the
    /// operator role there).
    #[arg(long, env = "PROOFMILL_HANDOFF_PUSH_TOKEN", hide_env_values = true, value_parser = parse_non_empty)]
    pub handoff_push_token: Option<String>,
    /// Tasks handed out to the cluster at once (the handoff prover's capacity).
    #[arg(long, env = "PROOFMILL_HANDOFF_CAPACITY", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub handoff_capacity: u32,
    /// A batch handed out and not answered in this time is handed out again, ms.
    #[arg(long, env = "PROOFMILL_HANDOFF_TIMEOUT", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub handoff_timeout: u64,
    /// How long a batch waits for its other proof types' tasks before it is handed out
    /// with the ones there, ms.
    #[arg(long, env = "PROOFMILL_HANDOFF_GATHER", default_value_t = 500, value_parser = clap::value_parser!(u64).range(0..=MAX_MS))]
    pub handoff_gather: u64,
    /// Push mode: between polls for proofs, ms.
    #[arg(long, env = "PROOFMILL_HANDOFF_POLL_INTERVAL", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub handoff_poll_interval: u64,
    /// Push mode: bound of each request to the cluster, ms.
    #[arg(long, env = "PROOFMILL_HANDOFF_REQUEST_TIMEOUT", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub handoff_request_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum L1Command {
    /// Deploy the rollup contract (with one verifier per proof type); prints its address.
    Deploy(L1DeployArgs),
    /// Deploy a ProofMarket contract (the signer is its admin); prints its address.
    DeployMarket(MarketDeployArgs),
    /// Register a proving network on a ProofMarket, or change whether it takes requests
    /// (the signer must be the market's admin).
    MarketNetwork(MarketNetworkArgs),
}

/// Where the coordinator settles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum L1Mode {
    /// No settlement.
    None,
    /// In-process EVM with a durable transaction log (`--l1-state`).
    Embedded,
    /// An Ethereum JSON-RPC node (`--l1-rpc-url`, `--l1-key-file`, `--l1-rollup-address`).
    Rpc,
}

#[derive(Debug, Clone, Args)]
pub struct CoordinatorArgs {
    /// gRPC listen address, `HOST:PORT`; a host name listens on the first address it
    /// resolves to.
    #[arg(long, env = "PROOFMILL_LISTEN", default_value = "127.0.0.1:3900", value_parser = parse_listen_addr)]
    pub listen: SocketAddr,
    /// HTTP admin listen address, `HOST:PORT`: `/health` (liveness), `/ready` (readiness,
    /// component by component) and the admin calls as JSON under `/v1` (see the README).
    /// Off when unset. Not authenticated: bind it where only operators and probes reach it.
    #[arg(long, env = "PROOFMILL_ADMIN_LISTEN", value_parser = parse_listen_addr)]
    pub admin_listen: Option<SocketAddr>,
    /// Directory of every default path: the database (`proofmill.db`), the blobs (`blobs`),
    /// the groth16 keys (`keys`) and the embedded L1's state (`l1.log`). Made absolute at
    /// startup.
    #[arg(long, env = "PROOFMILL_DATA_DIR", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Database URL: sqlite://PATH?mode=rwc or postgres://USER[:PASSWORD]@HOST[:PORT]/DB.
    /// Default: SQLite `proofmill.db` in --data-dir.
    #[arg(long, env = "PROOFMILL_DB", value_parser = parse_db_url)]
    db: Option<String>,
    /// Blob store URL: file://PATH (a relative path is made absolute at startup),
    /// s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX] (credentials from the usual AWS_* or
    /// GOOGLE_* variables). Default: `blobs` in --data-dir.
    #[arg(long, env = "PROOFMILL_BLOBS", value_parser = parse_blobs_url)]
    blobs: Option<String>,
    /// Proof types every batch needs: comma list of `name` or `name:backend`.
    #[arg(long, env = "PROOFMILL_PROOF_TYPES", value_delimiter = ',', default_value = "exec", value_parser = parse_proof_type_spec)]
    pub proof_types: Vec<ProofTypeSpec>,
    #[command(flatten)]
    pub backends: BackendArgs,
    /// Run the devnet rollup as the batch source.
    #[arg(long, env = "PROOFMILL_DEVNET", value_parser = BoolishValueParser::new())]
    pub devnet: bool,
    /// Pull batches from a rollup's core API (zkSync/Via `proof_generation_data`) and send
    /// proofs back (`submit_proof`): base URLs, comma list of replicas of one core, tried in
    /// turn. See docs/core-api.md.
    #[arg(long, env = "PROOFMILL_CORE_API_URL", value_delimiter = ',', value_parser = parse_http_url)]
    pub core_api_url: Vec<String>,
    /// Pull mode: wait after the core said it has nothing to prove, ms (while it has a
    /// backlog, the gateway asks again at once).
    #[arg(long, env = "PROOFMILL_CORE_API_POLL_INTERVAL", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub core_api_poll_interval: u64,
    /// Bound of every request to the core API, from connecting to the reply's last byte, ms.
    #[arg(long, env = "PROOFMILL_CORE_API_TIMEOUT", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub core_api_timeout: u64,
    /// Longest wait between retries after core API errors (exponential backoff with
    /// jitter up to it), ms.
    #[arg(long, env = "PROOFMILL_CORE_API_MAX_BACKOFF", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub core_api_max_backoff: u64,
    /// Largest core API message read (a reply in pull mode, a request in push mode), bytes:
    /// a batch input is base64 in it.
    #[arg(long, env = "PROOFMILL_CORE_API_MAX_BODY_BYTES", default_value_t = 400 << 20, value_parser = parse_message_bytes)]
    pub core_api_max_body_bytes: usize,
    /// Push mode: serve `POST /submit_request_for_proofs` and `POST /poll_generated_proofs`
    /// (zkSync's reversed gateway) on this address, `HOST:PORT`. Calls need an admin token
    /// with the operator role (--admin-tokens-file); without tokens, loopback only (or
    /// --insecure). See docs/core-api.md.
    #[arg(long, env = "PROOFMILL_CORE_API_LISTEN", value_parser = parse_listen_addr)]
    pub core_api_listen: Option<SocketAddr>,
    /// Hard deadline of a lease, ms.
    #[arg(long, env = "PROOFMILL_PROVER_TIMEOUT", default_value_t = 600_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub prover_timeout: u64,
    /// Heartbeat interval asked of provers, ms.
    #[arg(long, env = "PROOFMILL_HEARTBEAT_INTERVAL", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub heartbeat_interval: u64,
    /// Heartbeats a prover may miss before it is considered gone.
    #[arg(long, env = "PROOFMILL_MISSED_HEARTBEATS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub missed_heartbeats: u32,
    /// Failed attempts (errors, bad proofs) before a job is marked failed.
    #[arg(long, env = "PROOFMILL_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Lost leases (prover vanished or timed out) before a job is marked failed.
    #[arg(long, env = "PROOFMILL_MAX_LOST_ATTEMPTS", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_lost_attempts: u32,
    /// Invalid proofs in a row after which a prover is cordoned automatically (0: never).
    #[arg(long, env = "PROOFMILL_CORDON_AFTER_INVALID", default_value_t = 3)]
    pub cordon_after_invalid: u32,
    /// Different provers that fail one job before it is failed as a problem of its batch
    /// (0: never).
    #[arg(long, env = "PROOFMILL_BATCH_FAILURE_PROVERS", default_value_t = 3)]
    pub batch_failure_provers: u32,
    /// How long a prover whose stream closed keeps its leases to reconnect, ms.
    #[arg(long, env = "PROOFMILL_RECONNECT_GRACE", default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(0..=MAX_MS))]
    pub reconnect_grace: u64,
    /// A task running longer than this many times the 90th percentile of its proof type's
    /// recent durations gets a backup copy on an idle prover; the first valid result wins
    /// (0: never).
    #[arg(long, env = "PROOFMILL_STRAGGLER_FACTOR", default_value_t = 3)]
    pub straggler_factor: u32,
    /// Which prover gets which ready job: `oldest-first` (each prover with a free slot,
    /// least loaded first, takes the oldest batch it can prove) or `earliest-finish` (each
    /// job goes to the prover expected to finish it first, from the prove times measured
    /// per prover and proof type; it may wait for a much faster busy prover). Eligibility,
    /// retries, backup copies and cordons are the same under both.
    #[arg(long, env = "PROOFMILL_ASSIGNMENT_POLICY", default_value = "oldest-first", value_parser = parse_assignment_policy)]
    pub assignment_policy: PolicyName,
    /// How long the store's coordinator lease lasts without a renewal, ms. Of coordinators
    /// on one store, the lease holder is active and the others stand by; a standby takes
    /// over this long after the active one stops renewing (it renews every quarter of it).
    #[arg(long, env = "PROOFMILL_LEASE_TTL", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(200..=MAX_MS))]
    pub lease_ttl: u64,
    /// The URL provers and admin clients reach this coordinator at, which a standby names
    /// when it refuses them (default: `http://` and the listen address; for 0.0.0.0 or ::,
    /// the host name).
    #[arg(long, env = "PROOFMILL_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Interval of L1 settlement transactions, ms.
    #[arg(long, env = "PROOFMILL_SEND_INTERVAL", default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub send_interval: u64,
    /// gRPC message size limit, bytes.
    #[arg(long, env = "PROOFMILL_MAX_MESSAGE_BYTES", default_value_t = 64 << 20, value_parser = parse_message_bytes)]
    pub max_message_bytes: usize,
    /// The fleet's shared secret: provers registering with it may take any name not listed
    /// in --prover-tokens-file. Kept in memory only as its hash.
    #[arg(long, env = "PROOFMILL_PROVER_TOKEN", hide_env_values = true, value_parser = parse_non_empty)]
    pub prover_token: Option<String>,
    /// Provers' own tokens, each bound to one prover name: a file with one `NAME
    /// sha256:HEX` a line (`proofmill token new` makes a token and its hash).
    #[arg(long, env = "PROOFMILL_PROVER_TOKENS_FILE", value_name = "FILE")]
    pub prover_tokens_file: Option<PathBuf>,
    /// Bearer tokens of the admin API: a file with one `NAME ROLE sha256:HEX` a line, ROLE
    /// `read-only` (status, listings) or `operator` (also every control). Without it the
    /// admin API is open to whoever reaches the port.
    #[arg(long, env = "PROOFMILL_ADMIN_TOKENS_FILE", value_name = "FILE")]
    pub admin_tokens_file: Option<PathBuf>,
    /// TLS on the gRPC listener: certificate chain, PEM (with --tls-key).
    #[arg(long, env = "PROOFMILL_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS on the gRPC listener: the private key of --tls-cert, PEM.
    #[arg(long, env = "PROOFMILL_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: every client (prover, admin CLI) must present a certificate signed by
    /// this CA, PEM. Needs --tls-cert.
    #[arg(long, env = "PROOFMILL_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// Listen on a non-loopback address without prover or admin authentication. Without
    /// it such a coordinator refuses to start.
    #[arg(long, env = "PROOFMILL_INSECURE", value_parser = BoolishValueParser::new())]
    pub insecure: bool,
    /// Memory for proofs in flight across all provers (chunks received, proofs being
    /// verified), bytes; at least the largest proof (256 MiB). A proof that does not fit is
    /// refused for now, and its prover offers it again later.
    #[arg(long, env = "PROOFMILL_PROOF_MEMORY_BYTES", default_value_t = 1 << 30, value_parser = parse_message_bytes)]
    pub proof_memory_bytes: usize,
    /// Prover streams open at once, registered or not; more are refused (RESOURCE_EXHAUSTED).
    #[arg(long, env = "PROOFMILL_MAX_PROVER_STREAMS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_prover_streams: u64,
    /// Prover streams open at once that have not registered yet.
    #[arg(long, env = "PROOFMILL_MAX_UNREGISTERED_STREAMS", default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_unregistered_streams: u64,
    /// This coordinator's own chain: the one the devnet, a rollup core's API (--core-api-url)
    /// and L1 settlement are about. A batch of a chain neither this nor one of --chains is
    /// refused (`NOT_FOUND`, unknown chain).
    #[arg(long, env = "PROOFMILL_CHAIN_ID", default_value_t = proofmill_coordinator::DEFAULT_CHAIN_ID)]
    pub chain_id: u64,
    /// More rollups proven on this cluster, through the client API: comma list of
    /// `ID[:WEIGHT[:TYPE+TYPE...]]` (e.g. `7:1:exec,9:2`). WEIGHT (default 1) is the chain's
    /// share of the fleet while several chains have work; TYPES (default: every
    /// --proof-types) what its batches need. List the own chain too to give it a weight.
    #[arg(long, env = "PROOFMILL_CHAINS", value_delimiter = ',')]
    pub chains: Vec<proofmill_coordinator::ChainSpec>,
    /// Directories the client API's `file://` input URLs may point into (comma list; each
    /// must exist). None by default: `file://` inputs are refused, so a client cannot make
    /// the coordinator read its own files.
    #[arg(
        long,
        env = "PROOFMILL_INPUT_FETCH_DIRS",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub input_fetch_dirs: Vec<std::path::PathBuf>,
    /// Largest batch input the APIs take, bytes (the client API refuses a streamed or fetched
    /// input the moment it goes over).
    #[arg(long, env = "PROOFMILL_MAX_INPUT_BYTES", default_value_t = 256 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_input_bytes: u64,
    /// Batch numbers the API may take above the end of the gap-free run of stored batches;
    /// a batch further ahead is refused (gaps within it are shown by `status`). 0: no limit.
    #[arg(long, env = "PROOFMILL_INTAKE_WINDOW", default_value_t = 1024)]
    pub intake_window: u64,
    /// Days the history of ended job attempts (`proofmill job show`) is kept; older rows are
    /// deleted. 0: kept for ever.
    #[arg(long, env = "PROOFMILL_ATTEMPT_RETENTION_DAYS", default_value_t = 30)]
    pub attempt_retention_days: u32,
    /// Time running tasks get to finish on shutdown, ms.
    #[arg(long, env = "PROOFMILL_SHUTDOWN_GRACE", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(0..=MAX_MS))]
    pub shutdown_grace: u64,
    /// Devnet: transfers per batch.
    #[arg(long, env = "PROOFMILL_BATCH_SIZE", default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Devnet: time between sealed batches, ms.
    #[arg(long, env = "PROOFMILL_BATCH_INTERVAL", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub batch_interval: u64,
    /// Devnet: seed of the random traffic.
    #[arg(long, env = "PROOFMILL_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Devnet: state tree depth (1..=32).
    #[arg(long, env = "PROOFMILL_TREE_DEPTH", default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub tree_depth: u8,
    /// Devnet: accounts funded at genesis.
    #[arg(long, env = "PROOFMILL_ACCOUNTS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub accounts: u32,
    /// Devnet: program version of the batches it seals.
    #[arg(long, env = "PROOFMILL_VERSION_TAG", default_value = "devnet-v1", value_parser = parse_non_empty)]
    pub version_tag: String,
    /// Devnet: stop sealing after this batch number.
    #[arg(long, env = "PROOFMILL_MAX_BATCHES", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batches: Option<u64>,
    /// Devnet: save a state snapshot every this many batches, so a restart replays at most
    /// that many (0: only at a clean stop and after a rebuild).
    #[arg(long, env = "PROOFMILL_SNAPSHOT_EVERY", default_value_t = proofmill_devnet_node::DEFAULT_SNAPSHOT_EVERY)]
    pub snapshot_every: u64,
    /// Settlement layer: none, embedded (in-process EVM) or rpc.
    #[arg(long, env = "PROOFMILL_L1", value_enum, default_value_t = L1Mode::Embedded)]
    pub l1: L1Mode,
    /// Embedded L1: its transaction log (made absolute at startup). It belongs with the
    /// store: a log from another store is refused. Default: `l1.log` in --data-dir.
    #[arg(long, env = "PROOFMILL_L1_STATE", value_name = "FILE")]
    l1_state: Option<PathBuf>,
    #[command(flatten)]
    pub rpc: L1RpcArgs,
    /// RPC L1: address of the deployed rollup contract.
    #[arg(long, env = "PROOFMILL_L1_ROLLUP_ADDRESS", value_parser = parse_address)]
    pub l1_rollup_address: Option<String>,
    /// Most batches settled by one L1 transaction.
    #[arg(long, env = "PROOFMILL_MAX_BATCHES_PER_TX", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_batches_per_tx: u64,
    /// Gas cap of one settlement transaction (ranges are halved until they fit).
    #[arg(long, env = "PROOFMILL_MAX_GAS_PER_TX", default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(21_000..))]
    pub max_gas_per_tx: u64,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (`HOST:PORT`; port 0: any free port;
    /// the bound address is logged as "metrics listening"). Off when unset.
    #[arg(long, env = "PROOFMILL_METRICS_LISTEN", value_parser = parse_listen_addr)]
    pub metrics_listen: Option<SocketAddr>,
    /// Also record prove times by prover name (`prover` label): one series per prover, so
    /// only for fleets small enough to chart one by one.
    #[arg(long, env = "PROOFMILL_METRICS_PER_PROVER", value_parser = BoolishValueParser::new())]
    pub metrics_per_prover: bool,
    #[command(flatten)]
    pub market: MarketArgs,
}

#[derive(Debug, Clone, Args)]
pub struct ProverArgs {
    /// Coordinator gRPC URLs (comma list).
    #[arg(long, env = "PROOFMILL_COORDINATORS", value_delimiter = ',', default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinators: Vec<String>,
    /// Proof types served: comma list of `name` or `name:backend`.
    #[arg(long, env = "PROOFMILL_BACKEND", value_delimiter = ',', default_value = "exec", value_parser = parse_proof_type_spec)]
    pub backend: Vec<ProofTypeSpec>,
    #[command(flatten)]
    pub backends: BackendArgs,
    /// Directory of every default path: the groth16 keys (`keys`). Made absolute at startup.
    #[arg(long, env = "PROOFMILL_DATA_DIR", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// Read large inputs straight from the coordinator's blob store (file://, s3://, gs://
    /// URLs it sends) instead of in chunks over the stream.
    #[arg(long, env = "PROOFMILL_BLOB_ACCESS", value_parser = BoolishValueParser::new())]
    pub blob_access: bool,
    /// Stop serving a coordinator that sends Shutdown (exit once none is left), instead of
    /// draining and reconnecting when it is back.
    #[arg(long, env = "PROOFMILL_EXIT_ON_SHUTDOWN", value_parser = BoolishValueParser::new())]
    pub exit_on_shutdown: bool,
    /// Keep the prover's id and its unacknowledged results in this directory, so that a
    /// restarted prover reconnects as the same prover and resends what it finished.
    #[arg(long, env = "PROOFMILL_STATE_DIR")]
    pub state_dir: Option<std::path::PathBuf>,
    /// Tasks proven concurrently.
    #[arg(long, env = "PROOFMILL_CAPACITY", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub capacity: u32,
    /// Display name (default: the hostname).
    #[arg(long, env = "PROOFMILL_NAME", default_value_t = default_prover_name(), value_parser = parse_non_empty)]
    pub name: String,
    /// Program version this prover proves; it only receives batches of this version.
    #[arg(long, env = "PROOFMILL_VERSION_TAG", default_value = "devnet-v1", value_parser = parse_non_empty)]
    pub version_tag: String,
    /// Token presented to coordinators at registration: the fleet's shared secret or this
    /// prover's own (bound to --name).
    #[arg(long, env = "PROOFMILL_PROVER_TOKEN", hide_env_values = true, value_parser = parse_non_empty)]
    pub prover_token: Option<String>,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
    /// gRPC message size limit, bytes.
    #[arg(long, env = "PROOFMILL_MAX_MESSAGE_BYTES", default_value_t = 64 << 20, value_parser = parse_message_bytes)]
    pub max_message_bytes: usize,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (`HOST:PORT`; port 0: any free port;
    /// the bound address is logged as "metrics listening"). Off when unset.
    #[arg(long, env = "PROOFMILL_METRICS_LISTEN", value_parser = parse_listen_addr)]
    pub metrics_listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Batches to seal and prove.
    #[arg(long, env = "PROOFMILL_BATCHES", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub batches: u64,
    /// Provers to run.
    #[arg(long, env = "PROOFMILL_PROVERS", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub provers: u32,
    /// Proof types every batch needs: comma list of `name` or `name:backend`.
    #[arg(long, env = "PROOFMILL_PROOF_TYPES", value_delimiter = ',', default_value = "groth16", value_parser = parse_proof_type_spec)]
    pub proof_types: Vec<ProofTypeSpec>,
    #[command(flatten)]
    pub backends: BackendArgs,
    /// Directory of the database (`proofmill.db`), the blobs (`blobs`), the groth16 keys
    /// (`keys`) and the embedded L1's state (`l1.log`). Made absolute at startup.
    #[arg(long, env = "PROOFMILL_DATA_DIR", value_name = "DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,
    /// gRPC listen address of the demo's coordinator, `HOST:PORT` (port 0: any free port);
    /// printed at startup, for `proofmill status --coordinator`.
    #[arg(long, env = "PROOFMILL_LISTEN", default_value = "127.0.0.1:0", value_parser = parse_listen_addr)]
    pub listen: SocketAddr,
    /// Listen on a non-loopback address although the demo has no authentication.
    #[arg(long, env = "PROOFMILL_INSECURE", value_parser = BoolishValueParser::new())]
    pub insecure: bool,
    /// HTTP admin listen address of the demo's coordinator, `HOST:PORT` (port 0: any free
    /// port); printed at startup (`/health`, `/ready`, the admin calls under `/v1`).
    #[arg(long, env = "PROOFMILL_ADMIN_LISTEN", default_value = "127.0.0.1:0", value_parser = parse_listen_addr)]
    pub admin_listen: SocketAddr,
    /// Seed of the random traffic.
    #[arg(long, env = "PROOFMILL_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Transfers per batch (the groth16 circuit's batch size: 4 proves in a few seconds).
    #[arg(long, env = "PROOFMILL_BATCH_SIZE", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// State tree depth (1..=32).
    #[arg(long, env = "PROOFMILL_TREE_DEPTH", default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub tree_depth: u8,
    /// Accounts funded at genesis.
    #[arg(long, env = "PROOFMILL_ACCOUNTS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub accounts: u32,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (`HOST:PORT`; port 0: any free port;
    /// printed at startup). Off when unset.
    #[arg(long, env = "PROOFMILL_METRICS_LISTEN", value_parser = parse_listen_addr)]
    pub metrics_listen: Option<SocketAddr>,
    /// Buy the proofs on a proof market: a ProofMarket contract on the embedded L1, and two
    /// proving networks in this process, each with its own coordinator and prover. One proves
    /// what it is assigned; the other asks more than the escrow and refuses, so its batches
    /// fall back to the demo's own provers.
    #[arg(long, env = "PROOFMILL_MARKET", value_parser = BoolishValueParser::new())]
    pub market: bool,
}

#[derive(Debug, Clone, Args)]
pub struct L1DeployArgs {
    /// Node and deployer (who is also the sequencer).
    #[command(flatten)]
    pub rpc: L1RpcArgs,
    /// The coordinator's required proof types, in its order; those with an on-chain verifier
    /// (backends exec and groth16) are deployed, the others are checked off-chain only.
    #[arg(long, env = "PROOFMILL_PROOF_TYPES", value_delimiter = ',', default_value = "exec", value_parser = parse_proof_type_spec)]
    pub proof_types: Vec<ProofTypeSpec>,
    #[command(flatten)]
    pub backends: BackendArgs,
    /// Devnet genesis: state tree depth (1..=32).
    #[arg(long, env = "PROOFMILL_TREE_DEPTH", default_value_t = 16, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub tree_depth: u8,
    /// Devnet genesis: accounts funded.
    #[arg(long, env = "PROOFMILL_ACCOUNTS", default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    pub accounts: u32,
}

// ---------------------------------------------------------------------------------------------
// Cross-field checks and runtime normalisation, run once after parsing.

impl Cli {
    /// Checks constraints between options and resolves relative paths against the current
    /// directory.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        let cwd = std::env::current_dir().context("cannot determine the current directory")?;
        match &mut self.command {
            Command::Coordinator(a) => finish_coordinator(a, &cwd)?,
            Command::Devnet {
                command: DevnetCommand::Node(a),
            } => {
                a.coordinator.devnet = true;
                finish_coordinator(&mut a.coordinator, &cwd)?;
            }
            Command::Demo(a) => {
                a.data_dir = absolute(&cwd, &a.data_dir);
                check_accounts(a.accounts, a.tree_depth)?;
                check_unique_types("--proof-types", &a.proof_types)?;
            }
            Command::Prover(a) => {
                a.data_dir = absolute(&cwd, &a.data_dir);
                check_unique_types("--backend", &a.backend)?;
            }
            Command::Network(a) => {
                a.state_dir = absolute(&cwd, &a.state_dir);
                for d in &mut a.inputs_file_dirs {
                    *d = absolute(&cwd, d);
                }
                if a.network_key.is_none() && a.network_key_file.is_none() {
                    bail!("no network key: use --network-key-file or PROOFMILL_NETWORK_KEY");
                }
            }
            Command::L1 {
                command: L1Command::Deploy(a),
            } => {
                check_accounts(a.accounts, a.tree_depth)?;
                check_unique_types("--proof-types", &a.proof_types)?;
            }
            Command::L1 {
                command: L1Command::DeployMarket(_) | L1Command::MarketNetwork(_),
            } => {}
            Command::Status(_)
            | Command::Watch(_)
            | Command::Monitor(_)
            | Command::Cordon(_)
            | Command::Uncordon(_)
            | Command::Pause(_)
            | Command::Resume(_)
            | Command::SettleNow(_)
            | Command::CommitNow(_)
            | Command::Batch { .. }
            | Command::Submit(_)
            | Command::Proof { .. }
            | Command::Job { .. }
            | Command::Token { .. }
            | Command::Bench { .. } => {}
        }
        Ok(())
    }
}

impl Cli {
    /// Config keys and values of the paths derived from `--data-dir` (those the operator did
    /// not set are these); after [`Cli::finish`].
    pub fn derived_defaults(&self) -> Vec<(&'static str, String)> {
        let keys = |dir: &Path| ("groth16_keys", dir.join("keys").display().to_string());
        match &self.command {
            Command::Coordinator(a) => vec![
                ("db", a.db().to_string()),
                ("blobs", a.blobs().to_string()),
                ("l1_state", a.l1_state().display().to_string()),
                keys(&a.data_dir),
            ],
            Command::Prover(a) => vec![keys(&a.data_dir)],
            Command::Demo(a) => vec![keys(&a.data_dir)],
            _ => Vec::new(),
        }
    }
}

/// The paths [`Cli::finish`] derives from `--data-dir` when they are not set.
impl CoordinatorArgs {
    pub fn db(&self) -> &str {
        self.db.as_deref().expect("set by Cli::finish")
    }

    pub fn blobs(&self) -> &str {
        self.blobs.as_deref().expect("set by Cli::finish")
    }

    pub fn l1_state(&self) -> &Path {
        self.l1_state.as_deref().expect("set by Cli::finish")
    }
}

fn check_accounts(accounts: u32, tree_depth: u8) -> anyhow::Result<()> {
    let capacity = 1u64 << tree_depth;
    if u64::from(accounts) > capacity {
        bail!(
            "--accounts {accounts} does not fit in a tree of depth {tree_depth} ({capacity} leaves)"
        );
    }
    Ok(())
}

fn check_unique_types(option: &str, specs: &[ProofTypeSpec]) -> anyhow::Result<()> {
    for (i, (pt, _)) in specs.iter().enumerate() {
        if specs[..i].iter().any(|(other, _)| other == pt) {
            bail!("{option}: proof type {pt} is listed twice");
        }
    }
    Ok(())
}

/// `path` resolved against `cwd`, without `.` components (`/cwd/./data` → `/cwd/data`).
fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    cwd.join(path)
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

/// How to reach an Ethereum node over JSON-RPC and sign for it (shared by every subcommand
/// that talks to one).
#[derive(Debug, Clone, Args)]
pub struct L1RpcArgs {
    /// RPC L1: node URL.
    #[arg(long, env = "PROOFMILL_L1_RPC_URL", value_parser = parse_http_url)]
    pub l1_rpc_url: Option<String>,
    /// RPC L1: file holding the signer's hex private key.
    #[arg(long, env = "PROOFMILL_L1_KEY_FILE", value_name = "PATH")]
    pub l1_key_file: Option<PathBuf>,
    /// RPC L1: the signer's hex private key (prefer the environment or --l1-key-file).
    #[arg(long, env = "PROOFMILL_L1_KEY", hide_env_values = true, value_parser = parse_non_empty)]
    pub l1_key: Option<String>,
}

impl L1RpcArgs {
    /// The signer key from `--l1-key-file`, else `--l1-key` / `PROOFMILL_L1_KEY`.
    pub fn key(&self) -> anyhow::Result<String> {
        if let Some(f) = &self.l1_key_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the L1 key file {}", f.display()))?;
            return Ok(text.trim().to_string());
        }
        self.l1_key
            .as_deref()
            .map(|k| k.trim().to_string())
            .context("no L1 signer key: use --l1-key-file or PROOFMILL_L1_KEY")
    }
}

/// `file://PATH` (or a bare path) with a relative `PATH` resolved against `cwd`.
pub fn absolute_blobs_url(url: &str, cwd: &Path) -> anyhow::Result<String> {
    if is_remote_blobs(url) {
        return Ok(url.to_string());
    }
    let path = blobs_path(url).map_err(anyhow::Error::msg)?;
    Ok(format!(
        "file://{}",
        absolute(cwd, Path::new(path)).display()
    ))
}

/// Resolves a coordinator's paths against `cwd` and checks its options together.
fn finish_coordinator(a: &mut CoordinatorArgs, cwd: &Path) -> anyhow::Result<()> {
    a.data_dir = absolute(cwd, &a.data_dir);
    let dir = &a.data_dir;
    a.db.get_or_insert_with(|| format!("sqlite://{}?mode=rwc", dir.join("proofmill.db").display()));
    let blobs = a
        .blobs
        .take()
        .unwrap_or_else(|| format!("file://{}", dir.join("blobs").display()));
    a.blobs = Some(absolute_blobs_url(&blobs, cwd)?);
    let l1_state = a.l1_state.take().unwrap_or_else(|| dir.join("l1.log"));
    a.l1_state = Some(absolute(cwd, &l1_state));
    for d in &mut a.input_fetch_dirs {
        *d = absolute(cwd, d);
    }
    check_accounts(a.accounts, a.tree_depth)?;
    check_unique_types("--proof-types", &a.proof_types)?;
    if a.l1 == L1Mode::Rpc && (a.rpc.l1_rpc_url.is_none() || a.l1_rollup_address.is_none()) {
        bail!("--l1 rpc needs --l1-rpc-url and --l1-rollup-address");
    }
    if a.l1 == L1Mode::Rpc && a.rpc.l1_key_file.is_none() && a.rpc.l1_key.is_none() {
        bail!("--l1 rpc needs a signer key: --l1-key-file or PROOFMILL_L1_KEY");
    }
    a.market.check(a.l1 == L1Mode::Rpc)?;
    if let Some(b) = a.market.market_blobs.take() {
        a.market.market_blobs = Some(absolute_blobs_url(&b, cwd)?);
    }
    Ok(())
}
