//! One HTTP/2 connection: reading and handling the client's frames, opening and closing its
//! streams, the connection's lifecycle (idle timeout, GOAWAY, shutdown drain) and its abuse
//! limits. What a stream sends is `stream.rs`; how frames are queued within the windows is
//! `out.rs`.
//!
//! The connection is a hand-written future polled by its task: it reads what the client sent
//! (the session keeps no buffer while the client is silent), answers control frames, polls each
//! stream for what it can send within the windows, and writes. Buffers are freed when they
//! empty, so an idle connection holds the session, this struct and its streams.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, Version, header};
use bytes::Bytes;
use tokio::time::Sleep;
use tokio_util::sync::WaitForCancellationFutureOwned;
use tower::ServiceExt;

use super::body::Pipe;
use super::fields::{self, HeadError, RequestHead};
use super::frame::{
    self, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, HEADER_LEN, Header, MAX_WINDOW, PREFACE, PeerSettings,
    Reason, flag, kind, setting,
};
use super::out::{Out, WRITE_HIGH};
use super::stream::{Kind, Phase, Polled, Routed, Stream, credit_read, credit_stream, poll_stream};
use crate::conn::{self, Shared, Wire};
use crate::mercure::MERCURE_PATH;

/// Streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS): the RFC's
/// recommended floor, what browsers expect, and a bound on one connection's work.
const MAX_STREAMS: usize = 100;

/// Past this much queued output the client is not reading what it asks for (PINGs, SETTINGS
/// sent without reading the answers): reading stops; past [`WRITE_LIMIT`] it is cut off.
const READ_PAUSE: usize = 64 * 1024;
const WRITE_LIMIT: usize = 256 * 1024;

/// Streams reset by the client before their response head was sent, beyond what completed
/// normally, past which the connection ends (the "rapid reset" attack, CVE-2023-44487).
const MAX_EARLY_RESETS: u32 = 2 * MAX_STREAMS as u32;

/// Frames that carry nothing and cost a decode (empty DATA, empty CONTINUATION, unknown
/// types) in a row, past which the connection ends (CVE-2019-9518).
const MAX_EMPTY_FRAMES: u32 = 1_000;

/// How long the close after a GOAWAY may take (sending it, close_notify).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves an HTTP/2 connection until it closes; `read` is what was read after the handshake.
///
/// Meant to be awaited inline in the connection's task (not boxed): the connection state is
/// about the size of the HTTP/1.1 path's, which the task is sized for anyway. Not an `async
/// fn`, which would keep its arguments (the session among them) beside the connection made
/// from them; the close, with its drain buffer and timer, is boxed only when it runs.
pub(crate) fn serve<W: Wire>(
    io: W,
    read: Vec<u8>,
    peer: SocketAddr,
    shared: Arc<Shared>,
) -> impl Future<Output = ()> + Send {
    let mut conn = Connection::new(io, read, peer, shared);
    // What was read with the handshake.
    conn.process();
    async move {
        std::future::poll_fn(|cx| conn.poll_run(cx)).await;
        // After a GOAWAY: close_notify, then read what is still in flight, so the client sees
        // the GOAWAY rather than a reset. Ended by the client, or by a write error: nothing
        // more to say.
        if conn.closing == Some(Closing::Goaway) {
            let close = tokio::time::timeout(CLOSE_TIMEOUT, conn::linger(conn.io));
            let _ = Box::pin(close).await;
        }
    }
}

/// Runs a connection until it ends, and gives the wire back (the byte-driven harness reads
/// what was written from it).
#[cfg(any(test, feature = "fuzzing"))]
pub(super) async fn drive<W: Wire>(io: W, peer: SocketAddr, shared: Arc<Shared>) -> W {
    let mut conn = Connection::new(io, Vec::new(), peer, shared);
    conn.process();
    std::future::poll_fn(|cx| conn.poll_run(cx)).await;
    conn.io
}

/// A connection error: GOAWAY with this code and text, then close.
#[derive(Debug)]
struct ConnError(Reason, &'static str);

/// How the connection is ending.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closing {
    /// A GOAWAY is queued: send what is queued, then close.
    Goaway,
    /// The socket failed or the client left: stop now.
    Abrupt,
}

/// A header block waiting for its CONTINUATION frames.
struct Block {
    stream: u32,
    end_stream: bool,
    bytes: Vec<u8>,
}

pub(crate) struct Connection<W> {
    io: W,
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// Received bytes not processed yet: an unfinished frame. Freed when empty.
    rbuf: Vec<u8>,
    out: Out,
    decoder: loona_hpack::Decoder<'static>,
    /// Our connection-level window for the client's DATA.
    recv_window: i64,
    streams: Vec<Stream>,
    /// The highest stream id the client opened: lower ids not in `streams` are closed.
    last_stream: u32,
    block: Option<Box<Block>>,
    preface_read: bool,
    /// The client's first SETTINGS arrived (it must be its first frame).
    settings_read: bool,
    /// A GOAWAY went out for a shutdown: no new streams; close when the last one ends.
    draining: bool,
    closing: Option<Closing>,
    /// Armed while no stream is open: a connection idle for a head timeout is closed.
    idle: Option<Pin<Box<Sleep>>>,
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    early_resets: u32,
    empty_frames: u32,
}

impl<W: Wire> Connection<W> {
    fn new(io: W, read: Vec<u8>, peer: SocketAddr, shared: Arc<Shared>) -> Self {
        let config = &shared.state.config;
        let mut out = Out {
            buf: Vec::with_capacity(64),
            written: 0,
            window: DEFAULT_WINDOW,
            peer: PeerSettings::default(),
        };
        // No dynamic table for the client's requests once it has our SETTINGS: what a client
        // indexed would otherwise stay in this connection's memory for its life (browsers index
        // cookies and user agents: up to 4 KiB). Request heads are rare on a push connection.
        frame::put_settings(
            &mut out.buf,
            &[
                (setting::HEADER_TABLE_SIZE, 0),
                (setting::ENABLE_PUSH, 0),
                (setting::MAX_CONCURRENT_STREAMS, MAX_STREAMS as u32),
                (
                    setting::MAX_HEADER_LIST_SIZE,
                    u32::try_from(config.max_head).unwrap_or(u32::MAX),
                ),
            ],
        );
        let mut decoder = loona_hpack::Decoder::new();
        // Until the client acknowledges our SETTINGS, the default table size holds.
        decoder.set_max_allowed_table_size(4096);
        let idle = Some(Box::pin(tokio::time::sleep(config.head_timeout)));
        let shutdown = Box::pin(shared.shutdown.clone().cancelled_owned());
        Connection {
            io,
            shared,
            peer,
            rbuf: read,
            out,
            decoder,
            recv_window: DEFAULT_WINDOW,
            streams: Vec::new(),
            last_stream: 0,
            block: None,
            preface_read: false,
            settings_read: false,
            draining: false,
            closing: None,
            idle,
            shutdown,
            early_resets: 0,
            empty_frames: 0,
        }
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        // Bounded, so one busy connection yields to the others.
        for _ in 0..32 {
            if self.closing.is_some() {
                // Only what is queued (a GOAWAY last) still goes out.
                return match self.poll_write(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(_) => Poll::Ready(()),
                };
            }
            if matches!(self.poll_write(cx), Poll::Ready(Err(()))) {
                self.closing = Some(Closing::Abrupt);
                return Poll::Ready(());
            }
            let mut progress = false;
            if self.out.queued() < READ_PAUSE {
                match self.io.poll_watch(cx, &mut self.rbuf, READ_LIMIT) {
                    Poll::Ready(true) => {
                        progress = true;
                        self.process();
                    }
                    Poll::Ready(false) => {
                        // The client left (or broke the session): its streams end with it.
                        self.closing = Some(Closing::Abrupt);
                        return Poll::Ready(());
                    }
                    Poll::Pending => {}
                }
            }
            if self.closing.is_none() {
                progress |= self.poll_streams(cx);
                progress |= self.poll_lifecycle(cx);
            }
            if self.closing.is_none() && self.out.queued() > WRITE_LIMIT {
                self.goaway(Reason::ENHANCE_YOUR_CALM, "too many frames left unread");
            }
            if progress || self.closing.is_some() {
                continue;
            }
            // Nothing moved. With nothing queued, every source of work has a waker registered
            // this round: the socket, each stream with room to send, the timers (a stream
            // without room waits for a WINDOW_UPDATE, which comes through the socket).
            if self.out.queued() == 0 {
                return Poll::Pending;
            }
            match self.poll_write(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(())) => {
                    self.closing = Some(Closing::Abrupt);
                    return Poll::Ready(());
                }
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Hands the queued output to the session; frees the buffer once all is taken.
    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), ()>> {
        let out = &mut self.out;
        while out.written < out.buf.len() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &out.buf[out.written..])) {
                Ok(n @ 1..) => out.written += n,
                _ => return Poll::Ready(Err(())),
            }
        }
        if out.written > 0 {
            out.buf = Vec::new();
            out.written = 0;
        }
        Poll::Ready(ready!(Pin::new(&mut self.io).poll_flush(cx)).map_err(drop))
    }

    /// The idle timer, the shutdown, and the end of a draining or idle connection.
    fn poll_lifecycle(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.draining && self.shutdown.as_mut().poll(cx).is_ready() {
            // Shutting down: no new streams; the hub ends the subscribes with a retry, the
            // router's answers finish, then the connection closes.
            self.draining = true;
            frame::put_goaway(
                &mut self.out.buf,
                self.last_stream,
                Reason::NO_ERROR,
                "shutting down",
            );
        }
        if self.streams.is_empty() {
            if self.draining {
                self.closing = Some(Closing::Goaway);
                return true;
            }
            let head_timeout = self.shared.state.config.head_timeout;
            let idle = self
                .idle
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(head_timeout)));
            if idle.as_mut().poll(cx).is_ready() {
                self.goaway(Reason::NO_ERROR, "idle");
                return true;
            }
        } else {
            self.idle = None;
        }
        false
    }

    /// Queues a GOAWAY and starts closing.
    fn goaway(&mut self, reason: Reason, debug: &'static str) {
        frame::put_goaway(&mut self.out.buf, self.last_stream, reason, debug);
        self.closing = Some(Closing::Goaway);
        // Streams end with the connection: request bodies see the reset.
        for stream in self.streams.drain(..) {
            stream.abort_body();
        }
    }

    /// Processes the complete frames in `rbuf`.
    fn process(&mut self) {
        let buf = std::mem::take(&mut self.rbuf);
        let mut at = 0;
        if !self.preface_read {
            let n = buf.len().min(PREFACE.len());
            if buf[..n] != PREFACE[..n] {
                self.goaway(Reason::PROTOCOL_ERROR, "invalid connection preface");
                return;
            }
            if n < PREFACE.len() {
                self.rbuf = buf;
                return;
            }
            self.preface_read = true;
            at = PREFACE.len();
        }
        while buf.len() - at >= HEADER_LEN && self.closing.is_none() {
            let header = Header::parse(buf[at..at + HEADER_LEN].try_into().unwrap_or(&[0; 9]));
            if header.len > DEFAULT_MAX_FRAME {
                self.goaway(
                    Reason::FRAME_SIZE_ERROR,
                    "frame larger than SETTINGS_MAX_FRAME_SIZE",
                );
                return;
            }
            let end = at + HEADER_LEN + header.len;
            if buf.len() < end {
                break;
            }
            let payload = &buf[at + HEADER_LEN..end];
            at = end;
            if let Err(ConnError(reason, debug)) = self.on_frame(header, payload) {
                self.goaway(reason, debug);
                return;
            }
        }
        if at < buf.len() && self.closing.is_none() {
            let mut rest = buf;
            rest.drain(..at);
            self.rbuf = rest;
        }
    }

    fn on_frame(&mut self, h: Header, payload: &[u8]) -> Result<(), ConnError> {
        if self.block.is_some() && h.kind != kind::CONTINUATION {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "a frame other than CONTINUATION inside a header block",
            ));
        }
        if !self.settings_read && h.kind != kind::SETTINGS {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "the first frame is not SETTINGS",
            ));
        }
        let empty = payload.is_empty()
            && (h.kind == kind::DATA && !h.has(flag::END_STREAM)
                || h.kind == kind::CONTINUATION && !h.has(flag::END_HEADERS))
            || h.kind > kind::CONTINUATION;
        if empty {
            self.empty_frames += 1;
            if self.empty_frames > MAX_EMPTY_FRAMES {
                return Err(ConnError(
                    Reason::ENHANCE_YOUR_CALM,
                    "too many empty frames",
                ));
            }
        } else {
            self.empty_frames = 0;
        }
        match h.kind {
            kind::DATA => self.on_data(h, payload),
            kind::HEADERS => self.on_headers(h, payload),
            kind::CONTINUATION => self.on_continuation(h, payload),
            kind::PRIORITY => {
                if h.stream == 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PRIORITY on stream 0"));
                }
                if payload.len() != 5 {
                    frame::put_rst_stream(&mut self.out.buf, h.stream, Reason::FRAME_SIZE_ERROR);
                    self.remove(h.stream);
                }
                Ok(())
            }
            kind::RST_STREAM => self.on_rst_stream(h, payload),
            kind::SETTINGS => self.on_settings(h, payload),
            kind::PUSH_PROMISE => Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "a client may not send PUSH_PROMISE",
            )),
            kind::PING => {
                if h.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "PING on a stream"));
                }
                let Ok(data) = <&[u8; 8]>::try_from(payload) else {
                    return Err(ConnError(Reason::FRAME_SIZE_ERROR, "PING length is not 8"));
                };
                if !h.has(flag::ACK) {
                    frame::put_ping_ack(&mut self.out.buf, data);
                }
                Ok(())
            }
            kind::GOAWAY => {
                if h.stream != 0 {
                    return Err(ConnError(Reason::PROTOCOL_ERROR, "GOAWAY on a stream"));
                }
                // The client opens no more streams: the open ones finish, then the connection
                // closes, as for a shutdown.
                self.draining = true;
                Ok(())
            }
            kind::WINDOW_UPDATE => self.on_window_update(h, payload),
            // Unknown frame types are ignored (RFC 9113 §4.1).
            _ => Ok(()),
        }
    }

    /// Adds a stream: room for exactly one at first (most connections hold one subscribe for
    /// their life), the usual doubling after.
    fn push(&mut self, stream: Stream) {
        if self.streams.capacity() == 0 {
            self.streams.reserve_exact(1);
        }
        self.streams.push(stream);
    }

    fn position(&self, id: u32) -> Option<usize> {
        self.streams.iter().position(|s| s.id == id)
    }

    fn remove(&mut self, id: u32) -> Option<Stream> {
        let at = self.position(id)?;
        Some(self.streams.swap_remove(at))
    }

    /// A frame on a stream the client never opened: a connection error (RFC 9113 §5.1).
    fn check_not_idle(&self, h: &Header, what: &'static str) -> Result<(), ConnError> {
        if h.stream == 0 || h.stream > self.last_stream {
            return Err(ConnError(Reason::PROTOCOL_ERROR, what));
        }
        Ok(())
    }

    fn on_data(&mut self, h: Header, payload: &[u8]) -> Result<(), ConnError> {
        self.check_not_idle(&h, "DATA on an idle stream or stream 0")?;
        let len = payload.len() as i64;
        if len > self.recv_window {
            return Err(ConnError(
                Reason::FLOW_CONTROL_ERROR,
                "DATA beyond the connection window",
            ));
        }
        self.recv_window -= len;
        let Some((start, end)) = frame::unpad(&h, payload) else {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "padding longer than the frame",
            ));
        };
        // What no handler will read is credited back at once: padding, and anything for a
        // stream that is gone or whose handler dropped its body.
        let mut credit = len - (end - start) as i64;
        let data = &payload[start..end];
        let Some(at) = self.position(h.stream) else {
            frame::put_rst_stream(&mut self.out.buf, h.stream, Reason::STREAM_CLOSED);
            self.credit_connection();
            return Ok(());
        };
        let stream = &mut self.streams[at];
        let routed = match &mut stream.kind {
            Kind::Routed(routed) if !stream.remote_closed => routed,
            _ => {
                // DATA after END_STREAM: the stream is half-closed (remote).
                let id = stream.id;
                self.stream_error(id, Reason::STREAM_CLOSED);
                self.credit_connection();
                return Ok(());
            }
        };
        if len > stream.recv_window {
            let id = stream.id;
            self.stream_error(id, Reason::FLOW_CONTROL_ERROR);
            self.credit_connection();
            return Ok(());
        }
        stream.recv_window -= len;
        routed.received += data.len() as u64;
        let end_stream = h.has(flag::END_STREAM);
        let length_wrong = routed
            .expected
            .is_some_and(|n| routed.received > n || end_stream && routed.received != n);
        if length_wrong {
            let id = stream.id;
            self.stream_error(id, Reason::PROTOCOL_ERROR);
            self.credit_connection();
            return Ok(());
        }
        match &routed.body {
            Some(pipe) if !data.is_empty() => {
                if !pipe.push(Bytes::copy_from_slice(data)) {
                    credit += data.len() as i64;
                }
            }
            Some(_) => {}
            None => credit += data.len() as i64,
        }
        stream.owed += credit;
        if end_stream {
            stream.remote_closed = true;
            if let Some(pipe) = routed.body.take() {
                pipe.end(Ok(()));
            }
        }
        credit_stream(stream, &mut self.out);
        // The connection window is credited on receipt: each stream's window bounds what its
        // handler may leave unread.
        self.credit_connection();
        Ok(())
    }

    /// Gives the client back connection window, in one update once half of it is used.
    fn credit_connection(&mut self) {
        if self.recv_window < DEFAULT_WINDOW / 2 {
            let increment = DEFAULT_WINDOW - self.recv_window;
            self.recv_window = DEFAULT_WINDOW;
            frame::put_window_update(&mut self.out.buf, 0, increment as u32);
        }
    }

    /// Resets a stream with `reason` and forgets it.
    fn stream_error(&mut self, id: u32, reason: Reason) {
        frame::put_rst_stream(&mut self.out.buf, id, reason);
        if let Some(stream) = self.remove(id) {
            stream.abort_body();
        }
    }

    fn on_headers(&mut self, h: Header, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream == 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "HEADERS on stream 0"));
        }
        let Some((mut start, end)) = frame::unpad(&h, payload) else {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "padding longer than the frame",
            ));
        };
        if h.has(flag::PRIORITY) {
            if end - start < 5 {
                return Err(ConnError(
                    Reason::FRAME_SIZE_ERROR,
                    "HEADERS too short for its priority",
                ));
            }
            start += 5;
        }
        let fragment = &payload[start..end];
        let end_stream = h.has(flag::END_STREAM);
        if h.has(flag::END_HEADERS) {
            return self.on_block(h.stream, end_stream, fragment);
        }
        self.block = Some(Box::new(Block {
            stream: h.stream,
            end_stream,
            bytes: fragment.to_vec(),
        }));
        Ok(())
    }

    fn on_continuation(&mut self, h: Header, payload: &[u8]) -> Result<(), ConnError> {
        let Some(block) = &mut self.block else {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "CONTINUATION without a header block",
            ));
        };
        if block.stream != h.stream {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "CONTINUATION on another stream",
            ));
        }
        // A head's limit plus a frame: past it, the block is a flood (CVE-2024-27316), and
        // HPACK's state cannot be kept without decoding it all.
        if block.bytes.len() + payload.len() > self.shared.state.config.max_head + DEFAULT_MAX_FRAME
        {
            return Err(ConnError(
                Reason::ENHANCE_YOUR_CALM,
                "header block too large",
            ));
        }
        block.bytes.extend_from_slice(payload);
        if !h.has(flag::END_HEADERS) {
            return Ok(());
        }
        let Some(block) = self.block.take() else {
            return Ok(());
        };
        self.on_block(block.stream, block.end_stream, &block.bytes)
    }

    /// A complete header block: a new request, or a request's trailers.
    fn on_block(&mut self, id: u32, end_stream: bool, block: &[u8]) -> Result<(), ConnError> {
        if id.is_multiple_of(2) {
            return Err(ConnError(
                Reason::PROTOCOL_ERROR,
                "an even stream id from a client",
            ));
        }
        if id <= self.last_stream {
            let Some(at) = self.position(id) else {
                // Decoded anyway: the table must stay in step.
                let _ = fields::decode_trailers(&mut self.decoder, block);
                return Err(ConnError(
                    Reason::STREAM_CLOSED,
                    "HEADERS on a closed stream",
                ));
            };
            return self.on_trailers(at, end_stream, block);
        }
        self.last_stream = id;
        let max_head = self.shared.state.config.max_head;
        let head = match fields::decode_request(&mut self.decoder, block, max_head) {
            Ok(head) => head,
            Err(HeadError::Compression) => {
                return Err(ConnError(Reason::COMPRESSION_ERROR, "invalid HPACK block"));
            }
            Err(HeadError::Malformed(why)) => {
                tracing::debug!("HTTP/2 stream {id} refused: {why}");
                frame::put_rst_stream(&mut self.out.buf, id, Reason::PROTOCOL_ERROR);
                return Ok(());
            }
            Err(HeadError::TooLarge) => {
                let reason = format!("request head larger than {max_head} bytes\n");
                self.answer_now(id, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, reason);
                if !end_stream {
                    frame::put_rst_stream(&mut self.out.buf, id, Reason::NO_ERROR);
                }
                return Ok(());
            }
        };
        if self.draining || self.streams.len() >= MAX_STREAMS {
            frame::put_rst_stream(&mut self.out.buf, id, Reason::REFUSED_STREAM);
            return Ok(());
        }
        self.open(id, head, end_stream);
        Ok(())
    }

    fn on_trailers(&mut self, at: usize, end_stream: bool, block: &[u8]) -> Result<(), ConnError> {
        let trailers = fields::decode_trailers(&mut self.decoder, block);
        if trailers == Err(HeadError::Compression) {
            return Err(ConnError(Reason::COMPRESSION_ERROR, "invalid HPACK block"));
        }
        let stream = &mut self.streams[at];
        let id = stream.id;
        let routed = match &mut stream.kind {
            Kind::Routed(routed) if !stream.remote_closed => routed,
            _ => {
                self.stream_error(id, Reason::STREAM_CLOSED);
                return Ok(());
            }
        };
        let short = routed.expected.is_some_and(|n| routed.received != n);
        if !end_stream || trailers.is_err() || short {
            self.stream_error(id, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        stream.remote_closed = true;
        if let Some(pipe) = routed.body.take() {
            pipe.end(Ok(()));
        }
        Ok(())
    }

    /// Answers a request with a one-line text reason, without the router.
    fn answer_now(&mut self, id: u32, status: StatusCode, reason: String) {
        let mut fields = HeaderMap::with_capacity(3);
        fields.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
        fields.insert(header::CONTENT_LENGTH, HeaderValue::from(reason.len()));
        self.out.head(id, status, &mut fields, false);
        let mut window = self.out.peer.initial_window;
        let mut body = Bytes::from(reason);
        // A short body: if the windows do not take it whole, what fits goes and the rest is
        // dropped with a reset (the client asked with a head over the limit).
        if !self.out.data(id, &mut window, &mut body, true) {
            frame::put_rst_stream(&mut self.out.buf, id, Reason::CANCEL);
        }
    }

    /// Opens a stream for a decoded request: a plain subscribe on the compact path, anything
    /// else (and a subscribe the hub refuses, so the router words the refusal) to the router.
    fn open(&mut self, id: u32, head: RequestHead, end_stream: bool) {
        let send_window = self.out.peer.initial_window;
        let base = |kind| Stream {
            id,
            send_window,
            recv_window: DEFAULT_WINDOW,
            owed: 0,
            remote_closed: end_stream,
            answered: false,
            kind,
        };
        let plain_subscribe = end_stream
            && head.method == Method::GET
            && head.uri.path() == MERCURE_PATH
            && head.content_length.is_none()
            && !head.headers.contains_key(header::EXPECT);
        if plain_subscribe
            && let Some((stream, fields)) = conn::subscribe(
                &self.shared,
                &head.uri,
                Cow::Borrowed(&head.headers),
                self.peer,
            )
        {
            let mut fields = fields;
            self.out.head(id, StatusCode::OK, &mut fields, false);
            let mut opened = base(Kind::Subscribe {
                stream,
                pending: Bytes::new(),
            });
            opened.answered = true;
            self.push(opened);
            return;
        }
        let is_head = head.method == Method::HEAD;
        let expected = head.content_length;
        let (pipe, body) = if end_stream {
            (None, Body::empty())
        } else {
            let (pipe, body) = Pipe::new(expected);
            (Some(pipe), Body::new(body))
        };
        let mut request = Request::new(body);
        *request.method_mut() = head.method;
        *request.uri_mut() = head.uri;
        *request.version_mut() = Version::HTTP_2;
        *request.headers_mut() = head.headers;
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let call = self.shared.router().clone().oneshot(request);
        let waiting = Box::pin(async move {
            match call.await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        });
        self.push(base(Kind::Routed(Box::new(Routed {
            phase: Phase::Waiting(waiting),
            body: pipe,
            expected,
            received: 0,
            head: is_head,
        }))));
    }

    fn on_rst_stream(&mut self, h: Header, payload: &[u8]) -> Result<(), ConnError> {
        self.check_not_idle(&h, "RST_STREAM on an idle stream or stream 0")?;
        if payload.len() != 4 {
            return Err(ConnError(
                Reason::FRAME_SIZE_ERROR,
                "RST_STREAM length is not 4",
            ));
        }
        if let Some(stream) = self.remove(h.stream) {
            if stream.answered {
                // A cancel after the answer (a closed EventSource) is ordinary.
                self.early_resets = self.early_resets.saturating_sub(1);
            } else {
                self.early_resets += 1;
                if self.early_resets > MAX_EARLY_RESETS {
                    return Err(ConnError(
                        Reason::ENHANCE_YOUR_CALM,
                        "too many streams reset before their response",
                    ));
                }
            }
            stream.abort_body();
        }
        Ok(())
    }

    fn on_settings(&mut self, h: Header, payload: &[u8]) -> Result<(), ConnError> {
        if h.stream != 0 {
            return Err(ConnError(Reason::PROTOCOL_ERROR, "SETTINGS on a stream"));
        }
        if h.has(flag::ACK) {
            if !payload.is_empty() {
                return Err(ConnError(
                    Reason::FRAME_SIZE_ERROR,
                    "SETTINGS ACK with a payload",
                ));
            }
            if self.settings_read {
                // The client applied our SETTINGS: its encoder has no dynamic table any more
                // and refers to none of it, so ours is emptied now rather than at its next
                // request.
                self.decoder.set_max_allowed_table_size(0);
                self.decoder.set_max_table_size(0);
            }
            return Ok(());
        }
        self.settings_read = true;
        let before = self.out.peer.initial_window;
        frame::apply_settings(&mut self.out.peer, payload)
            .map_err(|frame::BadSettings(reason, why)| ConnError(reason, why))?;
        let delta = self.out.peer.initial_window - before;
        if delta != 0 {
            for stream in &mut self.streams {
                stream.send_window += delta;
                if stream.send_window > MAX_WINDOW {
                    return Err(ConnError(
                        Reason::FLOW_CONTROL_ERROR,
                        "SETTINGS_INITIAL_WINDOW_SIZE overflows a stream window",
                    ));
                }
            }
        }
        frame::put_settings_ack(&mut self.out.buf);
        Ok(())
    }

    fn on_window_update(&mut self, h: Header, payload: &[u8]) -> Result<(), ConnError> {
        let Ok(bytes) = <[u8; 4]>::try_from(payload) else {
            return Err(ConnError(
                Reason::FRAME_SIZE_ERROR,
                "WINDOW_UPDATE length is not 4",
            ));
        };
        let increment = i64::from(u32::from_be_bytes(bytes) & 0x7fff_ffff);
        if h.stream == 0 {
            if increment == 0 {
                return Err(ConnError(
                    Reason::PROTOCOL_ERROR,
                    "WINDOW_UPDATE of 0 on the connection",
                ));
            }
            self.out.window += increment;
            if self.out.window > MAX_WINDOW {
                return Err(ConnError(
                    Reason::FLOW_CONTROL_ERROR,
                    "connection window above 2^31-1",
                ));
            }
            return Ok(());
        }
        self.check_not_idle(&h, "WINDOW_UPDATE on an idle stream")?;
        let Some(at) = self.position(h.stream) else {
            return Ok(());
        };
        let stream = &mut self.streams[at];
        if increment == 0 {
            self.stream_error(h.stream, Reason::PROTOCOL_ERROR);
            return Ok(());
        }
        stream.send_window += increment;
        if stream.send_window > MAX_WINDOW {
            self.stream_error(h.stream, Reason::FLOW_CONTROL_ERROR);
        }
        Ok(())
    }

    /// Polls every stream for what it can send; returns whether anything was queued.
    fn poll_streams(&mut self, cx: &mut Context<'_>) -> bool {
        let mut progress = false;
        let mut at = 0;
        while at < self.streams.len() {
            if self.out.queued() >= WRITE_HIGH {
                break;
            }
            let before = self.out.buf.len();
            let polled = poll_stream(&mut self.streams[at], &mut self.out, cx);
            progress |= self.out.buf.len() != before;
            let stream = &mut self.streams[at];
            match polled {
                Polled::Open => {
                    credit_read(stream, &mut self.out, cx);
                    at += 1;
                }
                Polled::Finished => {
                    progress = true;
                    if !stream.remote_closed {
                        // The answer is complete and the request is not: the client may stop
                        // sending (RFC 9113 §8.1).
                        frame::put_rst_stream(&mut self.out.buf, stream.id, Reason::NO_ERROR);
                    }
                    self.early_resets = self.early_resets.saturating_sub(1);
                    let id = stream.id;
                    self.remove(id);
                }
                Polled::Reset(reason) => {
                    progress = true;
                    let id = stream.id;
                    self.stream_error(id, reason);
                }
            }
        }
        progress
    }
}

/// Most received bytes kept unprocessed: one frame of the largest size we accept, its header,
/// and a TLS record's worth that came with it.
const READ_LIMIT: usize = HEADER_LEN + DEFAULT_MAX_FRAME + 2 * 16_384;
