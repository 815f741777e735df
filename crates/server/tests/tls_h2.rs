//! HTTP/2 subscribers over TLS (ALPN `h2`), over real TCP: events, heartbeats, replay from
//! `Last-Event-ID`, private updates only with a token allowing them, the lag close, the drain
//! on shutdown, and a stream reset unsubscribing at once; several streams share one connection
//! (reqwest keeps one HTTP/2 connection per origin).

mod common;

use std::time::{Duration, Instant};

use common::tls::{cert, client, https, publish_to, start_tls_with_hub, subscribers};
use common::{Events, start_with};
use reqwest::Version;
use ssehub_codec::Frame;
use ssehub_hub::Hub;

/// An HTTP/2 subscription by `client`, checked to be HTTP/2.
async fn open(client: &reqwest::Client, url: String, headers: &[(&str, &str)]) -> Events {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let events = Events::open(request).await;
    assert_eq!(events.response.version(), Version::HTTP_2);
    events
}

#[tokio::test]
async fn h2_subscribers_get_events_heartbeats_replay_and_private_updates() {
    let cert = cert();
    let hub = start_tls_with_hub(
        &cert,
        Hub::builder()
            .heartbeat(Some(Duration::from_millis(100)))
            .build(),
    )
    .await;
    let client = client(&cert, false);
    let hub_url = https(&hub, "/.well-known/mercure");
    let first = publish_to(&client, hub_url.clone(), "r", "before 1").await;
    let second = publish_to(&client, hub_url.clone(), "r", "before 2").await;

    // Replay: what follows the first update, then live ones.
    let mut replaying = open(
        &client,
        https(&hub, "/.well-known/mercure?topic=r"),
        &[("last-event-id", &first)],
    )
    .await;
    let event = replaying.event().await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("before 2", second.as_str())
    );

    // Streams of the same connection: an anonymous subscriber and one allowed to see
    // private updates on `p`.
    let topic_p = https(&hub, "/.well-known/mercure?topic=p");
    let mut anonymous = open(&client, topic_p.clone(), &[]).await;
    let bearer = format!("Bearer {}", common::token(&[], &["p"]));
    let mut allowed = open(&client, topic_p, &[("authorization", &bearer)]).await;
    subscribers(&hub, 3).await;
    let response = client
        .post(hub_url.clone())
        .bearer_auth(common::publisher())
        .form(&[("topic", "p"), ("data", "secret"), ("private", "on")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let public = publish_to(&client, hub_url.clone(), "p", "public").await;
    assert_eq!(allowed.event().await.data, "secret");
    assert_eq!(allowed.event().await.data, "public");
    let event = anonymous.event().await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("public", public.as_str()),
        "the private update must not reach a subscriber without a token for it"
    );

    // Live events after the replay, then heartbeats (comments) on the quiet stream.
    let live = publish_to(&client, hub_url, "r", "live").await;
    let event = replaying.event().await;
    assert_eq!(
        (event.data.as_str(), event.last_event_id.as_str()),
        ("live", live.as_str())
    );
    let mut heartbeats = 0;
    while heartbeats < 2 {
        match replaying.frame().await {
            Some(Frame::Comment(_)) => heartbeats += 1,
            Some(Frame::Event(e)) => panic!("unexpected event {e:?}"),
            Some(Frame::Retry(_)) => {}
            None => panic!("stream ended"),
        }
    }
}

/// A subscriber whose client stops reading (its HTTP/2 stream window fills) falls behind the
/// history: it is told it lagged and its stream ends cleanly; the connection keeps serving.
#[tokio::test]
async fn a_lagging_h2_subscriber_is_told_and_its_stream_ends() {
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
    // A small stream window, so a stream not read stops the server's sends soon.
    let client = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(cert.pem.as_bytes()).unwrap()])
        .http2_initial_stream_window_size(65_535)
        .http2_initial_connection_window_size(16 * 1024 * 1024)
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let mut events = open(&client, https(&hub, "/.well-known/mercure?topic=a"), &[]).await;
    subscribers(&hub, 1).await;
    let big = "x".repeat(60_000);
    for _ in 0..200 {
        publish_to(&client, https(&hub, "/.well-known/mercure"), "a", &big).await;
    }
    assert!(hub.hub.stats().lagged > 0);
    let mut told = false;
    while let Some(frame) = events.frame().await {
        if let Frame::Event(e) = &frame {
            told |= e.event_type.contains(ssehub_hub::LAGGED_EVENT)
                || e.data.contains(ssehub_hub::LAGGED_EVENT);
        }
    }
    assert!(told, "told it lagged before the stream ended");
    subscribers(&hub, 0).await;
    let health = client.get(https(&hub, "/healthz")).send().await.unwrap();
    assert_eq!(health.version(), Version::HTTP_2);
    assert_eq!(health.text().await.unwrap(), "ok\n");
}

/// Shutdown with a drain window: each HTTP/2 subscriber gets a `retry:` frame, the last of its
/// stream, then the stream ends cleanly (no reset); a stream the client resets is
/// unsubscribed at once.
#[tokio::test]
async fn h2_subscribers_are_drained_with_a_retry_and_a_reset_unsubscribes() {
    let cert = cert();
    let tls_config =
        ssehub_server::tls::server_config(cert.cert_file.path(), cert.key_file.path()).unwrap();
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.tls = Some(tls_config);
        c.drain_timeout = Duration::from_millis(300);
    })
    .await;
    let client = client(&cert, false);
    let mut streams = Vec::new();
    for _ in 0..3 {
        let url = https(&hub, "/.well-known/mercure?topic=d");
        streams.push(open(&client, url, &[]).await);
    }
    subscribers(&hub, 3).await;
    // Dropping the response resets its stream (RST_STREAM): the others stay.
    drop(streams.pop());
    subscribers(&hub, 2).await;

    let started = Instant::now();
    let shutdown = tokio::spawn(hub.shutdown());
    for mut events in streams {
        let mut last = None;
        // `frame` fails the test on a stream error (a reset rather than a clean end).
        while let Some(frame) = events.frame().await {
            assert!(!matches!(frame, Frame::Event(_)), "{frame:?}");
            last = Some(frame);
        }
        match last {
            Some(Frame::Retry(ms)) => assert!((3000..6000).contains(&ms), "retry {ms}"),
            other => panic!("the stream's last frame is not a retry: {other:?}"),
        }
    }
    shutdown.await.unwrap().unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "shutdown took {:?}",
        started.elapsed()
    );
}
