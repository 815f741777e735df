//! Active subscriptions: who is subscribed to what, listed on demand ([`crate::Hub::subscriptions`])
//! and announced as updates when a subscriber joins or leaves ([`crate::Hub::track_subscriptions`]).
//!
//! The hub knows its subscribers anyway (they are registered under its lock); this module adds a
//! stable subscriber id (`urn:uuid:` + a random v4 UUID, given at subscribe time), the listing,
//! and the announcer: one task per hub that turns each join and leave into updates (the format
//! is the caller's, e.g. Mercure's JSON-LD) and publishes them in the order the changes
//! happened for each subscriber. With a storage shared by several nodes (its
//! [`crate::storage::Cluster`] channel, e.g. Redis), the announcement of a change also records it
//! in this node's list atomically with the update, so what [`crate::Hub::subscriptions`] lists and
//! the stream of announcements agree exactly.

use std::sync::{Arc, Weak};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::error::{PublishError, SubscribeError};
use crate::hub::{Hub, Inner};
use crate::storage::Core;
use crate::{Selector, Update};

/// One subscriber as listed by [`crate::Hub::subscriptions`] and announced to
/// [`crate::Hub::track_subscriptions`].
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriberInfo {
    /// Its id, `urn:uuid:{v4 uuid}`, unique among the subscribers of every node.
    pub subscriber: String,
    /// Its topic selectors, as given.
    pub topics: Vec<String>,
    /// The matcher type of each of [`SubscriberInfo::topics`] (`Selector::match_type`), in the
    /// same order; `exact` for any missing (a node of an earlier version did not say).
    pub match_types: Vec<&'static str>,
    /// Its payload (the JWT `mercure.payload`), if any.
    pub payload: Option<Value>,
}

impl SubscriberInfo {
    /// The JSON a backend shared by several nodes stores for the subscriber (the other nodes
    /// read it back with [`SubscriberInfo::from_json`]).
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "subscriber": self.subscriber,
            "topics": self.topics,
            "match_types": self.match_types,
            "payload": self.payload,
        })
    }

    /// Reads what [`SubscriberInfo::to_json`] wrote; `None` for anything else. A matcher type
    /// this version does not know reads as `exact`, and missing ones (a node of an earlier
    /// version) as none.
    pub fn from_json(raw: &[u8]) -> Option<SubscriberInfo> {
        let v: Value = serde_json::from_slice(raw).ok()?;
        Some(SubscriberInfo {
            subscriber: v.get("subscriber")?.as_str()?.to_owned(),
            topics: v
                .get("topics")?
                .as_array()?
                .iter()
                .filter_map(|t| t.as_str().map(str::to_owned))
                .collect(),
            match_types: match v.get("match_types").and_then(|m| m.as_array()) {
                Some(types) => types
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("urlpattern") => "urlpattern",
                        Some("uri_template") => "uri_template",
                        _ => "exact",
                    })
                    .collect(),
                None => Vec::new(),
            },
            payload: v.get("payload").filter(|p| !p.is_null()).cloned(),
        })
    }
}

/// A subscriber joined (`active`) or left.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionChange {
    /// `true` when it joined, `false` when it left.
    pub active: bool,
    /// The subscriber.
    pub info: SubscriberInfo,
}

/// A [`SubscriptionChange`] as a backend shared by several nodes records it in this node's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredChange {
    /// Set the subscriber (its id) to this JSON ([`SubscriberInfo::to_json`]).
    Set(String, String),
    /// Remove the subscriber (its id).
    Del(String),
}

impl SubscriptionChange {
    /// What the change does to this node's stored list: a join sets the subscriber's entry, a
    /// leave removes it.
    pub fn stored(&self) -> StoredChange {
        let id = self.info.subscriber.clone();
        if self.active {
            StoredChange::Set(id, self.info.to_json().to_string())
        } else {
            StoredChange::Del(id)
        }
    }
}

/// What [`crate::Hub::subscriptions`] answers.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionsSnapshot {
    /// The id of the last update the hub had when the list was taken (with Redis: the
    /// stream's last entry, read in the same atomic script as the lists), `None` when there
    /// is none yet. Announcements of later changes come after it.
    pub last_event_id: Option<String>,
    /// The subscribers, sorted by id.
    pub subscribers: Vec<SubscriberInfo>,
}

/// Turns a change into the updates announcing it (e.g. one per selector).
pub type SubscriptionAnnouncer = Arc<dyn Fn(&SubscriptionChange) -> Vec<Update> + Send + Sync>;

/// Most changes the announcer publishes concurrently (one batch).
const BATCH: usize = 256;

/// The sending side, held by the hub; dropping it (with the hub) ends the task.
pub(crate) struct Tracker {
    pub(crate) tx: mpsc::UnboundedSender<Job>,
}

/// What the announcer task is asked to do, in order.
pub(crate) enum Job {
    /// Announce a join or leave.
    Change(SubscriptionChange),
    /// Cluster: this node's list expired; write it again from the hub's list (in
    /// order with the announcements, so none of them is undone).
    Resync,
}

/// The subscriber id text of a uuid.
pub(crate) fn urn(uuid: &uuid::Uuid) -> String {
    format!("urn:uuid:{}", uuid.as_hyphenated())
}

/// The announcer task: takes the changes as they come and publishes their updates. Changes are
/// taken in batches; a batch is published concurrently (durable hubs then share fsyncs) but
/// never holds two changes of one subscriber, so a subscriber's leave is always published
/// after its join.
pub(crate) async fn announce(
    hub: Weak<Inner>,
    mut rx: mpsc::UnboundedReceiver<Job>,
    announcer: SubscriptionAnnouncer,
) {
    let mut pending: Option<Job> = None;
    loop {
        let first = match pending.take() {
            Some(j) => j,
            None => match rx.recv().await {
                Some(j) => j,
                None => return,
            },
        };
        let first = match first {
            Job::Change(c) => c,
            Job::Resync => {
                let Some(hub) = Hub::from_weak(&hub) else {
                    return;
                };
                hub.resync_subscriptions().await;
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(Job::Resync) => {
                    pending = Some(Job::Resync);
                    break;
                }
                Ok(Job::Change(c)) => {
                    if batch.iter().any(|b| b.info.subscriber == c.info.subscriber) {
                        pending = Some(Job::Change(c));
                        break;
                    }
                    batch.push(c);
                }
                Err(_) => break,
            }
        }
        let Some(hub) = Hub::from_weak(&hub) else {
            return;
        };
        let jobs = batch.into_iter().map(|change| {
            let updates = announcer(&change);
            let hub = hub.clone();
            async move { hub.announce(change, updates).await }
        });
        futures_util::future::join_all(jobs).await;
    }
}

impl Hub {
    /// Announces every subscriber join and leave from now on: `announcer` turns each change
    /// into updates (e.g. Mercure's subscription events, one per selector) that the hub
    /// publishes from one task of its own, a subscriber's leave always after its join. With
    /// Redis storage it also keeps this node's subscribers in Redis, changed atomically with
    /// each announcement, so [`Hub::subscriptions`] lists every live node's. Needs a Tokio
    /// runtime; returns `false` (and changes nothing) when tracking is already on or there is
    /// no runtime.
    pub fn track_subscriptions(
        &self,
        announcer: impl Fn(&SubscriptionChange) -> Vec<Update> + Send + Sync + 'static,
    ) -> bool {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("track_subscriptions outside a Tokio runtime: not tracking");
            return false;
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        if self.inner.tracker.set(Tracker { tx }).is_err() {
            return false;
        }
        let announcer: SubscriptionAnnouncer = Arc::new(announcer);
        rt.spawn(announce(Arc::downgrade(&self.inner), rx, announcer));
        // Subscribers that joined before tracking started are listed too.
        if self.inner.storage.cluster().is_some() {
            self.queue_resync();
        }
        true
    }

    /// Whether [`Hub::track_subscriptions`] is on.
    pub fn tracks_subscriptions(&self) -> bool {
        self.inner.tracker.get().is_some()
    }

    pub(crate) fn queue_resync(&self) {
        if let Some(t) = self.inner.tracker.get() {
            let _ = t.tx.send(Job::Resync);
        }
    }

    /// Hands a join or leave to the announcer, when tracking is on.
    pub(crate) fn track(
        &self,
        active: bool,
        uuid: uuid::Uuid,
        topics: &Arc<[Selector]>,
        payload: &Option<Arc<serde_json::Value>>,
    ) {
        let Some(t) = self.inner.tracker.get() else {
            return;
        };
        let info = SubscriberInfo {
            subscriber: urn(&uuid),
            topics: topics.iter().map(|s| s.as_str().to_owned()).collect(),
            match_types: topics.iter().map(Selector::match_type).collect(),
            payload: payload.as_deref().cloned(),
        };
        let _ = t.tx.send(Job::Change(SubscriptionChange { active, info }));
    }

    /// This node's subscribers, sorted by id.
    fn local_subscribers(&self) -> Vec<SubscriberInfo> {
        let st = self.inner.state.lock();
        let mut v: Vec<SubscriberInfo> = st
            .subs
            .iter()
            .map(|(_, s)| SubscriberInfo {
                subscriber: urn(&s.uuid),
                topics: s.selectors.iter().map(|t| t.as_str().to_owned()).collect(),
                match_types: s.selectors.iter().map(Selector::match_type).collect(),
                payload: s.payload.as_deref().cloned(),
            })
            .collect();
        drop(st);
        v.sort_by(|a, b| a.subscriber.cmp(&b.subscriber));
        v
    }

    /// The active subscribers and the id of the last update, for a subscriptions API.
    ///
    /// Without Redis: this hub's subscribers, taken under its lock. With Redis and
    /// [`Hub::track_subscriptions`] on: every live node's, as recorded with their
    /// announcements, and the stream's last id, read in one atomic script (an announcement
    /// after `last_event_id` is a change the list does not show yet). With Redis and tracking
    /// off: this node's only.
    pub async fn subscriptions(&self) -> Result<SubscriptionsSnapshot, SubscribeError> {
        match self.inner.storage.cluster() {
            Some(cluster) if self.tracks_subscriptions() => {
                let (last_event_id, mut subscribers) = cluster
                    .subscriptions()
                    .await
                    .map_err(SubscribeError::Unavailable)?;
                subscribers.sort_by(|a, b| a.subscriber.cmp(&b.subscriber));
                subscribers.dedup_by(|a, b| a.subscriber == b.subscriber);
                Ok(SubscriptionsSnapshot {
                    last_event_id,
                    subscribers,
                })
            }
            _ => {
                // The id first: a change after it may already be in the list (it is then
                // announced again after the id, which a client applies idempotently).
                let last_event_id = self.last_event_id();
                Ok(SubscriptionsSnapshot {
                    last_event_id,
                    subscribers: self.local_subscribers(),
                })
            }
        }
    }

    /// Publishes the updates announcing one change, in order. With a cluster channel the
    /// first one also records the change in this node's list, atomically.
    pub(crate) async fn announce(&self, change: SubscriptionChange, updates: Vec<Update>) {
        let cluster = self.inner.storage.cluster();
        // Only the first update carries the change to the list.
        let mut carry = cluster.is_some();
        for update in updates {
            let carries = std::mem::take(&mut carry);
            let res = match cluster {
                Some(c) if carries => {
                    let core = Core { inner: &self.inner };
                    self.complete(c.append_announcing(update, Some(&change), core))
                        .await
                }
                _ => self.publish(update).await,
            };
            if let Err(e) = res {
                // Closed at shutdown is expected; anything else loses one announcement.
                if !matches!(e, PublishError::Closed) {
                    tracing::warn!(error = %e, subscriber = %change.info.subscriber, "could not announce a subscription change");
                    if carries {
                        // The list missed the change too: have it rewritten once the
                        // cluster answers.
                        self.inner.mark_subs_dirty();
                    }
                }
                return;
            }
        }
        // No update to carry it (an announcer that returned none): record it alone.
        if let (true, Some(c)) = (carry, cluster)
            && let Err(e) = c.record_change(&change).await
        {
            tracing::warn!(error = %e, "cluster: could not record a subscription change");
            self.inner.mark_subs_dirty();
        }
    }

    /// Cluster: writes this node's list again from the local one.
    pub(crate) async fn resync_subscriptions(&self) {
        let Some(c) = self.inner.storage.cluster() else {
            return;
        };
        if let Err(e) = c.rewrite_subscriptions(&self.local_subscribers()).await {
            tracing::debug!(error = %e, "cluster: could not rewrite this node's subscribers");
            self.inner.mark_subs_dirty();
        }
    }
}
