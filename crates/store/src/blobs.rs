//! Blob storage (batch inputs, proofs) on `object_store`.
//!
//! URLs: `file:///abs/dir` (directory created if missing; add `?fsync=true` to fsync every
//! write so blobs also survive power loss, otherwise a completed put survives a process
//! crash), `memory://` (process-local, for tests), `s3://bucket[/prefix]` and
//! `gs://bucket[/prefix]` (credentials, region, endpoint from the standard `AWS_*` /
//! `GOOGLE_*` environment variables; needs the `cloud` feature).
//!
//! Keys are relative paths such as `inputs/000000000042.bin`: segments of
//! `[A-Za-z0-9._=+@,~-]`, no empty, `.` or `..` segment, no leading `/`.

use crate::api::{Result, StoreError};
use bytes::Bytes;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, ObjectStoreExt as _};
use std::sync::Arc;

const MAX_KEY_LEN: usize = 1024;

/// What [`Blobs::probe`] asks about.
const PROBE_KEY: &str = "proofmill-probe";

/// Handle to a blob store. Cheap to clone.
#[derive(Clone)]
pub struct Blobs {
    store: Arc<dyn ObjectStore>,
    /// URL of the store root, without a trailing slash; `url(key)` is `{base}/{key}`.
    base: Arc<str>,
    /// Key prefix inside the store (bucket prefix), empty for none.
    prefix: Arc<str>,
}

impl std::fmt::Debug for Blobs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blobs").field("url", &self.base).finish()
    }
}

fn invalid(url: &str, reason: impl Into<String>) -> StoreError {
    StoreError::InvalidUrl {
        url: url.to_owned(),
        reason: reason.into(),
    }
}

/// Checks that `key` is a safe relative blob path (see the module docs).
pub fn validate_key(key: &str) -> Result<()> {
    let bad = |why: &str| Err(StoreError::Blob(format!("invalid blob key {key:?}: {why}")));
    if key.is_empty() {
        return bad("empty");
    }
    if key.len() > MAX_KEY_LEN {
        return bad("too long");
    }
    if key.starts_with('/') {
        return bad("absolute path");
    }
    for segment in key.split('/') {
        match segment {
            "" => return bad("empty path segment"),
            "." | ".." => return bad("`.` or `..` segment"),
            _ => {}
        }
        if let Some(c) = segment
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "._=+@,~-".contains(*c)))
        {
            return bad(&format!("character {c:?} not allowed"));
        }
    }
    Ok(())
}

impl Blobs {
    /// Opens a blob store from a URL (see the module docs).
    pub fn from_url(url: &str) -> Result<Blobs> {
        let parsed = url::Url::parse(url).map_err(|e| invalid(url, e.to_string()))?;
        match parsed.scheme() {
            "memory" => {
                if !parsed.path().trim_matches('/').is_empty()
                    || parsed.host_str().is_some_and(|h| !h.is_empty())
                {
                    return Err(invalid(url, "memory:// takes no path"));
                }
                Ok(Blobs::memory())
            }
            "file" => Self::local(url, &parsed),
            "s3" | "gs" => Self::cloud(url, &parsed),
            other => Err(invalid(
                url,
                format!(
                    "unsupported scheme {other:?}: use file:///abs/dir, memory://, s3://bucket[/prefix] or gs://bucket[/prefix]"
                ),
            )),
        }
    }

    /// A process-local in-memory store.
    pub fn memory() -> Blobs {
        Blobs {
            store: Arc::new(object_store::memory::InMemory::new()),
            base: "memory://".into(),
            prefix: "".into(),
        }
    }

    fn local(url: &str, parsed: &url::Url) -> Result<Blobs> {
        if parsed
            .host_str()
            .is_some_and(|h| !h.is_empty() && h != "localhost")
        {
            return Err(invalid(
                url,
                "file URLs must be local: file:///absolute/dir",
            ));
        }
        let mut fsync = false;
        for (k, v) in parsed.query_pairs() {
            match (&*k, &*v) {
                ("fsync", "true" | "1") => fsync = true,
                ("fsync", "false" | "0") => fsync = false,
                _ => {
                    return Err(invalid(
                        url,
                        format!("unknown parameter {k}={v} (only fsync=true|false)"),
                    ));
                }
            }
        }
        let dir = parsed
            .to_file_path()
            .map_err(|_| invalid(url, "not an absolute local path (use file:///abs/dir)"))?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| invalid(url, format!("creating {}: {e}", dir.display())))?;
        let dir = dir
            .canonicalize()
            .map_err(|e| invalid(url, format!("resolving {}: {e}", dir.display())))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(&dir)
            .map_err(|e| invalid(url, e.to_string()))?
            .with_fsync(fsync);
        let base = url::Url::from_file_path(&dir)
            .map_err(|_| invalid(url, "not an absolute local path"))?
            .to_string();
        Ok(Blobs {
            store: Arc::new(store),
            base: base.trim_end_matches('/').into(),
            prefix: "".into(),
        })
    }

    #[cfg(not(feature = "cloud"))]
    fn cloud(url: &str, _parsed: &url::Url) -> Result<Blobs> {
        Err(invalid(
            url,
            "this build has no S3/GCS support (enable the `cloud` feature of proofmill-store)",
        ))
    }

    #[cfg(feature = "cloud")]
    fn cloud(url: &str, parsed: &url::Url) -> Result<Blobs> {
        let bucket = parsed
            .host_str()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| invalid(url, "missing bucket"))?;
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid(
                url,
                "no query parameters: configure the client with environment variables",
            ));
        }
        let prefix = parsed.path().trim_matches('/').to_owned();
        if !prefix.is_empty() {
            validate_key(&prefix).map_err(|e| invalid(url, format!("bad prefix: {e}")))?;
        }
        // object_store's HTTP client uses rustls with whatever provider is installed; we ship
        // ring (no aws-lc C build). An already-installed provider is fine too.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store: Arc<dyn ObjectStore> = if parsed.scheme() == "s3" {
            Arc::new(
                object_store::aws::AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| invalid(url, e.to_string()))?,
            )
        } else {
            Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| invalid(url, e.to_string()))?,
            )
        };
        let base = if prefix.is_empty() {
            format!("{}://{bucket}", parsed.scheme())
        } else {
            format!("{}://{bucket}/{prefix}", parsed.scheme())
        };
        Ok(Blobs {
            store,
            base: base.into(),
            prefix: prefix.into(),
        })
    }

    fn path(&self, key: &str) -> Result<ObjPath> {
        validate_key(key)?;
        let full = if self.prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{}/{key}", self.prefix)
        };
        ObjPath::parse(&full)
            .map_err(|e| StoreError::Blob(format!("invalid blob key {key:?}: {e}")))
    }

    fn map_err(op: &str, key: &str, e: object_store::Error) -> StoreError {
        match e {
            object_store::Error::NotFound { .. } => StoreError::BlobNotFound {
                key: key.to_owned(),
            },
            e => StoreError::Blob(format!("{op} {key:?}: {e}")),
        }
    }

    /// Stores `data` under `key`, replacing any previous value. Atomic: readers see the old
    /// or the new bytes, never a partial write (the local store writes a temporary file and
    /// renames it).
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.path(key)?;
        self.store
            .put(&path, data.into())
            .await
            .map_err(|e| Self::map_err("put", key, e))?;
        Ok(())
    }

    /// Reads a blob; [`StoreError::BlobNotFound`] when it does not exist.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| Self::map_err("get", key, e))?;
        result
            .bytes()
            .await
            .map_err(|e| Self::map_err("get", key, e))
    }

    /// Reads a blob of at most `max` bytes; `Ok(Err(size))` for a larger one, whose body is
    /// then never read (its size comes with the answer's metadata).
    pub async fn get_at_most(
        &self,
        key: &str,
        max: u64,
    ) -> Result<std::result::Result<Bytes, u64>> {
        let path = self.path(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| Self::map_err("get", key, e))?;
        let size = result.meta.size as u64;
        if size > max {
            return Ok(Err(size));
        }
        let data = result
            .bytes()
            .await
            .map_err(|e| Self::map_err("get", key, e))?;
        Ok(Ok(data))
    }

    /// Deletes a blob. Deleting a missing blob succeeds.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::map_err("delete", key, e)),
        }
    }

    /// Whether the blob store answers: a metadata read of a key that need not exist (found
    /// or not found both count).
    pub async fn probe(&self) -> Result<()> {
        let path = self.path(PROBE_KEY)?;
        match self.store.head(&path).await {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Self::map_err("probe", PROBE_KEY, e)),
        }
    }

    /// Full URL of `key`, readable with [`get_url`] by anyone with access to the same store.
    /// (Does not validate `key`; [`Blobs::put`] does.)
    pub fn url(&self, key: &str) -> String {
        format!("{}/{key}", self.base)
    }

    /// URL of the store root (what `from_url` was given, normalized).
    pub fn base_url(&self) -> &str {
        &self.base
    }
}

/// Splits a blob URL produced by [`Blobs::url`] into a store for its directory and the key
/// (the last path segment). `memory://` URLs are process-local and cannot be opened.
pub fn parse_blob_url(url: &str) -> Result<(Blobs, String)> {
    let parsed = url::Url::parse(url).map_err(|e| invalid(url, e.to_string()))?;
    if parsed.scheme() == "memory" {
        return Err(invalid(
            url,
            "memory:// blobs are only readable through the Blobs that wrote them",
        ));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(invalid(url, "blob URLs take no query or fragment"));
    }
    let path = parsed.path();
    let (dir, key) = path
        .rsplit_once('/')
        .ok_or_else(|| invalid(url, "no key in the path"))?;
    if key.is_empty() {
        return Err(invalid(url, "URL ends with `/`: no key"));
    }
    validate_key(key).map_err(|e| invalid(url, e.to_string()))?;
    let mut store_url = parsed.clone();
    store_url.set_path(if dir.is_empty() { "/" } else { dir });
    let blobs = Blobs::from_url(store_url.as_str().trim_end_matches('/'))
        .or_else(|_| Blobs::from_url(store_url.as_str()))?;
    Ok((blobs, key.to_owned()))
}

/// Reads the blob at a URL produced by [`Blobs::url`].
pub async fn get_url(url: &str) -> Result<Bytes> {
    let (blobs, key) = parse_blob_url(url)?;
    blobs.get(&key).await
}

#[cfg(all(test, feature = "cloud"))]
mod tests {
    use super::*;

    #[test]
    fn cloud_urls() {
        for (url, key, want) in [
            ("s3://bucket", "inputs/1.bin", "s3://bucket/inputs/1.bin"),
            (
                "s3://bucket/some/prefix/",
                "p/2.bin",
                "s3://bucket/some/prefix/p/2.bin",
            ),
            ("gs://bucket/pre", "x", "gs://bucket/pre/x"),
        ] {
            let blobs = Blobs::from_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(blobs.url(key), want);
            assert_eq!(
                blobs.path(key).unwrap().as_ref(),
                want.split_once("bucket/").unwrap().1
            );
        }
        for bad in [
            "s3://bucket/a b",
            "s3://bucket/a//b",
            "s3://bucket?region=x",
            "gs:///nobucket",
        ] {
            assert!(
                matches!(Blobs::from_url(bad), Err(StoreError::InvalidUrl { .. })),
                "{bad}"
            );
        }
    }
}
