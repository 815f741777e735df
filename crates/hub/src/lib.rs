//! The ssehub core: topics and selectors, fan-out, history and replay, presence.
//!
//! A [`Hub`] is a cheap-to-clone handle. Publishers call [`Hub::publish`]; each subscriber gets a
//! [`SubscriberStream`] of ready-to-write `text/event-stream` bytes from [`Hub::subscribe`]. The
//! HTTP faces (the Mercure API, your own axum routes) live in `ssehub-server`; this crate does
//! no I/O of its own: where updates are kept is a storage backend behind [`storage`], given to
//! [`HubBuilder::storage`] (the RAM ring by default).
//!
//! ```
//! use futures_util::StreamExt;
//! use ssehub_hub::{Hub, Subscription, Update};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::builder().history_size(1000).build();
//! let mut stream = hub.subscribe(Subscription::new().topic("https://example.com/books/{id}")?)?;
//! let id = hub.publish(Update::new("https://example.com/books/1", "Dune")).await?;
//! let bytes = stream.next().await.unwrap();
//! assert_eq!(bytes, format!("id: {id}\ndata: Dune\n\n"));
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! - **One order.** Every update gets the next position in one total order; every subscriber
//!   receives the updates it matches in that order, each once, with replay and live delivery
//!   joined without gap or duplicate.
//! - **Encode once.** An update is encoded to `Bytes` once; subscribers get refcounted clones.
//!   A subscriber's stream yields everything queued since its last poll as one buffer, so a busy
//!   subscriber costs one write per wake-up.
//! - **Replay.** [`Subscription::last_event_id`] resumes after an id, or from the oldest
//!   retained update with `earliest`. An id that is unknown (not from this hub, or from an
//!   earlier run of a RAM-only hub) or no longer retained gets an in-band
//!   [`HISTORY_GAP_EVENT`] first, then every retained update it matches, then live ones.
//!
//! # Lag policy
//!
//! Memory per subscriber is bounded ([`HubBuilder::max_queued`]: frames and bytes). A subscriber
//! whose queue is full is not slowed down for others and does not lose updates silently: it
//! stops receiving pushes and, once its writer has flushed the queue, catches up from the history
//! ring where it left off. If the history no longer holds the first update it missed, it gets
//! one [`LAGGED_EVENT`] saying so and its stream ends; a client reconnecting with its
//! `Last-Event-ID` then gets a [`HISTORY_GAP_EVENT`]. [`HubStats`] counts both.
//!
//! # Storage
//!
//! By default a hub keeps its history in memory (the ring of [`HubBuilder::history_size`]).
//! [`HubBuilder::storage`] puts it in a log instead, through the one seam of [`storage`]: the
//! core never names a backend. Each backend is a crate of its own:
//!
//! - `ssehub-store` (`Durable`): an embedded durable log (redb). [`Hub::publish`] returns once
//!   the update is on disk (group commit: concurrent publishes share one fsync), the log's order
//!   is the hub's order, subscribers only ever receive durable updates, hub ids
//!   `#{epoch}-{seq}` keep increasing across restarts, and replay reaches back as far as the log
//!   retains; the ring then caches the newest updates. A store failure (full disk) is
//!   [`PublishError::Unavailable`]; [`Hub::publish_now`] is refused
//!   ([`PublishError::NeedsAwait`]) since it cannot wait for the fsync.
//! - `ssehub-store-redis` (`RedisBackend`): a Redis stream that several hub processes share. A
//!   publish is one atomic script on Redis and returns the stream id once Redis has it; every
//!   node reads the stream in order and delivers it locally, so ids (the stream ids, e.g.
//!   `#1700000000000-0`, or the publisher's) and order are the same on every node, and a client
//!   can resume on any node with its `Last-Event-ID`. When Redis is unreachable, publishes fail
//!   with [`PublishError::Unavailable`] and subscribers stay connected. [`Hub::presence`] and
//!   [`Hub::topic_subscribers`] then count the subscribers of every live node.
//!
//! Replay that the ring cannot serve, and lag catch-up past the ring, are read from the log
//! and join live delivery without gap or duplicate, whatever the backend.
//!
//! # Draining
//!
//! [`Hub::close`] ends every stream at once, so every client reconnects at once. For a rolling
//! restart, [`Hub::drain`] instead refuses new subscriptions, keeps delivering, and ends each
//! stream at its own random time within a window, with a last `retry: <ms>` frame whose value
//! is jittered too, so clients come back spread out; then it closes the hub.
//! `MercureServer::serve` (in `ssehub-server`) drains this way on shutdown.
//!
//! # Active subscriptions
//!
//! Every subscriber gets a subscriber id (`urn:uuid:` and a random v4 UUID,
//! [`SubscriberStream::subscriber_id`]). [`Hub::subscriptions`] lists the subscribers with
//! their selectors and payloads; [`Hub::track_subscriptions`] announces each join and leave as
//! updates of the caller's making (the server's Mercure subscription events), a subscriber's
//! leave always after its join. With a storage shared by several nodes (Redis), each node's
//! list lives in the storage, changed atomically with the announcements, so every node lists
//! every live node's subscribers.
//!
//! # Deadlines
//!
//! A stream can end at a deadline: [`Subscription::expires_at`] (Mercure: no later than the
//! access token's `exp`) and [`HubBuilder::max_connection_lifetime`] (each stream its own
//! lifetime, uniform in the last tenth of the maximum, so clients do not reconnect together);
//! the earlier wins. At its deadline a stream ends like at [`Hub::close`]: queued frames, then
//! the end, and the client reconnects with its `Last-Event-ID`. No timer per subscriber: the
//! subscribers with a deadline sit in one ordered index, and one task per hub, running only
//! while the index is not empty, sleeps until the earliest and ends every due stream. A leave
//! removes its entry, so the index holds exactly the connected subscribers with a deadline
//! ([`HubStats::deadlines`]); streams ended this way are counted in
//! [`SubscriberCloses::deadline`]. A deadline already past when subscribing gives a stream
//! that yields only its preamble.
//!
//! # Heartbeats
//!
//! One shared timer per hub (not one per subscriber) sends a `:` comment line (`:\n`, with no
//! blank line after it, so no client takes it for an empty message) to every subscriber that
//! received nothing during the last interval, so proxies keep idle streams open.

#![deny(missing_docs)]

mod builder;
mod cluster;
mod deadline;
mod drain;
mod error;
mod history;
mod hub;
mod metrics;
mod presence;
mod publish;
mod queue;
mod replay;
mod routes;
mod state;
pub mod storage;
mod stream;
mod subscribe;
mod subscription;
mod subscriptions;
mod update;

pub use builder::HubBuilder;
pub use error::{PublishError, SubscribeError};
pub use hub::{Hub, HubStats};
pub use metrics::{HistogramSnapshot, LATENCY_BUCKETS, Latency, SubscriberCloses};
pub use presence::{PresenceEvent, PresenceKind};
pub use replay::{HISTORY_GAP_EVENT, LAGGED_EVENT};
pub use ssehub_selector::{Selector, SelectorError};
pub use state::{LiveState, StateError};
pub use storage::{MemoryBackend, StorageError};
pub use stream::SubscriberStream;
pub use subscription::Subscription;
pub use subscriptions::{
    StoredChange, SubscriberInfo, SubscriptionAnnouncer, SubscriptionChange, SubscriptionsSnapshot,
};
pub use update::{MAX_TOPICS_PER_UPDATE, Update};
pub use uuid::Uuid;

/// The `Last-Event-ID` value that asks for every retained update.
pub const EARLIEST: &str = "earliest";
