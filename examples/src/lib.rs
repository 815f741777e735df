//! What the four example apps share: command-line arguments, a small HTTP server loop with
//! graceful shutdown and a "restart the listener" signal, the common stylesheet, and helpers to
//! answer with embedded pages.
//!
//! Each binary (`voting`, `counter`, `nests`, `join`) rebuilds one SSE tutorial on the ssehub
//! library: it owns a [`Hub`], publishes to it from its handlers, and answers `EventSource`
//! requests with [`ssehub_server::Sse`]. Everything else here is plumbing the tutorials did by
//! hand (or not at all).
//!
//! # Signals
//!
//! - `SIGINT` / `SIGTERM`: close the hub (every stream ends cleanly, so browsers reconnect
//!   elsewhere), give queued bytes a moment to flush, exit.
//! - `SIGHUP`: restart the HTTP listener. Every connection is cut and the port is closed for a
//!   moment, then listened on again, while the hub and its history live on in the process. It
//!   shows (and the browser tests check) what a browser does when its stream drops: it waits for
//!   the `retry:` advice, reconnects with `Last-Event-ID`, and the hub replays what it missed.
//!
//! # State across restarts
//!
//! `voting` and `nests` keep their state across a full process restart: their hub is durable
//! (see `ssehub_hub`, "Durable storage"), every vote or nest is acknowledged only once it is on
//! disk, and on start they read their state back from the log ([`StateArgs`], [`open_log`],
//! [`stored_data`]). `--data-dir` picks the directory (default `./ssehub-data/<example>`),
//! `--memory` opts out. `counter` and `join` stay RAM-only: a restart empties their history, so
//! a browser that reconnects after one gets the hub's history-gap notice (join) or simply the
//! next tick (counter); each says why in its docs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use clap::{CommandFactory as _, FromArgMatches as _, Parser};
use hyper_util::rt::TokioIo;
use ssehub_codec::Frame;
use ssehub_hub::{Hub, SubscribeError};
use ssehub_server::ApiError;
use ssehub_store::{Log, LogOptions, StoredRecord};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

/// The stylesheet every example page links as `/style.css`.
pub const STYLE_CSS: &str = include_str!("../web/style.css");

/// How long the port stays closed on `SIGHUP`: long enough for browsers to see the drop, short
/// enough that they find the server back on their first retry.
const RESTART_PAUSE: Duration = Duration::from_millis(300);

/// How long shutdown waits for streams to flush their last bytes before cutting connections.
const DRAIN_TIMEOUT: Duration = Duration::from_millis(500);

/// The command line of the RAM-only examples (`counter`, `join`).
#[derive(Debug, Parser)]
pub struct Args {
    /// Address to listen on, e.g. `127.0.0.1:3001` (port 0 picks a free port; the URL printed at
    /// startup has the real one).
    #[arg(long)]
    pub addr: Option<SocketAddr>,
}

impl Args {
    /// Parses the command line; `default` is the example's usual address.
    pub fn parse_with_default(default: SocketAddr) -> SocketAddr {
        Args::parse().addr.unwrap_or(default)
    }
}

/// The command line of the examples that keep their state across restarts (`voting`, `nests`).
#[derive(Debug, Parser)]
#[command(about = "An ssehub example app that keeps its state across restarts")]
pub struct StateArgs {
    /// Address to listen on, e.g. `127.0.0.1:3001` (port 0 picks a free port; the URL printed at
    /// startup has the real one).
    #[arg(long)]
    pub addr: Option<SocketAddr>,

    /// Directory of the durable log that keeps the state across restarts (created when
    /// missing). One process at a time: a second one is refused while the first holds it.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Keep the state in memory only: a restart starts from nothing.
    #[arg(long, conflicts_with = "data_dir")]
    pub memory: bool,
}

impl StateArgs {
    /// Parses the command line; `addr` is the example's usual address and `data_dir` its usual
    /// directory (shown by `--help`).
    pub fn parse_with_defaults(addr: SocketAddr, data_dir: &'static str) -> (SocketAddr, Storage) {
        let command = StateArgs::command().mut_arg("data_dir", |a| a.default_value(data_dir));
        let args = StateArgs::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit());
        let storage = if args.memory {
            Storage::Memory
        } else {
            Storage::Durable(args.data_dir.unwrap_or_else(|| data_dir.into()))
        };
        (args.addr.unwrap_or(addr), storage)
    }
}

/// Where an example keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In the hub's memory only (`--memory`).
    Memory,
    /// In a durable log in this directory (`--data-dir`).
    Durable(PathBuf),
}

/// Opens (or creates) the durable log in `dir`, with the safe default: a publish is
/// acknowledged only after an fsync.
pub fn open_log(dir: &Path) -> anyhow::Result<Log> {
    // Blocking file work, but once at startup before anything is served.
    Log::open(dir, LogOptions::default())
        .with_context(|| format!("cannot open the data directory {}", dir.display()))
}

/// The data of the update a stored record holds (the log keeps the encoded frame as the hub
/// sent it, `id:` line included), or `None` when the frame holds no event.
pub fn stored_data(record: &StoredRecord) -> Option<String> {
    ssehub_codec::parse_all(&record.record.frame)
        .into_iter()
        .find_map(|frame| match frame {
            Frame::Event(event) => Some(event.data),
            _ => None,
        })
}

/// Runs `work` on its own task and waits for it. A request handler's future is dropped when
/// its client goes away; a read-modify-publish sequence must not stop half way (published and
/// durable, but not applied to the app's state), so it runs where nothing can cancel it.
pub async fn uncancellable<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work).await.map_err(|e| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the server is stopping ({e})"),
        )
    })
}

/// An embedded HTML page.
pub fn html(page: &'static str) -> Response {
    asset(page, "text/html; charset=utf-8")
}

/// An embedded asset with its content type. `no-cache` so an edited example is never shown
/// stale after a rebuild (these are tiny files).
pub fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut res = body.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    res
}

/// Routes shared by every example: `/style.css` and `/healthz` (the tests wait on it).
pub fn common_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route(
            "/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route("/healthz", get(|| async { "ok\n" }))
}

/// Maps a refused subscription to an HTTP answer: `503` when the hub is full or closing (try
/// again later), `400` for anything about the request itself.
pub fn subscribe_error(e: SubscribeError) -> ApiError {
    match e {
        SubscribeError::TooManySubscribers { .. } | SubscribeError::Closed => {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        }
        _ => ApiError::bad_request(e.to_string()),
    }
}

/// Serves `app` on `addr` until `SIGINT`/`SIGTERM`, restarting the listener on `SIGHUP` (see the
/// crate docs). Prints `banner(url)` once listening, so a script can read the real port.
pub async fn serve(
    app: Router,
    hub: Hub,
    addr: SocketAddr,
    banner: impl FnOnce(&str) -> String,
) -> anyhow::Result<()> {
    let mut listener =
        ssehub_server::bind(addr).with_context(|| format!("cannot listen on {addr}"))?;
    // Rebind the port actually chosen, so a restart with `--addr ...:0` comes back on it.
    let local = listener.local_addr()?;
    println!("{}", banner(&format!("http://{local}")));

    let mut hangup = signal(Sig::Hangup)?;
    let mut terminate = signal(Sig::Terminate)?;
    let mut conns = JoinSet::new();
    enum Next {
        Conn(std::io::Result<tokio::net::TcpStream>),
        Restart,
        Stop,
        Reaped,
    }
    loop {
        let next = tokio::select! {
            res = listener.accept() => Next::Conn(res.map(|(tcp, _)| tcp)),
            _ = hangup.recv() => Next::Restart,
            _ = terminate.recv() => Next::Stop,
            _ = tokio::signal::ctrl_c() => Next::Stop,
            Some(_) = conns.join_next(), if !conns.is_empty() => Next::Reaped,
        };
        match next {
            Next::Conn(Ok(tcp)) => {
                // Events are small and latency matters more than packet count.
                let _ = tcp.set_nodelay(true);
                conns.spawn(serve_connection(app.clone(), tcp));
            }
            Next::Conn(Err(e)) => {
                // Usually out of file descriptors: back off instead of spinning.
                eprintln!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Next::Restart => {
                eprintln!(
                    "SIGHUP: cutting every connection and reopening the port; the hub keeps its history"
                );
                drop(listener);
                conns.abort_all();
                while conns.join_next().await.is_some() {}
                tokio::time::sleep(RESTART_PAUSE).await;
                listener = rebind(local).await?;
            }
            Next::Reaped => {}
            Next::Stop => break,
        }
    }
    drop(listener);
    // Ending every stream from the hub lets each one send what is queued and the chunked
    // terminator, so browsers see a clean end and reconnect.
    hub.close();
    let drain = async { while conns.join_next().await.is_some() {} };
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, drain).await;
    conns.shutdown().await;
    eprintln!("stopped");
    Ok(())
}

/// One HTTP/1.1 connection. A hand-written loop rather than `axum::serve` because `SIGHUP` must
/// be able to cut live connections, which `axum::serve` only lets drain.
async fn serve_connection(app: Router, tcp: tokio::net::TcpStream) {
    let service = hyper::service::service_fn(move |req| app.clone().oneshot(req));
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service);
    // A client that goes away mid-request is normal for SSE; nothing to report.
    let _: Result<(), hyper::Error> = conn.await;
}

/// The port may linger for a moment after the old listener closes; retry briefly.
async fn rebind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    let mut last = None;
    for _ in 0..50 {
        match ssehub_server::bind(addr) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last.map_or_else(|| anyhow::anyhow!("cannot rebind"), anyhow::Error::from))
        .with_context(|| format!("cannot listen on {addr} again"))
}

enum Sig {
    Hangup,
    Terminate,
}

/// A stream of one Unix signal; on other platforms a stream that never fires (Ctrl-C still
/// works there through `tokio::signal::ctrl_c`).
fn signal(sig: Sig) -> anyhow::Result<SignalStream> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let kind = match sig {
            Sig::Hangup => SignalKind::hangup(),
            Sig::Terminate => SignalKind::terminate(),
        };
        Ok(SignalStream(
            signal(kind).context("cannot install a signal handler")?,
        ))
    }
    #[cfg(not(unix))]
    {
        let _ = sig;
        Ok(SignalStream(()))
    }
}

struct SignalStream(
    #[cfg(unix)] tokio::signal::unix::Signal,
    #[cfg(not(unix))] (),
);

impl SignalStream {
    async fn recv(&mut self) -> Option<()> {
        #[cfg(unix)]
        {
            self.0.recv().await
        }
        #[cfg(not(unix))]
        {
            std::future::pending::<Option<()>>().await
        }
    }
}
