//! `proofmill devnet node`: the reference rollup's coordinator (sequencer, committer, proof
//! sender) with a handoff prover instead of a fleet: its tasks wait in a hub that the core
//! API serves to an outside proving cluster (pull) or posts to it (push).

use super::coordinator::{Security, backend_context, run_with};
use crate::args::DevnetNodeArgs;
use anyhow::Context as _;
use proofmill_backend::Backend;
use proofmill_core_api::ClientConfig;
use proofmill_handoff::{HandoffBackend, Hub, HubConfig, PushConfig};
use proofmill_prover::{Prover, ProverConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// Largest body the pull server reads: a posted proof.
const MAX_POSTED_PROOF_BYTES: usize = 256 << 20;

pub async fn run(
    args: DevnetNodeArgs,
    config: Vec<proofmill_coordinator::ConfigValue>,
) -> anyhow::Result<()> {
    let a = &args.coordinator;
    if args.handoff_listen.is_none() && args.handoff_push_url.is_empty() {
        anyhow::bail!(
            "a devnet node hands its batches to a proving cluster: give --handoff-listen (the \
             cluster pulls) or --handoff-push-url (the node pushes)"
        );
    }
    if let Some(addr) = args.handoff_listen
        && !addr.ip().is_loopback()
        && !a.insecure
    {
        anyhow::bail!(
            "--handoff-listen {addr} is not a loopback address and the core API has no \
             authentication: put it behind a proxy that authenticates, or pass --insecure"
        );
    }
    let security = Security::load(a)?;
    if security.tls.is_some() {
        anyhow::bail!(
            "a devnet node's gRPC listener serves its own handoff prover, which does not speak \
             TLS: drop --tls-cert/--tls-key (the core API is plain HTTP)"
        );
    }
    if a.prover_tokens_file.is_some() && a.prover_token.is_none() {
        anyhow::bail!("the node's handoff prover registers with --prover-token: give one");
    }
    let built = a.backends.build(&a.proof_types, &backend_context(a))?;
    let mut verifiers: HashMap<_, Arc<dyn Backend>> = HashMap::new();
    for (t, backend) in &a.proof_types {
        verifiers.insert(t.clone(), built.all.get(backend)?);
    }
    let hub = Hub::new(HubConfig {
        proof_types: a.proof_types.iter().map(|(t, _)| t.clone()).collect(),
        gather: Duration::from_millis(args.handoff_gather),
        handout_timeout: Duration::from_millis(args.handoff_timeout),
        protocol_version: a.version_tag.clone(),
        verifiers,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = args.handoff_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr} (--handoff-listen)"))?;
        tracing::info!(addr = %listener.local_addr()?, "core API (pull) listening");
        let (hub, chain_id, stop) = (hub.clone(), a.chain_id, stopped());
        tasks.spawn(async move {
            proofmill_handoff::serve::serve(listener, hub, chain_id, MAX_POSTED_PROOF_BYTES, stop)
                .await
                .context("core API server")
        });
    }
    if !args.handoff_push_url.is_empty() {
        let cfg = PushConfig {
            client: ClientConfig {
                urls: args.handoff_push_url.clone(),
                timeout: Duration::from_millis(args.handoff_request_timeout),
                max_body_bytes: MAX_POSTED_PROOF_BYTES as u64,
                token: args.handoff_push_token.clone(),
            },
            chain_id: a.chain_id,
            poll_interval: Duration::from_millis(args.handoff_poll_interval),
        };
        tracing::info!(urls = ?cfg.client.urls, "core API (push) to the proving cluster");
        let (hub, stop) = (hub.clone(), stopped());
        tasks.spawn(async move {
            proofmill_handoff::push::run(hub, cfg, stop)
                .await
                .context("pushing to the proving cluster")
        });
    }
    let (listening_tx, listening_rx) = tokio::sync::oneshot::channel();
    let prover = {
        let (hub, capacity, version, token) = (
            hub.clone(),
            args.handoff_capacity,
            a.version_tag.clone(),
            a.prover_token.clone(),
        );
        let backends = a
            .proof_types
            .iter()
            .map(|(t, _)| {
                let b: Arc<dyn Backend> = Arc::new(HandoffBackend::new(t.clone(), hub.clone()));
                (t.clone(), b)
            })
            .collect();
        let stop = stopped();
        tokio::spawn(async move {
            // The coordinator says where it listens once it does.
            let Ok(url) = listening_rx.await else {
                return Ok(());
            };
            Prover::new(ProverConfig {
                coordinators: vec![url],
                name: "handoff".into(),
                capacity,
                version,
                token,
                backends,
                ..ProverConfig::default()
            })
            .run(stop)
            .await
        })
    };
    let ended = run_with(args.coordinator.clone(), config, built, Some(listening_tx)).await;
    let _ = stop_tx.send(true);
    if let Ok(Err(e)) = prover.await {
        tracing::warn!(error = %e, "handoff prover");
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "core API");
        }
    }
    ended
}
