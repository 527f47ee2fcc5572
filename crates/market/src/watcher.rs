//! Reads the market's events block range by block range, from a last processed block the
//! caller keeps durably, only from blocks with enough confirmations, and halves the range when
//! the node refuses it.
//!
//! Every error comes back as a value: one RPC error costs one poll, never the caller's task
//! (zkSync's watcher once crashed a shared `select!` on an RPC error and held a batch for 5
//! hours).

use crate::error::{MarketError, Result};
use crate::{MarketEvent, MarketEvents};
use std::sync::Arc;

/// How the watcher reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WatcherConfig {
    /// A block is read once this many blocks are on top of it (0: the head itself), so a
    /// reorg shallower than this is never seen.
    pub confirmations: u64,
    /// Blocks per `eth_getLogs` query at most (at least 1). Halved, down to 1, each time the
    /// node refuses a range; it stays at what the node took.
    pub max_block_range: u64,
}

impl Default for WatcherConfig {
    fn default() -> Self {
        WatcherConfig {
            confirmations: 2,
            max_block_range: 10_000,
        }
    }
}

/// The events of one range, and the block to persist as processed once they are handled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WatchBatch {
    /// In chain order.
    pub events: Vec<MarketEvent>,
    /// The last block read (the `last_processed` given when nothing new is confirmed).
    pub last_processed: u64,
    /// That block's timestamp: the chain's time as far as these events go (a deadline at or
    /// before it has passed with every event before it seen). 0 for block 0 of a chain
    /// the watcher never read.
    pub last_processed_at: u64,
    /// Whether `last_processed` is the newest confirmed block: poll again later, not at once.
    pub caught_up: bool,
}

/// See the module documentation.
pub struct MarketWatcher {
    source: Arc<dyn MarketEvents>,
    cfg: WatcherConfig,
    range: u64,
}

impl std::fmt::Debug for MarketWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MarketWatcher")
            .field("cfg", &self.cfg)
            .field("range", &self.range)
            .finish_non_exhaustive()
    }
}

impl MarketWatcher {
    pub fn new(source: Arc<dyn MarketEvents>, cfg: WatcherConfig) -> Self {
        MarketWatcher {
            source,
            cfg,
            range: cfg.max_block_range.max(1),
        }
    }

    /// Blocks per query now (after any halving).
    pub fn block_range(&self) -> u64 {
        self.range
    }

    /// Reads the next confirmed range after `last_processed`: its events and the new last
    /// processed block, which the caller persists once it has handled them. A node refusing
    /// a range gets the range halved and asked again, down to one block; a single block it
    /// still refuses, and any other error, is returned.
    /// The timestamp of block `number` (0 for block 0: nothing was read yet).
    async fn time_of(&self, number: u64) -> Result<u64> {
        match number {
            0 => Ok(0),
            n => Ok(self.source.block(n).await?.timestamp),
        }
    }

    pub async fn poll(&mut self, last_processed: u64) -> Result<WatchBatch> {
        let head = self.source.head().await?.number;
        let confirmed = head.saturating_sub(self.cfg.confirmations);
        if confirmed <= last_processed {
            return Ok(WatchBatch {
                events: Vec::new(),
                last_processed,
                last_processed_at: self.time_of(last_processed).await?,
                caught_up: true,
            });
        }
        let from = last_processed + 1;
        loop {
            let to = confirmed.min(from.saturating_add(self.range - 1));
            match self.source.events(from, to).await {
                Ok(events) => {
                    return Ok(WatchBatch {
                        events,
                        last_processed: to,
                        last_processed_at: self.time_of(to).await?,
                        caught_up: to == confirmed,
                    });
                }
                Err(MarketError::RangeTooLarge { msg, .. }) if to > from => {
                    let refused_len = to - from + 1;
                    self.range = (refused_len / 2).max(1);
                    tracing::info!(
                        from,
                        to,
                        range = self.range,
                        "node refused the log range ({msg}): halving it"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockHead, LogPosition, RequestId};
    use async_trait::async_trait;
    use proofmill_l1::L1Error;
    use std::sync::Mutex;

    /// A node with one `TimedOut` event in each of `event_blocks`, refusing log queries over
    /// more than `limit` blocks, and failing the next `fail_next` queries with a transport
    /// error.
    struct FakeNode {
        head: Mutex<u64>,
        event_blocks: Vec<u64>,
        limit: u64,
        fail_next: Mutex<u32>,
        queries: Mutex<Vec<(u64, u64)>>,
    }

    impl FakeNode {
        fn new(head: u64, event_blocks: Vec<u64>, limit: u64) -> Arc<FakeNode> {
            Arc::new(FakeNode {
                head: Mutex::new(head),
                event_blocks,
                limit,
                fail_next: Mutex::new(0),
                queries: Mutex::new(Vec::new()),
            })
        }
    }

    fn event(block: u64) -> MarketEvent {
        MarketEvent::TimedOut {
            at: LogPosition {
                block,
                log_index: 0,
                tx_hash: [block as u8; 32],
            },
            id: RequestId::new(1, block),
            network: Default::default(),
        }
    }

    #[async_trait]
    impl MarketEvents for FakeNode {
        async fn head(&self) -> Result<BlockHead> {
            let number = *self.head.lock().unwrap();
            self.block(number).await
        }

        /// Twelve seconds a block.
        async fn block(&self, number: u64) -> Result<BlockHead> {
            Ok(BlockHead {
                number,
                timestamp: 1_000 + 12 * number,
            })
        }

        async fn events(&self, from: u64, to: u64) -> Result<Vec<MarketEvent>> {
            self.queries.lock().unwrap().push((from, to));
            let mut fail = self.fail_next.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(MarketError::L1(L1Error::Transient(
                    "eth_getLogs: connection reset".into(),
                )));
            }
            if to - from + 1 > self.limit {
                return Err(MarketError::RangeTooLarge {
                    from,
                    to,
                    msg: format!("exceed maximum block range: {}", self.limit),
                });
            }
            Ok(self
                .event_blocks
                .iter()
                .filter(|b| (from..=to).contains(*b))
                .map(|b| event(*b))
                .collect())
        }
    }

    /// Polls until caught up, as a caller persisting `last_processed` would.
    async fn drain(w: &mut MarketWatcher, mut last: u64) -> (Vec<MarketEvent>, u64) {
        let mut seen = Vec::new();
        loop {
            let batch = w.poll(last).await.unwrap();
            assert!(batch.last_processed >= last);
            seen.extend(batch.events);
            last = batch.last_processed;
            if batch.caught_up {
                return (seen, last);
            }
        }
    }

    #[tokio::test]
    async fn halves_the_range_until_the_node_takes_it_and_misses_nothing() {
        let blocks = vec![1, 2, 17, 40, 41, 99, 100, 250, 397, 398];
        let node = FakeNode::new(400, blocks.clone(), 7);
        let cfg = WatcherConfig {
            confirmations: 2,
            max_block_range: 1000,
        };
        let mut w = MarketWatcher::new(node.clone(), cfg);
        let (seen, last) = drain(&mut w, 0).await;
        // 1000 → 199 (400 − 2 confirmations = 398 blocks, halved) → 99 → 49 → 24 → 12 → 6.
        assert_eq!(w.block_range(), 6);
        assert_eq!(last, 398);
        assert_eq!(seen, blocks.iter().map(|b| event(*b)).collect::<Vec<_>>());
        // Every accepted query was within the limit; the ranges read cover 1..=398 once.
        let queries = node.queries.lock().unwrap().clone();
        let accepted: Vec<_> = queries.iter().filter(|(f, t)| t - f < 7).collect();
        assert_eq!(accepted.first().unwrap().0, 1);
        for pair in accepted.windows(2) {
            assert_eq!(pair[1].0, pair[0].1 + 1, "{queries:?}");
        }
        assert_eq!(accepted.last().unwrap().1, 398);

        // Nothing new confirmed: nothing read, the position stays.
        let batch = w.poll(398).await.unwrap();
        assert_eq!((batch.events.len(), batch.last_processed), (0, 398));
        assert_eq!(batch.last_processed_at, 1_000 + 12 * 398);
        assert!(batch.caught_up);
        // Three more blocks: the one now 2 deep is read, with its time (not the head's).
        *node.head.lock().unwrap() = 403;
        let batch = w.poll(398).await.unwrap();
        assert_eq!(batch.last_processed, 401);
        assert_eq!(batch.last_processed_at, 1_000 + 12 * 401);
        assert!(batch.caught_up);
    }

    #[tokio::test]
    async fn a_node_refusing_even_one_block_and_rpc_errors_come_back_as_values() {
        let node = FakeNode::new(50, vec![10], 0);
        let mut w = MarketWatcher::new(
            node.clone(),
            WatcherConfig {
                confirmations: 0,
                max_block_range: 16,
            },
        );
        let err = w.poll(0).await.unwrap_err();
        assert!(
            matches!(err, MarketError::RangeTooLarge { from: 1, to: 1, .. }),
            "{err:?}"
        );
        assert_eq!(w.block_range(), 1);

        let node = FakeNode::new(50, vec![10, 30], 100);
        *node.fail_next.lock().unwrap() = 1;
        let mut w = MarketWatcher::new(node.clone(), WatcherConfig::default());
        let err = w.poll(5).await.unwrap_err();
        assert!(err.is_transient(), "{err:?}");
        // The range is not halved for a transport error, and the next poll resumes from the
        // same block.
        assert_eq!(w.block_range(), WatcherConfig::default().max_block_range);
        let batch = w.poll(5).await.unwrap();
        assert_eq!(batch.events, vec![event(10), event(30)]);
        assert_eq!(batch.last_processed, 48);
    }
}
