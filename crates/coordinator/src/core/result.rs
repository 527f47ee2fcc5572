//! What a checked result does (a [`Verdict`]): a verified proof completes its job, an error or an invalid
//! proof fails it (counted against the prover), a decline requeues it; a stale or duplicate
//! result is answered without changing anything.

use super::Core;
use crate::outbox::{Outbox, ToProver};
use crate::persist::NotOpenResult;
use crate::persist::PersistJob;
use crate::text::storable_text;
use crate::verdict::Verdict;
use proofmill_proto::v1::ErrorCode;
use proofmill_scheduler::{Effect, Failure, SchedulerError};
use proofmill_store::Change;
use proofmill_types::{FencingToken, JobKey, ProverId};

impl Core {
    pub(super) fn result(
        &mut self,
        prover: ProverId,
        key: JobKey,
        token: FencingToken,
        verdict: Verdict,
        reply_to: Outbox,
        now: u64,
    ) {
        let ack_key = key.clone();
        let ack = move |accepted: bool, code: ErrorCode, reason: String| {
            ToProver::Msg(crate::messages::job_result_ack(
                &ack_key, token, accepted, code, &reason,
            ))
        };
        let leased_at = self
            .scheduler
            .job(&key)
            .and_then(|j| j.lease.as_ref())
            .map(|l| l.leased_at);
        // What the prover said the proof took, for the attempt's history.
        let prove_ms = match &verdict {
            Verdict::Proven(record) => Some(record.prove_ms),
            _ => None,
        };
        let proven_by = match &verdict {
            Verdict::Proven(record) => Some(record.prover_name.clone()),
            _ => None,
        };
        let invalid = matches!(verdict, Verdict::Invalid(_));
        let (result, mut extra, reply) = match verdict {
            Verdict::Proven(mut record) => {
                record.leased_at = leased_at.unwrap_or(record.received_at);
                let blob = record.blob_key.clone();
                let r = self.scheduler.complete(&prover, &key, token, now);
                if r.is_err() {
                    self.discard_blob(blob);
                }
                (
                    r,
                    vec![Change::Proof(record)],
                    ack(true, ErrorCode::Unspecified, String::new()),
                )
            }
            Verdict::Failed(error) => {
                let r = self
                    .scheduler
                    .fail(&prover, &key, token, &error, Failure::Error, now);
                (
                    r,
                    Vec::new(),
                    ack(true, ErrorCode::Unspecified, String::new()),
                )
            }
            Verdict::Invalid(reason) => {
                let error = storable_text(&format!("invalid proof: {reason}"), 4096);
                let r =
                    self.scheduler
                        .fail(&prover, &key, token, &error, Failure::InvalidProof, now);
                (r, Vec::new(), ack(false, ErrorCode::InvalidProof, reason))
            }
            Verdict::Declined(reason) => {
                tracing::debug!(%prover, %key, reason = %reason.escape_debug(), "task declined; requeued without penalty");
                let r = self.scheduler.decline(&prover, &key, token, now);
                (
                    r,
                    Vec::new(),
                    ack(true, ErrorCode::Unspecified, String::new()),
                )
            }
        };
        match result {
            Ok(effects) => {
                if let (Some(name), Some(ms)) = (&proven_by, prove_ms) {
                    self.count_proven(&key.proof_type, name, ms);
                }
                if invalid {
                    super::count_rejected(Some(&key.proof_type), "invalid_proof");
                }
                let (this, effects): (Vec<Effect>, Vec<Effect>) = effects.into_iter().partition(
                    |e| matches!(e, Effect::AttemptEnded { token: t, .. } if *t == token),
                );
                for e in &this {
                    self.count_effect(e);
                }
                extra.extend(this.into_iter().map(|e| self.attempt_change(e, prove_ms)));
                self.run_effects(effects, extra, vec![(reply_to, reply)])
            }
            Err(SchedulerError::NotCurrent { reason, .. }) => {
                super::count_rejected(Some(&key.proof_type), "stale");
                tracing::warn!(%prover, %key, %token, reason = %reason.escape_debug(), "stale result rejected");
                let msg = ack(false, ErrorCode::StaleFencingToken, reason);
                self.persist(PersistJob {
                    sends: vec![(reply_to, msg)],
                    ..Default::default()
                });
            }
            Err(_) => {
                // Not open here: a duplicate of an accepted result, or a job that is done or
                // unknown. The store knows which once the writes queued so far are durable
                // (a duplicate may arrive before its original's commit): the persister asks
                // it then.
                self.persist(PersistJob {
                    not_open: vec![NotOpenResult {
                        key,
                        token,
                        reply_to,
                    }],
                    ..Default::default()
                });
            }
        }
    }
}
