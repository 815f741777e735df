//! HTTP/2 wire conformance (RFC 9113) of the hub over real TCP and TLS (ALPN `h2`), black
//! box: raw frames written and read by `common::h2`, no HTTP/2 client library. Each test
//! names the behaviour and the RFC section it checks; where the RFC leaves a choice (a
//! stream error or a connection error, a `400` or a reset), every legal choice is accepted.
//!
//! Written for the hub's own HTTP/2 layer. On the hyper (h2 crate) layer it replaces, 14
//! fail, on purpose: h2 answers malformed PING, SETTINGS, RST_STREAM, WINDOW_UPDATE and
//! PRIORITY frames, INITIAL_WINDOW_SIZE over 2^31-1 and HPACK decoding errors with
//! PROTOCOL_ERROR (the RFC requires FRAME_SIZE_ERROR, FLOW_CONTROL_ERROR, COMPRESSION_ERROR),
//! DATA on a half-closed stream with GOAWAY PROTOCOL_ERROR (STREAM_CLOSED), an uppercase
//! field name with a connection error (a stream error); and hyper-util's `auto` builder
//! serves HTTP/1.1 on a connection that negotiated ALPN `h2` (an invalid preface).

mod common;

use std::time::{Duration, Instant};

use common::h2::*;
use common::tls::{Cert, cert, client, https, publish_to, start_tls, subscribers};
use common::{TestHub, start_with};
use ssehub_hub::Hub;

async fn hub() -> (TestHub, Cert) {
    let cert = cert();
    let hub = start_tls(&cert, |_| {}).await;
    (hub, cert)
}

const SUBSCRIBE: &str = "/.well-known/mercure?topic=x";

/// A subscribe on `stream` of `conn`, its response head checked.
async fn subscribe(conn: &mut H2Conn, stream: u32, path: &str) -> Frame {
    conn.request(stream, "GET", path, &[], true).await;
    let head = conn.response_head(stream).await;
    assert_eq!(head.status(), Some(200));
    assert_eq!(head.header("content-type"), Some("text/event-stream"));
    assert!(!head.has(END_STREAM));
    head
}

/// `GET /healthz` on `stream`: 200 `ok\n`.
async fn healthz(conn: &mut H2Conn, stream: u32) {
    conn.request(stream, "GET", "/healthz", &[], true).await;
    let response = conn.response(stream).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.body, b"ok\n");
}

/// A new connection still serves `GET /healthz`.
async fn fresh_connection_works(hub: &TestHub, cert: &Cert) {
    let mut conn = H2Conn::open(hub, cert).await;
    healthz(&mut conn, 1).await;
}

// --- 1. Connection preface (RFC 9113 §3.4) -------------------------------------------------

/// §3.4: the server's preface is a SETTINGS frame (its first frame); our SETTINGS is ACKed
/// (§6.5.3). §6.5.2: the values it advertises are in range, and a server does not enable push.
#[tokio::test]
async fn the_server_preface_is_settings_and_ours_is_acked() {
    let (hub, cert) = hub().await;
    // `open` asserts the first frame is a non-ACK SETTINGS and waits for the ACK of ours.
    let conn = H2Conn::open(&hub, &cert).await;
    eprintln!(
        "server SETTINGS {:?}, connection WINDOW_UPDATE {}",
        conn.server_settings, conn.conn_window_updates
    );
    for (id, value) in &conn.server_settings {
        match *id {
            ENABLE_PUSH => assert_eq!(*value, 0, "a server MUST NOT set ENABLE_PUSH to 1"),
            INITIAL_WINDOW_SIZE => assert!(*value <= 0x7fff_ffff),
            MAX_FRAME_SIZE => assert!((16_384..=16_777_215).contains(value)),
            _ => {}
        }
    }
}

/// What a server may send before closing on an invalid preface: HTTP/2 frames, SETTINGS (its
/// own preface) or GOAWAY PROTOCOL_ERROR, never an HTTP/1.1 response.
fn only_preface_or_goaway(bytes: &[u8]) {
    assert!(
        !bytes.starts_with(b"HTTP/"),
        "answered with HTTP/1 on an h2 connection: {:?}",
        String::from_utf8_lossy(bytes)
    );
    let mut rest = bytes;
    while rest.len() >= 9 {
        let len = u32::from_be_bytes([0, rest[0], rest[1], rest[2]]) as usize;
        let kind = rest[3];
        assert!(
            kind == SETTINGS || kind == GOAWAY,
            "frame type {kind:#x} after an invalid preface"
        );
        if kind == GOAWAY && rest.len() >= 17 {
            let code = u32::from_be_bytes(rest[13..17].try_into().unwrap());
            assert_eq!(code, PROTOCOL_ERROR, "GOAWAY code after an invalid preface");
        }
        rest = &rest[(9 + len).min(rest.len())..];
    }
}

/// §3.4: an invalid preface (here an HTTP/1.1 request after ALPN `h2`) is a connection error
/// of type PROTOCOL_ERROR: the connection closes (its GOAWAY may be omitted).
#[tokio::test]
async fn an_http1_request_instead_of_the_preface_closes_the_connection() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::connect(&hub, &cert).await;
    conn.send_raw(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let bytes = conn.bytes_until_closed().await;
    only_preface_or_goaway(&bytes);
}

/// §3.4: garbage instead of the preface closes the connection.
#[tokio::test]
async fn garbage_instead_of_the_preface_closes_the_connection() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::connect(&hub, &cert).await;
    conn.send_raw(&[0xAB; 64]).await;
    let bytes = conn.bytes_until_closed().await;
    only_preface_or_goaway(&bytes);
}

// --- 2. PING (§6.7) --------------------------------------------------------------------------

/// §6.7: a PING is answered by a PING with ACK and the same payload.
#[tokio::test]
async fn ping_is_acked_with_the_same_payload() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let data = *b"\x01\x02wire\xfe\xff";
    conn.send_ping(data).await;
    let f = conn.next_frame().await.expect("closed");
    assert_eq!((f.kind, f.flags, f.stream), (PING, ACK, 0), "{f:?}");
    assert_eq!(f.payload, data);
}

/// §6.7: a PING whose length is not 8 is a connection error FRAME_SIZE_ERROR.
#[tokio::test]
async fn ping_of_the_wrong_length_is_frame_size_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_frame(PING, 0, 0, &[0; 7]).await;
    conn.expect_goaway(&[FRAME_SIZE_ERROR]).await;
}

/// §6.7: a PING on a stream other than 0 is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn ping_on_a_stream_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_frame(PING, 0, 1, &[0; 8]).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

// --- 3. SETTINGS (§6.5) ----------------------------------------------------------------------

/// §6.5: a SETTINGS length not a multiple of 6 is a connection error FRAME_SIZE_ERROR.
#[tokio::test]
async fn settings_of_a_length_not_a_multiple_of_6_is_frame_size_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_frame(SETTINGS, 0, 0, &[0, 3, 0, 0, 0]).await;
    conn.expect_goaway(&[FRAME_SIZE_ERROR]).await;
}

/// §6.5.2: ENABLE_PUSH other than 0 or 1 is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn settings_enable_push_2_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_settings(&[(ENABLE_PUSH, 2)]).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §6.5.2: INITIAL_WINDOW_SIZE above 2^31-1 is a connection error FLOW_CONTROL_ERROR.
#[tokio::test]
async fn settings_initial_window_size_2_pow_31_is_flow_control_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_settings(&[(INITIAL_WINDOW_SIZE, 1 << 31)]).await;
    conn.expect_goaway(&[FLOW_CONTROL_ERROR]).await;
}

/// §6.5.2: MAX_FRAME_SIZE below 2^14 is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn settings_max_frame_size_below_16384_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_settings(&[(MAX_FRAME_SIZE, 16_383)]).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §6.5.2: MAX_FRAME_SIZE above 2^24-1 is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn settings_max_frame_size_above_2_pow_24_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_settings(&[(MAX_FRAME_SIZE, 1 << 24)]).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §6.5: a SETTINGS ACK with a payload is a connection error FRAME_SIZE_ERROR.
#[tokio::test]
async fn settings_ack_with_a_payload_is_frame_size_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_frame(SETTINGS, ACK, 0, &settings_payload(&[(ENABLE_PUSH, 0)]))
        .await;
    conn.expect_goaway(&[FRAME_SIZE_ERROR]).await;
}

/// §6.5: SETTINGS on a stream other than 0 is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn settings_on_a_stream_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_frame(SETTINGS, 0, 1, &[]).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §6.5.2: an unknown setting is ignored: the SETTINGS is ACKed, the connection serves on.
#[tokio::test]
async fn unknown_settings_are_ignored_and_acked() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_settings(&[(0x99, 7), (0xfff0, u32::MAX)]).await;
    let mut acked = false;
    for _ in 0..8 {
        let f = conn.read_frame().await.expect("closed");
        assert_ne!(f.kind, GOAWAY, "{f:?}");
        if f.kind == SETTINGS && f.has(ACK) {
            assert!(f.payload.is_empty());
            acked = true;
            break;
        }
    }
    assert!(acked, "the SETTINGS with unknown ids was not ACKed");
    healthz(&mut conn, 1).await;
}

// --- 4. Unknown frame types (§4.1, §5.5) -----------------------------------------------------

/// §5.5: frames of an unknown type are ignored, on stream 0 and on an open stream.
#[tokio::test]
async fn unknown_frame_types_are_ignored() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_frame(0xFA, 0xFF, 0, b"whatever").await;
    conn.ping_ok().await;
    // An open stream (the request not ended yet): an unknown frame on it, then its end.
    conn.request(1, "GET", "/healthz", &[], false).await;
    conn.send_frame(0xFA, 0, 1, b"on a stream").await;
    conn.ping_ok().await;
    conn.send_data(1, b"", true).await;
    let response = conn.response(1).await;
    assert_eq!((response.status, &response.body[..]), (200, &b"ok\n"[..]));
}

// --- 5. Stream identifiers and header blocks (§5.1, §5.1.1, §6.2, §6.10) --------------------

/// §6.2: HEADERS on stream 0 is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn headers_on_stream_0_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.request(0, "GET", "/healthz", &[], true).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §5.1.1: a client opening an even-numbered stream is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn an_even_client_stream_id_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.request(2, "GET", "/healthz", &[], true).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §5.1.1: a new stream id lower than one already used is a connection error
/// PROTOCOL_ERROR (that stream was closed implicitly, so STREAM_CLOSED, §5.1, is legal too).
#[tokio::test]
async fn a_stream_id_lower_than_a_used_one_is_a_connection_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    healthz(&mut conn, 5).await;
    conn.request(3, "GET", "/healthz", &[], true).await;
    let goaway = conn.expect_goaway(&[PROTOCOL_ERROR, STREAM_CLOSED]).await;
    eprintln!("lower stream id: GOAWAY {:#x}", goaway.error_code());
}

/// §6.10: CONTINUATION not preceded by HEADERS without END_HEADERS is a connection error
/// PROTOCOL_ERROR.
#[tokio::test]
async fn continuation_without_headers_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let block = request_block("GET", "/healthz", &[]);
    conn.send_frame(CONTINUATION, END_HEADERS, 1, &block).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §6.10 (and §4.3): a header block must continue with CONTINUATION frames on its stream;
/// any other frame meanwhile is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn a_frame_inside_a_header_block_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let block = request_block("GET", "/healthz", &[]);
    conn.send_frame(HEADERS, END_STREAM, 1, &block[..5]).await;
    conn.send_ping(*b"inblock!").await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §6.10: a header block split over HEADERS and two CONTINUATION frames is one request.
#[tokio::test]
async fn a_header_block_split_over_continuations_is_accepted() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let block = request_block("GET", "/healthz", &[("x-padding", "some value")]);
    let (a, rest) = block.split_at(7);
    let (b, c) = rest.split_at(rest.len() / 2);
    conn.queue_frame(HEADERS, END_STREAM, 1, a);
    conn.queue_frame(CONTINUATION, 0, 1, b);
    conn.queue_frame(CONTINUATION, END_HEADERS, 1, c);
    conn.flush().await;
    let response = conn.response(1).await;
    assert_eq!((response.status, &response.body[..]), (200, &b"ok\n"[..]));
}

// --- 6. Requests (§8.1) ----------------------------------------------------------------------

/// §8.1: a GET is answered with HEADERS (:status 200) and DATA ending the stream.
#[tokio::test]
async fn get_healthz_is_200_with_a_body() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    healthz(&mut conn, 1).await;
    // And again on the next stream of the same connection.
    healthz(&mut conn, 3).await;
}

#[tokio::test]
async fn get_of_an_unknown_path_is_404() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.request(1, "GET", "/no/such/path", &[], true).await;
    assert_eq!(conn.response(1).await.status, 404);
}

/// A subscribe and a publish on one connection, the publish body in DATA frames of
/// `chunk` bytes: the publish is answered with the update's id, the subscriber gets it.
async fn subscribe_then_publish_on_one_connection(chunk: usize) {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    subscribe(&mut conn, 1, SUBSCRIBE).await;
    subscribers(&hub, 1).await;

    let bearer = format!("Bearer {}", common::publisher());
    let extra = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("authorization", bearer.as_str()),
    ];
    conn.request(3, "POST", "/.well-known/mercure", &extra, false)
        .await;
    let body = b"topic=x&data=hello";
    let chunks: Vec<&[u8]> = if chunk == 0 {
        vec![&body[..5], &body[5..11], &body[11..]]
    } else {
        body.chunks(chunk).collect()
    };
    let last = chunks.len() - 1;
    for (i, c) in chunks.into_iter().enumerate() {
        conn.send_data(3, c, i == last).await;
    }
    let response = conn.response(3).await;
    assert_eq!(
        response.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    let id = String::from_utf8(response.body).unwrap();
    assert!(
        !id.is_empty() && !id.contains('\n'),
        "the update's id: {id:?}"
    );

    let mut sse = Vec::new();
    conn.read_body_until(1, &mut sse, b"data: hello\n").await;
    let text = String::from_utf8(sse).unwrap();
    assert!(text.contains(&format!("id: {id}\n")), "{text}");
}

/// §8.1: a subscribe (`text/event-stream`) and a publish whose body comes in 3 DATA frames
/// share one connection.
#[tokio::test]
async fn subscribe_and_publish_in_three_data_frames_on_one_connection() {
    subscribe_then_publish_on_one_connection(0).await;
}

/// The same with a DATA frame per byte of the body.
#[tokio::test]
async fn subscribe_and_publish_in_one_byte_data_frames_on_one_connection() {
    subscribe_then_publish_on_one_connection(1).await;
}

/// §5: streams are independent: subscribes on two topics on one connection each get their
/// own updates, interleaved with a request on a third stream.
#[tokio::test]
async fn subscribe_streams_on_one_connection_get_their_own_events() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    subscribe(&mut conn, 1, "/.well-known/mercure?topic=a").await;
    subscribe(&mut conn, 3, "/.well-known/mercure?topic=b").await;
    subscribers(&hub, 2).await;
    let publisher = client(&cert, false);
    let url = https(&hub, "/.well-known/mercure");
    publish_to(&publisher, url.clone(), "b", "for b").await;
    healthz(&mut conn, 5).await;
    publish_to(&publisher, url, "a", "for a").await;
    let mut a = Vec::new();
    conn.read_body_until(1, &mut a, b"data: for a\n").await;
    let mut b = Vec::new();
    conn.read_body_until(3, &mut b, b"data: for b\n").await;
    assert!(common::find(&a, b"for b").is_none());
    assert!(common::find(&b, b"for a").is_none());
}

// --- 7. Malformed requests (§8.1.1, §8.2, §8.3) ----------------------------------------------

/// §8.1.1: a malformed request is a stream error PROTOCOL_ERROR (the server MAY answer it
/// with a 4xx first), never a connection error: the connection then serves on.
async fn malformed_is_refused_on_its_stream(block: Vec<u8>) {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_headers(1, &block, true).await;
    let refusal = conn.expect_refusal(1).await;
    eprintln!("malformed request: {refusal:?}");
    match refusal {
        Refusal::Reset(PROTOCOL_ERROR) | Refusal::Status(400) => {}
        other => panic!("a malformed request must be RST_STREAM PROTOCOL_ERROR or 400: {other:?}"),
    }
    conn.ping_ok().await;
    healthz(&mut conn, 3).await;
}

/// §8.2: field names must be lowercase in HTTP/2.
#[tokio::test]
async fn an_uppercase_header_name_is_a_stream_error() {
    malformed_is_refused_on_its_stream(request_block("GET", "/healthz", &[("X-Upper", "1")])).await;
}

/// §8.2.2: connection-specific fields (`connection`) make a request malformed.
#[tokio::test]
async fn a_connection_header_is_a_stream_error() {
    malformed_is_refused_on_its_stream(request_block(
        "GET",
        "/healthz",
        &[("connection", "keep-alive")],
    ))
    .await;
}

/// §8.2.2: `te` may only be `trailers`.
#[tokio::test]
async fn te_other_than_trailers_is_a_stream_error() {
    malformed_is_refused_on_its_stream(request_block("GET", "/healthz", &[("te", "gzip")])).await;
}

/// §8.3.1: a request without `:path` is malformed.
#[tokio::test]
async fn a_request_without_path_is_a_stream_error() {
    malformed_is_refused_on_its_stream(hpack_encode(&[
        (":method", "GET"),
        (":scheme", "https"),
        (":authority", "127.0.0.1"),
    ]))
    .await;
}

/// §8.3.1: a request without `:method` is malformed.
#[tokio::test]
async fn a_request_without_method_is_a_stream_error() {
    malformed_is_refused_on_its_stream(hpack_encode(&[
        (":scheme", "https"),
        (":path", "/healthz"),
        (":authority", "127.0.0.1"),
    ]))
    .await;
}

/// §8.3: pseudo-header fields must precede regular ones.
#[tokio::test]
async fn a_pseudo_header_after_a_regular_one_is_a_stream_error() {
    malformed_is_refused_on_its_stream(hpack_encode(&[
        (":method", "GET"),
        (":scheme", "https"),
        ("x-regular", "1"),
        (":path", "/healthz"),
        (":authority", "127.0.0.1"),
    ]))
    .await;
}

// --- 8. Flow control (§6.9) ------------------------------------------------------------------

/// §6.9: a WINDOW_UPDATE of 0 on the connection is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn window_update_of_0_on_the_connection_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_window_update(0, 0).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §6.9: a WINDOW_UPDATE of 0 on a stream is a stream error PROTOCOL_ERROR (§5.4.1 lets an
/// endpoint treat it as a connection error).
#[tokio::test]
async fn window_update_of_0_on_a_stream_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    subscribe(&mut conn, 1, SUBSCRIBE).await;
    conn.send_window_update(1, 0).await;
    let refusal = conn.expect_refusal(1).await;
    eprintln!("stream 1: {refusal:?}");
    match refusal {
        Refusal::Reset(PROTOCOL_ERROR) => conn.ping_ok().await,
        Refusal::GoAway(PROTOCOL_ERROR) => conn.expect_closed().await,
        other => panic!("{other:?}"),
    }
}

/// §6.9.1: a WINDOW_UPDATE taking the connection's send window past 2^31-1 is a connection
/// error FLOW_CONTROL_ERROR.
#[tokio::test]
async fn window_update_overflowing_the_connection_window_is_flow_control_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    // The window is 65,535 (§6.9.2): one maximal increment overflows it.
    conn.send_window_update(0, 0x7fff_ffff).await;
    conn.expect_goaway(&[FLOW_CONTROL_ERROR]).await;
}

/// §6.9.1: a WINDOW_UPDATE taking a stream's send window past 2^31-1 is a stream error
/// FLOW_CONTROL_ERROR (or, §5.4.1, a connection error).
#[tokio::test]
async fn window_update_overflowing_a_stream_window_is_flow_control_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    subscribe(&mut conn, 1, SUBSCRIBE).await;
    conn.send_window_update(1, 0x7fff_ffff).await;
    let refusal = conn.expect_refusal(1).await;
    eprintln!("stream 1: {refusal:?}");
    match refusal {
        Refusal::Reset(FLOW_CONTROL_ERROR) => conn.ping_ok().await,
        Refusal::GoAway(FLOW_CONTROL_ERROR) => conn.expect_closed().await,
        other => panic!("{other:?}"),
    }
}

/// §6.9.1: DATA beyond the window the server advertised. "A receiver MAY respond with a
/// stream error or connection error of type FLOW_CONTROL_ERROR": both are accepted, and so
/// is taking the data (the RFC does not require the error); any other outcome (another error
/// code, a hang, a close without GOAWAY) fails. The report says which one the server chose.
#[tokio::test]
async fn data_beyond_the_advertised_window_is_flow_control_error_or_tolerated() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    // The server's connection WINDOW_UPDATE, if any, may follow its SETTINGS ACK: a PING
    // round trip reads it.
    conn.ping_ok().await;
    let stream_window = i64::from(
        conn.server_setting(INITIAL_WINDOW_SIZE)
            .unwrap_or(DEFAULT_WINDOW as u32),
    );
    let conn_window = DEFAULT_WINDOW + conn.conn_window_updates;
    let window = stream_window.min(conn_window);
    // A subscribe whose request body stays open: the server has no use for it.
    conn.request(1, "GET", SUBSCRIBE, &[], false).await;
    let head = conn.response_head(1).await;
    assert_eq!(head.status(), Some(200));
    let chunk = vec![b'z'; 16_384];
    let mut sent = 0i64;
    let mut write_failed = false;
    while sent <= window {
        let n = 16_384.min((window + 1 - sent) as usize);
        if conn.try_send_frame(DATA, 0, 1, &chunk[..n]).await.is_err() {
            write_failed = true;
            break;
        }
        sent += n as i64;
    }
    let ping = *b"afterwin";
    let _ = conn.try_send_frame(PING, 0, 0, &ping).await;
    for _ in 0..10_000 {
        let f = conn
            .next_frame()
            .await
            .expect("closed without a GOAWAY after DATA beyond the window");
        match f.kind {
            GOAWAY => {
                assert_eq!(f.error_code(), FLOW_CONTROL_ERROR, "GOAWAY code");
                eprintln!("DATA beyond the window: GOAWAY FLOW_CONTROL_ERROR");
                conn.expect_closed().await;
                return;
            }
            RST_STREAM if f.stream == 1 => {
                assert_eq!(f.error_code(), FLOW_CONTROL_ERROR, "RST_STREAM code");
                eprintln!("DATA beyond the window: RST_STREAM FLOW_CONTROL_ERROR");
                conn.ping_ok().await;
                return;
            }
            PING if f.has(ACK) && f.payload == ping => {
                assert!(!write_failed);
                eprintln!("DATA beyond the window ({sent} > {window} bytes): tolerated");
                return;
            }
            _ => {}
        }
    }
    panic!("no outcome");
}

/// DATA on stream 1 read for a while (no WINDOW_UPDATE sent): each frame checked against
/// the windows left, which are updated; the payload appended to `body`. Stops when `body`
/// holds `needle`, or when nothing comes for `quiet`.
async fn read_within_windows(
    conn: &mut H2Conn,
    body: &mut Vec<u8>,
    stream_window: &mut i64,
    conn_window: &mut i64,
    needle: &[u8],
    quiet: Duration,
) {
    for _ in 0..10_000 {
        if common::find(body, needle).is_some() {
            return;
        }
        let Ok(f) = conn.next_frame_within(quiet).await else {
            return;
        };
        let f = f.expect("closed");
        match f.kind {
            DATA if f.stream == 1 => {
                let len = f.payload.len() as i64;
                assert!(
                    len <= 16_384,
                    "a DATA frame of {len} bytes, over our MAX_FRAME_SIZE (16,384)"
                );
                assert!(
                    len <= *stream_window,
                    "a DATA frame of {len} bytes with a stream window of {stream_window}"
                );
                assert!(
                    len <= *conn_window,
                    "a DATA frame of {len} bytes with a connection window of {conn_window}"
                );
                *stream_window -= len;
                *conn_window -= len;
                body.extend_from_slice(&data_payload(&f));
                assert!(!f.has(END_STREAM), "the subscribe stream ended");
            }
            GOAWAY | RST_STREAM => panic!("{f:?}"),
            _ => {}
        }
    }
    panic!("too many frames");
}

/// §6.9.1, §6.9.2: the server sends no more DATA than our stream window allows
/// (INITIAL_WINDOW_SIZE 10), and resumes as WINDOW_UPDATEs open it: the event arrives whole.
#[tokio::test]
async fn the_server_respects_a_10_byte_stream_window() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open_with(&hub, &cert, &[(INITIAL_WINDOW_SIZE, 10)]).await;
    conn.auto_window = false;
    subscribe(&mut conn, 1, SUBSCRIBE).await;
    subscribers(&hub, 1).await;
    let data = "y".repeat(200);
    publish_to(
        &client(&cert, false),
        https(&hub, "/.well-known/mercure"),
        "x",
        &data,
    )
    .await;
    let needle = format!("data: {data}\n\n");
    let mut body = Vec::new();
    let mut stream_window = 10i64;
    let mut conn_window = DEFAULT_WINDOW;
    read_within_windows(
        &mut conn,
        &mut body,
        &mut stream_window,
        &mut conn_window,
        needle.as_bytes(),
        Duration::from_millis(500),
    )
    .await;
    assert!(body.len() <= 10, "{} bytes with a window of 10", body.len());
    assert!(common::find(&body, needle.as_bytes()).is_none());
    // Open it 7 bytes at a time.
    for _ in 0..200 {
        if common::find(&body, needle.as_bytes()).is_some() {
            break;
        }
        conn.send_window_update(1, 7).await;
        stream_window += 7;
        read_within_windows(
            &mut conn,
            &mut body,
            &mut stream_window,
            &mut conn_window,
            needle.as_bytes(),
            Duration::from_millis(300),
        )
        .await;
    }
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(&needle), "{text}");
}

/// §4.2, §6.9.1: a response larger than 16 KiB (an event of 40,000 bytes) comes in DATA
/// frames each within our MAX_FRAME_SIZE (16,384, the default) and within both windows,
/// the stream window (5,000) being opened by 30,000 at a time, more than a frame.
#[tokio::test]
async fn a_large_response_respects_max_frame_size_and_the_windows() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open_with(&hub, &cert, &[(INITIAL_WINDOW_SIZE, 5_000)]).await;
    conn.auto_window = false;
    subscribe(&mut conn, 1, SUBSCRIBE).await;
    subscribers(&hub, 1).await;
    let data = "L".repeat(40_000);
    publish_to(
        &client(&cert, false),
        https(&hub, "/.well-known/mercure"),
        "x",
        &data,
    )
    .await;
    let needle = format!("data: {data}\n\n");
    let mut body = Vec::new();
    let mut stream_window = 5_000i64;
    let mut conn_window = DEFAULT_WINDOW;
    for round in 0..20 {
        read_within_windows(
            &mut conn,
            &mut body,
            &mut stream_window,
            &mut conn_window,
            needle.as_bytes(),
            Duration::from_millis(300),
        )
        .await;
        if common::find(&body, needle.as_bytes()).is_some() {
            break;
        }
        if round == 0 {
            assert!(
                body.len() <= 5_000,
                "{} bytes in a window of 5,000",
                body.len()
            );
        }
        conn.send_window_update(1, 30_000).await;
        stream_window += 30_000;
        conn.send_window_update(0, 30_000).await;
        conn_window += 30_000;
    }
    let text = String::from_utf8(body).unwrap();
    assert!(text.contains(&needle), "the event did not arrive whole");
}

// --- 9. RST_STREAM from the client (§6.4) ----------------------------------------------------

/// §6.4, §5.1: after our RST_STREAM the stream is closed: the subscriber is gone, no DATA
/// for later updates comes on it, and the connection serves on.
#[tokio::test]
async fn a_reset_subscribe_stream_unsubscribes_and_gets_no_more_data() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    subscribe(&mut conn, 1, SUBSCRIBE).await;
    subscribers(&hub, 1).await;
    conn.send_rst(1, CANCEL).await;
    subscribers(&hub, 0).await;
    publish_to(
        &client(&cert, false),
        https(&hub, "/.well-known/mercure"),
        "x",
        "after the reset",
    )
    .await;
    let started = Instant::now();
    while let Some(left) = Duration::from_millis(500).checked_sub(started.elapsed()) {
        match conn.next_frame_within(left).await {
            Err(()) => break,
            Ok(None) => panic!("closed"),
            Ok(Some(f)) => assert!(
                !(f.kind == DATA && f.stream == 1 && common::find(&f.payload, b"after").is_some()),
                "DATA on a reset stream: {f:?}"
            ),
        }
    }
    conn.ping_ok().await;
    healthz(&mut conn, 3).await;
}

// --- 10. Frames on idle and half-closed streams (§5.1) ---------------------------------------

/// §5.1 idle: DATA on a stream never opened is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn data_on_an_idle_stream_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_data(1, b"hello", false).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §5.1 half-closed (remote): DATA after the request's END_STREAM is a stream error
/// STREAM_CLOSED (or, §5.4.1, a connection error).
#[tokio::test]
async fn data_after_end_stream_is_stream_closed() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    // A subscribe: the server's side stays open, so the stream is half-closed (remote).
    subscribe(&mut conn, 1, SUBSCRIBE).await;
    conn.send_data(1, b"late", false).await;
    let refusal = conn.expect_refusal(1).await;
    eprintln!("stream 1: {refusal:?}");
    match refusal {
        Refusal::Reset(STREAM_CLOSED) => conn.ping_ok().await,
        Refusal::GoAway(STREAM_CLOSED) => conn.expect_closed().await,
        other => panic!("{other:?}"),
    }
}

// --- 11. SETTINGS_MAX_CONCURRENT_STREAMS (§5.1.2) --------------------------------------------

/// §5.1.2: the hub advertises a concurrent stream limit (the RFC lets a server omit it; the
/// hub must not, or one connection could hold any number of subscribers), and a stream over
/// it is refused: a stream error PROTOCOL_ERROR or REFUSED_STREAM (a connection error
/// PROTOCOL_ERROR is legal too, §5.4.1); the streams within the limit are unaffected.
#[tokio::test]
async fn streams_over_max_concurrent_streams_are_refused() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let limit = conn
        .server_setting(MAX_CONCURRENT_STREAMS)
        .expect("the server advertises SETTINGS_MAX_CONCURRENT_STREAMS");
    assert!(
        (1..=1000).contains(&limit),
        "MAX_CONCURRENT_STREAMS {limit}: a sane limit is at most 1000"
    );
    for i in 0..limit {
        conn.request(1 + 2 * i, "GET", SUBSCRIBE, &[], true).await;
    }
    for i in 0..limit {
        let head = conn.response_head(1 + 2 * i).await;
        assert_eq!(head.status(), Some(200));
    }
    subscribers(&hub, limit as usize).await;
    let extra = 1 + 2 * limit;
    conn.request(extra, "GET", SUBSCRIBE, &[], true).await;
    let refusal = conn.expect_refusal(extra).await;
    eprintln!("stream {extra} over the limit: {refusal:?}");
    match refusal {
        Refusal::Reset(REFUSED_STREAM | PROTOCOL_ERROR) => {
            conn.ping_ok().await;
            assert_eq!(hub.hub.subscriber_count(), limit as usize);
        }
        Refusal::GoAway(PROTOCOL_ERROR) => conn.expect_closed().await,
        other => panic!("stream over the limit: {other:?}"),
    }
}

// --- 12. Idle connections (the hub's head timeout) -------------------------------------------

/// A connection without streams for longer than the head timeout gets a GOAWAY NO_ERROR
/// (§6.8, a graceful close) and is closed.
#[tokio::test]
async fn an_idle_connection_gets_goaway_and_is_closed() {
    let cert = cert();
    let hub = start_tls(&cert, |c| c.head_timeout = Duration::from_millis(300)).await;
    // Before the connection exists: the server's clock cannot start earlier.
    let started = Instant::now();
    let mut conn = H2Conn::open(&hub, &cert).await;
    let goaway = conn.expect_goaway(&[NO_ERROR]).await;
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "GOAWAY after {:?}, before the head timeout",
        started.elapsed()
    );
    let last = u32::from_be_bytes(goaway.payload[..4].try_into().unwrap()) & 0x7fff_ffff;
    assert!(last == 0 || last == 0x7fff_ffff, "last stream id {last}");
    conn.expect_closed().await;
}

/// An open stream keeps the connection: a subscriber past the head timeout is served on.
#[tokio::test]
async fn a_connection_with_an_open_stream_is_not_idle() {
    let cert = cert();
    let hub = start_tls(&cert, |c| c.head_timeout = Duration::from_millis(300)).await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    subscribe(&mut conn, 1, SUBSCRIBE).await;
    let started = Instant::now();
    while let Some(left) = Duration::from_millis(1000).checked_sub(started.elapsed()) {
        match conn.next_frame_within(left).await {
            Err(()) => break,
            Ok(None) => panic!("closed with a subscriber open"),
            Ok(Some(f)) => assert_ne!(f.kind, GOAWAY, "GOAWAY with a subscriber open: {f:?}"),
        }
    }
    conn.ping_ok().await;
    publish_to(
        &client(&cert, false),
        https(&hub, "/.well-known/mercure"),
        "x",
        "still here",
    )
    .await;
    let mut sse = Vec::new();
    conn.read_body_until(1, &mut sse, b"data: still here\n")
        .await;
}

// --- 13. Shutdown ----------------------------------------------------------------------------

/// On shutdown an open subscribe stream gets its final `retry:` and END_STREAM (not a
/// reset), a GOAWAY (§6.8) arrives, then the connection closes.
#[tokio::test]
async fn shutdown_drains_a_subscribe_stream_then_goaway_and_close() {
    let cert = cert();
    let tls =
        ssehub_server::tls::server_config(cert.cert_file.path(), cert.key_file.path()).unwrap();
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.tls = Some(tls);
        c.drain_timeout = Duration::from_millis(300);
    })
    .await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    subscribe(&mut conn, 1, SUBSCRIBE).await;
    subscribers(&hub, 1).await;
    let shutdown = tokio::spawn(hub.shutdown());
    let mut body = Vec::new();
    let mut ended = false;
    let mut goaway = None;
    for _ in 0..10_000 {
        let Some(f) = conn.next_frame().await else {
            break;
        };
        match f.kind {
            DATA if f.stream == 1 => {
                assert!(!ended, "DATA after END_STREAM");
                body.extend_from_slice(&data_payload(&f));
                ended |= f.has(END_STREAM);
            }
            HEADERS if f.stream == 1 => {
                // Trailers may end the stream too.
                assert!(f.has(END_STREAM), "{f:?}");
                ended = true;
            }
            RST_STREAM => panic!("the stream was reset, not ended: {f:?}"),
            GOAWAY => {
                assert_eq!(f.error_code(), NO_ERROR, "{f:?}");
                goaway = Some(f);
            }
            _ => {}
        }
    }
    assert!(ended, "the stream did not end");
    assert!(goaway.is_some(), "no GOAWAY before the close");
    let text = String::from_utf8(body).unwrap();
    let last = text.trim_end().rsplit("\n\n").next().unwrap();
    assert!(
        last.starts_with("retry:"),
        "last frame {last:?} of {text:?}"
    );
    shutdown.await.unwrap().unwrap();
}

// --- 14, 15. Abuse: rapid reset, CONTINUATION flood ------------------------------------------

/// CVE-2023-44487 (rapid reset): 2,000 streams opened and at once reset. The server either
/// sends GOAWAY (ENHANCE_YOUR_CALM or PROTOCOL_ERROR) and closes, or keeps answering PINGs;
/// a new connection is served either way.
#[tokio::test]
async fn rapid_reset_is_survived() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let block = request_block("GET", "/healthz", &[]);
    let mut write_failed = false;
    'flood: for batch in 0..20u32 {
        for i in 0..100u32 {
            let stream = 1 + 2 * (batch * 100 + i);
            conn.queue_frame(HEADERS, END_HEADERS | END_STREAM, stream, &block);
            conn.queue_frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes());
        }
        if conn.try_flush().await.is_err() {
            write_failed = true;
            break 'flood;
        }
    }
    let ping = *b"survived";
    let _ = conn.try_send_frame(PING, 0, 0, &ping).await;
    let mut outcome = None;
    for _ in 0..100_000 {
        let Some(f) = conn.next_frame().await else {
            panic!("closed without a GOAWAY after the rapid resets");
        };
        match f.kind {
            GOAWAY => {
                assert!(
                    [ENHANCE_YOUR_CALM, PROTOCOL_ERROR].contains(&f.error_code()),
                    "GOAWAY {:#x}",
                    f.error_code()
                );
                conn.expect_closed().await;
                outcome = Some(format!("GOAWAY {:#x}", f.error_code()));
                break;
            }
            PING if f.has(ACK) && f.payload == ping => {
                assert!(!write_failed, "the writes failed but the PING was answered");
                outcome = Some("PING answered".into());
                break;
            }
            _ => {}
        }
    }
    eprintln!("rapid reset: {}", outcome.expect("no outcome"));
    fresh_connection_works(&hub, &cert).await;
}

/// CONTINUATION flood: a header block without end, over 1 MiB of CONTINUATION frames. The
/// server ends the connection (a GOAWAY, or a close) without waiting for it all, and a new
/// connection is served.
#[tokio::test]
async fn a_continuation_flood_ends_the_connection() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let mut block = request_block("GET", "/healthz", &[]);
    // A literal field whose value is 2 MiB long: what follows is its value.
    block.push(0x00);
    block.push(1);
    block.push(b'x');
    hpack_int(&mut block, 0x00, 7, 2 << 20);
    conn.send_frame(HEADERS, END_STREAM, 1, &block).await;
    let chunk = vec![b'a'; 16_384];
    let mut sent = 0;
    while sent < (1 << 20) + 16_384 {
        if conn
            .try_send_frame(CONTINUATION, 0, 1, &chunk)
            .await
            .is_err()
        {
            break;
        }
        sent += chunk.len();
    }
    let mut outcome = "closed".to_owned();
    for _ in 0..10_000 {
        match conn.next_frame().await {
            None => break,
            Some(f) if f.kind == GOAWAY => {
                outcome = format!("GOAWAY {:#x}", f.error_code());
                conn.expect_closed().await;
                break;
            }
            Some(f) => assert!(
                f.kind != HEADERS,
                "a response to an unfinished header block: {f:?}"
            ),
        }
    }
    eprintln!("CONTINUATION flood after {sent} bytes: {outcome}");
    fresh_connection_works(&hub, &cert).await;
}

// --- 16. HPACK (RFC 7541, RFC 9113 §4.3) -----------------------------------------------------

/// §4.3: a header block that cannot be decoded (index 0, RFC 7541 §6.1) is a connection
/// error COMPRESSION_ERROR.
#[tokio::test]
async fn an_undecodable_header_block_is_compression_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_headers(1, &[0x80], true).await;
    conn.expect_goaway(&[COMPRESSION_ERROR]).await;
}

/// RFC 7541: the HPACK state lasts the connection. Literals with incremental indexing
/// (§6.2.1) fill the dynamic table and later requests refer to it (§2.3.3), as a browser's
/// first requests do before it has the server's SETTINGS; Huffman-coded strings (§5.2) decode.
/// A server that advertises a smaller SETTINGS_HEADER_TABLE_SIZE gets, once its SETTINGS are
/// acknowledged, blocks that start with a size update (§4.2) and never refer to the old
/// entries; one that does refer to them is a COMPRESSION_ERROR.
#[tokio::test]
async fn hpack_dynamic_table_huffman_and_size_updates_are_decoded() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::connect(&hub, &cert).await;
    // :method GET (static 2), :scheme https (7), :path (name 4) "/healthz" Huffman-coded and
    // indexed, :authority (name 1) "127.0.0.1" indexed.
    let mut indexing = vec![0x82, 0x87, 0x44];
    hpack_huffman(&mut indexing, "/healthz");
    indexing.push(0x41);
    hpack_int(&mut indexing, 0x00, 7, 9);
    indexing.extend_from_slice(b"127.0.0.1");
    let decoded = loona_hpack::Decoder::new().decode(&indexing).unwrap();
    assert_eq!(decoded[2], (b":path".to_vec(), b"/healthz".to_vec()));
    // Before reading anything: the default table (4,096) holds for these.
    conn.queue(PREFACE);
    conn.queue_frame(SETTINGS, 0, 0, &[]);
    conn.queue_frame(HEADERS, END_HEADERS | END_STREAM, 1, &indexing);
    // The table now holds :authority (62) and, before it, :path (63).
    conn.queue_frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &[0x82, 0x87, 0xbf, 0xbe],
    );
    conn.flush().await;
    let first = conn.read_frame().await.expect("the server's SETTINGS");
    assert_eq!((first.kind, first.flags & ACK), (SETTINGS, 0));
    let table_size = first
        .payload
        .chunks(6)
        .filter(|c| u16::from_be_bytes([c[0], c[1]]) == HEADER_TABLE_SIZE)
        .map(|c| u32::from_be_bytes([c[2], c[3], c[4], c[5]]))
        .next_back()
        .unwrap_or(4_096);
    assert_eq!(conn.response(1).await.body, b"ok\n");
    assert_eq!(conn.response(3).await.body, b"ok\n");
    conn.send_frame(SETTINGS, ACK, 0, &[]).await;

    // A Huffman-coded value of a regular field, a name literal Huffman-coded too, after a size
    // update to the server's limit (what an encoder that applied the SETTINGS sends first).
    let mut block = Vec::new();
    hpack_int(&mut block, 0x20, 5, table_size as usize);
    block.extend(request_block("GET", "/healthz", &[]));
    block.push(0x00);
    hpack_huffman(&mut block, "x-hi");
    hpack_huffman(&mut block, "cache");
    // The encoding here is checked by an independent decoder first.
    let decoded = loona_hpack::Decoder::new().decode(&block).unwrap();
    assert_eq!(
        decoded.last().unwrap(),
        &(b"x-hi".to_vec(), b"cache".to_vec())
    );
    conn.send_headers(5, &block, true).await;
    assert_eq!(conn.response(5).await.body, b"ok\n");
    if table_size >= 100 {
        // The entries are still there: a size update to 0 empties the table, one back to
        // 4,096 allows indexing again.
        let mut again = vec![0x20, 0x3f, 0xe1, 0x1f];
        again.extend_from_slice(&indexing);
        conn.send_headers(7, &again, true).await;
        assert_eq!(conn.response(7).await.body, b"ok\n");
        conn.send_headers(9, &[0x82, 0x87, 0xbf, 0xbe], true).await;
        assert_eq!(conn.response(9).await.body, b"ok\n");
    } else {
        // The table is gone with the SETTINGS: entry 62 no longer exists.
        conn.send_headers(7, &[0x82, 0x87, 0xbf, 0xbe], true).await;
        conn.expect_goaway(&[COMPRESSION_ERROR]).await;
    }
}

/// RFC 7541 §4.2: a dynamic table size update belongs at the beginning of a block; one at
/// its end is a decoding error, COMPRESSION_ERROR (RFC 9113 §4.3; h2spec hpack/4.2/1).
#[tokio::test]
async fn a_table_size_update_at_the_end_of_a_block_is_compression_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let mut block = request_block("GET", "/healthz", &[]);
    block.push(0x20);
    conn.send_headers(1, &block, true).await;
    conn.expect_goaway(&[COMPRESSION_ERROR]).await;
}

/// RFC 7541 §6.3: a dynamic table size update above SETTINGS_HEADER_TABLE_SIZE (the
/// server's, 4,096 unless it said otherwise) is a decoding error, COMPRESSION_ERROR.
#[tokio::test]
async fn a_table_size_update_over_the_settings_limit_is_compression_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let limit = conn.server_setting(HEADER_TABLE_SIZE).unwrap_or(4_096) as usize;
    let mut block = Vec::new();
    hpack_int(&mut block, 0x20, 5, limit + 1);
    block.extend_from_slice(&request_block("GET", "/healthz", &[]));
    conn.send_headers(1, &block, true).await;
    conn.expect_goaway(&[COMPRESSION_ERROR]).await;
}

/// §10.5.1: a field block over the server's SETTINGS_MAX_HEADER_LIST_SIZE (or 64 KiB if it
/// sets none; the hub's head limit is 64 KiB) may be refused with a 431 or a stream error;
/// the HPACK context survives (the block is read whole), so the connection serves on. A
/// GOAWAY is accepted too (the RFC allows ending the connection), then a new connection must
/// be served.
#[tokio::test]
async fn a_field_block_over_the_header_list_limit_is_refused() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let limit = conn.server_setting(MAX_HEADER_LIST_SIZE).unwrap_or(65_536) as usize;
    let big = "b".repeat(limit + 1024);
    let block = request_block("GET", "/healthz", &[("x-big", &big)]);
    let mut frames = block.chunks(16_384);
    conn.queue_frame(HEADERS, END_STREAM, 1, frames.next().unwrap());
    let rest: Vec<&[u8]> = frames.collect();
    for (i, part) in rest.iter().enumerate() {
        let flags = if i + 1 == rest.len() { END_HEADERS } else { 0 };
        conn.queue_frame(CONTINUATION, flags, 1, part);
    }
    conn.flush().await;
    let refusal = conn.expect_refusal(1).await;
    eprintln!("field block over the limit: {refusal:?}");
    match refusal {
        Refusal::Status(431) | Refusal::Reset(_) => {
            conn.ping_ok().await;
            healthz(&mut conn, 3).await;
        }
        Refusal::GoAway(_) => {
            conn.expect_closed().await;
            fresh_connection_works(&hub, &cert).await;
        }
        other => panic!("{other:?}"),
    }
}

// --- Frame sizes, padding, PRIORITY, RST_STREAM, content-length ------------------------------

/// §4.2: a frame over our SETTINGS_MAX_FRAME_SIZE (16,384 here) carrying a field block is a
/// connection error FRAME_SIZE_ERROR.
#[tokio::test]
async fn headers_over_max_frame_size_is_frame_size_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let max = conn.server_setting(MAX_FRAME_SIZE).unwrap_or(16_384) as usize;
    let pad = "p".repeat(max);
    let block = request_block("GET", "/healthz", &[("x-pad", &pad)]);
    assert!(block.len() > max);
    conn.send_headers(1, &block, true).await;
    conn.expect_goaway(&[FRAME_SIZE_ERROR]).await;
}

/// §4.2: DATA over the server's SETTINGS_MAX_FRAME_SIZE is FRAME_SIZE_ERROR, a stream error
/// or a connection error.
#[tokio::test]
async fn data_over_max_frame_size_is_frame_size_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let max = conn.server_setting(MAX_FRAME_SIZE).unwrap_or(16_384) as usize;
    conn.request(1, "GET", SUBSCRIBE, &[], false).await;
    conn.response_head(1).await;
    conn.send_data(1, &vec![b'o'; max + 1], false).await;
    let refusal = conn.expect_refusal(1).await;
    eprintln!("stream 1: {refusal:?}");
    match refusal {
        Refusal::Reset(FRAME_SIZE_ERROR) => conn.ping_ok().await,
        Refusal::GoAway(FRAME_SIZE_ERROR) => conn.expect_closed().await,
        other => panic!("{other:?}"),
    }
}

/// §6.1, §6.2: padded and prioritised HEADERS and padded DATA are accepted (a publish made
/// of them is answered 200 with the update's id).
#[tokio::test]
async fn padded_and_prioritised_frames_are_accepted() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let bearer = format!("Bearer {}", common::publisher());
    let block = request_block(
        "POST",
        "/.well-known/mercure",
        &[
            ("content-type", "application/x-www-form-urlencoded"),
            ("authorization", &bearer),
        ],
    );
    // Pad length, stream dependency (0, not exclusive), weight, the block, the padding.
    let mut headers = vec![5u8, 0, 0, 0, 0, 15];
    headers.extend_from_slice(&block);
    headers.extend_from_slice(&[0; 5]);
    conn.send_frame(HEADERS, END_HEADERS | PADDED | PRIORITY_FLAG, 1, &headers)
        .await;
    for (i, part) in [&b"topic=x&"[..], b"data=padded"].into_iter().enumerate() {
        let mut data = vec![3u8];
        data.extend_from_slice(part);
        data.extend_from_slice(&[0; 3]);
        let flags = PADDED | if i == 1 { END_STREAM } else { 0 };
        conn.send_frame(DATA, flags, 1, &data).await;
    }
    let response = conn.response(1).await;
    assert_eq!(
        response.status,
        200,
        "{:?}",
        String::from_utf8_lossy(&response.body)
    );
    assert!(!response.body.is_empty());
    // A padded DATA frame of padding only, ending a request.
    conn.request(3, "GET", "/healthz", &[], false).await;
    conn.send_frame(DATA, PADDED | END_STREAM, 3, &[2, 0, 0])
        .await;
    let response = conn.response(3).await;
    assert_eq!((response.status, &response.body[..]), (200, &b"ok\n"[..]));
}

/// §6.1: padding as long as the payload or longer is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn padding_not_shorter_than_the_payload_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.request(1, "GET", SUBSCRIBE, &[], false).await;
    conn.response_head(1).await;
    // Pad length 4 in a payload of 4 (the length byte and 3 more).
    conn.send_frame(DATA, PADDED, 1, &[4, 0, 0, 0]).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §5.1, §6.3: PRIORITY is allowed on an idle stream and is otherwise ignored (RFC 9113
/// deprecates its scheme); a request on a later stream is served.
#[tokio::test]
async fn priority_frames_are_accepted() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_frame(PRIORITY, 0, 1, &[0, 0, 0, 0, 200]).await;
    conn.send_frame(PRIORITY, 0, 5, &[0x80, 0, 0, 1, 16]).await;
    conn.ping_ok().await;
    healthz(&mut conn, 3).await;
    // And on a stream already closed.
    conn.send_frame(PRIORITY, 0, 3, &[0, 0, 0, 0, 1]).await;
    conn.ping_ok().await;
    healthz(&mut conn, 7).await;
}

/// §6.3: a PRIORITY frame of a length other than 5 is a stream error FRAME_SIZE_ERROR (or,
/// §5.4.1, a connection error).
#[tokio::test]
async fn priority_of_the_wrong_length_is_frame_size_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.request(1, "GET", SUBSCRIBE, &[], false).await;
    conn.response_head(1).await;
    conn.send_frame(PRIORITY, 0, 1, &[0, 0, 0, 0]).await;
    let refusal = conn.expect_refusal(1).await;
    eprintln!("stream 1: {refusal:?}");
    match refusal {
        Refusal::Reset(FRAME_SIZE_ERROR) => conn.ping_ok().await,
        Refusal::GoAway(FRAME_SIZE_ERROR) => conn.expect_closed().await,
        other => panic!("{other:?}"),
    }
}

/// §6.4: RST_STREAM on an idle stream is a connection error PROTOCOL_ERROR.
#[tokio::test]
async fn rst_stream_on_an_idle_stream_is_protocol_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_rst(1, CANCEL).await;
    conn.expect_goaway(&[PROTOCOL_ERROR]).await;
}

/// §6.4: RST_STREAM of a length other than 4 is a connection error FRAME_SIZE_ERROR.
#[tokio::test]
async fn rst_stream_of_the_wrong_length_is_frame_size_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.request(1, "GET", SUBSCRIBE, &[], false).await;
    conn.response_head(1).await;
    conn.send_frame(RST_STREAM, 0, 1, &[0, 0, 0, 8, 0]).await;
    conn.expect_goaway(&[FRAME_SIZE_ERROR]).await;
}

/// §6.9: WINDOW_UPDATE of a length other than 4 is a connection error FRAME_SIZE_ERROR.
#[tokio::test]
async fn window_update_of_the_wrong_length_is_frame_size_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    conn.send_frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1]).await;
    conn.expect_goaway(&[FRAME_SIZE_ERROR]).await;
}

/// §8.1.1: a `content-length` other than the sum of the DATA payloads makes the request
/// malformed: a stream error PROTOCOL_ERROR or a 400, never handled as a complete publish.
#[tokio::test]
async fn a_content_length_mismatch_is_a_stream_error() {
    let (hub, cert) = hub().await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let bearer = format!("Bearer {}", common::publisher());
    let extra = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("authorization", bearer.as_str()),
        ("content-length", "100"),
    ];
    conn.request(1, "POST", "/.well-known/mercure", &extra, false)
        .await;
    conn.send_data(1, b"topic=x&data=short", true).await;
    let refusal = conn.expect_refusal(1).await;
    eprintln!("content-length mismatch: {refusal:?}");
    assert!(
        matches!(
            refusal,
            Refusal::Reset(PROTOCOL_ERROR) | Refusal::Status(400)
        ),
        "{refusal:?}"
    );
    conn.ping_ok().await;
    healthz(&mut conn, 3).await;
}

/// A publish whose body stalls is answered 408 once the body timeout is up; its stream is then
/// reset with NO_ERROR (the client may stop sending, RFC 9113 §8.1), and the connection goes
/// on serving.
#[tokio::test]
async fn a_request_body_that_stalls_gets_408_and_the_connection_stays() {
    let cert = cert();
    let hub = start_tls(&cert, |c| c.body_timeout = Duration::from_millis(300)).await;
    let mut conn = H2Conn::open(&hub, &cert).await;
    let bearer = format!("Bearer {}", common::publisher());
    let extra = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("authorization", bearer.as_str()),
    ];
    let started = Instant::now();
    conn.request(1, "POST", "/.well-known/mercure", &extra, false)
        .await;
    conn.send_data(1, b"topic=x&da", false).await;
    let response = conn.response(1).await;
    assert_eq!(
        (response.status, String::from_utf8_lossy(&response.body)),
        (408, "request body not complete within 300ms\n".into())
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "answered after {:?}",
        started.elapsed()
    );
    let reset = conn.next_on(1).await.expect("the connection stays open");
    assert_eq!((reset.kind, reset.error_code()), (RST_STREAM, 0));
    healthz(&mut conn, 3).await;
}
