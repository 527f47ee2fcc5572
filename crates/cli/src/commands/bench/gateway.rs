//! `proofmill bench gateway`: batches through the core API's pull mode. A rollup core in this
//! process (devnet batches made ahead, sealed at `--rate` a second or all at once) serves
//! `proof_generation_data` and `submit_proof` on loopback; a coordinator with the gateway and
//! `--provers` exec provers, also in this process, pulls, proves and posts back. Measured per
//! batch: sealed at the core → its proof accepted by the core (checked there with the exec
//! backend, as a core checks what it receives). Ends with
//! `batches_per_s=<float> p50_ms=<float> p99_ms=<float>`.

use super::percentiles;
use crate::args::BenchGatewayArgs;
use crate::commands::coordinator;
use anyhow::{Context as _, bail};
use axum::Json;
use axum::extract::{Path, State};
use axum::routing::post;
use proofmill_backend::Backend;
use proofmill_coordinator::CoordinatorConfig;
use proofmill_core_api::wire::{
    ProofGenerationData, ProofGenerationDataResponse, SubmitProofRequest, SubmitProofResponse,
    WitnessInput, rfc3339_utc,
};
use proofmill_devnet::{Devnet, DevnetConfig, ExecBackend, SealedBatch};
use proofmill_gateway::{ClientConfig, Gateway, Pull, PullConfig};
use proofmill_prover::{Prover, ProverConfig};
use proofmill_types::ProofType;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const VERSION: &str = "bench";

/// The rollup core of the bench: what it sealed, handed out and got back.
struct Core {
    batches: Vec<SealedBatch>,
    started: Instant,
    /// Batches sealed per second (0: all at the start).
    rate: f64,
    state: Mutex<CoreState>,
    done: tokio::sync::Notify,
}

#[derive(Default)]
struct CoreState {
    next: usize,
    /// When each batch's proof was accepted, by index.
    back: Vec<Option<Instant>>,
}

impl Core {
    /// When batch `i` (0-based) is sealed.
    fn sealed_at(&self, i: usize) -> Instant {
        match self.rate {
            r if r > 0.0 => self.started + Duration::from_secs_f64(i as f64 / r),
            _ => self.started,
        }
    }
}

async fn proof_generation_data(State(core): State<Arc<Core>>) -> Json<ProofGenerationDataResponse> {
    let mut state = core.state.lock().expect("core lock");
    let i = state.next;
    if i >= core.batches.len() || core.sealed_at(i) > Instant::now() {
        return Json(ProofGenerationDataResponse::Success(None));
    }
    state.next += 1;
    let b = &core.batches[i];
    let public = b.transition.to_public_values();
    let witness = WitnessInput::new(&b.input, public.as_bytes(), vec!["exec".into()]);
    Json(ProofGenerationDataResponse::Success(Some(Box::new(
        ProofGenerationData {
            l1_batch_number: b.number,
            chain_id: proofmill_coordinator::DEFAULT_CHAIN_ID,
            batch_sealed_at: rfc3339_utc(0),
            witness_input_data: serde_json::to_value(witness).expect("strings encode"),
            protocol_version: VERSION.into(),
            l1_verifier_config: serde_json::Value::Null,
        },
    ))))
}

async fn submit_proof(
    State(core): State<Arc<Core>>,
    Path(batch): Path<u64>,
    Json(request): Json<SubmitProofRequest>,
) -> Json<SubmitProofResponse> {
    let Some(i) = batch
        .checked_sub(1)
        .map(|i| i as usize)
        .filter(|i| *i < core.batches.len())
    else {
        return Json(SubmitProofResponse::Error(format!("unknown batch {batch}")));
    };
    let SubmitProofRequest::Proof(proof) = request else {
        return Json(SubmitProofResponse::Error("the bench skips nothing".into()));
    };
    let public = core.batches[i].transition.to_public_values();
    let checked = match proof.proofs.iter().find(|p| p.proof_type == "exec") {
        None => Err("no exec proof".to_string()),
        Some(p) => p.proof_bytes().and_then(|bytes| {
            ExecBackend
                .verify(&public, &bytes)
                .map_err(|e| e.to_string())
        }),
    };
    if let Err(e) = checked {
        return Json(SubmitProofResponse::Error(format!("batch {batch}: {e}")));
    }
    let mut state = core.state.lock().expect("core lock");
    if state.back[i].is_none() {
        state.back[i] = Some(Instant::now());
        if state.back.iter().all(Option::is_some) {
            core.done.notify_one();
        }
    }
    Json(SubmitProofResponse::Success)
}

pub async fn gateway(a: BenchGatewayArgs) -> anyhow::Result<()> {
    let n = a.batches as usize;
    let cfg = DevnetConfig {
        depth: a.tree_depth,
        batch_size: a.batch_size,
        accounts: (1u64 << a.tree_depth).min(64) as u32,
        ..DevnetConfig::default()
    };
    let batches = tokio::task::spawn_blocking(move || -> anyhow::Result<Vec<SealedBatch>> {
        let mut devnet = Devnet::new(cfg)?;
        Ok((0..n).map(|_| devnet.produce_batch()).collect())
    })
    .await??;

    // The cluster: coordinator, gateway, provers.
    let dir = tempfile::tempdir()?;
    let exec = ProofType::new("exec")?;
    let mut backends = proofmill_backend::Backends::default();
    backends.insert(Arc::new(ExecBackend));
    let config = CoordinatorConfig {
        proof_types: vec![(exec.clone(), "exec".into())],
        backends,
        ..CoordinatorConfig::default()
    };
    let db = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    let blobs = format!("file://{}/blobs", dir.path().display());
    let (coord, _lease) = coordinator::open(&db, &blobs, config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = coord.spawn_serve(listener);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut provers = Vec::new();
    for p in 0..a.provers {
        let mut stop = stop_rx.clone();
        let backend: Arc<dyn Backend> = Arc::new(ExecBackend);
        let prover = Prover::new(ProverConfig {
            coordinators: vec![url.clone()],
            name: format!("bench-{p}"),
            capacity: 1,
            version: VERSION.into(),
            backends: vec![(exec.clone(), backend)],
            ..ProverConfig::default()
        });
        provers.push(tokio::spawn(prover.run(async move {
            let _ = stop.wait_for(|s| *s).await;
        })));
    }

    // The core, then the gateway pulling from it; the clock starts with the first seal.
    let core = Arc::new(Core {
        batches,
        started: Instant::now(),
        rate: a.rate,
        state: Mutex::new(CoreState {
            next: 0,
            back: vec![None; n],
        }),
        done: tokio::sync::Notify::new(),
    });
    let core_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let core_url = format!("http://{}", core_listener.local_addr()?);
    let router = axum::Router::new()
        .route("/proof_generation_data", post(proof_generation_data))
        .route("/submit_proof/{batch}", post(submit_proof))
        .with_state(core.clone());
    let core_server = tokio::spawn(async move { axum::serve(core_listener, router).await });
    let gateway = Gateway::open(coord.intake()).await?;
    let pull = Pull::start(
        gateway,
        PullConfig {
            client: ClientConfig {
                urls: vec![core_url],
                timeout: Duration::from_secs(30),
                max_body_bytes: 64 << 20,
                token: None,
            },
            poll_interval: Duration::from_millis(a.core_api_poll_interval),
            max_backoff: Duration::from_secs(5),
        },
    )
    .context("starting the gateway")?;
    eprintln!(
        "bench gateway: {n} batches of {} transfers, {} exec provers, sealed {}, gateway polls every {} ms when idle",
        a.batch_size,
        a.provers,
        match a.rate {
            r if r > 0.0 => format!("at {r}/s"),
            _ => "all at once".into(),
        },
        a.core_api_poll_interval
    );
    let all_back = core.done.notified();
    if tokio::time::timeout(Duration::from_secs(a.timeout_s), all_back)
        .await
        .is_err()
    {
        let back = core
            .state
            .lock()
            .expect("core lock")
            .back
            .iter()
            .flatten()
            .count();
        bail!(
            "only {back} of {n} proofs back at the core in {} s",
            a.timeout_s
        );
    }

    let (mut latencies_ms, last) = {
        let state = core.state.lock().expect("core lock");
        let latencies_ms: Vec<f64> = state
            .back
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let back = t.expect("every proof is back");
                back.saturating_duration_since(core.sealed_at(i))
                    .as_secs_f64()
                    * 1e3
            })
            .collect();
        let last = state.back.iter().flatten().max().copied().expect("n > 0");
        (latencies_ms, last)
    };
    let elapsed = last.saturating_duration_since(core.started).as_secs_f64();
    pull.stop().await;
    let _ = stop_tx.send(true);
    coord.drain("bench finished").await?;
    for p in provers {
        let _ = tokio::time::timeout(Duration::from_secs(5), p).await;
    }
    let _ = server.stop().await;
    core_server.abort();
    let (p50, p99) = percentiles(&mut latencies_ms);
    println!(
        "batches_per_s={:.2} p50_ms={p50:.1} p99_ms={p99:.1}",
        n as f64 / elapsed
    );
    Ok(())
}
