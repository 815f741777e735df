//! The RAM-only backend (the default): the hub's ring is the whole log. A publish is ordered
//! by the ring itself under the hub lock and never waits; nothing is read beyond the ring, so a
//! `Last-Event-ID` the ring no longer holds gets the gap notice, and a subscriber that lags past
//! the ring is closed with the lagged event.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{Append, Backend, Core, Opened, Position, Sink, Storage, StorageError};
use crate::error::PublishError;
use crate::update::Update;

/// Keeps the history in the hub's ring ([`crate::HubBuilder::history_size`]) only.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryBackend;

impl Backend for MemoryBackend {
    fn open(&self, _sink: Sink) -> Result<Opened, StorageError> {
        Ok(opened())
    }
}

/// A RAM-only log, opened.
pub(crate) fn opened() -> Opened {
    Opened {
        storage: Arc::new(Memory),
        // Ids of this run are `#{boot ms}-{seq}`: an id from an earlier run is unknown, never
        // mistaken for a position in this one.
        epoch: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        after: Position::ZERO,
        last_id: None,
    }
}

#[derive(Debug)]
struct Memory;

impl Storage for Memory {
    fn append<'a>(&'a self, update: Update, core: Core<'a>) -> Append<'a> {
        Append::Done(core.order_locally(update))
    }

    fn append_now(&self, update: Update, core: Core<'_>) -> Result<String, PublishError> {
        core.order_locally(update)
    }
}
