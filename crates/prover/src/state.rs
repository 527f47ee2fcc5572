//! What a prover keeps on disk (`ProverConfig::state_dir`) so that a restarted process is the
//! same prover: per coordinator, the id and reconnect secret it was given, and every finished
//! result not yet acknowledged. After a restart it reconnects under its id (its cordon and
//! counters follow it, and leases it still reports are kept) and offers its finished results
//! again: a proof finished just before a crash is not proven twice.
//!
//! Layout: `lock` (held while a prover uses the directory), and per coordinator
//! `coordinators/<hash of the URL>/` with `url` (for people), `identity` (id and secret, one
//! per line) and `results/<hex of the task id>.<token>` (a kind byte, the prove time and the
//! proof bytes or error text). Every file is written whole to a temporary name, synced, and
//! renamed into place, so a crash leaves the old file or the new one.

use crate::tasks::{Assignment, FinishedTask, TaskOutput};
use proofmill_types::Digest;
use std::fs::{self, File, TryLockError};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use tracing::{error, warn};

/// A prover's state directory, locked against a second process using it.
pub struct StateDir {
    root: PathBuf,
    _lock: File,
}

#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error("state dir {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("state dir {0} is in use by another prover process")]
    InUse(PathBuf),
}

impl StateDir {
    /// Creates the directory if needed and locks it for this process.
    pub fn open(root: &Path) -> Result<StateDir, StateDirError> {
        let io_err = |source| StateDirError::Io {
            path: root.to_path_buf(),
            source,
        };
        fs::create_dir_all(root).map_err(io_err)?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("lock"))
            .map_err(io_err)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Err(StateDirError::InUse(root.into())),
            Err(TryLockError::Error(e)) => return Err(io_err(e)),
        }
        Ok(StateDir {
            root: root.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The part kept for the coordinator at `url`.
    pub(crate) fn coordinator(&self, url: &str) -> Result<CoordinatorState, StateDirError> {
        let hash = Digest::sha256(url.as_bytes()).to_string();
        let dir = self
            .root
            .join("coordinators")
            .join(&hash[..hash.len().min(16)]);
        let results = dir.join("results");
        let io_err = |source| StateDirError::Io {
            path: results.clone(),
            source,
        };
        fs::create_dir_all(&results).map_err(io_err)?;
        write_atomic(&dir.join("url"), url.as_bytes()).map_err(io_err)?;
        Ok(CoordinatorState { dir, results })
    }
}

/// The state kept for one coordinator. Write failures are logged, not fatal: the prover keeps
/// proving, and only what a restart would resume is at stake.
#[derive(Clone)]
pub(crate) struct CoordinatorState {
    dir: PathBuf,
    results: PathBuf,
}

const PROOF: u8 = b'P';
const ERROR: u8 = b'E';

impl CoordinatorState {
    /// The prover id and reconnect secret stored by the last registration, if any.
    pub fn identity(&self) -> Option<(String, String)> {
        let path = self.dir.join("identity");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot read the stored prover id; registering anew");
                return None;
            }
        };
        let mut lines = text.lines();
        match (lines.next(), lines.next()) {
            (Some(id), Some(secret)) if !id.is_empty() => Some((id.into(), secret.into())),
            _ => {
                warn!(path = %path.display(), "stored prover id is malformed; registering anew");
                None
            }
        }
    }

    pub fn save_identity(&self, id: &str, secret: &str) {
        let path = self.dir.join("identity");
        if let Err(e) = write_atomic(&path, format!("{id}\n{secret}\n").as_bytes()) {
            error!(path = %path.display(), error = %e, "cannot store the prover id: a restart will register anew");
        }
    }

    pub fn forget_identity(&self) {
        remove(&self.dir.join("identity"));
    }

    /// Results finished and never acknowledged, as the last process left them.
    pub fn results(&self) -> Vec<(Assignment, FinishedTask)> {
        let entries = match fs::read_dir(&self.results) {
            Ok(e) => e,
            Err(e) => {
                warn!(path = %self.results.display(), error = %e, "cannot list stored results");
                return Vec::new();
            }
        };
        let mut found = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") {
                remove(&path);
                continue;
            }
            match (parse_name(&name), fs::read(&path)) {
                (Some(key), Ok(bytes)) => match decode(&bytes) {
                    Some(finished) => found.push((key, finished)),
                    None => warn!(path = %path.display(), "stored result is malformed; ignored"),
                },
                (None, _) => warn!(path = %path.display(), "not a stored result; ignored"),
                (_, Err(e)) => {
                    warn!(path = %path.display(), error = %e, "cannot read stored result")
                }
            }
        }
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found
    }

    pub fn save_result(&self, key: &Assignment, finished: &FinishedTask) {
        let path = self.results.join(file_name(key));
        if let Err(e) = write_atomic(&path, &encode(finished)) {
            error!(path = %path.display(), error = %e, "cannot store a finished result: lost if the prover restarts before it is acknowledged");
        }
    }

    pub fn remove_result(&self, key: &Assignment) {
        remove(&self.results.join(file_name(key)));
    }

    pub fn remove_all_results(&self) {
        for (key, _) in self.results() {
            self.remove_result(&key);
        }
    }
}

fn file_name(task: &Assignment) -> String {
    let hex: String = task.task_id.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{hex}.{}", task.token)
}

fn parse_name(name: &str) -> Option<Assignment> {
    let (hex, token) = name.split_once('.')?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    Some(Assignment {
        task_id: String::from_utf8(bytes).ok()?,
        token: token.parse().ok()?,
    })
}

fn encode(f: &FinishedTask) -> Vec<u8> {
    let (kind, body) = match &f.output {
        TaskOutput::Proof { bytes, .. } => (PROOF, bytes.as_slice()),
        TaskOutput::Error(e) => (ERROR, e.as_bytes()),
    };
    let mut out = Vec::with_capacity(9 + body.len());
    out.push(kind);
    out.extend_from_slice(&f.prove_ms.to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn decode(bytes: &[u8]) -> Option<FinishedTask> {
    let (&kind, rest) = bytes.split_first()?;
    let (ms, body) = rest.split_at_checked(8)?;
    let prove_ms = u64::from_be_bytes(ms.try_into().ok()?);
    let output = match kind {
        PROOF => TaskOutput::Proof {
            digest: Digest::sha256(body),
            bytes: body.to_vec(),
        },
        ERROR => TaskOutput::Error(String::from_utf8(body.to_vec()).ok()?),
        _ => return None,
    };
    Some(FinishedTask { output, prove_ms })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        File::open(dir)?.sync_all()?;
    }
    Ok(())
}

fn remove(path: &Path) {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => warn!(path = %path.display(), error = %e, "cannot remove stored state"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_and_identity_round_trip_and_the_dir_is_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::open(tmp.path()).unwrap();
        assert!(matches!(
            StateDir::open(tmp.path()),
            Err(StateDirError::InUse(_))
        ));
        let c = dir.coordinator("http://127.0.0.1:1").unwrap();
        assert_eq!(c.identity(), None);
        c.save_identity("prv-1", "s3cret");
        assert_eq!(c.identity(), Some(("prv-1".into(), "s3cret".into())));
        let other = dir.coordinator("http://127.0.0.1:2").unwrap();
        assert_eq!(other.identity(), None, "one identity per coordinator");
        let proof = FinishedTask {
            output: TaskOutput::Proof {
                bytes: vec![1, 2, 3],
                digest: Digest::sha256(&[1, 2, 3]),
            },
            prove_ms: 42,
        };
        let key = Assignment {
            task_id: "12/exec".into(),
            token: 7,
        };
        c.save_result(&key, &proof);
        let other_key = Assignment {
            task_id: "13/x.y".into(),
            token: 8,
        };
        let error = FinishedTask {
            output: TaskOutput::Error("oom\n".into()),
            prove_ms: 1,
        };
        c.save_result(&other_key, &error);
        let loaded = c.results();
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].0, key);
        assert!(
            matches!(&loaded[0].1.output, TaskOutput::Proof { bytes, digest } if *bytes == [1, 2, 3] && *digest == Digest::sha256(&[1, 2, 3]))
        );
        assert_eq!(loaded[0].1.prove_ms, 42);
        assert!(matches!(&loaded[1].1.output, TaskOutput::Error(e) if e == "oom\n"));
        c.remove_result(&key);
        assert_eq!(c.results().len(), 1);
        c.remove_all_results();
        assert!(c.results().is_empty());
        c.forget_identity();
        assert_eq!(c.identity(), None);
        drop(dir);
        assert!(StateDir::open(tmp.path()).is_ok(), "unlocked when dropped");
    }
}
