//! Reading the log: a subscriber's pages beyond the hub's ring ([`first_step`]), and the
//! node's reader ([`read_loop`]) that delivers every update to the hub in position order and
//! answers this node's waiting publishers.

use std::sync::Arc;

use ssehub_hub::EARLIEST;
use ssehub_hub::storage::{Gap, GapKind, ReadFrom, Sink, Step, parse_hub_id};

use crate::db::{Db, Page};
use crate::storage::Node;
use crate::{BACKOFF_MAX, BACKOFF_MIN, PAGE, SAFETY_POLL, event_id, position};

/// A page after `after` as a step.
async fn step_after(db: &Db, after: i64, count: usize) -> Result<Step, String> {
    let Page { entries, last, .. } = db.page(after, count, false).await?;
    Ok(Step {
        gap: None,
        entries: entries.into_iter().map(|e| e.ordered).collect(),
        after: position(last.unwrap_or(after)),
        exhausted: last.is_none(),
        lost: false,
        range: true,
    })
}

/// The first page of a read: resolves where it starts (a `Last-Event-ID` against one
/// snapshot, or the retained copies), then reads the page after that.
pub(crate) async fn first_step(db: &Db, from: ReadFrom, page: usize) -> Result<Step, String> {
    let last = match from {
        ReadFrom::After(after) => return step_after(db, after.minor as i64, page).await,
        ReadFrom::At(at) => {
            let from = at.minor as i64;
            // Inclusive: the update the subscriber lagged at must come first, or retention
            // removed it meanwhile.
            let p = db.page(from, page, true).await?;
            return Ok(Step {
                gap: None,
                lost: p.first != Some(from),
                exhausted: p.last.is_none(),
                after: position(p.last.unwrap_or(from)),
                entries: p.entries.into_iter().map(|e| e.ordered).collect(),
                range: true,
            });
        }
        ReadFrom::Latest(selectors) => {
            let (after, copies) = db.latest().await?;
            // Only topics the subscriber selects (an update also retained for a topic it does
            // not select may be older than the one it does); each update once, oldest first.
            let mut entries: Vec<_> = copies
                .into_iter()
                .filter(|(topic, e)| e.pos <= after && selectors.iter().any(|s| s.matches(topic)))
                .map(|(_, e)| e)
                .collect();
            entries.sort_by_key(|e| e.pos);
            entries.dedup_by_key(|e| e.pos);
            return Ok(Step {
                gap: None,
                entries: entries.into_iter().map(|e| e.ordered).collect(),
                after: position(after),
                exhausted: false,
                lost: false,
                range: false,
            });
        }
        ReadFrom::Resolve(last) => last,
    };
    let own = parse_hub_id(db.epoch, &last).map(|p| i64::try_from(p).unwrap_or(i64::MAX));
    let publisher = if own.is_none() && last != EARLIEST {
        last.as_str()
    } else {
        ""
    };
    let snap = db.snapshot(publisher).await?;
    let target = if last == EARLIEST {
        Ok(snap.trimmed_through)
    } else {
        match own.or(snap.publisher_pos) {
            None => Err(GapKind::Unknown),
            Some(p) if p <= 0 || p > snap.last_pos => Err(GapKind::Unknown),
            // What followed `p` was removed: the client missed it for good.
            Some(p) if p < snap.trimmed_through => Err(GapKind::Expired),
            Some(p) => Ok(p),
        }
    };
    let (gap, after) = match target {
        Ok(p) => (None, p),
        Err(kind) => (
            Some(Gap {
                kind,
                requested: last.clone(),
                oldest: snap.oldest.map(|(pos, publisher)| {
                    Arc::from(publisher.unwrap_or_else(|| event_id(db.epoch, pos)))
                }),
            }),
            snap.trimmed_through,
        ),
    };
    let mut step = step_after(db, after, page).await?;
    step.gap = gap;
    Ok(step)
}

/// The node's reader: reads the rows after the last one it delivered and hands them to the
/// hub's sink in position order, then answers the publishers waiting for them. Woken by the
/// sequencer (this node's, directly, or any node's through `NOTIFY`), and every few seconds as
/// a safety net. On an error it logs, backs off and resumes after the last delivered row, so
/// nothing is missed or delivered twice. Ends when the hub is gone or closed.
pub(crate) async fn read_loop(node: Arc<Node>, sink: Sink, mut after: i64) {
    let mut backoff = BACKOFF_MIN;
    let mut failing = false;
    loop {
        if !sink.is_alive() {
            return;
        }
        match node.db.page(after, PAGE, false).await {
            Ok(page) => {
                if failing {
                    tracing::info!(
                        after,
                        "postgres reader reconnected; resuming after the last delivered update"
                    );
                    failing = false;
                }
                backoff = BACKOFF_MIN;
                if let Some(first) = page.first
                    && first != after + 1
                {
                    // Positions are dense: only retention makes a hole, when this node read
                    // slower than the log was trimmed.
                    tracing::warn!(
                        after,
                        first,
                        "postgres reader: updates were removed by retention before this node read them"
                    );
                }
                let Some(last) = page.last else {
                    wait(&node).await;
                    continue;
                };
                after = last;
                let read: Vec<(i64, i64)> = page.entries.iter().map(|e| (e.row, e.pos)).collect();
                if !page.entries.is_empty()
                    && !sink.deliver(page.entries.into_iter().map(|e| e.ordered).collect())
                {
                    return;
                }
                node.waiters.read(read);
                if !page.full {
                    wait(&node).await;
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, after, "postgres reader lost its connection; reconnecting with backoff");
                }
                failing = true;
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

/// Until the sequencer says there are new positions, or the safety-net period passes.
async fn wait(node: &Node) {
    tokio::select! {
        () = node.wake_reader.notified() => {}
        () = tokio::time::sleep(SAFETY_POLL) => {}
    }
}
