//! How a client (a prover, the CLI) reaches a coordinator: the URL's scheme decides TLS.
//! `https://` is always TLS (the server's certificate checked against `--tls-ca`, else the
//! system's roots); `http://` is always plaintext. When a connection fails, [`explain`] asks
//! the server which it speaks, so that a scheme that does not match says so instead of
//! surfacing as an HTTP/2 frame error.

use std::fmt;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

/// How long [`explain`] waits for the server's first bytes.
const PROBE_WAIT: Duration = Duration::from_secs(2);

/// TLS material of a client, as PEM. Only used with `https://` URLs.
#[derive(Clone, Default)]
pub struct ClientTls {
    /// The CA that signed the coordinator's certificate (default: the system's roots).
    pub ca: Option<Vec<u8>>,
    /// Certificate and key for mutual TLS.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// From the files of `--tls-ca`, `--tls-cert` and `--tls-key` (cert and key together).
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<ClientTls, String> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).map_err(|e| format!("cannot read TLS {what} {}: {e}", p.display()))
        };
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((read(c, "certificate")?, read(k, "key")?)),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together".into()),
        };
        Ok(ClientTls {
            ca: ca.map(|p| read(p, "CA")).transpose()?,
            identity,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.identity.is_none()
    }
}

/// An endpoint for `url`: TLS for `https://` (always), plaintext for `http://`.
pub fn endpoint(url: &str, tls: &ClientTls) -> Result<Endpoint, String> {
    let endpoint =
        Endpoint::from_shared(url.to_string()).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    match endpoint.uri().scheme_str() {
        Some("https") => {
            let mut config = ClientTlsConfig::new();
            config = match &tls.ca {
                Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
                None => config.with_native_roots(),
            };
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            endpoint
                .tls_config(config)
                .map_err(|e| format!("TLS settings for {url}: {}", error_chain(&e)))
        }
        Some("http") if !tls.is_empty() => Err(format!(
            "{url} is plaintext but TLS options (--tls-ca, --tls-cert) are set: use https://"
        )),
        Some("http") => Ok(endpoint),
        _ => Err(format!("{url}: the scheme must be http:// or https://")),
    }
}

/// What a server answered to the start of a plaintext HTTP/2 connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Speaks {
    /// A TLS alert: the server expects a TLS handshake.
    Tls,
    /// HTTP/2 settings: the server speaks plaintext gRPC.
    Plaintext,
}

/// Opens a connection to `url`'s host, sends the HTTP/2 preface and reads the first bytes
/// of the answer; `None` when it cannot tell (unreachable, closed, something else).
pub async fn probe(url: &str) -> Option<Speaks> {
    let uri: tonic::codegen::http::Uri = url.parse().ok()?;
    let host = uri.host()?.trim_start_matches('[').trim_end_matches(']');
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    let talk = async {
        let mut conn = tokio::net::TcpStream::connect((host, port)).await.ok()?;
        // Preface and an empty SETTINGS frame.
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        conn.write_all(&hello).await.ok()?;
        let mut head = [0u8; 5];
        conn.read_exact(&mut head).await.ok()?;
        Some(head)
    };
    let head = tokio::time::timeout(PROBE_WAIT, talk).await.ok()??;
    // A TLS record: content type alert (21), version 3.x.
    if head[0] == 21 && head[1] == 3 {
        return Some(Speaks::Tls);
    }
    // An HTTP/2 frame header: 24-bit length, then type 4 (SETTINGS).
    if head[3] == 4 {
        return Some(Speaks::Plaintext);
    }
    None
}

/// Why a connection to `url` that failed with `error` failed: when the URL's scheme does
/// not match what the server speaks, that (and the fix); else `error` itself.
pub async fn explain(url: &str, error: &str) -> String {
    let https = url.starts_with("https://");
    match probe(url).await {
        Some(Speaks::Tls) if !https => format!(
            "{url} is plaintext (http://) but the coordinator there serves TLS: \
             use https:// (with --tls-ca if its certificate is from a private CA)"
        ),
        Some(Speaks::Plaintext) if https => format!(
            "{url} asks for TLS (https://) but the coordinator there serves plaintext: \
             use http://, or start the coordinator with --tls-cert and --tls-key"
        ),
        _ => error.to_string(),
    }
}

/// Whether a failed call's status looks like the connection's fault (where [`explain`]
/// may tell more) rather than an answer of the server.
pub fn is_transport_failure(status: &tonic::Status) -> bool {
    use tonic::Code::*;
    matches!(status.code(), Unknown | Internal | Unavailable | Cancelled)
        && !status.metadata().contains_key(crate::ACTIVE_URL_HEADER)
}

/// Adds `authorization: Bearer <token>` to every call (admin clients).
#[derive(Clone, Default)]
pub struct BearerToken(Option<AsciiMetadataValue>);

impl BearerToken {
    /// `None`: calls go without a token.
    pub fn new(token: Option<&str>) -> Result<BearerToken, String> {
        token
            .map(|t| {
                MetadataValue::try_from(format!("Bearer {t}"))
                    .map_err(|_| "the admin token must be printable ASCII".to_string())
            })
            .transpose()
            .map(BearerToken)
    }
}

impl fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "BearerToken(<redacted>)"
        } else {
            "BearerToken(none)"
        })
    }
}

impl Interceptor for BearerToken {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            let mut v = v.clone();
            v.set_sensitive(true);
            request.metadata_mut().insert("authorization", v);
        }
        Ok(request)
    }
}

/// An error and its sources, on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let next = inner.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        source = inner.source();
    }
    s
}
