//! Idle connections served by hyper: [`Activity`] counts a connection's open requests, and
//! [`Activity::idle_for`] resolves once none has been open for a while.
//!
//! Why: hyper's `header_read_timeout` exists for HTTP/1 only. An HTTP/2 connection (h2 over
//! TLS, or h2c with prior knowledge) that sent its preface and then no request, or whose last
//! stream ended, stayed open for as long as the client liked: a few thousand such sockets hold
//! file descriptors and buffers for nothing, which is the slow-client attack the head timeout
//! closes on HTTP/1. So every connection hyper serves is closed gracefully once it has had no
//! open request for `head_timeout` (hyper's own timer closes idle HTTP/1 keep-alive connections
//! at about the same time). An open request is one whose response body has not been dropped,
//! so a long-lived SSE stream keeps its connection, however quiet the topic. The close is
//! graceful (GOAWAY), and a client that does not take part in it (HTTP/2's graceful close waits
//! for a PING answer) is dropped a head timeout later.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::Notify;

/// The open requests of one connection. Shared by its service (which opens them) and its
/// serving loop (which waits for it to go idle).
#[derive(Debug, Default)]
pub(crate) struct Activity {
    open: AtomicUsize,
    /// Requests started so far: tells an idle stretch from one in which a request came and went.
    started: AtomicU64,
    /// Told when the last open request ends.
    idle: Notify,
    /// Set for a connection that carries something this count cannot see (an HTTP/2
    /// extended CONNECT): it is never idle.
    pinned: AtomicBool,
}

impl Activity {
    /// Counts a request as open until the returned guard drops (keep it in the response body).
    pub(crate) fn begin(self: &Arc<Self>) -> Open {
        self.started.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::AcqRel);
        Open(self.clone())
    }

    /// Makes [`Activity::idle_for`] never resolve.
    pub(crate) fn never_idle(&self) {
        self.pinned.store(true, Ordering::Relaxed);
    }

    /// Resolves once no request has been open for `limit` (between `limit` and twice that after
    /// the last one ended, as the check runs at the end of each stretch).
    pub(crate) async fn idle_for(&self, limit: Duration) {
        loop {
            let ended = self.idle.notified();
            tokio::pin!(ended);
            // Registered before the check, so an end between the check and the wait is seen.
            ended.as_mut().enable();
            if self.pinned.load(Ordering::Relaxed) {
                return std::future::pending().await;
            }
            if self.open.load(Ordering::Acquire) > 0 {
                ended.await;
                continue;
            }
            let seen = self.started.load(Ordering::Relaxed);
            tokio::time::sleep(limit).await;
            if self.open.load(Ordering::Acquire) == 0
                && self.started.load(Ordering::Relaxed) == seen
            {
                return;
            }
        }
    }
}

/// One open request of an [`Activity`]; dropping it ends the request.
#[derive(Debug)]
pub(crate) struct Open(Arc<Activity>);

impl Drop for Open {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// `body`, holding `open` until it is dropped: a response's request stays open while hyper is
/// still sending it (an SSE stream for its whole life).
pub(crate) fn hold(body: Body, open: Open) -> Body {
    Body::new(Held { body, _open: open })
}

struct Held {
    body: Body,
    _open: Open,
}

impl http_body::Body for Held {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.body)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.body)
    }
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt as _;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn idle_only_after_the_last_request_ended_and_the_limit_passed() {
        let a = Arc::new(Activity::default());
        let limit = Duration::from_secs(10);
        let start = tokio::time::Instant::now();
        // Nothing ever opened: idle after the limit.
        a.idle_for(limit).await;
        assert_eq!(start.elapsed(), limit);

        // A request open for a minute: not idle meanwhile, idle a limit after it ended.
        let open = a.begin();
        let start = tokio::time::Instant::now();
        let b = a.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(open);
            let _ = b;
        });
        a.idle_for(limit).await;
        assert_eq!(start.elapsed(), Duration::from_secs(70));

        // A request that comes and goes within a stretch starts the count again.
        let start = tokio::time::Instant::now();
        let b = a.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(b.begin());
        });
        a.idle_for(limit).await;
        assert_eq!(start.elapsed(), Duration::from_secs(20));
    }

    #[tokio::test]
    async fn a_held_body_keeps_its_request_open_until_dropped() {
        let a = Arc::new(Activity::default());
        let body = hold(Body::from("x"), a.begin());
        assert_eq!(a.open.load(Ordering::Acquire), 1);
        let bytes = body.collect().await.unwrap().to_bytes();
        assert_eq!(&bytes[..], b"x");
        // Collected (and so dropped): closed.
        assert_eq!(a.open.load(Ordering::Acquire), 0);
    }
}
