//! HTTP/2 over TLS without hyper: one task per connection that speaks the frames itself, serves
//! plain SSE subscribes straight from the hub's streams, and hands every other request to the
//! router as hyper would (method, URI, fields, a streamed body, `ConnectInfo`).
//!
//! Why: under hyper an idle HTTP/2 connection with one subscribe cost ~45 KiB (h2's 16 KiB write
//! buffer, tokio-util's 8 KiB read buffer and a 4 KiB HPACK buffer, allocated when a connection
//! starts, plus a task, a slab entry and a boxed body per stream: docs/tls-memory.md). Here a
//! connection keeps its buffers only while they hold bytes (like `TlsWire` below it), encodes
//! responses with no dynamic table, asks the client for none after its first requests, and a
//! subscribe stream is the hub's stream, an id and two window counters.
//!
//! What it speaks (RFC 9113): the preface and SETTINGS, PING, GOAWAY (on errors, when idle for a
//! head timeout, when the server shuts down), RST_STREAM both ways, flow control both ways
//! (responses never exceed the client's windows; request bodies are credited as the handler
//! reads them), CONTINUATION, padding and priorities (read and ignored). Not offered: server push
//! and extended CONNECT (WebSockets over HTTP/2; browsers then open an HTTP/1.1 connection for a
//! WebSocket). Cleartext HTTP/2 (prior knowledge, for proxies) stays with hyper on plain
//! listeners, and `MercureConfig::fast_subscribe = false` sends HTTP/2 back to hyper as well.
//!
//! Abuse has limits: 100 concurrent streams, request heads within `max_head`, a header block
//! within `max_head` plus one frame, a bounded write queue (a client that sends control frames
//! without reading the answers is cut off), and streams reset before their answer counted
//! (the "rapid reset" pattern ends the connection with ENHANCE_YOUR_CALM).

mod body;
mod connection;
mod fields;
mod frame;
#[cfg(any(test, feature = "fuzzing"))]
pub mod harness;
mod out;
mod stream;

pub(crate) use connection::serve;
