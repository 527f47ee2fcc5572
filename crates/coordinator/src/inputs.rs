//! Batch inputs for dispatch: read from the blob store once, checked against their digest,
//! kept in a small byte-bounded cache (consecutive tasks of one batch share the read).

use bytes::Bytes;
use proofmill_store::{Blobs, StoreError};
use proofmill_types::{Batch, BatchId, Digest};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

pub(crate) struct InputCache {
    blobs: Blobs,
    max_bytes: usize,
    inner: Mutex<CacheInner>,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<BatchId, Bytes>,
    order: VecDeque<BatchId>,
    bytes: usize,
}

impl InputCache {
    pub fn new(blobs: Blobs, max_bytes: usize) -> Self {
        InputCache {
            blobs,
            max_bytes,
            inner: Mutex::new(CacheInner::default()),
        }
    }

    pub fn insert(&self, batch: BatchId, data: Bytes) {
        if data.len() > self.max_bytes {
            return;
        }
        let mut c = self.inner.lock().expect("input cache lock");
        if c.map.contains_key(&batch) {
            return;
        }
        c.bytes += data.len();
        c.map.insert(batch, data);
        c.order.push_back(batch);
        while c.bytes > self.max_bytes {
            let Some(old) = c.order.pop_front() else {
                break;
            };
            if let Some(d) = c.map.remove(&old) {
                c.bytes -= d.len();
            }
        }
    }

    /// Drops a batch's input (its batch got a new one).
    pub fn forget(&self, batch: BatchId) {
        let mut c = self.inner.lock().expect("input cache lock");
        if let Some(d) = c.map.remove(&batch) {
            c.bytes -= d.len();
            c.order.retain(|b| *b != batch);
        }
    }

    /// The input if it is cached; never reads the blob store.
    pub fn cached(&self, batch: BatchId) -> Option<Bytes> {
        let cache = self.inner.lock().expect("input cache lock");
        cache.map.get(&batch).cloned()
    }

    pub async fn get(&self, batch: &Batch) -> Result<Bytes, StoreError> {
        if let Some(d) = self
            .inner
            .lock()
            .expect("input cache lock")
            .map
            .get(&batch.id())
        {
            return Ok(d.clone());
        }
        let data = self.blobs.get(&batch.input_key).await?;
        if Digest::sha256(&data) != batch.input_digest {
            return Err(StoreError::Corrupt(format!(
                "input of batch {} does not match its digest {}",
                batch.id(),
                batch.input_digest
            )));
        }
        self.insert(batch.id(), data.clone());
        Ok(data)
    }
}
