//! The admin commands' options: how they reach a coordinator (URL, token, TLS) and what each
//! call takes (`status`, `watch`, `monitor`, `batch`, `cordon`, `pause`, `resume`,
//! `settle-now`, `commit-now`).

use super::parse::*;
use clap::Args;
use clap::builder::BoolishValueParser;
use std::path::PathBuf;

/// How a command reaches a coordinator's `https://` URL.
#[derive(Debug, Clone, Default, Args)]
pub struct ClientTlsArgs {
    /// The CA that signed the coordinator's certificate, PEM (`https://` URLs; default: the
    /// system's roots).
    #[arg(long, env = "PROOFMILL_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Mutual TLS: this client's certificate, PEM (with --tls-key).
    #[arg(long, env = "PROOFMILL_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Mutual TLS: the private key of --tls-cert, PEM.
    #[arg(long, env = "PROOFMILL_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
}

impl ClientTlsArgs {
    pub fn load(&self) -> anyhow::Result<proofmill_proto::client::ClientTls> {
        proofmill_proto::client::ClientTls::from_files(
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )
        .map_err(anyhow::Error::msg)
    }
}

/// How an admin command proves who it is: a bearer token, and TLS.
#[derive(Debug, Clone, Default, Args)]
pub struct AdminAccess {
    /// Bearer token of the coordinator's admin API (see its --admin-tokens-file).
    #[arg(long, env = "PROOFMILL_ADMIN_TOKEN", hide_env_values = true, value_parser = parse_non_empty)]
    pub admin_token: Option<String>,
    #[command(flatten)]
    pub tls: ClientTlsArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
    /// Print one JSON object instead of tables.
    #[arg(long, env = "PROOFMILL_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WatchArgs {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
    /// Print one JSON object per line instead of text.
    #[arg(long, env = "PROOFMILL_JSON", value_parser = BoolishValueParser::new())]
    pub json: bool,
    /// Stop after this many events (default: until the coordinator stops).
    #[arg(long, env = "PROOFMILL_MAX_EVENTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_events: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct MonitorArgs {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
    /// How often to read the full status again (ms); watch events update the screen in
    /// between, and a missed event or an action reads it at once.
    #[arg(long, env = "PROOFMILL_REFRESH_MS", default_value_t = 2000, value_parser = clap::value_parser!(u64).range(100..=600_000))]
    pub refresh_ms: u64,
}

#[derive(Debug, Clone, Args)]
pub struct BatchReplaceArgs {
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
    /// File holding the new input.
    #[arg(long, env = "PROOFMILL_INPUT", value_name = "FILE")]
    pub input: PathBuf,
    /// Public values of the new input: 96 bytes in hex (old root, new root, commitment).
    #[arg(long, env = "PROOFMILL_PUBLIC_VALUES", value_parser = parse_public_values)]
    pub public_values: PublicValuesArg,
    /// Program version of the new input.
    #[arg(long, env = "PROOFMILL_VERSION_TAG", default_value = "devnet-v1", value_parser = parse_non_empty)]
    pub version_tag: String,
    /// Proof types to prove (comma list; default: the coordinator's).
    #[arg(long, env = "PROOFMILL_PROOF_TYPES", value_delimiter = ',')]
    pub proof_types: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct BatchCancelArgs {
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
    /// Why, kept as the jobs' last error (default: "cancelled by an operator").
    #[arg(long, env = "PROOFMILL_REASON", default_value = "")]
    pub reason: String,
}

/// The bytes of `--public-values`: opaque, in the rollup's own layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicValuesArg(pub Vec<u8>);

/// Bytes in hex, with or without `0x` (the devnet's are 96: old root, new root, commitment).
pub(super) fn parse_public_values(s: &str) -> Result<PublicValuesArg, String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return Err(format!(
            "want bytes as an even, non-zero number of hex digits, got {} characters",
            digits.len()
        ));
    }
    hex::decode(digits)
        .map(PublicValuesArg)
        .map_err(|e| format!("not hex: {e}"))
}

#[derive(Debug, Clone, Args)]
pub struct CordonArgs {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
    /// The prover's id, as `status` lists it, or its name when no other prover has it.
    #[arg(long, env = "PROOFMILL_PROVER_ID", value_parser = parse_non_empty)]
    pub prover_id: String,
}

/// Help of `--component`, the names the coordinator knows.
const COMPONENTS: &str = "sender (L1 proof sender: no verifyBatches), committer (no commitBatch), \
    sealing (the devnet seals no batch), intake (LaunchProof refused, sources wait) or dispatch \
    (no new tasks; running tasks finish)";

#[derive(Debug, Clone, Args)]
pub struct PauseArgs {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
    /// What to pause.
    #[arg(long, env = "PROOFMILL_COMPONENT", value_parser = parse_non_empty, long_help = COMPONENTS)]
    pub component: String,
    /// Why, shown in `status` (at most 1024 bytes).
    #[arg(long, env = "PROOFMILL_REASON", default_value = "")]
    pub reason: String,
}

#[derive(Debug, Clone, Args)]
pub struct ResumeArgs {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
    /// What to resume.
    #[arg(long, env = "PROOFMILL_COMPONENT", value_parser = parse_non_empty, long_help = COMPONENTS)]
    pub component: String,
}

#[derive(Debug, Clone, Args)]
pub struct SettleNowArgs {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
}

#[derive(Debug, Clone, Args)]
pub struct CommitNowArgs {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
    /// The sealed batch to commit.
    #[arg(long, env = "PROOFMILL_BATCH", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
}
