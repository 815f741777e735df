//! One stream of a connection and how it is polled: a subscribe (the hub's stream, sent as
//! DATA within the windows) or a request the router answers (its response head, body and
//! trailers), and the window given back as a handler reads a request body.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::http::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http_body::Body as _;

use super::body::Pipe;
use super::fields;
use super::frame::{self, DEFAULT_WINDOW, Reason, flag, kind};
use super::out::{Out, WRITE_HIGH};
use crate::mercure::Subscribed;

/// One open stream: its windows both ways and what serves it.
pub(super) struct Stream {
    pub(super) id: u32,
    /// The client's window for our DATA on this stream.
    pub(super) send_window: i64,
    /// Our window for the client's DATA on this stream, as the client sees it.
    pub(super) recv_window: i64,
    /// Window to give back: body bytes the handler read, or that nobody will read.
    pub(super) owed: i64,
    /// The client sent END_STREAM.
    pub(super) remote_closed: bool,
    /// The response head went out (a reset after it is a client's ordinary cancel).
    pub(super) answered: bool,
    pub(super) kind: Kind,
}

#[expect(
    clippy::large_enum_variant,
    reason = "subscribes are most streams; boxing the hub's stream would add an allocation to each"
)]
pub(super) enum Kind {
    /// A subscribe on the compact path: the hub's stream, and the rest of a frame the windows
    /// did not let out yet.
    Subscribe { stream: Subscribed, pending: Bytes },
    /// A request the router answers.
    Routed(Box<Routed>),
}

impl Stream {
    /// Tells a handler reading this stream's request body that the body will not end.
    pub(super) fn abort_body(&self) {
        if let Kind::Routed(routed) = &self.kind
            && let Some(pipe) = &routed.body
        {
            pipe.end(Err(()));
        }
    }
}

/// A request the router answers: its answer or body in flight, and the request body's state.
pub(super) struct Routed {
    pub(super) phase: Phase,
    /// The request body's pipe, while the client may still send it.
    pub(super) body: Option<Pipe>,
    /// The request's `content-length`, and the body bytes received.
    pub(super) expected: Option<u64>,
    pub(super) received: u64,
    /// A `HEAD` request: the response has no body.
    pub(super) head: bool,
}

/// A routed request waits for the router's response, then sends its body.
pub(super) enum Phase {
    Waiting(Pin<Box<dyn Future<Output = Response<Body>> + Send>>),
    Sending { body: Body, pending: Bytes },
}

/// What became of a stream when polled.
pub(super) enum Polled {
    /// Waiting (for the hub, the router, or a window).
    Open,
    /// Our side ended (END_STREAM queued).
    Finished,
    /// Reset with this code (queued by the caller).
    Reset(Reason),
}

/// Takes what the handler read of a request body since the last poll, and credits it.
pub(super) fn credit_read(stream: &mut Stream, out: &mut Out, cx: &mut Context<'_>) {
    if let Kind::Routed(routed) = &stream.kind
        && let Some(pipe) = &routed.body
    {
        stream.owed += pipe.take_consumed(cx) as i64;
    }
    credit_stream(stream, out);
}

/// Gives the client back the stream window it is owed, in one update once half of the window
/// is used (none once the client finished sending).
pub(super) fn credit_stream(stream: &mut Stream, out: &mut Out) {
    if stream.remote_closed {
        stream.owed = 0;
        return;
    }
    if stream.owed > 0 && stream.recv_window < DEFAULT_WINDOW / 2 {
        frame::put_window_update(&mut out.buf, stream.id, stream.owed as u32);
        stream.recv_window += stream.owed;
        stream.owed = 0;
    }
}

/// Polls one stream: the router's answer, then its body (or the hub's frames) within the
/// windows.
pub(super) fn poll_stream(stream: &mut Stream, out: &mut Out, cx: &mut Context<'_>) -> Polled {
    let id = stream.id;
    match &mut stream.kind {
        Kind::Subscribe {
            stream: hub,
            pending,
        } => loop {
            if !pending.is_empty() && !out.data(id, &mut stream.send_window, pending, false) {
                return Polled::Open;
            }
            if out.queued() >= WRITE_HIGH || out.room(stream.send_window) == 0 {
                return Polled::Open;
            }
            match hub.poll_next_unpin(cx) {
                Poll::Ready(Some(frame)) => *pending = frame,
                Poll::Ready(None) => {
                    frame::put_header(&mut out.buf, 0, kind::DATA, flag::END_STREAM, id);
                    return Polled::Finished;
                }
                Poll::Pending => return Polled::Open,
            }
        },
        Kind::Routed(routed) => {
            if let Phase::Waiting(call) = &mut routed.phase {
                let Poll::Ready(mut response) = call.as_mut().poll(cx) else {
                    return Polled::Open;
                };
                stream.answered = true;
                let empty = routed.head || response.body().is_end_stream();
                out.response_head(id, &mut response, empty);
                if empty {
                    return Polled::Finished;
                }
                routed.phase = Phase::Sending {
                    body: response.into_body(),
                    pending: Bytes::new(),
                };
            }
            let Phase::Sending { body, pending } = &mut routed.phase else {
                return Polled::Open;
            };
            loop {
                if !pending.is_empty() && !out.data(id, &mut stream.send_window, pending, false) {
                    return Polled::Open;
                }
                if out.queued() >= WRITE_HIGH || out.room(stream.send_window) == 0 {
                    return Polled::Open;
                }
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Pending => return Polled::Open,
                    Poll::Ready(None) => {
                        frame::put_header(&mut out.buf, 0, kind::DATA, flag::END_STREAM, id);
                        return Polled::Finished;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!("HTTP/2 stream {id}: response body failed: {e}");
                        return Polled::Reset(Reason::INTERNAL_ERROR);
                    }
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => *pending = data,
                        Err(frame) => {
                            if let Ok(trailers) = frame.into_trailers() {
                                let mut block = Vec::new();
                                fields::encode_fields(&trailers, &mut block);
                                out.headers(id, &block, true);
                                return Polled::Finished;
                            }
                        }
                    },
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    /// Each stream is an entry of the connection's list: the hub's stream inline (as the
    /// HTTP/1.1 pump holds it) and a few counters, a router's request boxed.
    #[test]
    fn a_stream_entry_stays_small() {
        let stream = std::mem::size_of::<super::Stream>();
        let subscribed = std::mem::size_of::<crate::mercure::Subscribed>();
        eprintln!("stream entry: {stream} bytes, of which the hub's stream {subscribed}");
        assert!(stream <= subscribed + 80, "{stream} bytes");
    }
}
