//! Bytes named by URL (a batch input a client names, a proof request's inputs a proving
//! network fetches): read with a size cap that holds while the bytes come in (a larger body
//! is never held in full), and from where the operator allows only.
//!
//! `http(s)://` through reqwest with a timeout; `s3://` and `gs://` through the blob store's
//! object stores (credentials from the environment, as the blob store takes them); `file://`
//! only under the allowed directories (none by default), the path resolved (symlinks, `..`)
//! before it is checked, so a remote party cannot make the process read its own files.

use crate::capped::Capped;
use bytes::Bytes;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::AsyncReadExt as _;

/// Longest a URL fetch takes by default, connection to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(120);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a URL could not be fetched.
#[derive(Clone, Debug, thiserror::Error, PartialEq, Eq)]
pub enum FetchError {
    /// Nothing readable there now: refused, not found, timed out, cut short.
    #[error("{0}")]
    Unreachable(String),
    /// Larger than the cap.
    #[error("the input at {url} is larger than {max} bytes")]
    TooLarge { url: String, max: u64 },
    /// A URL this process does not read (scheme, directory, malformed).
    #[error("{0}")]
    Refused(String),
}

/// Fetches by URL (cheap to clone).
#[derive(Clone)]
pub struct UrlFetch {
    /// Directories `file://` URLs may point into, resolved.
    dirs: Vec<PathBuf>,
    http: Option<reqwest::Client>,
    /// The option that names `dirs`, for the refusals' reasons.
    dirs_flag: &'static str,
}

impl std::fmt::Debug for UrlFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UrlFetch")
            .field("dirs", &self.dirs)
            .finish_non_exhaustive()
    }
}

impl UrlFetch {
    /// `dirs`: where `file://` URLs may point (resolved now: each must exist), given by the
    /// option `dirs_flag`; `timeout`: of a whole http(s) fetch.
    pub fn new(
        dirs: &[PathBuf],
        timeout: Duration,
        dirs_flag: &'static str,
    ) -> Result<UrlFetch, String> {
        let dirs = dirs
            .iter()
            .map(|d| {
                std::fs::canonicalize(d)
                    .map_err(|e| format!("{dirs_flag} directory {}: {e}", d.display()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // rustls with ring, as the blob store and the L1 client install it.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Without a client, http(s):// URLs are refused with the reason (see `http`).
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(timeout))
            .build()
            .ok();
        Ok(UrlFetch {
            dirs,
            http,
            dirs_flag,
        })
    }

    /// The bytes at `url`, at most `max` of them.
    pub async fn fetch(&self, url: &str, max: u64) -> Result<Bytes, FetchError> {
        let parsed =
            url::Url::parse(url).map_err(|e| FetchError::Refused(format!("URL {url:?}: {e}")))?;
        match parsed.scheme() {
            "http" | "https" => self.http(url, max).await,
            "file" => self.file(url, &parsed, max).await,
            "s3" | "gs" => cloud(url, max).await,
            other => Err(FetchError::Refused(format!(
                "URL scheme {other:?} is not fetched: use http(s)://, s3://, gs:// or file:// \
                 (under {})",
                self.dirs_flag
            ))),
        }
    }

    async fn http(&self, url: &str, max: u64) -> Result<Bytes, FetchError> {
        let Some(client) = &self.http else {
            return Err(FetchError::Refused(
                "no HTTP client could be made here: http(s):// URLs are refused".into(),
            ));
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
            max,
        };
        if response.content_length().is_some_and(|n| n > max) {
            return Err(too_large());
        }
        let mut data = Capped::new(max);
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            data.push(&chunk)
                .map_err(|_: crate::capped::OverCap| too_large())?;
        }
        Ok(data.into_bytes())
    }

    async fn file(&self, url: &str, parsed: &url::Url, max: u64) -> Result<Bytes, FetchError> {
        if self.dirs.is_empty() {
            return Err(FetchError::Refused(format!(
                "file:// URLs are refused: no directory is allowed ({})",
                self.dirs_flag
            )));
        }
        let path = parsed
            .to_file_path()
            .map_err(|()| FetchError::Refused(format!("{url}: not a local absolute path")))?;
        // Resolved first: a symlink or `..` must not lead out of an allowed directory. A path
        // that does not resolve is not told apart from one outside (nothing to learn there).
        let resolved = tokio::fs::canonicalize(&path).await.ok();
        let Some(resolved) = resolved.filter(|p| self.allowed(p)) else {
            return Err(FetchError::Refused(format!(
                "{url}: not a file under the directories read from ({})",
                self.dirs_flag
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
        if meta.len() > max {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                max,
            });
        }
        let mut data = Vec::with_capacity(meta.len() as usize);
        // One byte more than the cap: a file that grew meanwhile is caught too.
        file.take(max + 1)
            .read_to_end(&mut data)
            .await
            .map_err(unreachable)?;
        if data.len() as u64 > max {
            return Err(FetchError::TooLarge {
                url: url.to_string(),
                max,
            });
        }
        Ok(data.into())
    }

    fn allowed(&self, path: &Path) -> bool {
        self.dirs.iter().any(|d| path.starts_with(d))
    }
}

/// An error with its sources (reqwest's own text hides the cause: "error sending request").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

async fn cloud(url: &str, max: u64) -> Result<Bytes, FetchError> {
    let (blobs, key) =
        crate::parse_blob_url(url).map_err(|e| FetchError::Refused(format!("URL {url}: {e}")))?;
    match blobs.get_at_most(&key, max).await {
        Ok(Ok(data)) => Ok(data),
        Ok(Err(_size)) => Err(FetchError::TooLarge {
            url: url.to_string(),
            max,
        }),
        Err(e) => Err(FetchError::Unreachable(format!("{url}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn file_urls_only_under_the_allowed_directories() {
        let allowed = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        std::fs::write(allowed.path().join("in.bin"), b"input").unwrap();
        std::fs::write(other.path().join("secret"), b"secret").unwrap();
        std::os::unix::fs::symlink(other.path().join("secret"), allowed.path().join("link"))
            .unwrap();
        let url = |p: &Path| url::Url::from_file_path(p).unwrap().to_string();
        let none = UrlFetch::new(&[], FETCH_TIMEOUT, "--dirs").unwrap();
        let inside = url(&allowed.path().join("in.bin"));
        assert!(matches!(
            none.fetch(&inside, 100).await,
            Err(FetchError::Refused(_))
        ));
        let fetch =
            UrlFetch::new(&[allowed.path().to_path_buf()], FETCH_TIMEOUT, "--dirs").unwrap();
        assert_eq!(&fetch.fetch(&inside, 100).await.unwrap()[..], b"input");
        assert!(matches!(
            fetch.fetch(&inside, 4).await,
            Err(FetchError::TooLarge { max: 4, .. })
        ));
        for outside in [
            url(&other.path().join("secret")),
            url(&allowed.path().join("link")),
            format!("{}/../{}/secret", url(allowed.path()), {
                other.path().file_name().unwrap().to_string_lossy()
            }),
            url(&allowed.path().join("missing")),
        ] {
            assert!(
                matches!(
                    fetch.fetch(&outside, 100).await,
                    Err(FetchError::Refused(_))
                ),
                "{outside}"
            );
        }
        assert!(matches!(
            fetch.fetch("ftp://host/x", 100).await,
            Err(FetchError::Refused(_))
        ));
    }

    /// A server answering each path once: `/sized` with a Content-Length, `/chunked`
    /// without one (the cap must hold while the body streams), anything else 404.
    fn server(body: &'static [u8]) -> String {
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
                let _ = if head.starts_with("GET /sized ") {
                    write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .and_then(|()| conn.write_all(body))
                } else if head.starts_with("GET /chunked ") {
                    write!(
                        conn,
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                    )
                    .and_then(|()| {
                        for piece in body.chunks(3) {
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
        let base = server(b"0123456789");
        let fetch = UrlFetch::new(&[], FETCH_TIMEOUT, "--dirs").unwrap();
        for path in ["sized", "chunked"] {
            let url = format!("{base}/{path}");
            assert_eq!(
                &fetch.fetch(&url, 10).await.unwrap()[..],
                b"0123456789",
                "{path}"
            );
            assert_eq!(
                fetch.fetch(&url, 9).await,
                Err(FetchError::TooLarge {
                    url: url.clone(),
                    max: 9
                }),
                "{path}"
            );
        }
        let missing = fetch.fetch(&format!("{base}/missing"), 10).await;
        assert!(
            matches!(&missing, Err(FetchError::Unreachable(m)) if m.contains("404")),
            "{missing:?}"
        );
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = format!("http://{}/x", closed.local_addr().unwrap());
        drop(closed);
        assert!(matches!(
            fetch.fetch(&gone, 10).await,
            Err(FetchError::Unreachable(_))
        ));
    }
}
