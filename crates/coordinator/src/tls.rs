//! TLS of the coordinator's gRPC listener (rustls with ring): a certificate and key in PEM,
//! and optionally a CA whose certificates provers must present (mutual TLS).

use crate::error::CoordinatorError;
use std::path::Path;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The listener's TLS, checked: a bad PEM file fails here, at startup, not at the first
/// connection.
#[derive(Clone)]
pub struct ServerTls {
    config: ServerTlsConfig,
    pem: Pem,
}

/// The PEM it was made from, for another listener of the process (e.g. an HTTP one) to
/// serve the same identity.
#[derive(Clone)]
struct Pem {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.mutual())
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From PEM bytes: the certificate chain, its private key and, for mutual TLS, the CA
    /// that signs the clients' certificates (every client must then present one).
    pub fn from_pem(
        cert: &[u8],
        key: &[u8],
        client_ca: Option<&[u8]>,
    ) -> Result<ServerTls, CoordinatorError> {
        let mut config = ServerTlsConfig::new()
            .identity(Identity::from_pem(cert, key))
            .timeout(HANDSHAKE_TIMEOUT);
        if let Some(ca) = client_ca {
            config = config.client_ca_root(Certificate::from_pem(ca));
        }
        // Builds the acceptor once, so that an unreadable certificate or key is an error now.
        tonic::transport::Server::builder()
            .tls_config(config.clone())
            .map_err(|e| CoordinatorError::Config(format!("TLS: {}", error_chain(&e))))?;
        Ok(ServerTls {
            config,
            pem: Pem {
                cert: cert.to_vec(),
                key: key.to_vec(),
                client_ca: client_ca.map(<[u8]>::to_vec),
            },
        })
    }

    /// [`ServerTls::from_pem`] from files.
    pub fn from_files(
        cert: &Path,
        key: &Path,
        client_ca: Option<&Path>,
    ) -> Result<ServerTls, CoordinatorError> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).map_err(|e| {
                CoordinatorError::Config(format!("cannot read TLS {what} {}: {e}", p.display()))
            })
        };
        let ca = client_ca.map(|p| read(p, "client CA")).transpose()?;
        Self::from_pem(
            &read(cert, "certificate")?,
            &read(key, "key")?,
            ca.as_deref(),
        )
        .map_err(|e| {
            let why = match e {
                CoordinatorError::Config(why) => why,
                other => other.to_string(),
            };
            CoordinatorError::Config(format!(
                "certificate {} / key {}: {why}",
                cert.display(),
                key.display()
            ))
        })
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.pem.client_ca.is_some()
    }

    /// The certificate chain, PEM.
    pub fn cert_pem(&self) -> &[u8] {
        &self.pem.cert
    }

    /// The private key, PEM (a secret: never log it).
    pub fn key_pem(&self) -> &[u8] {
        &self.pem.key
    }

    /// The CA client certificates must chain to, PEM (mutual TLS).
    pub fn client_ca_pem(&self) -> Option<&[u8]> {
        self.pem.client_ca.as_deref()
    }

    pub(crate) fn apply<L>(
        &self,
        server: tonic::transport::Server<L>,
    ) -> Result<tonic::transport::Server<L>, CoordinatorError> {
        server
            .tls_config(self.config.clone())
            .map_err(|e| CoordinatorError::Config(format!("TLS: {}", error_chain(&e))))
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}
