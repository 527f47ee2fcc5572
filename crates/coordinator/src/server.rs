use crate::admin_gate::AdminGate;
use crate::config::CoordinatorConfig;
use crate::core::{BatchCache, Core, CoreHandle};
use crate::error::CoordinatorError;
use crate::events::EventBus;
use crate::identity::ProverKeys;
use crate::inputs::InputCache;
use crate::intake::{Intake, IntakeRules};
use crate::limits::{InFlight, ProofBudget, StreamSlots};
use crate::outbox::Sending;
use crate::pauses::{Component, Pauses};
use crate::pausing::Pausing;
use crate::results::Results;
use crate::session::{SessionRules, Sessions};
use crate::settlement_steps::SettlementSteps;
use crate::standing::{HeldLease, Standing};
use crate::status::StatusSource;
use crate::status::view::SeenOnL1;
use crate::{admin, persist, session};
use proofmill_proto::v1::admin_service_server::AdminServiceServer;
use proofmill_proto::v1::client_service_server::ClientServiceServer;
use proofmill_proto::v1::prover_service_server::{ProverService, ProverServiceServer};
use proofmill_proto::v1::{CoordinatorMessage, ProverMessage};
use proofmill_scheduler::{ProverView, Scheduler, SchedulerConfig};
use proofmill_store::{Blobs, Store};
use proofmill_types::{ProofType, ProverId};
use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, RwLock};
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::service::interceptor::InterceptedService;
use tonic::{Request, Response, Status, Streaming};

/// A running coordinator (cheap to clone). Each of its parts gets a handle with only what
/// it needs; the core task is the only writer of scheduling state.
#[derive(Clone)]
pub struct Coordinator {
    config: Arc<CoordinatorConfig>,
    store: Arc<dyn Store>,
    blobs: Blobs,
    core: CoreHandle,
    standing: Standing,
    status: StatusSource,
    intake: Intake,
    sessions: Arc<Sessions>,
    l1: SeenOnL1,
    events: EventBus,
    about: crate::about::AboutCell,
    started_at_ms: u64,
    pausing: Pausing,
    steps: SettlementSteps,
    /// Reads the inputs clients name by URL.
    fetch: proofmill_store::UrlFetch,
    /// The client API's submissions in progress ([`crate::client::MAX_SUBMISSIONS`]).
    submissions: Arc<tokio::sync::Semaphore>,
}

impl Coordinator {
    /// Loads every open job (and lease) from the store and starts the core and persister.
    pub async fn start(
        config: CoordinatorConfig,
        store: Arc<dyn Store>,
        blobs: Blobs,
    ) -> Result<Self, CoordinatorError> {
        if config.proof_types.is_empty() {
            return Err(CoordinatorError::Config(
                "at least one proof type is required".into(),
            ));
        }
        if (config.proof_memory_bytes as u64) < config.max_proof_bytes {
            return Err(CoordinatorError::Config(format!(
                "proof memory of {} bytes cannot hold the largest proof ({} bytes)",
                config.proof_memory_bytes, config.max_proof_bytes
            )));
        }
        let fetch = proofmill_store::UrlFetch::new(
            &config.input_fetch_dirs,
            proofmill_store::FETCH_TIMEOUT,
            "--input-fetch-dirs",
        )
        .map_err(CoordinatorError::Config)?;
        let chains = Arc::new(config.chain_types().map_err(CoordinatorError::Config)?);
        if let Some(hold) = &config.market_hold
            && !chains[&config.chain_id].contains(&hold.proof_type)
        {
            return Err(CoordinatorError::Config(format!(
                "the proof market's proof type {} is not one of the own chain's ({})",
                hold.proof_type,
                chains[&config.chain_id]
                    .iter()
                    .map(ProofType::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        let scheduler_shares = config.chain_shares().map_err(CoordinatorError::Config)?;
        let scheduler_config = SchedulerConfig {
            chain_shares: scheduler_shares.clone(),
            ..config.scheduler.clone()
        };
        let mut verifiers = HashMap::new();
        for (pt, backend) in &config.proof_types {
            let b = config
                .backends
                .get(backend)
                .map_err(|e| CoordinatorError::Config(format!("proof type {pt}: {e}")))?;
            verifiers.insert(pt.clone(), b);
        }
        let (last_token, orphan_tokens) = token_epoch(store.as_ref()).await?;
        let prover_keys = Arc::new(ProverKeys::load_or_create(store.as_ref()).await?);
        let open = store.open_jobs().await?;
        let ids: BTreeSet<proofmill_types::BatchId> =
            open.iter().map(|j| j.key.batch_id()).collect();
        let mut batches = Vec::with_capacity(ids.len());
        for n in ids {
            let b = store.batch(n.chain, n.number).await?.ok_or_else(|| {
                CoordinatorError::Config(format!("store has jobs of batch {n} but not the batch"))
            })?;
            batches.push(Arc::new(b));
        }
        tracing::info!(
            open_jobs = open.len(),
            last_token,
            "restored scheduler state"
        );
        let batch_cache: BatchCache = Arc::new(RwLock::new(HashMap::new()));
        let standing = Standing::default();
        let events = EventBus::new(crate::events::BUFFER, crate::events::MAX_WATCHERS);
        let persist_tx = persist::spawn(store.clone(), standing.fenced_signal(), events.clone());
        let (core, mailbox) = crate::core::mailbox(crate::core::MAILBOX);
        let mut scheduler = Scheduler::new(scheduler_config, last_token);
        scheduler.set_orphan_tokens(orphan_tokens);
        scheduler.restore_cordons(store.cordoned_provers().await?);
        let pauses = crate::pausing::restore(store.as_ref()).await?;
        if pauses.is_paused(Component::Dispatch) {
            // No prover is connected yet: there is nothing to hold back but what comes.
            scheduler.pause_dispatch(true, crate::now_ms());
        }
        let mut core_task = Core::new(
            scheduler,
            batch_cache.clone(),
            persist_tx,
            config.max_uncommitted_dispatches,
            prover_keys.clone(),
        )
        .metrics_per_prover(config.metrics_per_prover);
        core_task.restore(batches, open);
        tokio::spawn(core_task.run(mailbox));
        crate::retention::spawn(
            store.clone(),
            standing.clone(),
            config.attempt_retention_days,
        );
        let verifiers = Arc::new(verifiers);
        let inputs = Arc::new(InputCache::new(blobs.clone(), config.input_cache_bytes));
        let results = Results {
            verify_inline: verifiers.values().all(|v| v.verify_is_cheap()),
            verifiers: verifiers.clone(),
            batches: batch_cache,
            store: store.clone(),
            blobs: blobs.clone(),
            proof_budget: ProofBudget::new(config.proof_memory_bytes),
            max_proof_bytes: config.max_proof_bytes,
            inline_proof_max: config.inline_proof_max,
            core: core.clone(),
        };
        let sessions = Arc::new(Sessions {
            rules: SessionRules::new(&config),
            prover_keys,
            standing: standing.clone(),
            core: core.clone(),
            results,
            sending: Sending {
                inputs: inputs.clone(),
                blobs: blobs.clone(),
                core: core.clone(),
                heartbeat: std::time::Duration::from_millis(config.scheduler.heartbeat_interval_ms),
                replies_queued: Default::default(),
            },
            slots: StreamSlots::new(config.max_prover_streams, config.max_unregistered_streams),
            dispatch_latency_us: config.record_dispatch_latency.then(Default::default),
            blob_urls: !blobs.base_url().starts_with("memory:"),
            events: events.clone(),
        });
        let l1 = SeenOnL1::default();
        let source_error: Arc<crate::warnings::SourceError> = Default::default();
        let status = StatusSource {
            store: store.clone(),
            core: core.clone(),
            standing: standing.clone(),
            l1: l1.clone(),
            last: Default::default(),
            required: config.required_types(),
            chain_id: config.chain_id,
            chains: chains.clone(),
            shares: scheduler_shares,
            intake_window: config.intake_window,
            pauses: pauses.clone(),
            source_error: source_error.clone(),
            market_hold: config.market_hold.clone(),
        };
        let intake = Intake {
            store: store.clone(),
            blobs: blobs.clone(),
            inputs,
            core: core.clone(),
            standing: standing.clone(),
            in_flight: Default::default(),
            source_error,
            pauses: pauses.clone(),
            backends: verifiers,
            rules: IntakeRules {
                max_input_bytes: config.max_input_bytes,
                intake_window: config.intake_window,
                chain_id: config.chain_id,
                chains,
                market_hold: config.market_hold.clone(),
            },
            events: events.clone(),
        };
        let pausing = Pausing {
            store: store.clone(),
            core: core.clone(),
            pauses,
            lock: Default::default(),
            events: events.clone(),
        };
        let coord = Coordinator {
            config: Arc::new(config),
            store,
            blobs,
            core,
            standing,
            status,
            intake,
            sessions,
            l1,
            events,
            about: Default::default(),
            started_at_ms: crate::now_ms(),
            pausing,
            steps: SettlementSteps::default(),
            fetch,
            submissions: Arc::new(tokio::sync::Semaphore::new(crate::client::MAX_SUBMISSIONS)),
        };
        coord.release_unoffered().await?;
        Ok(coord)
    }

    /// Without a proof market ([`CoordinatorConfig::market_hold`] off), jobs held for one
    /// by an earlier run would wait forever: they go to the own provers.
    async fn release_unoffered(&self) -> Result<(), CoordinatorError> {
        if self.config.market_hold.is_some() {
            return Ok(());
        }
        let held = self
            .store
            .jobs(&proofmill_store::JobFilter {
                state: Some(proofmill_types::JobState::Held),
                ..Default::default()
            })
            .await?;
        let batches: BTreeSet<proofmill_types::BatchId> =
            held.iter().map(|j| j.key.batch_id()).collect();
        for id in batches {
            tracing::warn!(batch = %id, "held for a proof market, but none is configured: released to the own provers");
            self.intake.release_held(id).await?;
        }
        Ok(())
    }

    /// What `StatusInfo` tells beside what the coordinator knows itself (set once, at
    /// startup; later calls change nothing).
    pub fn describe(&self, about: crate::About) {
        self.about.set(about);
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// Where batches come in (see [`crate::Intake`]).
    pub fn intake(&self) -> Intake {
        self.intake.clone()
    }

    /// What L1 settlement gets of this coordinator (see [`crate::SettlementPort`]).
    pub fn settlement_port(&self) -> crate::SettlementPort {
        crate::SettlementPort {
            store: self.store.clone(),
            blobs: self.blobs.clone(),
            required: self.config.required_types(),
            standing: self.standing.clone(),
            l1: self.l1.clone(),
            core: self.core.clone(),
            events: self.events.clone(),
            pauses: self.pausing.pauses.clone(),
            steps: self.steps.clone(),
            chain_id: self.config.chain_id,
        }
    }

    /// What the rollup's proof manager gets of this coordinator; `None` without
    /// [`CoordinatorConfig::market_hold`].
    pub fn market_port(&self) -> Option<crate::MarketPort> {
        let hold = self.config.market_hold.as_ref()?;
        Some(crate::MarketPort {
            intake: self.intake.clone(),
            results: self.sessions.results.clone(),
            standing: self.standing.clone(),
            proof_type: hold.proof_type.clone(),
        })
    }

    /// Which components are paused now.
    pub fn pauses(&self) -> Pauses {
        self.pausing.pauses.clone()
    }

    /// Pauses `component` durably ([`crate::Component`]); returns whether this call paused
    /// it (`false`: it was paused already) and the pause in force.
    pub async fn pause(
        &self,
        component: Component,
        reason: &str,
    ) -> Result<(bool, crate::Pause), CoordinatorError> {
        self.pausing.pause(component, reason).await
    }

    /// Resumes `component` durably; returns whether this call resumed it.
    pub async fn resume(&self, component: Component) -> Result<bool, CoordinatorError> {
        self.pausing.resume(component).await
    }

    /// Runs the L1 proof sender once now, whatever its interval (refused while it is paused
    /// or when settlement does not run here).
    pub async fn settle_now(&self) -> Result<crate::Settled, CoordinatorError> {
        self.steps.settle_now(&self.pausing.pauses).await
    }

    /// Commits sealed `batch` (and the uncommitted ones before it) to L1 now, also while the
    /// committer is paused.
    pub async fn commit_now(&self, batch: u64) -> Result<crate::Committed, CoordinatorError> {
        if batch == 0 {
            return Err(CoordinatorError::InvalidArgument(
                "batch numbers start at 1".into(),
            ));
        }
        self.steps.commit_now(batch).await
    }

    /// This coordinator's shutdown signal (given by [`Coordinator::drain`]).
    pub fn shutdown(&self) -> crate::Shutdown {
        self.standing.shutdown()
    }

    /// What settlement last reported of L1 (`None`: it has not, or it is off).
    pub fn l1_seen(&self) -> Option<crate::L1Seen> {
        self.l1.get()
    }

    /// [`crate::Intake::submit_batch`].
    pub async fn submit_batch(&self, nb: crate::NewBatch) -> Result<bool, CoordinatorError> {
        self.intake.submit_batch(nb).await
    }

    fn info(&self) -> admin::Info {
        admin::Info {
            about: self.about.clone(),
            started_at_ms: self.started_at_ms,
            store: self.store.endpoint(),
            blobs: self.blobs.base_url().to_string(),
            proof_types: self.config.required_types(),
            assignment_policy: self.config.scheduler.assignment_policy.to_string(),
        }
    }

    /// The admin calls: one implementation, served over gRPC and HTTP.
    fn admin_svc(&self) -> admin::AdminSvc {
        admin::AdminSvc {
            info: self.info(),
            jobs: crate::controls::JobControls {
                store: self.store.clone(),
                core: self.core.clone(),
            },
            store: self.store.clone(),
            core: self.core.clone(),
            standing: self.standing.clone(),
            status: self.status.clone(),
            intake: self.intake.clone(),
            events: self.events.clone(),
            pausing: self.pausing.clone(),
            steps: self.steps.clone(),
        }
    }

    /// The client API: one implementation, served over gRPC and HTTP.
    fn client_svc(&self) -> crate::client::ClientSvc {
        crate::client::ClientSvc {
            intake: self.intake.clone(),
            events: self.events.clone(),
            standing: self.standing.clone(),
            fetch: self.fetch.clone(),
            submissions: self.submissions.clone(),
        }
    }

    /// What the HTTP admin API serves while this coordinator is active: its admin calls,
    /// and readiness made of its leadership, store, blob store, core and (once it reports)
    /// settlement. The binary adds what it runs beside (the L1 node) with
    /// [`crate::AdminApi::with_component`].
    pub fn admin_api(&self) -> crate::AdminApi {
        let standing = self.standing.clone();
        let store = self.store.clone();
        let blobs = self.blobs.clone();
        let core = self.core.clone();
        let l1 = self.l1.clone();
        let probes = vec![
            crate::http::ready::state(move || crate::http::ready::leadership(&standing)),
            crate::http::ready::probe("store", true, move || {
                let store = store.clone();
                async move {
                    store.probe().await.map_err(|e| e.to_string())?;
                    Ok(store.endpoint())
                }
            }),
            crate::http::ready::probe("blobs", true, move || {
                let blobs = blobs.clone();
                async move {
                    blobs.probe().await.map_err(|e| e.to_string())?;
                    Ok(blobs.base_url().to_string())
                }
            }),
            crate::http::ready::probe("core", true, move || {
                let core = core.clone();
                async move {
                    let provers = core.provers().await.map_err(|e| e.to_string())?;
                    let connected = provers.iter().filter(|p| p.connected).count();
                    Ok(format!("{connected} provers connected"))
                }
            }),
            crate::http::ready::settlement(l1),
        ];
        crate::AdminApi::active(self.admin_svc(), probes).with_client(self.client_svc())
    }

    /// Serves the prover and admin services (plus reflection) until `shutdown` resolves.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CoordinatorError> {
        self.serve_incoming(no_delay(listener), shutdown).await
    }

    /// [`Coordinator::serve`] on connections accepted elsewhere (a [`crate::Listener`]).
    pub async fn serve_incoming(
        &self,
        incoming: impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), CoordinatorError> {
        let max = self.config.max_message_bytes;
        let prover = ProverServiceServer::new(ProverSvc {
            sessions: self.sessions.clone(),
        })
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
        let admin = AdminServiceServer::new(self.admin_svc())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let client = ClientServiceServer::new(self.client_svc())
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let gate = |standing: Standing| {
            move |request: Request<()>| match refusal(&standing) {
                Some(refused) => Err(refused),
                None => Ok(request),
            }
        };
        let prover = InterceptedService::new(prover, gate(self.standing.clone()));
        let admin = AdminGate::new(admin, Arc::new(self.config.admin_auth.clone()));
        let admin = InterceptedService::new(admin, gate(self.standing.clone()));
        let client = AdminGate::with_roles(
            client,
            Arc::new(self.config.admin_auth.clone()),
            crate::client::needed,
        );
        let client = InterceptedService::new(client, gate(self.standing.clone()));
        let (reflection_v1, reflection_v1alpha) = reflection()?;
        let (health, refresh) = crate::health::service(self.standing.clone()).await;
        let mut server = tonic::transport::Server::builder();
        if let Some(tls) = &self.config.tls {
            server = tls.apply(server)?;
        }
        let served = server
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(10)))
            .add_service(prover)
            .add_service(admin)
            .add_service(client)
            .add_service(health)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
            .map_err(|e| CoordinatorError::Transport(e.to_string()));
        refresh.abort();
        served
    }

    /// Serves in a background task until [`Serving::stop`].
    pub fn spawn_serve(&self, listener: tokio::net::TcpListener) -> Serving {
        self.spawn_serve_incoming(no_delay(listener))
    }

    /// [`Coordinator::spawn_serve`] on connections accepted elsewhere (a [`crate::Listener`]).
    pub fn spawn_serve_incoming(
        &self,
        incoming: impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> + Send + 'static,
    ) -> Serving {
        let coord = self.clone();
        Serving::spawn(move |stopped| async move { coord.serve_incoming(incoming, stopped).await })
    }

    /// Records the store's lease this coordinator holds (its store handle must be fenced
    /// with its epoch, [`Store::fence_writes`]): status and health name it, and L1
    /// transactions go out only while it surely holds.
    pub fn attach_lease(&self, url: &str, leadership: &crate::leadership::Leadership) {
        self.standing.attach(HeldLease {
            url: url.to_string(),
            epoch: leadership.epoch(),
            check: leadership.check(),
        });
    }

    /// Resolves when a write of this coordinator was fenced (another coordinator took over
    /// the store), with the store's error. It writes nothing from then on.
    pub async fn fenced(&self) -> String {
        self.standing.fenced().await
    }

    pub async fn provers(&self) -> Result<Vec<ProverView>, CoordinatorError> {
        self.core.provers().await
    }

    /// Everything `status` shows, read from the store now.
    pub async fn status(&self) -> Result<crate::StatusView, CoordinatorError> {
        self.status.status().await
    }

    /// [`Coordinator::status`] when the store answers within a second or two; otherwise the
    /// last status read from it, with live provers, flagged with the store's error. Answers
    /// within about 4 s whatever the store does. Also flagged (and not read from the store)
    /// while this coordinator's lease is not surely held: another one may be active.
    pub async fn status_or_memory(&self) -> Result<crate::StatusView, CoordinatorError> {
        self.status.status_or_memory().await
    }

    /// The settling transaction recorded for `batch`, if any.
    pub async fn verify_record(
        &self,
        batch: u64,
    ) -> Result<Option<crate::VerifyRecord>, CoordinatorError> {
        crate::settled::verify_record(self.store.as_ref(), batch).await
    }

    /// The range of a settling transaction sent but not yet recorded, if any.
    pub async fn pending_verify(&self) -> Result<Option<(u64, u64)>, CoordinatorError> {
        crate::settled::pending_verify(self.store.as_ref()).await
    }

    /// The latest settling transaction.
    pub async fn last_verify_tx(&self) -> Result<Option<crate::VerifyRecord>, CoordinatorError> {
        crate::settled::last_verify_tx(self.store.as_ref()).await
    }

    /// Takes a prover out of rotation or puts it back ([`proofmill_scheduler::Scheduler::cordon`]).
    /// Returns once the change is in the store, so the cordon outlives a restart.
    pub async fn cordon(&self, prover: &ProverId, on: bool) -> Result<(), CoordinatorError> {
        self.core.cordon(prover.clone(), on).await
    }

    /// Stops acting at once, because another coordinator took the store over: every prover
    /// stream is closed with `why` (its provers go to the active coordinator) and every task
    /// awaiting shutdown ends. Nothing is drained or flushed: this one's writes are fenced.
    pub fn step_down(&self, why: &str) {
        self.standing.retire(why);
    }

    /// Graceful stop: no new work, provers told to finish within the grace period, results
    /// that arrive meanwhile are accepted, and every state change is flushed to the store.
    pub async fn drain(&self, reason: &str) -> Result<(), CoordinatorError> {
        let grace = self.config.shutdown_grace_ms;
        self.standing.shutdown().begin();
        let grace_ms = grace.min(u32::MAX as u64) as u32;
        self.core.drain(grace_ms, reason.to_string()).await?;
        // Until the provers' running tasks are done, or the grace period is over.
        let idle = self.core.when_idle();
        let _ = tokio::time::timeout(std::time::Duration::from_millis(grace), idle).await;
        self.flush().await
    }

    /// Returns once every state change made so far is durable.
    pub async fn flush(&self) -> Result<(), CoordinatorError> {
        self.core.flush().await
    }

    /// Prover sessions still running, registered or not: one per stream until it ends or
    /// this coordinator closes it (a prover declared dead is let go even if it keeps its
    /// stream open).
    pub fn open_sessions(&self) -> usize {
        self.sessions.slots.open()
    }

    /// What clients hold of this coordinator now (see [`InFlight`]).
    pub fn in_flight(&self) -> InFlight {
        let s = &self.sessions;
        InFlight {
            proof_bytes: s.results.proof_budget.in_use(),
            replies_queued: s.sending.replies_queued.load(Ordering::SeqCst),
            streams: s.slots.open(),
            unregistered_streams: s.slots.unregistered(),
        }
    }

    /// Dispatch latency samples (µs) recorded so far, when `record_dispatch_latency` is on.
    pub fn dispatch_latencies_us(&self) -> Vec<u32> {
        match &self.sessions.dispatch_latency_us {
            Some(samples) => samples.lock().expect("latency lock").clone(),
            None => Vec::new(),
        }
    }
}

/// Why a coordinator refuses every call, once it is deposed: it answers nothing more as if
/// it were active (its figures are stale, its writes fenced) while it stops.
pub(crate) fn refusal(standing: &Standing) -> Option<Status> {
    standing.deposed().map(|why| {
        Status::unavailable(format!(
            "this coordinator is no longer active ({why}); it stands by shortly"
        ))
    })
}

/// A server started by [`Coordinator::spawn_serve`].
pub struct Serving {
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), CoordinatorError>>,
}

impl Serving {
    /// Runs `serve` (given the future that resolves on stop) in a background task.
    pub(crate) fn spawn<F>(serve: impl FnOnce(BoxFuture) -> F) -> Serving
    where
        F: Future<Output = Result<(), CoordinatorError>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(Box::pin(async move {
            let _ = stopped.await;
        })));
        Serving { stop, task }
    }

    /// Stops accepting requests and waits for open streams to end, at most 5 s: a prover
    /// stream that never closes must not hang shutdown (state is flushed before this).
    pub async fn stop(self) -> Result<(), CoordinatorError> {
        let _ = self.stop.send(());
        let mut task = self.task;
        match tokio::time::timeout(std::time::Duration::from_secs(5), &mut task).await {
            Ok(joined) => {
                joined.map_err(|e| CoordinatorError::Transport(format!("server task: {e}")))?
            }
            Err(_) => {
                task.abort();
                Ok(())
            }
        }
    }
}

pub(crate) struct ProverSvc {
    sessions: Arc<Sessions>,
}

type OutStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<CoordinatorMessage, Status>> + Send>>;

#[tonic::async_trait]
impl ProverService for ProverSvc {
    type ProverStreamStream = OutStream;

    async fn prover_stream(
        &self,
        request: Request<Streaming<ProverMessage>>,
    ) -> Result<Response<OutStream>, Status> {
        // Refused before anything is allocated for the stream.
        let slots = self.sessions.slots.admit()?;
        let (wire, credits, end, stream) = crate::wire::wire();
        let peer = request.remote_addr();
        session::start(
            self.sessions.clone(),
            (request.into_inner(), peer),
            (wire, credits, end),
            slots,
        );
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Accepted connections with Nagle's algorithm off. tonic applies its `tcp_nodelay` only to
/// listeners it binds itself; without this, a task and the ack written right after it wait
/// for the peer's delayed ACK (up to 40 ms on Linux).
fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt as _;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        if let Err(e) = conn.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        Ok(conn)
    })
}

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Server reflection, in both versions: grpcurl speaks v1, many clients (Python's stock one)
/// only v1alpha.
pub(crate) fn reflection() -> Result<
    (
        tonic_reflection::server::v1::ServerReflectionServer<
            impl tonic_reflection::server::v1::ServerReflection,
        >,
        tonic_reflection::server::v1alpha::ServerReflectionServer<
            impl tonic_reflection::server::v1alpha::ServerReflection,
        >,
    ),
    CoordinatorError,
> {
    let builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(proofmill_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let transport = |e: tonic_reflection::server::Error| {
        CoordinatorError::Transport(format!("reflection: {e}"))
    };
    Ok((
        builder().build_v1().map_err(transport)?,
        builder().build_v1alpha().map_err(transport)?,
    ))
}

/// Meta key of the floor of this run's fencing tokens.
const TOKEN_FLOOR: &str = "scheduler/token_floor";
/// Each run issues its tokens above a fresh multiple of this.
const TOKEN_EPOCH: u64 = 1 << 32;

/// Starts a token epoch: returns the floor above which this run issues tokens (recorded
/// before any is issued) and the tokens the previous run may have sent without making them
/// durable: those above both the store's highest token and the previous floor.
async fn token_epoch(
    store: &dyn Store,
) -> Result<(u64, std::ops::RangeInclusive<u64>), CoordinatorError> {
    let durable = store.max_fencing_token().await?;
    let previous = match store.get_meta(TOKEN_FLOOR).await? {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|e| {
            CoordinatorError::Config(format!("stored {TOKEN_FLOOR} {v:?} is not a number: {e}"))
        })?,
    };
    let known = durable.max(previous);
    let floor = (known / TOKEN_EPOCH + 1)
        .checked_mul(TOKEN_EPOCH)
        .filter(|f| *f <= i64::MAX as u64)
        .ok_or_else(|| CoordinatorError::Config("fencing tokens exhausted".into()))?;
    store.set_meta(TOKEN_FLOOR, &floor.to_string()).await?;
    Ok((floor, known + 1..=floor))
}
