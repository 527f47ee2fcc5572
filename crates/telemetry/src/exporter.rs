//! The recorder (installed once per process) and the `/metrics` HTTP server.

use crate::names::{ALL, Kind};
use axum::Router;
use axum::http::header;
use axum::routing::get;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("installing the metrics recorder: {0}")]
    Install(String),
    #[error("metrics server: {0}")]
    Io(#[from] std::io::Error),
}

/// Bucket bounds, seconds: from a fast dispatch (100 µs) to a long proof (2 h).
const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0,
];

/// Bucket bounds, gas: from a small commit to a full block.
const GAS_BUCKETS: &[f64] = &[
    25_000.0,
    50_000.0,
    100_000.0,
    200_000.0,
    300_000.0,
    500_000.0,
    750_000.0,
    1_000_000.0,
    2_000_000.0,
    5_000_000.0,
    10_000_000.0,
    30_000_000.0,
];

/// The process's recorder: what renders the text format. Cheap to clone.
#[derive(Clone)]
pub struct Recorder(PrometheusHandle);

impl Recorder {
    /// Every metric recorded so far, in Prometheus's text format.
    pub fn render(&self) -> String {
        self.0.render()
    }
}

static RECORDER: OnceLock<Result<Recorder, String>> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder, with proofmill's
/// buckets and descriptions. Once per process: later calls (several coordinators in one test
/// process) get the same recorder. Fails only if another recorder was installed first.
pub fn install() -> Result<Recorder, TelemetryError> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_gas".into()), GAS_BUCKETS))
                .map_err(|e| e.to_string())?;
            let handle = builder.install_recorder().map_err(|e| e.to_string())?;
            describe();
            Ok(Recorder(handle))
        })
        .clone()
        .map_err(TelemetryError::Install)
}

fn describe() {
    for m in ALL {
        let unit = if m.name.ends_with("_seconds") {
            Some(Unit::Seconds)
        } else {
            None
        };
        match (m.kind, unit) {
            (Kind::Counter, _) => metrics::describe_counter!(m.name, m.help),
            (Kind::Gauge, _) => metrics::describe_gauge!(m.name, m.help),
            (Kind::Histogram, Some(u)) => metrics::describe_histogram!(m.name, u, m.help),
            (Kind::Histogram, None) => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The running `/metrics` server; stops when dropped (or with [`MetricsServer::stop`]).
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl MetricsServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving and waits for the server to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `GET /metrics` of `recorder` on `listener` (plain HTTP/1.1) until the returned
/// server is stopped or dropped, and runs the recorder's upkeep (histogram maintenance)
/// meanwhile. Logs "metrics listening" with the bound address.
pub fn serve(
    listener: tokio::net::TcpListener,
    recorder: Recorder,
) -> Result<MetricsServer, TelemetryError> {
    let addr = listener.local_addr()?;
    let render = recorder.clone();
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let r = render.clone();
            async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    r.render(),
                )
            }
        }),
    );
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    tracing::info!(%addr, "metrics listening");
    let task = tokio::spawn(async move {
        let upkeep = async {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                recorder.0.run_upkeep();
            }
        };
        let server = std::future::IntoFuture::into_future(
            axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stop_rx.await;
            }),
        );
        tokio::select! {
            r = server => {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "metrics server stopped");
                }
            }
            _ = upkeep => {}
        }
    });
    Ok(MetricsServer {
        addr,
        stop: Some(stop_tx),
        task: Some(task),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_metrics(addr: SocketAddr) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn installs_once_and_serves_what_is_recorded() {
        let a = install().unwrap();
        // A second install (another coordinator in this process) shares the recorder.
        let b = install().unwrap();
        metrics::counter!(crate::names::BATCHES_TAKEN_IN_TOTAL, "source" => "api").increment(2);
        metrics::histogram!(crate::names::PROVE_DURATION_SECONDS, "proof_type" => "exec")
            .record(0.3);
        assert!(
            b.render()
                .contains("proofmill_batches_taken_in_total{source=\"api\"} 2")
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = serve(listener, a).unwrap();
        let text = get_metrics(server.local_addr()).await;
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(
            text.contains("# TYPE proofmill_prove_duration_seconds histogram"),
            "{text}"
        );
        assert!(
            text.contains(
                "proofmill_prove_duration_seconds_bucket{proof_type=\"exec\",le=\"0.5\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("# HELP proofmill_batches_taken_in_total"),
            "{text}"
        );
        let addr = server.local_addr();
        server.stop().await;
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }
}
