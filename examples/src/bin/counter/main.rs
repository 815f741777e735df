//! A live counter (tutorial 001), on the ssehub library.
//!
//! `/events` sends `retry: 10000` first (reconnect after 10 s if the connection is lost), then
//! the count every second; `/` shows it. One timer publishes the count to the `counter` topic
//! for every subscriber, instead of one loop per connection as in the tutorial, so all tabs show
//! the same number and an idle server costs one tick per second whatever the number of tabs.
//!
//! RAM-only, with no history at all (`history_size(0)`): the count is a clock, not state worth
//! keeping. A browser that reconnects wants the current value, not the ticks it missed (its
//! `Last-Event-ID` is unknown to a hub that keeps nothing, so it gets the hub's
//! `ssehub.history-gap` notice, which the page ignores, then the next tick), and a restart
//! starts again from 1 as the tutorial does. (`voting` and `nests` show state that survives a
//! restart.)
//!
//! `SIGHUP` ends every stream while the process lives on (the browser tests use it to watch the
//! `retry: 10000` advice at work); `SIGTERM` / Ctrl-C drain and stop.
//!
//! Run: `cargo run -p ssehub-examples --bin counter -- --addr 127.0.0.1:3002`

use std::{net::SocketAddr, time::Duration};

use axum::{Router, http::header::CONTENT_TYPE, response::Html, routing::get};
use clap::Parser;
use ssehub_server::{Hub, Subscription, Update, bind, events, serve};

const CSS: &str = include_str!("../../../web/style.css");

#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:3002")]
    addr: SocketAddr,
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let hub = Hub::builder().history_size(0).build();
    tokio::spawn(count(hub.clone()));
    let counter = Subscription::to("counter").retry(Duration::from_secs(10));
    let app = Router::new()
        .route("/", get(Html(include_str!("index.html"))))
        .route("/style.css", get(([(CONTENT_TYPE, "text/css")], CSS)))
        .route("/healthz", get("ok"))
        .route("/events", events(&hub, counter));
    let listener = bind(Args::parse().addr)?;
    println!("counter: open http://{}/", listener.local_addr()?);
    serve(listener, app, hub).reconnect_on_hangup().await
}

/// Publishes 1, 2, 3... once a second.
async fn count(hub: Hub) {
    for n in 1u64.. {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _ = hub.publish(Update::new("counter", n.to_string())).await;
    }
}
