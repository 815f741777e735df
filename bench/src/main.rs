//! `ssehub-bench`: the load generator of the side-by-side benchmark (issue 6).
//!
//! Commands:
//!
//! - `fanout`: open N subscribers spread over K topics, wait until every one has its response
//!   head, then run M publishers (as fast as they are answered, or at `--rate` publishes/s in
//!   total) for a warm-up and a measured window. Reports deliveries/s and publishes/s in the
//!   window, publish-to-receive latency (HDR histogram) of the publishes stamped in the window,
//!   and loss: every subscriber must receive every acknowledged publish to its topic.
//!   The latency, publish-throughput and 1,000-topic workloads are this command with other
//!   flags.
//! - `idle`: open N subscribers as fast as the server takes them (the connection ramp), wait,
//!   and read the server's RSS from `/proc`: KiB per subscriber over the baseline.
//! - `replay` and `storm` (ssehub only, issue 5): catching up from the hub's history, one
//!   subscriber replaying 100,000 updates and 10,000 reconnecting at once 100 behind; see
//!   `catchup.rs`.
//!
//! Each measurement is one JSON line on stdout (the runner collects them) and one readable line
//! on stderr. The generator reports its own CPU use over the window, so a run where the
//! generator, not the server, was the limit shows itself.

mod catchup;
mod h2sub;
mod load;
mod matchers;
mod procfs;
mod scan;
mod soak;
mod target;
mod tickets;
mod tls;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};
use hdrhistogram::Histogram;
use serde_json::json;
use tokio::sync::watch;

use crate::load::{Phase, Plan, Shared, Sub};
use crate::target::{Preset, PubKind, Target};
use crate::tls::{TlsArgs, TlsClient};

#[derive(Debug, Parser)]
#[command(
    version,
    about = "SSE load generator: fan-out, latency, idle memory, connection ramp"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// N subscribers, M publishers: deliveries/s, publishes/s, latency, loss.
    Fanout(FanoutArgs),
    /// Open N subscribers (the ramp), wait, report the server's RSS per subscriber.
    Idle(IdleArgs),
    /// Publish N updates, then replay all of them to one subscriber (`last_event_id=earliest`).
    Replay(ReplayArgs),
    /// S subscribers reconnect at once with `Last-Event-ID`, each K updates behind.
    Storm(StormArgs),
    /// A long mixed run (churn, replays, bad requests) against a hub, then leak and loss checks.
    Soak(soak::SoakArgs),
    /// The matcher engine's workloads (issue 20): shared URL patterns, per-user patterns, a
    /// pattern flood, fan-out on a pattern against an exact topic.
    Matchers(matchers::MatchersArgs),
}

#[derive(Debug, Args)]
pub(crate) struct Common {
    /// Which peer: sets the subscribe and publish URL layout and body format.
    #[arg(long, value_enum)]
    pub(crate) target: Preset,
    /// The peer's address (loopback).
    #[arg(long, default_value = "127.0.0.1:3000")]
    pub(crate) addr: SocketAddr,
    /// Where publishes go, when not to --addr (Pushpin's publish port).
    #[arg(long)]
    pub_addr: Option<SocketAddr>,
    /// Subscribe path and query; `{topic}` is replaced (overrides the preset).
    #[arg(long)]
    sub_path: Option<String>,
    /// Publish path and query; `{topic}` is replaced (overrides the preset).
    #[arg(long)]
    pub_path: Option<String>,
    /// Publish body format (overrides the preset).
    #[arg(long, value_enum)]
    pub_kind: Option<PubKind>,
    /// Extra publish request header, e.g. `Authorization: Bearer ...` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Number of subscribers [default: 1000; storm: 10000; replay: always 1].
    #[arg(long, short = 'n')]
    subscribers: Option<usize>,
    /// Worker threads (one current-thread runtime each); 1 per core the generator owns.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Subscriptions being opened at once per thread (kept under the servers' listen backlog).
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Loopback source addresses for subscribers (127.0.0.1 .. 127.0.0.K), so no single
    /// address runs short of fast ephemeral ports.
    #[arg(long, default_value_t = 4)]
    source_ips: usize,
    /// The first source address is 127.0.0.F (F = this).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=250))]
    source_ip_first: u8,
    /// TLS and HTTP/2 (fanout and idle only).
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// Give up on subscribers not connected after this long.
    #[arg(long, default_value = "60", value_parser = secs)]
    connect_timeout: Duration,
    /// The server's pid, for its RSS and CPU time from /proc.
    #[arg(long)]
    server_pid: Option<u32>,
    /// The cores of the server and the generator, to measure what else used them.
    #[arg(long, value_delimiter = ',', default_value = "0,1")]
    cpus: Vec<usize>,
    /// Workload name written into the JSON line.
    #[arg(long, default_value = "")]
    workload: String,
    /// Peer name written into the JSON line (defaults to the preset).
    #[arg(long)]
    label: Option<String>,
}

#[derive(Debug, Args)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    /// Publisher connections (each has one request in flight).
    #[arg(long, short = 'm', default_value_t = 4)]
    publishers: usize,
    /// Topics; subscriber i takes topic i mod K, publishers go round the topics.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Publishes per second over all publishers; 0 = as fast as the server answers.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Bytes of event data per publish.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Publishing before the window opens, seconds.
    #[arg(long, default_value = "1", value_parser = secs)]
    warmup: Duration,
    /// The measured window, seconds.
    #[arg(long, default_value = "5", value_parser = secs)]
    duration: Duration,
    /// After publishing stops, wait at most this long for the last deliveries.
    #[arg(long, default_value = "10", value_parser = secs)]
    drain_timeout: Duration,
}

#[derive(Debug, Args)]
struct IdleArgs {
    #[command(flatten)]
    common: Common,
    /// How long the subscribers stay open before RSS is read, seconds.
    #[arg(long, default_value = "3", value_parser = secs)]
    wait: Duration,
}

#[derive(Debug, Args)]
struct ReplayArgs {
    #[command(flatten)]
    common: Common,
    /// Updates published before the replay (the hub must retain them all).
    #[arg(long, default_value_t = 100_000)]
    updates: u64,
    /// Publisher connections for the updates (each has one request in flight).
    #[arg(long, short = 'm', default_value_t = 8)]
    publishers: usize,
    /// Bytes of event data per update.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Give up on the replay after this long, seconds.
    #[arg(long, default_value = "30", value_parser = secs)]
    timeout: Duration,
}

#[derive(Debug, Args)]
struct StormArgs {
    #[command(flatten)]
    common: Common,
    /// Updates published while the subscribers are away (K).
    #[arg(long, default_value_t = 100)]
    behind: u64,
    /// Publisher connections for those updates.
    #[arg(long, short = 'm', default_value_t = 4)]
    publishers: usize,
    /// Bytes of event data per update.
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Give up on the reconnected subscribers catching up after this long, seconds.
    #[arg(long, default_value = "30", value_parser = secs)]
    timeout: Duration,
}

pub(crate) fn secs(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // Bad TLS input is the caller's mistake: a message and exit code 2, like clap's own.
    let tls = match &cli.command {
        Command::Fanout(a) => a.common.tls.client(),
        Command::Idle(a) => a.common.tls.client(),
        Command::Replay(ReplayArgs { common, .. }) | Command::Storm(StormArgs { common, .. }) => {
            plain_only(common, "replay and storm")
        }
        Command::Matchers(a) => plain_only(&a.common, "matchers"),
        Command::Soak(_) => Ok(None),
    };
    let tls = match tls {
        Ok(t) => t,
        Err(e) => {
            eprintln!("ssehub-bench: {e:#}");
            std::process::exit(2);
        }
    };
    // Before any thread: a 15,000-connection ramp would otherwise wait out six RCU grace
    // periods growing the table, charged to the server under test.
    ssehub_server::presize_fd_table(1 << 20);
    let line = match cli.command {
        Command::Fanout(args) => fanout(args, tls)?,
        Command::Idle(args) => idle(args, tls)?,
        Command::Replay(args) => catchup::replay(&args)?,
        Command::Matchers(args) => matchers::run(&args)?,
        Command::Storm(args) => catchup::storm(&args)?,
        Command::Soak(args) => {
            let (line, ok) = soak::soak(args)?;
            println!("{line}");
            if !ok {
                std::process::exit(1);
            }
            return Ok(());
        }
    };
    println!("{line}");
    Ok(())
}

/// The commands that speak plain HTTP only refuse `--tls`.
fn plain_only(common: &Common, what: &str) -> anyhow::Result<Option<Arc<TlsClient>>> {
    if common.tls.tls.is_some() {
        bail!("--tls is for fanout and idle; {what} speak plain HTTP only");
    }
    Ok(None)
}

impl Common {
    fn target(&self) -> Target {
        let mut t = Target::preset(self.target, self.addr);
        if let Some(a) = self.pub_addr {
            t.pub_addr = a;
        }
        if let Some(p) = &self.sub_path {
            t.sub_path.clone_from(p);
        }
        if let Some(p) = &self.pub_path {
            t.pub_path.clone_from(p);
        }
        if let Some(k) = self.pub_kind {
            t.kind = k;
        }
        t.pub_headers.clone_from(&self.headers);
        t
    }

    /// The subscriber count of `fanout` and `idle`.
    pub(crate) fn n(&self) -> usize {
        self.subscribers.unwrap_or(1000)
    }

    pub(crate) fn label(&self) -> String {
        self.label.clone().unwrap_or_else(|| {
            clap::ValueEnum::to_possible_value(&self.target)
                .map(|v| v.get_name().to_string())
                .unwrap_or_default()
        })
    }
}

fn topic_name(t: usize) -> String {
    format!("t{t}")
}

struct Finished {
    hist: Histogram<u64>,
    per_sub: Vec<(usize, u64, bool)>,
    errors: Vec<String>,
}

/// A running load: worker threads plus the handles the main thread steers them with.
struct Run {
    shared: Arc<Shared>,
    phase: watch::Sender<Phase>,
    workers: Vec<std::thread::JoinHandle<load::Outcome>>,
    subscribers: usize,
    started: Instant,
}

fn start(
    common: &Common,
    tls: Option<&Arc<TlsClient>>,
    topics: usize,
    publishers: usize,
    rate: Option<f64>,
    size: usize,
) -> anyhow::Result<Run> {
    let target = common.target();
    if topics > 1 && !target.has_topics() {
        bail!(
            "this target has no topics (subscribe path {:?})",
            target.sub_path
        );
    }
    if common.n() + publishers + 64 > 19_500 {
        // The machine caps open files at 20,000 per process; split the load over processes.
        bail!(
            "{} subscribers is over one process's file limit; run several generators",
            common.n()
        );
    }
    let threads = common.threads.max(1);
    let shared = Arc::new(Shared::new(topics));
    let (phase, phase_rx) = watch::channel(Phase::Connect);
    let started = Instant::now();
    let mut workers = Vec::new();
    for th in 0..threads {
        // Plans hold `Rc`s, so each thread builds its own from plain data.
        let target = target.clone();
        let shared2 = shared.clone();
        let rx = phase_rx.clone();
        let subs: Vec<(usize, String)> = (0..common.n())
            .filter(|i| i % threads == th)
            .map(|i| (i, topic_name(i % topics)))
            .collect();
        let pubs: Vec<usize> = (0..publishers).filter(|p| p % threads == th).collect();
        let concurrency = common.connect_concurrency;
        let source_ips = common.source_ips;
        let source_first = common.source_ip_first;
        let tls = tls.cloned();
        let handle = std::thread::Builder::new()
            .name(format!("load-{th}"))
            .spawn(move || {
                let mut cache: std::collections::HashMap<String, Rc<Sub>> = Default::default();
                let subscribers = subs
                    .into_iter()
                    .map(|(i, topic)| {
                        let req = cache
                            .entry(topic.clone())
                            .or_insert_with(|| {
                                Rc::new(Sub {
                                    h1: target.subscribe_request(&topic),
                                    path: target.subscribe_path(&topic),
                                })
                            })
                            .clone();
                        (i, req)
                    })
                    .collect();
                let requests = Rc::new(
                    (0..topics)
                        .map(|t| target.publish_request(&topic_name(t), size))
                        .collect(),
                );
                let plan = Plan {
                    addr: target.addr,
                    pub_addr: target.pub_addr,
                    subscribers,
                    publishers: pubs,
                    publishers_total: publishers,
                    requests,
                    rate,
                    connect_concurrency: concurrency,
                    source_ips,
                    source_first,
                    tls,
                };
                load::run_thread(plan, shared2, rx)
            })
            .context("cannot start a worker thread")?;
        workers.push(handle);
    }
    Ok(Run {
        shared,
        phase,
        workers,
        subscribers: common.n(),
        started,
    })
}

impl Run {
    /// Waits until every subscriber has connected or failed, or the timeout; returns how long
    /// it took until the last one got its response head.
    fn wait_connected(&self, timeout: Duration) -> Duration {
        let s = &self.shared;
        let deadline = self.started + timeout;
        while s.connected.load(Relaxed) + s.connect_failed.load(Relaxed) < self.subscribers
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(2));
        }
        Duration::from_nanos(s.last_connected_ns.load(Relaxed))
            .saturating_sub(self.started.duration_since(s.epoch))
    }

    /// Ends the run: the latency histogram of all threads, (subscriber, received, connected)
    /// by subscriber index, and the first errors seen.
    fn finish(self) -> anyhow::Result<Finished> {
        let _ = self.phase.send(Phase::Shutdown);
        let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
        let mut per_sub = Vec::with_capacity(self.subscribers);
        for w in self.workers {
            let out = w
                .join()
                .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
            hist.add(&out.latency_us)?;
            per_sub.extend(out.per_subscriber);
        }
        per_sub.sort_unstable_by_key(|p| p.0);
        let errors = self
            .shared
            .errors
            .lock()
            .map(|e| e.clone())
            .unwrap_or_default();
        Ok(Finished {
            hist,
            per_sub,
            errors,
        })
    }
}

fn cpu_pct(before: Option<Duration>, after: Option<Duration>, wall: Duration) -> Option<f64> {
    let (b, a) = (before?, after?);
    Some(round1(
        (a.saturating_sub(b)).as_secs_f64() / wall.as_secs_f64() * 100.0,
    ))
}

pub(crate) fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn fanout(args: FanoutArgs, tls: Option<Arc<TlsClient>>) -> anyhow::Result<serde_json::Value> {
    let c = &args.common;
    let topics = args.topics.max(1);
    let rate = (args.rate > 0.0).then_some(args.rate);
    let run = start(c, tls.as_ref(), topics, args.publishers, rate, args.size)?;
    let ramp = run.wait_connected(c.connect_timeout);
    let s = run.shared.clone();
    let connected = s.connected.load(Relaxed);
    if connected == 0 {
        let errors = run.finish()?.errors;
        bail!("no subscriber connected: {errors:?}");
    }

    let _ = run.phase.send(Phase::Publish);
    std::thread::sleep(args.warmup);
    let t0 = Instant::now();
    let (gen0, srv0) = (
        procfs::cpu_time(None),
        c.server_pid.and_then(|p| procfs::cpu_time(Some(p))),
    );
    let busy0 = procfs::cpus_busy(&c.cpus);
    s.window_start.store(s.now_ns(), Relaxed);
    let (recv0, acked0) = (s.received.load(Relaxed), s.acked_total());
    std::thread::sleep(args.duration);
    s.window_end.store(s.now_ns(), Relaxed);
    let (recv1, acked1) = (s.received.load(Relaxed), s.acked_total());
    let wall = t0.elapsed();
    let (gen1, srv1) = (
        procfs::cpu_time(None),
        c.server_pid.and_then(|p| procfs::cpu_time(Some(p))),
    );
    let busy1 = procfs::cpus_busy(&c.cpus);
    // What ran on the two cores besides the server and the generator.
    let other = match (busy0, busy1, gen0, gen1, srv0, srv1) {
        (Some(b0), Some(b1), Some(g0), Some(g1), Some(s0), Some(s1)) => {
            let ours = (g1.saturating_sub(g0)) + (s1.saturating_sub(s0));
            cpu_pct(
                Some(Duration::ZERO),
                Some((b1.saturating_sub(b0)).saturating_sub(ours)),
                wall,
            )
        }
        _ => None,
    };
    let rss = c.server_pid.and_then(procfs::rss_kib);

    // Stop publishing, then let the last deliveries arrive: loss is judged on everything
    // acknowledged, not only on the window.
    let _ = run.phase.send(Phase::Stop);
    let stop_deadline = Instant::now() + Duration::from_secs(30);
    while s.publishers_done.load(Relaxed) < args.publishers && Instant::now() < stop_deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    // Every subscriber that connected expects every acknowledged publish to its topic.
    let mut subs_per_topic = vec![0u64; topics];
    // Connection state is final (publishing started after the connect phase), but per-subscriber
    // flags live in the threads: count connected subscribers per topic from the plan instead and
    // correct below for the ones that failed.
    for i in 0..run.subscribers {
        subs_per_topic[i % topics] += 1;
    }
    let expected_upper: u64 = (0..topics)
        .map(|t| s.acked[t].load(Relaxed) * subs_per_topic[t])
        .sum();
    // Ends when everything arrived, when nothing arrived for `STALL` (what is missing is lost,
    // not late), or at the timeout (a backlog was still arriving: loss may be overstated).
    const STALL: Duration = Duration::from_secs(2);
    let drain_start = Instant::now();
    let drain_deadline = drain_start + args.drain_timeout;
    let (mut last_count, mut last_change) = (s.received.load(Relaxed), drain_start);
    let drain = loop {
        let now = Instant::now();
        let got = s.received.load(Relaxed);
        if got >= expected_upper {
            break "complete";
        }
        if got != last_count {
            (last_count, last_change) = (got, now);
        } else if now - last_change >= STALL {
            break "stalled";
        }
        if now >= drain_deadline {
            break "timeout";
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let drain_s = drain_start.elapsed().as_secs_f64();
    let pub_errors = s.pub_errors.load(Relaxed);
    let closed = s.closed.load(Relaxed);
    let Finished {
        hist,
        per_sub,
        errors,
    } = run.finish()?;

    let (mut expected, mut received, mut lost, mut extra, mut lossy) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    for &(i, got, ok) in &per_sub {
        if !ok {
            continue;
        }
        let want = s.acked[i % topics].load(Relaxed);
        expected += want;
        received += got;
        lost += want.saturating_sub(got);
        extra += got.saturating_sub(want);
        lossy += u64::from(got < want);
    }
    let secs = wall.as_secs_f64();
    let deliveries = (recv1 - recv0) as f64 / secs;
    let publishes = (acked1 - acked0) as f64 / secs;
    let line = json!({
        "kind": "fanout",
        "workload": c.workload,
        "peer": c.label(),
        "subscribers": c.n(),
        "connected": connected,
        "connect_failed": s.connect_failed.load(Relaxed),
        "publishers": args.publishers,
        "topics": topics,
        "rate": rate,
        "size": args.size,
        "window_s": round2(secs),
        "deliveries_per_s": deliveries.round(),
        "publishes_per_s": round1(publishes),
        "latency_us": latency_json(&hist),
        "expected": expected,
        "received": received,
        "lost": lost,
        "duplicated": extra,
        "subscribers_with_loss": lossy,
        "streams_closed": closed,
        "publish_errors": pub_errors,
        "drain": drain,
        "drain_s": round2(drain_s),
        "ramp_s": ramp.as_secs_f64(),
        "generator_cpu_pct": cpu_pct(gen0, gen1, wall),
        "server_cpu_pct": cpu_pct(srv0, srv1, wall),
        "other_cpu_pct": other,
        "server_rss_kib": rss,
        "tls": tls.as_ref().map(|t| t.stats.json(t.h2_streams)),
        "errors": errors,
    });
    eprintln!(
        "{:<10} {:<14} n={:<6} m={:<3} topics={:<5} {:>10.0} deliveries/s {:>9.1} pub/s  p50 {} p99 {} max {} us  lost {}/{}  CPU: generator {} server {} other {} %",
        c.label(),
        c.workload,
        c.n(),
        args.publishers,
        topics,
        deliveries,
        publishes,
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max(),
        lost,
        expected,
        pct(cpu_pct(gen0, gen1, wall)),
        pct(cpu_pct(srv0, srv1, wall)),
        pct(other),
    );
    Ok(line)
}

fn latency_json(h: &Histogram<u64>) -> serde_json::Value {
    if h.is_empty() {
        return serde_json::Value::Null;
    }
    json!({
        "count": h.len(),
        "p50": h.value_at_quantile(0.50),
        "p90": h.value_at_quantile(0.90),
        "p99": h.value_at_quantile(0.99),
        "p999": h.value_at_quantile(0.999),
        "max": h.max(),
    })
}

fn idle(args: IdleArgs, tls: Option<Arc<TlsClient>>) -> anyhow::Result<serde_json::Value> {
    let c = &args.common;
    let baseline = c.server_pid.and_then(procfs::rss_kib);
    // Who paid for the ramp: on loopback the kernel runs the whole handshake, the listener's
    // half included, in the connecting process's softirq, so the server's own CPU time and the
    // two cores' busy time say whether the server or the generator's core set the rate.
    let srv0 = c.server_pid.and_then(|p| procfs::cpu_time(Some(p)));
    let cores0: Vec<_> = c.cpus.iter().map(|&k| procfs::cpus_busy(&[k])).collect();
    let gen0 = procfs::cpu_time(None);
    let t0 = Instant::now();
    let run = start(c, tls.as_ref(), 1, 0, None, 0)?;
    let ramp = run.wait_connected(c.connect_timeout);
    let ramp_wall = t0.elapsed();
    let srv1 = c.server_pid.and_then(|p| procfs::cpu_time(Some(p)));
    let ramp_gen_cpu = gen0
        .zip(procfs::cpu_time(None))
        .map(|(a, b)| b.saturating_sub(a));
    // TLS: connections are handshakes (HTTP/2 carries several subscriptions on one).
    let handshakes = tls.as_ref().map(|t| t.stats.total());
    let cores_busy: Vec<_> = c
        .cpus
        .iter()
        .zip(&cores0)
        .map(|(&k, b0)| cpu_pct(*b0, procfs::cpus_busy(&[k]), ramp_wall))
        .collect();
    let ramp_server_cpu = srv0.zip(srv1).map(|(a, b)| b.saturating_sub(a));
    let s = run.shared.clone();
    let connected = s.connected.load(Relaxed);
    let server_us_per_sub = ramp_server_cpu
        .filter(|_| connected > 0)
        .map(|d| (d.as_secs_f64() * 1e6 / connected as f64).round());
    std::thread::sleep(args.wait);
    let rss = c.server_pid.and_then(procfs::rss_kib);
    let still_open = connected - s.closed.load(Relaxed).min(connected);
    let gen_cpu = procfs::cpu_time(None);
    let errors = run.finish()?.errors;
    let per_sub = match (baseline, rss) {
        (Some(b), Some(r)) if still_open > 0 => {
            Some(round2(r.saturating_sub(b) as f64 / still_open as f64))
        }
        _ => None,
    };
    let ramp_rate = (connected as f64 / ramp.as_secs_f64().max(1e-9)).round();
    let kib_per_connection = match (baseline, rss, tls.as_ref()) {
        (Some(b), Some(r), Some(t)) if t.h2_streams > 0 && still_open > 0 => {
            // Subscriptions still open, over the streams each connection carries.
            let connections = still_open.div_ceil(t.h2_streams);
            Some(round2(r.saturating_sub(b) as f64 / connections as f64))
        }
        _ => per_sub,
    };
    let line = json!({
        "kind": "idle",
        "workload": c.workload,
        "peer": c.label(),
        "subscribers": c.n(),
        "connected": connected,
        "connect_failed": s.connect_failed.load(Relaxed),
        "still_open": still_open,
        "ramp_s": ramp.as_secs_f64(),
        "ramp_per_s": ramp_rate,
        "rss_baseline_kib": baseline,
        "rss_kib": rss,
        "kib_per_subscriber": per_sub,
        "generator_cpu_s": gen_cpu.map(|d| d.as_secs_f64()),
        "ramp_server_cpu_s": ramp_server_cpu.map(|d| d.as_secs_f64()),
        "ramp_server_us_per_subscription": server_us_per_sub,
        "ramp_cores_busy_pct": cores_busy,
        "ramp_generator_cpu_s": ramp_gen_cpu.map(|d| d.as_secs_f64()),
        "kib_per_connection": kib_per_connection,
        "handshakes": handshakes,
        "handshakes_per_s": handshakes.map(|h| (h as f64 / ramp.as_secs_f64().max(1e-9)).round()),
        "ramp_server_us_per_handshake": ramp_server_cpu
            .zip(handshakes.filter(|&h| h > 0))
            .map(|(d, h)| (d.as_secs_f64() * 1e6 / h as f64).round()),
        "tls": tls.as_ref().map(|t| t.stats.json(t.h2_streams)),
        "errors": errors,
    });
    eprintln!(
        "{:<10} {:<14} n={:<6} connected {} in {:.3}s ({:.0}/s; server {} µs/subscription, cores busy {:?} %)  RSS {} -> {} KiB = {} KiB/subscriber",
        c.label(),
        c.workload,
        c.n(),
        connected,
        ramp.as_secs_f64(),
        ramp_rate,
        opt(server_us_per_sub),
        cores_busy,
        opt(baseline),
        opt(rss),
        opt(per_sub)
    );
    Ok(line)
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "?".into(), |v| format!("{v:.0}"))
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "?".into(), |v| v.to_string())
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}
