//! Black-box tests of the Mercure endpoint over real TCP: wire bytes, publish/subscribe,
//! replay, private updates, auth sources, CORS, limits and bad input, heartbeats, shutdown.

mod common;

use std::time::Duration;

use common::*;
use ssehub_codec::Frame;
use ssehub_hub::{HISTORY_GAP_EVENT, Hub};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn raw_socket_response_head_and_frames_are_exact() {
    let hub = start().await;
    let mut sock = TcpStream::connect(hub.addr).await.unwrap();
    sock.write_all(
        b"GET /.well-known/mercure?topic=https%3A%2F%2Fex.com%2Fa HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    // Head and the first chunk arrive at once, before anything is published.
    read_until(&mut sock, &mut buf, |b| {
        find(b, b"retry: 3000\n\r\n").is_some()
    })
    .await;
    let head_end = find(&buf, b"\r\n\r\n").unwrap() + 4;
    let head = String::from_utf8(buf[..head_end].to_vec()).unwrap();
    let mut lines: Vec<&str> = head.split("\r\n").collect();
    let date = lines
        .iter()
        .position(|l| l.starts_with("date: "))
        .expect("date header");
    lines.remove(date);
    assert_eq!(
        lines,
        [
            "HTTP/1.1 200 OK",
            "content-type: text/event-stream",
            "cache-control: no-cache",
            "x-accel-buffering: no",
            "last-event-id: earliest",
            "transfer-encoding: chunked",
            "",
            "",
        ]
    );
    assert!(!head.to_ascii_lowercase().contains("content-length"));
    // The retry advice alone, as a line that ends no frame (docs/DESIGN.md, "Wire format").
    assert_eq!(&buf[head_end..], b"C\r\nretry: 3000\n\r\n");

    let res = publish(
        &hub,
        &[
            ("topic", "https://ex.com/a"),
            ("data", "hello\nworld"),
            ("type", "greet"),
            ("id", "e1"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(res.text().await.unwrap(), "e1");

    let mut buf = Vec::new();
    let frame = b"event: greet\nid: e1\ndata: hello\ndata: world\n\n";
    read_until(&mut sock, &mut buf, |b| b.len() >= frame.len() + 6).await;
    let mut want = format!("{:X}\r\n", frame.len()).into_bytes();
    want.extend_from_slice(frame);
    want.extend_from_slice(b"\r\n");
    assert_eq!(buf, want);

    // Shutdown ends the stream cleanly: the chunked terminator, then EOF.
    hub.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), sock.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest, b"0\r\n\r\n");
}

#[tokio::test]
async fn publish_reaches_matching_subscribers_only() {
    let hub = start().await;
    let c = client();
    let mut books = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "https://ex.com/books/{id}")]),
    )
    .await;
    let mut authors = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "https://ex.com/authors/1")]),
    )
    .await;
    let id = publish(
        &hub,
        &[("topic", "https://ex.com/books/1"), ("data", "dune")],
    )
    .await
    .text()
    .await
    .unwrap();
    publish(
        &hub,
        &[("topic", "https://ex.com/authors/1"), ("data", "herbert")],
    )
    .await;
    let e = books.event().await;
    assert_eq!(
        (
            e.data.as_str(),
            e.last_event_id.as_str(),
            e.event_type.as_str()
        ),
        ("dune", id.as_str(), "message")
    );
    assert_eq!(authors.event().await.data, "herbert");
}

#[tokio::test]
async fn replay_from_query_and_header_and_gap_event() {
    let hub = start().await;
    let c = client();
    let mut ids = Vec::new();
    for i in 0..3 {
        let res = publish(&hub, &[("topic", "t"), ("data", &i.to_string())]).await;
        ids.push(res.text().await.unwrap());
    }
    let mut q = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "t"), ("lastEventID", &ids[0])]),
    )
    .await;
    assert_eq!(q.response.headers()["last-event-id"], ids[2].as_str());
    assert_eq!(q.event().await.data, "1");
    assert_eq!(q.event().await.data, "2");

    // The header wins over the query parameter.
    let mut h = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "t"), ("lastEventID", &ids[0])])
            .header("Last-Event-ID", &ids[1]),
    )
    .await;
    assert_eq!(h.event().await.data, "2");

    let mut e = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "t"), ("lastEventID", "earliest")]),
    )
    .await;
    assert_eq!(e.event().await.data, "0");

    let mut g = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "t")])
            .header("Last-Event-ID", "bogus"),
    )
    .await;
    let gap = g.event().await;
    assert_eq!(gap.event_type, HISTORY_GAP_EVENT);
    assert!(gap.data.contains("\"unknown\""));
    assert_eq!(g.event().await.data, "0");
}

#[tokio::test]
async fn private_updates_need_a_matching_subscriber_token_from_any_source() {
    let hub = start().await;
    let c = client();
    let sub_token = token(&[], &["https://ex.com/users/{id}"]);
    let mut anon = Events::open(c.get(hub.hub_url()).query(&[("topic", "*")])).await;
    let mut bearer = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "*")])
            .bearer_auth(&sub_token),
    )
    .await;
    let mut cookie = Events::open(c.get(hub.hub_url()).query(&[("topic", "*")]).header(
        "Cookie",
        format!("theme=dark; mercureAuthorization={sub_token}"),
    ))
    .await;
    let mut query = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "*"), ("authorization", &sub_token)]),
    )
    .await;
    let wrong = token(&[], &["https://ex.com/admins"]);
    let mut other = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "*")])
            .bearer_auth(wrong),
    )
    .await;

    publish(
        &hub,
        &[
            ("topic", "https://ex.com/users/1"),
            ("data", "secret"),
            ("private", "on"),
        ],
    )
    .await;
    publish(
        &hub,
        &[("topic", "https://ex.com/news"), ("data", "public")],
    )
    .await;
    for s in [&mut bearer, &mut cookie, &mut query] {
        assert_eq!(s.event().await.data, "secret");
        assert_eq!(s.event().await.data, "public");
    }
    assert_eq!(anon.event().await.data, "public");
    assert_eq!(other.event().await.data, "public");
}

/// Each bad request gets its status and a one-line reason; a subscriber connected all along
/// still receives the next good update and nothing else.
#[tokio::test]
async fn bad_input_gets_a_clear_status_and_disturbs_no_one() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.max_body = 1024
    })
    .await;
    let c = client();
    let mut watcher = Events::open(c.get(hub.hub_url()).query(&[("topic", "*")])).await;
    let post = |body: Vec<u8>| {
        c.post(hub.hub_url())
            .bearer_auth(publisher())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
    };
    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        ("no topic", post(b"data=x".to_vec()), 400, "topic"),
        (
            "invalid UTF-8 data",
            post(b"topic=a&data=%FF%FE".to_vec()),
            400,
            "UTF-8",
        ),
        (
            "raw invalid UTF-8",
            post(b"topic=a&data=\xff".to_vec()),
            400,
            "UTF-8",
        ),
        ("LF in id", post(b"topic=a&id=a%0Ab".to_vec()), 400, "id"),
        ("CR in id", post(b"topic=a&id=a%0Db".to_vec()), 400, "id"),
        (
            "CR in type",
            post(b"topic=a&type=a%0Db".to_vec()),
            400,
            "type",
        ),
        (
            "LF in type",
            post(b"topic=a&type=a%0Ab".to_vec()),
            400,
            "type",
        ),
        (
            "non-numeric retry",
            post(b"topic=a&retry=soon".to_vec()),
            400,
            "retry",
        ),
        (
            "over max body",
            post(format!("topic=a&data={}", "x".repeat(2000)).into_bytes()),
            413,
            "larger",
        ),
        (
            "wrong content type",
            c.post(hub.hub_url())
                .bearer_auth(publisher())
                .body("topic=a"),
            415,
            "Content-Type",
        ),
        (
            "missing token",
            c.post(hub.hub_url()).form(&[("topic", "a"), ("data", "x")]),
            401,
            "token is required",
        ),
        (
            "invalid token",
            c.post(hub.hub_url())
                .bearer_auth("not.a.jwt")
                .form(&[("topic", "a")]),
            401,
            "invalid token",
        ),
        (
            "token signed with another key",
            c.post(hub.hub_url())
                .bearer_auth(
                    ssehub_auth::encode_token(
                        &ssehub_auth::KeyConfig {
                            algorithm: ssehub_auth::Algorithm::HS256,
                            key: "other".into(),
                        },
                        Some(&["*"]),
                        None,
                        None,
                    )
                    .unwrap(),
                )
                .form(&[("topic", "a")]),
            401,
            "invalid token",
        ),
        (
            "token without the right selectors",
            c.post(hub.hub_url())
                .bearer_auth(token(&["https://ex.com/b"], &[]))
                .form(&[("topic", "a")]),
            403,
            "may not publish",
        ),
        (
            "subscriber token used to publish",
            c.post(hub.hub_url())
                .bearer_auth(token(&[], &["*"]))
                .form(&[("topic", "a")]),
            403,
            "may not publish",
        ),
        (
            "subscribe without topic",
            c.get(hub.hub_url()),
            400,
            "missing topic",
        ),
        (
            "over-long query string",
            c.get(format!("{}?topic={}", hub.hub_url(), "x".repeat(20_000))),
            400,
            "query string too long",
        ),
        (
            "too many selectors",
            c.get(format!(
                "{}?{}",
                hub.hub_url(),
                vec!["topic=a"; 200].join("&")
            )),
            400,
            "too many topic",
        ),
        (
            "invalid subscriber token",
            c.get(hub.hub_url())
                .query(&[("topic", "a")])
                .bearer_auth("garbage"),
            401,
            "invalid token",
        ),
        (
            "empty selector",
            c.get(format!("{}?topic=", hub.hub_url())),
            400,
            "selector",
        ),
    ];
    for (name, request, status, reason) in cases {
        let res = request.send().await.unwrap();
        assert_eq!(res.status().as_u16(), status, "{name}");
        let body = res.text().await.unwrap();
        assert!(body.contains(reason), "{name}: {body:?}");
        assert_eq!(
            body.trim_end().lines().count(),
            1,
            "{name}: one line: {body:?}"
        );
    }
    assert_eq!(hub.hub.stats().publishes, 0, "no bad publish was stored");
    publish(&hub, &[("topic", "a"), ("data", "still here")]).await;
    assert_eq!(watcher.event().await.data, "still here");
}

#[tokio::test]
async fn no_anonymous_requires_a_subscriber_token() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.anonymous = false
    })
    .await;
    let c = client();
    let res = c
        .get(hub.hub_url())
        .query(&[("topic", "a")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("subscriber token is required")
    );
    let mut ok = Events::open(
        c.get(hub.hub_url())
            .query(&[("topic", "a")])
            .bearer_auth(token(&[], &["a"])),
    )
    .await;
    publish(&hub, &[("topic", "a"), ("data", "hi")]).await;
    assert_eq!(ok.event().await.data, "hi");
}

#[tokio::test]
async fn cors_allows_listed_origins_only_with_credentials() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.cors_origins = vec!["https://app.example".into()];
    })
    .await;
    let c = client();
    let preflight = |origin: &str| {
        c.request(reqwest::Method::OPTIONS, hub.hub_url())
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization,content-type",
            )
    };
    let ok = preflight("https://app.example").send().await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let bad = preflight("https://evil.example").send().await.unwrap();
    assert!(bad.headers().get("access-control-allow-origin").is_none());

    // Cookie-authenticated publishing is allowed only from an allowed origin (CSRF).
    let cookie = format!("mercureAuthorization={}", publisher());
    let from = |origin: &str| {
        c.post(hub.hub_url())
            .header("Cookie", &cookie)
            .header("Origin", origin)
            .form(&[("topic", "a")])
    };
    assert_eq!(
        from("https://app.example").send().await.unwrap().status(),
        200
    );
    assert_eq!(
        from("https://evil.example").send().await.unwrap().status(),
        403
    );
}

#[tokio::test]
async fn healthz_answers() {
    let hub = start().await;
    let res = client().get(hub.url("/healthz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "ok\n");
}

#[tokio::test]
async fn idle_subscribers_get_heartbeat_comments() {
    let hub = start_with(
        Hub::builder()
            .heartbeat(Some(Duration::from_millis(200)))
            .build(),
        |_| {},
    )
    .await;
    let mut s = Events::open(client().get(hub.hub_url()).query(&[("topic", "a")])).await;
    assert_eq!(s.frame().await, Some(Frame::Retry(3000)), "preamble");
    assert_eq!(
        s.frame().await,
        Some(Frame::Comment(String::new())),
        "heartbeat"
    );
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_publishes_and_ends_streams() {
    let hub = start().await;
    let c = client();
    let mut s = Events::open(c.get(hub.hub_url()).query(&[("topic", "a")])).await;
    publish(&hub, &[("topic", "a"), ("data", "before")]).await;
    assert_eq!(s.event().await.data, "before");
    let core = hub.hub.clone();
    hub.shutdown().await.unwrap();
    assert!(core.is_closed());
    // The stream ends (clients reconnect) instead of hanging.
    while let Some(f) = s.frame().await {
        assert!(!matches!(f, Frame::Event(_)), "no event after shutdown");
    }
}

#[tokio::test]
async fn a_client_that_stopped_reading_does_not_hold_shutdown_hostage() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.shutdown_grace = Duration::from_millis(300);
    })
    .await;
    // A subscriber that never reads: its socket buffers fill up.
    let mut stuck = TcpStream::connect(hub.addr).await.unwrap();
    stuck
        .write_all(b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut reader = Events::open(client().get(hub.hub_url()).query(&[("topic", "b")])).await;
    let big = "x".repeat(60_000);
    for _ in 0..200 {
        publish(&hub, &[("topic", "a"), ("data", &big)]).await;
    }
    publish(&hub, &[("topic", "b"), ("data", "fine")]).await;
    assert_eq!(
        reader.event().await.data,
        "fine",
        "the stuck reader does not stall others"
    );
    let started = std::time::Instant::now();
    hub.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        started.elapsed()
    );
}
