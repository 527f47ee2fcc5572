//! How late a runtime runs what is ready: a task that asks to wake every [`PERIOD`] and
//! records by how much each wake-up came late. A runtime that falls behind (more ready work
//! than its threads get through) shows it here before anywhere else: heartbeats answered
//! late, timers firing late.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PERIOD: Duration = Duration::from_millis(100);

/// Samples the current runtime's lateness until dropped.
pub struct LagProbe {
    samples: Arc<Mutex<Vec<f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LagProbe {
    pub fn start() -> LagProbe {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let into = samples.clone();
        let task = tokio::spawn(async move {
            loop {
                let asked = Instant::now();
                tokio::time::sleep(PERIOD).await;
                let late = asked.elapsed().saturating_sub(PERIOD);
                into.lock()
                    .expect("lag samples lock")
                    .push(late.as_secs_f64() * 1e3);
            }
        });
        LagProbe { samples, task }
    }

    /// The lateness since the start or the last call, in ms: (median, 99th percentile, max).
    pub fn take(&self) -> (f64, f64, f64) {
        let mut samples = std::mem::take(&mut *self.samples.lock().expect("lag samples lock"));
        let max = samples.iter().copied().fold(f64::NAN, f64::max);
        let (p50, p99) = super::percentiles(&mut samples);
        (p50, p99, max)
    }
}

impl Drop for LagProbe {
    fn drop(&mut self) {
        self.task.abort();
    }
}
