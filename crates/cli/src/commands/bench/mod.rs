//! `proofmill bench …`: measurements whose numbers go to BENCHMARKS.md. Each command ends
//! with one `key=value` line.

mod dispatch;
mod prove;
mod settle;

pub use dispatch::dispatch;
pub use prove::prove;
pub use settle::settle;

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
