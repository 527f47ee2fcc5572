//! The HTTP client of pull mode: every request has a timeout (connect, send and the whole
//! body), a reply is read at most up to a cap as it arrives (a 1 GiB reply is never held in
//! memory), and every failure is an error of a kind ([`ClientError::kind`]), never a panic.
//! Several URLs are replicas of one core: a request goes to the current one, and a transport
//! failure moves on to the next for the following request.

use crate::wire::{
    PollGeneratedProofsRequest, PollGeneratedProofsResponse, ProofGenerationData,
    ProofGenerationDataRequest, ProofGenerationDataResponse, SubmitProofRequest,
    SubmitProofResponse,
};
use serde::de::DeserializeOwned;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Why a request to the core failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    #[error("core API client: {0}")]
    Config(String),
    #[error("cannot connect to the core API at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("the core API at {url} did not answer within {timeout_ms} ms")]
    Timeout { url: String, timeout_ms: u64 },
    #[error("the core API at {url} answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("the core API at {url} answered something that is not its JSON ({reason}): {head}")]
    NotJson {
        url: String,
        reason: String,
        head: String,
    },
    #[error(
        "the core API at {url} sent a reply over the {limit}-byte cap (--core-api-max-body-bytes); not read"
    )]
    TooLarge { url: String, limit: u64 },
    #[error("the core API at {url} broke off its reply: {reason}")]
    Body { url: String, reason: String },
    /// The core answered `{"Error": "…"}`.
    #[error("the core API at {url} said: {message}")]
    Core { url: String, message: String },
}

impl ClientError {
    /// The metric label of the error (`proofmill_gateway_http_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            ClientError::Config(_) => "config",
            ClientError::Connect { .. } => "connect",
            ClientError::Timeout { .. } => "timeout",
            ClientError::Status { .. } => "http_status",
            ClientError::NotJson { .. } => "not_json",
            ClientError::TooLarge { .. } => "too_large",
            ClientError::Body { .. } => "body",
            ClientError::Core { .. } => "core_error",
        }
    }

    /// Whether another replica might do better (not so for the core's own refusal).
    fn rotates(&self) -> bool {
        !matches!(self, ClientError::Core { .. } | ClientError::Config(_))
    }
}

/// What the client needs.
#[derive(Clone)]
pub struct ClientConfig {
    /// Base URLs of the core API (replicas of one core), e.g. `http://core:3320`.
    pub urls: Vec<String>,
    /// Bound of each request, from connecting to the reply's last byte.
    pub timeout: Duration,
    /// Largest reply read.
    pub max_body_bytes: u64,
    /// Sent as `Authorization: Bearer …` when set (a proving cluster's push listener takes
    /// an admin token with the operator role).
    pub token: Option<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("urls", &self.urls)
            .field("timeout", &self.timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// The core API's client (cheap to share by reference).
pub struct CoreClient {
    http: reqwest::Client,
    urls: Vec<url::Url>,
    current: AtomicUsize,
    timeout: Duration,
    max_body: u64,
    token: Option<String>,
}

impl CoreClient {
    pub fn new(cfg: ClientConfig) -> Result<CoreClient, ClientError> {
        if cfg.urls.is_empty() {
            return Err(ClientError::Config("no core API URL".into()));
        }
        let mut urls = Vec::new();
        for u in &cfg.urls {
            let mut url = url::Url::parse(u.trim())
                .map_err(|e| ClientError::Config(format!("{u:?} is not a URL: {e}")))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(ClientError::Config(format!(
                    "{u:?}: expected an http:// or https:// URL"
                )));
            }
            // `join` keeps a base path only if it ends with a slash.
            if !url.path().ends_with('/') {
                url.set_path(&format!("{}/", url.path()));
            }
            urls.push(url);
        }
        // reqwest is built without a default crypto provider (no aws-lc build) and needs
        // one even for plain http; an already installed one is kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            // A redirect is an answer to report, not to follow to an unknown host.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ClientError::Config(e.to_string()))?;
        Ok(CoreClient {
            http,
            urls,
            current: AtomicUsize::new(0),
            timeout: cfg.timeout,
            max_body: cfg.max_body_bytes,
            token: cfg.token,
        })
    }

    /// The replica requests go to now (for messages), without credentials.
    pub fn current_url(&self) -> String {
        shown(&self.urls[self.current.load(Ordering::Relaxed) % self.urls.len()])
    }

    /// `POST /proof_generation_data`: the next batch to prove, or `None` when the core has
    /// none.
    pub async fn proof_generation_data(&self) -> Result<Option<ProofGenerationData>, ClientError> {
        let body = serde_json::to_vec(&ProofGenerationDataRequest {}).expect("{} encodes");
        let (url, reply) = self
            .post::<ProofGenerationDataResponse>("proof_generation_data", body)
            .await?;
        match reply {
            ProofGenerationDataResponse::Success(data) => Ok(data.map(|d| *d)),
            ProofGenerationDataResponse::Error(message) => Err(ClientError::Core { url, message }),
        }
    }

    /// `POST /submit_proof/{batch}`: `Ok` only when the core answered `"Success"`.
    pub async fn submit_proof(
        &self,
        batch: u64,
        request: &SubmitProofRequest,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(request)
            .map_err(|e| ClientError::Config(format!("encoding the proof: {e}")))?;
        let (url, reply) = self
            .post::<SubmitProofResponse>(&format!("submit_proof/{batch}"), body)
            .await?;
        match reply {
            SubmitProofResponse::Success => Ok(()),
            SubmitProofResponse::Error(message) => Err(ClientError::Core { url, message }),
        }
    }

    /// Push mode, the core's side: `POST /submit_request_for_proofs` (the gateway answers
    /// `null` once it holds the batch; a repeat is answered the same).
    pub async fn submit_request_for_proofs(
        &self,
        data: &ProofGenerationData,
    ) -> Result<(), ClientError> {
        let body = serde_json::to_vec(data)
            .map_err(|e| ClientError::Config(format!("encoding the batch: {e}")))?;
        self.post::<serde::de::IgnoredAny>("submit_request_for_proofs", body)
            .await
            .map(|_| ())
    }

    /// Push mode, the core's side: `POST /poll_generated_proofs`: the batch's proof once the
    /// gateway has it, `None` before.
    pub async fn poll_generated_proofs(
        &self,
        batch: u64,
    ) -> Result<Option<PollGeneratedProofsResponse>, ClientError> {
        let body = serde_json::to_vec(&PollGeneratedProofsRequest { l1_batch_id: batch })
            .expect("a number encodes");
        let (_, reply) = self
            .post::<Option<PollGeneratedProofsResponse>>("poll_generated_proofs", body)
            .await?;
        Ok(reply)
    }

    /// POSTs JSON to `path` of the current replica; moves to the next replica on a failure
    /// of the transport or of the reply.
    async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: Vec<u8>,
    ) -> Result<(String, T), ClientError> {
        let at = self.current.load(Ordering::Relaxed);
        let base = &self.urls[at % self.urls.len()];
        let url = base
            .join(path)
            .map_err(|e| ClientError::Config(format!("{path}: {e}")))?;
        let result = self.exchange(&url, body).await;
        if let Err(e) = &result
            && e.rotates()
            && self.urls.len() > 1
        {
            // Only if no other request moved on meanwhile.
            let _ = self.current.compare_exchange(
                at,
                at.wrapping_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        result.map(|t| (shown(&url), t))
    }

    async fn exchange<T: DeserializeOwned>(
        &self,
        url: &url::Url,
        body: Vec<u8>,
    ) -> Result<T, ClientError> {
        let shown_url = shown(url);
        let mut request = self
            .http
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let sent = request
            .body(body)
            .send()
            .await
            .map_err(|e| self.transport_error(&shown_url, e))?;
        let status = sent.status();
        let html = sent
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("html"));
        if !status.is_success() {
            // Enough of the body to say why, never more.
            let head = self.read_capped(&shown_url, sent, 1024, true).await?;
            return Err(ClientError::Status {
                url: shown_url,
                status: status.as_u16(),
                body: printable(&head),
            });
        }
        let bytes = self
            .read_capped(&shown_url, sent, self.max_body, false)
            .await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::NotJson {
            url: shown_url,
            reason: if html {
                format!("an HTML page: {e}")
            } else {
                e.to_string()
            },
            head: printable(&bytes[..bytes.len().min(200)]),
        })
    }

    /// Reads the reply as it arrives, up to `limit` bytes: over it, an error (or, for
    /// `truncate`, the first `limit` bytes).
    async fn read_capped(
        &self,
        url: &str,
        mut reply: reqwest::Response,
        limit: u64,
        truncate: bool,
    ) -> Result<Vec<u8>, ClientError> {
        let too_large = || ClientError::TooLarge {
            url: url.to_string(),
            limit,
        };
        if !truncate && reply.content_length().is_some_and(|n| n > limit) {
            return Err(too_large());
        }
        let mut out = Vec::new();
        loop {
            let chunk = match reply.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => return Ok(out),
                Err(e) if truncate && !out.is_empty() => {
                    tracing::debug!(error = %e, "error body cut short");
                    return Ok(out);
                }
                Err(e) => return Err(self.transport_error(url, e)),
            };
            if out.len() as u64 + chunk.len() as u64 > limit {
                if truncate {
                    let room = limit as usize - out.len();
                    out.extend_from_slice(&chunk[..room]);
                    return Ok(out);
                }
                return Err(too_large());
            }
            out.extend_from_slice(&chunk);
        }
    }

    fn transport_error(&self, url: &str, e: reqwest::Error) -> ClientError {
        let url = url.to_string();
        if e.is_timeout() {
            return ClientError::Timeout {
                url,
                timeout_ms: self.timeout.as_millis() as u64,
            };
        }
        let reason = chain(&e);
        if e.is_connect() {
            ClientError::Connect { url, reason }
        } else {
            ClientError::Body { url, reason }
        }
    }
}

/// An error with its causes, `: `-joined (reqwest's own message is only the outermost).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A URL without its password.
fn shown(url: &url::Url) -> String {
    let mut u = url.clone();
    let _ = u.set_password(None);
    u.to_string()
}

/// Bytes as one printable line, at most 200 characters.
fn printable(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(200)
        .collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}
