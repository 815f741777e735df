//! The Redis storage against a real Redis (127.0.0.1:6379, or `SSEHUB_TEST_REDIS`): several
//! hubs on one stream agree on ids and order, and replay (ring, `XRANGE`, publisher ids,
//! `earliest`, gaps, retained state) joins live delivery without gap or duplicate. Each test
//! uses its own stream name. These tests fail, not skip, when Redis does not answer: run
//! `scripts/ensure-redis` first.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use ssehub_hub::{HISTORY_GAP_EVENT, Hub, PublishError, SubscriberStream, Subscription, Update};
use ssehub_store_redis::{RedisBackend, RedisOptions};

mod common;

use common::{Cleanup, redis_url};

/// A stream name no other test (or run) uses.
fn stream_name() -> String {
    common::stream_name("ssehub-test")
}

async fn backend(options: RedisOptions) -> RedisBackend {
    RedisBackend::connect(options).await.unwrap_or_else(|e| {
        panic!("Redis must be running for these tests (scripts/ensure-redis): {e}")
    })
}

async fn hub(stream: &str, history: usize) -> Hub {
    hub_with(RedisOptions::new(redis_url(), stream), history).await
}

async fn hub_with(options: RedisOptions, history: usize) -> Hub {
    Hub::builder()
        .history_size(history)
        .heartbeat(None)
        .storage(backend(options).await)
        .try_build()
        .unwrap()
}

type Ev = (String, String, String);

/// A subscriber's events, `(event type, id, data)`, read across calls: a batch may hold more
/// events than one call asks for.
struct Reader {
    stream: SubscriberStream,
    text: String,
    pending: std::collections::VecDeque<Ev>,
}

impl Reader {
    fn new(stream: SubscriberStream) -> Reader {
        Reader {
            stream,
            text: String::new(),
            pending: Default::default(),
        }
    }

    /// The next events up to and including the `n`th update (an event with an id); fails
    /// after 10 s.
    async fn next(&mut self, n: usize) -> Vec<Ev> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut out = Vec::new();
        let mut updates = 0;
        while updates < n {
            if let Some(e) = self.pending.pop_front() {
                updates += usize::from(!e.1.is_empty());
                out.push(e);
                continue;
            }
            match tokio::time::timeout_at(deadline, self.stream.next()).await {
                Ok(Some(b)) => {
                    self.text.push_str(std::str::from_utf8(&b).unwrap());
                    // Only whole events (the hub never splits one across items, but be exact).
                    if let Some(end) = self.text.rfind("\n\n") {
                        let whole: String = self.text.drain(..end + 2).collect();
                        self.pending.extend(parse(&whole));
                    }
                }
                Ok(None) => panic!("stream ended after {out:?}"),
                Err(_) => panic!("timed out after {out:?}"),
            }
        }
        out
    }

    /// Nothing more arrives for a moment.
    async fn quiet(&mut self) {
        assert!(self.pending.is_empty(), "unexpected {:?}", self.pending);
        if let Ok(Some(b)) =
            tokio::time::timeout(Duration::from_millis(300), self.stream.next()).await
        {
            panic!("unexpected {:?}", String::from_utf8_lossy(&b));
        }
    }
}

fn parse(text: &str) -> Vec<Ev> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let (mut ty, mut id, mut data) = (String::new(), String::new(), Vec::new());
        for line in block.lines() {
            if let Some(v) = line.strip_prefix("event: ") {
                ty = v.into();
            } else if let Some(v) = line.strip_prefix("id: ") {
                id = v.into();
            } else if let Some(v) = line.strip_prefix("data: ") {
                data.push(v);
            }
        }
        if !ty.is_empty() || !id.is_empty() {
            out.push((ty, id, data.join("\n")));
        }
    }
    out
}

fn ids_and_data(events: &[Ev]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| !e.1.is_empty())
        .map(|e| (e.1.clone(), e.2.clone()))
        .collect()
}

fn sub(topic: &str) -> Subscription {
    Subscription::new().topic(topic).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hubs_on_one_stream_deliver_the_same_ids_in_the_same_order() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let hubs = [
        hub(&name, 100).await,
        hub(&name, 100).await,
        hub(&name, 100).await,
    ];
    let mut subs: Vec<_> = hubs
        .iter()
        .map(|h| Reader::new(h.subscribe(sub("t")).unwrap()))
        .collect();
    let mut acked = Vec::new();
    for i in 0..30 {
        let h = &hubs[i % 3];
        let id = h.publish(Update::new("t", format!("m{i}"))).await.unwrap();
        assert!(id.contains('-'), "a stream id: {id}");
        acked.push((id, format!("m{i}")));
    }
    for s in &mut subs {
        let got = ids_and_data(&s.next(30).await);
        assert_eq!(got, acked, "same ids, same order, on every node");
        s.quiet().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_ring_from_redis_from_publisher_id_and_earliest() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    // A ring of 3: older points must be read from Redis.
    let a = hub(&name, 3).await;
    let mut live = Reader::new(a.subscribe(sub("t")).unwrap());
    let mut acked = Vec::new();
    for i in 0..10 {
        let mut u = Update::new("t", format!("m{i}"));
        if i == 4 {
            u = u.id("pub-4");
        }
        acked.push((a.publish(u).await.unwrap(), format!("m{i}")));
        // Unrelated topic in between: filtered out of replays.
        a.publish(Update::new("other", "x")).await.unwrap();
    }
    assert_eq!(acked[4].0, "pub-4");
    assert_eq!(ids_and_data(&live.next(10).await), acked);

    for from in [0usize, 4, 8, 9] {
        let mut s = Reader::new(
            a.subscribe(sub("t").last_event_id(acked[from].0.clone()))
                .unwrap(),
        );
        // Everything after it, including the live updates of earlier rounds.
        let got = ids_and_data(&s.next(acked.len() - from - 1).await);
        assert_eq!(got, acked[from + 1..], "replay after #{from}");
        // Then live, without a gap or duplicate.
        let id = a
            .publish(Update::new("t", format!("after{from}")))
            .await
            .unwrap();
        let got = ids_and_data(&s.next(1).await);
        assert_eq!(got, [(id.clone(), format!("after{from}"))]);
        s.quiet().await;
        acked.push((id, format!("after{from}")));
    }

    // A node started later (empty ring) serves everything from Redis.
    let b = hub(&name, 3).await;
    let mut s = Reader::new(b.subscribe(sub("t").last_event_id("earliest")).unwrap());
    let got = ids_and_data(&s.next(acked.len()).await);
    assert_eq!(got, acked);
    let id = a.publish(Update::new("t", "live")).await.unwrap();
    assert_eq!(ids_and_data(&s.next(1).await), [(id, "live".to_owned())]);
    s.quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_trimmed_ids_get_the_gap_event_then_everything_retained() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let mut options = RedisOptions::new(redis_url(), &name);
    options.max_len = Some(10);
    let a = hub_with(options, 5).await;
    let mut ids = Vec::new();
    for i in 0..400 {
        ids.push(a.publish(Update::new("t", format!("m{i}"))).await.unwrap());
    }
    // `MAXLEN ~` trims whole nodes (100 entries by default): the first ones are gone.
    for (last, reason) in [
        (ids[0].clone(), "expired"),
        ("no-such-id".to_owned(), "unknown"),
        ("99999999999999-0".to_owned(), "unknown"),
    ] {
        let mut s = Reader::new(a.subscribe(sub("t").last_event_id(last.clone())).unwrap());
        let mut events = s.next(1).await;
        let (ty, id, data) = events.remove(0);
        assert_eq!(
            (ty.as_str(), id.as_str()),
            (HISTORY_GAP_EVENT, ""),
            "{last}"
        );
        let gap: serde_json::Value = serde_json::from_str(&data).unwrap();
        assert_eq!(gap["reason"], reason, "{last}");
        assert_eq!(gap["lastEventID"], last.as_str());
        let oldest = gap["oldest"].as_str().unwrap().to_owned();
        let first_kept = ids
            .iter()
            .position(|i| *i == oldest)
            .expect("oldest is one of ours");
        assert!(
            first_kept > 0 && ids.len() - first_kept < 300,
            "trimmed: {first_kept}"
        );
        // Then every retained update, then live ones.
        events.extend(s.next(ids.len() - first_kept - 1).await);
        let got: Vec<_> = ids_and_data(&events).into_iter().map(|(i, _)| i).collect();
        assert_eq!(got, ids[first_kept..], "{last}");
        let id = a.publish(Update::new("t", "live")).await.unwrap();
        assert_eq!(s.next(1).await[0].1, id);
        s.quiet().await;
        ids.push(id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retained_state_comes_from_redis_then_live() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let a = hub(&name, 100).await;
    a.publish(Update::new("nest/1", "a1")).await.unwrap();
    a.publish(Update::new("nest/2", "b1")).await.unwrap();
    let a2 = a.publish(Update::new("nest/1", "a2")).await.unwrap();
    a.publish(Update::new("nest/3", "secret").private(true))
        .await
        .unwrap();
    let both = a
        .publish(Update::new("nest/2", "b2").topic("nest/4"))
        .await
        .unwrap();
    // The newest of `other` also names nest/2, but nest/2 has a newer one: not sent.
    a.publish(Update::new("other", "o1").topic("nest/2"))
        .await
        .unwrap();
    let b3 = a.publish(Update::new("nest/2", "b3")).await.unwrap();
    // Another node, started afterwards, serves it from the hash.
    let b = hub(&name, 100).await;
    let mut s = Reader::new(b.subscribe(sub("nest/{n}").retained_state(true)).unwrap());
    let got = ids_and_data(&s.next(3).await);
    assert_eq!(
        got,
        [
            (a2, "a2".to_owned()),
            (both, "b2".to_owned()),
            (b3, "b3".to_owned())
        ]
    );
    let id = a.publish(Update::new("nest/1", "a3")).await.unwrap();
    assert_eq!(ids_and_data(&s.next(1).await), [(id, "a3".to_owned())]);
    s.quiet().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_ids_are_unique_and_stream_shaped_ids_reserved() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let a = hub(&name, 10).await;
    let b = hub(&name, 10).await;
    assert_eq!(
        a.publish(Update::new("t", "x").id("job-1")).await.unwrap(),
        "job-1"
    );
    assert_eq!(
        b.publish(Update::new("t", "y").id("job-1")).await,
        Err(PublishError::DuplicateId),
        "refused on every node"
    );
    assert_eq!(
        a.publish(Update::new("t", "y").id("1700000000000-0")).await,
        Err(PublishError::ReservedId)
    );
    assert_eq!(
        a.publish_now(Update::new("t", "y")),
        Err(PublishError::NeedsAwait)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_redis_while_publishing_joins_without_gap_or_duplicate() {
    // Node b's subscriber resumes from an id older than b's ring while a keeps publishing:
    // the replay pages and b's live delivery must meet exactly. (A node whose reader is
    // behind the client is `a_client_from_a_node_ahead_...`.)
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let a = hub(&name, 100).await;
    let mut ids = Vec::new();
    for i in 0..50 {
        ids.push(a.publish(Update::new("t", format!("m{i}"))).await.unwrap());
    }
    // b starts at the stream's end: ids[10] is older than its ring, so replay reads Redis
    // while a keeps publishing; the pages may run ahead of b's reader.
    let b = hub(&name, 100).await;
    let mut s = Reader::new(
        b.subscribe(sub("t").last_event_id(ids[10].clone()))
            .unwrap(),
    );
    for i in 50..60 {
        ids.push(a.publish(Update::new("t", format!("m{i}"))).await.unwrap());
    }
    let got: Vec<_> = ids_and_data(&s.next(49).await)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(got, ids[11..]);
    s.quiet().await;
}

/// A TCP proxy to Redis that can hold back the replies on the connections that sent `XREAD`
/// (a node's stream reader), so the test can put that node's reader behind the stream at will.
struct ReaderFreeze {
    url: String,
    frozen: Arc<AtomicBool>,
}

impl ReaderFreeze {
    async fn start() -> ReaderFreeze {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let target = redis_url()
            .trim_start_matches("redis://")
            .trim_end_matches('/')
            .to_owned();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let frozen = Arc::new(AtomicBool::new(false));
        let f = frozen.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(&target).await else {
                    continue;
                };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let reader = Arc::new(AtomicBool::new(false));
                let r = reader.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = cr.read(&mut buf).await {
                        if buf[..n]
                            .windows(5)
                            .any(|w| w.eq_ignore_ascii_case(b"XREAD"))
                        {
                            r.store(true, Ordering::SeqCst);
                        }
                        if sw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                let f = f.clone();
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = sr.read(&mut buf).await {
                        while reader.load(Ordering::SeqCst) && f.load(Ordering::SeqCst) {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        if cw.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        ReaderFreeze { url, frozen }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_from_a_node_ahead_gets_nothing_twice_from_a_node_behind() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let a = hub(&name, 100).await;
    let proxy = ReaderFreeze::start().await;
    let b = hub_with(RedisOptions::new(proxy.url.clone(), &name), 100).await;
    let first = a.publish(Update::new("t", "first")).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while b.last_event_id().as_deref() != Some(first.as_str()) {
        assert!(tokio::time::Instant::now() < deadline, "b never delivered");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // b's reader is now held back: a client that saw ids on a (ahead of b) moves to b.
    proxy.frozen.store(true, Ordering::SeqCst);
    let mut ids = vec![first];
    for i in 0..5 {
        ids.push(a.publish(Update::new("t", format!("m{i}"))).await.unwrap());
    }
    let mut s = Reader::new(b.subscribe(sub("t").last_event_id(ids[3].clone())).unwrap());
    // Its replay reads Redis (not held back) and joins b's live delivery ahead of b's reader.
    let got: Vec<_> = ids_and_data(&s.next(2).await)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(got, ids[4..]);
    assert_eq!(
        b.last_event_id().as_deref(),
        Some(ids[0].as_str()),
        "b is behind"
    );
    proxy.frozen.store(false, Ordering::SeqCst);
    let next = a.publish(Update::new("t", "next")).await.unwrap();
    // b's reader now delivers m0..m4 and `next`: the subscriber already has up to m4.
    assert_eq!(s.next(1).await[0].1, next);
    s.quiet().await;
    assert_eq!(b.last_event_id().as_deref(), Some(next.as_str()));
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_at_start() {
    // Port 1 on loopback: nothing listens there.
    let mut options = RedisOptions::new("redis://127.0.0.1:1", stream_name());
    options.timeout = Duration::from_millis(500);
    let err = RedisBackend::connect(options).await.unwrap_err();
    assert!(err.to_string().starts_with("redis: "), "{err}");
    let bad = RedisBackend::connect(RedisOptions::new("http://x", "s"))
        .await
        .unwrap_err();
    assert!(bad.to_string().starts_with("invalid Redis URL"), "{bad}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_lags_past_the_ring_catches_up_from_redis() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let a = Hub::builder()
        .history_size(5)
        .max_queued(4, 1 << 20)
        .heartbeat(None)
        .storage(backend(RedisOptions::new(redis_url(), &name)).await)
        .try_build()
        .unwrap();
    let mut s = Reader::new(a.subscribe(sub("t")).unwrap());
    let mut ids = Vec::new();
    for i in 0..100 {
        ids.push(a.publish(Update::new("t", format!("m{i}"))).await.unwrap());
    }
    // Let this node's reader deliver all of it while the subscriber reads nothing: it lags,
    // and the ring (5) no longer holds where it lagged.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while a.stats().publishes < 100 {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", a.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(a.stats().lagged >= 1, "{:?}", a.stats());
    let got: Vec<_> = ids_and_data(&s.next(100).await)
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(got, ids, "everything, in order, once");
    let id = a.publish(Update::new("t", "live")).await.unwrap();
    assert_eq!(s.next(1).await[0].1, id);
    s.quiet().await;
    assert_eq!(a.stats().lag_closes, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_summed_over_live_nodes_and_a_dead_node_stops_counting() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let a = hub(&name, 10).await;
    let b = hub(&name, 10).await;
    let _sa = a.subscribe(sub("room")).unwrap();
    let sb1 = b.subscribe(sub("room")).unwrap();
    let sb2 = b.subscribe(sub("room/{id}")).unwrap();
    let wait_for = |hub: Hub, want: Vec<(String, usize)>, total: usize| async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        loop {
            if hub.presence() == want && hub.cluster_subscriber_count() == total {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "presence {:?} / {}, want {want:?} / {total}",
                hub.presence(),
                hub.cluster_subscriber_count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let both = vec![("room".to_owned(), 2), ("room/{id}".to_owned(), 1)];
    wait_for(a.clone(), both.clone(), 3).await;
    wait_for(b.clone(), both, 3).await;
    assert_eq!(a.topic_subscribers("room"), 2);
    assert_eq!(a.subscriber_count(), 1, "local count stays local");

    // Node b dies (its tasks stop with it): within the TTL it no longer counts.
    drop((sb1, sb2));
    drop(b);
    wait_for(a.clone(), vec![("room".to_owned(), 1)], 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_age_trims_the_stream_on_publish() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let mut options = RedisOptions::new(redis_url(), &name);
    options.max_age = Some(Duration::from_millis(500));
    let a = hub_with(options, 10).await;
    let mut ids = Vec::new();
    for i in 0..120 {
        ids.push(a.publish(Update::new("t", format!("m{i}"))).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    ids.push(a.publish(Update::new("t", "new")).await.unwrap());
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .unwrap();
    let len: usize = redis::cmd("XLEN").arg(&name).query(&mut c).unwrap();
    // `MINID ~` drops whole nodes (100 entries) that are entirely too old.
    assert!(len <= 21, "{len} entries left");
    let mut s = Reader::new(a.subscribe(sub("t").last_event_id(ids[0].clone())).unwrap());
    let events = s.next(len).await;
    assert_eq!(events[0].0, HISTORY_GAP_EVENT);
    assert_eq!(events.last().unwrap().1, *ids.last().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_from_redis_stays_within_the_queue_bounds() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    // ~100-byte frames, a queue of 1,000 bytes: a page of Redis replay (up to 512 entries)
    // must be taken a queue's worth at a time, and a stream item is what the queue held.
    let a = Hub::builder()
        .history_size(2)
        .max_queued(1024, 1000)
        .heartbeat(None)
        .storage(backend(RedisOptions::new(redis_url(), &name)).await)
        .try_build()
        .unwrap();
    let mut ids = Vec::new();
    for i in 0..60 {
        let data = format!("{i:02}{}", "x".repeat(60));
        ids.push(a.publish(Update::new("t", data)).await.unwrap());
    }
    let mut stream = a.subscribe(sub("t").last_event_id("earliest")).unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while got.len() < ids.len() {
        let batch = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("timed out")
            .expect("stream ended");
        assert!(batch.len() <= 1000, "{} bytes in one item", batch.len());
        got.extend(
            parse(std::str::from_utf8(&batch).unwrap())
                .into_iter()
                .map(|e| e.1),
        );
    }
    assert_eq!(got, ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_ids_of_trimmed_updates_are_pruned_from_the_index() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let mut options = RedisOptions::new(redis_url(), &name);
    options.max_len = Some(50);
    let hub = hub_with(options, 10).await;
    for i in 0..600 {
        hub.publish(Update::new("t", "x").id(format!("p-{i}")))
            .await
            .unwrap();
    }
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let len: usize = redis::cmd("XLEN")
        .arg(&name)
        .query_async(&mut c)
        .await
        .unwrap();
    let indexed: usize = redis::cmd("HLEN")
        .arg(format!("{name}:pubids"))
        .query_async(&mut c)
        .await
        .unwrap();
    // `MAXLEN ~` trims whole nodes, so the stream keeps somewhat more than 50.
    assert!(len < 600, "the stream was trimmed: {len}");
    assert!(
        indexed <= len + 32,
        "the index holds {indexed} publisher ids for {len} retained updates"
    );
    // The newest ids are still indexed: replay from one and the duplicate check work.
    assert_eq!(
        hub.publish(Update::new("t", "y").id("p-599")).await,
        Err(PublishError::DuplicateId)
    );
    let mut r = Reader::new(hub.subscribe(sub("t").last_event_id("p-597")).unwrap());
    let got = r.next(2).await;
    assert_eq!(
        got.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(),
        ["p-598", "p-599"]
    );
    // A trimmed id is free again.
    hub.publish(Update::new("t", "z").id("p-0")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_are_listed_across_nodes_and_a_lost_list_is_written_again() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let a = hub(&name, 100).await;
    let b = hub(&name, 100).await;
    // Subscribers from before tracking started are listed too.
    let early = b
        .subscribe(Subscription::new().topic("early").unwrap())
        .unwrap();
    let announce = |c: &ssehub_hub::SubscriptionChange| {
        vec![Update::new(format!("subs/{}", c.info.subscriber), c.active.to_string()).private(true)]
    };
    assert!(a.track_subscriptions(announce));
    assert!(b.track_subscriptions(announce));
    let s = b
        .subscribe(
            Subscription::new()
                .topic("t")
                .unwrap()
                .payload(serde_json::json!({"on": "b"})),
        )
        .unwrap();
    let early_id = early.subscriber_id().unwrap();
    let s_id = s.subscriber_id().unwrap();
    let mut want = vec![early_id.clone(), s_id.clone()];
    want.sort();
    let listed = |hub: Hub| async move {
        let snap = hub.subscriptions().await.unwrap();
        let ids: Vec<String> = snap
            .subscribers
            .iter()
            .map(|i| i.subscriber.clone())
            .collect();
        (snap, ids)
    };
    // Announcements take a Redis round trip after the subscribe: bounded wait.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (snap, ids) = listed(a.clone()).await;
        if ids == want {
            let info = snap
                .subscribers
                .iter()
                .find(|i| i.subscriber == s_id)
                .unwrap();
            assert_eq!(info.topics, ["t"]);
            assert_eq!(info.payload, Some(serde_json::json!({"on": "b"})));
            assert!(snap.last_event_id.is_some());
            break;
        }
        assert!(std::time::Instant::now() < deadline, "a lists {ids:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // b's list is lost (as after a Redis restart): b's next presence refresh writes it again.
    let client = redis::Client::open(redis_url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{name}:subs:*"))
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let _: () = redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(listed(a.clone()).await.1.is_empty());
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while listed(a.clone()).await.1 != want {
        assert!(std::time::Instant::now() < deadline, "not written again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A leave is recorded with its announcement.
    drop(s);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while listed(a.clone()).await.1 != [early_id.clone()] {
        assert!(std::time::Instant::now() < deadline, "leave not recorded");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(early);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_whose_announcement_failed_reaches_the_list_at_the_next_refresh() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let a = hub(&name, 100).await;
    let b = hub(&name, 100).await;
    // Announcements of subscribers to `bad` fail (an id shaped like a stream id is refused
    // before Redis is asked), so their changes never ride along with one.
    let announce = |c: &ssehub_hub::SubscriptionChange| {
        let u = Update::new(format!("subs/{}", c.info.subscriber), "x").private(true);
        vec![if c.info.topics == ["bad"] {
            u.id("1-1")
        } else {
            u
        }]
    };
    assert!(a.track_subscriptions(announce));
    assert!(b.track_subscriptions(announce));
    let ids = |hub: Hub| async move {
        let snap = hub.subscriptions().await.unwrap();
        snap.subscribers
            .into_iter()
            .map(|i| i.topics.join(","))
            .collect::<Vec<_>>()
    };
    let wait_for = |want: Vec<&'static str>| {
        let a = a.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            loop {
                let mut got = ids(a.clone()).await;
                got.sort();
                if got == want {
                    return;
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "a lists {got:?}, want {want:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let good = b
        .subscribe(Subscription::new().topic("good").unwrap())
        .unwrap();
    wait_for(vec!["good"]).await;
    let bad = b
        .subscribe(Subscription::new().topic("bad").unwrap())
        .unwrap();
    // Listed after b's next presence refresh (every second) rewrites its list.
    wait_for(vec!["bad", "good"]).await;
    drop(bad);
    wait_for(vec!["good"]).await;
    drop(good);
    wait_for(vec![]).await;
}

/// Redis-backed hubs issue the same kind of ids as the others, `#{ms}-{seq}` (the stream
/// position as a fragment), and resume from them and from the bare form alike.
#[tokio::test]
async fn hub_ids_are_fragments_on_redis_too() {
    let name = stream_name();
    let _c = Cleanup(name.clone());
    let a = hub(&name, 10).await;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(a.publish(Update::new("t", format!("u{i}"))).await.unwrap());
    }
    for id in &ids {
        let (ms, seq) = id.strip_prefix('#').unwrap().split_once('-').unwrap();
        assert!(
            ms.parse::<u64>().is_ok() && seq.parse::<u64>().is_ok(),
            "{id}"
        );
    }
    for from in [ids[0].clone(), ids[0].trim_start_matches('#').to_owned()] {
        let stream = a.subscribe(sub("t").last_event_id(from.clone())).unwrap();
        assert_eq!(stream.cursor(), Some(from.as_str()));
        let mut s = Reader::new(stream);
        let got = s.next(2).await;
        assert_eq!(
            ids_and_data(&got),
            [
                (ids[1].clone(), "u1".to_owned()),
                (ids[2].clone(), "u2".to_owned())
            ]
        );
    }
    assert_eq!(
        a.publish(Update::new("t", "y").id(format!("#{}", ids[0].trim_start_matches('#'))))
            .await,
        Err(PublishError::ReservedId)
    );
}
