//! Test helpers shared by proofmill crates.
//!
//! [`TestPostgres`] runs a throwaway PostgreSQL server (initdb + pg_ctl from the local
//! installation) in a temporary directory, on a free loopback port, with durability turned
//! off for speed. Use [`TestPostgres::start`] for a private server, or [`shared_database`] to
//! get a fresh, isolated database on one server shared by every test of the process.
//!
//! No server outlives the test process: each server has a small watchdog shell (in its own
//! process group, so Ctrl-C reaching the test does not kill it first) that blocks reading a
//! pipe whose only writer is the test process. When the [`TestPostgres`] is dropped, or when
//! the process exits for any reason (including `kill -9`, and for the `static` shared server
//! whose `Drop` never runs), the pipe closes and the watchdog runs
//! `pg_ctl stop -m immediate` and removes the temporary directory.
//!
//! [`TestAnvil`] runs an anvil dev chain, [`TestS3`] an S3-compatible server (moto).

mod anvil;
mod s3;
pub use anvil::{TestAnvil, anvil_bin};
pub use s3::{TestS3, moto_server_bin};

use anyhow::{Context, Result, anyhow, bail};
use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

const INSTALL_HINT: &str = "install PostgreSQL (`apt-get install postgresql`) or set PROOFMILL_PG_BIN to the directory holding initdb and pg_ctl";

/// A throwaway PostgreSQL server. Stopped (and its directory removed) on drop.
pub struct TestPostgres {
    /// URL of the database `test` created at start: `postgres://postgres@127.0.0.1:PORT/test`.
    pub url: String,
    pub port: u16,
    /// Temporary directory holding the data directory, logs and the unix socket.
    pub dir: PathBuf,
    bin: PathBuf,
    watchdog: Option<(Child, ChildStdin)>,
    /// `synchronous_commit=on`: a commit is in the WAL (written, not fsynced) before it
    /// returns, so it survives the server being killed (not the machine).
    durable: bool,
}

impl std::fmt::Debug for TestPostgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPostgres")
            .field("url", &self.url)
            .field("dir", &self.dir)
            .finish()
    }
}

impl TestPostgres {
    /// Initializes and starts a server (about 2 s). Errors (never skips) when the PostgreSQL
    /// binaries cannot be found.
    pub fn start() -> Result<TestPostgres> {
        Self::start_with(false)
    }

    /// A server whose commits survive [`TestPostgres::crash`] (`synchronous_commit=on`;
    /// `fsync` stays off: only the server dies, not the machine). For outage tests.
    pub fn start_durable() -> Result<TestPostgres> {
        Self::start_with(true)
    }

    fn start_with(durable: bool) -> Result<TestPostgres> {
        let bin = find_pg_bin()?;
        let as_root = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("proofmill-pg-")
            .tempdir()
            .context("creating a temporary directory for PostgreSQL")?
            .keep();
        // From here on the watchdog owns the cleanup of `dir`.
        let watchdog = match spawn_watchdog(&bin, &dir, as_root) {
            Ok(w) => w,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        let mut pg = TestPostgres {
            url: String::new(),
            port: 0,
            dir,
            bin,
            watchdog: Some(watchdog),
            durable,
        };
        pg.init_and_start(as_root)?;
        Ok(pg)
    }

    fn init_and_start(&mut self, as_root: bool) -> Result<()> {
        if as_root {
            // initdb refuses to run as root: the server runs as `postgres`.
            run(Command::new("chown").arg("postgres:").arg(&self.dir))
                .context("chown of the temporary directory to postgres")?;
        }
        let data = self.dir.join("data");
        let mut initdb = pg_command(&self.bin, "initdb", as_root);
        initdb.arg("-D").arg(&data).args([
            "--auth=trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(&mut initdb).context("initdb")?;

        let mut last_err = None;
        for _attempt in 0..5 {
            let port = free_port()?;
            let log = self.dir.join("server.log");
            match run(&mut self.pg_ctl_start(port, as_root)) {
                Ok(_) => {
                    self.port = port;
                    self.url = self.create_database("test")?;
                    return Ok(());
                }
                Err(e) => {
                    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
                    let collision = log_text.contains("could not bind")
                        || log_text.contains("already in use")
                        || log_text.contains("could not create any TCP/IP sockets");
                    let tail: String = tail_lines(&log_text, 15);
                    last_err = Some(anyhow!("{e:#}\nserver.log:\n{tail}"));
                    if !collision {
                        break;
                    }
                    // Port taken between our probe and the server's bind: retry another one.
                    let _ = std::fs::remove_file(&log);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| anyhow!("pg_ctl start failed")))
            .context("starting the test PostgreSQL server")
    }

    fn pg_ctl_start(&self, port: u16, as_root: bool) -> Command {
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
             -c synchronous_commit={} -c full_page_writes=off -c max_connections=200",
            self.dir.display(),
            if self.durable { "on" } else { "off" }
        );
        let mut ctl = pg_command(&self.bin, "pg_ctl", as_root);
        ctl.arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(self.dir.join("server.log"))
            .args(["-w", "-t", "60", "-o", &opts, "start"]);
        ctl
    }

    /// Stops the server the way a crash does (`pg_ctl stop -m immediate`: no checkpoint,
    /// clients cut off), keeping its data for [`TestPostgres::restart`].
    pub fn crash(&self) -> Result<()> {
        let mut ctl = pg_command(&self.bin, "pg_ctl", running_as_root());
        ctl.arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"]);
        run(&mut ctl).context("pg_ctl stop -m immediate")
    }

    /// Starts the server again after [`TestPostgres::crash`], on the same port and data
    /// (recovering from its WAL).
    pub fn restart(&self) -> Result<()> {
        run(&mut self.pg_ctl_start(self.port, running_as_root())).context("pg_ctl start again")
    }

    /// Creates a database on this server and returns its URL. Names are 1-63 chars of
    /// `[a-z0-9_]` starting with a letter or `_`.
    pub fn create_database(&self, name: &str) -> Result<String> {
        let valid = (1..=63).contains(&name.len())
            && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            bail!("invalid database name {name:?}: use 1-63 chars of [a-z0-9_]");
        }
        let port = self.port.to_string();
        run(Command::new(self.bin.join("createdb")).args([
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "postgres",
            name,
        ]))
        .with_context(|| format!("createdb {name}"))?;
        Ok(format!(
            "postgres://postgres@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    /// Stops the server now (also done on drop).
    pub fn stop(&mut self) {
        if let Some((mut child, stdin)) = self.watchdog.take() {
            drop(stdin); // EOF: the watchdog stops the server and removes the directory
            let _ = child.wait();
        }
    }
}

impl Drop for TestPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One server shared by all tests of this process (started on first use).
pub fn shared() -> Result<&'static TestPostgres> {
    static SHARED: OnceLock<std::result::Result<TestPostgres, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| TestPostgres::start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

/// URL of a fresh database on the [`shared`] server; `label` (sanitized) is part of its name.
pub fn shared_database(label: &str) -> Result<String> {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let clean: String = label
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .take(40)
        .collect();
    shared()?.create_database(&format!("t{n}_{clean}"))
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `PROOFMILL_PG_BIN`, else the highest `/usr/lib/postgresql/<v>/bin`, else `initdb` on PATH.
fn find_pg_bin() -> Result<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("PROOFMILL_PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_tools(&dir) {
            return Ok(dir);
        }
        bail!(
            "PROOFMILL_PG_BIN={} has no initdb/pg_ctl; {INSTALL_HINT}",
            dir.display()
        );
    }
    let mut best: Option<(Vec<u64>, PathBuf)> = None;
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(version) = name
                .split('.')
                .map(str::parse::<u64>)
                .collect::<Result<Vec<_>, _>>()
            else {
                continue;
            };
            let bin = entry.path().join("bin");
            if has_tools(&bin) && best.as_ref().is_none_or(|(v, _)| version > *v) {
                best = Some((version, bin));
            }
        }
    }
    if let Some((_, bin)) = best {
        return Ok(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_tools(&dir) {
                return Ok(dir);
            }
        }
    }
    bail!("PostgreSQL binaries (initdb, pg_ctl) not found; {INSTALL_HINT}")
}

fn pg_command(bin: &Path, tool: &str, as_root: bool) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    }
}

/// Runs to completion; errors with the command's output when it fails. Output goes to a
/// temporary file rather than a pipe so a daemon it spawns cannot hold our pipe open.
fn run(cmd: &mut Command) -> Result<()> {
    let mut out = tempfile::tempfile().context("temporary file for command output")?;
    let status = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out.try_clone()?)
        .status()
        .with_context(|| format!("running {cmd:?}"))?;
    if status.success() {
        return Ok(());
    }
    use std::io::{Read as _, Seek as _};
    let mut text = String::new();
    let _ = out.rewind();
    let _ = out.read_to_string(&mut text);
    bail!("{cmd:?} failed ({status}):\n{}", tail_lines(&text, 20))
}

fn tail_lines(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("probing for a free port")?;
    Ok(listener.local_addr()?.port())
}

/// A shell that waits for EOF on stdin, then stops the server and removes `dir`.
fn spawn_watchdog(bin: &Path, dir: &Path, as_root: bool) -> Result<(Child, ChildStdin)> {
    use std::os::unix::process::CommandExt as _;
    const SCRIPT: &str = r#"
        while read -r _line; do :; done
        if [ "$3" = 1 ]; then
            runuser -u postgres -- "$1/pg_ctl" -D "$2/data" -m immediate -w stop >/dev/null 2>&1
        else
            "$1/pg_ctl" -D "$2/data" -m immediate -w stop >/dev/null 2>&1
        fi
        rm -rf "$2"
    "#;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(SCRIPT)
        .arg("proofmill-pg-watchdog")
        .arg(bin)
        .arg(dir)
        .arg(if as_root { "1" } else { "0" })
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own process group: a Ctrl-C to the test run must not kill the watchdog first.
        .process_group(0)
        .spawn()
        .context("spawning the PostgreSQL watchdog (sh)")?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    // Make sure the shell is alive and reading.
    stdin.write_all(b"\n").context("writing to the watchdog")?;
    Ok((child, stdin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_create_and_stop() {
        let mut pg = TestPostgres::start().expect("start postgres");
        assert!(pg.url.starts_with("postgres://postgres@127.0.0.1:"));
        let url = pg.create_database("other_db").unwrap();
        assert!(url.ends_with("/other_db"));
        assert!(pg.create_database("Bad-Name").is_err());
        let dir = pg.dir.clone();
        let port = pg.port;
        assert!(dir.join("data/postmaster.pid").exists());
        pg.stop();
        assert!(!dir.exists(), "temporary directory not removed");
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "server still accepting connections after stop"
        );
    }
}
