//! A flaky network: real provers reach the coordinator through a proxy that keeps cutting
//! every connection. Provers reconnect, report their tasks, resend unacknowledged results;
//! every batch is still proven exactly once.
mod support;

use proofmill_devnet::DevnetConfig;
use proofmill_devnet_node::{DevnetSource, DevnetSourceConfig};
use proofmill_prover::{Prover, ProverConfig};
use proofmill_types::{JobKey, ProofType};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Forwards loopback TCP connections to `target`; `cut` drops every open one.
struct Proxy {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let c = conns.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().unwrap().push(task);
            }
        });
        Proxy {
            addr,
            conns,
            accept,
        }
    }

    fn cut(&self) -> usize {
        let mut conns = self.conns.lock().unwrap();
        let n = conns.iter().filter(|t| !t.is_finished()).count();
        for t in conns.drain(..) {
            t.abort();
        }
        n
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.cut();
        self.accept.abort();
    }
}

async fn flaky_network(db: Db) {
    const BATCHES: u64 = 20;
    let env = Env::new(db, "chaos");
    let c = start(&env, fast_config()).await;
    let devnet = DevnetSourceConfig {
        devnet: DevnetConfig {
            batch_size: 8,
            depth: 8,
            ..DevnetConfig::default()
        },
        batch_interval_ms: 40,
        version: "devnet-v1".into(),
        max_batches: Some(BATCHES),
        snapshot_every: proofmill_devnet_node::DEFAULT_SNAPSHOT_EVERY,
    };
    DevnetSource::start(c.coord.intake(), devnet).await.unwrap();
    let proxy = Proxy::start(c.addr).await;
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut provers = Vec::new();
    for i in 0..2 {
        let prover = Prover::new(ProverConfig {
            coordinators: vec![format!("http://{}", proxy.addr)],
            name: format!("p{i}"),
            capacity: 2,
            version: "devnet-v1".into(),
            backends: vec![(
                ProofType::new("exec").unwrap(),
                std::sync::Arc::new(proofmill_devnet::ExecBackend),
            )],
            reconnect_min: Duration::from_millis(20),
            reconnect_max: Duration::from_millis(200),
            ..ProverConfig::default()
        });
        let stats = prover.stats();
        let mut stop = stop_tx.subscribe();
        let task = tokio::spawn(prover.run(async move {
            let _ = stop.recv().await;
        }));
        provers.push((stats, task));
    }
    let mut cuts = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        tokio::time::sleep(Duration::from_millis(150)).await;
        if c.coord.status().await.unwrap().last_proven_batch == Some(BATCHES) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "not all batches proven: {:?}",
            c.coord.status().await.unwrap().jobs
        );
        cuts += proxy.cut();
    }
    assert!(
        cuts >= 2,
        "the network was actually flaky ({cuts} connections cut)"
    );
    let attempts: u64 = provers
        .iter()
        .map(|(s, _)| s.snapshot().connect_attempts)
        .sum();
    assert!(
        attempts > 2,
        "provers reconnected ({attempts} connection attempts)"
    );
    // Exactly once: every batch has its proof, and the provers were told "accepted" for
    // exactly as many proofs as there are batches (a prover counts each task and token once,
    // so a second accepted proof of any batch would show here).
    let store = c.coord.store().clone();
    for n in 1..=BATCHES {
        store
            .proof(&JobKey::new(
                proofmill_types::DEFAULT_CHAIN,
                n,
                ProofType::new("exec").unwrap(),
            ))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("proof of batch {n} missing"));
    }
    // The last acks may still be on their way when the last proof is durable.
    let accepted = || -> u64 { provers.iter().map(|(s, _)| s.snapshot().proofs_acked).sum() };
    let until = tokio::time::Instant::now() + Duration::from_secs(10);
    while accepted() < BATCHES && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(accepted(), BATCHES, "proofs accepted across provers");
    let _ = stop_tx.send(());
    for (_, task) in provers {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    drop(proxy);
    c.stop().await;
}

on_both_stores!(flaky_network);
