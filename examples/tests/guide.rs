//! docs/guide-axum.md is true: its program is `examples/src/bin/guide/main.rs` byte for byte,
//! and that program, run as the guide runs it, serves a page, streams what a handler publishes
//! over real TCP, refuses bad input with a reason, and stops cleanly on SIGTERM.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GUIDE: &str = include_str!("../../docs/guide-axum.md");
const PROGRAM: &str = include_str!("../src/bin/guide/main.rs");
/// The line before the program's code block in the guide.
const MARKER: &str =
    "<!-- the program: examples/src/bin/guide/main.rs (checked by examples/tests/guide.rs) -->";

#[test]
fn the_guide_shows_the_program_that_is_tested() {
    let start = GUIDE.find(MARKER).expect("the guide marks its program") + MARKER.len();
    let block = GUIDE[start..]
        .strip_prefix("\n```rust\n")
        .expect("a ```rust block right after the marker");
    let end = block.find("\n```\n").expect("the block ends");
    assert_eq!(
        &block[..end + 1],
        PROGRAM,
        "docs/guide-axum.md and examples/src/bin/guide/main.rs differ: copy the file into the guide"
    );
}

/// Reads from `tcp` until `needle` arrived; bounded by the socket's read timeout.
fn read_until(tcp: &mut TcpStream, got: &mut String, needle: &str) {
    let mut buf = [0u8; 4096];
    while !got.contains(needle) {
        let n = tcp
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("no {needle:?} in {got:?}: {e}"));
        if n == 0 {
            panic!("the connection ended before {needle:?}: {got:?}");
        }
        got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
}

fn connect(addr: &str) -> TcpStream {
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp
}

fn post(addr: &str, body: &str) -> String {
    let mut tcp = connect(addr);
    write!(
        tcp,
        "POST /send HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut got = String::new();
    tcp.read_to_string(&mut got).unwrap();
    got
}

#[test]
fn the_guide_program_streams_what_a_handler_publishes() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_guide"))
        .env("ADDR", "127.0.0.1:0")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("open http://")
        .and_then(|a| a.strip_suffix('/'))
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();

    let mut page = connect(&addr);
    page.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut html = String::new();
    page.read_to_string(&mut html).unwrap();
    assert!(html.starts_with("HTTP/1.1 200 OK\r\n"), "{html}");
    assert!(html.contains("new EventSource('/events')"), "{html}");

    let mut events = connect(&addr);
    events
        .write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = String::new();
    // The head and the first bytes come at once, before any event.
    read_until(&mut events, &mut got, "retry: 3000\n");
    assert!(got.contains("content-type: text/event-stream\r\n"), "{got}");

    let sent = post(&addr, "text=hello+browser");
    assert!(sent.starts_with("HTTP/1.1 200 OK\r\n"), "{sent}");
    let id = sent.split("\r\n\r\n").nth(1).unwrap().to_owned();
    read_until(&mut events, &mut got, "data: hello browser\n\n");
    assert!(
        got.contains(&format!("id: {id}\ndata: hello browser\n\n")),
        "{got}"
    );

    let empty = post(&addr, "text=+");
    assert!(empty.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{empty}");
    assert!(
        empty.ends_with("\r\n\r\ntext must not be empty\n"),
        "{empty}"
    );

    // SIGTERM: the stream ends with the drain's `retry:` and the process exits 0.
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    read_until(&mut events, &mut got, "0\r\n\r\n");
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
}
