//! The README's "Running it as separate processes" recipe, run as written: the `proofmill
//! coordinator` and `proofmill prover` commands are read from README.md and started with the
//! default logging (no `RUST_LOG`, default log format), in a fresh working directory (the
//! recipe's paths are relative): as written (groth16 and stark), and with exec and with
//! stark alone. Only the port is substituted (the coordinator listens on port 0; the prover
//! and `status` get the bound one), besides the proof types. Each run must prove a batch within a bound, with both processes' memory staying
//! sane throughout, and `status` (text and `--json`) and `cordon`/`uncordon` must answer.

use std::path::Path;
use std::time::{Duration, Instant};

mod common;
use common::procs::{Proc, find_listening_addr, tail};
use common::readme::{command, flag, recipe, set_flag};
use common::{groth16_keys, proofmill};

/// Generous: a debug build on loaded cores, including a first DEV key setup for groth16.
const SERVE_WITHIN: Duration = Duration::from_secs(300);
/// Resident memory either process may reach (peak). A healthy one stays near 150 MB; the
/// arkworks span leak passed 3 GB while loading the groth16 keys.
const MAX_RSS_KB: u64 = 1 << 20;

/// Fails (with the log's tail) if the process exited or reached too much memory.
fn check_alive_and_sane(p: &mut Proc) {
    p.check_alive();
    let (rss, peak) = p.memory_kb();
    assert!(
        peak <= MAX_RSS_KB,
        "{} reached {peak} kB resident (now {rss} kB), over {MAX_RSS_KB} kB:\n{}",
        p.name,
        tail(&p.log())
    );
}

/// The recipe's `proofmill SUB …` command.
fn readme_command(sub: &str) -> Vec<String> {
    command(&recipe("## Running it as separate processes"), sub)
}

/// `proofmill <args>` (a one-shot command): its stdout, or a panic with its stderr.
fn run_ok(args: &[String], cwd: &Path) -> String {
    let out = proofmill().args(args).current_dir(cwd).output().unwrap();
    assert!(
        out.status.success(),
        "proofmill {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs the recipe, with `proof_types` instead of the README's (`None`: as written) and
/// `extra` coordinator flags.
fn readme_recipe_serves(proof_types: Option<&str>, extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    let mut args = readme_command("coordinator");
    let types = match proof_types {
        Some(t) => {
            set_flag(&mut args, "--proof-types", t);
            t.to_string()
        }
        None => flag(&args, "--proof-types"),
    };
    let proof_type = types.as_str();
    if types.split(',').any(|t| t == "groth16") {
        // The recipe's default key directory, shared with the crate's other tests so the
        // DEV setup runs once (loading still synthesizes the circuit to check the keys).
        let keys = groth16_keys();
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::create_dir(cwd.join("proofmill-data")).unwrap();
        std::os::unix::fs::symlink(&keys, cwd.join("proofmill-data/keys")).unwrap();
    }

    set_flag(&mut args, "--listen", "127.0.0.1:0");
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut coord = Proc::spawn("coordinator", &args, &cwd, dir.path().join("c.log"), &[]);
    // Keys load before the coordinator listens: watch its memory meanwhile.
    let until = Instant::now() + SERVE_WITHIN;
    let addr = loop {
        check_alive_and_sane(&mut coord);
        if let Some(addr) = find_listening_addr(&coord.log()) {
            break addr;
        }
        assert!(
            Instant::now() < until,
            "{proof_type}: the coordinator does not listen within {SERVE_WITHIN:?}:\n{}",
            tail(&coord.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let url = format!("http://{addr}");

    let mut args = readme_command("prover");
    set_flag(&mut args, "--coordinators", &url);
    if proof_types.is_some() {
        set_flag(&mut args, "--backend", proof_type);
    }
    let mut prover = Proc::spawn("prover", &args, &cwd, dir.path().join("p.log"), &[]);

    let mut status_json = readme_command("status");
    set_flag(&mut status_json, "--coordinator", &url);
    let status_text: Vec<String> = status_json
        .iter()
        .filter(|a| *a != "[--json]")
        .cloned()
        .collect();
    status_json
        .iter_mut()
        .filter(|a| *a == "[--json]")
        .for_each(|a| *a = "--json".into());

    let until = Instant::now() + SERVE_WITHIN;
    let status = loop {
        check_alive_and_sane(&mut coord);
        check_alive_and_sane(&mut prover);
        let out = run_ok(&status_json, &cwd);
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        if v["last_proven_batch"].as_u64().is_some_and(|n| n >= 1) {
            break v;
        }
        assert!(
            Instant::now() < until,
            "{proof_type}: no batch proven within {SERVE_WITHIN:?}; status {v}\ncoordinator:\n{}\nprover:\n{}",
            tail(&coord.log()),
            tail(&prover.log())
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    let text = run_ok(&status_text, &cwd);
    for t in proof_type.split(',') {
        assert!(status["jobs"][t]["proven"].as_u64() >= Some(1), "{status}");
        assert!(text.contains(t), "{text}");
    }

    // The recipe's `job show` on batch 1: each job proven by the prover the recipe started,
    // with that attempt in its history.
    let mut job_show = readme_command("job");
    assert_eq!(job_show[1], "show", "{job_show:?}");
    set_flag(&mut job_show, "--coordinator", &url);
    set_flag(&mut job_show, "--batch", "1");
    let mut job_show: Vec<String> = job_show
        .into_iter()
        .filter(|a| !a.starts_with("[--proof-type") && !a.ends_with(']') || a == "[--json]")
        .collect();
    for a in job_show.iter_mut().filter(|a| *a == "[--json]") {
        *a = "--json".into();
    }
    let prover_name = flag(&readme_command("prover"), "--name");
    let shown = run_ok(&job_show, &cwd);
    let jobs: Vec<serde_json::Value> = shown
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(jobs.len(), proof_type.split(',').count(), "{shown}");
    for job in &jobs {
        assert_eq!(job["state"], "proven", "{job}");
        let attempts = job["attempts"].as_array().unwrap();
        assert!(
            attempts.iter().any(|a| a["outcome"] == "proven"
                && a["prover_name"] == prover_name.as_str()
                && a["prove_ms"].as_u64().is_some()),
            "{job}"
        );
    }

    // The recipe's cordon command (and `uncordon`) on the prover it started.
    let id = status["provers"][0]["id"].as_str().unwrap().to_string();
    for sub in ["cordon", "uncordon"] {
        let mut args = readme_command("cordon");
        args[0] = sub.to_string();
        set_flag(&mut args, "--coordinator", &url);
        set_flag(&mut args, "--prover-id", &id);
        run_ok(&args, &cwd);
    }
    check_alive_and_sane(&mut coord);
    check_alive_and_sane(&mut prover);
}

/// groth16 and stark, exactly the README's flags.
#[test]
fn as_written() {
    readme_recipe_serves(None, &[]);
}

/// stark alone has no on-chain verifier, so the default embedded L1 refuses it (by design):
/// `--l1 none`.
#[test]
fn stark() {
    readme_recipe_serves(Some("stark"), &["--l1", "none"]);
}

#[test]
fn exec() {
    readme_recipe_serves(Some("exec"), &[]);
}
