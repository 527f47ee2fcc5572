//! Shared by the binary's integration tests.

use std::process::Command;

pub mod admin;
pub mod core_api;
pub mod http;
pub mod pki;
pub mod procs;
pub mod readme;

/// The `proofmill` binary with no `PROOFMILL_*` or `RUST_LOG` inherited from the test's
/// environment, so a developer's settings never change what a test sees.
pub fn proofmill() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_proofmill"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("PROOFMILL_") {
            cmd.env_remove(key);
        }
    }
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Groth16 keys shared by every test of this crate (the DEV setup is deterministic and its
/// files are written atomically, so concurrent tests may race to create them).
#[allow(dead_code)] // not every test binary proves
pub fn groth16_keys() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("groth16-keys")
}

/// A stored devnet batch's public values in the devnet's layout.
#[allow(dead_code)] // Not every test file reads batches.
pub fn transition(batch: &proofmill_types::Batch) -> proofmill_devnet::StateTransition {
    proofmill_devnet::StateTransition::from_public_values(&batch.public_values)
        .expect("a devnet batch's public values")
}

/// Mines one block on an anvil at `url` (`evm_mine`: anvil mines only on transactions, and
/// confirmations and deadlines need blocks).
#[allow(dead_code)] // only the L1 tests mine
pub fn evm_mine(url: &str) {
    anvil_call(url, "evm_mine", "[]");
}

/// Moves an anvil's clock `secs` ahead and mines a block stamped with it.
#[allow(dead_code)] // only the market's tests move the clock
pub fn evm_advance(url: &str, secs: u64) {
    anvil_call(url, "evm_increaseTime", &format!("[{secs}]"));
    evm_mine(url);
}

/// One JSON-RPC call to an anvil at `url`, over a plain socket; panics unless it succeeds.
#[allow(dead_code)]
fn anvil_call(url: &str, method: &str, params: &str) {
    use std::io::{Read as _, Write as _};
    let addr = url.strip_prefix("http://").expect("an http:// node URL");
    let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}"#);
    let mut s = std::net::TcpStream::connect(addr).expect("connecting to anvil");
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("writing to anvil");
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.contains("\"result\""), "{method}: {reply}");
}
