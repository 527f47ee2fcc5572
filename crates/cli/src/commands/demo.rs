//! `proofmill demo`: the whole loop in one process on embedded defaults: a coordinator over
//! SQLite and a local blob directory, the devnet sealing batches, and local provers over gRPC.
//! Running it again on the same data directory resumes: nothing is sealed or proven twice.

use super::coordinator;
use super::market_local::{self, LocalNetwork, LocalNetworkSpec, NETWORKS};
use crate::args::DemoArgs;
use crate::backends::{BackendContext, devnet_shape};
use anyhow::{Context as _, bail};
use proofmill_coordinator::{AdminHttp, CoordinatorConfig, MarketHold, StatusView};
use proofmill_devnet::DevnetConfig;
use proofmill_devnet_node::{DEFAULT_SNAPSHOT_EVERY, DevnetSource, DevnetSourceConfig};
use proofmill_prover::{Prover, ProverConfig};
use proofmill_settlement::SettlementConfig;
use proofmill_types::ProvingMode;
use std::time::{Duration, Instant};

const VERSION: &str = "devnet-v1";
/// Escrow of each demo request, wei.
const MAX_REWARD: u64 = 1_000_000_000_000_000;
/// Without progress for this long the demo gives up and says where it stood.
const STALL: Duration = Duration::from_secs(120);

pub async fn run(a: DemoArgs) -> anyhow::Result<()> {
    // The demo has no tokens: off loopback, anyone could drive it.
    coordinator::Security::default().check_exposure(a.listen, a.insecure)?;
    std::fs::create_dir_all(&a.data_dir)
        .with_context(|| format!("creating {}", a.data_dir.display()))?;
    let db = format!("sqlite://{}/proofmill.db?mode=rwc", a.data_dir.display());
    let blobs = format!("file://{}/blobs", a.data_dir.display());
    let built = a.backends.build(
        &a.proof_types,
        &BackendContext {
            devnet_shape: devnet_shape(a.batch_size, a.tree_depth),
            data_dir: &a.data_dir,
        },
    )?;
    if let Some(g) = &built.groth16 {
        println!(
            "groth16: circuit {} with DEV-ONLY keys in {} (generated on the first run)",
            g.shape(),
            g.key_dir()
                .map_or_else(String::new, |d| d.display().to_string())
        );
    }
    built.warm_up().await?;
    let mut config = CoordinatorConfig {
        proof_types: a.proof_types.clone(),
        backends: built.all.clone(),
        market_hold: a.market.then(|| MarketHold {
            mode: ProvingMode::Network,
            proof_type: a.proof_types[0].0.clone(),
        }),
        ..CoordinatorConfig::default()
    };
    config.scheduler.heartbeat_interval_ms = 1_000;
    config.shutdown_grace_ms = 2_000;
    let (coord, _lease) = coordinator::open(&db, &blobs, config).await?;
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.listen))?;
    let url = format!("http://{}", listener.local_addr()?);
    let server = coord.spawn_serve(listener);
    let admin_listener = tokio::net::TcpListener::bind(a.admin_listen)
        .await
        .with_context(|| format!("cannot listen on {}", a.admin_listen))?;
    let admin_url = format!("http://{}", admin_listener.local_addr()?);
    let admin = AdminHttp::new(coord.config().max_message_bytes, Default::default());
    admin.set(coord.admin_api());
    let admin_server = admin.spawn_serve(admin_listener);
    // Printed before any work, so `status` can watch the whole run.
    println!("coordinator gRPC at {url} (watch it: proofmill status --coordinator {url})");
    println!("admin HTTP at {admin_url} (curl {admin_url}/ready, {admin_url}/v1/status)");
    // The demo's provers run in this process: one /metrics shows them and the coordinator.
    let metrics = crate::telemetry::start(a.metrics_listen).await?;
    if let Some(m) = &metrics {
        println!("metrics at http://{}/metrics", m.local_addr());
    }

    let devnet_cfg = DevnetConfig {
        seed: a.seed,
        depth: a.tree_depth,
        accounts: a.accounts,
        batch_size: a.batch_size,
        ..DevnetConfig::default()
    };
    // Settlement on the embedded L1, its transaction log in the data dir.
    let l1_state = a.data_dir.join("l1.log");
    let revm = super::l1::open_embedded_revm(&l1_state, devnet_cfg, &a.proof_types, &built)?;
    let l1: std::sync::Arc<dyn proofmill_l1::L1> =
        std::sync::Arc::new(revm.with_sender(proofmill_l1::L1::sender(&revm)));
    let before = coord.status().await?;
    let types: Vec<String> = a.proof_types.iter().map(|(t, _)| t.to_string()).collect();
    println!(
        "proofmill demo: {} batches of {} transfers, {} provers, proof types {}, data in {}",
        a.batches,
        a.batch_size,
        a.provers,
        types.join(","),
        a.data_dir.display()
    );
    if let Some(n) = before.last_sealed_batch {
        println!(
            "resuming: {n} batches sealed, {} proven before this run",
            before.last_proven_batch.unwrap_or(0)
        );
    }
    let devnet = DevnetSourceConfig {
        devnet: devnet_cfg,
        batch_interval_ms: 100,
        version: VERSION.into(),
        max_batches: Some(a.batches),
        snapshot_every: DEFAULT_SNAPSHOT_EVERY,
    };
    let mut source = DevnetSource::start(coord.intake(), devnet).await?;
    source.rebuilt().await.context("starting the devnet (a data dir is tied to the --seed and devnet settings it was made with)")?;
    let send = SettlementConfig {
        send_interval_ms: 300,
        l1_proof_types: Some(super::l1::on_chain_types(&a.proof_types)),
        ..SettlementConfig::default()
    };
    let settlement = super::l1::start_embedded_settlement(
        coord.settlement_port(),
        l1,
        send,
        (l1_state.as_path(), db.as_str()),
    )
    .await?;

    let market = match a.market {
        true => Some(DemoMarket::start(&a, &coord, &revm, &built).await?),
        false => None,
    };
    let (prover_stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut provers = Vec::new();
    for i in 0..a.provers {
        let backends = built.for_prover(&a.proof_types)?;
        let prover = Prover::new(ProverConfig {
            coordinators: vec![url.clone()],
            name: format!("demo-prover-{}", i + 1),
            capacity: 1,
            version: VERSION.into(),
            backends,
            ..ProverConfig::default()
        });
        let stats = prover.stats();
        let mut stop = prover_stop.subscribe();
        let task = tokio::spawn(prover.run(async move {
            let _ = stop.recv().await;
        }));
        provers.push((format!("demo-prover-{}", i + 1), stats, task));
    }

    let started = Instant::now();
    let mut last_line = String::new();
    let mut last_change = Instant::now();
    let status = loop {
        let s = coord.status().await?;
        let line = progress_line(&s, a.batches);
        if line != last_line {
            println!("[{:>6.1}s] {line}", started.elapsed().as_secs_f64());
            last_line = line;
            last_change = Instant::now();
        }
        if s.last_verified_batch.unwrap_or(0) >= a.batches {
            break s;
        }
        if last_change.elapsed() > STALL {
            bail!(
                "no progress for {} s; last status: {last_line}",
                STALL.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let elapsed = started.elapsed();
    settlement.stop();
    let market_summary = match market {
        Some(m) => Some(m.stop(&revm).await?),
        None => None,
    };

    source.stop().await;
    coord.drain("demo finished").await?;
    let _ = prover_stop.send(());
    for (_, _, task) in &mut provers {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    let _ = server.stop().await;
    let _ = admin_server.stop().await;

    let new = a
        .batches
        .saturating_sub(before.last_proven_batch.unwrap_or(0).min(a.batches));
    println!();
    println!(
        "done: batches 1..={} proven and verified on L1 ({} proven this run) in {:.1} s",
        a.batches,
        new,
        elapsed.as_secs_f64()
    );
    for (pt, c) in &status.jobs {
        println!(
            "  {pt:<10} proven {:>5}  failed {:>3}  queued {:>3}  leased {:>3}",
            c.proven, c.failed, c.queued, c.leased
        );
    }
    for (name, stats, _) in &provers {
        let s = stats.snapshot();
        println!(
            "  {name:<16} tasks completed {:>4}  failed {:>3}",
            s.tasks_completed, s.tasks_failed
        );
    }
    if new > 0 && elapsed.as_secs_f64() > 0.0 {
        println!(
            "  throughput: {:.2} batches/s",
            new as f64 / elapsed.as_secs_f64()
        );
    }
    let opt = |b: Option<u64>| b.map_or_else(|| "-".to_string(), |b| b.to_string());
    println!(
        "  L1 (embedded): last committed batch {}, last verified batch {}",
        opt(status.last_committed_batch),
        opt(status.last_verified_batch)
    );
    if let Some(tx) = &status.last_verify_tx {
        let k = tx.last_batch - tx.first_batch + 1;
        println!(
            "  last verify tx {} (batches {}..={}): gas {}, {} gas per batch",
            tx.tx_hash,
            tx.first_batch,
            tx.last_batch,
            tx.gas_used,
            tx.gas_used / k
        );
    }
    if let (Some(summary), Some(m)) = (market_summary, &status.market) {
        println!(
            "  proof market: {} batches proven by networks, {} fell back to the own provers",
            m.proven_by_network, m.fell_back
        );
        println!("{summary}");
    }
    println!("  state: {db}");
    Ok(())
}

/// `--market`: the proof market on the demo's embedded L1, the rollup's proof manager, and
/// two proving networks in this process.
struct DemoMarket {
    address: proofmill_market::Address,
    manager: tokio::task::JoinHandle<()>,
    networks: Vec<(String, LocalNetwork)>,
}

/// Where a run's market address is kept, so a rerun on the same data uses the same market.
const MARKET_META: &str = "demo.market_address";

impl DemoMarket {
    async fn start(
        a: &DemoArgs,
        coord: &proofmill_coordinator::Coordinator,
        l1: &proofmill_l1::RevmL1,
        built: &crate::backends::Built,
    ) -> anyhow::Result<DemoMarket> {
        let store = coord.store();
        let address = match store.get_meta(MARKET_META).await? {
            Some(a) => a.parse().context("the stored market address")?,
            None => {
                let m = market_local::deploy(l1, 3_600, 86_400, &NETWORKS).await?;
                store.set_meta(MARKET_META, &m.to_string()).await?;
                m
            }
        };
        let proof_type = &a.proof_types[0].0;
        let backend = built
            .for_prover(&a.proof_types[..1])?
            .into_iter()
            .next()
            .map(|(_, b)| b)
            .context("a backend for the market's proof type")?;
        let inputs_dir = a.data_dir.join("market-inputs");
        let max_reward = proofmill_market::U256::from(MAX_REWARD);
        let manager = market_local::start_manager(
            coord,
            l1,
            address,
            &inputs_dir,
            (VERSION, max_reward, 86_400),
            Duration::from_millis(200),
        )
        .await?;
        let mut networks = Vec::new();
        // The second asks more than the escrow: it refuses all it is assigned.
        for (i, (name, min_reward)) in [("network-a", 0), ("network-b", MAX_REWARD + 1)]
            .into_iter()
            .enumerate()
        {
            let n = LocalNetwork::start(
                l1,
                address,
                LocalNetworkSpec {
                    account: NETWORKS[i],
                    dir: a.data_dir.join(name),
                    inputs_dir: &inputs_dir,
                    version: VERSION,
                    proof_type,
                    backend: backend.clone(),
                    min_reward: proofmill_market::U256::from(min_reward),
                    max_in_flight: 64,
                    poll_interval: Duration::from_millis(200),
                },
            )
            .await?;
            networks.push((name.to_string(), n));
        }
        println!(
            "proof market at {address} on the embedded L1: every batch offered; network-a ({}) proves, network-b ({}) refuses (its minimum reward is over the escrow of {MAX_REWARD} wei)",
            networks[0].1.address, networks[1].1.address
        );
        Ok(DemoMarket {
            address,
            manager,
            networks,
        })
    }

    /// Stops the networks and the proof manager; returns what each network earned and
    /// claimed, as lines.
    async fn stop(self, l1: &proofmill_l1::RevmL1) -> anyhow::Result<String> {
        use proofmill_market::MarketL1 as _;
        let reader = proofmill_market::RevmMarket::new(
            l1.with_sender(market_local::account(0)),
            self.address,
        );
        // The networks claim what validations earned them: give the last claim a moment.
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < until {
            let mut unclaimed = false;
            for (_, n) in &self.networks {
                unclaimed |= !reader.earned(n.address).await?.is_zero();
            }
            if !unclaimed {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        use proofmill_market::MarketEvents as _;
        let head = reader.head().await?.number;
        let events = reader.events(0, head).await?;
        let mut lines = Vec::new();
        for (name, n) in self.networks {
            let mut claimed = proofmill_market::U256::ZERO;
            let (mut proofs, mut refused) = (0, 0);
            for e in &events {
                match e {
                    proofmill_market::MarketEvent::RewardClaimed {
                        network, amount, ..
                    } if *network == n.address => claimed += *amount,
                    proofmill_market::MarketEvent::Proven { network, .. }
                        if *network == n.address =>
                    {
                        proofs += 1
                    }
                    proofmill_market::MarketEvent::Acknowledged {
                        network,
                        accepted: false,
                        ..
                    } if *network == n.address => refused += 1,
                    _ => {}
                }
            }
            let unclaimed = reader.earned(n.address).await?;
            lines.push(format!(
                "  {name}: proofs posted: {proofs}, requests refused: {refused}, claimed: {claimed} wei, unclaimed: {unclaimed} wei"
            ));
            n.stop().await;
        }
        self.manager.abort();
        Ok(lines.join("\n"))
    }
}

fn progress_line(s: &StatusView, target: u64) -> String {
    let jobs: Vec<String> = s
        .jobs
        .iter()
        .map(|(pt, c)| {
            let held = match c.held {
                0 => String::new(),
                n => format!(", {n} held for the market"),
            };
            format!(
                "{pt}: {} proven, {} running, {} queued{held}",
                c.proven, c.leased, c.queued
            )
        })
        .collect();
    let busy = s
        .provers
        .iter()
        .filter(|p| p.connected && !p.running.is_empty())
        .count();
    let connected = s.provers.iter().filter(|p| p.connected).count();
    format!(
        "sealed {}/{target}  proven {}/{target}  committed {}/{target}  verified {}/{target}  [{}]  provers busy {busy}/{connected}",
        s.last_sealed_batch.unwrap_or(0),
        s.last_proven_batch.unwrap_or(0),
        s.last_committed_batch.unwrap_or(0),
        s.last_verified_batch.unwrap_or(0),
        jobs.join("; ")
    )
}
