//! A request's inputs, read from its URL and checked. The URL is read by the store's
//! [`UrlFetch`] (as a coordinator reads the inputs its clients name): `http(s)://` with a
//! timeout and a size cap that holds while the bytes stream in, `s3://`/`gs://`, and
//! `file://` only under the operator's directories (none by default), the path resolved
//! before it is checked. Then the SHA-256 must be the request's `inputs_digest`, the bytes a
//! [`MarketInputs`] envelope, and its chain and batch the request's.

use proofmill_market::{MarketInputs, RequestId};
use proofmill_store::UrlFetch;
use std::path::PathBuf;
use std::time::Duration;

/// How inputs are fetched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchConfig {
    /// Directories `file://` URLs may point into (each must exist).
    pub file_dirs: Vec<PathBuf>,
    /// Largest inputs read, bytes.
    pub max_bytes: u64,
    /// Longest one fetch takes, connection to last byte.
    pub timeout: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig {
            file_dirs: Vec::new(),
            max_bytes: 256 << 20,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Why a request's inputs are not usable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Nothing readable there now (refused, 404, timeout, cut short): may pass later.
    #[error("{0}")]
    Unreachable(String),
    #[error("the inputs at {url} are larger than {max} bytes")]
    TooLarge { url: String, max: u64 },
    /// A URL this network does not read (scheme, directory, malformed).
    #[error("{0}")]
    Refused(String),
    #[error("the inputs' SHA-256 is {got}, the request says {want}")]
    DigestMismatch { got: String, want: String },
    #[error("the inputs are not an inputs envelope: {0}")]
    Undecodable(String),
    #[error("the inputs are for chain {got_chain} batch {got_batch}, not {want}")]
    WrongBatch {
        got_chain: u64,
        got_batch: u64,
        want: RequestId,
    },
}

impl FetchError {
    /// Whether fetching again may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, FetchError::Unreachable(_))
    }
}

impl From<proofmill_store::FetchError> for FetchError {
    fn from(e: proofmill_store::FetchError) -> Self {
        use proofmill_store::FetchError as F;
        match e {
            F::Unreachable(m) => FetchError::Unreachable(m),
            F::TooLarge { url, max } => FetchError::TooLarge { url, max },
            F::Refused(m) => FetchError::Refused(m),
        }
    }
}

/// Fetches and checks inputs (cheap to clone).
#[derive(Clone, Debug)]
pub struct InputsFetcher {
    urls: UrlFetch,
    max: u64,
}

impl InputsFetcher {
    /// The directories are resolved now: each must exist.
    pub fn new(cfg: &FetchConfig) -> Result<InputsFetcher, String> {
        Ok(InputsFetcher {
            urls: UrlFetch::new(&cfg.file_dirs, cfg.timeout, "--inputs-file-dirs")?,
            max: cfg.max_bytes,
        })
    }

    /// The inputs of request `id` at `url`, checked against `digest` and `id`.
    pub async fn inputs(
        &self,
        id: RequestId,
        url: &str,
        digest: &[u8; 32],
    ) -> Result<MarketInputs, FetchError> {
        let bytes = self.fetch(url).await?;
        let got = MarketInputs::digest_of(&bytes);
        if got != *digest {
            return Err(FetchError::DigestMismatch {
                got: hex::encode(got),
                want: hex::encode(digest),
            });
        }
        let inputs =
            MarketInputs::decode(&bytes).map_err(|e| FetchError::Undecodable(e.to_string()))?;
        if inputs.chain_id != id.chain_id || inputs.batch != id.batch {
            return Err(FetchError::WrongBatch {
                got_chain: inputs.chain_id,
                got_batch: inputs.batch,
                want: id,
            });
        }
        Ok(inputs)
    }

    /// The bytes at `url`, at most the cap.
    pub async fn fetch(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        Ok(self.urls.fetch(url, self.max).await?.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn sample(batch: u64) -> MarketInputs {
        MarketInputs {
            chain_id: 7,
            batch,
            program_version: "v1".into(),
            proof_type: "exec".into(),
            public_values: vec![1, 2],
            input: vec![3; 100],
        }
    }

    fn fetcher(dirs: &[&Path], max: u64) -> InputsFetcher {
        InputsFetcher::new(&FetchConfig {
            file_dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
            max_bytes: max,
            timeout: Duration::from_secs(5),
        })
        .unwrap()
    }

    #[tokio::test]
    async fn file_inputs_only_under_the_allowed_directories_and_checked() {
        let allowed = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let bytes = sample(3).encode().unwrap();
        let digest = MarketInputs::digest_of(&bytes);
        std::fs::write(allowed.path().join("in.bin"), &bytes).unwrap();
        std::fs::write(other.path().join("secret"), &bytes).unwrap();
        std::os::unix::fs::symlink(other.path().join("secret"), allowed.path().join("link"))
            .unwrap();
        let url = |p: &Path| url::Url::from_file_path(p).unwrap().to_string();
        let inside = url(&allowed.path().join("in.bin"));
        let id = RequestId::new(7, 3);
        assert!(matches!(
            fetcher(&[], 1 << 20).inputs(id, &inside, &digest).await,
            Err(FetchError::Refused(_))
        ));
        let f = fetcher(&[allowed.path()], 1 << 20);
        assert_eq!(f.inputs(id, &inside, &digest).await.unwrap(), sample(3));
        assert!(matches!(
            f.inputs(id, &inside, &[0; 32]).await,
            Err(FetchError::DigestMismatch { .. })
        ));
        assert_eq!(
            f.inputs(RequestId::new(7, 4), &inside, &digest).await,
            Err(FetchError::WrongBatch {
                got_chain: 7,
                got_batch: 3,
                want: RequestId::new(7, 4)
            })
        );
        assert!(matches!(
            fetcher(&[allowed.path()], 10)
                .inputs(id, &inside, &digest)
                .await,
            Err(FetchError::TooLarge { max: 10, .. })
        ));
        std::fs::write(allowed.path().join("junk"), b"junk").unwrap();
        let junk = url(&allowed.path().join("junk"));
        assert!(matches!(
            f.inputs(id, &junk, &MarketInputs::digest_of(b"junk")).await,
            Err(FetchError::Undecodable(_))
        ));
        for outside in [
            url(&other.path().join("secret")),
            url(&allowed.path().join("link")),
            url(&allowed.path().join("missing")),
            "ftp://host/x".to_string(),
        ] {
            let e = f.inputs(id, &outside, &digest).await.unwrap_err();
            assert!(matches!(e, FetchError::Refused(_)), "{outside}: {e}");
            assert!(!e.is_transient());
        }
    }
}
