//! `command`: proves and verifies by running external programs, the way zkVM provers (SP1,
//! RISC Zero, ZisK, OpenVM, ...) plug in. Each task gets a fresh temp directory holding the
//! input and public values; the prove command writes the proof to `{output}`.
//!
//! Templates run through `/bin/sh -c` (pipes, redirections and `&&` work) in their own
//! process group, with `stdin` closed. Placeholders are replaced by **already shell-quoted**
//! values, so never put them inside quotes yourself (`'{input}'` is rejected). Write `{{` and
//! `}}` for literal braces (`${{HOME}}`, or simply `$HOME`); any other `{name}` must be one of:
//!
//! | placeholder    | prove | verify | value                                                   |
//! |----------------|-------|--------|---------------------------------------------------------|
//! | `{input}`      | yes   | no     | path of a file holding the batch input bytes            |
//! | `{output}`     | yes   | no     | path the proof must be written to (does not exist yet)  |
//! | `{batch}`      | yes   | no     | batch number, decimal                                   |
//! | `{proof}`      | no    | yes    | path of a file holding the proof bytes                  |
//! | `{public}`     | yes   | yes    | path of a file holding the 96-byte public values        |
//! | `{old_root}`   | yes   | yes    | old state root, `0x` + 64 lowercase hex digits          |
//! | `{new_root}`   | yes   | yes    | new state root, same format                             |
//! | `{commitment}` | yes   | yes    | batch commitment, same format                           |
//! | `{tmpdir}`     | yes   | yes    | the task's private temp directory (scratch space)       |
//!
//! In `prove` the public values are the ones the coordinator expects (`ProveRequest::expected`).
//! The temp directory and everything in it is removed when the command finishes, and the whole
//! process group is killed then too (on success, failure or timeout): background helpers do not
//! outlive their task. Processes that leave the group (`setsid`) are beyond our reach.

mod run;
mod template;

use crate::{Backend, BackendError, Cancel, ProveRequest, VerifyError};
use proofmill_types::PublicValues;
use run::{CommandRun, Spec, Termination};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;
use template::{Placeholder, Template};

/// Default [`CommandConfig::timeout`]: zkVM proofs of large batches take a while.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Default [`CommandConfig::max_proof_bytes`].
pub const DEFAULT_MAX_PROOF_BYTES: usize = 64 << 20;

/// How to run an external prover. Build with [`CommandConfig::new`], adjust the public
/// fields, then validate with [`CommandBackend::new`].
#[derive(Clone)]
pub struct CommandConfig {
    /// The backend's [`Backend::name`] (default `command`), also used in error messages. Give
    /// each configured prover its own (`sp1`, `risc0`, ...) so they can be told apart.
    pub name: String,
    /// Prove command template; see the module docs for placeholders.
    pub prove: String,
    /// Verify command template: exit 0 = valid, exit 1 = invalid, anything else = could not
    /// decide (also treated as invalid). **Without one, `verify` accepts any non-empty proof
    /// within `max_proof_bytes`: configure one in production.**
    pub verify: Option<String>,
    /// Variables added to the inherited environment of both commands.
    pub env: Vec<(String, String)>,
    /// Working directory of both commands (default: the caller's).
    pub cwd: Option<PathBuf>,
    /// Where per-task temp directories are created (default: the system temp directory).
    pub temp_dir: Option<PathBuf>,
    /// Prove timeout; the process group is killed when it expires.
    pub timeout: Duration,
    /// Verify timeout; `None` uses `timeout`. Keep it short: the coordinator verifies every
    /// arriving proof.
    pub verify_timeout: Option<Duration>,
    /// Largest proof accepted from the prover and by `verify`.
    pub max_proof_bytes: usize,
}

impl CommandConfig {
    /// A config with defaults: no verify command, no env, inherited cwd, [`DEFAULT_TIMEOUT`],
    /// [`DEFAULT_MAX_PROOF_BYTES`].
    pub fn new(prove: impl Into<String>) -> Self {
        CommandConfig {
            name: "command".into(),
            prove: prove.into(),
            verify: None,
            env: Vec::new(),
            cwd: None,
            temp_dir: None,
            timeout: DEFAULT_TIMEOUT,
            verify_timeout: None,
            max_proof_bytes: DEFAULT_MAX_PROOF_BYTES,
        }
    }
}

// Env values may be API keys (e.g. a prover network's): print only their names.
impl std::fmt::Debug for CommandConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("CommandConfig")
            .field("name", &self.name)
            .field("prove", &self.prove)
            .field("verify", &self.verify)
            .field("env_keys", &env)
            .field("cwd", &self.cwd)
            .field("temp_dir", &self.temp_dir)
            .field("timeout", &self.timeout)
            .field("verify_timeout", &self.verify_timeout)
            .field("max_proof_bytes", &self.max_proof_bytes)
            .finish()
    }
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CommandConfigError {
    #[error("{which} command template: {reason}")]
    Template { which: &'static str, reason: String },
    #[error("environment variable {key:?}: {reason}")]
    Env { key: String, reason: &'static str },
    #[error("working directory {0:?} is not a directory")]
    Cwd(PathBuf),
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("name {0:?} must be non-empty ASCII letters, digits, '-' or '_'")]
    Name(String),
}

/// The `command` backend. See the module docs for templates and placeholders.
#[derive(Debug)]
pub struct CommandBackend {
    cfg: CommandConfig,
    prove: Template,
    verify: Option<Template>,
}

impl CommandBackend {
    /// Validates `cfg`: the name is a plain identifier, templates parse with known placeholders, env names are usable, the
    /// working directory exists, timeouts and the size limit are non-zero.
    pub fn new(cfg: CommandConfig) -> Result<Self, CommandConfigError> {
        let name_ok = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
        if cfg.name.is_empty() || !cfg.name.chars().all(name_ok) {
            return Err(CommandConfigError::Name(cfg.name.clone()));
        }
        let prove = Template::parse("prove", &cfg.prove, Placeholder::PROVE)?;
        let verify = match &cfg.verify {
            Some(v) => Some(Template::parse("verify", v, Placeholder::VERIFY)?),
            None => None,
        };
        for (key, value) in &cfg.env {
            let reason = if key.is_empty() {
                Some("empty name")
            } else if key.contains(['=', '\0']) {
                Some("name contains '=' or NUL")
            } else if value.contains('\0') {
                Some("value contains NUL")
            } else {
                None
            };
            if let Some(reason) = reason {
                let key = key.clone();
                return Err(CommandConfigError::Env { key, reason });
            }
        }
        if let Some(dir) = &cfg.cwd
            && !dir.is_dir()
        {
            return Err(CommandConfigError::Cwd(dir.clone()));
        }
        if cfg.timeout.is_zero() {
            return Err(CommandConfigError::Zero("timeout"));
        }
        if cfg.verify_timeout.is_some_and(|t| t.is_zero()) {
            return Err(CommandConfigError::Zero("verify_timeout"));
        }
        if cfg.max_proof_bytes == 0 {
            return Err(CommandConfigError::Zero("max_proof_bytes"));
        }
        Ok(CommandBackend { cfg, prove, verify })
    }

    pub fn config(&self) -> &CommandConfig {
        &self.cfg
    }

    /// Whether a verify command is configured (without one, `verify` checks only the size).
    pub fn has_verify_command(&self) -> bool {
        self.verify.is_some()
    }

    fn temp_dir(&self) -> std::io::Result<tempfile::TempDir> {
        let parent = self.cfg.temp_dir.clone().unwrap_or_else(std::env::temp_dir);
        tempfile::Builder::new()
            .prefix("proofmill-cmd-")
            .tempdir_in(parent)
    }

    fn cwd_hint(&self) -> String {
        match &self.cfg.cwd {
            Some(dir) => format!(" (working directory {dir:?})"),
            None => String::new(),
        }
    }

    fn spec<'a>(&'a self, script: &'a str, timeout: Duration, cancel: &'a Cancel) -> Spec<'a> {
        Spec {
            script,
            env: &self.cfg.env,
            cwd: self.cfg.cwd.as_deref(),
            timeout,
            cancel,
        }
    }

    /// Sets up the temp directory with the public values and renders `template`; `extra`
    /// writes the remaining files and resolves the remaining placeholders.
    fn prepare(
        &self,
        template: &Template,
        public: &PublicValues,
        extra: impl Fn(&Path) -> std::io::Result<()>,
        value: impl Fn(Placeholder, &Path) -> String,
    ) -> Result<(tempfile::TempDir, String), String> {
        let dir = self
            .temp_dir()
            .map_err(|e| format!("cannot create a temp directory: {e}"))?;
        let path = dir.path();
        if path.to_str().is_none() {
            return Err(format!("temp directory {path:?} is not valid UTF-8"));
        }
        let words = [
            Placeholder::OldRoot,
            Placeholder::NewRoot,
            Placeholder::Commitment,
        ];
        if public.len() != 96
            && let Some(p) = words.iter().find(|p| template.uses(**p))
        {
            return Err(format!(
                "{{{}}} names a 32-byte word of 96-byte public values (the devnet layout), \
                 but these are {} bytes: use {{public}} (the file of the public values)",
                p.name(),
                public.len()
            ));
        }
        std::fs::write(path.join("public.bin"), public.as_bytes())
            .and_then(|()| extra(path))
            .map_err(|e| format!("cannot write temp files in {path:?}: {e}"))?;
        let word = |i: usize| match public.as_bytes().get(32 * i..32 * (i + 1)) {
            Some(w) => format!("0x{}", hex::encode(w)),
            None => String::new(),
        };
        let script = template.render(|p| match p {
            Placeholder::Public => file(path, "public.bin"),
            Placeholder::OldRoot => word(0),
            Placeholder::NewRoot => word(1),
            Placeholder::Commitment => word(2),
            Placeholder::Tmpdir => path.to_string_lossy().into_owned(),
            other => value(other, path),
        });
        Ok((dir, script))
    }

    /// Reads the proof the prover wrote, enforcing presence, non-emptiness and the size limit.
    fn read_proof(&self, path: &Path) -> Result<Vec<u8>, String> {
        let max = self.cfg.max_proof_bytes;
        let too_big = || format!("wrote a proof larger than max_proof_bytes ({max} bytes)");
        let meta = match std::fs::metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err("exited 0 but did not write the proof file ({output})".into());
            }
            Err(e) => return Err(format!("cannot stat the proof file ({{output}}): {e}")),
            Ok(m) => m,
        };
        // Not a FIFO or device: opening one could block forever now that its writer is dead.
        if !meta.is_file() {
            return Err("the proof path ({output}) is not a regular file".into());
        }
        if meta.len() > max as u64 {
            return Err(too_big());
        }
        let mut proof = Vec::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(max as u64 + 1).read_to_end(&mut proof))
            .map_err(|e| format!("cannot read the proof file ({{output}}): {e}"))?;
        if proof.is_empty() {
            return Err("exited 0 but wrote an empty proof file ({output})".into());
        }
        if proof.len() > max {
            return Err(too_big());
        }
        Ok(proof)
    }
}

fn file(dir: &Path, name: &str) -> String {
    // `prepare` checked that the directory is UTF-8; the names are ASCII.
    dir.join(name).to_string_lossy().into_owned()
}

impl Backend for CommandBackend {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn prove(&self, req: &ProveRequest<'_>) -> Result<Vec<u8>, BackendError> {
        self.prove_cancellable(req, &Cancel::default())
    }

    /// A cancel kills the command's process group within about 50 ms.
    fn prove_cancellable(
        &self,
        req: &ProveRequest<'_>,
        cancel: &Cancel,
    ) -> Result<Vec<u8>, BackendError> {
        let name = &self.cfg.name;
        let fail = |msg: String| BackendError::Failed(format!("{name} prove command: {msg}"));
        let (dir, script) = self
            .prepare(
                &self.prove,
                req.expected,
                |dir| std::fs::write(dir.join("input.bin"), req.input),
                |p, dir| match p {
                    Placeholder::Input => file(dir, "input.bin"),
                    Placeholder::Output => file(dir, "proof.bin"),
                    Placeholder::Batch => req.batch.to_string(),
                    _ => String::new(), // not in Placeholder::PROVE
                },
            )
            .map_err(fail)?;
        let done = run::run(&self.spec(&script, self.cfg.timeout, cancel))
            .map_err(|e| fail(format!("cannot start /bin/sh: {e}{}", self.cwd_hint())))?;
        let result = match done.termination {
            Termination::Cancelled => Err("cancelled (process group killed)".to_string()),
            Termination::TimedOut => Err(format!(
                "timed out after {:?} (process group killed); {}",
                self.cfg.timeout,
                done.output_summary()
            )),
            Termination::Exited(status) if !status.success() => Err(format!(
                "failed with {}; {}",
                run::describe_status(&status),
                done.output_summary()
            )),
            Termination::Exited(_) => self
                .read_proof(&dir.path().join("proof.bin"))
                .map_err(|e| format!("{e}; {}", done.output_summary())),
        };
        drop(dir);
        result.map_err(fail)
    }

    /// Runs the verify command when one is configured. **Without one, any non-empty proof
    /// within `max_proof_bytes` is accepted: nothing is checked cryptographically.**
    fn verify(&self, public: &PublicValues, proof: &[u8]) -> Result<(), VerifyError> {
        let max = self.cfg.max_proof_bytes;
        if proof.is_empty() {
            return Err(VerifyError::Malformed("empty proof".into()));
        }
        if proof.len() > max {
            return Err(VerifyError::Malformed(format!(
                "proof is {} bytes, over max_proof_bytes ({max})",
                proof.len()
            )));
        }
        let Some(template) = &self.verify else {
            return Ok(());
        };
        let name = &self.cfg.name;
        let undecided = |msg: String| {
            VerifyError::Invalid(format!(
                "{name} verify command could not decide, treating the proof as invalid: {msg}"
            ))
        };
        let (dir, script) = self
            .prepare(
                template,
                public,
                |dir| std::fs::write(dir.join("proof.bin"), proof),
                |p, dir| match p {
                    Placeholder::Proof => file(dir, "proof.bin"),
                    _ => String::new(), // not in Placeholder::VERIFY
                },
            )
            .map_err(undecided)?;
        let timeout = self.cfg.verify_timeout.unwrap_or(self.cfg.timeout);
        let done: CommandRun = run::run(&self.spec(&script, timeout, &Cancel::default()))
            .map_err(|e| undecided(format!("cannot start /bin/sh: {e}{}", self.cwd_hint())))?;
        drop(dir);
        match done.termination {
            Termination::Exited(s) if s.success() => Ok(()),
            Termination::Exited(s) if s.code() == Some(1) => Err(VerifyError::Invalid(format!(
                "{name} verify command rejected the proof (exit status 1); {}",
                done.output_summary()
            ))),
            Termination::Exited(s) => Err(undecided(format!(
                "{}; {}",
                run::describe_status(&s),
                done.output_summary()
            ))),
            Termination::TimedOut => Err(undecided(format!(
                "timed out after {timeout:?}; {}",
                done.output_summary()
            ))),
            // Verification is never cancelled (its flag is never set).
            Termination::Cancelled => Err(undecided("cancelled".into())),
        }
    }
}
