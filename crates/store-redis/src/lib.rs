//! Redis Streams storage for ssehub: several hub processes share one ordered log.
//!
//! ```no_run
//! use ssehub_hub::Hub;
//! use ssehub_store_redis::{RedisBackend, RedisOptions};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backend = RedisBackend::connect(RedisOptions::new("redis://127.0.0.1:6379", "updates")).await?;
//! let hub = Hub::builder().storage(backend).build();
//! # drop(hub);
//! # Ok(()) }
//! ```
//!
//! This crate owns everything that talks to Redis, behind the hub's storage seam
//! (`ssehub_hub::storage`); the hub core decides what to do with the answers. The layout, per stream name `S` (so several hubs, or tests, share one Redis):
//!
//! - `S`: the stream. One entry per update, fields `topics` (JSON array), `private` (`0`/`1`),
//!   `id` (publisher-chosen id, if any), `type`, `retry` (ms), `data`, `ms` (publish time).
//! - `S:pubids`: hash, publisher id -> stream id (replay from a publisher id, duplicate check),
//!   pruned as it goes of ids whose update was trimmed (`S:pubids:cursor` keeps the scan's place).
//! - `S:latest`: hash, topic -> a JSON copy `[stream id, field, value, ...]` of the newest
//!   update of that topic, so retained state outlives trimming of the stream.
//!
//! A publish is one Lua script (atomic: duplicate check, `XADD` with retention, both hashes).
//! Nothing is fanned out at publish time: every node runs one reader task (`read_loop`) that
//! `XREAD`s the stream from the last entry it delivered, on its own connection, and feeds the
//! entries to the hub in stream order. The stream id is the event id (or the publisher's id),
//! so ids and order agree on every node. Replay that the node's ring cannot serve is a
//! read (`Storage::read`): resolve the `Last-Event-ID` against one atomic snapshot, then
//! `XRANGE` pages.
//!
//! Presence across nodes: every second each node writes its subscriber counts per selector to
//! `S:presence:{node}` (expires after `PRESENCE_TTL`) and registers in the sorted set
//! `S:nodes` (score: when its entry expires); the same script returns the counts of the other
//! live nodes. A node that dies stops counting within the TTL.
//!
//! Subscriptions across nodes (only once `Hub::track_subscriptions` is on): each node
//! keeps its subscribers in the hash `S:subs:{node}` (field: subscriber id, value: JSON with
//! its topics and payload). A join or leave changes it in the same publish script that appends
//! its announcement to the stream, so the hashes and the stream agree at every instant; the
//! presence refresh renews the hash's TTL with the node's (a dead node's subscribers drop out
//! of the list within `PRESENCE_TTL`). `Shared::list_subscriptions` reads every live node's
//! hash and the stream's last id in one script.

#![deny(missing_docs)]

mod read;
mod scripts;
mod shared;
mod sid;
mod storage;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, Script};
use ssehub_hub::storage::{Backend, Opened, Ordered, Sink, StorageError};

use crate::shared::{Keys, RawEntry, Shared, decode};
use crate::sid::Sid;
use crate::storage::RedisStorage;

/// Most entries one `XREAD` or `XRANGE` page brings.
pub(crate) const PAGE: usize = 512;
/// How long the reader's `XREAD` blocks before asking again (it also checks the hub is alive).
pub(crate) const BLOCK: Duration = Duration::from_secs(1);
/// How long a node's presence counts live in Redis without a refresh.
pub(crate) const PRESENCE_TTL: Duration = Duration::from_secs(3);
/// Reconnection backoff of the reader.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(100);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(3);

/// Why the Redis storage could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisStorageError {
    /// The URL is not a Redis URL (`redis://HOST:PORT[/DB]`).
    #[error("invalid Redis URL: {0}")]
    Url(String),
    /// Redis did not answer or refused a command.
    #[error("redis: {0}")]
    Redis(String),
}

/// Where and how a hub keeps its log in Redis.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RedisOptions {
    /// `redis://HOST:PORT[/DB]`.
    pub url: String,
    /// The stream's key; the hashes are `{stream}:pubids` and `{stream}:latest`.
    pub stream: String,
    /// Trim the stream to about this many entries on each publish (`XADD MAXLEN ~`).
    pub max_len: Option<u64>,
    /// Trim entries older than this on each publish (`XTRIM MINID ~`, by Redis's clock).
    pub max_age: Option<Duration>,
    /// Longest wait for one Redis command (a publish answers 503 after it).
    pub timeout: Duration,
}

impl RedisOptions {
    /// Options for `url` and `stream`, no retention, a 2 s command timeout.
    pub fn new(url: impl Into<String>, stream: impl Into<String>) -> Self {
        RedisOptions {
            url: url.into(),
            stream: stream.into(),
            max_len: None,
            max_age: None,
            timeout: Duration::from_secs(2),
        }
    }
}

/// A connected Redis log, ready for `HubBuilder::storage`.
#[derive(Clone)]
pub struct RedisBackend {
    pub(crate) shared: Arc<Shared>,
    /// The stream's last id when we connected: this node's reader starts after it.
    pub(crate) start: Sid,
    /// The client-facing id of the stream's newest entry then.
    pub(crate) start_id: Option<Arc<str>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("stream", &self.shared.keys.stream)
            .field("start", &self.start.to_string())
            .finish_non_exhaustive()
    }
}

/// One stream entry, decoded and encoded once as the frame subscribers get.
#[derive(Debug, Clone)]
pub(crate) struct StreamEntry {
    pub(crate) sid: Sid,
    pub(crate) id: Arc<str>,
    pub(crate) publisher_id: bool,
    pub(crate) topics: Vec<String>,
    pub(crate) private: bool,
    pub(crate) frame: Bytes,
}

impl StreamEntry {
    /// The entry as the hub takes it.
    pub(crate) fn ordered(self) -> Ordered {
        Ordered {
            position: self.sid.into(),
            id: self.id,
            publisher_id: self.publisher_id,
            topics: self.topics,
            private: self.private,
            frame: self.frame,
        }
    }
}

impl RedisBackend {
    /// Connects, and notes where this node's reader starts (the stream's current end). Fails
    /// when Redis does not answer within the timeout.
    pub async fn connect(options: RedisOptions) -> Result<RedisBackend, RedisStorageError> {
        let client = Client::open(options.url.as_str())
            .map_err(|e| RedisStorageError::Url(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(options.timeout)
            .set_response_timeout(options.timeout)
            // Fail a command fast while Redis is down (a publish answers 503); the manager
            // keeps reconnecting in the background.
            .set_number_of_retries(1)
            .set_max_delay(BACKOFF_MAX.as_millis() as u64);
        let conn = tokio::time::timeout(
            options.timeout,
            ConnectionManager::new_with_config(client.clone(), config),
        )
        .await
        .map_err(|_| RedisStorageError::Redis("timed out connecting".into()))?
        .map_err(|e| RedisStorageError::Redis(e.to_string()))?;
        let keys = Keys {
            stream: options.stream.clone(),
            pubids: format!("{}:pubids", options.stream),
            pubids_cursor: format!("{}:pubids:cursor", options.stream),
            latest: format!("{}:latest", options.stream),
            nodes: format!("{}:nodes", options.stream),
            presence: format!("{}:presence:", options.stream),
            subs: format!("{}:subs:", options.stream),
        };
        // Unique enough among a stream's nodes: process id and start time in ns.
        let node = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let shared = Arc::new(Shared {
            client,
            conn,
            keys,
            options,
            publish: Script::new(scripts::PUBLISH_LUA),
            snapshot: Script::new(scripts::SNAPSHOT_LUA),
            presence: Script::new(scripts::PRESENCE_LUA),
            subscriptions: Script::new(scripts::SUBSCRIPTIONS_LUA),
            node,
        });
        // `XINFO STREAM`'s `entries-added` (gap detection after trimming) is Redis 7.0+.
        let info: String = shared
            .timed(async {
                let mut c = shared.conn.clone();
                redis::cmd("INFO").arg("server").query_async(&mut c).await
            })
            .await
            .map_err(RedisStorageError::Redis)?;
        let version = info
            .lines()
            .find_map(|l| l.strip_prefix("redis_version:"))
            .unwrap_or("")
            .trim()
            .to_owned();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(RedisStorageError::Redis(format!(
                "Redis 7.0 or newer is needed (this is {version:?})"
            )));
        }
        let snap = shared
            .snapshot(None, false)
            .await
            .map_err(RedisStorageError::Redis)?;
        let start = snap.last_generated.unwrap_or(Sid::ZERO);
        let newest = shared
            .timed(async {
                let mut c = shared.conn.clone();
                redis::cmd("XREVRANGE")
                    .arg(&shared.keys.stream)
                    .arg("+")
                    .arg("-")
                    .arg("COUNT")
                    .arg(1)
                    .query_async::<Vec<RawEntry>>(&mut c)
                    .await
            })
            .await
            .map_err(RedisStorageError::Redis)?;
        let start_id = newest
            .into_iter()
            .filter_map(decode)
            .find(|e| e.sid == start)
            .map(|e| e.id);
        Ok(RedisBackend {
            shared,
            start,
            start_id,
        })
    }

    /// The stream's key.
    pub fn stream(&self) -> &str {
        &self.shared.keys.stream
    }
}

impl Backend for RedisBackend {
    fn open(&self, sink: Sink) -> Result<Opened, StorageError> {
        let _ = sink;
        Ok(Opened {
            storage: Arc::new(RedisStorage::new(self.shared.clone(), self.start)),
            // Ids are stream ids, never ring-assigned.
            epoch: 0,
            after: self.start.into(),
            last_id: self.start_id.clone(),
        })
    }
}
