use proofmill_backend::{Backend, Backends};
use proofmill_scheduler::{ChainShares, SchedulerConfig};
use proofmill_types::{BatchNumber, ChainId, ProofType, ProvingMode};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// Proof types every batch needs, each with the name of the backend that verifies it
    /// (none by default: the rollup's backends are the deployment's to choose, see
    /// [`CoordinatorConfig::prove_with`]).
    pub proof_types: Vec<(ProofType, String)>,
    /// The backends named by `proof_types`.
    pub backends: Backends,
    pub scheduler: SchedulerConfig,
    /// gRPC message limit, both directions.
    pub max_message_bytes: usize,
    /// Inputs up to this size travel inline in `ExecuteTask`; larger ones in chunks.
    pub inline_input_max: usize,
    pub chunk_bytes: usize,
    /// Largest proof accepted.
    pub max_proof_bytes: u64,
    /// Proofs up to this size are kept in the database row instead of the blob store.
    pub inline_proof_max: usize,
    /// Largest batch input accepted through the API.
    pub max_input_bytes: u64,
    /// The credentials provers register with (`Register.token`); open by default.
    pub prover_auth: crate::ProverAuth,
    /// The bearer tokens of the admin service, with their roles; open by default.
    pub admin_auth: crate::AdminAuth,
    /// TLS on the gRPC listener (plaintext when `None`).
    pub tls: Option<crate::ServerTls>,
    /// How long provers get to finish running tasks on shutdown.
    pub shutdown_grace_ms: u64,
    /// A prover must send Register/Reconnect within this time after opening its stream.
    pub register_timeout_ms: u64,
    /// Bytes of batch inputs kept in memory for dispatch.
    pub input_cache_bytes: usize,
    /// Most tasks sent ahead of the commit of their lease. Beyond it, tasks wait for the
    /// commit, so a stalled store stops dispatch. The default fits group commit on Postgres:
    /// at 30k completions/s one transaction of ~13k changes takes 110–220 ms, with up to
    /// ~8.5k leases in flight (BENCHMARKS.md, session 5); a cap of 1024 stalled dispatch on
    /// every commit. A lease lost to a crash is recovered from the prover's `Reconnect`, so
    /// the cap bounds memory and redone work, not correctness.
    pub max_uncommitted_dispatches: usize,
    /// Bytes of proofs in flight across every stream: chunks received so far, and proofs
    /// waiting for their verification. A proof that does not fit is refused with
    /// `SYSTEM_UNAVAILABLE` (the prover keeps it and offers it again later). At least
    /// `max_proof_bytes`.
    pub proof_memory_bytes: usize,
    /// Prover streams open at once, registered or not; more are refused with
    /// `RESOURCE_EXHAUSTED`.
    pub max_prover_streams: usize,
    /// Streams open at once that have not registered yet.
    pub max_unregistered_streams: usize,
    /// Keep every dispatch latency sample (result received → next task sent on that stream)
    /// for benchmarks; off in production.
    pub record_dispatch_latency: bool,
    /// The API refuses a batch more than this many numbers above the end of the gap-free
    /// run of stored batches (counted from the lowest stored batch); gaps within it are
    /// accepted and shown as warnings in status. 0: no limit.
    pub intake_window: u64,
    /// This coordinator's own chain ([`crate::DEFAULT_CHAIN_ID`] unless set): the one its
    /// sources (the devnet, a rollup core's API) feed and its L1 settlement settles.
    pub chain_id: u64,
    /// Chains proven here besides (or, to give it a weight or its own proof types,
    /// including) the own chain; batches of any other chain are refused. Their batches come
    /// through the API; they share the fleet by weight ([`proofmill_scheduler::ChainShares`]).
    pub chains: Vec<ChainSpec>,
    /// Directories the client API's `file://` input URLs may point into (resolved at
    /// start; each must exist). Empty: `file://` inputs are refused, so a remote client
    /// cannot make the coordinator read its own files.
    pub input_fetch_dirs: Vec<std::path::PathBuf>,
    /// Days the history of ended attempts is kept (0: for ever).
    pub attempt_retention_days: u32,
    /// Prove-time metrics also by prover name (one series per prover: for small fleets).
    pub metrics_per_prover: bool,
    /// The own chain's batches offered to a proof market: their jobs of this proof type are
    /// created held, for the proof manager ([`crate::MarketPort`]) to hand to a proving
    /// network or, on fallback, to the own provers. `None`: every job is the own provers'.
    pub market_hold: Option<MarketHold>,
}

/// Which of the own chain's jobs wait for a proof market ([`CoordinatorConfig::market_hold`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketHold {
    pub mode: ProvingMode,
    /// The proof type a network proves (one of the own chain's).
    pub proof_type: ProofType,
}

impl MarketHold {
    /// Whether the own chain's batch `number` has its `proof_type` job held.
    pub fn holds(&self, number: BatchNumber) -> bool {
        self.mode.offers(number)
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            proof_types: Vec::new(),
            backends: Backends::default(),
            scheduler: SchedulerConfig::default(),
            max_message_bytes: 64 << 20,
            inline_input_max: 1 << 20,
            chunk_bytes: 1 << 20,
            max_proof_bytes: 256 << 20,
            inline_proof_max: 64 << 10,
            max_input_bytes: 256 << 20,
            prover_auth: Default::default(),
            admin_auth: Default::default(),
            tls: None,
            shutdown_grace_ms: 10_000,
            register_timeout_ms: 10_000,
            input_cache_bytes: 256 << 20,
            max_uncommitted_dispatches: 16 * 1024,
            proof_memory_bytes: 1 << 30,
            max_prover_streams: 10_000,
            max_unregistered_streams: 1024,
            record_dispatch_latency: false,
            intake_window: 1024,
            chain_id: crate::DEFAULT_CHAIN_ID,
            chains: Vec::new(),
            input_fetch_dirs: Vec::new(),
            attempt_retention_days: 30,
            metrics_per_prover: false,
            market_hold: None,
        }
    }
}

impl CoordinatorConfig {
    /// Adds a proof type every batch needs, verified by `backend`.
    pub fn prove_with(mut self, proof_type: ProofType, backend: Arc<dyn Backend>) -> Self {
        self.proof_types
            .push((proof_type, backend.name().to_string()));
        self.backends.insert(backend);
        self
    }

    /// Every proof type configured (any chain's batch needs some of them).
    pub fn required_types(&self) -> Vec<ProofType> {
        self.proof_types.iter().map(|(t, _)| t.clone()).collect()
    }

    /// Every chain taken, with the proof types its batches need: the own chain and the
    /// [`CoordinatorConfig::chains`]. A chain with no proof types of its own needs them all.
    /// Refuses a proof type that is not configured, and a chain listed twice.
    pub fn chain_types(&self) -> Result<BTreeMap<ChainId, Vec<ProofType>>, String> {
        let all = self.required_types();
        let mut chains = BTreeMap::from([(self.chain_id, all.clone())]);
        let mut listed = std::collections::BTreeSet::new();
        for spec in &self.chains {
            if !listed.insert(spec.id) {
                return Err(format!("chain {} is listed twice", spec.id));
            }
            if let Some(t) = spec.proof_types.iter().find(|t| !all.contains(t)) {
                return Err(format!(
                    "chain {}: proof type {t} is not one of the coordinator's ({})",
                    spec.id,
                    all.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",")
                ));
            }
            let types = match spec.proof_types.is_empty() {
                true => all.clone(),
                false => spec.proof_types.clone(),
            };
            chains.insert(spec.id, types);
        }
        Ok(chains)
    }

    /// The chains' weights ([`ChainSpec::weight`]), for the scheduler.
    pub fn chain_shares(&self) -> Result<ChainShares, String> {
        let weights = self.chains.iter().map(|c| (c.id, c.weight)).collect();
        ChainShares::new(weights).map_err(|e| e.to_string())
    }
}

/// A chain proven here ([`CoordinatorConfig::chains`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSpec {
    pub id: ChainId,
    /// What its batches need; empty: every configured proof type.
    pub proof_types: Vec<ProofType>,
    /// Its share of the fleet while chains have work (at least 1).
    pub weight: u32,
}

impl std::str::FromStr for ChainSpec {
    type Err = String;

    /// `ID[:WEIGHT[:TYPE+TYPE…]]`, e.g. `7`, `7:3`, `7:3:exec+groth16`.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.split(':');
        let bad = || format!("chain {s:?}: expected ID[:WEIGHT[:TYPE+TYPE...]], e.g. 7:3:exec");
        let id = parts.next().and_then(|p| p.parse().ok()).ok_or_else(bad)?;
        let weight = match parts.next() {
            None => 1,
            Some(w) => w.parse::<u32>().ok().filter(|w| *w > 0).ok_or_else(|| {
                format!("chain {s:?}: the weight must be a whole number of at least 1")
            })?,
        };
        let proof_types = match parts.next() {
            None => Vec::new(),
            Some(t) => t
                .split('+')
                .map(ProofType::new)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("chain {s:?}: {e}"))?,
        };
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(ChainSpec {
            id,
            proof_types,
            weight,
        })
    }
}
