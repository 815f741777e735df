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
//! and a snapshot taken for a new subscriber can neither miss nor repeat a nest added at the same
//! moment.
//!
//! Run: `cargo run -p ssehub-examples --bin nests -- --addr 127.0.0.1:3003`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use ssehub_codec::Event;
use ssehub_examples::{Args, common_routes, html, serve, subscribe_error};
use ssehub_hub::{Hub, Subscription, Update};
use ssehub_server::{ApiError, Sse};
use tokio::sync::Mutex;
use tower_http::cors::{Any, CorsLayer};

const TOPIC: &str = "nests";
const RETRY: Duration = Duration::from_secs(3);
/// Most nests kept: the whole list is sent to every new subscriber, so it must stay small.
const MAX_NESTS: usize = 1000;
const MAX_MOMMA_CHARS: usize = 100;
const MAX_BODY: usize = 16 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Serialize)]
struct Status {
    clients: usize,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = Args::parse_with_default(SocketAddr::from(([127, 0, 0, 1], 3003)));
    let hub = Hub::new();
    let app = Arc::new(App {
        hub: hub.clone(),
        nests: Mutex::new(Vec::new()),
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
    let data = serde_json::to_string(&nest).map_err(|e| ApiError::bad_request(e.to_string()))?;

    let mut nests = app.nests.lock().await;
    if nests.len() >= MAX_NESTS {
        return Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            format!("the swamp is full ({MAX_NESTS} nests)"),
        ));
    }
    app.hub
        .publish(Update::new(TOPIC, data))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    nests.push(nest.clone());
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
