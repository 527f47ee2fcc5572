//! proofmill's Prometheus metrics. [`names`] is the one list of metric names, kinds, labels
//! and meanings; libraries record through the `metrics` macros with those names and export
//! nothing. With the `exporter` feature (the binary's), [`install`] sets the process's
//! recorder (once: later calls share it) and [`serve`] answers `GET /metrics` on a listener.

pub mod names;

#[cfg(feature = "exporter")]
mod exporter;
#[cfg(feature = "exporter")]
pub use exporter::{MetricsServer, Recorder, TelemetryError, install, serve};

/// Seconds of a millisecond figure, for histograms in seconds.
pub fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}
