//! Value parsers of [`super`]'s options. They run on flags, environment variables and config
//! values alike.

use super::ProofTypeSpec;
use proofmill_scheduler::{PolicyName, UnknownPolicy};
use proofmill_types::ProofType;
use std::net::{SocketAddr, ToSocketAddrs as _};

pub(super) fn parse_proof_type_spec(spec: &str) -> Result<ProofTypeSpec, String> {
    let spec = spec.trim();
    let (name, backend) = match spec.split_once(':') {
        Some((n, b)) => (n.trim(), b.trim()),
        None => (spec, spec),
    };
    let pt = ProofType::new(name).map_err(|e| e.to_string())?;
    // Backend names follow the same rules as proof type names.
    if ProofType::new(backend).is_err() {
        return Err(format!(
            "backend {backend:?} of proof type {pt} is invalid: use 1-32 chars of [a-z0-9_-], \
             starting with a letter"
        ));
    }
    Ok((pt, backend.to_string()))
}

/// A built-in assignment policy by name; the error lists the valid names.
pub(super) fn parse_assignment_policy(s: &str) -> Result<PolicyName, String> {
    s.trim().parse().map_err(|e: UnknownPolicy| e.to_string())
}

pub(super) fn parse_http_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let url = url::Url::parse(s).map_err(|e| format!("{s:?} is not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{s:?}: expected an http:// or https:// URL"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?}: URL has no host"));
    }
    Ok(s.to_string())
}

/// `HOST:PORT` or `IP:PORT`; a host name is resolved, and its first address taken (for
/// `localhost`, what the system lists first).
pub(super) fn parse_listen_addr(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    if s.rsplit_once(':')
        .is_none_or(|(host, port)| host.is_empty() || port.parse::<u16>().is_err())
    {
        return Err(format!(
            "{s:?}: expected HOST:PORT (e.g. 127.0.0.1:3900, localhost:3900 or [::1]:3900)"
        ));
    }
    let mut addrs = s
        .to_socket_addrs()
        .map_err(|e| format!("{s:?}: cannot resolve the host: {e}"))?;
    addrs
        .next()
        .ok_or_else(|| format!("{s:?}: the host resolves to no address"))
}

pub(super) fn parse_db_url(s: &str) -> Result<String, String> {
    let s = s.trim();
    let ok =
        s.starts_with("sqlite:") || s.starts_with("postgres://") || s.starts_with("postgresql://");
    if !ok || s.ends_with(':') || s.ends_with("://") {
        return Err(format!(
            "{s:?}: expected sqlite://PATH[?mode=rwc] or postgres://USER@HOST/DB"
        ));
    }
    Ok(s.to_string())
}

/// Object stores addressed by bucket (configured from the usual AWS_* / GOOGLE_* env vars).
pub(super) fn is_remote_blobs(s: &str) -> bool {
    matches!(s.split_once("://"), Some(("s3" | "gs" | "memory", _)))
}

pub(super) fn parse_blobs_url(s: &str) -> Result<String, String> {
    if is_remote_blobs(s) {
        return Ok(s.trim().to_string());
    }
    blobs_path(s).map(|_| s.trim().to_string())
}

pub(super) fn blobs_path(s: &str) -> Result<&str, String> {
    let path = match s.split_once("://") {
        Some(("file", path)) => path,
        Some((scheme, _)) => {
            return Err(format!(
                "{s:?}: unsupported blob store scheme {scheme:?}; expected file://PATH, s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX]"
            ));
        }
        None => s,
    };
    if path.is_empty() {
        return Err(format!(
            "{s:?}: empty blob store path; expected file://PATH, s3://BUCKET[/PREFIX] or gs://BUCKET[/PREFIX]"
        ));
    }
    Ok(path)
}

pub(super) fn parse_address(s: &str) -> Result<String, String> {
    let s = s.trim();
    let hex = s.strip_prefix("0x").unwrap_or(s);
    if hex.len() != 40 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("{s:?}: expected a 0x-prefixed 20-byte hex address"));
    }
    Ok(format!("0x{hex}"))
}

pub(super) fn parse_message_bytes(s: &str) -> Result<usize, String> {
    let n: usize = s.trim().parse().map_err(|e| format!("{e}"))?;
    if n < 1024 {
        return Err(format!("{n} is too small; use at least 1024"));
    }
    Ok(n)
}

pub(super) fn parse_non_empty(s: &str) -> Result<String, String> {
    if s.trim().is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(s.to_string())
}

pub(super) fn default_prover_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "prover".to_string())
}
