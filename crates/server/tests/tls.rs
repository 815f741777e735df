//! TLS and HTTP/2 over real TCP: a hub with a self-signed certificate made at test time serves
//! HTTP/2 (ALPN `h2`) and HTTP/1.1 over TLS, many streams on one HTTP/2 connection, and bounds
//! or refuses clients that do not speak TLS; a plain hub still serves cleartext HTTP/2 with
//! prior knowledge (h2c).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::tls::{
    Cert, cert, client, https, publish_to, start_tls, start_tls_with_hub, subscribers,
};
use common::{Events, TestHub, start_with};
use http_body_util::BodyExt;
use reqwest::Version;
use ssehub_codec::{Frame, Parser};
use ssehub_hub::Hub;
use ssehub_server::rustls::pki_types::ServerName;
use ssehub_server::rustls::{self, ClientConfig, RootCertStore};
use ssehub_server::tls::TlsError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn subscribe_and_publish_over_tls_with_http2_and_http1() {
    let cert = cert();
    let hub = start_tls(&cert, |_| {}).await;
    for (http1, version) in [(false, Version::HTTP_2), (true, Version::HTTP_11)] {
        let client = client(&cert, http1);
        let url = https(&hub, "/.well-known/mercure?topic=news");
        let mut events = Events::open(client.get(url)).await;
        assert_eq!(events.response.version(), version);
        assert_eq!(
            events.response.headers()["content-type"],
            "text/event-stream"
        );
        let data = format!("hello over {version:?}");
        let id = publish_to(&client, https(&hub, "/.well-known/mercure"), "news", &data).await;
        let event = events.event().await;
        assert_eq!(
            (event.data.as_str(), event.last_event_id.as_str()),
            (data.as_str(), id.as_str())
        );

        let health = client.get(https(&hub, "/healthz")).send().await.unwrap();
        assert_eq!(health.version(), version);
        assert_eq!(health.text().await.unwrap(), "ok\n");
    }
}

/// A TLS connection to `hub` trusting `cert` and offering only `alpn`, with rustls' default
/// key exchanges.
async fn connect_tls(
    hub: &TestHub,
    cert: &Cert,
    alpn: &[u8],
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    connect_tls_with(hub, cert, alpn, provider).await
}

/// [`connect_tls`] with the client's own crypto provider (its key exchanges, in its order).
async fn connect_tls_with(
    hub: &TestHub,
    cert: &Cert,
    alpn: &[u8],
    provider: rustls::crypto::CryptoProvider,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(hub.addr).await.unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap()
}

/// The key exchange a client offering `groups` (preferred first) negotiates with the hub,
/// after checking that the session works: `GET /healthz` over it is answered.
async fn negotiated_group(
    hub: &TestHub,
    cert: &Cert,
    groups: Vec<&'static dyn rustls::crypto::SupportedKxGroup>,
) -> rustls::NamedGroup {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = groups;
    let mut tls = connect_tls_with(hub, cert, b"http/1.1", provider).await;
    let group = {
        let (_, session) = tls.get_ref();
        assert_eq!(
            session.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        );
        session
            .negotiated_key_exchange_group()
            .expect("a finished handshake has a key exchange")
            .name()
    };
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
        .await
        .expect("answered and closed within 5 s")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("\r\n\r\nok\n"), "{answer}");
    group
}

/// What browsers offer first today (Chromium, Firefox): the hybrid post-quantum exchange. The
/// hub must take it, not fall back to a classical group the client also offered.
#[tokio::test]
async fn a_client_offering_x25519mlkem768_negotiates_it() {
    use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1, X25519, X25519MLKEM768};
    let cert = cert();
    let hub = start_tls(&cert, |_| {}).await;
    let group = negotiated_group(&hub, &cert, vec![X25519MLKEM768, X25519, SECP256R1]).await;
    assert_eq!(group, rustls::NamedGroup::X25519MLKEM768);
}

/// Clients without post-quantum key exchange still connect, on a classical group.
#[tokio::test]
async fn clients_without_post_quantum_key_exchange_still_connect() {
    use rustls::crypto::aws_lc_rs::kx_group::{SECP256R1, X25519};
    let cert = cert();
    let hub = start_tls(&cert, |_| {}).await;
    assert_eq!(
        negotiated_group(&hub, &cert, vec![X25519]).await,
        rustls::NamedGroup::X25519
    );
    assert_eq!(
        negotiated_group(&hub, &cert, vec![SECP256R1]).await,
        rustls::NamedGroup::secp256r1
    );
}

/// What a browser does over HTTP/2: many EventSources as streams of one connection. Over
/// HTTP/1.1 a browser would stop at 6.
#[tokio::test]
async fn twenty_subscriptions_share_one_http2_connection() {
    let cert = cert();
    let hub = start_tls(&cert, |_| {}).await;
    let tls = connect_tls(&hub, &cert, b"h2").await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(connection);

    let mut bodies = Vec::new();
    for i in 0..20 {
        let request = http::Request::get(format!(
            "https://127.0.0.1:{}/.well-known/mercure?topic=t{i}",
            hub.addr.port()
        ))
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
        let mut sender = sender.clone();
        let response = tokio::time::timeout(Duration::from_secs(5), sender.send_request(request))
            .await
            .expect("no response head within 5 s")
            .unwrap();
        assert_eq!(response.status(), 200, "stream {i}");
        assert_eq!(response.version(), http::Version::HTTP_2);
        bodies.push(response.into_body());
    }
    subscribers(&hub, 20).await;

    let publisher = client(&cert, false);
    let mut ids = Vec::new();
    for i in 0..20 {
        let url = https(&hub, "/.well-known/mercure");
        ids.push(publish_to(&publisher, url, &format!("t{i}"), &format!("update {i}")).await);
    }
    // Every stream gets exactly its own update.
    for (i, body) in bodies.iter_mut().enumerate() {
        let mut parser = Parser::new();
        let event = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                match parser.next_frame() {
                    Some(Frame::Event(e)) => return e,
                    Some(_) => continue,
                    None => {}
                }
                let frame = body.frame().await.expect("stream ended").unwrap();
                if let Ok(data) = frame.into_data() {
                    parser.feed(&data);
                }
            }
        })
        .await
        .unwrap_or_else(|_| panic!("stream {i}: no event within 5 s"));
        assert_eq!(event.data, format!("update {i}"));
        assert_eq!(event.last_event_id, ids[i]);
    }
}

/// How long until the server closes `sock` (EOF or reset), which must send nothing.
async fn closed_after(
    sock: &mut (impl tokio::io::AsyncRead + Unpin),
    started: Instant,
) -> Duration {
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf))
        .await
        .expect("still open after 5 s");
    assert_eq!(read.unwrap_or(0), 0, "nothing is answered");
    started.elapsed()
}

#[tokio::test]
async fn clients_silent_before_or_after_the_handshake_are_closed_after_the_head_timeout() {
    let timeout = Duration::from_millis(300);
    let cert = cert();
    let hub = start_tls(&cert, |c| c.head_timeout = timeout).await;

    // Never sends a ClientHello.
    let started = Instant::now();
    let mut silent = TcpStream::connect(hub.addr).await.unwrap();
    let took = closed_after(&mut silent, started).await;
    assert!(
        took >= timeout - Duration::from_millis(50) && took < Duration::from_secs(3),
        "silent: {took:?}"
    );

    // Completes the handshake, then sends no request.
    let started = Instant::now();
    let mut quiet = connect_tls(&hub, &cert, b"h2").await;
    let took = closed_after(&mut quiet, started).await;
    assert!(
        took >= timeout - Duration::from_millis(50) && took < Duration::from_secs(3),
        "silent after the handshake: {took:?}"
    );
}

#[tokio::test]
async fn plaintext_to_a_tls_port_is_refused_without_disturbing_others() {
    let cert = cert();
    let hub = start_tls(&cert, |_| {}).await;
    let client = client(&cert, false);
    let mut events = Events::open(client.get(https(&hub, "/.well-known/mercure?topic=a"))).await;

    // A plain HTTP request gets a clear answer, then the connection closes.
    let mut plain = TcpStream::connect(hub.addr).await.unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer))
        .await
        .expect("closed after the answer")
        .unwrap();
    let answer = String::from_utf8(answer).unwrap();
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answer}"
    );
    assert!(
        answer.ends_with("\r\n\r\nthis port speaks HTTPS (TLS): use an https:// URL\n"),
        "{answer}"
    );

    // Bytes that are neither TLS nor HTTP: closed without an answer.
    let mut junk = TcpStream::connect(hub.addr).await.unwrap();
    junk.write_all(&[0u8, 1, 2, 3]).await.unwrap();
    closed_after(&mut junk, Instant::now()).await;

    // The TLS subscriber and new TLS clients are unaffected.
    let id = publish_to(
        &client,
        https(&hub, "/.well-known/mercure"),
        "a",
        "still here",
    )
    .await;
    let event = events.event().await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("still here", id.as_str())
    );
    let health = client.get(https(&hub, "/healthz")).send().await.unwrap();
    assert_eq!(health.text().await.unwrap(), "ok\n");
}

#[tokio::test]
async fn shutdown_ends_http2_streams_cleanly() {
    let cert = cert();
    let hub = start_tls(&cert, |_| {}).await;
    let client = client(&cert, false);
    let mut streams = Vec::new();
    for topic in ["a", "b"] {
        let url = https(&hub, &format!("/.well-known/mercure?topic={topic}"));
        let events = Events::open(client.get(url)).await;
        assert_eq!(events.response.version(), Version::HTTP_2);
        streams.push(events);
    }
    subscribers(&hub, 2).await;
    let started = Instant::now();
    hub.shutdown().await.unwrap();
    for mut events in streams {
        // `frame` fails the test on a stream error (a reset rather than a clean end).
        while let Some(frame) = events.frame().await {
            assert!(!matches!(frame, Frame::Event(_)), "{frame:?}");
        }
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn cleartext_http2_with_prior_knowledge_still_works() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |_| {}).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut events = Events::open(client.get(hub.url("/.well-known/mercure?topic=c"))).await;
    assert_eq!(events.response.version(), Version::HTTP_2);
    let id = publish_to(&client, hub.hub_url(), "c", "over h2c").await;
    let event = events.event().await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("over h2c", id.as_str())
    );
}

#[test]
fn a_key_that_does_not_match_the_certificate_is_refused() {
    let one = cert();
    let other = cert();
    let err =
        ssehub_server::tls::server_config(one.cert_file.path(), other.key_file.path()).unwrap_err();
    assert!(matches!(err, TlsError::Rejected { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "certificate {} with key {}: ",
            one.cert_file.path().display(),
            other.key_file.path().display()
        )),
        "{text}"
    );
}

/// A raw HTTP/1.1 connection over TLS (ALPN `http/1.1`), for byte-exact checks of the compact
/// path: its request written, nothing read yet.
async fn raw_h1(
    hub: &TestHub,
    cert: &Cert,
    target: &str,
    headers: &str,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let mut tls = connect_tls(hub, cert, b"http/1.1").await;
    let request = format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    tls
}

/// Reads from `tls` into `buf` until `pred(buf)` holds; fails on EOF or after 5 s.
async fn read_until(
    tls: &mut tokio_rustls::client::TlsStream<TcpStream>,
    buf: &mut Vec<u8>,
    pred: impl Fn(&[u8]) -> bool,
) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !pred(buf) {
            let mut chunk = [0u8; 4096];
            let n = tls.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out: {:?}", String::from_utf8_lossy(buf)));
}

fn contains(hay: &[u8], needle: &str) -> bool {
    common::find(hay, needle.as_bytes()).is_some()
}

/// TLS HTTP/1.1 subscribers are served by the compact path (crates/server/src/conn.rs; the
/// unit test in src/tls.rs shows they never reach hyper): the response head and preamble in
/// one go, events as chunks, heartbeats, replay from `Last-Event-ID`, private updates only to
/// a subscriber whose token allows them.
#[tokio::test]
async fn tls_http1_subscribers_get_events_heartbeats_replay_and_private_updates() {
    let cert = cert();
    let hub = start_tls_with_hub(
        &cert,
        Hub::builder()
            .heartbeat(Some(Duration::from_millis(100)))
            .build(),
    )
    .await;
    let publisher = client(&cert, false);
    let hub_url = https(&hub, "/.well-known/mercure");
    let first = publish_to(&publisher, hub_url.clone(), "r", "before 1").await;
    let second = publish_to(&publisher, hub_url.clone(), "r", "before 2").await;

    // Replay: everything after the first update, then live ones.
    let mut replaying = raw_h1(
        &hub,
        &cert,
        "/.well-known/mercure?topic=r",
        &format!("Last-Event-ID: {first}\r\n"),
    )
    .await;
    let mut buf = Vec::new();
    read_until(&mut replaying, &mut buf, |b| {
        contains(b, "data: before 2\n")
    })
    .await;
    assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"), "{buf:?}");
    assert!(contains(&buf, "transfer-encoding: chunked\r\n"));
    assert!(contains(&buf, "content-type: text/event-stream\r\n"));
    assert!(!contains(&buf, "before 1"), "replayed from after {first}");
    assert!(contains(&buf, &format!("id: {second}\n")));

    // An anonymous subscriber and one allowed to see private updates on `p`.
    let mut anonymous = raw_h1(&hub, &cert, "/.well-known/mercure?topic=p", "").await;
    let token = common::token(&[], &["p"]);
    let mut allowed = raw_h1(
        &hub,
        &cert,
        "/.well-known/mercure?topic=p",
        &format!("Authorization: Bearer {token}\r\n"),
    )
    .await;
    let (mut seen_anonymous, mut seen_allowed) = (Vec::new(), Vec::new());
    read_until(&mut anonymous, &mut seen_anonymous, |b| {
        contains(b, "retry: 3000\n")
    })
    .await;
    read_until(&mut allowed, &mut seen_allowed, |b| {
        contains(b, "retry: 3000\n")
    })
    .await;
    subscribers(&hub, 3).await;
    let response = publisher
        .post(hub_url.clone())
        .bearer_auth(common::publisher())
        .form(&[("topic", "p"), ("data", "secret"), ("private", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    publish_to(&publisher, hub_url.clone(), "p", "public").await;
    read_until(&mut allowed, &mut seen_allowed, |b| {
        contains(b, "data: public\n")
    })
    .await;
    read_until(&mut anonymous, &mut seen_anonymous, |b| {
        contains(b, "data: public\n")
    })
    .await;
    assert!(contains(&seen_allowed, "data: secret\n"));
    assert!(
        !contains(&seen_anonymous, "secret"),
        "private update leaked"
    );

    // Heartbeats to the quiet subscriber, as chunks.
    let mut quiet = Vec::new();
    read_until(&mut replaying, &mut quiet, |b| contains(b, "\r\n:\n\r\n")).await;
}

/// A lagging TLS subscriber is told, its stream ends with the chunked terminator, and the
/// connection then serves the next request (through hyper, over the same TLS session, after
/// a key update from the client).
#[tokio::test]
async fn a_lagging_tls_http1_subscriber_is_closed_and_its_connection_stays_usable() {
    let cert = cert();
    let hub = start_tls_with_hub(
        &cert,
        Hub::builder()
            .heartbeat(None)
            .history_size(2)
            .max_queued(4, 256 * 1024)
            .build(),
    )
    .await;
    let mut tls = raw_h1(&hub, &cert, "/.well-known/mercure?topic=a", "").await;
    let mut buf = Vec::new();
    read_until(&mut tls, &mut buf, |b| b.ends_with(b"retry: 3000\n\r\n")).await;
    // Not reading: the socket fills, the queue overflows, history moves on.
    let publisher = client(&cert, false);
    let big = "x".repeat(60_000);
    for _ in 0..200 {
        publish_to(&publisher, https(&hub, "/.well-known/mercure"), "a", &big).await;
    }
    assert!(hub.hub.stats().lagged > 0);
    let mut buf = Vec::new();
    read_until(&mut tls, &mut buf, |b| b.ends_with(b"\r\n0\r\n\r\n")).await;
    assert!(contains(&buf, ssehub_hub::LAGGED_EVENT), "told it lagged");
    subscribers(&hub, 0).await;
    // A TLS 1.3 key update from the client first: the server must follow it (and answer with
    // its own) or the request below would not decrypt.
    tls.get_mut().1.refresh_traffic_keys().unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    read_until(&mut tls, &mut buf, |b| b.ends_with(b"\r\n\r\nok\n")).await;
    assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

/// Shutdown with a drain window: each TLS subscriber gets its own `retry:` frame, then the
/// chunked terminator and a close_notify; and a client that leaves is unsubscribed at once (close_notify or a
/// dropped socket).
#[tokio::test]
async fn tls_http1_subscribers_are_drained_and_leaving_unsubscribes() {
    let cert = cert();
    let tls_config =
        ssehub_server::tls::server_config(cert.cert_file.path(), cert.key_file.path()).unwrap();
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.tls = Some(tls_config);
        c.drain_timeout = Duration::from_millis(300);
    })
    .await;
    let mut streams = Vec::new();
    for _ in 0..4 {
        let mut tls = raw_h1(&hub, &cert, "/.well-known/mercure?topic=d", "").await;
        let mut buf = Vec::new();
        read_until(&mut tls, &mut buf, |b| b.ends_with(b"retry: 3000\n\r\n")).await;
        streams.push(tls);
    }
    subscribers(&hub, 4).await;
    // One says goodbye properly, one just drops its socket.
    let mut polite = streams.pop().unwrap();
    polite.shutdown().await.unwrap();
    drop(streams.pop());
    subscribers(&hub, 2).await;

    let started = Instant::now();
    let shutdown = tokio::spawn(hub.shutdown());
    for mut tls in streams {
        let mut buf = Vec::new();
        read_until(&mut tls, &mut buf, |b| b.ends_with(b"\r\n0\r\n\r\n")).await;
        let text = String::from_utf8_lossy(&buf);
        let retry = text
            .rsplit("retry: ")
            .next()
            .and_then(|rest| rest.split('\n').next())
            .and_then(|ms| ms.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no final retry: {text}"));
        assert!((3000..6000).contains(&retry), "retry {retry}");
        // Then a close_notify: tokio-rustls reports an end without one as an error.
        let mut rest = [0u8; 64];
        let end = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut rest)).await;
        assert!(matches!(end, Ok(Ok(0))), "{end:?}");
    }
    shutdown.await.unwrap().unwrap();
    assert!(started.elapsed() < Duration::from_secs(3));
}

/// Both protocol versions are served, and a returning client resumes its session (no full
/// handshake) on each: the sessions run on rustls' unbuffered API (src/tls/wire.rs), which
/// must carry the session tickets and the client's close_notify as the buffered one did.
#[tokio::test]
async fn more_clients_than_a_session_cache_holds_all_resume() {
    // 300 clients, each with its own session store, then each again: with stateless tickets all
    // resume. With rustls' default stateful cache (256 entries, two tickets per session) none
    // of the 300 did when this test was written.
    use rustls::HandshakeKind;
    let cert = cert();
    let hub = start_tls(&cert, |_| {}).await;
    let mut roots = RootCertStore::empty();
    roots.add(cert.der.clone()).unwrap();
    let connectors: Vec<_> = (0..300)
        .map(|_| {
            let provider = rustls::crypto::aws_lc_rs::default_provider();
            let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            tokio_rustls::TlsConnector::from(Arc::new(config))
        })
        .collect();
    let mut resumed = 0;
    for round in 0..2 {
        for connector in &connectors {
            let tcp = TcpStream::connect(hub.addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            // TLS 1.3 tickets arrive after the handshake: read the answer so the client has them.
            tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
                .await
                .expect("answered within 5 s")
                .unwrap();
            if round == 1 && tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed) {
                resumed += 1;
            }
        }
    }
    assert_eq!(resumed, 300, "every client resumed its session");
}

#[tokio::test]
async fn tls12_and_tls13_serve_and_resume_sessions() {
    use rustls::HandshakeKind;
    let cert = cert();
    let hub = start_tls(&cert, |_| {}).await;
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut roots = RootCertStore::empty();
        roots.add(cert.der.clone()).unwrap();
        let provider = rustls::crypto::aws_lc_rs::default_provider();
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let mut kinds = Vec::new();
        for _ in 0..2 {
            let tcp = TcpStream::connect(hub.addr).await.unwrap();
            let name = ServerName::try_from("127.0.0.1").unwrap();
            let mut tls = connector.connect(name, tcp).await.unwrap();
            assert_eq!(tls.get_ref().1.protocol_version(), Some(version.version));
            tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            // An end without the server's close_notify is an error here.
            tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer))
                .await
                .expect("answered and closed within 5 s")
                .unwrap();
            assert!(answer.ends_with(b"\r\n\r\nok\n"), "{answer:?}");
            kinds.push(tls.get_ref().1.handshake_kind());
        }
        assert_eq!(
            kinds,
            [Some(HandshakeKind::Full), Some(HandshakeKind::Resumed)],
            "{version:?}"
        );
    }
}
