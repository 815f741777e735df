//! Catching up from the hub's history (issue 5's speed targets; ssehub only):
//!
//! - `replay`: publish N updates to one topic, then ONE subscriber asks for all of them with
//!   `last_event_id=earliest`; the time from sending its request until it holds all N.
//! - `storm`: S subscribers receive one update and remember its id, all disconnect, K more are
//!   published, then all S reconnect at once with `Last-Event-ID: <id>`; the time until every
//!   one holds all K.
//!
//! One current-thread runtime: the generator owns one core. Each publish carries a sequence
//! number where the other workloads put their timestamp (the same `~T` + 20 digits marker), so
//! every subscriber keeps a bitset of what it got: loss, duplicates and updates from before the
//! id (which should not be replayed) are counted exactly, not inferred from totals.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::json;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::load::{connect, connect_subscriber, exchange, read_some, source_ip};
use crate::scan::{Dechunker, EventScanner, Head, parse_head};
use crate::target::{PublishRequest, Target};
use crate::{Common, ReplayArgs, StormArgs, cpu_pct, opt, pct, procfs, round2};

/// Which sequence numbers a subscriber got, out of the ones it should get.
#[derive(Debug, Clone)]
pub struct Seen {
    wanted: Range<u64>,
    bits: Vec<u64>,
    /// Distinct wanted sequence numbers received.
    pub distinct: u64,
    /// Wanted sequence numbers received more than once (each extra copy counts).
    pub duplicated: u64,
    /// Sequence numbers outside `wanted`: for the storm, the update the `Last-Event-ID` names.
    pub unexpected: u64,
}

impl Seen {
    pub fn new(wanted: Range<u64>) -> Self {
        let len = (wanted.end - wanted.start).div_ceil(64) as usize;
        Self {
            wanted,
            bits: vec![0; len],
            distinct: 0,
            duplicated: 0,
            unexpected: 0,
        }
    }

    pub fn want(&self) -> u64 {
        self.wanted.end - self.wanted.start
    }

    pub fn complete(&self) -> bool {
        self.distinct >= self.want()
    }

    pub fn mark(&mut self, seq: u64) {
        if !self.wanted.contains(&seq) {
            self.unexpected += 1;
            return;
        }
        let i = seq - self.wanted.start;
        let (word, bit) = ((i / 64) as usize, 1u64 << (i % 64));
        if self.bits[word] & bit != 0 {
            self.duplicated += 1;
        } else {
            self.bits[word] |= bit;
            self.distinct += 1;
        }
    }
}

/// The body of a complete HTTP/1.1 response in `buf` (`Content-Length` or chunked).
pub fn response_body(buf: &[u8]) -> Result<Vec<u8>, &'static str> {
    let head = parse_head(buf)?.ok_or("incomplete response head")?;
    let body = &buf[head.len..];
    if head.chunked {
        let mut out = Vec::new();
        let mut d = Dechunker::new(true);
        d.feed(body, |p| out.extend_from_slice(p))?;
        if !d.is_done() {
            return Err("incomplete chunked body");
        }
        return Ok(out);
    }
    match head.content_length {
        Some(len) if body.len() >= len => Ok(body[..len].to_vec()),
        Some(_) => Err("incomplete body"),
        None => Ok(body.to_vec()),
    }
}

/// The publish answer's body (the update's id) as a header value: trimmed, non-empty, visible
/// ASCII only, so it cannot break the request head it goes into.
pub fn event_id(body: &[u8]) -> Result<String, &'static str> {
    let id = body.trim_ascii();
    if id.is_empty() {
        return Err("empty publish answer: no update id");
    }
    if !id.iter().all(|b| b.is_ascii_graphic()) {
        return Err("the update id is not visible ASCII");
    }
    Ok(String::from_utf8_lossy(id).into_owned())
}

/// What a batch of publishes came to.
struct Published {
    acked: u64,
    errors: u64,
    /// The answer body of the first sequence number, when asked for.
    first_body: Option<Vec<u8>>,
    secs: f64,
    messages: Vec<String>,
}

/// Publishes `seqs` (one update each, stamped with its sequence number) over `conns` keep-alive
/// connections, each with one request in flight, as fast as the server acknowledges.
async fn publish_seqs(
    addr: SocketAddr,
    req: Rc<PublishRequest>,
    seqs: Range<u64>,
    conns: usize,
) -> Published {
    let t0 = Instant::now();
    let next = Rc::new(Cell::new(seqs.start));
    let out = Rc::new(RefCell::new(Published {
        acked: 0,
        errors: 0,
        first_body: None,
        secs: 0.0,
        messages: Vec::new(),
    }));
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let (next, out, req, end, first) =
            (next.clone(), out.clone(), req.clone(), seqs.end, seqs.start);
        tasks.push(tokio::task::spawn_local(async move {
            let (mut wbuf, mut rbuf) = (Vec::with_capacity(1024), Vec::with_capacity(4096));
            let mut stream: Option<TcpStream> = None;
            let mut failures = 0;
            loop {
                let seq = next.get();
                if seq >= end || failures > 100 {
                    break;
                }
                next.set(seq + 1);
                if stream.is_none() {
                    match connect(addr, None).await {
                        Ok(s) => stream = Some(s),
                        Err(e) => {
                            note(&out, format!("publisher connect: {e}"));
                            failures += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    }
                }
                let s = stream.as_mut().expect("connected above");
                req.write(seq, &mut wbuf);
                match exchange(s, &wbuf, &mut rbuf).await {
                    Ok((status, keep)) => {
                        if (200..300).contains(&status) {
                            let mut o = out.borrow_mut();
                            o.acked += 1;
                            if seq == first {
                                o.first_body = response_body(&rbuf).ok();
                            }
                        } else {
                            note(&out, format!("publish: HTTP {status}"));
                        }
                        if !keep {
                            stream = None;
                        }
                    }
                    Err(e) => {
                        note(&out, format!("publish: {e}"));
                        stream = None;
                        failures += 1;
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut o = out.borrow_mut();
    o.secs = t0.elapsed().as_secs_f64();
    Published {
        acked: o.acked,
        errors: o.errors,
        first_body: o.first_body.take(),
        secs: o.secs,
        messages: std::mem::take(&mut o.messages),
    }
}

fn note(out: &RefCell<Published>, msg: String) {
    let mut o = out.borrow_mut();
    o.errors += 1;
    if o.messages.len() < 10 {
        o.messages.push(msg);
    }
}

/// Connects, sends `request` (the clock starts just before it is written) and reads the
/// response head; returns the stream, the head and the bytes read past it.
async fn open(
    addr: SocketAddr,
    source: Option<std::net::IpAddr>,
    request: &[u8],
) -> std::io::Result<(TcpStream, Head, Vec<u8>)> {
    let mut stream = connect_subscriber(addr, source).await?;
    stream.write_all(request).await?;
    let mut buf = Vec::with_capacity(1024);
    loop {
        if read_some(&mut stream, |b| buf.extend_from_slice(b)).await? == 0 {
            return Err(std::io::Error::other("closed before the response head"));
        }
        if let Some(head) = parse_head(&buf).map_err(std::io::Error::other)? {
            if head.status != 200 {
                return Err(std::io::Error::other(format!("HTTP {}", head.status)));
            }
            buf.drain(..head.len);
            return Ok((stream, head, buf));
        }
        if buf.len() > 64 * 1024 {
            return Err(std::io::Error::other("response head over 64 KiB"));
        }
    }
}

/// Reads an event stream into `seen` until `stop` says so, the stream ends, or `idle` passes
/// without a byte; `on_complete` runs once, when `seen` first becomes complete.
async fn follow(
    stream: &mut TcpStream,
    head: Head,
    rest: &[u8],
    seen: &RefCell<Seen>,
    idle: Duration,
    mut on_complete: impl FnMut(),
    stop: impl Fn() -> bool,
) -> Result<(), String> {
    let mut dechunk = Dechunker::new(head.chunked);
    let mut scanner = EventScanner::default();
    let mut completed = seen.borrow().complete();
    if completed {
        on_complete();
    }
    let mut consume = |bytes: &[u8]| -> Result<(), &'static str> {
        let mut s = seen.borrow_mut();
        dechunk.feed(bytes, |payload| {
            scanner.scan(payload, |seq| s.mark(seq));
        })?;
        if !completed && s.complete() {
            completed = true;
            on_complete();
        }
        if dechunk.is_done() {
            return Err("the server ended the stream");
        }
        Ok(())
    };
    consume(rest)?;
    while !stop() {
        let mut bad = Ok(());
        match tokio::time::timeout(idle, read_some(stream, |b| bad = consume(b))).await {
            Err(_) => return Ok(()),
            Ok(Ok(0)) => return Err("stream ended".into()),
            Ok(Ok(_)) => bad?,
            Ok(Err(e)) => return Err(e.to_string()),
        }
    }
    Ok(())
}

/// CPU use of the generator, the server and everything else on the two cores over a window.
struct Probe {
    t0: Instant,
    pid: Option<u32>,
    cpus: Vec<usize>,
    gen0: Option<Duration>,
    srv0: Option<Duration>,
    busy0: Option<Duration>,
}

impl Probe {
    fn start(c: &Common) -> Self {
        Self {
            t0: Instant::now(),
            pid: c.server_pid,
            cpus: c.cpus.clone(),
            gen0: procfs::cpu_time(None),
            srv0: c.server_pid.and_then(|p| procfs::cpu_time(Some(p))),
            busy0: procfs::cpus_busy(&c.cpus),
        }
    }

    /// (generator, server, other) percent of one core; none for a window under 100 ms, which
    /// `/proc`'s 10 ms ticks cannot resolve.
    fn finish(&self) -> (Option<f64>, Option<f64>, Option<f64>) {
        let wall = self.t0.elapsed();
        if wall < Duration::from_millis(100) {
            return (None, None, None);
        }
        let gen1 = procfs::cpu_time(None);
        let srv1 = self.pid.and_then(|p| procfs::cpu_time(Some(p)));
        let busy1 = procfs::cpus_busy(&self.cpus);
        let other = match (self.busy0, busy1, self.gen0, gen1, self.srv0, srv1) {
            (Some(b0), Some(b1), Some(g0), Some(g1), Some(s0), Some(s1)) => {
                let ours = g1.saturating_sub(g0) + s1.saturating_sub(s0);
                cpu_pct(
                    Some(Duration::ZERO),
                    Some(b1.saturating_sub(b0).saturating_sub(ours)),
                    wall,
                )
            }
            _ => None,
        };
        (
            cpu_pct(self.gen0, gen1, wall),
            cpu_pct(self.srv0, srv1, wall),
            other,
        )
    }
}

/// A topic no earlier run against the same hub has used: its history is this run's alone.
fn fresh_topic(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{prefix}-{nanos}")
}

fn runtime<T>(f: impl std::future::Future<Output = T>) -> T {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime");
    tokio::task::LocalSet::new().block_on(&rt, f)
}

pub fn replay(args: &ReplayArgs) -> anyhow::Result<serde_json::Value> {
    runtime(replay_async(args))
}

async fn replay_async(args: &ReplayArgs) -> anyhow::Result<serde_json::Value> {
    let c = &args.common;
    let target = c.target();
    let topic = &fresh_topic("replay");
    let n = args.updates;
    let req = Rc::new(target.publish_request(topic, args.size));
    let published = publish_seqs(target.addr, req, 0..n, args.publishers).await;
    if published.acked == 0 {
        bail!("no publish was acknowledged: {:?}", published.messages);
    }
    // Let the server settle (a durable log's last group commit, a ring's last insert).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss0 = c.server_pid.and_then(procfs::rss_kib);

    let request = target.subscribe_request_with(topic, Some("last_event_id=earliest"), &[]);
    let seen = RefCell::new(Seen::new(0..n));
    let probe = Probe::start(c);
    let t0 = Instant::now();
    let (mut stream, head, rest) = open(target.addr, None, &request)
        .await
        .context("replay subscriber")?;
    let head_s = t0.elapsed().as_secs_f64();
    let done_at = Cell::new(None::<Instant>);
    // The CPU window ends when the last update arrives, not after the grace for duplicates.
    let cpu = Cell::new(None);
    let want = published.acked;
    let deadline = t0 + args.timeout;
    let finish = || {
        if done_at.get().is_none() && seen.borrow().distinct >= want {
            done_at.set(Some(Instant::now()));
            cpu.set(Some(probe.finish()));
        }
    };
    // Done when every acknowledged update arrived; then up to 3 s without a byte, in which
    // duplicates would show.
    let result = follow(
        &mut stream,
        head,
        &rest,
        &seen,
        Duration::from_secs(3),
        || {},
        || {
            finish();
            Instant::now() >= deadline
        },
    )
    .await;
    finish();
    let (gen_cpu, srv_cpu, other) = cpu.get().unwrap_or_else(|| probe.finish());
    let rss1 = c.server_pid.and_then(procfs::rss_kib);
    drop(stream);
    let s = seen.into_inner();
    let replay_s = done_at.get().map(|d| d.duration_since(t0).as_secs_f64());
    let state = match (&result, replay_s) {
        (_, Some(_)) => "complete",
        (Err(_), None) => "stream ended",
        (Ok(()), None) if Instant::now() >= deadline => "timeout",
        (Ok(()), None) => "stalled",
    };
    let mut errors = published.messages.clone();
    if let Err(e) = result {
        errors.push(format!("replay stream: {e}"));
    }
    let lost = want.saturating_sub(s.distinct);
    let rate = replay_s.map(|t| (s.distinct as f64 / t).round());
    let line = json!({
        "kind": "replay",
        "workload": c.workload,
        "peer": c.label(),
        "updates": n,
        "size": args.size,
        "publishers": args.publishers,
        "acked": published.acked,
        "publish_errors": published.errors,
        "publish_s": round2(published.secs),
        "publishes_per_s": (published.acked as f64 / published.secs).round(),
        "received": s.distinct + s.duplicated + s.unexpected,
        "lost": lost,
        "duplicated": s.duplicated + s.unexpected,
        "replay": state,
        "head_s": head_s,
        "replay_s": replay_s,
        "events_per_s": rate,
        "generator_cpu_pct": gen_cpu,
        "server_cpu_pct": srv_cpu,
        "other_cpu_pct": other,
        "rss_before_kib": rss0,
        "rss_after_kib": rss1,
        "errors": errors,
    });
    eprintln!(
        "{:<14} replay  {} updates published in {:.2}s ({} acked); replayed {} in {} s = {} events/s ({state}), lost {lost}, duplicated {}  CPU: generator {} server {} other {} %",
        c.label(),
        n,
        published.secs,
        published.acked,
        s.distinct,
        opt(replay_s.map(|t| format!("{t:.3}"))),
        opt(rate),
        s.duplicated + s.unexpected,
        pct(gen_cpu),
        pct(srv_cpu),
        pct(other),
    );
    Ok(line)
}

/// One round of storm subscribers and how far each got.
struct Round {
    epoch: Instant,
    seen: Vec<RefCell<Seen>>,
    /// ns since `epoch` of the response head and of holding everything wanted.
    connected_ns: Vec<Cell<Option<u64>>>,
    done_ns: Vec<Cell<Option<u64>>>,
    /// The connection failed, or the stream ended before it was complete.
    failed: Vec<Cell<bool>>,
    ended: Vec<Cell<bool>>,
    stop: Cell<bool>,
    errors: RefCell<Vec<String>>,
}

impl Round {
    fn new(n: usize, wanted: Range<u64>) -> Rc<Self> {
        Rc::new(Self {
            epoch: Instant::now(),
            seen: (0..n)
                .map(|_| RefCell::new(Seen::new(wanted.clone())))
                .collect(),
            connected_ns: (0..n).map(|_| Cell::new(None)).collect(),
            done_ns: (0..n).map(|_| Cell::new(None)).collect(),
            failed: (0..n).map(|_| Cell::new(false)).collect(),
            ended: (0..n).map(|_| Cell::new(false)).collect(),
            stop: Cell::new(false),
            errors: RefCell::new(Vec::new()),
        })
    }

    fn ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn error(&self, msg: String) {
        let mut e = self.errors.borrow_mut();
        if e.len() < 10 {
            e.push(msg);
        }
    }

    fn count(&self, cells: &[Cell<bool>]) -> usize {
        cells.iter().filter(|c| c.get()).count()
    }

    fn connected(&self) -> usize {
        self.connected_ns
            .iter()
            .filter(|c| c.get().is_some())
            .count()
    }

    fn done(&self) -> usize {
        self.done_ns.iter().filter(|c| c.get().is_some()).count()
    }

    /// Subscribers that have everything, or never will (failed or cut off).
    fn settled(&self) -> usize {
        (0..self.seen.len())
            .filter(|&i| {
                self.done_ns[i].get().is_some() || self.failed[i].get() || self.ended[i].get()
            })
            .count()
    }

    fn received(&self) -> u64 {
        self.seen
            .iter()
            .map(|s| {
                let s = s.borrow();
                s.distinct + s.duplicated + s.unexpected
            })
            .sum()
    }
}

/// Starts `n` subscribers with `request`, at most `concurrency` connecting at once.
fn spawn_round(
    round: &Rc<Round>,
    addr: SocketAddr,
    request: Rc<[u8]>,
    concurrency: usize,
    sources: usize,
) -> Vec<JoinHandle<()>> {
    let sem = Rc::new(Semaphore::new(concurrency.max(1)));
    (0..round.seen.len())
        .map(|i| {
            let (round, request, sem) = (round.clone(), request.clone(), sem.clone());
            let source = source_ip(addr, i, sources);
            tokio::task::spawn_local(async move {
                let permit = sem.acquire().await;
                let (mut stream, head, rest) = match open(addr, source, &request).await {
                    Ok(v) => v,
                    Err(e) => {
                        round.failed[i].set(true);
                        round.error(format!("subscribe: {e}"));
                        return;
                    }
                };
                round.connected_ns[i].set(Some(round.ns()));
                drop(permit);
                let r = follow(
                    &mut stream,
                    head,
                    &rest,
                    &round.seen[i],
                    Duration::from_secs(3600),
                    || round.done_ns[i].set(Some(round.ns())),
                    || round.stop.get(),
                )
                .await;
                if let Err(e) = r {
                    round.ended[i].set(true);
                    round.error(format!("subscriber stream: {e}"));
                }
            })
        })
        .collect()
}

/// Waits until `done` holds, or nothing arrived for `stall`, or `timeout`; returns which.
async fn wait_for(
    round: &Round,
    timeout: Duration,
    stall: Duration,
    done: impl Fn(&Round) -> bool,
) -> &'static str {
    let start = Instant::now();
    let (mut last, mut changed) = (round.received(), start);
    loop {
        if done(round) {
            return "complete";
        }
        let now = Instant::now();
        // Connecting counts as progress too.
        let got = round.received() + round.connected() as u64;
        if got != last {
            (last, changed) = (got, now);
        } else if now - changed >= stall {
            return "stalled";
        }
        if now - start >= timeout {
            return "timeout";
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn quantile(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i] as f64 / 1e9)
}

pub fn storm(args: &StormArgs) -> anyhow::Result<serde_json::Value> {
    runtime(storm_async(args))
}

async fn storm_async(args: &StormArgs) -> anyhow::Result<serde_json::Value> {
    let c = &args.common;
    let target: Target = c.target();
    let addr = target.addr;
    let n = c.subscribers.unwrap_or(10_000);
    let k = args.behind;
    if n + args.publishers + 64 > 19_500 {
        bail!("{n} subscribers is over one process's file limit");
    }
    let topic = &fresh_topic("storm");
    let req = Rc::new(target.publish_request(topic, args.size));

    // Round 1: everyone subscribes and receives update 0, whose id they remember.
    let first = Round::new(n, 0..1);
    let handles = spawn_round(
        &first,
        addr,
        target.subscribe_request(topic).into(),
        c.connect_concurrency,
        c.source_ips,
    );
    wait_for(&first, c.connect_timeout, Duration::from_secs(10), |r| {
        r.connected() + r.count(&r.failed) >= n
    })
    .await;
    let connected1 = first.connected();
    if connected1 == 0 {
        bail!("no subscriber connected: {:?}", first.errors.borrow());
    }
    let marker = publish_seqs(addr, req.clone(), 0..1, 1).await;
    let id = match &marker.first_body {
        Some(b) if marker.acked == 1 => event_id(b).map_err(anyhow::Error::msg)?,
        _ => bail!("the first publish failed: {:?}", marker.messages),
    };
    let got1 = wait_for(
        &first,
        Duration::from_secs(10),
        Duration::from_secs(3),
        |r| r.done() >= connected1,
    )
    .await;
    let done1 = first.done();
    // Everyone leaves: the tasks are dropped with their sockets (reset, no TIME_WAIT).
    for h in &handles {
        h.abort();
    }
    for h in handles {
        let _ = h.await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // K updates while nobody listens.
    let behind = publish_seqs(addr, req, 1..k + 1, args.publishers).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Round 2: all reconnect at once with the id.
    let request: Rc<[u8]> = target
        .subscribe_request_with(topic, None, &[format!("Last-Event-ID: {id}")])
        .into();
    let probe = Probe::start(c);
    let second = Round::new(n, 1..k + 1);
    let handles = spawn_round(&second, addr, request, c.connect_concurrency, c.source_ips);
    let state = wait_for(&second, args.timeout, Duration::from_secs(3), |r| {
        r.settled() >= n
    })
    .await;
    let (gen_cpu, srv_cpu, other) = probe.finish();
    // A grace period for duplicates, then everyone stops.
    tokio::time::sleep(Duration::from_millis(200)).await;
    second.stop.set(true);
    for h in &handles {
        h.abort();
    }
    for h in handles {
        let _ = h.await;
    }
    let rss = c.server_pid.and_then(procfs::rss_kib);

    let connected = second.connected();
    let mut done: Vec<u64> = second.done_ns.iter().filter_map(Cell::get).collect();
    done.sort_unstable();
    let ramp_s = second
        .connected_ns
        .iter()
        .filter_map(Cell::get)
        .max()
        .map(|v| v as f64 / 1e9);
    let (mut lost, mut dup, mut before_id, mut lossy) = (0u64, 0u64, 0u64, 0u64);
    for i in 0..n {
        if second.connected_ns[i].get().is_none() {
            continue;
        }
        let s = second.seen[i].borrow();
        // Only what the server acknowledged is owed.
        let owed = behind.acked.min(s.want());
        lost += owed.saturating_sub(s.distinct);
        lossy += u64::from(s.distinct < owed);
        dup += s.duplicated;
        before_id += s.unexpected;
    }
    let all_s = if done.len() == n {
        done.last().map(|&v| v as f64 / 1e9)
    } else {
        None
    };
    let mut errors = first.errors.borrow().clone();
    errors.extend(second.errors.borrow().iter().cloned());
    errors.extend(behind.messages.iter().cloned());
    errors.truncate(20);
    let line = json!({
        "kind": "storm",
        "workload": c.workload,
        "peer": c.label(),
        "subscribers": n,
        "behind": k,
        "size": args.size,
        "connect_concurrency": c.connect_concurrency,
        "first_connected": connected1,
        "first_received": done1,
        "first_wait": got1,
        "recorded_id": id,
        "acked": behind.acked,
        "publish_errors": behind.errors + marker.errors,
        "connected": connected,
        "connect_failed": second.count(&second.failed),
        "streams_closed": second.count(&second.ended),
        "caught_up": done.len(),
        "storm": state,
        "ramp_s": ramp_s,
        "catchup_s": all_s,
        "catchup_p50_s": quantile(&done, 0.5),
        "catchup_p99_s": quantile(&done, 0.99),
        "catchup_max_s": done.last().map(|&v| v as f64 / 1e9),
        "expected": behind.acked * connected as u64,
        "lost": lost,
        "duplicated": dup + before_id,
        "replayed_recorded": before_id,
        "subscribers_with_loss": lossy,
        "generator_cpu_pct": gen_cpu,
        "server_cpu_pct": srv_cpu,
        "other_cpu_pct": other,
        "server_rss_kib": rss,
        "errors": errors,
    });
    eprintln!(
        "{:<14} storm   n={n} behind={k}: {connected} reconnected (last head at {} s), {} caught up, all in {} s (p50 {} p99 {}) ({state}); lost {lost}, duplicated {}, recorded id replayed {before_id}  CPU: generator {} server {} other {} %",
        c.label(),
        opt(ramp_s.map(|v| format!("{v:.3}"))),
        done.len(),
        opt(all_s.map(|v| format!("{v:.3}"))),
        opt(quantile(&done, 0.5).map(|v| format!("{v:.3}"))),
        opt(quantile(&done, 0.99).map(|v| format!("{v:.3}"))),
        dup + before_id,
        pct(gen_cpu),
        pct(srv_cpu),
        pct(other),
    );
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_counts_distinct_duplicates_and_unwanted() {
        let mut s = Seen::new(1..101);
        assert_eq!(s.want(), 100);
        for seq in 1..=100 {
            s.mark(seq);
        }
        assert!(s.complete());
        s.mark(64);
        s.mark(0);
        s.mark(101);
        assert_eq!((s.distinct, s.duplicated, s.unexpected), (100, 1, 2));
        let mut t = Seen::new(0..3);
        t.mark(2);
        t.mark(2);
        assert!(!t.complete());
        assert_eq!((t.distinct, t.duplicated), (1, 1));
    }

    #[test]
    fn response_bodies_by_length_and_chunked() {
        let fixed = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nurn:x:42 trailing";
        assert_eq!(response_body(fixed).unwrap(), b"urn:x:42 ");
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nurn:\r\n4\r\nx:42\r\n0\r\n\r\n";
        assert_eq!(response_body(chunked).unwrap(), b"urn:x:42");
        assert!(response_body(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nurn").is_err());
        assert!(
            response_body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nurn:")
                .is_err()
        );
        assert!(response_body(b"HTTP/1.1 200 OK\r\n").is_err());
    }

    #[test]
    fn event_ids_are_safe_header_values() {
        assert_eq!(event_id(b" urn:uuid:1234\n").unwrap(), "urn:uuid:1234");
        assert_eq!(event_id(b"42").unwrap(), "42");
        assert!(event_id(b"  \r\n").is_err());
        assert!(event_id(b"a\r\nX-Evil: 1").is_err());
        assert!(event_id("é".as_bytes()).is_err());
    }

    #[test]
    fn quantiles_of_completion_times() {
        let v: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        assert_eq!(quantile(&v, 0.5), Some(0.05));
        assert_eq!(quantile(&v, 0.99), Some(0.099));
        assert_eq!(quantile(&v, 1.0), Some(0.1));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
