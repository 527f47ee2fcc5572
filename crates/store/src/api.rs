use async_trait::async_trait;
use proofmill_types::{
    Attempt, AttemptOutcome, Batch, BatchNumber, ChainId, FencingToken, Job, JobKey, JobState,
    Millis, ProofRecord, ProofType, ProverId,
};
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A batch with this number exists with different content (input digest or public values).
    #[error("batch {0} already exists with different content")]
    BatchConflict(BatchNumber),
    #[error("invalid store url {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("database error: {0}")]
    Database(String),
    /// The database could not be reached: connection refused or lost, no connection within
    /// the pool's timeout. Transient: the same call may succeed once the server is back.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A value the store cannot hold (a number over i64::MAX, a NUL in text): writing it
    /// again fails the same way, so it is not worth retrying.
    #[error("value cannot be stored: {0}")]
    Unstorable(String),
    #[error("blob store error: {0}")]
    Blob(String),
    #[error("blob {key:?} not found")]
    BlobNotFound { key: String },
    /// Stored data failed to decode (corruption or a newer schema).
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("batch {0} does not exist")]
    BatchNotFound(BatchNumber),
    /// [`Store::replace_batch`] of a batch whose jobs are all proven.
    #[error("batch {0} is proven: its input can no longer change")]
    BatchProven(BatchNumber),
    /// [`Store::replace_batch`] of a batch with a job still queued or leased.
    #[error("batch {0} has open jobs: cancel them first")]
    BatchOpen(BatchNumber),
    /// This handle writes for a coordinator lease epoch that is no longer the store's: another
    /// coordinator took over. Nothing was written, and nothing written through this handle
    /// ever will be.
    #[error(
        "fenced: this coordinator's lease (epoch {epoch}) was taken over{}; it may not write",
        current.map(|c| format!(" (now epoch {c})")).unwrap_or_default()
    )]
    Fenced { epoch: u64, current: Option<u64> },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One write, applied atomically with the others of the same [`Store::apply`] call.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Write the job row exactly as given (state, attempts, lease, not_before, last_error).
    /// The job must exist (created by [`Store::insert_batch`]).
    Job(Job),
    /// Record an accepted proof. At most one proof per job key: writing one for a key that has
    /// a proof replaces it (a re-proof after L1 rejected the old one).
    Proof(ProofRecord),
    /// Forget the proof of a job (L1 rejected it); the job is requeued by a `Job` change.
    DeleteProof(JobKey),
    /// Take a prover out of rotation (`on`, kept with the time it was first set and the
    /// latest reason) or put it back. Committed with the group, so a cordon is as durable as
    /// a lease.
    Cordon {
        prover: ProverId,
        on: bool,
        at: Millis,
        reason: String,
    },
    /// Pause a part of the coordinator (`paused`, kept with the time it was first paused and
    /// the latest reason) or resume it. The store does not know the parts: `component` is
    /// the coordinator's name for one.
    Control {
        component: String,
        paused: bool,
        at: Millis,
        reason: String,
    },
    /// A settling transaction of batches `first_batch..=last_batch` is about to be sent:
    /// after a crash the store says what was in flight ([`Store::pending_verify`]). Replaces
    /// any earlier pending mark.
    PendingVerify {
        first_batch: BatchNumber,
        last_batch: BatchNumber,
        at: Millis,
    },
    /// Forget the pending mark: its transaction was recorded, rejected or found on L1.
    ClearPendingVerify,
    /// A settling transaction was mined: its record, found by each of its batches
    /// ([`Store::verify_record`]). A record with the same first batch is replaced.
    Verified { record: VerifyRecord, at: Millis },
    /// An attempt began (its `ended_at` and `outcome` are ignored): its row, named by its
    /// token, for the job's history ([`Store::attempts`]). Written again, it changes nothing.
    AttemptStarted(Attempt),
    /// The attempt with `token` ended. Changes nothing when it has no row (it began before the
    /// store kept attempts) or ended already.
    AttemptEnded {
        token: FencingToken,
        at: Millis,
        outcome: AttemptOutcome,
        /// The prover's error, or why it ended.
        detail: String,
        prove_ms: Option<u64>,
    },
}

/// One settling transaction on L1 (`verifyBatches`), recorded for each of its batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyRecord {
    /// `0x`-prefixed hex.
    pub tx_hash: String,
    pub first_batch: BatchNumber,
    pub last_batch: BatchNumber,
    pub gas_used: u64,
}

/// One commit transaction on L1 (`commitBatch`) of one batch, as the committer saw it mined
/// (or found it on L1 after a restart): [`Store::record_commit`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitRecord {
    pub batch: BatchNumber,
    /// `0x`-prefixed hex.
    pub tx_hash: String,
    pub gas_used: u64,
    /// The L1 block it was mined in.
    pub block: u64,
    /// When the committer recorded it (Unix ms): when it saw the receipt, or, for a commit
    /// found on L1 after a restart, when it found it.
    pub recorded_at: Millis,
}

/// A part of the coordinator paused by [`Change::Control`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PausedComponent {
    pub component: String,
    pub reason: String,
    /// When it was paused (Unix ms).
    pub since: Millis,
}

/// Which jobs [`Store::jobs`] lists.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct JobFilter {
    /// Only jobs of this chain (all chains when `None`).
    pub chain: Option<ChainId>,
    pub proof_type: Option<ProofType>,
    pub state: Option<JobState>,
    /// Only jobs with batch >= this.
    pub from_batch: Option<BatchNumber>,
    /// At most this many, ordered by (chain, batch, proof_type).
    pub limit: u32,
}

/// Who holds the coordinator lease of a store (see [`Store::acquire_lease`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseHolder {
    /// The holder's instance id (unique per coordinator process and run).
    pub holder: String,
    /// Where provers and admin clients reach it.
    pub url: String,
    pub epoch: u64,
    /// Milliseconds until the lease expires (by the database's clock); negative once expired.
    pub expires_in_ms: i64,
}

/// A coordinator asking for the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseClaim {
    pub holder: String,
    pub url: String,
    /// How long the lease lasts without a renewal.
    pub ttl_ms: u64,
    /// Also take a lease that has not expired when its holder has this claim's `url`: a
    /// previous run of this coordinator that died without releasing it (the new run holds the
    /// address now). Only for a coordinator's first claim after it starts.
    pub reclaim: bool,
}

/// Count of jobs per proof type and state (states with no job may be missing).
pub type JobCounts = BTreeMap<ProofType, BTreeMap<JobState, u64>>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Inserts a batch and one `queued` job per required proof type, atomically.
    /// Idempotent: returns `Ok(false)` when the same batch (same input digest and public
    /// values) exists already, and [`StoreError::BatchConflict`] when a different one does.
    async fn insert_batch(&self, batch: &Batch, now: Millis) -> Result<bool> {
        self.insert_batch_holding(batch, &[], now).await
    }

    /// [`Store::insert_batch`] with the jobs of the proof types in `held` (those of
    /// `batch.required`) created `held` instead of `queued`: offered to a proving network, not
    /// to the own provers (see [`proofmill_types::JobState::Held`]).
    async fn insert_batch_holding(
        &self,
        batch: &Batch,
        held: &[ProofType],
        now: Millis,
    ) -> Result<bool>;

    async fn batch(&self, chain: ChainId, number: BatchNumber) -> Result<Option<Batch>>;

    /// Highest batch number stored of `chain`.
    async fn last_sealed_batch(&self, chain: ChainId) -> Result<Option<BatchNumber>>;

    /// Highest batch `n` of `chain` such that `n` and every stored batch of the chain before
    /// it have all their jobs proven, with no gap in numbering from its first stored batch.
    async fn last_proven_batch(&self, chain: ChainId) -> Result<Option<BatchNumber>>;

    /// Jobs in state `queued` or `leased`: the scheduler's working set after a restart.
    async fn open_jobs(&self) -> Result<Vec<Job>>;

    async fn job(&self, key: &JobKey) -> Result<Option<Job>>;

    async fn jobs(&self, filter: &JobFilter) -> Result<Vec<Job>>;

    /// Jobs by proof type and state, of one chain or (`None`) of all.
    async fn job_counts(&self, chain: Option<ChainId>) -> Result<JobCounts>;

    /// Applies all changes in one transaction: all or nothing.
    async fn apply(&self, changes: &[Change]) -> Result<()>;

    async fn proof(&self, key: &JobKey) -> Result<Option<ProofRecord>>;

    /// Highest fencing token ever written in a job lease or proof, including leases that
    /// have since ended (0 when none), so tokens stay monotonic across restarts and a revoked
    /// token is never taken for one that was issued but not committed.
    async fn max_fencing_token(&self) -> Result<u64>;

    /// Attempts at the jobs of `batch` of `chain` (of `proof_type` only, when given), in the
    /// order they began, at most `limit`.
    async fn attempts(
        &self,
        chain: ChainId,
        batch: BatchNumber,
        proof_type: Option<&ProofType>,
        limit: u32,
    ) -> Result<Vec<Attempt>>;

    /// Deletes at most `limit` attempts that ended before `before` (running ones are kept);
    /// returns how many it deleted.
    async fn prune_attempts(&self, before: Millis, limit: u32) -> Result<u64>;

    /// Provers cordoned by [`Change::Cordon`] and not put back, with the reason, in id order.
    async fn cordoned_provers(&self) -> Result<Vec<(ProverId, String)>>;

    /// Components paused by [`Change::Control`] and not resumed, in name order.
    async fn paused_components(&self) -> Result<Vec<PausedComponent>>;

    /// The settling transaction recorded ([`Change::Verified`]) for `batch`, if any.
    async fn verify_record(&self, batch: BatchNumber) -> Result<Option<VerifyRecord>>;

    /// The settling transaction recorded last (the one of the highest batches).
    async fn last_verify_record(&self) -> Result<Option<VerifyRecord>>;

    /// Records the commit transaction of `record.batch`, replacing any record of that
    /// batch (L1 says the same again, or a reorg moved it). A write like the others: fenced
    /// once [`Store::fence_writes`] was called.
    async fn record_commit(&self, record: &CommitRecord) -> Result<()>;

    /// The commit transaction recorded for `batch`, if any.
    async fn commit_record(&self, batch: BatchNumber) -> Result<Option<CommitRecord>>;

    /// The commit transactions recorded for batches `first..=last`, in batch order, at most
    /// `limit` (0: no limit).
    async fn commit_records(
        &self,
        first: BatchNumber,
        last: BatchNumber,
        limit: u32,
    ) -> Result<Vec<CommitRecord>>;

    /// The commit transaction recorded for the highest batch.
    async fn last_commit_record(&self) -> Result<Option<CommitRecord>>;

    /// The range of a settling transaction marked pending ([`Change::PendingVerify`]) and
    /// not cleared since.
    async fn pending_verify(&self) -> Result<Option<(BatchNumber, BatchNumber)>>;

    /// Small durable key/value settings (cursors of batch sources, etc.).
    async fn get_meta(&self, key: &str) -> Result<Option<String>>;
    async fn set_meta(&self, key: &str, value: &str) -> Result<()>;
    /// Stores `value` unless `key` already has one, and returns what `key` holds afterwards,
    /// atomically: when several coordinators start on one store, all of them get the value
    /// of whichever wrote first.
    async fn init_meta(&self, key: &str, value: &str) -> Result<String>;

    /// Gives an existing batch new content (version, input, public values, required types)
    /// in one transaction: its proofs are deleted and its jobs start over, `queued` with no
    /// attempts, one per required type. Refused ([`StoreError::BatchOpen`]) while a job of
    /// the batch is queued or leased (the caller cancels them first, so their leases are
    /// fenced), and ([`StoreError::BatchProven`]) once every job is proven. The tokens of
    /// the old jobs stay counted by [`Store::max_fencing_token`].
    async fn replace_batch(&self, batch: &Batch, now: Millis) -> Result<()>;

    /// Numbers missing between the lowest and the highest stored batch of `chain`, as
    /// inclusive ranges, lowest first, at most `limit` ranges, starting with the first range
    /// above stored batch `from` or above (0: from the lowest; a batch known to end a
    /// gap-free run from the lowest spares reading the run again).
    async fn batch_gaps(
        &self,
        chain: ChainId,
        from: BatchNumber,
        limit: u32,
    ) -> Result<Vec<(BatchNumber, BatchNumber)>>;
    /// Takes the coordinator lease if it is free (never taken, expired or released, or
    /// reclaimed: [`LeaseClaim::reclaim`]):
    /// returns the new epoch, one above the last, or whoever holds it. Atomic: of
    /// coordinators asking at once, one gets it.
    async fn acquire_lease(&self, claim: &LeaseClaim) -> Result<Result<u64, LeaseHolder>>;

    /// Extends the lease held with `epoch` by `ttl_ms` from now; `false` when another
    /// coordinator has taken it since (even after it expired, the lease is its holder's
    /// until someone else takes it).
    async fn renew_lease(&self, epoch: u64, ttl_ms: u64) -> Result<bool>;

    /// Ends the lease held with `epoch` at once, so that a standby takes over without
    /// waiting for it to expire. Nothing happens if the epoch is no longer current.
    async fn release_lease(&self, epoch: u64) -> Result<()>;

    /// Who holds the lease now (possibly expired), if it was ever taken.
    async fn lease_holder(&self) -> Result<Option<LeaseHolder>>;

    /// From now on, every write through this handle commits only while the lease's epoch is
    /// `epoch`, checked inside the write's transaction; otherwise it fails with
    /// [`StoreError::Fenced`] and writes nothing. Handles never fenced write unchecked.
    fn fence_writes(&self, epoch: u64);

    /// Where the data lives, for messages and health reports (`postgres://user@host:port/db`,
    /// `sqlite:///path/file.db`); never a password.
    fn endpoint(&self) -> String {
        "store".into()
    }

    /// The proof manager's table in this store ([`ProofRequests`](crate::ProofRequests)),
    /// written through this handle and so fenced with it; `None` for a store without one.
    fn proof_requests(self: Arc<Self>) -> Option<Arc<dyn crate::ProofRequests>> {
        None
    }

    /// Whether the store answers now, within about a second: for health checks. The error
    /// names the endpoint and the cause (e.g. the connection refused).
    async fn probe(&self) -> Result<()> {
        self.last_sealed_batch(proofmill_types::DEFAULT_CHAIN)
            .await
            .map(|_| ())
    }
}
