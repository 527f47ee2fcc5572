//! `proofmill network`: a proving network's daemon on the proof market.

use super::admin::AdminAccess;
use super::parse::*;
use clap::Args;
use std::path::PathBuf;

/// Longest duration option, ms (a year).
const MAX_MS: u64 = 365 * 24 * 3_600_000;

#[derive(Debug, Clone, Args)]
pub struct NetworkArgs {
    /// The L1 node's JSON-RPC URL (also `--l1-rpc`).
    #[arg(long, env = "PROOFMILL_L1_RPC_URL", alias = "l1-rpc", value_parser = parse_http_url)]
    pub l1_rpc_url: String,
    /// Address of the ProofMarket contract.
    #[arg(long, env = "PROOFMILL_MARKET_ADDRESS", value_parser = parse_address)]
    pub market_address: String,
    /// The network's hex private key: the address the market assigns requests to, and
    /// which acknowledges, posts proofs and claims rewards (prefer the environment or
    /// --network-key-file).
    #[arg(long, env = "PROOFMILL_NETWORK_KEY", hide_env_values = true, value_parser = parse_non_empty)]
    pub network_key: Option<String>,
    /// File holding the network's hex private key (instead of --network-key).
    #[arg(
        long,
        env = "PROOFMILL_NETWORK_KEY_FILE",
        value_name = "PATH",
        conflicts_with = "network_key"
    )]
    pub network_key_file: Option<PathBuf>,
    /// The network's own coordinator, gRPC URL: requests are proven through its client API.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    /// Token and TLS of the coordinator's client API.
    #[command(flatten)]
    pub access: AdminAccess,
    /// Directory of the network's state (`network-state.json`: the events' cursor and each
    /// request's status). Made absolute at startup.
    #[arg(
        long,
        env = "PROOFMILL_STATE_DIR",
        value_name = "DIR",
        default_value = "./proofmill-network"
    )]
    pub state_dir: PathBuf,
    /// Smallest `max_reward` accepted, wei (a decimal string in a config file).
    #[arg(long, env = "PROOFMILL_MIN_REWARD", default_value = "0", value_parser = parse_wei)]
    pub min_reward: proofmill_market::U256,
    /// Reward asked when posting a proof, wei, capped at the request's `max_reward`
    /// (default: the request's `max_reward`).
    #[arg(long, env = "PROOFMILL_ASK_REWARD", value_parser = parse_wei)]
    pub ask_reward: Option<proofmill_market::U256>,
    /// Requests accepted and not yet posted at once; more are refused.
    #[arg(long, env = "PROOFMILL_MAX_IN_FLIGHT", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=4096))]
    pub max_in_flight: u64,
    /// Proofs posted for one rollup and not validated by it yet, at most: that rollup's
    /// further requests are refused until it validates.
    #[arg(long, env = "PROOFMILL_MAX_AWAITING_VALIDATION", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_awaiting_validation: u64,
    /// Prove time expected until some are measured (then: the median of the recent ones),
    /// seconds.
    #[arg(long, env = "PROOFMILL_EXPECTED_PROVE_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub expected_prove_secs: u64,
    /// A request is taken only if its deadline leaves the estimated prove time times this
    /// (percent) plus --deadline-margin-secs.
    #[arg(long, env = "PROOFMILL_SAFETY_FACTOR_PERCENT", default_value_t = 200, value_parser = clap::value_parser!(u32).range(100..=10_000))]
    pub safety_factor_percent: u32,
    /// Seconds before a request's deadline after which its proof is not posted (it is given
    /// up instead): room for the transaction.
    #[arg(long, env = "PROOFMILL_DEADLINE_MARGIN_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(0..=86_400))]
    pub deadline_margin_secs: u64,
    /// Protocol versions served (comma list): a request of another is refused.
    #[arg(long, env = "PROOFMILL_PROTOCOL_VERSIONS", value_delimiter = ',', default_value = "devnet-v1", value_parser = parse_non_empty)]
    pub protocol_versions: Vec<String>,
    /// Blocks on top of a block before its events are read.
    #[arg(long, env = "PROOFMILL_CONFIRMATIONS", default_value_t = 2)]
    pub confirmations: u64,
    /// Blocks per `eth_getLogs` query at most (halved while the node refuses a range).
    #[arg(long, env = "PROOFMILL_MAX_BLOCK_RANGE", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_block_range: u64,
    /// First block read when the state directory is new (default: the first block of the
    /// market's last acknowledgement timeout, so requests assigned before the first start
    /// that can still be acknowledged are seen); a state directory's own cursor wins.
    #[arg(long, env = "PROOFMILL_FROM_BLOCK")]
    pub from_block: Option<u64>,
    /// Between polls of the market's events, ms.
    #[arg(long, env = "PROOFMILL_POLL_INTERVAL", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub poll_interval: u64,
    /// Directories `file://` inputs URLs may point into (comma list; each must exist). None
    /// by default: `file://` inputs are refused.
    #[arg(
        long,
        env = "PROOFMILL_INPUTS_FILE_DIRS",
        value_delimiter = ',',
        value_name = "DIR"
    )]
    pub inputs_file_dirs: Vec<PathBuf>,
    /// Largest inputs fetched, bytes (a larger body is refused while it streams).
    #[arg(long, env = "PROOFMILL_FETCH_MAX_BYTES", default_value_t = 256 << 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub fetch_max_bytes: u64,
    /// Longest one inputs fetch takes, ms.
    #[arg(long, env = "PROOFMILL_FETCH_TIMEOUT", default_value_t = 120_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub fetch_timeout: u64,
    /// Longest wait between retries after an L1 or coordinator error, ms.
    #[arg(long, env = "PROOFMILL_MAX_BACKOFF", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub max_backoff: u64,
}

impl NetworkArgs {
    /// The key from `--network-key-file`, else `--network-key` / `PROOFMILL_NETWORK_KEY`.
    pub fn key(&self) -> anyhow::Result<String> {
        use anyhow::Context as _;
        if let Some(f) = &self.network_key_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the network key file {}", f.display()))?;
            return Ok(text.trim().to_string());
        }
        self.network_key
            .as_deref()
            .map(|k| k.trim().to_string())
            .context("no network key: use --network-key-file or PROOFMILL_NETWORK_KEY")
    }
}

/// An amount of wei: decimal, or `0x` hex.
fn parse_wei(s: &str) -> Result<proofmill_market::U256, String> {
    s.trim()
        .parse()
        .map_err(|e| format!("{s:?} is not an amount of wei: {e}"))
}
