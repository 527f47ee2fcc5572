//! The client API commands' options: `submit` and `proof get|wait`.

use super::admin::{AdminAccess, PublicValuesArg};
use super::parse::*;
use clap::{Args, Subcommand};
use std::path::PathBuf;

/// Which batch of which chain, on which coordinator.
#[derive(Debug, Clone, Args)]
pub struct BatchRef {
    /// Coordinator gRPC URL.
    #[arg(long, env = "PROOFMILL_COORDINATOR", default_value = "http://127.0.0.1:3900", value_parser = parse_http_url)]
    pub coordinator: String,
    #[command(flatten)]
    pub access: AdminAccess,
    /// The chain the batch belongs to.
    #[arg(long, env = "PROOFMILL_CHAIN_ID", default_value_t = proofmill_coordinator::DEFAULT_CHAIN_ID)]
    pub chain_id: u64,
    /// The batch number.
    #[arg(long, env = "PROOFMILL_BATCH", value_parser = clap::value_parser!(u64).range(1..))]
    pub batch: u64,
}

#[derive(Debug, Clone, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    pub batch: BatchRef,
    /// File holding the input, streamed to the coordinator in chunks.
    #[arg(
        long,
        env = "PROOFMILL_INPUT",
        value_name = "FILE",
        required_unless_present = "input_url",
        conflicts_with = "input_url"
    )]
    pub input: Option<PathBuf>,
    /// Where the coordinator reads the input: http(s)://, s3://, gs://, or file:// under its
    /// --input-fetch-dirs. Needs --digest.
    #[arg(
        long,
        env = "PROOFMILL_INPUT_URL",
        value_name = "URL",
        requires = "digest"
    )]
    pub input_url: Option<String>,
    /// SHA-256 of the input, hex (checked by the coordinator before it stores anything).
    #[arg(long, env = "PROOFMILL_DIGEST", value_name = "HEX", value_parser = parse_digest)]
    pub digest: Option<[u8; 32]>,
    /// Public values of the batch, hex (opaque; checked by the proof types' backends).
    #[arg(long, env = "PROOFMILL_PUBLIC_VALUES", value_parser = super::admin::parse_public_values)]
    pub public_values: PublicValuesArg,
    /// Program version of the batch.
    #[arg(long, env = "PROOFMILL_VERSION_TAG", default_value = "devnet-v1", value_parser = parse_non_empty)]
    pub version_tag: String,
    /// Proof types to prove (comma list; default: the coordinator's).
    #[arg(long, env = "PROOFMILL_PROOF_TYPES", value_delimiter = ',')]
    pub proof_types: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub enum ProofCommand {
    /// Print a proven batch's proofs (or write them to --out): NOT_FOUND until proven.
    Get(ProofGetArgs),
    /// Wait until a batch is proven, failed or cancelled; print its proofs (or write them to
    /// --out). Exits non-zero when it failed or was cancelled, or at --timeout.
    Wait(ProofWaitArgs),
}

#[derive(Debug, Clone, Args)]
pub struct ProofGetArgs {
    #[command(flatten)]
    pub batch: BatchRef,
    /// Only this proof type (default: every one of the batch).
    #[arg(long, env = "PROOFMILL_PROOF_TYPE")]
    pub proof_type: Option<String>,
    /// Directory to write each proof to, as `batch-N.TYPE.proof` (default: print hex).
    #[arg(long, env = "PROOFMILL_OUT", value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Args)]
pub struct ProofWaitArgs {
    #[command(flatten)]
    pub batch: BatchRef,
    /// Longest wait, ms (0: until the batch is terminal).
    #[arg(long, env = "PROOFMILL_TIMEOUT", default_value_t = 0)]
    pub timeout: u64,
    /// Directory to write each proof to, as `batch-N.TYPE.proof` (default: print hex).
    #[arg(long, env = "PROOFMILL_OUT", value_name = "DIR")]
    pub out: Option<PathBuf>,
}

fn parse_digest(s: &str) -> Result<[u8; 32], String> {
    let digits = s.strip_prefix("0x").unwrap_or(s);
    let bytes = hex::decode(digits).map_err(|e| format!("not hex: {e}"))?;
    bytes
        .try_into()
        .map_err(|b: Vec<u8>| format!("a SHA-256 is 32 bytes, got {}", b.len()))
}
