//! TLS of the coordinator's gRPC listener (rustls with ring): a certificate and key in PEM,
//! and optionally a CA whose certificates provers must present (mutual TLS).

use crate::error::CoordinatorError;
use std::path::Path;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

/// How long a client gets to finish its TLS handshake.
const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The listener's TLS, checked: a bad PEM file fails here, at startup, not at the first
/// connection.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: ServerTlsConfig,
    mutual: bool,
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
            mutual: client_ca.is_some(),
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
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.mutual
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
