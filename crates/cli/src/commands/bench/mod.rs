//! `proofmill bench …`: measurements whose numbers go to BENCHMARKS.md. Each command ends
//! with one `key=value` line.

mod dispatch;
mod fleet;
mod gateway;
mod jobs;
mod lag;
mod makespan;
mod market;
mod process;
mod prove;
mod restart;
mod settle;
mod sim;
mod store;

pub use dispatch::dispatch;
pub use fleet::fleet;
pub use gateway::gateway;
pub use makespan::makespan;
pub use market::market;
pub use prove::prove;
pub use restart::restart;
pub use settle::settle;
pub use sim::sim_provers;

/// Median of a non-empty sample (the mean of the middle two for an even count).
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Median and 99th percentile (nearest rank); NaN when there are no samples.
fn percentiles(samples: &mut [f64]) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |p: f64| {
        let rank = ((samples.len() as f64) * p).ceil() as usize;
        samples
            .get(rank.saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    };
    (at(0.5), at(0.99))
}
