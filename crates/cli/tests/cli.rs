//! End-to-end checks of the `proofmill` binary: configuration errors and layering.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::proofmill;

fn run(cmd: &mut Command) -> (Output, String) {
    let out = cmd.output().expect("run proofmill");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

fn write(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("proofmill.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn unknown_config_key_exits_with_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "listen = \"127.0.0.1:1\"\nlisten_port = 3900\n");
    let (out, stderr) = run(proofmill().arg("coordinator").arg("--config").arg(&file));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: config file"), "{stderr}");
    assert!(stderr.contains("unknown key `listen_port`"), "{stderr}");
    assert!(
        stderr.contains("valid keys:") && stderr.contains("listen"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn bad_config_values_exit_with_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    for (text, needle) in [
        (
            "capacity = \"two\"",
            "invalid value for `capacity`: expected an integer, found string",
        ),
        ("capacity = 0", "invalid value for `capacity`"),
        (
            "coordinators = [\"not a url\"]",
            "invalid value for `coordinators`",
        ),
        ("capacity = ", "is not valid TOML"),
    ] {
        let file = write(dir.path(), text);
        // Also through PROOFMILL_CONFIG instead of the flag.
        let (out, stderr) = run(proofmill().arg("prover").env("PROOFMILL_CONFIG", &file));
        assert_eq!(out.status.code(), Some(1), "{text}: {stderr}");
        assert!(stderr.starts_with("error: config file"), "{text}: {stderr}");
        assert!(stderr.contains(needle), "{text}: {stderr}");
    }
    let (out, stderr) =
        run(proofmill().args(["status", "--config", "/nonexistent/proofmill.toml"]));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot read config file /nonexistent/proofmill.toml"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_and_env_exit_non_zero() {
    let (out, stderr) = run(proofmill().args(["prover", "--capacity", "0"]));
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--capacity"), "{stderr}");
    let (out, stderr) = run(proofmill()
        .arg("coordinator")
        .env("PROOFMILL_BATCH_SIZE", "lots"));
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("--batch-size"), "{stderr}");
    let (out, stderr) = run(proofmill().args(["coordinator", "--proof-types", "Exec"]));
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("proof type \"Exec\" is invalid"),
        "{stderr}"
    );
    let (out, stderr) = run(&mut proofmill());
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// `status` names the coordinator it tried, which shows which layer won. Nothing listens on
/// the discard/echo ports of localhost here, so each attempt fails fast.
#[test]
fn status_url_layering_and_unreachable_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "coordinator = \"http://127.0.0.1:9\"\njson = true\n",
    );
    let (out, stderr) = run(proofmill().args(["status", "--config"]).arg(&file));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach coordinator at http://127.0.0.1:9"),
        "config: {stderr}"
    );
    assert!(out.stdout.is_empty());

    let (out, stderr) = run(proofmill()
        .args(["status", "--config"])
        .arg(&file)
        .env("PROOFMILL_COORDINATOR", "http://127.0.0.1:7"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach coordinator at http://127.0.0.1:7"),
        "env: {stderr}"
    );

    let (out, stderr) = run(proofmill()
        .args(["status", "--coordinator", "http://127.0.0.1:1", "--config"])
        .arg(&file)
        .env("PROOFMILL_COORDINATOR", "http://127.0.0.1:7"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach coordinator at http://127.0.0.1:1"),
        "flag: {stderr}"
    );
}

/// A bad `--assignment-policy`, from a flag or the environment, names the valid policies.
#[test]
fn bad_assignment_policy_lists_the_valid_ones() {
    let (out, stderr) = run(proofmill().args(["coordinator", "--assignment-policy", "fastest"]));
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr
            .contains("unknown assignment policy `fastest`; valid: oldest-first, earliest-finish"),
        "{stderr}"
    );
    let (out, stderr) = run(proofmill()
        .args(["bench", "makespan"])
        .env("PROOFMILL_POLICY", "random"));
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("valid: oldest-first, earliest-finish"),
        "{stderr}"
    );
}

/// A `--chains` list the coordinator cannot serve is refused with the reason before it
/// listens or opens its store: a malformed entry and a weight of 0 when the flag is parsed,
/// an unknown proof type and a chain listed twice against the other options.
#[test]
fn bad_chains_are_refused_with_the_reason_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    for (chains, reason) in [
        ("seven", "expected ID[:WEIGHT[:TYPE+TYPE...]]"),
        ("7:0", "the weight must be a whole number of at least 1"),
        (
            "7:1:nope",
            "--chains: chain 7: proof type nope is not one of the coordinator's (exec)",
        ),
        ("7,7:2", "--chains: chain 7 is listed twice"),
    ] {
        let (out, stderr) = run(proofmill().current_dir(dir.path()).args([
            "coordinator",
            "--proof-types",
            "exec",
            "--l1",
            "none",
            "--listen",
            "127.0.0.1:0",
            "--chains",
            chains,
        ]));
        assert!(!out.status.success(), "{chains}: {stderr}");
        assert!(stderr.contains(reason), "{chains}: {stderr}");
        assert!(
            !stderr.contains("coordinator listening"),
            "{chains}: {stderr}"
        );
    }
    // Nothing was created: the store is opened after the check.
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none());
}

/// `bench makespan` runs every policy over the documented workload and ends with one
/// `policy=<name> makespan_ratio=<float>` line each; the ratio is over a lower bound, so it
/// is never below 1.
#[test]
fn bench_makespan_reports_each_policy_over_the_lower_bound() {
    let (out, stderr) = run(proofmill().args(["bench", "makespan", "--seed", "3"]));
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    let last = &lines[lines.len().saturating_sub(2)..];
    let mut names = Vec::new();
    for line in last {
        let (name, ratio) = line
            .strip_prefix("policy=")
            .and_then(|l| l.split_once(" makespan_ratio="))
            .unwrap_or_else(|| panic!("not a result line: {line:?}\n{stdout}"));
        let ratio: f64 = ratio.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
        assert!(
            ratio >= 1.0,
            "{line}: the bound is not a lower bound\n{stdout}"
        );
        names.push(name);
    }
    assert_eq!(names, ["oldest-first", "earliest-finish"], "{stdout}");

    let (out, stderr) = run(proofmill().args(["bench", "makespan", "--policy", "earliest-finish"]));
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("policy=earliest-finish makespan_ratio="),
        "{stdout}"
    );
    assert_eq!(stdout.matches("policy=").count(), 1, "{stdout}");
}
