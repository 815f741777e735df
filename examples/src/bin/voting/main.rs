//! Live voting (tutorial 000), on the ssehub library.
//!
//! `/` is the vote page (Yes / No, sent in the background with `fetch`), `/result` shows
//! `Yes: N, No: M` live with the connection state. Every vote is published to the `votes` topic
//! as the new totals, so any number of result tabs stay in sync.
//!
//! Better than the tutorial: a results page that opens (or reconnects) gets the current totals
//! first instead of `Yes: 0, No: 0` until the next vote, heartbeats keep idle streams alive
//! through proxies, and the totals survive a restart (the tutorial ends with "the results will
//! be nullified because we stored them in memory").
//!
//! # Totals across restarts
//!
//! The hub is durable: its log lives in `--data-dir` (default `./ssehub-data/voting`;
//! `--memory` keeps everything in RAM, and a restart starts from zero). Each update on `votes`
//! carries the full totals, so the newest one is all the state there is, and the log's
//! latest-per-topic index (the one that serves retained state, `retained=latest`) always holds
//! it. On start the example reads it back with one index lookup ([`Log::latest_for_topic`]),
//! not a scan. The index outlives retention, so the log keeps only the newest
//! [`KEEP_UPDATES`] updates, trimmed in the background: the data directory stays small however
//! many votes come in (deriving the totals by replaying the log would need every vote kept).
//!
//! No vote is lost or counted twice. A vote is a read-modify-publish under one lock: the totals
//! plus this vote are published, and only once the publish returns (the update is on disk and
//! delivered to the result tabs) do the in-memory totals move and the voter get its answer. So
//! each durable total is built on the previous durable one, two concurrent votes can never
//! publish the same total or overtake each other, and a vote the store refused (`503`, e.g. a
//! full disk) counts nothing. That sequence runs on its own task, so a voter that goes away
//! mid-vote cannot leave it half done. A crash between the fsync and the answer leaves a vote
//! that is counted (once) while its voter saw an error: the usual ambiguity of any
//! acknowledged write.
//!
//! The cost: votes reach the disk one at a time, one fsync each (a few hundred votes a second
//! on an ordinary disk). Group commit cannot share an fsync between two votes when the second
//! total is computed from the first; an app with far more traffic would publish each ballot as
//! its own update (group commit then shares the fsyncs) and derive the totals from them.
//!
//! The results stream sends the app's own snapshot first rather than asking the hub for the
//! retained state: the app holds the totals anyway, and the snapshot also says `0 / 0` when
//! there is no vote yet, where retained state would send nothing (a tab reconnecting to an
//! emptied `--memory` server would keep showing the old totals).
//!
//! Run: `cargo run -p ssehub-examples --bin voting -- --addr 127.0.0.1:3001`
//! (add `--data-dir DIR` or `--memory`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ssehub_codec::Event;
use ssehub_examples::{
    StateArgs, Storage, common_routes, html, open_log, serve, stored_data, subscribe_error,
    uncancellable,
};
use ssehub_hub::{Hub, Subscription, Update};
use ssehub_server::{ApiError, Sse};
use ssehub_store::{Durable, Log, RetainPolicy};
use tokio::sync::Mutex;

const TOPIC: &str = "votes";
const RETRY: Duration = Duration::from_secs(3);
/// Updates the durable log keeps: only the newest totals matter, and the latest-per-topic index
/// keeps those whatever is trimmed. The rest is there for nothing but a look at the history.
const KEEP_UPDATES: u64 = 1000;
/// How often the log is trimmed to [`KEEP_UPDATES`].
const TRIM_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Votes {
    yes: u64,
    no: u64,
}

#[derive(Debug, Clone, Copy)]
enum Choice {
    Yes,
    No,
}

#[derive(Debug)]
struct App {
    hub: Hub,
    /// The totals. Counting a vote (publish, then apply) and snapshotting for a new subscriber
    /// both happen under this lock, so a results page never sees totals go backwards: its
    /// snapshot already includes every vote whose update it will not receive. The lock also
    /// gives the votes one order, on disk as in memory (see the module docs).
    votes: Mutex<Votes>,
}

impl App {
    /// Counts one vote: publishes the new totals, waits until they are durable (and delivered),
    /// then applies them. Nothing is counted if the publish fails.
    async fn count(&self, choice: Choice) -> Result<Votes, ApiError> {
        let mut votes = self.votes.lock().await;
        let mut next = *votes;
        match choice {
            Choice::Yes => next.yes = next.yes.saturating_add(1),
            Choice::No => next.no = next.no.saturating_add(1),
        }
        let data =
            serde_json::to_string(&next).map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.hub
            .publish(Update::new(TOPIC, data))
            .await
            .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
        *votes = next;
        Ok(next)
    }
}

#[derive(Debug, Deserialize)]
struct VoteForm {
    choice: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (addr, storage) = StateArgs::parse_with_defaults(
        SocketAddr::from(([127, 0, 0, 1], 3001)),
        "./ssehub-data/voting",
    );
    let (hub, votes) = match &storage {
        Storage::Memory => {
            eprintln!("voting: totals in memory only (--memory): a restart starts from zero");
            (Hub::new(), Votes::default())
        }
        Storage::Durable(dir) => {
            let log = open_log(dir)?;
            let votes = restore(&log)?;
            eprintln!(
                "voting: totals kept in {} (Yes: {}, No: {} so far)",
                dir.display(),
                votes.yes,
                votes.no
            );
            let hub = durable_hub(log)?;
            (hub, votes)
        }
    };
    let app = Arc::new(App {
        hub: hub.clone(),
        votes: Mutex::new(votes),
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

/// A hub on `log` that trims it to the newest [`KEEP_UPDATES`] updates.
fn durable_hub(log: Log) -> anyhow::Result<Hub> {
    let keep = RetainPolicy {
        count: Some(KEEP_UPDATES),
        ..RetainPolicy::default()
    };
    Hub::builder()
        .storage(Durable::new(log).retention(keep, TRIM_EVERY))
        .try_build()
        .context("cannot start the durable log")
}

/// The totals of the newest update on `votes` (zero when there is none yet): one lookup in the
/// latest-per-topic index, which outlives the log's trimming.
fn restore(log: &Log) -> anyhow::Result<Votes> {
    let Some(latest) = log
        .latest_for_topic(TOPIC)
        .context("cannot read the latest totals")?
    else {
        return Ok(Votes::default());
    };
    let data = stored_data(&latest)
        .with_context(|| format!("the latest update on {TOPIC:?} holds no event"))?;
    serde_json::from_str(&data)
        .with_context(|| format!("the latest update on {TOPIC:?} is not vote totals: {data}"))
}

/// `POST /vote` with `choice=yes|no`: counts the vote, publishes the new totals, answers them.
async fn vote(
    State(app): State<Arc<App>>,
    Form(form): Form<VoteForm>,
) -> Result<Json<Votes>, ApiError> {
    let choice = match form.choice.as_str() {
        "yes" => Choice::Yes,
        "no" => Choice::No,
        other => {
            return Err(ApiError::bad_request(format!(
                "choice must be yes or no, not {other:?}"
            )));
        }
    };
    let votes = uncancellable(async move { app.count(choice).await }).await??;
    Ok(Json(votes))
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ssehub_store::LogOptions;
    use tokio::task::JoinSet;

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

    fn totals(data: &str) -> Votes {
        serde_json::from_str(data).unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_votes_are_each_counted_once_in_order_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path()).unwrap();
        assert_eq!(restore(&log).unwrap(), Votes::default());
        let app = Arc::new(App {
            hub: durable_hub(log.clone()).unwrap(),
            votes: Mutex::new(Votes::default()),
        });

        let mut voters = JoinSet::new();
        for i in 0..60 {
            let app = app.clone();
            let choice = if i % 3 == 0 { Choice::No } else { Choice::Yes };
            voters.spawn(async move { app.count(choice).await.unwrap() });
        }
        let mut answers = Vec::new();
        while let Some(answer) = voters.join_next().await {
            answers.push(answer.unwrap());
        }
        let expected = Votes { yes: 40, no: 20 };
        // Each voter was answered a different total: none was computed from a stale one.
        answers.sort_by_key(|v| v.yes + v.no);
        answers.dedup();
        assert_eq!(answers.len(), 60);
        assert_eq!(answers.last(), Some(&expected));

        // On disk, in the log's order, each total is the previous one plus one vote.
        let records = log.read_from(1, 1000).unwrap();
        assert_eq!(records.len(), 60);
        let mut previous = Votes::default();
        for record in &records {
            let next = totals(&stored_data(record).unwrap());
            assert_eq!(next.yes + next.no, previous.yes + previous.no + 1);
            assert!(next.yes >= previous.yes && next.no >= previous.no);
            previous = next;
        }
        assert_eq!(previous, expected);

        // A restart reads the same totals back...
        app.hub.close();
        drop((app, log));
        let log = reopen(dir.path()).await;
        assert_eq!(restore(&log).unwrap(), expected);
        // ...even once the log has trimmed every update: they come from the index.
        log.trim(&RetainPolicy {
            count: Some(0),
            ..RetainPolicy::default()
        })
        .unwrap();
        assert!(log.is_empty());
        assert_eq!(restore(&log).unwrap(), expected);
    }

    #[test]
    fn a_log_without_votes_restores_zero_and_a_foreign_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = open_log(dir.path()).unwrap();
        assert_eq!(restore(&log).unwrap(), Votes::default());
        log.append(ssehub_store::Record::new(
            vec![TOPIC.into()],
            "id: x\ndata: not totals\n\n",
        ))
        .unwrap();
        let err = format!("{:#}", restore(&log).unwrap_err());
        assert!(err.contains("is not vote totals: not totals"), "{err}");
    }
}
