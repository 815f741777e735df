//! The load itself: worker threads, each a current-thread tokio runtime driving its share of the
//! subscribers and publishers over raw keep-alive TCP connections.
//!
//! One thread per core the generator owns (usually one): no work stealing, no cross-thread
//! wakeups, and per-thread state behind `Rc<RefCell>` instead of locks. Threads share only a
//! handful of atomics that the orchestrating main thread samples, and a `watch` channel that
//! tells them which phase the run is in.
//!
//! Connections are plain TCP or TLS (`--tls`, see `tls.rs`); HTTP/2 subscribers (`--h2-streams`)
//! are driven by `h2sub.rs`, which shares this module's counting ([`Sink`]).

use std::cell::RefCell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use std::pin::Pin;
use std::task::Poll;

use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, watch};

use crate::scan::{Dechunker, EventScanner, parse_head};
use crate::target::PublishRequest;
use crate::tls::{TlsClient, Wire};

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

    pub(crate) fn error(&self, msg: String) {
        let mut errors = self.errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < 10 {
            errors.push(msg);
        }
    }

    pub fn acked_total(&self) -> u64 {
        self.acked.iter().map(|a| a.load(Relaxed)).sum()
    }
}

/// One subscription's request: the HTTP/1.1 request bytes, and the path and query for HTTP/2.
#[derive(Debug)]
pub struct Sub {
    pub h1: Vec<u8>,
    pub path: String,
}

/// One thread's share of the work.
#[derive(Debug)]
pub struct Plan {
    pub addr: SocketAddr,
    /// Where publishers connect (`addr` except for Pushpin).
    pub pub_addr: SocketAddr,
    /// (global subscriber index, subscribe request) for each subscriber of this thread.
    pub subscribers: Vec<(usize, Rc<Sub>)>,
    /// Global publisher indexes of this thread's publishers.
    pub publishers: Vec<usize>,
    pub publishers_total: usize,
    /// One prepared request per topic, shared by this thread's publishers.
    pub requests: Rc<Vec<PublishRequest>>,
    /// Total publishes per second over all publishers, or `None` for as fast as possible.
    pub rate: Option<f64>,
    /// Connections being opened at once on this thread.
    pub connect_concurrency: usize,
    /// Subscribers connect from this many loopback source addresses (127.0.0.F, F+1, ...).
    pub source_ips: usize,
    /// The last byte of the first of them (F).
    pub source_first: u8,
    /// TLS for every connection (and HTTP/2 subscribers when it says so), or plain TCP.
    pub tls: Option<Arc<TlsClient>>,
}

/// What a thread hands back at the end.
#[derive(Debug)]
pub struct Outcome {
    /// Publish-to-receive latency in microseconds, for publishes stamped inside the window.
    pub latency_us: Histogram<u64>,
    /// (global subscriber index, events received, whether it connected).
    pub per_subscriber: Vec<(usize, u64, bool)>,
}

pub(crate) struct Local {
    latency_us: Histogram<u64>,
    received: Vec<u64>,
    connected: Vec<bool>,
}

impl Local {
    /// The counters of `subscribers` subscriptions.
    pub(crate) fn new(subscribers: usize) -> Self {
        Self {
            latency_us: Histogram::new_with_bounds(1, 120_000_000, 3)
                .expect("valid histogram bounds"),
            received: vec![0; subscribers],
            connected: vec![false; subscribers],
        }
    }

    /// Events received by subscription `slot`, and whether it connected.
    #[cfg(test)]
    pub(crate) fn of(&self, slot: usize) -> (u64, bool) {
        (self.received[slot], self.connected[slot])
    }
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
    let local = Rc::new(RefCell::new(Local::new(plan.subscribers.len())));
    let set = tokio::task::LocalSet::new();
    let sem = Rc::new(Semaphore::new(plan.connect_concurrency.max(1)));
    let h2_streams = plan.tls.as_ref().map_or(0, |t| t.h2_streams);
    if h2_streams > 0 {
        // Consecutive subscribers of this thread share a connection; its source address is
        // picked by the connection's own index, so connections spread over the addresses.
        let slots: Vec<_> = plan.subscribers.iter().enumerate().collect();
        for group in slots.chunks(h2_streams) {
            let conn_index = group[0].1.0 / h2_streams;
            let source = source_ip_from(plan.addr, conn_index, plan.source_ips, plan.source_first);
            let streams = group
                .iter()
                .map(|(slot, (_, sub))| (*slot, sub.clone()))
                .collect();
            set.spawn_local(crate::h2sub::connection(
                streams,
                plan.addr,
                source,
                plan.tls.clone().expect("h2 needs TLS"),
                shared.clone(),
                local.clone(),
                sem.clone(),
            ));
        }
    } else {
        for (slot, (global, request)) in plan.subscribers.iter().enumerate() {
            let source = source_ip_from(plan.addr, *global, plan.source_ips, plan.source_first);
            set.spawn_local(subscriber(
                slot,
                plan.addr,
                source,
                request.clone(),
                plan.tls.clone(),
                shared.clone(),
                local.clone(),
                sem.clone(),
            ));
        }
    }
    for &p in &plan.publishers {
        set.spawn_local(publisher(
            p,
            plan.publishers_total,
            plan.pub_addr,
            plan.requests.clone(),
            plan.rate,
            plan.tls.clone(),
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
    source_ip_from(server, index, sources, 1)
}

/// [`source_ip`] from 127.0.0.`first` on (the TLS workloads use 127.0.0.2-5, as issue 22's
/// figures were measured). A first address other than .1 is used even for one source.
pub(crate) fn source_ip_from(
    server: SocketAddr,
    index: usize,
    sources: usize,
    first: u8,
) -> Option<IpAddr> {
    match server.ip() {
        IpAddr::V4(v4) if v4.is_loopback() && (sources > 1 || first > 1) => {
            let first = first.clamp(1, 250);
            let span = sources.clamp(1, usize::from(255 - first));
            Some(IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                first + (index % span) as u8,
            )))
        }
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
pub(crate) async fn read_some<S: AsyncRead + Unpin>(
    stream: &mut S,
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

/// One subscription's event counting: what it received and the latencies of the window, fed
/// with the body bytes of an HTTP/1.1 response (chunked or not) or an HTTP/2 stream.
pub(crate) struct Sink {
    slot: usize,
    dechunk: Dechunker,
    scanner: EventScanner,
}

impl Sink {
    pub(crate) fn new(slot: usize, chunked: bool) -> Self {
        Self {
            slot,
            dechunk: Dechunker::new(chunked),
            scanner: EventScanner::default(),
        }
    }

    /// Counts the events in `bytes`. Counting and histogram recording per read, not per event:
    /// one clock read and one atomic add per batch the server wrote.
    pub(crate) fn feed(
        &mut self,
        bytes: &[u8],
        shared: &Shared,
        local: &RefCell<Local>,
    ) -> Result<(), &'static str> {
        let now = shared.now_ns();
        let (lo, hi) = (
            shared.window_start.load(Relaxed),
            shared.window_end.load(Relaxed),
        );
        let mut l = local.borrow_mut();
        let l = &mut *l;
        let mut n = 0;
        let scanner = &mut self.scanner;
        self.dechunk.feed(bytes, |payload| {
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
            l.received[self.slot] += n;
            shared.received.fetch_add(n, Relaxed);
        }
        if self.dechunk.is_done() {
            return Err("the server ended the stream");
        }
        Ok(())
    }
}

/// A subscription has its response head: counted as connected.
pub(crate) fn mark_connected(slot: usize, shared: &Shared, local: &RefCell<Local>) {
    local.borrow_mut().connected[slot] = true;
    shared.connected.fetch_add(1, Relaxed);
    shared.last_connected_ns.fetch_max(shared.now_ns(), Relaxed);
}

#[allow(clippy::too_many_arguments)]
async fn subscriber(
    slot: usize,
    addr: SocketAddr,
    source: Option<IpAddr>,
    request: Rc<Sub>,
    tls: Option<Arc<TlsClient>>,
    shared: Arc<Shared>,
    local: Rc<RefCell<Local>>,
    sem: Rc<Semaphore>,
) {
    let permit = sem.acquire().await;
    let setup = async {
        let tcp = connect_subscriber(addr, source).await?;
        let mut stream = Wire::open(tcp, tls.as_deref()).await?;
        stream.write_all(&request.h1).await?;
        // TLS: the request may still sit in the session's buffer.
        stream.flush().await?;
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
    mark_connected(slot, &shared, &local);
    drop(permit);

    let mut sink = Sink::new(slot, head.chunked);
    let mut result = sink
        .feed(&rest, &shared, &local)
        .map_err(std::io::Error::other);
    drop(rest);
    while result.is_ok() {
        let mut bad = Ok(());
        match read_some(&mut stream, |b| bad = sink.feed(b, &shared, &local)).await {
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
#[allow(clippy::too_many_arguments)] // a spawned task's own copies of its plan's parts
async fn publisher(
    index: usize,
    total: usize,
    addr: SocketAddr,
    requests: Rc<Vec<PublishRequest>>,
    rate: Option<f64>,
    tls: Option<Arc<TlsClient>>,
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
    let mut stream: Option<Wire> = None;
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
            let opened = match connect(addr, None).await {
                Ok(tcp) => Wire::open(tcp, tls.as_deref()).await,
                Err(e) => Err(e),
            };
            match opened {
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
pub(crate) async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    req: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<(u16, bool)> {
    s.write_all(req).await?;
    // A no-op on a socket; TLS may hold the request's last record until flushed.
    s.flush().await?;
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
    use crate::scan::write_timestamp;
    use crate::tls::testing::{acceptor, args, cert, until};
    use tokio::io::AsyncBufReadExt as _;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn a_tls_subscriber_counts_chunked_events_and_a_tls_publisher_is_answered() {
        let (der, key, path) = cert("h1");
        let acceptor = acceptor(&[b"http/1.1"], der, key);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // One connection subscribes (chunked SSE, the second event split over two chunks),
        // the other publishes (one request, 200 with a body).
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let tls = acceptor.accept(tcp).await.unwrap();
                    let mut tls = tokio::io::BufReader::new(tls);
                    let mut line = String::new();
                    tls.read_line(&mut line).await.unwrap();
                    let subscribe = line.starts_with("GET /sub ");
                    let mut content_length = 0;
                    loop {
                        let mut h = String::new();
                        tls.read_line(&mut h).await.unwrap();
                        if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                            content_length = v.trim().parse().unwrap();
                        }
                        if h == "\r\n" {
                            break;
                        }
                    }
                    if subscribe {
                        let mut events = Vec::new();
                        for ts in [5, 6] {
                            events.extend_from_slice(b"data: ");
                            write_timestamp(&mut events, ts);
                            events.extend_from_slice(b"\n\n");
                        }
                        let (a, b) = events.split_at(40);
                        let mut out =
                            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
                        for part in [a, b] {
                            out.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
                            out.extend_from_slice(part);
                            out.extend_from_slice(b"\r\n");
                        }
                        tls.write_all(&out).await.unwrap();
                        tls.flush().await.unwrap();
                        std::future::pending::<()>().await;
                    } else {
                        let mut body = vec![0; content_length];
                        tls.read_exact(&mut body).await.unwrap();
                        assert!(body.starts_with(b"topic=t&data=~T"), "{body:?}");
                        tls.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nid")
                            .await
                            .unwrap();
                        tls.flush().await.unwrap();
                    }
                });
            }
        });
        let tls = args(&path, 0).client().unwrap().unwrap();
        let shared = Arc::new(Shared::new(1));
        let local = Rc::new(RefCell::new(Local::new(1)));
        let sub = Rc::new(Sub {
            h1: b"GET /sub HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            path: "/sub".into(),
        });
        let set = tokio::task::LocalSet::new();
        set.run_until(async {
            tokio::task::spawn_local(subscriber(
                0,
                addr,
                None,
                sub,
                Some(tls.clone()),
                shared.clone(),
                local.clone(),
                Rc::new(Semaphore::new(1)),
            ));
            until("2 events", || shared.received.load(Relaxed) == 2).await;
            let request = crate::target::Target::preset(crate::target::Preset::Ssehub, addr)
                .publish_request("t", 40);
            let mut out = Vec::new();
            request.write(7, &mut out);
            let tcp = connect(addr, None).await.unwrap();
            let mut wire = Wire::open(tcp, Some(&tls)).await.unwrap();
            let mut buf = Vec::new();
            assert_eq!(
                exchange(&mut wire, &out, &mut buf).await.unwrap(),
                (200, true)
            );
        })
        .await;
        assert_eq!(local.borrow().of(0), (2, true));
        let stats = tls.stats.json(0);
        assert_eq!(stats["http"], "http/1.1", "{stats}");
        assert_eq!(stats["suite"], "TLS13_AES_128_GCM_SHA256", "{stats}");
        assert_eq!(
            stats["handshakes_full"].as_u64().unwrap()
                + stats["handshakes_resumed"].as_u64().unwrap(),
            2,
            "{stats}"
        );
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn source_addresses_can_start_past_the_first() {
        let lo: SocketAddr = "127.0.0.1:3000".parse().unwrap();
        let ips: Vec<_> = (0..5).map(|i| source_ip_from(lo, i, 4, 2)).collect();
        assert_eq!(ips[0], Some("127.0.0.2".parse().unwrap()));
        assert_eq!(ips[3], Some("127.0.0.5".parse().unwrap()));
        assert_eq!(ips[4], ips[0]);
        assert_eq!(
            source_ip_from(lo, 9, 1, 2),
            Some("127.0.0.2".parse().unwrap())
        );
    }

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
