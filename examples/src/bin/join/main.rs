//! Join events with client ids and `Last-Event-ID` replay (tutorial 003), on the ssehub library.
//!
//! - `GET /events`: every connection gets a short random client id. It is told its id in a
//!   `welcome` event (on its own topic `clients/{id}`), and a `join` event with the id goes to
//!   everyone (topic `room`); a `leave` event follows when it goes away.
//! - `POST /say` (`from`, `text`, form-urlencoded) publishes a `chat` event to everyone.
//! - Every event carries an `id` (assigned by the hub), so after a reconnect the browser's
//!   `Last-Event-ID` header brings exactly the events it missed, in order, none twice. The page
//!   listens to the custom types with `addEventListener`.
//!
//! Join and leave come from the hub's presence hooks, so they are published however a
//! subscription starts or ends (page closed, network cut, server restart).
//!
//! Send `SIGHUP` to cut every connection while the hub (and its history) lives on, and watch
//! the page replay what it missed; see the crate docs.
//!
//! RAM-only, on purpose: join and leave are published from the presence hooks, which run
//! synchronously and so use [`Hub::publish_now`], and a durable hub refuses that
//! (`PublishError::NeedsAwait`: it cannot acknowledge an update before its fsync). The events
//! are also about this run's connections, whose client ids mean nothing after a restart. So a
//! full restart empties the history: a page that reconnects with a `Last-Event-ID` from the
//! old process gets the hub's `ssehub.history-gap` notice (the id is unknown to the new one),
//! then the new events. (`voting` and `nests` show state that survives a restart.)
//!
//! Run: `cargo run -p ssehub-examples --bin join -- --addr 127.0.0.1:3004`

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;
use ssehub_examples::{Args, common_routes, html, serve, subscribe_error};
use ssehub_hub::{Hub, PresenceEvent, Subscription, Update};
use ssehub_server::{ApiError, Sse, preamble};

const ROOM: &str = "room";
const RETRY: Duration = Duration::from_secs(3);
const MAX_TEXT_CHARS: usize = 500;
const MAX_NAME_CHARS: usize = 32;
/// A client id's length: 8 base-36 characters, about 2.8e12 values.
const ID_LEN: u32 = 8;

#[derive(Debug, Deserialize)]
struct EventsQuery {
    /// The tutorial's clients can pass the last id in the URL (`EventSource` cannot set headers
    /// on its first request); the header, set by the browser on reconnect, wins.
    #[serde(rename = "lastEventID")]
    last_event_id: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SayForm {
    from: String,
    text: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = Args::parse_with_default(SocketAddr::from(([127, 0, 0, 1], 3004)));
    // The hooks publish into the hub they belong to, which only exists once built. The cell
    // makes a reference cycle (hub -> hooks -> hub); the hub lives as long as the process.
    let cell: Arc<OnceLock<Hub>> = Arc::new(OnceLock::new());
    let (on_join, on_leave) = (cell.clone(), cell.clone());
    let hub = Hub::builder()
        .on_join(move |ev| announce(&on_join, "join", ev))
        .on_leave(move |ev| announce(&on_leave, "leave", ev))
        .build();
    let _ = cell.set(hub.clone());

    let router = Router::new()
        .route("/", get(|| async { html(include_str!("index.html")) }))
        .route("/events", get(events))
        .route("/say", post(say))
        .merge(common_routes())
        .with_state(hub.clone());
    serve(router, hub, addr, |url| {
        format!("join: open {url}/ in two tabs (stream at {url}/events)")
    })
    .await
}

/// Publishes a `join` or `leave` event for the client id in the subscriber's payload.
fn announce(cell: &OnceLock<Hub>, kind: &str, ev: &PresenceEvent) {
    let Some(hub) = cell.get() else { return };
    let Some(client) = ev
        .payload
        .as_ref()
        .and_then(|p| p.get("client"))
        .and_then(|c| c.as_str())
    else {
        return;
    };
    let data = json!({ "client": client, "online": ev.total }).to_string();
    // Fails only when the hub is closing, and then nobody is left to tell.
    let _ = hub.publish_now(Update::new(ROOM, data).event_type(kind));
}

/// A short random id, as the tutorial's `nanoid(10)` but without a dependency.
fn client_id() -> String {
    let mut n = rand::random::<u64>() % 36u64.pow(ID_LEN);
    let mut id = String::with_capacity(ID_LEN as usize);
    for _ in 0..ID_LEN {
        let digit = (n % 36) as u32;
        id.push(char::from_digit(digit, 36).unwrap_or('0'));
        n /= 36;
    }
    id
}

/// `GET /events`: welcome, the replay a `Last-Event-ID` asks for, then live room events.
async fn events(
    State(hub): State<Hub>,
    Query(query): Query<EventsQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let mut last_event_id = query.last_event_id.filter(|id| !id.is_empty());
    if let Some(header) = headers.get("last-event-id") {
        let id = header
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID header is not visible ASCII"))?;
        if !id.is_empty() {
            last_event_id = Some(id.to_owned());
        }
    }
    let client = client_id();
    let own_topic = format!("clients/{client}");
    let bad = |e: ssehub_hub::SelectorError| ApiError::bad_request(e.to_string());
    let mut sub = Subscription::new()
        .topic(ROOM)
        .map_err(bad)?
        .topic(&own_topic)
        .map_err(bad)?
        .payload(json!({ "client": client }))
        .preamble(preamble(RETRY));
    if let Some(id) = last_event_id {
        sub = sub.last_event_id(id);
    }
    // Subscribing runs the join hook, which tells the room (this client included).
    let stream = hub.subscribe(sub).map_err(subscribe_error)?;
    hub.publish(Update::new(own_topic, json!({ "you": client }).to_string()).event_type("welcome"))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Sse::new(stream).into_response())
}

/// `POST /say`: a `chat` event to everyone.
async fn say(State(hub): State<Hub>, Form(form): Form<SayForm>) -> Result<Response, ApiError> {
    let text = form.text.trim();
    if text.is_empty() {
        return Err(ApiError::bad_request("text must not be empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ApiError::bad_request(format!(
            "text is too long (at most {MAX_TEXT_CHARS} characters)"
        )));
    }
    if form.from.chars().count() > MAX_NAME_CHARS {
        return Err(ApiError::bad_request(format!(
            "from is too long (at most {MAX_NAME_CHARS} characters)"
        )));
    }
    let data = json!({ "from": form.from, "text": text }).to_string();
    let id = hub
        .publish(Update::new(ROOM, data).event_type("chat"))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(id.into_response())
}
