//! reqwest-eventsource, the Rust member of the client matrix (tests/clients/ runs the npm,
//! browser and Python clients the same way), against a real `ssehub serve` over TCP: it must
//! deliver exactly the updates that were published (nothing the hub sent on its own, such as
//! the first bytes, heartbeats or the drain's last `retry:`, may come out as a message) and
//! wait the reconnection time the hub advised.
//!
//! reqwest-eventsource applies a `retry` only when it arrives in the same block as an event
//! with data (eventsource-stream drops a block without data, `retry` included), which is why
//! the hub sends its `retry:` line without a blank line after it (docs/DESIGN.md, "Wire
//! format").

mod common;

use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BIN, Served};
use futures_util::StreamExt;
use reqwest_eventsource::{Event, EventSource};

const ISSUER: &str = "https://issuer.ssehub.test";
const KEY: &str = "client-matrix-key-client-matrix-key";
/// Not reqwest-eventsource's own first delay (300 ms, doubling to 5 s), so the reconnect delay
/// shows whether the hub's advice was applied.
const RETRY: Duration = Duration::from_millis(1700);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Message {
    event: String,
    data: String,
    id: String,
}

/// What the client reported, as it came.
#[derive(Debug, Default)]
struct Seen {
    opens: Vec<Instant>,
    ends: Vec<Instant>,
    messages: Vec<Message>,
    retries: Vec<Duration>,
}

/// Polls `cond` on the record until it holds; fails the test after `within`, naming `what`.
async fn wait_for(seen: &Mutex<Seen>, within: Duration, what: &str, cond: impl Fn(&Seen) -> bool) {
    let deadline = Instant::now() + within;
    loop {
        if cond(&seen.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}; seen: {:#?}",
            seen.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

async fn publish(
    http: &reqwest::Client,
    hub_url: &str,
    token: &str,
    topic: &str,
    data: &str,
    event: Option<&str>,
) -> Message {
    let mut form = vec![("topic", topic), ("data", data)];
    if let Some(t) = event {
        form.push(("type", t));
    }
    let res = http
        .post(hub_url)
        .bearer_auth(token)
        .form(&form)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let id = res.text().await.unwrap();
    assert_eq!(status, 200, "publish refused: {id}");
    Message {
        event: event.unwrap_or("message").to_owned(),
        data: data.to_owned(),
        id,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reqwest_eventsource_delivers_exactly_what_was_published_and_applies_the_retry() {
    let hub = Served::start_modern(
        &[
            "--memory",
            "--no-console",
            "--issuer",
            ISSUER,
            "--jwt-key",
            KEY,
            "--retry",
            "1700ms",
            "--heartbeat",
            "250ms",
            "--max-connection-lifetime",
            "4s",
            "--drain-timeout",
            "300ms",
        ],
        &[],
    );
    let hub_url = hub.hub_url();
    let origin = hub_url.trim_end_matches("/.well-known/mercure").to_owned();
    let minted = Command::new(BIN)
        .args([
            "token",
            "--issuer",
            ISSUER,
            "--jwt-key",
            KEY,
            "--hub",
            &origin,
        ])
        .args(["--publish", "*"])
        .output()
        .unwrap();
    assert!(minted.status.success(), "ssehub token: {minted:?}");
    let token = String::from_utf8(minted.stdout).unwrap().trim().to_owned();
    let topic = "https://example.com/matrix/reqwest-eventsource";
    let http = reqwest::Client::new();

    let seen = Arc::new(Mutex::new(Seen::default()));
    let mut es = EventSource::get(format!("{hub_url}?match={topic}"));
    let reader = tokio::spawn({
        let seen = seen.clone();
        async move {
            while let Some(item) = es.next().await {
                let mut s = seen.lock().unwrap();
                match item {
                    Ok(Event::Open) => s.opens.push(Instant::now()),
                    Ok(Event::Message(m)) => {
                        if let Some(r) = m.retry {
                            s.retries.push(r);
                        }
                        s.messages.push(Message {
                            event: m.event,
                            data: m.data,
                            id: m.id,
                        });
                    }
                    // The stream ended (or, after the hub stopped, could not be reopened).
                    Err(_) => s.ends.push(Instant::now()),
                }
            }
        }
    });

    let scenario = async {
        wait_for(&seen, Duration::from_secs(10), "the stream to open", |s| {
            !s.opens.is_empty()
        })
        .await;
        let mut expected = Vec::new();
        for (data, event) in [
            ("hello", None),
            ("two\nlines", Some("note")),
            ("", None),
            (" leading space", None),
            ("héllo ✓ 🎉", None),
        ] {
            expected.push(publish(&http, &hub_url, &token, topic, data, event).await);
        }
        let n = expected.len();
        wait_for(&seen, Duration::from_secs(10), "the first updates", |s| {
            s.messages.len() >= n
        })
        .await;
        // Idle (heartbeats) until the hub ends the stream at its lifetime; publish while the
        // client waits to reconnect: it gets those by Last-Event-ID replay.
        wait_for(&seen, Duration::from_secs(15), "the stream to end", |s| {
            !s.ends.is_empty()
        })
        .await;
        for data in ["while away 1", "while away 2"] {
            expected.push(publish(&http, &hub_url, &token, topic, data, None).await);
        }
        wait_for(&seen, Duration::from_secs(15), "a reconnect", |s| {
            s.opens.len() >= 2
        })
        .await;
        expected.push(publish(&http, &hub_url, &token, topic, "after the reconnect", None).await);
        let n = expected.len();
        wait_for(&seen, Duration::from_secs(10), "every update", |s| {
            s.messages.len() >= n
        })
        .await;
        expected
    };
    let expected = tokio::time::timeout(Duration::from_secs(60), scenario)
        .await
        .expect("the scenario took over 60 s");

    // More heartbeats, then SIGTERM: the drain's last `retry:` and the end of the stream.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let retries = seen.lock().unwrap().retries.clone();
    let ends_before = seen.lock().unwrap().ends.len();
    let status = tokio::task::spawn_blocking(move || hub.terminate())
        .await
        .unwrap();
    assert!(status.success(), "ssehub serve exited with {status}");
    wait_for(
        &seen,
        Duration::from_secs(10),
        "the drained stream to end",
        |s| s.ends.len() > ends_before,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    reader.abort();

    let s = seen.lock().unwrap();
    assert_eq!(
        s.messages, expected,
        "reqwest-eventsource delivered other messages than were published"
    );
    let delay = s.opens[1] - s.ends[0];
    assert!(
        delay >= RETRY - Duration::from_millis(150) && delay <= RETRY + Duration::from_secs(1),
        "reconnected {delay:?} after the stream ended; the hub advised retry: {RETRY:?}"
    );
    assert!(
        !retries.is_empty() && retries.iter().all(|r| *r == RETRY),
        "retry values reported: {retries:?}, the hub advised {RETRY:?}"
    );
}
