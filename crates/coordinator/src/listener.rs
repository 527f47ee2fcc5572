//! One listening socket for servers that take turns on it: a coordinator serves as a standby,
//! then (once it holds the store's lease) as the active one, and back, without closing its
//! port in between (a prover connecting meanwhile waits in the accept queue, not refused).

use futures::Stream;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, mpsc};

/// Connections accepted but not yet taken by a server.
const BACKLOG: usize = 64;
/// Connections the kernel completes before the coordinator accepts them. A fleet
/// reconnecting at once (every prover after a coordinator restart) overflows a short queue,
/// and the kernel then drops or resets the connections it cannot queue. The kernel caps this
/// at `net.core.somaxconn` (4096 by default since Linux 5.4; raise it for larger fleets).
pub const LISTEN_BACKLOG: u32 = 65_535;

/// A listening socket on `addr` with a [`LISTEN_BACKLOG`] long accept queue (tokio's own
/// `TcpListener::bind` asks for 1,024).
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    // As std and tokio do: a restarted coordinator binds its port again at once, while
    // connections of the previous process linger in TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

pub struct Listener {
    accepted: Arc<Mutex<mpsc::Receiver<std::io::Result<TcpStream>>>>,
    addr: SocketAddr,
    accept: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// Accepts on `listener` until dropped, with Nagle's algorithm off on every connection.
    pub fn new(listener: TcpListener) -> std::io::Result<Listener> {
        let addr = listener.local_addr()?;
        let (tx, rx) = mpsc::channel(BACKLOG);
        let accept = tokio::spawn(async move {
            loop {
                let conn = listener.accept().await.map(|(conn, _)| {
                    // tonic applies `tcp_nodelay` only to listeners it binds itself; without
                    // it a task and the ack after it wait for the peer's delayed ACK.
                    if let Err(e) = conn.set_nodelay(true) {
                        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                    }
                    conn
                });
                if tx.send(conn).await.is_err() {
                    return;
                }
            }
        });
        Ok(Listener {
            accepted: Arc::new(Mutex::new(rx)),
            addr,
            accept,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The accepted connections, for one server at a time: a server that stops (and drops
    /// this stream) leaves the next connections to the next one.
    pub fn incoming(&self) -> impl Stream<Item = std::io::Result<TcpStream>> + Send + 'static {
        futures::stream::unfold(self.accepted.clone(), |accepted| async move {
            let next = accepted.lock().await.recv().await;
            next.map(|conn| (conn, accepted))
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
