//! Pull mode: two tasks over one [`CoreClient`].
//!
//! - The **fetcher** asks `proof_generation_data`; with a batch it takes it in and asks again
//!   at once (the core has a backlog); on `{"Success": null}` it waits the poll interval; on
//!   an error (transport, reply, the core's `Error`, a refused batch) it waits a backoff with
//!   jitter. It does not ask while an operator paused intake.
//! - The **submitter** sends the lowest stored batch above the sent watermark
//!   ([`crate::progress`]) once it is proven (`{"Proof": …}`) or cancelled
//!   (`"SkippedProofGeneration"`), and moves the watermark only on `"Success"`; any other
//!   answer is retried with backoff. Proofs go back strictly in batch order: a batch not
//!   done holds back the ones after it.

use crate::backoff::Backoff;
use crate::client::{ClientConfig, ClientError, CoreClient};
use crate::proofs::{self, Outcome};
use crate::taking::{Mode, TakeError};
use crate::wire::SubmitProofRequest;
use crate::{Gateway, count_request};
use proofmill_coordinator::Component;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Clone, Debug)]
pub struct PullConfig {
    pub client: ClientConfig,
    /// Wait after `{"Success": null}`.
    pub poll_interval: Duration,
    /// Longest wait between attempts after errors.
    pub max_backoff: Duration,
}

/// The running fetcher and submitter; they stop on the coordinator's shutdown or
/// [`Pull::stop`].
pub struct Pull {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Pull {
    /// Starts both tasks.
    pub fn start(gateway: Arc<Gateway>, cfg: PullConfig) -> Result<Pull, ClientError> {
        let client = Arc::new(CoreClient::new(cfg.client.clone())?);
        let (stop, _) = watch::channel(false);
        tracing::info!(url = %client.current_url(), poll_interval_ms = cfg.poll_interval.as_millis() as u64, "core API pull mode on");
        let fetcher = Loop {
            gateway: gateway.clone(),
            client: client.clone(),
            cfg: cfg.clone(),
            stop: stop.subscribe(),
        };
        let submitter = Loop {
            gateway,
            client,
            cfg,
            stop: stop.subscribe(),
        };
        Ok(Pull {
            stop,
            tasks: vec![
                tokio::spawn(fetcher.fetch()),
                tokio::spawn(submitter.submit()),
            ],
        })
    }

    /// Stops both tasks and waits for them.
    pub async fn stop(mut self) {
        self.stop.send_replace(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for Pull {
    fn drop(&mut self) {
        self.stop.send_replace(true);
    }
}

struct Loop {
    gateway: Arc<Gateway>,
    client: Arc<CoreClient>,
    cfg: PullConfig,
    stop: watch::Receiver<bool>,
}

impl Loop {
    fn backoff(&self) -> Backoff {
        Backoff::new(Duration::from_millis(200), self.cfg.max_backoff)
    }

    /// Waits `d`; false if told to stop meanwhile.
    async fn wait(&mut self, d: Duration) -> bool {
        let shutdown = self.gateway.intake.shutdown();
        let slept = tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stop.wait_for(|s| *s) => false,
            _ = shutdown.begun() => false,
        };
        slept && !*self.stop.borrow()
    }

    fn stopped(&self) -> bool {
        *self.stop.borrow() || self.gateway.intake.shutdown().is_begun()
    }

    async fn fetch(mut self) {
        let mut backoff = self.backoff();
        let pauses = self.gateway.intake.pauses();
        while !self.stopped() {
            if pauses.is_paused(Component::Intake) {
                tracing::info!("intake paused by an operator: not asking the core API for batches");
                let resumed = pauses.clone();
                let shutdown = self.gateway.intake.shutdown();
                tokio::select! {
                    _ = resumed.resumed(&[Component::Intake]) => {}
                    _ = self.stop.wait_for(|s| *s) => return,
                    _ = shutdown.begun() => return,
                }
                continue;
            }
            const ENDPOINT: &str = "proof_generation_data";
            let delay = match self.client.proof_generation_data().await {
                Ok(Some(data)) => {
                    count_request(ENDPOINT, "batch");
                    match self.gateway.take(&data, Mode::Pull).await {
                        Ok(_) => {
                            backoff.reset();
                            self.gateway.clear_error();
                            continue; // The core may have more: ask at once.
                        }
                        Err(TakeError::Stopping) => return,
                        Err(_) => backoff.next_delay(),
                    }
                }
                Ok(None) => {
                    count_request(ENDPOINT, "empty");
                    backoff.reset();
                    self.cfg.poll_interval
                }
                Err(e) => {
                    self.failed(ENDPOINT, &e);
                    backoff.next_delay()
                }
            };
            if !self.wait(delay).await {
                return;
            }
        }
    }

    fn failed(&self, endpoint: &'static str, e: &ClientError) {
        use proofmill_telemetry::names;
        count_request(endpoint, "error");
        metrics::counter!(names::GATEWAY_HTTP_ERRORS_TOTAL, names::ENDPOINT => endpoint, names::KIND => e.kind())
            .increment(1);
        tracing::warn!(endpoint, kind = e.kind(), error = %e, "core API request failed");
        self.gateway.record_error(e.to_string());
    }

    async fn submit(mut self) {
        let mut backoff = self.backoff();
        // Checked this often while nothing is ready (and at once when a batch is taken).
        let idle = Duration::from_millis(250);
        let mut told_failed = None;
        while !self.stopped() {
            let seen = self.gateway.progress.get().await;
            let next = match self.next_outcome(seen).await {
                Ok(next) => next,
                Err(e) => {
                    tracing::warn!(error = %e, "core API submitter: cannot read the store");
                    self.gateway.record_error(format!("reading proofs: {e}"));
                    if !self.wait(backoff.next_delay()).await {
                        return;
                    }
                    continue;
                }
            };
            let (n, request, proven_at) = match next {
                Some((n, Outcome::Proven { proof, proven_at })) => (
                    n,
                    SubmitProofRequest::Proof(Box::new(proof)),
                    Some(proven_at),
                ),
                Some((n, Outcome::Cancelled)) => {
                    (n, SubmitProofRequest::SkippedProofGeneration, None)
                }
                other => {
                    if let Some((n, Outcome::Failed(why))) = &other
                        && told_failed != Some(*n)
                    {
                        tracing::error!(batch = n, "{why}; later batches wait for it");
                        self.gateway.record_error(why.clone());
                        told_failed = Some(*n);
                    }
                    let taken = self.gateway.taken.notified();
                    let shutdown = self.gateway.intake.shutdown();
                    tokio::select! {
                        _ = tokio::time::sleep(idle) => {}
                        _ = taken => {}
                        _ = self.stop.wait_for(|s| *s) => return,
                        _ = shutdown.begun() => return,
                    }
                    continue;
                }
            };
            const ENDPOINT: &str = "submit_proof";
            match self.client.submit_proof(n, &request).await {
                Ok(()) => {
                    count_request(ENDPOINT, "success");
                    self.confirmed(seen, n, &request, proven_at).await;
                    backoff.reset();
                }
                Err(e) => {
                    self.failed(ENDPOINT, &e);
                    if !self.wait(backoff.next_delay()).await {
                        return;
                    }
                }
            }
        }
    }

    /// The lowest stored batch above the watermark and its outcome.
    async fn next_outcome(
        &self,
        sent_through: u64,
    ) -> Result<Option<(u64, Outcome)>, proofmill_store::StoreError> {
        let intake = &self.gateway.intake;
        let (store, chain) = (intake.store(), intake.chain_id());
        let Some(n) = proofs::next_batch_above(store.as_ref(), chain, sent_through).await? else {
            return Ok(None);
        };
        let outcome = proofs::outcome(store.as_ref(), intake.blobs(), (chain, n)).await?;
        Ok(outcome.map(|o| (n, o)))
    }

    async fn confirmed(
        &self,
        seen: u64,
        n: u64,
        request: &SubmitProofRequest,
        proven_at: Option<u64>,
    ) {
        use proofmill_telemetry::names;
        let kind = match request {
            SubmitProofRequest::Proof(_) => "proof",
            SubmitProofRequest::SkippedProofGeneration => "skipped",
        };
        metrics::counter!(names::GATEWAY_PROOFS_SUBMITTED_TOTAL, names::KIND => kind).increment(1);
        if let Some(at) = proven_at {
            let lag = crate::now_ms().saturating_sub(at) as f64 / 1000.0;
            metrics::histogram!(names::GATEWAY_SUBMIT_LAG_SECONDS).record(lag);
        }
        // The store may be down for a moment: the confirmation must not be lost in memory
        // only (a restart would send it again, which is allowed, but needless).
        let mut backoff = self.backoff();
        loop {
            match self.gateway.progress.advance(seen, n).await {
                Ok(moved) => {
                    tracing::info!(batch = n, kind, moved, "the core API confirmed the batch");
                    self.gateway.clear_error();
                    return;
                }
                Err(e) => {
                    tracing::warn!(batch = n, error = %e, "cannot record the core's confirmation; retrying");
                    if self.stopped() {
                        return;
                    }
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}
