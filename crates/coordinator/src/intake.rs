//! Batches coming in (API, devnet): input to the blob store, batch and jobs to the store,
//! jobs to the scheduler, in that order, so a crash at any point leaves nothing half-known.

use crate::core::CoreMsg;
use crate::error::CoordinatorError;
use crate::now_ms;
use crate::server::Coordinator;
use bytes::Bytes;
use proofmill_types::{Batch, Digest, Job, JobKey, ProofType, PublicValues};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Batch numbers being taken in right now. Two submissions of one number must not race
/// (both would write the input blob under the same key); different numbers go in parallel.
#[derive(Default)]
pub(crate) struct InFlight {
    numbers: Mutex<HashSet<u64>>,
    released: Notify,
}

impl InFlight {
    /// Waits until no other submission holds `number`, then holds it until the claim drops.
    async fn claim(&self, number: u64) -> Claim<'_> {
        loop {
            // Registered before the check, so a release between the two is not missed.
            let released = self.released.notified();
            let mut released = std::pin::pin!(released);
            released.as_mut().enable();
            if self.numbers.lock().expect("intake lock").insert(number) {
                return Claim { set: self, number };
            }
            released.await;
        }
    }
}

struct Claim<'a> {
    set: &'a InFlight,
    number: u64,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set
            .numbers
            .lock()
            .expect("intake lock")
            .remove(&self.number);
        self.set.released.notify_waiters();
    }
}

/// A batch to be proven.
#[derive(Clone, Debug)]
pub struct NewBatch {
    pub number: u64,
    pub version: String,
    pub input: Bytes,
    pub public_values: PublicValues,
    /// Empty: the coordinator's configured proof types.
    pub proof_types: Vec<ProofType>,
}

impl Coordinator {
    /// Takes a batch in. Idempotent: the same batch again returns `Ok(false)`; a different
    /// batch with a known number is an error and changes nothing.
    pub async fn submit_batch(&self, nb: NewBatch) -> Result<bool, CoordinatorError> {
        let shared = &self.shared;
        if shared.draining() {
            return Err(CoordinatorError::Unavailable);
        }
        if nb.number == 0 {
            return Err(CoordinatorError::InvalidArgument(
                "batch numbers start at 1".into(),
            ));
        }
        if nb.input.is_empty() || nb.input.len() as u64 > shared.config.max_input_bytes {
            return Err(CoordinatorError::InvalidArgument(format!(
                "input must be 1..={} bytes, got {}",
                shared.config.max_input_bytes,
                nb.input.len()
            )));
        }
        crate::results::check_label("version", &nb.version)
            .map_err(CoordinatorError::InvalidArgument)?;
        let configured = shared.config.required_types();
        let mut required = if nb.proof_types.is_empty() {
            configured.clone()
        } else {
            nb.proof_types.clone()
        };
        // One job per type: a type named twice must not count as two open jobs.
        let mut seen = std::collections::HashSet::new();
        required.retain(|t| seen.insert(t.clone()));
        if let Some(t) = required.iter().find(|t| !configured.contains(t)) {
            return Err(CoordinatorError::InvalidArgument(format!(
                "proof type {t} is not served here (configured: {})",
                configured
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            )));
        }
        let digest = Digest::sha256(&nb.input);
        let _claim = shared.intake.claim(nb.number).await;
        if let Some(existing) = shared.store.batch(nb.number).await? {
            if existing.input_digest == digest && existing.public_values == nb.public_values {
                return Ok(false);
            }
            return Err(CoordinatorError::InvalidArgument(format!(
                "batch {} already exists with different content",
                nb.number
            )));
        }
        let now = now_ms();
        let batch = Batch {
            number: nb.number,
            version: nb.version,
            input_key: format!("inputs/{:012}.bin", nb.number),
            input_digest: digest,
            input_size: nb.input.len() as u64,
            public_values: nb.public_values,
            required: required.clone(),
            created_at: now,
        };
        shared.blobs.put(&batch.input_key, nb.input.clone()).await?;
        if !shared.store.insert_batch(&batch, now).await? {
            return Ok(false);
        }
        shared.inputs.insert(batch.number, nb.input);
        let jobs: Vec<Job> = required
            .into_iter()
            .map(|pt| Job::new_queued(JobKey::new(batch.number, pt), batch.version.clone(), now))
            .collect();
        shared
            .core
            .send(CoreMsg::AddBatches {
                batches: vec![Arc::new(batch)],
                jobs,
            })
            .map_err(|_| CoordinatorError::Unavailable)?;
        Ok(true)
    }
}
