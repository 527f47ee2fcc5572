//! Results coming back from provers: proofs reassembled from chunks, checked against the
//! batch's public values on arrival (before anything is stored), stored inline or as blobs,
//! and reported to the core; malformed results are refused with a reason.

use crate::core::{BatchCache, CoreHandle};
use crate::limits::ProofBudget;
use crate::now_ms;
use crate::outbox::{Outbox, ToProver};
use crate::partial::{PartialProofs, ProofBytes};
use crate::text::storable_text;
use crate::verdict::Verdict;
use bytes::Bytes;
use proofmill_backend::Backend;
use proofmill_proto::v1::{ErrorCode, TaskResult, task_result::Outcome as Res};
use proofmill_scheduler::ResultCheck;
use proofmill_store::{Blobs, Store};
use proofmill_types::{
    Batch, Digest, FencingToken, JobKey, ProofRecord, ProofType, ProverId, TaskId,
};
use std::collections::HashMap;
use std::sync::Arc;

/// What handling results needs: the verifiers, the batches (cached by the core, or read from
/// the store), where proof bytes go, and the core to report verdicts to. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Results {
    pub verifiers: Arc<HashMap<ProofType, Arc<dyn Backend>>>,
    /// Every verifier is cheap ([`Backend::verify_is_cheap`]): small results may be handled
    /// on the session's own task.
    pub verify_inline: bool,
    pub batches: BatchCache,
    pub store: Arc<dyn Store>,
    pub blobs: Blobs,
    /// Bytes of proofs in flight, across every stream.
    pub proof_budget: ProofBudget,
    pub max_proof_bytes: u64,
    /// Proofs up to this size are kept in their database row.
    pub inline_proof_max: usize,
    pub core: CoreHandle,
}

impl Results {
    /// Refuses a result (or its chunks), counted by reason and, when it names one served
    /// here, proof type (a prover's other names would be labels without bound).
    pub fn nack(&self, tx: &Outbox, task_id: &str, token: u64, code: ErrorCode, reason: String) {
        let kind = match code {
            ErrorCode::StaleFencingToken => "stale",
            ErrorCode::InvalidProof => "invalid_proof",
            ErrorCode::ProofTypeNotNeeded => "not_needed",
            ErrorCode::JobNotFound => "no_batch",
            ErrorCode::SystemUnavailable => "unavailable",
            _ => "malformed",
        };
        let proof_type = TaskId::parse(task_id)
            .ok()
            .map(|k| k.proof_type)
            .filter(|t| self.verifiers.contains_key(t));
        crate::core::count_rejected(proof_type.as_ref(), kind);
        let msg = crate::messages::result_ack(task_id, token, false, code, &reason);
        tx.send(ToProver::Msg(msg));
    }

    /// The proof bytes of a result (joined from chunks if needed, with their share of the proof
    /// budget); `None` for an error result. Takes the bytes out of `r` rather than copying them.
    pub fn take_proof(
        &self,
        partial: &mut PartialProofs,
        r: &mut TaskResult,
    ) -> Result<Option<ProofBytes>, String> {
        match &mut r.outcome {
            Some(Res::Proof(p)) => Ok(Some(ProofBytes::new(std::mem::take(p), None))),
            Some(Res::ProofChunked(c)) => {
                let proof = partial
                    .take(&(r.task_id.clone(), r.fencing_token))
                    .ok_or("no proof chunks received for this task")?;
                if proof.data.len() as u64 != c.size
                    || Digest::sha256(&proof.data).0.as_slice() != c.digest.as_slice()
                {
                    return Err("chunked proof does not match its size or digest".into());
                }
                Ok(Some(proof))
            }
            Some(Res::Error(_)) => Ok(None),
            None => Err("result without proof or error".into()),
        }
        .and_then(|p| match &p {
            Some(p) if p.data.len() as u64 > self.max_proof_bytes => {
                Err(format!("proof of {} bytes is over the limit", p.data.len()))
            }
            _ => Ok(p),
        })
    }

    /// Why a result would be fenced off, if it would: asked of the core before the costly part
    /// of handling it. The core checks again when the outcome arrives (the lease may end in
    /// between); this only saves a verification and a blob for results already stale.
    pub async fn fenced_off(&self, prover: &ProverId, r: &TaskResult) -> Option<String> {
        let key = TaskId::parse(&r.task_id).ok()?;
        let check = self
            .core
            .check_result(prover.clone(), key, FencingToken(r.fencing_token))
            .await
            .ok()?;
        match check {
            ResultCheck::Stale { reason } => Some(reason),
            ResultCheck::Current | ResultCheck::NotOpen => None,
        }
    }

    pub async fn handle_result(
        &self,
        prover: &ProverId,
        name: &str,
        r: TaskResult,
        proof: Option<Vec<u8>>,
        tx: &Outbox,
    ) {
        let key = match TaskId::parse(&r.task_id) {
            Ok(k) => k,
            Err(e) => {
                return self.nack(
                    tx,
                    &r.task_id,
                    r.fencing_token,
                    ErrorCode::InvalidArgument,
                    e.to_string(),
                );
            }
        };
        let token = FencingToken(r.fencing_token);
        let verdict = match (proof, &r.outcome) {
            (None, Some(Res::Error(e))) => Verdict::Failed(storable_text(e, 4096)),
            (None, _) => {
                return self.nack(
                    tx,
                    &r.task_id,
                    r.fencing_token,
                    ErrorCode::InvalidArgument,
                    "no proof".into(),
                );
            }
            (Some(proof), _) => {
                // A timing the prover reports; beyond i64 it is nonsense the store cannot hold.
                let prove_ms = r.prove_ms.min(i64::MAX as u64);
                match self
                    .check_proof(&key, token, prover, name, prove_ms, proof)
                    .await
                {
                    Ok(o) => o,
                    Err((code, reason)) => {
                        return self.nack(tx, &r.task_id, r.fencing_token, code, reason);
                    }
                }
            }
        };
        self.core
            .result(prover.clone(), (key, token), verdict, tx.clone())
            .await;
    }

    /// Verifies a proof against the batch's public values and stores its bytes.
    pub(crate) async fn check_proof(
        &self,
        key: &JobKey,
        token: FencingToken,
        prover: &ProverId,
        name: &str,
        prove_ms: u64,
        proof: Vec<u8>,
    ) -> Result<Verdict, (ErrorCode, String)> {
        let Some(verifier) = self.verifiers.get(&key.proof_type).cloned() else {
            return Err((
                ErrorCode::ProofTypeNotNeeded,
                format!("proof type {} is not needed here", key.proof_type),
            ));
        };
        let batch = match cached_batch(&self.batches, key.batch_id()) {
            Some(b) => b,
            None => match self.store.batch(key.chain, key.batch).await {
                Ok(Some(b)) => Arc::new(b),
                Ok(None) => {
                    return Err((
                        ErrorCode::JobNotFound,
                        format!("no batch {}", key.batch_id()),
                    ));
                }
                Err(e) => return Err((ErrorCode::SystemUnavailable, e.to_string())),
            },
        };
        let public = batch.public_values.clone();
        let proof = Bytes::from(proof);
        let verdict = {
            let proof = proof.clone();
            verify_off_thread(verifier, public, proof).await
        };
        if let Err(reason) = verdict {
            tracing::warn!(%prover, %key, reason = %reason.escape_debug(), "invalid proof rejected");
            return Ok(Verdict::Invalid(reason));
        }
        let inline = proof.len() <= self.inline_proof_max;
        let digest = Digest::sha256(&proof);
        // Named by content too: a duplicate result with other bytes (another valid proof of the
        // same statement) must not overwrite the blob an accepted record points at.
        let blob_key = if inline {
            String::new()
        } else {
            // Proofs of the default chain's batches where they always were; others' beside.
            let chain = match key.chain {
                proofmill_types::DEFAULT_CHAIN => String::new(),
                chain => format!("chain-{chain}/"),
            };
            format!(
                "proofs/{chain}{:012}/{}/{}-{}.bin",
                key.batch,
                key.proof_type,
                token.0,
                &digest.to_hex()[..16]
            )
        };
        let record = ProofRecord {
            key: key.clone(),
            blob_key: blob_key.clone(),
            inline: inline.then(|| proof.to_vec()),
            size: proof.len() as u64,
            digest,
            prover: prover.clone(),
            prover_name: name.to_string(),
            token,
            leased_at: 0,
            received_at: now_ms(),
            prove_ms,
        };
        if !inline {
            self.blobs
                .put(&blob_key, proof)
                .await
                .map_err(|e| (ErrorCode::SystemUnavailable, e.to_string()))?;
        }
        Ok(Verdict::Proven(record))
    }
}

fn cached_batch(cache: &BatchCache, n: proofmill_types::BatchId) -> Option<Arc<Batch>> {
    cache.read().expect("batch cache lock").get(&n).cloned()
}

/// Proofs up to this size, of a backend whose verification is cheap, are verified on the
/// calling task; everything else off it.
pub(crate) const VERIFY_INLINE_MAX: usize = 4096;

/// Cheap checks run inline; pairings, subprocesses and large proofs on a blocking thread so
/// sessions keep flowing.
async fn verify_off_thread(
    verifier: Arc<dyn Backend>,
    public: proofmill_types::PublicValues,
    proof: Bytes,
) -> Result<(), String> {
    if proof.len() <= VERIFY_INLINE_MAX && verifier.verify_is_cheap() {
        return verifier.verify(&public, &proof).map_err(|e| e.to_string());
    }
    tokio::task::spawn_blocking(move || verifier.verify(&public, &proof).map_err(|e| e.to_string()))
        .await
        .map_err(|e| format!("verifier crashed: {e}"))?
}
