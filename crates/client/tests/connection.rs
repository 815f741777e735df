//! The `EventSource` connection model over real TCP: request headers, status codes,
//! `Content-Type`, redirects, reconnection with the last event ID, `retry`, timeouts.

mod support;

use std::time::{Duration, Instant};

use ssehub_client::{
    Client, ClientBuilder, ClientError, ClientEvent, CloseReason, ReconnectPolicy, ReconnectReason,
};
use support::{
    End, Framing, Reply, TestServer, bounded, collect_all, message, msg, next, next_state,
};

/// Reconnects fast and without jitter, so tests can assert exact delays.
fn fast(url: String) -> ClientBuilder {
    Client::builder(url).reconnect(ReconnectPolicy {
        initial_delay: Duration::from_millis(10),
        max_delay: Duration::from_secs(2),
        jitter: 0.0,
        max_attempts: None,
    })
}

fn is_open(event: &ClientEvent) -> bool {
    matches!(event, ClientEvent::Open { .. })
}

/// Asserts no further request arrives for a while: the client did not reconnect.
async fn assert_no_more_requests(server: &mut TestServer) {
    tokio::time::sleep(Duration::from_millis(150)).await;
    let extra = server.received();
    assert!(extra.is_empty(), "unexpected requests: {extra:?}");
}

// --- requests ---

#[tokio::test]
async fn sends_the_event_stream_headers_and_custom_ones() {
    let mut server = TestServer::start(vec![Reply::sse(["data: a\n\n"])]).await;
    let client = fast(server.url("/events?match=a"))
        .header("Authorization", "Bearer abc")
        .unwrap()
        .header("X-Multi", "1")
        .unwrap()
        .header("X-Multi", "2")
        .unwrap()
        .no_reconnect()
        .build()
        .unwrap();
    let items = collect_all(&mut client.stream()).await;
    assert_eq!(items.len(), 3, "{items:?}");
    let request = server.request().await;
    assert_eq!(request.target, "/events?match=a");
    assert_eq!(request.header("accept"), Some("text/event-stream"));
    assert_eq!(request.header("cache-control"), Some("no-cache"));
    assert_eq!(request.header("authorization"), Some("Bearer abc"));
    assert_eq!(request.all("x-multi"), ["1", "2"]);
    assert_eq!(
        request.header("last-event-id"),
        None,
        "never an empty header"
    );
}

#[tokio::test]
async fn custom_accept_replaces_the_default() {
    let mut server = TestServer::start(vec![Reply::sse([""])]).await;
    let client = fast(server.url("/"))
        .header("accept", "text/event-stream, */*;q=0.1")
        .unwrap()
        .no_reconnect()
        .build()
        .unwrap();
    collect_all(&mut client.stream()).await;
    let request = server.request().await;
    assert_eq!(request.all("accept"), ["text/event-stream, */*;q=0.1"]);
}

#[tokio::test]
async fn sends_the_initial_last_event_id() {
    let mut server = TestServer::start(vec![Reply::sse(["data: a\n\n"])]).await;
    let client = fast(server.url("/"))
        .last_event_id("42")
        .no_reconnect()
        .build()
        .unwrap();
    let items = collect_all(&mut client.stream()).await;
    // The resumed id is in force until the server sends another.
    assert_eq!(items[1].as_ref().unwrap(), &msg("message", "a", "42"));
    assert_eq!(server.request().await.header("last-event-id"), Some("42"));
}

#[tokio::test]
async fn each_stream_starts_from_the_initial_id() {
    let mut server = TestServer::start(vec![Reply::sse(["id: 7\ndata: a\n\n"])]).await;
    let client = fast(server.url("/")).no_reconnect().build().unwrap();
    collect_all(&mut client.stream()).await;
    collect_all(&mut client.stream()).await;
    assert_eq!(server.request().await.header("last-event-id"), None);
    assert_eq!(server.request().await.header("last-event-id"), None);
}

// --- Content-Type ---

#[tokio::test]
async fn event_stream_content_types_with_parameters_or_any_case_are_accepted() {
    for content_type in [
        "text/event-stream;charset=utf-8",
        "TEXT/EVENT-STREAM",
        "Text/Event-Stream; charset=UTF-8",
    ] {
        let server = TestServer::start(vec![
            Reply::sse(["data: a\n\n"]).content_type(Some(content_type)),
        ])
        .await;
        let client = fast(server.url("/")).no_reconnect().build().unwrap();
        let items: Vec<_> = collect_all(&mut client.stream())
            .await
            .into_iter()
            .map(|item| item.unwrap())
            .collect();
        assert!(is_open(&items[0]), "{content_type}: {items:?}");
        assert_eq!(
            items[1..],
            [message("a"), ClientEvent::Closed(CloseReason::EndOfStream)]
        );
    }
}

#[tokio::test]
async fn other_or_missing_content_types_fail_without_reconnecting() {
    for content_type in [
        None,
        Some("text/plain"),
        Some("text/event-streams"),
        Some(""),
    ] {
        let mut server =
            TestServer::start(vec![Reply::sse(["data: a\n\n"]).content_type(content_type)]).await;
        let client = fast(server.url("/")).build().unwrap();
        let items = collect_all(&mut client.stream()).await;
        assert_eq!(items.len(), 1, "{content_type:?}: {items:?}");
        match &items[0] {
            Err(ClientError::ContentType {
                content_type: got, ..
            }) => {
                assert_eq!(got.as_deref(), content_type)
            }
            other => panic!("{content_type:?}: {other:?}"),
        }
        server.request().await;
        assert_no_more_requests(&mut server).await;
    }
}

// --- status codes ---

#[tokio::test]
async fn status_204_closes_for_good() {
    let mut server = TestServer::start(vec![Reply::status(204)]).await;
    let client = fast(server.url("/")).build().unwrap();
    let items: Vec<_> = collect_all(&mut client.stream())
        .await
        .into_iter()
        .map(|item| item.unwrap())
        .collect();
    assert_eq!(items, [ClientEvent::Closed(CloseReason::NoContent)]);
    server.request().await;
    assert_no_more_requests(&mut server).await;
}

#[tokio::test]
async fn error_statuses_fail_without_reconnecting() {
    for status in [404, 500, 201, 202] {
        let mut server = TestServer::start(vec![
            Reply::status(status).header("Content-Type", "text/event-stream"),
        ])
        .await;
        let client = fast(server.url("/x")).build().unwrap();
        let items = collect_all(&mut client.stream()).await;
        assert_eq!(items.len(), 1, "{status}: {items:?}");
        match &items[0] {
            Err(
                error @ ClientError::Status {
                    status: got,
                    url,
                    reason,
                },
            ) => {
                assert_eq!(reason, &None);
                assert_eq!(*got, status);
                assert_eq!(url, &server.url("/x"));
                assert!(!error.to_string().contains('\n'));
            }
            other => panic!("{status}: {other:?}"),
        }
        server.request().await;
        assert_no_more_requests(&mut server).await;
    }
}

#[tokio::test]
async fn a_refusal_carries_the_first_line_of_a_text_plain_body() {
    let refusal = Reply {
        status: 401,
        ..Reply::sse(["\r\ninvalid token: ", "ExpiredSignature\nsecond line\n"])
            .content_type(Some("Text/Plain; charset=utf-8"))
    };
    let server = TestServer::start(vec![refusal]).await;
    let client = fast(server.url("/x")).build().unwrap();
    let items = collect_all(&mut client.stream()).await;
    match &items[..] {
        [
            Err(
                error @ ClientError::Status {
                    status: 401,
                    reason,
                    ..
                },
            ),
        ] => {
            assert_eq!(reason.as_deref(), Some("invalid token: ExpiredSignature"));
            assert_eq!(
                error.to_string(),
                format!(
                    "{} answered HTTP 401, expected 200: invalid token: ExpiredSignature",
                    server.url("/x")
                )
            );
        }
        other => panic!("{other:?}"),
    }

    // Another media type is not read for a reason.
    let html = Reply {
        status: 500,
        ..Reply::sse(["<html>oops</html>\n"]).content_type(Some("text/html"))
    };
    let server = TestServer::start(vec![html]).await;
    let client = fast(server.url("/")).build().unwrap();
    let items = collect_all(&mut client.stream()).await;
    assert!(
        matches!(
            &items[..],
            [Err(ClientError::Status {
                status: 500,
                reason: None,
                ..
            })]
        ),
        "{items:?}"
    );
}

#[tokio::test]
async fn redirects_are_followed_and_reconnects_go_back_to_the_original_url() {
    for status in [301, 307] {
        // `/old` redirects to `/stream`, for the first connection and the reconnection.
        let mut server = TestServer::start(vec![
            Reply::redirect(status, "/stream"),
            Reply::sse(["id: 5\ndata: a\n\n"]),
            Reply::redirect(status, "/stream"),
            Reply::sse([""]).end(End::Hang),
        ])
        .await;
        let client = fast(server.url("/old")).build().unwrap();
        let mut stream = client.stream();
        let stream_url = server.url("/stream");
        let open = next_state(&mut stream).await;
        assert!(
            matches!(&open, ClientEvent::Open { url, .. } if *url == stream_url),
            "{open:?}"
        );
        assert_eq!(next_state(&mut stream).await, msg("message", "a", "5"));
        assert!(matches!(
            next_state(&mut stream).await,
            ClientEvent::Reconnecting {
                reason: ReconnectReason::EndOfStream,
                ..
            }
        ));
        assert!(is_open(&next_state(&mut stream).await));

        let mut seen = Vec::new();
        for _ in 0..4 {
            let request = server.request().await;
            seen.push((
                request.target.clone(),
                request.header("last-event-id").map(str::to_owned),
            ));
        }
        assert_eq!(
            seen,
            [
                ("/old".to_owned(), None),
                ("/stream".to_owned(), None),
                ("/old".to_owned(), Some("5".to_owned())),
                ("/stream".to_owned(), Some("5".to_owned())),
            ],
            "{status}"
        );
    }
}

#[tokio::test]
async fn a_redirect_loop_is_fatal() {
    let mut server = TestServer::start(vec![Reply::redirect(307, "/loop")]).await;
    let client = fast(server.url("/loop")).build().unwrap();
    let items = collect_all(&mut client.stream()).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert!(matches!(&items[0], Err(ClientError::Http(_))), "{items:?}");
    let redirects = server.received().len();
    assert!(redirects > 5, "{redirects}");
    assert_no_more_requests(&mut server).await;
}

// --- reconnection ---

#[tokio::test]
async fn clean_eof_reconnects_and_each_open_resets_the_attempt_count() {
    let mut server = TestServer::start(vec![
        Reply::sse(["data: a\n\n"]),
        Reply::sse(["data: b\n\n"]),
        Reply::sse(["data: c\n\n"]).end(End::Hang),
    ])
    .await;
    let client = fast(server.url("/")).build().unwrap();
    let mut stream = client.stream();
    for data in ["a", "b"] {
        assert!(is_open(&next_state(&mut stream).await));
        assert_eq!(next_state(&mut stream).await, message(data));
        assert_eq!(
            next_state(&mut stream).await,
            ClientEvent::Reconnecting {
                delay: Duration::from_millis(10),
                attempt: 1,
                reason: ReconnectReason::EndOfStream,
            }
        );
    }
    assert!(is_open(&next_state(&mut stream).await));
    assert_eq!(next_state(&mut stream).await, message("c"));
    assert_eq!(server.received().len(), 3);
}

#[tokio::test]
async fn reconnect_sends_the_last_id_and_drops_the_partial_event() {
    for (framing, end) in [
        (Framing::Chunked, End::Abort),
        (Framing::Close, End::Finish),
    ] {
        let mut server = TestServer::start(vec![
            Reply::sse(["id: 1\ndata: a\n\n", "id: 2\ndata: partial\n"])
                .framing(framing)
                .end(end),
            Reply::sse(["data: b\n\n"]).end(End::Hang),
        ])
        .await;
        let client = fast(server.url("/")).build().unwrap();
        let mut stream = client.stream();
        assert!(is_open(&next_state(&mut stream).await));
        assert_eq!(next_state(&mut stream).await, msg("message", "a", "1"));
        let reconnecting = next_state(&mut stream).await;
        let expected_reason_ok = match (&reconnecting, framing) {
            (
                ClientEvent::Reconnecting {
                    reason: ReconnectReason::Error(text),
                    ..
                },
                Framing::Chunked,
            ) => !text.contains('\n'),
            (
                ClientEvent::Reconnecting {
                    reason: ReconnectReason::EndOfStream,
                    ..
                },
                Framing::Close,
            ) => true,
            _ => false,
        };
        assert!(expected_reason_ok, "{framing:?}: {reconnecting:?}");
        assert!(is_open(&next_state(&mut stream).await));
        // The partial event (and its id) never surfaces; the last id in force is still 1.
        assert_eq!(next_state(&mut stream).await, msg("message", "b", "1"));

        assert_eq!(server.request().await.header("last-event-id"), None);
        assert_eq!(server.request().await.header("last-event-id"), Some("1"));
    }
}

#[tokio::test]
async fn a_partial_event_does_not_merge_with_the_next_connection() {
    // Without the reset, "data: x" from the first connection would join "data: y".
    let server = TestServer::start(vec![
        Reply::sse(["data: x\n", "da"]).framing(Framing::Close),
        Reply::sse(["ta: y\n\n", "data: z\n\n"]).end(End::Hang),
    ])
    .await;
    let client = fast(server.url("/")).build().unwrap();
    let mut stream = client.stream();
    assert!(is_open(&next_state(&mut stream).await));
    assert!(matches!(
        next_state(&mut stream).await,
        ClientEvent::Reconnecting { .. }
    ));
    assert!(is_open(&next_state(&mut stream).await));
    // "ta: y" is an unknown field "ta"; only "z" is an event.
    assert_eq!(next_state(&mut stream).await, message("z"));
}

#[tokio::test]
async fn an_emptied_id_sends_no_header_on_reconnect() {
    let mut server = TestServer::start(vec![
        Reply::sse(["id: 1\ndata: a\n\nid\ndata: b\n\n"]),
        Reply::sse([""]).end(End::Hang),
    ])
    .await;
    let client = fast(server.url("/")).build().unwrap();
    let mut stream = client.stream();
    assert!(is_open(&next_state(&mut stream).await));
    assert_eq!(next_state(&mut stream).await, msg("message", "a", "1"));
    assert_eq!(next_state(&mut stream).await, msg("message", "b", ""));
    assert!(matches!(
        next_state(&mut stream).await,
        ClientEvent::Reconnecting { .. }
    ));
    assert!(is_open(&next_state(&mut stream).await));
    for _ in 0..2 {
        assert_eq!(server.request().await.header("last-event-id"), None);
    }
}

#[tokio::test]
async fn an_id_that_cannot_be_a_header_value_is_kept_but_not_sent() {
    let mut server = TestServer::start(vec![
        Reply::sse(["id: a\x01b\ndata: x\n\n"]),
        Reply::sse([""]).end(End::Hang),
    ])
    .await;
    let client = fast(server.url("/")).build().unwrap();
    let mut stream = client.stream();
    assert!(is_open(&next_state(&mut stream).await));
    assert_eq!(
        next_state(&mut stream).await,
        msg("message", "x", "a\u{1}b")
    );
    assert!(matches!(
        next_state(&mut stream).await,
        ClientEvent::Reconnecting { .. }
    ));
    assert!(is_open(&next_state(&mut stream).await));
    for _ in 0..2 {
        assert_eq!(server.request().await.header("last-event-id"), None);
    }
}

#[tokio::test]
async fn a_non_ascii_id_is_sent_as_utf8() {
    let mut server = TestServer::start(vec![
        Reply::sse(["id: caf\u{e9}\ndata: x\n\n"]),
        Reply::sse([""]).end(End::Hang),
    ])
    .await;
    let client = fast(server.url("/")).build().unwrap();
    let mut stream = client.stream();
    assert!(is_open(&next_state(&mut stream).await));
    assert_eq!(
        next_state(&mut stream).await,
        msg("message", "x", "caf\u{e9}")
    );
    assert!(matches!(
        next_state(&mut stream).await,
        ClientEvent::Reconnecting { .. }
    ));
    assert!(is_open(&next_state(&mut stream).await));
    assert_eq!(server.request().await.header("last-event-id"), None);
    // The test server decodes the head lossily, so UTF-8 comes back intact only if sent as such.
    assert_eq!(
        server.request().await.header("last-event-id"),
        Some("caf\u{e9}")
    );
}

#[tokio::test]
async fn retry_from_a_block_without_data_is_honoured() {
    for body in ["retry: 300\n\n", "data: never dispatched\nretry: 300\n"] {
        let server =
            TestServer::start(vec![Reply::sse([body]), Reply::sse([""]).end(End::Hang)]).await;
        let client = Client::builder(server.url("/"))
            .reconnect(ReconnectPolicy {
                initial_delay: Duration::from_secs(30),
                jitter: 0.0,
                ..ReconnectPolicy::default()
            })
            .build()
            .unwrap();
        let mut stream = client.stream();
        assert!(is_open(&next_state(&mut stream).await));
        assert_eq!(
            next(&mut stream).await.unwrap().unwrap(),
            ClientEvent::Retry(Duration::from_millis(300))
        );
        let reconnecting = next_state(&mut stream).await;
        assert_eq!(
            reconnecting,
            ClientEvent::Reconnecting {
                delay: Duration::from_millis(300),
                attempt: 1,
                reason: ReconnectReason::EndOfStream,
            },
            "{body:?}"
        );
        let started = Instant::now();
        assert!(is_open(&next_state(&mut stream).await));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}

#[tokio::test]
async fn jitter_only_lengthens_the_wait() {
    let server = TestServer::start(vec![Reply::sse(["retry: 100\n\n"])]).await;
    let client = Client::builder(server.url("/"))
        .reconnect(ReconnectPolicy {
            jitter: 0.5,
            ..ReconnectPolicy::default()
        })
        .build()
        .unwrap();
    let mut stream = client.stream();
    assert!(is_open(&next_state(&mut stream).await));
    match next_state(&mut stream).await {
        ClientEvent::Reconnecting { delay, .. } => {
            assert!(
                delay >= Duration::from_millis(100) && delay <= Duration::from_millis(150),
                "{delay:?}"
            )
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn read_timeout_reconnects_with_the_last_id() {
    let mut server = TestServer::start(vec![
        Reply::sse(["id: 9\ndata: a\n\n", "data: stalled"]).end(End::Hang),
        Reply::sse(["data: b\n\n"]).end(End::Hang),
    ])
    .await;
    let client = fast(server.url("/"))
        .read_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let mut stream = client.stream();
    assert!(is_open(&next_state(&mut stream).await));
    assert_eq!(next_state(&mut stream).await, msg("message", "a", "9"));
    let started = Instant::now();
    assert_eq!(
        next_state(&mut stream).await,
        ClientEvent::Reconnecting {
            delay: Duration::from_millis(10),
            attempt: 1,
            reason: ReconnectReason::ReadTimeout,
        }
    );
    assert!(started.elapsed() >= Duration::from_millis(250));
    assert!(is_open(&next_state(&mut stream).await));
    assert_eq!(next_state(&mut stream).await, msg("message", "b", "9"));
    assert_eq!(server.request().await.header("last-event-id"), None);
    assert_eq!(server.request().await.header("last-event-id"), Some("9"));
}

#[tokio::test]
async fn read_timeout_also_covers_waiting_for_the_response_head() {
    let server = TestServer::start(vec![
        Reply::silent(),
        Reply::sse(["data: ok\n\n"]).end(End::Hang),
    ])
    .await;
    let client = fast(server.url("/"))
        .read_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let mut stream = client.stream();
    assert_eq!(
        next_state(&mut stream).await,
        ClientEvent::Reconnecting {
            delay: Duration::from_millis(10),
            attempt: 1,
            reason: ReconnectReason::ReadTimeout,
        }
    );
    assert!(is_open(&next_state(&mut stream).await));
    assert_eq!(next_state(&mut stream).await, message("ok"));
}

#[tokio::test]
async fn steady_heartbeats_keep_the_read_timeout_at_bay() {
    let server = TestServer::start(vec![
        Reply::sse([":hb\n", ":hb\n", ":hb\n", ":hb\n", "data: done\n\n"])
            .pause(Duration::from_millis(100)),
    ])
    .await;
    let client = fast(server.url("/"))
        .read_timeout(Duration::from_millis(400))
        .no_reconnect()
        .build()
        .unwrap();
    let items: Vec<_> = collect_all(&mut client.stream())
        .await
        .into_iter()
        .map(|item| item.unwrap())
        .filter(|event| !matches!(event, ClientEvent::Comment(_)))
        .collect();
    assert_eq!(
        items[1..],
        [
            message("done"),
            ClientEvent::Closed(CloseReason::EndOfStream)
        ]
    );
}

#[tokio::test]
async fn failed_attempts_back_off_exponentially_then_give_up() {
    // A port nothing listens on: bind, note it, close.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Client::builder(format!("http://127.0.0.1:{port}/"))
        .reconnect(ReconnectPolicy {
            initial_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(300),
            jitter: 0.0,
            max_attempts: Some(3),
        })
        .build()
        .unwrap();
    let items = collect_all(&mut client.stream()).await;
    let delays: Vec<_> = items
        .iter()
        .filter_map(|item| match item {
            Ok(ClientEvent::Reconnecting {
                delay,
                attempt,
                reason: ReconnectReason::Error(_),
            }) => Some((*attempt, delay.as_millis())),
            _ => None,
        })
        .collect();
    // The first retry waits the reconnection time; then doubling from at least 100 ms, capped.
    assert_eq!(delays, [(1, 10), (2, 200), (3, 300)], "{items:?}");
    match items.last() {
        Some(Err(error @ ClientError::GaveUp { attempts: 3, last })) => {
            assert!(matches!(**last, ClientError::Http(_)));
            let text = error.to_string();
            assert!(!text.contains('\n') && text.contains("127.0.0.1"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn without_reconnect_a_network_error_ends_the_stream() {
    let mut server = TestServer::start(vec![
        Reply::sse(["data: a\n\n", "data: partial\n"]).end(End::Abort),
    ])
    .await;
    let client = fast(server.url("/")).no_reconnect().build().unwrap();
    let items = collect_all(&mut client.stream()).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(items[1].as_ref().unwrap(), &message("a"));
    assert!(matches!(items[2], Err(ClientError::Http(_))), "{items:?}");
    server.request().await;
    assert_no_more_requests(&mut server).await;
}

#[tokio::test]
async fn connection_refused_without_reconnect_is_an_error() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = Client::builder(format!("http://127.0.0.1:{port}/"))
        .no_reconnect()
        .build()
        .unwrap();
    let items = collect_all(&mut client.stream()).await;
    assert_eq!(items.len(), 1);
    let error = items[0].as_ref().unwrap_err();
    assert!(matches!(error, ClientError::Http(_)));
    assert!(!error.to_string().contains('\n'), "{error}");
}

// --- limits and robustness ---

#[tokio::test]
async fn max_pending_bytes_bounds_an_endless_line() {
    let server = TestServer::start(vec![
        Reply::sse(["data: ", &"x".repeat(100), &"y".repeat(100)]).end(End::Hang),
    ])
    .await;
    let client = fast(server.url("/"))
        .max_pending_bytes(150)
        .build()
        .unwrap();
    let items = collect_all(&mut client.stream()).await;
    assert!(
        matches!(
            items.last(),
            Some(Err(ClientError::TooLarge { limit: 150 }))
        ),
        "{items:?}"
    );
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let server = TestServer::start(vec![Reply::sse(["data: a\n\n"]).end(End::Hang)]).await;
    let client = fast(server.url("/")).build().unwrap();
    let mut stream = client.stream();
    assert!(is_open(&next_state(&mut stream).await));
    drop(stream);
    // The server's `Hang` reads until the client goes away; nothing to assert beyond the
    // test finishing in bounded time with the server task idle.
    bounded(tokio::time::sleep(Duration::from_millis(20))).await;
}

#[test]
fn the_stream_is_send_and_the_client_is_send_sync() {
    fn send<T: Send>() {}
    fn send_sync<T: Send + Sync>() {}
    send::<ssehub_client::EventStream>();
    send_sync::<Client>();
    send_sync::<ClientError>();
}

#[test]
fn builder_errors_are_typed() {
    assert!(matches!(
        Client::builder("http://x/").header("bad name", "v"),
        Err(ClientError::InvalidHeader { .. })
    ));
    assert!(matches!(
        Client::builder("http://x/").header("x-ok", "line\nbreak"),
        Err(ClientError::InvalidHeader { .. })
    ));
    assert!(matches!(
        Client::builder("http://x/").header("Last-Event-ID", "1"),
        Err(ClientError::InvalidHeader { .. })
    ));
    assert!(matches!(
        Client::builder("not a url").build(),
        Err(ClientError::InvalidUrl { .. })
    ));
    assert!(matches!(
        Client::builder("ftp://example.com/").build(),
        Err(ClientError::InvalidUrl { .. })
    ));
    assert!(matches!(
        Client::builder("http://x/").last_event_id("a\nb").build(),
        Err(ClientError::InvalidLastEventId { .. })
    ));
    assert!(matches!(
        Client::builder("http://x/").add_root_certificate_pem(b"nope"),
        Err(ClientError::InvalidCertificate(_))
    ));
    let client = Client::builder("https://example.com/events")
        .build()
        .unwrap();
    assert_eq!(client.url(), "https://example.com/events");
}
