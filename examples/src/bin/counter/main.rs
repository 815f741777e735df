//! A live counter (tutorial 001), on the ssehub library.
//!
//! `/events` sends `retry: 10000` first (reconnect after 10 s if the connection is lost), then
//! the count every second; `/` shows it. One timer publishes the count to the `counter` topic
//! for every subscriber, instead of one loop per connection as in the tutorial, so all tabs show
//! the same number and an idle server costs one tick per second whatever the number of tabs.
//!
//! RAM-only, with no history at all: the count is a clock, not state worth keeping. A browser
//! that reconnects wants the current value, not the ticks it missed, and a restart starts
//! again from 1 as the tutorial does; writing one update per second to disk would buy nothing.
//! (`voting` and `nests` show state that survives a restart.)
//!
//! Run: `cargo run -p ssehub-examples --bin counter -- --addr 127.0.0.1:3002`

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use ssehub_examples::{Args, common_routes, html, serve, subscribe_error};
use ssehub_hub::{Hub, Subscription, Update};
use ssehub_server::{ApiError, Sse, preamble};

const TOPIC: &str = "counter";

/// The reconnection time the tutorial advises in the first bytes of every stream. Sent as the
/// library's preamble, `retry: 10000\n` with no blank line after it (a blank line would make it
/// an empty message in some clients), it also flushes the response head at once, so the
/// browser fires `open` immediately.
const RETRY: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = Args::parse_with_default(SocketAddr::from(([127, 0, 0, 1], 3002)));
    // No history: a counter shows the current value, so a reconnecting browser gains nothing
    // from a burst of the counts it missed.
    let hub = Hub::builder().history_size(0).build();
    tokio::spawn(tick(hub.clone()));
    let router = Router::new()
        .route("/", get(|| async { html(include_str!("index.html")) }))
        .route("/events", get(events))
        .merge(common_routes())
        .with_state(hub.clone());
    serve(router, hub, addr, |url| {
        format!("counter: open {url}/ (stream at {url}/events)")
    })
    .await
}

/// Publishes 1, 2, 3... once a second until the hub closes.
async fn tick(hub: Hub) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    // After a stall (a suspended laptop), carry on at one per second instead of bursting.
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    every.tick().await;
    let mut count: u64 = 0;
    loop {
        every.tick().await;
        count += 1;
        if hub
            .publish(Update::new(TOPIC, count.to_string()))
            .await
            .is_err()
        {
            return; // closed: the server is stopping
        }
    }
}

/// `GET /events`: `retry: 10000`, then the count each second.
async fn events(State(hub): State<Hub>) -> Result<Response, ApiError> {
    let sub = Subscription::new()
        .topic(TOPIC)
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .preamble(preamble(RETRY));
    Ok(Sse::new(hub.subscribe(sub).map_err(subscribe_error)?).into_response())
}
