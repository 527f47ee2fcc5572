//! A throwaway anvil dev chain (npm `@foundry-rs/anvil-linux-amd64`, installed by
//! `npm ci --prefix tools/node`), on a port the OS picks, killed and reaped on drop.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct TestAnvil {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    child: Child,
}

impl Drop for TestAnvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `PROOFMILL_ANVIL`, else the binary the pinned npm package ships in `tools/node`.
pub fn anvil_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PROOFMILL_ANVIL") {
        return PathBuf::from(p);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tools/node/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
}

impl TestAnvil {
    /// Starts anvil (chain id 31337, Osaka, the same as the embedded L1). Panics, never skips,
    /// when the binary is missing: the L1 tests must run against a real node.
    pub fn start() -> TestAnvil {
        let bin = anvil_bin();
        assert!(
            bin.is_file(),
            "anvil not found at {}: run `npm ci --prefix tools/node` (or set PROOFMILL_ANVIL)",
            bin.display()
        );
        // `--port 0`: the OS picks a free port; anvil prints it ("Listening on 127.0.0.1:PORT").
        let mut child = Command::new(&bin)
            .args([
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--hardfork",
                "osaka",
                "--chain-id",
                "31337",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep draining stdout so anvil never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.trim().strip_prefix("Listening on ") {
                    let _ = tx.send(addr.to_string());
                }
            }
        });
        let mut anvil = TestAnvil {
            url: String::new(),
            child,
        };
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("anvil did not report its port within 60 s");
        anvil.url = format!("http://{addr}");
        anvil
    }
}
