//! Batches coming in: input to the blob store, batch and jobs to the store, jobs to the
//! scheduler, in that order, so a crash at any point leaves nothing half-known. Every batch
//! source comes through an [`Intake`]: the API, a rollup's own sealer (the devnet's), a
//! gateway to a rollup's core API.

use crate::core::CoreHandle;
use crate::error::CoordinatorError;
use crate::events::{Event, EventBus};
use crate::inputs::InputCache;
use crate::now_ms;
use crate::standing::Standing;

pub(crate) mod claims;
mod held;
use bytes::Bytes;
pub use held::Delivered;
use proofmill_backend::Backend;
use proofmill_store::{Blobs, Store};
use proofmill_types::{
    Batch, BatchId, ChainId, DEFAULT_CHAIN, Digest, Job, JobState, ProofType, PublicValues,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A batch to be proven.
#[derive(Clone, Debug)]
pub struct NewBatch {
    /// The rollup it belongs to: the coordinator's own chain
    /// ([`crate::CoordinatorConfig::chain_id`]) or another it serves
    /// ([`crate::CoordinatorConfig::chains`]).
    pub chain: ChainId,
    pub number: u64,
    pub version: String,
    pub input: Bytes,
    pub public_values: PublicValues,
    /// Empty: the chain's configured proof types.
    pub proof_types: Vec<ProofType>,
}

impl NewBatch {
    pub fn id(&self) -> BatchId {
        BatchId::new(self.chain, self.number)
    }
}

/// Input key of a batch: `inputs/NNN.bin` on the default chain (as before chains), under
/// `inputs/chain-<id>/` on others.
fn input_key(id: BatchId) -> String {
    match id.chain {
        DEFAULT_CHAIN => format!("inputs/{:012}.bin", id.number),
        chain => format!("inputs/chain-{chain}/{:012}.bin", id.number),
    }
}

/// Input key of a batch's replacement input: beside the first one, named by its digest so
/// the old input is not overwritten under a prover still reading it.
fn replacement_key(id: BatchId, digest: &Digest) -> String {
    let hex: String = digest.0[..8].iter().map(|b| format!("{b:02x}")).collect();
    let first = input_key(id);
    let stem = first.strip_suffix(".bin").unwrap_or(&first);
    format!("{stem}-{hex}.bin")
}

/// Where batches come in (cheap to clone). See the module doc.
#[derive(Clone)]
pub struct Intake {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) blobs: Blobs,
    /// Inputs kept in memory for dispatch: a new input goes in at once.
    pub(crate) inputs: Arc<InputCache>,
    pub(crate) core: CoreHandle,
    pub(crate) standing: Standing,
    pub(crate) in_flight: Arc<claims::InFlight>,
    /// What the source last reported failing, shown in status as a warning.
    pub(crate) source_error: Arc<crate::warnings::SourceError>,
    /// Operator pauses: intake paused refuses the API's batches, and sources wait.
    pub(crate) pauses: crate::Pauses,
    /// The backends of the proof types every batch needs, which check inputs.
    pub(crate) backends: Arc<HashMap<ProofType, Arc<dyn Backend>>>,
    pub(crate) rules: IntakeRules,
    pub(crate) events: EventBus,
}

/// What a submission must meet.
#[derive(Clone)]
pub(crate) struct IntakeRules {
    pub max_input_bytes: u64,
    /// [`crate::CoordinatorConfig::intake_window`].
    pub intake_window: u64,
    /// [`crate::CoordinatorConfig::chain_id`].
    pub chain_id: u64,
    /// Every chain taken, this coordinator's own included, with the proof types its
    /// batches need ([`crate::CoordinatorConfig::chains`]).
    pub chains: Arc<BTreeMap<ChainId, Vec<ProofType>>>,
    /// [`crate::CoordinatorConfig::market_hold`].
    pub market_hold: Option<crate::MarketHold>,
}

impl IntakeRules {
    /// The proof types of the new batch `id` whose jobs start held for the proof market.
    fn held_types(&self, id: BatchId, required: &[ProofType]) -> Vec<ProofType> {
        match &self.market_hold {
            Some(h) if id.chain == self.chain_id && h.holds(id.number) => required
                .iter()
                .filter(|t| **t == h.proof_type)
                .cloned()
                .collect(),
            _ => Vec::new(),
        }
    }
}

impl Intake {
    /// Reserves the batch numbering for one source (a rollup's sealer: its batches chain, so
    /// no one else may take a number): submissions of other sources are then refused, naming
    /// `source`. Batches the source submits itself go through [`Intake::submit_own`].
    pub fn reserve_numbering(&self, source: &str) {
        *self.in_flight.numbered_by.lock().expect("intake lock") = Some(source.to_string());
    }

    /// This coordinator's own chain ([`crate::CoordinatorConfig::chain_id`]): the one its
    /// sources (the devnet, a rollup core's API) feed and its L1 settlement settles.
    pub fn chain_id(&self) -> u64 {
        self.rules.chain_id
    }

    /// Whether batches of `chain` are taken here.
    pub fn serves(&self, chain: ChainId) -> bool {
        self.rules.chains.contains_key(&chain)
    }

    /// The chains taken here, in id order.
    pub fn chains(&self) -> impl Iterator<Item = ChainId> + '_ {
        self.rules.chains.keys().copied()
    }

    /// Refuses a chain not taken here, naming those that are.
    pub fn check_chain(&self, chain: ChainId) -> Result<(), CoordinatorError> {
        if self.serves(chain) {
            return Ok(());
        }
        let served: Vec<String> = self.chains().map(|c| c.to_string()).collect();
        Err(CoordinatorError::UnknownChain(format!(
            "unknown chain {chain} (this coordinator proves chain{} {})",
            if served.len() > 1 { "s" } else { "" },
            served.join(", ")
        )))
    }

    /// A source's last failure (a core API that does not answer, a batch it refused), shown
    /// by `status` as a `source_error` warning until the source reports `None` (success).
    pub fn report_source_error(&self, error: Option<&str>) {
        let source = self.numbered_by().unwrap_or_else(|| "batch source".into());
        self.source_error
            .set(error.map(|e| (source, crate::text::storable_text(e, 1024), now_ms())));
    }

    /// The source that reserved the numbering, if one did.
    pub fn numbered_by(&self) -> Option<String> {
        self.in_flight
            .numbered_by
            .lock()
            .expect("intake lock")
            .clone()
    }

    /// The coordinator's store, to read (a source rebuilding its state from its batches).
    pub fn store(&self) -> &Arc<dyn proofmill_store::Store> {
        &self.store
    }

    /// The coordinator's blob store (batch inputs; a source's own blobs).
    pub fn blobs(&self) -> &proofmill_store::Blobs {
        &self.blobs
    }

    /// The largest input taken ([`crate::CoordinatorConfig::max_input_bytes`]).
    pub fn max_input_bytes(&self) -> u64 {
        self.rules.max_input_bytes
    }

    /// The proof types a batch of this coordinator's own chain needs unless its submission
    /// names some.
    pub fn required_types(&self) -> &[ProofType] {
        self.chain_types(self.rules.chain_id)
    }

    /// The proof types a batch of `chain` needs unless its submission names some (none for
    /// a chain not taken here).
    pub fn chain_types(&self, chain: ChainId) -> &[ProofType] {
        self.rules.chains.get(&chain).map_or(&[], |t| t.as_slice())
    }

    /// The coordinator's shutdown signal: a source stops taking batches in once it is given.
    pub fn shutdown(&self) -> crate::Shutdown {
        self.standing.shutdown()
    }

    /// What an operator paused: a source waits while [`crate::Component::Intake`] (or its
    /// own part, e.g. [`crate::Component::Sealing`]) is paused.
    pub fn pauses(&self) -> crate::Pauses {
        self.pauses.clone()
    }

    /// Refused while an operator paused intake.
    fn check_paused(&self) -> Result<(), CoordinatorError> {
        match self.pauses.get(crate::Component::Intake) {
            Some(p) => Err(CoordinatorError::FailedPrecondition(format!(
                "intake is paused{} since {} (Unix ms): no batch is taken in until \
                 `proofmill resume --component intake`",
                if p.reason.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", p.reason)
                },
                p.since
            ))),
            None => Ok(()),
        }
    }

    /// Refused while another source owns the numbering of `chain` (a source numbers this
    /// coordinator's own chain; other chains' batches come from the API only).
    fn check_source(&self, chain: ChainId) -> Result<(), CoordinatorError> {
        match self.numbered_by() {
            Some(source) if chain == self.rules.chain_id => Err(CoordinatorError::InvalidArgument(
                format!("this coordinator takes the batches of chain {chain} from its {source}"),
            )),
            _ => Ok(()),
        }
    }

    /// Everything about a submission that needs no store: number, size, version, proof
    /// types, and the backends' input checks. Returns the proof types to prove.
    async fn check_submission(&self, nb: &NewBatch) -> Result<Vec<ProofType>, CoordinatorError> {
        self.check_chain(nb.chain)?;
        if nb.number == 0 {
            return Err(CoordinatorError::InvalidArgument(
                "batch numbers start at 1".into(),
            ));
        }
        if nb.input.is_empty() || nb.input.len() as u64 > self.rules.max_input_bytes {
            return Err(CoordinatorError::InvalidArgument(format!(
                "input must be 1..={} bytes, got {}",
                self.rules.max_input_bytes,
                nb.input.len()
            )));
        }
        crate::text::check_label("version", &nb.version)
            .map_err(CoordinatorError::InvalidArgument)?;
        // Opaque here: their layout is the rollup's, checked by the proof types' backends.
        let public = nb.public_values.len();
        if public == 0 || public > PublicValues::MAX_LEN {
            return Err(CoordinatorError::InvalidArgument(format!(
                "public values must be 1-{} bytes, got {public}",
                PublicValues::MAX_LEN
            )));
        }
        let configured = self.chain_types(nb.chain);
        let mut required = if nb.proof_types.is_empty() {
            configured.to_vec()
        } else {
            nb.proof_types.clone()
        };
        // One job per type: a type named twice must not count as two open jobs.
        let mut seen = std::collections::HashSet::new();
        required.retain(|t| seen.insert(t.clone()));
        if let Some(t) = required.iter().find(|t| !configured.contains(t)) {
            return Err(CoordinatorError::InvalidArgument(format!(
                "proof type {t} is not served here for chain {} (configured: {})",
                nb.chain,
                configured
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        self.check_input(nb, &required).await?;
        Ok(required)
    }

    /// The backends' own input checks ([`proofmill_backend::Backend::check_input`]), once
    /// per backend, off the async threads (decoding a large input takes a while).
    async fn check_input(
        &self,
        nb: &NewBatch,
        required: &[ProofType],
    ) -> Result<(), CoordinatorError> {
        let mut backends: Vec<(ProofType, Arc<dyn Backend>)> = Vec::new();
        for t in required {
            if let Some(b) = self.backends.get(t)
                && !backends.iter().any(|(_, seen)| seen.name() == b.name())
            {
                backends.push((t.clone(), b.clone()));
            }
        }
        let (number, input, expected) = (nb.number, nb.input.clone(), nb.public_values.clone());
        let refused = tokio::task::spawn_blocking(move || {
            backends.into_iter().find_map(|(t, b)| {
                let req = proofmill_backend::ProveRequest {
                    batch: number,
                    input: &input,
                    expected: &expected,
                };
                b.check_input(&req).err().map(|e| (t, e))
            })
        })
        .await
        .map_err(|e| CoordinatorError::Transport(format!("input check: {e}")))?;
        match refused {
            Some((t, e)) => Err(CoordinatorError::InputRefused(format!(
                "input refused by the {t} backend: {e}"
            ))),
            None => Ok(()),
        }
    }

    /// Refuses a number more than the intake window above the end of the gap-free run of
    /// stored batches (from the lowest one up). The run end last seen is kept: batches are
    /// never deleted, so it only grows, a number within the window of it needs no read, and
    /// a read starts from it.
    async fn check_window(&self, id: BatchId) -> Result<(), CoordinatorError> {
        let (window, number) = (self.rules.intake_window, id.number);
        let store = &self.store;
        let known = self.in_flight.run_end(id.chain);
        if window == 0 || number <= known.load(Ordering::SeqCst).saturating_add(window) {
            return Ok(());
        }
        let Some(highest) = store.last_sealed_batch(id.chain).await? else {
            return Ok(()); // The first batch may have any number.
        };
        let from = known.load(Ordering::SeqCst);
        let run_end = match store.batch_gaps(id.chain, from, 1).await?.first() {
            Some(&(first_missing, _)) => first_missing - 1,
            None => highest,
        };
        known.fetch_max(run_end, Ordering::SeqCst);
        if number > run_end.saturating_add(window) {
            return Err(CoordinatorError::InvalidArgument(format!(
                "batch {number} is more than {window} (the intake window) above batch \
                 {run_end}, where the gap-free run of stored batches ends: submit batch {} \
                 and the ones after it first",
                run_end + 1
            )));
        }
        Ok(())
    }

    /// The jobs of one batch, from the store.
    pub(crate) async fn batch_jobs(&self, id: BatchId) -> Result<Vec<Job>, CoordinatorError> {
        let filter = proofmill_store::JobFilter {
            chain: Some(id.chain),
            from_batch: Some(id.number),
            limit: 1024,
            ..Default::default()
        };
        let mut jobs = self.store.jobs(&filter).await?;
        jobs.retain(|j| j.key.batch == id.number);
        Ok(jobs)
    }

    /// Takes a batch in. Idempotent: the same batch again returns `Ok(false)`; a different
    /// batch with a known number is an error and changes nothing, unless that batch was
    /// cancelled ([`Intake::cancel_batch`]): then it starts over with this content. Refused
    /// while a source reserved the numbering ([`Intake::reserve_numbering`]), and while an
    /// operator paused intake ([`crate::Component::Intake`], `FailedPrecondition`).
    pub async fn submit_batch(&self, nb: NewBatch) -> Result<bool, CoordinatorError> {
        let taken = match self
            .check_source(nb.chain)
            .and_then(|()| self.check_paused())
        {
            Ok(()) => self.take_in(nb).await,
            Err(e) => Err(e),
        };
        count_intake("api", &taken);
        taken
    }

    /// [`Intake::submit_batch`] for the source that reserved the numbering. Not refused while
    /// intake is paused: a source waits before it produces a batch ([`Intake::pauses`]), so
    /// one it has produced already is stored.
    pub async fn submit_own(&self, nb: NewBatch) -> Result<bool, CoordinatorError> {
        let taken = self.take_in(nb).await;
        let source = self.numbered_by().unwrap_or_else(|| "own".into());
        count_intake(&source, &taken);
        taken
    }

    async fn take_in(&self, nb: NewBatch) -> Result<bool, CoordinatorError> {
        if self.standing.draining() {
            return Err(CoordinatorError::Unavailable);
        }
        let required = self.check_submission(&nb).await?;
        let digest = Digest::sha256(&nb.input);
        let id = nb.id();
        let _claim = self.in_flight.claim(id).await;
        if let Some(existing) = self.store.batch(id.chain, id.number).await? {
            let jobs = self.batch_jobs(id).await?;
            let cancelled = jobs.iter().any(|j| j.state == JobState::Cancelled)
                && jobs.iter().all(|j| j.state.is_terminal());
            if cancelled {
                self.store_replacement(nb, required).await?;
                return Ok(true);
            }
            if existing.input_digest == digest && existing.public_values == nb.public_values {
                return Ok(false);
            }
            return Err(CoordinatorError::BatchExists(format!(
                "batch {id} already exists with different content (`proofmill batch replace` \
                 gives it a new input; after `proofmill batch cancel` it can be submitted anew)"
            )));
        }
        self.check_window(id).await?;
        let now = now_ms();
        let batch = Batch {
            chain: id.chain,
            number: nb.number,
            version: nb.version,
            input_key: input_key(id),
            input_digest: digest,
            input_size: nb.input.len() as u64,
            public_values: nb.public_values,
            required: required.clone(),
            created_at: now,
        };
        self.blobs.put(&batch.input_key, nb.input.clone()).await?;
        let held = self.rules.held_types(id, &required);
        if !self.store.insert_batch_holding(&batch, &held, now).await? {
            return Ok(false);
        }
        self.inputs.insert(id, nb.input);
        // Held jobs are not the scheduler's until the market falls back.
        let jobs: Vec<Job> = required
            .into_iter()
            .filter(|pt| !held.contains(pt))
            .map(|pt| Job::new_queued(id.job(pt), batch.version.clone(), now))
            .collect();
        if !jobs.is_empty() {
            self.core.add_batches(vec![Arc::new(batch)], jobs).await?;
        }
        self.events.publish(Event::BatchesTaken {
            chain: id.chain,
            first: id.number,
            last: id.number,
        });
        Ok(true)
    }

    /// Gives a batch that is not fully proven a new input: its open jobs are cancelled
    /// (provers told; a later result with their tokens is refused as stale), its proofs
    /// dropped, and its jobs queued afresh, all durable when this returns. A fully proven
    /// batch is refused with [`CoordinatorError::FailedPrecondition`], changing nothing.
    pub async fn replace_batch_input(&self, nb: NewBatch) -> Result<(), CoordinatorError> {
        self.check_source(nb.chain)?;
        if self.standing.draining() {
            return Err(CoordinatorError::Unavailable);
        }
        let required = self.check_submission(&nb).await?;
        let _claim = self.in_flight.claim(nb.id()).await;
        let jobs = self.proven_check(nb.id()).await?;
        self.cancel_jobs(nb.id(), jobs, "the batch input was replaced by an operator")
            .await?;
        self.store_replacement(nb, required).await
    }

    /// Cancels every job of a batch that is not fully proven (provers told, leases ended),
    /// durably. The batch then waits, blocking settlement, until [`Self::submit_batch`]
    /// takes its number again. Returns how many jobs this cancelled.
    pub async fn cancel_batch(&self, id: BatchId, reason: &str) -> Result<usize, CoordinatorError> {
        let reason = if reason.is_empty() {
            "cancelled by an operator".to_string()
        } else {
            crate::text::storable_text(reason, 1024)
        };
        self.check_chain(id.chain)?;
        let _claim = self.in_flight.claim(id).await;
        let jobs = self.proven_check(id).await?;
        self.cancel_jobs(id, jobs, &reason).await
    }

    /// The batch's jobs; an error if there is no such batch or every job is proven.
    async fn proven_check(&self, id: BatchId) -> Result<Vec<Job>, CoordinatorError> {
        if self.store.batch(id.chain, id.number).await?.is_none() {
            return Err(CoordinatorError::UnknownBatch(id.to_string()));
        }
        let jobs = self.batch_jobs(id).await?;
        if !jobs.is_empty() && jobs.iter().all(|j| j.state == JobState::Proven) {
            return Err(CoordinatorError::FailedPrecondition(format!(
                "batch {id} is proven: its input can no longer change"
            )));
        }
        Ok(jobs)
    }

    /// Cancels the batch's open jobs in the scheduler and its failed ones in the store;
    /// returns once that is durable.
    async fn cancel_jobs(
        &self,
        id: BatchId,
        jobs: Vec<Job>,
        reason: &str,
    ) -> Result<usize, CoordinatorError> {
        // Failed and held jobs are not the scheduler's: their store rows are closed.
        let closed = jobs
            .into_iter()
            .filter(|j| matches!(j.state, JobState::Failed | JobState::Held))
            .collect();
        self.core
            .cancel_jobs(id, None, closed, reason.to_string())
            .await
    }

    /// Stores a batch's new content over its old one (whose jobs are closed) and queues its
    /// fresh jobs.
    async fn store_replacement(
        &self,
        nb: NewBatch,
        required: Vec<ProofType>,
    ) -> Result<(), CoordinatorError> {
        let now = now_ms();
        let digest = Digest::sha256(&nb.input);
        let id = nb.id();
        let batch = Batch {
            chain: id.chain,
            number: nb.number,
            version: nb.version,
            input_key: replacement_key(id, &digest),
            input_digest: digest,
            input_size: nb.input.len() as u64,
            public_values: nb.public_values,
            required: required.clone(),
            created_at: now,
        };
        self.blobs.put(&batch.input_key, nb.input.clone()).await?;
        self.store.replace_batch(&batch, now).await?;
        self.inputs.forget(id);
        self.inputs.insert(id, nb.input);
        tracing::info!(batch = %id, digest = %batch.input_digest, "batch input replaced");
        let jobs: Vec<Job> = required
            .into_iter()
            .map(|pt| Job::new_queued(id.job(pt), batch.version.clone(), now))
            .collect();
        self.core.add_batches(vec![Arc::new(batch)], jobs).await
    }
}

/// Counts a submission: a new batch stored, or why it was not (a resubmission of a stored
/// batch counts as neither).
fn count_intake(source: &str, taken: &Result<bool, CoordinatorError>) {
    use proofmill_telemetry::names;
    match taken {
        Ok(true) => {
            metrics::counter!(names::BATCHES_TAKEN_IN_TOTAL, names::SOURCE => source.to_string())
                .increment(1)
        }
        Ok(false) => {}
        Err(e) => {
            let kind = match e {
                CoordinatorError::InvalidArgument(_)
                | CoordinatorError::BatchExists(_)
                | CoordinatorError::InputRefused(_) => "invalid_argument",
                CoordinatorError::FailedPrecondition(_) => "failed_precondition",
                CoordinatorError::Unavailable => "unavailable",
                CoordinatorError::Store(_) => "store",
                _ => "other",
            };
            metrics::counter!(
                names::INTAKE_ERRORS_TOTAL,
                names::SOURCE => source.to_string(),
                names::KIND => kind
            )
            .increment(1);
        }
    }
}
