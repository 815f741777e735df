//! Alligator nests (tutorial 002), on the ssehub library.
//!
//! - `POST /nest` stores a nest (`{"momma": "...", "eggs": 40, "temperature": 31}` as JSON or
//!   form-urlencoded), publishes it to every subscriber and answers it back.
//! - `GET /events` sends the current list first (one event, a JSON array), then each new nest
//!   (one event each, a JSON object).
//! - `GET /status` answers `{"clients": N}`, the live subscriber count from the hub's presence.
//! - CORS is open to any origin, so a front end served elsewhere can use the API.
//! - `/` is a live table of the nests, in plain JS.
//!
//! Better than the tutorial: input is validated with a clear `4xx` reason, the list is bounded,
//! a snapshot taken for a new subscriber can neither miss nor repeat a nest added at the same
//! moment, and the list survives a restart.
//!
//! # The list across restarts
//!
//! The hub is durable: its log lives in `--data-dir` (default `./ssehub-data/nests`; `--memory`
//! keeps everything in RAM, and a restart starts with an empty swamp). Each nest is one update
//! on `nests`, so the log *is* the list, in the order the nests were added: on start the
//! example replays the topic from the log ([`Log::read_from`], a page at a time) and rebuilds
//! it. The latest-per-topic index would only give the newest nest, so it is no help here; and
//! the log is never trimmed, which costs little because the list is bounded ([`MAX_NESTS`]
//! updates at most, since a nest past the bound is refused before it is published).
//!
//! A nest is added under one lock: published, and only once the publish returns (the nest is
//! on disk and delivered) pushed onto the in-memory list and answered `201`. So the list in
//! memory is always the one on disk, a nest the store refused (`503`, e.g. a full disk) is not
//! added, and the bound holds on disk too. The sequence runs on its own task, so a client that
//! goes away mid-request cannot leave it half done.
//!
//! Run: `cargo run -p ssehub-examples --bin nests -- --addr 127.0.0.1:3003`
//! (add `--data-dir DIR` or `--memory`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use ssehub_codec::Event;
use ssehub_examples::{
    StateArgs, Storage, common_routes, html, open_log, serve, stored_data, subscribe_error,
    uncancellable,
};
use ssehub_hub::{Hub, Subscription, Update};
use ssehub_server::{ApiError, Sse};
use ssehub_store::{DurableHub, Log};
use tokio::sync::Mutex;
use tower_http::cors::{Any, CorsLayer};

const TOPIC: &str = "nests";
const RETRY: Duration = Duration::from_secs(3);
/// Most nests kept: the whole list is sent to every new subscriber (and replayed from the log on
/// start), so it must stay small.
const MAX_NESTS: usize = 1000;
const MAX_MOMMA_CHARS: usize = 100;
const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Nest {
    momma: String,
    eggs: u32,
    temperature: f64,
}

impl Nest {
    fn validate(&self) -> Result<(), ApiError> {
        let momma = self.momma.trim();
        if momma.is_empty() {
            return Err(ApiError::bad_request("momma must not be empty"));
        }
        if momma.chars().count() > MAX_MOMMA_CHARS {
            return Err(ApiError::bad_request(format!(
                "momma is too long (at most {MAX_MOMMA_CHARS} characters)"
            )));
        }
        if !self.temperature.is_finite() {
            return Err(ApiError::bad_request("temperature must be a finite number"));
        }
        Ok(())
    }
}

#[derive(Debug)]
struct App {
    hub: Hub,
    /// All nests. Adding one and snapshotting the list for a new subscriber both happen under
    /// this lock, so each nest is either in a subscriber's snapshot or in its live updates,
    /// never both, never neither.
    nests: Mutex<Vec<Nest>>,
}

impl App {
    /// Adds a nest: publishes it, waits until it is durable (and delivered), then keeps it.
    async fn add(&self, nest: Nest) -> Result<(), ApiError> {
        let data =
            serde_json::to_string(&nest).map_err(|e| ApiError::bad_request(e.to_string()))?;
        let mut nests = self.nests.lock().await;
        if nests.len() >= MAX_NESTS {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!("the swamp is full ({MAX_NESTS} nests)"),
            ));
        }
        self.hub
            .publish(Update::new(TOPIC, data))
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        nests.push(nest);
        Ok(())
    }
}

#[derive(Debug, Serialize)]
struct Status {
    clients: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (addr, storage) = StateArgs::parse_with_defaults(
        SocketAddr::from(([127, 0, 0, 1], 3003)),
        "./ssehub-data/nests",
    );
    let (hub, nests) = match &storage {
        Storage::Memory => {
            eprintln!("nests: the list is in memory only (--memory): a restart empties it");
            (Hub::new(), Vec::new())
        }
        Storage::Durable(dir) => {
            let log = open_log(dir)?;
            let nests = restore(&log)?;
            eprintln!(
                "nests: the list is kept in {} ({} nests so far)",
                dir.display(),
                nests.len()
            );
            let hub = Hub::builder()
                .durable(log)
                .try_build()
                .context("cannot start the durable log")?;
            (hub, nests)
        }
    };
    let app = Arc::new(App {
        hub: hub.clone(),
        nests: Mutex::new(nests),
    });
    let cors = CorsLayer::new()
        .allow_origin(Any)
        .allow_methods(Any)
        .allow_headers(Any);
    let router = Router::new()
        .route("/", get(|| async { html(include_str!("index.html")) }))
        .route(
            "/nest",
            post(add_nest).layer(DefaultBodyLimit::max(MAX_BODY)),
        )
        .route("/events", get(events))
        .route("/status", get(status))
        .merge(common_routes())
        .with_state(app)
        .layer(cors);
    serve(router, hub, addr, |url| {
        format!("nests: open {url}/ (POST {url}/nest, GET {url}/events, GET {url}/status)")
    })
    .await
}

/// The list, replayed from the log: every update on `nests`, oldest first.
fn restore(log: &Log) -> anyhow::Result<Vec<Nest>> {
    const PAGE: usize = 256;
    let mut nests = Vec::new();
    let mut from = log.first_seq();
    loop {
        let page = log.read_from(from, PAGE).context("cannot read the log")?;
        let Some(last) = page.last() else {
            return Ok(nests);
        };
        from = last.seq + 1;
        for record in page
            .iter()
            .filter(|r| r.record.topics.iter().any(|t| t == TOPIC))
        {
            let seq = record.seq;
            let data = stored_data(record)
                .with_context(|| format!("update {seq} on {TOPIC:?} holds no event"))?;
            let nest = serde_json::from_str(&data)
                .with_context(|| format!("update {seq} on {TOPIC:?} is not a nest: {data}"))?;
            nests.push(nest);
        }
    }
}

/// `POST /nest`: JSON or form-urlencoded, told apart by `Content-Type`.
async fn add_nest(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .unwrap_or_default();
    let nest: Nest = match content_type.as_str() {
        "application/json" => serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON nest: {e}")))?,
        "application/x-www-form-urlencoded" => serde_urlencoded::from_bytes(&body)
            .map_err(|e| ApiError::bad_request(format!("invalid form nest: {e}")))?,
        _ => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the nest as application/json or application/x-www-form-urlencoded",
            ));
        }
    };
    nest.validate()?;
    let nest = Nest {
        momma: nest.momma.trim().to_owned(),
        ..nest
    };
    let added = nest.clone();
    uncancellable(async move { app.add(added).await }).await??;
    Ok((StatusCode::CREATED, Json(nest)).into_response())
}

/// `GET /events`: the whole list as one event, then each new nest.
///
/// A reconnecting browser's `Last-Event-ID` is not used: the list it gets first already holds
/// everything, and the page replaces its table with it.
async fn events(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let nests = app.nests.lock().await;
    let list = serde_json::to_string(&*nests).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let first = Event::new().retry(RETRY).data(list).encode();
    let sub = Subscription::new()
        .topic(TOPIC)
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .preamble(first);
    let stream = app.hub.subscribe(sub).map_err(subscribe_error)?;
    drop(nests);
    Ok(Sse::new(stream).into_response())
}

/// `GET /status`: how many clients are subscribed to the nests now.
async fn status(State(app): State<Arc<App>>) -> Json<Status> {
    Json(Status {
        clients: app.hub.topic_subscribers(TOPIC),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ssehub_store::{LogOptions, Record};

    use super::*;

    /// Reopens the log once the dropped hub's writer has let go of the file.
    async fn reopen(dir: &Path) -> Log {
        for _ in 0..100 {
            if let Ok(log) = Log::open(dir, LogOptions::default()) {
                return log;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the log in {} was not released", dir.display());
    }

    fn nest(momma: &str, eggs: u32) -> Nest {
        Nest {
            momma: momma.into(),
            eggs,
            temperature: 30.5,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_list_survives_a_restart_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path()).unwrap();
        assert_eq!(restore(&log).unwrap(), Vec::new());
        // Another topic in the same log (a data directory shared by mistake) is skipped.
        log.append(Record::new(vec!["votes".into()], "data: {}\n\n"))
            .unwrap();
        let app = App {
            hub: Hub::builder().durable(log.clone()).try_build().unwrap(),
            nests: Mutex::new(Vec::new()),
        };
        // More than one page of the replay.
        let added: Vec<Nest> = (0..300).map(|i| nest(&format!("momma-{i}"), i)).collect();
        for n in &added {
            app.add(n.clone()).await.unwrap();
        }
        assert_eq!(*app.nests.lock().await, added);

        app.hub.close();
        drop((app, log));
        let log = reopen(dir.path()).await;
        assert_eq!(restore(&log).unwrap(), added);
    }

    #[test]
    fn an_update_that_is_not_a_nest_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path()).unwrap();
        log.append(Record::new(vec![TOPIC.into()], "id: 1\ndata: [1, 2]\n\n"))
            .unwrap();
        let err = format!("{:#}", restore(&log).unwrap_err());
        assert!(
            err.contains("update 1 on \"nests\" is not a nest: [1, 2]"),
            "{err}"
        );
    }
}
