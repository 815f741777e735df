//! `soak`: a long mixed load against a running hub, then the checks that it came back to where
//! it started (issue 8, "Soak test"). `scripts/soak` starts the hub and runs this.
//!
//! For the whole run, at once:
//! - **steady subscribers**, one per topic slot, connected before the first publish: each must
//!   end with every acknowledged update of its topic exactly once, in hub order;
//! - **publishers** at a set rate over keep-alive connections with a JWT; the id each answer
//!   carries is the ledger of what was acknowledged;
//! - **churn**: subscribers that connect and vanish without closing: reset at once after the
//!   head, read a while then close, stop reading while updates pile up then reset, or dribble
//!   half a request and reset;
//! - **replays**: a subscriber with `last_event_id` some way back must get exactly the
//!   acknowledged updates after it, in order;
//! - **bad requests**: each must get its 4xx status, never a dropped connection or a 5xx.
//!
//! After a warm-up (which fills the hub's history and log retention, so that their bounded
//! growth is not counted), churn pauses, the hub settles, and its RSS and open file descriptors
//! are the baseline. At the end the same pause and settle, then: RSS back within the allowed
//! growth of that baseline, no descriptor leaked, no acknowledged update lost, publish-to-receive
//! p99 within bounds, and no unexpected answer. One JSON line on stdout, the verdict on stderr,
//! exit status 1 when a check failed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use serde_json::json;
use ssehub_codec::{Frame, Parser};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::load::{connect, exchange};
use crate::procfs::rss_kib;
use crate::scan::{Dechunker, parse_head};

#[derive(Debug, Args)]
pub struct SoakArgs {
    /// The hub's address.
    #[arg(long, default_value = "127.0.0.1:3000")]
    addr: SocketAddr,
    /// The hub's pid, for its RSS and open file descriptors.
    #[arg(long)]
    server_pid: u32,
    /// Publisher access token (`ssehub token --issuer I --audience http://soak/.well-known/mercure
    /// --publish '*'`: requests name the host `soak`).
    #[arg(long)]
    token: String,
    /// Length of the whole run, seconds (warm-up included).
    #[arg(long, default_value_t = 600.0)]
    duration: f64,
    /// Warm-up before the baseline is taken, seconds.
    #[arg(long, default_value_t = 60.0)]
    warmup: f64,
    /// Topics (`soak/0` ..), at least 4: publisher `p` of the 4 publishes topics `t % 4 == p`,
    /// so each topic's updates are acknowledged in hub order.
    #[arg(long, default_value_t = 20)]
    topics: usize,
    /// Steady subscribers (spread over the topics).
    #[arg(long, default_value_t = 100)]
    steady: usize,
    /// Publishes per second, over 4 publisher connections.
    #[arg(long, default_value_t = 200.0)]
    publish_rate: f64,
    /// Churning subscribers started per second.
    #[arg(long, default_value_t = 50.0)]
    churn_rate: f64,
    /// Replays started per second.
    #[arg(long, default_value_t = 5.0)]
    replay_rate: f64,
    /// Bad requests sent per second.
    #[arg(long, default_value_t = 10.0)]
    bad_rate: f64,
    /// Replays start at most this many updates back (keep it under the hub's retention).
    #[arg(long, default_value_t = 50)]
    replay_depth: usize,
    /// Pause before the baseline and the final reading, seconds.
    #[arg(long, default_value_t = 3.0)]
    settle: f64,
    /// Most publish-to-receive p99 allowed (steady subscribers, after the warm-up), ms.
    #[arg(long, default_value_t = 100.0)]
    max_p99_ms: f64,
    /// RSS growth over the baseline allowed, percent of the baseline ...
    #[arg(long, default_value_t = 20.0)]
    max_rss_growth_pct: f64,
    /// ... plus this much, KiB (allocator slack).
    #[arg(long, default_value_t = 4096)]
    rss_slack_kib: u64,
    /// Bytes of padding in each update's data, so the run moves real volumes through the hub's
    /// caches (0: the short timestamp alone).
    #[arg(long, default_value_t = 0)]
    payload_bytes: usize,
    /// The hub's memory bound, checked absolutely: RSS at the baseline and at the end at most
    /// this many KiB over its RSS before the first connection (the hub's configured
    /// --cache-size plus what connections and the allocator hold). Unset: not checked.
    #[arg(long)]
    max_rss_over_start_kib: Option<u64>,
    /// Open file descriptors over the baseline allowed at the end.
    #[arg(long, default_value_t = 4)]
    fd_slack: u64,
}

/// What the run shares between its tasks.
struct Soak {
    args: SoakArgs,
    start: Instant,
    /// Acknowledged seqs, per topic, in the order the answers came.
    acked: Mutex<Vec<Vec<u64>>>,
    /// The hub's id epoch (`{epoch}-{seq}`), from the first answer.
    epoch: Mutex<Option<String>>,
    /// Latency of steady deliveries after the warm-up, µs.
    latency: Mutex<Histogram<u64>>,
    failures: Mutex<Vec<String>>,
    failure_count: AtomicU64,
    /// Churn, replays and bad requests run only while this is set.
    mixing: AtomicBool,
    /// Publishers run while this is set.
    publishing: AtomicBool,
    /// Churn connections, replays and bad requests in flight.
    in_flight: AtomicU64,
    publishes: AtomicU64,
    churned: AtomicU64,
    replays: AtomicU64,
    bad_requests: AtomicU64,
    steady_reconnects: AtomicU64,
}

impl Soak {
    fn fail(&self, what: String) {
        self.failure_count.fetch_add(1, Relaxed);
        let mut f = self.failures.lock();
        // Enough to diagnose; a broken hub would otherwise fill the memory with the same line.
        if f.len() < 50 {
            f.push(what);
        }
    }

    fn now_ns(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn warm(&self) -> bool {
        self.start.elapsed().as_secs_f64() >= self.args.warmup
    }

    fn topic(i: usize) -> String {
        format!("soak/{i}")
    }

    fn seq_of(&self, id: &str) -> Option<u64> {
        let (epoch, seq) = id.rsplit_once('-')?;
        let mut known = self.epoch.lock();
        match known.as_deref() {
            Some(e) if e != epoch => return None,
            Some(_) => {}
            None => *known = Some(epoch.to_string()),
        }
        seq.parse().ok()
    }
}

/// Counts an in-flight task for as long as it lives.
struct InFlight(Arc<Soak>);

impl InFlight {
    fn new(s: &Arc<Soak>) -> Self {
        s.in_flight.fetch_add(1, Relaxed);
        InFlight(s.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

pub fn soak(args: SoakArgs) -> anyhow::Result<(serde_json::Value, bool)> {
    if args.topics < 4 || args.steady < args.topics {
        bail!("--topics must be at least 4 and --steady at least --topics");
    }
    if args.warmup >= args.duration {
        bail!("--warmup must be shorter than --duration");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let topics = args.topics;
    let soak = Arc::new(Soak {
        args,
        start: Instant::now(),
        acked: Mutex::new(vec![Vec::new(); topics]),
        epoch: Mutex::new(None),
        latency: Mutex::new(Histogram::new_with_bounds(1, 60_000_000, 3).context("histogram")?),
        failures: Mutex::new(Vec::new()),
        failure_count: AtomicU64::new(0),
        mixing: AtomicBool::new(true),
        publishing: AtomicBool::new(true),
        in_flight: AtomicU64::new(0),
        publishes: AtomicU64::new(0),
        churned: AtomicU64::new(0),
        replays: AtomicU64::new(0),
        bad_requests: AtomicU64::new(0),
        steady_reconnects: AtomicU64::new(0),
    });
    runtime.block_on(run(soak))
}

async fn run(s: Arc<Soak>) -> anyhow::Result<(serde_json::Value, bool)> {
    let pid = s.args.server_pid;
    let start_rss = rss_kib(pid).context("reading the hub's RSS")?;
    let start_fds = open_fds(pid).context("counting the hub's open files")?;

    // Steady subscribers first, so that every acknowledged update is theirs to receive.
    let mut steady = JoinSet::new();
    let mut ready = Vec::new();
    for i in 0..s.args.steady {
        let (tx, rx) = tokio::sync::oneshot::channel();
        ready.push(rx);
        steady.spawn(steady_subscriber(s.clone(), i % s.args.topics, tx));
    }
    for rx in ready {
        rx.await.context("a steady subscriber could not connect")?;
    }

    let mut publishers = JoinSet::new();
    for p in 0..4 {
        publishers.spawn(publisher(s.clone(), p));
    }
    let mixing = tokio::spawn(mixer(s.clone()));

    let warmup = Duration::from_secs_f64(s.args.warmup);
    tokio::time::sleep(warmup.saturating_sub(s.start.elapsed())).await;
    let baseline = quiesce(&s).await?;
    s.mixing.store(true, Relaxed);
    tracing_line(&format!(
        "baseline after {:.0}s warm-up: RSS {} KiB, {} open files",
        s.args.warmup, baseline.0, baseline.1
    ));

    let end = Duration::from_secs_f64(s.args.duration);
    tokio::time::sleep(end.saturating_sub(s.start.elapsed())).await;
    s.publishing.store(false, Relaxed);
    // Publishers finish the exchange in hand, so every update the hub acknowledged is in the
    // ledger before the check.
    while publishers.join_next().await.is_some() {}
    let final_reading = quiesce(&s).await?;
    mixing.abort();

    // Everything acknowledged has been delivered, or never will be.
    let drained = drain(&s).await;
    steady.abort_all();
    while steady.join_next().await.is_some() {}
    let received = drained;

    let (rss_base, fds_base) = baseline;
    let (rss_end, fds_end) = final_reading;
    let rss_allowed = rss_base
        + (rss_base as f64 * s.args.max_rss_growth_pct / 100.0) as u64
        + s.args.rss_slack_kib;
    let hist = s.latency.lock().clone();
    let p99_ms = hist.value_at_quantile(0.99) as f64 / 1000.0;
    let acked_total: u64 = s.acked.lock().iter().map(|v| v.len() as u64).sum();

    let mut verdict = Vec::new();
    if rss_end > rss_allowed {
        verdict.push(format!(
            "RSS {rss_end} KiB at the end, over the allowed {rss_allowed} KiB (baseline {rss_base} KiB)"
        ));
    }
    if let Some(bound) = s.args.max_rss_over_start_kib {
        for (when, rss) in [("at the baseline", rss_base), ("at the end", rss_end)] {
            if rss > start_rss + bound {
                verdict.push(format!(
                    "RSS {rss} KiB {when}, {} KiB over the {start_rss} KiB before the run: \
                     over the {bound} KiB the hub's caches are bounded by",
                    rss - start_rss
                ));
            }
        }
    }
    if fds_end > fds_base + s.args.fd_slack {
        verdict.push(format!(
            "{fds_end} open files at the end, baseline {fds_base}: descriptors leaked"
        ));
    }
    if p99_ms > s.args.max_p99_ms {
        verdict.push(format!(
            "p99 latency {p99_ms:.1} ms over {} ms",
            s.args.max_p99_ms
        ));
    }
    if hist.is_empty() {
        verdict.push("no latency samples after the warm-up".into());
    }
    if acked_total == 0 {
        verdict.push("no publish was acknowledged".into());
    }
    for f in s.failures.lock().iter() {
        verdict.push(f.clone());
    }
    let failures = s.failure_count.load(Relaxed);
    let ok = verdict.is_empty();
    let line = json!({
        "kind": "soak",
        "ok": ok,
        "duration_s": s.args.duration,
        "warmup_s": s.args.warmup,
        "acknowledged": acked_total,
        "steady_subscribers": s.args.steady,
        "steady_deliveries_checked": received,
        "steady_reconnects": s.steady_reconnects.load(Relaxed),
        "churned": s.churned.load(Relaxed),
        "replays": s.replays.load(Relaxed),
        "bad_requests": s.bad_requests.load(Relaxed),
        "failures": failures,
        "latency_ms": {
            "p50": hist.value_at_quantile(0.5) as f64 / 1000.0,
            "p99": p99_ms,
            "max": hist.max() as f64 / 1000.0,
        },
        "rss_kib": {
            "start": start_rss,
            "baseline": rss_base,
            "end": rss_end,
            "allowed": rss_allowed,
            "bound_over_start": s.args.max_rss_over_start_kib,
        },
        "payload_bytes": s.args.payload_bytes,
        "open_files": {"start": start_fds, "baseline": fds_base, "end": fds_end},
        "problems": verdict,
    });
    if ok {
        tracing_line(&format!(
            "soak passed: {acked_total} acknowledged, {} churned, {} replays, {} bad requests; \
             p99 {p99_ms:.1} ms; RSS {rss_base} -> {rss_end} KiB; files {fds_base} -> {fds_end}",
            s.churned.load(Relaxed),
            s.replays.load(Relaxed),
            s.bad_requests.load(Relaxed),
        ));
    } else {
        tracing_line("soak FAILED:");
        for v in &verdict {
            tracing_line(&format!("  - {v}"));
        }
    }
    Ok((line, ok))
}

fn tracing_line(s: &str) {
    eprintln!("soak: {s}");
}

fn open_fds(pid: u32) -> std::io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// Stops the churn, waits for what is in flight to finish and the hub to settle, then reads
/// its RSS and open files.
async fn quiesce(s: &Arc<Soak>) -> anyhow::Result<(u64, u64)> {
    s.mixing.store(false, Relaxed);
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.in_flight.load(Relaxed) > 0 {
        if Instant::now() > deadline {
            bail!("churn tasks still running 30 s after the churn stopped");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs_f64(s.args.settle)).await;
    let pid = s.args.server_pid;
    Ok((
        rss_kib(pid).context("reading the hub's RSS")?,
        open_fds(pid).context("counting the hub's open files")?,
    ))
}

/// Waits (at most 10 s) until every steady subscriber has every acknowledged update of its
/// topic, then checks them; returns the deliveries checked.
async fn drain(s: &Arc<Soak>) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let done = {
            let acked = s.acked.lock();
            let steady = STEADY.lock();
            steady
                .iter()
                .all(|(topic, seen)| seen.len() >= acked[*topic].len())
        };
        if done || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let acked = s.acked.lock().clone();
    let steady = STEADY.lock();
    let mut checked = 0;
    for (i, (topic, seen)) in steady.iter().enumerate() {
        checked += seen.len() as u64;
        if let Some(problem) = compare(&acked[*topic], seen) {
            s.fail(format!("steady subscriber {i} (soak/{topic}): {problem}"));
        }
    }
    checked
}

/// What steady subscribers received: (topic, seqs in arrival order). A static so that the
/// subscriber tasks can be aborted at the end without losing it.
static STEADY: Mutex<Vec<(usize, Vec<u64>)>> = Mutex::new(Vec::new());

/// Compares what a subscriber received with what was acknowledged for its topic: the same
/// set, each once, in increasing hub order.
fn compare(acked: &[u64], seen: &[u64]) -> Option<String> {
    if let Some(w) = seen.windows(2).find(|w| w[1] <= w[0]) {
        return Some(format!(
            "seq {} after {}: out of order or repeated",
            w[1], w[0]
        ));
    }
    let mut want = acked.to_vec();
    want.sort_unstable();
    if want == seen {
        return None;
    }
    let got: std::collections::HashSet<u64> = seen.iter().copied().collect();
    let missing: Vec<u64> = want
        .iter()
        .filter(|q| !got.contains(q))
        .take(5)
        .copied()
        .collect();
    let wanted: std::collections::HashSet<u64> = want.iter().copied().collect();
    let extra: Vec<u64> = seen
        .iter()
        .filter(|q| !wanted.contains(q))
        .take(5)
        .copied()
        .collect();
    Some(format!(
        "{} acknowledged, {} received; missing {missing:?}, unacknowledged {extra:?}",
        want.len(),
        seen.len()
    ))
}

fn subscribe_request(topic: &str, last_event_id: Option<&str>) -> Vec<u8> {
    let mut path = format!("/.well-known/mercure?match={}", query_value(topic));
    if let Some(id) = last_event_id {
        // Hub ids are fragments (`#...`): raw in a URL, the `#` would end the query.
        path.push_str("&last_event_id=");
        path.push_str(&query_value(id));
    }
    format!("GET {path} HTTP/1.1\r\nHost: soak\r\nAccept: text/event-stream\r\n\r\n").into_bytes()
}

/// `value` percent-encoded for a query string: everything but RFC 3986 unreserved characters.
fn query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Reads a response head; returns it and the body bytes read with it.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<(crate::scan::Head, Vec<u8>)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the response head"));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = parse_head(&buf).map_err(std::io::Error::other)? {
            let rest = buf.split_off(head.len);
            return Ok((head, rest));
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("response head over 64 KiB"));
        }
    }
}

/// An SSE response body being read: de-chunked and parsed into events.
struct EventReader {
    stream: TcpStream,
    dechunk: Dechunker,
    parser: Parser,
}

impl EventReader {
    async fn open(addr: SocketAddr, request: &[u8]) -> std::io::Result<Self> {
        let mut stream = TcpStream::connect(addr).await?;
        stream.write_all(request).await?;
        let (head, rest) = read_head(&mut stream).await?;
        if head.status != 200 {
            return Err(std::io::Error::other(format!("HTTP {}", head.status)));
        }
        let mut r = EventReader {
            stream,
            dechunk: Dechunker::new(head.chunked),
            parser: Parser::new(),
        };
        r.feed(&rest)?;
        Ok(r)
    }

    fn feed(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let parser = &mut self.parser;
        self.dechunk
            .feed(bytes, |p| parser.feed(p))
            .map_err(std::io::Error::other)
    }

    /// The next event's (id, data); `None` when the stream ended.
    async fn next(&mut self) -> std::io::Result<Option<(String, String)>> {
        let mut chunk = [0u8; 8192];
        loop {
            while let Some(frame) = self.parser.next_frame() {
                if let Frame::Event(e) = frame
                    && e.event_type == "message"
                {
                    return Ok(Some((e.last_event_id.to_string(), e.data.to_string())));
                }
            }
            if self.dechunk.is_done() {
                return Ok(None);
            }
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.feed(&chunk[..n])?;
        }
    }
}

async fn steady_subscriber(s: Arc<Soak>, topic: usize, ready: tokio::sync::oneshot::Sender<()>) {
    let slot = {
        let mut st = STEADY.lock();
        st.push((topic, Vec::new()));
        st.len() - 1
    };
    let name = Soak::topic(topic);
    let mut ready = Some(ready);
    let mut last_id: Option<String> = None;
    loop {
        let request = subscribe_request(&name, last_id.as_deref());
        let mut reader = match EventReader::open(s.args.addr, &request).await {
            Ok(r) => r,
            Err(e) => {
                s.fail(format!(
                    "steady subscriber on {name} could not (re)connect: {e}"
                ));
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        if let Some(tx) = ready.take() {
            let _ = tx.send(());
        }
        loop {
            match reader.next().await {
                Ok(Some((id, data))) => {
                    let Some(seq) = s.seq_of(&id) else {
                        s.fail(format!("steady subscriber on {name}: unexpected id {id:?}"));
                        continue;
                    };
                    if s.warm()
                        && let Some(sent) =
                            data.split(' ').next().and_then(|t| t.parse::<u64>().ok())
                    {
                        let us = s.now_ns().saturating_sub(sent) / 1000;
                        let _ = s.latency.lock().record(us.max(1));
                    }
                    STEADY.lock()[slot].1.push(seq);
                    last_id = Some(id);
                }
                Ok(None) => break,
                Err(e) => {
                    s.fail(format!("steady subscriber on {name}: {e}"));
                    break;
                }
            }
        }
        // The hub must not drop a steady subscriber; note it, and resume where it left off
        // so the loss check still means something.
        s.steady_reconnects.fetch_add(1, Relaxed);
        s.fail(format!("steady subscriber on {name} was disconnected"));
    }
}

async fn publisher(s: Arc<Soak>, index: usize) {
    let period = Duration::from_secs_f64(4.0 / s.args.publish_rate.max(0.001));
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::new();
    // One publisher per topic, so each topic's acks come in hub order.
    let mine: Vec<usize> = (index..s.args.topics).step_by(4).collect();
    let mut n = 0usize;
    let pad = "x".repeat(s.args.payload_bytes);
    while s.publishing.load(Relaxed) {
        tick.tick().await;
        let topic = mine[n % mine.len()];
        n += 1;
        let body = format!(
            "topic={}&data={}+{index}.{n}+{pad}",
            Soak::topic(topic).replace('/', "%2F"),
            s.now_ns()
        );
        let request = format!(
            "POST /.well-known/mercure HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            s.args.token,
            body.len()
        );
        let stream = match conn.take() {
            Some(c) => c,
            None => match TcpStream::connect(s.args.addr).await {
                Ok(c) => c,
                Err(e) => {
                    s.fail(format!("publisher {index} could not connect: {e}"));
                    continue;
                }
            },
        };
        let mut stream = stream;
        match exchange(&mut stream, request.as_bytes(), &mut buf).await {
            Ok((200, reuse)) => {
                let id = parse_head(&buf)
                    .ok()
                    .flatten()
                    .map(|h| String::from_utf8_lossy(&buf[h.len..]).trim().to_string())
                    .unwrap_or_default();
                match s.seq_of(&id) {
                    Some(seq) => s.acked.lock()[topic].push(seq),
                    None => s.fail(format!("publish answered with an unexpected id {id:?}")),
                }
                s.publishes.fetch_add(1, Relaxed);
                if reuse {
                    conn = Some(stream);
                }
            }
            Ok((status, _)) => s.fail(format!("publish answered {status}")),
            Err(e) => s.fail(format!("publish failed: {e}")),
        }
    }
}

/// Starts churn, replays and bad requests at their rates while mixing is on.
async fn mixer(s: Arc<Soak>) {
    let step = Duration::from_millis(10);
    let mut tick = tokio::time::interval(step);
    let (mut churn, mut replay, mut bad) = (0.0f64, 0.0f64, 0.0f64);
    let mut i: u64 = 0;
    loop {
        tick.tick().await;
        if !s.mixing.load(Relaxed) {
            continue;
        }
        let dt = step.as_secs_f64();
        churn += s.args.churn_rate * dt;
        replay += s.args.replay_rate * dt;
        bad += s.args.bad_rate * dt;
        while churn >= 1.0 {
            churn -= 1.0;
            i += 1;
            let guard = InFlight::new(&s);
            tokio::spawn(churner(s.clone(), i, guard));
        }
        while replay >= 1.0 {
            replay -= 1.0;
            i += 1;
            let guard = InFlight::new(&s);
            tokio::spawn(replayer(s.clone(), i, guard));
        }
        while bad >= 1.0 {
            bad -= 1.0;
            i += 1;
            let guard = InFlight::new(&s);
            tokio::spawn(bad_request(s.clone(), i, guard));
        }
    }
}

/// A pseudo-random number from a counter (splitmix64): varied behaviour, reproducible runs.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

async fn churner(s: Arc<Soak>, i: u64, _guard: InFlight) {
    let r = mix(i);
    // Half of them on `*`: they get every update, so the ones that stop reading fill up.
    let topic = if r & 1 == 0 {
        "*".to_string()
    } else {
        Soak::topic((r >> 8) as usize % s.args.topics)
    };
    let request = subscribe_request(&topic, None);
    let hold = Duration::from_millis(100 + (r >> 16) % 2000);
    // `connect` resets on drop (linger 0): the client vanishes without a FIN.
    let result: std::io::Result<()> = async {
        match (r >> 4) % 4 {
            // Reset right after the head.
            0 => {
                let mut c = connect(s.args.addr, None).await?;
                c.write_all(&request).await?;
                read_head(&mut c).await?;
            }
            // Read for a while, then close properly.
            1 => {
                let mut c = TcpStream::connect(s.args.addr).await?;
                c.write_all(&request).await?;
                read_head(&mut c).await?;
                let mut sink = [0u8; 4096];
                let _ = tokio::time::timeout(hold, async {
                    while c.read(&mut sink).await? > 0 {}
                    Ok::<_, std::io::Error>(())
                })
                .await;
                c.shutdown().await?;
            }
            // Stop reading while updates pile up, then reset.
            2 => {
                let mut c = connect(s.args.addr, None).await?;
                c.write_all(&request).await?;
                tokio::time::sleep(hold).await;
            }
            // Dribble half a request, then reset.
            _ => {
                let mut c = connect(s.args.addr, None).await?;
                c.write_all(&request[..request.len() / 2]).await?;
                tokio::time::sleep(hold / 4).await;
            }
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        s.fail(format!("churn subscriber on {topic}: {e}"));
    }
    s.churned.fetch_add(1, Relaxed);
}

async fn replayer(s: Arc<Soak>, i: u64, _guard: InFlight) {
    let r = mix(i);
    let topic = (r as usize) % s.args.topics;
    let acked = s.acked.lock()[topic].clone();
    if acked.len() < 2 {
        return;
    }
    let back = 1 + (r >> 20) as usize % s.args.replay_depth.min(acked.len() - 1);
    let from = acked[acked.len() - 1 - back];
    // Everything acknowledged after `from` (in hub order) must come back, in that order.
    let mut want: Vec<u64> = acked.iter().copied().filter(|&q| q > from).collect();
    want.sort_unstable();
    let Some(epoch) = s.epoch.lock().clone() else {
        return;
    };
    let request = subscribe_request(&Soak::topic(topic), Some(&format!("{epoch}-{from}")));
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let mut reader = EventReader::open(s.args.addr, &request).await?;
        let mut got = Vec::with_capacity(want.len());
        while got.len() < want.len() {
            match reader.next().await? {
                Some((id, _)) => match s.seq_of(&id) {
                    Some(seq) => got.push(seq),
                    None => return Err(std::io::Error::other(format!("unexpected id {id:?}"))),
                },
                None => return Err(std::io::Error::other("stream ended during replay")),
            }
        }
        Ok(got)
    })
    .await;
    match outcome {
        Ok(Ok(got)) if got == want => {
            s.replays.fetch_add(1, Relaxed);
        }
        Ok(Ok(got)) => s.fail(format!(
            "replay of soak/{topic} after seq {from}: wanted {} updates {:?}.., got {:?}..",
            want.len(),
            &want[..want.len().min(5)],
            &got[..got.len().min(5)]
        )),
        Ok(Err(e)) => s.fail(format!("replay of soak/{topic} after seq {from}: {e}")),
        Err(_) => s.fail(format!(
            "replay of soak/{topic} after seq {from}: timed out"
        )),
    }
}

/// The bad requests, each with the status it must get.
fn bad_cases(token: &str) -> Vec<(&'static str, Vec<u8>, u16)> {
    let form = "application/x-www-form-urlencoded";
    let post = |auth: &str, ctype: &str, body: &str| {
        format!(
            "POST /.well-known/mercure HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {auth}\r\n\
             Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    };
    vec![
        ("publish without topic", post(token, form, "data=x"), 400),
        ("publish with a bad token", post("not.a.token", form, "topic=a&data=x"), 401),
        ("publish as JSON", post(token, "application/json", "{}"), 415),
        ("publish with invalid UTF-8", post(token, form, "topic=%FF&data=x"), 400),
        (
            "publish over the body limit",
            format!(
                "POST /.well-known/mercure HTTP/1.1\r\nHost: soak\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: {form}\r\nContent-Length: 1000000000\r\nConnection: close\r\n\r\ntopic="
            )
            .into_bytes(),
            413,
        ),
        (
            "subscribe without a matcher",
            b"GET /.well-known/mercure HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n".to_vec(),
            400,
        ),
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
    ]
}

async fn bad_request(s: Arc<Soak>, i: u64, _guard: InFlight) {
    let cases = bad_cases(&s.args.token);
    let (what, request, want) = &cases[(i as usize) % cases.len()];
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        let mut c = TcpStream::connect(s.args.addr).await?;
        c.write_all(request).await?;
        let (head, _) = read_head(&mut c).await?;
        Ok::<_, std::io::Error>(head.status)
    })
    .await;
    match outcome {
        Ok(Ok(status)) if status == *want => {
            s.bad_requests.fetch_add(1, Relaxed);
        }
        Ok(Ok(status)) => s.fail(format!("{what}: HTTP {status}, wanted {want}")),
        Ok(Err(e)) => s.fail(format!("{what}: {e}")),
        Err(_) => s.fail(format!("{what}: no answer within 10 s")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn compare_finds_loss_repeats_and_disorder() {
        assert_eq!(
            compare(&[3, 1, 2], &[1, 2, 3]),
            None,
            "hub order, not ack order"
        );
        assert!(
            compare(&[1, 2, 3], &[1, 3])
                .unwrap()
                .contains("missing [2]")
        );
        assert!(compare(&[1, 2], &[1, 2, 2]).unwrap().contains("repeated"));
        assert!(compare(&[1, 2], &[2, 1]).unwrap().contains("out of order"));
        assert!(
            compare(&[1], &[1, 7])
                .unwrap()
                .contains("unacknowledged [7]")
        );
    }

    #[test]
    fn every_bad_case_expects_a_client_error() {
        let cases = bad_cases("t");
        assert!(cases.len() >= 6);
        let mut seen = HashMap::new();
        for (what, req, status) in cases {
            assert!((400..500).contains(&status), "{what}");
            assert!(seen.insert(what, req).is_none(), "{what} twice");
        }
    }
}
