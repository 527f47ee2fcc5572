//! Durable snapshots of the devnet state, so a restart replays only the batches after the
//! newest one instead of the whole chain.
//!
//! A snapshot is a blob (`devnet/snapshot-{batch:012}.bin`, [`Devnet::snapshot`]) plus one
//! meta row listing the newest [`KEEP`] snapshots. The blob is written first, then the row:
//! a crash between the two leaves the old row and a blob nobody points at. Loading checks
//! each snapshot against the store (its batch exists, and the state rebuilt from it has that
//! batch's new state root); one that fails is skipped with a warning, down to genesis.

use proofmill_coordinator::CoordinatorError;
use proofmill_devnet::{Devnet, DevnetConfig, fr_to_digest};
use proofmill_store::{Blobs, Store};
use proofmill_types::Digest;
use std::sync::Arc;

/// Meta key of the snapshot list (JSON, newest first).
pub const SNAPSHOTS_META: &str = "devnet/snapshots";
/// Snapshots kept: the newest, and one to fall back to should it be unreadable.
const KEEP: usize = 2;

#[derive(Clone, Debug, PartialEq, Eq)]
struct SnapshotRef {
    batch: u64,
    key: String,
    state_root: Digest,
}

impl SnapshotRef {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "batch": self.batch,
            "key": self.key,
            "state_root": self.state_root.to_string(),
        })
    }

    fn from_json(v: &serde_json::Value) -> Option<SnapshotRef> {
        Some(SnapshotRef {
            batch: v["batch"].as_u64()?,
            key: v["key"].as_str()?.to_string(),
            state_root: Digest::from_hex(v["state_root"].as_str()?)?,
        })
    }
}

fn blob_key(batch: u64) -> String {
    format!("devnet/snapshot-{batch:012}.bin")
}

/// Where the devnet's snapshots live: the coordinator's store and blobs.
#[derive(Clone)]
pub struct DevnetSnapshots {
    store: Arc<dyn Store>,
    blobs: Blobs,
    /// The devnet's chain: its batches in the store.
    chain: proofmill_types::ChainId,
}

impl DevnetSnapshots {
    pub fn new(store: Arc<dyn Store>, blobs: Blobs, chain: proofmill_types::ChainId) -> Self {
        DevnetSnapshots {
            store,
            blobs,
            chain,
        }
    }

    /// The snapshot list; an unreadable one counts as empty (loading then falls back to
    /// genesis, and the next save replaces it).
    async fn list(&self) -> Result<Vec<SnapshotRef>, CoordinatorError> {
        let Some(text) = self.store.get_meta(SNAPSHOTS_META).await? else {
            return Ok(Vec::new());
        };
        let parsed = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| {
                v.as_array().map(|a| {
                    a.iter()
                        .map(SnapshotRef::from_json)
                        .collect::<Option<Vec<_>>>()
                })
            })
            .flatten();
        Ok(parsed.unwrap_or_else(|| {
            tracing::warn!(
                key = SNAPSHOTS_META,
                "devnet snapshot list unreadable; ignoring it"
            );
            Vec::new()
        }))
    }

    /// The batch of the newest snapshot listed, if any.
    pub async fn newest(&self) -> Result<Option<u64>, CoordinatorError> {
        Ok(self.list().await?.first().map(|r| r.batch))
    }

    /// Saves `devnet`'s committed state, the state after batch `next_batch_number() - 1`,
    /// which must already be in the store. Nothing to do at genesis or when the newest
    /// snapshot is of that batch already.
    pub async fn save(&self, devnet: &Devnet) -> Result<(), CoordinatorError> {
        let batch = devnet.next_batch_number() - 1;
        let list = self.list().await?;
        if batch == 0 || list.first().is_some_and(|r| r.batch == batch) {
            return Ok(());
        }
        let new = SnapshotRef {
            batch,
            key: blob_key(batch),
            state_root: fr_to_digest(devnet.state_root()),
        };
        self.blobs
            .put(&new.key, bytes::Bytes::from(devnet.snapshot()))
            .await?;
        let mut keep = vec![new];
        keep.extend(list.iter().filter(|r| r.batch < batch).cloned());
        keep.truncate(KEEP);
        let json = serde_json::Value::Array(keep.iter().map(SnapshotRef::to_json).collect());
        self.store
            .set_meta(SNAPSHOTS_META, &json.to_string())
            .await?;
        // Only once the pointer no longer names them.
        for old in list.iter().filter(|r| !keep.contains(r)) {
            if let Err(e) = self.blobs.delete(&old.key).await {
                tracing::warn!(key = %old.key, error = %e, "could not delete an old devnet snapshot");
            }
        }
        tracing::debug!(batch, "devnet snapshot saved");
        Ok(())
    }

    /// The devnet in the state of the newest snapshot that checks out against the store, or
    /// at genesis (with a warning when snapshots were listed but none was usable).
    pub async fn load(&self, config: DevnetConfig) -> Result<Devnet, CoordinatorError> {
        let genesis = Devnet::new(config).map_err(|e| CoordinatorError::Config(e.to_string()))?;
        let list = self.list().await?;
        for r in &list {
            match self.try_load(config, r).await {
                Ok(devnet) => return Ok(devnet),
                Err(why) => tracing::warn!(
                    batch = r.batch,
                    key = %r.key,
                    %why,
                    "devnet snapshot unusable; trying an older one"
                ),
            }
        }
        if !list.is_empty() {
            tracing::warn!("no usable devnet snapshot; rebuilding the devnet state from genesis");
        }
        Ok(genesis)
    }

    /// One snapshot, checked; the error says why it is unusable.
    async fn try_load(&self, config: DevnetConfig, r: &SnapshotRef) -> Result<Devnet, String> {
        let batch = self
            .store
            .batch(self.chain, r.batch)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("batch {} is not in the store", r.batch))?;
        let stored_root =
            proofmill_devnet::StateTransition::from_public_values(&batch.public_values)
                .map_err(|e| format!("batch {}: {e}", r.batch))?
                .new_state_root;
        if stored_root != r.state_root {
            return Err(format!(
                "listed root {} differs from the stored batch's {stored_root}",
                r.state_root
            ));
        }
        let bytes = self.blobs.get(&r.key).await.map_err(|e| e.to_string())?;
        let devnet = tokio::task::spawn_blocking(move || Devnet::from_snapshot(config, &bytes))
            .await
            .map_err(|e| format!("decoding crashed: {e}"))?
            .map_err(|e| e.to_string())?;
        let root = fr_to_digest(devnet.state_root());
        if devnet.next_batch_number() != r.batch + 1 || root != stored_root {
            return Err(format!(
                "state decodes to batch {} root {root}, expected batch {} root {stored_root}",
                devnet.next_batch_number() - 1,
                r.batch
            ));
        }
        Ok(devnet)
    }
}
