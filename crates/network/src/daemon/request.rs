//! One request's task: reconciled with L1, admitted or refused, its inputs fetched and
//! handed to the coordinator, acknowledged, then its proof waited for and posted before the
//! last moment (or given up). Every status is saved before the next step.

use super::{ACK_MARGIN_SECS, Inner};
use crate::admission::{Offer, Refusal};
use crate::fetch::FetchError;
use crate::prove::{ProofState, ProveError};
use crate::state::{EARNED_BY_DEFAULT, Entry, NetworkState, Status};
use crate::{Backoff, Shutdown};
use proofmill_market::{
    MarketError, MarketInputs, MarketRevert, RequestId, RequestStatus, hex_hash,
};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a step of a request's task ended.
pub(super) enum Step {
    /// Go on with the request's next status.
    Next,
    /// A transient error: try again after a backoff.
    Retry(String),
    /// Nothing more for this task.
    Done,
}

impl Inner {
    /// One request's task (see the module documentation).
    pub(super) async fn drive(
        self: Arc<Self>,
        id: RequestId,
        ack_timeout: u64,
        shutdown: Shutdown,
    ) {
        let mut work = Work::default();
        let mut backoff = Backoff::new(self.cfg.max_backoff);
        let mut reconciled = false;
        let mut was_proving = false;
        loop {
            if shutdown.is_begun() {
                break;
            }
            let Some(entry) = self.entry(id) else { break };
            if entry.status == Status::Closed && was_proving {
                // Timed out on L1 while proving: nobody will take the proof.
                self.cancel(id, "the request timed out on L1").await;
            }
            was_proving = matches!(entry.status, Status::Accepted | Status::Proving);
            let step = async {
                if !reconciled {
                    let s = self.reconcile(&entry).await;
                    reconciled = matches!(s, Step::Next);
                    return s;
                }
                match entry.status {
                    Status::Seen => self.admit(&entry, ack_timeout, &mut work).await,
                    Status::Accepted => self.hand_over(&entry, &mut work).await,
                    Status::Proving => self.prove_and_post(&entry, &mut work).await,
                    _ => Step::Done,
                }
            };
            // A step may wait long (a long poll, a transaction): shutdown does not wait for
            // it. What it sent and did not record, the next start reads back from L1.
            let step = tokio::select! {
                s = step => s,
                () = shutdown.begun() => break,
            };
            match step {
                Step::Next => backoff.reset(),
                Step::Done => break,
                Step::Retry(why) => {
                    let pause = backoff.next();
                    tracing::warn!(request = %id, error = %why, retry_in = ?pause, "request step failed");
                    // Any refusal or race on L1 sends the task back to L1's view first.
                    reconciled = false;
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {}
                        () = shutdown.begun() => break,
                    }
                }
            }
        }
        self.shared.lock().unwrap().reserved.remove(&id);
    }

    /// Takes the request's status from L1: what a crash may have left unrecorded.
    async fn reconcile(&self, entry: &Entry) -> Step {
        let id = entry.id();
        let request = match self.market.request(id).await {
            Ok(r) => r,
            Err(e) => return Step::Retry(format!("reading the request: {e}")),
        };
        let Some(r) = request else {
            self.finish(id, Status::Closed, "no such request on L1");
            return Step::Done;
        };
        if r.network != self.me {
            self.finish(id, Status::Closed, format!("assigned to {}", r.network));
            return Step::Done;
        }
        if entry.submitted_at.is_none() {
            let _ = self.update(|s| {
                if let Some(e) = s.requests.get_mut(&id) {
                    e.submitted_at = Some(r.submitted_at);
                }
            });
        }
        match r.status {
            RequestStatus::PendingAcknowledgement => {}
            RequestStatus::Committed => {
                self.advance(id, Status::Accepted, |_| {});
            }
            RequestStatus::Refused => self.finish(id, Status::Refused, "refused on L1"),
            RequestStatus::TimedOut => self.finish(id, Status::Closed, "timed out on L1"),
            RequestStatus::Proven => {
                self.advance(id, Status::ProofPosted, |e| {
                    e.requested_reward = Some(r.reward.to_string());
                    e.validation_deadline = Some(r.validation_deadline);
                });
            }
            RequestStatus::ValidationTimedOut => {
                self.advance(id, Status::Validated, |e| {
                    e.requested_reward = Some(r.reward.to_string());
                    e.earned = Some(r.reward.to_string());
                    e.reason = Some(EARNED_BY_DEFAULT.into());
                });
            }
            RequestStatus::Validated => {
                self.advance(id, Status::Validated, |e| {
                    e.requested_reward = Some(r.reward.to_string());
                    e.earned = Some(r.reward.to_string());
                });
            }
            RequestStatus::ValidationFailed => {
                self.advance(id, Status::Invalid, |e| {
                    e.reason = Some("the proof was found invalid".into())
                });
            }
            RequestStatus::Unknown(code) => {
                return Step::Retry(format!("request status {code} is not known here"));
            }
        }
        Step::Next
    }

    /// Admission, inputs, hand-over, then the acknowledgement (accept or refuse).
    async fn admit(&self, entry: &Entry, ack_timeout: u64, work: &mut Work) -> Step {
        let id = entry.id();
        let now = match self.now().await {
            Ok(t) => t,
            Err(e) => return Step::Retry(e),
        };
        let submitted_at = entry.submitted_at.unwrap_or(now);
        let ack_deadline = submitted_at.saturating_add(ack_timeout);
        if now > ack_deadline {
            self.finish(id, Status::Closed, "the acknowledgement window passed");
            return Step::Done;
        }
        let decision = {
            let mut shared = self.shared.lock().unwrap();
            let estimate = shared.times.estimate();
            let held = shared.state.as_ref().map_or(0, NetworkState::in_flight)
                + shared.reserved.iter().filter(|r| **r != id).count();
            let awaiting_validation = shared
                .state
                .as_ref()
                .map_or(0, |s| s.awaiting_validation(id.chain_id));
            let offer = Offer {
                chain_id: id.chain_id,
                awaiting_validation,
                protocol_version: &entry.protocol_version,
                max_reward: entry.max_reward(),
                deadline: entry.deadline,
            };
            let d = self.cfg.admission.decide(&offer, now, held, estimate);
            if d.is_ok() {
                shared.reserved.insert(id);
            }
            d
        };
        let decision = match decision {
            Ok(()) => {
                // Work before the acknowledgement stops in time for it.
                let budget = ack_deadline.saturating_sub(now + ACK_MARGIN_SECS);
                let prepared =
                    tokio::time::timeout(Duration::from_secs(budget), self.prepare(entry, work))
                        .await;
                match prepared {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(refusal)) => Err(refusal),
                    Err(_) => {
                        // It may be at the coordinator by now.
                        self.cancel(id, "not ready before the acknowledgement deadline")
                            .await;
                        Err(Refusal::BadInputs(
                            "not fetched and handed over before the acknowledgement deadline"
                                .into(),
                        ))
                    }
                }
            }
            Err(r) => Err(r),
        };
        let accept = decision.is_ok();
        let result = self.market.acknowledge(id, accept).await;
        let step = self.acknowledged(id, result, decision, work).await;
        // Only now: an accepted request holds its place as `proving` from here on.
        self.shared.lock().unwrap().reserved.remove(&id);
        step
    }

    /// Records the acknowledgement's outcome.
    async fn acknowledged(
        &self,
        id: RequestId,
        result: Result<proofmill_market::MarketTx, MarketError>,
        decision: Result<(), Refusal>,
        work: &mut Work,
    ) -> Step {
        match result {
            Ok(tx) => {
                let tx = hex_hash(&tx.tx_hash);
                match decision {
                    Ok(()) => {
                        tracing::info!(request = %id, tx = %tx, "request accepted");
                        self.advance(id, Status::Proving, |e| {
                            e.ack_tx = Some(tx);
                            e.proof_type = work.inputs.as_ref().map(|i| i.proof_type.clone());
                        });
                        // The coordinator holds them now (and they are fetched again if not).
                        work.inputs = None;
                        Step::Next
                    }
                    Err(refusal) => {
                        tracing::info!(request = %id, tx = %tx, %refusal, "request refused");
                        self.advance(id, Status::Refused, |e| {
                            e.ack_tx = Some(tx);
                            e.reason = Some(refusal.to_string());
                        });
                        Step::Done
                    }
                }
            }
            Err(MarketError::Refused {
                revert: MarketRevert::AcknowledgementTooLate { .. },
                ..
            }) => {
                self.cancel(id, "the acknowledgement came too late").await;
                self.finish(id, Status::Closed, "the acknowledgement came too late");
                Step::Done
            }
            Err(e) => {
                if decision.is_ok() && !e.is_transient() {
                    // Refused by L1: the coordinator need not prove it (handed over again if
                    // L1 says it is ours after all).
                    self.cancel(id, "the acknowledgement was refused").await;
                }
                Step::Retry(format!("acknowledging: {e}"))
            }
        }
    }

    /// Fetches and checks the inputs and hands them to the coordinator (before accepting:
    /// what it cannot take is refused, not given up later). Transient errors are retried
    /// until the caller's timeout.
    async fn prepare(&self, entry: &Entry, work: &mut Work) -> Result<(), Refusal> {
        let mut backoff = Backoff::new(self.cfg.max_backoff);
        loop {
            match self.inputs(entry, work).await {
                Ok(()) => break,
                Err(e) if e.is_transient() => {
                    tracing::warn!(request = %entry.id(), error = %e, "fetching the inputs failed");
                    tokio::time::sleep(backoff.next()).await;
                }
                Err(e) => return Err(Refusal::BadInputs(e.to_string())),
            }
        }
        let inputs = work.inputs.as_ref().expect("fetched");
        if !self
            .cfg
            .admission
            .protocol_versions
            .contains(&inputs.program_version)
        {
            return Err(Refusal::UnknownVersion(inputs.program_version.clone()));
        }
        loop {
            match self.prover.submit(inputs).await {
                Ok(()) => {
                    work.proving_since = Some(Instant::now());
                    return Ok(());
                }
                Err(ProveError::Transient(e)) => {
                    tracing::warn!(request = %entry.id(), error = %e, "handing over failed");
                    tokio::time::sleep(backoff.next()).await;
                }
                Err(e) => {
                    return Err(Refusal::BadInputs(format!(
                        "the coordinator refuses them: {e}"
                    )));
                }
            }
        }
    }

    async fn inputs(&self, entry: &Entry, work: &mut Work) -> Result<(), FetchError> {
        if work.inputs.is_some() {
            return Ok(());
        }
        let digest = entry
            .digest()
            .ok_or_else(|| FetchError::Refused("the request's digest is not 32 bytes".into()))?;
        let inputs = self
            .fetcher
            .inputs(entry.id(), &entry.inputs_url, &digest)
            .await?;
        work.inputs = Some(inputs);
        Ok(())
    }

    /// The chain time after which no proof of `entry` is posted.
    fn last_post(&self, entry: &Entry) -> u64 {
        entry
            .deadline
            .saturating_sub(self.cfg.admission.deadline_margin_secs)
    }

    /// Accepted on L1 (before a restart) but maybe not at the coordinator: hands it over.
    async fn hand_over(&self, entry: &Entry, work: &mut Work) -> Step {
        let id = entry.id();
        match self.ensure_handed_over(entry, work).await {
            Ok(()) => {
                self.advance(id, Status::Proving, |_| {});
                Step::Next
            }
            Err(step) => step,
        }
    }

    async fn ensure_handed_over(&self, entry: &Entry, work: &mut Work) -> Result<(), Step> {
        let id = entry.id();
        let now = self.now().await.map_err(Step::Retry)?;
        if now > self.last_post(entry) {
            self.give_up(id, "not proven in time").await;
            return Err(Step::Done);
        }
        match self.inputs(entry, work).await {
            Ok(()) => {}
            Err(e) if e.is_transient() => return Err(Step::Retry(format!("fetching: {e}"))),
            Err(e) => {
                self.give_up(id, format!("inputs: {e}")).await;
                return Err(Step::Done);
            }
        }
        let inputs = work.inputs.as_ref().expect("fetched");
        match self.prover.submit(inputs).await {
            Ok(()) => {
                work.proving_since = Some(Instant::now());
                let proof_type = inputs.proof_type.clone();
                let _ = self.update(|s| {
                    if let Some(e) = s.requests.get_mut(&id) {
                        e.proof_type = Some(proof_type);
                    }
                });
                // The coordinator holds them now (and they are fetched again if not).
                work.inputs = None;
                Ok(())
            }
            Err(ProveError::Transient(e)) => Err(Step::Retry(format!("handing over: {e}"))),
            Err(e) => {
                self.give_up(id, format!("the coordinator refuses it: {e}"))
                    .await;
                Err(Step::Done)
            }
        }
    }

    /// Waits for the proof until the last moment to post it, then posts it.
    async fn prove_and_post(&self, entry: &Entry, work: &mut Work) -> Step {
        let id = entry.id();
        let proof_type = match (&entry.proof_type, &work.inputs) {
            (Some(t), _) => t.clone(),
            (None, Some(i)) => i.proof_type.clone(),
            // Accepted before a restart that lost the proof type: from the inputs again.
            (None, None) => match self.ensure_handed_over(entry, work).await {
                Ok(()) => return Step::Next,
                Err(step) => return step,
            },
        };
        while work.proof.is_none() {
            let now = match self.now().await {
                Ok(t) => t,
                Err(e) => return Step::Retry(e),
            };
            let last = self.last_post(entry);
            if now >= last {
                self.give_up(id, "not proven in time").await;
                return Step::Done;
            }
            let wait = Duration::from_secs(last - now).min(self.cfg.wait_step);
            match self
                .prover
                .wait(id.chain_id, id.batch, &proof_type, wait)
                .await
            {
                Ok(ProofState::Pending) => {}
                Ok(ProofState::Proven(proof)) => {
                    if let Some(since) = work.proving_since.take() {
                        self.record_prove_time(since.elapsed());
                    }
                    tracing::info!(request = %id, bytes = proof.len(), "proof ready");
                    work.proof = Some(proof);
                }
                Ok(ProofState::Failed(why)) => {
                    self.give_up(id, format!("proving failed: {why}")).await;
                    return Step::Done;
                }
                Err(ProveError::NotFound(_)) => {
                    // The coordinator lost it (or was another one): hand it over again.
                    if let Err(step) = self.ensure_handed_over(entry, work).await {
                        return step;
                    }
                }
                Err(ProveError::Transient(e)) => return Step::Retry(format!("waiting: {e}")),
                Err(e) => {
                    self.give_up(id, format!("proving: {e}")).await;
                    return Step::Done;
                }
            }
        }
        self.post_proof(entry, work).await
    }

    async fn post_proof(&self, entry: &Entry, work: &mut Work) -> Step {
        let id = entry.id();
        let now = match self.now().await {
            Ok(t) => t,
            Err(e) => return Step::Retry(e),
        };
        if now >= self.last_post(entry) {
            self.give_up(id, "proven too late to post").await;
            return Step::Done;
        }
        let max = entry.max_reward();
        let reward = self.cfg.ask_reward.map_or(max, |a| a.min(max));
        let proof = work.proof.as_deref().expect("proven");
        match self.market.submit_proof(id, proof, reward).await {
            Ok(tx) => {
                let tx = hex_hash(&tx.tx_hash);
                tracing::info!(request = %id, tx = %tx, %reward, "proof posted");
                self.advance(id, Status::ProofPosted, |e| {
                    e.proof_tx = Some(tx);
                    e.requested_reward = Some(reward.to_string());
                });
                Step::Done
            }
            Err(MarketError::Refused {
                revert: MarketRevert::ProofAlreadySubmitted(_),
                ..
            }) => {
                self.advance(id, Status::ProofPosted, |_| {});
                Step::Done
            }
            Err(MarketError::Refused {
                revert: MarketRevert::ProofTooLate { .. },
                ..
            }) => {
                self.finish(
                    id,
                    Status::GivenUp,
                    "the deadline passed before the proof was posted",
                );
                Step::Done
            }
            Err(e) => Step::Retry(format!("posting the proof: {e}")),
        }
    }

    fn record_prove_time(&self, took: Duration) {
        let secs = took.as_secs().max(1);
        let recent = {
            let mut shared = self.shared.lock().unwrap();
            shared.times.record(secs);
            shared.times.recent()
        };
        let _ = self.update(|s| s.prove_secs = recent);
    }

    /// Gives a request up (never posted late) and stops its proving.
    async fn give_up(&self, id: RequestId, why: impl Into<String>) {
        let why = why.into();
        self.cancel(id, &why).await;
        self.finish(id, Status::GivenUp, why);
    }

    /// Best effort: the coordinator stops proving a batch nobody will post.
    async fn cancel(&self, id: RequestId, why: &str) {
        if let Err(e) = self.prover.cancel(id.chain_id, id.batch, why).await {
            tracing::info!(request = %id, error = %e, "cancelling at the coordinator failed");
        }
    }
}

/// What a request's task holds in memory between steps (lost at a restart, fetched again).
#[derive(Default)]
struct Work {
    inputs: Option<MarketInputs>,
    proof: Option<Vec<u8>>,
    /// When this process handed the batch over (its prove time is measured from there).
    proving_since: Option<Instant>,
}
