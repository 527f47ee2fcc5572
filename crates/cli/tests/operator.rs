//! What an operator tried and stumbled on, run as they ran it: log colours in files, bad
//! environment values, `--print-config`, `--listen` with a host name, `--data-dir`, a prover
//! with the wrong token, and watching the demo with `status`.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::procs::{Proc, listening_addr, tail};
use common::proofmill;
use proofmill_proto::v1::StatusInfoRequest;
use proofmill_proto::v1::admin_service_client::AdminServiceClient;

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("run proofmill");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Polls `what` every 200 ms until it returns `Some`, panicking after `within`.
fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + within;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `proofmill status --json` of the coordinator at `url`, or `None` when it does not answer.
fn status_json(url: &str) -> Option<serde_json::Value> {
    let out = proofmill()
        .args(["status", "--json", "--coordinator", url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).expect("status --json prints JSON"))
}

/// A prover pointed at a port nothing listens on logs a warning at once and retries: a
/// quick way to get a log line out of the binary.
fn prover_logging_for(secs: u32, log_format: &str, dir: &Path) -> Command {
    let port = closed_port();
    let mut cmd = Command::new("timeout");
    cmd.arg(secs.to_string())
        .arg(env!("CARGO_BIN_EXE_proofmill"))
        .args(["prover", "--log-format", log_format, "--coordinators"])
        .arg(format!("http://127.0.0.1:{port}"))
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PROOFMILL_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Waits for `p` to exit on its own; panics with its log if it runs on past `within`.
fn exit_code_within(p: &mut Proc, within: Duration) -> Option<i32> {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(
            Instant::now() < until,
            "{} still runs after {within:?}:\n{}",
            p.name,
            tail(&p.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port() // closed again when the listener drops
}

const ESC: char = '\u{1b}';

/// `pretty` and `compact` colour a terminal only: not a file or pipe, and not a terminal
/// with NO_COLOR set. The default format off a terminal is one line per event.
#[test]
fn logs_are_coloured_only_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    for format in ["pretty", "compact"] {
        let out = prover_logging_for(2, format, dir.path())
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(log.contains("coordinator unreachable"), "{format}: {log}");
        assert!(
            !log.contains(ESC),
            "{format} log to a pipe has colour codes:\n{log}"
        );
    }

    // The default (`auto`) to a file: every line is an event of its own, with its fields.
    let out = prover_logging_for(2, "auto", dir.path())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = log.lines().filter(|l| !l.is_empty()).collect();
    assert!(!lines.is_empty());
    for line in &lines {
        assert!(
            line.starts_with(|c: char| c.is_ascii_digit()),
            "not an event line of its own (a pretty continuation?): {line:?}\n{log}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.contains("coordinator unreachable") && l.contains("error=")),
        "{log}"
    );

    // On a terminal (script(1) gives it one), colour; with NO_COLOR, none.
    let in_terminal = |no_color: Option<&str>| {
        let prover = prover_logging_for(2, "pretty", dir.path());
        let line = std::iter::once(prover.get_program())
            .chain(prover.get_args())
            .map(|a| format!("'{}'", a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ");
        let mut script = Command::new("script");
        script
            .args(["-qec", &line, "/dev/null"])
            .current_dir(dir.path())
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        if let Some(v) = no_color {
            script.env("NO_COLOR", v);
        }
        let out = script.output().expect("script(1) from util-linux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let coloured = in_terminal(None);
    assert!(coloured.contains("coordinator unreachable"), "{coloured}");
    assert!(
        coloured.contains(ESC),
        "no colour on a terminal:\n{coloured}"
    );
    let plain = in_terminal(Some("1"));
    assert!(plain.contains("coordinator unreachable"), "{plain}");
    assert!(!plain.contains(ESC), "colour despite NO_COLOR:\n{plain}");
}

/// A bad value from the environment names the variable, not the flag the operator never
/// typed; from the command line it still names the flag. A value outside a fixed set lists
/// the valid ones, from the environment and from the config file alike.
#[test]
fn bad_values_name_where_they_came_from() {
    let (out, _, stderr) = run(proofmill()
        .arg("coordinator")
        .env("PROOFMILL_MAX_ATTEMPTS", "five"));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: invalid value 'five' in environment variable PROOFMILL_MAX_ATTEMPTS \
             (the variable of --max-attempts): invalid digit"
        ),
        "{stderr}"
    );

    let (out, _, stderr) = run(proofmill()
        .args(["coordinator", "--max-attempts", "five"])
        .env("PROOFMILL_MAX_ATTEMPTS", "5"));
    assert!(!out.status.success());
    assert!(stderr.contains("for '--max-attempts"), "{stderr}");
    assert!(!stderr.contains("PROOFMILL_MAX_ATTEMPTS"), "{stderr}");

    let (out, _, stderr) = run(proofmill()
        .arg("status")
        .env("PROOFMILL_LOG_FORMAT", "fancy"));
    assert!(!out.status.success());
    assert!(
        stderr.contains("in environment variable PROOFMILL_LOG_FORMAT")
            && stderr.contains("valid values: auto, pretty, compact, json"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(&file, "l1 = \"sepolia\"\n").unwrap();
    let (out, _, stderr) = run(proofmill().arg("coordinator").arg("--config").arg(&file));
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "config file {}: invalid value for `l1`",
            file.display()
        )) && stderr.contains("valid values: none, embedded, rpc"),
        "{stderr}"
    );
}

/// `--print-config` prints every option of the subcommand with its source, in the config
/// file's syntax, secrets redacted, and exits without starting anything.
#[test]
fn print_config_shows_every_value_with_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "batch_size = 4\nproof_types = [\"exec\", \"audit:exec\"]\n",
    )
    .unwrap();
    let (out, stdout, stderr) = run(proofmill()
        .args(["coordinator", "--print-config", "--seed", "3"])
        .args(["--prover-token", "hunter2"])
        .args(["--db", "postgres://pm:pw-in-url@db.internal:5432/pm"])
        .arg("--config")
        .arg(&file)
        .current_dir(dir.path())
        .env("PROOFMILL_MAX_ATTEMPTS", "7"));
    assert!(out.status.success(), "{stderr}");
    let has = |line: &str| {
        assert!(
            stdout.lines().any(|l| l == line),
            "no line {line:?} in:\n{stdout}"
        )
    };
    let from_file = format!("  # file {}", file.display());
    has(&format!("batch_size = 4{from_file}"));
    has(&format!(
        "proof_types = [\"exec\", \"audit:exec\"]{from_file}"
    ));
    has("max_attempts = 7  # env PROOFMILL_MAX_ATTEMPTS");
    has("seed = 3  # flag");
    has("prover_token = \"<redacted>\"  # flag");
    has("db = \"postgres://pm:***@db.internal:5432/pm\"  # flag");
    has("listen = \"127.0.0.1:3900\"  # default");
    has("devnet = false  # default");
    let data = dir.path().join("proofmill-data");
    has("data_dir = \"./proofmill-data\"  # default");
    has(&format!(
        "blobs = \"file://{}\"  # derived from data_dir",
        data.join("blobs").display()
    ));
    has(&format!(
        "l1_state = \"{}\"  # derived from data_dir",
        data.join("l1.log").display()
    ));
    has("# l1_rpc_url (unset)");
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("pw-in-url"),
        "{stdout}"
    );
    assert!(!data.exists(), "--print-config created the data dir");
    // It reads back as a config file.
    let table: toml::Table = stdout.parse().unwrap_or_else(|e| panic!("{e}\n{stdout}"));
    assert_eq!(table["max_attempts"].as_integer(), Some(7));
    assert_eq!(table["devnet"].as_bool(), Some(false));
}

/// A coordinator without settlement or devnet, its data in `dir/data`, plus `extra` options.
fn plain_coordinator(dir: &Path, extra: &[&str]) -> Proc {
    let mut a = args(&["coordinator", "--l1", "none", "--data-dir", "data"]);
    a.extend(args(extra));
    Proc::spawn("coordinator", &a, dir, dir.join("coordinator.log"), &[])
}

/// `--listen` takes a host name; a name that does not resolve, or no port, is a clear error.
#[test]
fn listen_resolves_host_names() {
    let dir = tempfile::tempdir().unwrap();
    let port = closed_port();
    let mut coord = plain_coordinator(dir.path(), &["--listen", &format!("localhost:{port}")]);
    let addr = listening_addr(&mut coord, Duration::from_secs(60));
    assert!(addr.ends_with(&format!(":{port}")), "{addr}");
    let status = wait_for("status", Duration::from_secs(30), || {
        status_json(&format!("http://localhost:{port}"))
    });
    assert_eq!(status["standby"], false, "{status}");
    drop(coord);

    for (listen, needle) in [
        ("no-such-host.invalid:3900", "cannot resolve the host"),
        ("localhost", "expected HOST:PORT"),
    ] {
        let (out, _, stderr) = run(proofmill().args(["coordinator", "--listen", listen]));
        assert!(!out.status.success(), "{listen}");
        assert!(stderr.contains(needle), "{listen}: {stderr}");
    }
}

/// Every default path lives in `--data-dir`, none in the working directory; an embedded L1
/// state that belongs to another store is named in the error, with what to do about it.
#[test]
fn data_dir_holds_every_default_path() {
    let cwd = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let devnet = |seed: &str, data_dir: &Path| {
        let mut a = args(&[
            "coordinator",
            "--devnet",
            "--batch-interval",
            "100",
            "--send-interval",
            "200",
            "--seed",
            seed,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
        ]);
        a.push(data_dir.display().to_string());
        a
    };
    let mut coord = Proc::spawn(
        "coordinator",
        &devnet("1", data.path()),
        cwd.path(),
        cwd.path().join("first.log"),
        &[],
    );
    let url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    wait_for("a batch committed on L1", Duration::from_secs(60), || {
        coord.check_alive();
        status_json(&url).filter(|s| s["last_committed_batch"].as_u64() >= Some(1))
    });
    drop(coord);
    for file in ["proofmill.db", "blobs", "l1.log"] {
        assert!(data.path().join(file).exists(), "no {file} in the data dir");
    }
    assert!(
        !cwd.path().join("proofmill-data").exists(),
        "a default path went to the working directory"
    );

    // Another store with the first one's L1 state: refused, naming the file.
    let other = tempfile::tempdir().unwrap();
    let l1_state = data.path().join("l1.log");
    let mut a = devnet("2", other.path());
    a.extend(["--l1-state".to_string(), l1_state.display().to_string()]);
    let mut second = Proc::spawn(
        "second coordinator",
        &a,
        cwd.path(),
        cwd.path().join("second.log"),
        &[],
    );
    let code = exit_code_within(&mut second, Duration::from_secs(60));
    let stderr = second.log();
    assert_eq!(code, Some(1), "{}", tail(&stderr));
    assert!(
        stderr.contains(&format!(
            "the embedded L1's state {} does not belong to the store",
            l1_state.display()
        )) && stderr.contains("move or delete that file"),
        "{}",
        tail(&stderr)
    );
}

/// A prover with the wrong token: the coordinator logs who was refused (name, address) and
/// neither token; the prover says plainly that its credentials are refused. The
/// coordinator's StatusInfo shows where each setting came from, the token redacted.
#[test]
fn refused_prover_is_named_and_told_why() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = args(&["coordinator", "--l1", "none", "--data-dir", "data"]);
    a.extend(args(&[
        "--listen",
        "127.0.0.1:0",
        "--prover-token",
        "right-secret-1",
    ]));
    let log = dir.path().join("coordinator.log");
    let env = [("PROOFMILL_MAX_ATTEMPTS", "7")];
    let mut coord = Proc::spawn("coordinator", &a, dir.path(), log, &env);
    let url = format!(
        "http://{}",
        listening_addr(&mut coord, Duration::from_secs(60))
    );
    let prover = Proc::spawn(
        "prover",
        &args(&[
            "prover",
            "--name",
            "box-7",
            "--coordinators",
            &url,
            "--prover-token",
            "wrong-secret-2",
        ]),
        dir.path(),
        dir.path().join("prover.log"),
        &[],
    );
    let line = wait_for(
        "the refusal in the coordinator's log",
        Duration::from_secs(60),
        || {
            coord
                .log()
                .lines()
                .find(|l| l.contains("prover registration rejected"))
                .map(str::to_string)
        },
    );
    assert!(
        line.contains("name=box-7") && line.contains("peer=127.0.0.1:"),
        "{line}"
    );
    wait_for("the prover's complaint", Duration::from_secs(30), || {
        prover
            .log()
            .contains("the coordinator refused this prover's credentials")
            .then_some(())
    });
    for log in [coord.log(), prover.log()] {
        assert!(
            !log.contains("right-secret-1") && !log.contains("wrong-secret-2"),
            "a token in a log:\n{log}"
        );
    }

    // StatusInfo tells the configuration with each value's source, the token redacted.
    let info = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut admin = AdminServiceClient::connect(url.clone()).await.unwrap();
        admin
            .status_info(StatusInfoRequest {})
            .await
            .unwrap()
            .into_inner()
    });
    let value = |key: &str| {
        let c = info
            .config
            .iter()
            .find(|c| c.key == key)
            .unwrap_or_else(|| panic!("no {key} in {:?}", info.config));
        (c.value.clone(), c.source.clone())
    };
    assert_eq!(
        value("max_attempts"),
        ("7".into(), "env PROOFMILL_MAX_ATTEMPTS".into())
    );
    assert_eq!(value("l1"), ("\"none\"".into(), "flag".into()));
    assert_eq!(value("intake_window"), ("1024".into(), "default".into()));
    let (token, source) = value("prover_token");
    assert!(
        token.contains("<redacted>") && source == "flag",
        "{token} {source}"
    );
    assert!(!format!("{info:?}").contains("right-secret-1"));
    assert_eq!(info.l1, "none");
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));
    assert!(
        info.uptime_ms > 0 && info.store.starts_with("sqlite://"),
        "{info:?}"
    );
}

/// The demo prints its coordinator's address, and `status` watches it there, with the
/// required proof types and the draining flag in `--json`.
#[test]
fn demo_prints_its_address_for_status() {
    let dir = tempfile::tempdir().unwrap();
    let demo = Proc::spawn(
        "demo",
        &args(&[
            "demo",
            "--proof-types",
            "exec",
            "--batches",
            "1000",
            "--provers",
            "1",
            "--data-dir",
            "data",
        ]),
        dir.path(),
        dir.path().join("demo.log"),
        &[],
    );
    let url = wait_for("the demo's address", Duration::from_secs(60), || {
        let log = demo.log();
        let rest = log.split("coordinator gRPC at ").nth(1)?;
        Some(rest.split_whitespace().next()?.to_string())
    });
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let status = wait_for("status of the demo", Duration::from_secs(30), || {
        status_json(&url)
    });
    assert_eq!(
        status["required_proof_types"],
        serde_json::json!(["exec"]),
        "{status}"
    );
    assert_eq!(status["draining"], false, "{status}");
}
