//! HTTP/1.1 over a plain TCP socket, as any client speaks it: tests of the HTTP APIs use
//! this instead of our types, reading bodies as untyped JSON.
#![allow(dead_code)] // not every test binary uses every helper

use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// An HTTP answer: status, headers (names lower-case) and the body as JSON.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The error's code, checking the documented shape of an error.
    pub fn error_code(&self) -> &str {
        assert!(
            self.body["error"]["message"].is_string(),
            "an error has a message: {self:?}"
        );
        self.body["error"]["code"].as_str().expect("error code")
    }
}

/// One request on a connection of its own (`Connection: close`, so the answer ends with it).
pub fn http(addr: &str, method: &str, path: &str, body: Option<&[u8]>) -> Reply {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let body = body.unwrap_or_default().to_vec();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // Written from another thread: the server may answer (413) before reading all of it.
    let mut writer = conn.try_clone().unwrap();
    let sender = std::thread::spawn(move || {
        let _ = writer.write_all(head.as_bytes());
        let _ = writer.write_all(&body);
    });
    let mut raw = Vec::new();
    let read = conn.read_to_end(&mut raw);
    let _ = sender.join();
    if raw.is_empty() {
        panic!("{method} {path}: no answer ({read:?})");
    }
    parse_reply(&raw)
}

fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut content = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("status line of {head}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    if headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"))
    {
        content = unchunk(&content);
    }
    let body = serde_json::from_slice(&content).unwrap_or_else(|e| {
        panic!(
            "body of a {status} is not JSON ({e}): {}",
            String::from_utf8_lossy(&content)
        )
    });
    Reply {
        status,
        headers,
        body,
    }
}

fn unchunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = String::from_utf8_lossy(&data[..line_end]).to_string();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

pub fn get(addr: &str, path: &str) -> Reply {
    http(addr, "GET", path, None)
}

pub fn post(addr: &str, path: &str, body: Value) -> Reply {
    http(addr, "POST", path, Some(body.to_string().as_bytes()))
}

/// Polls `f` every 200 ms until it returns `Some`, panicking after `within`.
pub fn wait_for<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let until = Instant::now() + within;
    loop {
        if let Some(t) = f() {
            return t;
        }
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
