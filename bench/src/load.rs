//! The load itself: worker threads, each a current-thread tokio runtime driving its share of the
//! subscribers and publishers over raw keep-alive TCP connections.
//!
//! One thread per core the generator owns (usually one): no work stealing, no cross-thread
//! wakeups, and per-thread state behind `Rc<RefCell>` instead of locks. Threads share only a
//! handful of atomics that the orchestrating main thread samples, and a `watch` channel that
//! tells them which phase the run is in.

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::scan::{Dechunker, EventScanner, parse_head};
use crate::target::PublishRequest;

/// Where the run is; workers react to changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Open subscriptions.
    Connect,
    /// Publishers go.
    Publish,
    /// Publishers finish their request in flight and stop; subscribers keep reading.
    Stop,
    /// Everything ends; the runtime is dropped with all its tasks.
    Shutdown,
}

/// State shared by all threads; only counters, sampled by the main thread.
#[derive(Debug)]
pub struct Shared {
    /// The zero of every timestamp (publish stamps and receive times): one process, one clock.
    pub epoch: Instant,
    /// Publishes stamped in `[window_start, window_end)` (ns since `epoch`) go into the latency
    /// histogram, however late they arrive; `u64::MAX` until set.
    pub window_start: AtomicU64,
    pub window_end: AtomicU64,
    pub connected: AtomicUsize,
    pub connect_failed: AtomicUsize,
    /// Subscriptions whose stream ended (or failed) after connecting.
    pub closed: AtomicUsize,
    /// Marked events received, all subscribers.
    pub received: AtomicU64,
    /// ns since `epoch` when the last subscriber got its response head.
    pub last_connected_ns: AtomicU64,
    /// Publishes the server acknowledged with 2xx, per topic.
    pub acked: Vec<AtomicU64>,
    pub pub_errors: AtomicU64,
    pub publishers_done: AtomicUsize,
    /// The first few error messages, for the report.
    pub errors: Mutex<Vec<String>>,
}

impl Shared {
    pub fn new(topics: usize) -> Self {
        Self {
            epoch: Instant::now(),
            window_start: AtomicU64::new(u64::MAX),
            window_end: AtomicU64::new(u64::MAX),
            connected: AtomicUsize::new(0),
            connect_failed: AtomicUsize::new(0),
            closed: AtomicUsize::new(0),
            received: AtomicU64::new(0),
            last_connected_ns: AtomicU64::new(0),
            acked: (0..topics).map(|_| AtomicU64::new(0)).collect(),
            pub_errors: AtomicU64::new(0),
            publishers_done: AtomicUsize::new(0),
            errors: Mutex::new(Vec::new()),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn error(&self, msg: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < 10 {
            errors.push(msg);
        }
    }

    pub fn acked_total(&self) -> u64 {
        self.acked.iter().map(|a| a.load(Relaxed)).sum()
    }
}

/// One thread's share of the work.
#[derive(Debug)]
pub struct Plan {
    pub addr: SocketAddr,
    /// Where publishers connect (`addr` except for Pushpin).
    pub pub_addr: SocketAddr,
    /// (global subscriber index, subscribe request bytes) for each subscriber of this thread.
    pub subscribers: Vec<(usize, Rc<[u8]>)>,
    /// Global publisher indexes of this thread's publishers.
    pub publishers: Vec<usize>,
    pub publishers_total: usize,
    /// One prepared request per topic, shared by this thread's publishers.
    pub requests: Rc<Vec<PublishRequest>>,
    /// Total publishes per second over all publishers, or `None` for as fast as possible.
    pub rate: Option<f64>,
    /// Connections being opened at once on this thread.
    pub connect_concurrency: usize,
    /// Subscribers connect from this many loopback source addresses (127.0.0.1, .2, ...).
    pub source_ips: usize,
}

/// What a thread hands back at the end.
#[derive(Debug)]
pub struct Outcome {
    /// Publish-to-receive latency in microseconds, for publishes stamped inside the window.
    pub latency_us: Histogram<u64>,
    /// (global subscriber index, events received, whether it connected).
    pub per_subscriber: Vec<(usize, u64, bool)>,
}

struct Local {
    latency_us: Histogram<u64>,
    received: Vec<u64>,
    connected: Vec<bool>,
}

/// Big enough to take what a server batched into one write for a subscriber; one per thread,
/// borrowed only between `readable()` and `try_read`, so it is never held across an await.
const READ_BUF: usize = 256 * 1024;

thread_local! {
    static READ: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

/// Runs one thread's plan until the phase becomes `Shutdown`.
pub fn run_thread(plan: Plan, shared: Arc<Shared>, phase: watch::Receiver<Phase>) -> Outcome {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("cannot build a tokio runtime");
    let local = Rc::new(RefCell::new(Local {
        latency_us: Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds"),
        received: vec![0; plan.subscribers.len()],
        connected: vec![false; plan.subscribers.len()],
    }));
    let set = tokio::task::LocalSet::new();
    let sem = Rc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    for (slot, (global, request)) in plan.subscribers.iter().enumerate() {
        let source = source_ip(plan.addr, *global, plan.source_ips);
        set.spawn_local(subscriber(
            slot,
            plan.addr,
            source,
            request.clone(),
            shared.clone(),
            local.clone(),
            sem.clone(),
        ));
    }
    for &p in &plan.publishers {
        set.spawn_local(publisher(
            p,
            plan.publishers_total,
            plan.pub_addr,
            plan.requests.clone(),
            plan.rate,
            shared.clone(),
            phase.clone(),
        ));
    }
    let mut phase = phase;
    rt.block_on(set.run_until(async move {
        let _ = phase.wait_for(|p| *p == Phase::Shutdown).await;
    }));
    // Dropping the set and runtime cancels every task and closes every socket.
    drop(set);
    drop(rt);
    let local = Rc::try_unwrap(local)
        .ok()
        .expect("all tasks are gone")
        .into_inner();
    Outcome {
        latency_us: local.latency_us,
        per_subscriber: plan
            .subscribers
            .iter()
            .enumerate()
            .map(|(slot, (global, _))| (*global, local.received[slot], local.connected[slot]))
            .collect(),
    }
}

/// The loopback source address of subscriber `index`, when the server is on IPv4 loopback.
///
/// Linux gives `connect()` ephemeral ports from half the range first (even ports, about 14,000
/// here); past that every connect scans the used half before it finds a port, which stalled the
/// ramp between 12,000 and 15,000 subscribers by a second for every server alike. Each
/// 127.0.0.x has its own port space, so a few sources keep every connect on the fast path.
pub(crate) fn source_ip(server: SocketAddr, index: usize, sources: usize) -> Option<IpAddr> {
    match server.ip() {
        IpAddr::V4(v4) if v4.is_loopback() && sources > 1 => Some(IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            0,
            1 + (index % sources.min(250)) as u8,
        ))),
        _ => None,
    }
}

/// A publisher's (or any request-sending client's) connection: [`connect_subscriber`]'s socket
/// with `TCP_NODELAY`, so a request written while the previous one is unacknowledged is not held.
pub(crate) async fn connect(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let stream = connect_subscriber(addr, source).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// A subscriber's connection, a socket that resets on close: 15,000 closes per run would
/// otherwise leave 15,000 ports in TIME_WAIT and the next runs would run out of ephemeral ports.
///
/// No `TCP_NODELAY`: a subscriber writes one request and then only reads, so Nagle's algorithm
/// never holds anything back, and the option would be one more system call per connection on
/// the generator's core, which sets the pace of the connection ramp. With a source address,
/// the port is left to `connect` (`IP_BIND_ADDRESS_NO_PORT`): a `bind` to port 0 would reserve
/// a port exclusively, searching the bind table for one no other socket holds, where `connect`
/// needs only a free 4-tuple.
pub(crate) async fn connect_subscriber(
    addr: SocketAddr,
    source: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    // Deprecated because a non-zero linger blocks the thread on drop; zero never blocks (the
    // kernel sends RST at once), which is the behaviour we want.
    #[allow(deprecated)]
    socket.set_linger(Some(Duration::ZERO))?;
    if let Some(ip) = source {
        nix::sys::socket::setsockopt(
            &socket,
            nix::sys::socket::sockopt::IpBindAddressNoPort,
            &true,
        )
        .map_err(std::io::Error::from)?;
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(addr).await
}

/// Reads what is ready into the thread's buffer and hands it to `f`; `Ok(0)` is end of stream.
///
/// Goes through `poll_read` rather than `readable()` + `try_read`: tokio clears the socket's
/// readiness after a read that did not fill the buffer (edge-triggered epoll says the socket
/// is drained), which saves the second, `EAGAIN`-returning `read` per wake-up that `try_read`
/// needs. That halves the generator's syscalls against servers that write one event per
/// `write` (nchan, Node). The buffer is borrowed only inside the synchronous poll.
pub(crate) async fn read_some(
    stream: &mut TcpStream,
    mut f: impl FnMut(&[u8]),
) -> std::io::Result<usize> {
    std::future::poll_fn(|cx| {
        READ.with(|buf| {
            let mut buf = buf.borrow_mut();
            let mut rb = ReadBuf::new(&mut buf);
            match Pin::new(&mut *stream).poll_read(cx, &mut rb) {
                Poll::Ready(Ok(())) => {
                    let filled = rb.filled();
                    f(filled);
                    Poll::Ready(Ok(filled.len()))
                }
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            }
        })
    })
    .await
}

async fn subscriber(
    slot: usize,
    addr: SocketAddr,
    source: Option<IpAddr>,
    request: Rc<[u8]>,
    shared: Arc<Shared>,
    local: Rc<RefCell<Local>>,
    sem: Rc<Semaphore>,
) {
    let permit = sem.acquire().await;
    let setup = async {
        let mut stream = connect_subscriber(addr, source).await?;
        stream.write_all(&request).await?;
        let mut head_buf = Vec::with_capacity(1024);
        loop {
            if read_some(&mut stream, |b| head_buf.extend_from_slice(b)).await? == 0 {
                return Err(std::io::Error::other("closed before the response head"));
            }
            if let Some(head) = parse_head(&head_buf).map_err(std::io::Error::other)? {
                if head.status != 200 {
                    return Err(std::io::Error::other(format!("HTTP {}", head.status)));
                }
                head_buf.drain(..head.len);
                return Ok((stream, head, head_buf));
            }
            if head_buf.len() > 64 * 1024 {
                return Err(std::io::Error::other("response head over 64 KiB"));
            }
        }
    };
    let (mut stream, head, rest) = match setup.await {
        Ok(v) => v,
        Err(e) => {
            shared.connect_failed.fetch_add(1, Relaxed);
            shared.error(format!("subscribe: {e}"));
            return;
        }
    };
    local.borrow_mut().connected[slot] = true;
    shared.connected.fetch_add(1, Relaxed);
    shared.last_connected_ns.fetch_max(shared.now_ns(), Relaxed);
    drop(permit);

    let mut dechunk = Dechunker::new(head.chunked);
    let mut scanner = EventScanner::default();
    // Counting and histogram recording per read, not per event: one clock read and one atomic
    // add per batch the server wrote.
    let mut consume = |bytes: &[u8]| -> Result<(), &'static str> {
        let now = shared.now_ns();
        let (lo, hi) = (
            shared.window_start.load(Relaxed),
            shared.window_end.load(Relaxed),
        );
        let mut l = local.borrow_mut();
        let l = &mut *l;
        let mut n = 0;
        dechunk.feed(bytes, |payload| {
            n += scanner
                .scan(payload, |ts| {
                    if ts >= lo && ts < hi {
                        let us = now.saturating_sub(ts) / 1000;
                        l.latency_us.saturating_record(us.max(1));
                    }
                })
                .events;
        })?;
        if n > 0 {
            l.received[slot] += n;
            shared.received.fetch_add(n, Relaxed);
        }
        if dechunk.is_done() {
            return Err("the server ended the stream");
        }
        Ok(())
    };
    let mut result = consume(&rest).map_err(std::io::Error::other);
    drop(rest);
    while result.is_ok() {
        let mut bad = Ok(());
        match read_some(&mut stream, |b| bad = consume(b)).await {
            Ok(0) => result = Err(std::io::Error::other("stream ended")),
            Ok(_) => result = bad.map_err(std::io::Error::other),
            Err(e) => result = Err(e),
        }
    }
    if let Err(e) = result {
        shared.closed.fetch_add(1, Relaxed);
        shared.error(format!("subscriber stream: {e}"));
    }
}

/// Publishes until the phase leaves `Publish`, one request in flight per connection.
async fn publisher(
    index: usize,
    total: usize,
    addr: SocketAddr,
    requests: Rc<Vec<PublishRequest>>,
    rate: Option<f64>,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
) {
    if phase.wait_for(|p| *p >= Phase::Publish).await.is_err() {
        return;
    }
    let topics = requests.len();
    // Each publisher takes its own slice of the schedule: publish k of publisher p is due at
    // start + (k * total + p) / rate, so together they make an even stream at `rate`.
    let period = rate.map(|r| Duration::from_secs_f64(total as f64 / r));
    let offset = rate.map(|r| Duration::from_secs_f64(index as f64 / r));
    let start = Instant::now();
    let mut k: u64 = 0;
    let mut out = Vec::with_capacity(1024);
    let mut buf = Vec::with_capacity(4096);
    let mut stream: Option<TcpStream> = None;
    let mut reconnects = 0;
    while *phase.borrow() == Phase::Publish {
        let topic = (index + k as usize * total) % topics;
        let ts = match (period, offset) {
            (Some(period), Some(offset)) => {
                let due = start + offset + period * k as u32;
                // Stamped with the due time, not the send time: a server that holds up the
                // previous publish is charged for it (no coordinated omission).
                tokio::select! {
                    () = tokio::time::sleep_until(due.into()) => {}
                    _ = phase.changed() => continue,
                }
                due.duration_since(shared.epoch).as_nanos() as u64
            }
            _ => shared.now_ns(),
        };
        k += 1;
        if stream.is_none() {
            match connect(addr, None).await {
                Ok(s) => stream = Some(s),
                Err(e) => {
                    shared.pub_errors.fetch_add(1, Relaxed);
                    shared.error(format!("publisher connect: {e}"));
                    reconnects += 1;
                    if reconnects > 100 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let s = stream.as_mut().expect("connected above");
        requests[topic].write(ts, &mut out);
        match exchange(s, &out, &mut buf).await {
            Ok((status, keep)) => {
                if (200..300).contains(&status) {
                    shared.acked[topic].fetch_add(1, Relaxed);
                } else {
                    shared.pub_errors.fetch_add(1, Relaxed);
                    shared.error(format!("publish: HTTP {status}"));
                }
                if !keep {
                    stream = None;
                }
            }
            Err(e) => {
                // The publish may or may not have been taken: not counted as expected, so a
                // delivery of it would show as a duplicate rather than hide a loss.
                shared.pub_errors.fetch_add(1, Relaxed);
                shared.error(format!("publish: {e}"));
                stream = None;
                reconnects += 1;
                if reconnects > 100 {
                    break;
                }
            }
        }
    }
    shared.publishers_done.fetch_add(1, Relaxed);
}

/// Sends one request and reads its whole response; returns the status and whether the
/// connection may be reused.
pub(crate) async fn exchange(
    s: &mut TcpStream,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, bool)> {
    s.write_all(req).await?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::other("publish connection closed"));
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(head) = parse_head(buf).map_err(std::io::Error::other)? else {
            continue;
        };
        let body = &buf[head.len..];
        let complete = match (head.content_length, head.chunked) {
            // These never have a body, whatever the headers say.
            _ if head.status == 204 || head.status == 304 => true,
            (Some(len), _) => body.len() >= len,
            // Publish answers are tiny; the last-chunk marker at the end is enough.
            (None, true) => body.ends_with(b"0\r\n\r\n"),
            // No length: the body runs to the close, and the connection is spent.
            (None, false) => {
                let _ = s.read_to_end(buf).await;
                return Ok((head.status, false));
            }
        };
        if complete {
            let close = memchr::memmem::find(&buf[..head.len], b"onnection: close").is_some();
            return Ok((head.status, !close));
        }
        if buf.len() > 1 << 20 {
            return Err(std::io::Error::other("publish response over 1 MiB"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_cycle_on_loopback_only() {
        let lo: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let ips: Vec<_> = (0..5).map(|i| source_ip(lo, i, 4)).collect();
        assert_eq!(ips[0], Some("127.0.0.1".parse().unwrap()));
        assert_eq!(ips[3], Some("127.0.0.4".parse().unwrap()));
        assert_eq!(ips[4], ips[0]);
        assert_eq!(
            source_ip(lo, 7, 1),
            None,
            "one source: let the kernel choose"
        );
        assert_eq!(source_ip("10.0.0.1:3000".parse().unwrap(), 1, 4), None);
    }
}
