//! What a batch has come to, read from the coordinator's store: its proofs (in proofmill's
//! [`BatchProof`] form), cancelled (`"SkippedProofGeneration"`), failed (waiting for an
//! operator), or not done yet.

use crate::wire::{BatchProof, TypedProof};
use proofmill_store::{Blobs, JobFilter, Store, StoreError};
use proofmill_types::{ChainId, Job, JobState};

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// A job is still queued or running.
    Pending,
    /// Every job is proven; `proven_at` is when the last proof was accepted (Unix ms).
    Proven { proof: BatchProof, proven_at: u64 },
    /// An operator cancelled the batch: no proof will come.
    Cancelled,
    /// A job failed for good: nothing goes back until an operator retries or cancels it.
    Failed(String),
}

/// The jobs of batch `n` of `chain` (every batch has one per proof type it needs).
pub async fn batch_jobs(store: &dyn Store, chain: ChainId, n: u64) -> Result<Vec<Job>, StoreError> {
    let filter = JobFilter {
        chain: Some(chain),
        from_batch: Some(n),
        limit: 256,
        ..Default::default()
    };
    let mut jobs = store.jobs(&filter).await?;
    jobs.retain(|j| j.key.batch == n);
    Ok(jobs)
}

/// The lowest stored batch of `chain` above `n`.
pub async fn next_batch_above(
    store: &dyn Store,
    chain: ChainId,
    n: u64,
) -> Result<Option<u64>, StoreError> {
    let filter = JobFilter {
        chain: Some(chain),
        from_batch: Some(n.saturating_add(1)),
        limit: 1,
        ..Default::default()
    };
    Ok(store.jobs(&filter).await?.first().map(|j| j.key.batch))
}

/// Batch `n` of `chain`'s outcome; `None` when there is no such batch.
pub async fn outcome(
    store: &dyn Store,
    blobs: &Blobs,
    (chain, n): (ChainId, u64),
) -> Result<Option<Outcome>, StoreError> {
    let Some(batch) = store.batch(chain, n).await? else {
        return Ok(None);
    };
    let jobs = batch_jobs(store, chain, n).await?;
    if jobs.is_empty() || jobs.iter().any(|j| !j.state.is_terminal()) {
        return Ok(Some(Outcome::Pending));
    }
    if jobs.iter().any(|j| j.state == JobState::Cancelled) {
        return Ok(Some(Outcome::Cancelled));
    }
    if let Some(failed) = jobs.iter().find(|j| j.state == JobState::Failed) {
        return Ok(Some(Outcome::Failed(format!(
            "batch {n}: the {} job failed ({}); `proofmill job retry` or `proofmill batch cancel`",
            failed.key.proof_type,
            failed.last_error.as_deref().unwrap_or("no error recorded")
        ))));
    }
    let mut proofs = Vec::new();
    let mut proven_at = 0;
    // In the order the batch lists its types.
    for t in &batch.required {
        let Some(job) = jobs.iter().find(|j| &j.key.proof_type == t) else {
            continue;
        };
        let Some(record) = store.proof(&job.key).await? else {
            // Proven but its record not readable yet: not done as far as the core goes.
            return Ok(Some(Outcome::Pending));
        };
        let bytes = match &record.inline {
            Some(bytes) => bytes.clone(),
            None => blobs.get(&record.blob_key).await?.to_vec(),
        };
        proven_at = proven_at.max(record.received_at);
        proofs.push(TypedProof::new(
            t.as_str(),
            &bytes,
            batch.public_values.as_bytes(),
        ));
    }
    Ok(Some(Outcome::Proven {
        proof: BatchProof { proofs },
        proven_at,
    }))
}
