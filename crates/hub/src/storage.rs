//! Where a hub keeps its updates. The hub core sees only [`Storage`]:
//!
//! - `Memory`: the history ring is the whole history (today's RAM-only hub). A publish never
//!   waits and never allocates beyond the frame and its ring entry.
//! - `Durable`: an [`ssehub_store::Log`] sets the order. A publish is appended through the
//!   group committer with a frame carrying its id `#{epoch}-{seq}`; the committer's hook fans it
//!   out under the hub lock, in seq order, after the fsync and before the publisher is
//!   answered. So subscribers only ever see durable updates, and seqs never repeat across
//!   crashes. The ring stays as a cache of the newest updates; replay and catch-up from older
//!   points read the log outside the hub lock, then join live delivery under it.
//! - `Redis`: a Redis stream shared by several nodes sets the order (`crate::redis_store`).
//!   Each node's reader delivers the stream's entries under the hub lock with local seqs; the
//!   ring caches the newest; replay from older points is read from Redis by the subscriber's
//!   stream, then joins live delivery under the lock.

use std::sync::Arc;
use std::time::Duration;

use ssehub_store::{GroupCommitter, Log, StoreError, StoredRecord};
use tokio::task::JoinHandle;

use crate::history::{Resolved, hub_id, parse_hub_id};

/// How often background retention trims the log by default.
pub(crate) const DEFAULT_RETAIN_EVERY: Duration = Duration::from_secs(1);

pub(crate) enum Storage {
    Memory,
    Durable(Durable),
    /// A Redis stream shared with other nodes (`crate::redis_store`).
    Redis(crate::redis_store::RedisStorage),
}

pub(crate) struct Durable {
    pub(crate) log: Log,
    pub(crate) committer: GroupCommitter,
    pub(crate) retention: Option<JoinHandle<()>>,
}

impl Drop for Durable {
    fn drop(&mut self) {
        if let Some(task) = self.retention.take() {
            task.abort();
        }
    }
}

impl Durable {
    /// The id an update of the log carries: its publisher's, or `#{epoch}-{seq}`.
    pub(crate) fn id_of(&self, r: &StoredRecord) -> Arc<str> {
        id_of(self.log.epoch(), r)
    }

    /// Where replay after `last` starts, from the log (which knows every update ever
    /// acknowledged and still retained), with the oldest retained id for a gap notice.
    pub(crate) fn resolve(&self, last: &str) -> Result<Resolved, StoreError> {
        let first = self.log.first_seq();
        if last == crate::EARLIEST {
            return Ok(Resolved::From(first));
        }
        if let Some(seq) = parse_hub_id(self.log.epoch(), last) {
            return Ok(if seq == 0 || seq >= self.log.next_seq() {
                Resolved::Unknown
            } else if seq + 1 >= first {
                Resolved::From(seq + 1)
            } else {
                Resolved::Expired
            });
        }
        Ok(match self.log.seq_of_publisher_id(last)? {
            Some(seq) => Resolved::From(seq + 1),
            None => Resolved::Unknown,
        })
    }

    /// The id of the oldest retained update.
    pub(crate) fn oldest_id(&self) -> Result<Option<Arc<str>>, StoreError> {
        Ok(self
            .log
            .read_from(self.log.first_seq(), 1)?
            .first()
            .map(|r| self.id_of(r)))
    }
}

pub(crate) fn id_of(epoch: u64, r: &StoredRecord) -> Arc<str> {
    match &r.record.publisher_id {
        Some(p) => Arc::from(p.as_str()),
        None => Arc::from(hub_id(epoch, r.seq)),
    }
}

pub(crate) fn unavailable(e: &StoreError) -> String {
    e.to_string()
}
