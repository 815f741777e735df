//! The hub's view of PostgreSQL: [`PostgresStorage`] implements the storage seam (publish =
//! insert, then wait for the position; pages beyond the ring; the node's three tasks) and its
//! cluster channel (presence and subscriber lists shared by the schema's nodes).

use std::sync::Arc;

use parking_lot::Mutex;
use ssehub_hub::storage::{
    Append, Cluster, Core, Listed, Position, ReadFrom, ReadFuture, RemotePresence, Sink, Storage,
    StorageError, StorageFuture, parse_hub_id,
};
use ssehub_hub::{PublishError, SubscriberInfo, SubscriptionChange, Update};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::read::{first_step, read_loop};
use crate::waiters::{Wait, Waiters};
use crate::{PAGE, event_id, listen, sequencer};

/// One hub's presence in the shared log: its name among the nodes, its waiting publishers,
/// and how its tasks wake each other.
pub(crate) struct Node {
    pub(crate) db: Arc<Db>,
    /// This node's name in `nodes` and `subscribers`.
    pub(crate) name: String,
    pub(crate) waiters: Waiters,
    /// Rows to order: this node inserted some, or an application's commit notified.
    pub(crate) wake_sequencer: Notify,
    /// Positions to read: a step committed.
    pub(crate) wake_reader: Notify,
}

impl Node {
    /// Waits until the reader read row `row`, and returns its position. After the timeout the
    /// row is looked up directly (it may have been ordered while this node's reader is behind).
    async fn position(&self, row: i64) -> Result<i64, PublishError> {
        let rx = match self.waiters.wait(row) {
            Wait::Known(pos) => return Ok(pos),
            Wait::Pending(rx) => rx,
        };
        let timeout = self.db.options.timeout;
        if let Ok(Ok(pos)) = tokio::time::timeout(timeout, rx).await {
            return Ok(pos);
        }
        self.waiters.forget(row);
        match self.db.position_of_row(row).await {
            Ok(Some(pos)) => Ok(pos),
            Ok(None) => Err(PublishError::Unavailable(format!(
                "postgres: the update was committed but not ordered within {} ms; it will be \
                 delivered once it is (a retry may deliver it twice)",
                timeout.as_millis()
            ))),
            Err(e) => Err(PublishError::Unavailable(e)),
        }
    }
}

/// The storage a PostgreSQL-backed hub holds; stops its tasks when the hub goes away.
pub(crate) struct PostgresStorage {
    node: Arc<Node>,
    /// Where this node's reader starts: the newest position when it connected.
    start: i64,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for PostgresStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStorage")
            .field("schema", &self.node.db.names.schema)
            .field("node", &self.node.name)
            .finish_non_exhaustive()
    }
}

impl PostgresStorage {
    pub(crate) fn new(db: Arc<Db>, start: i64) -> PostgresStorage {
        // Unique enough among a schema's nodes: process id and start time in ns.
        let name = format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        PostgresStorage {
            node: Arc::new(Node {
                db,
                name,
                waiters: Waiters::default(),
                wake_sequencer: Notify::new(),
                wake_reader: Notify::new(),
            }),
            start,
            tasks: Mutex::new(Vec::new()),
        }
    }
}

impl Drop for PostgresStorage {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

/// Whether `id` has the shape of a hub id (`#{a}-{b}` or the bare `{a}-{b}`): refused as a
/// publisher id, as it would read as a position on replay (the table refuses it too).
fn hub_shaped(id: &str) -> bool {
    let bare = id.strip_prefix('#').unwrap_or(id);
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    bare.split_once('-')
        .is_some_and(|(a, b)| digits(a) && digits(b))
}

impl Storage for PostgresStorage {
    fn start(&self, sink: &Sink) -> Result<(), StorageError> {
        let rt = tokio::runtime::Handle::try_current()
            .map_err(|_| StorageError::NoRuntime("the PostgreSQL reader"))?;
        let node = &self.node;
        let mut tasks = self.tasks.lock();
        tasks.push(rt.spawn(listen::listen_loop(node.clone(), sink.clone())));
        tasks.push(rt.spawn(sequencer::run(node.clone(), sink.clone())));
        tasks.push(rt.spawn(read_loop(node.clone(), sink.clone(), self.start)));
        Ok(())
    }

    fn append<'a>(&'a self, update: Update, core: Core<'a>) -> Append<'a> {
        self.append_announcing(update, None, core)
    }

    fn position_of(&self, id: &str) -> Option<Position> {
        parse_hub_id(self.node.db.epoch, id)
            .filter(|&p| p > 0)
            .map(|p| Position::new(0, p))
    }

    fn read(&self, from: ReadFrom, page: usize) -> Option<ReadFuture> {
        let db = self.node.db.clone();
        let page = page.clamp(1, PAGE);
        Some(Box::pin(async move { first_step(&db, from, page).await }))
    }

    fn cluster(&self) -> Option<&dyn Cluster> {
        Some(self)
    }
}

impl Cluster for PostgresStorage {
    fn exchange_presence(
        &self,
        total: usize,
        selectors: Vec<(String, usize)>,
    ) -> StorageFuture<'static, Result<RemotePresence, String>> {
        let node = self.node.clone();
        Box::pin(async move {
            let mine: serde_json::Map<String, serde_json::Value> =
                selectors.into_iter().map(|(s, n)| (s, n.into())).collect();
            let (alive, others) = node
                .db
                .exchange_presence(
                    &node.name,
                    total as i64,
                    serde_json::Value::Object(mine).to_string(),
                )
                .await?;
            let others: Vec<(usize, std::collections::HashMap<String, usize>)> =
                serde_json::from_str(&others)
                    .map_err(|e| format!("postgres: unexpected presence reply: {e}"))?;
            let mut remote = RemotePresence::default();
            remote.subs_alive = alive;
            for (n, per_selector) in others {
                remote.subscribers += n;
                for (s, c) in per_selector {
                    *remote.selectors.entry(s).or_default() += c;
                }
            }
            Ok(remote)
        })
    }

    fn leave(&self) -> StorageFuture<'static, ()> {
        let node = self.node.clone();
        Box::pin(async move {
            if let Err(e) = node.db.leave(&node.name).await {
                tracing::debug!(error = %e, "postgres: could not remove this node's presence");
            }
        })
    }

    /// A PostgreSQL-backed publish: one statement inserts the update (and applies `change` to
    /// this node's subscriber list); this node's sequencer orders it; the answer comes once
    /// this node's reader has read it back with its position. Delivery, here as on every node,
    /// comes from the reader.
    fn append_announcing<'a>(
        &'a self,
        update: Update,
        change: Option<&'a SubscriptionChange>,
        core: Core<'a>,
    ) -> Append<'a> {
        if let Err(e) = update.validate().and_then(|()| core.ensure_open()) {
            return Append::Done(Err(e));
        }
        if update.id_str().is_some_and(hub_shaped) {
            return Append::Done(Err(PublishError::ReservedId));
        }
        let subs = change.map(SubscriptionChange::stored);
        Append::Pending(Box::pin(async move {
            let node = &self.node;
            let row = node.db.insert(&update, &node.name, subs.as_ref()).await?;
            node.wake_sequencer.notify_one();
            let pos = node.position(row).await?;
            Ok(match update.id_str() {
                Some(id) => id.to_owned(),
                None => event_id(node.db.epoch, pos),
            })
        }))
    }

    fn record_change(
        &self,
        change: &SubscriptionChange,
    ) -> StorageFuture<'static, Result<(), String>> {
        let node = self.node.clone();
        let change = change.stored();
        Box::pin(async move { node.db.record_change(&node.name, &change).await })
    }

    fn rewrite_subscriptions(
        &self,
        all: &[SubscriberInfo],
    ) -> StorageFuture<'static, Result<(), String>> {
        let node = self.node.clone();
        let all =
            serde_json::Value::Array(all.iter().map(SubscriberInfo::to_json).collect()).to_string();
        Box::pin(async move { node.db.rewrite_subscriptions(&node.name, all).await })
    }

    fn subscriptions(&self) -> StorageFuture<'static, Result<Listed, String>> {
        let node = self.node.clone();
        Box::pin(async move {
            // Order what is committed first: a change in the list then has its announcement
            // at or before the id listed, but for those committed in between (announced again
            // after the id, which a client applies idempotently). Never one the client misses:
            // a change committed after the read is ordered after the id.
            node.db.sequence().await?;
            let (last, raw) = node.db.subscriptions(&node.name).await?;
            Ok((
                (last > 0).then(|| event_id(node.db.epoch, last)),
                raw.iter()
                    .filter_map(|v| SubscriberInfo::from_json(v.as_bytes()))
                    .collect(),
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_shaped_ids_are_refused_as_publisher_ids() {
        for shaped in ["#1-2", "1-2", "#1765000000000-42"] {
            assert!(hub_shaped(shaped), "{shaped}");
        }
        for free in ["#a-1", "1-", "-1", "#1-2-3", "mine", "urn:x:1-2", "#"] {
            assert!(!hub_shaped(free), "{free}");
        }
    }

    #[test]
    fn subscriber_info_round_trips_through_json() {
        let info = SubscriberInfo {
            subscriber: "urn:uuid:1".into(),
            topics: vec!["a".into(), "https://e.com/{id}".into()],
            match_types: vec!["exact", "urlpattern"],
            payload: Some(serde_json::json!({"user": 1})),
        };
        let back = SubscriberInfo::from_json(info.to_json().to_string().as_bytes()).unwrap();
        assert_eq!(back, info);
        assert!(SubscriberInfo::from_json(b"not json").is_none());
    }
}
