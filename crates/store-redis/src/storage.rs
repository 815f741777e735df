//! The hub's view of Redis: [`RedisStorage`] implements the storage seam (publish through the
//! atomic script, pages beyond the ring, the reader task) and its cluster channel (presence
//! and subscriber lists shared by the stream's nodes).

use std::sync::Arc;

use parking_lot::Mutex;
use ssehub_hub::storage::{
    Append, Cluster, Core, Listed, Position, ReadFrom, ReadFuture, RemotePresence, Sink, Storage,
    StorageError, StorageFuture,
};
use ssehub_hub::{PublishError, SubscriberInfo, SubscriptionChange, Update};
use tokio::task::JoinHandle;

use crate::PAGE;
use crate::read::{first_step, read_loop};
use crate::shared::{Shared, SubsChange};
use crate::sid::Sid;

/// The storage a Redis-backed hub holds; stops the reader when the hub goes away.
pub(crate) struct RedisStorage {
    shared: Arc<Shared>,
    /// Where this node's reader starts: the stream's last entry when it connected.
    start: Sid,
    /// The reader task, once started.
    reader: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStorage")
            .field("stream", &self.shared.keys.stream)
            .finish_non_exhaustive()
    }
}

impl RedisStorage {
    pub(crate) fn new(shared: Arc<Shared>, start: Sid) -> RedisStorage {
        RedisStorage {
            shared,
            start,
            reader: Mutex::new(None),
        }
    }
}

impl Drop for RedisStorage {
    fn drop(&mut self) {
        if let Some(task) = self.reader.get_mut().take() {
            task.abort();
        }
    }
}

impl Storage for RedisStorage {
    fn start(&self, sink: &Sink) -> Result<(), StorageError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| StorageError::NoRuntime("the Redis stream reader"))?;
        let task = rt.spawn(read_loop(self.shared.clone(), sink.clone(), self.start));
        *self.reader.lock() = Some(task);
        Ok(())
    }

    fn append<'a>(&'a self, update: Update, core: Core<'a>) -> Append<'a> {
        self.append_announcing(update, None, core)
    }

    fn position_of(&self, id: &str) -> Option<Position> {
        Sid::from_event_id(id).map(Position::from)
    }

    fn read(&self, from: ReadFrom, page: usize) -> Option<ReadFuture> {
        let shared = self.shared.clone();
        let page = page.clamp(1, PAGE);
        Some(Box::pin(
            async move { first_step(&shared, from, page).await },
        ))
    }

    fn cluster(&self) -> Option<&dyn Cluster> {
        Some(self)
    }
}

impl Cluster for RedisStorage {
    fn exchange_presence(
        &self,
        total: usize,
        selectors: Vec<(String, usize)>,
    ) -> StorageFuture<'static, Result<RemotePresence, String>> {
        let shared = self.shared.clone();
        Box::pin(async move { shared.exchange_presence(total, &selectors).await })
    }

    fn leave(&self) -> StorageFuture<'static, ()> {
        let shared = self.shared.clone();
        Box::pin(async move { shared.leave_presence().await })
    }

    /// A Redis-backed publish: one atomic script appends the update (and applies `change` to
    /// this node's subscriber hash); the answer is its stream id (or the publisher's id).
    /// Delivery, here as on every node, comes from the reader.
    fn append_announcing<'a>(
        &'a self,
        update: Update,
        change: Option<&'a SubscriptionChange>,
        core: Core<'a>,
    ) -> Append<'a> {
        if let Err(e) = update.validate().and_then(|()| core.ensure_open()) {
            return Append::Done(Err(e));
        }
        if update.id_str().and_then(Sid::from_event_id).is_some() {
            // It would read as a stream position on replay.
            return Append::Done(Err(PublishError::ReservedId));
        }
        let subs = change.map(SubscriptionChange::stored);
        Append::Pending(Box::pin(async move {
            let sid = self.shared.publish(&update, subs.as_ref()).await?;
            Ok(match update.id_str() {
                Some(id) => id.to_owned(),
                None => sid.event_id(),
            })
        }))
    }

    fn record_change(
        &self,
        change: &SubscriptionChange,
    ) -> StorageFuture<'static, Result<(), String>> {
        let shared = self.shared.clone();
        let change = change.stored();
        Box::pin(async move {
            match change {
                SubsChange::Set(field, value) => {
                    shared.rewrite_subscriptions(&[(field, value)]).await
                }
                SubsChange::Del(field) => shared.remove_subscription(&field).await,
            }
        })
    }

    fn rewrite_subscriptions(
        &self,
        all: &[SubscriberInfo],
    ) -> StorageFuture<'static, Result<(), String>> {
        let shared = self.shared.clone();
        let all: Vec<(String, String)> = all
            .iter()
            .map(|i| (i.subscriber.clone(), i.to_json().to_string()))
            .collect();
        Box::pin(async move { shared.rewrite_subscriptions(&all).await })
    }

    fn subscriptions(&self) -> StorageFuture<'static, Result<Listed, String>> {
        let shared = self.shared.clone();
        Box::pin(async move {
            let (last, raw) = shared.list_subscriptions().await?;
            Ok((
                last.map(Sid::event_id),
                raw.iter()
                    .filter_map(|v| SubscriberInfo::from_json(v))
                    .collect(),
            ))
        })
    }
}
