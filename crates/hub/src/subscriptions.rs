//! Active subscriptions: who is subscribed to what, listed on demand ([`crate::Hub::subscriptions`])
//! and announced as updates when a subscriber joins or leaves ([`crate::Hub::track_subscriptions`]).
//!
//! The hub knows its subscribers anyway (they are registered under its lock); this module adds a
//! stable subscriber id (`urn:uuid:` + a random v4 UUID, given at subscribe time), the listing,
//! and the announcer: one task per hub that turns each join and leave into updates (the format
//! is the caller's, e.g. Mercure's JSON-LD) and publishes them in the order the changes
//! happened for each subscriber. With Redis storage, the announcement of a change also records
//! it in this node's subscriber hash in the same atomic script as the update, so what
//! [`crate::Hub::subscriptions`] lists and the stream of announcements agree exactly (see
//! `redis_store`).

use std::sync::{Arc, Weak};

use serde_json::Value;
use tokio::sync::mpsc;

use crate::Update;

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

/// A subscriber joined (`active`) or left.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscriptionChange {
    /// `true` when it joined, `false` when it left.
    pub active: bool,
    /// The subscriber.
    pub info: SubscriberInfo,
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
    /// Redis: this node's subscriber hash expired; write it again from the hub's list (in
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
    hub: Weak<crate::hub::Inner>,
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
                let Some(hub) = crate::Hub::from_weak(&hub) else {
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
        let Some(hub) = crate::Hub::from_weak(&hub) else {
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
