//! Live voting (tutorial 000), on the ssehub library.
//!
//! `/` is the vote page (Yes / No, sent in the background with `fetch`), `/result` shows
//! `Yes: N, No: M` live with the connection state. Every vote is published to the `votes` topic
//! as the new totals, so any number of result tabs stay in sync.
//!
//! Better than the tutorial: a results page that opens (or reconnects) gets the current totals
//! first instead of `Yes: 0, No: 0` until the next vote, and heartbeats keep idle streams alive
//! through proxies.
//!
//! Run: `cargo run -p ssehub-examples --bin voting -- --addr 127.0.0.1:3001`

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ssehub_codec::Event;
use ssehub_examples::{Args, common_routes, html, serve, subscribe_error};
use ssehub_hub::{Hub, Subscription, Update};
use ssehub_server::{ApiError, Sse};
use tokio::sync::Mutex;

const TOPIC: &str = "votes";
const RETRY: Duration = Duration::from_secs(3);

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Votes {
    yes: u64,
    no: u64,
}

#[derive(Debug)]
struct App {
    hub: Hub,
    /// The totals. Publishing a vote and snapshotting for a new subscriber both happen under
    /// this lock, so a results page never sees totals go backwards: its snapshot already
    /// includes every vote whose update it will not receive.
    votes: Mutex<Votes>,
}

#[derive(Debug, Deserialize)]
struct VoteForm {
    choice: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = Args::parse_with_default(SocketAddr::from(([127, 0, 0, 1], 3001)));
    let hub = Hub::new();
    let app = Arc::new(App {
        hub: hub.clone(),
        votes: Mutex::new(Votes::default()),
    });
    let router = Router::new()
        .route("/", get(|| async { html(include_str!("index.html")) }))
        .route(
            "/result",
            get(|| async { html(include_str!("result.html")) }),
        )
        .route("/vote", post(vote))
        .route("/stream", get(stream))
        .merge(common_routes())
        .with_state(app);
    serve(router, hub, addr, |url| {
        format!("voting: vote at {url}/ and watch the results at {url}/result")
    })
    .await
}

/// `POST /vote` with `choice=yes|no`: counts the vote, publishes the new totals, answers them.
async fn vote(
    State(app): State<Arc<App>>,
    Form(form): Form<VoteForm>,
) -> Result<Json<Votes>, ApiError> {
    let mut votes = app.votes.lock().await;
    let mut next = *votes;
    match form.choice.as_str() {
        "yes" => next.yes = next.yes.saturating_add(1),
        "no" => next.no = next.no.saturating_add(1),
        other => {
            return Err(ApiError::bad_request(format!(
                "choice must be yes or no, not {other:?}"
            )));
        }
    }
    let data = serde_json::to_string(&next).map_err(|e| ApiError::bad_request(e.to_string()))?;
    app.hub
        .publish(Update::new(TOPIC, data))
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    *votes = next;
    Ok(Json(next))
}

/// `GET /stream`: the current totals at once, then the totals after each vote.
///
/// A reconnecting browser's `Last-Event-ID` is deliberately not used: each update carries the
/// full totals, so the snapshot is all it needs, and replaying older totals after it would make
/// the numbers jump back.
async fn stream(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let votes = app.votes.lock().await;
    let data = serde_json::to_string(&*votes).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let first = Event::new().retry(RETRY).data(data).encode();
    let sub = Subscription::new()
        .topic(TOPIC)
        .map_err(|e| ApiError::bad_request(e.to_string()))?
        .preamble(first);
    let stream = app.hub.subscribe(sub).map_err(subscribe_error)?;
    drop(votes);
    Ok(axum::response::IntoResponse::into_response(Sse::new(
        stream,
    )))
}
