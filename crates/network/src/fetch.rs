//! A request's inputs, read from its URL and checked: `http(s)://` through reqwest with a
//! timeout and a size cap that holds while the bytes stream in (a larger body is never held
//! whole); `file://` only under the operator's directories (none by default), the path
//! resolved (symlinks, `..`) before it is checked. Then the SHA-256 must be the request's
//! `inputs_digest`, the bytes a [`MarketInputs`] envelope, and its chain and batch the
//! request's.

use proofmill_market::{MarketInputs, RequestId};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

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

/// Fetches and checks inputs (cheap to clone).
#[derive(Clone, Debug)]
pub struct InputsFetcher {
    dirs: Vec<PathBuf>,
    max: u64,
    http: Option<reqwest::Client>,
}

impl InputsFetcher {
    /// The directories are resolved now: each must exist.
    pub fn new(cfg: &FetchConfig) -> Result<InputsFetcher, String> {
        let dirs = cfg
            .file_dirs
            .iter()
            .map(|d| {
                std::fs::canonicalize(d)
                    .map_err(|e| format!("inputs file directory {}: {e}", d.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // rustls with ring, as the L1 client and the coordinator install it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| tracing::warn!(error = %e, "no HTTP client: http(s):// inputs refused"))
            .ok();
        Ok(InputsFetcher {
            dirs,
            max: cfg.max_bytes,
            http,
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
        let parsed =
            url::Url::parse(url).map_err(|e| FetchError::Refused(format!("URL {url:?}: {e}")))?;
        match parsed.scheme() {
            "http" | "https" => self.http(url).await,
            "file" => self.file(url, &parsed).await,
            other => Err(FetchError::Refused(format!(
                "URL scheme {other:?} is not fetched: use http(s):// or file:// (under \
                 --inputs-file-dirs)"
            ))),
        }
    }

    async fn http(&self, url: &str) -> Result<Vec<u8>, FetchError> {
        let Some(client) = &self.http else {
            return Err(FetchError::Refused("no HTTP client".into()));
        };
        let unreachable =
            |e: reqwest::Error| FetchError::Unreachable(format!("{url}: {}", error_chain(&e)));
        let mut response = client.get(url).send().await.map_err(unreachable)?;
        if !response.status().is_success() {
            return Err(FetchError::Unreachable(format!(
                "{url}: HTTP {}",
                response.status()
            )));
        }
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            max: self.max,
        };
        if response.content_length().is_some_and(|n| n > self.max) {
            return Err(too_large());
        }
        let mut data = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if (data.len() + chunk.len()) as u64 > self.max {
                return Err(too_large());
            }
            data.extend_from_slice(&chunk);
        }
        Ok(data)
    }

    async fn file(&self, url: &str, parsed: &url::Url) -> Result<Vec<u8>, FetchError> {
        if self.dirs.is_empty() {
            return Err(FetchError::Refused(
                "file:// inputs are refused: no directory is allowed (--inputs-file-dirs)".into(),
            ));
        }
        let path = parsed
            .to_file_path()
            .map_err(|()| FetchError::Refused(format!("{url}: not a local absolute path")))?;
        // Resolved first: a symlink or `..` must not lead out of an allowed directory.
        let resolved = tokio::fs::canonicalize(&path).await.ok();
        let Some(resolved) = resolved.filter(|p| self.allowed(p)) else {
            return Err(FetchError::Refused(format!(
                "{url}: not a file under the directories inputs are read from \
                 (--inputs-file-dirs)"
            )));
        };
        let unreachable =
            |e: std::io::Error| FetchError::Unreachable(format!("{}: {e}", resolved.display()));
        let file = tokio::fs::File::open(&resolved)
            .await
            .map_err(unreachable)?;
        let meta = file.metadata().await.map_err(unreachable)?;
        if !meta.is_file() {
            return Err(FetchError::Refused(format!("{url}: not a regular file")));
        }
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            max: self.max,
        };
        if meta.len() > self.max {
            return Err(too_large());
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        // One byte over the cap: a file that grew meanwhile is caught too.
        file.take(self.max + 1)
            .read_to_end(&mut data)
            .await
            .map_err(unreachable)?;
        if data.len() as u64 > self.max {
            return Err(too_large());
        }
        Ok(data)
    }

    fn allowed(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| path.starts_with(d))
    }
}

/// An error with its sources (reqwest's own text hides the cause).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// Serves `body` chunked (no Content-Length) at `/chunked`, anything else 404.
    fn server(body: Vec<u8>) -> String {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let _ = if head.starts_with("GET /chunked ") {
                    write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    )
                    .and_then(|()| {
                        for piece in body.chunks(7) {
                            write!(conn, "{:x}\r\n", piece.len())?;
                            conn.write_all(piece)?;
                            conn.write_all(b"\r\n")?;
                        }
                        conn.write_all(b"0\r\n\r\n")
                    })
                } else {
                    write!(
                        conn,
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    )
                };
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn http_inputs_are_capped_while_they_stream() {
        let bytes = sample(5).encode().unwrap();
        let digest = MarketInputs::digest_of(&bytes);
        let base = server(bytes.clone());
        let id = RequestId::new(7, 5);
        let url = format!("{base}/chunked");
        let f = fetcher(&[], bytes.len() as u64);
        assert_eq!(f.inputs(id, &url, &digest).await.unwrap(), sample(5));
        let small = fetcher(&[], bytes.len() as u64 - 1);
        assert!(matches!(
            small.inputs(id, &url, &digest).await,
            Err(FetchError::TooLarge { .. })
        ));
        let missing = f
            .inputs(id, &format!("{base}/missing"), &digest)
            .await
            .unwrap_err();
        assert!(missing.is_transient() && missing.to_string().contains("404"));
    }
}
