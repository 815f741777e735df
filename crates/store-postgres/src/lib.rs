//! PostgreSQL storage for ssehub: several hub processes share one log whose order is the
//! database's commit order, and applications publish inside their own transactions.
//!
//! ```no_run
//! use ssehub_hub::Hub;
//! use ssehub_store_postgres::{PostgresBackend, PostgresOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let options = PostgresOptions::new("postgres://postgres@127.0.0.1:5432/postgres", "ssehub");
//! let backend = PostgresBackend::connect(options).await?;
//! let hub = Hub::builder().storage(backend).build();
//! # drop(hub);
//! # Ok(()) }
//! ```
//!
//! This crate owns everything that talks to PostgreSQL, behind the hub's storage seam
//! (`ssehub_hub::storage`). Everything lives in one schema (`PostgresOptions::schema`), created
//! and migrated by the hub when it connects; `docs/postgres.md` in the repository documents
//! the tables and the SQL an application uses.
//!
//! # The order is the commit order
//!
//! A publish (the hub's, or an application's `INSERT` / `SELECT schema.publish(...)` in its own
//! transaction) inserts a row into `updates` with no position. A sequencing step (the SQL
//! function `schema.sequence`, which any node runs) takes a transaction-scoped advisory lock,
//! gives every committed unpositioned row the next positions (oldest insert first), and
//! commits. Only one step commits at a time and each sees the previous one's commit, so
//! positions become visible in increasing order: a reader of `pos > last ORDER BY pos` never
//! skips a row that commits later, nor reads one twice. A transaction that rolls back never
//! had a visible row, so it is never ordered. A node killed mid-step leaves its step to roll
//! back; the rows wait for the next step.
//!
//! Per node, three tasks (started with the hub):
//!
//! - the listener (`listen.rs`): one connection that `LISTEN`s on `{schema}.pending` (an
//!   application committed updates: its insert trigger notifies) and `{schema}.positioned`
//!   (a step committed positions), and wakes the two others;
//! - the sequencer (`sequencer.rs`): runs a step when this node published, when woken, and
//!   every few seconds as a safety net (a node that died between its insert and its step);
//! - the reader (`read.rs`): reads the rows after the last one it delivered, in position
//!   order, hands them to the hub, and answers this node's publishers waiting for their
//!   update's position.
//!
//! A hub publish is acknowledged once its row is committed and ordered (its id
//! `#{epoch}-{pos}` names its position), so an acknowledged update survives any crash of the
//! hub. While PostgreSQL is unreachable a publish fails at once with
//! [`ssehub_hub::PublishError::Unavailable`] (a `503` with the reason); subscribers stay
//! connected, and the reader resumes after its last row once the database is back.
//!
//! Presence and active subscriptions across nodes go through the tables `nodes` (each node's
//! counts, with an expiry renewed every second) and `subscribers` (each node's list, changed in
//! the same statement that inserts the announcement).

#![deny(missing_docs)]

mod db;
mod listen;
mod read;
mod row;
mod schema;
mod sequencer;
mod storage;
mod waiters;

use std::sync::Arc;
use std::time::Duration;

use ssehub_hub::storage::{Backend, Opened, Position, Sink, StorageError, hub_id};

use crate::db::Db;
use crate::schema::Names;
use crate::storage::PostgresStorage;

/// Most rows one page read brings.
pub(crate) const PAGE: usize = 512;
/// Most rows one sequencing step orders.
pub(crate) const SEQUENCE_BATCH: i32 = 10_000;
/// How often a node runs a sequencing step and reads the log without being woken: a safety
/// net only (a missed notification, a node that died before ordering its own rows).
pub(crate) const SAFETY_POLL: Duration = Duration::from_secs(2);
/// How long a node's presence counts live without a refresh.
pub(crate) const PRESENCE_TTL: Duration = Duration::from_secs(3);
/// Reconnection backoff of the listener, the sequencer and the reader.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// Why the PostgreSQL storage could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresStorageError {
    /// The URL is not a PostgreSQL connection string.
    #[error("invalid PostgreSQL URL: {0}")]
    Url(String),
    /// The schema name is not one this crate accepts.
    #[error(
        "invalid PostgreSQL schema name {0:?}: lowercase letters, digits and _, not starting with a digit, at most 48 bytes"
    )]
    Schema(String),
    /// PostgreSQL did not answer, refused a statement, or holds a newer schema.
    #[error("{0}")]
    Postgres(String),
}

/// Where and how a hub keeps its log in PostgreSQL.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or a `key=value` connection string).
    pub url: String,
    /// The schema holding the log; every node started with the same URL and schema shares it.
    pub schema: String,
    /// Keep at most this many newest updates.
    pub max_count: Option<u64>,
    /// Remove updates ordered longer ago than this.
    pub max_age: Option<Duration>,
    /// Keep the newest updates whose sizes (data, topics, id, type) sum to at most this.
    pub max_bytes: Option<u64>,
    /// Longest wait for one exchange with PostgreSQL (a publish answers 503 after it).
    pub timeout: Duration,
    /// Most pooled connections this node opens (plus one for `LISTEN`).
    pub pool_size: usize,
}

impl PostgresOptions {
    /// Options for `url` and `schema`, no retention, a 5 s timeout, a pool of 16.
    pub fn new(url: impl Into<String>, schema: impl Into<String>) -> Self {
        PostgresOptions {
            url: url.into(),
            schema: schema.into(),
            max_count: None,
            max_age: None,
            max_bytes: None,
            timeout: Duration::from_secs(5),
            pool_size: 16,
        }
    }
}

/// A connected, migrated PostgreSQL log, ready for `HubBuilder::storage`.
#[derive(Clone)]
pub struct PostgresBackend {
    pub(crate) db: Arc<Db>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("schema", &self.db.names.schema)
            .field("epoch", &self.db.epoch)
            .finish_non_exhaustive()
    }
}

impl PostgresBackend {
    /// Connects, creates or migrates the schema, and reads the log's epoch. Fails when
    /// PostgreSQL does not answer within the timeout, the URL or schema name is invalid, or
    /// the schema was made by a newer hub.
    pub async fn connect(
        options: PostgresOptions,
    ) -> Result<PostgresBackend, PostgresStorageError> {
        if !schema::valid_schema(&options.schema) {
            return Err(PostgresStorageError::Schema(options.schema));
        }
        let names = Names::new(&options.schema);
        let db = Db::connect(options, names).await?;
        Ok(PostgresBackend { db: Arc::new(db) })
    }

    /// The schema holding the log.
    pub fn schema(&self) -> &str {
        &self.db.names.schema
    }

    /// The log's epoch: hub ids are `#{epoch}-{position}`.
    pub fn epoch(&self) -> u64 {
        self.db.epoch
    }
}

impl Backend for PostgresBackend {
    fn open(&self, _sink: Sink) -> Result<Opened, StorageError> {
        // Where this node's reader starts: the newest position when the hub opens. Read
        // without blocking the builder's thread on the runtime: the value connect() noted is
        // refreshed by a blocking-safe exchange when possible.
        let (last, last_event_id) = self.db.start_point();
        Ok(Opened {
            storage: Arc::new(PostgresStorage::new(self.db.clone(), last)),
            // Ids are positions in the shared log, never ring-assigned.
            epoch: 0,
            after: position(last),
            last_id: last_event_id,
        })
    }
}

/// The hub position of log position `pos`.
pub(crate) fn position(pos: i64) -> Position {
    Position::new(0, pos.max(0) as u64)
}

/// The id of the update at `pos` when it has no publisher id.
pub(crate) fn event_id(epoch: u64, pos: i64) -> String {
    hub_id(epoch, pos.max(0) as u64)
}

/// An error as a one-line reason, prefixed with `postgres: ` (a 503 body, a log line).
pub(crate) fn reason(e: &tokio_postgres::Error) -> String {
    let text = match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => {
            // The source says what failed (connection refused, reset).
            let mut text = e.to_string();
            if let Some(source) = std::error::Error::source(e) {
                text = format!("{text}: {source}");
            }
            text
        }
    };
    format!("postgres: {}", one_line(&text))
}

/// `text` with line breaks folded into spaces.
pub(crate) fn one_line(text: &str) -> String {
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
