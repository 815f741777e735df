//! Black-box tests over real TCP (127.0.0.1:0) of the limits of the HTTP API and of the slow
//! consumer policy: each limit is hit, on the connection layer's fast path and through hyper
//! alike, and answers with its status and a one-line reason while other clients are unaffected.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use ssehub_hub::{Hub, Update};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A response read off a raw socket.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Sends `request` and reads the response head, plus the body when it has a
/// `content-length` (refusals); a streaming response is left open on the returned socket.
async fn send(addr: SocketAddr, request: &[u8]) -> (TcpStream, Answer) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    sock.write_all(request).await.unwrap();
    let answer = read_answer(&mut sock).await;
    (sock, answer)
}

async fn read_answer(sock: &mut TcpStream) -> Answer {
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let len = head.lines().find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().unwrap())
                });
                let body_len = buf.len() - end - 4;
                if len.is_none_or(|len| body_len >= len) {
                    let status = head[9..12].parse().unwrap();
                    let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
                    return Answer { status, head, body };
                }
            }
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("no answer within 5 s")
}

/// A subscribe with this query that the fast path serves, with these extra header lines.
fn fast(query: &str, extra: &str) -> Vec<u8> {
    format!("GET /.well-known/mercure?{query} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
}

/// The same subscribe, sent so that hyper serves it (`Connection: close` is not a plain
/// subscribe for the fast path).
fn via_hyper(query: &str, extra: &str) -> Vec<u8> {
    fast(query, &format!("Connection: close\r\n{extra}"))
}

/// A publish (the publisher's token) declaring a body of `declared` bytes and sending only
/// `sent` of it.
fn post_declaring(declared: usize, sent: &str) -> Vec<u8> {
    format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {declared}\r\n\r\n{sent}",
        publisher()
    )
    .into_bytes()
}

fn xff(addr: &str) -> String {
    format!("X-Forwarded-For: {addr}\r\n")
}

/// Waits (at most 5 s) until the hub counts `n` subscribers.
async fn wait_subscribers(hub: &Hub, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub.subscriber_count() != n {
        assert!(
            Instant::now() < deadline,
            "{} subscribers, want {n}",
            hub.subscriber_count()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn total_subscribers_over_the_limit_get_503() {
    let hub = Hub::builder().heartbeat(None).max_subscribers(2).build();
    let server = start_with(hub.clone(), |_| {}).await;
    let (first, a) = send(server.addr, &fast("topic=a", "")).await;
    assert_eq!(a.status, 200);
    let (_second, b) = send(server.addr, &via_hyper("topic=a", "")).await;
    assert_eq!(b.status, 200);
    for request in [fast("topic=a", ""), via_hyper("topic=b", "")] {
        let (_, refused) = send(server.addr, &request).await;
        assert_eq!(refused.status, 503, "{refused:?}");
        assert_eq!(refused.body, "too many subscribers (at most 2)\n");
        assert_eq!(refused.header("retry-after"), Some("10"));
    }
    // Publishing is unaffected, and a freed place is taken again.
    assert_eq!(
        publish(&server, &[("topic", "a"), ("data", "x")])
            .await
            .status(),
        200
    );
    drop(first);
    wait_subscribers(&hub, 1).await;
    let (_third, c) = send(server.addr, &fast("topic=a", "")).await;
    assert_eq!(c.status, 200);
}

#[tokio::test]
async fn subscribers_per_client_address_over_the_limit_get_429_on_both_paths() {
    let hub = Hub::builder().heartbeat(None).build();
    let server = start_with(hub.clone(), |c| c.max_subscribers_per_ip = 2).await;
    let client = xff("203.0.113.7");
    // One slot through each path: they count together.
    let (first, a) = send(server.addr, &fast("topic=a", &client)).await;
    assert_eq!(a.status, 200);
    let (_second, b) = send(server.addr, &via_hyper("topic=a", &client)).await;
    assert_eq!(b.status, 200);
    for request in [
        fast("topic=a", &client),
        via_hyper("topic=a", &client),
        // Forging addresses left of what the trusted proxy (loopback) appended changes nothing.
        fast("topic=a", &xff("198.51.100.1, 203.0.113.7")),
    ] {
        let (_, refused) = send(server.addr, &request).await;
        assert_eq!(refused.status, 429, "{refused:?}");
        assert_eq!(
            refused.body,
            "too many subscriptions from your address (at most 2)\n"
        );
        assert_eq!(refused.header("retry-after"), Some("10"));
        assert!(refused.head.contains("text/plain"));
    }
    // Other clients behind the proxy, and the proxy itself, have their own slots.
    let (_other, c) = send(
        server.addr,
        &fast("topic=a", &xff("203.0.113.7, 198.51.100.1")),
    )
    .await;
    assert_eq!(
        c.status, 200,
        "the rightmost untrusted address is the client"
    );
    let (_proxy, d) = send(server.addr, &via_hyper("topic=a", "")).await;
    assert_eq!(d.status, 200);
    // A subscriber leaving frees its slot.
    drop(first);
    wait_subscribers(&hub, 3).await;
    let (_again, e) = send(server.addr, &fast("topic=a", &client)).await;
    assert_eq!(e.status, 200, "{e:?}");
}

#[tokio::test]
async fn forwarded_addresses_from_untrusted_peers_are_ignored() {
    let hub = Hub::builder().heartbeat(None).build();
    let server = start_with(hub, |c| {
        c.max_subscribers_per_ip = 1;
        c.trusted_proxies = Vec::new();
    })
    .await;
    let (_first, a) = send(server.addr, &fast("topic=a", &xff("203.0.113.7"))).await;
    assert_eq!(a.status, 200);
    // The peer (127.0.0.1) is what counts, whatever it claims to forward.
    let (_, b) = send(server.addr, &fast("topic=a", &xff("203.0.113.8"))).await;
    assert_eq!(b.status, 429, "{b:?}");
}

#[tokio::test]
async fn too_many_selectors_or_topics_get_400() {
    let server = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.max_topics = 2;
        c.max_topics_per_update = 2;
    })
    .await;
    let (_, a) = send(server.addr, &fast("topic=a&topic=b&topic=c", "")).await;
    assert_eq!(a.status, 400);
    assert_eq!(a.body, "too many topic parameters (at most 2)\n");
    let (_ok, b) = send(server.addr, &fast("topic=a&topic=b", "")).await;
    assert_eq!(b.status, 200);

    let res = publish(&server, &[("topic", "a"), ("topic", "b"), ("topic", "c")]).await;
    assert_eq!(res.status(), 413);
    assert_eq!(
        res.text().await.unwrap(),
        "too many topics in one update (at most 2)\n"
    );
    let res = publish(&server, &[("topic", "a"), ("topic", "b")]).await;
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_declared_body_over_the_limit_gets_413_without_waiting_for_it() {
    let server = start().await;
    let started = Instant::now();
    let mut sock = TcpStream::connect(server.addr).await.unwrap();
    sock.write_all(&post_declaring(1_000_000_000, ""))
        .await
        .unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(1), read_answer(&mut sock))
        .await
        .expect("no answer within 1 s: the body was waited for");
    assert_eq!(answer.status, 413);
    assert_eq!(answer.body, "request body larger than 1048576 bytes\n");
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// A publish whose body stalls is answered 408 once the body timeout is up (the connection
/// then closes: the rest of its body would be read as a request), and other publishers are
/// served meanwhile.
#[tokio::test]
async fn a_request_body_that_stalls_gets_408_and_others_are_served() {
    let hub = Hub::builder().heartbeat(None).build();
    let server = start_with(hub, |c| c.body_timeout = Duration::from_millis(300)).await;
    let started = Instant::now();
    let mut sock = TcpStream::connect(server.addr).await.unwrap();
    sock.write_all(&post_declaring(100, "topic=x&da"))
        .await
        .unwrap();
    let res = publish(&server, &[("topic", "x"), ("data", "meanwhile")]).await;
    assert_eq!(res.status(), 200);
    let answer = read_answer(&mut sock).await;
    assert_eq!(
        (answer.status, answer.body.as_str()),
        (408, "request body not complete within 300ms\n")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "answered after {:?}",
        started.elapsed()
    );
    let mut rest = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(2), sock.read(&mut rest))
        .await
        .expect("the connection is closed after the answer")
        .unwrap_or(0);
    assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&rest[..n]));
}

#[tokio::test]
async fn request_heads_over_the_limit_get_431_on_both_paths() {
    let hub = Hub::builder().heartbeat(None).build();
    let server = start_with(hub, |c| c.max_head = 16 * 1024).await;
    let big = format!("X-Big: {}\r\n", "b".repeat(20 * 1024));
    // A subscribe is read by the fast path...
    let (_, a) = send(server.addr, &fast("topic=a", &big)).await;
    assert_eq!(a.status, 431, "{a:?}");
    // ...anything else by hyper, whose own default (~400 KiB) would take it.
    let post =
        format!("POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\n{big}Content-Length: 0\r\n\r\n");
    let (_, b) = send(server.addr, post.as_bytes()).await;
    assert_eq!(b.status, 431, "{b:?}");
    // Under the limit is fine on both.
    let fits = format!("X-Big: {}\r\n", "b".repeat(12 * 1024));
    let (_ok, c) = send(server.addr, &fast("topic=a", &fits)).await;
    assert_eq!(c.status, 200);
    let healthz = format!("GET /healthz HTTP/1.1\r\nHost: x\r\n{fits}\r\n");
    let (_, d) = send(server.addr, healthz.as_bytes()).await;
    assert_eq!(d.status, 200);
}

#[tokio::test]
async fn publishes_over_the_rate_of_their_token_get_429_with_retry_after() {
    // 2 per second: a refill every 500 ms, ample time for the first three requests.
    let server = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.publish_rate = 2
    })
    .await;
    let post = |token: String| {
        client()
            .post(server.hub_url())
            .bearer_auth(token)
            .form(&[("topic", "a"), ("data", "x")])
            .send()
    };
    // The burst is the rate: 2 at once.
    for _ in 0..2 {
        assert_eq!(post(publisher()).await.unwrap().status(), 200);
    }
    let refused = post(publisher()).await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert_eq!(
        refused.text().await.unwrap(),
        "too many publishes with this token (at most 2 per second)\n"
    );
    // Another token has its own budget.
    assert_eq!(post(token(&["a"], &[])).await.unwrap().status(), 200);
    // After Retry-After, the first token may publish again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(post(publisher()).await.unwrap().status(), 200);
}

/// The most bytes a kernel may buffer for one loopback connection: the sender's largest send
/// buffer plus the receiver's (asked 4 KiB, doubled by the kernel, at least its minimum).
fn socket_buffer_bound() -> usize {
    let wmem_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|s| s.split_whitespace().nth(2)?.parse().ok())
        .unwrap_or(4 * 1024 * 1024);
    wmem_max + 64 * 1024
}

/// One subscriber stops reading (4 KiB receive buffer, nothing read) while another keeps
/// receiving every update as fast as they come: the stalled one is lagged once its queue is
/// full, costs the hub at most its queue from then on, and when it reads again it gets the
/// `ssehub.lagged` event (its point is no longer retained) and its stream ends.
#[tokio::test]
async fn a_stalled_subscriber_is_bounded_and_does_not_slow_the_others() {
    const FRAMES: usize = 64;
    const DATA: usize = 4096;
    let hub = Hub::builder()
        .heartbeat(None)
        .history_size(100)
        .max_queued(FRAMES, 1024 * 1024)
        .build();
    let server = start_with(hub.clone(), |_| {}).await;

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stalled = socket.connect(server.addr).await.unwrap();
    stalled.write_all(&fast("topic=t", "")).await.unwrap();

    let mut fast_reader =
        Events::open(client().get(server.url("/.well-known/mercure?topic=t"))).await;
    wait_subscribers(&hub, 2).await;

    // More than every socket buffer on the way could hold, so the stalled queue must fill.
    let total = 3 * socket_buffer_bound() / DATA + 500;
    let received = Arc::new(AtomicUsize::new(0));
    let seen = received.clone();
    let reader = tokio::spawn(async move {
        let mut ids = Vec::with_capacity(total);
        while ids.len() < total {
            let event = fast_reader.event().await;
            assert_eq!(event.data.len(), DATA);
            ids.push(event.last_event_id);
            seen.store(ids.len(), Ordering::Release);
        }
        (ids, fast_reader)
    });
    // The publisher stays at most half a queue ahead of the fast reader: it never lags, so any
    // stall it suffered could only come from the stalled subscriber.
    let data = "x".repeat(DATA);
    let mut published = Vec::with_capacity(total);
    tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..total {
            while published.len() - received.load(Ordering::Acquire) >= FRAMES / 2 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            published.push(hub.publish(Update::new("t", data.clone())).await.unwrap());
        }
    })
    .await
    .expect("the fast subscriber fell behind");
    let (ids, _fast_reader) = tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the fast subscriber did not get everything")
        .unwrap();
    assert_eq!(
        ids, published,
        "the fast subscriber got every update, in order"
    );

    let stats = hub.stats();
    assert_eq!(stats.subscribers, 2);
    assert_eq!(
        stats.lagged, 1,
        "only the stalled subscriber lagged: {stats:?}"
    );
    assert_eq!(stats.lag_closes, 0);
    // What the stalled one was ever given: what the sockets absorbed plus its queue bound,
    // far less than everything published.
    let to_stalled = stats.deliveries as usize - total;
    let bound = socket_buffer_bound() / DATA + FRAMES + 1;
    assert!(
        to_stalled <= bound,
        "{to_stalled} frames went to the stalled subscriber (bound {bound}) of {total}"
    );

    // It reads again: what was buffered, then the notice that it fell too far behind, then the
    // end of its stream (the chunked terminator).
    // Only the tail is kept: the frames before the notice are megabytes of `x`.
    let mut tail: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(at) = find(&tail, b"event: ssehub.lagged")
                && find(&tail[at..], b"\r\n0\r\n\r\n").is_some()
            {
                break;
            }
            let n = stalled.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the lagged event");
            tail.extend_from_slice(&chunk[..n]);
            // Keep enough to hold the notice and the terminator across reads.
            if tail.len() > 8192 {
                tail.drain(..tail.len() - 8192);
            }
        }
    })
    .await
    .expect("no ssehub.lagged event");
    let stats = hub.stats();
    assert_eq!(stats.lag_closes, 1, "{stats:?}");
    wait_subscribers(&hub, 1).await;
}

#[tokio::test]
async fn a_slot_taken_through_hyper_is_released_when_its_client_leaves() {
    let hub = Hub::builder().heartbeat(None).build();
    let server = start_with(hub.clone(), |c| c.max_subscribers_per_ip = 1).await;
    let client = xff("203.0.113.9");
    let (first, a) = send(server.addr, &via_hyper("topic=a", &client)).await;
    assert_eq!(a.status, 200);
    let (_, refused) = send(server.addr, &fast("topic=a", &client)).await;
    assert_eq!(refused.status, 429);
    drop(first);
    wait_subscribers(&hub, 0).await;
    let (_again, b) = send(server.addr, &fast("topic=a", &client)).await;
    assert_eq!(b.status, 200, "{b:?}");
}
