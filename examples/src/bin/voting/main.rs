//! Live voting (tutorial 000), on the ssehub library.
//!
//! `/` is the vote page (Yes / No, sent in the background with `fetch`), `/result` shows
//! `Yes: N, No: M` live with the connection state. `POST /vote` (`choice=yes|no`) counts a vote
//! and answers the new totals; `GET /stream` sends the current totals at once, then the totals
//! after each vote.
//!
//! Better than the tutorial: a results page that opens (or reconnects) gets the current totals
//! first instead of `Yes: 0, No: 0` until the next vote, heartbeats keep idle streams alive
//! through proxies, and the totals survive a restart (the tutorial ends with "the results will
//! be nullified because we stored them in memory").
//!
//! The totals are a `LiveState` value on the `votes` topic: each vote publishes the new totals,
//! computed from the current ones under the state's lock and applied once they are on disk, so
//! no vote is lost or counted twice, and a vote the store refused (`503`) counts nothing. On
//! start the newest totals come back from the durable log's latest-per-topic index (one lookup,
//! not a scan), which outlives retention: the log keeps only the newest 1,000 updates. A new
//! results stream gets the totals and then each change, none missed, none twice; a
//! `Last-Event-ID` is not needed (the snapshot is the whole state). `--data-dir` picks the log's
//! directory (default `./ssehub-data/voting`), `--memory` keeps everything in RAM.
//!
//! The cost: votes reach the disk one at a time, one fsync each, since each total is computed
//! from the previous one (an app with far more traffic would publish each ballot and count them).
//!
//! Run: `cargo run -p ssehub-examples --bin voting -- --addr 127.0.0.1:3001`

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use axum::routing::{get, post};
use axum::{Form, Json, Router, extract::State, http::header::CONTENT_TYPE, response::Html};
use serde::{Deserialize, Serialize};
use ssehub_server::{ApiError, Hub, LiveState, Sse, bind, serve};
use ssehub_store::{Durable, Log, LogOptions, RetainPolicy};

const CSS: &str = include_str!("../../../web/style.css");

#[derive(clap::Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:3001")]
    addr: SocketAddr,
    /// Directory of the durable log that keeps the totals (created when missing).
    #[arg(long, default_value = "./ssehub-data/voting")]
    data_dir: PathBuf,
    /// Keep the totals in memory only: a restart starts from zero.
    #[arg(long, conflicts_with = "data_dir")]
    memory: bool,
}

#[derive(Clone, Copy, Default, Serialize, Deserialize)]
struct Votes {
    yes: u64,
    no: u64,
}

#[derive(Deserialize)]
struct Vote {
    choice: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = <Args as clap::Parser>::parse();
    let hub = if args.memory {
        Hub::new()
    } else {
        let keep = RetainPolicy {
            count: Some(1000),
            ..RetainPolicy::default()
        };
        let log = Log::open(&args.data_dir, LogOptions::default())?;
        Hub::builder()
            .storage(Durable::new(log).retention(keep, Duration::from_secs(10)))
            .try_build()?
    };
    let votes = LiveState::<Votes>::value(&hub, "votes").await?;
    let Votes { yes, no } = votes.read(|v| *v).await;
    eprintln!("voting: Yes: {yes}, No: {no} so far");
    let app = Router::new()
        .route("/", get(Html(include_str!("index.html"))))
        .route("/result", get(Html(include_str!("result.html"))))
        .route("/style.css", get(([(CONTENT_TYPE, "text/css")], CSS)))
        .route("/healthz", get("ok"))
        .route("/vote", post(vote))
        .route("/stream", get(stream))
        .with_state(votes);
    let listener = bind(args.addr)?;
    println!("voting: vote at http://{}/", listener.local_addr()?);
    Ok(serve(listener, app, hub).reconnect_on_hangup().await?)
}

/// `POST /vote` with `choice=yes|no`: counts the vote, answers the new totals.
async fn vote(
    State(votes): State<LiveState<Votes>>,
    Form(vote): Form<Vote>,
) -> Result<Json<Votes>, ApiError> {
    let yes = u64::from(vote.choice == "yes");
    if yes == 0 && vote.choice != "no" {
        let reason = format!("choice must be yes or no, not {:?}", vote.choice);
        return Err(ApiError::bad_request(reason));
    }
    let count = move |v: &Votes| {
        Ok::<_, ApiError>(Votes {
            yes: v.yes + yes,
            no: v.no + 1 - yes,
        })
    };
    Ok(Json(votes.update(count).await?))
}

/// `GET /stream`: the current totals at once, then the totals after each vote.
async fn stream(State(votes): State<LiveState<Votes>>) -> Result<Sse, ApiError> {
    Ok(Sse::new(votes.subscribe().await?))
}
