//! `--metrics-listen`: the process's Prometheus recorder and its `/metrics` server.

use anyhow::Context as _;
use proofmill_telemetry::MetricsServer;
use std::net::SocketAddr;

/// Installs the recorder and serves `/metrics` on `addr`, if given; without it nothing is
/// recorded (the libraries' metric calls do nothing). The server stops when the returned
/// value is dropped.
pub async fn start(addr: Option<SocketAddr>) -> anyhow::Result<Option<MetricsServer>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let recorder = proofmill_telemetry::install()?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen for metrics on {addr}"))?;
    Ok(Some(proofmill_telemetry::serve(listener, recorder)?))
}
