//! The durable log as the hub's storage ([`Durable`], for `HubBuilder::storage`): the log sets
//! the order, a publish is acknowledged once it is on disk, and replay reaches back as far as the
//! log retains.
//!
//! A publish is appended through the [`GroupCommitter`] with a frame carrying its id
//! `#{epoch}-{seq}` (the log's epoch, fixed when the data directory was created, so ids keep
//! increasing across restarts). The committer's hook runs on its writer thread after the fsync
//! and before any publisher of the group is answered, and hands the group to the hub's
//! [`Sink`] in seq order: subscribers only ever see durable updates, and a seq is never reused
//! after a crash. A record's position is `(0, seq)`.
//!
//! Resolving a `Last-Event-ID` and reading the retained latest per topic are answered at once
//! (redb reads from the page cache take microseconds), before the hub lock; pages older than
//! the hub's ring are read when the subscriber's stream polls them, outside the lock.

use std::sync::Arc;
use std::time::Duration;

use ssehub_hub::storage::{
    Append, Backend, Core, Gap, GapKind, Opened, Ordered, Position, ReadFrom, ReadFuture,
    Resolution, Sink, Step, Storage, StorageError, hub_id, parse_hub_id,
};
use ssehub_hub::{EARLIEST, HubBuilder, PublishError, Update};
use tokio::task::JoinHandle;

use crate::{
    CommitterOptions, GroupCommitter, Log, Record, RetainPolicy, StoreError, StoredRecord,
};

/// How often background retention trims the log by default.
const DEFAULT_RETAIN_EVERY: Duration = Duration::from_secs(1);

/// A hub storage on a durable [`Log`]: `Hub::builder().storage(Durable::new(log))`.
#[derive(Debug, Clone)]
pub struct Durable {
    log: Log,
    committer: CommitterOptions,
    retention: RetainPolicy,
    retain_every: Duration,
}

impl Durable {
    /// Keeps every update in `log`; group commit with the default options, no retention.
    pub fn new(log: Log) -> Durable {
        Durable {
            log,
            committer: CommitterOptions::default(),
            retention: RetainPolicy::default(),
            retain_every: DEFAULT_RETAIN_EVERY,
        }
    }

    /// Group commit sizing (default: up to 1,024 updates per fsync; `max_batch: 1` gives one
    /// fsync per update).
    pub fn committer(mut self, options: CommitterOptions) -> Self {
        self.committer = options;
        self
    }

    /// What the log retains (default everything), trimmed in the background every `every`
    /// (needs a Tokio runtime when the hub is built).
    pub fn retention(mut self, policy: RetainPolicy, every: Duration) -> Self {
        self.retention = policy;
        self.retain_every = every;
        self
    }
}

/// `Hub::builder().durable(log)`: [`HubBuilder::storage`] with [`Durable::new`].
pub trait DurableHub {
    /// Keeps every update in `log` (see [`Durable`]).
    fn durable(self, log: Log) -> HubBuilder;
}

impl DurableHub for HubBuilder {
    fn durable(self, log: Log) -> HubBuilder {
        self.storage(Durable::new(log))
    }
}

fn open_error(e: StoreError) -> StorageError {
    StorageError::Open(e.to_string())
}

impl Backend for Durable {
    fn open(&self, sink: Sink) -> Result<Opened, StorageError> {
        let log = self.log.clone();
        let epoch = log.epoch();
        let next = log.next_seq();
        let last_id = match next.checked_sub(1) {
            Some(seq) if seq >= log.first_seq() && seq > 0 => {
                log.get(seq).map_err(open_error)?.map(|r| id_of(epoch, &r))
            }
            _ => None,
        };
        let hook = move |records: &[StoredRecord]| {
            sink.deliver(records.iter().map(|r| ordered(epoch, r)).collect());
        };
        let committer =
            GroupCommitter::with_hook(log.clone(), self.committer, hook).map_err(open_error)?;
        let policy = self.retention;
        let retention = if policy.count.is_some() || policy.age.is_some() || policy.bytes.is_some()
        {
            match tokio::runtime::Handle::try_current() {
                Ok(_) => Some(crate::spawn_retention(
                    log.clone(),
                    policy,
                    self.retain_every,
                )),
                Err(_) => {
                    tracing::warn!("Hub built outside a Tokio runtime: no retention");
                    None
                }
            }
        } else {
            None
        };
        Ok(Opened {
            storage: Arc::new(DurableStorage {
                log,
                committer,
                retention,
            }),
            epoch,
            after: position(next.saturating_sub(1)),
            last_id,
        })
    }
}

/// The open storage: the log, its committer and its retention task.
struct DurableStorage {
    log: Log,
    committer: GroupCommitter,
    retention: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for DurableStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableStorage")
            .field("dir", &self.log.dir())
            .finish_non_exhaustive()
    }
}

impl Drop for DurableStorage {
    fn drop(&mut self) {
        if let Some(task) = self.retention.take() {
            task.abort();
        }
    }
}

fn position(seq: u64) -> Position {
    Position::new(0, seq)
}

/// The id an update of the log carries: its publisher's, or `#{epoch}-{seq}`.
fn id_of(epoch: u64, r: &StoredRecord) -> Arc<str> {
    match &r.record.publisher_id {
        Some(p) => Arc::from(p.as_str()),
        None => Arc::from(hub_id(epoch, r.seq)),
    }
}

fn ordered(epoch: u64, r: &StoredRecord) -> Ordered {
    Ordered {
        position: position(r.seq),
        id: id_of(epoch, r),
        publisher_id: r.record.publisher_id.is_some(),
        topics: r.record.topics.clone(),
        private: r.record.private,
        frame: r.record.frame.clone(),
    }
}

fn reason(e: &StoreError) -> String {
    e.to_string()
}

/// Where replay after `last` starts, from the log (which knows every update ever
/// acknowledged and still retained), with the oldest retained id for a gap notice.
fn resolve_in(log: &Log, last: &str) -> Result<Resolution, StoreError> {
    let first = log.first_seq();
    let from = if last == EARLIEST {
        Ok(first)
    } else if let Some(seq) = parse_hub_id(log.epoch(), last) {
        if seq == 0 || seq >= log.next_seq() {
            Err(GapKind::Unknown)
        } else if seq + 1 >= first {
            Ok(seq + 1)
        } else {
            Err(GapKind::Expired)
        }
    } else {
        match log.seq_of_publisher_id(last)? {
            Some(seq) => Ok(seq + 1),
            None => Err(GapKind::Unknown),
        }
    };
    Ok(match from {
        Ok(from) => Resolution {
            after: position(from.saturating_sub(1)),
            gap: None,
        },
        Err(kind) => Resolution {
            after: position(first.saturating_sub(1)),
            gap: Some(Gap {
                kind,
                requested: last.to_owned(),
                oldest: log
                    .read_from(first, 1)?
                    .first()
                    .map(|r| id_of(log.epoch(), r)),
            }),
        },
    })
}

/// One page from `from` (a seq, inclusive) as a step; `lost` when the log no longer starts
/// there (retention trimmed it since).
fn page(log: &Log, from: u64, count: usize, after: Position) -> Result<Step, String> {
    let records = log.read_from(from, count.max(1)).map_err(|e| reason(&e))?;
    let epoch = log.epoch();
    let last = records.last().map(|r| position(r.seq));
    Ok(Step {
        gap: None,
        lost: records.first().is_some_and(|r| r.seq != from),
        exhausted: records.is_empty(),
        entries: records.iter().map(|r| ordered(epoch, r)).collect(),
        after: last.unwrap_or(after),
        range: true,
    })
}

impl Storage for DurableStorage {
    fn append<'a>(&'a self, update: Update, core: Core<'a>) -> Append<'a> {
        if let Err(e) = update.validate().and_then(|()| core.ensure_open()) {
            return Append::Done(Err(e));
        }
        let parts = update.into_parts();
        let epoch = self.log.epoch();
        if let Some(id) = &parts.id
            && parse_hub_id(epoch, id).is_some()
        {
            return Append::Done(Err(PublishError::ReservedId));
        }
        let answer_id = parts.id.clone();
        Append::Pending(Box::pin(async move {
            // Encoding cannot fail after `validate`; the log puts the seq into the frame's id.
            let seq = self
                .committer
                .append_with(move |seq| {
                    let frame = match &parts.id {
                        Some(id) => ssehub_hub::storage::encode_update(
                            id,
                            parts.event_type,
                            parts.retry,
                            parts.data,
                        ),
                        None => ssehub_hub::storage::encode_update(
                            &hub_id(epoch, seq),
                            parts.event_type,
                            parts.retry,
                            parts.data,
                        ),
                    }
                    .unwrap_or_default();
                    Record {
                        topics: parts.topics,
                        private: parts.private,
                        publisher_id: parts.id,
                        frame,
                        published_ms: crate::now_ms(),
                    }
                })
                .await
                .map_err(|e| match e {
                    StoreError::DuplicatePublisherId(_) => PublishError::DuplicateId,
                    StoreError::Closed => PublishError::Closed,
                    e => PublishError::Unavailable(reason(&e)),
                })?;
            Ok(answer_id.unwrap_or_else(|| hub_id(epoch, seq)))
        }))
    }

    fn resolve(&self, last_event_id: &str) -> Result<Option<Resolution>, String> {
        resolve_in(&self.log, last_event_id)
            .map(Some)
            .map_err(|e| reason(&e))
    }

    fn latest(&self, selects: &dyn Fn(&str) -> bool) -> Result<Option<Vec<Ordered>>, String> {
        let epoch = self.log.epoch();
        let records = self.log.latest_matching(selects).map_err(|e| reason(&e))?;
        Ok(Some(records.iter().map(|r| ordered(epoch, r)).collect()))
    }

    fn position_of(&self, id: &str) -> Option<Position> {
        parse_hub_id(self.log.epoch(), id)
            .filter(|&seq| seq > 0)
            .map(position)
    }

    fn read(&self, from: ReadFrom, count: usize) -> Option<ReadFuture> {
        let log = self.log.clone();
        // The reads run when the stream polls (outside the hub lock), not here.
        Some(match from {
            ReadFrom::After(after) => {
                Box::pin(async move { page(&log, after.minor + 1, count, after) })
            }
            ReadFrom::At(at) => Box::pin(async move { page(&log, at.minor, count, at) }),
            ReadFrom::Resolve(last) => {
                // The hub asks `resolve` first, which always answers: this is for a caller
                // that reads without it.
                Box::pin(async move {
                    let Resolution { after, gap } =
                        resolve_in(&log, &last).map_err(|e| reason(&e))?;
                    let mut step = page(&log, after.minor + 1, count, after)?;
                    step.gap = gap;
                    Ok(step)
                })
            }
            ReadFrom::Latest(selectors) => Box::pin(async move {
                let after = position(log.next_seq().saturating_sub(1));
                let epoch = log.epoch();
                let records = log
                    .latest_matching(|t| selectors.iter().any(|s| s.matches(t)))
                    .map_err(|e| reason(&e))?;
                Ok(Step {
                    gap: None,
                    entries: records
                        .iter()
                        .filter(|r| position(r.seq) <= after)
                        .map(|r| ordered(epoch, r))
                        .collect(),
                    after,
                    exhausted: false,
                    lost: false,
                    range: false,
                })
            }),
        })
    }

    fn retained(&self) -> Option<u64> {
        Some(self.log.len())
    }
}
