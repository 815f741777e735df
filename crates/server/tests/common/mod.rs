//! A hub served over real TCP on 127.0.0.1:0, and helpers to talk to it.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use ssehub_auth::{Algorithm, Authorizer, KeyConfig};
use ssehub_codec::{Frame, MessageEvent, Parser};
use ssehub_hub::Hub;
use ssehub_server::{MercureConfig, MercureServer};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod h2;
pub mod tls;

pub const SECRET: &str = "test-secret-test-secret-test-secret";

pub fn key() -> KeyConfig {
    KeyConfig {
        algorithm: Algorithm::HS256,
        key: SECRET.into(),
    }
}

/// A HS256 token with these Mercure claims.
pub fn token(publish: &[&str], subscribe: &[&str]) -> String {
    ssehub_auth::encode_token(&key(), Some(publish), Some(subscribe), None).unwrap()
}

pub fn publisher() -> String {
    token(&["*"], &[])
}

/// The issuer of [`start_1_0`]'s hub.
pub const ISSUER: &str = "https://issuer.example";
/// Its HS256 key.
pub const ISSUER_SECRET: &str = "a-1.0-issuer-secret-a-1.0-issuer-sec";

/// A Mercure 1.0 hub trusting [`ISSUER`] (the other helpers start a legacy one).
pub async fn start_1_0() -> TestHub {
    start_with(Hub::builder().heartbeat(None).build(), |c| {
        c.authorizer = Authorizer::builder()
            .issuer(
                ssehub_auth::Issuer::new(ISSUER)
                    .key(KeyConfig::new(Algorithm::HS256, ISSUER_SECRET)),
            )
            .build()
            .unwrap();
    })
    .await
}

/// A 1.0 token of [`ISSUER`] for `hub` that may publish everywhere.
pub fn publisher_1_0(hub: &TestHub) -> String {
    ssehub_auth::TokenSpec::new(ISSUER, hub.hub_url())
        .publish([ssehub_auth::Matcher::any()])
        .sign(&KeyConfig::new(Algorithm::HS256, ISSUER_SECRET))
        .unwrap()
}

pub struct TestHub {
    pub addr: SocketAddr,
    pub hub: Hub,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestHub {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub fn hub_url(&self) -> String {
        self.url("/.well-known/mercure")
    }

    /// Triggers graceful shutdown and waits for `serve` to return.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("shutdown hangs")
            .unwrap()
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

pub async fn start() -> TestHub {
    start_with(Hub::builder().heartbeat(None).build(), |_| {}).await
}

pub async fn start_with(hub: Hub, configure: impl FnOnce(&mut MercureConfig)) -> TestHub {
    let authorizer = Authorizer::new(Some(key()), Some(key())).unwrap();
    let mut config = MercureConfig::new(authorizer);
    // Streams end at once on shutdown, as the tests of it expect; tests/drain.rs sets a window.
    config.drain_timeout = Duration::ZERO;
    configure(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = MercureServer::new(hub.clone(), config);
    let router = server.router();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(server.serve(listener, router, async move {
        let _ = rx.await;
    }));
    TestHub {
        addr,
        hub,
        shutdown: Some(tx),
        task: Some(task),
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// `GET path` with an optional bearer token: status, content type, body.
pub async fn get(hub: &TestHub, path: &str, bearer: Option<&str>) -> (u16, String, String) {
    let mut req = client().get(hub.url(path));
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let ctype = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, res.text().await.unwrap())
}

/// POSTs a form to the hub with a publisher token.
pub async fn publish(hub: &TestHub, form: &[(&str, &str)]) -> reqwest::Response {
    client()
        .post(hub.hub_url())
        .bearer_auth(publisher())
        .form(form)
        .send()
        .await
        .unwrap()
}

/// An open SSE response and a parser over it.
pub struct Events {
    pub response: reqwest::Response,
    stream:
        std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    parser: Parser,
}

impl Events {
    pub async fn open(request: reqwest::RequestBuilder) -> Events {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "subscribe failed");
        // Keep the head for assertions; stream the body separately.
        let (head, stream) = split(response);
        Events {
            response: head,
            stream,
            parser: Parser::new(),
        }
    }

    /// The next frame, or `None` when the stream ended; fails the test after 5 s.
    pub async fn frame(&mut self) -> Option<Frame> {
        tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                if let Some(f) = self.parser.next_frame() {
                    return Some(f);
                }
                match self.stream.next().await {
                    Some(Ok(b)) => self.parser.feed(&b),
                    Some(Err(e)) => panic!("stream error: {e} ({e:?})"),
                    None => return None,
                }
            }
        })
        .await
        .expect("no frame within 5 s")
    }

    /// The next dispatched message event (skips comments and retry).
    pub async fn event(&mut self) -> MessageEvent {
        loop {
            match self.frame().await {
                Some(Frame::Event(e)) => return e,
                Some(_) => continue,
                None => panic!("stream ended"),
            }
        }
    }
}

fn split(
    response: reqwest::Response,
) -> (
    reqwest::Response,
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
) {
    let mut head = http::Response::builder()
        .status(response.status())
        .version(response.version());
    for (k, v) in response.headers() {
        head = head.header(k, v);
    }
    let head: reqwest::Response = head.body(Vec::<u8>::new()).unwrap().into();
    (head, Box::pin(response.bytes_stream()))
}

/// Where `needle` first occurs in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Reads from `sock` into `buf` until `pred(buf)` holds; fails on EOF or after 5 s.
pub async fn read_until(sock: &mut TcpStream, buf: &mut Vec<u8>, pred: impl Fn(&[u8]) -> bool) {
    tokio::time::timeout(Duration::from_secs(5), async {
        while !pred(buf) {
            let mut chunk = [0u8; 4096];
            let n = sock.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "connection closed early; got {:?}",
                String::from_utf8_lossy(buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        }
    })
    .await
    .expect("timed out reading");
}
