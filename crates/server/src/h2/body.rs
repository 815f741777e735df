//! A request body arriving in DATA frames, as the router reads it: the connection pushes the
//! frames' bytes in, the handler takes them out, and what the handler took is credited back to
//! the client's flow-control window. A handler that does not read stops the client at one
//! window (64 KiB) per stream, not at the size of what it sends.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use parking_lot::Mutex;

/// The connection's end of a request body.
#[derive(Clone)]
pub(crate) struct Pipe(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    chunks: VecDeque<Bytes>,
    /// How the body ended, once it did.
    end: Option<Result<(), ()>>,
    /// The handler waiting for bytes.
    reader: Option<Waker>,
    /// The connection waiting to credit what was read.
    connection: Option<Waker>,
    /// Bytes the handler took and the connection has not credited yet.
    consumed: usize,
    /// The handler dropped the body: what arrives later is discarded (and credited at once).
    dropped: bool,
}

/// The handler's end: an [`http_body::Body`].
pub(crate) struct RequestBody {
    pipe: Pipe,
    /// The request's `content-length`, for [`Body::size_hint`].
    length: Option<u64>,
}

/// The request body was reset by the client (`RST_STREAM`) or ended by a connection error.
#[derive(Debug, thiserror::Error)]
#[error("the HTTP/2 stream was reset before its request body ended")]
pub(crate) struct Reset;

impl Pipe {
    /// A pipe and the body that reads it.
    pub(crate) fn new(length: Option<u64>) -> (Pipe, RequestBody) {
        let pipe = Pipe(Arc::default());
        let body = RequestBody {
            pipe: pipe.clone(),
            length,
        };
        (pipe, body)
    }

    /// Hands the handler more bytes; `false` when it dropped the body (the caller credits them).
    pub(crate) fn push(&self, data: Bytes) -> bool {
        let mut inner = self.0.lock();
        if inner.dropped {
            return false;
        }
        inner.chunks.push_back(data);
        if let Some(w) = inner.reader.take() {
            w.wake();
        }
        true
    }

    /// The body ended (`Ok`), or was reset (`Err`).
    pub(crate) fn end(&self, how: Result<(), ()>) {
        let mut inner = self.0.lock();
        inner.end.get_or_insert(how);
        if let Some(w) = inner.reader.take() {
            w.wake();
        }
    }

    /// Bytes read by the handler since the last call, to credit to the client; registers the
    /// connection's waker to be told of more.
    pub(crate) fn take_consumed(&self, cx: &Context<'_>) -> usize {
        let mut inner = self.0.lock();
        if !inner
            .connection
            .as_ref()
            .is_some_and(|w| w.will_wake(cx.waker()))
        {
            inner.connection = Some(cx.waker().clone());
        }
        std::mem::take(&mut inner.consumed)
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = Reset;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Reset>>> {
        let mut inner = self.pipe.0.lock();
        if let Some(chunk) = inner.chunks.pop_front() {
            inner.consumed += chunk.len();
            if let Some(w) = inner.connection.take() {
                w.wake();
            }
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        match inner.end {
            Some(Ok(())) => Poll::Ready(None),
            Some(Err(())) => Poll::Ready(Some(Err(Reset))),
            None => {
                inner.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let inner = self.pipe.0.lock();
        inner.chunks.is_empty() && inner.end == Some(Ok(()))
    }

    fn size_hint(&self) -> SizeHint {
        match self.length {
            Some(n) => SizeHint::with_exact(n),
            None => SizeHint::default(),
        }
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        let mut inner = self.pipe.0.lock();
        inner.dropped = true;
        // What is queued was never read: credited like what arrives from now on.
        inner.consumed += inner.chunks.drain(..).map(|c| c.len()).sum::<usize>();
        if let Some(w) = inner.connection.take() {
            w.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    #[tokio::test]
    async fn bytes_flow_through_and_what_was_read_is_reported() {
        let (pipe, mut body) = Pipe::new(Some(5));
        assert_eq!(body.size_hint().exact(), Some(5));
        assert!(pipe.push(Bytes::from_static(b"ab")));
        assert!(pipe.push(Bytes::from_static(b"cde")));
        pipe.end(Ok(()));
        let waker = futures_util::task::noop_waker();
        let cx = Context::from_waker(&waker);
        assert_eq!(pipe.take_consumed(&cx), 0);
        let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(&first[..], b"ab");
        assert_eq!(pipe.take_consumed(&cx), 2);
        let rest = body.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"cde");
        assert_eq!(pipe.take_consumed(&cx), 3);
    }

    #[tokio::test]
    async fn a_reset_is_an_error_and_a_dropped_body_credits_everything() {
        let (pipe, body) = Pipe::new(None);
        pipe.push(Bytes::from_static(b"xyz"));
        pipe.end(Err(()));
        let err = body.collect().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the HTTP/2 stream was reset before its request body ended"
        );

        let (pipe, body) = Pipe::new(None);
        pipe.push(Bytes::from_static(b"1234"));
        drop(body);
        assert!(!pipe.push(Bytes::from_static(b"56")));
        let waker = futures_util::task::noop_waker();
        assert_eq!(pipe.take_consumed(&Context::from_waker(&waker)), 4);
    }
}
