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
    /// Largest window after refusals only an operator can fix (see [`Backoff::refused_delay`]).
    refused_max: Duration,
    refusals: u32,
}

impl Backoff {
    /// `min` is the first window, `max` the largest (raised to `min` if smaller). Refusals
    /// wait at most `max` too unless [`Backoff::with_refused_max`] says otherwise.
    pub fn new(min: Duration, max: Duration) -> Self {
        let max = max.max(min);
        Backoff {
            min,
            max,
            attempt: 0,
            refused_max: max,
            refusals: 0,
        }
    }

    /// Lets the window of [`Backoff::refused_delay`] grow up to `refused_max` (at least the
    /// reconnect maximum).
    pub fn with_refused_max(mut self, refused_max: Duration) -> Self {
        self.refused_max = refused_max.max(self.max);
        self
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

    /// Delay after a refusal only an operator can fix (credentials refused, wrong version,
    /// ...): in `[w / 2, w]`, never short, since retrying soon cannot help, where the window
    /// `w` starts at `max` and doubles per refusal up to the refusal cap. A prover left
    /// with a wrong token knocks ever more rarely instead of every few seconds forever.
    pub fn refused_delay(&mut self) -> Duration {
        let window = self
            .max
            .saturating_mul(1u32 << self.refusals.min(20))
            .min(self.refused_max);
        self.refusals = self.refusals.saturating_add(1);
        self.attempt = self.attempt.saturating_add(1);
        window / 2 + jitter(window / 2)
    }

    /// After a session that went well: the next delays start small again.
    pub fn reset(&mut self) {
        self.attempt = 0;
        self.refusals = 0;
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
        // Without a refusal cap, refusals wait in [max / 2, max].
        for _ in 0..100 {
            let d = b.refused_delay();
            assert!(d >= max / 2 && d <= max, "{d:?}");
        }
    }

    /// Refusals back off exponentially from the reconnect maximum to their own cap, each
    /// delay in the upper half of its window; a good session starts over.
    #[test]
    fn refusals_grow_to_their_cap_and_reset() {
        let max = Duration::from_secs(5);
        let cap = Duration::from_secs(300);
        let mut b = Backoff::new(Duration::from_millis(100), max).with_refused_max(cap);
        for i in 0..30u32 {
            let window = max.saturating_mul(1 << i.min(20)).min(cap);
            let d = b.refused_delay();
            assert!(
                d >= window / 2 && d <= window,
                "refusal {i}: {d:?} outside [{:?}, {window:?}]",
                window / 2
            );
        }
        b.reset();
        let d = b.refused_delay();
        assert!(d >= max / 2 && d <= max, "after reset: {d:?}");
        // A cap below the reconnect maximum is raised to it.
        let mut b = Backoff::new(Duration::from_millis(100), max).with_refused_max(max / 10);
        assert!(b.refused_delay() >= max / 2);
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
