//! Redis Streams storage: several hub processes share one ordered log.
//!
//! This module owns everything that talks to Redis; `hub.rs` decides what to do with the
//! answers. The layout, per stream name `S` (so several hubs, or tests, share one Redis):
//!
//! - `S`: the stream. One entry per update, fields `topics` (JSON array), `private` (`0`/`1`),
//!   `id` (publisher-chosen id, if any), `type`, `retry` (ms), `data`, `ms` (publish time).
//! - `S:pubids`: hash, publisher id -> stream id (replay from a publisher id, duplicate check),
//!   pruned as it goes of ids whose update was trimmed (`S:pubids:cursor` keeps the scan's place).
//! - `S:latest`: hash, topic -> a JSON copy `[stream id, field, value, ...]` of the newest
//!   update of that topic, so retained state outlives trimming of the stream.
//!
//! A publish is one Lua script (atomic: duplicate check, `XADD` with retention, both hashes).
//! Nothing is fanned out at publish time: every node runs one reader task ([`read_loop`]) that
//! `XREAD`s the stream from the last entry it delivered, on its own connection, and feeds the
//! entries to the hub in stream order. The stream id is the event id (or the publisher's id),
//! so ids and order agree on every node. Replay that the node's ring cannot serve is a
//! [`Fetch`]: resolve the `Last-Event-ID` against one atomic snapshot, then `XRANGE` pages.
//!
//! Presence across nodes: every second each node writes its subscriber counts per selector to
//! `S:presence:{node}` (expires after [`PRESENCE_TTL`]) and registers in the sorted set
//! `S:nodes` (score: when its entry expires); the same script returns the counts of the other
//! live nodes. A node that dies stops counting within the TTL.
//!
//! Subscriptions across nodes (only once [`crate::Hub::track_subscriptions`] is on): each node
//! keeps its subscribers in the hash `S:subs:{node}` (field: subscriber id, value: JSON with
//! its topics and payload). A join or leave changes it in the same publish script that appends
//! its announcement to the stream, so the hashes and the stream agree at every instant; the
//! presence refresh renews the hash's TTL with the node's (a dead node's subscribers drop out
//! of the list within [`PRESENCE_TTL`]). [`Shared::list_subscriptions`] reads every live node's
//! hash and the stream's last id in one script.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, Script};
use tokio::task::JoinHandle;

use crate::error::PublishError;
use crate::history::Sid;

/// Most entries one `XREAD` or `XRANGE` page brings.
const PAGE: usize = 512;
/// How long the reader's `XREAD` blocks before asking again (it also checks the hub is alive).
const BLOCK: Duration = Duration::from_secs(1);
/// How long a node's presence counts live in Redis without a refresh.
pub(crate) const PRESENCE_TTL: Duration = Duration::from_secs(3);
/// How often a node refreshes its presence counts and reads the others'.
pub(crate) const PRESENCE_EVERY: Duration = Duration::from_secs(1);
/// Reconnection backoff of the reader.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(3);

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

/// A connected Redis log, ready for [`crate::HubBuilder::redis`].
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

pub(crate) struct Keys {
    pub(crate) stream: String,
    pubids: String,
    /// Where the pruning scan of `pubids` resumes (see the publish script).
    pubids_cursor: String,
    latest: String,
    nodes: String,
    /// Prefix of the per-node presence hashes (`S:presence:`).
    presence: String,
    /// Prefix of the per-node subscriber hashes (`S:subs:`).
    subs: String,
}

pub(crate) struct Shared {
    client: Client,
    conn: ConnectionManager,
    pub(crate) keys: Keys,
    options: RedisOptions,
    publish: Script,
    snapshot: Script,
    presence: Script,
    subscriptions: Script,
    /// This process's name among the stream's nodes (for presence).
    node: String,
}

/// The storage a Redis-backed hub holds; stops the reader when the hub goes away.
pub(crate) struct RedisStorage {
    pub(crate) shared: Arc<Shared>,
    /// The reader and presence tasks, set once the hub exists (they hold a `Weak` to it, so
    /// they start after).
    pub(crate) tasks: parking_lot::Mutex<Vec<JoinHandle<()>>>,
    /// The other live nodes' subscriber counts, from the last presence refresh.
    pub(crate) remote: parking_lot::Mutex<RemotePresence>,
    /// A change to this node's subscriber hash failed (Redis unreachable): the next
    /// successful presence refresh has the hash written again.
    pub(crate) subs_dirty: std::sync::atomic::AtomicBool,
}

impl Drop for RedisStorage {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

/// Subscriber counts of the other live nodes of a stream.
#[derive(Debug, Default, Clone)]
pub(crate) struct RemotePresence {
    /// Whether this node's subscriber hash existed when its TTL was renewed.
    pub(crate) subs_alive: bool,
    pub(crate) subscribers: usize,
    pub(crate) selectors: std::collections::HashMap<String, usize>,
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

/// Atomically: refuse a publisher id still in use by a retained entry, append, trim, index.
/// KEYS: stream, pubids, latest, pubids scan cursor, this node's subscriber hash. ARGV:
/// publisher id or '', max len or '', max age ms or '', topic count n, n topics, then a
/// subscriber hash change (`'set'`, `'del'` or `''`; field; value; TTL ms), then the entry's
/// field/value pairs.
///
/// Trimming cannot tell which publisher ids it dropped, so each publish that records one also
/// looks at a few more entries of the pubids hash (`HSCAN`, resuming where the last one
/// stopped) and deletes those whose update is older than the stream's first entry. The hash
/// then stays about as large as what is retained instead of growing forever.
const PUBLISH_LUA: &str = r#"
local pid = ARGV[1]
if pid ~= '' then
  local old = redis.call('HGET', KEYS[2], pid)
  if old and #redis.call('XRANGE', KEYS[1], old, old) > 0 then
    return redis.error_reply('SSEHUB_DUPLICATE_ID id is already used by a retained update')
  end
end
local n = tonumber(ARGV[4])
local fields = {}
for i = 9 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
local id
if ARGV[2] ~= '' then
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', unpack(fields))
else
  id = redis.call('XADD', KEYS[1], '*', unpack(fields))
end
if ARGV[3] ~= '' then
  local t = redis.call('TIME')
  local minid = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
  if minid > 0 then
    redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%d', minid))
  end
end
if pid ~= '' then
  redis.call('HSET', KEYS[2], pid, id)
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #first > 0 then
    local f_ms, f_seq = string.match(first[1][1], '(%d+)-(%d+)')
    f_ms, f_seq = tonumber(f_ms), tonumber(f_seq)
    local scan = redis.call('HSCAN', KEYS[2], redis.call('GET', KEYS[4]) or '0', 'COUNT', 16)
    redis.call('SET', KEYS[4], scan[1])
    local kv = scan[2]
    for i = 1, #kv, 2 do
      local ms, seq = string.match(kv[i + 1], '(%d+)-(%d+)')
      ms, seq = tonumber(ms), tonumber(seq)
      if ms and (ms < f_ms or (ms == f_ms and seq < f_seq)) then
        redis.call('HDEL', KEYS[2], kv[i])
      end
    end
  end
end
local copy = cjson.encode({id, unpack(fields)})
for i = 5, 4 + n do redis.call('HSET', KEYS[3], ARGV[i], copy) end
local op = ARGV[5 + n]
if op == 'set' then
  redis.call('HSET', KEYS[5], ARGV[6 + n], ARGV[7 + n])
  redis.call('PEXPIRE', KEYS[5], ARGV[8 + n])
elseif op == 'del' then
  redis.call('HDEL', KEYS[5], ARGV[6 + n])
end
return id
"#;

/// Writes this node's presence counts and returns the other live nodes' counts as flat
/// `field, count` pairs (field `''` is a node's subscriber total; selectors are never empty).
/// The first element says whether this node's subscriber hash (KEYS[2]) still existed when its
/// TTL was renewed (`1`/`0`).
/// KEYS: the nodes sorted set, this node's subscriber hash. ARGV: node id, TTL ms, presence key
/// prefix, subscriber total, then selector/count pairs. The per-node keys are derived here (a
/// single Redis, not Cluster).
const PRESENCE_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
local mine = ARGV[3] .. ARGV[1]
redis.call('DEL', mine)
redis.call('HSET', mine, '', ARGV[4])
for i = 5, #ARGV, 2 do redis.call('HSET', mine, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', mine, ttl)
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], 2 * ttl)
local out = {tostring(redis.call('PEXPIRE', KEYS[2], ttl))}
for _, node in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if node ~= ARGV[1] then
    local h = redis.call('HGETALL', ARGV[3] .. node)
    for i = 1, #h do out[#out + 1] = h[i] end
  end
end
return out
"#;

/// The subscriptions of every live node and the stream's last generated id, atomically: the
/// first element is the id (`''` without a stream), then every subscriber's JSON.
/// KEYS: the nodes sorted set, the stream. ARGV: subscriber hash prefix, this node's id.
const SUBSCRIPTIONS_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {''}
if redis.call('EXISTS', KEYS[2]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[2])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then out[1] = info[i + 1] end
  end
end
local nodes = redis.call('ZRANGEBYSCORE', KEYS[1], now, '+inf')
local mine = false
for _, node in ipairs(nodes) do if node == ARGV[2] then mine = true end end
if not mine then nodes[#nodes + 1] = ARGV[2] end
for _, node in ipairs(nodes) do
  local h = redis.call('HVALS', ARGV[1] .. node)
  for i = 1, #h do out[#out + 1] = h[i] end
end
return out
"#;

/// A change to this node's subscriber hash, made by the script that publishes its announcement.
#[derive(Debug, Clone)]
pub(crate) enum SubsChange {
    /// Field (subscriber id) and value (its JSON).
    Set(String, String),
    /// Field.
    Del(String),
}

/// One consistent view for resolving a subscription: the stream's last generated id, the
/// newest id deleted by `XDEL`, its first entry (id and fields), a publisher id's stream id,
/// the retained copies, and its length and count of entries ever added (they differ once
/// trimming removed some). KEYS: stream, pubids, latest. ARGV: publisher id or '', '1' for the
/// retained copies.
const SNAPSHOT_LUA: &str = r#"
local out = {'', '', '', false, false, {}, 0, 0}
if redis.call('EXISTS', KEYS[1]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    local k = info[i]
    if k == 'last-generated-id' then out[1] = info[i + 1]
    elseif k == 'max-deleted-entry-id' then out[2] = info[i + 1]
    elseif k == 'length' then out[7] = info[i + 1]
    elseif k == 'entries-added' then out[8] = info[i + 1]
    elseif k == 'first-entry' and info[i + 1] then
      out[3] = info[i + 1][1]
      out[4] = info[i + 1][2]
    end
  end
end
if ARGV[1] ~= '' then out[5] = redis.call('HGET', KEYS[2], ARGV[1]) end
if ARGV[2] == '1' then out[6] = redis.call('HGETALL', KEYS[3]) end
return out
"#;

type SnapshotReply = (
    String,
    String,
    String,
    Option<Vec<Vec<u8>>>,
    Option<String>,
    Vec<Vec<u8>>,
    u64,
    u64,
);

/// The snapshot, decoded.
struct Snapshot {
    last_generated: Option<Sid>,
    max_deleted: Sid,
    /// Entries were trimmed or deleted at some point.
    lost_some: bool,
    first: Option<StreamEntry>,
    publisher_sid: Option<Sid>,
    /// `(topic, newest update of that topic)`.
    retained: Vec<(String, StreamEntry)>,
}

fn redis_err(e: &redis::RedisError) -> String {
    format!("redis: {e}")
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
            publish: Script::new(PUBLISH_LUA),
            snapshot: Script::new(SNAPSHOT_LUA),
            presence: Script::new(PRESENCE_LUA),
            subscriptions: Script::new(SUBSCRIPTIONS_LUA),
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

/// `(id, [field, value, ...])` as Redis returns stream entries.
type RawEntry = (String, Vec<Vec<u8>>);
/// An `XREAD` answer: per stream, its new entries; nil when the block timed out.
type XreadReply = Option<Vec<(String, Vec<RawEntry>)>>;

impl Shared {
    /// Runs one Redis exchange with the configured timeout; the error is a one-line reason.
    async fn timed<T>(&self, f: impl Future<Output = redis::RedisResult<T>>) -> Result<T, String> {
        match tokio::time::timeout(self.options.timeout, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(redis_err(&e)),
            Err(_) => Err(format!(
                "redis: no answer within {} ms",
                self.options.timeout.as_millis()
            )),
        }
    }

    /// Appends an update; returns its stream id once Redis has it.
    pub(crate) async fn publish(
        &self,
        update: &crate::Update,
        subs: Option<&SubsChange>,
    ) -> Result<Sid, PublishError> {
        let (topics, private, publisher_id, event_type, retry, data) = (
            &update.topics,
            update.private,
            update.id.as_deref(),
            update.event_type.as_deref(),
            update.retry,
            update.data.as_str(),
        );
        let mut inv = self.publish.prepare_invoke();
        inv.key(&self.keys.stream)
            .key(&self.keys.pubids)
            .key(&self.keys.latest)
            .key(&self.keys.pubids_cursor)
            .key(self.subs_key())
            .arg(publisher_id.unwrap_or(""))
            .arg(
                self.options
                    .max_len
                    .map(|n| n.to_string())
                    .unwrap_or_default(),
            )
            .arg(
                self.options
                    .max_age
                    .map(|d| d.as_millis().to_string())
                    .unwrap_or_default(),
            )
            .arg(topics.len());
        for t in topics {
            inv.arg(t);
        }
        match subs {
            Some(SubsChange::Set(field, value)) => inv.arg("set").arg(field).arg(value),
            Some(SubsChange::Del(field)) => inv.arg("del").arg(field).arg(""),
            None => inv.arg("").arg("").arg(""),
        };
        inv.arg(PRESENCE_TTL.as_millis() as u64);
        let topics_json = serde_json::to_string(topics).unwrap_or_default();
        inv.arg("topics").arg(topics_json);
        inv.arg("private").arg(if private { "1" } else { "0" });
        if let Some(id) = publisher_id {
            inv.arg("id").arg(id);
        }
        if let Some(t) = event_type {
            inv.arg("type").arg(t);
        }
        if let Some(r) = retry {
            inv.arg("retry").arg(r.as_millis().to_string());
        }
        inv.arg("data").arg(data);
        inv.arg("ms").arg(now_ms().to_string());
        let mut conn = self.conn.clone();
        let reply =
            tokio::time::timeout(self.options.timeout, inv.invoke_async::<String>(&mut conn)).await;
        match reply {
            Ok(Ok(id)) => Sid::parse(&id).ok_or_else(|| {
                PublishError::Unavailable(format!("redis: unexpected stream id {id:?}"))
            }),
            Ok(Err(e)) if e.to_string().contains("SSEHUB_DUPLICATE_ID") => {
                Err(PublishError::DuplicateId)
            }
            Ok(Err(e)) => Err(PublishError::Unavailable(redis_err(&e))),
            Err(_) => Err(PublishError::Unavailable(format!(
                "redis: no answer within {} ms",
                self.options.timeout.as_millis()
            ))),
        }
    }

    async fn snapshot(
        &self,
        publisher_id: Option<&str>,
        retained: bool,
    ) -> Result<Snapshot, String> {
        let mut inv = self.snapshot.prepare_invoke();
        inv.key(&self.keys.stream)
            .key(&self.keys.pubids)
            .key(&self.keys.latest)
            .key(&self.keys.pubids_cursor)
            .arg(publisher_id.unwrap_or(""))
            .arg(if retained { "1" } else { "0" });
        let mut conn = self.conn.clone();
        let (last, deleted, first_id, first_fields, pid, copies, length, added): SnapshotReply =
            self.timed(inv.invoke_async(&mut conn)).await?;
        let first = match (Sid::parse(&first_id), first_fields) {
            (Some(_), Some(fields)) => decode((first_id, fields)),
            _ => None,
        };
        // Topic, copy, topic, copy, ...
        let retained: Vec<(String, StreamEntry)> = copies
            .chunks_exact(2)
            .filter_map(|kv| {
                let mut v: Vec<String> = serde_json::from_slice(&kv[1]).ok()?;
                if v.is_empty() {
                    return None;
                }
                let id = v.remove(0);
                let e = decode((id, v.into_iter().map(String::into_bytes).collect()))?;
                Some((String::from_utf8_lossy(&kv[0]).into_owned(), e))
            })
            .collect();
        Ok(Snapshot {
            last_generated: Sid::parse(&last),
            max_deleted: Sid::parse(&deleted).unwrap_or(Sid::ZERO),
            lost_some: added > length,
            first,
            publisher_sid: pid.as_deref().and_then(Sid::parse),
            retained,
        })
    }

    /// Publishes this node's counts (`total` subscribers, per selector) and returns the other
    /// live nodes' counts summed.
    pub(crate) async fn exchange_presence(
        &self,
        total: usize,
        selectors: &[(String, usize)],
    ) -> Result<RemotePresence, String> {
        let mut inv = self.presence.prepare_invoke();
        inv.key(&self.keys.nodes)
            .key(self.subs_key())
            .arg(&self.node)
            .arg(PRESENCE_TTL.as_millis() as u64)
            .arg(&self.keys.presence)
            .arg(total);
        for (s, n) in selectors {
            inv.arg(s).arg(n);
        }
        let mut conn = self.conn.clone();
        let pairs: Vec<String> = self.timed(inv.invoke_async(&mut conn)).await?;
        let mut remote = RemotePresence::default();
        let Some((alive, pairs)) = pairs.split_first() else {
            return Err("redis: empty presence reply".into());
        };
        remote.subs_alive = alive == "1";
        for pair in pairs.chunks_exact(2) {
            let n: usize = pair[1].parse().unwrap_or(0);
            if pair[0].is_empty() {
                remote.subscribers += n;
            } else {
                *remote.selectors.entry(pair[0].clone()).or_default() += n;
            }
        }
        Ok(remote)
    }

    /// This node's subscriber hash (`S:subs:{node}`).
    fn subs_key(&self) -> String {
        format!("{}{}", self.keys.subs, self.node)
    }

    /// The subscribers of every live node (their JSON as stored) and the stream's last
    /// generated id, read atomically.
    pub(crate) async fn list_subscriptions(&self) -> Result<(Option<Sid>, Vec<Vec<u8>>), String> {
        let mut inv = self.subscriptions.prepare_invoke();
        inv.key(&self.keys.nodes)
            .key(&self.keys.stream)
            .arg(&self.keys.subs)
            .arg(&self.node);
        let mut conn = self.conn.clone();
        let mut reply: Vec<Vec<u8>> = self.timed(inv.invoke_async(&mut conn)).await?;
        if reply.is_empty() {
            return Err("redis: empty subscriptions reply".into());
        }
        let last = String::from_utf8_lossy(&reply.remove(0)).into_owned();
        Ok((Sid::parse(&last).filter(|s| *s != Sid::ZERO), reply))
    }

    /// Replaces this node's whole subscriber hash, atomically (after it expired or missed a
    /// change). `subs`: field/value pairs.
    pub(crate) async fn rewrite_subscriptions(
        &self,
        subs: &[(String, String)],
    ) -> Result<(), String> {
        let key = self.subs_key();
        let mut pipe = redis::pipe();
        pipe.atomic();
        pipe.cmd("DEL").arg(&key).ignore();
        for (field, value) in subs {
            pipe.cmd("HSET").arg(&key).arg(field).arg(value).ignore();
        }
        pipe.cmd("PEXPIRE")
            .arg(&key)
            .arg(PRESENCE_TTL.as_millis() as u64)
            .ignore();
        let mut conn = self.conn.clone();
        self.timed(pipe.query_async::<()>(&mut conn)).await
    }

    /// Removes one subscriber from this node's hash.
    pub(crate) async fn remove_subscription(&self, field: &str) -> Result<(), String> {
        let mut conn = self.conn.clone();
        self.timed(
            redis::cmd("HDEL")
                .arg(self.subs_key())
                .arg(field)
                .query_async::<()>(&mut conn),
        )
        .await
    }

    /// Removes this node from presence at once (clean shutdown), instead of after the TTL.
    pub(crate) async fn leave_presence(&self) {
        let mut conn = self.conn.clone();
        let mut pipe = redis::pipe();
        pipe.cmd("ZREM")
            .arg(&self.keys.nodes)
            .arg(&self.node)
            .ignore()
            .cmd("DEL")
            .arg(format!("{}{}", self.keys.presence, self.node))
            .ignore()
            .cmd("DEL")
            .arg(self.subs_key())
            .ignore();
        if let Err(e) = self.timed(pipe.query_async::<()>(&mut conn)).await {
            tracing::debug!(error = %e, "redis: could not remove this node's presence");
        }
    }

    /// One `XRANGE` page from `start` (`(id` exclusive, `id` inclusive), at most `count`.
    async fn range(&self, start: String, count: usize) -> Result<Page, String> {
        let mut conn = self.conn.clone();
        let raw: Vec<RawEntry> = self
            .timed(
                redis::cmd("XRANGE")
                    .arg(&self.keys.stream)
                    .arg(start)
                    .arg("+")
                    .arg("COUNT")
                    .arg(count)
                    .query_async(&mut conn),
            )
            .await?;
        // Positions come from the raw ids, so entries skipped by `decode` still advance.
        let first = raw.first().and_then(|r| Sid::parse(&r.0));
        let last = raw.last().and_then(|r| Sid::parse(&r.0));
        Ok(Page {
            entries: raw.into_iter().filter_map(decode).collect(),
            first,
            last,
        })
    }

    /// The page after `after` as a fetch step.
    async fn step_after(&self, after: Sid, count: usize) -> Result<Step, String> {
        let p = self.range(format!("({after}"), count).await?;
        Ok(Step {
            gap: None,
            entries: p.entries,
            after: p.last.unwrap_or(after),
            exhausted: p.last.is_none(),
            lost: false,
            range: true,
        })
    }
}

/// An `XRANGE` answer: decoded entries, and the first and last stream ids it held.
struct Page {
    entries: Vec<StreamEntry>,
    first: Option<Sid>,
    last: Option<Sid>,
}

/// Decodes one stream entry and encodes its frame. `None` (with a warning) for an entry this
/// hub did not write: it is skipped, which changes no one's order.
fn decode((sid_text, fields): RawEntry) -> Option<StreamEntry> {
    let Some(sid) = Sid::parse(&sid_text) else {
        tracing::warn!(id = %sid_text, "redis: skipping a stream entry with an unexpected id");
        return None;
    };
    let mut topics = None;
    let mut private = false;
    let mut publisher_id = None;
    let mut event_type = None;
    let mut retry = None;
    let mut data = String::new();
    let mut it = fields.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let v = String::from_utf8_lossy(&v).into_owned();
        match k.as_slice() {
            b"topics" => topics = serde_json::from_str::<Vec<String>>(&v).ok(),
            b"private" => private = v == "1",
            b"id" => publisher_id = Some(v),
            b"type" => event_type = Some(v),
            b"retry" => retry = v.parse::<u64>().ok().map(Duration::from_millis),
            b"data" => data = v,
            _ => {}
        }
    }
    let Some(topics) = topics.filter(|t| !t.is_empty()) else {
        tracing::warn!(id = %sid, "redis: skipping a stream entry without topics");
        return None;
    };
    let id: Arc<str> = match &publisher_id {
        Some(p) => Arc::from(p.as_str()),
        None => Arc::from(sid.event_id()),
    };
    let frame = match crate::hub::encode_update(&id, event_type, retry, data) {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(id = %sid, error = %e, "redis: skipping a stream entry that cannot be encoded");
            return None;
        }
    };
    Some(StreamEntry {
        sid,
        id,
        publisher_id: publisher_id.is_some(),
        topics,
        private,
        frame,
    })
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What a subscription asked for that the ring could not serve.
#[derive(Debug, Clone)]
pub(crate) enum FetchStart {
    /// `Last-Event-ID`: a stream id, a publisher id, `earliest`, or anything unknown.
    After(String),
    /// `retained=latest` without a `Last-Event-ID`: the newest update of each topic these
    /// selectors match.
    Retained(Arc<[ssehub_selector::Selector]>),
    /// Lag catch-up older than the ring: from this stream id on (inclusive), which must still
    /// be in the stream.
    Resume(Sid),
}

/// One step of a fetch: frames to queue (oldest first), the stream position they reach, and
/// whether the stream had nothing more after it.
#[derive(Debug)]
pub(crate) struct Step {
    pub(crate) gap: Option<Bytes>,
    pub(crate) entries: Vec<StreamEntry>,
    pub(crate) after: Sid,
    /// The stream had nothing after the previous position.
    pub(crate) exhausted: bool,
    /// What the subscriber needs next was trimmed away: it gets the lagged event.
    pub(crate) lost: bool,
    /// `entries` are a contiguous range of the stream (may be taken in part), not retained
    /// state.
    pub(crate) range: bool,
}

type StepFuture = Pin<Box<dyn Future<Output = Result<Step, String>> + Send>>;

/// A subscriber's replay from Redis: the first step resolves its start, then pages follow
/// until the hub's ring takes over (see `Hub::redis_step`). Polled by the subscriber's
/// stream; nothing here touches the hub lock.
pub(crate) struct Fetch {
    shared: Arc<Shared>,
    page: usize,
    fut: StepFuture,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch").finish_non_exhaustive()
    }
}

impl Fetch {
    pub(crate) fn new(shared: Arc<Shared>, start: FetchStart, page: usize) -> Fetch {
        let page = page.clamp(1, PAGE);
        let s = shared.clone();
        let fut = Box::pin(async move { first_step(&s, start, page).await });
        Fetch { shared, page, fut }
    }

    pub(crate) fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Step, String>> {
        self.fut.as_mut().poll(cx)
    }

    /// Starts reading the next page after `after`.
    pub(crate) fn next_page(&mut self, after: Sid) {
        let s = self.shared.clone();
        let page = self.page;
        self.fut = Box::pin(async move { s.step_after(after, page).await });
    }
}

async fn first_step(shared: &Shared, start: FetchStart, page: usize) -> Result<Step, String> {
    let last = match start {
        FetchStart::Retained(selectors) => {
            let snap = shared.snapshot(None, true).await?;
            let after = snap.last_generated.unwrap_or(Sid::ZERO);
            // Only topics the subscriber selects (an update also retained for a topic it does
            // not select may be older than the one it does); each update once, oldest first.
            let mut entries: Vec<StreamEntry> = snap
                .retained
                .into_iter()
                .filter(|(topic, e)| e.sid <= after && selectors.iter().any(|s| s.matches(topic)))
                .map(|(_, e)| e)
                .collect();
            entries.sort_by_key(|e| e.sid);
            entries.dedup_by_key(|e| e.sid);
            return Ok(Step {
                gap: None,
                entries,
                after,
                exhausted: false,
                lost: false,
                range: false,
            });
        }
        FetchStart::Resume(from) => {
            // Inclusive start: the entry the subscriber lagged at must come first, or it was
            // trimmed meanwhile.
            let p = shared.range(from.to_string(), page).await?;
            return Ok(Step {
                gap: None,
                entries: p.entries,
                after: p.last.unwrap_or(from),
                exhausted: p.last.is_none(),
                lost: p.first != Some(from),
                range: true,
            });
        }
        FetchStart::After(last) => last,
    };
    let own = Sid::from_event_id(&last);
    let pid = if own.is_none() && last != crate::EARLIEST {
        Some(last.as_str())
    } else {
        None
    };
    let snap = shared.snapshot(pid, false).await?;
    let oldest = snap.first.as_ref().map(|e| e.id.clone());
    let target = if last == crate::EARLIEST {
        Ok(Sid::ZERO)
    } else {
        match own.or(snap.publisher_sid) {
            None => Err(crate::history::Resolved::Unknown),
            Some(x) => match snap.last_generated {
                None => Err(crate::history::Resolved::Unknown),
                Some(end) if x > end => Err(crate::history::Resolved::Unknown),
                Some(end) => {
                    // The oldest position replay can start from without a hole: the first
                    // retained entry, or the end when trimming emptied the stream.
                    let first = snap.first.as_ref().map_or(end, |e| e.sid);
                    if x < snap.max_deleted || (x < first && snap.lost_some) {
                        // Something after `x` was trimmed: the client missed it for good.
                        // (When `x` was exactly the last entry trimmed this is cautious: Redis
                        // does not tell which id preceded its first entry.)
                        Err(crate::history::Resolved::Expired)
                    } else {
                        Ok(x)
                    }
                }
            },
        }
    };
    let (gap, after) = match target {
        Ok(x) => (None, x),
        Err(g) => (
            Some(crate::hub::gap_frame(&last, g, oldest.as_deref())),
            Sid::ZERO,
        ),
    };
    let mut step = shared.step_after(after, page).await?;
    step.gap = gap;
    Ok(step)
}

/// The node's reader: `XREAD`s the stream after the last entry it delivered and hands entries
/// to `deliver` in stream order. On a Redis error it logs, backs off and reconnects, and
/// resumes after the last delivered entry, so nothing is missed or delivered twice. Ends when
/// `target` (the hub) is gone or `deliver` says it closed.
pub(crate) async fn read_loop<T: Send + Sync + 'static>(
    s: Arc<Shared>,
    target: Weak<T>,
    mut after: Sid,
    deliver: fn(&T, Vec<StreamEntry>) -> bool,
) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        if target.strong_count() == 0 {
            return;
        }
        let c = match conn.as_mut() {
            Some(c) => c,
            None => {
                let config = AsyncConnectionConfig::new()
                    .set_connection_timeout(s.options.timeout)
                    .set_response_timeout(BLOCK + s.options.timeout);
                match s
                    .client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                {
                    Ok(c) => conn.insert(c),
                    Err(e) => {
                        if !failing {
                            tracing::warn!(error = %e, stream = %s.keys.stream, "redis reader cannot connect; retrying with backoff");
                        }
                        failing = true;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                }
            }
        };
        let reply: redis::RedisResult<XreadReply> = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(PAGE)
            .arg("BLOCK")
            .arg(BLOCK.as_millis() as u64)
            .arg("STREAMS")
            .arg(&s.keys.stream)
            .arg(after.to_string())
            .query_async(c)
            .await;
        match reply {
            Ok(streams) => {
                if failing {
                    tracing::info!(after = %after, "redis reader reconnected; resuming after the last delivered entry");
                    failing = false;
                }
                backoff = BACKOFF_MIN;
                let entries: Vec<StreamEntry> = streams
                    .into_iter()
                    .flatten()
                    .flat_map(|(_, entries)| entries)
                    .filter_map(|raw| {
                        let sid = Sid::parse(&raw.0);
                        if let Some(sid) = sid {
                            after = after.max(sid);
                        }
                        decode(raw)
                    })
                    .collect();
                if entries.is_empty() {
                    continue;
                }
                let Some(t) = target.upgrade() else { return };
                if !deliver(&t, entries) {
                    return;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, after = %after, "redis reader lost its connection; reconnecting with backoff");
                }
                failing = true;
                conn = None;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}
