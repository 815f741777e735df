//! A scripted HTTP/1.1 server over real TCP, for driving the client in tests.
//!
//! Each accepted connection takes the next [`Reply`] of the script (the last one repeats),
//! records the request it read, and writes the reply chunk by chunk, one `write` and flush per
//! chunk. With chunked transfer encoding each chunk reaches the client's body reader as a
//! separate piece, so a test controls how the parser is fed.

#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ssehub_client::{ClientError, ClientEvent, EventStream, MessageEvent};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Every test's hard bound.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `Transfer-Encoding: chunked`, one HTTP chunk per script chunk.
    Chunked,
    /// No length: the body ends when the server closes the connection.
    Close,
}

/// What the server does after the last chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Ends the body properly (chunked terminator, or close) and closes.
    Finish,
    /// Keeps the connection open, sending nothing, until the client goes away.
    Hang,
    /// Closes the connection without ending a chunked body: a network error for the client.
    Abort,
}

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub chunks: Vec<Vec<u8>>,
    pub framing: Framing,
    pub end: End,
    /// A pause after each chunk.
    pub pause: Duration,
    /// Reads the request, then sends nothing at all, not even the status line.
    pub silent: bool,
}

impl Reply {
    /// A 200 `text/event-stream` response with these body chunks, ended properly.
    pub fn sse<C: AsRef<[u8]>>(chunks: impl IntoIterator<Item = C>) -> Self {
        Self {
            status: 200,
            headers: vec![("Content-Type".into(), "text/event-stream".into())],
            chunks: chunks.into_iter().map(|c| c.as_ref().to_vec()).collect(),
            framing: Framing::Chunked,
            end: End::Finish,
            pause: Duration::ZERO,
            silent: false,
        }
    }

    /// A response with this status, no body.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            headers: vec![],
            chunks: vec![],
            framing: Framing::Chunked,
            end: End::Finish,
            pause: Duration::ZERO,
            silent: false,
        }
    }

    /// A redirect to `location`.
    pub fn redirect(status: u16, location: &str) -> Self {
        Self::status(status).header("Location", location)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the `Content-Type` (`None`: sends none).
    pub fn content_type(mut self, value: Option<&str>) -> Self {
        self.headers
            .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
        if let Some(value) = value {
            self.headers.push(("Content-Type".into(), value.into()));
        }
        self
    }

    pub fn framing(mut self, framing: Framing) -> Self {
        self.framing = framing;
        self
    }

    pub fn end(mut self, end: End) -> Self {
        self.end = end;
        self
    }

    /// A reply that never comes: the connection stays open and silent.
    pub fn silent() -> Self {
        Self {
            silent: true,
            ..Self::status(200)
        }
    }

    pub fn pause(mut self, pause: Duration) -> Self {
        self.pause = pause;
        self
    }
}

/// A request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    pub target: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The values of header `name`, in order.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of header `name`; panics (failing the test) if repeated.
    pub fn header(&self, name: &str) -> Option<&str> {
        let all = self.all(name);
        assert!(all.len() <= 1, "header {name} repeated: {all:?}");
        all.first().copied()
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Request>,
}

impl TestServer {
    pub async fn start(script: Vec<Reply>) -> Self {
        assert!(!script.is_empty());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::unbounded_channel();
        let script = Arc::new(script);
        let next = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let n = next.fetch_add(1, Ordering::SeqCst);
                let reply = script[n.min(script.len() - 1)].clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = serve(socket, reply, tx).await;
                });
            }
        });
        Self { addr, requests }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The next request received (waits for it, bounded).
    pub async fn request(&mut self) -> Request {
        tokio::time::timeout(TEST_TIMEOUT, self.requests.recv())
            .await
            .expect("timed out waiting for a request")
            .expect("server gone")
    }

    /// Requests received so far, without waiting.
    pub fn received(&mut self) -> Vec<Request> {
        let mut out = Vec::new();
        while let Ok(request) = self.requests.try_recv() {
            out.push(request);
        }
        out
    }
}

async fn serve(
    mut socket: TcpStream,
    reply: Reply,
    tx: mpsc::UnboundedSender<Request>,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let request = read_request(&mut socket).await?;
    let _ = tx.send(request);
    if reply.silent {
        drain(&mut socket).await;
        return Ok(());
    }

    let reason = match reply.status {
        200 => "OK",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        307 => "Temporary Redirect",
        404 => "Not Found",
        500 => "Internal Server Error",
        _ => "Whatever",
    };
    let mut head = format!(
        "HTTP/1.1 {} {reason}\r\nConnection: close\r\n",
        reply.status
    );
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let no_body = matches!(reply.status, 204 | 304);
    let empty = reply.status != 200 && reply.chunks.is_empty();
    let chunked = !no_body && !empty && reply.framing == Framing::Chunked;
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    } else if !no_body && empty {
        head.push_str("Content-Length: 0\r\n");
    }
    head.push_str("\r\n");
    socket.write_all(head.as_bytes()).await?;
    socket.flush().await?;

    for chunk in reply.chunks.iter().filter(|c| !c.is_empty()) {
        if chunked {
            let mut framed = format!("{:x}\r\n", chunk.len()).into_bytes();
            framed.extend_from_slice(chunk);
            framed.extend_from_slice(b"\r\n");
            socket.write_all(&framed).await?;
        } else {
            socket.write_all(chunk).await?;
        }
        socket.flush().await?;
        if reply.pause.is_zero() {
            tokio::task::yield_now().await;
        } else {
            tokio::time::sleep(reply.pause).await;
        }
    }

    match reply.end {
        End::Finish => {
            if chunked {
                socket.write_all(b"0\r\n\r\n").await?;
            }
            socket.shutdown().await?;
            // Let the client read to the end before the socket is dropped.
            drain(&mut socket).await;
        }
        End::Hang => drain(&mut socket).await,
        End::Abort => {}
    }
    Ok(())
}

/// Reads until the peer closes (or errors).
async fn drain(socket: &mut TcpStream) {
    let mut buf = [0u8; 1024];
    while let Ok(n) = socket.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
}

async fn read_request(socket: &mut TcpStream) -> std::io::Result<Request> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await? == 0 || buf.len() > 64 * 1024 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&buf);
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let target = request_line
        .split(' ')
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    let headers = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Request { target, headers })
}

/// Bounds a test future.
pub async fn bounded<T>(future: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_TIMEOUT, future)
        .await
        .expect("test timed out")
}

/// The next item of `stream`, bounded.
pub async fn next(stream: &mut EventStream) -> Option<Result<ClientEvent, ClientError>> {
    bounded(stream.next()).await
}

/// Everything `stream` yields until it ends, bounded.
pub async fn collect_all(stream: &mut EventStream) -> Vec<Result<ClientEvent, ClientError>> {
    bounded(async {
        let mut items = Vec::new();
        while let Some(item) = stream.next().await {
            items.push(item);
        }
        items
    })
    .await
}

/// The next item that is not a `Comment` or `Retry`, which must be `Ok`.
pub async fn next_state(stream: &mut EventStream) -> ClientEvent {
    loop {
        match next(stream).await {
            Some(Ok(ClientEvent::Comment(_) | ClientEvent::Retry(_))) => continue,
            Some(Ok(event)) => return event,
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

pub fn msg(event_type: &str, data: &str, last_event_id: &str) -> ClientEvent {
    ClientEvent::Message(MessageEvent {
        event_type: event_type.into(),
        data: data.into(),
        last_event_id: last_event_id.into(),
    })
}

pub fn message(data: &str) -> ClientEvent {
    msg("message", data, "")
}

pub fn retry(ms: u64) -> ClientEvent {
    ClientEvent::Retry(Duration::from_millis(ms))
}

pub fn comment(text: &str) -> ClientEvent {
    ClientEvent::Comment(text.into())
}
