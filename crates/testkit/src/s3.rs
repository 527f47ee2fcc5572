//! A throwaway S3-compatible server: moto's `moto_server` (PyPI, installed by `scripts/test`
//! into `tools/python/venv`), on a free loopback port, killed and reaped on drop.
//!
//! moto cannot bind port 0 and report it, so a port is probed free and the start retried when
//! another process took it meanwhile. A watchdog shell kills the server when the test process
//! dies without dropping it (`kill -9`, a `static`), like [`crate::TestPostgres`]'s.
//!
//! Talking to it uses plain HTTP/1.0 on a socket, not an S3 client: what a test reads back
//! through [`TestS3::list`] does not depend on the client under test. moto accepts any
//! credentials and does not check signatures.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

/// The region the server's buckets are created in (no `CreateBucketConfiguration` needed).
const REGION: &str = "us-east-1";

pub struct TestS3 {
    /// `http://127.0.0.1:PORT`
    pub endpoint: String,
    child: Child,
    watchdog: Option<(Child, ChildStdin)>,
}

impl std::fmt::Debug for TestS3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestS3")
            .field("endpoint", &self.endpoint)
            .finish()
    }
}

/// `PROOFMILL_MOTO_SERVER`, else the `moto_server` of the venv `scripts/test` installs.
pub fn moto_server_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PROOFMILL_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/python/venv/bin/moto_server")
}

impl TestS3 {
    /// Starts the server and waits until it answers (a few seconds: moto is Python).
    /// Panics, never skips, when `moto_server` is missing: the S3 tests must run.
    pub fn start() -> TestS3 {
        let bin = moto_server_bin();
        assert!(
            bin.is_file(),
            "moto_server not found at {}: run `scripts/test` once (it installs moto into \
             tools/python/venv), or set PROOFMILL_MOTO_SERVER",
            bin.display()
        );
        // Only read here, when a start fails: the server keeps writing to its log after the
        // directory is gone.
        let dir = tempfile::Builder::new()
            .prefix("proofmill-s3-")
            .tempdir()
            .expect("temporary directory for the S3 server's log");
        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = crate::free_port().expect("probing for a free port");
            let log = dir.path().join(format!("moto-{port}.log"));
            let mut s3 = Self::spawn(&bin, port, &log);
            match s3.wait_ready(Duration::from_secs(60)) {
                Ok(()) => return s3,
                Err(exited) => {
                    last_log = std::fs::read_to_string(&log).unwrap_or_default();
                    let collision = last_log.contains("Address already in use");
                    if !exited || !collision {
                        panic!(
                            "moto_server did not start on port {port}:\n{}",
                            crate::tail_lines(&last_log, 20)
                        );
                    }
                    // The port was taken between our probe and its bind: try another.
                }
            }
        }
        panic!(
            "moto_server found no free port in 5 attempts:\n{}",
            crate::tail_lines(&last_log, 20)
        );
    }

    fn spawn(bin: &std::path::Path, port: u16, log: &std::path::Path) -> TestS3 {
        let out = std::fs::File::create(log).expect("creating the S3 server's log");
        let child = Command::new(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log handle"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let watchdog = spawn_watchdog(child.id());
        TestS3 {
            endpoint: format!("http://127.0.0.1:{port}"),
            child,
            watchdog: Some(watchdog),
        }
    }

    /// `Err(true)` when the server exited before answering, `Err(false)` on timeout.
    fn wait_ready(&mut self, within: Duration) -> Result<(), bool> {
        let until = Instant::now() + within;
        while Instant::now() < until {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return Err(true);
            }
            if matches!(self.request("GET", "/", &[]), Ok((200, _))) {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(false)
    }

    /// The variables the `object_store` S3 client reads (`AmazonS3Builder::from_env`), the
    /// ones an operator sets for any S3-compatible store: endpoint, plain HTTP allowed,
    /// credentials, region.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "proofmill-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "proofmill-test".into()),
            ("AWS_REGION", REGION.into()),
        ]
    }

    /// Creates a bucket (`PUT /NAME`).
    pub fn create_bucket(&self, name: &str) {
        match self.request("PUT", &format!("/{name}"), &[]) {
            Ok((200, _)) => {}
            other => panic!("creating bucket {name}: {other:?}"),
        }
    }

    /// Keys under `prefix` in `bucket` with their sizes, in key order (`ListObjectsV2`; at
    /// most 1000, which is all a test writes).
    pub fn list(&self, bucket: &str, prefix: &str) -> Vec<(String, u64)> {
        let path = format!("/{bucket}?list-type=2&prefix={}", query_escape(prefix));
        let body = match self.request("GET", &path, &[]) {
            Ok((200, body)) => body,
            other => panic!("listing {bucket}/{prefix}: {other:?}"),
        };
        assert!(
            body.contains("<IsTruncated>false</IsTruncated>"),
            "listing truncated: {body}"
        );
        body.split("<Contents>")
            .skip(1)
            .map(|entry| {
                let key = xml_field(entry, "Key").unwrap_or_else(|| panic!("no Key: {entry}"));
                let size = xml_field(entry, "Size")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or_else(|| panic!("no Size: {entry}"));
                (key, size)
            })
            .collect()
    }

    /// One HTTP/1.0 request (so the answer is never chunked and ends with the connection):
    /// status code and body.
    fn request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head}")))?;
        Ok((status, body.to_string()))
    }

    /// Stops the server now (also done on drop).
    pub fn stop(&mut self) {
        if let Some((mut watchdog, stdin)) = self.watchdog.take() {
            // The server is our unreaped child, so its pid cannot have been reused.
            drop(stdin); // EOF: the watchdog kills the server
            let _ = watchdog.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A shell that kills `pid` once its stdin closes: when we stop the server, or when the test
/// process dies without doing so.
fn spawn_watchdog(pid: u32) -> (Child, ChildStdin) {
    use std::os::unix::process::CommandExt as _;
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"while read -r _line; do :; done; kill -9 "$1" 2>/dev/null"#)
        .arg("proofmill-s3-watchdog")
        .arg(pid.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Own process group: a Ctrl-C to the test run must not kill the watchdog first.
        .process_group(0)
        .spawn()
        .expect("spawning the S3 server's watchdog (sh)");
    let stdin = child.stdin.take().expect("piped stdin");
    (child, stdin)
}

/// The text of the first `<name>…</name>` in `xml`, unescaped.
fn xml_field(xml: &str, name: &str) -> Option<String> {
    let start = xml.find(&format!("<{name}>"))? + name.len() + 2;
    let len = xml[start..].find(&format!("</{name}>"))?;
    Some(
        xml[start..start + len]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

/// Percent-encodes all but unreserved characters, for a query value.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_list_and_stop() {
        let mut s3 = TestS3::start();
        s3.create_bucket("bkt");
        assert_eq!(s3.list("bkt", ""), vec![]);
        match s3.request("PUT", "/bkt/dir/x%20y.bin", b"hello") {
            Ok((200, _)) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(s3.list("bkt", "dir/"), vec![("dir/x y.bin".to_string(), 5)]);
        assert_eq!(s3.list("bkt", "other/"), vec![]);
        let addr = s3.endpoint.trim_start_matches("http://").to_string();
        s3.stop();
        assert!(
            TcpStream::connect(addr).is_err(),
            "server still accepting connections after stop"
        );
    }
}
