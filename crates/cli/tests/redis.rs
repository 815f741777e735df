//! `ssehub serve --redis` as real processes on a real Redis: several nodes on one stream agree
//! on ids and order; a node killed with `-9` loses its subscribers nothing when they resume on
//! another node with `Last-Event-ID`; a Redis restart during publishing gives clear 503s,
//! loses nothing acknowledged and delivers the rest without duplicates.
//!
//! The shared Redis is 127.0.0.1:6379 (or `SSEHUB_TEST_REDIS`); each test uses its own stream.
//! These tests fail, not skip, when it does not answer: run `scripts/ensure-redis` first. The
//! restart test starts its own `redis-server` (`SSEHUB_TEST_REDIS_SERVER`, default
//! `redis-server` on the PATH) on a free port, with `appendonly yes` + `appendfsync always`:
//! the setting an operator needs for acknowledged updates to survive a Redis restart.

use std::collections::HashSet;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::Served;
use common::redis::{Cleanup, redis_url, require_redis, serve_node, stream_name};
use common::sse::{Got, Sse};

const KEY: &str = "redis-test-secret-redis-test-secret-0123";

fn node(url: &str, stream: &str, heartbeat: &str) -> (Served, String) {
    let served = serve_node(KEY, url, stream, &["--heartbeat", heartbeat]);
    let hub = served.hub_url();
    (served, hub)
}

fn token() -> String {
    common::all_rights_token(KEY)
}

/// `Ok(id)`, or `Err((status, reason))` (status 0: no HTTP answer).
async fn publish(client: &reqwest::Client, url: &str, data: &str) -> Result<String, (u16, String)> {
    let res = client
        .post(url)
        .bearer_auth(token())
        .form(&[("topic", "t"), ("data", data)])
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| (0, e.to_string()))?;
    let status = res.status().as_u16();
    let body = res.text().await.map_err(|e| (0, e.to_string()))?;
    if status == 200 {
        Ok(body)
    } else {
        Err((status, body))
    }
}

/// A stream id's position, to check the order (hub ids are fragments: `#{ms}-{seq}`).
fn sid(id: &str) -> (u64, u64) {
    let (ms, seq) = id
        .strip_prefix('#')
        .unwrap_or_else(|| panic!("not a fragment id: {id}"))
        .split_once('-')
        .unwrap_or_else(|| panic!("not a stream id: {id}"));
    (ms.parse().unwrap(), seq.parse().unwrap())
}

/// The raw text of a subscription at `url` until it holds `data: {until}`.
async fn raw_until(url: &str, until: &str) -> String {
    let mut res = reqwest::Client::new().get(url).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let mut raw = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !raw.contains(&format!("data: {until}\n")) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, res.chunk())
            .await
            .unwrap_or_else(|_| panic!("timed out with {raw:?}"))
            .unwrap()
            .unwrap_or_else(|| panic!("ended with {raw:?}"));
        raw.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    raw
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_the_same_updates_in_the_same_order_with_the_same_ids() {
    let url = redis_url();
    require_redis(&url);
    let stream = stream_name("ssehub-clitest");
    let _c = Cleanup(url.clone(), stream.clone());
    let nodes: Vec<_> = (0..3).map(|_| node(&url, &stream, "0")).collect();
    let mut subs = Vec::new();
    for (_, hub) in &nodes {
        subs.push(Sse::open(hub, None).await);
    }
    // Three publishers at once, one per node.
    let mut tasks = Vec::new();
    for (n, (_, hub)) in nodes.iter().enumerate() {
        let hub = hub.clone();
        tasks.push(tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut acked = Vec::new();
            for i in 0..25 {
                let data = format!("n{n}-{i}");
                acked.push((publish(&client, &hub, &data).await.unwrap(), data));
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    let mut first: Option<Vec<(String, String)>> = None;
    for s in &mut subs {
        let got = s.take(acked.len()).await;
        s.quiet().await;
        match &first {
            None => first = Some(got),
            Some(f) => assert_eq!(&got, f, "every node: same updates, same order, same ids"),
        }
    }
    let got = first.unwrap();
    // Exactly the acknowledged updates, with the ids their publishers were given, in stream order.
    let mut want = acked.clone();
    want.sort_by_key(|(id, _)| sid(id));
    assert_eq!(got, want);
    // A clean shutdown is not held up by the stream reader or the presence task.
    drop(subs);
    for (served, _) in nodes {
        let status = tokio::task::spawn_blocking(move || served.terminate())
            .await
            .unwrap();
        assert!(status.success(), "{status}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_of_a_killed_node_resumes_on_another_without_gap_or_duplicate() {
    let url = redis_url();
    require_redis(&url);
    let stream = stream_name("ssehub-clitest");
    let _c = Cleanup(url.clone(), stream.clone());
    let (a, hub_a) = node(&url, &stream, "0");
    let (_b, hub_b) = node(&url, &stream, "0");
    let mut sub = Sse::open(&hub_a, None).await;

    // One publisher on node b, all through the failover; ack order is stream order.
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let publisher = {
        let (acked, hub_b) = (acked.clone(), hub_b.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for i in 0..400 {
                let data = format!("u{i}");
                let id = publish(&client, &hub_b, &data).await.unwrap();
                acked.lock().unwrap().push((id, data));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    let mut got = sub.take(60).await;
    tokio::task::spawn_blocking(move || a.crash())
        .await
        .unwrap();
    // Drain what node a had sent before it died.
    while let Got::Event(id, data) = sub.next(Duration::from_secs(10)).await {
        got.push((id, data));
    }
    let last = got.last().unwrap().0.clone();
    let mut sub = Sse::open(&hub_b, Some(&last)).await;
    publisher.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(got.len() < acked.len(), "the kill came mid-stream");
    got.extend(sub.take(acked.len() - got.len()).await);
    sub.quiet().await;
    assert_eq!(got, acked, "no gap, no duplicate, same order");
}

/// A `redis-server` of this test's own, so it can be killed and restarted.
struct OwnRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl OwnRedis {
    fn start() -> OwnRedis {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = OwnRedis {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        r.restart();
        r
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and directory; returns once it answers.
    fn restart(&mut self) {
        let bin =
            std::env::var("SSEHUB_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(&bin)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {bin}: {e}"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let ok = redis::Client::open(self.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
                .is_ok();
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `kill -9`.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_gives_503s_loses_nothing_acknowledged_and_delivery_resumes() {
    let mut redis = tokio::task::spawn_blocking(OwnRedis::start).await.unwrap();
    let stream = stream_name("ssehub-clitest");
    let (node, hub) = node(&redis.url(), &stream, "200ms");
    let mut sub = Sse::open(&hub, None).await;

    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let refused: Arc<Mutex<Vec<(String, u16, String)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (acked, refused, stop, hub) =
            (acked.clone(), refused.clone(), stop.clone(), hub.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let data = format!("u{i}");
                i += 1;
                match publish(&client, &hub, &data).await {
                    Ok(id) => acked.lock().unwrap().push((id, data)),
                    Err((status, reason)) => refused.lock().unwrap().push((data, status, reason)),
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let mut got = sub.take(20).await;
    redis = tokio::task::spawn_blocking(move || {
        redis.kill();
        redis
    })
    .await
    .unwrap();
    let acked_before = acked.lock().unwrap().len();
    // Down for a while: the subscriber stays connected and keeps getting heartbeats.
    let heartbeats = sub.heartbeats;
    let down_until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < down_until {
        match tokio::time::timeout(Duration::from_millis(100), sub.res.chunk()).await {
            // Count heartbeats as they come; keep updates (sent before the kill) in the buffer.
            Ok(Ok(Some(chunk))) => {
                sub.buf.push_str(std::str::from_utf8(&chunk).unwrap());
                sub.take_heartbeats();
            }
            Ok(Ok(None) | Err(_)) => panic!("the subscriber was disconnected while Redis was down"),
            Err(_) => {}
        }
    }
    assert!(
        sub.heartbeats >= heartbeats + 3,
        "heartbeats continued while Redis was down"
    );
    {
        let refused = refused.lock().unwrap();
        assert!(
            !refused.is_empty(),
            "publishes were refused while Redis was down"
        );
        for (data, status, reason) in refused.iter() {
            assert_eq!(*status, 503, "{data}: {reason}");
            assert!(reason.contains("redis"), "the reason says why: {reason:?}");
        }
    }
    let acked_while_down = acked.lock().unwrap().len() - acked_before;
    assert!(
        acked_while_down <= 1,
        "{acked_while_down} publishes acknowledged while Redis was down"
    );

    redis = tokio::task::spawn_blocking(move || {
        redis.restart();
        redis
    })
    .await
    .unwrap();
    // Publishing works again.
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().unwrap().len() < acked_before + acked_while_down + 20 {
        assert!(
            Instant::now() < deadline,
            "publishing did not resume after Redis returned"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.store(true, Ordering::Relaxed);
    publisher.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    let refused: HashSet<String> = refused
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.0.clone())
        .collect();

    // Everything acknowledged, once, in order. A publish refused because Redis died before
    // answering may still have been written (the usual at-least-once ambiguity): such extras
    // are allowed, nothing else.
    let acked_data: HashSet<&str> = acked.iter().map(|(_, d)| d.as_str()).collect();
    let mut want = acked.iter();
    let mut next_want = want.next();
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Some(w) = next_want {
        assert!(Instant::now() < deadline, "not delivered: {w:?}");
        if got.is_empty() {
            match sub.next(Duration::from_secs(20)).await {
                Got::Event(id, data) => got.push((id, data)),
                Got::End => panic!("the subscriber's stream ended"),
            }
        }
        let (id, data) = got.remove(0);
        if (&id, &data) == (&w.0, &w.1) {
            next_want = want.next();
        } else {
            assert!(
                refused.contains(&data) && !acked_data.contains(data.as_str()),
                "unexpected {id} {data}, waiting for {w:?}"
            );
        }
    }
    assert!(got.is_empty(), "duplicates or extras: {got:?}");
    sub.quiet().await;
    // The reader said what happened.
    node.wait_line("redis reader lost its connection; reconnecting with backoff");
    node.wait_line("redis reader reconnected");
    drop(redis);
}

#[test]
fn an_unreachable_redis_stops_serve_at_start_with_the_reason() {
    let mut child = Command::new(common::BIN)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--legacy-protocol",
            "--jwt-key",
            KEY,
        ])
        .args(["--redis", "redis://127.0.0.1:1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ssehub serve kept running without Redis");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("cannot use Redis (--redis)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_earliest_gap_and_retained_state_over_http() {
    let url = redis_url();
    require_redis(&url);
    let stream = stream_name("ssehub-clitest");
    let _c = Cleanup(url.clone(), stream.clone());
    let (_a, hub_a) = node(&url, &stream, "0");
    let client = reqwest::Client::new();
    let mut acked = Vec::new();
    for i in 0..5 {
        let data = format!("u{i}");
        acked.push((publish(&client, &hub_a, &data).await.unwrap(), data));
    }
    // A node started afterwards holds none of it in memory: all from Redis.
    let (_b, hub_b) = node(&url, &stream, "0");
    let mut s = Sse::open(&hub_b, Some(&acked[1].0)).await;
    assert_eq!(s.take(3).await, acked[2..]);
    s.quiet().await;
    let mut s = Sse::open(&hub_b, Some("earliest")).await;
    assert_eq!(s.take(5).await, acked);
    s.quiet().await;

    // An id older than the stream when nothing was trimmed: everything, no gap notice. An
    // id the stream never had: the gap notice (no id), then everything retained.
    let raw = raw_until(&format!("{hub_b}?topic=t&lastEventID=1-0"), &acked[4].1).await;
    assert!(!raw.contains("history-gap"), "{raw}");
    assert!(
        raw.contains(&format!("id: {}\ndata: u0", acked[0].0)),
        "{raw}"
    );
    let raw = raw_until(
        &format!("{hub_b}?topic=t&lastEventID=no-such-id"),
        &acked[4].1,
    )
    .await;
    let gap = "event: ssehub.history-gap\ndata: {\"lastEventID\":\"no-such-id\",\"oldest\":";
    assert!(raw.contains(gap), "{raw}");
    assert!(
        raw.find(gap) < raw.find("id: "),
        "the notice comes first: {raw}"
    );

    // retained=latest: the newest update of the topic, then live ones.
    let res = client
        .get(format!("{hub_b}?topic=t&retained=latest"))
        .send()
        .await
        .unwrap();
    let mut s = Sse {
        res,
        buf: String::new(),
        heartbeats: 0,
    };
    assert_eq!(s.take(1).await, [acked[4].clone()]);
    let id = publish(&client, &hub_a, "live").await.unwrap();
    assert_eq!(s.take(1).await, [(id, "live".to_owned())]);
    s.quiet().await;
}

/// GETs `{hub}/subscriptions` with a token allowed everywhere: the listed topics.
async fn listed_topics(client: &reqwest::Client, hub: &str) -> Vec<String> {
    let res = client
        .get(format!("{hub}/subscriptions"))
        .bearer_auth(token())
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: serde_json::Value = serde_json::from_str(&res.text().await.unwrap()).unwrap();
    assert_eq!(body["type"], "Subscriptions");
    body["subscriptions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["topic"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_subscriptions_api_lists_every_node_and_forgets_a_killed_one() {
    let url = redis_url();
    require_redis(&url);
    let stream = stream_name("ssehub-clitest");
    let _c = Cleanup(url.clone(), stream.clone());
    let args = |extra: &'static [&'static str]| {
        let mut v = vec![
            "--heartbeat",
            "0",
            "--jwt-key",
            KEY,
            "--redis",
            &url,
            "--redis-stream",
            &stream,
        ];
        v.extend_from_slice(extra);
        v
    };
    // The flag on one node, the variable on the other.
    let a = Served::start(&args(&["--subscriptions"]), &[]);
    let a_url = a.hub_url();
    let b = Served::start(&args(&[]), &[("SSEHUB_SUBSCRIPTIONS", "true")]);
    let b_url = b.hub_url();
    let client = reqwest::Client::new();
    let mut on_a = client
        .get(format!("{a_url}?topic=urn:on-a"))
        .send()
        .await
        .unwrap();
    let mut on_b = client
        .get(format!("{b_url}?topic=urn:on-b"))
        .send()
        .await
        .unwrap();
    assert_eq!((on_a.status().as_u16(), on_b.status().as_u16()), (200, 200));
    // Read the first bytes, so both subscriptions are registered.
    on_a.chunk().await.unwrap().unwrap();
    on_b.chunk().await.unwrap().unwrap();

    // Both nodes list both subscriptions (each join is recorded as it is announced, which
    // takes a Redis round trip after the subscribe).
    let deadline = Instant::now() + Duration::from_secs(5);
    for hub in [&a_url, &b_url] {
        loop {
            let mut topics = listed_topics(&client, hub).await;
            topics.sort();
            if topics == ["urn:on-a", "urn:on-b"] {
                break;
            }
            assert!(Instant::now() < deadline, "{hub} lists {topics:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Node b dies: nobody announces its subscriber's leave, but its entry expires with the
    // node's presence (TTL 3 s), so a stops listing it.
    let killed = Instant::now();
    b.crash();
    drop(on_b);
    loop {
        let topics = listed_topics(&client, &a_url).await;
        if topics == ["urn:on-a"] {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(6),
            "a still lists {topics:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(on_a);
    drop(a);
}
