//! `proofmill coordinator`: the coordinator as a long-running service.

use crate::args::{CoordinatorArgs, L1Mode};
use crate::backends::{BackendContext, Built, devnet_shape};
use anyhow::Context as _;
use proofmill_backend::Backends;
use proofmill_coordinator::{
    About, AdminApi, AdminAuth, AdminHttp, Candidate, Coordinator, CoordinatorConfig,
    CoordinatorError, Leadership, LeaseSettings, Listener, ProverAuth, ServerTls, Serving, Standby,
    default_url,
};
use proofmill_devnet::DevnetConfig;
use proofmill_devnet_node::{DevnetSource, DevnetSourceConfig};
use proofmill_l1::L1;
use proofmill_scheduler::SchedulerConfig;
use proofmill_settlement::{Settlement, SettlementConfig};
use proofmill_store::{Blobs, StoreError, open_store};
use std::sync::Arc;
use std::time::Duration;

pub fn coordinator_config(a: &CoordinatorArgs, backends: Backends) -> CoordinatorConfig {
    CoordinatorConfig {
        proof_types: a.proof_types.clone(),
        backends,
        scheduler: SchedulerConfig {
            heartbeat_interval_ms: a.heartbeat_interval,
            missed_heartbeats: a.missed_heartbeats,
            prover_timeout_ms: a.prover_timeout,
            max_attempts: a.max_attempts,
            max_lost_attempts: a.max_lost_attempts,
            cordon_after_invalid: a.cordon_after_invalid,
            batch_failure_provers: a.batch_failure_provers,
            reconnect_grace_ms: a.reconnect_grace,
            straggler_factor: a.straggler_factor,
            assignment_policy: a.assignment_policy,
            ..SchedulerConfig::default()
        },
        max_message_bytes: a.max_message_bytes,
        shutdown_grace_ms: a.shutdown_grace,
        proof_memory_bytes: a.proof_memory_bytes,
        max_prover_streams: usize::try_from(a.max_prover_streams).unwrap_or(usize::MAX),
        max_unregistered_streams: usize::try_from(a.max_unregistered_streams).unwrap_or(usize::MAX),
        intake_window: a.intake_window,
        chain_id: a.chain_id,
        chains: a.chains.clone(),
        input_fetch_dirs: a.input_fetch_dirs.clone(),
        max_input_bytes: a.max_input_bytes,
        attempt_retention_days: a.attempt_retention_days,
        metrics_per_prover: a.metrics_per_prover,
        market_hold: super::proof_manager::market_hold(a),
        ..CoordinatorConfig::default()
    }
}

pub fn settlement_config(a: &CoordinatorArgs) -> SettlementConfig {
    SettlementConfig {
        send_interval_ms: a.send_interval,
        max_batches_per_tx: a.max_batches_per_tx,
        max_gas_per_tx: a.max_gas_per_tx,
        l1_proof_types: Some(super::l1::on_chain_types(&a.proof_types)),
    }
}

/// Context the backends default from: the devnet's shape when it is the batch source, and
/// the data dir.
pub fn backend_context(a: &CoordinatorArgs) -> BackendContext<'_> {
    BackendContext {
        devnet_shape: a
            .devnet
            .then(|| devnet_shape(a.batch_size, a.tree_depth))
            .flatten(),
        data_dir: &a.data_dir,
    }
}

pub fn devnet_config(a: &CoordinatorArgs) -> DevnetSourceConfig {
    DevnetSourceConfig {
        devnet: DevnetConfig {
            seed: a.seed,
            depth: a.tree_depth,
            accounts: a.accounts,
            batch_size: a.batch_size,
            ..DevnetConfig::default()
        },
        batch_interval_ms: a.batch_interval,
        version: a.version_tag.clone(),
        max_batches: a.max_batches,
        snapshot_every: a.snapshot_every,
    }
}

/// SQLite creates the file but not its directory.
pub fn ensure_sqlite_dir(db: &str) -> anyhow::Result<()> {
    let Some(rest) = db
        .strip_prefix("sqlite://")
        .or_else(|| db.strip_prefix("sqlite:"))
    else {
        return Ok(());
    };
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path.starts_with(':') {
        return Ok(());
    }
    if let Some(dir) = std::path::Path::new(path)
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// Opens the store and blobs, takes the store's lease (refusing a store another coordinator
/// is active on) and starts the coordinator (restoring its state), writing under the lease.
/// For the in-process coordinators of `demo` and `bench`; keep the lease as long as the
/// coordinator.
pub async fn open(
    db: &str,
    blobs: &str,
    config: CoordinatorConfig,
) -> anyhow::Result<(Coordinator, Leadership)> {
    let (coord, lease) = open_with(db, blobs, config, true).await?;
    Ok((coord, lease.expect("leased")))
}

/// [`open`], or without the lease (`leased` false: writes unchecked; only for measuring
/// what the lease costs).
pub async fn open_with(
    db: &str,
    blobs: &str,
    config: CoordinatorConfig,
    leased: bool,
) -> anyhow::Result<(Coordinator, Option<Leadership>)> {
    ensure_sqlite_dir(db)?;
    let store = open_store(db).await.context("opening the store")?;
    let blobs = Blobs::from_url(blobs).context("opening the blob store")?;
    if !leased {
        return Ok((Coordinator::start(config, store, blobs).await?, None));
    }
    // One name per store: a demo or bench run again after a kill reclaims its lease at once.
    let settings = LeaseSettings {
        url: format!("in-process {}", store.endpoint()),
        ttl: Duration::from_millis(5_000),
    };
    let mut candidate = Candidate::new(store.clone(), &settings);
    let Some(lease) = candidate.try_acquire().await else {
        let active = candidate.holder().borrow().clone();
        anyhow::bail!(
            "{db} is in use: another coordinator is active on it ({})",
            active.map_or_else(|| "unknown".to_string(), |h| h.url)
        );
    };
    store.fence_writes(lease.epoch());
    let coord = Coordinator::start(config, store, blobs).await?;
    coord.attach_lease(&settings.url, &lease);
    Ok((coord, Some(lease)))
}

/// Who may talk to a coordinator, and over what: read and checked once at startup.
#[derive(Clone, Debug, Default)]
pub struct Security {
    pub prover_auth: ProverAuth,
    pub admin_auth: AdminAuth,
    pub tls: Option<ServerTls>,
}

impl Security {
    /// From `--prover-token`, `--prover-tokens-file`, `--admin-tokens-file` and the TLS
    /// files; an unreadable or malformed file is an error naming it.
    pub fn load(a: &CoordinatorArgs) -> anyhow::Result<Security> {
        let read = |p: &std::path::Path, what: &str| {
            std::fs::read_to_string(p)
                .with_context(|| format!("cannot read {what} {}", p.display()))
        };
        let mut prover_auth = ProverAuth::open();
        if let Some(token) = &a.prover_token {
            prover_auth = prover_auth.with_fleet_token(token);
        }
        if let Some(file) = &a.prover_tokens_file {
            prover_auth = prover_auth
                .with_file(&read(file, "--prover-tokens-file")?)
                .map_err(|e| anyhow::anyhow!("--prover-tokens-file {}: {e}", file.display()))?;
        }
        let admin_auth = match &a.admin_tokens_file {
            Some(file) => AdminAuth::parse_file(&read(file, "--admin-tokens-file")?)
                .map_err(|e| anyhow::anyhow!("--admin-tokens-file {}: {e}", file.display()))?,
            None => AdminAuth::open(),
        };
        let tls = match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => Some(ServerTls::from_files(
                cert,
                key,
                a.tls_client_ca.as_deref(),
            )?),
            (None, None) if a.tls_client_ca.is_some() => {
                anyhow::bail!("--tls-client-ca needs --tls-cert and --tls-key")
            }
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        Ok(Security {
            prover_auth,
            admin_auth,
            tls,
        })
    }

    /// Refuses the gRPC listener on an address anyone on the network may reach while provers
    /// or admin calls go unauthenticated, unless the operator said `--insecure`.
    pub fn check_exposure(
        &self,
        listen: std::net::SocketAddr,
        insecure: bool,
    ) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        if self.prover_auth.is_open() {
            missing.push("prover authentication (--prover-token or --prover-tokens-file)");
        }
        if self.admin_auth.is_open() {
            missing.push("admin authentication (--admin-tokens-file)");
        }
        let exposed = Exposure {
            listen,
            what: "listen on",
            risk: "register provers or run admin calls",
        };
        exposed.check(&missing, insecure)?;
        if !listen.ip().is_loopback() && missing.is_empty() && self.tls.is_none() {
            tracing::warn!(%listen, "listening without TLS: tokens cross the network in plaintext (--tls-cert, --tls-key)");
        }
        Ok(())
    }

    /// The same for the HTTP admin API, which needs admin tokens only (provers do not use it).
    pub fn check_admin_exposure(
        &self,
        listen: std::net::SocketAddr,
        insecure: bool,
    ) -> anyhow::Result<()> {
        let missing = match self.admin_auth.is_open() {
            true => vec!["admin authentication (--admin-tokens-file)"],
            false => Vec::new(),
        };
        let exposed = Exposure {
            listen,
            what: "serve the admin HTTP API on",
            risk: "run admin calls",
        };
        exposed.check(&missing, insecure)
    }

    /// The same for the core API's push listener, whose calls need an operator's admin
    /// token.
    pub fn check_core_api_exposure(
        &self,
        listen: std::net::SocketAddr,
        insecure: bool,
    ) -> anyhow::Result<()> {
        let missing = match self.admin_auth.is_open() {
            true => vec!["admin authentication (--admin-tokens-file, operator role)"],
            false => Vec::new(),
        };
        let exposed = Exposure {
            listen,
            what: "serve the core API push endpoints (--core-api-listen) on",
            risk: "submit batches to prove",
        };
        exposed.check(&missing, insecure)
    }
}

/// A listener and what anyone who reaches it could do without the missing authentication.
struct Exposure {
    listen: std::net::SocketAddr,
    what: &'static str,
    risk: &'static str,
}

impl Exposure {
    /// Fine on loopback or with nothing missing; with `--insecure`, a warning; else an error
    /// naming what is missing and the ways out.
    fn check(&self, missing: &[&str], insecure: bool) -> anyhow::Result<()> {
        let listen = self.listen;
        if listen.ip().is_loopback() || missing.is_empty() {
            return Ok(());
        }
        let missing = missing.join(" and ");
        if insecure {
            tracing::warn!(%listen, "--insecure: {} a non-loopback address without {missing}", self.what);
            return Ok(());
        }
        anyhow::bail!(
            "refusing to {} {listen}, a non-loopback address, without {missing}: anyone who \
             reaches the port could {}. Configure it, listen on 127.0.0.1, or pass --insecure to \
             accept that",
            self.what,
            self.risk
        )
    }
}

/// What `StatusInfo` says of this process beside what the coordinator knows.
fn about(args: &CoordinatorArgs, config: Vec<proofmill_coordinator::ConfigValue>) -> About {
    let l1 = match args.l1 {
        L1Mode::None => String::new(),
        L1Mode::Embedded => format!("embedded {}", args.l1_state().display()),
        L1Mode::Rpc => format!(
            "rpc {}",
            args.rpc
                .l1_rpc_url
                .as_deref()
                .map(crate::config::redact_password)
                .unwrap_or_default()
        ),
    };
    About {
        build: option_env!("PROOFMILL_BUILD")
            .unwrap_or_default()
            .to_string(),
        l1,
        config,
    }
}

pub async fn run(
    args: CoordinatorArgs,
    config: Vec<proofmill_coordinator::ConfigValue>,
) -> anyhow::Result<()> {
    let backends = args
        .backends
        .build(&args.proof_types, &backend_context(&args))?;
    run_with(args, config, backends, None).await
}

/// [`run`] with backends built by the caller, which is told the URL provers reach this
/// coordinator at once it listens (`listening`).
pub async fn run_with(
    args: CoordinatorArgs,
    config: Vec<proofmill_coordinator::ConfigValue>,
    backends: Built,
    listening: Option<tokio::sync::oneshot::Sender<String>>,
) -> anyhow::Result<()> {
    let about = about(&args, config);
    if args.devnet && (!args.core_api_url.is_empty() || args.core_api_listen.is_some()) {
        anyhow::bail!(
            "--devnet and --core-api-url/--core-api-listen are two batch sources; a coordinator \
             takes its batches from one"
        );
    }
    // Checked before anything listens: a chain list the coordinator would refuse at start.
    let config = coordinator_config(&args, backends.all.clone());
    config
        .chain_types()
        .and_then(|_| config.chain_shares())
        .map_err(|e| anyhow::anyhow!("--chains: {e}"))?;
    let security = Security::load(&args)?;
    security.check_exposure(args.listen, args.insecure)?;
    if let Some(admin) = args.admin_listen {
        security.check_admin_exposure(admin, args.insecure)?;
    }
    if let Some(push) = args.core_api_listen {
        security.check_core_api_exposure(push, args.insecure)?;
    }
    backends.warm_up().await?;
    ensure_sqlite_dir(args.db())?;
    // Served while active and while standing by; stops with the process.
    let _metrics = crate::telemetry::start(args.metrics_listen).await?;
    let listener = proofmill_coordinator::listen(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let listener = Listener::new(listener)?;
    let url = args.advertise_url.clone().unwrap_or_else(|| {
        let url = default_url(listener.local_addr());
        match &security.tls {
            Some(_) => url.replacen("http://", "https://", 1),
            None => url,
        }
    });
    tracing::info!(
        addr = %listener.local_addr(),
        %url,
        tls = security.tls.is_some(),
        mutual_tls = security.tls.as_ref().is_some_and(ServerTls::mutual),
        prover_auth = ?security.prover_auth,
        admin_auth = ?security.admin_auth,
        "coordinator listening"
    );
    if let Some(listening) = listening {
        let _ = listening.send(url.clone());
    }
    // This handle is never fenced: it only asks for the lease and reads for the standby.
    let store = open_store(args.db()).await.context("opening the store")?;
    let settings = LeaseSettings {
        url: url.clone(),
        ttl: Duration::from_millis(args.lease_ttl),
    };
    let mut candidate = Candidate::new(store.clone(), &settings);
    let required = args
        .proof_types
        .iter()
        .map(|(t, _)| t.to_string())
        .collect();
    let standby = Standby::new(store, candidate.holder(), required, args.chain_id)
        .secured(security.admin_auth.clone(), security.tls.clone());
    // One HTTP admin server for the whole process, serving whatever this process is now.
    let admin = match args.admin_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (--admin-listen)"))?;
            tracing::info!(addr = %listener.local_addr()?, tls = security.tls.is_some(), "admin HTTP listening");
            let http = AdminHttp::new(args.max_message_bytes, security.admin_auth.clone());
            let serving = match &security.tls {
                Some(tls) => http.spawn_serve_tls(listener, tls)?,
                None => http.spawn_serve(listener),
            };
            Some((http, serving))
        }
        None => None,
    };
    let http = admin.as_ref().map(|(http, _)| http);
    let ended = turns(
        &args,
        &about,
        &backends,
        (&listener, url.as_str()),
        (&security, http),
        &mut candidate,
        &standby,
    )
    .await;
    if let Some((_, serving)) = admin {
        serving.stop().await?;
    }
    ended
}

/// Stands by and is active in turn until a signal.
async fn turns(
    args: &CoordinatorArgs,
    about: &About,
    backends: &Built,
    (listener, url): (&Listener, &str),
    (security, http): (&Security, Option<&AdminHttp>),
    candidate: &mut Candidate,
    standby: &Standby,
) -> anyhow::Result<()> {
    let set = |api: AdminApi| {
        if let Some(http) = http {
            http.set(api);
        }
    };
    let mut signal = std::pin::pin!(super::shutdown_signal());
    loop {
        // Asked first, so that a coordinator that gets the lease at once (alone, or
        // restarted at its address) never answers as a standby.
        let leadership = match candidate.try_acquire().await {
            Some(leadership) => leadership,
            None => {
                let serving = standby.spawn_serve(listener.incoming());
                set(standby.admin_api());
                let leadership = tokio::select! {
                    leadership = candidate.acquire() => leadership,
                    signal = &mut signal => {
                        tracing::info!(%signal, "standby coordinator stopping");
                        serving.stop().await?;
                        return Ok(());
                    }
                };
                set(AdminApi::starting());
                serving.stop().await?;
                leadership
            }
        };
        let turn = (args, about, backends, listener, url, security, http);
        let ended = run_active(turn, leadership, &mut signal).await;
        set(AdminApi::starting());
        match ended? {
            Ended::Stopped => return Ok(()),
            Ended::Deposed(why) => {
                tracing::warn!(%why, "no longer the active coordinator: standing by");
            }
        }
    }
}

/// The active coordinator's HTTP admin API, with the L1 node as an optional component
/// (listed and checked, but not failing readiness: provers should still reach the active
/// coordinator while L1 is unreachable).
fn admin_api(coord: &Coordinator, l1: Option<Arc<dyn L1>>) -> AdminApi {
    let api = coord.admin_api();
    match l1 {
        None => api,
        Some(l1) => api.with_component("l1", false, move || {
            let l1 = l1.clone();
            async move {
                let n = l1.last_verified_batch().await.map_err(|e| e.to_string())?;
                Ok(format!("rollup contract answers: last verified batch {n}"))
            }
        }),
    }
}

/// How a coordinator's turn as the active one ended.
enum Ended {
    /// By a signal: the process exits.
    Stopped,
    /// Another coordinator took the store over: this one stands by again.
    Deposed(String),
}

/// One turn as the active coordinator, on a store handle fenced with the lease's epoch.
async fn run_active(
    (args, about, backends, listener, url, security, http): (
        &CoordinatorArgs,
        &About,
        &Built,
        &Listener,
        &str,
        &Security,
        Option<&AdminHttp>,
    ),
    leadership: Leadership,
    signal: &mut (impl std::future::Future<Output = &'static str> + Unpin),
) -> anyhow::Result<Ended> {
    let store = open_store(args.db()).await.context("opening the store")?;
    let endpoint = store.endpoint();
    store.fence_writes(leadership.epoch());
    let blobs = Blobs::from_url(args.blobs()).context("opening the blob store")?;
    let config = CoordinatorConfig {
        prover_auth: security.prover_auth.clone(),
        admin_auth: security.admin_auth.clone(),
        tls: security.tls.clone(),
        ..coordinator_config(args, backends.all.clone())
    };
    let coord = match Coordinator::start(config, store, blobs).await {
        Ok(coord) => coord,
        Err(CoordinatorError::Store(e @ StoreError::Fenced { .. })) => {
            return Ok(Ended::Deposed(e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    coord.attach_lease(url, &leadership);
    coord.describe(about.clone());
    // Served before any rollup state is rebuilt: jobs of stored batches need only the store.
    let server = coord.spawn_serve_incoming(listener.incoming());
    if let Some(http) = http {
        http.set(admin_api(&coord, None));
    }
    let devnet = devnet_config(args);
    let mut source = match args.devnet {
        true => Some(DevnetSource::start(coord.intake(), devnet.clone()).await?),
        false => None,
    };
    let gateway = super::gateway::start(args, &coord, security).await?;
    // With a rollup core, the core settles: proofs go back to it, not to L1.
    let l1 = match gateway {
        Some(_) => {
            tracing::info!(
                "batches come from a rollup core API: no L1 settlement here (--l1 ignored)"
            );
            None
        }
        None => super::l1::open_for_coordinator(args, devnet.devnet, backends).await?,
    };
    if let Some(http) = http {
        let api = admin_api(&coord, l1.clone());
        http.set(match &gateway {
            Some(g) => g.readiness(api),
            None => api,
        });
    }
    let settlement = match l1 {
        Some(l1) => {
            if !args.devnet {
                tracing::info!("L1: sending proofs only; the rollup's sequencer commits batches");
            }
            tracing::info!(rollup = %l1.rollup_address(), sender = %l1.sender(), "L1 settlement on");
            let port = coord.settlement_port();
            Some(match args.l1 {
                L1Mode::Embedded if args.devnet => {
                    let at = (args.l1_state(), endpoint.as_str());
                    super::l1::start_embedded_settlement(port, l1, settlement_config(args), at)
                        .await?
                }
                _ => {
                    proofmill_settlement::start(
                        port,
                        l1,
                        args.devnet,
                        Some(settlement_config(args)),
                    )
                    .await?
                }
            })
        }
        None => None,
    };
    let proof_manager = super::proof_manager::start(args, &coord).await?;
    let signal = tokio::select! {
        signal = signal => signal,
        why = leadership.lost() => {
            stop_gateway(gateway).await;
            return Ok(step_down(why, &coord, source, settlement, server).await);
        }
        why = coord.fenced() => {
            stop_gateway(gateway).await;
            return Ok(step_down(why, &coord, source, settlement, server).await);
        }
        e = rebuild_failure(&mut source) => {
            coord.drain("the devnet could not be rebuilt").await?;
            server.stop().await?;
            return Err(anyhow::Error::new(e).context(
                "rebuilding the devnet (a data dir is tied to the --seed and devnet settings it was made with)",
            ));
        }
    };
    tracing::info!(%signal, "draining: no new work, provers get the grace period");
    // First, so its last batch is stored and snapshotted before the store is flushed.
    if let Some(source) = source {
        source.stop().await;
    }
    stop_gateway(gateway).await;
    coord
        .drain(&format!("coordinator received {signal}"))
        .await?;
    server.stop().await?;
    drop(settlement);
    if let Some(pm) = proof_manager {
        pm.abort();
    }
    if let Err(e) = leadership.release().await {
        tracing::warn!(error = %e, "cannot release the coordinator lease; a standby takes over when it expires");
    }
    tracing::info!("coordinator stopped; state flushed");
    Ok(Ended::Stopped)
}

async fn stop_gateway(gateway: Option<super::gateway::Running>) {
    if let Some(g) = gateway {
        g.stop().await;
    }
}

/// Stops everything of a turn whose lease another coordinator has taken. Nothing is drained
/// or flushed: this one's writes are fenced, and what it did not commit never happened.
/// Prover streams are closed, so provers go to the active coordinator (or to this one's
/// next turn, on the same listener).
async fn step_down(
    why: String,
    coord: &Coordinator,
    source: Option<DevnetSource>,
    settlement: Option<Settlement>,
    server: Serving,
) -> Ended {
    tracing::error!(%why, "stepping down");
    // First: its provers must leave its streams for the active coordinator's.
    coord.step_down(&why);
    drop(settlement);
    if let Some(source) = source {
        source.stop().await;
    }
    if let Err(e) = server.stop().await {
        tracing::warn!(error = %e, "stopping the server");
    }
    Ended::Deposed(why)
}

/// Resolves only if the devnet's state rebuild fails.
async fn rebuild_failure(
    source: &mut Option<DevnetSource>,
) -> proofmill_coordinator::CoordinatorError {
    if let Some(s) = source
        && let Err(e) = s.rebuilt().await
    {
        return e;
    }
    std::future::pending().await
}
