//! `ssehub-bench matchers`: the matcher engine's workloads (issue 20), against a Mercure 1.0
//! hub (`match=` / `match_urlpattern=` subscriptions, absolute `https://example.com/...` topics).
//!
//! - `--mode shared`: N subscribers (from `--source-ips` addresses) each with the same P
//!   `match_urlpattern` matchers (`https://example.com/:section/{k}/:item`, k < P: one literal
//!   prefix for all, so the index narrows nothing and every matcher is a candidate for every
//!   topic), plus U subscribers of one unrelated exact topic (from an address of their own).
//!   Phases: single-topic publishes at `--rate`; `--topics-per-publish`-topic publishes at
//!   `--rate` (each topic matches another of the P matchers, so every subscriber gets each
//!   publish once); then those back to back (one in flight) while another publisher sends the
//!   unrelated topic at `--rate`. Each phase reports the publish round trip (POST to its answer,
//!   which a RAM-only hub sends after the fan-out) and the publish-to-receive latency.
//! - `--mode users`: N subscribers, subscriber i on `https://example.com/users/{i}/:rest*`;
//!   publishes at `--rate` to one user's topic each (`https://example.com/users/{j}/inbox`).
//! - `--mode flood`: one client address opens subscriptions with `--batch` distinct
//!   `--groups`-group URL patterns each, as fast as the hub answers, on `--flood-connections`
//!   connections at once, for `--flood-duration`; it keeps the last `--hold` subscriptions open
//!   (closing the oldest for each new one). Reports the answers (200 / 429 / 503), the server's
//!   RSS before, at its peak, at the end of the flood, and `--settle` after closing everything.
//! - `--mode fanout-url` / `--mode fanout-exact`: N subscribers on one `match_urlpattern` or on
//!   one exact `match`, publishers as fast as answered (`-m`), deliveries per second.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr};
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::{Args, ValueEnum};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

use crate::load::{connect, connect_subscriber, exchange, read_some};
use crate::scan::{Dechunker, EventScanner, parse_head, write_timestamp};
use crate::{Common, procfs, round1};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    Shared,
    Users,
    Flood,
    FanoutUrl,
    FanoutExact,
}

#[derive(Debug, Args)]
pub struct MatchersArgs {
    #[command(flatten)]
    pub common: Common,
    /// Which workload (see the module docs).
    #[arg(long, value_enum)]
    pub mode: Mode,
    /// shared: matchers per subscriber.
    #[arg(long, default_value_t = 128)]
    pub patterns: usize,
    /// shared: topics of the multi-topic publishes.
    #[arg(long, default_value_t = 64)]
    pub topics_per_publish: usize,
    /// shared: subscribers of the unrelated topic.
    #[arg(long, default_value_t = 10)]
    pub unrelated: usize,
    /// Publishes per second in the paced phases.
    #[arg(long, default_value_t = 20.0)]
    pub rate: f64,
    /// Length of each measured phase, seconds.
    #[arg(long, default_value = "5", value_parser = crate::secs)]
    pub duration: Duration,
    /// fanout-*: publisher connections, as fast as answered.
    #[arg(long, short = 'm', default_value_t = 4)]
    pub publishers: usize,
    /// flood: groups per pattern.
    #[arg(long, default_value_t = 64)]
    pub groups: usize,
    /// flood: patterns per subscribe request (16 64-group patterns make a 10 KB query; the
    /// hub's default limit is 16 KiB).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// flood: subscribe requests in flight.
    #[arg(long, default_value_t = 16)]
    pub flood_connections: usize,
    /// flood: how long the client floods, seconds.
    #[arg(long, default_value = "10", value_parser = crate::secs)]
    pub flood_duration: Duration,
    /// flood: subscriptions kept open (the oldest is closed for each new one).
    #[arg(long, default_value_t = 64)]
    pub hold: usize,
    /// flood: how long to wait after closing everything before the last RSS reading, seconds.
    #[arg(long, default_value = "2", value_parser = crate::secs)]
    pub settle: Duration,
    /// flood: floods in a row (each with its own patterns); later rounds show whether what the
    /// allocator kept after one is reused by the next.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

const HOST: &str = "https://example.com";

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

fn summary(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::Value::Null;
    }
    json!({
        "count": h.len(),
        "p50_us": h.value_at_quantile(0.5),
        "p90_us": h.value_at_quantile(0.9),
        "p99_us": h.value_at_quantile(0.99),
        "max_us": h.max(),
    })
}

fn p50_ms(h: &Histogram<u64>) -> String {
    if h.is_empty() {
        "-".into()
    } else {
        format!("{:.2}", h.value_at_quantile(0.5) as f64 / 1000.0)
    }
}

/// Query-string encoding of a matcher or topic value (what a browser's `URLSearchParams` does,
/// minus `+` for space: our values have none).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 2);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn subscribe_request(common: &Common, query: &str) -> Vec<u8> {
    format!(
        "GET /.well-known/mercure?{query} HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n",
        common.addr
    )
    .into_bytes()
}

/// Where publishes go, and their extra headers (the token).
#[derive(Debug, Clone)]
struct Endpoint {
    addr: std::net::SocketAddr,
    headers: Vec<String>,
}

impl Endpoint {
    fn of(c: &Common) -> Rc<Endpoint> {
        Rc::new(Endpoint {
            addr: c.addr,
            headers: c.headers.clone(),
        })
    }
}

/// A publish of `topics` whose data carries the timestamp `ts`.
fn publish_request(common: &Endpoint, topics: &[String], ts: u64, out: &mut Vec<u8>) {
    let mut body = Vec::with_capacity(64 + topics.len() * 48);
    for t in topics {
        body.extend_from_slice(b"topic=");
        body.extend_from_slice(enc(t).as_bytes());
        body.push(b'&');
    }
    body.extend_from_slice(b"data=");
    write_timestamp(&mut body, ts);
    body.extend_from_slice(&[b'x'; 64]);
    out.clear();
    out.extend_from_slice(
        format!(
            "POST /.well-known/mercure HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            common.addr,
            body.len()
        )
        .as_bytes(),
    );
    for h in &common.headers {
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
}

/// What the subscribers of one class saw.
#[derive(Default)]
struct Class {
    received: u64,
    /// Publish-to-receive latency of the publishes stamped while `recording`.
    latency: Option<Histogram<u64>>,
}

struct Tally {
    epoch: Instant,
    classes: Vec<Class>,
    connected: usize,
    failed: usize,
    errors: Vec<String>,
}

impl Tally {
    fn error(&mut self, e: String) {
        if self.errors.len() < 10 {
            self.errors.push(e);
        }
    }
}

type Shared = Rc<RefCell<Tally>>;

/// One subscriber: connect from `source`, send `request`, then count the generator's events
/// (and their latency into its class's histogram while one is set).
async fn subscriber(
    addr: std::net::SocketAddr,
    source: Option<IpAddr>,
    request: Rc<[u8]>,
    class: usize,
    tally: Shared,
    sem: Rc<tokio::sync::Semaphore>,
) {
    let permit = sem.acquire().await;
    let setup = async {
        let mut stream = connect_subscriber(addr, source).await?;
        stream.write_all(&request).await?;
        let mut buf = Vec::with_capacity(1024);
        loop {
            if read_some(&mut stream, |b| buf.extend_from_slice(b)).await? == 0 {
                return Err(std::io::Error::other("closed before the response head"));
            }
            if let Some(head) = parse_head(&buf).map_err(std::io::Error::other)? {
                if head.status != 200 {
                    let body = String::from_utf8_lossy(&buf[head.len..]).into_owned();
                    return Err(std::io::Error::other(format!(
                        "HTTP {}: {body}",
                        head.status
                    )));
                }
                buf.drain(..head.len);
                return Ok((stream, head.chunked, buf));
            }
        }
    };
    let (mut stream, chunked, rest) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            let mut t = tally.borrow_mut();
            t.failed += 1;
            t.error(format!("subscribe: {e}"));
            return;
        }
    };
    tally.borrow_mut().connected += 1;
    drop(permit);
    let mut dechunk = Dechunker::new(chunked);
    let mut scanner = EventScanner::default();
    let mut consume = |bytes: &[u8]| {
        let mut t = tally.borrow_mut();
        let now = t.epoch.elapsed().as_nanos() as u64;
        let c = &mut t.classes[class];
        let _ = dechunk.feed(bytes, |payload| {
            c.received += scanner
                .scan(payload, |ts| {
                    if let Some(h) = &mut c.latency {
                        h.saturating_record((now.saturating_sub(ts) / 1000).max(1));
                    }
                })
                .events;
        });
    };
    consume(&rest);
    loop {
        match read_some(&mut stream, &mut consume).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Opens `requests` (class, request, source) and waits until all answered.
async fn connect_all(
    common: &Common,
    requests: Vec<(usize, Rc<[u8]>, Option<IpAddr>)>,
    tally: &Shared,
) -> anyhow::Result<Duration> {
    let sem = Rc::new(tokio::sync::Semaphore::new(
        common.connect_concurrency.max(1),
    ));
    let n = requests.len();
    let t0 = Instant::now();
    for (class, req, source) in requests {
        tokio::task::spawn_local(subscriber(
            common.addr,
            source,
            req,
            class,
            tally.clone(),
            sem.clone(),
        ));
    }
    let deadline = t0 + common.connect_timeout;
    loop {
        let (c, f) = {
            let t = tally.borrow();
            (t.connected, t.failed)
        };
        if c + f >= n || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let t = tally.borrow();
    if t.connected < n {
        bail!(
            "{} of {n} subscribers connected: {:?}",
            t.connected,
            t.errors
        );
    }
    Ok(t0.elapsed())
}

fn source(i: usize) -> Option<IpAddr> {
    Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + (i % 250) as u8)))
}

/// A paced or back-to-back publisher: sends `topics(k)` for k = 0.. until `until`, one request
/// in flight, stamping each publish with its due time (paced) or its send time. Returns the
/// round-trip histogram and the publishes acknowledged.
async fn publish_loop(
    common: Rc<Endpoint>,
    rate: Option<f64>,
    until: Instant,
    epoch: Instant,
    topics: impl Fn(u64) -> Vec<String>,
) -> anyhow::Result<(Histogram<u64>, u64)> {
    let mut stream: TcpStream = connect(common.addr, None).await?;
    let mut rtt = new_hist();
    let (mut out, mut buf) = (Vec::new(), Vec::new());
    let start = Instant::now();
    let mut acked = 0;
    let mut k = 0u64;
    loop {
        let due = match rate {
            Some(r) => start + Duration::from_secs_f64(k as f64 / r),
            None => Instant::now(),
        };
        if due >= until {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let ts = due.duration_since(epoch).as_nanos() as u64;
        publish_request(&common, &topics(k), ts, &mut out);
        let sent = Instant::now();
        let (status, keep) = exchange(&mut stream, &out, &mut buf).await?;
        rtt.saturating_record((sent.elapsed().as_micros() as u64).max(1));
        if !(200..300).contains(&status) {
            bail!(
                "publish: HTTP {status}: {}",
                String::from_utf8_lossy(&buf).lines().last().unwrap_or("")
            );
        }
        acked += 1;
        if !keep {
            stream = connect(common.addr, None).await?;
        }
        k += 1;
    }
    Ok((rtt, acked))
}

pub fn run(args: &MatchersArgs) -> anyhow::Result<serde_json::Value> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let line = match args.mode {
        Mode::Shared => local.block_on(&rt, shared(args)),
        Mode::Users => local.block_on(&rt, users(args)),
        Mode::Flood => local.block_on(&rt, flood(args)),
        Mode::FanoutUrl | Mode::FanoutExact => local.block_on(&rt, fanout(args)),
    }?;
    Ok(line)
}

fn tally(classes: usize) -> Shared {
    Rc::new(RefCell::new(Tally {
        epoch: Instant::now(),
        classes: (0..classes).map(|_| Class::default()).collect(),
        connected: 0,
        failed: 0,
        errors: Vec::new(),
    }))
}

/// Sets fresh latency histograms for `classes` and returns the old ones.
fn record(t: &Shared, classes: &[usize]) -> Vec<Option<Histogram<u64>>> {
    let mut t = t.borrow_mut();
    classes
        .iter()
        .map(|&c| t.classes[c].latency.replace(new_hist()))
        .collect()
}

fn take(t: &Shared, class: usize) -> Histogram<u64> {
    t.borrow_mut().classes[class]
        .latency
        .take()
        .unwrap_or_else(new_hist)
}

/// Lets the last deliveries of a phase arrive before its histograms are read.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(300)).await;
}

async fn shared(args: &MatchersArgs) -> anyhow::Result<serde_json::Value> {
    let c = &args.common;
    let n = c.n();
    let p = args.patterns.max(1);
    let query: String = (0..p)
        .map(|k| {
            format!(
                "match_urlpattern={}",
                enc(&format!("{HOST}/:section/{k}/:item"))
            )
        })
        .collect::<Vec<_>>()
        .join("&");
    let main_req: Rc<[u8]> = subscribe_request(c, &query).into();
    let unrelated_topic = format!("{HOST}/unrelated");
    let other_req: Rc<[u8]> =
        subscribe_request(c, &format!("match={}", enc(&unrelated_topic))).into();
    let sources = c.source_ips.max(1);
    let mut reqs: Vec<(usize, Rc<[u8]>, Option<IpAddr>)> = (0..n)
        .map(|i| (0, main_req.clone(), source(i % sources)))
        .collect();
    // The unrelated subscribers from an address of their own.
    reqs.extend((0..args.unrelated).map(|_| (1, other_req.clone(), source(sources))));
    let t = tally(2);
    let rss0 = c.server_pid.and_then(procfs::rss_kib);
    let ramp = connect_all(c, reqs, &t).await?;
    let rss1 = c.server_pid.and_then(procfs::rss_kib);
    let epoch = t.borrow().epoch;
    let single = |k: u64| vec![format!("{HOST}/news/{}/item", k % p as u64)];
    let kt = args.topics_per_publish.max(1);
    let multi = move |k: u64| -> Vec<String> {
        (0..kt)
            .map(|j| format!("{HOST}/news/{}/item", (k as usize + j) % p))
            .collect()
    };
    let rate = Some(args.rate);
    let ep = Endpoint::of(c);
    let srv0 = c.server_pid.and_then(|pid| procfs::cpu_time(Some(pid)));

    // 1. Single-topic publishes, paced.
    record(&t, &[0]);
    let (single_rtt, single_n) = publish_loop(
        ep.clone(),
        rate,
        Instant::now() + args.duration,
        epoch,
        single,
    )
    .await?;
    settle().await;
    let single_lat = take(&t, 0);
    // 2. Multi-topic publishes, paced.
    record(&t, &[0]);
    let (multi_rtt, multi_n) = publish_loop(
        ep.clone(),
        rate,
        Instant::now() + args.duration,
        epoch,
        multi,
    )
    .await?;
    settle().await;
    let multi_lat = take(&t, 0);
    // 3. The unrelated topic alone, then beside multi-topic publishes sent back to back.
    let unrelated = |_: u64| vec![format!("{HOST}/unrelated")];
    record(&t, &[1]);
    let (alone_rtt, _) = publish_loop(
        ep.clone(),
        rate,
        Instant::now() + args.duration,
        epoch,
        unrelated,
    )
    .await?;
    settle().await;
    let alone_lat = take(&t, 1);
    record(&t, &[0, 1]);
    let until = Instant::now() + args.duration;
    let (busy, beside) = tokio::join!(
        publish_loop(ep.clone(), None, until, epoch, multi),
        publish_loop(ep.clone(), rate, until, epoch, unrelated)
    );
    let ((busy_rtt, busy_n), (beside_rtt, beside_n)) = (busy?, beside?);
    settle().await;
    let beside_lat = take(&t, 1);
    let _ = take(&t, 0);
    let srv1 = c.server_pid.and_then(|pid| procfs::cpu_time(Some(pid)));
    let (received_main, received_other) = {
        let t = t.borrow();
        (t.classes[0].received, t.classes[1].received)
    };
    let expected_main = (single_n + multi_n + busy_n) * n as u64;
    let errors = t.borrow().errors.clone();
    eprintln!(
        "{:<10} matchers-shared n={n} patterns={p}: single publish p50 {} ms (delivery {} ms), \
         {kt}-topic publish p50 {} ms (delivery {} ms), unrelated publish p50 {} ms alone, {} ms \
         beside back-to-back {kt}-topic publishes ({busy_n} of them; delivery {} ms); received \
         {received_main}/{expected_main}; ramp {:.1} s, RSS {} -> {} KiB",
        c.label(),
        p50_ms(&single_rtt),
        p50_ms(&single_lat),
        p50_ms(&multi_rtt),
        p50_ms(&multi_lat),
        p50_ms(&alone_rtt),
        p50_ms(&beside_rtt),
        p50_ms(&beside_lat),
        ramp.as_secs_f64(),
        rss0.map_or(0, |v| v),
        rss1.map_or(0, |v| v),
    );
    let _ = alone_lat;
    Ok(json!({
        "kind": "matchers",
        "mode": "shared",
        "workload": c.workload,
        "peer": c.label(),
        "subscribers": n,
        "patterns": p,
        "topics_per_publish": kt,
        "unrelated_subscribers": args.unrelated,
        "rate": args.rate,
        "phase_s": args.duration.as_secs_f64(),
        "ramp_s": ramp.as_secs_f64(),
        "rss_before_kib": rss0,
        "rss_connected_kib": rss1,
        "single": { "publish": summary(&single_rtt), "delivery": summary(&single_lat), "publishes": single_n },
        "multi": { "publish": summary(&multi_rtt), "delivery": summary(&multi_lat), "publishes": multi_n },
        "unrelated_alone": { "publish": summary(&alone_rtt), "delivery": summary(&alone_lat) },
        "unrelated_beside": { "publish": summary(&beside_rtt), "delivery": summary(&beside_lat), "publishes": beside_n, "busy_publishes": busy_n, "busy_publish": summary(&busy_rtt) },
        "received": received_main,
        "expected": expected_main,
        "received_unrelated": received_other,
        "server_cpu_s": srv0.zip(srv1).map(|(a, b)| b.saturating_sub(a).as_secs_f64()),
        "errors": errors,
    }))
}

async fn users(args: &MatchersArgs) -> anyhow::Result<serde_json::Value> {
    let c = &args.common;
    let n = c.n();
    let sources = c.source_ips.max(1);
    let reqs = (0..n)
        .map(|i| {
            let q = format!(
                "match_urlpattern={}",
                enc(&format!("{HOST}/users/{i}/:rest*"))
            );
            (
                0,
                Rc::<[u8]>::from(subscribe_request(c, &q)),
                source(i % sources),
            )
        })
        .collect();
    let t = tally(1);
    let rss0 = c.server_pid.and_then(procfs::rss_kib);
    let ramp = connect_all(c, reqs, &t).await?;
    let rss1 = c.server_pid.and_then(procfs::rss_kib);
    let epoch = t.borrow().epoch;
    record(&t, &[0]);
    let n64 = n as u64;
    let (rtt, published) = publish_loop(
        Endpoint::of(c),
        Some(args.rate),
        Instant::now() + args.duration,
        epoch,
        move |k| vec![format!("{HOST}/users/{}/inbox", (k * 7919) % n64)],
    )
    .await?;
    settle().await;
    let lat = take(&t, 0);
    let received = t.borrow().classes[0].received;
    let errors = t.borrow().errors.clone();
    eprintln!(
        "{:<10} matchers-users n={n}: publish to one user p50 {} ms p99 {:.2} ms (delivery p50 {} ms); received {received}/{published}; ramp {:.1} s, RSS {} -> {} KiB",
        c.label(),
        p50_ms(&rtt),
        rtt.value_at_quantile(0.99) as f64 / 1000.0,
        p50_ms(&lat),
        ramp.as_secs_f64(),
        rss0.unwrap_or(0),
        rss1.unwrap_or(0),
    );
    Ok(json!({
        "kind": "matchers",
        "mode": "users",
        "workload": c.workload,
        "peer": c.label(),
        "subscribers": n,
        "rate": args.rate,
        "phase_s": args.duration.as_secs_f64(),
        "ramp_s": ramp.as_secs_f64(),
        "ramp_per_s": round1(n as f64 / ramp.as_secs_f64().max(1e-9)),
        "rss_before_kib": rss0,
        "rss_connected_kib": rss1,
        "publish": summary(&rtt),
        "delivery": summary(&lat),
        "published": published,
        "received": received,
        "errors": errors,
    }))
}

async fn fanout(args: &MatchersArgs) -> anyhow::Result<serde_json::Value> {
    let c = &args.common;
    let n = c.n();
    let topic = format!("{HOST}/books/1");
    let (what, query) = match args.mode {
        Mode::FanoutUrl => (
            "fanout-url",
            format!("match_urlpattern={}", enc(&format!("{HOST}/books/:id"))),
        ),
        _ => ("fanout-exact", format!("match={}", enc(&topic))),
    };
    let req: Rc<[u8]> = subscribe_request(c, &query).into();
    let sources = c.source_ips.max(1);
    let reqs = (0..n)
        .map(|i| (0, req.clone(), source(i % sources)))
        .collect();
    let t = tally(1);
    connect_all(c, reqs, &t).await?;
    let epoch = t.borrow().epoch;
    // Warm-up, then the window.
    let ep = Endpoint::of(c);
    let publishers = args.publishers.max(1);
    let run = |d: Duration| {
        let (topic, ep) = (topic.clone(), ep.clone());
        async move {
            let until = Instant::now() + d;
            let mut all = Vec::new();
            for _ in 0..publishers {
                let (topic, ep) = (topic.clone(), ep.clone());
                all.push(async move {
                    publish_loop(ep, None, until, epoch, move |_| vec![topic.clone()]).await
                });
            }
            futures_join(all).await
        }
    };
    run(Duration::from_secs(1)).await?;
    let r0 = t.borrow().classes[0].received;
    let srv0 = c.server_pid.and_then(|pid| procfs::cpu_time(Some(pid)));
    let t0 = Instant::now();
    let published = run(args.duration).await?;
    let wall = t0.elapsed();
    let r1 = t.borrow().classes[0].received;
    let srv1 = c.server_pid.and_then(|pid| procfs::cpu_time(Some(pid)));
    let rate = (r1 - r0) as f64 / wall.as_secs_f64();
    let errors = t.borrow().errors.clone();
    eprintln!(
        "{:<10} matchers-{what} n={n} m={}: {rate:.0} deliveries/s ({published} publishes)",
        c.label(),
        args.publishers
    );
    Ok(json!({
        "kind": "matchers",
        "mode": what,
        "workload": c.workload,
        "peer": c.label(),
        "subscribers": n,
        "publishers": args.publishers,
        "window_s": wall.as_secs_f64(),
        "deliveries_per_s": rate.round(),
        "publishes": published,
        "server_cpu_pct": srv0.zip(srv1).map(|(a, b)| round1(b.saturating_sub(a).as_secs_f64() / wall.as_secs_f64() * 100.0)),
        "errors": errors,
    }))
}

/// Runs the publishers together; the total acknowledged.
async fn futures_join<F>(all: Vec<F>) -> anyhow::Result<u64>
where
    F: std::future::Future<Output = anyhow::Result<(Histogram<u64>, u64)>> + 'static,
{
    let handles: Vec<_> = all.into_iter().map(tokio::task::spawn_local).collect();
    let mut total = 0;
    for h in handles {
        total += h.await??.1;
    }
    Ok(total)
}

async fn flood(args: &MatchersArgs) -> anyhow::Result<serde_json::Value> {
    let c = &args.common;
    let Some(pid) = c.server_pid else {
        bail!("flood needs --server-pid (it reports the server's RSS)");
    };
    let rss = move || procfs::rss_kib(pid).unwrap_or(0);
    let baseline = rss();
    let counter = Rc::new(RefCell::new(0u64));
    let mut rounds = Vec::new();
    let mut first = serde_json::Value::Null;
    for round in 0..args.rounds.max(1) {
        let r = flood_round(args, counter.clone(), rss).await;
        let mib = |kib: u64| round1(kib as f64 / 1024.0);
        let s = r.stats;
        eprintln!(
            "{:<10} matchers-flood round {} of {} s, {} patterns x {} groups per request, {} in flight: {} ok ({} patterns), {} x 429, {} x 503, {} other, {} failed; RSS {} MiB -> peak {} MiB (+{}), end {} MiB, {} s after closing {} MiB (+{})",
            c.label(),
            round + 1,
            args.flood_duration.as_secs_f64(),
            args.batch,
            args.groups,
            args.flood_connections,
            s.ok,
            s.patterns,
            s.too_many,
            s.full,
            s.other,
            s.failed,
            mib(baseline),
            mib(r.peak),
            mib(r.peak.saturating_sub(baseline)),
            mib(r.end),
            args.settle.as_secs_f64(),
            mib(r.after),
            mib(r.after.saturating_sub(baseline)),
        );
        let line = json!({
            "ok": s.ok,
            "patterns_accepted": s.patterns,
            "refused_429": s.too_many,
            "refused_503": s.full,
            "other_status": s.other,
            "failed": s.failed,
            "rss_peak_kib": r.peak,
            "rss_end_kib": r.end,
            "rss_after_kib": r.after,
            "growth_mib": mib(r.peak.saturating_sub(baseline)),
            "after_mib": mib(r.after.saturating_sub(baseline)),
        });
        if round == 0 {
            first = line.clone();
        }
        rounds.push(line);
    }
    let mut out = json!({
        "kind": "matchers",
        "mode": "flood",
        "workload": c.workload,
        "peer": c.label(),
        "flood_s": args.flood_duration.as_secs_f64(),
        "groups": args.groups,
        "batch": args.batch,
        "in_flight": args.flood_connections,
        "hold": args.hold,
        "settle_s": args.settle.as_secs_f64(),
        "rss_baseline_kib": baseline,
        "rounds": rounds,
    });
    // The first round's figures at the top level, as the report reads them.
    if let (Some(o), serde_json::Value::Object(f)) = (out.as_object_mut(), first) {
        o.extend(f);
    }
    Ok(out)
}

struct Round {
    stats: FloodStats,
    peak: u64,
    end: u64,
    after: u64,
}

async fn flood_round(
    args: &MatchersArgs,
    counter: Rc<RefCell<u64>>,
    rss: impl Fn() -> u64 + Copy + 'static,
) -> Round {
    let c = &args.common;
    let stats = Rc::new(RefCell::new(FloodStats::default()));
    let peak = Rc::new(RefCell::new(rss()));
    let stop = Instant::now() + args.flood_duration;
    let held: Rc<RefCell<std::collections::VecDeque<TcpStream>>> = Rc::default();
    // RSS sampler.
    let sampler = {
        let peak = peak.clone();
        tokio::task::spawn_local(async move {
            while Instant::now() < stop {
                let v = rss();
                {
                    let mut p = peak.borrow_mut();
                    *p = (*p).max(v);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for _ in 0..args.flood_connections.max(1) {
        let (stats, counter, held) = (stats.clone(), counter.clone(), held.clone());
        let (batch, groups, hold, addr) = (args.batch.max(1), args.groups, args.hold, c.addr);
        tasks.push(tokio::task::spawn_local(async move {
            while Instant::now() < stop {
                let query: String = (0..batch)
                    .map(|_| {
                        let n = {
                            let mut k = counter.borrow_mut();
                            *k += 1;
                            *k
                        };
                        let mut p = format!("{HOST}/f{n}");
                        for g in 0..groups {
                            p.push_str(&format!("/:a{g}"));
                        }
                        format!("match_urlpattern={}", enc(&p))
                    })
                    .collect::<Vec<_>>()
                    .join("&");
                let req = format!(
                    "GET /.well-known/mercure?{query} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
                );
                // One client address: the flood is one client.
                let attempt = async {
                    let mut s = connect_subscriber(addr, source(0)).await?;
                    s.write_all(req.as_bytes()).await?;
                    let mut buf = Vec::new();
                    loop {
                        if read_some(&mut s, |b| buf.extend_from_slice(b)).await? == 0 {
                            return Err(std::io::Error::other("closed"));
                        }
                        if let Some(head) = parse_head(&buf).map_err(std::io::Error::other)? {
                            return Ok((head.status, s));
                        }
                    }
                };
                match attempt.await {
                    Ok((status, s)) => {
                        let mut st = stats.borrow_mut();
                        match status {
                            200 => {
                                st.ok += 1;
                                st.patterns += batch as u64;
                                drop(st);
                                let mut h = held.borrow_mut();
                                h.push_back(s);
                                while h.len() > hold {
                                    h.pop_front();
                                }
                            }
                            429 => st.too_many += 1,
                            503 => st.full += 1,
                            _ => st.other += 1,
                        }
                    }
                    Err(_) => stats.borrow_mut().failed += 1,
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = sampler.await;
    let end = rss();
    let peak = (*peak.borrow()).max(end);
    held.borrow_mut().clear();
    tokio::time::sleep(args.settle).await;
    let after = rss();
    let stats = *stats.borrow();
    Round {
        stats,
        peak,
        end,
        after,
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct FloodStats {
    ok: u64,
    patterns: u64,
    too_many: u64,
    full: u64,
    other: u64,
    failed: u64,
}
