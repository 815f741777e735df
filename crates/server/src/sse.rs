//! Turning a [`SubscriberStream`] into an HTTP response with the headers SSE needs.
//!
//! Use it in your own axum handlers (or [`events`] for a route per subscription):
//!
//! ```
//! use axum::{Router, extract::State, routing::get};
//! use ssehub_server::{ApiError, Hub, Sse, Subscription};
//!
//! async fn events(State(hub): State<Hub>) -> Result<Sse, ApiError> {
//!     Ok(Sse::new(hub.subscribe(Subscription::to("counter"))?))
//! }
//!
//! # fn app(hub: Hub) -> Router {
//! Router::new().route("/events", get(events)).with_state(hub)
//! # }
//! ```

use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use futures_util::StreamExt;
use ssehub_hub::{Hub, SubscriberStream, Subscription};

use crate::{ApiError, LastEventId};

/// An SSE response: `Content-Type: text/event-stream`, `Cache-Control: no-cache`,
/// `X-Accel-Buffering: no` (so nginx does not buffer), no `Content-Length`, body streamed from
/// the hub as it comes.
#[derive(Debug)]
pub struct Sse {
    stream: SubscriberStream,
}

impl Sse {
    /// Wraps a subscriber stream. Give the subscription a preamble (see
    /// [`crate::preamble`]) so the response head and first bytes go out at once. The
    /// response body is the stream's writer, so it batches under load
    /// ([`SubscriberStream::coalescing`]).
    pub fn new(stream: SubscriberStream) -> Self {
        Sse {
            stream: stream.coalescing(),
        }
    }
}

impl From<SubscriberStream> for Sse {
    fn from(stream: SubscriberStream) -> Self {
        Sse::new(stream)
    }
}

/// A `GET` route that streams `subscription` to every request: each one subscribes with it,
/// resumed after the request's [`LastEventId`] (a reconnecting browser gets what it missed),
/// and is answered [`Sse`], or the refusal as [`ApiError`]. For the common case of a route per
/// topic; write your own handler when the subscription depends on the request.
///
/// ```
/// use std::time::Duration;
/// use axum::Router;
/// use ssehub_hub::{Hub, Subscription};
///
/// let hub = Hub::new();
/// let sub = Subscription::to("news").retry(Duration::from_secs(3));
/// let app: Router = Router::new().route("/events", ssehub_server::events(&hub, sub));
/// ```
pub fn events<S>(hub: &Hub, subscription: Subscription) -> MethodRouter<S>
where
    S: Clone + Send + Sync + 'static,
{
    let hub = hub.clone();
    get(move |last: LastEventId| async move {
        let sub = subscription.resume(last);
        hub.subscribe(sub).map(Sse::new).map_err(ApiError::from)
    })
}

static X_ACCEL_BUFFERING: HeaderName = HeaderName::from_static("x-accel-buffering");

impl IntoResponse for Sse {
    fn into_response(self) -> Response {
        let mut res = Response::new(body(self.stream));
        insert_headers(res.headers_mut());
        res
    }
}

/// The response body streaming `stream`.
pub(crate) fn body(
    stream: impl futures_core::Stream<Item = bytes::Bytes> + Send + 'static,
) -> Body {
    Body::from_stream(stream.map(Ok::<_, Infallible>))
}

/// The SSE response headers, in this order (the connection layer writes them in the order of
/// the map).
pub(crate) fn insert_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_ACCEL_BUFFERING.clone(), HeaderValue::from_static("no"));
}

/// The first bytes of a stream: the reconnection-time advice, `retry: MS\n` (e.g.
/// `retry: 3000\n`), as a line with no blank line after it.
///
/// Bytes in the body make the response head and first chunk leave at once (clients open,
/// proxies stop waiting), and the advice reaches every client that honours it. No blank line
/// follows on purpose: several popular clients dispatch an empty message at every blank line,
/// and some take a `retry` only with an event; the line joins the first event's frame instead
/// (docs/DESIGN.md, "Wire format", and [`ssehub_codec::retry_line`]).
pub fn preamble(retry: std::time::Duration) -> bytes::Bytes {
    ssehub_codec::retry_line(retry)
}
