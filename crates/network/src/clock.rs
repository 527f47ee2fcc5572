//! The chain's time as the network reckons it: the newest block's timestamp, moved on by the
//! wall clock since that block was first seen. A node that mines only on demand (anvil, the
//! embedded L1) keeps an old head while time passes; deadlines are on the chain's clock, and
//! reading it a little ahead is the safe side (a request looks tighter, a proof later).

use std::time::Instant;

#[derive(Debug, Default)]
pub(crate) struct ChainClock {
    /// The newest block seen: number, timestamp, and when it was first seen.
    head: Option<(u64, u64, Instant)>,
}

impl ChainClock {
    /// Takes a head read from the node.
    pub(crate) fn observe(&mut self, number: u64, timestamp: u64) {
        match self.head {
            Some((n, _, _)) if n >= number => {}
            _ => self.head = Some((number, timestamp, Instant::now())),
        }
    }

    /// Chain time now, if a head was seen.
    pub(crate) fn now(&self) -> Option<u64> {
        self.head
            .map(|(_, ts, seen)| ts.saturating_add(seen.elapsed().as_secs()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_the_newest_head_only() {
        let mut c = ChainClock::default();
        assert_eq!(c.now(), None);
        c.observe(10, 1_000);
        let t = c.now().unwrap();
        assert!((1_000..1_002).contains(&t));
        c.observe(9, 500);
        assert!(c.now().unwrap() >= 1_000, "an older head is ignored");
        c.observe(12, 1_024);
        assert!(c.now().unwrap() >= 1_024);
    }
}
