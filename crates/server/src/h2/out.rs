//! What a connection has queued for its client: frames written into one buffer within the
//! client's windows and frame size (DATA split to fit, field blocks split into CONTINUATIONs,
//! response heads with the fields hyper adds), and the connection-level send window.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use bytes::{Buf, Bytes};
use http_body::Body as _;

use super::fields;
use super::frame::{self, PeerSettings, flag, kind};
use crate::conn;

/// Below this much queued output, streams are polled for more.
pub(super) const WRITE_HIGH: usize = 16 * 1024;

/// What is queued for the client, and the connection's send window.
pub(super) struct Out {
    pub(super) buf: Vec<u8>,
    /// Bytes of `buf` the session already took.
    pub(super) written: usize,
    /// The client's connection-level window for our DATA.
    pub(super) window: i64,
    /// The client's SETTINGS.
    pub(super) peer: PeerSettings,
}

impl Out {
    pub(super) fn queued(&self) -> usize {
        self.buf.len() - self.written
    }

    /// Room for DATA on a stream with `stream_window`: the windows and the frame size.
    pub(super) fn room(&self, stream_window: i64) -> usize {
        let room = self.window.min(stream_window).max(0);
        usize::try_from(room).unwrap_or(0).min(self.peer.max_frame)
    }

    /// Queues as much of `data` as the windows allow as DATA frames, `END_STREAM` on the last
    /// one if `end` and all of it fits. Returns whether all of it (and the end) was queued.
    pub(super) fn data(&mut self, id: u32, window: &mut i64, data: &mut Bytes, end: bool) -> bool {
        while !data.is_empty() {
            let n = self.room(*window).min(data.len());
            if n == 0 {
                return false;
            }
            let last = n == data.len();
            let flags = if last && end { flag::END_STREAM } else { 0 };
            frame::put_header(&mut self.buf, n, kind::DATA, flags, id);
            self.buf.extend_from_slice(&data[..n]);
            data.advance(n);
            *window -= n as i64;
            self.window -= n as i64;
            if last && end {
                return true;
            }
        }
        if end {
            frame::put_header(&mut self.buf, 0, kind::DATA, flag::END_STREAM, id);
        }
        true
    }

    /// Queues a field block (HEADERS, then CONTINUATIONs if it exceeds a frame).
    pub(super) fn headers(&mut self, id: u32, block: &[u8], end_stream: bool) {
        let max = self.peer.max_frame;
        let mut chunks = block.chunks(max).peekable();
        let first = chunks.next().unwrap_or_default();
        let mut flags = if end_stream { flag::END_STREAM } else { 0 };
        if chunks.peek().is_none() {
            flags |= flag::END_HEADERS;
        }
        frame::put_header(&mut self.buf, first.len(), kind::HEADERS, flags, id);
        self.buf.extend_from_slice(first);
        while let Some(chunk) = chunks.next() {
            let flags = if chunks.peek().is_none() {
                flag::END_HEADERS
            } else {
                0
            };
            frame::put_header(&mut self.buf, chunk.len(), kind::CONTINUATION, flags, id);
            self.buf.extend_from_slice(chunk);
        }
    }

    /// Queues a response head: `:status`, the fields, `date` and (if the body's length is
    /// known and no field gives it) `content-length`, as hyper adds them.
    pub(super) fn response_head(
        &mut self,
        id: u32,
        response: &mut Response<Body>,
        end_stream: bool,
    ) {
        let length = response.body().size_hint().exact();
        let status = response.status();
        let fields = response.headers_mut();
        if let Some(n) = length.filter(|_| !fields.contains_key(header::CONTENT_LENGTH))
            && status != StatusCode::NO_CONTENT
            && !status.is_informational()
        {
            fields.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        }
        self.head(id, status, fields, end_stream);
    }

    /// Queues a response head as it is, plus `date` if it has none.
    pub(super) fn head(
        &mut self,
        id: u32,
        status: StatusCode,
        fields: &mut HeaderMap,
        end_stream: bool,
    ) {
        if !fields.contains_key(header::DATE) {
            // Formatted dates are ASCII: the fallback is never used.
            let date = HeaderValue::try_from(conn::http_date())
                .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
            fields.insert(header::DATE, date);
        }
        let mut block = Vec::with_capacity(128);
        fields::encode_response(status, fields, &mut block);
        self.headers(id, &block, end_stream);
    }
}
