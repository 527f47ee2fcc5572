//! The gRPC response stream of one prover: the messages written to it, then the status it
//! ends with. A stream the coordinator ends says why (only a stream the prover closed ends
//! OK). Ending after what is queued ([`WireEnd::finish`]) delivers a refusal's reasons
//! first; ending now ([`WireEnd::abort`]) drops what is queued, so a prover that does not
//! read holds no memory here once its stream is over.

use proofmill_proto::v1::{CoordinatorMessage, coordinator_message::Kind as Out};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tonic::Status;

pub(crate) type Item = Result<CoordinatorMessage, Status>;

/// The sending side of one prover's response stream.
pub(crate) type Wire = mpsc::Sender<Item>;

/// Messages the wire holds before a writer waits.
const WIRE_CAPACITY: usize = 256;
/// Input chunks a writer may have on the wire ahead of the gRPC stream. Few, so the
/// heartbeats it sends between chunks are not stuck behind a whole input: a prover busy
/// downloading a large input keeps answering them and keeps its lease.
const CHUNKS_AHEAD: usize = 4;
/// How long a finished stream waits for its prover to read what is queued before it is
/// dropped.
const FINISH_GRACE: Duration = Duration::from_secs(10);

/// Credits for input chunks on the wire: taken by the writer, given back as the gRPC
/// stream takes each chunk off the wire.
pub(crate) type ChunkCredits = Arc<Semaphore>;

#[derive(Default)]
struct Ending {
    /// `None` once aborted or drained.
    rx: Option<mpsc::Receiver<Item>>,
    /// The status the stream ends with (the first one given wins); `None`: OK.
    status: Option<Status>,
    /// End once what is queued is taken.
    finished: bool,
    waker: Option<Waker>,
}

/// Ends one response stream (cheap to clone).
#[derive(Clone)]
pub(crate) struct WireEnd(Arc<Mutex<Ending>>);

impl WireEnd {
    fn with(&self, f: impl FnOnce(&mut Ending)) {
        let mut e = self.0.lock().expect("wire lock");
        f(&mut e);
        if let Some(w) = e.waker.take() {
            w.wake();
        }
    }

    /// Ends the stream once the prover has taken what is queued, with `status` (`None`:
    /// OK). What it has not taken within [`FINISH_GRACE`] is dropped.
    pub fn finish(&self, status: Option<Status>) {
        self.with(|e| {
            e.finished = true;
            if e.status.is_none() {
                e.status = status;
            }
        });
        let end = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(FINISH_GRACE).await;
            end.with(|e| e.rx = None);
        });
    }

    /// Ends the stream now with `status`: what is queued is dropped.
    pub fn abort(&self, status: Status) {
        self.with(|e| {
            e.finished = true;
            e.rx = None;
            if e.status.is_none() {
                e.status = Some(status);
            }
        });
    }
}

/// What the gRPC response is served from.
pub(crate) struct WireStream {
    ending: Arc<Mutex<Ending>>,
    credits: ChunkCredits,
    done: bool,
}

impl futures::Stream for WireStream {
    type Item = Item;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        let this = self.get_mut();
        if this.done {
            return Poll::Ready(None);
        }
        let mut e = this.ending.lock().expect("wire lock");
        if let Some(rx) = e.rx.as_mut() {
            match rx.poll_recv(cx) {
                Poll::Ready(Some(item)) => {
                    if let Ok(CoordinatorMessage {
                        kind: Some(Out::InputChunk(_)),
                    }) = &item
                    {
                        this.credits.add_permits(1);
                    }
                    this.done = item.is_err();
                    return Poll::Ready(Some(item));
                }
                // Every sender is gone: nothing more can come.
                Poll::Ready(None) => e.rx = None,
                Poll::Pending if !e.finished => {
                    e.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                Poll::Pending => e.rx = None,
            }
        }
        this.done = true;
        Poll::Ready(e.status.take().map(Err))
    }
}

/// A wire, its chunk credits, the handle that ends it, and the stream the gRPC response is
/// served from.
pub(crate) fn wire() -> (Wire, ChunkCredits, WireEnd, WireStream) {
    let (tx, rx) = mpsc::channel(WIRE_CAPACITY);
    let credits = Arc::new(Semaphore::new(CHUNKS_AHEAD));
    let ending = Arc::new(Mutex::new(Ending {
        rx: Some(rx),
        ..Ending::default()
    }));
    let stream = WireStream {
        ending: ending.clone(),
        credits: credits.clone(),
        done: false,
    };
    (tx, credits, WireEnd(ending), stream)
}

/// The status a refused registration ends its stream with, after its `RegisterResponse`.
pub(crate) fn refusal_status(code: proofmill_proto::v1::ErrorCode, reason: &str) -> Status {
    use proofmill_proto::v1::ErrorCode as C;
    let code = match code {
        C::Unauthenticated => tonic::Code::Unauthenticated,
        C::InvalidArgument => tonic::Code::InvalidArgument,
        C::ReconnectRefused => tonic::Code::PermissionDenied,
        C::SystemUnavailable | C::ProverUnavailable => tonic::Code::Unavailable,
        C::ProofTypeNotNeeded | C::VersionMismatch => tonic::Code::FailedPrecondition,
        _ => tonic::Code::Internal,
    };
    Status::new(code, reason.to_string())
}

/// The status a stream ends with when a message from the prover could not be read: one over
/// the size limit, or one that does not decode (e.g. a string that is not UTF-8). Errors of
/// the connection itself keep their code (the prover is gone and will not see it).
pub(crate) fn unreadable(e: &Status) -> Status {
    match e.code() {
        tonic::Code::OutOfRange | tonic::Code::ResourceExhausted => Status::resource_exhausted(
            format!("message over this coordinator's limit: {}", e.message()),
        ),
        tonic::Code::Internal => {
            Status::invalid_argument(format!("message cannot be decoded: {}", e.message()))
        }
        code => Status::new(code, e.message().to_string()),
    }
}
