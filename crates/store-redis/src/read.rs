//! Reading the stream: a subscriber's pages beyond the hub's ring ([`first_step`], then
//! [`Shared::step_after`]), and the node's reader ([`read_loop`]) that delivers every entry to
//! the hub in stream order.

use std::sync::Arc;

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use ssehub_hub::EARLIEST;
use ssehub_hub::storage::{Gap, GapKind, Ordered, ReadFrom, Sink, Step};

use crate::shared::{Shared, XreadReply, decode};
use crate::sid::Sid;
use crate::{BACKOFF_MAX, BACKOFF_MIN, BLOCK, PAGE, StreamEntry};

/// The first page of a read: resolves where it starts (a `Last-Event-ID` against one atomic
/// snapshot, or the retained copies), then reads the page after that.
pub(crate) async fn first_step(
    shared: &Shared,
    start: ReadFrom,
    page: usize,
) -> Result<Step, String> {
    let last = match start {
        ReadFrom::After(after) => return shared.step_after(after.into(), page).await,
        ReadFrom::Latest(selectors) => {
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
                entries: entries.into_iter().map(StreamEntry::ordered).collect(),
                after: after.into(),
                exhausted: false,
                lost: false,
                range: false,
            });
        }
        ReadFrom::At(at) => {
            let from = Sid::from(at);
            // Inclusive start: the entry the subscriber lagged at must come first, or it was
            // trimmed meanwhile.
            let p = shared.range(from.to_string(), page).await?;
            return Ok(Step {
                gap: None,
                entries: p.entries.into_iter().map(StreamEntry::ordered).collect(),
                after: p.last.unwrap_or(from).into(),
                exhausted: p.last.is_none(),
                lost: p.first != Some(from),
                range: true,
            });
        }
        ReadFrom::Resolve(last) => last,
    };
    let own = Sid::from_event_id(&last);
    let pid = if own.is_none() && last != EARLIEST {
        Some(last.as_str())
    } else {
        None
    };
    let snap = shared.snapshot(pid, false).await?;
    let oldest = snap.first.as_ref().map(|e| e.id.clone());
    let target = if last == EARLIEST {
        Ok(Sid::ZERO)
    } else {
        match own.or(snap.publisher_sid) {
            None => Err(GapKind::Unknown),
            Some(x) => match snap.last_generated {
                None => Err(GapKind::Unknown),
                Some(end) if x > end => Err(GapKind::Unknown),
                Some(end) => {
                    // The oldest position replay can start from without a hole: the first
                    // retained entry, or the end when trimming emptied the stream.
                    let first = snap.first.as_ref().map_or(end, |e| e.sid);
                    if x < snap.max_deleted || (x < first && snap.lost_some) {
                        // Something after `x` was trimmed: the client missed it for good.
                        // (When `x` was exactly the last entry trimmed this is cautious: Redis
                        // does not tell which id preceded its first entry.)
                        Err(GapKind::Expired)
                    } else {
                        Ok(x)
                    }
                }
            },
        }
    };
    let (gap, after) = match target {
        Ok(x) => (None, x),
        Err(kind) => (
            Some(Gap {
                kind,
                requested: last.clone(),
                oldest,
            }),
            Sid::ZERO,
        ),
    };
    let mut step = shared.step_after(after, page).await?;
    step.gap = gap;
    Ok(step)
}

/// The node's reader: `XREAD`s the stream after the last entry it delivered and hands entries
/// to the hub's sink in stream order. On a Redis error it logs, backs off and reconnects, and
/// resumes after the last delivered entry, so nothing is missed or delivered twice. Ends when
/// the hub is gone or closed.
pub(crate) async fn read_loop(s: Arc<Shared>, sink: Sink, mut after: Sid) {
    let mut conn: Option<MultiplexedConnection> = None;
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        if !sink.is_alive() {
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
                let entries: Vec<Ordered> = streams
                    .into_iter()
                    .flatten()
                    .flat_map(|(_, entries)| entries)
                    .filter_map(|raw| {
                        let sid = Sid::parse(&raw.0);
                        if let Some(sid) = sid {
                            after = after.max(sid);
                        }
                        decode(raw).map(StreamEntry::ordered)
                    })
                    .collect();
                if entries.is_empty() {
                    continue;
                }
                if !sink.deliver(entries) {
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
