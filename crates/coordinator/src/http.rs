//! The HTTP admin API: liveness (`/health`), readiness (`/ready`, component by component)
//! and JSON mirrors of every `AdminService` call under `/v1`. Each call runs the very
//! implementation the gRPC service runs (the active coordinator's `AdminSvc`, or a
//! standby's refusals): HTTP is only a second transport, with its own error mapping
//! ([`error`]) and body limits.
//!
//! One [`AdminHttp`] server lives as long as the process; what it serves is an [`AdminApi`]
//! swapped as the process stands by, becomes active, drains or is deposed, so a load
//! balancer's probe always reaches the same address.
//!
//! Connections are bounded too ([`ConnectionLimits`], in `conns`): so many open at once, and
//! an idle one closed after a while.
//!
//! A new admin call is a route in [`AdminHttp::read_routes`] or
//! [`AdminHttp::operator_routes`] and a handler in `routes` that builds the call's request,
//! runs it on `AdminApi::admin` and answers with `answered(r.error.take(), r)` (every
//! message of `proofmill.v1` is serializable; its `AdminError` field is left out).

mod conns;
mod error;
pub(crate) mod ready;
mod routes;
mod tls;

use crate::admin::AdminSvc;
use crate::server::Serving;
use crate::standing::Standing;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::middleware::{from_fn, from_fn_with_state};
use axum::routing::{get, post, put};
use conns::{Activity, Capped};
pub use conns::{ConnectionLimits, IDLE_TIMEOUT, MAX_CONNECTIONS};
use error::ApiError;
use proofmill_proto::v1::admin_service_server::AdminService;
use ready::{Component, Probe};
use std::future::Future;
use std::sync::{Arc, RwLock};
use tokio::sync::Semaphore;

/// The admin calls HTTP runs: an active coordinator's or a standby's `AdminService`.
pub(crate) type AdminCalls = dyn AdminService<WatchStream = crate::watch::WatchStream>;

/// Body limit of every request but those that carry a batch input.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// Requests answered at once; more are refused at once with 503 (so that a flood, or calls
/// waiting on a store that does not answer, hold no more than this). `/health` is not
/// counted: liveness must answer whatever else goes on.
pub const MAX_IN_FLIGHT: usize = 64;

/// What the HTTP API answers from at a moment: one coordinator's admin calls, and the
/// components its readiness is made of. Built by `Coordinator::admin_api` (active),
/// `Standby::admin_api`, or [`AdminApi::starting`].
#[derive(Clone)]
pub struct AdminApi {
    role: Role,
    admin: Option<Arc<AdminCalls>>,
    /// The active coordinator's standing: its calls are refused once it is deposed, as the
    /// gRPC service's are.
    standing: Option<Standing>,
    probes: Vec<Probe>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Starting,
    Standby,
    Active,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Starting => "starting",
            Role::Standby => "standby",
            Role::Active => "active",
        }
    }
}

impl AdminApi {
    /// Before a coordinator runs (or between two turns): live, not ready, every call 503.
    pub fn starting() -> AdminApi {
        AdminApi {
            role: Role::Starting,
            admin: None,
            standing: None,
            probes: vec![ready::fixed(Component {
                name: "leadership".into(),
                state: "starting".into(),
                ready: false,
                required: true,
                detail: "the coordinator is starting".into(),
            })],
        }
    }

    pub(crate) fn active(admin: AdminSvc, probes: Vec<Probe>) -> AdminApi {
        AdminApi {
            role: Role::Active,
            standing: Some(admin.standing.clone()),
            admin: Some(Arc::new(admin)),
            probes,
        }
    }

    pub(crate) fn standby(admin: Arc<AdminCalls>, probes: Vec<Probe>) -> AdminApi {
        AdminApi {
            role: Role::Standby,
            admin: Some(admin),
            standing: None,
            probes,
        }
    }

    /// Adds a component to readiness, checked on every `/ready` (at most about 2 s; a check
    /// that takes longer counts as down). `check` gives a detail when up, the reason when
    /// down. `required`: whether `/ready` fails while it is down (an optional component is
    /// listed, and its state is there to alert on).
    pub fn with_component<F, Fut>(mut self, name: &str, required: bool, check: F) -> AdminApi
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, String>> + Send + 'static,
    {
        self.probes.push(ready::probe(name, required, check));
        self
    }

    /// The admin calls, unless this coordinator cannot answer them now.
    fn admin(&self) -> Result<Arc<AdminCalls>, ApiError> {
        if let Some(refusal) = self.standing.as_ref().and_then(crate::server::refusal) {
            return Err(refusal.into());
        }
        self.admin
            .clone()
            .ok_or_else(|| ApiError::unavailable("the coordinator is starting"))
    }
}

/// The HTTP admin server's state: the API served now (swapped with [`AdminHttp::set`]).
/// Cheap to clone.
#[derive(Clone)]
pub struct AdminHttp {
    current: Arc<RwLock<AdminApi>>,
    in_flight: Arc<Semaphore>,
    /// Body limit of the calls that carry a batch input (hex, so about twice its size).
    input_body_bytes: usize,
    /// Who may call what: the gRPC admin service's tokens.
    auth: Arc<crate::AdminAuth>,
    /// One place per open connection.
    connections: Arc<Semaphore>,
    idle_timeout: std::time::Duration,
}

impl AdminHttp {
    /// Serving [`AdminApi::starting`] until [`AdminHttp::set`]; a batch input may come in a
    /// body of up to `input_body_bytes` (at least [`MAX_BODY_BYTES`]).
    /// Calls under `/v1` need a bearer token of `auth` with the call's role (read-only for
    /// the read routes, operator for the others); `/health` and `/ready` are open.
    pub fn new(input_body_bytes: usize, auth: crate::AdminAuth) -> AdminHttp {
        AdminHttp {
            current: Arc::new(RwLock::new(AdminApi::starting())),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            input_body_bytes: input_body_bytes.max(MAX_BODY_BYTES),
            auth: Arc::new(auth),
            connections: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
            idle_timeout: IDLE_TIMEOUT,
        }
    }

    /// Bounds its connections by `limits` instead of the defaults ([`MAX_CONNECTIONS`],
    /// [`IDLE_TIMEOUT`]); for the servers started after this call.
    pub fn with_connection_limits(mut self, limits: ConnectionLimits) -> AdminHttp {
        self.connections = Arc::new(Semaphore::new(limits.max_connections));
        self.idle_timeout = limits.idle_timeout;
        self
    }

    /// Serves `api` from the next request on.
    pub fn set(&self, api: AdminApi) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = api;
    }

    fn api(&self) -> AdminApi {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Every route. `/health` and `/ready` are open (load balancers and orchestrators probe
    /// them); the read-only and operator groups each check the caller's token for their role.
    pub fn router(&self) -> Router {
        let role = |needed| from_fn_with_state((self.auth.clone(), needed), routes::authorized);
        let counted = Router::new()
            .route("/ready", get(routes::ready))
            .merge(self.read_routes().layer(role(crate::Role::ReadOnly)))
            .merge(self.operator_routes().layer(role(crate::Role::Operator)))
            .layer(from_fn_with_state(self.in_flight.clone(), routes::bounded));
        Router::new()
            .route("/health", get(routes::live))
            .merge(counted)
            .fallback(routes::no_route)
            .method_not_allowed_fallback(routes::no_method)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .layer(from_fn(conns::answering))
            .with_state(self.clone())
    }

    /// Calls that change nothing.
    fn read_routes(&self) -> Router<AdminHttp> {
        Router::new()
            .route("/v1/health", get(routes::health_check))
            .route("/v1/status", get(routes::system_status))
            .route("/v1/info", get(routes::status_info))
            .route("/v1/jobs", get(routes::jobs_list))
            .route("/v1/jobs/{batch}/{proof_type}", get(routes::job_status))
            .route("/v1/provers", get(routes::provers_list))
            .route("/v1/events", get(routes::events))
            .route("/events", get(routes::events))
    }

    /// Calls that change jobs, batches or provers.
    fn operator_routes(&self) -> Router<AdminHttp> {
        let inputs = DefaultBodyLimit::max(self.input_body_bytes);
        Router::new()
            .route("/v1/batches", post(routes::launch_proof).layer(inputs))
            .route(
                "/v1/batches/{batch}/input",
                put(routes::replace_batch_input).layer(inputs),
            )
            .route("/v1/batches/{batch}/cancel", post(routes::cancel_batch))
            .route("/v1/batches/{batch}/retry", post(routes::retry_batch))
            .route(
                "/v1/jobs/{batch}/{proof_type}/retry",
                post(routes::retry_job),
            )
            .route(
                "/v1/jobs/{batch}/{proof_type}/cancel",
                post(routes::cancel_job),
            )
            .route("/v1/provers/{prover}/cordon", post(routes::cordon))
            .route("/v1/provers/{prover}/uncordon", post(routes::uncordon))
            .route("/v1/components/{component}/pause", post(routes::pause))
            .route("/v1/components/{component}/resume", post(routes::resume))
            .route("/v1/settle-now", post(routes::settle_now))
            .route("/v1/batches/{batch}/commit", post(routes::commit_now))
    }

    /// Like [`AdminHttp::spawn_serve`], over TLS with the gRPC listener's identity (and its
    /// client CA: under mutual TLS, HTTP clients present a certificate too). A bad
    /// certificate or key is an error here.
    pub fn spawn_serve_tls(
        &self,
        listener: tokio::net::TcpListener,
        tls: &crate::ServerTls,
    ) -> Result<Serving, crate::CoordinatorError> {
        let listener = tls::TlsListener::new(listener, tls::server_config(tls)?);
        let listener = Capped::new(listener, self.connections.clone(), self.idle_timeout);
        let app = self
            .router()
            .into_make_service_with_connect_info::<Activity>();
        Ok(Serving::spawn(move |stopped| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
                .map_err(|e| crate::CoordinatorError::Transport(format!("admin HTTP: {e}")))
        }))
    }

    /// Serves in a background task until [`Serving::stop`].
    pub fn spawn_serve(&self, listener: tokio::net::TcpListener) -> Serving {
        let listener = Capped::new(listener, self.connections.clone(), self.idle_timeout);
        let app = self
            .router()
            .into_make_service_with_connect_info::<Activity>();
        Serving::spawn(move |stopped| async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
                .map_err(|e| crate::CoordinatorError::Transport(format!("admin HTTP: {e}")))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// Requests beyond the bound are refused at once; liveness still answers.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_in_flight_are_bounded_but_not_liveness() {
        let http = AdminHttp::new(0, Default::default());
        // A component whose check hangs: each /ready takes the probe's whole wait.
        http.set(AdminApi::starting().with_component("slow", true, std::future::pending));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = http.spawn_serve(listener);
        let slow: Vec<_> = (0..MAX_IN_FLIGHT)
            .map(|_| tokio::spawn(get(addr, "/ready")))
            .collect();
        let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while http.in_flight.available_permits() > 0 {
            assert!(std::time::Instant::now() < until, "the slow requests run");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let started = std::time::Instant::now();
        let refused = get(addr, "/v1/status").await;
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(refused.contains("admin requests at once"), "{refused}");
        let live = get(addr, "/health").await;
        assert!(live.starts_with("HTTP/1.1 200"), "{live}");
        assert!(
            started.elapsed() < ready::PROBE_WAIT,
            "neither waited for a slot"
        );
        for answer in slow {
            let answer = answer.await.unwrap();
            assert!(answer.contains("\"ready\":false"), "{answer}");
        }
        assert_eq!(http.in_flight.available_permits(), MAX_IN_FLIGHT);
        serving.stop().await.unwrap();
    }

    /// Sends a keep-alive GET of `path` on `conn` and reads its whole answer (by its length).
    async fn get_on(conn: &mut tokio::net::TcpStream, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
        conn.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.read(&mut buf).await.unwrap();
            assert!(
                n > 0,
                "closed mid-answer: {}",
                String::from_utf8_lossy(&answer)
            );
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(str::to_string)
                    })
                    .expect("a content length")
                    .trim()
                    .parse()
                    .unwrap();
                if body.len() >= length {
                    return text;
                }
            }
        }
    }

    /// What a connection reads next: `None` once the server closed it (end of stream or
    /// reset), within `within`.
    async fn read_or_closed(
        conn: &mut tokio::net::TcpStream,
        within: std::time::Duration,
    ) -> Option<Vec<u8>> {
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(within, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => None,
            Ok(Ok(n)) => Some(buf[..n].to_vec()),
            Err(_) => panic!("the connection is still open after {within:?}"),
        }
    }

    async fn serve_with(limits: ConnectionLimits) -> (AdminHttp, std::net::SocketAddr, Serving) {
        let http = AdminHttp::new(0, Default::default()).with_connection_limits(limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = http.spawn_serve(listener);
        (http, addr, serving)
    }

    /// Connections beyond the cap are closed as soon as accepted; the open ones keep working,
    /// and once one closes a new connection is served.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn open_connections_are_capped() {
        let cap = 4;
        let (http, addr, serving) = serve_with(ConnectionLimits {
            max_connections: cap,
            idle_timeout: std::time::Duration::from_secs(60),
        })
        .await;
        let mut open = Vec::new();
        for _ in 0..cap {
            let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
            let answer = get_on(&mut conn, "/health").await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            open.push(conn);
        }
        assert_eq!(http.connections.available_permits(), 0);
        for _ in 0..3 {
            let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
            // The request may or may not be written before the close: either way, no answer.
            let _ = extra
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                .await;
            let read = read_or_closed(&mut extra, std::time::Duration::from_secs(10)).await;
            assert_eq!(read, None, "an extra connection was answered");
        }
        // The open ones are still served, on the same connections.
        for conn in &mut open {
            let answer = get_on(conn, "/health").await;
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        // One closes: its place goes to the next connection.
        drop(open.pop());
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while http.connections.available_permits() == 0 {
            assert!(
                std::time::Instant::now() < until,
                "the closed connection's place is back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        let fresh = get(addr, "/health").await;
        assert!(fresh.starts_with("HTTP/1.1 200"), "{fresh}");
        drop(open);
        serving.stop().await.unwrap();
    }

    /// A keep-alive connection that sends nothing after its answer is closed after the idle
    /// timeout, and so is one that stops halfway through a request; a request answered for
    /// longer than the timeout keeps its connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn idle_connections_are_closed() {
        let idle = std::time::Duration::from_millis(300);
        let (http, addr, serving) = serve_with(ConnectionLimits {
            max_connections: 8,
            idle_timeout: idle,
        })
        .await;
        // A component whose check hangs: /ready takes the probe's whole wait (2 s).
        http.set(AdminApi::starting().with_component("slow", true, std::future::pending));

        let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
        let since = std::time::Instant::now();
        let answer = get_on(&mut kept, "/health").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(
            read_or_closed(&mut kept, std::time::Duration::from_secs(10)).await,
            None
        );
        assert!(
            since.elapsed() >= idle,
            "closed before it was idle for the timeout"
        );

        let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
        half.write_all(b"GET /health HTTP/1.1\r\nHo").await.unwrap();
        let read = read_or_closed(&mut half, std::time::Duration::from_secs(10)).await;
        // Closed, possibly after a 4xx for the cut request; never a 200.
        assert!(
            read.as_ref()
                .is_none_or(|r| !r.starts_with(b"HTTP/1.1 200")),
            "{:?}",
            read.map(|r| String::from_utf8_lossy(&r).to_string())
        );

        let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
        let answer = get_on(&mut slow, "/ready").await;
        assert!(answer.contains("\"ready\":false"), "{answer}");
        let answer = get_on(&mut slow, "/health").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Every place is back once they are closed.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
        drop(slow);
        while http.connections.available_permits() < 8 {
            assert!(std::time::Instant::now() < until, "places come back");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        serving.stop().await.unwrap();
    }
}
