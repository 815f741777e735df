//! The connection layer of [`crate::MercureServer::serve`]: one task per accepted TCP
//! connection, which serves plain SSE subscribes itself and hands everything else to hyper.
//!
//! Why: hyper gives every HTTP/1 connection an 8 KiB read buffer and an 8 KiB write buffer for
//! its whole life, plus its dispatcher and the axum service futures. For an idle SSE subscriber,
//! which sends one request head and then only receives, that was ~20 KiB of the ~23 KiB it cost
//! the server. Here a connection first reads its request head into a small buffer (1 KiB,
//! grown up to [`crate::MercureConfig::max_head`]). A `GET` of the Mercure path over HTTP/1.1
//! with nothing unusual about it (see [`crate::head`]) is answered by the same code as the axum
//! handler ([`crate::mercure::open_subscription`]), with the same response head, and its
//! frames are written as HTTP/1.1 chunks straight from the hub's [`SubscriberStream`]: while it
//! waits, the task holds the socket, the stream and a few words, no buffer. Anything else
//! (publishes, preflights, `/healthz`, the console, h2 prior knowledge, refused subscribes,
//! pipelining, `Expect`, `Upgrade`, HTTP/1.0...) goes to hyper serving the router as before,
//! with the bytes already read replayed first ([`Rewind`]). Over TLS ([`crate::tls`]),
//! HTTP/1.1 sessions come here as a [`Wire`] too; HTTP/2 ones go to the HTTP/2 layer
//! ([`crate::h2`]), or to hyper through [`serve_hyper`] when the fast path is off.
//!
//! The per-connection future is kept small on purpose: hyper's connection future and anything
//! with a sizable buffer are boxed on the paths that need them, so a waiting subscriber does not
//! pay for them (a unit test bounds the size).

use std::borrow::Cow;
use std::convert::Infallible;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::{Layer, ServiceExt};
use tower_http::cors::CorsLayer;

use crate::head::{Head, OtherHead, Precheck, Scan};
use crate::idle::{self, Activity};
use crate::mercure::{self, MercureState, Subscribed};
use crate::metrics::{Cause, Endpoint, Limit};
use crate::rewind::Rewind;

/// First size of the request-head buffer: a browser's subscribe head with a token cookie fits.
const INITIAL_HEAD_BUFFER: usize = 1024;

/// How long a refused connection is drained before closing (see [`linger`]).
const LINGER: Duration = Duration::from_secs(1);

/// The smallest read-buffer limit hyper accepts (it panics below it).
const HYPER_MIN_BUF_SIZE: usize = 8192;

/// The end of a chunked body.
const TERMINATOR: &[u8] = b"0\r\n\r\n";

/// What every connection task shares.
pub(crate) struct Shared {
    pub(crate) state: MercureState,
    /// The app hyper serves for everything but the fast path.
    router: Router,
    /// The same CORS rules as the router's, to give fast-path responses the same headers.
    cors: Option<CorsLayer>,
    hyper: auto::Builder<TokioExecutor>,
    /// Cancelled when shutdown starts: stop reading heads, let hyper connections drain.
    pub(crate) shutdown: CancellationToken,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    /// The app serving everything but the compact paths.
    pub(crate) fn router(&self) -> &Router {
        &self.router
    }

    pub(crate) fn new(state: MercureState, router: Router, shutdown: CancellationToken) -> Self {
        let config = &state.config;
        let mut hyper = auto::Builder::new(TokioExecutor::new());
        // The head timeout also closes keep-alive connections idle for that long: hyper starts
        // the clock when it waits for the next request's head.
        hyper
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.head_timeout)
            // The same head limit as the fast path (hyper answers 431 past it). hyper's read
            // buffer cannot be smaller than 8 KiB, so a smaller limit holds only for the fast
            // path; hyper bodies are streamed, so this bounds heads only.
            .max_buf_size(config.max_head.max(HYPER_MIN_BUF_SIZE));
        // As axum::serve does (HTTP/2 websockets).
        hyper
            .http2()
            .enable_connect_protocol()
            .max_header_list_size(u32::try_from(config.max_head).unwrap_or(u32::MAX));
        let cors = crate::serve::cors_layer(&config.cors_origins);
        Shared {
            state,
            router,
            cors,
            hyper,
            shutdown,
        }
    }
}

/// Serves one accepted connection until it closes.
///
/// Shaped for size: this future lives as long as the connection, so it holds only the
/// [`Pump`] of an open stream; the phases before and after it are boxed (their buffers, timers
/// and hyper's connection are freed when they end, and do not count in this future's size).
/// Not an `async fn`: one keeps its arguments (the socket, the peer address) in every state of
/// its future, the waiting one included; here they move straight into the boxed first phase.
pub(crate) fn serve_connection<W: Wire>(
    tcp: W,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + Send {
    let opening = Box::pin(start(tcp, peer, shared.clone()));
    async move {
        let Some(mut pump) = opening.await else {
            return;
        };
        match std::future::poll_fn(|cx| pump.poll_pump(cx)).await {
            End::StreamEnded => Box::pin(finish(pump, &shared)).await,
            End::ClientGone => {}
        }
    }
}

/// Reads the first request head and answers it: returns the pump of a subscribe whose head
/// was written; hands anything else to hyper and returns `None` when it is done.
async fn start<W: Wire>(mut tcp: W, peer: SocketAddr, shared: Arc<Shared>) -> Option<Pump<W>> {
    let shared = &*shared;
    if !shared.state.config.fast_subscribe {
        Box::pin(hand_over(tcp, Some(peer), Vec::new(), shared)).await;
        return None;
    }
    let (mut stream, mut head) = match read_and_open(&mut tcp, peer, shared).await {
        Opened::Gone => return None,
        Opened::TooLarge { subscribe } => {
            Box::pin(refuse_too_large(tcp, subscribe, shared)).await;
            return None;
        }
        Opened::BadTarget => {
            let reason = "the request target has a raw byte that must be percent-encoded \
                          (non-ASCII, a control character or a space)";
            Box::pin(refuse(tcp, StatusCode::BAD_REQUEST, reason)).await;
            return None;
        }
        Opened::Other(read) => {
            Box::pin(hand_over(tcp, Some(peer), read, shared)).await;
            return None;
        }
        Opened::Stream(stream, head) => (stream, head),
    };
    // The preamble is queued at subscribe time: head and first bytes leave in one write, so
    // browsers fire `open` at once.
    let ended = match stream.next().now_or_never() {
        Some(Some(first)) => {
            push_chunk(&mut head, &first);
            false
        }
        Some(None) => true,
        None => false,
    };
    if ended {
        head.extend_from_slice(TERMINATOR);
    }
    // The flush is a no-op on a socket; over TLS it sends what the session encrypted.
    if tcp.write_all(&head).await.is_err() || tcp.flush().await.is_err() {
        return None;
    }
    if ended {
        after_stream(tcp, stream, Vec::new(), shared).await;
        return None;
    }
    Some(Pump {
        tcp,
        stream,
        pending: Vec::new(),
        limit: shared.state.config.max_head,
        out: None,
    })
}

/// After the stream ended: the chunked terminator, then the connection's fate.
async fn finish<W: Wire>(pump: Pump<W>, shared: &Shared) {
    let Pump {
        mut tcp,
        stream,
        pending,
        ..
    } = pump;
    if tcp.write_all(TERMINATOR).await.is_ok() && tcp.flush().await.is_ok() {
        after_stream(tcp, stream, pending, shared).await;
    }
}

/// The stream ended and its terminator is written.
async fn after_stream<W: Wire>(mut tcp: W, stream: Subscribed, pending: Vec<u8>, shared: &Shared) {
    drop(stream);
    if shared.shutdown.is_cancelled() {
        // Shutting down: the client reconnects elsewhere, as with hyper's graceful close.
        let _ = tcp.shutdown().await;
        return;
    }
    // The stream ended with the hub still serving (a lagging subscriber was closed): the
    // connection stays usable for the client's next request, as it was with hyper. The peer
    // address is asked for again rather than kept through the stream's life.
    let peer = tcp.peer_addr();
    Box::pin(hand_over(tcp, peer, pending, shared)).await;
}

/// What became of a connection's first request head.
enum Opened {
    /// Closed, silent past the head timeout, or shutting down: nothing to answer.
    Gone,
    /// A head larger than the limit (a subscribe's, or another request's).
    TooLarge { subscribe: bool },
    /// A request target with a byte a URI may not hold raw.
    BadTarget,
    /// For hyper to answer; the bytes read so far.
    Other(Vec<u8>),
    /// Subscribed: the stream and the response head.
    Stream(Subscribed, Vec<u8>),
}

async fn read_and_open<W: Wire>(tcp: &mut W, peer: SocketAddr, shared: &Shared) -> Opened {
    match read_head(tcp, shared).await {
        ReadHead::Gone => Opened::Gone,
        ReadHead::TooLarge { subscribe } => Opened::TooLarge { subscribe },
        ReadHead::BadTarget => Opened::BadTarget,
        ReadHead::Other(read) => Opened::Other(read),
        ReadHead::Subscribe { read, uri, headers } => match open(shared, &uri, headers, peer) {
            Some((stream, head)) => Opened::Stream(stream, head),
            // A refusal: hyper answers it from the same bytes, through the same handler, so
            // error statuses, reasons and headers stay exactly the router's.
            None => Opened::Other(read),
        },
    }
}

/// The outcome of reading a connection's first request head.
enum ReadHead {
    /// Closed, silent past the head timeout, or shutting down: nothing to answer.
    Gone,
    /// A head larger than the limit (a subscribe's, or another request's).
    TooLarge { subscribe: bool },
    /// A request target with a byte a URI may not hold raw.
    BadTarget,
    /// Not for the fast path; the bytes read so far.
    Other(Vec<u8>),
    /// A plain subscribe request, and the bytes read (replayed if hyper must answer after all).
    Subscribe {
        read: Vec<u8>,
        uri: Uri,
        headers: HeaderMap,
    },
}

async fn read_head<W: Wire>(tcp: &mut W, shared: &Shared) -> ReadHead {
    let config = &shared.state.config;
    let limit = config.max_head;
    let mut buf = Vec::with_capacity(INITIAL_HEAD_BUFFER.min(limit));
    let mut scan = Scan::default();
    let mut other: Option<OtherHead> = None;
    let deadline = tokio::time::sleep(config.head_timeout);
    tokio::pin!(deadline);
    loop {
        if buf.len() == buf.capacity() {
            if buf.len() >= limit {
                return ReadHead::TooLarge {
                    subscribe: other.is_none(),
                };
            }
            // Double, up to the limit.
            buf.reserve_exact(buf.len().clamp(1, limit - buf.len()));
        }
        let read = tokio::select! {
            read = tcp.read_buf(&mut buf) => read,
            () = &mut deadline => return ReadHead::Gone,
            () = shared.shutdown.cancelled() => return ReadHead::Gone,
        };
        if !matches!(read, Ok(n) if n > 0) {
            return ReadHead::Gone;
        }
        if let Some(check) = &mut other {
            match check.precheck(&buf) {
                Precheck::Partial => continue,
                Precheck::Pass => return ReadHead::Other(buf),
                Precheck::BadTarget => return ReadHead::BadTarget,
            }
        }
        match scan.classify(&buf) {
            Head::Partial => {}
            Head::Other => {
                // Not for the fast path. Before hyper gets it, read the rest of an HTTP/1 head:
                // hyper refuses one over the limit, or a malformed target, without a reason.
                match other.insert(OtherHead::default()).precheck(&buf) {
                    Precheck::Partial => {}
                    Precheck::Pass => return ReadHead::Other(buf),
                    Precheck::BadTarget => return ReadHead::BadTarget,
                }
            }
            Head::Subscribe { uri, headers } => {
                return ReadHead::Subscribe {
                    read: buf,
                    uri,
                    headers,
                };
            }
        }
    }
}

/// Subscribes as the axum handler would; on success, the stream and the response head (the
/// router's headers in the router's order, then what hyper adds). `None` when the handler
/// refuses the request.
fn open(
    shared: &Shared,
    uri: &Uri,
    headers: HeaderMap,
    peer: SocketAddr,
) -> Option<(Subscribed, Vec<u8>)> {
    let (stream, fields) = subscribe(shared, uri, Cow::Owned(headers), peer)?;
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    for (name, value) in &fields {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"transfer-encoding: chunked\r\ndate: ");
    head.extend_from_slice(http_date().as_bytes());
    head.extend_from_slice(b"\r\n\r\n");
    Some((stream, head))
}

/// Subscribes as the axum handler would: the stream and the response's fields (the router's,
/// CORS included, in the router's order), or `None` when the handler refuses the request (the
/// caller then lets the router answer, so refusals are worded in one place). Shared with the
/// HTTP/2 connection ([`crate::h2`]), which lends the request's fields (it still needs them
/// for the router if the subscribe is refused): they are copied only when CORS needs them
/// owned, where HTTP/1.1 hands them over.
pub(crate) fn subscribe(
    shared: &Shared,
    uri: &Uri,
    headers: Cow<'_, HeaderMap>,
    peer: SocketAddr,
) -> Option<(Subscribed, HeaderMap)> {
    let stream = mercure::open_subscription(&shared.state, uri, &headers, Some(peer)).ok()?;
    let mut fields = HeaderMap::with_capacity(8);
    let legacy = shared.state.config.legacy_protocol();
    mercure::insert_subscribe_headers(&stream, &mut fields, legacy);
    if let Some(cors) = &shared.cors {
        // Ready at once for the origin rules we configure; dropping the stream otherwise is
        // only a defensive path.
        fields = cors_headers(cors, headers.into_owned(), fields)?;
    }
    Some((stream, fields))
}

/// The response headers after the router's CORS layer: the layer itself computes them, so
/// they match what hyper-served responses get, order included.
fn cors_headers(cors: &CorsLayer, request: HeaderMap, response: HeaderMap) -> Option<HeaderMap> {
    let mut req = Request::new(());
    *req.headers_mut() = request;
    let mut res = Some(Response::new(()));
    if let Some(res) = &mut res {
        *res.headers_mut() = response;
    }
    let inner = tower::service_fn(move |_: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(res.take().unwrap_or_default()))
    });
    let out = cors.layer(inner).oneshot(req).now_or_never()?;
    let Ok(out) = out;
    Some(out.into_parts().0.headers)
}

/// The `date` field's value now (the HTTP/2 layer stamps its responses with it too).
pub(crate) fn http_date() -> String {
    httpdate::fmt_http_date(SystemTime::now())
}

/// The open-stream phase, where idle subscribers spend their lives, as a hand-written future
/// holding exactly what it needs: it waits on the stream for frames and on the socket for the
/// client leaving (a read of 0 must end the subscription promptly: presence depends on it).
struct Pump<W> {
    tcp: W,
    /// The hub's stream with its per-address slot.
    stream: Subscribed,
    /// Bytes the client sent while its stream is open (a pipelined request): kept for hyper
    /// in case the stream ends with the connection still usable.
    pending: Vec<u8>,
    /// Most bytes kept in `pending`.
    limit: usize,
    /// The chunk being written, only while writing.
    out: Option<Chunk>,
}

enum End {
    /// The stream ended; the connection is fine.
    StreamEnded,
    /// The client closed, failed, or misbehaved.
    ClientGone,
}

impl<W: Wire> Pump<W> {
    fn poll_pump(&mut self, cx: &mut Context<'_>) -> Poll<End> {
        let this = self;
        loop {
            if let Some(out) = &mut this.out {
                // Nothing else is polled while a chunk is stuck: a client that stopped reading
                // gets no more frames (the hub's lag policy handles it).
                match ready!(out.poll_write(&mut this.tcp, cx)) {
                    Ok(()) => this.out = None,
                    Err(_) => return Poll::Ready(End::ClientGone),
                }
            }
            match this.stream.poll_next_unpin(cx) {
                Poll::Ready(Some(frame)) => {
                    // An empty chunk would end the body.
                    if !frame.is_empty() {
                        this.out = Some(Chunk::new(frame));
                    }
                    continue;
                }
                Poll::Ready(None) => return Poll::Ready(End::StreamEnded),
                Poll::Pending => {}
            }
            if !ready!(this.tcp.poll_watch(cx, &mut this.pending, this.limit)) {
                return Poll::Ready(End::ClientGone);
            }
        }
    }
}

/// A connection the compact path can serve: a plain socket, or a TLS session over one
/// ([`crate::tls`]). Generic rather than a trait object, so the plain path compiles to exactly
/// what it was (no dispatch, no allocation).
pub(crate) trait Wire: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// While a stream is open: waits until the client sent something or left, and appends what
    /// it sent to `pending`. `Ready(false)` when the client is gone (EOF, an error) or sent more
    /// than `limit` bytes in all without being answered.
    fn poll_watch(
        &mut self,
        cx: &mut Context<'_>,
        pending: &mut Vec<u8>,
        limit: usize,
    ) -> Poll<bool>;

    /// The peer's address, asked for again after a stream rather than kept through its life.
    fn peer_addr(&self) -> Option<SocketAddr>;
}

impl Wire for TcpStream {
    fn poll_watch(
        &mut self,
        cx: &mut Context<'_>,
        pending: &mut Vec<u8>,
        limit: usize,
    ) -> Poll<bool> {
        // Readiness only: no buffer is held while the client is silent. An error here shows
        // up in the read as well.
        ready!(self.poll_read_ready(cx)).ok();
        Poll::Ready(read_pending(self, pending, limit))
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        TcpStream::peer_addr(self).ok()
    }
}

/// One batch of frames being written as a chunk: size line, data, CRLF, with vectored writes
/// (no copy of the frames; one packet per batch with `TCP_NODELAY`).
struct Chunk {
    data: Bytes,
    size: [u8; 18],
    size_len: u8,
    /// Bytes of the whole chunk written so far.
    done: usize,
}

impl Chunk {
    fn new(data: Bytes) -> Self {
        let mut size = [0u8; 18];
        // At most 18.
        let size_len = chunk_size_line(data.len(), &mut size) as u8;
        Chunk {
            data,
            size,
            size_len,
            done: 0,
        }
    }

    /// Writes the rest of the chunk, then flushes (a no-op on a socket; over TLS it sends the
    /// records the session encrypted).
    fn poll_write<W: AsyncWrite + Unpin>(
        &mut self,
        tcp: &mut W,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            let parts: [&[u8]; 3] = [&self.size[..self.size_len as usize], &self.data, b"\r\n"];
            let mut slices = [IoSlice::new(&[]); 3];
            let mut count = 0;
            let mut skip = self.done;
            for part in parts {
                if skip >= part.len() {
                    skip -= part.len();
                    continue;
                }
                slices[count] = IoSlice::new(&part[skip..]);
                skip = 0;
                count += 1;
            }
            if count == 0 {
                return Pin::new(&mut *tcp).poll_flush(cx);
            }
            let written = ready!(Pin::new(&mut *tcp).poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.done += written;
        }
    }
}

/// Reads what the client sent while its stream is open into `pending`. `false` when the client
/// is gone (EOF, error) or sent more than a request head's worth without being answered.
fn read_pending(tcp: &TcpStream, pending: &mut Vec<u8>, limit: usize) -> bool {
    let mut chunk = [0u8; 1024];
    loop {
        match tcp.try_read(&mut chunk) {
            Ok(0) => return false,
            Ok(n) => {
                if pending.len() + n > limit {
                    return false;
                }
                pending.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
}

/// The chunk-size line of a chunk of `len` bytes (upper-case hex, as hyper writes it) into
/// `out`; returns its length.
fn chunk_size_line(len: usize, out: &mut [u8; 18]) -> usize {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
    for (i, slot) in out[..digits].iter_mut().enumerate() {
        let shift = 4 * (digits - 1 - i);
        *slot = HEX[(len >> shift) & 0xF];
    }
    out[digits..digits + 2].copy_from_slice(b"\r\n");
    digits + 2
}

fn push_chunk(buf: &mut Vec<u8>, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let mut size = [0u8; 18];
    let n = chunk_size_line(data.len(), &mut size);
    buf.extend_from_slice(&size[..n]);
    buf.extend_from_slice(data);
    buf.extend_from_slice(b"\r\n");
}

/// Answers a head over the limit with `431` and a one-line reason, then closes (a subscribe
/// head is counted as a refused subscribe).
async fn refuse_too_large<W: Wire>(tcp: W, subscribe: bool, shared: &Shared) {
    let reason = format!(
        "request head larger than {} bytes",
        shared.state.config.max_head
    );
    if subscribe {
        let metrics = &shared.state.metrics;
        metrics.refused(Endpoint::Subscribe, Cause::Limit(Limit::Head));
        metrics.subscribe_refused(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    }
    refuse(tcp, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &reason).await;
}

/// Answers `status` with a one-line `text/plain` reason and closes the connection, lingering
/// so the client reads the answer rather than a reset.
async fn refuse<W: Wire>(mut tcp: W, status: StatusCode, reason: &str) {
    let response = format!(
        "HTTP/1.1 {} {}\r\n\
         content-type: text/plain; charset=utf-8\r\n\
         content-length: {}\r\n\
         connection: close\r\n\
         date: {}\r\n\r\n{reason}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        reason.len() + 1,
        http_date(),
    );
    if tcp.write_all(response.as_bytes()).await.is_ok() {
        linger(tcp).await;
    }
}

/// Closes our side, then reads and drops what the client still sends for a moment: closing a
/// socket with unread input resets the connection, which can destroy the answer before the
/// client reads it.
pub(crate) async fn linger<W: AsyncRead + AsyncWrite + Unpin>(mut tcp: W) {
    let _ = tcp.shutdown().await;
    let mut sink = [0u8; 1024];
    let drain = async {
        let mut total = 0usize;
        while let Ok(n @ 1..) = tcp.read(&mut sink).await {
            total += n;
            if total > 1024 * 1024 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Lets hyper serve the connection, `read` first, with graceful shutdown as axum::serve does:
/// when shutdown starts, an idle connection closes and a busy one closes after its response.
///
/// Every request gets axum's `ConnectInfo<SocketAddr>` with the peer address, as
/// `into_make_service_with_connect_info` would give it: the per-address limits need it, and
/// the user's own handlers may too.
async fn hand_over<W: Wire>(tcp: W, peer: Option<SocketAddr>, read: Vec<u8>, shared: &Shared) {
    serve_hyper(Rewind::new(read, tcp), peer, shared).await;
}

/// [`hand_over`] for any stream (TLS connections come here too, see [`crate::tls`]): hyper
/// serves HTTP/1.1 or HTTP/2, whichever the client speaks, until the connection closes.
pub(crate) async fn serve_hyper<I>(io: I, peer: Option<SocketAddr>, shared: &Shared)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    let activity = Arc::new(Activity::default());
    let router = shared.router.clone();
    let tracked = activity.clone();
    let service = TowerToHyperService::new(tower::service_fn(move |mut request: Request<_>| {
        if let Some(peer) = peer {
            request.extensions_mut().insert(ConnectInfo(peer));
        }
        // Taken before the router runs, so a handler dropped midway (an HTTP/2 stream
        // reset while a publish waits for its commit) ends the request too.
        let open = tracked.begin();
        if request.method() == Method::CONNECT {
            // An HTTP/2 extended CONNECT (a WebSocket of the application's) lives on after
            // its response, where this count cannot see it: its connection never idles.
            tracked.never_idle();
        }
        let call = router.clone().oneshot(request);
        async move {
            let response = call.await?;
            Ok::<_, Infallible>(response.map(|body| idle::hold(body, open)))
        }
    }));
    let conn = shared.hyper.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut draining = false;
    let mut idle_closing = false;
    let head_timeout = shared.state.config.head_timeout;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::trace!("connection ended: {e}");
                }
                return;
            }
            () = shared.shutdown.cancelled(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
            // No request for a head timeout: HTTP/2 has no header timer of its own (see
            // crate::idle). Graceful first: GOAWAY tells a well-behaved client to reconnect
            // for its next request instead of seeing a reset.
            () = activity.idle_for(head_timeout), if !draining => {
                draining = true;
                idle_closing = true;
                conn.as_mut().graceful_shutdown();
            }
            // HTTP/2's graceful close waits for the client to answer a PING; one that does
            // not answer anything is dropped.
            () = tokio::time::sleep(head_timeout), if idle_closing => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines_are_upper_case_hex() {
        let mut out = [0u8; 18];
        for (len, want) in [
            (0, &b"0\r\n"[..]),
            (15, b"F\r\n"),
            (16, b"10\r\n"),
            (255, b"FF\r\n"),
            (4096, b"1000\r\n"),
            (usize::MAX, b"FFFFFFFFFFFFFFFF\r\n"),
        ] {
            let n = chunk_size_line(len, &mut out);
            assert_eq!(&out[..n], want, "{len}");
        }
        let mut buf = Vec::new();
        push_chunk(&mut buf, b"");
        assert!(
            buf.is_empty(),
            "an empty frame is not an (ending) empty chunk"
        );
        push_chunk(&mut buf, b"data: x\n\n");
        assert_eq!(buf, b"9\r\ndata: x\n\n\r\n");
    }

    /// What an idle subscriber costs is mostly this future (plus the hub's state and the
    /// socket): keep big things out of it.
    #[test]
    fn the_connection_future_stays_small() {
        fn size_of_future<F: std::future::Future>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
            drop(client);
            let (tcp, peer) = accepted.unwrap();
            let server = crate::MercureServer::new(
                ssehub_hub::Hub::new(),
                crate::MercureConfig::for_tests(),
            );
            let shared = Arc::new(Shared::new(
                server.state().clone(),
                server.router(),
                CancellationToken::new(),
            ));
            let fut = serve_connection(tcp, peer, shared);
            let size = size_of_future(&fut);
            eprintln!("connection future: {size} bytes");
            // 352 bytes in a debug build when written: the pump (socket, hub stream, a chunk
            // being written) and a few words; 384 with the per-address slot (limits.rs), 400
            // with the stream's coalescing state; 360 once the socket and peer address were
            // no longer kept as `async fn` arguments.
            assert!(size <= 400, "connection future is {size} bytes");
        });
    }

    /// Which path answers what: hyper here serves a router that answers everything with 418,
    /// so only the fast path can produce a stream.
    #[tokio::test]
    async fn plain_subscribes_take_the_fast_path_and_the_rest_goes_to_hyper() {
        use axum::http::StatusCode;
        use tokio::io::AsyncReadExt;

        let server = crate::MercureServer::new(
            ssehub_hub::Hub::builder().heartbeat(None).build(),
            crate::MercureConfig::for_tests(),
        );
        let teapot = Router::new().fallback(|| async { StatusCode::IM_A_TEAPOT });
        let shared = Arc::new(Shared::new(
            server.state().clone(),
            teapot,
            CancellationToken::new(),
        ));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, peer)) = listener.accept().await {
                tokio::spawn(serve_connection(tcp, peer, shared.clone()));
            }
        });
        async fn status_line(addr: std::net::SocketAddr, request: &str) -> String {
            let mut sock = TcpStream::connect(addr).await.unwrap();
            sock.write_all(request.as_bytes()).await.unwrap();
            let mut buf = Vec::new();
            while !buf.windows(2).any(|w| w == b"\r\n") {
                let mut chunk = [0u8; 512];
                let n = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut chunk))
                    .await
                    .unwrap()
                    .unwrap();
                assert!(n > 0, "closed");
                buf.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8_lossy(&buf);
            text.split("\r\n").next().unwrap().to_owned()
        }
        let subscribe = "GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(status_line(addr, subscribe).await, "HTTP/1.1 200 OK");
        for other in [
            "GET /.well-known/mercure HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            "GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            "GET /.well-known/mercure?topic=a HTTP/1.0\r\n\r\n",
        ] {
            assert_eq!(
                status_line(addr, other).await,
                if other.ends_with("1.0\r\n\r\n") {
                    "HTTP/1.0 418 I'm a teapot"
                } else {
                    "HTTP/1.1 418 I'm a teapot"
                },
                "{other:?}"
            );
        }
        let pipelined = format!("{subscribe}GET /healthz HTTP/1.1\r\n\r\n");
        assert_eq!(
            status_line(addr, &pipelined).await,
            "HTTP/1.1 418 I'm a teapot"
        );
    }
}
