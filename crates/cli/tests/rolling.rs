//! A rolling restart of two `ssehub serve --redis` nodes behind a load balancer loses no update:
//! node A is stopped with SIGTERM (2 s drain), its subscribers resume on node B with their
//! `Last-Event-ID`; A comes back, B is stopped, everyone moves to A; meanwhile a publisher
//! publishes numbered updates through the balancer to whichever node is up. At the end every
//! subscriber has every acknowledged update exactly once, in order.
//!
//! The balancer is a few lines of TCP forwarding in the test: each new connection goes to the
//! next node in turn, or to the other one when the connection is refused (a draining node has
//! closed its listener). The subscribers are `ssehub-client` streams, which reconnect as a
//! browser's `EventSource` does: after the `retry:` the draining node sent them, with their last
//! event id. Needs Redis at 127.0.0.1:6379 (or `SSEHUB_TEST_REDIS`); fails, not skips, without.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ssehub_client::{Client, ClientEvent, ReconnectPolicy, ReconnectReason};
use tokio::net::{TcpListener, TcpStream};

mod common;

use common::Served;
use common::redis::{Cleanup, redis_url, require_redis, serve_node, stream_name};

const KEY: &str = "rolling-test-secret-rolling-test-secret-01";
const SUBSCRIBERS: usize = 12;

/// A node with a 2 s drain; its listening address.
fn node(url: &str, stream: &str) -> (Served, SocketAddr) {
    let served = serve_node(
        KEY,
        url,
        stream,
        &["--heartbeat", "0", "--drain-timeout", "2s"],
    );
    let hub = served.hub_url();
    let addr = hub
        .strip_prefix("http://")
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .parse()
        .unwrap();
    (served, addr)
}

/// Forwards each accepted connection to the next backend in turn, skipping those that refuse.
struct Balancer {
    addr: SocketAddr,
    backends: Arc<Mutex<Vec<SocketAddr>>>,
    /// Connections forwarded to each backend slot.
    forwarded: Arc<[AtomicUsize; 2]>,
}

impl Balancer {
    async fn start(backends: Vec<SocketAddr>) -> Balancer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let backends = Arc::new(Mutex::new(backends));
        let forwarded: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let (list, counts) = (backends.clone(), forwarded.clone());
        tokio::spawn(async move {
            let mut next = 0usize;
            while let Ok((mut client, _)) = listener.accept().await {
                let candidates: Vec<(usize, SocketAddr)> = {
                    let list = list.lock().unwrap();
                    (0..list.len())
                        .map(|k| {
                            let slot = (next + k) % list.len();
                            (slot, list[slot])
                        })
                        .collect()
                };
                next += 1;
                let counts = counts.clone();
                tokio::spawn(async move {
                    for (slot, backend) in candidates {
                        if let Ok(mut server) = TcpStream::connect(backend).await {
                            let _ = server.set_nodelay(true);
                            let _ = client.set_nodelay(true);
                            counts[slot].fetch_add(1, Ordering::Relaxed);
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                            return;
                        }
                    }
                    // No backend up: the client sees the connection close.
                });
            }
        });
        Balancer {
            addr,
            backends,
            forwarded,
        }
    }

    fn hub_url(&self) -> String {
        format!("http://{}/.well-known/mercure", self.addr)
    }
}

fn token() -> String {
    common::all_rights_token(KEY)
}

/// Publishes update `id` (its data is the id too) until it is acknowledged: `200`, or `409`
/// when an earlier try whose answer was lost had stored it after all (the publisher id makes
/// retries safe). Fails the test after 20 s.
async fn publish_until_acked(client: &reqwest::Client, url: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = client
            .post(url)
            .bearer_auth(token())
            .form(&[("topic", "t"), ("id", id), ("data", id)])
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match res {
            Ok(r) if r.status() == 200 || r.status() == 409 => return,
            // A refused or cut connection, or a node shutting down (503): try again.
            _ => {}
        }
        assert!(Instant::now() < deadline, "update {id} never acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What a subscriber did, shared with the test while it runs.
#[derive(Default)]
struct Progress {
    connected: AtomicBool,
    opens: AtomicUsize,
    received: AtomicUsize,
    /// The `retry:` in force at each end of stream (the draining node's last frame).
    retries_at_end: Mutex<Vec<Duration>>,
}

/// Runs one subscriber through the balancer until it receives `end`; returns `(id, data)` of
/// everything it received.
async fn subscriber(url: String, progress: Arc<Progress>) -> Vec<(String, String)> {
    let client = Client::builder(format!("{url}?topic=t"))
        .reconnect(ReconnectPolicy {
            // The node's retry advice alone decides when it comes back.
            jitter: 0.0,
            ..ReconnectPolicy::default()
        })
        .build()
        .unwrap();
    let mut stream = client.stream();
    let mut got = Vec::new();
    let mut retry = Duration::ZERO;
    loop {
        let item = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .expect("subscriber idle for 60 s")
            .expect("stream ended")
            .expect("stream failed");
        match item {
            ClientEvent::Open { .. } => {
                progress.opens.fetch_add(1, Ordering::SeqCst);
                progress.connected.store(true, Ordering::SeqCst);
            }
            ClientEvent::Message(e) => {
                let done = e.data == "end";
                got.push((e.last_event_id, e.data));
                progress.received.fetch_add(1, Ordering::SeqCst);
                if done {
                    return got;
                }
            }
            ClientEvent::Retry(d) => retry = d,
            ClientEvent::Reconnecting { reason, .. } => {
                progress.connected.store(false, Ordering::SeqCst);
                if reason == ReconnectReason::EndOfStream {
                    progress.retries_at_end.lock().unwrap().push(retry);
                }
            }
            other => assert!(
                matches!(other, ClientEvent::Comment(_)),
                "unexpected {other:?}"
            ),
        }
    }
}

/// Waits until `cond` holds (polls every 20 ms); fails after `within`.
async fn wait_for(what: &str, within: Duration, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + within;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SIGTERM, and the exit must be clean.
async fn stop(served: Served) -> Duration {
    let started = Instant::now();
    let status = tokio::task::spawn_blocking(move || served.terminate())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_restart_of_two_nodes_loses_no_update() {
    let url = redis_url();
    require_redis(&url);
    let stream = stream_name("ssehub-rolling");
    let _cleanup = Cleanup(url.clone(), stream.clone());
    let (a, addr_a) = node(&url, &stream);
    let (b, addr_b) = node(&url, &stream);
    let lb = Balancer::start(vec![addr_a, addr_b]).await;

    let progress: Vec<Arc<Progress>> = (0..SUBSCRIBERS).map(|_| Arc::default()).collect();
    let mut subs = Vec::new();
    for p in &progress {
        subs.push(tokio::spawn(subscriber(lb.hub_url(), p.clone())));
        let p = p.clone();
        wait_for(
            "a subscriber to connect",
            Duration::from_secs(10),
            move || p.connected.load(Ordering::SeqCst),
        )
        .await;
    }
    let spread = [
        lb.forwarded[0].load(Ordering::SeqCst),
        lb.forwarded[1].load(Ordering::SeqCst),
    ];
    assert!(
        spread.iter().all(|&n| n >= SUBSCRIBERS / 2 - 1),
        "subscribers spread over both nodes: {spread:?}"
    );
    let on_a = spread[0];

    // One publisher, one update at a time, a new connection each (so the balancer spreads
    // them too): acknowledged order is stream order.
    let stop_publishing = Arc::new(AtomicBool::new(false));
    let publisher = {
        let (url, stop) = (lb.hub_url(), stop_publishing.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap();
            let mut acked = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let id = format!("u{i}");
                publish_until_acked(&client, &url, &id).await;
                acked.push(id);
                i += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            publish_until_acked(&client, &url, "end").await;
            acked.push("end".to_owned());
            acked
        })
    };
    let all_received = |n: usize| {
        let progress = progress.clone();
        move || {
            progress
                .iter()
                .all(|p| p.received.load(Ordering::SeqCst) >= n)
        }
    };
    wait_for(
        "updates before the restart",
        Duration::from_secs(20),
        all_received(20),
    )
    .await;
    fn opens(progress: &[Arc<Progress>]) -> usize {
        progress
            .iter()
            .map(|p| p.opens.load(Ordering::SeqCst))
            .sum()
    }
    // `moved` more (re)connections since `before`, and everyone connected.
    let moved_and_connected = |before: usize, moved: usize| {
        let progress = progress.clone();
        move || {
            opens(&progress) == before + moved
                && progress.iter().all(|p| p.connected.load(Ordering::SeqCst))
        }
    };

    // Node A goes: its subscribers end over its 2 s drain and come back on B.
    let before = opens(&progress);
    let took_a = stop(a).await;
    wait_for(
        "A's subscribers back on B",
        Duration::from_secs(20),
        moved_and_connected(before, on_a),
    )
    .await;
    let moved_to_b = on_a;

    // A comes back (a new process, a new port), then B goes: everyone ends up on A.
    let (a2, addr_a2) = node(&url, &stream);
    lb.backends.lock().unwrap()[0] = addr_a2;
    let received_before_b = progress[0].received.load(Ordering::SeqCst);
    let before = opens(&progress);
    let took_b = stop(b).await;
    wait_for(
        "B's subscribers back on A",
        Duration::from_secs(20),
        moved_and_connected(before, SUBSCRIBERS),
    )
    .await;
    let moved_to_a = SUBSCRIBERS;
    wait_for(
        "updates after the restart",
        Duration::from_secs(20),
        all_received(received_before_b + 20),
    )
    .await;

    stop_publishing.store(true, Ordering::SeqCst);
    let acked = tokio::time::timeout(Duration::from_secs(30), publisher)
        .await
        .expect("publisher stuck")
        .unwrap();
    let mut retries = Vec::new();
    for (i, s) in subs.into_iter().enumerate() {
        let got = tokio::time::timeout(Duration::from_secs(30), s)
            .await
            .expect("a subscriber did not get the last update")
            .unwrap();
        let ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
        assert!(
            got.iter().all(|(id, data)| id == data),
            "subscriber {i}: id and data differ"
        );
        assert_eq!(
            ids, acked,
            "subscriber {i}: every acknowledged update exactly once, in order"
        );
        retries.extend(progress[i].retries_at_end.lock().unwrap().iter().copied());
    }
    // Each reconnect after a drain waited a retry the node drew in [3 s, 6 s).
    assert_eq!(retries.len(), moved_to_b + moved_to_a);
    assert!(
        retries
            .iter()
            .all(|r| *r >= Duration::from_secs(3) && *r < Duration::from_secs(6)),
        "{retries:?}"
    );
    let distinct: std::collections::BTreeSet<_> = retries.iter().collect();
    assert!(distinct.len() > 1, "{retries:?}");
    eprintln!(
        "rolling restart: {} updates acknowledged, {SUBSCRIBERS} subscribers each got all of \
         them once in order; {moved_to_b} moved A->B, {moved_to_a} moved B->A; node A exited \
         {took_a:?} after SIGTERM, node B {took_b:?}; drain retries {:?}..{:?}",
        acked.len(),
        distinct.first().unwrap(),
        distinct.last().unwrap(),
    );
    let _ = stop(a2).await;
}
