//! The rollup's proof manager options (a coordinator's `--proving-mode` and `--market-*`):
//! which batches are offered to the proof market, on which contract, with which escrow, and
//! where their inputs are published.

use super::MAX_MS;
use super::parse::*;
use anyhow::{Context as _, bail};
use clap::builder::BoolishValueParser;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

/// `--proving-mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProvingModeArg {
    /// Only the own provers.
    Cluster,
    /// Every batch offered to the market (falling back to the own provers).
    Network,
    /// A share of the batches (--market-ratio) offered.
    Mixed,
}

#[derive(Debug, Clone, Args)]
pub struct MarketArgs {
    /// Where batches are proven: cluster (own provers only), network (every batch offered to
    /// the proof market, falling back to the own provers when a network does not deliver),
    /// or mixed (a share, --market-ratio). The market needs `--l1 rpc`.
    #[arg(long, env = "PROOFMILL_PROVING_MODE", value_enum, default_value_t = ProvingModeArg::Cluster)]
    pub proving_mode: ProvingModeArg,
    /// Mixed mode: the share of batches offered, 0..1 (spread evenly over batch numbers).
    #[arg(long, env = "PROOFMILL_MARKET_RATIO")]
    pub market_ratio: Option<f64>,
    /// The ProofMarket contract's address.
    #[arg(long, env = "PROOFMILL_MARKET_ADDRESS", value_parser = parse_address)]
    pub market_address: Option<String>,
    /// The market's node. Default: --l1-rpc-url.
    #[arg(long, env = "PROOFMILL_MARKET_RPC_URL", value_parser = parse_http_url)]
    pub market_rpc_url: Option<String>,
    /// File holding the hex private key of the market's submitter (a key of its own: the
    /// proof sender's key has its own nonces).
    #[arg(long, env = "PROOFMILL_MARKET_KEY_FILE", value_name = "PATH")]
    pub market_key_file: Option<PathBuf>,
    /// The market submitter's hex private key (prefer the environment or --market-key-file).
    #[arg(long, env = "PROOFMILL_MARKET_KEY", hide_env_values = true, value_parser = parse_non_empty)]
    pub market_key: Option<String>,
    /// Blob store where offered batches' inputs are published for the networks to read:
    /// file://PATH, s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX].
    #[arg(long, env = "PROOFMILL_MARKET_BLOBS", value_parser = parse_blobs_url)]
    pub market_blobs: Option<String>,
    /// The base URL networks read the published inputs at (e.g. the bucket's public https
    /// address). Default: --market-blobs itself.
    #[arg(long, env = "PROOFMILL_MARKET_BLOBS_PUBLIC_URL", value_parser = parse_non_empty)]
    pub market_blobs_public_url: Option<String>,
    /// The proof type networks are asked for. Default: the first of --proof-types.
    #[arg(long, env = "PROOFMILL_MARKET_PROOF_TYPE", value_parser = parse_non_empty)]
    pub market_proof_type: Option<String>,
    /// Escrow of each request in wei: the most a network earns for a proof.
    #[arg(
        long,
        env = "PROOFMILL_MARKET_MAX_REWARD",
        default_value_t = 1_000_000_000_000_000
    )]
    pub market_max_reward: u128,
    /// Seconds a network has, from the request, to post its proof (at most the market's
    /// longest).
    #[arg(long, env = "PROOFMILL_MARKET_PROOF_TIMEOUT", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..))]
    pub market_proof_timeout: u64,
    /// Blocks on top of one before its market events are read.
    #[arg(long, env = "PROOFMILL_MARKET_CONFIRMATIONS", default_value_t = 2)]
    pub market_confirmations: u64,
    /// Most blocks per log query (halved while the node refuses one).
    #[arg(long, env = "PROOFMILL_MARKET_MAX_BLOCK_RANGE", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub market_max_block_range: u64,
    /// The first block to read market events from when none was read yet (the market's
    /// deployment block).
    #[arg(long, env = "PROOFMILL_MARKET_FROM_BLOCK", default_value_t = 0)]
    pub market_from_block: u64,
    /// Pause between the proof manager's rounds, ms.
    #[arg(long, env = "PROOFMILL_MARKET_POLL_INTERVAL", default_value_t = 2_000, value_parser = clap::value_parser!(u64).range(1..=MAX_MS))]
    pub market_poll_interval: u64,
}

impl MarketArgs {
    /// The mode as the coordinator holds jobs by it; refuses a ratio that does not fit.
    pub fn mode(&self) -> anyhow::Result<proofmill_types::ProvingMode> {
        let name = match self.proving_mode {
            ProvingModeArg::Cluster => "cluster",
            ProvingModeArg::Network => "network",
            ProvingModeArg::Mixed => "mixed",
        };
        Ok(proofmill_types::ProvingMode::from_flags(
            name,
            self.market_ratio,
        )?)
    }

    /// Whether batches are offered to a market at all.
    pub fn offers(&self) -> bool {
        self.proving_mode != ProvingModeArg::Cluster
    }

    /// The submitter key from `--market-key-file`, else `--market-key`.
    pub fn key(&self) -> anyhow::Result<String> {
        if let Some(f) = &self.market_key_file {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("reading the market key file {}", f.display()))?;
            return Ok(text.trim().to_string());
        }
        self.market_key
            .as_deref()
            .map(|k| k.trim().to_string())
            .context("no market submitter key: use --market-key-file or PROOFMILL_MARKET_KEY")
    }

    /// Checks the options together (`l1_rpc`: whether the coordinator settles over RPC).
    pub fn check(&self, l1_rpc: bool) -> anyhow::Result<()> {
        self.mode()?;
        if !self.offers() {
            return Ok(());
        }
        if !l1_rpc {
            bail!(
                "--proving-mode {} needs --l1 rpc: proving networks read the market on a real \
                 chain (the embedded L1 is this process's own; `proofmill demo --market` shows \
                 the market in one process)",
                self.mode()?.name()
            );
        }
        if let Some(t) = &self.market_proof_type {
            proofmill_types::ProofType::new(t)
                .map_err(|e| anyhow::anyhow!("--market-proof-type {t:?}: {e}"))?;
        }
        if self.market_address.is_none() {
            bail!("--proving-mode network|mixed needs --market-address");
        }
        if self.market_blobs.is_none() {
            bail!(
                "--proving-mode network|mixed needs --market-blobs: where the offered batches' \
                 inputs are published for the networks"
            );
        }
        if self.market_key_file.is_none() && self.market_key.is_none() {
            bail!(
                "--proving-mode network|mixed needs the market submitter's key: \
                 --market-key-file or PROOFMILL_MARKET_KEY"
            );
        }
        Ok(())
    }
}

/// `proofmill l1 deploy-market`.
#[derive(Debug, Clone, Args)]
pub struct MarketDeployArgs {
    /// Node and deployer (the market's admin).
    #[command(flatten)]
    pub rpc: super::L1RpcArgs,
    /// The rollup's submitter: the only address that may post requests and validation
    /// results (the coordinator's --market-key).
    #[arg(long, env = "PROOFMILL_MARKET_SUBMITTER", value_parser = parse_address)]
    pub market_submitter: String,
    /// Seconds a network has to acknowledge a request.
    #[arg(long, env = "PROOFMILL_MARKET_ACK_TIMEOUT", default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub market_ack_timeout: u64,
    /// The longest proof timeout a request may ask, seconds.
    #[arg(long, env = "PROOFMILL_MARKET_MAX_PROOF_TIMEOUT", default_value_t = 86_400, value_parser = clap::value_parser!(u64).range(1..))]
    pub market_max_proof_timeout: u64,
    /// Seconds the rollup has to answer a posted proof with its validation result; after
    /// that anyone may close the request and the network earns the reward it asked.
    #[arg(long, env = "PROOFMILL_MARKET_VALIDATION_TIMEOUT", default_value_t = 3_600, value_parser = clap::value_parser!(u64).range(1..))]
    pub market_validation_timeout: u64,
}

/// `proofmill l1 market-network`.
#[derive(Debug, Clone, Args)]
pub struct MarketNetworkArgs {
    /// Node and signer (the market's admin).
    #[command(flatten)]
    pub rpc: super::L1RpcArgs,
    /// The ProofMarket contract's address.
    #[arg(long, env = "PROOFMILL_MARKET_ADDRESS", value_parser = parse_address)]
    pub market_address: String,
    /// The proving network's address.
    #[arg(long, env = "PROOFMILL_NETWORK_ADDRESS", value_parser = parse_address)]
    pub network_address: String,
    /// Whether it takes requests (false: it gets no new ones).
    #[arg(long, env = "PROOFMILL_ACTIVE", default_value = "true", value_parser = BoolishValueParser::new())]
    pub active: bool,
    /// Also make it the preferred network (every request goes to it while it is active);
    /// `--preferred false` goes back to round-robin.
    #[arg(long, env = "PROOFMILL_PREFERRED", value_parser = BoolishValueParser::new())]
    pub preferred: Option<bool>,
}
