//! Subscriber deadlines: `Subscription::expires_at` (the token's `exp`) and
//! `HubBuilder::max_connection_lifetime`, ended by the hub's one deadline task. Time is Tokio's
//! paused clock, so every test runs at once and end times are exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use ssehub_hub::{Hub, SubscriberStream, Subscription, Update};
use tokio::time::Instant;

fn sub(topic: &str) -> Subscription {
    Subscription::new().topic(topic).unwrap()
}

/// A subscription ending `secs` seconds of wall-clock time from now.
fn expiring(topic: &str, secs: u64) -> Subscription {
    sub(topic).expires_at(SystemTime::now() + Duration::from_secs(secs))
}

/// Reads the stream until it ends: when (since `start`, on the Tokio clock) and what it yielded.
async fn read_to_end(mut stream: SubscriberStream, start: Instant) -> (Duration, String) {
    let mut text = String::new();
    while let Some(bytes) = stream.next().await {
        text.push_str(std::str::from_utf8(&bytes).unwrap());
    }
    (start.elapsed(), text)
}

/// `at` is `want`, give or take `slack` (the wall-clock deadline is turned into a Tokio
/// instant with the real time that passed meanwhile, and the timer has 1 ms steps).
#[track_caller]
fn assert_near(at: Duration, want: Duration, slack: Duration) {
    assert!(
        at + slack >= want && at <= want + slack,
        "ended at {at:?}, want {want:?} ± {slack:?}"
    );
}

const SLACK: Duration = Duration::from_millis(10);

#[tokio::test(start_paused = true)]
async fn expires_at_ends_the_stream_at_the_deadline_after_what_was_published_before() {
    let hub = Hub::builder().heartbeat(None).build();
    let start = Instant::now();
    let stream = hub
        .subscribe(expiring("t", 10).preamble(Bytes::from_static(b":hi\n\n")))
        .unwrap();
    assert_eq!(hub.stats().deadlines, 1);
    let reader = tokio::spawn(read_to_end(stream, start));
    hub.publish(Update::new("t", "first")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(9_900)).await;
    hub.publish(Update::new("t", "last")).await.unwrap();
    assert!(!reader.is_finished(), "ended before its deadline");
    assert_eq!(hub.subscriber_count(), 1);

    let (at, text) = reader.await.unwrap();
    assert_near(at, Duration::from_secs(10), SLACK);
    assert!(text.starts_with(":hi\n\n"), "{text:?}");
    assert!(text.contains("data: first\n"), "{text:?}");
    assert!(
        text.ends_with("data: last\n\n"),
        "no event of its own: {text:?}"
    );
    // Gone from the hub, counted as a deadline close, not as the client going away.
    let stats = hub.stats();
    assert_eq!((stats.subscribers, stats.deadlines), (0, 0));
    assert_eq!(stats.closes.deadline, 1);
    assert_eq!(stats.closes.client_gone, 0);
    assert!(hub.publish(Update::new("t", "after")).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn two_subscribers_with_different_deadlines_end_in_deadline_order() {
    let hub = Hub::builder().heartbeat(None).build();
    let start = Instant::now();
    // The later one first: the task must not just serve the first entry it saw.
    let late = tokio::spawn(read_to_end(
        hub.subscribe(expiring("t", 20)).unwrap(),
        start,
    ));
    let early = tokio::spawn(read_to_end(
        hub.subscribe(expiring("t", 10)).unwrap(),
        start,
    ));
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert!(early.is_finished() && !late.is_finished());
    assert_eq!(hub.stats().deadlines, 1);
    hub.publish(Update::new("t", "at 15 s")).await.unwrap();

    let (early_at, early_text) = early.await.unwrap();
    let (late_at, late_text) = late.await.unwrap();
    assert_near(early_at, Duration::from_secs(10), SLACK);
    assert_near(late_at, Duration::from_secs(20), SLACK);
    assert_eq!(early_text, "");
    assert_eq!(late_text.matches("data: at 15 s\n").count(), 1);
    assert_eq!(hub.stats().closes.deadline, 2);
}

#[tokio::test(start_paused = true)]
async fn a_new_earlier_deadline_wakes_the_task_sleeping_until_a_later_one() {
    let hub = Hub::builder().heartbeat(None).build();
    let start = Instant::now();
    let late = tokio::spawn(read_to_end(
        hub.subscribe(expiring("t", 100)).unwrap(),
        start,
    ));
    // Let the task start and go to sleep until 100 s.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let early = tokio::spawn(read_to_end(hub.subscribe(expiring("t", 5)).unwrap(), start));
    let (early_at, _) = early.await.unwrap();
    assert_near(early_at, Duration::from_secs(6), SLACK);
    let (late_at, _) = late.await.unwrap();
    assert_near(late_at, Duration::from_secs(100), SLACK);
}

#[tokio::test(start_paused = true)]
async fn the_task_stops_when_the_index_empties_and_starts_again_for_a_new_deadline() {
    let hub = Hub::builder().heartbeat(None).build();
    let start = Instant::now();
    let (at, _) = read_to_end(hub.subscribe(expiring("t", 5)).unwrap(), start).await;
    assert_near(at, Duration::from_secs(5), SLACK);
    // A subscriber that leaves before its deadline empties the index too.
    drop(hub.subscribe(expiring("t", 5)).unwrap());
    tokio::time::sleep(Duration::from_secs(60)).await;
    let start = Instant::now();
    let (at, _) = read_to_end(hub.subscribe(expiring("t", 7)).unwrap(), start).await;
    assert_near(at, Duration::from_secs(7), SLACK);
    let closes = hub.stats().closes;
    assert_eq!((closes.deadline, closes.client_gone), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn max_connection_lifetime_ends_every_stream_within_the_last_tenth_spread_out() {
    let lifetime = Duration::from_secs(100);
    let hub = Hub::builder()
        .heartbeat(None)
        .max_connection_lifetime(Some(lifetime))
        .build();
    let start = Instant::now();
    let readers: Vec<_> = (0..50)
        .map(|_| tokio::spawn(read_to_end(hub.subscribe(sub("t")).unwrap(), start)))
        .collect();
    assert_eq!(hub.stats().deadlines, 50);
    tokio::time::sleep(Duration::from_secs(89)).await;
    assert!(readers.iter().all(|r| !r.is_finished()), "one ended early");
    hub.publish(Update::new("t", "late news")).await.unwrap();

    let mut ends = Vec::new();
    for r in readers {
        let (at, text) = r.await.unwrap();
        assert!(text.contains("data: late news\n"), "{text:?}");
        ends.push(at);
    }
    ends.sort();
    let (first, last) = (ends[0], ends[ends.len() - 1]);
    assert!(first >= lifetime * 9 / 10, "first ended at {first:?}");
    // The timer fires on the millisecond at or after the deadline.
    assert!(
        last <= lifetime + Duration::from_millis(1),
        "last at {last:?}"
    );
    let mut distinct = ends.clone();
    distinct.dedup();
    assert!(
        distinct.len() >= 45,
        "{} distinct end times",
        distinct.len()
    );
    // Uniform over 10 s: 50 draws span more than half of it (fails with odds below 1e-13).
    assert!(
        last - first >= Duration::from_secs(5),
        "{first:?}..{last:?}"
    );
    assert_eq!(hub.stats().closes.deadline, 50);
    assert_eq!(hub.stats().deadlines, 0);
}

#[tokio::test(start_paused = true)]
async fn a_subscriber_that_leaves_early_is_removed_from_the_deadline_index() {
    let hub = Hub::builder()
        .heartbeat(None)
        .max_connection_lifetime(Some(Duration::from_secs(3600)))
        .build();
    // Half from the lifetime alone, half with a token expiry too.
    let mut streams: Vec<_> = (0..100)
        .map(|i| {
            let s = if i % 2 == 0 {
                sub("t")
            } else {
                expiring("t", 600)
            };
            hub.subscribe(s).unwrap()
        })
        .collect();
    assert_eq!(hub.stats().deadlines, 100);
    streams.truncate(40);
    assert_eq!(hub.stats().deadlines, 40);
    // Churn does not grow it.
    for i in 0..1_000 {
        let s = hub
            .subscribe(if i % 2 == 0 {
                sub("t")
            } else {
                expiring("t", 1)
            })
            .unwrap();
        assert_eq!(hub.stats().deadlines, 41);
        drop(s);
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    let stats = hub.stats();
    assert_eq!((stats.subscribers, stats.deadlines), (40, 40));
    assert_eq!(stats.closes.deadline, 0, "all of them left on their own");
    assert_eq!(stats.closes.client_gone, 1_060);
    drop(streams);
    assert_eq!(hub.stats().deadlines, 0);
}

#[tokio::test(start_paused = true)]
async fn without_a_deadline_a_stream_stays_open_past_every_tick() {
    let hub = Hub::builder()
        .heartbeat(Some(Duration::from_secs(1)))
        .build();
    let start = Instant::now();
    let mut plain = hub.subscribe(sub("t")).unwrap();
    // Another subscriber's deadline keeps the deadline task busy meanwhile.
    let short = tokio::spawn(read_to_end(hub.subscribe(expiring("t", 5)).unwrap(), start));
    assert_eq!(hub.stats().deadlines, 1);
    let mut heartbeats = 0;
    let open_for_an_hour = tokio::time::timeout(Duration::from_secs(3600), async {
        while let Some(bytes) = plain.next().await {
            assert_eq!(bytes, ":\n");
            heartbeats += 1;
        }
    })
    .await;
    assert!(
        open_for_an_hour.is_err(),
        "the stream without a deadline ended"
    );
    assert!(heartbeats > 3000, "{heartbeats} heartbeats");
    let (at, _) = short.await.unwrap();
    assert_near(at, Duration::from_secs(5), SLACK);

    hub.publish(Update::new("t", "still here")).await.unwrap();
    let bytes = plain.next().await.unwrap();
    assert!(bytes.ends_with(b"data: still here\n\n"), "{bytes:?}");
    let stats = hub.stats();
    assert_eq!((stats.subscribers, stats.deadlines), (1, 0));
    assert_eq!(stats.closes.deadline, 1);
}

#[tokio::test(start_paused = true)]
async fn the_earliest_of_expires_at_and_max_lifetime_wins() {
    let hub = Hub::builder()
        .heartbeat(None)
        .max_connection_lifetime(Some(Duration::from_secs(100)))
        .build();
    let start = Instant::now();
    let token_first = tokio::spawn(read_to_end(
        hub.subscribe(expiring("t", 30)).unwrap(),
        start,
    ));
    let lifetime_first = tokio::spawn(read_to_end(
        hub.subscribe(expiring("t", 500)).unwrap(),
        start,
    ));
    // Several calls: the earliest stays, whatever the order.
    let now = SystemTime::now();
    let several = sub("t")
        .expires_at(now + Duration::from_secs(40))
        .expires_at(now + Duration::from_secs(20))
        .expires_at(now + Duration::from_secs(60));
    let several = tokio::spawn(read_to_end(hub.subscribe(several).unwrap(), start));

    let (at, _) = token_first.await.unwrap();
    assert_near(at, Duration::from_secs(30), SLACK);
    let (at, _) = several.await.unwrap();
    assert_near(at, Duration::from_secs(20), SLACK);
    let (at, _) = lifetime_first.await.unwrap();
    assert!(
        at >= Duration::from_secs(90) && at <= Duration::from_secs(100) + SLACK,
        "{at:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_deadline_already_past_yields_the_preamble_alone_and_is_never_registered() {
    let joins = Arc::new(AtomicUsize::new(0));
    let leaves = Arc::new(AtomicUsize::new(0));
    let hub = Hub::builder()
        .heartbeat(None)
        .on_join({
            let joins = joins.clone();
            move |_| {
                joins.fetch_add(1, Ordering::Relaxed);
            }
        })
        .on_leave({
            let leaves = leaves.clone();
            move |_| {
                leaves.fetch_add(1, Ordering::Relaxed);
            }
        })
        .build();
    hub.publish(Update::new("t", "retained")).await.unwrap();
    let start = Instant::now();
    for deadline in [SystemTime::now() - Duration::from_secs(1), UNIX_EPOCH] {
        let stream = hub
            .subscribe(
                sub("t")
                    .last_event_id("earliest")
                    .retained_state(true)
                    .preamble(Bytes::from_static(b"retry: 3000\n"))
                    .expires_at(deadline),
            )
            .unwrap();
        assert_eq!(stream.subscriber_id(), None);
        assert_eq!(hub.subscriber_count(), 0);
        let (at, text) = read_to_end(stream, start).await;
        assert_eq!(at, Duration::ZERO);
        assert_eq!(text, "retry: 3000\n", "no replay past the deadline");
    }
    assert_eq!(joins.load(Ordering::Relaxed), 0);
    assert_eq!(leaves.load(Ordering::Relaxed), 0);
    let stats = hub.stats();
    assert_eq!((stats.deadlines, stats.closes.deadline), (0, 2));
    // A closed hub still refuses.
    hub.close();
    assert!(
        hub.subscribe(sub("t").expires_at(UNIX_EPOCH)).is_err(),
        "a closed hub takes no subscription"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lagged_subscriber_ends_at_its_deadline_after_its_queue() {
    let hub = Hub::builder()
        .heartbeat(None)
        .history_size(4)
        .max_queued(2, 1 << 20)
        .build();
    let start = Instant::now();
    let stream = hub.subscribe(expiring("t", 10)).unwrap();
    for i in 0..10 {
        hub.publish(Update::new("t", format!("u{i}")))
            .await
            .unwrap();
    }
    assert_eq!(hub.stats().lagged, 1);
    // Nobody reads until after the deadline.
    tokio::time::sleep(Duration::from_secs(11)).await;
    let (at, text) = read_to_end(stream, start).await;
    assert_near(at, Duration::from_secs(11), SLACK);
    assert_eq!(text.matches("data: ").count(), 2, "{text:?}");
    assert!(text.contains("data: u0\n") && text.contains("data: u1\n"));
    let closes = hub.stats().closes;
    assert_eq!((closes.deadline, closes.lagged), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn closing_the_hub_first_ends_streams_as_a_shutdown() {
    let hub = Hub::builder().heartbeat(None).build();
    let start = Instant::now();
    let reader = tokio::spawn(read_to_end(
        hub.subscribe(expiring("t", 10)).unwrap(),
        start,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    hub.close();
    let (at, _) = reader.await.unwrap();
    assert_near(at, Duration::from_secs(3), SLACK);
    let closes = hub.stats().closes;
    assert_eq!((closes.shutdown, closes.deadline), (1, 0));
}

/// The real clock and a multi-threaded runtime, once: the deadline comes on time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_real_clock_a_stream_ends_at_its_deadline() {
    let hub = Hub::builder().heartbeat(None).build();
    let start = Instant::now();
    let stream = hub
        .subscribe(sub("t").expires_at(SystemTime::now() + Duration::from_millis(300)))
        .unwrap();
    let (at, _) = read_to_end(stream, start).await;
    assert!(
        at >= Duration::from_millis(290) && at < Duration::from_secs(2),
        "{at:?}"
    );
}
