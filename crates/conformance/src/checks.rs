//! The checks. Each takes the backend's [`MakeHub`] and [`Abilities`], builds its own hub(s)
//! and asserts what every backend must do.

use std::time::Duration;

use ssehub_hub::{
    EARLIEST, HISTORY_GAP_EVENT, Hub, LAGGED_EVENT, PublishError, Selector, Subscription, Update,
};

use crate::{Abilities, Ev, Fixture, MakeHub, Reader, Setup};

/// The suite's limits: a ring larger than any check publishes (so the ring serves replay unless
/// a check asks otherwise), queues of 1,024 frames.
fn builder(history: usize, max_queued_frames: usize) -> ssehub_hub::HubBuilder {
    Hub::builder()
        .heartbeat(None)
        .history_size(history)
        .max_queued(max_queued_frames, 4 * 1024 * 1024)
}

async fn fixture(make: MakeHub, history: usize, setup: Setup) -> Fixture {
    make(builder(history, 1024), setup).await
}

fn sub(topics: &[&str]) -> Subscription {
    let mut s = Subscription::new();
    for t in topics {
        s = s.topic(t).expect("a valid selector");
    }
    s
}

fn reader(hub: &Hub, s: Subscription) -> Reader {
    Reader::new(hub.subscribe(s).expect("subscribe"))
}

/// Publishes `data` on `topic`, returning its id.
async fn publish(hub: &Hub, topic: &str, data: impl Into<String>) -> String {
    hub.publish(Update::new(topic, data))
        .await
        .expect("publish")
}

/// Waits until the hub delivered the update with this id (a log may deliver after it answers).
async fn delivered(hub: &Hub, id: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while hub.last_event_id().as_deref() != Some(id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} was not delivered"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn datas(events: &[Ev]) -> Vec<&str> {
    events.iter().map(|e| e.data.as_str()).collect()
}

fn numbers(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| i.to_string()).collect()
}

/// Publishes `0..n` on `topic`; returns the ids.
async fn publish_numbers(hub: &Hub, topic: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(publish(hub, topic, i.to_string()).await);
    }
    ids
}

/// One total order: every subscriber gets every update once, in publish order, with the id its
/// publish returned; publisher ids are kept, backend ids are unique.
pub async fn order_and_ids(make: MakeHub, _: Abilities) {
    let f = fixture(make, 1000, Setup::default()).await;
    let hub = &f.hub;
    let mut all = reader(hub, sub(&["*"]));
    let mut only_a = reader(hub, sub(&["a"]));
    let mut ids = Vec::new();
    for i in 0..20 {
        let topic = if i % 2 == 0 { "a" } else { "b" };
        let mut u = Update::new(topic, i.to_string());
        if i == 7 {
            u = u.id(format!("publisher-{i}"));
        }
        ids.push(hub.publish(u).await.expect("publish"));
    }
    assert_eq!(ids[7], "publisher-7");
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ids.len(), "ids are unique: {ids:?}");
    let got = all.take(20).await;
    assert_eq!(datas(&got), numbers(0..20));
    let got_ids: Vec<&str> = got.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(got_ids, ids);
    let got = only_a.take(10).await;
    assert_eq!(
        datas(&got),
        ["0", "2", "4", "6", "8", "10", "12", "14", "16", "18"]
    );
    all.quiet().await;
    only_a.quiet().await;
}

/// Replay after a backend id and after a publisher id, then live updates, nothing twice.
pub async fn replay_after_an_id(make: MakeHub, _: Abilities) {
    let f = fixture(make, 1000, Setup::default()).await;
    let hub = &f.hub;
    let mut ids = publish_numbers(hub, "t", 5).await;
    ids.push(
        hub.publish(Update::new("t", "5").id("mine-5"))
            .await
            .expect("publish"),
    );
    ids.extend(publish_numbers(hub, "t", 3).await);
    delivered(hub, &ids[8]).await;
    let mut r = reader(hub, sub(&["t"]).last_event_id(&ids[2]));
    assert_eq!(r.stream().cursor(), Some(ids[2].as_str()));
    assert_eq!(datas(&r.take(6).await), ["3", "4", "5", "0", "1", "2"]);
    let mut p = reader(hub, sub(&["t"]).last_event_id("mine-5"));
    assert_eq!(datas(&p.take(3).await), ["0", "1", "2"]);
    let live = publish(hub, "t", "live").await;
    assert_eq!(r.take(1).await[0].id, live);
    assert_eq!(datas(&p.take(1).await), ["live"]);
    r.quiet().await;
    p.quiet().await;
}

/// `earliest` replays everything retained, oldest first, then live updates.
pub async fn earliest_replays_everything_retained(make: MakeHub, _: Abilities) {
    let f = fixture(make, 1000, Setup::default()).await;
    let hub = &f.hub;
    let ids = publish_numbers(hub, "t", 10).await;
    delivered(hub, &ids[9]).await;
    let mut r = reader(hub, sub(&["t"]).last_event_id(EARLIEST));
    assert_eq!(r.stream().cursor(), Some(EARLIEST));
    let got = r.take(10).await;
    assert_eq!(datas(&got), numbers(0..10));
    publish(hub, "t", "live").await;
    assert_eq!(datas(&r.take(1).await), ["live"]);
    r.quiet().await;
}

/// An id the backend never gave gets the gap notice (`unknown`), then everything retained.
pub async fn an_unknown_id_gets_the_gap_then_everything(make: MakeHub, _: Abilities) {
    let f = fixture(make, 1000, Setup::default()).await;
    let hub = &f.hub;
    let ids = publish_numbers(hub, "t", 4).await;
    delivered(hub, &ids[3]).await;
    let mut r = reader(hub, sub(&["t"]).last_event_id("never-published"));
    let got = r.take(5).await;
    assert_eq!(got[0].event_type, HISTORY_GAP_EVENT);
    let gap: serde_json::Value = serde_json::from_str(&got[0].data).expect("gap JSON");
    assert_eq!(gap["reason"], "unknown");
    assert_eq!(gap["lastEventID"], "never-published");
    assert_eq!(gap["oldest"], ids[0].as_str());
    assert_eq!(datas(&got[1..]), numbers(0..4));
    r.quiet().await;
}

/// `retained=latest`: the newest update of each selected topic, oldest first, each once, then
/// live updates.
pub async fn retained_latest_per_topic(make: MakeHub, _: Abilities) {
    let f = fixture(make, 1000, Setup::default()).await;
    let hub = &f.hub;
    publish(hub, "a", "a1").await;
    publish(hub, "b", "b1").await;
    publish(hub, "c", "c1").await;
    hub.publish(Update::new("a", "a2").topic("b"))
        .await
        .expect("publish");
    let last = publish(hub, "b", "b2").await;
    delivered(hub, &last).await;
    let mut r = reader(hub, sub(&["a", "b"]).retained_state(true));
    assert_eq!(datas(&r.take(2).await), ["a2", "b2"]);
    publish(hub, "a", "a3").await;
    assert_eq!(datas(&r.take(1).await), ["a3"]);
    r.quiet().await;
}

/// A publisher id still retained is refused (replay from it would be ambiguous).
pub async fn duplicate_publisher_ids_are_refused(make: MakeHub, _: Abilities) {
    let f = fixture(make, 1000, Setup::default()).await;
    let hub = &f.hub;
    let first = hub.publish(Update::new("t", "1").id("same")).await;
    assert_eq!(first.as_deref(), Ok("same"));
    let again = hub.publish(Update::new("t", "2").id("same")).await;
    assert_eq!(again, Err(PublishError::DuplicateId));
    let other = hub.publish(Update::new("t", "3").id("other")).await;
    assert_eq!(other.as_deref(), Ok("other"));
}

/// Private updates reach only subscribers authorized for one of their topics, on replay as
/// live.
pub async fn private_updates_on_replay(make: MakeHub, _: Abilities) {
    let f = fixture(make, 1000, Setup::default()).await;
    let hub = &f.hub;
    publish(hub, "open", "public-1").await;
    hub.publish(Update::new("secret", "private-1").private(true))
        .await
        .expect("publish");
    let last = publish(hub, "open", "public-2").await;
    delivered(hub, &last).await;
    let selectors = || sub(&["open", "secret"]).last_event_id(EARLIEST);
    let mut stranger = reader(hub, selectors());
    let grant: std::sync::Arc<[Selector]> =
        vec![Selector::parse("secret").expect("selector")].into();
    let mut insider = reader(hub, selectors().authorized(grant));
    assert_eq!(datas(&stranger.take(2).await), ["public-1", "public-2"]);
    assert_eq!(
        datas(&insider.take(3).await),
        ["public-1", "private-1", "public-2"]
    );
    hub.publish(Update::new("secret", "private-2").private(true))
        .await
        .expect("publish");
    publish(hub, "open", "public-3").await;
    assert_eq!(datas(&stranger.take(1).await), ["public-3"]);
    assert_eq!(datas(&insider.take(2).await), ["private-2", "public-3"]);
    stranger.quiet().await;
}

/// Retention by count: at least `count` newest updates stay, older ones go; an id that is no
/// longer retained gets the gap notice (`expired`), then the retained updates, contiguous.
pub async fn retention_by_count_and_the_expired_gap(make: MakeHub, _: Abilities) {
    const COUNT: usize = 50;
    const N: usize = 300;
    let setup = Setup {
        retain_count: Some(COUNT as u64),
        ..Setup::default()
    };
    // A small ring: a node's ring may still hold what its log trimmed.
    let f = fixture(make, 16, setup).await;
    let hub = &f.hub;
    let ids = publish_numbers(hub, "t", N).await;
    delivered(hub, &ids[N - 1]).await;
    // A log may trim in the background: wait until the first update is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let got = loop {
        let mut r = reader(hub, sub(&["t"]).last_event_id(&ids[0]));
        let first = r.take(1).await;
        if first[0].event_type == HISTORY_GAP_EVENT {
            let gap: serde_json::Value = serde_json::from_str(&first[0].data).expect("gap JSON");
            assert_eq!(gap["reason"], "expired", "{gap}");
            let oldest = gap["oldest"].as_str().expect("an oldest id").to_owned();
            let k = ids
                .iter()
                .position(|id| *id == oldest)
                .expect("a published id");
            let rest = r.take(N - k).await;
            assert_eq!(rest[0].id, oldest);
            break rest;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not trim"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let k: usize = got[0].data.parse().expect("a number");
    assert!(N - k >= COUNT, "kept {} < {COUNT}", N - k);
    assert!(k > 0, "nothing was trimmed");
    assert_eq!(datas(&got), numbers(k..N), "a contiguous tail");
}

/// Retention by age and by bytes, where the backend has them; without them, age alone trims
/// nothing.
pub async fn retention_by_age_and_bytes(make: MakeHub, abilities: Abilities) {
    if !abilities.retain_age {
        let f = fixture(make, 16, Setup::default()).await;
        let hub = &f.hub;
        let old = publish_numbers(hub, "t", 5).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let new = publish(hub, "t", "new").await;
        delivered(hub, &new).await;
        let mut r = reader(hub, sub(&["t"]).last_event_id(&old[0]));
        assert_eq!(datas(&r.take(5).await), ["1", "2", "3", "4", "new"]);
    }
    if abilities.retain_age {
        let setup = Setup {
            retain_age: Some(Duration::from_millis(300)),
            ..Setup::default()
        };
        // A ring smaller than what is published: a node's ring may still hold (and serve,
        // without a gap) what its log trimmed; the check is about the log.
        let f = fixture(make, 4, setup).await;
        let hub = &f.hub;
        let old = publish_numbers(hub, "t", 5).await;
        tokio::time::sleep(Duration::from_millis(600)).await;
        let new = publish(hub, "t", "new").await;
        delivered(hub, &new).await;
        expect_trimmed_to(hub, &old[0], "new").await;
    }
    if abilities.retain_bytes {
        let setup = Setup {
            retain_bytes: Some(4096),
            ..Setup::default()
        };
        let f = fixture(make, 16, setup).await;
        let hub = &f.hub;
        let big = "x".repeat(1000);
        let mut first = None;
        for _ in 0..20 {
            let id = publish(hub, "t", big.clone()).await;
            first.get_or_insert(id);
        }
        let last = publish(hub, "t", "last").await;
        delivered(hub, &last).await;
        expect_trimmed_to(hub, first.as_deref().unwrap_or_default(), "last").await;
    }
}

/// Waits until `gone` is no longer retained, then checks that `earliest` still ends with
/// `newest`.
async fn expect_trimmed_to(hub: &Hub, gone: &str, newest: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mut r = reader(hub, sub(&["t"]).last_event_id(gone));
        let first = r.take(1).await;
        if first[0].event_type == HISTORY_GAP_EVENT {
            let gap: serde_json::Value = serde_json::from_str(&first[0].data).expect("gap JSON");
            assert_eq!(gap["reason"], "expired", "{gap}");
            let mut all = reader(hub, sub(&["t"]).last_event_id(EARLIEST));
            let mut last = all.take(1).await;
            while last[0].data != newest {
                last = all.take(1).await;
            }
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not trim {gone}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A subscriber whose queue overflows while the ring still holds what it missed catches up
/// from the ring and joins live delivery: every update once, in order.
pub async fn a_lagging_subscriber_catches_up_from_the_ring(make: MakeHub, _: Abilities) {
    let f = make(builder(1000, 4), Setup::default()).await;
    let hub = &f.hub;
    let mut r = reader(hub, sub(&["t"]));
    let ids = publish_numbers(hub, "t", 100).await;
    delivered(hub, &ids[99]).await;
    assert!(hub.stats().lagged >= 1, "{:?}", hub.stats());
    let got = r.take(100).await;
    assert_eq!(datas(&got), numbers(0..100));
    publish(hub, "t", "live").await;
    assert_eq!(datas(&r.take(1).await), ["live"]);
    r.quiet().await;
}

/// A subscriber that lags past the ring: a backend with a log reads the rest from it and joins
/// live delivery (every update once, in order); the RAM ring cannot, and says so with the
/// lagged event before the stream ends. Never a silent gap.
pub async fn a_subscriber_lagging_past_the_ring(make: MakeHub, abilities: Abilities) {
    let f = make(builder(8, 4), Setup::default()).await;
    let hub = &f.hub;
    let mut r = reader(hub, sub(&["t"]));
    let ids = publish_numbers(hub, "t", 100).await;
    delivered(hub, &ids[99]).await;
    if abilities.reads_beyond_ring {
        let got = r.take(100).await;
        assert_eq!(datas(&got), numbers(0..100));
        publish(hub, "t", "live").await;
        assert_eq!(datas(&r.take(1).await), ["live"]);
        r.quiet().await;
        assert_eq!(hub.stats().lag_closes, 0);
    } else {
        let got = r.until_end().await;
        let (last, updates) = got.split_last().expect("events");
        assert_eq!(last.event_type, LAGGED_EVENT, "{got:?}");
        assert_eq!(
            datas(updates),
            numbers(0..updates.len()),
            "a contiguous prefix"
        );
        assert_eq!(hub.stats().lag_closes, 1);
    }
}

/// Subscribing with `earliest` while a publisher is busy: the replay joins live delivery with
/// every update exactly once, in order (read from the log when the ring is small).
pub async fn replay_while_publishing_has_no_gap_and_no_duplicate(
    make: MakeHub,
    abilities: Abilities,
) {
    const N: usize = 400;
    let history = if abilities.reads_beyond_ring { 16 } else { N };
    let f = make(builder(history, 64), Setup::default()).await;
    let hub = f.hub.clone();
    let (started, ready) = tokio::sync::oneshot::channel();
    let publisher = tokio::spawn(async move {
        let mut started = Some(started);
        for i in 0..N {
            publish(&hub, "t", i.to_string()).await;
            if i == N / 4
                && let Some(s) = started.take()
            {
                let _ = s.send(());
            }
            if i % 8 == 0 {
                tokio::task::yield_now().await;
            }
        }
    });
    ready.await.expect("the publisher started");
    let mut r = reader(&f.hub, sub(&["t"]).last_event_id(EARLIEST));
    let got = r.take(N).await;
    publisher.await.expect("the publisher");
    assert_eq!(datas(&got), numbers(0..N));
    r.quiet().await;
}
