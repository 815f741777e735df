//! Raw HTTP/2 (RFC 9113) over TLS with ALPN `h2`, for black-box wire tests: a frame writer and
//! reader, a minimal HPACK encoder (literal fields without indexing, new names, no Huffman;
//! RFC 7541 §6.2.2), and the server's header blocks decoded with `loona-hpack`.
//!
//! Every read is bounded by [`READ_TIMEOUT`]; a test that waits for a frame that never comes
//! fails instead of hanging.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use ssehub_server::rustls::pki_types::ServerName;
use ssehub_server::rustls::{self, ClientConfig, RootCertStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::TestHub;
use super::tls::Cert;

/// How long any single read may wait.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

// Frame types (RFC 9113 §6).
pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PUSH_PROMISE: u8 = 0x5;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

// Flags.
pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY_FLAG: u8 = 0x20;

// Settings (RFC 9113 §6.5.2).
pub const HEADER_TABLE_SIZE: u16 = 0x1;
pub const ENABLE_PUSH: u16 = 0x2;
pub const MAX_CONCURRENT_STREAMS: u16 = 0x3;
pub const INITIAL_WINDOW_SIZE: u16 = 0x4;
pub const MAX_FRAME_SIZE: u16 = 0x5;
pub const MAX_HEADER_LIST_SIZE: u16 = 0x6;

// Error codes (RFC 9113 §7).
pub const NO_ERROR: u32 = 0x0;
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const INTERNAL_ERROR: u32 = 0x2;
pub const FLOW_CONTROL_ERROR: u32 = 0x3;
pub const STREAM_CLOSED: u32 = 0x5;
pub const FRAME_SIZE_ERROR: u32 = 0x6;
pub const REFUSED_STREAM: u32 = 0x7;
pub const CANCEL: u32 = 0x8;
pub const COMPRESSION_ERROR: u32 = 0x9;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The default initial flow-control window (RFC 9113 §6.9.2).
pub const DEFAULT_WINDOW: i64 = 65_535;

/// One frame as read. `headers` is the decoded field block of a HEADERS frame (its
/// CONTINUATION frames folded in, padding and priority stripped); `payload` is then the raw
/// HEADERS payload of the first frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
    pub headers: Option<Vec<(String, String)>>,
}

impl Frame {
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> u32 {
        let at = if self.kind == GOAWAY { 4 } else { 0 };
        u32::from_be_bytes(self.payload[at..at + 4].try_into().unwrap())
    }

    /// A header's value (the first of that name) in a decoded HEADERS frame.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .as_ref()?
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `:status` of a response HEADERS frame.
    pub fn status(&self) -> Option<u16> {
        self.header(":status").map(|s| s.parse().unwrap())
    }
}

/// How a stream or the connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// RST_STREAM with this code.
    Reset(u32),
    /// GOAWAY with this code.
    GoAway(u32),
    /// A response with this status (4xx).
    Status(u16),
}

/// A response read whole: status, headers, body, and whether END_STREAM was seen.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A raw HTTP/2 client connection over TLS.
pub struct H2Conn {
    tls: TlsStream<TcpStream>,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    decoder: loona_hpack::Decoder<'static>,
    /// Frames read while waiting for something else (another stream's), in order.
    stash: VecDeque<Frame>,
    /// The server's SETTINGS, as received (first frame of the connection, then any later).
    pub server_settings: Vec<(u16, u32)>,
    /// Answer DATA with WINDOW_UPDATEs (connection and stream) as it is read.
    pub auto_window: bool,
    /// Answer the server's PINGs.
    pub auto_ping: bool,
    /// Sum of the WINDOW_UPDATE increments the server sent on stream 0.
    pub conn_window_updates: i64,
    /// Whether EOF (or a read error) was seen.
    pub closed: bool,
    ping_seq: u64,
}

/// A TLS client to `hub`, trusting `cert`, offering only `h2`; ALPN is checked to be `h2`.
pub async fn connect_tls(hub: &TestHub, cert: &Cert) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(hub.addr).await.unwrap();
    let tls = tokio::time::timeout(
        READ_TIMEOUT,
        tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp),
    )
    .await
    .expect("TLS handshake within 5 s")
    .unwrap();
    assert_eq!(
        tls.get_ref().1.alpn_protocol(),
        Some(&b"h2"[..]),
        "ALPN must select h2"
    );
    tls
}

/// The 9-byte frame header and payload.
pub fn frame_bytes(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    assert!(len < 1 << 24);
    let mut out = Vec::with_capacity(9 + len);
    out.extend_from_slice(&(len as u32).to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A SETTINGS payload.
pub fn settings_payload(settings: &[(u16, u32)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (id, value) in settings {
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&value.to_be_bytes());
    }
    out
}

/// An HPACK integer with an `n`-bit prefix, `flags` in the first byte's high bits
/// (RFC 7541 §5.1).
pub fn hpack_int(out: &mut Vec<u8>, flags: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(flags | v as u8);
        return;
    }
    out.push(flags | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

fn hpack_str(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

/// A header block of literal fields without indexing, new names (RFC 7541 §6.2.2), in order.
pub fn hpack_encode(headers: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in headers {
        out.push(0x00);
        hpack_str(&mut out, name.as_bytes());
        hpack_str(&mut out, value.as_bytes());
    }
    out
}

/// The Huffman code (RFC 7541 Appendix B) of the few characters [`hpack_huffman`] knows.
fn huffman_code(c: u8) -> (u32, u32) {
    match c {
        b'/' => (0x18, 6),
        b'a' => (0x3, 5),
        b'e' => (0x5, 5),
        b'h' => (0x27, 6),
        b'l' => (0x28, 6),
        b't' => (0x9, 5),
        b'z' => (0x7b, 7),
        b'x' => (0x79, 7),
        b'-' => (0x16, 6),
        b'i' => (0x6, 5),
        b'c' => (0x4, 5),
        _ => panic!("no Huffman code here for {:?}", c as char),
    }
}

/// A Huffman-coded HPACK string (RFC 7541 §5.2) of `s`, which may only use the characters
/// of `/healthz`, `x`, `i`, `c` and `-`.
pub fn hpack_huffman(out: &mut Vec<u8>, s: &str) {
    let mut bits: u64 = 0;
    let mut n = 0u32;
    let mut coded = Vec::new();
    for c in s.bytes() {
        let (code, len) = huffman_code(c);
        bits = (bits << len) | u64::from(code);
        n += len;
        while n >= 8 {
            coded.push((bits >> (n - 8)) as u8);
            n -= 8;
        }
    }
    if n > 0 {
        // Padded with the most significant bits of EOS (all ones).
        coded.push(((bits << (8 - n)) as u8) | (0xff >> n));
    }
    hpack_int(out, 0x80, 7, coded.len());
    out.extend_from_slice(&coded);
}

/// A request's header block: `:method`, `:scheme https`, `:path`, `:authority`, then `extra`.
pub fn request_block(method: &str, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut headers = vec![
        (":method", method),
        (":scheme", "https"),
        (":path", path),
        (":authority", "127.0.0.1"),
    ];
    headers.extend_from_slice(extra);
    hpack_encode(&headers)
}

impl H2Conn {
    /// A TLS connection with ALPN `h2`, nothing sent yet.
    pub async fn connect(hub: &TestHub, cert: &Cert) -> H2Conn {
        H2Conn {
            tls: connect_tls(hub, cert).await,
            inbuf: Vec::new(),
            out: Vec::new(),
            decoder: loona_hpack::Decoder::new(),
            stash: VecDeque::new(),
            server_settings: Vec::new(),
            auto_window: true,
            auto_ping: true,
            conn_window_updates: 0,
            closed: false,
            ping_seq: 0,
        }
    }

    /// [`H2Conn::open_with`] with an empty SETTINGS.
    pub async fn open(hub: &TestHub, cert: &Cert) -> H2Conn {
        H2Conn::open_with(hub, cert, &[]).await
    }

    /// Connects, sends the preface and a SETTINGS frame with `settings`, reads the server's
    /// SETTINGS (which must be its first frame), ACKs it, and waits for the ACK of ours
    /// (skipping WINDOW_UPDATE frames meanwhile).
    pub async fn open_with(hub: &TestHub, cert: &Cert, settings: &[(u16, u32)]) -> H2Conn {
        let mut conn = H2Conn::connect(hub, cert).await;
        conn.handshake(settings).await;
        conn
    }

    /// The preface exchange of [`H2Conn::open_with`] on a connected [`H2Conn`].
    pub async fn handshake(&mut self, settings: &[(u16, u32)]) {
        self.queue(PREFACE);
        self.queue_frame(SETTINGS, 0, 0, &settings_payload(settings));
        self.flush().await;
        let first = self.read_frame().await.expect("closed before its SETTINGS");
        assert_eq!(
            (first.kind, first.flags & ACK, first.stream),
            (SETTINGS, 0, 0),
            "the server's first frame must be a non-ACK SETTINGS (RFC 9113 §3.4): {first:?}"
        );
        assert_eq!(first.payload.len() % 6, 0);
        self.server_settings = first
            .payload
            .chunks(6)
            .map(|c| {
                (
                    u16::from_be_bytes([c[0], c[1]]),
                    u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                )
            })
            .collect();
        self.send_frame(SETTINGS, ACK, 0, &[]).await;
        for _ in 0..16 {
            let f = self
                .read_frame()
                .await
                .expect("closed before its SETTINGS ACK");
            match (f.kind, f.has(ACK)) {
                (SETTINGS, true) => {
                    assert!(f.payload.is_empty());
                    return;
                }
                (WINDOW_UPDATE, _) => {
                    self.filter(f).await;
                }
                _ => panic!("unexpected frame before the SETTINGS ACK: {f:?}"),
            }
        }
        panic!("no SETTINGS ACK");
    }

    /// A setting the server advertised in its first SETTINGS.
    pub fn server_setting(&self, id: u16) -> Option<u32> {
        self.server_settings
            .iter()
            .rev()
            .find(|(i, _)| *i == id)
            .map(|(_, v)| *v)
    }

    pub fn queue(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub fn queue_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        let bytes = frame_bytes(kind, flags, stream, payload);
        self.queue(&bytes);
    }

    /// Writes what was queued; `Err` if the server closed the connection.
    pub async fn try_flush(&mut self) -> std::io::Result<()> {
        let out = std::mem::take(&mut self.out);
        tokio::time::timeout(READ_TIMEOUT, async {
            self.tls.write_all(&out).await?;
            self.tls.flush().await
        })
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
    }

    pub async fn flush(&mut self) {
        self.try_flush().await.expect("write failed");
    }

    /// Writes bytes as they are (not framed).
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.queue(bytes);
        self.flush().await;
    }

    pub async fn send_frame(&mut self, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
        self.queue_frame(kind, flags, stream, payload);
        self.flush().await;
    }

    pub async fn try_send_frame(
        &mut self,
        kind: u8,
        flags: u8,
        stream: u32,
        payload: &[u8],
    ) -> std::io::Result<()> {
        self.queue_frame(kind, flags, stream, payload);
        self.try_flush().await
    }

    pub async fn send_settings(&mut self, settings: &[(u16, u32)]) {
        self.send_frame(SETTINGS, 0, 0, &settings_payload(settings))
            .await;
    }

    pub async fn send_ping(&mut self, data: [u8; 8]) {
        self.send_frame(PING, 0, 0, &data).await;
    }

    pub async fn send_rst(&mut self, stream: u32, code: u32) {
        self.send_frame(RST_STREAM, 0, stream, &code.to_be_bytes())
            .await;
    }

    pub async fn send_window_update(&mut self, stream: u32, increment: u32) {
        self.send_frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
            .await;
    }

    /// A HEADERS frame with END_HEADERS (and END_STREAM if `end_stream`) carrying `block`.
    pub async fn send_headers(&mut self, stream: u32, block: &[u8], end_stream: bool) {
        let flags = END_HEADERS | if end_stream { END_STREAM } else { 0 };
        self.send_frame(HEADERS, flags, stream, block).await;
    }

    /// A request on `stream` (see [`request_block`]).
    pub async fn request(
        &mut self,
        stream: u32,
        method: &str,
        path: &str,
        extra: &[(&str, &str)],
        end_stream: bool,
    ) {
        let block = request_block(method, path, extra);
        self.send_headers(stream, &block, end_stream).await;
    }

    pub async fn send_data(&mut self, stream: u32, data: &[u8], end_stream: bool) {
        let flags = if end_stream { END_STREAM } else { 0 };
        self.send_frame(DATA, flags, stream, data).await;
    }

    /// The next frame as received, or `None` once the connection is closed (EOF, or a read
    /// error such as a reset or a TLS close without close_notify). HEADERS are decoded here,
    /// with their CONTINUATION frames, so the HPACK context stays in step. Panics after
    /// [`READ_TIMEOUT`] without a frame.
    pub async fn read_frame(&mut self) -> Option<Frame> {
        let mut frame = self.read_raw().await?;
        if frame.kind == HEADERS {
            let mut block = strip_headers_payload(&frame);
            let mut flags = frame.flags;
            while flags & END_HEADERS == 0 {
                let next = self.read_raw().await.expect("closed inside a header block");
                assert_eq!(
                    (next.kind, next.stream),
                    (CONTINUATION, frame.stream),
                    "a header block must continue with CONTINUATION frames on its stream"
                );
                block.extend_from_slice(&next.payload);
                flags = next.flags;
            }
            let decoded = self
                .decoder
                .decode(&block)
                .unwrap_or_else(|e| panic!("undecodable header block from the server: {e:?}"));
            frame.headers = Some(
                decoded
                    .into_iter()
                    .map(|(n, v)| {
                        (
                            String::from_utf8(n).unwrap(),
                            String::from_utf8_lossy(&v).into_owned(),
                        )
                    })
                    .collect(),
            );
        }
        Some(frame)
    }

    /// [`H2Conn::read_frame`] with a timeout of its own: `Err(())` if nothing came within it.
    pub async fn read_frame_within(&mut self, within: Duration) -> Result<Option<Frame>, ()> {
        match tokio::time::timeout(within, self.read_raw_header_ready()).await {
            Ok(()) => Ok(self.read_frame().await),
            Err(_) => Err(()),
        }
    }

    /// Waits until a frame header (or EOF) is readable, without consuming it.
    async fn read_raw_header_ready(&mut self) {
        loop {
            if self.closed || self.inbuf.len() >= 9 {
                return;
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 16 * 1024];
        match self.tls.read(&mut chunk).await {
            Ok(0) | Err(_) => self.closed = true,
            Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
        }
    }

    async fn read_raw(&mut self) -> Option<Frame> {
        tokio::time::timeout(READ_TIMEOUT, async {
            loop {
                if self.inbuf.len() >= 9 {
                    let len = u32::from_be_bytes([0, self.inbuf[0], self.inbuf[1], self.inbuf[2]])
                        as usize;
                    if self.inbuf.len() >= 9 + len {
                        let head: Vec<u8> = self.inbuf.drain(..9 + len).collect();
                        return Some(Frame {
                            kind: head[3],
                            flags: head[4],
                            stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]])
                                & 0x7fff_ffff,
                            payload: head[9..].to_vec(),
                            headers: None,
                        });
                    }
                }
                if self.closed {
                    return None;
                }
                self.fill().await;
            }
        })
        .await
        .expect("no frame from the server within 5 s")
    }

    /// The next frame a test cares about: SETTINGS (answered with an ACK) and their ACKs,
    /// WINDOW_UPDATE (those on stream 0 summed in `conn_window_updates`) and the server's own
    /// PINGs (answered when `auto_ping`) are skipped; DATA is answered with WINDOW_UPDATEs when
    /// `auto_window`. `None`: closed. Panics after [`READ_TIMEOUT`] without a frame.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        for _ in 0..10_000 {
            let f = self.read_frame().await?;
            if let Some(f) = self.filter(f).await {
                return Some(f);
            }
        }
        panic!("10,000 frames skipped");
    }

    /// [`H2Conn::next_frame`], giving up after `within`: `Err(())` if no frame came.
    pub async fn next_frame_within(&mut self, within: Duration) -> Result<Option<Frame>, ()> {
        let deadline = tokio::time::Instant::now() + within;
        for _ in 0..10_000 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(f) = self.read_frame_within(left).await? else {
                return Ok(None);
            };
            if let Some(f) = self.filter(f).await {
                return Ok(Some(f));
            }
        }
        panic!("10,000 frames skipped");
    }

    async fn filter(&mut self, f: Frame) -> Option<Frame> {
        match f.kind {
            SETTINGS => {
                if !f.has(ACK) {
                    let _ = self.try_send_frame(SETTINGS, ACK, 0, &[]).await;
                }
                None
            }
            WINDOW_UPDATE => {
                if f.stream == 0 && f.payload.len() == 4 {
                    self.conn_window_updates += i64::from(
                        u32::from_be_bytes(f.payload[..4].try_into().unwrap()) & 0x7fff_ffff,
                    );
                }
                None
            }
            PING if !f.has(ACK) => {
                if self.auto_ping {
                    let _ = self.try_send_frame(PING, ACK, 0, &f.payload).await;
                }
                None
            }
            DATA => {
                if self.auto_window {
                    let n = u32::try_from(f.payload.len()).unwrap();
                    if n > 0 {
                        self.queue_frame(WINDOW_UPDATE, 0, 0, &n.to_be_bytes());
                        if !f.has(END_STREAM) {
                            self.queue_frame(WINDOW_UPDATE, 0, f.stream, &n.to_be_bytes());
                        }
                        let _ = self.try_flush().await;
                    }
                }
                Some(f)
            }
            _ => Some(f),
        }
    }

    /// The next frame on `stream`, or a GOAWAY, or `None` on close; frames of other streams
    /// (and PING ACKs) read meanwhile are kept for later calls.
    pub async fn next_on(&mut self, stream: u32) -> Option<Frame> {
        if let Some(i) = self.stash.iter().position(|f| f.stream == stream) {
            return self.stash.remove(i);
        }
        for _ in 0..10_000 {
            let f = self.next_frame().await?;
            if f.stream == stream || f.kind == GOAWAY {
                return Some(f);
            }
            self.stash.push_back(f);
        }
        panic!("10,000 frames of other streams");
    }

    /// Sends a PING and waits for its ACK (same payload), skipping other frames: the
    /// connection is usable. Panics on GOAWAY or close.
    pub async fn ping_ok(&mut self) {
        self.ping_seq += 1;
        let data = (0x5a5a_0000_0000_0000u64 | self.ping_seq).to_be_bytes();
        self.send_ping(data).await;
        for _ in 0..10_000 {
            let f = self
                .next_frame()
                .await
                .expect("connection closed instead of answering a PING");
            assert_ne!(f.kind, GOAWAY, "GOAWAY instead of a PING ACK: {f:?}");
            if f.kind == PING && f.has(ACK) && f.payload == data {
                return;
            }
            if f.stream != 0 {
                self.stash.push_back(f);
            }
        }
        panic!("no PING ACK");
    }

    /// Reads until a GOAWAY, which must carry one of `codes`, then until the connection
    /// closes (RFC 9113 §5.4.1: after a GOAWAY for an error the endpoint MUST close the TCP
    /// connection). Returns the GOAWAY.
    pub async fn expect_goaway(&mut self, codes: &[u32]) -> Frame {
        for _ in 0..10_000 {
            let f = self
                .next_frame()
                .await
                .unwrap_or_else(|| panic!("closed without a GOAWAY (expected {codes:?})"));
            if f.kind == GOAWAY {
                assert!(f.payload.len() >= 8, "GOAWAY too short: {f:?}");
                assert!(
                    codes.contains(&f.error_code()),
                    "GOAWAY code {:#x}, expected one of {codes:x?}",
                    f.error_code()
                );
                if f.error_code() != NO_ERROR {
                    self.expect_closed().await;
                }
                return f;
            }
            assert_ne!(
                f.kind, RST_STREAM,
                "RST_STREAM where a connection error was expected: {f:?}"
            );
        }
        panic!("no GOAWAY");
    }

    /// Reads (and drops) frames until the connection closes, answering the server's PINGs;
    /// panics if it stays open [`READ_TIMEOUT`].
    pub async fn expect_closed(&mut self) {
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        for _ in 0..100_000 {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next_frame_within(left).await {
                Ok(None) => return,
                Ok(Some(_)) => {}
                Err(()) => panic!("the connection was not closed within 5 s"),
            }
        }
        panic!("the connection was not closed");
    }

    /// Bytes received until the connection closes, unparsed; panics if it stays open
    /// [`READ_TIMEOUT`].
    pub async fn bytes_until_closed(&mut self) -> Vec<u8> {
        let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
        while !self.closed {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, self.fill()).await.is_err() {
                panic!(
                    "the connection was not closed within 5 s; got {:?}",
                    String::from_utf8_lossy(&self.inbuf)
                );
            }
        }
        std::mem::take(&mut self.inbuf)
    }

    /// Reads until a RST_STREAM on `stream` (its code returned); panics on a GOAWAY, a close,
    /// or a response on that stream.
    pub async fn expect_rst(&mut self, stream: u32, codes: &[u32]) -> u32 {
        match self.expect_refusal(stream).await {
            Refusal::Reset(code) if codes.contains(&code) => code,
            other => panic!("expected RST_STREAM {codes:x?} on stream {stream}, got {other:?}"),
        }
    }

    /// Reads until `stream` is refused: a RST_STREAM on it, a GOAWAY, or a response HEADERS
    /// on it with a 4xx status. Panics on a 2xx/3xx/5xx response or a close.
    pub async fn expect_refusal(&mut self, stream: u32) -> Refusal {
        for _ in 0..10_000 {
            let f = self
                .next_on(stream)
                .await
                .unwrap_or_else(|| panic!("closed without refusing stream {stream}"));
            match f.kind {
                RST_STREAM => return Refusal::Reset(f.error_code()),
                GOAWAY => return Refusal::GoAway(f.error_code()),
                HEADERS => {
                    let status = f.status().expect("a response without :status");
                    assert!(
                        (400..500).contains(&status),
                        "stream {stream} answered {status}, not refused"
                    );
                    return Refusal::Status(status);
                }
                _ => {}
            }
        }
        panic!("stream {stream} not refused");
    }

    /// Reads the response on `stream` whole: HEADERS (1xx skipped), DATA until END_STREAM
    /// (trailers allowed). Panics on a reset, GOAWAY or close before END_STREAM.
    pub async fn response(&mut self, stream: u32) -> Response {
        let mut status = None;
        let mut headers = Vec::new();
        let mut body = Vec::new();
        for _ in 0..100_000 {
            let f = self
                .next_on(stream)
                .await
                .unwrap_or_else(|| panic!("closed before the end of stream {stream}"));
            match f.kind {
                HEADERS => {
                    let s = f.status();
                    if status.is_none() {
                        let s = s.expect("response HEADERS without :status");
                        if s >= 200 {
                            status = Some(s);
                            headers = f.headers.clone().unwrap();
                        }
                    }
                    if f.has(END_STREAM) {
                        break;
                    }
                }
                DATA => {
                    assert!(status.is_some(), "DATA before the response HEADERS");
                    body.extend_from_slice(&data_payload(&f));
                    if f.has(END_STREAM) {
                        break;
                    }
                }
                RST_STREAM => panic!("stream {stream} reset: {:#x}", f.error_code()),
                GOAWAY => panic!("GOAWAY {:#x} during stream {stream}", f.error_code()),
                _ => {}
            }
        }
        Response {
            status: status.expect("no final response"),
            headers,
            body,
        }
    }

    /// Reads the response HEADERS on `stream` (1xx skipped); the body is left to read.
    pub async fn response_head(&mut self, stream: u32) -> Frame {
        for _ in 0..1000 {
            let f = self
                .next_on(stream)
                .await
                .unwrap_or_else(|| panic!("closed before the response on stream {stream}"));
            match f.kind {
                HEADERS if f.status().is_some_and(|s| s >= 200) => return f,
                HEADERS => {}
                RST_STREAM => panic!("stream {stream} reset: {:#x}", f.error_code()),
                GOAWAY => panic!(
                    "GOAWAY {:#x} before stream {stream}'s response",
                    f.error_code()
                ),
                _ => panic!("unexpected frame before the response: {f:?}"),
            }
        }
        panic!("no response head");
    }

    /// Reads DATA on `stream` into `body` until it contains `needle`; panics on END_STREAM,
    /// a reset, a GOAWAY or a close first.
    pub async fn read_body_until(&mut self, stream: u32, body: &mut Vec<u8>, needle: &[u8]) {
        for _ in 0..100_000 {
            if super::find(body, needle).is_some() {
                return;
            }
            let f = self.next_on(stream).await.unwrap_or_else(|| {
                panic!(
                    "closed before {:?}; got {:?}",
                    String::from_utf8_lossy(needle),
                    String::from_utf8_lossy(body)
                )
            });
            match f.kind {
                DATA => {
                    body.extend_from_slice(&data_payload(&f));
                    assert!(
                        !f.has(END_STREAM) || super::find(body, needle).is_some(),
                        "stream ended before {:?}; got {:?}",
                        String::from_utf8_lossy(needle),
                        String::from_utf8_lossy(body)
                    );
                }
                RST_STREAM => panic!("stream {stream} reset: {:#x}", f.error_code()),
                GOAWAY => panic!("GOAWAY {:#x}", f.error_code()),
                _ => {}
            }
        }
        panic!("too many frames");
    }

    /// Frames already read for other streams.
    pub fn stashed(&mut self) -> &mut VecDeque<Frame> {
        &mut self.stash
    }
}

/// A HEADERS payload's field block fragment: padding and priority fields stripped.
fn strip_headers_payload(f: &Frame) -> Vec<u8> {
    let mut p = &f.payload[..];
    let mut pad = 0;
    if f.has(PADDED) {
        pad = p[0] as usize;
        p = &p[1..];
    }
    if f.has(PRIORITY_FLAG) {
        p = &p[5..];
    }
    p[..p.len() - pad].to_vec()
}

/// A DATA payload without its padding.
pub fn data_payload(f: &Frame) -> Vec<u8> {
    if f.has(PADDED) {
        let pad = f.payload[0] as usize;
        f.payload[1..f.payload.len() - pad].to_vec()
    } else {
        f.payload.clone()
    }
}
