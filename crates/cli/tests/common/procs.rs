//! Child processes for tests that run the binary the way an operator does.
#![allow(dead_code)] // not every test binary uses every helper

use super::proofmill;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

/// A `proofmill` child process, killed (SIGKILL) and reaped on drop, so no test leaves one
/// behind. Its stdout and stderr go to a log file.
pub struct Proc {
    pub child: Child,
    pub name: String,
    log: PathBuf,
}

impl Proc {
    /// `proofmill <args>` in `cwd`, with the environment [`proofmill`] leaves (no `RUST_LOG`,
    /// no `PROOFMILL_*`) plus `envs`.
    pub fn spawn(
        name: impl Into<String>,
        args: &[String],
        cwd: &Path,
        log: PathBuf,
        envs: &[(&str, &str)],
    ) -> Proc {
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        Self::start(name.into(), args, cwd, log, envs, file)
    }

    /// Like [`Proc::spawn`], but appends to `log`: a process started again after a kill
    /// keeps one log with the lines of all its runs.
    pub fn spawn_appending(
        name: impl Into<String>,
        args: &[String],
        cwd: &Path,
        log: PathBuf,
        envs: &[(&str, &str)],
    ) -> Proc {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("opening {}: {e}", log.display()));
        Self::start(name.into(), args, cwd, log, envs, file)
    }

    fn start(
        name: String,
        args: &[String],
        cwd: &Path,
        log: PathBuf,
        envs: &[(&str, &str)],
        file: std::fs::File,
    ) -> Proc {
        let child = proofmill()
            .args(args)
            .envs(envs.iter().copied())
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        Proc { child, name, log }
    }

    /// `kill -9` and reap. False when it had already exited.
    pub fn kill9(&mut self) -> bool {
        let alive = self.is_alive();
        let _ = self.child.kill();
        let _ = self.child.wait();
        alive
    }

    /// Whether the process is still running.
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its log's lines that are JSON objects (`PROOFMILL_LOG_FORMAT=json`); a line cut short
    /// by a kill is skipped.
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// What it logged so far, without terminal colours.
    pub fn log(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// Panics (with the log's tail) if the process has exited.
    pub fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!("{} exited ({status}):\n{}", self.name, tail(&self.log()));
        }
    }

    /// Sends `sig` (`STOP`, `CONT`, `TERM`, …) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(ok.success(), "kill -{sig} {}", self.name);
    }

    /// Current and peak resident set, kB (`VmRSS`, `VmHWM` of /proc/PID/status).
    pub fn memory_kb(&self) -> (u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap_or(0)
        };
        (field("VmRSS:"), field("VmHWM:"))
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A stopped process must be continued to die promptly.
        let _ = std::process::Command::new("kill")
            .arg("-CONT")
            .arg(self.child.id().to_string())
            .stderr(Stdio::null())
            .status();
        self.kill9();
    }
}

/// The address a coordinator logged in its "coordinator listening" line, waiting for it.
pub fn listening_addr(coord: &mut Proc, within: Duration) -> String {
    logged_addr(coord, "coordinator listening", 0, within)
}

/// The `addr` of the first line logging `message` after the log's first `after_line` lines
/// (a process started again appends to its log), waiting for it.
pub fn logged_addr(p: &mut Proc, message: &str, after_line: usize, within: Duration) -> String {
    let until = Instant::now() + within;
    while Instant::now() < until {
        p.check_alive();
        let log = p.log();
        let fresh: String = log.lines().skip(after_line).collect::<Vec<_>>().join("\n");
        if let Some(addr) = find_logged_addr(&fresh, message) {
            return addr;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no '{message}' line:\n{}", tail(&p.log()));
}

/// The address in a coordinator's "coordinator listening" line.
pub fn find_listening_addr(log: &str) -> Option<String> {
    find_logged_addr(log, "coordinator listening")
}

/// The `addr` field of the first line logging `message`, in any log format: pretty and
/// compact print `addr: A` / `addr=A` (pretty may put it on the next line), JSON
/// `"addr":"A"`.
pub fn find_logged_addr(log: &str, message: &str) -> Option<String> {
    let at = log.find(message)?;
    let rest = &log[at..];
    let rest = &rest[..rest.len().min(300)];
    let a = rest.find("addr")?;
    let addr: String = rest[a + 4..]
        .trim_start_matches([':', '=', ' ', '"'])
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':')
        .collect();
    addr.parse::<std::net::SocketAddr>().is_ok().then_some(addr)
}

pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, then a letter.
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

/// The last 40 lines of a log.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A devnet coordinator (exec proofs, the embedded L1) on a free port, its data in
/// `dir/data`, plus `extra` options; returns it and its gRPC URL once it listens.
pub fn devnet_coordinator(dir: &Path, extra: &[&str]) -> (Proc, String) {
    let args: Vec<String> = [
        "coordinator",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        "data",
        "--devnet",
        "--proof-types",
        "exec",
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect();
    let mut coord = Proc::spawn("coordinator", &args, dir, dir.join("coordinator.log"), &[]);
    let url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    (coord, url)
}

/// A prover named `name` serving `url` (its default backend, exec), logging to
/// `dir/prover-NAME.log`.
pub fn prover(dir: &Path, name: &str, url: &str) -> Proc {
    prover_with(dir, name, url, &[])
}

/// [`prover`] with `extra` options.
pub fn prover_with(dir: &Path, name: &str, url: &str, extra: &[&str]) -> Proc {
    let args: Vec<String> = ["prover", "--name", name, "--coordinators", url]
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
    Proc::spawn(
        format!("prover {name}"),
        &args,
        dir,
        dir.join(format!("prover-{name}.log")),
        &[],
    )
}
