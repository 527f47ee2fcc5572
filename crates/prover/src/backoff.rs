//! Jittered exponential reconnect backoff.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max: max.max(min),
            attempt: 0,
        }
    }

    /// Next delay: `min * 2^attempt`, capped at `max`, scaled by a random factor in
    /// [0.5, 1.0] so provers restarted together do not reconnect in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let base = self
            .min
            .saturating_mul(1u32 << self.attempt.min(20))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        jitter(base)
    }

    /// Delay after a rejection that needs an operator (bad token, wrong version, ...).
    pub fn max_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        jitter(self.max)
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

fn jitter(d: Duration) -> Duration {
    // 0.5 + [0, 0.5): good enough randomness without a dependency.
    let frac = (random_u64() >> 11) as f64 / (1u64 << 53) as f64;
    d.mul_f64(0.5 + frac * 0.5)
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
            let d = b.next_delay();
            let base = min.saturating_mul(1 << i.min(20)).min(max);
            assert!(
                d >= base / 2 && d <= base,
                "attempt {i}: {d:?} not in [{:?}, {base:?}]",
                base / 2
            );
            assert!(base >= prev_base);
            prev_base = base;
        }
        assert_eq!(prev_base, max);
        b.reset();
        assert!(b.next_delay() <= min);
        let d = b.max_delay();
        assert!(d >= max / 2 && d <= max);
    }

    #[test]
    fn jitter_varies() {
        let d = Duration::from_secs(1);
        let samples: std::collections::HashSet<_> = (0..20).map(|_| jitter(d)).collect();
        assert!(samples.len() > 1);
    }
}
