//! Proving a request's batch with the network's own proofmill coordinator, through its client
//! API (`proofmill.v1.ClientService`): `SubmitBatch` (header, then the input in chunks; the
//! same batch again is answered `created: false`), `WaitProof` (long polls), `GetProof`,
//! and `CancelBatch` when the network gives a request up.

use async_trait::async_trait;
use proofmill_market::MarketInputs;
use proofmill_proto::client::{BearerToken, ClientTls, endpoint, error_chain};
use proofmill_proto::v1::client_service_client::ClientServiceClient;
use proofmill_proto::v1::submit_batch_request::Part;
use proofmill_proto::v1::{
    BatchPhase, ClientCancelRequest, GetProofRequest, SubmitBatchRequest, SubmitHeader,
    WaitProofRequest,
};
use std::time::Duration;
use tonic::Code;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Bytes of input per `SubmitBatch` message.
const CHUNK: usize = 1 << 20;
/// Bound of one call (a large input on a slow link; long polls ask for less).
const CALL_TIMEOUT: Duration = Duration::from_secs(600);

/// Where a batch's proof is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProofState {
    /// Still being proven.
    Pending,
    Proven(Vec<u8>),
    /// Failed or cancelled at the prover, with why: it will not be proven.
    Failed(String),
}

/// Why a call to the prover failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProveError {
    /// May pass when tried again (unreachable, overloaded, timed out).
    #[error("{0}")]
    Transient(String),
    /// The prover does not hold this batch (submit it again).
    #[error("{0}")]
    NotFound(String),
    /// The prover refuses the batch for good (unknown proof type or chain, input refused,
    /// another input under the same number).
    #[error("{0}")]
    Refused(String),
}

/// What the network needs of whatever proves its batches.
#[async_trait]
pub trait ProofService: Send + Sync {
    /// Hands the batch over; `Ok` also when it holds the same batch already.
    async fn submit(&self, inputs: &MarketInputs) -> Result<(), ProveError>;
    /// Waits up to `wait` for the batch's `proof_type` proof.
    async fn wait(
        &self,
        chain_id: u64,
        batch: u64,
        proof_type: &str,
        wait: Duration,
    ) -> Result<ProofState, ProveError>;
    /// Stops proving the batch (the network gave it up).
    async fn cancel(&self, chain_id: u64, batch: u64, reason: &str) -> Result<(), ProveError>;
}

/// How to reach the coordinator.
#[derive(Clone, Debug)]
pub struct CoordinatorAccess {
    /// gRPC URL, `http://` or `https://`.
    pub url: String,
    /// Bearer token of its client API, if it wants one.
    pub token: Option<String>,
    pub tls: ClientTls,
}

type Client = ClientServiceClient<InterceptedService<Channel, BearerToken>>;

/// [`ProofService`] over a proofmill coordinator's client API. Connects lazily: a
/// coordinator that is down is a transient error of each call, not of the start.
#[derive(Clone)]
pub struct CoordinatorProver {
    client: Client,
    url: String,
}

impl std::fmt::Debug for CoordinatorProver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CoordinatorProver")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl CoordinatorProver {
    pub fn new(access: &CoordinatorAccess) -> Result<CoordinatorProver, String> {
        let channel = endpoint(&access.url, &access.tls)?
            .connect_timeout(Duration::from_secs(10))
            .timeout(CALL_TIMEOUT)
            .connect_lazy();
        let token = BearerToken::new(access.token.as_deref())?;
        let client = ClientServiceClient::with_interceptor(channel, token)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        Ok(CoordinatorProver {
            client,
            url: access.url.clone(),
        })
    }

    fn error(&self, call: &str, s: tonic::Status) -> ProveError {
        let text = format!("{call} at {}: {:?}: {}", self.url, s.code(), s.message());
        let input_too_large = s
            .metadata()
            .get("proofmill-failure-reason")
            .is_some_and(|r| r.as_bytes() == b"INPUT_TOO_LARGE");
        match s.code() {
            Code::NotFound if call != "SubmitBatch" => ProveError::NotFound(text),
            Code::ResourceExhausted if !input_too_large => ProveError::Transient(text),
            Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::OutOfRange
            | Code::Unimplemented => ProveError::Refused(text),
            _ => ProveError::Transient(match std::error::Error::source(&s) {
                Some(e) => format!("{text}: {}", error_chain(e)),
                None => text,
            }),
        }
    }
}

#[async_trait]
impl ProofService for CoordinatorProver {
    async fn submit(&self, inputs: &MarketInputs) -> Result<(), ProveError> {
        let header = SubmitHeader {
            chain_id: inputs.chain_id,
            batch_number: inputs.batch,
            protocol_version: inputs.program_version.clone(),
            proof_types: vec![inputs.proof_type.clone()],
            public_values: inputs.public_values.clone(),
            input_url: String::new(),
            // Lets the coordinator answer a second submission without the input.
            input_digest: MarketInputs::digest_of(&inputs.input).to_vec(),
        };
        let mut messages = vec![SubmitBatchRequest {
            part: Some(Part::Header(header)),
        }];
        messages.extend(inputs.input.chunks(CHUNK).map(|c| SubmitBatchRequest {
            part: Some(Part::Chunk(c.to_vec())),
        }));
        let response = self
            .client
            .clone()
            .submit_batch(futures::stream::iter(messages))
            .await
            .map_err(|s| self.error("SubmitBatch", s))?
            .into_inner();
        tracing::info!(
            chain_id = inputs.chain_id,
            batch = inputs.batch,
            created = response.created,
            "batch handed to the coordinator"
        );
        Ok(())
    }

    async fn wait(
        &self,
        chain_id: u64,
        batch: u64,
        proof_type: &str,
        wait: Duration,
    ) -> Result<ProofState, ProveError> {
        let mut request = tonic::Request::new(WaitProofRequest {
            chain_id,
            batch_number: batch,
            timeout_ms: wait.as_millis().clamp(1, 60_000) as u32,
        });
        request.set_timeout(wait + Duration::from_secs(30));
        let response = self
            .client
            .clone()
            .wait_proof(request)
            .await
            .map_err(|s| self.error("WaitProof", s))?
            .into_inner();
        let Some(state) = response.batch else {
            return Ok(ProofState::Pending);
        };
        match BatchPhase::try_from(state.phase) {
            Ok(BatchPhase::BatchProven) => {}
            Ok(BatchPhase::BatchFailed | BatchPhase::BatchCancelled) => {
                return Ok(ProofState::Failed(format!(
                    "{}: {}",
                    BatchPhase::try_from(state.phase)
                        .map(|p| p.as_str_name())
                        .unwrap_or("?"),
                    state.failure_detail
                )));
            }
            _ => return Ok(ProofState::Pending),
        }
        let proofs = self
            .client
            .clone()
            .get_proof(GetProofRequest {
                chain_id,
                batch_number: batch,
                proof_type: proof_type.to_string(),
            })
            .await
            .map_err(|s| self.error("GetProof", s))?
            .into_inner()
            .proofs;
        match proofs.into_iter().find(|p| p.proof_type == proof_type) {
            Some(p) => Ok(ProofState::Proven(p.proof)),
            None => Err(ProveError::Refused(format!(
                "GetProof at {}: no {proof_type} proof of chain {chain_id} batch {batch}",
                self.url
            ))),
        }
    }

    async fn cancel(&self, chain_id: u64, batch: u64, reason: &str) -> Result<(), ProveError> {
        self.client
            .clone()
            .cancel_batch(ClientCancelRequest {
                chain_id,
                batch_number: batch,
                reason: reason.to_string(),
            })
            .await
            .map_err(|s| self.error("CancelBatch", s))?;
        Ok(())
    }
}
