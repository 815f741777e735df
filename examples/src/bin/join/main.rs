//! Join events with client ids and `Last-Event-ID` replay (tutorial 003), on the ssehub library.
//!
//! - `GET /events`: every connection gets a short random client id. It is told its id in a
//!   `welcome` event (on its own topic `clients/{id}`), and a `join` event with the id goes to
//!   everyone (topic `room`); a `leave` event follows when it goes away.
//! - `POST /say` (`from`, `text`, form-urlencoded) publishes a `chat` event to everyone.
//! - Every event carries an `id` (assigned by the hub), so after a reconnect the browser's
//!   `Last-Event-ID` header (or `?lastEventID=` on a first request) brings exactly the events it
//!   missed, in order, none twice: the [`LastEventId`] extractor and `Subscription::resume`.
//!
//! Join and leave are the hub's presence announcements (`HubBuilder::announce_presence`), so
//! they are published however a subscription starts or ends (page closed, network cut, server
//! restart). `SIGHUP` ends every stream while the hub and its history live on, to watch the page
//! replay what it missed.
//!
//! RAM-only, on purpose: the events are about this run's connections, whose client ids mean
//! nothing after a restart. So a full restart empties the history: a page that reconnects with a
//! `Last-Event-ID` from the old process gets the hub's `ssehub.history-gap` notice (the id is
//! unknown to the new one), then the new events. (`voting` and `nests` keep state across
//! restarts.)
//!
//! Run: `cargo run -p ssehub-examples --bin join -- --addr 127.0.0.1:3004`

use std::{net::SocketAddr, time::Duration};

use axum::routing::{get, post};
use axum::{Form, Router, extract::State, http::header::CONTENT_TYPE, response::Html};
use serde::Deserialize;
use serde_json::json;
use ssehub_server::hub::PresenceEvent;
use ssehub_server::{ApiError, Hub, LastEventId, Sse, Subscription, Update, bind, serve};

const CSS: &str = include_str!("../../../web/style.css");
const ROOM: &str = "room";
const LIMITS: &str = "text must have 1 to 500 characters, and from at most 32";

#[derive(clap::Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:3004")]
    addr: SocketAddr,
}

#[derive(Deserialize)]
struct Say {
    from: String,
    text: String,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let hub = Hub::builder()
        .retry(Duration::from_secs(3))
        .announce_presence(presence);
    let hub = hub.build();
    let app = Router::new()
        .route("/", get(Html(include_str!("index.html"))))
        .route("/style.css", get(([(CONTENT_TYPE, "text/css")], CSS)))
        .route("/healthz", get("ok"))
        .route("/events", get(events))
        .route("/say", post(say))
        .with_state(hub.clone());
    let listener = bind(<Args as clap::Parser>::parse().addr)?;
    println!("join: open http://{}/ in two tabs", listener.local_addr()?);
    serve(listener, app, hub).reconnect_on_hangup().await
}

/// A `join` or `leave` event for the client id in the subscriber's payload.
fn presence(ev: &PresenceEvent) -> Option<Update> {
    let client = ev.payload.as_ref()?.get("client")?;
    let update = Update::json(ROOM, &json!({ "client": client, "online": ev.total }));
    Some(update.ok()?.event_type(ev.kind.as_str()))
}

/// `GET /events`: a new client id, the replay a `Last-Event-ID` asks for, then live events.
async fn events(State(hub): State<Hub>, last: LastEventId) -> Result<Sse, ApiError> {
    let client = format!("{:08x}", rand::random::<u32>());
    let own = format!("clients/{client}");
    let sub = Subscription::to(ROOM).exact(&own).resume(last);
    let stream = hub.subscribe(sub.payload(json!({ "client": client })))?;
    let welcome = Update::json(own, &json!({ "you": client }))?;
    hub.publish(welcome.event_type("welcome")).await?;
    Ok(Sse::new(stream))
}

/// `POST /say`: a `chat` event to everyone; answers its id.
async fn say(State(hub): State<Hub>, Form(say): Form<Say>) -> Result<String, ApiError> {
    let text = say.text.trim();
    if text.is_empty() || text.chars().count() > 500 || say.from.chars().count() > 32 {
        return Err(ApiError::bad_request(LIMITS));
    }
    let chat = Update::json(ROOM, &json!({ "from": say.from, "text": text }))?;
    Ok(hub.publish(chat.event_type("chat")).await?)
}
