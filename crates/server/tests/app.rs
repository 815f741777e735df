//! The primitives for your own axum app, black-box over real TCP: `serve` with the hub's drain
//! at shutdown, the `events` route and the `LastEventId` extractor, hub errors as responses,
//! and `LiveState` on a durable log across a restart.

use std::path::Path;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use ssehub_server::{
    ApiError, Hub, LastEventId, LiveState, PublishError, Sse, Subscription, Update, events, serve,
};
use ssehub_store::{DurableHub, Log, LogOptions, RetainPolicy};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Serves `app` with `hub` on a free port until the returned sender fires.
async fn start(
    app: Router,
    hub: Hub,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = ssehub_server::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        serve(listener, app, hub)
            .drain(Duration::from_millis(200), Duration::from_millis(1000))
            .with_graceful_shutdown(async {
                let _ = stopped.await;
            })
            .into_future(),
    );
    (addr, stop, server)
}

use std::future::IntoFuture as _;

/// Sends a raw request; returns the connection.
async fn request(addr: &str, head: &str) -> TcpStream {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(head.as_bytes()).await.unwrap();
    tcp
}

/// Reads until `needle` has arrived (or the connection ends); bounded by 5 s.
async fn read_until(tcp: &mut TcpStream, got: &mut String, needle: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 4096];
    while !got.contains(needle) {
        let n = tokio::time::timeout_at(deadline, tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} within 5 s in {got:?}"))
            .unwrap();
        if n == 0 {
            break;
        }
        got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
}

/// A whole (non-streaming) answer.
async fn answer(addr: &str, head: &str) -> String {
    let mut tcp = request(addr, head).await;
    let mut got = String::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_string(&mut got))
        .await
        .unwrap()
        .unwrap();
    got
}

#[tokio::test]
async fn events_route_resumes_from_last_event_id_and_serve_drains_at_shutdown() {
    let hub = Hub::builder().build();
    let app = Router::new()
        .route(
            "/events",
            events(
                &hub,
                Subscription::to("news").retry(Duration::from_millis(2500)),
            ),
        )
        .route("/healthz", get("ok"));
    let (addr, stop, server) = start(app, hub.clone()).await;

    let first = hub.publish(Update::new("news", "one")).await.unwrap();
    hub.publish(Update::new("news", "two")).await.unwrap();

    // The header: replay after `one`.
    let mut header = request(
        &addr,
        &format!("GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {first}\r\n\r\n"),
    )
    .await;
    let mut got = String::new();
    read_until(&mut header, &mut got, "data: two\n\n").await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("content-type: text/event-stream\r\n"), "{got}");
    assert!(got.contains("\r\n\r\n"), "{got}");
    assert!(got.contains("retry: 2500\n"), "{got}");
    assert!(!got.contains("data: one"), "replayed what it had: {got}");

    // The query parameter (percent-encoded `#`), as a first request may carry it.
    let encoded = first.replace('#', "%23");
    let mut query = request(
        &addr,
        &format!("GET /events?lastEventID={encoded} HTTP/1.1\r\nHost: x\r\n\r\n"),
    )
    .await;
    let mut got_query = String::new();
    read_until(&mut query, &mut got_query, "data: two\n\n").await;
    assert!(!got_query.contains("data: one"), "{got_query}");

    // Shutdown: the listener closes, each stream gets its last `retry:` and ends.
    stop.send(()).unwrap();
    for (tcp, got) in [(&mut header, &mut got), (&mut query, &mut got_query)] {
        read_until(tcp, got, "0\r\n\r\n").await;
        let tail = got.rsplit("data: two\n\n").next().unwrap();
        assert!(
            tail.contains("retry: 1") && tail.ends_with("\n\r\n0\r\n\r\n"),
            "no drain retry then end: {tail:?}"
        );
    }
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve returns once the streams ended")
        .unwrap()
        .unwrap();
    assert!(hub.is_closed());
    assert!(TcpStream::connect(&addr).await.is_err(), "still accepting");
}

async fn own_events(State(hub): State<Hub>, last: LastEventId) -> Result<Sse, ApiError> {
    let sub = Subscription::to("a").exact("").resume(last);
    Ok(Sse::new(hub.subscribe(sub)?))
}

async fn publish_twice(State(hub): State<Hub>) -> Result<String, ApiError> {
    hub.publish(Update::new("a", "x").id("same")).await?;
    Ok(hub.publish(Update::new("a", "x").id("same")).await?)
}

#[tokio::test]
async fn hub_errors_are_answers_with_a_status_and_a_one_line_reason() {
    let hub = Hub::new();
    let app = Router::new()
        .route("/bad-topic", get(own_events))
        .route("/twice", post(publish_twice))
        .route("/events", events(&hub, Subscription::to("a")))
        .with_state(hub.clone());
    let (addr, _stop, _server) = start(app, hub.clone()).await;

    let bad = answer(
        &addr,
        "GET /bad-topic HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(bad.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{bad}");
    assert!(
        bad.ends_with("\r\n\r\ninvalid topic: selector is empty\n"),
        "{bad}"
    );

    let header = answer(
        &addr,
        "GET /events HTTP/1.1\r\nHost: x\r\nLast-Event-ID: caf\u{e9}\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        header.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{header}"
    );
    assert!(
        header.ends_with("Last-Event-ID header is not visible ASCII\n"),
        "{header}"
    );

    let twice = answer(
        &addr,
        "POST /twice HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(twice.starts_with("HTTP/1.1 409 Conflict\r\n"), "{twice}");
    assert!(
        twice.ends_with("id is already used by a retained update\n"),
        "{twice}"
    );

    hub.close();
    let closed = answer(
        &addr,
        "GET /events HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        closed.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{closed}"
    );
    assert!(closed.contains("retry-after: 1\r\n"), "{closed}");
    assert!(closed.ends_with("the hub is shutting down\n"), "{closed}");
}

/// Reopens the log once the dropped hub's writer has let go of the file.
async fn reopen(dir: &Path) -> Log {
    for _ in 0..100 {
        if let Ok(log) = Log::open(dir, LogOptions::default()) {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the log in {} was not released", dir.display());
}

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Votes {
    yes: u64,
    no: u64,
}

/// The voting and nests shapes on a durable log: each change is on disk before it is applied,
/// a restart restores the state (a list by replay, a value from the latest-per-topic index
/// even once the log trimmed every update), and a subscriber over TCP gets the whole state
/// then the changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_state_survives_a_restart_and_streams_snapshot_then_changes_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let log = Log::open(dir.path(), LogOptions::default()).unwrap();
    let hub = Hub::builder().durable(log.clone()).try_build().unwrap();
    let list = LiveState::<Vec<String>, String>::list(&hub, "nests")
        .await
        .unwrap();
    let votes = LiveState::<Votes>::value(&hub, "votes").await.unwrap();
    // More than one page of the log's replay.
    for i in 0..300 {
        list.update(move |_| Ok::<_, PublishError>(format!("nest-{i}")))
            .await
            .unwrap();
    }
    for i in 0..30u64 {
        votes
            .update(move |v| {
                Ok::<_, PublishError>(Votes {
                    yes: v.yes + i % 2,
                    no: v.no + 1 - i % 2,
                })
            })
            .await
            .unwrap();
    }
    assert_eq!(log.len(), 330);
    hub.close();
    drop((hub, list, votes, log));

    let log = reopen(dir.path()).await;
    let hub = Hub::builder().durable(log.clone()).try_build().unwrap();
    let list = LiveState::<Vec<String>, String>::list(&hub, "nests")
        .await
        .unwrap();
    let expected: Vec<String> = (0..300).map(|i| format!("nest-{i}")).collect();
    assert_eq!(list.read(Clone::clone).await, expected);

    // Trim every update: the value comes back from the index.
    log.trim(&RetainPolicy {
        count: Some(0),
        ..RetainPolicy::default()
    })
    .unwrap();
    let votes = LiveState::<Votes>::value(&hub, "votes").await.unwrap();
    assert_eq!(votes.read(Clone::clone).await, Votes { yes: 15, no: 15 });

    async fn stream(State(votes): State<LiveState<Votes>>) -> Result<Sse, ApiError> {
        Ok(Sse::new(votes.subscribe().await?))
    }
    let app = Router::new()
        .route("/stream", get(stream))
        .with_state(votes.clone());
    let (addr, _stop, _server) = start(app, hub.clone()).await;
    let mut tcp = request(&addr, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let mut got = String::new();
    read_until(&mut tcp, &mut got, "\n\n").await;
    let body = got.split("\r\n\r\n").nth(1).unwrap();
    // One chunk (0x26 bytes): the retry advice and the snapshot, with no id.
    assert_eq!(
        body,
        "26\r\nretry: 3000\ndata: {\"yes\":15,\"no\":15}\n\n\r\n"
    );
    assert_eq!(votes.subscribers(), 1);
    votes
        .update(|v| {
            Ok::<_, PublishError>(Votes {
                yes: v.yes + 1,
                ..*v
            })
        })
        .await
        .unwrap();
    read_until(&mut tcp, &mut got, "data: {\"yes\":16,\"no\":15}\n\n").await;
    assert_eq!(got.matches("data: ").count(), 2, "{got}");
}
