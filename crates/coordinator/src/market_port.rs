//! The coordinator's side of a proof market, for the rollup's proof manager
//! (`proofmill-proof-manager`), a component apart like settlement: the own chain's held
//! batches ([`crate::CoordinatorConfig::market_hold`]) and their inputs to offer, the
//! fallback that hands a batch to the own provers, and the door through which a proving
//! network's proof comes in, checked like a prover's before anything is stored.

use crate::error::CoordinatorError;
use crate::intake::{Delivered, Intake};
use crate::results::Results;
use crate::shutdown::Shutdown;
use crate::standing::Standing;
use bytes::Bytes;
use proofmill_proto::v1::ErrorCode;
use proofmill_store::{Blobs, JobFilter, Store};
use proofmill_types::{
    Batch, BatchId, BatchNumber, ChainId, FencingToken, JobKey, JobState, ProofType, ProverId,
};
use std::sync::Arc;

/// See the module doc. Cheap to clone.
#[derive(Clone)]
pub struct MarketPort {
    pub(crate) intake: Intake,
    pub(crate) results: Results,
    pub(crate) standing: Standing,
    pub(crate) proof_type: ProofType,
}

impl MarketPort {
    /// The chain whose batches are offered: the coordinator's own.
    pub fn chain_id(&self) -> ChainId {
        self.intake.chain_id()
    }

    /// The proof type networks are asked for.
    pub fn proof_type(&self) -> &ProofType {
        &self.proof_type
    }

    /// For the proof manager's own table (`proofmill_store::ProofRequests`) and reads.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.intake.store
    }

    /// The coordinator's blob store (batch inputs, proofs): private, unlike the market's.
    pub fn blobs(&self) -> &Blobs {
        &self.intake.blobs
    }

    /// Whether this coordinator surely holds the store's lease: market transactions go out
    /// only then, or two coordinators could both send them.
    pub fn holds_lease(&self) -> bool {
        self.standing.holds_lease()
    }

    /// The coordinator's shutdown signal: the proof manager stops once it is given.
    pub fn shutdown(&self) -> Shutdown {
        self.standing.shutdown()
    }

    /// The own chain's batches with a held job, from `from` on, at most `limit` (0: all),
    /// in order.
    pub async fn held_batches(
        &self,
        from: BatchNumber,
        limit: u32,
    ) -> Result<Vec<BatchNumber>, CoordinatorError> {
        let jobs = self
            .store()
            .jobs(&JobFilter {
                chain: Some(self.chain_id()),
                proof_type: Some(self.proof_type.clone()),
                state: Some(JobState::Held),
                from_batch: Some(from),
                limit,
            })
            .await?;
        Ok(jobs.into_iter().map(|j| j.key.batch).collect())
    }

    /// The own chain's batch `number` and its input, `None` if there is no such batch.
    pub async fn batch(
        &self,
        number: BatchNumber,
    ) -> Result<Option<(Batch, Bytes)>, CoordinatorError> {
        let Some(batch) = self.store().batch(self.chain_id(), number).await? else {
            return Ok(None);
        };
        let input = self.blobs().get(&batch.input_key).await?;
        Ok(Some((batch, input)))
    }

    /// The market fell back on batch `number`: its held jobs go to the own provers. Returns
    /// how many were released (0 when none is held), once that is durable.
    pub async fn release(&self, number: BatchNumber) -> Result<usize, CoordinatorError> {
        self.intake
            .release_held(BatchId::new(self.chain_id(), number))
            .await
    }

    /// A proof posted by the proving network `network` for batch `number`: verified with
    /// the proof type's backend against the batch's public values, then, if its job is
    /// still held, stored as the batch's proof (and settlement takes it from there). Errors
    /// are the coordinator's (store, unknown batch), never the proof's.
    pub async fn deliver(
        &self,
        number: BatchNumber,
        proof: Vec<u8>,
        network: &str,
    ) -> Result<Delivered, CoordinatorError> {
        let key = JobKey::new(self.chain_id(), number, self.proof_type.clone());
        let Some(job) = self.store().job(&key).await? else {
            return Err(CoordinatorError::JobNotFound(key.to_string()));
        };
        if job.state == JobState::Proven {
            return Ok(Delivered::AlreadyProven);
        }
        // No lease: token 0 marks a proof that came from the market.
        let checked = self
            .results
            .check_proof(
                &key,
                FencingToken(0),
                &ProverId(format!("market:{network}")),
                &format!("network {network}"),
                0,
                proof,
            )
            .await;
        match checked {
            Ok(crate::verdict::Verdict::Proven(record)) => {
                self.intake.take_market_proof(&key, record).await
            }
            Ok(crate::verdict::Verdict::Invalid(reason)) => Ok(Delivered::Invalid(reason)),
            // check_proof gives only these two verdicts.
            Ok(_) => Err(CoordinatorError::Config(format!(
                "proof check of {key} gave an unexpected verdict"
            ))),
            Err((ErrorCode::SystemUnavailable, _)) => Err(CoordinatorError::Unavailable),
            Err((ErrorCode::JobNotFound, reason)) => Err(CoordinatorError::UnknownBatch(reason)),
            Err((_, reason)) => Err(CoordinatorError::InvalidArgument(reason)),
        }
    }
}
