//! The README's "A rollup node and a proving cluster: three processes" recipe, run as
//! written: the `proofmill devnet node`, `proofmill coordinator`, `proofmill prover` and
//! `proofmill status` commands are read from README.md and started with the default logging
//! in a fresh working directory (the recipe's paths are relative). Only the ports are
//! substituted: each listener binds port 0, and the commands after it get the bound address.
//! The node must settle batches the cluster proved, and `status` of the node must say so.

use std::time::{Duration, Instant};

mod common;
use common::procs::{Proc, find_logged_addr, logged_addr, tail};
use common::proofmill;
use common::readme::{command, recipe, set_flag};

const SETTLE_WITHIN: Duration = Duration::from_secs(240);

#[test]
fn the_readmes_three_process_recipe_settles_batches_proven_by_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path();
    let recipe = recipe("### A rollup node and a proving cluster: three processes");

    let mut node_args = command(&recipe, "devnet");
    assert_eq!(node_args[1], "node", "{node_args:?}");
    set_flag(&mut node_args, "--listen", "127.0.0.1:0");
    set_flag(&mut node_args, "--handoff-listen", "127.0.0.1:0");
    let mut node = Proc::spawn("node", &node_args, cwd, cwd.join("node.log"), &[]);
    let node_addr = logged_addr(&mut node, "coordinator listening", 0, SETTLE_WITHIN);
    let core = logged_addr(&mut node, "core API (pull) listening", 0, SETTLE_WITHIN);

    let mut cluster_args = command(&recipe, "coordinator");
    set_flag(&mut cluster_args, "--listen", "127.0.0.1:0");
    set_flag(
        &mut cluster_args,
        "--core-api-url",
        &format!("http://{core}"),
    );
    let mut cluster = Proc::spawn("cluster", &cluster_args, cwd, cwd.join("cluster.log"), &[]);
    let cluster_addr = logged_addr(&mut cluster, "coordinator listening", 0, SETTLE_WITHIN);

    let mut prover_args = command(&recipe, "prover");
    set_flag(
        &mut prover_args,
        "--coordinators",
        &format!("http://{cluster_addr}"),
    );
    let mut prover = Proc::spawn("prover", &prover_args, cwd, cwd.join("prover.log"), &[]);

    let mut status = command(&recipe, "status");
    set_flag(&mut status, "--coordinator", &format!("http://{node_addr}"));
    status.push("--json".into());
    let until = Instant::now() + SETTLE_WITHIN;
    loop {
        for p in [&mut node, &mut cluster, &mut prover] {
            p.check_alive();
        }
        let out = proofmill().args(&status).current_dir(cwd).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        if v["last_verified_batch"].as_u64().is_some_and(|n| n >= 2) {
            // Proven by the cluster's prover, settled by the node: the node runs no prover
            // but its handoff, and the cluster has no L1.
            let names: Vec<&str> = v["provers"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            assert_eq!(names, ["handoff"], "{v}");
            assert!(find_logged_addr(&cluster.log(), "core API push listening").is_none());
            assert!(
                !cluster.log().contains("L1 settlement on"),
                "{}",
                tail(&cluster.log())
            );
            return;
        }
        assert!(
            Instant::now() < until,
            "nothing settled within {SETTLE_WITHIN:?}: {v}\nnode:\n{}\ncluster:\n{}\nprover:\n{}",
            tail(&node.log()),
            tail(&cluster.log()),
            tail(&prover.log())
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}
