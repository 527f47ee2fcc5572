//! `proofmill monitor` as an operator runs it: in a real terminal (a tmux pane), against a
//! devnet coordinator (with admin tokens) and a prover started with the binary. It shows the
//! prover and the verified batch rising, each batch's commit transaction (the one the HTTP
//! admin API's job listing names), cordons the prover with `c`, quits with `q` and gives the
//! terminal back; with a read-only token, `p` is refused and says why.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

mod common;
use common::procs::{devnet_coordinator, find_addr, prover, tail};
use common::proofmill;
use std::io::{Read, Write};

/// A tmux server of this test alone (its own socket), killed on drop with whatever runs in it.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("tmux");
        cmd.arg("-L").arg(&self.socket).args(args);
        // The pane's shell inherits the server's environment: none of a developer's settings.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("PROOFMILL_") {
                cmd.env_remove(key);
            }
        }
        cmd.env_remove("RUST_LOG").env("TERM", "xterm-256color");
        let out = cmd.output().expect("running tmux");
        assert!(out.status.success(), "tmux {args:?}: {out:?}");
        out
    }

    fn screen(&self, session: &str) -> String {
        String::from_utf8_lossy(&self.run(&["capture-pane", "-p", "-t", session]).stdout)
            .into_owned()
    }

    /// Waits until the pane of the `monitor` session shows what `done` looks for, returning
    /// the screen.
    fn wait_for(&self, what: &str, done: impl Fn(&str) -> bool) -> String {
        self.wait_in("monitor", what, done)
    }

    fn wait_in(&self, session: &str, what: &str, done: impl Fn(&str) -> bool) -> String {
        let until = Instant::now() + Duration::from_secs(90);
        loop {
            let screen = self.screen(session);
            if done(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < until,
                "{what} not on the screen:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

/// `proofmill status --json` with `token`.
fn admin_status(url: &str, token: &str) -> serde_json::Value {
    let status = proofmill()
        .args(["status", "--json", "--coordinator", url])
        .env("PROOFMILL_ADMIN_TOKEN", token)
        .output()
        .unwrap();
    assert!(status.status.success(), "{status:?}");
    serde_json::from_slice(&status.stdout).unwrap()
}

/// `GET path` of the HTTP admin API at `addr` with `token`: the body as JSON.
fn http_get(addr: &str, path: &str, token: &str) -> serde_json::Value {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.1 200"), "{answer}");
    serde_json::from_str(body).unwrap()
}

/// The number after `label ` on the screen.
fn figure(screen: &str, label: &str) -> Option<u64> {
    let at = screen.find(&format!("{label} "))? + label.len() + 1;
    let digits: String = screen[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[test]
fn monitor_in_a_terminal_shows_the_fleet_cordons_and_quits_cleanly() {
    // `scripts/test` installs tmux; without it this test cannot run, and says so.
    assert!(
        Command::new("tmux").arg("-V").output().is_ok(),
        "tmux is not installed: `apt-get install tmux` (scripts/test does)"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path();
    let token = |name: &str, role: &str| {
        let out = proofmill().args(["token", "new"]).output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        let (token, hash) = text.trim().split_once('\n').unwrap();
        (token.to_string(), format!("{name} {role} {hash}\n"))
    };
    let (operator, operator_line) = token("oncall", "operator");
    let (viewer, viewer_line) = token("viewer", "read-only");
    std::fs::write(path.join("admin.tokens"), operator_line + &viewer_line).unwrap();
    let (coord, url) = devnet_coordinator(
        path,
        &[
            "--batch-interval",
            "300",
            "--send-interval",
            "500",
            "--admin-tokens-file",
            "admin.tokens",
            "--admin-listen",
            "127.0.0.1:0",
        ],
    );
    let until = Instant::now() + Duration::from_secs(60);
    let admin = loop {
        if let Some(addr) = find_addr(&coord.log(), "admin HTTP listening") {
            break addr;
        }
        assert!(
            Instant::now() < until,
            "no admin HTTP address:\n{}",
            tail(&coord.log())
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let _prover = prover(path, "m1", &url);

    let tmux = Tmux {
        socket: format!("proofmill-monitor-test-{}", std::process::id()),
    };
    // After the monitor: its exit code, and whether the terminal is back in canonical mode
    // with echo (raw mode turns both off); then the pane stays for capture-pane.
    let bin = env!("CARGO_BIN_EXE_proofmill");
    let script = format!(
        "PROOFMILL_ADMIN_TOKEN={operator} '{bin}' monitor --coordinator {url} --refresh-ms 500; echo \"MONITOR EXITED $?\"; \
         stty -a | tr ' ;' '\\n\\n' | grep -x -e '-\\?icanon' -e '-\\?echo' | sed 's/^/TTY /'; sleep 600"
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "monitor",
        "-x",
        "160",
        "-y",
        "50",
        "sh",
        "-c",
        &script,
    ]);

    let screen = tmux.wait_for("the prover and a verified batch", |s| {
        s.contains("m1") && figure(s, "verified").is_some_and(|v| v >= 1)
    });
    assert!(screen.contains("proofmill monitor"), "{screen}");
    assert!(screen.contains(&url), "{screen}");
    let first = figure(&screen, "verified").unwrap();
    let screen = tmux.wait_for("the verified batch rising", |s| {
        figure(s, "verified").is_some_and(|v| v > first)
    });
    assert!(
        screen.contains("provers (1 of 1 connected)"),
        "{screen}\ncoordinator:\n{}",
        tail(&coord.log())
    );

    // Committed batches name their commit transaction, in the JSON job listing (with the
    // block and gas) and in the batches table's commit tx column (shortened).
    let commit_txs = || {
        let jobs = http_get(&admin, "/v1/jobs?state=proven&limit=1000", &viewer);
        let mut hashes = Vec::new();
        for j in jobs["jobs"].as_array().unwrap() {
            let tx = &j["commit_tx"];
            if let Some(hash) = tx["tx_hash"].as_str() {
                assert_eq!(hash.len(), 66, "{j}");
                assert!(tx["block"].as_u64().unwrap() > 0, "{j}");
                assert!(tx["gas_used"].as_u64().unwrap() > 0, "{j}");
                hashes.push((j["batch"].as_u64().unwrap(), hash[..11].to_string()));
            }
        }
        hashes
    };
    let screen = tmux.wait_for("a batch row with its commit tx", |s| {
        commit_txs().iter().any(|(batch, short)| {
            s.lines()
                .any(|l| l.contains(&format!("│{batch} ")) && l.contains(&format!("{short}…")))
        })
    });
    assert!(screen.contains("commit tx"), "{screen}");
    let verified = http_get(&admin, "/v1/jobs?state=proven&limit=1000", &viewer);
    assert!(
        verified["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["verify_tx"]["tx_hash"].is_string()),
        "{verified}"
    );

    // Tab to the provers table (its one row is selected), `c` cordons it.
    tmux.run(&["send-keys", "-t", "monitor", "Tab"]);
    tmux.run(&["send-keys", "-t", "monitor", "c"]);
    tmux.wait_for("the cordon's result", |s| s.contains("cordon m1: done"));
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let json = admin_status(&url, &viewer);
        let m1 = json["provers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "m1")
            .cloned()
            .unwrap_or_else(|| panic!("no m1 in {json}"));
        if m1["cordoned"] == true {
            break;
        }
        assert!(Instant::now() < until, "m1 not cordoned: {m1}");
        std::thread::sleep(Duration::from_millis(200));
    }
    tmux.wait_for("the cordon in the provers table", |s| {
        s.contains("CORDONED")
    });

    // A read-only token watches, and its `p` is refused with the reason.
    let viewer_script =
        format!("PROOFMILL_ADMIN_TOKEN={viewer} '{bin}' monitor --coordinator {url}; sleep 600");
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "viewer",
        "-x",
        "160",
        "-y",
        "50",
        "sh",
        "-c",
        &viewer_script,
    ]);
    tmux.wait_in("viewer", "the viewer's monitor", |s| s.contains("m1"));
    tmux.run(&["send-keys", "-t", "viewer", "p"]);
    tmux.wait_in("viewer", "the refused pause", |s| {
        s.contains("pause sender failed: PERMISSION_DENIED")
    });
    assert_eq!(admin_status(&url, &viewer)["paused"], serde_json::json!([]));

    tmux.run(&["send-keys", "-t", "monitor", "q"]);
    tmux.wait_for("the monitor's exit", |s| s.contains("MONITOR EXITED"));
    let screen = tmux.wait_for("the terminal modes", |s| s.matches("TTY ").count() >= 2);
    assert!(screen.contains("MONITOR EXITED 0"), "{screen}");
    assert!(screen.contains("TTY icanon"), "raw mode left on:\n{screen}");
    assert!(screen.contains("TTY echo"), "echo left off:\n{screen}");
    // Out of the alternate screen: the monitor's tables are gone.
    let alternate = tmux.run(&["display-message", "-p", "-t", "monitor", "#{alternate_on}"]);
    assert_eq!(String::from_utf8_lossy(&alternate.stdout).trim(), "0");
    assert!(!screen.contains("provers ("), "{screen}");
}
