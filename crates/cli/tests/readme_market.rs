//! The README's proof market recipes run as written, both sides as processes: "Proof market:
//! buying proofs" (the rollup's contract, the market and a registered network, a devnet
//! coordinator offering every batch, its own prover) and "Proof market: a proving network"
//! (the network's own coordinator and prover, and `proofmill network`), against anvil. The
//! commands are read from README.md; the test substitutes only ports, the node's URL, the
//! deployed addresses, and writes the key files they name (anvil's dev keys).
//!
//! Then: batches are verified on L1 with the network's proofs, validated, and the network
//! claims what it earned, the request made before the network first started included; and
//! `kill -9` of the network process mid-flow loses nothing (it starts again from its state
//! directory and posts nothing twice).

mod common;

use common::procs::{Proc, logged_addr, tail};
use common::proofmill;
use common::readme::{flag, recipe, set_flag};
use proofmill_market::{Address, MarketEvent, MarketEvents, MarketL1, RpcConfig, RpcMarket};
use proofmill_testkit::TestAnvil;
use std::path::Path;
use std::time::{Duration, Instant};

/// Anvil's dev keys (DEV ONLY): sequencer 0, market submitter 1, network 2, admin 4.
const KEYS: [(&str, &str); 4] = [
    (
        "sequencer.key",
        "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    ),
    (
        "submitter.key",
        "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    ),
    (
        "network.key",
        "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    ),
    (
        "admin.key",
        "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    ),
];
const WITHIN: Duration = Duration::from_secs(240);

/// The recipe's `proofmill l1 SUB …` command.
fn l1_command(recipe: &[Vec<String>], sub: &str) -> Vec<String> {
    recipe
        .iter()
        .find(|c| c[0] == "l1" && c[1] == sub)
        .cloned()
        .unwrap_or_else(|| panic!("no `proofmill l1 {sub}` in the recipe: {recipe:?}"))
}

fn command(recipe: &[Vec<String>], sub: &str) -> Vec<String> {
    common::readme::command(recipe, sub)
}

fn run(cwd: &Path, args: &[String]) -> String {
    let out = proofmill().args(args).current_dir(cwd).output().unwrap();
    assert!(
        out.status.success(),
        "proofmill {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Replaces every URL of the recipe's node with anvil's.
fn on_anvil(args: &mut [String], url: &str) {
    for flag in ["--l1-rpc-url"] {
        if args.iter().any(|a| a == flag) {
            set_flag(args, flag, url);
        }
    }
}

fn status(cwd: &Path, url: &str) -> serde_json::Value {
    let out = proofmill()
        .args(["status", "--json", "--coordinator", url])
        .current_dir(cwd)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readmes_market_recipes_buy_proofs_from_a_network_process() {
    let anvil = TestAnvil::start();
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    for (file, key) in KEYS {
        std::fs::write(cwd.join(file), key).unwrap();
    }
    let rollup_recipe = recipe("### Proof market: buying proofs");
    let network_recipe = recipe("### Proof market: a proving network");

    // Contracts.
    let mut deploy = l1_command(&rollup_recipe, "deploy");
    on_anvil(&mut deploy, &anvil.url);
    let rollup = run(cwd, &deploy).trim().to_string();
    let mut deploy_market = l1_command(&rollup_recipe, "deploy-market");
    on_anvil(&mut deploy_market, &anvil.url);
    let market = run(cwd, &deploy_market).trim().to_string();
    let mut register = l1_command(&rollup_recipe, "market-network");
    on_anvil(&mut register, &anvil.url);
    set_flag(&mut register, "--market-address", &market);
    run(cwd, &register);
    let network_address = flag(&register, "--network-address");

    // The rollup.
    let mut coord_args = command(&rollup_recipe, "coordinator");
    on_anvil(&mut coord_args, &anvil.url);
    set_flag(&mut coord_args, "--listen", "127.0.0.1:0");
    set_flag(&mut coord_args, "--l1-rollup-address", &rollup);
    set_flag(&mut coord_args, "--market-address", &market);
    let mut coord = Proc::spawn("rollup", &coord_args, cwd, cwd.join("rollup.log"), &[]);
    let coord_url = format!(
        "http://{}",
        logged_addr(&mut coord, "coordinator listening", 0, WITHIN)
    );
    let mut prover_args = command(&rollup_recipe, "prover");
    set_flag(&mut prover_args, "--coordinators", &coord_url);
    let mut prover = Proc::spawn(
        "rollup prover",
        &prover_args,
        cwd,
        cwd.join("prover.log"),
        &[],
    );

    let reader = RpcMarket::connect(
        &anvil.url,
        KEYS[0].1,
        market.parse::<Address>().unwrap(),
        RpcConfig::default(),
    )
    .await
    .unwrap();
    // The network starts once the rollup's first request is on L1: a new state directory
    // reads from the start of the market's last acknowledgement window, so it takes that
    // request too.
    let until = Instant::now() + WITHIN;
    loop {
        let head = reader.head().await.unwrap().number;
        let events = reader.events(0, head).await.unwrap();
        if events
            .iter()
            .any(|e| matches!(e, MarketEvent::Submitted { .. }))
        {
            break;
        }
        coord.check_alive();
        assert!(
            Instant::now() < until,
            "no request:\n{}",
            tail(&coord.log())
        );
        common::evm_mine(&anvil.url);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The network's cluster and daemon.
    let mut net_coord_args = command(&network_recipe, "coordinator");
    set_flag(&mut net_coord_args, "--listen", "127.0.0.1:0");
    let mut net_coord = Proc::spawn(
        "network coordinator",
        &net_coord_args,
        cwd,
        cwd.join("network-coordinator.log"),
        &[],
    );
    let net_url = format!(
        "http://{}",
        logged_addr(&mut net_coord, "coordinator listening", 0, WITHIN)
    );
    let mut net_prover_args = command(&network_recipe, "prover");
    set_flag(&mut net_prover_args, "--coordinators", &net_url);
    let mut net_prover = Proc::spawn(
        "network prover",
        &net_prover_args,
        cwd,
        cwd.join("network-prover.log"),
        &[],
    );
    let mut network_args = command(&network_recipe, "network");
    on_anvil(&mut network_args, &anvil.url);
    set_flag(&mut network_args, "--market-address", &market);
    set_flag(&mut network_args, "--coordinator", &net_url);
    let network_log = cwd.join("network.log");
    let mut network =
        Proc::spawn_appending("network", &network_args, cwd, network_log.clone(), &[]);

    let me: Address = network_address.parse().unwrap();
    let events = || async {
        let head = reader.head().await.unwrap().number;
        reader.events(0, head).await.unwrap()
    };
    let mut killed = false;
    let until = Instant::now() + WITHIN;
    loop {
        for p in [&mut coord, &mut prover, &mut net_coord, &mut net_prover] {
            p.check_alive();
        }
        common::evm_mine(&anvil.url);
        let seen = events().await;
        let posted = seen
            .iter()
            .filter(|e| matches!(e, MarketEvent::Proven { network, .. } if *network == me))
            .count();
        // Killed once it has acknowledged a request, then started again.
        if !killed
            && seen
                .iter()
                .any(|e| matches!(e, MarketEvent::Acknowledged { network, .. } if *network == me))
        {
            assert!(network.kill9());
            network =
                Proc::spawn_appending("network", &network_args, cwd, network_log.clone(), &[]);
            killed = true;
        }
        network.check_alive();
        let v = status(cwd, &coord_url);
        let by_network = v["market"]["proven_by_network"].as_u64().unwrap_or(0);
        let verified = v["last_verified_batch"].as_u64().unwrap_or(0);
        let claimed = seen
            .iter()
            .any(|e| matches!(e, MarketEvent::RewardClaimed { network, .. } if *network == me));
        if killed && by_network >= 2 && verified >= 2 && claimed {
            // Each proof posted once per request.
            let mut proven: Vec<u64> = seen
                .iter()
                .filter_map(|e| match e {
                    MarketEvent::Proven { id, .. } => Some(id.batch),
                    _ => None,
                })
                .collect();
            let n = proven.len();
            proven.sort();
            proven.dedup();
            assert_eq!(proven.len(), n, "a proof posted twice: {seen:?}");
            // Batch 1 was offered before the network first started.
            assert_eq!(proven.first(), Some(&1), "{seen:?}");
            assert!(posted >= 2);
            break;
        }
        assert!(
            Instant::now() < until,
            "status {v}\nrollup:\n{}\nnetwork:\n{}",
            tail(&coord.log()),
            tail(&network.log())
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // What it earned is claimed: nothing is left but what the latest validations earned.
    let earned = reader.earned(me).await.unwrap();
    let claims = events()
        .await
        .into_iter()
        .filter(|e| matches!(e, MarketEvent::RewardClaimed { network, .. } if *network == me))
        .count();
    assert!(claims >= 1, "earned {earned}");
}
