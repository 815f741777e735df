//! Alligator nests (tutorial 002), on the ssehub library.
//!
//! - `POST /nest` stores a nest (`{"momma": "...", "eggs": 40, "temperature": 31}` as JSON or
//!   form-urlencoded), publishes it to every subscriber and answers it back (`201`).
//! - `GET /events` sends the current list first (one event, a JSON array), then each new nest
//!   (one event each, a JSON object).
//! - `GET /status` answers `{"clients": N}`, the live subscriber count from the hub's presence.
//! - CORS is open to any origin, so a front end served elsewhere can use the API.
//! - `/` is a live table of the nests, in plain JS.
//!
//! Better than the tutorial: input is validated with a clear `4xx` reason, the list is bounded
//! (1,000 nests, then `507`), a snapshot taken for a new subscriber can neither miss nor repeat
//! a nest added at the same moment, and the list survives a restart.
//!
//! The list is a `LiveState` list on the `nests` topic: each nest is one update, published and
//! then added once it is on disk, so the list in memory is the one in the log, and a nest the
//! store refused (`503`) is not added. On start the list is rebuilt by replaying the topic from
//! the durable log (`--data-dir`, default `./ssehub-data/nests`; never trimmed, which costs
//! little since the list is bounded); `--memory` keeps it in RAM only.
//!
//! Run: `cargo run -p ssehub-examples --bin nests -- --addr 127.0.0.1:3003`

use std::{net::SocketAddr, path::PathBuf};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header::CONTENT_TYPE};
use axum::routing::{get, post};
use axum::{Json, Router, body::Bytes, response::Html};
use serde::{Deserialize, Serialize};
use ssehub_server::{ApiError, Hub, LiveState, Sse, bind, serve};
use ssehub_store::{DurableHub, Log, LogOptions};

const CSS: &str = include_str!("../../../web/style.css");
const INVALID: &str = "momma must have 1 to 100 characters, and temperature be a number";
const KINDS: &str = "send the nest as application/json or application/x-www-form-urlencoded";
const FULL: &str = "the swamp is full (1000 nests)";
type Nests = LiveState<Vec<Nest>, Nest>;
type Added = Result<(StatusCode, Json<Nest>), ApiError>;

#[derive(clap::Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:3003")]
    addr: SocketAddr,
    /// Directory of the durable log that keeps the list (created when missing).
    #[arg(long, default_value = "./ssehub-data/nests")]
    data_dir: PathBuf,
    /// Keep the list in memory only: a restart empties it.
    #[arg(long, conflicts_with = "data_dir")]
    memory: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct Nest {
    momma: String,
    eggs: u32,
    temperature: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let mut hub = Hub::builder();
    if !args.memory {
        hub = hub.durable(Log::open(&args.data_dir, LogOptions::default())?);
    }
    let hub = hub.try_build()?;
    let nests = Nests::list(&hub, "nests").await?;
    eprintln!("nests: ({} nests so far)", nests.read(Vec::len).await);
    let app = Router::new()
        .route("/", get(Html(include_str!("index.html"))))
        .route("/style.css", get(([(CONTENT_TYPE, "text/css")], CSS)))
        .route("/healthz", get("ok"))
        .route("/nest", post(add).layer(DefaultBodyLimit::max(16 * 1024)))
        .route("/events", get(events))
        .route("/status", get(status))
        .with_state(nests)
        .layer(tower_http::cors::CorsLayer::permissive());
    let listener = bind(args.addr)?;
    println!("nests: open http://{}/", listener.local_addr()?);
    Ok(serve(listener, app, hub).reconnect_on_hangup().await?)
}

/// `POST /nest`: JSON or form-urlencoded, told apart by `Content-Type`.
async fn add(State(nests): State<Nests>, headers: HeaderMap, body: Bytes) -> Added {
    let kind = headers.get(CONTENT_TYPE).map_or(&b""[..], |v| v.as_bytes());
    let mut nest: Nest = if kind.starts_with(b"application/json") {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON nest: {e}")))?
    } else if kind.starts_with(b"application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid form nest: {e}")))?
    } else {
        return Err(ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, KINDS));
    };
    nest.momma = nest.momma.trim().to_owned();
    if nest.momma.is_empty() || nest.momma.chars().count() > 100 || !nest.temperature.is_finite() {
        return Err(ApiError::bad_request(INVALID));
    }
    let added = nests.update(move |list| match list.len() {
        0..1000 => Ok(nest),
        _ => Err(ApiError::new(StatusCode::INSUFFICIENT_STORAGE, FULL)),
    });
    Ok((StatusCode::CREATED, Json(added.await?)))
}

/// `GET /events`: the whole list as one event, then each new nest.
async fn events(State(nests): State<Nests>) -> Result<Sse, ApiError> {
    Ok(Sse::new(nests.subscribe().await?))
}

/// `GET /status`: how many clients are subscribed to the nests now.
async fn status(State(nests): State<Nests>) -> Json<serde_json::Value> {
    Json(serde_json::json!({ "clients": nests.subscribers() }))
}
