//! The tasks waiting for the outside cluster, grouped by batch: the core API hands a batch
//! out with every proof type waiting for it, and a proof posted back ends the wait of the
//! task it proves.

use proofmill_backend::{Backend, BackendError, Cancel};
use proofmill_types::{BatchNumber, Digest, ProofType, PublicValues};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How often a waiting task looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(200);
/// Digests of proofs remembered after their task ended, so that the cluster posting one
/// again (its reply was lost) is told `Success` instead of an error.
const REMEMBERED: usize = 4096;

#[derive(Clone)]
pub struct HubConfig {
    /// Proof types every batch needs: a batch is handed out once all of them wait for it,
    /// or once the first has waited `gather`.
    pub proof_types: Vec<ProofType>,
    pub gather: Duration,
    /// A batch handed out and not answered in this time is handed out again (zkSync's
    /// `proof_generation_timeout`, which is 5 hours there: a lost reply cost that long).
    pub handout_timeout: Duration,
    /// The protocol version of the batches (the handoff prover registers with it, so the
    /// coordinator sends it only batches of this version).
    pub protocol_version: String,
    /// Backends that check a posted proof before it is accepted.
    pub verifiers: HashMap<ProofType, Arc<dyn Backend>>,
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("proof_types", &self.proof_types)
            .field("gather", &self.gather)
            .field("handout_timeout", &self.handout_timeout)
            .field("protocol_version", &self.protocol_version)
            .finish_non_exhaustive()
    }
}

/// A batch handed out: its input, the public values its proofs must attest, and the proof
/// types asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub batch: BatchNumber,
    pub input: Arc<[u8]>,
    pub public_values: PublicValues,
    pub proof_types: Vec<ProofType>,
    pub protocol_version: String,
}

/// One proof type's proof in a posting.
#[derive(Clone, Debug)]
pub struct OfferedType {
    pub proof_type: ProofType,
    pub proof: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// Nothing of this batch waits here (never handed out, or its wait ended): the
    /// coordinator may hand it out again later.
    #[error("batch {0} is not being proven here now (it may be handed out again later)")]
    NotWaiting(BatchNumber),
    #[error("proof type {proof_type} is not waiting for batch {batch}")]
    TypeNotWaiting {
        batch: BatchNumber,
        proof_type: ProofType,
    },
    /// The proof does not attest the batch: nothing is accepted, and the batch's wait ends
    /// with this error, so the coordinator counts a failed attempt and hands it out anew.
    #[error("the {proof_type} proof of batch {batch} is refused: {reason}")]
    Invalid {
        batch: BatchNumber,
        proof_type: ProofType,
        reason: String,
    },
    #[error("no proof in the posting for batch {0}")]
    Empty(BatchNumber),
}

struct Waiting {
    input: Arc<[u8]>,
    expected: PublicValues,
    arrived: Instant,
    handed_out: Option<Instant>,
    /// Set once: the proof, or why the wait ended without one.
    outcome: Option<Result<Vec<u8>, BackendError>>,
}

#[derive(Default)]
struct State {
    waiting: BTreeMap<(BatchNumber, ProofType), Waiting>,
    /// (batch, type) of proofs accepted lately, oldest first, with the proof's digest.
    accepted: VecDeque<((BatchNumber, ProofType), Digest)>,
}

/// See the module doc. Shared by the handoff backends (which wait on it) and the core API
/// (which hands out and takes back).
pub struct Hub {
    config: HubConfig,
    state: Mutex<State>,
    /// Wakes backends waiting for an outcome.
    ended: Condvar,
    /// Wakes whoever waits for something to hand out.
    arrived: tokio::sync::Notify,
}

impl Hub {
    pub fn new(config: HubConfig) -> Arc<Hub> {
        Arc::new(Hub {
            config,
            state: Mutex::new(State::default()),
            ended: Condvar::new(),
            arrived: tokio::sync::Notify::new(),
        })
    }

    pub fn config(&self) -> &HubConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a task in and blocks until the cluster's proof for it is accepted, the cluster
    /// skips it, or `cancel` is set (the coordinator cancelled the task or its lease ended).
    pub fn wait_for_proof(
        &self,
        batch: BatchNumber,
        proof_type: &ProofType,
        input: &[u8],
        expected: &PublicValues,
        cancel: &Cancel,
    ) -> Result<Vec<u8>, BackendError> {
        let key = (batch, proof_type.clone());
        let mut state = self.lock();
        // The same task again (a retry after a lost lease): the new wait replaces the old.
        state.waiting.insert(
            key.clone(),
            Waiting {
                input: Arc::from(input),
                expected: expected.clone(),
                arrived: Instant::now(),
                handed_out: None,
                outcome: None,
            },
        );
        // Wake every current waiter, and leave a permit for one that is about to wait.
        self.arrived.notify_waiters();
        self.arrived.notify_one();
        loop {
            if let Some(w) = state.waiting.get_mut(&key)
                && let Some(outcome) = w.outcome.take()
            {
                state.waiting.remove(&key);
                return outcome;
            }
            if !state.waiting.contains_key(&key) {
                return Err(BackendError::Failed(
                    "the task was replaced by a newer copy".into(),
                ));
            }
            if cancel.is_cancelled() {
                state.waiting.remove(&key);
                return Err(BackendError::Failed("cancelled".into()));
            }
            state = self
                .ended
                .wait_timeout(state, CANCEL_POLL)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The oldest batch ready to hand out (every proof type waiting, or the first waiting
    /// `gather`; or handed out more than `handout_timeout` ago without an answer), marked
    /// handed out at `now`.
    pub fn take_offer(&self, now: Instant) -> Option<Offer> {
        let mut state = self.lock();
        let batch = self.ready_batch(&state, now)?;
        let mut offer: Option<Offer> = None;
        // Few tasks wait at a time (the handoff prover's capacity): a scan is enough.
        for ((b, pt), w) in state.waiting.iter_mut() {
            if *b != batch {
                continue;
            }
            if w.outcome.is_some() || w.handed_out.is_some_and(|t| !self.expired(t, now)) {
                continue;
            }
            w.handed_out = Some(now);
            match &mut offer {
                Some(o) => o.proof_types.push(pt.clone()),
                None => {
                    offer = Some(Offer {
                        batch,
                        input: w.input.clone(),
                        public_values: w.expected.clone(),
                        proof_types: vec![pt.clone()],
                        protocol_version: self.config.protocol_version.clone(),
                    })
                }
            }
        }
        offer
    }

    /// Takes a handout back (it never reached the cluster): the batch is ready again at once.
    pub fn return_offer(&self, offer: &Offer) {
        let mut state = self.lock();
        for pt in &offer.proof_types {
            if let Some(w) = state.waiting.get_mut(&(offer.batch, pt.clone())) {
                w.handed_out = None;
            }
        }
    }

    fn expired(&self, handed_out: Instant, now: Instant) -> bool {
        now.saturating_duration_since(handed_out) >= self.config.handout_timeout
    }

    fn ready_batch(&self, state: &State, now: Instant) -> Option<BatchNumber> {
        let mut current: Option<(BatchNumber, usize, Instant)> = None;
        let ready = |(b, n, first): (BatchNumber, usize, Instant)| {
            (n >= self.config.proof_types.len()
                || now.saturating_duration_since(first) >= self.config.gather)
                .then_some(b)
        };
        for ((b, _), w) in &state.waiting {
            let open = w.outcome.is_none() && w.handed_out.is_none_or(|t| self.expired(t, now));
            if !open {
                continue;
            }
            match &mut current {
                Some((cb, n, first)) if cb == b => {
                    *n += 1;
                    *first = (*first).min(w.arrived);
                }
                _ => {
                    if let Some(found) = current.and_then(ready) {
                        return Some(found);
                    }
                    current = Some((*b, 1, w.arrived));
                }
            }
        }
        current.and_then(ready)
    }

    /// When something may become ready to hand out: at once if something is, else when the
    /// next gather or handout timeout passes (`None`: nothing waits).
    pub fn next_ready_at(&self, now: Instant) -> Option<Instant> {
        let state = self.lock();
        if self.ready_batch(&state, now).is_some() {
            return Some(now);
        }
        state
            .waiting
            .values()
            .filter(|w| w.outcome.is_none())
            .map(|w| match w.handed_out {
                Some(t) => t + self.config.handout_timeout,
                None => w.arrived + self.config.gather,
            })
            .min()
    }

    /// Resolves when a task arrives (call [`Hub::take_offer`] after).
    pub async fn arrived(&self) {
        self.arrived.notified().await
    }

    /// Batches handed out and not answered yet, oldest first.
    pub fn handed_out(&self) -> Vec<BatchNumber> {
        let state = self.lock();
        let mut batches: Vec<BatchNumber> = state
            .waiting
            .iter()
            .filter(|(_, w)| w.outcome.is_none() && w.handed_out.is_some())
            .map(|((b, _), _)| *b)
            .collect();
        batches.dedup();
        batches
    }

    /// Takes the cluster's proofs of `batch`: each is checked with its proof type's backend
    /// against the batch's public values first (on the calling thread: call it off the
    /// async threads). All are accepted, or none. A proof accepted before is accepted
    /// again (the cluster's earlier reply may have been lost).
    pub fn submit(&self, batch: BatchNumber, proofs: &[OfferedType]) -> Result<(), SubmitError> {
        if proofs.is_empty() {
            return Err(SubmitError::Empty(batch));
        }
        let mut checks = Vec::new();
        {
            let state = self.lock();
            let waits_here = state.waiting.keys().any(|(b, _)| *b == batch);
            for p in proofs {
                let key = (batch, p.proof_type.clone());
                if let Some(w) = state.waiting.get(&key).filter(|w| w.outcome.is_none()) {
                    checks.push((p, w.expected.clone()));
                } else if !state
                    .accepted
                    .iter()
                    .any(|(k, d)| *k == key && *d == Digest::sha256(&p.proof))
                {
                    return Err(match waits_here {
                        true => SubmitError::TypeNotWaiting {
                            batch,
                            proof_type: p.proof_type.clone(),
                        },
                        false => SubmitError::NotWaiting(batch),
                    });
                }
            }
        }
        // Verified without the lock: a pairing takes milliseconds, a backend process longer.
        for (p, expected) in &checks {
            let verdict = match self.config.verifiers.get(&p.proof_type) {
                Some(v) => v.verify(expected, &p.proof).map_err(|e| e.to_string()),
                None => Err(format!("no verifier for proof type {}", p.proof_type)),
            };
            if let Err(reason) = verdict {
                self.end(
                    batch,
                    &p.proof_type,
                    Err(BackendError::Failed(format!(
                        "the proving cluster's proof does not verify: {reason}"
                    ))),
                );
                return Err(SubmitError::Invalid {
                    batch,
                    proof_type: p.proof_type.clone(),
                    reason,
                });
            }
        }
        for (p, _) in checks {
            self.end(batch, &p.proof_type, Ok(p.proof.clone()));
        }
        Ok(())
    }

    /// The cluster will not prove `batch` (it answered `SkippedProofGeneration`): every task
    /// of it waiting here fails, and the coordinator retries it as it retries a failure.
    pub fn skip(&self, batch: BatchNumber, why: &str) -> usize {
        let types: Vec<ProofType> = {
            let state = self.lock();
            state
                .waiting
                .iter()
                .filter(|((b, _), w)| *b == batch && w.outcome.is_none())
                .map(|((_, pt), _)| pt.clone())
                .collect()
        };
        for pt in &types {
            self.end(batch, pt, Err(BackendError::Failed(why.to_string())));
        }
        types.len()
    }

    fn end(
        &self,
        batch: BatchNumber,
        proof_type: &ProofType,
        outcome: Result<Vec<u8>, BackendError>,
    ) {
        let mut state = self.lock();
        let key = (batch, proof_type.clone());
        if let Ok(proof) = &outcome {
            if state.accepted.len() >= REMEMBERED {
                state.accepted.pop_front();
            }
            state
                .accepted
                .push_back((key.clone(), Digest::sha256(proof)));
        }
        if let Some(w) = state.waiting.get_mut(&key)
            && w.outcome.is_none()
        {
            w.outcome = Some(outcome);
        }
        drop(state);
        self.ended.notify_all();
    }

    /// Tasks waiting (handed out or not).
    pub fn len(&self) -> usize {
        self.lock().waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proofmill_backend::{ProveRequest, VerifyError};

    /// Accepts a proof that equals the public values' bytes.
    struct Echo;
    impl Backend for Echo {
        fn name(&self) -> &str {
            "echo"
        }
        fn prove(&self, req: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError> {
            Ok(req.expected.as_bytes().to_vec())
        }
        fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError> {
            match public.as_bytes() == proof {
                true => Ok(()),
                false => Err(VerifyError::Invalid("not the public values".into())),
            }
        }
    }

    fn pt(name: &str) -> ProofType {
        ProofType::new(name).unwrap()
    }

    fn hub(types: &[&str]) -> Arc<Hub> {
        Hub::new(HubConfig {
            proof_types: types.iter().map(|t| pt(t)).collect(),
            gather: Duration::from_secs(1),
            handout_timeout: Duration::from_secs(60),
            protocol_version: "v1".into(),
            verifiers: types
                .iter()
                .map(|t| (pt(t), Arc::new(Echo) as Arc<dyn Backend>))
                .collect(),
        })
    }

    /// Starts a backend's wait on its own thread, as the prover runs it.
    fn wait(
        hub: &Arc<Hub>,
        batch: u64,
        t: &str,
        cancel: &Cancel,
    ) -> std::thread::JoinHandle<Result<Vec<u8>, BackendError>> {
        let (hub, t, cancel) = (hub.clone(), pt(t), cancel.clone());
        let public = PublicValues::new(format!("pv{batch}"));
        std::thread::spawn(move || hub.wait_for_proof(batch, &t, b"input", &public, &cancel))
    }

    fn until(cond: impl Fn() -> bool) {
        for _ in 0..500 {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("condition not reached");
    }

    fn proof(t: &str, batch: u64) -> OfferedType {
        OfferedType {
            proof_type: pt(t),
            proof: format!("pv{batch}").into_bytes(),
        }
    }

    #[test]
    fn a_batch_is_handed_out_with_all_its_types_and_its_proofs_end_the_waits() {
        let hub = hub(&["exec", "stark"]);
        let cancel = Cancel::default();
        let exec = wait(&hub, 7, "exec", &cancel);
        until(|| hub.len() == 1);
        // One type of two, not gathered long enough: nothing to hand out yet.
        assert_eq!(hub.take_offer(Instant::now()), None);
        let stark = wait(&hub, 7, "stark", &cancel);
        until(|| hub.len() == 2);
        let offer = hub.take_offer(Instant::now()).expect("batch 7 is ready");
        assert_eq!(offer.batch, 7);
        assert_eq!(offer.proof_types, vec![pt("exec"), pt("stark")]);
        assert_eq!(&*offer.input, b"input");
        assert_eq!(offer.public_values, PublicValues::new("pv7"));
        // Handed out: not offered twice.
        assert_eq!(hub.take_offer(Instant::now()), None);
        assert_eq!(hub.handed_out(), vec![7]);
        hub.submit(7, &[proof("exec", 7), proof("stark", 7)])
            .unwrap();
        assert_eq!(exec.join().unwrap().unwrap(), b"pv7");
        assert_eq!(stark.join().unwrap().unwrap(), b"pv7");
        assert!(hub.is_empty());
        // The reply was lost and the cluster posts again: accepted again.
        hub.submit(7, &[proof("exec", 7)]).unwrap();
    }

    #[test]
    fn a_partial_batch_goes_out_after_the_gather_time_oldest_batch_first() {
        let hub = hub(&["exec", "stark"]);
        let cancel = Cancel::default();
        let _b9 = wait(&hub, 9, "exec", &cancel);
        let _b8 = wait(&hub, 8, "stark", &cancel);
        until(|| hub.len() == 2);
        let later = Instant::now() + Duration::from_secs(2);
        let first = hub.take_offer(later).unwrap();
        assert_eq!((first.batch, first.proof_types), (8, vec![pt("stark")]));
        assert_eq!(hub.take_offer(later).unwrap().batch, 9);
        cancel.cancel();
    }

    #[test]
    fn an_unanswered_batch_is_handed_out_again_after_the_timeout() {
        let hub = hub(&["exec"]);
        let cancel = Cancel::default();
        let w = wait(&hub, 3, "exec", &cancel);
        until(|| hub.len() == 1);
        let now = Instant::now();
        assert!(hub.take_offer(now).is_some());
        assert_eq!(hub.take_offer(now + Duration::from_secs(59)), None);
        assert_eq!(hub.next_ready_at(now), Some(now + Duration::from_secs(60)));
        assert_eq!(
            hub.take_offer(now + Duration::from_secs(60)).unwrap().batch,
            3
        );
        cancel.cancel();
        assert!(w.join().unwrap().is_err());
        assert!(hub.is_empty());
    }

    #[test]
    fn an_invalid_proof_is_refused_and_fails_the_wait_so_the_job_is_retried() {
        let hub = hub(&["exec"]);
        let cancel = Cancel::default();
        let w = wait(&hub, 4, "exec", &cancel);
        until(|| hub.len() == 1);
        hub.take_offer(Instant::now()).unwrap();
        let bad = OfferedType {
            proof_type: pt("exec"),
            proof: b"garbage".to_vec(),
        };
        let err = hub.submit(4, &[bad]).unwrap_err();
        assert!(
            matches!(err, SubmitError::Invalid { batch: 4, .. }),
            "{err}"
        );
        let ended = w.join().unwrap().unwrap_err();
        assert!(ended.to_string().contains("does not verify"), "{ended}");
        // Not remembered as accepted: the same garbage again is not waited for.
        let again = hub.submit(4, &[proof("exec", 4)]).unwrap_err();
        assert_eq!(again, SubmitError::NotWaiting(4));
    }

    #[test]
    fn unknown_batches_types_and_empty_postings_are_refused_without_change() {
        let hub = hub(&["exec", "stark"]);
        let cancel = Cancel::default();
        let w = wait(&hub, 5, "exec", &cancel);
        until(|| hub.len() == 1);
        assert_eq!(
            hub.submit(6, &[proof("exec", 6)]),
            Err(SubmitError::NotWaiting(6))
        );
        assert_eq!(
            hub.submit(5, &[proof("stark", 5)]),
            Err(SubmitError::TypeNotWaiting {
                batch: 5,
                proof_type: pt("stark")
            })
        );
        assert_eq!(hub.submit(5, &[]), Err(SubmitError::Empty(5)));
        assert_eq!(hub.len(), 1);
        // A skip fails the wait, with the reason.
        assert_eq!(hub.skip(5, "skipped by the proving cluster"), 1);
        let ended = w.join().unwrap().unwrap_err();
        assert!(ended.to_string().contains("skipped"), "{ended}");
    }
}
