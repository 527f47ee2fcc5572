//! What a standby coordinator serves while another one holds the store's lease: nothing that
//! writes. Prover streams, the client API and every admin call but `HealthCheck` and
//! `SystemStatus` are refused with `UNAVAILABLE`, naming the active coordinator (in the message and in the
//! [`ACTIVE_URL_HEADER`] response header) so that provers and people go there; health says
//! NOT_SERVING (so load balancers and probes pick the active one); status is read from the
//! store.

use crate::admin_gate::AdminGate;
use crate::error::CoordinatorError;
use crate::server::{Serving, reflection};
use proofmill_proto::ACTIVE_URL_HEADER;
use proofmill_proto::v1::admin_service_server::{AdminService, AdminServiceServer};
use proofmill_proto::v1::client_service_server::{ClientService, ClientServiceServer};
use proofmill_proto::v1::prover_service_server::{ProverService, ProverServiceServer};
use proofmill_proto::v1::*;
use proofmill_store::{LeaseHolder, Store};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Request, Response, Status, Streaming};

/// Bound of a standby's store reads (health, status).
const STORE_WAIT: Duration = Duration::from_secs(2);

/// A standby's view: the store, and who holds its lease.
#[derive(Clone)]
pub struct Standby {
    store: Arc<dyn Store>,
    holder: watch::Receiver<Option<LeaseHolder>>,
    /// Proof types every batch needs (for status).
    required: Vec<String>,
    /// The own chain, whose figures status shows.
    chain_id: u64,
    /// The active coordinator's door: status here needs the same token as there.
    admin_auth: Arc<crate::AdminAuth>,
    tls: Option<crate::ServerTls>,
}

impl Standby {
    pub fn new(
        store: Arc<dyn Store>,
        holder: watch::Receiver<Option<LeaseHolder>>,
        required: Vec<String>,
        chain_id: u64,
    ) -> Standby {
        Standby {
            store,
            holder,
            required,
            chain_id,
            admin_auth: Default::default(),
            tls: None,
        }
    }

    /// Serves with the active coordinator's admin tokens and TLS (its
    /// [`crate::CoordinatorConfig`]'s `admin_auth` and `tls`).
    pub fn secured(mut self, admin_auth: crate::AdminAuth, tls: Option<crate::ServerTls>) -> Self {
        self.admin_auth = Arc::new(admin_auth);
        self.tls = tls;
        self
    }

    /// Serves in a background task until [`Serving::stop`].
    pub fn spawn_serve(
        &self,
        incoming: impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
    ) -> Serving {
        let standby = self.clone();
        Serving::spawn(move |stopped| async move {
            let (reflection_v1, reflection_v1alpha) = reflection()?;
            let (reporter, health) = tonic_health::server::health_reporter();
            for name in crate::health::names() {
                reporter
                    .set_service_status(name, tonic_health::ServingStatus::NotServing)
                    .await;
            }
            let mut server = tonic::transport::Server::builder();
            if let Some(tls) = &standby.tls {
                server = tls.apply(server)?;
            }
            let admin = AdminGate::new(
                AdminServiceServer::new(standby.clone()),
                standby.admin_auth.clone(),
            );
            let client = AdminGate::with_roles(
                ClientServiceServer::new(standby.clone()),
                standby.admin_auth.clone(),
                crate::client::needed,
            );
            server
                .add_service(ProverServiceServer::new(standby.clone()))
                .add_service(admin)
                .add_service(client)
                .add_service(health)
                .add_service(reflection_v1)
                .add_service(reflection_v1alpha)
                .serve_with_incoming_shutdown(incoming, stopped)
                .await
                .map_err(|e| CoordinatorError::Transport(e.to_string()))
        })
    }

    /// What the HTTP admin API serves while this coordinator stands by: the same calls as
    /// its gRPC service (refusals naming the active one), and readiness that fails on
    /// purpose, so that a load balancer sends provers and operators to the active one.
    pub fn admin_api(&self) -> crate::AdminApi {
        let standby = self.clone();
        let leadership: crate::http::ready::Probe = Arc::new(move || {
            let standby = standby.clone();
            Box::pin(async move {
                let detail = match standby.active().await {
                    Some(a) => format!(
                        "the active coordinator is {} (lease epoch {})",
                        a.url, a.epoch
                    ),
                    None => "no active coordinator known yet".to_string(),
                };
                crate::http::ready::Component {
                    name: "leadership".into(),
                    state: "standby".into(),
                    ready: false,
                    required: true,
                    detail,
                }
            })
        });
        let store = self.store.clone();
        let probes = vec![
            leadership,
            crate::http::ready::probe("store", true, move || {
                let store = store.clone();
                async move {
                    store.probe().await.map_err(|e| e.to_string())?;
                    Ok(store.endpoint())
                }
            }),
        ];
        crate::AdminApi::standby(Arc::new(self.clone()), probes)
    }

    /// Who holds the lease: as the candidate last saw it, else (before its first look) as
    /// the store says.
    async fn active(&self) -> Option<LeaseHolder> {
        let seen = self.holder.borrow().clone();
        match seen {
            Some(holder) => Some(holder),
            None => self.read(self.store.lease_holder()).await.ok().flatten(),
        }
    }

    /// The refusal of everything a standby does not serve.
    async fn refusal(&self) -> Status {
        let mut metadata = MetadataMap::new();
        let message = match self.active().await {
            Some(active) => {
                if let Ok(v) = MetadataValue::try_from(active.url.as_str()) {
                    metadata.insert(ACTIVE_URL_HEADER, v);
                }
                format!(
                    "standby coordinator: the active one is {} (lease epoch {})",
                    active.url, active.epoch
                )
            }
            None => "standby coordinator: no active coordinator known yet".to_string(),
        };
        Status::with_metadata(Code::Unavailable, message, metadata)
    }

    async fn read<T>(
        &self,
        read: impl Future<Output = Result<T, proofmill_store::StoreError>>,
    ) -> Result<T, Status> {
        match tokio::time::timeout(STORE_WAIT, read).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Status::unavailable(e.to_string())),
            Err(_) => Err(Status::unavailable(format!(
                "{}: no answer within {STORE_WAIT:?}",
                self.store.endpoint()
            ))),
        }
    }
}

type OutStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl ProverService for Standby {
    type ProverStreamStream = OutStream;

    async fn prover_stream(
        &self,
        _: Request<Streaming<ProverMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        Err(self.refusal().await)
    }
}

/// The client API is the active coordinator's: every call is refused, naming it.
#[tonic::async_trait]
impl ClientService for Standby {
    type WatchBatchStream = crate::client::BatchStream;

    async fn submit_batch(
        &self,
        _: Request<Streaming<SubmitBatchRequest>>,
    ) -> Result<Response<SubmitBatchResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn get_batch(
        &self,
        _: Request<GetBatchRequest>,
    ) -> Result<Response<BatchStatus>, Status> {
        Err(self.refusal().await)
    }

    async fn watch_batch(
        &self,
        _: Request<WatchBatchRequest>,
    ) -> Result<Response<Self::WatchBatchStream>, Status> {
        Err(self.refusal().await)
    }

    async fn wait_proof(
        &self,
        _: Request<WaitProofRequest>,
    ) -> Result<Response<WaitProofResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn get_proof(
        &self,
        _: Request<GetProofRequest>,
    ) -> Result<Response<GetProofResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn cancel_batch(
        &self,
        _: Request<ClientCancelRequest>,
    ) -> Result<Response<ClientCancelResponse>, Status> {
        Err(self.refusal().await)
    }
}

#[tonic::async_trait]
impl AdminService for Standby {
    type WatchStream = crate::watch::WatchStream;

    /// A standby has nothing happening to tell: watch the active coordinator.
    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        Err(self.refusal().await)
    }

    async fn health_check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        let store_error = match self.read(self.store.probe()).await {
            Ok(()) => String::new(),
            Err(e) => e.message().to_string(),
        };
        let active = self.active().await;
        Ok(Response::new(HealthCheckResponse {
            serving: false,
            draining: false,
            version: env!("CARGO_PKG_VERSION").into(),
            store_error,
            standby: true,
            active_url: active.as_ref().map(|a| a.url.clone()).unwrap_or_default(),
            lease_epoch: active.map_or(0, |a| a.epoch),
        }))
    }

    async fn system_status(
        &self,
        _: Request<SystemStatusRequest>,
    ) -> Result<Response<SystemStatusResponse>, Status> {
        let store = &self.store;
        let counted = self.read(store.job_counts(Some(self.chain_id))).await?;
        let jobs = crate::status::view::job_counts(self.required.iter().cloned(), counted)
            .into_iter()
            .map(|(pt, c)| (pt, c.into()))
            .collect();
        let active = self.active().await;
        // The store's record: what the active coordinator acts on.
        let paused = self
            .read(store.paused_components())
            .await?
            .into_iter()
            .map(|p| PausedComponent {
                component: p.component,
                reason: p.reason,
                since_ms: p.since,
            })
            .collect();
        Ok(Response::new(SystemStatusResponse {
            chain_id: self.chain_id,
            paused,
            last_sealed_batch: self.read(store.last_sealed_batch(self.chain_id)).await?,
            last_proven_batch: self.read(store.last_proven_batch(self.chain_id)).await?,
            jobs,
            required_proof_types: self.required.clone(),
            standby: true,
            active_url: active.as_ref().map(|a| a.url.clone()).unwrap_or_default(),
            lease_epoch: active.map_or(0, |a| a.epoch),
            ..Default::default()
        }))
    }

    async fn jobs_list(
        &self,
        _: Request<JobsListRequest>,
    ) -> Result<Response<JobsListResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn job_status(
        &self,
        _: Request<JobStatusRequest>,
    ) -> Result<Response<JobStatusResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn provers_list(
        &self,
        _: Request<ProversListRequest>,
    ) -> Result<Response<ProversListResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn launch_proof(
        &self,
        _: Request<LaunchProofRequest>,
    ) -> Result<Response<LaunchProofResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn retry_job(
        &self,
        _: Request<RetryJobRequest>,
    ) -> Result<Response<RetryJobResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn status_info(
        &self,
        _: Request<StatusInfoRequest>,
    ) -> Result<Response<StatusInfoResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn cancel_job(
        &self,
        _: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn cordon_prover(
        &self,
        _: Request<CordonProverRequest>,
    ) -> Result<Response<CordonProverResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn replace_batch_input(
        &self,
        _: Request<ReplaceBatchInputRequest>,
    ) -> Result<Response<ReplaceBatchInputResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn cancel_batch(
        &self,
        _: Request<CancelBatchRequest>,
    ) -> Result<Response<CancelBatchResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn pause_component(
        &self,
        _: Request<PauseComponentRequest>,
    ) -> Result<Response<PauseComponentResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn resume_component(
        &self,
        _: Request<ResumeComponentRequest>,
    ) -> Result<Response<ResumeComponentResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn settle_now(
        &self,
        _: Request<SettleNowRequest>,
    ) -> Result<Response<SettleNowResponse>, Status> {
        Err(self.refusal().await)
    }

    async fn commit_now(
        &self,
        _: Request<CommitNowRequest>,
    ) -> Result<Response<CommitNowResponse>, Status> {
        Err(self.refusal().await)
    }
}
