//! A rollup that buys its proofs on the proof market, run as an operator runs it: anvil, the
//! rollup and market contracts deployed with `proofmill l1 deploy` and `l1 deploy-market`,
//! a network registered with `l1 market-network`, then a devnet coordinator with
//! `--l1 rpc --proving-mode network` and one own prover, as processes. The test plays the
//! proving network over JSON-RPC: it proves batch 1 (with the exec backend, from the inputs
//! it fetched at the request's URL), posts garbage for batch 2 and never answers batch 3.
//! The coordinator is killed with -9 after its requests went out and started again.
//!
//! Then: every batch is verified on L1; batch 1 with the network's proof (validated, the
//! reward paid once), batches 2 and 3 by the own prover after the fallback; each request
//! was sent once, and the silent one was closed.
//!
//! And the same proof manager in a devnet node, whose batches an outside cluster proves over
//! the core API: in mixed mode the offered batch is the network's, the rest the cluster's.

mod common;

use common::core_api::{next_batch, prove};
use common::http::post;
use common::procs::{Proc, listening_addr, logged_addr, prover, tail};
use common::proofmill;
use proofmill_backend::{Backend, ProveRequest};
use proofmill_l1::{DEV_ACCOUNTS, RpcConfig};
use proofmill_market::{
    Address, MarketEvent, MarketEvents, MarketInputs, MarketL1, RequestId, RpcMarket, U256,
};
use proofmill_testkit::TestAnvil;
use proofmill_types::PublicValues;
use std::path::Path;
use std::time::{Duration, Instant};

/// Anvil's well-known dev keys 0, 1 and 3 (DEV ONLY): deployer and sequencer, the market's
/// submitter, the proving network.
const KEY_DEPLOYER: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const KEY_SUBMITTER: &str = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d";
const KEY_NETWORK: &str = "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6";
const ACK_TIMEOUT: u64 = 8;
const REWARD: u64 = 1_000;

fn run(dir: &Path, args: &[&str]) -> String {
    let out = proofmill().args(args).current_dir(dir).output().unwrap();
    assert!(
        out.status.success(),
        "proofmill {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn status(dir: &Path, url: &str) -> serde_json::Value {
    let out = proofmill()
        .args(["status", "--json", "--coordinator", url])
        .current_dir(dir)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

/// The proof the exec backend makes from the inputs at a request's `file://` URL, after
/// checking them against the request's digest.
fn prove_from(url: &str, digest: &[u8; 32]) -> (u64, Vec<u8>) {
    let bytes = std::fs::read(url.strip_prefix("file://").unwrap()).unwrap();
    assert_eq!(&MarketInputs::digest_of(&bytes), digest);
    let inputs = MarketInputs::decode(&bytes).unwrap();
    let proof = proofmill_devnet::ExecBackend
        .prove(&ProveRequest {
            batch: inputs.batch,
            input: &inputs.input,
            expected: &PublicValues::new(inputs.public_values.clone()),
        })
        .unwrap();
    (inputs.batch, proof)
}

/// `l1 deploy`, `l1 deploy-market` (submitter: dev account 1) and `l1 market-network` (dev
/// account 3), as an operator runs them: the rollup's and the market's addresses.
fn deploy(dir: &Path, url: &str) -> (String, String) {
    let rollup = run(
        dir,
        &[
            "l1",
            "deploy",
            "--l1-rpc-url",
            url,
            "--l1-key",
            KEY_DEPLOYER,
        ],
    );
    let market = run(
        dir,
        &[
            "l1",
            "deploy-market",
            "--l1-rpc-url",
            url,
            "--l1-key",
            KEY_DEPLOYER,
            "--market-submitter",
            DEV_ACCOUNTS[1],
            "--market-ack-timeout",
            &ACK_TIMEOUT.to_string(),
        ],
    );
    run(
        dir,
        &[
            "l1",
            "market-network",
            "--l1-rpc-url",
            url,
            "--l1-key",
            KEY_DEPLOYER,
            "--market-address",
            &market,
            "--network-address",
            DEV_ACCOUNTS[3],
        ],
    );
    (rollup, market)
}

/// A rollup's options for settling on the anvil at `url` and buying its proofs on `market`
/// (rounds every 200 ms, no confirmations).
fn settling_and_buying(url: &str, rollup: &str, market: &str) -> Vec<String> {
    [
        "--l1",
        "rpc",
        "--l1-rpc-url",
        url,
        "--l1-key",
        KEY_DEPLOYER,
        "--l1-rollup-address",
        rollup,
        "--market-address",
        market,
        "--market-key",
        KEY_SUBMITTER,
        "--market-blobs",
        "public",
        "--market-max-reward",
        &REWARD.to_string(),
        "--market-confirmations",
        "0",
        "--market-poll-interval",
        "200",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rollup_buys_proofs_and_falls_back_to_its_own_prover_across_a_kill_9() {
    let anvil = TestAnvil::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let url = anvil.url.as_str();
    let (rollup, market) = deploy(dir, url);
    let coordinator_args: Vec<String> = [
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        "data",
        "--devnet",
        "--proof-types",
        "exec",
        "--max-batches",
        "3",
        "--batch-interval",
        "300",
        "--send-interval",
        "500",
        "--proving-mode",
        "network",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(settling_and_buying(url, &rollup, &market))
    .collect();
    let log = dir.join("coordinator.log");
    let mut coord = Proc::spawn_appending("coordinator", &coordinator_args, dir, log.clone(), &[]);
    let coord_url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    let mut own = prover(dir, "own", &coord_url);

    let network = network_client(url, &market).await;
    let me = network.sender();

    // All three requests out, to this network (the only one).
    let until = Instant::now() + Duration::from_secs(120);
    let requests = loop {
        let seen = requests_to(&network).await;
        if seen.len() == 3 {
            break seen;
        }
        assert!(
            Instant::now() < until,
            "requests {seen:?}\n{}",
            tail(&coord.log())
        );
        coord.check_alive();
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // Held for the market: the own prover proved nothing.
    let v = status(dir, &coord_url);
    assert_eq!(v["jobs"]["exec"]["held"], 3, "{v}");
    assert_eq!(v["jobs"]["exec"]["proven"], 0, "{v}");

    // Killed with its requests out; the network answers while it is down.
    assert!(coord.kill9());
    let id = |b: u64| RequestId::new(proofmill_coordinator::DEFAULT_CHAIN_ID, b);
    for (batch, inputs_url, digest) in &requests {
        match batch {
            1 => {
                let (b, proof) = prove_from(inputs_url, digest);
                assert_eq!(b, 1);
                network.acknowledge(id(1), true).await.unwrap();
                network
                    .submit_proof(id(1), &proof, U256::from(REWARD / 2))
                    .await
                    .unwrap();
            }
            2 => {
                network.acknowledge(id(2), true).await.unwrap();
                network
                    .submit_proof(id(2), b"garbage", U256::from(1u64))
                    .await
                    .unwrap();
            }
            _ => {} // 3: silence.
        }
    }
    // Where the prover keeps looking for it.
    let mut coordinator_args = coordinator_args;
    coordinator_args[2] = coord_url.trim_start_matches("http://").to_string();
    let mut coord = Proc::spawn_appending("coordinator", &coordinator_args, dir, log, &[]);

    let until = Instant::now() + Duration::from_secs(180);
    loop {
        coord.check_alive();
        own.check_alive();
        // Chain time passes only with blocks.
        common::evm_mine(url);
        let v = status(dir, &coord_url);
        if v["last_verified_batch"].as_u64() == Some(3) {
            // What status tells of the market (a request may still be closing).
            let m = &v["market"];
            assert_eq!(m["mode"], "network", "{v}");
            assert_eq!(m["proof_type"], "exec", "{v}");
            assert_eq!(m["proven_by_network"], 1, "{v}");
            assert_eq!(m["fell_back"], 2, "{v}");
            break;
        }
        assert!(
            Instant::now() < until,
            "not settled: {v}\n{}",
            tail(&coord.log())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // What the market saw: each request once, batch 1 valid, batch 2 invalid, batch 3
    // closed for silence.
    let mut submitted = Vec::new();
    let mut validations = Vec::new();
    let mut timed_out = Vec::new();
    for e in all_events(&network).await {
        match e {
            MarketEvent::Submitted { id, .. } => submitted.push(id.batch),
            MarketEvent::ValidationResult { id, valid, .. } => validations.push((id.batch, valid)),
            MarketEvent::TimedOut { id, .. } => timed_out.push(id.batch),
            _ => {}
        }
    }
    submitted.sort();
    assert_eq!(submitted, vec![1, 2, 3]);
    validations.sort();
    assert_eq!(validations, vec![(1, true), (2, false)]);
    assert_eq!(timed_out, vec![3]);
    let log = coord.log();
    assert!(
        log.contains("proof from a proving network accepted"),
        "{}",
        tail(&log)
    );
    // Paid once, for batch 1.
    assert_eq!(network.earned(me).await.unwrap(), U256::from(REWARD / 2));
    network.claim_reward().await.unwrap();
    assert_eq!(network.earned(me).await.unwrap(), U256::ZERO);
    assert!(network.claim_reward().await.is_err());
}

/// The proof manager in a devnet node (`proofmill devnet node`: no provers of its own, its
/// batches handed to an outside cluster over the core API), mixed mode with ratio 0.5: batch
/// 1 is offered on the market and proven by the network (played by the test over JSON-RPC),
/// batch 2 goes to the cluster (played by the test over the core API). The cluster is never
/// handed batch 1; both are verified on L1 and the network is paid for batch 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_devnet_node_buys_the_offered_batches_and_hands_the_rest_to_its_cluster() {
    let anvil = TestAnvil::start();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let url = anvil.url.as_str();
    let (rollup, market) = deploy(dir, url);
    let args: Vec<String> = [
        "devnet",
        "node",
        "--listen",
        "127.0.0.1:0",
        "--handoff-listen",
        "127.0.0.1:0",
        "--data-dir",
        "node",
        "--proof-types",
        "exec",
        "--max-batches",
        "2",
        "--batch-interval",
        "300",
        "--send-interval",
        "500",
        "--proving-mode",
        "mixed",
        "--market-ratio",
        "0.5",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain(settling_and_buying(url, &rollup, &market))
    .collect();
    let json_logs = [("RUST_LOG", "info"), ("PROOFMILL_LOG_FORMAT", "json")];
    let log = dir.join("node.log");
    let mut node = Proc::spawn_appending("node", &args, dir, log, &json_logs);
    let node_url = format!(
        "http://{}",
        logged_addr(
            &mut node,
            "coordinator listening",
            0,
            Duration::from_secs(60)
        )
    );
    let core = logged_addr(
        &mut node,
        "core API (pull) listening",
        0,
        Duration::from_secs(60),
    );

    // The cluster's first batch is 2: batch 1 is held for the market.
    let data = tokio::task::block_in_place(|| next_batch(&core));
    let (batch, body) = prove(&data);
    assert_eq!(batch, 2, "{data}");
    let v = status(dir, &node_url);
    assert_eq!(v["jobs"]["exec"]["held"], 1, "{v}");
    assert_eq!(v["market"]["mode"], "mixed", "{v}");
    let reply = post(&core, "/submit_proof/2", body);
    assert_eq!(reply.body, serde_json::json!("Success"), "{reply:?}");

    // The network answers batch 1's request (the only one) with a proof of its inputs.
    let network = network_client(url, &market).await;
    let me = network.sender();
    let until = Instant::now() + Duration::from_secs(120);
    let (inputs_url, digest) = loop {
        let offered = requests_to(&network).await;
        if let Some((b, inputs_url, digest)) = offered.first() {
            assert_eq!((*b, offered.len()), (1, 1), "{offered:?}");
            break (inputs_url.clone(), *digest);
        }
        assert!(Instant::now() < until, "no request\n{}", tail(&node.log()));
        node.check_alive();
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let id = RequestId::new(proofmill_coordinator::DEFAULT_CHAIN_ID, 1);
    let (b, proof) = prove_from(&inputs_url, &digest);
    assert_eq!(b, 1);
    network.acknowledge(id, true).await.unwrap();
    network
        .submit_proof(id, &proof, U256::from(REWARD / 2))
        .await
        .unwrap();

    let until = Instant::now() + Duration::from_secs(120);
    loop {
        node.check_alive();
        common::evm_mine(url);
        let v = status(dir, &node_url);
        // Settled, and the validation sent (it may follow the settlement).
        if v["last_verified_batch"].as_u64() == Some(2) && v["market"]["proven_by_network"] == 1 {
            assert_eq!(v["market"]["fell_back"], 0, "{v}");
            break;
        }
        assert!(
            Instant::now() < until,
            "not settled: {v}\n{}",
            tail(&node.log())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Nothing more for the cluster: batch 1 was never its.
    let reply = post(&core, "/proof_generation_data", serde_json::json!({}));
    assert_eq!(
        reply.body,
        serde_json::json!({"Success": null}),
        "{reply:?}"
    );
    let validations: Vec<_> = all_events(&network)
        .await
        .into_iter()
        .filter_map(|e| match e {
            MarketEvent::ValidationResult { id, valid, .. } => Some((id.batch, valid)),
            _ => None,
        })
        .collect();
    assert_eq!(validations, vec![(1, true)]);
    assert_eq!(network.earned(me).await.unwrap(), U256::from(REWARD / 2));
}

/// The proving network's client of the market (dev account 3), as the test plays it.
async fn network_client(url: &str, market: &str) -> RpcMarket {
    RpcMarket::connect(
        url,
        KEY_NETWORK,
        market.parse::<Address>().unwrap(),
        RpcConfig {
            poll_interval: Duration::from_millis(10),
            ..RpcConfig::default()
        },
    )
    .await
    .unwrap()
}

/// The requests assigned to the network so far: batch, inputs URL and digest.
async fn requests_to(network: &RpcMarket) -> Vec<(u64, String, [u8; 32])> {
    let me = network.sender();
    all_events(network)
        .await
        .into_iter()
        .filter_map(|e| match e {
            MarketEvent::Submitted {
                id,
                network: n,
                inputs_url,
                inputs_digest,
                ..
            } if n == me => Some((id.batch, inputs_url, inputs_digest)),
            _ => None,
        })
        .collect()
}

/// Every market event so far.
async fn all_events(network: &RpcMarket) -> Vec<MarketEvent> {
    let head = network.head().await.unwrap().number;
    network.events(0, head).await.unwrap()
}
