//! The admin service's door: every call but `HealthCheck` needs a bearer token
//! ([`crate::AdminAuth`]) with the role the call needs. Reads (status, listings) need
//! read-only; everything else, including calls added later, needs operator, so a new
//! control is never open to a read-only token by mistake.

use crate::auth::{AdminAuth, Role};
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::codegen::{BoxFuture, Service, http};
use tonic::server::NamedService;

/// Admin calls a read-only token may make.
const READS: &[&str] = &[
    "SystemStatus",
    "StatusInfo",
    "JobsList",
    "JobStatus",
    "ProversList",
    "Watch",
];
/// Admin calls open to anyone who reaches the port (a liveness probe; says nothing else).
const OPEN: &[&str] = &["HealthCheck"];

/// The role a call of the admin service needs (`None`: open), by its method name.
pub(crate) fn needed(method: &str) -> Option<Role> {
    if OPEN.contains(&method) {
        None
    } else if READS.contains(&method) {
        Some(Role::ReadOnly)
    } else {
        Some(Role::Operator)
    }
}

/// Wraps the admin service: a refused call is answered here (`UNAUTHENTICATED` or
/// `PERMISSION_DENIED`) and never reaches it.
#[derive(Clone)]
pub(crate) struct AdminGate<S> {
    inner: S,
    auth: Arc<AdminAuth>,
    /// The role each method needs.
    needed: fn(&str) -> Option<Role>,
}

impl<S> AdminGate<S> {
    pub fn new(inner: S, auth: Arc<AdminAuth>) -> AdminGate<S> {
        Self::with_roles(inner, auth, needed)
    }

    /// Another service behind the same tokens, with its own roles per method.
    pub fn with_roles(
        inner: S,
        auth: Arc<AdminAuth>,
        needed: fn(&str) -> Option<Role>,
    ) -> AdminGate<S> {
        AdminGate {
            inner,
            auth,
            needed,
        }
    }
}

impl<S, B> Service<http::Request<B>> for AdminGate<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        if let Some(role) = (self.needed)(&method) {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .map(|v| v.to_str().unwrap_or(""));
            match self.auth.authorize(header, role) {
                Ok(caller) if role == Role::Operator && !self.auth.is_open() => {
                    tracing::info!(caller = %caller.name, %method, "admin call");
                }
                Ok(_) => {}
                Err(e) => {
                    // The reason names the token by its configured name, never its value.
                    tracing::warn!(%method, reason = %e, "admin call refused");
                    let response = e.to_status().into_http();
                    return Box::pin(async move { Ok(response) });
                }
            }
        }
        let call = self.inner.call(request);
        Box::pin(call)
    }
}

impl<S: NamedService> NamedService for AdminGate<S> {
    const NAME: &'static str = S::NAME;
}
