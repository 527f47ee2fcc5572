//! `ClientService`: a rollup asks for the proofs of its batches and gets them back, batches
//! named by (chain id, batch number). Batches go in through [`Intake::submit_batch`], as
//! `LaunchProof`'s do; their state is read from the store ([`state`]) and followed through
//! the [`EventBus`].
//!
//! Errors are gRPC statuses; those about an input carry a [`FailureReason`]
//! ([`failed`]). An input is held in memory up to the cap and no further (it is refused the
//! moment it goes over, streamed or fetched): intake needs it whole, for the backends'
//! checks and the dispatch cache.

pub(crate) mod state;

use crate::error::CoordinatorError;
use crate::events::{Event, EventBus, Next};
use crate::intake::{Intake, NewBatch};
use crate::standing::Standing;
use proofmill_proto::v1::client_service_server::ClientService;
use proofmill_proto::v1::submit_batch_request::Part;
use proofmill_proto::v1::*;
use proofmill_store::{Capped, FetchError, UrlFetch};
use proofmill_types::{BatchId, Digest, ProofType, PublicValues};
use sha2::{Digest as _, Sha256};
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status, Streaming};

/// Metadata key of a failure's [`FailureReason`] name.
pub const FAILURE_REASON_HEADER: &str = "proofmill-failure-reason";
/// `WaitProof`'s timeout when the request gives none, and the most it may give.
pub(crate) const WAIT_DEFAULT: Duration = Duration::from_secs(30);
pub(crate) const WAIT_MAX: Duration = Duration::from_secs(60);
/// How often a waiter or watcher reads the batch again without an event (a safety net: the
/// events say when to read; one missed must not leave a caller waiting).
const REREAD: Duration = Duration::from_secs(2);
/// States a watcher's stream holds before the client reads them.
const WATCH_QUEUE: usize = 4;

/// A status whose message starts with the reason's name, also in [`FAILURE_REASON_HEADER`].
pub(crate) fn failed(
    code: tonic::Code,
    reason: FailureReason,
    detail: impl std::fmt::Display,
) -> Status {
    let name = reason.as_str_name();
    let mut status = Status::new(code, format!("{name}: {detail}"));
    if let Ok(v) = name.parse() {
        status.metadata_mut().insert(FAILURE_REASON_HEADER, v);
    }
    status
}

/// The status of an intake error.
fn status_of(e: CoordinatorError) -> Status {
    use CoordinatorError as E;
    match e {
        E::BatchExists(m) => Status::already_exists(m),
        E::InputRefused(m) => failed(tonic::Code::InvalidArgument, FailureReason::InputRefused, m),
        E::InvalidArgument(m) | E::Config(m) => Status::invalid_argument(m),
        E::FailedPrecondition(m) => Status::failed_precondition(m),
        E::UnknownBatch(_) | E::JobNotFound(_) | E::UnknownChain(_) => {
            Status::not_found(e.to_string())
        }
        E::Store(proofmill_store::StoreError::BatchNotFound(_)) => Status::not_found(e.to_string()),
        E::Unavailable | E::Store(proofmill_store::StoreError::Unavailable(_)) => {
            Status::unavailable(e.to_string())
        }
        e => Status::internal(e.to_string()),
    }
}

fn fetch_status(e: FetchError) -> Status {
    match e {
        FetchError::Unreachable(m) => failed(
            tonic::Code::FailedPrecondition,
            FailureReason::InputUnreachable,
            m,
        ),
        e @ FetchError::TooLarge { .. } => failed(
            tonic::Code::ResourceExhausted,
            FailureReason::InputTooLarge,
            e,
        ),
        FetchError::Refused(m) => {
            failed(tonic::Code::InvalidArgument, FailureReason::InputRefused, m)
        }
    }
}

/// Submissions that receive or fetch an input at once (over gRPC and HTTP together): each
/// holds up to `--max-input-bytes` in memory until intake has stored it, so this bounds
/// what submissions hold. More are refused with `RESOURCE_EXHAUSTED` at once.
pub(crate) const MAX_SUBMISSIONS: usize = 4;

pub(crate) struct ClientSvc {
    pub intake: Intake,
    pub events: EventBus,
    pub standing: Standing,
    pub fetch: UrlFetch,
    /// [`MAX_SUBMISSIONS`] permits, shared by every transport.
    pub submissions: std::sync::Arc<tokio::sync::Semaphore>,
}

/// A header's batch, checked, without its input.
pub(crate) struct Header {
    id: BatchId,
    version: String,
    public_values: PublicValues,
    proof_types: Vec<ProofType>,
    url: String,
    digest: Option<Digest>,
}

impl ClientSvc {
    /// The batch a request names, refused (`NOT_FOUND`) if its chain is not proven here.
    fn batch_id(&self, chain: u64, number: u64) -> Result<BatchId, Status> {
        self.intake.check_chain(chain).map_err(status_of)?;
        Ok(BatchId::new(chain, number))
    }

    fn header(&self, h: SubmitHeader) -> Result<Header, Status> {
        let id = self.batch_id(h.chain_id, h.batch_number)?;
        let refused =
            |m: String| failed(tonic::Code::InvalidArgument, FailureReason::InputRefused, m);
        let proof_types = h
            .proof_types
            .into_iter()
            .map(ProofType::new)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let digest = match h.input_digest.len() {
            0 => None,
            32 => Some(Digest(
                h.input_digest.as_slice().try_into().expect("32 bytes"),
            )),
            n => {
                return Err(refused(format!(
                    "input_digest must be a SHA-256 (32 bytes), got {n}"
                )));
            }
        };
        if !h.input_url.is_empty() && digest.is_none() {
            return Err(refused(
                "input_url needs input_digest (SHA-256 of the input)".into(),
            ));
        }
        if h.input_url.len() > 4096 {
            return Err(refused("input_url is longer than 4096 bytes".into()));
        }
        Ok(Header {
            id,
            version: h.protocol_version,
            public_values: PublicValues::new(h.public_values),
            proof_types,
            url: h.input_url,
            digest,
        })
    }

    /// `Some(state)` when the batch is stored with this digest and public values and is not
    /// cancelled: the same submission again, answered without reading the input.
    async fn same_stored(&self, h: &Header) -> Result<Option<BatchStatus>, Status> {
        let Some(digest) = h.digest else {
            return Ok(None);
        };
        let stored = self
            .intake
            .store()
            .batch(h.id.chain, h.id.number)
            .await
            .map_err(|e| status_of(e.into()))?;
        match stored {
            Some(b) if b.input_digest == digest && b.public_values == h.public_values => {
                let state = self.state(h.id).await?;
                Ok((state.phase != BatchPhase::BatchCancelled as i32).then_some(state))
            }
            _ => Ok(None),
        }
    }

    /// The inline input: chunks after the header, refused the moment they pass the cap.
    async fn receive(
        &self,
        stream: &mut Streaming<SubmitBatchRequest>,
    ) -> Result<bytes::Bytes, Status> {
        let max = self.intake.max_input_bytes();
        let mut data = Capped::new(max);
        while let Some(message) = stream.message().await? {
            match message.part {
                Some(Part::Chunk(chunk)) => {
                    data.push(&chunk).map_err(|_: proofmill_store::OverCap| {
                        failed(
                            tonic::Code::ResourceExhausted,
                            FailureReason::InputTooLarge,
                            format!("the input is larger than {max} bytes (--max-input-bytes)"),
                        )
                    })?;
                }
                Some(Part::Header(_)) | None => {
                    return Err(Status::invalid_argument(
                        "a header after the first message: one batch per call",
                    ));
                }
            }
        }
        Ok(data.into_bytes())
    }

    /// A place for one submission's input, or the refusal.
    fn submission_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        self.submissions.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(format!(
                "{MAX_SUBMISSIONS} submissions are taking their input in already; try again \
                 once one is done"
            ))
        })
    }

    async fn state(&self, id: BatchId) -> Result<BatchStatus, Status> {
        match state::read(&self.intake, id).await.map_err(status_of)? {
            Some(s) => Ok(s),
            None => Err(not_found(id)),
        }
    }

    /// The proofs of the batch's proof types (`only`: one of them).
    async fn proofs(
        &self,
        id: BatchId,
        only: Option<&ProofType>,
    ) -> Result<Vec<BatchProof>, Status> {
        let store = self.intake.store();
        let batch = store
            .batch(id.chain, id.number)
            .await
            .map_err(|e| status_of(e.into()))?
            .ok_or_else(|| not_found(id))?;
        let number = id.number;
        if let Some(t) = only
            && !batch.required.contains(t)
        {
            return Err(Status::not_found(format!(
                "batch {number} of chain {} needs no proof type {t}",
                id.chain
            )));
        }
        let mut proofs = Vec::new();
        for t in batch
            .required
            .iter()
            .filter(|t| only.is_none_or(|o| o == *t))
        {
            let key = id.job(t.clone());
            let record = store.proof(&key).await.map_err(|e| status_of(e.into()))?;
            let Some(record) = record else {
                return Err(Status::not_found(format!(
                    "batch {number} has no {t} proof yet"
                )));
            };
            let proof = match record.inline {
                Some(bytes) => bytes,
                None => self
                    .intake
                    .blobs()
                    .get(&record.blob_key)
                    .await
                    .map_err(|e| status_of(e.into()))?
                    .to_vec(),
            };
            proofs.push(BatchProof {
                proof_type: t.to_string(),
                proof,
                public_values: batch.public_values.as_bytes().to_vec(),
                prover_name: record.prover_name,
            });
        }
        Ok(proofs)
    }

    /// `SubmitBatch` with the input given whole (`None`: at the header's URL), for the JSON
    /// mirror.
    pub(crate) async fn take(
        &self,
        h: SubmitHeader,
        input: Option<bytes::Bytes>,
    ) -> Result<SubmitBatchResponse, Status> {
        let h = self.header(h)?;
        match (&input, h.url.is_empty()) {
            (Some(_), false) => {
                return Err(Status::invalid_argument(
                    "an input and an input_url: give one or the other",
                ));
            }
            (None, true) => {
                return Err(Status::invalid_argument("no input and no input_url"));
            }
            _ => {}
        }
        if let Some(batch) = self.same_stored(&h).await? {
            return Ok(SubmitBatchResponse {
                created: false,
                batch: Some(batch),
            });
        }
        let _slot = self.submission_slot()?;
        self.submit(h, input).await
    }

    /// Takes a batch in from a submission's header and input source.
    async fn submit(
        &self,
        h: Header,
        inline: Option<bytes::Bytes>,
    ) -> Result<SubmitBatchResponse, Status> {
        let input = match inline {
            Some(input) => input,
            None => self
                .fetch
                .fetch(&h.url, self.intake.max_input_bytes())
                .await
                .map_err(fetch_status)?,
        };
        if let Some(want) = h.digest {
            let got = Digest(Sha256::digest(&input).into());
            if got != want {
                return Err(failed(
                    tonic::Code::InvalidArgument,
                    FailureReason::DigestMismatch,
                    format!("the input's SHA-256 is {got}, the request says {want}"),
                ));
            }
        }
        let nb = NewBatch {
            chain: h.id.chain,
            number: h.id.number,
            version: h.version,
            input,
            public_values: h.public_values,
            proof_types: h.proof_types,
        };
        let created = self.intake.submit_batch(nb).await.map_err(status_of)?;
        Ok(SubmitBatchResponse {
            created,
            batch: Some(self.state(h.id).await?),
        })
    }

    /// Waits until the batch is terminal or `deadline`; its state then.
    async fn wait_terminal(
        &self,
        id: BatchId,
        deadline: tokio::time::Instant,
    ) -> Result<BatchStatus, Status> {
        // Watching from before the first read: a change between the two is not missed.
        let mut watcher = self.events.watch();
        let shutdown = self.standing.shutdown();
        loop {
            let state = self.state(id).await?;
            if state.terminal || tokio::time::Instant::now() >= deadline {
                return Ok(state);
            }
            let wake = (tokio::time::Instant::now() + REREAD).min(deadline);
            tokio::select! {
                () = concerns(&mut watcher, id) => {}
                () = tokio::time::sleep_until(wake) => {}
                () = shutdown.begun() => return Ok(state),
            }
        }
    }
}

/// A batch that is not stored, as the client API says it.
fn not_found(id: BatchId) -> Status {
    Status::not_found(format!("no batch {} of chain {}", id.number, id.chain))
}

/// Resolves at the next event about batch `id` (or a lost one, or never without a watcher).
async fn concerns(watcher: &mut Option<crate::events::Watcher>, id: BatchId) {
    let Some(w) = watcher else {
        return std::future::pending().await;
    };
    loop {
        match w.next().await {
            Some(Next::Missed(_)) => return,
            Some(Next::Event(e)) if about(&e.event, id) => return,
            Some(Next::Event(_)) => {}
            None => return std::future::pending().await,
        }
    }
}

fn about(event: &Event, id: BatchId) -> bool {
    match event {
        Event::Job { key, .. } => key.batch_id() == id,
        Event::BatchesTaken { chain, first, last } => {
            *chain == id.chain && (*first..=*last).contains(&id.number)
        }
        _ => false,
    }
}

pub(crate) type BatchStream =
    Pin<Box<dyn futures::Stream<Item = Result<BatchStatus, Status>> + Send>>;

#[tonic::async_trait]
impl ClientService for ClientSvc {
    type WatchBatchStream = BatchStream;

    async fn submit_batch(
        &self,
        request: Request<Streaming<SubmitBatchRequest>>,
    ) -> Result<Response<SubmitBatchResponse>, Status> {
        let mut stream = request.into_inner();
        let first = stream.message().await?;
        let Some(SubmitBatchRequest {
            part: Some(Part::Header(h)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message must be the header",
            ));
        };
        let h = self.header(h)?;
        if let Some(batch) = self.same_stored(&h).await? {
            return Ok(Response::new(SubmitBatchResponse {
                created: false,
                batch: Some(batch),
            }));
        }
        let _slot = self.submission_slot()?;
        let inline = if h.url.is_empty() {
            Some(self.receive(&mut stream).await?)
        } else {
            // Nothing may follow a URL; a chunk is a mistake worth telling.
            if let Some(m) = stream.message().await? {
                let what = match m.part {
                    Some(Part::Chunk(_)) => "input chunks",
                    _ => "another header",
                };
                return Err(Status::invalid_argument(format!(
                    "{what} after a header with input_url: give one or the other"
                )));
            }
            None
        };
        Ok(Response::new(self.submit(h, inline).await?))
    }

    async fn get_batch(
        &self,
        request: Request<GetBatchRequest>,
    ) -> Result<Response<BatchStatus>, Status> {
        let r = request.into_inner();
        let id = self.batch_id(r.chain_id, r.batch_number)?;
        Ok(Response::new(self.state(id).await?))
    }

    async fn watch_batch(
        &self,
        request: Request<WatchBatchRequest>,
    ) -> Result<Response<BatchStream>, Status> {
        let r = request.into_inner();
        let id = self.batch_id(r.chain_id, r.batch_number)?;
        let mut watcher = Some(self.events.watch().ok_or_else(|| {
            Status::resource_exhausted(format!(
                "{} watchers already; try again once one stops",
                self.events.max_watchers()
            ))
        })?);
        let first = self.state(id).await?;
        let (tx, rx) = mpsc::channel::<Result<BatchStatus, Status>>(WATCH_QUEUE);
        let intake = self.intake.clone();
        let shutdown = self.standing.shutdown();
        tokio::spawn(async move {
            let mut last = first.clone();
            if tx.send(Ok(first)).await.is_err() || last.terminal {
                return;
            }
            loop {
                let lagged = tokio::select! {
                    lagged = async {
                        let Some(w) = watcher.as_mut() else { return std::future::pending().await };
                        loop {
                            match w.next().await {
                                Some(Next::Missed(_)) => return true,
                                Some(Next::Event(e)) if about(&e.event, id) => return false,
                                Some(Next::Event(_)) => {}
                                None => return std::future::pending().await,
                            }
                        }
                    } => lagged,
                    () = tokio::time::sleep(REREAD) => false,
                    () = shutdown.begun() => return,
                    () = tx.closed() => return,
                };
                let mut now = match state::read(&intake, id).await {
                    Ok(Some(s)) => s,
                    Ok(None) => continue,
                    Err(e) => {
                        let _ = tx.send(Err(status_of(e))).await;
                        return;
                    }
                };
                if now == last && !lagged {
                    continue;
                }
                last = now.clone();
                now.lagged = lagged;
                if tx.send(Ok(now)).await.is_err() || last.terminal {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn wait_proof(
        &self,
        request: Request<WaitProofRequest>,
    ) -> Result<Response<WaitProofResponse>, Status> {
        let r = request.into_inner();
        let id = self.batch_id(r.chain_id, r.batch_number)?;
        let wait = match r.timeout_ms {
            0 => WAIT_DEFAULT,
            ms => Duration::from_millis(ms as u64).min(WAIT_MAX),
        };
        let deadline = tokio::time::Instant::now() + wait;
        let batch = self.wait_terminal(id, deadline).await?;
        let proofs = match batch.phase == BatchPhase::BatchProven as i32 {
            true => self.proofs(id, None).await?,
            false => Vec::new(),
        };
        Ok(Response::new(WaitProofResponse {
            timed_out: !batch.terminal,
            batch: Some(batch),
            proofs,
        }))
    }

    async fn get_proof(
        &self,
        request: Request<GetProofRequest>,
    ) -> Result<Response<GetProofResponse>, Status> {
        let r = request.into_inner();
        let id = self.batch_id(r.chain_id, r.batch_number)?;
        let only = match r.proof_type.as_str() {
            "" => None,
            t => Some(ProofType::new(t).map_err(|e| Status::invalid_argument(e.to_string()))?),
        };
        let proofs = self.proofs(id, only.as_ref()).await?;
        Ok(Response::new(GetProofResponse { proofs }))
    }

    async fn cancel_batch(
        &self,
        request: Request<ClientCancelRequest>,
    ) -> Result<Response<ClientCancelResponse>, Status> {
        let r = request.into_inner();
        let id = self.batch_id(r.chain_id, r.batch_number)?;
        if r.reason.len() > 1024 || r.reason.chars().any(char::is_control) {
            return Err(Status::invalid_argument(
                "reason must be at most 1024 bytes without control characters",
            ));
        }
        let before = self.state(id).await?;
        if before.terminal {
            return Ok(Response::new(ClientCancelResponse {
                cancelled_jobs: 0,
                batch: Some(before),
            }));
        }
        let reason = match r.reason.as_str() {
            "" => "cancelled by a client",
            given => given,
        };
        let cancelled = match self.intake.cancel_batch(id, reason).await {
            Ok(n) => n,
            // Proven meanwhile: terminal all the same.
            Err(CoordinatorError::FailedPrecondition(_)) => 0,
            Err(e) => return Err(status_of(e)),
        };
        // Durable when cancel_batch returns; the read shows it.
        let deadline = tokio::time::Instant::now() + WAIT_MAX;
        let batch = self.wait_terminal(id, deadline).await?;
        Ok(Response::new(ClientCancelResponse {
            cancelled_jobs: cancelled.min(u32::MAX as usize) as u32,
            batch: Some(batch),
        }))
    }
}

/// Client calls that change nothing: a read-only token may make them.
const READS: &[&str] = &["GetBatch", "WatchBatch", "WaitProof", "GetProof"];

/// The role a client API call needs, by its method name: read-only for reads, operator for
/// `SubmitBatch` and `CancelBatch` (and any call added later).
///
/// Why no `client` role of its own: a client's token would have to own its batches (a
/// client may cancel only its own), which needs the submitter recorded with each batch; until
/// several tenants share one coordinator, whoever may submit batches (operator, as for
/// `LaunchProof`) may cancel them, and whoever may read status may read proofs.
pub(crate) fn needed(method: &str) -> Option<crate::auth::Role> {
    use crate::auth::Role;
    Some(match READS.contains(&method) {
        true => Role::ReadOnly,
        false => Role::Operator,
    })
}
