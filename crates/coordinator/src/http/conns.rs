//! Open connections of the HTTP admin API: at most [`ConnectionLimits::max_connections`] at
//! once (one more is closed as soon as it is accepted, so a client that opens connections and
//! keeps them open cannot take every descriptor), and a connection that sends nothing for
//! [`ConnectionLimits::idle_timeout`] while no request of it is being answered is closed (a
//! keep-alive connection between requests, or one that stopped halfway through a request).
//! A request being answered keeps its connection however long it takes; a response's body
//! (the `/events` stream, which writes a keep-alive comment every 15 s) keeps it while it
//! writes.

use axum::extract::{ConnectInfo, Request};
use axum::middleware::Next;
use axum::response::Response;
use axum::serve::{IncomingStream, Listener};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// Connections open at once, by default.
pub const MAX_CONNECTIONS: usize = 512;
/// How long a connection may sit idle, by default (longer than the `/events` keep-alive).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bounds on the HTTP admin API's connections (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: MAX_CONNECTIONS,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

/// A listener whose connections each hold one of a fixed number of places.
pub(crate) struct Capped<L> {
    inner: L,
    places: Arc<Semaphore>,
    idle: Duration,
}

impl<L> Capped<L> {
    pub(crate) fn new(inner: L, places: Arc<Semaphore>, idle: Duration) -> Capped<L> {
        Capped {
            inner,
            places,
            idle,
        }
    }
}

impl<L: Listener> Listener for Capped<L> {
    type Io = Conn<L::Io>;
    type Addr = L::Addr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (io, addr) = self.inner.accept().await;
            match self.places.clone().try_acquire_owned() {
                Ok(place) => return (Conn::new(io, place, self.idle), addr),
                // Closed at once: waiting would leave the client hanging with no answer.
                Err(_) => {
                    metrics::counter!(
                        proofmill_telemetry::names::ADMIN_HTTP_CONNECTIONS_REFUSED_TOTAL
                    )
                    .increment(1);
                    tracing::debug!("admin HTTP: too many connections open; one closed");
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// Requests of one connection being answered now (see [`answering`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Activity(Arc<AtomicUsize>);

impl<L: Listener> axum::extract::connect_info::Connected<IncomingStream<'_, Capped<L>>>
    for Activity
{
    fn connect_info(stream: IncomingStream<'_, Capped<L>>) -> Self {
        stream.io().activity.clone()
    }
}

struct Answering(Activity);

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Middleware: the connection of a request being answered is not idle.
pub(crate) async fn answering(request: Request, next: Next) -> Response {
    let _answering = request
        .extensions()
        .get::<ConnectInfo<Activity>>()
        .map(|c| {
            c.0.0.fetch_add(1, Ordering::SeqCst);
            Answering(c.0.clone())
        });
    next.run(request).await
}

/// One accepted connection: its place, and its idle timer, reset by every byte read or
/// written; once it runs out with no request being answered, reads see the end of the
/// stream, so the server closes the connection.
pub(crate) struct Conn<I> {
    io: I,
    _place: OwnedSemaphorePermit,
    activity: Activity,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl<I> Conn<I> {
    fn new(io: I, place: OwnedSemaphorePermit, idle: Duration) -> Conn<I> {
        Conn {
            io,
            _place: place,
            activity: Activity::default(),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
        }
    }

    fn touch(&mut self) {
        let deadline = Instant::now() + self.idle;
        self.timer.as_mut().reset(deadline);
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Conn<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.touch();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                if self.activity.0.load(Ordering::SeqCst) > 0 {
                    return Poll::Pending;
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        tracing::debug!("admin HTTP: idle connection closed");
                        Poll::Ready(Ok(()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Conn<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
