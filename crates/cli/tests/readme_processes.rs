//! The README's "Running it as separate processes" recipe, run as written: the `proofmill
//! coordinator` and `proofmill prover` commands are read from README.md and started with the
//! default logging (no `RUST_LOG`, default log format), in a fresh working directory (the
//! recipe's paths are relative), once per proof type. Only the port is substituted (the
//! coordinator listens on port 0; the prover and `status` get the bound one) and the proof
//! type. Each run must prove a batch within a bound, with both processes' memory staying
//! sane throughout, and `status` (text and `--json`) and `cordon`/`uncordon` must answer.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{groth16_keys, proofmill};

/// Generous: a debug build on loaded cores, including a first DEV key setup for groth16.
const SERVE_WITHIN: Duration = Duration::from_secs(300);
/// Resident memory either process may reach (peak). A healthy one stays near 150 MB; the
/// arkworks span leak passed 3 GB while loading the groth16 keys.
const MAX_RSS_KB: u64 = 1 << 20;

/// A child process killed (SIGKILL) and reaped on drop, so no test leaves one behind.
struct Proc {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Proc {
    /// `args` run in `cwd`, with the environment `common::proofmill` leaves (no `RUST_LOG`,
    /// no `PROOFMILL_*`), stdout and stderr to `log`.
    fn spawn(name: &'static str, args: &[String], cwd: &Path, log: PathBuf) -> Proc {
        let file = std::fs::File::create(&log).unwrap();
        let child = proofmill()
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        Proc { child, name, log }
    }

    fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Fails (with the log's tail) if the process exited or holds too much memory.
    fn check_alive_and_sane(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.name, tail(&self.log()));
        }
        let (rss, peak) = memory_kb(self.child.id());
        assert!(
            peak <= MAX_RSS_KB,
            "{} reached {peak} kB resident (now {rss} kB), over {MAX_RSS_KB} kB:\n{}",
            self.name,
            tail(&self.log())
        );
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Current and peak resident set of `pid`, kB (`VmRSS`, `VmHWM` of /proc/PID/status).
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ params final-byte (a letter).
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The `proofmill …` commands of the README's "Running it as separate processes" block, as
/// argument lists (continuation lines joined), keyed by subcommand.
fn readme_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap();
    let section = readme
        .split("## Running it as separate processes")
        .nth(1)
        .expect("README has a 'Running it as separate processes' section");
    let block = section
        .split("```sh")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the section starts with an sh block");
    let joined = block.replace("\\\n", " ");
    joined
        .lines()
        .map(|l| l.split('#').next().unwrap().trim())
        .filter_map(|l| l.strip_prefix("proofmill "))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

fn readme_command(sub: &str) -> Vec<String> {
    readme_commands()
        .into_iter()
        .find(|c| c[0] == sub)
        .unwrap_or_else(|| panic!("no `proofmill {sub}` in the README's recipe"))
}

/// Replaces the value of `flag` in `args` (which must have it).
fn set_flag(args: &mut [String], flag: &str, value: &str) {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("the README's command has no {flag}: {args:?}"));
    args[i + 1] = value.to_string();
}

/// The address the coordinator logged in its "coordinator listening" line (default format).
fn bound_addr(coord: &mut Proc) -> String {
    let until = Instant::now() + SERVE_WITHIN;
    while Instant::now() < until {
        coord.check_alive_and_sane();
        let log = coord.log();
        if let Some(at) = log.find("coordinator listening") {
            let rest = &log[at..];
            if let Some(a) = rest.find("addr: ").or_else(|| rest.find("addr=")) {
                let addr: String = rest[a..]
                    .trim_start_matches("addr: ")
                    .trim_start_matches("addr=")
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
                    .collect();
                if addr.parse::<std::net::SocketAddr>().is_ok() {
                    return addr;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("no 'coordinator listening' line:\n{}", tail(&coord.log()));
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

fn readme_recipe_serves(proof_type: &str) {
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("work");
    std::fs::create_dir(&cwd).unwrap();
    if proof_type == "groth16" {
        // The recipe's default key directory, shared with the crate's other tests so the
        // DEV setup runs once (loading still synthesizes the circuit to check the keys).
        let keys = groth16_keys();
        std::fs::create_dir_all(&keys).unwrap();
        std::fs::create_dir(cwd.join("proofmill-data")).unwrap();
        std::os::unix::fs::symlink(&keys, cwd.join("proofmill-data/keys")).unwrap();
    }

    let mut args = readme_command("coordinator");
    set_flag(&mut args, "--listen", "127.0.0.1:0");
    set_flag(&mut args, "--proof-types", proof_type);
    let mut coord = Proc::spawn("coordinator", &args, &cwd, dir.path().join("c.log"));
    let url = format!("http://{}", bound_addr(&mut coord));

    let mut args = readme_command("prover");
    set_flag(&mut args, "--coordinators", &url);
    set_flag(&mut args, "--backend", proof_type);
    let mut prover = Proc::spawn("prover", &args, &cwd, dir.path().join("p.log"));

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
        coord.check_alive_and_sane();
        prover.check_alive_and_sane();
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
    assert!(
        status["jobs"][proof_type]["proven"].as_u64() >= Some(1),
        "{status}"
    );
    let text = run_ok(&status_text, &cwd);
    assert!(text.contains(proof_type), "{text}");

    // The recipe's cordon command (and `uncordon`) on the prover it started.
    let id = status["provers"][0]["id"].as_str().unwrap().to_string();
    for sub in ["cordon", "uncordon"] {
        let mut args = readme_command("cordon");
        args[0] = sub.to_string();
        set_flag(&mut args, "--coordinator", &url);
        set_flag(&mut args, "--prover-id", &id);
        run_ok(&args, &cwd);
    }
    coord.check_alive_and_sane();
    prover.check_alive_and_sane();
}

#[test]
fn groth16() {
    readme_recipe_serves("groth16");
}

#[test]
fn stark() {
    readme_recipe_serves("stark");
}

#[test]
fn exec() {
    readme_recipe_serves("exec");
}
