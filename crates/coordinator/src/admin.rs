//! `AdminService`: status, job and prover listings, batch submission, retries. Application
//! errors come back as typed `AdminError`s in the response; gRPC statuses mean transport
//! trouble.

use crate::controls::JobControls;
use crate::core::CoreHandle;
use crate::error::CoordinatorError;
use crate::events::EventBus;
use crate::intake::{Intake, NewBatch};
use crate::pauses::{Component, Pause};
use crate::pausing::Pausing;
use crate::settlement_steps::SettlementSteps;
use crate::standing::Standing;
use crate::status::StatusSource;
use proofmill_proto::v1::admin_service_server::AdminService;
use proofmill_proto::v1::*;
use proofmill_scheduler::ProverView;
use proofmill_store::{JobFilter, Store};
use proofmill_types::{
    Attempt, BatchId, Job, JobKey, JobState, ProofType, ProverId, PublicValues, TaskId,
};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// Longest a health check waits for the store's probe.
const HEALTH_WAIT: Duration = Duration::from_secs(2);

/// What `StatusInfo` answers with.
pub(crate) struct Info {
    pub about: crate::about::AboutCell,
    pub started_at_ms: u64,
    pub store: String,
    pub blobs: String,
    pub proof_types: Vec<ProofType>,
    pub assignment_policy: String,
}

pub(crate) fn paused_info(c: Component, p: &Pause) -> PausedComponent {
    PausedComponent {
        component: c.as_str().into(),
        reason: p.reason.clone(),
        since_ms: p.since,
    }
}

/// `paused` in name order, as a standby lists them from the store.
fn sorted_paused(paused: &std::collections::BTreeMap<Component, Pause>) -> Vec<PausedComponent> {
    let mut paused: Vec<_> = paused.iter().map(|(c, p)| paused_info(*c, p)).collect();
    paused.sort_by(|a, b| a.component.cmp(&b.component));
    paused
}

/// A pause's reason as given, or why it is refused.
fn pause_reason(reason: &str) -> Result<&str, CoordinatorError> {
    if reason.len() > 1024 || reason.chars().any(char::is_control) {
        return Err(CoordinatorError::InvalidArgument(
            "reason must be at most 1024 bytes without control characters".into(),
        ));
    }
    Ok(reason)
}

pub(crate) struct AdminSvc {
    pub info: Info,
    pub jobs: JobControls,
    pub store: Arc<dyn Store>,
    pub core: CoreHandle,
    pub standing: Standing,
    pub status: StatusSource,
    pub intake: Intake,
    pub events: EventBus,
    pub pausing: Pausing,
    pub steps: SettlementSteps,
}

fn err(code: ErrorCode, message: impl Into<String>) -> Option<AdminError> {
    Some(AdminError {
        code: code as i32,
        message: message.into(),
    })
}

fn from_coord(e: CoordinatorError) -> Option<AdminError> {
    err(e.code(), e.to_string())
}

pub(crate) fn job_info(j: &Job) -> JobInfo {
    JobInfo {
        chain_id: j.key.chain,
        batch: j.key.batch,
        proof_type: j.key.proof_type.to_string(),
        state: j.state.to_string(),
        failed_attempts: j.failed_attempts,
        lost_attempts: j.lost_attempts,
        lease_owner: j
            .lease
            .as_ref()
            .map(|l| l.prover.to_string())
            .unwrap_or_default(),
        fencing_token: j.lease.as_ref().map_or(0, |l| l.token.0),
        deadline_ms: j.lease.as_ref().map_or(0, |l| l.deadline),
        last_error: j.last_error.clone().unwrap_or_default(),
        updated_at_ms: j.updated_at,
        // Filled from the store's records where a listing asks (`with_batch_txs`).
        commit_tx: None,
        verify_tx: None,
    }
}

fn verify_tx_info(r: proofmill_store::VerifyRecord) -> VerifyTxInfo {
    VerifyTxInfo {
        tx_hash: r.tx_hash,
        first_batch: r.first_batch,
        last_batch: r.last_batch,
        gas_used: r.gas_used,
    }
}

/// Fills each job's `commit_tx` and `verify_tx` from the store's records.
async fn with_batch_txs(
    store: &dyn Store,
    mut jobs: Vec<JobInfo>,
) -> Result<Vec<JobInfo>, CoordinatorError> {
    let batches = jobs.iter().map(|j| j.batch).collect();
    let txs = crate::settled::batch_txs(store, &batches).await?;
    for j in &mut jobs {
        j.commit_tx = txs.commits.get(&j.batch).map(|r| CommitTxInfo {
            tx_hash: r.tx_hash.clone(),
            gas_used: r.gas_used,
            block: r.block,
            recorded_at_ms: r.recorded_at,
        });
        j.verify_tx = txs.verifies.get(&j.batch).cloned().map(verify_tx_info);
    }
    Ok(jobs)
}

/// Attempts a job status lists at most.
const MAX_ATTEMPTS_SHOWN: u32 = 1000;

fn attempt_info(a: &Attempt) -> AttemptInfo {
    AttemptInfo {
        fencing_token: a.token.0,
        prover_id: a.prover.to_string(),
        prover_name: a.prover_name.clone(),
        backup: a.backup,
        started_at_ms: a.started_at,
        ended_at_ms: a.ended_at.unwrap_or(0),
        outcome: a
            .outcome
            .map(|o| o.as_str().to_string())
            .unwrap_or_default(),
        detail: a.detail.clone(),
        prove_ms: a.prove_ms,
    }
}

pub(crate) fn prover_info(p: &ProverView) -> ProverInfo {
    ProverInfo {
        id: p.id.to_string(),
        name: p.info.name.clone(),
        proof_types: p.info.proof_types.iter().map(|t| t.to_string()).collect(),
        capacity: p.info.capacity,
        running_tasks: p.running.iter().map(TaskId::format).collect(),
        version: p.info.version.clone(),
        connected: p.connected,
        last_seen_ms: p.last_seen,
        cordoned: p.cordoned.is_some(),
        cordon_reason: p.cordoned.clone().unwrap_or_default(),
        proofs_accepted: p.stats.proven,
        task_errors: p.stats.errors,
        invalid_proofs: p.stats.invalid,
        superseded: p.stats.superseded,
    }
}

fn parse_key(batch: BatchId, proof_type: &str) -> Result<JobKey, Option<AdminError>> {
    let pt =
        ProofType::new(proof_type).map_err(|e| err(ErrorCode::InvalidArgument, e.to_string()))?;
    Ok(batch.job(pt))
}

/// A batch as LaunchProof and ReplaceBatchInput take it, or why it is malformed.
fn new_batch(
    BatchId { chain, number }: BatchId,
    version: String,
    input: Vec<u8>,
    public_values: &[u8],
    proof_types: Vec<String>,
) -> Result<NewBatch, Option<AdminError>> {
    let public_values = PublicValues::new(public_values);
    let proof_types = proof_types
        .into_iter()
        .map(ProofType::new)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(ErrorCode::InvalidArgument, e.to_string()))?;
    Ok(NewBatch {
        chain,
        number,
        version,
        input: input.into(),
        public_values,
        proof_types,
    })
}

impl AdminSvc {
    /// The batch a request names: of `chain`, or of this coordinator's own chain for 0.
    fn batch_id(&self, chain: u64, number: u64) -> BatchId {
        match chain {
            0 => BatchId::new(self.intake.chain_id(), number),
            chain => BatchId::new(chain, number),
        }
    }

    /// The prover with this id, or else the one prover with this name.
    /// The components paused now, in name order.
    fn paused(&self) -> Vec<PausedComponent> {
        sorted_paused(&self.pausing.pauses.all())
    }

    async fn prover_named(&self, id_or_name: &str) -> Result<ProverId, CoordinatorError> {
        let provers = self.core.provers().await?;
        if let Some(p) = provers.iter().find(|p| p.id.0 == id_or_name) {
            return Ok(p.id.clone());
        }
        let named: Vec<&ProverView> = provers
            .iter()
            .filter(|p| p.info.name == id_or_name)
            .collect();
        match named.as_slice() {
            [one] => Ok(one.id.clone()),
            [] => Err(CoordinatorError::UnknownProver(id_or_name.to_string())),
            several => Err(CoordinatorError::UnknownProver(format!(
                "{id_or_name} (a name {} provers have: give the id, one of {})",
                several.len(),
                several
                    .iter()
                    .map(|p| p.id.0.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// An operator's reason as given (empty: the default), or why it is refused.
fn operator_reason(reason: &str) -> Result<String, Option<AdminError>> {
    if reason.len() > 1024 || reason.chars().any(char::is_control) {
        return Err(err(
            ErrorCode::InvalidArgument,
            "reason must be at most 1024 bytes without control characters",
        ));
    }
    Ok(if reason.is_empty() {
        "cancelled by an operator".to_string()
    } else {
        reason.to_string()
    })
}

#[tonic::async_trait]
impl AdminService for AdminSvc {
    type WatchStream = crate::watch::WatchStream;

    async fn watch(&self, _: Request<WatchRequest>) -> Result<Response<Self::WatchStream>, Status> {
        let watcher = self.events.watch().ok_or_else(|| {
            Status::resource_exhausted(format!(
                "{} watchers already; try again once one stops",
                self.events.max_watchers()
            ))
        })?;
        Ok(Response::new(crate::watch::stream(
            watcher,
            self.standing.shutdown(),
        )))
    }

    async fn health_check(
        &self,
        _: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        // Bounded: a load balancer's probe must get an answer while the store is down.
        let store = &self.store;
        let store_error = match tokio::time::timeout(HEALTH_WAIT, store.probe()).await {
            Ok(Ok(())) => String::new(),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("{}: no answer within {HEALTH_WAIT:?}", store.endpoint()),
        };
        Ok(Response::new(HealthCheckResponse {
            serving: store_error.is_empty(),
            draining: self.standing.draining(),
            version: env!("CARGO_PKG_VERSION").into(),
            store_error,
            standby: false,
            active_url: self.standing.lease_url(),
            lease_epoch: self.standing.lease_epoch(),
        }))
    }

    async fn status_info(
        &self,
        _: Request<StatusInfoRequest>,
    ) -> Result<Response<StatusInfoResponse>, Status> {
        let info = &self.info;
        let about = info.about.get();
        let now = crate::now_ms();
        Ok(Response::new(StatusInfoResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            build: about.build,
            started_at_ms: info.started_at_ms,
            uptime_ms: now.saturating_sub(info.started_at_ms),
            store: info.store.clone(),
            blobs: info.blobs.clone(),
            l1: if about.l1.is_empty() {
                "none".into()
            } else {
                about.l1
            },
            proof_types: info.proof_types.iter().map(|t| t.to_string()).collect(),
            assignment_policy: info.assignment_policy.clone(),
            config: about
                .config
                .into_iter()
                .map(|c| ConfigValue {
                    key: c.key,
                    value: c.value,
                    source: c.source,
                })
                .collect(),
            paused: self.paused(),
        }))
    }

    async fn system_status(
        &self,
        _: Request<SystemStatusRequest>,
    ) -> Result<Response<SystemStatusResponse>, Status> {
        let s = self
            .status
            .status_or_memory()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        let jobs = s.jobs.into_iter().map(|(pt, c)| (pt, c.into())).collect();
        let chains = s
            .chains
            .into_iter()
            .map(|c| ChainStatus {
                chain_id: c.chain_id,
                weight: c.weight,
                proof_types: c.proof_types,
                last_sealed_batch: c.last_sealed_batch,
                last_proven_batch: c.last_proven_batch,
                jobs: c.jobs.into_iter().map(|(pt, c)| (pt, c.into())).collect(),
            })
            .collect();
        let market = s.market.map(|m| proofmill_proto::v1::MarketStatus {
            mode: m.mode,
            share_ppm: m.share_ppm,
            proof_type: m.proof_type,
            requests: m.requests.into_iter().collect(),
            fell_back: m.fell_back,
            proven_by_network: m.proven_by_network,
        });
        Ok(Response::new(SystemStatusResponse {
            market,
            chains,
            chain_id: self.status.chain_id,
            last_sealed_batch: s.last_sealed_batch,
            last_proven_batch: s.last_proven_batch,
            last_committed_batch: s.last_committed_batch,
            last_verified_batch: s.last_verified_batch,
            last_verify_tx: s.last_verify_tx.map(verify_tx_info),
            jobs,
            provers: s
                .provers
                .iter()
                .filter(|p| p.connected)
                .map(prover_info)
                .collect(),
            required_proof_types: self.status.required.iter().map(|t| t.to_string()).collect(),
            draining: s.draining,
            from_memory: s.store_outage.is_some(),
            as_of_ms: s
                .store_outage
                .as_ref()
                .and_then(|o| o.as_of_ms)
                .unwrap_or(0),
            store_error: s.store_outage.map(|o| o.error).unwrap_or_default(),
            warnings: s
                .warnings
                .iter()
                .map(|w| StatusWarning {
                    kind: w.kind.as_str().into(),
                    message: w.message.clone(),
                    version: w.version.clone().unwrap_or_default(),
                    proof_type: w
                        .proof_type
                        .as_ref()
                        .map(|t| t.to_string())
                        .unwrap_or_default(),
                    first_batch: w.first_batch,
                    last_batch: w.last_batch,
                })
                .collect(),
            intake_window: s.intake_window,
            standby: false,
            active_url: self.standing.lease_url(),
            lease_epoch: self.standing.lease_epoch(),
            paused: sorted_paused(&s.paused),
        }))
    }

    async fn jobs_list(
        &self,
        req: Request<JobsListRequest>,
    ) -> Result<Response<JobsListResponse>, Status> {
        let r = req.into_inner();
        let mut filter = JobFilter {
            chain: Some(self.batch_id(r.chain_id, 0).chain),
            limit: if r.limit == 0 {
                100
            } else {
                r.limit.min(10_000)
            },
            ..Default::default()
        };
        if !r.proof_type.is_empty() {
            match ProofType::new(r.proof_type) {
                Ok(pt) => filter.proof_type = Some(pt),
                Err(e) => {
                    return Ok(Response::new(JobsListResponse {
                        jobs: vec![],
                        error: err(ErrorCode::InvalidArgument, e.to_string()),
                    }));
                }
            }
        }
        if !r.state.is_empty() {
            match JobState::parse(&r.state) {
                Some(s) => filter.state = Some(s),
                None => {
                    let valid: Vec<&str> = JobState::ALL.iter().map(|s| s.as_str()).collect();
                    let e = err(
                        ErrorCode::InvalidArgument,
                        format!("unknown state {:?}; one of {}", r.state, valid.join(", ")),
                    );
                    return Ok(Response::new(JobsListResponse {
                        jobs: vec![],
                        error: e,
                    }));
                }
            }
        }
        if r.from_batch > 0 {
            filter.from_batch = Some(r.from_batch);
        }
        let listed = match self.store.jobs(&filter).await {
            Ok(jobs) => {
                with_batch_txs(self.store.as_ref(), jobs.iter().map(job_info).collect()).await
            }
            Err(e) => Err(e.into()),
        };
        match listed {
            Ok(jobs) => Ok(Response::new(JobsListResponse { jobs, error: None })),
            Err(e) => Ok(Response::new(JobsListResponse {
                jobs: vec![],
                error: err(ErrorCode::SystemUnavailable, e.to_string()),
            })),
        }
    }

    async fn job_status(
        &self,
        req: Request<JobStatusRequest>,
    ) -> Result<Response<JobStatusResponse>, Status> {
        let r = req.into_inner();
        let empty = |error| JobStatusResponse {
            job: None,
            proof_size: 0,
            proof_prover: String::new(),
            error,
            attempts: Vec::new(),
        };
        let key = match parse_key(self.batch_id(r.chain_id, r.batch), &r.proof_type) {
            Ok(k) => k,
            Err(e) => return Ok(Response::new(empty(e))),
        };
        let job = match self.store.job(&key).await {
            Ok(Some(j)) => j,
            Ok(None) => {
                return Ok(Response::new(empty(err(
                    ErrorCode::JobNotFound,
                    format!("no job {key}"),
                ))));
            }
            Err(e) => {
                return Ok(Response::new(empty(err(
                    ErrorCode::SystemUnavailable,
                    e.to_string(),
                ))));
            }
        };
        let proof = self.store.proof(&key).await.ok().flatten();
        let attempts = match self
            .store
            .attempts(
                key.chain,
                key.batch,
                Some(&key.proof_type),
                MAX_ATTEMPTS_SHOWN,
            )
            .await
        {
            Ok(a) => a,
            Err(e) => {
                return Ok(Response::new(empty(err(
                    ErrorCode::SystemUnavailable,
                    e.to_string(),
                ))));
            }
        };
        let job = match with_batch_txs(self.store.as_ref(), vec![job_info(&job)]).await {
            Ok(mut j) => j.pop(),
            Err(e) => {
                return Ok(Response::new(empty(err(
                    ErrorCode::SystemUnavailable,
                    e.to_string(),
                ))));
            }
        };
        Ok(Response::new(JobStatusResponse {
            job,
            proof_size: proof.as_ref().map_or(0, |p| p.size),
            proof_prover: proof.map(|p| p.prover_name).unwrap_or_default(),
            error: None,
            attempts: attempts.iter().map(attempt_info).collect(),
        }))
    }

    async fn provers_list(
        &self,
        _: Request<ProversListRequest>,
    ) -> Result<Response<ProversListResponse>, Status> {
        let provers = self
            .core
            .provers()
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok(Response::new(ProversListResponse {
            provers: provers.iter().map(prover_info).collect(),
        }))
    }

    async fn launch_proof(
        &self,
        req: Request<LaunchProofRequest>,
    ) -> Result<Response<LaunchProofResponse>, Status> {
        let r = req.into_inner();
        let fail = |error| {
            Ok(Response::new(LaunchProofResponse {
                created: false,
                error,
            }))
        };
        let id = self.batch_id(r.chain_id, r.batch);
        let nb = match new_batch(id, r.version, r.input, &r.public_values, r.proof_types) {
            Ok(nb) => nb,
            Err(e) => return fail(e),
        };
        match self.intake.submit_batch(nb).await {
            Ok(created) => Ok(Response::new(LaunchProofResponse {
                created,
                error: None,
            })),
            Err(e) => fail(from_coord(e)),
        }
    }

    async fn retry_job(
        &self,
        req: Request<RetryJobRequest>,
    ) -> Result<Response<RetryJobResponse>, Status> {
        let r = req.into_inner();
        let answer = |result: Result<usize, Option<AdminError>>| {
            Ok(Response::new(match result {
                Ok(n) => RetryJobResponse {
                    error: None,
                    retried: n.min(u32::MAX as usize) as u32,
                },
                Err(error) => RetryJobResponse { error, retried: 0 },
            }))
        };
        let id = self.batch_id(r.chain_id, r.batch);
        if r.proof_type.is_empty() {
            return answer(self.jobs.retry_failed(id).await.map_err(from_coord));
        }
        let key = match parse_key(id, &r.proof_type) {
            Ok(k) => k,
            Err(e) => return answer(Err(e)),
        };
        answer(
            self.jobs
                .retry_job(&key)
                .await
                .map(|()| 1)
                .map_err(from_coord),
        )
    }

    async fn cancel_job(
        &self,
        req: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let r = req.into_inner();
        let fail = |error| {
            Ok(Response::new(CancelJobResponse {
                cancelled: false,
                error,
            }))
        };
        let reason = match operator_reason(&r.reason) {
            Ok(reason) => reason,
            Err(e) => return fail(e),
        };
        let key = match parse_key(self.batch_id(r.chain_id, r.batch), &r.proof_type) {
            Ok(k) => k,
            Err(e) => return fail(e),
        };
        match self.jobs.cancel_job(&key, &reason).await {
            Ok(cancelled) => Ok(Response::new(CancelJobResponse {
                cancelled,
                error: None,
            })),
            Err(e) => fail(from_coord(e)),
        }
    }

    async fn cordon_prover(
        &self,
        req: Request<CordonProverRequest>,
    ) -> Result<Response<CordonProverResponse>, Status> {
        let r = req.into_inner();
        if r.prover_id.is_empty()
            || r.prover_id.len() > 64
            || r.prover_id.chars().any(char::is_control)
        {
            return Ok(Response::new(CordonProverResponse {
                error: err(
                    ErrorCode::InvalidArgument,
                    "prover_id must be 1-64 bytes without control characters",
                ),
            }));
        }
        let error = match self.prover_named(&r.prover_id).await {
            Ok(id) => self.core.cordon(id, r.cordoned).await.err(),
            Err(e) => Some(e),
        };
        Ok(Response::new(CordonProverResponse {
            error: error.and_then(from_coord),
        }))
    }

    async fn replace_batch_input(
        &self,
        req: Request<ReplaceBatchInputRequest>,
    ) -> Result<Response<ReplaceBatchInputResponse>, Status> {
        let r = req.into_inner();
        let id = self.batch_id(r.chain_id, r.batch);
        let error = match new_batch(id, r.version, r.input, &r.public_values, r.proof_types) {
            Ok(nb) => self
                .intake
                .replace_batch_input(nb)
                .await
                .err()
                .and_then(from_coord),
            Err(e) => e,
        };
        Ok(Response::new(ReplaceBatchInputResponse { error }))
    }

    async fn cancel_batch(
        &self,
        req: Request<CancelBatchRequest>,
    ) -> Result<Response<CancelBatchResponse>, Status> {
        let r = req.into_inner();
        if let Err(error) = operator_reason(&r.reason) {
            return Ok(Response::new(CancelBatchResponse {
                cancelled: 0,
                error,
            }));
        }
        Ok(Response::new(
            match self
                .intake
                .cancel_batch(self.batch_id(r.chain_id, r.batch), &r.reason)
                .await
            {
                Ok(n) => CancelBatchResponse {
                    cancelled: n.min(u32::MAX as usize) as u32,
                    error: None,
                },
                Err(e) => CancelBatchResponse {
                    cancelled: 0,
                    error: from_coord(e),
                },
            },
        ))
    }

    async fn pause_component(
        &self,
        req: Request<PauseComponentRequest>,
    ) -> Result<Response<PauseComponentResponse>, Status> {
        let r = req.into_inner();
        let paused = async {
            let c = Component::parse(&r.component)?;
            let reason = pause_reason(&r.reason)?;
            let (changed, pause) = self.pausing.pause(c, reason).await?;
            Ok::<_, CoordinatorError>((changed, paused_info(c, &pause)))
        };
        Ok(Response::new(match paused.await {
            Ok((changed, pause)) => PauseComponentResponse {
                changed,
                pause: Some(pause),
                error: None,
            },
            Err(e) => PauseComponentResponse {
                changed: false,
                pause: None,
                error: from_coord(e),
            },
        }))
    }

    async fn resume_component(
        &self,
        req: Request<ResumeComponentRequest>,
    ) -> Result<Response<ResumeComponentResponse>, Status> {
        let r = req.into_inner();
        let resumed = async {
            let c = Component::parse(&r.component)?;
            self.pausing.resume(c).await
        };
        Ok(Response::new(match resumed.await {
            Ok(changed) => ResumeComponentResponse {
                changed,
                error: None,
            },
            Err(e) => ResumeComponentResponse {
                changed: false,
                error: from_coord(e),
            },
        }))
    }

    async fn settle_now(
        &self,
        _: Request<SettleNowRequest>,
    ) -> Result<Response<SettleNowResponse>, Status> {
        let settled = async {
            let done = self.steps.settle_now(&self.pausing.pauses).await?;
            let tx = match done.batches {
                0 => None,
                _ => crate::settled::last_verify_tx(self.store.as_ref()).await?,
            };
            Ok((done, tx))
        };
        Ok(Response::new(match settled.await {
            Ok((done, tx)) => SettleNowResponse {
                settled_batches: done.batches,
                last_verified_batch: done.last_verified_batch,
                last_verify_tx: tx.map(|r| VerifyTxInfo {
                    tx_hash: r.tx_hash,
                    first_batch: r.first_batch,
                    last_batch: r.last_batch,
                    gas_used: r.gas_used,
                }),
                error: None,
            },
            Err(e) => SettleNowResponse {
                error: from_coord(e),
                ..Default::default()
            },
        }))
    }

    async fn commit_now(
        &self,
        req: Request<CommitNowRequest>,
    ) -> Result<Response<CommitNowResponse>, Status> {
        let r = req.into_inner();
        let committed = match r.batch {
            0 => Err(CoordinatorError::InvalidArgument(
                "batch numbers start at 1".into(),
            )),
            n => self.steps.commit_now(n).await,
        };
        Ok(Response::new(match committed {
            Ok(c) => CommitNowResponse {
                first_batch: c.first_batch,
                last_batch: c.last_batch,
                error: None,
            },
            Err(e) => CommitNowResponse {
                error: from_coord(e),
                ..Default::default()
            },
        }))
    }
}
