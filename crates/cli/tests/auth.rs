//! Authentication and TLS as an operator runs them, with the built binary: `--insecure`,
//! `proofmill token`, a TLS coordinator with admin and prover tokens, the admin commands
//! with `--admin-token`, and the messages for a URL whose scheme does not match the server.

mod common;

use common::pki::Pki;
use common::procs::{Proc, listening_addr, tail};
use common::proofmill;
use std::io::Write as _;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

fn run(args: &[&str], cwd: &Path) -> (Output, String, String) {
    let out = proofmill().args(args).current_dir(cwd).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// `proofmill token new`: (token, hash line).
fn new_token(cwd: &Path) -> (String, String) {
    let (out, stdout, stderr) = run(&["token", "new"], cwd);
    assert!(out.status.success(), "{stderr}");
    let mut lines = stdout.lines();
    let token = lines.next().unwrap().to_string();
    let hash = lines.next().unwrap().to_string();
    assert_eq!(token.len(), 64, "{stdout}");
    assert!(hash.starts_with("sha256:"), "{stdout}");
    (token, hash)
}

/// `echo TOKEN | proofmill token hash`.
fn hash_of(token: &str, cwd: &Path) -> String {
    let mut child = proofmill()
        .args(["token", "hash"])
        .current_dir(cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn non_loopback_without_auth_needs_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["coordinator", "--l1", "none", "--data-dir", "data"];
    let with = |extra: &[&str]| {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        run(&a, dir.path())
    };
    let (out, _, stderr) = with(&["--listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    for words in [
        "refusing to listen on 0.0.0.0:0",
        "prover authentication (--prover-token or --prover-tokens-file)",
        "admin authentication (--admin-tokens-file)",
        "--insecure",
    ] {
        assert!(stderr.contains(words), "{words:?} not in {stderr}");
    }
    // Refused before touching anything.
    assert!(!dir.path().join("data").exists());

    let (out, _, stderr) = with(&["--listen", "0.0.0.0:0", "--prover-token", "fleet"]);
    assert!(!out.status.success());
    assert!(stderr.contains("without admin authentication"), "{stderr}");
    assert!(!stderr.contains("prover authentication"), "{stderr}");

    // The HTTP admin API alike, however its gRPC port listens.
    let (out, _, stderr) = with(&["--listen", "127.0.0.1:0", "--admin-listen", "0.0.0.0:0"]);
    assert!(!out.status.success());
    assert!(
        stderr.contains("refusing to serve the admin HTTP API on 0.0.0.0:0")
            && stderr.contains("--admin-tokens-file"),
        "{stderr}"
    );
    assert!(!dir.path().join("data").exists());

    // With --insecure (here from the environment), it starts.
    let mut a = strings(&base);
    a.extend(strings(&["--listen", "0.0.0.0:0"]));
    let mut coord = Proc::spawn(
        "coordinator",
        &a,
        dir.path(),
        dir.path().join("insecure.log"),
        &[("PROOFMILL_INSECURE", "true")],
    );
    listening_addr(&mut coord, Duration::from_secs(60));
    assert!(coord.log().contains("--insecure"), "{}", tail(&coord.log()));
    drop(coord);

    // With both kinds of authentication it starts without --insecure.
    let (_, ops_hash) = new_token(dir.path());
    std::fs::write(
        dir.path().join("admin.tokens"),
        format!("ops operator {ops_hash}\n"),
    )
    .unwrap();
    let mut a = strings(&base);
    a.extend(strings(&[
        "--listen",
        "0.0.0.0:0",
        "--prover-token",
        "fleet",
        "--admin-tokens-file",
        "admin.tokens",
    ]));
    let mut coord = Proc::spawn(
        "coordinator",
        &a,
        dir.path(),
        dir.path().join("auth.log"),
        &[],
    );
    listening_addr(&mut coord, Duration::from_secs(60));
    assert!(
        coord.log().contains("without TLS"),
        "{}",
        tail(&coord.log())
    );
}

#[test]
fn tls_coordinator_with_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new("proofmill test CA");
    let ca = pki.write_ca(d, "ca");
    let (cert, key) = pki.write_leaf(d, "server", &["localhost", "127.0.0.1"], true);
    let (ops_token, ops_hash) = new_token(d);
    let view_token = "a-read-only-token-for-dashboards";
    let view_hash = hash_of(view_token, d);
    std::fs::write(
        d.join("admin.tokens"),
        format!("# role tokens\nops operator {ops_hash}\ndash read-only {view_hash}\n"),
    )
    .unwrap();
    let fleet = "fleet-secret-4c1e2b";
    let a = strings(&[
        "coordinator",
        "--l1",
        "none",
        "--data-dir",
        "data",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--admin-tokens-file",
        "admin.tokens",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let mut coord = Proc::spawn(
        "coordinator",
        &a,
        d,
        d.join("coordinator.log"),
        &[("PROOFMILL_PROVER_TOKEN", fleet)],
    );
    let addr = listening_addr(&mut coord, Duration::from_secs(60));
    let port = addr.rsplit(':').next().unwrap();
    let https = format!("https://127.0.0.1:{port}");
    let ca = ca.to_str().unwrap();
    let admin = |cmd: &[&str], token: Option<&str>| {
        let mut a: Vec<&str> = cmd.to_vec();
        a.extend(["--coordinator", &https, "--tls-ca", ca]);
        if let Some(t) = token {
            a.extend(["--admin-token", t]);
        }
        run(&a, d)
    };

    // Reads: with either token; without one, refused.
    let (out, stdout, stderr) = admin(&["status", "--json"], Some(view_token));
    assert!(out.status.success(), "{stderr}");
    assert!(stdout.contains("\"provers\""), "{stdout}");
    let (out, _, stderr) = admin(&["status"], None);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Unauthenticated") && stderr.contains("missing admin token"),
        "{stderr}"
    );
    let (out, _, stderr) = admin(&["status"], Some("not-a-token"));
    assert!(!out.status.success());
    assert!(stderr.contains("Unauthenticated"), "{stderr}");

    // A prover over TLS with the fleet token registers.
    let prover_args = strings(&[
        "prover",
        "--coordinators",
        &https,
        "--tls-ca",
        ca,
        "--name",
        "tls-prover",
        "--data-dir",
        "pdata",
    ]);
    let mut prover = Proc::spawn(
        "prover",
        &prover_args,
        d,
        d.join("prover.log"),
        &[("PROOFMILL_PROVER_TOKEN", fleet)],
    );
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        prover.check_alive();
        let (_, stdout, _) = admin(&["status", "--json"], Some(view_token));
        if stdout.contains("tls-prover") {
            break;
        }
        assert!(
            Instant::now() < until,
            "prover never registered:\n{}",
            tail(&prover.log())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(prover);

    // Controls: read-only is denied; operator passes (the prover id is unknown: the
    // coordinator's own answer, not a refusal).
    let cordon = ["cordon", "--prover-id", "nobody"];
    let (out, _, stderr) = admin(&cordon, Some(view_token));
    assert!(!out.status.success());
    assert!(
        stderr.contains("PermissionDenied") && stderr.contains("needs operator"),
        "{stderr}"
    );
    let (out, _, stderr) = admin(&cordon, Some(&ops_token));
    assert!(!out.status.success());
    assert!(
        !stderr.contains("PermissionDenied") && !stderr.contains("Unauthenticated"),
        "{stderr}"
    );

    // http:// to this TLS port: said plainly.
    let (out, _, stderr) = run(
        &[
            "status",
            "--coordinator",
            &format!("http://127.0.0.1:{port}"),
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(stderr.contains("serves TLS: use https://"), "{stderr}");

    // The HTTP admin API serves the same identity over TLS and takes the same tokens.
    let http_addr = coord
        .log()
        .lines()
        .find(|l| l.contains("admin HTTP listening"))
        .and_then(|l| l.split("addr=").nth(1))
        .map(|a| a.split_whitespace().next().unwrap().to_string())
        .expect("the admin HTTP address in the log");
    let curl = |url: &str, token: Option<&str>| {
        let mut c = std::process::Command::new("curl");
        c.args([
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            ca,
            "-w",
            "\n%{http_code}",
        ]);
        if let Some(t) = token {
            c.args(["-H", &format!("Authorization: Bearer {t}")]);
        }
        let out = c.arg(url).output().expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let https_admin = format!("https://{http_addr}");
    let (ok, body, err) = curl(&format!("{https_admin}/v1/status"), Some(view_token));
    assert!(
        ok && body.ends_with("\n200") && body.contains("\"provers\""),
        "{body} {err}"
    );
    let (ok, body, err) = curl(&format!("{https_admin}/v1/status"), None);
    assert!(
        ok && body.ends_with("\n401") && body.contains("UNAUTHENTICATED"),
        "{body} {err}"
    );
    let (ok, body, err) = curl(
        &format!("{https_admin}/v1/components/sender/pause"),
        Some(view_token),
    );
    // A GET on a POST route: 405 before any role check matters; the POST below is the check.
    assert!(ok && body.ends_with("\n405"), "{body} {err}");
    let pause = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "20",
            "--cacert",
            ca,
            "-w",
            "\n%{http_code}",
            "-X",
            "POST",
        ])
        .args(["-H", &format!("Authorization: Bearer {view_token}")])
        .arg(format!("{https_admin}/v1/components/sender/pause"))
        .output()
        .unwrap();
    let body = String::from_utf8_lossy(&pause.stdout);
    assert!(
        body.ends_with("\n403") && body.contains("PERMISSION_DENIED"),
        "{body}"
    );
    let (ok, body, _) = curl(&format!("{https_admin}/health"), None);
    assert!(ok && body.ends_with("\n200"), "{body}");
    // Plain HTTP to it gets no answer an HTTP client takes.
    let (ok, body, _) = curl(&format!("http://{http_addr}/health"), None);
    assert!(!ok || !body.ends_with("\n200"), "{body}");

    // `--print-config` and the log never show a secret.
    let (out, stdout, _) = run(
        &["status", "--admin-token", &ops_token, "--print-config"],
        d,
    );
    assert!(out.status.success());
    assert!(stdout.contains("admin_token = \"<redacted>\""), "{stdout}");
    assert!(!stdout.contains(&ops_token), "{stdout}");
    let log = coord.log();
    for secret in [ops_token.as_str(), view_token, fleet] {
        assert!(!log.contains(secret), "a secret in the coordinator's log");
    }
    assert!(log.contains("admin call refused"), "{}", tail(&log));
    coord.check_alive();
}

#[test]
fn https_to_a_plaintext_coordinator_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = strings(&[
        "coordinator",
        "--l1",
        "none",
        "--data-dir",
        "data",
        "--listen",
        "127.0.0.1:0",
    ]);
    let mut coord = Proc::spawn("coordinator", &a, d, d.join("coordinator.log"), &[]);
    let addr = listening_addr(&mut coord, Duration::from_secs(60));
    let (out, _, stderr) = run(&["status", "--coordinator", &format!("https://{addr}")], d);
    assert!(!out.status.success());
    assert!(stderr.contains("serves plaintext: use http://"), "{stderr}");
    // And the prover says the same in its log (and retries).
    let p = strings(&[
        "prover",
        "--coordinators",
        &format!("https://{addr}"),
        "--data-dir",
        "pdata",
    ]);
    let prover = Proc::spawn("prover", &p, d, d.join("prover.log"), &[]);
    let until = Instant::now() + Duration::from_secs(60);
    while !prover.log().contains("serves plaintext: use http://") {
        assert!(Instant::now() < until, "{}", tail(&prover.log()));
        std::thread::sleep(Duration::from_millis(200));
    }
    // TLS options with an http:// URL: refused at startup.
    let ca = Pki::new("ca").write_ca(d, "ca");
    let (out, _, stderr) = run(
        &[
            "prover",
            "--coordinators",
            &format!("http://{addr}"),
            "--tls-ca",
            ca.to_str().unwrap(),
            "--data-dir",
            "pdata",
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(stderr.contains("use https://"), "{stderr}");
}

#[test]
fn mutual_tls_for_admin_commands() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let pki = Pki::new("proofmill test CA");
    let ca = pki.write_ca(d, "ca");
    let (cert, key) = pki.write_leaf(d, "server", &["localhost"], true);
    let (client_cert, client_key) = pki.write_leaf(d, "admin", &["admin"], false);
    let a = strings(&[
        "coordinator",
        "--l1",
        "none",
        "--data-dir",
        "data",
        "--listen",
        "127.0.0.1:0",
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
        "--tls-client-ca",
        ca.to_str().unwrap(),
    ]);
    let mut coord = Proc::spawn("coordinator", &a, d, d.join("coordinator.log"), &[]);
    let addr = listening_addr(&mut coord, Duration::from_secs(60));
    let port = addr.rsplit(':').next().unwrap();
    // The certificate names localhost, not the IP.
    let https = format!("https://localhost:{port}");
    let status = |extra: &[&str]| {
        let mut a = vec![
            "status",
            "--coordinator",
            &https,
            "--tls-ca",
            ca.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        run(&a, d)
    };
    let (out, _, stderr) = status(&[]);
    assert!(
        !out.status.success(),
        "admitted without a client certificate"
    );
    assert!(
        stderr.contains("cannot reach coordinator") || stderr.contains("failed"),
        "{stderr}"
    );
    let (out, _, stderr) = status(&[
        "--tls-cert",
        client_cert.to_str().unwrap(),
        "--tls-key",
        client_key.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{stderr}");
    let (out, _, stderr) = status(&["--tls-cert", client_cert.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr.contains("--tls-cert and --tls-key go together"),
        "{stderr}"
    );
    coord.check_alive();
}

#[test]
fn bad_security_files_are_named_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("admin.tokens"), "ops admin sha256:00\n").unwrap();
    std::fs::write(d.join("provers.tokens"), "gpu-1 deadbeef\n").unwrap();
    std::fs::write(d.join("bad.pem"), "not a certificate").unwrap();
    let base = ["coordinator", "--l1", "none", "--data-dir", "data"];
    for (extra, words) in [
        (
            &["--admin-tokens-file", "admin.tokens"][..],
            "--admin-tokens-file admin.tokens: line 1: unknown role `admin`",
        ),
        (
            &["--prover-tokens-file", "provers.tokens"][..],
            "--prover-tokens-file provers.tokens: line 1: a token hash starts with `sha256:`",
        ),
        (
            &["--prover-tokens-file", "missing.tokens"][..],
            "cannot read --prover-tokens-file",
        ),
        (
            &["--tls-cert", "bad.pem"][..],
            "--tls-cert and --tls-key go together",
        ),
        (
            &["--tls-client-ca", "bad.pem"][..],
            "--tls-client-ca needs --tls-cert",
        ),
        (
            &["--tls-cert", "bad.pem", "--tls-key", "bad.pem"][..],
            "TLS",
        ),
    ] {
        let mut a: Vec<&str> = base.to_vec();
        a.extend_from_slice(extra);
        let (out, _, stderr) = run(&a, d);
        assert!(!out.status.success(), "{extra:?} started");
        assert!(
            stderr.contains(words),
            "{extra:?}: {words:?} not in {stderr}"
        );
    }
    assert!(!d.join("data").exists());
}
