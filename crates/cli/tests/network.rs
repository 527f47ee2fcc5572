//! `proofmill network` as an operator runs it (the README's command): its own process
//! against anvil (the real `ProofMarket` bytecode), with its own `proofmill coordinator` and
//! `proofmill prover` processes; the test plays the rollup over JSON-RPC (deploys the market,
//! registers the network, posts a request whose inputs are a real devnet batch in a `file://`
//! directory, validates the proof with the exec backend). The network is killed with SIGKILL
//! after it acknowledged (before any prover runs, so before any proof), started again on the
//! same state directory, and the proof is posted once and the reward claimed once. Then the
//! rollup leaves a second proof unanswered: once the market's validation timeout has passed
//! on the chain's clock, the network closes that request and claims what it asked.

mod common;

use common::evm_advance;
use common::procs::{Proc, listening_addr, prover, tail};
use common::readme::{command, flag, recipe, set_flag};
use proofmill_backend::Backend as _;
use proofmill_devnet::{Devnet, DevnetConfig, ExecBackend};
use proofmill_l1::{DEV_ACCOUNTS, RpcConfig, RpcL1};
use proofmill_market::{
    Address, MarketEvent, MarketEvents as _, MarketInputs, MarketL1, MarketSettings, RequestId,
    RequestParams, RequestStatus, RpcMarket, U256, deploy_market,
};
use proofmill_testkit::TestAnvil;
use std::path::Path;
use std::time::{Duration, Instant};

/// Private keys of anvil's first dev accounts (its well-known test mnemonic). DEV ONLY.
const DEV_KEYS: [&str; 3] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
];
const CHAIN: u64 = 1;
const README_SECTION: &str = "### Proof market: a proving network";

fn account(i: usize) -> Address {
    DEV_ACCOUNTS[i].parse().unwrap()
}

fn fast() -> RpcConfig {
    RpcConfig {
        poll_interval: Duration::from_millis(20),
        ..RpcConfig::default()
    }
}

fn network_proc(
    dir: &Path,
    anvil: &str,
    market: Address,
    coordinator: &str,
    from_block: u64,
) -> Proc {
    // The README's command as written, with this test's addresses and directories, plus
    // what makes it quick on a dev chain that mines on demand.
    let mut args = command(&recipe(README_SECTION), "network");
    set_flag(&mut args, "--l1-rpc-url", anvil);
    set_flag(&mut args, "--market-address", &market.to_string());
    set_flag(&mut args, "--coordinator", coordinator);
    set_flag(&mut args, "--state-dir", "state");
    set_flag(&mut args, "--inputs-file-dirs", "inputs");
    args.extend(
        [
            "--confirmations",
            "0",
            "--from-block",
            &from_block.to_string(),
            "--poll-interval",
            "200",
            "--max-backoff",
            "1000",
        ]
        .map(String::from),
    );
    // The key file the README's command names.
    std::fs::write(dir.join(flag(&args, "--network-key-file")), DEV_KEYS[2]).unwrap();
    Proc::spawn_appending("network", &args, dir, dir.join("network.log"), &[])
}

/// Waits until `f` holds, checking that `p` stays alive.
async fn until<F, Fut>(p: &mut Proc, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    while !f().await {
        p.check_alive();
        assert!(
            Instant::now() < deadline,
            "{what}: not within 120 s\n{}",
            tail(&p.log())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn all_events(s: &RpcMarket, from: u64) -> Vec<MarketEvent> {
    let head = s.head().await.unwrap().number;
    s.events(from, head).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_process_survives_kill_9_and_is_paid_once_even_when_left_unanswered() {
    let anvil = TestAnvil::start();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("inputs")).unwrap();

    // The rollup's side: the market, the network registered, a client per role.
    let deployer = RpcL1::new(&anvil.url, DEV_KEYS[0], Address::ZERO, fast())
        .await
        .unwrap();
    let settings = MarketSettings {
        admin: account(0),
        submitter: account(1),
        ack_timeout: 600,
        max_timeout_after: 3_600,
        validation_timeout: 3_600,
    };
    let market = deploy_market(&deployer, &settings).await.unwrap();
    let admin = RpcMarket::connect(&anvil.url, DEV_KEYS[0], market, fast())
        .await
        .unwrap();
    let submitter = RpcMarket::connect(&anvil.url, DEV_KEYS[1], market, fast())
        .await
        .unwrap();
    admin
        .update_proving_network(account(2), true)
        .await
        .unwrap();
    let from_block = submitter.head().await.unwrap().number;

    // The network's coordinator (no prover yet) and the network.
    let mut coord = Proc::spawn(
        "coordinator",
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            "data",
            "--proof-types",
            "exec",
            "--l1",
            "none",
        ]
        .map(String::from),
        root,
        root.join("coordinator.log"),
        &[],
    );
    let coord_url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    let mut net = network_proc(root, &anvil.url, market, &coord_url, from_block);

    // A real devnet batch, its inputs envelope published in the inputs directory.
    let mut devnet = Devnet::new(DevnetConfig {
        depth: 8,
        batch_size: 4,
        ..DevnetConfig::default()
    })
    .unwrap();
    let reward = U256::from(10u64).pow(U256::from(17));
    let (id, public) = request_next(&mut devnet, root, &submitter, reward).await;

    let status = || async { submitter.request(id).await.ok().flatten().map(|r| r.status) };
    until(&mut net, "acknowledged", || async {
        status().await == Some(RequestStatus::Committed)
    })
    .await;
    // Killed after the acknowledgement; no prover has run, so nothing more happened on L1.
    assert!(net.kill9(), "the network was running");
    assert_eq!(status().await, Some(RequestStatus::Committed));

    let _prover = prover(root, "p1", &coord_url);
    let mut net = network_proc(root, &anvil.url, market, &coord_url, from_block);
    until(&mut net, "proven", || async {
        status().await == Some(RequestStatus::Proven)
    })
    .await;
    let seen = all_events(&submitter, from_block).await;
    let proof = seen
        .iter()
        .find_map(|e| match e {
            MarketEvent::Proven { id: i, proof, .. } if *i == id => Some(proof.clone()),
            _ => None,
        })
        .expect("a Proven event");
    ExecBackend
        .verify(&public, &proof)
        .expect("the posted proof is valid");
    submitter.submit_validation_result(id, true).await.unwrap();
    until(&mut net, "claimed", || async {
        all_events(&submitter, from_block)
            .await
            .iter()
            .any(|e| matches!(e, MarketEvent::RewardClaimed { .. }))
    })
    .await;
    // Some more polls of the running network: nothing is sent again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    net.check_alive();
    let all = all_events(&submitter, from_block).await;
    let count = |f: fn(&MarketEvent) -> bool| all.iter().filter(|e| f(e)).count();
    assert_eq!(count(|e| matches!(e, MarketEvent::Acknowledged { .. })), 1);
    assert_eq!(count(|e| matches!(e, MarketEvent::Proven { .. })), 1);
    let claims: Vec<&MarketEvent> = all
        .iter()
        .filter(|e| matches!(e, MarketEvent::RewardClaimed { .. }))
        .collect();
    assert_eq!(claims.len(), 1, "{claims:?}");
    assert!(matches!(
        claims[0],
        MarketEvent::RewardClaimed { network, amount, .. } if *network == account(2) && *amount == reward
    ));
    assert_eq!(submitter.earned(account(2)).await.unwrap(), U256::ZERO);
    assert_eq!(
        submitter.request(id).await.unwrap().unwrap().status,
        RequestStatus::Validated
    );
    // Its state says so too.
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("state/network-state.json")).unwrap())
            .unwrap();
    assert_eq!(state["requests"][0]["status"], "claimed", "{state}");

    // The rollup never answers the next proof. Past the validation timeout the network
    // closes the request and is paid what it asked.
    let (second, _) = request_next(&mut devnet, root, &submitter, reward).await;
    until(&mut net, "second proven", || async {
        submitter
            .request(second)
            .await
            .ok()
            .flatten()
            .map(|r| r.status)
            == Some(RequestStatus::Proven)
    })
    .await;
    evm_advance(&anvil.url, settings.validation_timeout + 1);
    until(&mut net, "second claimed", || async {
        let events = all_events(&submitter, from_block).await;
        events
            .iter()
            .filter(|e| matches!(e, MarketEvent::RewardClaimed { .. }))
            .count()
            == 2
    })
    .await;
    let all = all_events(&submitter, from_block).await;
    assert!(
        all.iter().any(|e| matches!(
            e,
            MarketEvent::ValidationTimedOut { id, reward: r, .. } if *id == second && *r == reward
        )),
        "{all:?}"
    );
    assert!(
        !all.iter()
            .any(|e| matches!(e, MarketEvent::ValidationResult { id, .. } if *id == second))
    );
    assert_eq!(
        submitter.request(second).await.unwrap().unwrap().status,
        RequestStatus::ValidationTimedOut
    );
    let late = submitter.submit_validation_result(second, false).await;
    assert!(late.is_err(), "a verdict after the window: {late:?}");
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("state/network-state.json")).unwrap())
            .unwrap();
    let entry = state["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["batch"] == second.batch)
        .unwrap_or_else(|| panic!("{state}"));
    assert_eq!(entry["status"], "claimed", "{state}");
    assert!(
        entry["reason"]
            .as_str()
            .is_some_and(|r| r.contains("not validated in time")),
        "{state}"
    );
}

/// Seals the devnet's next batch, publishes its inputs envelope in the inputs directory and
/// requests its proof on the market: its request id and public values.
async fn request_next(
    devnet: &mut Devnet,
    root: &Path,
    submitter: &RpcMarket,
    reward: U256,
) -> (RequestId, proofmill_types::PublicValues) {
    let batch = devnet.produce_batch();
    let public = batch.transition.to_public_values();
    let envelope = MarketInputs {
        chain_id: CHAIN,
        batch: batch.number,
        program_version: "devnet-v1".into(),
        proof_type: "exec".into(),
        public_values: public.as_bytes().to_vec(),
        input: batch.input.clone(),
    }
    .encode()
    .unwrap();
    let path = root
        .join("inputs")
        .join(format!("batch-{}.bin", batch.number));
    std::fs::write(&path, &envelope).unwrap();
    let id = RequestId::new(CHAIN, batch.number);
    let params = RequestParams {
        protocol_version: "devnet-v1".into(),
        inputs_url: url::Url::from_file_path(std::fs::canonicalize(&path).unwrap())
            .unwrap()
            .to_string(),
        inputs_digest: MarketInputs::digest_of(&envelope),
        timeout_after: 1_800,
        max_reward: reward,
    };
    submitter
        .submit_proof_request(id, &params, reward)
        .await
        .unwrap();
    (id, public)
}
