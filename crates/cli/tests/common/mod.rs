//! Shared by the binary's integration tests.

use std::process::Command;

pub mod admin;
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
