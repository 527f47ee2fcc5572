use proofmill_backend::{Backend, Backends};
use proofmill_scheduler::SchedulerConfig;
use proofmill_types::ProofType;
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
    /// The chain whose batches this coordinator takes ([`crate::DEFAULT_CHAIN_ID`] unless
    /// set): submissions naming another chain are refused.
    pub chain_id: u64,
    /// Directories the client API's `file://` input URLs may point into (resolved at
    /// start; each must exist). Empty: `file://` inputs are refused, so a remote client
    /// cannot make the coordinator read its own files.
    pub input_fetch_dirs: Vec<std::path::PathBuf>,
    /// Days the history of ended attempts is kept (0: for ever).
    pub attempt_retention_days: u32,
    /// Prove-time metrics also by prover name (one series per prover: for small fleets).
    pub metrics_per_prover: bool,
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
            input_fetch_dirs: Vec::new(),
            attempt_retention_days: 30,
            metrics_per_prover: false,
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

    pub fn required_types(&self) -> Vec<ProofType> {
        self.proof_types.iter().map(|(t, _)| t.clone()).collect()
    }
}
