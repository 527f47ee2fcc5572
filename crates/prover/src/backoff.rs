//! Jittered exponential reconnect backoff.
//!
//! Each delay is drawn uniformly from the whole of `[0, base]` ("full jitter"), where
//! `base` doubles per attempt up to the cap. A fleet that lost its coordinator at one instant
//! (a coordinator restart) then comes back spread over the whole window rather than crowded
//! into part of it, and every further round of refusals spreads it twice as wide: the
//! coordinator meets a stream of connections, not a wall of them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// `min` is the first window, `max` the largest (raised to `min` if smaller).
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// The window of the next delay: `min * 2^attempt`, capped at `max`.
    fn base(&self) -> Duration {
        self.min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max)
    }

    /// Next delay: uniform in `[0, base]`, so connections refused or lost together do not
    /// come back together; each call doubles the window, up to `max`.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base();
        self.attempt = self.attempt.saturating_add(1);
        jitter(base)
    }

    /// Delay after a rejection that needs an operator (bad token, wrong version, ...): in
    /// `[max / 2, max]`, never short, since retrying soon cannot help.
    pub fn max_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        self.max / 2 + jitter(self.max / 2)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// Uniform in `[0, d]`.
fn jitter(d: Duration) -> Duration {
    // 53 random bits as a fraction in [0, 1): good enough randomness without a dependency.
    let frac = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(frac)
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let min = Duration::from_millis(100);
        let max = Duration::from_secs(5);
        let mut b = Backoff::new(min, max);
        let mut prev_base = Duration::ZERO;
        for i in 0..30 {
            let base = min.saturating_mul(1 << i.min(20)).min(max);
            assert_eq!(b.base(), base, "attempt {i}");
            let d = b.next_delay();
            assert!(d <= base, "attempt {i}: {d:?} over {base:?}");
            assert!(base >= prev_base);
            prev_base = base;
        }
        assert_eq!(prev_base, max);
        b.reset();
        assert_eq!(b.base(), min);
        assert!(b.next_delay() <= min);
        for _ in 0..100 {
            let d = b.max_delay();
            assert!(d >= max / 2 && d <= max, "{d:?}");
        }
    }

    /// Delays drawn for one window fill all of it, evenly: 10,000 provers that lost their
    /// coordinator together come back spread over the window, not bunched.
    #[test]
    fn jitter_spreads_over_the_whole_window() {
        let window = Duration::from_millis(1000);
        let n = 10_000;
        let mut tenths = [0u32; 10];
        let (mut lo, mut hi) = (window, Duration::ZERO);
        for _ in 0..n {
            let d = Backoff::new(window, window).next_delay();
            assert!(d <= window, "{d:?} over the window");
            lo = lo.min(d);
            hi = hi.max(d);
            tenths[((d.as_secs_f64() / window.as_secs_f64() * 10.0) as usize).min(9)] += 1;
        }
        assert!(lo < window / 100, "nothing in the first 1%: lowest {lo:?}");
        assert!(
            hi > window * 99 / 100,
            "nothing in the last 1%: highest {hi:?}"
        );
        // Uniform: 1,000 expected per tenth, sd about 30; 800..1200 is over 6 sd either way.
        for (i, &count) in tenths.iter().enumerate() {
            assert!(
                (800..=1200).contains(&count),
                "tenth {i} of the window got {count} of {n} delays: {tenths:?}"
            );
        }
    }
}
