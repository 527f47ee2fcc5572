//! Runs one shell command in its own process group with a timeout, capturing bounded
//! stdout/stderr tails. The whole group is killed when the command ends or times out, so
//! helper processes a prover started do not outlive its task.

use crate::Cancel;
use std::io::Read;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// Bytes of stdout and of stderr kept (the end of each stream).
pub(crate) const TAIL_BYTES: usize = 4096;

/// How long to wait for the output pipes to close after the process group was killed (a
/// process that left the group may still hold them).
const PIPE_GRACE: Duration = Duration::from_secs(2);

pub(crate) struct Spec<'a> {
    pub script: &'a str,
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a Path>,
    pub timeout: Duration,
    pub cancel: &'a Cancel,
}

/// How a command's process ended: on its own, or killed at its timeout or on a cancel.
pub(crate) enum Termination {
    Exited(ExitStatus),
    TimedOut,
    Cancelled,
}

/// How often a running command looks at its cancel flag.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// A command that ran: how it ended and the tails of its output.
pub(crate) struct CommandRun {
    pub termination: Termination,
    pub stdout: Tail,
    pub stderr: Tail,
}

impl CommandRun {
    /// `stderr: …; stdout: …` with the non-empty tails, or "no output".
    pub(crate) fn output_summary(&self) -> String {
        let parts: Vec<String> = [("stderr", &self.stderr), ("stdout", &self.stdout)]
            .into_iter()
            .filter(|(_, t)| t.total > 0)
            .map(|(n, t)| format!("{n}: {t}"))
            .collect();
        if parts.is_empty() {
            "no output".into()
        } else {
            parts.join("; ")
        }
    }
}

/// The last [`TAIL_BYTES`] of a stream and its total length.
#[derive(Default, Clone)]
pub(crate) struct Tail {
    buf: Vec<u8>,
    total: u64,
}

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.total += data.len() as u64;
        self.buf.extend_from_slice(data);
        // Amortised trimming: drop the front only once the buffer holds twice the tail.
        if self.buf.len() > 2 * TAIL_BYTES {
            self.buf.drain(..self.buf.len() - TAIL_BYTES);
        }
    }

    fn kept(&self) -> &[u8] {
        &self.buf[self.buf.len().saturating_sub(TAIL_BYTES)..]
    }
}

impl std::fmt::Display for Tail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.kept();
        let text = String::from_utf8_lossy(kept);
        if (kept.len() as u64) < self.total {
            write!(f, "[last {} of {} bytes] ", kept.len(), self.total)?;
        }
        f.write_str(text.trim())
    }
}

/// Describes an exit status: `exit status 3` / `killed by signal 9`.
pub(crate) fn describe_status(status: &ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => status.to_string(),
    }
}

/// Runs `sh -c script`. Errors only when the process cannot be started.
pub(crate) fn run(spec: &Spec<'_>) -> std::io::Result<CommandRun> {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(spec.script)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(dir) = spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id() as libc::pid_t;

    // Drain both pipes concurrently so a chatty program never blocks on a full pipe.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let stdout = drain(child.stdout.take(), done_tx.clone());
    let stderr = drain(child.stderr.take(), done_tx);

    // Wait without reaping (WNOWAIT): the zombie keeps the process-group id reserved, so the
    // group kill below cannot hit an unrelated group that reused the id.
    let (exit_tx, exit_rx) = mpsc::channel::<()>();
    thread::spawn(move || {
        wait_exited_no_reap(pid);
        let _ = exit_tx.send(());
    });
    // No deadline for a timeout too large to add (it would never pass anyway).
    let deadline = Instant::now().checked_add(spec.timeout);
    let stopped = loop {
        let left = deadline.map_or(CANCEL_POLL, |d| d.saturating_duration_since(Instant::now()));
        match exit_rx.recv_timeout(left.min(CANCEL_POLL)) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => break None,
            Err(mpsc::RecvTimeoutError::Timeout) if spec.cancel.is_cancelled() => {
                break Some(Termination::Cancelled);
            }
            Err(mpsc::RecvTimeoutError::Timeout) if left.is_zero() => {
                break Some(Termination::TimedOut);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    };
    kill_group(pid);
    let status = reap(&mut child);

    // The group is dead, so the pipes close now unless a process escaped the group.
    let grace = Instant::now() + PIPE_GRACE;
    for _ in 0..2 {
        let left = grace.saturating_duration_since(Instant::now());
        if done_rx.recv_timeout(left).is_err() {
            break;
        }
    }
    let snapshot = |t: &Arc<Mutex<Tail>>| t.lock().map(|t| t.clone()).unwrap_or_default();
    Ok(CommandRun {
        termination: stopped.unwrap_or(Termination::Exited(status)),
        stdout: snapshot(&stdout),
        stderr: snapshot(&stderr),
    })
}

fn drain(pipe: Option<impl Read + Send + 'static>, done: mpsc::Sender<()>) -> Arc<Mutex<Tail>> {
    let tail = Arc::new(Mutex::new(Tail::default()));
    if let Some(mut pipe) = pipe {
        let tail = tail.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 8192];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => match tail.lock() {
                        Ok(mut t) => t.push(&buf[..n]),
                        Err(_) => break,
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = done.send(());
        });
    } else {
        let _ = done.send(());
    }
    tail
}

/// Blocks until `pid` has exited, leaving it a zombie for [`reap`].
fn wait_exited_no_reap(pid: libc::pid_t) {
    loop {
        // SAFETY: waitid only writes into the zeroed siginfo we pass.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

fn kill_group(pgid: libc::pid_t) {
    // SAFETY: plain syscall; ESRCH (group already gone) is fine to ignore.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

fn reap(child: &mut Child) -> ExitStatus {
    loop {
        match child.wait() {
            Ok(status) => return status,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // Cannot happen for our own unreaped child; report it as killed rather than panic.
            Err(_) => return ExitStatus::from_raw(libc::SIGKILL),
        }
    }
}
