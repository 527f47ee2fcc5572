//! The `command` backend against small POSIX sh scripts standing in for zkVM provers.

use proofmill_backend::{
    Backend, BackendError, Cancel, CommandBackend, CommandConfig, ProveRequest, VerifyError,
};
use proofmill_types::{Digest, PublicValues};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The three words of the devnet's layout (what `{old_root}`, `{new_root}`, `{commitment}`
/// name).
const WORDS: [&[u8]; 3] = [b"old", b"new", b"commitment"];

static PUBLIC: std::sync::LazyLock<PublicValues> = std::sync::LazyLock::new(|| {
    PublicValues::new(
        WORDS
            .iter()
            .flat_map(|w| Digest::sha256(w).0)
            .collect::<Vec<u8>>(),
    )
});

fn public() -> PublicValues {
    PUBLIC.clone()
}

fn req(input: &[u8]) -> ProveRequest<'_> {
    ProveRequest {
        batch: 42,
        input,
        expected: &PUBLIC,
    }
}

/// A test directory with a private temp dir for the backend, so leftovers can be checked.
struct Site {
    root: tempfile::TempDir,
}

impl Site {
    fn new() -> Self {
        Site {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn tmp(&self) -> PathBuf {
        let t = self.path("tmp");
        std::fs::create_dir_all(&t).unwrap();
        t
    }

    /// Writes an executable-by-sh script and returns its path as a string for templates.
    fn script(&self, name: &str, body: &str) -> String {
        let p = self.path(name);
        std::fs::write(&p, body).unwrap();
        p.to_str().unwrap().to_string()
    }

    fn config(&self, prove: &str) -> CommandConfig {
        let mut c = CommandConfig::new(prove);
        c.temp_dir = Some(self.tmp());
        c.timeout = Duration::from_secs(60);
        c
    }

    fn backend(&self, prove: &str) -> CommandBackend {
        CommandBackend::new(self.config(prove)).unwrap()
    }

    /// The backend removed every per-task temp directory.
    fn assert_clean(&self) {
        let left: Vec<_> = std::fs::read_dir(self.tmp()).unwrap().collect();
        assert!(left.is_empty(), "temp files left behind: {left:?}");
    }
}

fn failed(r: Result<Vec<u8>, BackendError>) -> String {
    match r {
        Err(BackendError::Failed(m)) => m,
        other => panic!("expected Failed, got {other:?}"),
    }
}

fn invalid(r: Result<(), VerifyError>) -> String {
    match r {
        Err(VerifyError::Invalid(m)) => m,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// Whether `pid` is gone (or a zombie nobody reaped: it no longer runs either way).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with(['Z', 'X']),
    }
}

fn wait_gone(pid: u32) -> bool {
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if process_gone(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

fn read_pid(path: &Path) -> u32 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// Proof = "PROOF" + the 96-byte public values + the input; the verifier checks the prefix
/// against {public}, and that the hex placeholders agree with the file.
const PROVER: &str = r#"set -eu
in=$1 out=$2 pub=$3
{ printf PROOF; cat "$pub"; cat "$in"; } > "$out"
echo "proved batch $4" >&2
"#;
const VERIFIER: &str = r#"set -u
proof=$1 pub=$2 tmp=$3 old=$4
{ printf PROOF; cat "$pub"; } > "$tmp/expect"
if ! head -c 101 "$proof" | cmp -s - "$tmp/expect"; then
  echo "proof does not match the public values" >&2
  exit 1
fi
hex=$(head -c 32 "$pub" | od -An -tx1 | tr -d ' \n')
[ "0x$hex" = "$old" ] || { echo "old root placeholder mismatch" >&2; exit 2; }
"#;

fn good_backend(site: &Site) -> CommandBackend {
    let prover = site.script("prover.sh", PROVER);
    let verifier = site.script("verifier.sh", VERIFIER);
    let mut c = site.config(&format!(
        "sh {prover} {{input}} {{output}} {{public}} {{batch}}"
    ));
    c.verify = Some(format!(
        "sh {verifier} {{proof}} {{public}} {{tmpdir}} {{old_root}}"
    ));
    CommandBackend::new(c).unwrap()
}

#[test]
fn good_prover_round_trips_and_verifier_rejects_tampering() {
    let site = Site::new();
    let b = good_backend(&site);
    assert_eq!(b.name(), "command");
    let proof = b.prove(&req(b"the batch input")).unwrap();
    let mut want = b"PROOF".to_vec();
    want.extend_from_slice(public().as_bytes());
    want.extend_from_slice(b"the batch input");
    assert_eq!(proof, want);
    b.verify(&public(), &proof).unwrap();

    let mut tampered = proof.clone();
    tampered[20] ^= 1;
    let m = invalid(b.verify(&public(), &tampered));
    assert!(m.contains("rejected the proof"), "{m}");
    assert!(m.contains("does not match the public values"), "{m}");

    let mut other = public().into_bytes();
    other[32..64].copy_from_slice(&Digest::sha256(b"elsewhere").0);
    let other = PublicValues::new(other);
    let m = invalid(b.verify(&other, &proof));
    assert!(m.contains("does not match the public values"), "{m}");
    site.assert_clean();
}

#[test]
fn placeholders_are_substituted() {
    let site = Site::new();
    let b = site.backend(
        "printf '%s\\n' {batch} {old_root} {new_root} {commitment} > {output}; \
         cmp -s {public} {tmpdir}/public.bin && test -f {input} && echo same >> {output}",
    );
    let out = String::from_utf8(b.prove(&req(b"x")).unwrap()).unwrap();
    let [old, new, commitment] = WORDS.map(|w| Digest::sha256(w).to_hex());
    let want = format!("42\n0x{old}\n0x{new}\n0x{commitment}\nsame\n");
    assert_eq!(out, want);
}

/// Public values are the rollup's: `{public}` carries any length; the devnet's word
/// placeholders refuse values of another layout with a reason instead of a wrong value.
#[test]
fn public_values_of_another_layout() {
    let site = Site::new();
    let other = PublicValues::new(b"a statement of another rollup".to_vec());
    let req = ProveRequest {
        batch: 42,
        input: b"x",
        expected: &other,
    };
    let b = site.backend("cat {public} > {output}");
    assert_eq!(b.prove(&req).unwrap(), other.as_bytes());
    let b = site.backend("printf '%s' {new_root} > {output}");
    let e = match b.prove(&req) {
        Err(BackendError::Failed(e) | BackendError::BadInput(e)) => e,
        other => panic!("{other:?}"),
    };
    assert!(e.contains("{new_root}") && e.contains("{public}"), "{e}");
}

#[test]
fn hanging_prover_is_killed_with_its_child() {
    let site = Site::new();
    let pidfile = site.path("child.pid");
    let mut c = site.config("sleep 1000 & echo $! > \"$PIDFILE\"; echo started; sleep 1000");
    c.env = vec![("PIDFILE".into(), pidfile.to_str().unwrap().into())];
    c.timeout = Duration::from_millis(500);
    let b = CommandBackend::new(c).unwrap();
    let start = Instant::now();
    let m = failed(b.prove(&req(b"")));
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{:?}",
        start.elapsed()
    );
    assert!(m.contains("timed out after 500ms"), "{m}");
    assert!(m.contains("started"), "{m}");
    let child = read_pid(&pidfile);
    assert!(wait_gone(child), "background child {child} still running");
    site.assert_clean();
}

/// A cancelled task stops its external prover at once (process group and all), so the
/// prover's slot is free again long before the command would have ended.
#[test]
fn cancel_kills_a_running_prover_with_its_child() {
    let site = Site::new();
    let pidfile = site.path("child.pid");
    let mut c = site.config("sleep 1000 & echo $! > \"$PIDFILE\"; sleep 1000");
    c.env = vec![("PIDFILE".into(), pidfile.to_str().unwrap().into())];
    let b = CommandBackend::new(c).unwrap();
    let cancel = Cancel::default();
    let start = Instant::now();
    let result = std::thread::scope(|scope| {
        let proving = scope.spawn(|| b.prove_cancellable(&req(b""), &cancel));
        while !pidfile.exists() {
            std::thread::sleep(Duration::from_millis(10));
        }
        cancel.cancel();
        proving.join().unwrap()
    });
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let m = failed(result);
    assert!(m.contains("cancelled"), "{m}");
    let child = read_pid(&pidfile);
    assert!(wait_gone(child), "background child {child} still running");
    site.assert_clean();
}

#[test]
fn background_helpers_do_not_outlive_a_successful_prove() {
    let site = Site::new();
    let pidfile = site.path("child.pid");
    // The helper inherits stdout: prove must not wait for it to close the pipe.
    let mut c = site.config("sleep 1000 & echo $! > \"$PIDFILE\"; echo proof > {output}");
    c.env = vec![("PIDFILE".into(), pidfile.to_str().unwrap().into())];
    let b = CommandBackend::new(c).unwrap();
    let start = Instant::now();
    assert_eq!(b.prove(&req(b"")).unwrap(), b"proof\n");
    assert!(start.elapsed() < Duration::from_secs(60));
    let child = read_pid(&pidfile);
    assert!(wait_gone(child), "background helper {child} still running");
}

#[test]
fn crashing_prover_reports_status_and_output() {
    let site = Site::new();
    let b = site.backend("echo some progress; echo 'guest panicked: boom' >&2; exit 3");
    let m = failed(b.prove(&req(b"")));
    assert!(m.contains("exit status 3"), "{m}");
    assert!(m.contains("guest panicked: boom"), "{m}");
    assert!(m.contains("some progress"), "{m}");

    let b = site.backend("echo 'out of memory' >&2; kill -9 $$");
    let m = failed(b.prove(&req(b"")));
    assert!(m.contains("killed by signal 9"), "{m}");
    assert!(m.contains("out of memory"), "{m}");
    site.assert_clean();
}

#[test]
fn garbage_output_is_rejected() {
    let site = Site::new();
    let m = failed(site.backend("echo done").prove(&req(b"")));
    assert!(m.contains("did not write the proof file"), "{m}");
    let m = failed(site.backend(": > {output}").prove(&req(b"")));
    assert!(m.contains("empty proof file"), "{m}");
    let m = failed(site.backend("mkfifo {output}").prove(&req(b"")));
    assert!(m.contains("not a regular file"), "{m}");

    let mut c = site.config("head -c $SIZE /dev/zero > {output}");
    c.max_proof_bytes = 100;
    c.env = vec![("SIZE".into(), "101".into())];
    let m = failed(CommandBackend::new(c.clone()).unwrap().prove(&req(b"")));
    assert!(m.contains("larger than max_proof_bytes (100 bytes)"), "{m}");
    c.env = vec![("SIZE".into(), "100".into())];
    let proof = CommandBackend::new(c).unwrap().prove(&req(b"")).unwrap();
    assert_eq!(proof.len(), 100);
    site.assert_clean();
}

#[test]
fn chatty_prover_does_not_deadlock_and_output_is_bounded() {
    let site = Site::new();
    // 2 MiB on each stream, far beyond a pipe buffer, then a failure.
    let b = site.backend(
        "head -c 2097152 /dev/zero | tr '\\0' o; head -c 2097152 /dev/zero | tr '\\0' e >&2; \
         echo LAST-ERR >&2; exit 1",
    );
    let m = failed(b.prove(&req(b"")));
    assert!(
        m.contains("LAST-ERR"),
        "{}",
        &m[m.len().saturating_sub(200)..]
    );
    assert!(m.contains("[last 4096 of 2097161 bytes]"), "{}", &m[..200]);
    assert!(m.len() < 10_000, "message is {} bytes", m.len());
}

#[test]
fn env_and_cwd_are_honoured() {
    let site = Site::new();
    let work = site.path("work");
    std::fs::create_dir(&work).unwrap();
    std::fs::write(work.join("marker"), "here").unwrap();
    let mut c = site.config("printf '%s|%s' \"$GREETING\" \"$(cat marker)\" > {output}");
    c.env = vec![("GREETING".into(), "hello 'world' $x".into())];
    c.cwd = Some(work);
    let out = CommandBackend::new(c).unwrap().prove(&req(b"")).unwrap();
    assert_eq!(out, b"hello 'world' $x|here");
}

#[test]
fn awkward_temp_paths_are_quoted_safely() {
    let site = Site::new();
    let tmp = site.path("it's a \"dir\" with $HOME and `x` ; touch pwned");
    std::fs::create_dir(&tmp).unwrap();
    let mut c = site.config("cat {input} > {output}");
    c.verify = Some("cmp -s {proof} {public}".into());
    c.temp_dir = Some(tmp.clone());
    let b = CommandBackend::new(c).unwrap();
    let proof = b.prove(&req(public().as_bytes())).unwrap();
    assert_eq!(proof, public().as_bytes());
    b.verify(&public(), &proof).unwrap();
    assert!(!site.path("pwned").exists());
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0);
}

#[test]
fn verify_failures_that_are_not_a_verdict_still_reject() {
    let site = Site::new();
    let mut c = site.config("true");
    c.verify = Some("echo 'cannot load vk' >&2; exit 2".into());
    let m = invalid(
        CommandBackend::new(c.clone())
            .unwrap()
            .verify(&public(), b"p"),
    );
    assert!(m.contains("could not decide"), "{m}");
    assert!(
        m.contains("exit status 2") && m.contains("cannot load vk"),
        "{m}"
    );

    c.verify = Some("sleep 1000".into());
    c.verify_timeout = Some(Duration::from_millis(300));
    let start = Instant::now();
    let m = invalid(
        CommandBackend::new(c.clone())
            .unwrap()
            .verify(&public(), b"p"),
    );
    assert!(start.elapsed() < Duration::from_secs(60));
    assert!(
        m.contains("could not decide") && m.contains("timed out after 300ms"),
        "{m}"
    );

    c.verify = Some("kill -9 $$".into());
    let m = invalid(CommandBackend::new(c).unwrap().verify(&public(), b"p"));
    assert!(m.contains("killed by signal 9"), "{m}");
    site.assert_clean();
}

#[test]
fn without_a_verify_command_only_size_is_checked() {
    let site = Site::new();
    let mut c = site.config("true");
    c.max_proof_bytes = 8;
    let b = CommandBackend::new(c).unwrap();
    assert!(!b.has_verify_command());
    b.verify(&public(), b"anything").unwrap();
    assert!(matches!(
        b.verify(&public(), b""),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(
        b.verify(&public(), b"123456789"),
        Err(VerifyError::Malformed(_))
    ));
}

#[test]
fn size_limits_apply_before_the_verify_command_runs() {
    let site = Site::new();
    let mut c = site.config("true");
    c.verify = Some("exit 0".into());
    c.max_proof_bytes = 4;
    let b = CommandBackend::new(c).unwrap();
    b.verify(&public(), b"1234").unwrap();
    assert!(matches!(
        b.verify(&public(), b""),
        Err(VerifyError::Malformed(_))
    ));
    assert!(matches!(
        b.verify(&public(), b"12345"),
        Err(VerifyError::Malformed(_))
    ));
}

#[test]
fn bad_configs_are_rejected_with_clear_errors() {
    let site = Site::new();
    let check = |c: CommandConfig, needle: &str| {
        let e = CommandBackend::new(c).unwrap_err().to_string();
        assert!(e.contains(needle), "want {needle:?} in {e:?}");
    };
    check(
        site.config(""),
        "prove command template: the command is empty",
    );
    check(site.config("prove {foo}"), "unknown placeholder {foo}");
    check(site.config("prove {proof}"), "unknown placeholder {proof}");
    let mut c = site.config("prove");
    c.verify = Some("verify {batch}".into());
    check(c, "verify command template: unknown placeholder {batch}");
    let mut c = site.config("prove");
    c.verify = Some(" ".into());
    check(c, "verify command template: the command is empty");
    let mut c = site.config("prove");
    c.env = vec![("A=B".into(), "x".into())];
    check(c, "environment variable \"A=B\"");
    let mut c = site.config("prove");
    c.cwd = Some(site.path("missing"));
    check(c, "is not a directory");
    let mut c = site.config("prove");
    c.timeout = Duration::ZERO;
    check(c, "timeout must be greater than zero");
    let mut c = site.config("prove");
    c.max_proof_bytes = 0;
    check(c, "max_proof_bytes must be greater than zero");
    let mut c = site.config("prove");
    c.name = "sp1 prover".into();
    check(c, "name \"sp1 prover\"");
}

#[test]
fn name_is_configurable_and_debug_hides_env_values() {
    let site = Site::new();
    let mut c = site.config("true");
    c.name = "sp1".into();
    c.env = vec![("NETWORK_KEY".into(), "s3cret".into())];
    let b = CommandBackend::new(c).unwrap();
    assert_eq!(b.name(), "sp1");
    let m = failed(b.prove(&req(b"")));
    assert!(m.starts_with("sp1 prove command:"), "{m}");
    let dbg = format!("{b:?}");
    assert!(
        dbg.contains("NETWORK_KEY") && !dbg.contains("s3cret"),
        "{dbg}"
    );
}

#[test]
fn missing_working_directory_at_run_time_is_a_failure() {
    let site = Site::new();
    let work = site.path("gone");
    std::fs::create_dir(&work).unwrap();
    let mut c = site.config("true");
    c.cwd = Some(work.clone());
    let b = CommandBackend::new(c).unwrap();
    std::fs::remove_dir(&work).unwrap();
    let m = failed(b.prove(&req(b"")));
    assert!(m.contains("cannot start") && m.contains("gone"), "{m}");
    site.assert_clean();
}
