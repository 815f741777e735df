//! Drain on shutdown, over real TCP: 1,000 subscribers of a hub that shuts down with a 3 s
//! drain window are closed spread over the window, each with a last `retry:` of its own before
//! the chunked terminator, while new connections are refused.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ssehub_hub::{Hub, Update};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const SUBSCRIBERS: usize = 1000;
const WINDOW: Duration = Duration::from_secs(3);
const GRACE: Duration = Duration::from_secs(2);
const RETRY_MS: u64 = 1000;
const TERMINATOR: &[u8] = b"0\r\n\r\n";

/// Subscribes over raw TCP and reads until the response head and the preamble arrived. Every
/// tenth asks for `Connection: close`, which hyper serves instead of the fast path, so both
/// paths are drained.
async fn subscribe(addr: std::net::SocketAddr, i: usize) -> (TcpStream, Vec<u8>) {
    let mut sock = TcpStream::connect(addr).await.unwrap();
    let extra = if i.is_multiple_of(10) {
        "Connection: close\r\n"
    } else {
        ""
    };
    sock.write_all(
        format!("GET /.well-known/mercure?topic=t HTTP/1.1\r\nHost: x\r\n{extra}\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = Vec::new();
    let preamble_read =
        |b: &[u8]| find(b, b"retry: ").is_some_and(|at| find(&b[at..], b"\n").is_some());
    while !preamble_read(&buf) {
        let mut chunk = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut chunk))
            .await
            .expect("no preamble within 10 s")
            .unwrap();
        assert!(n > 0, "closed before the preamble");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(buf.starts_with(b"HTTP/1.1 200 OK\r\n"));
    assert!(
        find(&buf, b"transfer-encoding: chunked\r\n").is_some(),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    (sock, buf)
}

/// Reads until the chunked terminator; returns when it came and everything read.
async fn until_end(
    mut sock: TcpStream,
    mut buf: Vec<u8>,
    first: Arc<Notify>,
) -> (Instant, Vec<u8>) {
    loop {
        if buf.ends_with(TERMINATOR) {
            first.notify_one();
            return (Instant::now(), buf);
        }
        let mut chunk = [0u8; 1024];
        let n = sock.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "closed without a terminator: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The value of the `retry:` line that ends the body, just before the terminator: a line with
/// no blank line after it (a frame of its own would be an empty message to some clients).
fn last_retry(raw: &[u8]) -> u64 {
    let body = &raw[..raw.len() - TERMINATOR.len()];
    let text = String::from_utf8_lossy(body);
    let at = text.rfind("retry: ").expect("no retry field");
    let tail = &text[at + "retry: ".len()..];
    let digits = tail
        .strip_suffix("\n\r\n")
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()));
    let Some(digits) = digits else {
        panic!("the body does not end with a retry line: {tail:?}")
    };
    digits.parse().unwrap()
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() - 1) * p / 100]
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_are_closed_spread_over_the_drain_window() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.drain_timeout = WINDOW;
        c.shutdown_grace = GRACE;
        c.retry = Duration::from_millis(RETRY_MS);
        c.max_subscribers_per_ip = 0;
    })
    .await;
    let addr = hub.addr;
    let core = hub.hub.clone();

    // Subscribe 100 at a time.
    let mut socks = Vec::with_capacity(SUBSCRIBERS);
    for batch in 0..SUBSCRIBERS / 100 {
        let opened =
            futures_util::future::join_all((0..100).map(|j| subscribe(addr, batch * 100 + j)));
        socks.extend(
            tokio::time::timeout(Duration::from_secs(20), opened)
                .await
                .expect("subscribing took too long"),
        );
    }
    assert_eq!(core.subscriber_count(), SUBSCRIBERS);
    let first = Arc::new(Notify::new());
    let readers: Vec<_> = socks
        .into_iter()
        .map(|(sock, buf)| tokio::spawn(until_end(sock, buf, first.clone())))
        .collect();

    let started = Instant::now();
    let shutdown = tokio::spawn(hub.shutdown());

    // The first close comes only once the listener is closed: from then on, refused.
    tokio::time::timeout(WINDOW + GRACE, first.notified())
        .await
        .expect("no stream ended within the window");
    let refused = TcpStream::connect(addr).await;
    assert!(
        matches!(&refused, Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused),
        "a new connection during the drain: {refused:?}"
    );
    // Publishes still reach those not closed yet.
    let during = core
        .publish(Update::new("t", "during the drain"))
        .await
        .unwrap();
    let published = Instant::now();

    let mut closes = Vec::with_capacity(SUBSCRIBERS);
    let mut retries = Vec::with_capacity(SUBSCRIBERS);
    let mut got_during = 0;
    for r in readers {
        let (at, raw) = tokio::time::timeout(WINDOW + GRACE, r)
            .await
            .expect("a stream did not end within window + grace")
            .unwrap();
        assert!(at >= started, "closed before the drain started");
        closes.push(at - started);
        let retry = last_retry(&raw);
        assert!(
            (RETRY_MS..2 * RETRY_MS).contains(&retry),
            "retry {retry} outside [{RETRY_MS}, {})",
            2 * RETRY_MS
        );
        retries.push(retry);
        let has = find(&raw, format!("id: {during}\n").as_bytes()).is_some();
        if at > published + Duration::from_millis(500) {
            assert!(has, "a subscriber closed after the publish missed it");
        }
        got_during += usize::from(has);
    }
    tokio::time::timeout(Duration::from_secs(5), shutdown)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    let total = started.elapsed();
    assert!(core.is_closed());

    closes.sort();
    let last = *closes.last().unwrap();
    assert!(last <= WINDOW + GRACE, "last close at {last:?}");
    // Five equal buckets of the window each hold 10% to 30% of the closes (late ones count
    // in the last bucket).
    let bucket = WINDOW / 5;
    let mut buckets = [0usize; 5];
    for c in &closes {
        buckets[((c.as_nanos() / bucket.as_nanos()) as usize).min(4)] += 1;
    }
    let distinct: std::collections::BTreeSet<u64> = retries.iter().copied().collect();
    let mut reconnects: Vec<Duration> = closes
        .iter()
        .zip(&retries)
        .map(|(c, r)| *c + Duration::from_millis(*r))
        .collect();
    reconnects.sort();
    eprintln!(
        "drain of {SUBSCRIBERS} subscribers over {WINDOW:?}: closes min {} p10 {} p50 {} p90 {} max {}; \
         per {bucket:?} bucket {buckets:?}; retries {}..{} ms, {} distinct; \
         reconnect times (close + retry) p10 {} p50 {} p90 {} max {}; \
         {got_during} got the update published during the drain; serve returned after {}",
        ms(closes[0]),
        ms(percentile(&closes, 10)),
        ms(percentile(&closes, 50)),
        ms(percentile(&closes, 90)),
        ms(last),
        distinct.first().unwrap(),
        distinct.last().unwrap(),
        distinct.len(),
        ms(percentile(&reconnects, 10)),
        ms(percentile(&reconnects, 50)),
        ms(percentile(&reconnects, 90)),
        ms(*reconnects.last().unwrap()),
        ms(total),
    );
    for (i, b) in buckets.iter().enumerate() {
        assert!(
            (SUBSCRIBERS / 10..=SUBSCRIBERS * 3 / 10).contains(b),
            "bucket {i} holds {b} of {SUBSCRIBERS} closes: {buckets:?}"
        );
    }
    assert!(distinct.len() > 100, "retries are not spread: {distinct:?}");
    assert!(got_during > 0);
}

#[tokio::test]
async fn a_zero_drain_timeout_closes_every_stream_at_once_as_before() {
    // The common helper's default: drain_timeout zero.
    let hub = start().await;
    let (sock, buf) = subscribe(hub.addr, 1).await;
    let reader = tokio::spawn(until_end(sock, buf, Arc::new(Notify::new())));
    let started = Instant::now();
    hub.shutdown().await.unwrap();
    let (_, raw) = tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .unwrap()
        .unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
    // No drain frame: the preamble's retry is the only one.
    assert_eq!(
        String::from_utf8_lossy(&raw).matches("retry: ").count(),
        1,
        "{:?}",
        String::from_utf8_lossy(&raw)
    );
}

/// HTTP/2 (prior knowledge, all streams on one connection, served by hyper): each stream ends
/// at its own time with `END_STREAM` (a clean end of body, not a reset) after its `retry:`.
#[tokio::test]
async fn http2_streams_end_one_by_one_with_end_stream_after_their_retry() {
    let hub = start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.drain_timeout = Duration::from_secs(1);
        c.retry = Duration::from_millis(RETRY_MS);
    })
    .await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let mut responses = Vec::new();
    for _ in 0..20 {
        let res = client
            .get(hub.hub_url())
            .query(&[("topic", "t")])
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.version(), reqwest::Version::HTTP_2);
        responses.push(res);
    }
    let readers: Vec<_> = responses
        .into_iter()
        .map(|mut res| {
            tokio::spawn(async move {
                let mut body = Vec::new();
                // `Ok(None)`: END_STREAM; a reset would be an error.
                while let Some(chunk) = res.chunk().await.expect("stream reset") {
                    body.extend_from_slice(&chunk);
                }
                (Instant::now(), String::from_utf8(body).unwrap())
            })
        })
        .collect();
    let started = Instant::now();
    let shutdown = tokio::spawn(hub.shutdown());
    let mut ends = Vec::new();
    for r in readers {
        let (at, body) = tokio::time::timeout(Duration::from_secs(5), r)
            .await
            .expect("an h2 stream did not end")
            .unwrap();
        let last = body.rsplit("retry: ").next().unwrap();
        assert!(body.matches("retry: ").count() == 2, "{body:?}");
        let retry: u64 = last.strip_suffix("\n").unwrap().parse().unwrap();
        assert!((RETRY_MS..2 * RETRY_MS).contains(&retry), "{retry}");
        ends.push(at - started);
    }
    shutdown.await.unwrap().unwrap();
    ends.sort();
    assert!(
        ends[ends.len() - 1] - ends[0] > Duration::from_millis(200),
        "h2 streams ended together: {ends:?}"
    );
}
