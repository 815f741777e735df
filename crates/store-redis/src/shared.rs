//! [`Shared`]: one node's connection to the stream and everything it asks Redis (publish,
//! snapshot, pages, presence, subscriber lists), each exchange bounded by the command timeout.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Client, Script};
use ssehub_hub::PublishError;
use ssehub_hub::storage::{RemotePresence, Step};

use crate::sid::Sid;
use crate::{PRESENCE_TTL, RedisOptions, StreamEntry};

pub(crate) struct Keys {
    pub(crate) stream: String,
    pub(crate) pubids: String,
    /// Where the pruning scan of `pubids` resumes (see the publish script).
    pub(crate) pubids_cursor: String,
    pub(crate) latest: String,
    pub(crate) nodes: String,
    /// Prefix of the per-node presence hashes (`S:presence:`).
    pub(crate) presence: String,
    /// Prefix of the per-node subscriber hashes (`S:subs:`).
    pub(crate) subs: String,
}

pub(crate) struct Shared {
    pub(crate) client: Client,
    pub(crate) conn: ConnectionManager,
    pub(crate) keys: Keys,
    pub(crate) options: RedisOptions,
    pub(crate) publish: Script,
    pub(crate) snapshot: Script,
    pub(crate) presence: Script,
    pub(crate) subscriptions: Script,
    /// This process's name among the stream's nodes (for presence).
    pub(crate) node: String,
}

pub(crate) use ssehub_hub::StoredChange as SubsChange;

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
pub(crate) struct Snapshot {
    pub(crate) last_generated: Option<Sid>,
    pub(crate) max_deleted: Sid,
    /// Entries were trimmed or deleted at some point.
    pub(crate) lost_some: bool,
    pub(crate) first: Option<StreamEntry>,
    pub(crate) publisher_sid: Option<Sid>,
    /// `(topic, newest update of that topic)`.
    pub(crate) retained: Vec<(String, StreamEntry)>,
}

pub(crate) fn redis_err(e: &redis::RedisError) -> String {
    format!("redis: {e}")
}

/// `(id, [field, value, ...])` as Redis returns stream entries.
pub(crate) type RawEntry = (String, Vec<Vec<u8>>);
/// An `XREAD` answer: per stream, its new entries; nil when the block timed out.
pub(crate) type XreadReply = Option<Vec<(String, Vec<RawEntry>)>>;

impl Shared {
    /// Runs one Redis exchange with the configured timeout; the error is a one-line reason.
    pub(crate) async fn timed<T>(
        &self,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, String> {
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
        update: &ssehub_hub::Update,
        subs: Option<&SubsChange>,
    ) -> Result<Sid, PublishError> {
        let (topics, private, publisher_id, event_type, retry, data) = (
            update.topics(),
            update.is_private(),
            update.id_str(),
            update.event_type_str(),
            update.retry_duration(),
            update.data_str(),
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

    pub(crate) async fn snapshot(
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
    pub(crate) async fn range(&self, start: String, count: usize) -> Result<Page, String> {
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
    pub(crate) async fn step_after(&self, after: Sid, count: usize) -> Result<Step, String> {
        let p = self.range(format!("({after}"), count).await?;
        Ok(Step {
            gap: None,
            entries: p.entries.into_iter().map(StreamEntry::ordered).collect(),
            after: p.last.unwrap_or(after).into(),
            exhausted: p.last.is_none(),
            lost: false,
            range: true,
        })
    }
}

/// An `XRANGE` answer: decoded entries, and the first and last stream ids it held.
pub(crate) struct Page {
    pub(crate) entries: Vec<StreamEntry>,
    pub(crate) first: Option<Sid>,
    pub(crate) last: Option<Sid>,
}

/// Decodes one stream entry and encodes its frame. `None` (with a warning) for an entry this
/// hub did not write: it is skipped, which changes no one's order.
pub(crate) fn decode((sid_text, fields): RawEntry) -> Option<StreamEntry> {
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
    let frame = match ssehub_hub::storage::encode_update(&id, event_type, retry, data) {
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
