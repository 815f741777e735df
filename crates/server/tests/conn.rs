//! Black-box tests of the connection layer of `MercureServer::serve` over real TCP: the fast
//! path answers subscribes exactly as hyper serving the router does, everything else is handed
//! to hyper intact, and heads that are too slow or too large are cut off.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use ssehub_hub::Hub;
use ssehub_server::{MercureConfig, MercureServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `request` and returns the response head (without the `date` line, which differs
/// between runs) and what followed it by the time `pred` held.
async fn exchange(
    addr: SocketAddr,
    request: &[u8],
    pred: impl Fn(&[u8]) -> bool,
) -> (Vec<String>, Vec<u8>) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut sock, &mut buf, |b| {
        find(b, b"\r\n\r\n").is_some_and(|end| pred(&b[end + 4..]))
    })
    .await;
    split_head(&buf)
}

fn split_head(buf: &[u8]) -> (Vec<String>, Vec<u8>) {
    let end = find(buf, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(buf[..end].to_vec()).unwrap();
    let lines = head
        .split("\r\n")
        .filter(|l| !l.starts_with("date: "))
        .map(str::to_owned)
        .collect();
    (lines, buf[end..].to_vec())
}

/// The router served by plain `axum::serve` (hyper for everything), as before the connection
/// layer existed: the reference the fast path must match byte for byte.
async fn start_reference(configure: impl Fn(&mut MercureConfig)) -> (SocketAddr, Hub) {
    let hub = Hub::builder().heartbeat(None).build();
    let authorizer = ssehub_auth::Authorizer::new(Some(key()), Some(key())).unwrap();
    let mut config = MercureConfig::new(authorizer);
    configure(&mut config);
    let server = MercureServer::new(hub.clone(), config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, server.router()).await });
    (addr, hub)
}

/// The HTTP/2 client preface (prior knowledge, h2c) followed by an empty SETTINGS frame.
const H2_PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn get(target: &str, extra: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
}

#[tokio::test]
async fn fast_path_responses_match_hyper_serving_the_router() {
    let cors = |c: &mut MercureConfig| c.cors_origins = vec!["https://app.example".into()];
    let (reference, _ref_hub) = start_reference(cors).await;
    let hub = start_with(Hub::builder().heartbeat(None).build(), cors).await;
    let sub_token = token(&[], &["*"]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("plain", get("/.well-known/mercure?topic=a", "")),
        (
            "allowed origin",
            get(
                "/.well-known/mercure?topic=a",
                "Origin: https://app.example\r\n",
            ),
        ),
        (
            "other origin",
            get(
                "/.well-known/mercure?topic=a",
                "Origin: https://evil.example\r\n",
            ),
        ),
        (
            "browser-like",
            get(
                "/.well-known/mercure?topic=a&topic=https%3A%2F%2Fex.com%2F%7Bid%7D&retained=latest",
                &format!(
                    "Accept: text/event-stream\r\nCache-Control: no-cache\r\nConnection: keep-alive\r\n\
                     Last-Event-ID: earliest\r\nCookie: mercureAuthorization={sub_token}\r\n"
                ),
            ),
        ),
        (
            "bearer",
            get(
                "/.well-known/mercure?topic=a",
                &format!("Authorization: Bearer {sub_token}\r\n"),
            ),
        ),
    ];
    for (name, request) in &cases {
        let preamble = |b: &[u8]| b.ends_with(b"retry: 3000\n\r\n");
        let want = exchange(reference, request, preamble).await;
        let got = exchange(hub.addr, request, preamble).await;
        assert_eq!(got, want, "{name}");
        assert_eq!(got.0[0], "HTTP/1.1 200 OK", "{name}");
    }
    // Refusals are answered by the handler behind hyper on both: same status, headers, reason.
    let refusals: Vec<(&str, Vec<u8>)> = vec![
        ("no topic", get("/.well-known/mercure", "")),
        ("empty selector", get("/.well-known/mercure?topic=", "")),
        (
            "bad retained",
            get("/.well-known/mercure?topic=a&retained=all", ""),
        ),
        (
            "bad token",
            get(
                "/.well-known/mercure?topic=a",
                "Authorization: Bearer nope\r\nOrigin: https://app.example\r\n",
            ),
        ),
        (
            "non-ASCII Last-Event-ID",
            get(
                "/.well-known/mercure?topic=a",
                "Last-Event-ID: caf\u{e9}\r\n",
            ),
        ),
    ];
    for (name, request) in &refusals {
        // Each reason is one line.
        let body_in = |b: &[u8]| b.ends_with(b"\n");
        let want = exchange(reference, request, body_in).await;
        let got = exchange(hub.addr, request, body_in).await;
        assert_eq!(got, want, "{name}");
        assert!(got.0[0].starts_with("HTTP/1.1 4"), "{name}: {:?}", got.0);
    }
}

#[tokio::test]
async fn other_requests_are_handed_to_hyper() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let c = client();
    // Publish, preflight and healthz go through the router as before.
    let res = publish(&hub, &[("topic", "a"), ("data", "x")]).await;
    assert_eq!(res.status(), 200);
    let preflight = c
        .request(reqwest::Method::OPTIONS, hub.hub_url())
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    let health = c.get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok\n");

    // Keep-alive: two requests on one connection, the second after the first's answer.
    let mut sock = TcpStream::connect(hub.addr).await.unwrap();
    for _ in 0..2 {
        sock.write_all(&get("/healthz", "")).await.unwrap();
        let mut buf = Vec::new();
        read_until(&mut sock, &mut buf, |b| b.ends_with(b"\r\n\r\nok\n")).await;
        assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
    }

    // HTTP/2 with prior knowledge: the preface and an empty SETTINGS frame get the server's
    // SETTINGS frame back (hyper's h2 side is reached through the replayed bytes).
    let mut h2 = TcpStream::connect(hub.addr).await.unwrap();
    h2.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
    let mut frame = [0u8; 9];
    tokio::time::timeout(Duration::from_secs(5), h2.read_exact(&mut frame))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(frame[3], 0x04, "a SETTINGS frame: {frame:?}");

    // HTTP/1.0 subscribes are left to hyper, which answers them the 1.0 way (no chunking).
    let mut old = TcpStream::connect(hub.addr).await.unwrap();
    old.write_all(b"GET /.well-known/mercure?topic=a HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    read_until(&mut old, &mut buf, |b| b.ends_with(b"retry: 3000\n")).await;
    let (head, body) = split_head(&buf);
    assert_eq!(head[0], "HTTP/1.0 200 OK");
    assert!(!head.iter().any(|l| l.contains("chunked")), "{head:?}");
    assert_eq!(body, b"retry: 3000\n");
}

#[tokio::test]
async fn heads_split_into_tiny_writes_are_reassembled() {
    let hub = start().await;
    let subscribe = get(
        "/.well-known/mercure?topic=a",
        "Accept: text/event-stream\r\n",
    );
    let post_body = "topic=a&data=dribbled";
    let post = format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{post_body}",
        publisher(),
        post_body.len()
    );
    let mut sub = TcpStream::connect(hub.addr).await.unwrap();
    sub.set_nodelay(true).unwrap();
    let mut publ = TcpStream::connect(hub.addr).await.unwrap();
    publ.set_nodelay(true).unwrap();
    for byte in subscribe.chunks(1) {
        sub.write_all(byte).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut buf = Vec::new();
    read_until(&mut sub, &mut buf, |b| b.ends_with(b"retry: 3000\n\r\n")).await;
    assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"));
    for piece in post.as_bytes().chunks(7) {
        publ.write_all(piece).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut res = Vec::new();
    read_until(&mut publ, &mut res, |b| find(b, b"\r\n\r\n").is_some()).await;
    assert!(res.starts_with(b"HTTP/1.1 200 OK\r\n"), "{res:?}");
    let mut event = Vec::new();
    read_until(&mut sub, &mut event, |b| {
        find(b, b"data: dribbled\n\n").is_some()
    })
    .await;
}

#[tokio::test]
async fn a_subscribe_head_over_the_limit_gets_431() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.max_head = 2048;
    })
    .await;
    // Over the first buffer, under the limit: served.
    let cookie = format!("Cookie: pad={}\r\n", "p".repeat(1500));
    let (head, _) = exchange(
        hub.addr,
        &get("/.well-known/mercure?topic=a", &cookie),
        |b| b.ends_with(b"retry: 3000\n\r\n"),
    )
    .await;
    assert_eq!(head[0], "HTTP/1.1 200 OK");

    let cookie = format!("Cookie: pad={}\r\n", "p".repeat(3000));
    let mut sock = TcpStream::connect(hub.addr).await.unwrap();
    sock.write_all(&get("/.well-known/mercure?topic=a", &cookie))
        .await
        .unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut buf))
        .await
        .expect("closed after the answer")
        .unwrap();
    let (head, body) = split_head(&buf);
    assert_eq!(head[0], "HTTP/1.1 431 Request Header Fields Too Large");
    assert_eq!(body, b"request head larger than 2048 bytes\n");
    assert_eq!(hub.hub.subscriber_count(), 0);
}

#[tokio::test]
async fn silent_and_dribbling_connections_are_closed_after_the_head_timeout() {
    let timeout = Duration::from_millis(300);
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.head_timeout = timeout;
    })
    .await;
    /// How long until the server closes `sock`, sending `drip` one byte per 50 ms meanwhile.
    async fn closed_after(mut sock: TcpStream, drip: &[u8]) -> Duration {
        let started = Instant::now();
        let (mut reader, mut writer) = sock.split();
        let dripping = async {
            for b in drip.chunks(1) {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if writer.write_all(b).await.is_err() {
                    break;
                }
            }
            std::future::pending::<()>().await
        };
        let mut buf = [0u8; 256];
        tokio::select! {
            () = dripping => unreachable!(),
            r = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf)) => {
                // EOF, or a reset when the server closed with dripped bytes unread.
                let n = r.expect("still open after 5 s").unwrap_or(0);
                assert_eq!(n, 0, "nothing is answered");
            }
        }
        started.elapsed()
    }

    let silent = TcpStream::connect(hub.addr).await.unwrap();
    let took = closed_after(silent, b"").await;
    assert!(
        took >= timeout - Duration::from_millis(50) && took < Duration::from_secs(3),
        "silent: {took:?}"
    );
    let dribbling = TcpStream::connect(hub.addr).await.unwrap();
    let took = closed_after(
        dribbling,
        b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaa",
    )
    .await;
    assert!(took < Duration::from_secs(3), "dribbling: {took:?}");

    // Hyper's side has the same timeout: an idle keep-alive connection is closed too.
    let mut kept = TcpStream::connect(hub.addr).await.unwrap();
    kept.write_all(&get("/healthz", "")).await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut kept, &mut buf, |b| b.ends_with(b"ok\n")).await;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), kept.read_to_end(&mut rest))
        .await
        .expect("idle keep-alive connection still open after 5 s")
        .unwrap();
    assert!(rest.is_empty(), "{rest:?}");
}

#[tokio::test]
async fn a_request_pipelined_after_a_subscribe_head_is_left_to_hyper() {
    let hub = start().await;
    let mut sock = TcpStream::connect(hub.addr).await.unwrap();
    let mut both = get("/.well-known/mercure?topic=a", "");
    both.extend_from_slice(&get("/healthz", ""));
    sock.write_all(&both).await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut sock, &mut buf, |b| b.ends_with(b"retry: 3000\n\r\n")).await;
    let (head, body) = split_head(&buf);
    assert_eq!(head[0], "HTTP/1.1 200 OK");
    assert_eq!(body, b"C\r\nretry: 3000\n\r\n");
    publish(&hub, &[("topic", "a"), ("data", "still streaming")]).await;
    read_until(&mut sock, &mut buf, |b| {
        find(b, b"data: still streaming\n\n").is_some()
    })
    .await;
}

#[tokio::test]
async fn bytes_sent_during_a_stream_do_not_disturb_it() {
    let hub = start().await;
    let mut sock = TcpStream::connect(hub.addr).await.unwrap();
    sock.write_all(&get("/.well-known/mercure?topic=a", ""))
        .await
        .unwrap();
    let mut buf = Vec::new();
    read_until(&mut sock, &mut buf, |b| b.ends_with(b"retry: 3000\n\r\n")).await;
    sock.write_all(&get("/healthz", "")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    publish(&hub, &[("topic", "a"), ("data", "after")]).await;
    read_until(&mut sock, &mut buf, |b| {
        find(b, b"data: after\n\n").is_some()
    })
    .await;
    assert_eq!(hub.hub.subscriber_count(), 1);
}

#[tokio::test]
async fn a_client_leaving_ends_its_subscription_promptly() {
    let leaves = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = leaves.clone();
    let hub = start_with(
        Hub::builder()
            .heartbeat(None)
            .on_leave(move |_| {
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
            .build(),
        |_| {},
    )
    .await;
    let mut socks = Vec::new();
    for _ in 0..3 {
        let mut sock = TcpStream::connect(hub.addr).await.unwrap();
        sock.write_all(&get("/.well-known/mercure?topic=a", ""))
            .await
            .unwrap();
        let mut buf = Vec::new();
        read_until(&mut sock, &mut buf, |b| b.ends_with(b"retry: 3000\n\r\n")).await;
        socks.push(sock);
    }
    assert_eq!(hub.hub.subscriber_count(), 3);
    assert_eq!(hub.hub.topic_subscribers("a"), 3);
    // Closed outright, and half-closed (write side shut), as hyper treated both.
    drop(socks.pop());
    socks[0].shutdown().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(2);
    while hub.hub.subscriber_count() > 1 {
        assert!(
            Instant::now() < deadline,
            "still {} subscribers",
            hub.hub.subscriber_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(leaves.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn shutdown_does_not_wait_for_connections_that_sent_nothing() {
    let hub = start().await;
    let _silent = TcpStream::connect(hub.addr).await.unwrap();
    let mut partial = TcpStream::connect(hub.addr).await.unwrap();
    partial
        .write_all(b"GET /.well-known/mercure?topic=a HTTP/1.1\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    hub.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "shutdown took {:?}",
        started.elapsed()
    );
}

/// A stream that ends while the hub keeps serving (a subscriber closed for lagging) ends with
/// the chunked terminator, and the connection stays usable for the next request, as with hyper.
#[tokio::test]
async fn after_a_lagged_stream_ends_the_connection_serves_the_next_request() {
    let hub = start_with(
        Hub::builder()
            .heartbeat(None)
            .history_size(2)
            .max_queued(4, 256 * 1024)
            .build(),
        |_| {},
    )
    .await;
    let mut sock = TcpStream::connect(hub.addr).await.unwrap();
    sock.write_all(&get("/.well-known/mercure?topic=a", ""))
        .await
        .unwrap();
    let mut buf = Vec::new();
    read_until(&mut sock, &mut buf, |b| b.ends_with(b"retry: 3000\n\r\n")).await;
    // Not reading: the socket fills, the queue overflows, history moves on.
    let big = "x".repeat(60_000);
    for _ in 0..200 {
        publish(&hub, &[("topic", "a"), ("data", &big)]).await;
    }
    assert!(hub.hub.stats().lagged > 0);
    let mut buf = Vec::new();
    read_until(&mut sock, &mut buf, |b| b.ends_with(b"\r\n0\r\n\r\n")).await;
    assert!(
        find(&buf, ssehub_hub::LAGGED_EVENT.as_bytes()).is_some(),
        "told it lagged"
    );
    assert_eq!(hub.hub.subscriber_count(), 0);
    sock.write_all(&get("/healthz", "")).await.unwrap();
    let mut buf = Vec::new();
    read_until(&mut sock, &mut buf, |b| b.ends_with(b"\r\n\r\nok\n")).await;
    assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[tokio::test]
async fn http2_connections_without_an_open_request_are_closed_after_the_head_timeout() {
    use http_body_util::BodyExt as _;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let timeout = Duration::from_millis(300);
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.head_timeout = timeout;
    })
    .await;

    // The preface and an empty SETTINGS frame, then nothing: GOAWAY, then the close.
    let started = Instant::now();
    let mut silent = TcpStream::connect(hub.addr).await.unwrap();
    silent.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), silent.read_to_end(&mut got))
        .await
        .expect("a silent HTTP/2 connection still open after 5 s")
        .unwrap();
    let took = started.elapsed();
    assert!(took >= timeout - Duration::from_millis(50), "{took:?}");
    // Frames: 9-byte headers (length, type, flags, stream), each followed by its payload.
    let mut types = Vec::new();
    let mut at = 0;
    while let Some(h) = got.get(at..at + 9) {
        let len = (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]);
        types.push(h[3]);
        at += 9 + len;
    }
    assert!(
        types.contains(&0x7),
        "no GOAWAY among frame types {types:?}"
    );

    // A subscription keeps its connection open however long its topic is quiet; once the
    // client drops it, the connection goes like the silent one.
    let tcp = TcpStream::connect(hub.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let request = http::Request::get(format!("http://{}/.well-known/mercure?topic=a", hub.addr))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = send.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    tokio::time::sleep(timeout * 5).await;
    assert!(!conn.is_finished(), "closed with a stream open");
    assert_eq!(
        publish(&hub, &[("topic", "a"), ("data", "still here")])
            .await
            .status(),
        200
    );
    let mut seen = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while !String::from_utf8_lossy(&seen).contains("data: still here\n") {
            let frame = body.frame().await.expect("stream ended").unwrap();
            if let Ok(data) = frame.into_data() {
                seen.extend_from_slice(&data);
            }
        }
    })
    .await
    .expect("the event did not arrive over the long-open stream");
    drop(body);
    let dropped = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("still open 5 s after its last stream ended")
        .unwrap()
        .unwrap();
    let took = dropped.elapsed();
    assert!(took >= timeout - Duration::from_millis(50), "{took:?}");
}

/// Sends `request` and reads the whole answer of a connection the server closes.
async fn answer_and_close(addr: SocketAddr, request: &[u8]) -> (Vec<String>, Vec<u8>) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut buf))
        .await
        .expect("closed after the answer")
        .unwrap();
    split_head(&buf)
}

/// Refusals hyper would send with an empty body get their one-line reason from the connection
/// layer: a head over the limit on any request (a POST too), a raw non-ASCII or control byte in
/// the target (a subscribe too, which used to take it), and the 404s under the hub URL.
#[tokio::test]
async fn refusals_before_the_router_carry_their_reason() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.max_head = 4096;
    })
    .await;
    let pad = format!("X-Pad: {}\r\n", "p".repeat(5000));
    let post =
        format!("POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\n{pad}Content-Length: 0\r\n\r\n");
    let (head, body) = answer_and_close(hub.addr, post.as_bytes()).await;
    assert_eq!(head[0], "HTTP/1.1 431 Request Header Fields Too Large");
    assert_eq!(body, b"request head larger than 4096 bytes\n");

    let reason = b"the request target has a raw byte that must be percent-encoded (non-ASCII, \
                   a control character or a space)\n";
    for request in [
        &b"POST /.well-known/mercure?x=\xff HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"[..],
        b"GET /.well-known/mercure?topic=\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET /healthz\x01 HTTP/1.1\r\nHost: x\r\n\r\n",
    ] {
        let (head, body) = answer_and_close(hub.addr, request).await;
        assert_eq!(head[0], "HTTP/1.1 400 Bad Request", "{request:?}");
        assert!(
            head.iter()
                .any(|l| l == "content-type: text/plain; charset=utf-8")
        );
        assert_eq!(body, reason, "{request:?}");
    }
    assert_eq!(hub.hub.subscriber_count(), 0);

    for (path, reason) in [
        (
            "/.well-known/mercure/subscriptions/x",
            "active subscriptions are off on this hub (ssehub serve --subscriptions turns them on)\n",
        ),
        (
            "/.well-known/mercure/nothing/here",
            "no such resource under the hub URL\n",
        ),
    ] {
        let (status, _, body) = common::get(&hub, path, None).await;
        assert_eq!((status, body.as_str()), (404, reason), "{path}");
    }
    // A sound POST with its body in the same packet still goes through.
    let res = publish(&hub, &[("topic", "a"), ("data", "x")]).await;
    assert_eq!(res.status(), 200);
}
