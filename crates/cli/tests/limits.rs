//! The limit flags of `ssehub serve` over the real binary and real TCP: each limit set low by
//! its flag (or its `SSEHUB_*` variable) is hit and answers with its status and one-line
//! reason; silent and dribbling connections are closed after `--head-timeout`; a stalled
//! subscriber ends with `ssehub.lagged` under `--max-queued-*`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Served};

const KEY: &str = "limits-test-secret-limits-test-secret";

/// A 0.x publisher token for the test key, from `ssehub token --legacy` (the hubs here run
/// with `--legacy-protocol`); `tag` makes each one distinct (the publish rate is per token).
fn publisher(tag: &str) -> String {
    let out = Command::new(BIN)
        .args([
            "token",
            "--legacy",
            "--jwt-key",
            KEY,
            "--publish",
            "*",
            "--subscribe",
            tag,
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// `host:port` of the hub's URL.
fn authority(served: &Served) -> String {
    let url = served.hub_url();
    url.trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A response: status, head, and the body when it has a `content-length`.
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

/// Sends `request` and reads the response head (and a sized body). The socket is returned so a
/// stream stays open.
fn send(addr: &str, request: &[u8]) -> (TcpStream, Answer) {
    let mut sock = TcpStream::connect(addr).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    sock.write_all(request).unwrap();
    let mut buf = Vec::new();
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len = head.lines().find_map(|l| {
                let (n, v) = l.split_once(':')?;
                n.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().unwrap())
            });
            if len.is_none_or(|len| buf.len() - end - 4 >= len) {
                let status = head[9..12].parse().unwrap();
                let body = String::from_utf8_lossy(&buf[end + 4..]).into_owned();
                return (sock, Answer { status, head, body });
            }
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).expect("no answer within 5 s");
        assert!(n > 0, "closed early: {:?}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn subscribe(query: &str, extra: &str) -> Vec<u8> {
    format!("GET /.well-known/mercure?{query} HTTP/1.1\r\nHost: x\r\n{extra}\r\n").into_bytes()
}

fn post(token: &str, body: &str) -> Vec<u8> {
    post_declaring(token, body.len(), body)
}

/// A publish declaring a body of `declared` bytes and sending only `sent` of it.
fn post_declaring(token: &str, declared: usize, sent: &str) -> Vec<u8> {
    format!(
        "POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {declared}\r\n\r\n{sent}"
    )
    .into_bytes()
}

#[test]
fn every_limit_flag_is_enforced_with_its_status_and_reason() {
    let served = Served::start(
        &[
            "--memory",
            "--jwt-key",
            KEY,
            "--max-subscribers",
            "3",
            "--max-subscribers-per-ip",
            "2",
            "--max-selectors",
            "2",
            "--max-topics-per-update",
            "2",
            "--max-head",
            "16384",
            "--max-body",
            "1000",
            "--body-timeout",
            "500ms",
        ],
        // One through its variable, as every flag has one.
        &[("SSEHUB_PUBLISH_RATE", "2")],
    );
    let addr = authority(&served);

    // Selectors per subscription, topics per update.
    let (_, a) = send(&addr, &subscribe("topic=a&topic=b&topic=c", ""));
    assert_eq!(
        (a.status, a.body.as_str()),
        (400, "too many topic parameters (at most 2)\n")
    );
    // The 1.0 matchers count toward the same limit, whatever their type.
    let (_, a) = send(
        &addr,
        &subscribe("match=a&match_urlpattern=%2Fb&match_exact=c", ""),
    );
    assert_eq!(
        (a.status, a.body.as_str()),
        (400, "too many matcher parameters (at most 2)\n")
    );
    let (_, b) = send(&addr, &post(&publisher("t1"), "topic=a&topic=b&topic=c"));
    assert_eq!(
        (b.status, b.body.as_str()),
        (413, "too many topics in one update (at most 2)\n")
    );

    // Publish rate per token (burst 2): the third is refused with Retry-After; another token
    // still publishes.
    let token = publisher("t2");
    for _ in 0..2 {
        assert_eq!(send(&addr, &post(&token, "topic=a&data=x")).1.status, 200);
    }
    let (_, c) = send(&addr, &post(&token, "topic=a&data=x"));
    assert_eq!(c.status, 429, "{c:?}");
    assert_eq!(c.header("retry-after"), Some("1"), "{c:?}");
    assert_eq!(
        c.body,
        "too many publishes with this token (at most 2 per second)\n"
    );
    assert_eq!(
        send(&addr, &post(&publisher("t3"), "topic=a&data=x"))
            .1
            .status,
        200
    );

    // Body size: a declared length over the limit is refused before the body is sent.
    let started = Instant::now();
    let (_, d) = send(&addr, &post_declaring(&publisher("t4"), 1_000_000, ""));
    assert_eq!(
        (d.status, d.body.as_str()),
        (413, "request body larger than 1000 bytes\n")
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    // Body time: a body that stops arriving is answered once the body timeout is up.
    let started = Instant::now();
    let (_, s) = send(&addr, &post_declaring(&publisher("t5"), 100, "topic=a"));
    assert_eq!(
        (s.status, s.body.as_str()),
        (408, "request body not complete within 500ms\n")
    );
    assert!(started.elapsed() >= Duration::from_millis(400));

    // Head size, on a subscribe (the fast path) and on a publish (hyper).
    let big = format!("X-Big: {}\r\n", "b".repeat(20_000));
    assert_eq!(send(&addr, &subscribe("topic=a", &big)).1.status, 431);
    let big_post =
        format!("POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\n{big}Content-Length: 0\r\n\r\n");
    assert_eq!(send(&addr, big_post.as_bytes()).1.status, 431);

    // Subscribers per client address (loopback is a trusted proxy by default, so the
    // forwarded address is the client), then in total.
    let from = |ip: &str| format!("X-Forwarded-For: {ip}\r\n");
    let (_s1, e) = send(&addr, &subscribe("topic=a", &from("203.0.113.1")));
    let (_s2, f) = send(&addr, &subscribe("topic=a", &from("203.0.113.1")));
    assert_eq!((e.status, f.status), (200, 200));
    let (_, g) = send(&addr, &subscribe("topic=a", &from("203.0.113.1")));
    assert_eq!(g.status, 429, "{g:?}");
    assert_eq!(
        g.body,
        "too many subscriptions from your address (at most 2)\n"
    );
    let (_s3, h) = send(&addr, &subscribe("topic=a", &from("203.0.113.2")));
    assert_eq!(h.status, 200);
    let (_, i) = send(&addr, &subscribe("topic=a", &from("203.0.113.3")));
    assert_eq!(
        (i.status, i.body.as_str()),
        (503, "too many subscribers (at most 3)\n")
    );

    // Nothing above cost anyone else their connection: the hub still answers.
    let (_, ok) = send(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(ok.status, 200);
}

/// Whether the server closed `sock`, polling reads for up to `within`.
fn closed_within(
    sock: &mut TcpStream,
    within: Duration,
    mut between_reads: impl FnMut(&mut TcpStream),
) -> Option<Duration> {
    let started = Instant::now();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while started.elapsed() < within {
        let mut buf = [0u8; 1024];
        match sock.read(&mut buf) {
            Ok(0) => return Some(started.elapsed()),
            // An answer (hyper's 408, say) is fine; the close must follow.
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return Some(started.elapsed()),
        }
        between_reads(sock);
    }
    None
}

#[test]
fn silent_and_dribbling_connections_are_closed_after_the_head_timeout() {
    let served = Served::start(&["--memory", "--head-timeout", "1s"], &[]);
    let addr = authority(&served);

    let mut silent = TcpStream::connect(&addr).unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(5), |_| {})
        .expect("a silent connection stayed open");
    assert!(
        took >= Duration::from_millis(800),
        "closed too early: {took:?}"
    );

    // A head sent one byte every 100 ms never completes: the fast path's reader (a subscribe)
    // and hyper's (a publish) both give up after the timeout, however steady the dribble.
    for head in [
        &b"GET /.well-known/mercure?topic=a HTTP/1.1\r\nHost: x\r\nX-Slow: "[..],
        b"POST /.well-known/mercure HTTP/1.1\r\nHost: x\r\nX-Slow: ",
    ] {
        let mut sock = TcpStream::connect(&addr).unwrap();
        let mut next = 0;
        let took = closed_within(&mut sock, Duration::from_secs(5), |s| {
            let byte = head.get(next).copied().unwrap_or(b'x');
            next += 1;
            // A write may fail once the server is gone; the next read sees it.
            let _ = s.write_all(&[byte]);
        })
        .unwrap_or_else(|| {
            panic!(
                "a dribbling connection stayed open: {:?}",
                String::from_utf8_lossy(head)
            )
        });
        assert!(
            took >= Duration::from_millis(800),
            "closed too early: {took:?}"
        );
    }

    // The hub still serves others.
    let (_, ok) = send(&addr, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(ok.status, 200);
}

#[test]
fn a_stalled_subscriber_ends_with_ssehub_lagged_under_the_queue_flags() {
    let served = Served::start(
        &[
            "--memory",
            "--jwt-key",
            KEY,
            "--history-size",
            "10",
            "--max-queued-frames",
            "4",
            "--max-queued-bytes",
            "65536",
        ],
        &[],
    );
    let addr = authority(&served);
    let (mut stalled, head) = send(&addr, &subscribe("topic=t", ""));
    assert_eq!(head.status, 200);

    // Far more than the socket buffers between us hold (a few MiB at most), 60 KiB at a time.
    let token = publisher("slow");
    let data = "x".repeat(60 * 1024);
    for _ in 0..150 {
        let (_, r) = send(&addr, &post(&token, &format!("topic=t&data={data}")));
        assert_eq!(r.status, 200, "{r:?}");
    }
    // A subscriber that keeps up is served meanwhile.
    let (_live, live) = send(&addr, &subscribe("topic=t", ""));
    assert_eq!(live.status, 200);

    // Reading again: the buffered frames, then the notice, then the end of the stream.
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tail: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(at) = find(&tail, b"event: ssehub.lagged")
            && find(&tail[at..], b"\r\n0\r\n\r\n").is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "no ssehub.lagged event");
        let n = stalled.read(&mut chunk).expect("stream stalled");
        assert!(n > 0, "closed before the lagged event");
        tail.extend_from_slice(&chunk[..n]);
        if tail.len() > 8192 {
            tail.drain(..tail.len() - 8192);
        }
    }
}

/// The compiled-matcher limits (issue 20): one client address may hold
/// `--max-matchers-per-client` distinct patterns; one more is 429 with a reason, and the
/// patterns it holds are freed when its subscribers leave.
#[test]
fn matcher_limit_flags_are_enforced() {
    let served = Served::start_modern(
        &[
            "--memory",
            "--issuer",
            "urn:limits",
            "--jwt-key",
            "limits-key",
            "--max-matchers-per-client",
            "2",
        ],
        &[],
    );
    let addr = authority(&served);
    let pattern = |i: u32| {
        subscribe(
            &format!("match_urlpattern=https%3A%2F%2Fx.example%2F{i}%2F%3Aid"),
            "",
        )
    };
    let (first, a) = send(&addr, &pattern(1));
    let (second, b) = send(&addr, &pattern(2));
    assert_eq!((a.status, b.status), (200, 200));
    let (_, c) = send(&addr, &pattern(3));
    assert_eq!(c.status, 429, "{}", c.body);
    assert!(c.body.contains("pattern"), "{}", c.body);
    assert!(c.header("retry-after").is_some());
    // An exact matcher costs no compiled pattern: still served.
    let (_exact, d) = send(&addr, &subscribe("match=urn%3Aa", ""));
    assert_eq!(d.status, 200);
    // Once its subscribers leave, the address may compile again.
    drop((first, second));
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_s, e) = send(&addr, &pattern(4));
        if e.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "still refused: {}", e.body);
        std::thread::sleep(Duration::from_millis(50));
    }
}
