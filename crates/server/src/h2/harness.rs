//! The HTTP/2 connection driven by bytes instead of a socket, for the fuzz target
//! (`fuzz/fuzz_targets/h2_connection.rs`) and unit tests: what a client sent goes in, what the
//! server wrote comes out, on a runtime whose clock jumps ahead whenever everything waits, so
//! the connection's idle timer ends every run.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::frame::{HEADER_LEN, Header, PREFACE};
use crate::conn::{Shared, Wire};

/// A client that sends `input` a few bytes at a time, then waits; the server's bytes are kept.
struct Scripted {
    input: Vec<u8>,
    at: usize,
    /// Shared, so what was written survives a run cut short.
    output: Arc<parking_lot::Mutex<Vec<u8>>>,
}

/// Bytes handed over per read: small, so frames and records arrive split.
const READ_STEP: usize = 700;

impl AsyncRead for Scripted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let n = (this.input.len() - this.at)
            .min(READ_STEP)
            .min(buf.remaining());
        if n == 0 {
            return Poll::Pending;
        }
        buf.put_slice(&this.input[this.at..this.at + n]);
        this.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.output.lock().extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Wire for Scripted {
    fn poll_watch(
        &mut self,
        _: &mut Context<'_>,
        pending: &mut Vec<u8>,
        limit: usize,
    ) -> Poll<bool> {
        let n = (self.input.len() - self.at).min(READ_STEP);
        if n == 0 {
            // Silent from now on (never a waker: the paused clock moves the run on).
            return Poll::Pending;
        }
        if pending.len() + n > limit {
            return Poll::Ready(false);
        }
        pending.extend_from_slice(&self.input[self.at..self.at + n]);
        self.at += n;
        Poll::Ready(true)
    }

    fn peer_addr(&self) -> Option<SocketAddr> {
        Some(peer())
    }
}

/// Runs a connection on a hub of its own: the preface, then `input`; returns what the server
/// wrote once it closed the connection or a minute of (paused) time passed. Panics if the
/// server's bytes are not a sequence of whole, well-formed frames.
pub fn run(input: &[u8]) -> Vec<u8> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let key = ssehub_auth::KeyConfig {
            algorithm: ssehub_auth::Algorithm::HS256,
            key: "k".into(),
        };
        let authorizer = ssehub_auth::Authorizer::new(Some(key.clone()), Some(key))
            .expect("an HS256 authorizer");
        let server = crate::MercureServer::new(
            ssehub_hub::Hub::builder().heartbeat(None).build(),
            crate::MercureConfig::new(authorizer),
        );
        let shared = Arc::new(Shared::new(
            server.state().clone(),
            server.router(),
            tokio_util::sync::CancellationToken::new(),
        ));
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(input);
        let output = Arc::default();
        let wire = Scripted {
            input: bytes,
            at: 0,
            output: Arc::clone(&output),
        };
        let drive = super::connection::drive(wire, peer(), shared);
        let _ = tokio::time::timeout(Duration::from_secs(60), drive).await;
        let output = std::mem::take(&mut *output.lock());
        check_frames(&output);
        output
    })
}

fn peer() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000))
}

/// The server's bytes are whole frames, each no larger than the default maximum frame size
/// (no client here raises it... unless its SETTINGS did: then up to what it allowed).
fn check_frames(mut out: &[u8]) {
    while !out.is_empty() {
        assert!(out.len() >= HEADER_LEN, "a cut frame header: {out:?}");
        let header = Header::parse(out[..HEADER_LEN].try_into().expect("9 bytes"));
        assert!(
            out.len() >= HEADER_LEN + header.len,
            "a cut frame: {header:?}"
        );
        out = &out[HEADER_LEN + header.len..];
    }
}

/// The frames in what the server wrote: (type, flags, stream, payload).
pub fn frames(mut out: &[u8]) -> Vec<(u8, u8, u32, Vec<u8>)> {
    let mut frames = Vec::new();
    while out.len() >= HEADER_LEN {
        let h = Header::parse(out[..HEADER_LEN].try_into().expect("9 bytes"));
        let end = (HEADER_LEN + h.len).min(out.len());
        frames.push((h.kind, h.flags, h.stream, out[HEADER_LEN..end].to_vec()));
        out = &out[end..];
    }
    frames
}

#[cfg(test)]
mod tests {
    use super::super::frame::{flag, kind};
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        super::super::frame::put_header(&mut out, payload.len(), kind, flags, stream);
        out.extend_from_slice(payload);
        out
    }

    /// A request head of literal fields.
    fn head(fields: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (name, value) in fields {
            out.push(0);
            out.push(name.len() as u8);
            out.extend_from_slice(name.as_bytes());
            out.push(value.len() as u8);
            out.extend_from_slice(value.as_bytes());
        }
        out
    }

    fn get(path: &str) -> Vec<u8> {
        head(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", "x"),
            (":path", path),
        ])
    }

    #[test]
    fn a_request_is_answered_by_the_router_then_the_idle_connection_says_goaway() {
        let mut input = frame(kind::SETTINGS, 0, 0, &[]);
        input.extend(frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &get("/healthz"),
        ));
        let frames = frames(&run(&input));
        let kinds: Vec<(u8, u32)> = frames.iter().map(|f| (f.0, f.2)).collect();
        assert_eq!(
            kinds,
            [
                (kind::SETTINGS, 0),
                (kind::SETTINGS, 0),
                (kind::HEADERS, 1),
                (kind::DATA, 1),
                (kind::DATA, 1),
                (kind::GOAWAY, 0),
            ],
            "{frames:?}"
        );
        assert_eq!(frames[1].1, flag::ACK);
        assert_eq!(frames[3].3, b"ok\n");
        assert_eq!(frames[4].1, flag::END_STREAM);
        let decoded = loona_hpack::Decoder::new().decode(&frames[2].3).unwrap();
        assert_eq!(decoded[0], (b":status".to_vec(), b"200".to_vec()));
        // GOAWAY: last stream 1, NO_ERROR, "idle".
        assert_eq!(&frames[5].3[..8], &[0, 0, 0, 1, 0, 0, 0, 0]);
        assert_eq!(&frames[5].3[8..], b"idle");
    }

    #[test]
    fn a_subscribe_stream_is_served_from_the_hub_within_the_client_window() {
        // A 10-byte stream window: the preamble comes 10 bytes at a time as the window opens.
        let mut input = frame(kind::SETTINGS, 0, 0, &[0, 4, 0, 0, 0, 10]);
        input.extend(frame(
            kind::HEADERS,
            flag::END_HEADERS | flag::END_STREAM,
            1,
            &get("/.well-known/mercure?topic=a"),
        ));
        let first = frames(&run(&input));
        let data: Vec<&Vec<u8>> = first
            .iter()
            .filter(|f| f.0 == kind::DATA && f.2 == 1)
            .map(|f| &f.3)
            .collect();
        assert_eq!(data.len(), 1, "{first:?}");
        assert_eq!(data[0].len(), 10);
        input.extend(frame(kind::WINDOW_UPDATE, 0, 1, &1000u32.to_be_bytes()));
        let second = frames(&run(&input));
        let sent: usize = second
            .iter()
            .filter(|f| f.0 == kind::DATA && f.2 == 1)
            .map(|f| f.3.len())
            .sum();
        assert!(sent > 10 && sent <= 1010, "{sent}");
    }

    #[test]
    fn protocol_errors_end_the_connection_with_their_code() {
        let cases: [(Vec<u8>, u32); 5] = [
            // The first frame must be SETTINGS.
            (frame(kind::PING, 0, 0, &[0; 8]), 0x1),
            (
                [
                    frame(kind::SETTINGS, 0, 0, &[]),
                    frame(kind::PING, 0, 0, &[0; 7]),
                ]
                .concat(),
                0x6,
            ),
            (
                [
                    frame(kind::SETTINGS, 0, 0, &[]),
                    frame(kind::HEADERS, flag::END_HEADERS, 2, &get("/")),
                ]
                .concat(),
                0x1,
            ),
            (
                [
                    frame(kind::SETTINGS, 0, 0, &[]),
                    frame(kind::HEADERS, flag::END_HEADERS, 1, &[0x80]),
                ]
                .concat(),
                0x9,
            ),
            (
                [
                    frame(kind::SETTINGS, 0, 0, &[]),
                    frame(kind::WINDOW_UPDATE, 0, 0, &[0; 4]),
                ]
                .concat(),
                0x1,
            ),
        ];
        for (input, code) in cases {
            let frames = frames(&run(&input));
            let goaway = frames
                .iter()
                .find(|f| f.0 == kind::GOAWAY)
                .expect("a GOAWAY");
            assert_eq!(
                u32::from_be_bytes(goaway.3[4..8].try_into().unwrap()),
                code,
                "{frames:?}"
            );
        }
    }
}
