//! The [`Hub`]: one total order of updates, fan-out to matching subscribers, replay, presence.
//!
//! All mutable state sits behind one short-lived lock (`State`). Publishing takes it once to
//! assign the sequence number, encode the frame (once), retain it and offer it to every matching
//! subscriber's queue; subscribing takes it once to replay history and register. Because both
//! happen under the same lock, a subscriber sees every update exactly once and in the hub's order,
//! with no gap between replay and live delivery. Lock order is always `State` then a subscriber's
//! `Queue`; a writer holding its `Queue` never takes `State`.
//!
//! Subscribers are found through their selectors (`routes.rs`): exact topics in a hash map,
//! `*` in a list, and each distinct compiled matcher (URI template, URL pattern) once for all
//! its subscribers. Compiled matchers are evaluated before the lock is taken, once per topic per
//! publish, through the hub's prefix index ([`SelectorIndex`]); under the lock a publish only
//! offers the update to the subscribers of what matched (see `routes.rs` for matchers that join
//! in between).

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_core::Stream;
use parking_lot::Mutex;
use slab::Slab;
use ssehub_codec::Event;
use ssehub_selector::{Matched, MatcherId, Selector, SelectorIndex};

use crate::deadline::{Clock, Deadlines, Wake};
use ssehub_store::{
    CommitterOptions, GroupCommitter, Log, Record, RetainPolicy, StoreError, StoredRecord,
};

use crate::error::{PublishError, SubscribeError};
use crate::history::{Entry, History, Resolved, Sid, hub_id, parse_hub_id};
use crate::metrics::{CloseReason, Latency, Metrics, SubscriberCloses};
use crate::presence::{PresenceEvent, PresenceHook, PresenceKind};
use crate::queue::{Mode, Queue};
use crate::redis_store::{
    Fetch, FetchStart, RedisBackend, RedisStorage, Step, StreamEntry, SubsChange,
};
use crate::routes::{Plan, Routes, UNTRACKED};
use crate::storage::{DEFAULT_RETAIN_EVERY, Durable, Storage, id_of, unavailable};
use crate::subscriptions::{
    SubscriberInfo, SubscriptionAnnouncer, SubscriptionChange, SubscriptionsSnapshot, Tracker, urn,
};
use crate::{Subscription, Update};

/// Event type of the in-band notice sent when a `Last-Event-ID` is unknown or no longer
/// retained; its data is JSON: `{"reason":"unknown"|"expired","lastEventID":..,"oldest":..}`.
pub const HISTORY_GAP_EVENT: &str = "ssehub.history-gap";
/// Event type of the last event sent to a subscriber that fell so far behind that the updates it
/// missed are no longer retained; the stream ends after it. Its data is a one-line reason.
pub const LAGGED_EVENT: &str = "ssehub.lagged";

/// A comment line with no blank line after it: several popular SSE clients dispatch an empty
/// message at every blank line, so a keep-alive must not end a frame (see
/// `ssehub_codec::comment_line`).
static HEARTBEAT: Bytes = Bytes::from_static(b":\n");

/// Configures and builds a [`Hub`].
#[derive(Clone)]
pub struct HubBuilder {
    history_size: usize,
    heartbeat: Option<Duration>,
    max_queued_frames: usize,
    max_queued_bytes: usize,
    max_subscribers: usize,
    max_selectors: usize,
    on_join: Vec<PresenceHook>,
    on_leave: Vec<PresenceHook>,
    durable: Option<Log>,
    committer: CommitterOptions,
    retention: RetainPolicy,
    retain_every: Duration,
    redis: Option<RedisBackend>,
    max_lifetime: Option<Duration>,
}

impl std::fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubBuilder")
            .field("history_size", &self.history_size)
            .field("heartbeat", &self.heartbeat)
            .field("max_queued_frames", &self.max_queued_frames)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("max_subscribers", &self.max_subscribers)
            .field("max_selectors", &self.max_selectors)
            .field("durable", &self.durable.as_ref().map(Log::dir))
            .field("retention", &self.retention)
            .field("redis", &self.redis)
            .field("max_connection_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

impl Default for HubBuilder {
    fn default() -> Self {
        HubBuilder {
            history_size: 10_000,
            heartbeat: Some(Duration::from_secs(15)),
            max_queued_frames: 1024,
            max_queued_bytes: 4 * 1024 * 1024,
            max_subscribers: usize::MAX,
            max_selectors: 128,
            on_join: Vec::new(),
            on_leave: Vec::new(),
            durable: None,
            committer: CommitterOptions::default(),
            retention: RetainPolicy::default(),
            retain_every: DEFAULT_RETAIN_EVERY,
            redis: None,
            max_lifetime: None,
        }
    }
}

impl HubBuilder {
    /// How many updates the history ring retains for replay (default 10,000; 0 disables replay).
    pub fn history_size(mut self, n: usize) -> Self {
        self.history_size = n;
        self
    }

    /// Interval of the heartbeat comment sent to idle subscribers (default 15 s; `None`: off).
    /// One shared timer serves all subscribers; it needs a Tokio runtime when `build` runs.
    pub fn heartbeat(mut self, every: Option<Duration>) -> Self {
        self.heartbeat = every.filter(|d| !d.is_zero());
        self
    }

    /// Ends every subscriber stream after at most `lifetime` (default `None`: no limit), so
    /// no connection outlives, say, a key rotation or a deploy, and so that clients come back
    /// spread over the fleet's nodes. Each stream draws its own lifetime uniformly from
    /// `[0.9 × lifetime, lifetime]`, so subscribers that connected together (after a restart)
    /// do not all reconnect together. Combined with [`Subscription::expires_at`], the earlier
    /// deadline wins. The stream ends as with [`Subscription::expires_at`]: queued frames
    /// first, then `None`; the client reconnects with its `Last-Event-ID`. One shared task
    /// ends the due streams (no timer per subscriber); it needs a Tokio runtime when
    /// subscribing. A zero lifetime is taken as `None`.
    pub fn max_connection_lifetime(mut self, lifetime: Option<Duration>) -> Self {
        self.max_lifetime = lifetime.filter(|d| !d.is_zero());
        self
    }

    /// Bounds of one subscriber's queue (defaults 1,024 frames, 4 MiB). Past them the subscriber
    /// is lagged and catches up from history; see the crate docs for the lag policy.
    pub fn max_queued(mut self, frames: usize, bytes: usize) -> Self {
        self.max_queued_frames = frames.max(1);
        self.max_queued_bytes = bytes.max(1);
        self
    }

    /// Most concurrent subscribers (default unlimited).
    pub fn max_subscribers(mut self, n: usize) -> Self {
        self.max_subscribers = n;
        self
    }

    /// Most topic selectors in one subscription (default 128).
    pub fn max_selectors(mut self, n: usize) -> Self {
        self.max_selectors = n;
        self
    }

    /// Calls `hook` after each subscription starts.
    pub fn on_join(mut self, hook: impl Fn(&PresenceEvent) + Send + Sync + 'static) -> Self {
        self.on_join.push(Arc::new(hook));
        self
    }

    /// Calls `hook` after each subscription ends.
    pub fn on_leave(mut self, hook: impl Fn(&PresenceEvent) + Send + Sync + 'static) -> Self {
        self.on_leave.push(Arc::new(hook));
        self
    }

    /// Keeps every update in this durable log (see the crate docs, "Durable storage"): a
    /// publish is acknowledged once it is on disk, ids `#{epoch}-{seq}` continue across
    /// restarts, and replay reaches back as far as the log retains. The history ring
    /// ([`HubBuilder::history_size`]) then caches the newest updates. Without it the hub is
    /// RAM-only.
    pub fn durable(mut self, log: Log) -> Self {
        self.durable = Some(log);
        self
    }

    /// Keeps the log in a Redis stream shared with other hub processes (see the crate docs,
    /// "Redis"): every node delivers the stream's entries in stream order, with the stream id
    /// as the event id. Takes precedence over [`HubBuilder::durable`]. The hub must be built
    /// inside a Tokio runtime (it starts the stream reader).
    pub fn redis(mut self, backend: RedisBackend) -> Self {
        self.redis = Some(backend);
        self
    }

    /// Group commit sizing of a durable hub (default: up to 1,024 updates per fsync;
    /// `max_batch: 1` gives one fsync per update).
    pub fn committer(mut self, options: CommitterOptions) -> Self {
        self.committer = options;
        self
    }

    /// What a durable hub's log retains (default everything), trimmed in the background every
    /// `every` (needs a Tokio runtime when the hub is built).
    pub fn retention(mut self, policy: RetainPolicy, every: Duration) -> Self {
        self.retention = policy;
        self.retain_every = every;
        self
    }

    /// Builds the hub and, when a heartbeat is set and a Tokio runtime is current, starts its
    /// shared heartbeat timer.
    ///
    /// # Panics
    ///
    /// When a durable log is set and its reading or its writer thread fails to start; use
    /// [`HubBuilder::try_build`] to get the error instead.
    pub fn build(self) -> Hub {
        match self.try_build() {
            Ok(hub) => hub,
            Err(e) => panic!("cannot build the hub: {e}"),
        }
    }

    /// [`HubBuilder::build`], returning the durable log's error instead of panicking.
    pub fn try_build(mut self) -> Result<Hub, StoreError> {
        if let Some(backend) = self.redis.take() {
            return self.build_redis(backend);
        }
        let epoch = match &self.durable {
            Some(log) => log.epoch(),
            None => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        let mut history = History::new(self.history_size, epoch);
        if let Some(log) = &self.durable {
            let next = log.next_seq();
            let last = match next.checked_sub(1) {
                Some(seq) if seq >= log.first_seq() && seq > 0 => {
                    log.get(seq)?.map(|r| id_of(epoch, &r))
                }
                _ => None,
            };
            history.resume(next, last);
        }
        let durable = self.durable.clone();
        let committer_options = self.committer;
        let policy = self.retention;
        let mut retention = None;
        if let Some(log) = &durable
            && (policy.count.is_some() || policy.age.is_some() || policy.bytes.is_some())
        {
            match tokio::runtime::Handle::try_current() {
                Ok(_) => {
                    retention = Some(ssehub_store::spawn_retention(
                        log.clone(),
                        policy,
                        self.retain_every,
                    ));
                }
                Err(_) => tracing::warn!("Hub built outside a Tokio runtime: no retention"),
            }
        }
        let mut failed = None;
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let storage = match durable {
                None => Storage::Memory,
                Some(log) => {
                    let weak = weak.clone();
                    let hook = move |records: &[StoredRecord]| {
                        if let Some(inner) = weak.upgrade() {
                            inner.deliver(records);
                        }
                    };
                    match GroupCommitter::with_hook(log.clone(), committer_options, hook) {
                        Ok(committer) => Storage::Durable(Durable {
                            log,
                            committer,
                            retention: retention.take(),
                        }),
                        Err(e) => {
                            failed = Some(e);
                            Storage::Memory
                        }
                    }
                }
            };
            self.make_inner(history, storage)
        });
        if let Some(e) = failed {
            if let Some(task) = retention {
                task.abort();
            }
            return Err(e);
        }
        if let Some(every) = self.heartbeat {
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(heartbeat(Arc::downgrade(&inner), every));
                }
                Err(_) => tracing::warn!("Hub built outside a Tokio runtime: no heartbeats"),
            }
        }
        Ok(Hub { inner })
    }

    fn build_redis(self, backend: RedisBackend) -> Result<Hub, StoreError> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| StoreError::Io {
            context: "starting the Redis stream reader",
            reason: "no Tokio runtime".into(),
        })?;
        // Ids are stream ids, never `#{epoch}-{seq}`: epoch 0 keeps `parse_hub_id` from
        // mistaking a stream id for one.
        let mut history = History::new(self.history_size, 0);
        history.follow_stream(backend.start, backend.start_id.clone());
        let inner = Arc::new(self.make_inner(
            history,
            Storage::Redis(RedisStorage {
                shared: backend.shared.clone(),
                tasks: Mutex::new(Vec::new()),
                remote: Mutex::new(Default::default()),
                subs_dirty: Default::default(),
            }),
        ));
        let reader = rt.spawn(crate::redis_store::read_loop(
            backend.shared.clone(),
            Arc::downgrade(&inner),
            backend.start,
            Inner::deliver_redis,
        ));
        let presence = rt.spawn(cluster_presence(Arc::downgrade(&inner)));
        if let Storage::Redis(r) = &inner.storage {
            r.tasks.lock().extend([reader, presence]);
        }
        if let Some(every) = self.heartbeat {
            rt.spawn(heartbeat(Arc::downgrade(&inner), every));
        }
        Ok(Hub { inner })
    }

    fn make_inner(&self, history: History, storage: Storage) -> Inner {
        Inner {
            state: Mutex::new(State {
                history,
                subs: Slab::new(),
                routes: Routes::default(),
                selector_counts: HashMap::new(),
                closed: false,
                draining: false,
                next_sub_id: 1,
                stats: HubStats::default(),
                deadlines: Deadlines::default(),
            }),
            max_queued_frames: self.max_queued_frames,
            max_queued_bytes: self.max_queued_bytes,
            max_subscribers: self.max_subscribers,
            max_selectors: self.max_selectors,
            on_join: self.on_join.clone(),
            on_leave: self.on_leave.clone(),
            storage,
            tracker: std::sync::OnceLock::new(),
            metrics: Metrics::default(),
            max_lifetime: self.max_lifetime,
            matchers: parking_lot::RwLock::new(SelectorIndex::default()),
            clock: Clock::new(),
            deadline_wake: Arc::new(tokio::sync::Notify::new()),
        }
    }
}

/// Counters since the hub started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubStats {
    /// Updates published.
    pub publishes: u64,
    /// Update frames queued to subscribers (live and catch-up; not replay on connect).
    pub deliveries: u64,
    /// Update frames replayed to subscribers on connect.
    pub replayed: u64,
    /// Times a subscriber overflowed its queue and went to catch up from history.
    pub lagged: u64,
    /// Subscribers closed because what they missed was no longer retained.
    pub lag_closes: u64,
    /// Event-stream bytes written to subscribers: a batch counts once its writer comes back
    /// for the next one, i.e. once it was written.
    pub bytes_out: u64,
    /// Subscriber streams ended, by reason (counted when each stream is dropped).
    pub closes: SubscriberCloses,
    /// Subscribers connected now.
    pub subscribers: usize,
    /// Subscribers connected now whose stream has a deadline
    /// ([`Subscription::expires_at`], [`HubBuilder::max_connection_lifetime`]): the entries of
    /// the hub's deadline index. Those ended by their deadline are counted in
    /// [`SubscriberCloses::deadline`].
    pub deadlines: usize,
    /// Updates retained in history now.
    pub retained: usize,
    /// Distinct compiled matchers (URI templates, URL patterns) subscribers use now: each is
    /// evaluated once per topic of a publish (when its literal prefix fits the topic), however
    /// many subscribers share it.
    pub matchers: usize,
    /// Matcher evaluations done under the hub lock: matchers that joined between a publish's
    /// evaluation (before the lock) and its fan-out. Every other evaluation runs outside it.
    pub late_matcher_evaluations: u64,
}

/// The hub handle: cheap to clone (an `Arc`), shared by publishers and subscribers.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("stats", &self.stats()).finish()
    }
}

pub(crate) struct Inner {
    state: Mutex<State>,
    max_queued_frames: usize,
    max_queued_bytes: usize,
    max_subscribers: usize,
    max_selectors: usize,
    on_join: Vec<PresenceHook>,
    on_leave: Vec<PresenceHook>,
    storage: Storage,
    /// Set by [`Hub::track_subscriptions`]: where joins and leaves go to be announced.
    tracker: std::sync::OnceLock<Tracker>,
    metrics: Metrics,
    /// [`HubBuilder::max_connection_lifetime`].
    max_lifetime: Option<Duration>,
    /// The distinct compiled matchers of the subscribers, by literal prefix: evaluated by
    /// publishers before they take `state` (its own lock, never taken while holding `state`
    /// for writing; see `routes.rs`).
    matchers: parking_lot::RwLock<SelectorIndex>,
    /// Deadlines as ticks of the Tokio clock (see `deadline.rs`).
    clock: Clock,
    /// Wakes the deadline task: a new earliest deadline, or the earliest one left.
    pub(crate) deadline_wake: Arc<tokio::sync::Notify>,
}

struct State {
    history: History,
    subs: Slab<Sub>,
    /// Exact topics, `*`, and each compiled matcher -> its subscribers.
    routes: Routes,
    /// Selector text -> subscribers that asked for it.
    selector_counts: HashMap<Box<str>, usize>,
    closed: bool,
    /// [`Hub::drain`] started: new subscriptions are refused, publishes still delivered.
    draining: bool,
    next_sub_id: u64,
    stats: HubStats,
    /// Subscribers with a deadline, by deadline (see `deadline.rs`).
    deadlines: Deadlines,
}

struct Sub {
    id: u64,
    /// The subscriber id the subscriptions API shows (`urn:uuid:` + this).
    uuid: uuid::Uuid,
    payload: Option<Arc<serde_json::Value>>,
    queue: Arc<Mutex<Queue>>,
    selectors: Arc<[Selector]>,
    authorized: Option<Arc<[Selector]>>,
    /// Seq of the last update this subscriber was considered for: dedupes multi-topic matches.
    mark: u64,
    /// Redis: this subscriber already has every stream entry up to here (its replay read
    /// further than this node's reader had delivered), so fan-out skips them.
    skip_through: Option<Sid>,
    /// Where its key is in the one routing list it is in (`*`, its only topic, or its only
    /// compiled matcher), so a leave removes it without a scan: a scan made N leaves of one
    /// topic cost O(N²) under the hub lock (15,000 at once: 5 % of the hub's CPU for a ramp and
    /// its teardown). [`UNTRACKED`] for a subscriber in several lists, which are scanned.
    slot: u32,
    /// Its entry in the deadline index (a tick of `Inner::clock`); 0: none.
    deadline: u64,
}

impl Sub {
    fn wants(&self, topics: &[String], private: bool) -> bool {
        wants(&self.selectors, self.authorized.as_deref(), topics, private)
    }
}

/// Whether a subscriber with these selectors (and private authorization) receives an update.
fn wants(
    selectors: &[Selector],
    authorized: Option<&[Selector]>,
    topics: &[String],
    private: bool,
) -> bool {
    let matches = |sels: &[Selector]| sels.iter().any(|s| topics.iter().any(|t| s.matches(t)));
    matches(selectors) && (!private || authorized.is_some_and(matches))
}

impl Default for Hub {
    fn default() -> Self {
        Hub::builder().build()
    }
}

impl Hub {
    /// A builder with the defaults.
    pub fn builder() -> HubBuilder {
        HubBuilder::default()
    }

    /// A hub with the defaults (needs a Tokio runtime for heartbeats).
    pub fn new() -> Self {
        Hub::default()
    }

    /// Publishes an update to every matching subscriber and retains it for replay; returns its
    /// id (the publisher's, or one the hub assigned).
    ///
    /// With durable storage it returns once the update is on disk (and delivered), and fails
    /// with [`PublishError::Unavailable`] when the store cannot take it (disk full).
    ///
    /// Cancelling: dropping the future of a durable publish after the update was handed to the
    /// log does not take it back: it may still be committed and delivered, unacknowledged (the
    /// usual at-least-once ambiguity of a lost answer). A caller that must update its own state
    /// exactly when the publish succeeds should run the publish on its own task.
    pub async fn publish(&self, update: Update) -> Result<String, PublishError> {
        match &self.inner.storage {
            Storage::Memory => self.publish_memory(update),
            Storage::Durable(d) => self.publish_durable(d, update).await,
            Storage::Redis(r) => self.publish_redis(r, update).await,
        }
    }

    /// [`Hub::publish`] without `async`, for synchronous contexts such as presence hooks. Only
    /// for a RAM-only hub, where a publish never waits; a hub with durable storage refuses it
    /// with [`PublishError::NeedsAwait`] (it cannot acknowledge before the fsync).
    pub fn publish_now(&self, update: Update) -> Result<String, PublishError> {
        match &self.inner.storage {
            Storage::Memory => self.publish_memory(update),
            Storage::Durable(_) | Storage::Redis(_) => {
                update.validate()?;
                Err(PublishError::NeedsAwait)
            }
        }
    }

    async fn publish_durable(&self, d: &Durable, update: Update) -> Result<String, PublishError> {
        update.validate()?;
        if self.inner.state.lock().closed {
            return Err(PublishError::Closed);
        }
        let Update {
            topics,
            data,
            event_type,
            id: publisher_id,
            retry,
            private,
        } = update;
        let epoch = d.log.epoch();
        if let Some(id) = &publisher_id
            && parse_hub_id(epoch, id).is_some()
        {
            return Err(PublishError::ReservedId);
        }
        let answer_id = publisher_id.clone();
        let started = std::time::Instant::now();
        // Encoding cannot fail after `validate`; the log puts the seq into the frame's id.
        let seq = d
            .committer
            .append_with(move |seq| {
                let frame = match &publisher_id {
                    Some(id) => encode_update(id, event_type, retry, data),
                    None => encode_update(&hub_id(epoch, seq), event_type, retry, data),
                }
                .unwrap_or_default();
                Record {
                    topics,
                    private,
                    publisher_id,
                    frame,
                    published_ms: ssehub_store::now_ms(),
                }
            })
            .await;
        self.inner.metrics.storage.observe(started.elapsed());
        let seq = seq.map_err(|e| match e {
            StoreError::DuplicatePublisherId(_) => PublishError::DuplicateId,
            StoreError::Closed => PublishError::Closed,
            e => PublishError::Unavailable(unavailable(&e)),
        })?;
        Ok(answer_id.unwrap_or_else(|| hub_id(epoch, seq)))
    }

    /// A Redis-backed publish: one atomic script appends the update; the answer is its stream
    /// id (or the publisher's id). Delivery, here as on every node, comes from the reader.
    async fn publish_redis(
        &self,
        r: &RedisStorage,
        update: Update,
    ) -> Result<String, PublishError> {
        self.publish_redis_with(r, update, None).await
    }

    /// [`Hub::publish_redis`], also applying a change to this node's subscriber hash in the
    /// same script.
    async fn publish_redis_with(
        &self,
        r: &RedisStorage,
        update: Update,
        subs: Option<SubsChange>,
    ) -> Result<String, PublishError> {
        update.validate()?;
        if self.inner.state.lock().closed {
            return Err(PublishError::Closed);
        }
        if let Some(id) = &update.id
            && Sid::from_event_id(id).is_some()
        {
            // It would read as a stream position on replay.
            return Err(PublishError::ReservedId);
        }
        let started = std::time::Instant::now();
        let sid = r.shared.publish(&update, subs.as_ref()).await;
        self.inner.metrics.storage.observe(started.elapsed());
        let sid = sid?;
        Ok(update.id.unwrap_or_else(|| sid.event_id()))
    }

    fn publish_memory(&self, update: Update) -> Result<String, PublishError> {
        update.validate()?;
        let Update {
            topics,
            data,
            event_type,
            id: publisher_id,
            retry,
            private,
        } = update;
        let matched = self.inner.evaluate(&topics);
        let mut guard = self.inner.state.lock();
        let st = &mut *guard;
        if st.closed {
            return Err(PublishError::Closed);
        }
        if let Some(id) = &publisher_id {
            st.history.check_publisher_id(id)?;
        }
        let (seq, id) = st.history.allocate(publisher_id.as_deref());
        let frame = encode_update(&id, event_type, retry, data)?;
        let topics = topics.into_boxed_slice();
        let stamp = self.inner.metrics.stamp();
        fan_out(
            st,
            seq,
            Sid::ZERO,
            &topics,
            private,
            &frame,
            stamp,
            &matched,
        );

        let out = id.to_string();
        st.history.push(
            Entry {
                seq,
                id,
                topics,
                private,
                frame,
                sid: Sid::ZERO,
                stamp,
            },
            publisher_id.is_some(),
        );
        Ok(out)
    }
}

impl Inner {
    /// Which compiled matchers match `topics`, evaluated before taking the hub lock (each
    /// distinct matcher once per topic, only where its literal prefix fits).
    fn evaluate(&self, topics: &[String]) -> Matched {
        let mut matched = Matched::default();
        self.matchers.read().matching(topics, &mut matched);
        matched
    }

    /// Drops one use of each of these matchers (after the hub lock is released).
    fn release_matchers(&self, ids: &[MatcherId]) {
        if ids.is_empty() {
            return;
        }
        let mut index = self.matchers.write();
        for &id in ids {
            index.release(id);
        }
    }

    /// The deadline task's step: ends the streams whose deadline has come (as [`Hub::close`]
    /// does: queued frames, then the end), and returns when the next one is due. `None`: no
    /// deadline left, or the hub is closed; the task is then marked stopped, under the lock,
    /// so the next deadline starts a new one.
    pub(crate) fn expire_due(&self) -> Option<tokio::time::Instant> {
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if !st.closed {
            let now = self.clock.now();
            while let Some((tick, key)) = st.deadlines.pop_due(now) {
                // A leave removes its entry under this lock, so the key is this subscriber's;
                // checked anyway rather than closing a stranger or panicking.
                if let Some(sub) = st.subs.get_mut(key)
                    && sub.deadline == tick
                {
                    sub.deadline = 0;
                    sub.queue.lock().close(CloseReason::Deadline);
                } else {
                    debug_assert!(false, "stale deadline entry");
                }
            }
            if let Some(next) = st.deadlines.next() {
                return Some(self.clock.instant(next));
            }
        }
        st.deadlines.task_stopped();
        None
    }

    /// The deadline task was dropped without stopping itself (its runtime shut down).
    pub(crate) fn stop_deadline_task(&self) {
        self.state.lock().deadlines.task_stopped();
    }

    /// The commit hook of a durable hub: delivers committed updates in seq order (on the log's
    /// writer thread, before their publishers are answered) and caches them in the ring.
    fn deliver(&self, records: &[StoredRecord]) {
        let Storage::Durable(d) = &self.storage else {
            return;
        };
        let matched: Vec<Matched> = records
            .iter()
            .map(|r| self.evaluate(&r.record.topics))
            .collect();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        let stamp = self.metrics.stamp();
        for (r, matched) in records.iter().zip(&matched) {
            let id = d.id_of(r);
            let topics: Box<[String]> = r.record.topics.clone().into_boxed_slice();
            fan_out(
                st,
                r.seq,
                Sid::ZERO,
                &topics,
                r.record.private,
                &r.record.frame,
                stamp,
                matched,
            );
            st.history.push(
                Entry {
                    seq: r.seq,
                    id,
                    topics,
                    private: r.record.private,
                    frame: r.record.frame.clone(),
                    sid: Sid::ZERO,
                    stamp,
                },
                r.record.publisher_id.is_some(),
            );
        }
    }

    /// The Redis reader's delivery: entries in stream order get the next local seqs, are fanned
    /// out and cached in the ring. Returns `false` once the hub is closed (the reader stops).
    fn deliver_redis(&self, entries: Vec<StreamEntry>) -> bool {
        let matched: Vec<Matched> = entries.iter().map(|e| self.evaluate(&e.topics)).collect();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if st.closed {
            return false;
        }
        let stamp = self.metrics.stamp();
        for (e, matched) in entries.into_iter().zip(&matched) {
            // The reader never hands an entry twice, but a restart of Redis without
            // persistence could make ids go back: never deliver out of order.
            if e.sid <= st.history.sid_head() {
                tracing::warn!(id = %e.sid, head = %st.history.sid_head(), "redis: stream id went backwards; skipping entry");
                continue;
            }
            let seq = st.history.next_seq();
            let topics = e.topics.into_boxed_slice();
            fan_out(st, seq, e.sid, &topics, e.private, &e.frame, stamp, matched);
            st.history.push(
                Entry {
                    seq,
                    id: e.id,
                    topics,
                    private: e.private,
                    frame: e.frame,
                    sid: e.sid,
                    stamp,
                },
                e.publisher_id,
            );
        }
        true
    }
}

/// Offers update `seq` to every matching subscriber (under the state lock). `stamp` is when
/// it entered the hub's order (`Metrics::stamp`), kept by the queues for the latency sample.
/// `matched`: the compiled matchers that match, evaluated before the lock ([`Inner::evaluate`]).
///
/// No subscriber's selectors are evaluated here: its routes say it matches. A private update
/// also needs the subscriber's authorization (its token's `subscribe` matchers), evaluated once
/// per distinct token (the `Arc` every stream of a cached token shares), not once per
/// subscriber.
#[inline]
#[allow(clippy::too_many_arguments)]
fn fan_out(
    st: &mut State,
    seq: u64,
    sid: Sid,
    topics: &[String],
    private: bool,
    frame: &Bytes,
    stamp: u64,
    matched: &Matched,
) {
    let State {
        subs,
        routes,
        stats,
        ..
    } = st;
    // Private updates: token (by its `Arc`'s address) -> whether it may see this update.
    let mut allowed: HashMap<usize, bool> = HashMap::new();
    let mut offer = |key: usize| {
        let sub = &mut subs[key];
        if sub.mark == seq {
            return;
        }
        sub.mark = seq;
        if private {
            let Some(authorized) = &sub.authorized else {
                return;
            };
            let token = Arc::as_ptr(authorized) as *const Selector as usize;
            let ok = *allowed.entry(token).or_insert_with(|| {
                authorized
                    .iter()
                    .any(|s| topics.iter().any(|t| s.matches(t)))
            });
            if !ok {
                return;
            }
        }
        if sub.skip_through.is_some_and(|s| sid <= s) {
            return;
        }
        let mut q = sub.queue.lock();
        if q.offer_at(seq, sid, frame, stamp) {
            stats.deliveries += 1;
        } else if q.mode == (Mode::Lagged { resume_from: seq }) {
            stats.lagged += 1;
        }
    };
    routes.for_each_candidate(topics, matched, &mut offer);
    stats.publishes += 1;
}

impl Hub {
    /// Starts a subscription: replays what it asked for, then streams live updates. The stream
    /// yields ready-to-write `text/event-stream` bytes (possibly several frames per item) and
    /// ends when the hub closes, the subscriber is closed for lagging, or its deadline
    /// ([`Subscription::expires_at`], [`HubBuilder::max_connection_lifetime`]) comes.
    pub fn subscribe(
        &self,
        subscription: Subscription,
    ) -> Result<SubscriberStream, SubscribeError> {
        let Subscription {
            selectors,
            last_event_id,
            authorized,
            preamble,
            payload,
            retained,
            expires_at,
        } = subscription;
        if selectors.is_empty() {
            return Err(SubscribeError::NoTopic);
        }
        if selectors.len() > self.inner.max_selectors {
            return Err(SubscribeError::TooManyTopics {
                max: self.inner.max_selectors,
            });
        }
        let deadline = self
            .inner
            .clock
            .deadline(expires_at, self.inner.max_lifetime);
        if let Some(d) = deadline
            && d <= self.inner.clock.now()
        {
            return self.subscribe_expired(selectors.into(), authorized, preamble, payload);
        }
        let queue = Arc::new(Mutex::new(Queue::new(
            self.inner.max_queued_frames,
            self.inner.max_queued_bytes,
        )));
        let payload = payload.map(Arc::new);
        let mut sub = Sub {
            id: 0,
            uuid: uuid::Uuid::new_v4(),
            payload: payload.clone(),
            queue: queue.clone(),
            selectors: selectors.into(),
            authorized,
            mark: 0,
            skip_through: None,
            slot: UNTRACKED,
            deadline: 0,
        };
        let filter = (sub.selectors.clone(), sub.authorized.clone());
        // Its compiled matchers join the index before the hub lock is taken (the index has a
        // lock of its own, which publishers read outside the hub lock); released again if the
        // subscription is refused.
        let plan = Plan::of(&filter.0);
        let mut claimed = Claimed {
            inner: &self.inner,
            ids: if plan.compiled.is_empty() {
                Vec::new()
            } else {
                crate::routes::claim(&mut self.inner.matchers.write(), &plan)
            },
        };

        // A durable hub resolves the replay point and reads retained state from the log before
        // taking the lock; what is older than the ring is read later by the stream itself.
        let mut first_frames: Vec<Bytes> = Vec::new();
        let mut durable_from: Option<u64> = None;
        // The `Mercure-Last-Event-ID` answer, when a last event id was given.
        let mut resumed: Option<Box<str>> = None;
        if let Storage::Durable(d) = &self.inner.storage {
            let err = |e: StoreError| SubscribeError::Unavailable(unavailable(&e));
            if let Some(last) = &last_event_id {
                match d.resolve(last).map_err(err)? {
                    Resolved::From(seq) => {
                        resumed = Some(resumed_after(last, true));
                        durable_from = Some(seq);
                    }
                    gap @ (Resolved::Expired | Resolved::Unknown) => {
                        resumed = Some(resumed_after(last, false));
                        let oldest = d.oldest_id().map_err(err)?;
                        first_frames.push(gap_frame(last, gap, oldest.as_deref()));
                        durable_from = Some(d.log.first_seq());
                    }
                }
            } else if retained {
                // Updates from `boundary` on come through replay below, so the retained state
                // is everything older: no update is sent twice or missed.
                let boundary = self.inner.state.lock().history.next_seq();
                let records = d
                    .log
                    .latest_matching(|t| sub.selectors.iter().any(|s| s.matches(t)))
                    .map_err(err)?;
                for r in records {
                    if r.seq < boundary && sub.wants(&r.record.topics, r.record.private) {
                        first_frames.push(r.record.frame);
                    }
                }
                durable_from = Some(boundary);
            }
        }

        let mut fetch = None;
        let mut guard = self.inner.state.lock();
        let st = &mut *guard;
        if st.closed || st.draining {
            return Err(SubscribeError::Closed);
        }
        if st.subs.len() >= self.inner.max_subscribers {
            return Err(SubscribeError::TooManySubscribers {
                max: self.inner.max_subscribers,
            });
        }
        sub.id = st.next_sub_id;
        st.next_sub_id += 1;
        {
            let mut q = queue.lock();
            if let Some(p) = preamble {
                q.push_unbounded(p);
            }
            st.stats.replayed += first_frames.len() as u64;
            for f in first_frames {
                q.push_unbounded(f);
            }
            match &self.inner.storage {
                Storage::Memory => {
                    if let Some(last) = last_event_id {
                        let from = match st.history.resolve(&last) {
                            Resolved::From(seq) => {
                                resumed = Some(resumed_after(&last, true));
                                seq
                            }
                            gap @ (Resolved::Expired | Resolved::Unknown) => {
                                resumed = Some(resumed_after(&last, false));
                                q.push_unbounded(gap_frame(&last, gap, st.history.first_id()));
                                st.history.first_seq()
                            }
                        };
                        st.stats.replayed += replay(&st.history, &sub, &mut q, from, false);
                    } else if retained {
                        st.stats.replayed += retained_from_ring(&st.history, &sub, &mut q);
                    }
                }
                Storage::Durable(_) => {
                    if let Some(from) = durable_from {
                        let from = from.min(st.history.next_seq());
                        if from >= st.history.first_seq() {
                            st.stats.replayed += replay(&st.history, &sub, &mut q, from, false);
                        } else {
                            // Older than the ring: the stream reads it from the log outside the
                            // lock, then joins live delivery (see `catch_up`).
                            q.mode = Mode::Lagged { resume_from: from };
                        }
                    }
                }
                Storage::Redis(r) => {
                    // A replay the ring cannot serve is resolved against Redis later, after the
                    // response head: its cursor is the id asked for (a gap found then is told
                    // in-band, by the `ssehub.history-gap` event).
                    resumed = last_event_id.as_deref().map(|l| resumed_after(l, true));
                    let start = match last_event_id {
                        Some(last) => match redis_ring_start(&st.history, &last) {
                            Some(from) => {
                                st.stats.replayed += replay(&st.history, &sub, &mut q, from, false);
                                None
                            }
                            None => Some(FetchStart::After(last)),
                        },
                        None if retained => Some(FetchStart::Retained(sub.selectors.clone())),
                        None => None,
                    };
                    if let Some(start) = start {
                        // Publishers skip it until its replay from Redis reaches the ring
                        // (`redis_step`).
                        q.mode = Mode::Fetching;
                        fetch = Some(std::sync::Mutex::new(Fetch::new(
                            r.shared.clone(),
                            start,
                            self.inner.max_queued_frames,
                        )));
                    }
                }
            }
        }
        let id = sub.id;
        let uuid = sub.uuid;
        for s in sub.selectors.iter() {
            *st.selector_counts.entry(s.as_str().into()).or_default() += 1;
        }
        let key = st.subs.insert(sub);
        st.subs[key].slot = st.routes.attach(key, &plan, &claimed.ids);
        // The subscriber holds its matchers now; `unsubscribe` releases them.
        claimed.ids.clear();
        let wake = match deadline {
            Some(d) => {
                st.subs[key].deadline = d;
                st.deadlines.insert(d, key)
            }
            None => Wake::No,
        };
        let total = st.subs.len();
        // Without a resume point, the first event sent is the next one published: the one
        // before it is the newest retained now.
        let cursor = resumed.or_else(|| st.history.last_id().map(Into::into));
        drop(guard);
        match wake {
            Wake::No => {}
            Wake::Task => self.inner.deadline_wake.notify_one(),
            Wake::Spawn => {
                if !crate::deadline::spawn(&self.inner) {
                    tracing::warn!("subscribe outside a Tokio runtime: its deadline waits");
                    self.inner.state.lock().deadlines.spawn_failed();
                }
            }
        }

        self.notify(
            &self.inner.on_join,
            PresenceKind::Join,
            (id, uuid),
            &filter.0,
            &payload,
            total,
        );
        self.track(true, uuid, &filter.0, &payload);
        Ok(SubscriberStream {
            hub: self.clone(),
            key,
            id,
            queue,
            payload,
            cursor,
            filter,
            fetch,
            coalesce: false,
            deferred: false,
            flushed: 0,
        })
    }

    /// A subscription whose deadline has passed already: a stream that yields the preamble
    /// and ends, never registered (see [`Subscription::expires_at`]).
    fn subscribe_expired(
        &self,
        selectors: Arc<[Selector]>,
        authorized: Option<Arc<[Selector]>>,
        preamble: Option<Bytes>,
        payload: Option<serde_json::Value>,
    ) -> Result<SubscriberStream, SubscribeError> {
        let (id, cursor) = {
            let mut st = self.inner.state.lock();
            if st.closed || st.draining {
                return Err(SubscribeError::Closed);
            }
            let id = st.next_sub_id;
            st.next_sub_id += 1;
            (id, st.history.last_id().map(Into::into))
        };
        let mut q = Queue::new(self.inner.max_queued_frames, self.inner.max_queued_bytes);
        if let Some(p) = preamble {
            q.push_unbounded(p);
        }
        q.close(CloseReason::Deadline);
        Ok(SubscriberStream {
            hub: self.clone(),
            // Never a slab key: `unsubscribe` finds nothing to remove.
            key: usize::MAX,
            id,
            queue: Arc::new(Mutex::new(q)),
            payload: payload.map(Arc::new),
            cursor,
            filter: (selectors, authorized),
            fetch: None,
            coalesce: false,
            deferred: false,
            flushed: 0,
        })
    }

    fn notify(
        &self,
        hooks: &[PresenceHook],
        kind: PresenceKind,
        (subscriber, uuid): (u64, uuid::Uuid),
        topics: &Arc<[Selector]>,
        payload: &Option<Arc<serde_json::Value>>,
        total: usize,
    ) {
        if hooks.is_empty() {
            return;
        }
        let event = PresenceEvent {
            kind,
            subscriber,
            uuid,
            topics: topics.clone(),
            payload: payload.clone(),
            total,
        };
        for hook in hooks {
            hook(&event);
        }
    }

    /// Refills a lagged subscriber's queue from history, or closes it when what it missed is no
    /// longer retained. A durable hub reads what is older than the ring from the log, one page
    /// per call and outside the hub lock, until the ring covers the rest; then, under the lock,
    /// the subscriber rejoins live delivery exactly where the ring takes over.
    ///
    /// A Redis-backed hub instead returns the stream id to read from (inclusive) when the ring
    /// no longer holds what the subscriber missed: its stream then fetches it from Redis.
    fn catch_up(&self, key: usize, queue: &Mutex<Queue>, filter: &Filter) -> Option<Sid> {
        let (resume_from, limit) = {
            let mut guard = self.inner.state.lock();
            let st = &mut *guard;
            let sub = st.subs.get(key)?;
            let mut q = queue.lock();
            let Mode::Lagged { resume_from } = q.mode else {
                return None;
            };
            if resume_from >= st.history.first_seq() {
                q.mode = Mode::Live;
                st.stats.deliveries += replay(&st.history, sub, &mut q, resume_from, true);
                return None;
            }
            match &self.inner.storage {
                Storage::Durable(_) => {}
                Storage::Redis(_) if q.lagged_sid != Sid::ZERO => {
                    // Publishers keep skipping it; the fetch rejoins under the lock.
                    q.mode = Mode::Fetching;
                    return Some(q.lagged_sid);
                }
                Storage::Memory | Storage::Redis(_) => {
                    q.push_unbounded(lagged_frame());
                    q.close(CloseReason::Lagged);
                    st.stats.lag_closes += 1;
                    return None;
                }
            }
            (resume_from, st.history.first_seq())
        };
        let Storage::Durable(d) = &self.inner.storage else {
            return None;
        };
        let page = if resume_from < d.log.first_seq() {
            Ok(Vec::new())
        } else {
            let n = (limit - resume_from).min(self.inner.max_queued_frames as u64) as usize;
            d.log.read_from(resume_from, n.max(1))
        };
        let mut q = queue.lock();
        if q.mode != (Mode::Lagged { resume_from }) {
            return None;
        }
        let records = match page {
            Ok(r) => r,
            Err(e) => {
                drop(q);
                self.close_lagged(
                    queue,
                    &format!("storage unavailable: {e}"),
                    CloseReason::Storage,
                );
                return None;
            }
        };
        // Retention may have trimmed `resume_from` since: never skip silently.
        if records.first().map(|r| r.seq) != Some(resume_from) {
            drop(q);
            self.close_lagged(queue, LAGGED_REASON, CloseReason::Lagged);
            return None;
        }
        let mut next = resume_from;
        let mut n = 0;
        for r in &records {
            if r.seq >= limit {
                break;
            }
            let (selectors, authorized) = filter;
            if wants(
                selectors,
                authorized.as_deref(),
                &r.record.topics,
                r.record.private,
            ) {
                if !q.has_room(r.record.frame.len()) {
                    break;
                }
                q.push_unbounded(r.record.frame.clone());
                n += 1;
            }
            next = r.seq + 1;
        }
        q.mode = Mode::Lagged { resume_from: next };
        drop(q);
        self.inner.state.lock().stats.deliveries += n;
        None
    }

    /// Queues one Redis replay step for a fetching subscriber; joins live delivery once the
    /// step reaches what this node's ring holds. Returns where the next page starts, or `None`
    /// when the fetch is over (joined, or the subscriber is gone or closed).
    fn redis_step(
        &self,
        key: usize,
        queue: &Mutex<Queue>,
        filter: &Filter,
        step: Step,
    ) -> Option<Sid> {
        let mut guard = self.inner.state.lock();
        let State {
            history,
            subs,
            stats,
            ..
        } = &mut *guard;
        let sub = subs.get_mut(key)?;
        let mut q = queue.lock();
        if q.mode != Mode::Fetching {
            return None;
        }
        if step.lost {
            q.push_unbounded(lagged_frame());
            q.close(CloseReason::Lagged);
            stats.lag_closes += 1;
            return None;
        }
        if let Some(gap) = step.gap {
            q.push_unbounded(gap);
        }
        let (selectors, authorized) = filter;
        let mut consumed = None;
        for e in &step.entries {
            if wants(selectors, authorized.as_deref(), &e.topics, e.private) {
                // A page of the stream stops at the queue's bounds (the queue is empty when a
                // step arrives, so at least one update goes); the next page continues after
                // the last one taken. Retained state is sent whole, as in the other modes.
                if step.range && consumed.is_some() && !q.has_room(e.frame.len()) {
                    return consumed;
                }
                q.push_unbounded(e.frame.clone());
                stats.replayed += 1;
            }
            consumed = Some(e.sid);
        }
        let after = step.after;
        if after >= history.sid_base() {
            // Everything after `after` is in the ring or still to come from the reader: join
            // under the lock, so nothing is missed or sent twice.
            q.mode = Mode::Live;
            if after > history.sid_head() {
                sub.skip_through = Some(after);
            }
            stats.replayed += replay(history, sub, &mut q, history.seq_after_sid(after), false);
            return None;
        }
        if step.exhausted {
            // The stream has nothing after `after`, yet this node delivered entries past it:
            // they were trimmed (or lost) while we read. Never skip silently.
            q.push_unbounded(lagged_frame());
            q.close(CloseReason::Lagged);
            stats.lag_closes += 1;
            return None;
        }
        Some(after)
    }

    fn close_fetching(&self, queue: &Mutex<Queue>, reason: &str) {
        let mut st = self.inner.state.lock();
        let mut q = queue.lock();
        if q.mode == Mode::Fetching {
            q.push_unbounded(lagged_frame_with(reason));
            q.close(CloseReason::Storage);
            st.stats.lag_closes += 1;
        }
    }

    fn close_lagged(&self, queue: &Mutex<Queue>, reason: &str, why: CloseReason) {
        let mut st = self.inner.state.lock();
        let mut q = queue.lock();
        if matches!(q.mode, Mode::Lagged { .. }) {
            q.push_unbounded(lagged_frame_with(reason));
            q.close(why);
            st.stats.lag_closes += 1;
        }
    }

    /// Removes a subscriber: the subscribers left and its uuid, `None` if it was gone already.
    fn unsubscribe(&self, key: usize, id: u64) -> Option<(usize, uuid::Uuid)> {
        let mut guard = self.inner.state.lock();
        let st = &mut *guard;
        if st.subs.get(key).map(|s| s.id) != Some(id) {
            return None;
        }
        let sub = st.subs.remove(key);
        if sub.deadline != 0 && st.deadlines.remove(sub.deadline, key) {
            // The deadline task sleeps until this one: let it pick the next (or stop).
            self.inner.deadline_wake.notify_one();
        }
        for s in sub.selectors.iter() {
            if let Some(n) = st.selector_counts.get_mut(s.as_str()) {
                *n -= 1;
                if *n == 0 {
                    st.selector_counts.remove(s.as_str());
                }
            }
        }
        let State { subs, routes, .. } = st;
        let plan = Plan::of(&sub.selectors);
        // A subscriber moved into the leaver's place has a new position (tracked ones only:
        // a tracked subscriber is in one list, so its position is one in this list).
        let release = routes.detach(key, &plan, sub.slot, |moved, at| {
            if subs[moved].slot != UNTRACKED {
                subs[moved].slot = at;
            }
        });
        let left = (st.subs.len(), sub.uuid);
        drop(guard);
        drop(plan);
        // Its selectors are dropped with it, outside the lock (the last handle of a compiled
        // matcher frees it); then the index lets go of its matchers.
        drop(sub);
        self.inner.release_matchers(&release);
        Some(left)
    }

    /// Ends every subscription cleanly (queued frames are still sent) and refuses new publishes
    /// and subscriptions. Idempotent.
    pub fn close(&self) {
        let mut st = self.inner.state.lock();
        st.closed = true;
        for (_, sub) in st.subs.iter() {
            sub.queue.lock().close(CloseReason::Shutdown);
        }
    }

    /// Whether [`Hub::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.inner.state.lock().closed
    }

    /// Starts draining (see [`Hub::drain`]): refuses new subscriptions from now on and returns
    /// the queues of the subscribers connected now, to be closed one by one.
    pub(crate) fn begin_drain(&self) -> Vec<Weak<Mutex<Queue>>> {
        let mut st = self.inner.state.lock();
        st.draining = true;
        st.subs
            .iter()
            .map(|(_, sub)| Arc::downgrade(&sub.queue))
            .collect()
    }

    /// Whether [`Hub::drain`] started (or the hub is closed).
    pub fn is_draining(&self) -> bool {
        let st = self.inner.state.lock();
        st.draining || st.closed
    }

    /// Subscribers connected now.
    pub fn subscriber_count(&self) -> usize {
        self.inner.state.lock().subs.len()
    }

    /// Subscribers whose selectors include exactly this selector text (a topic, a template, `*`).
    /// With Redis storage: summed over the stream's live nodes (the others' counts are at most
    /// about a second old).
    pub fn topic_subscribers(&self, selector: &str) -> usize {
        let local = self
            .inner
            .state
            .lock()
            .selector_counts
            .get(selector)
            .copied()
            .unwrap_or(0);
        let remote = match &self.inner.storage {
            Storage::Redis(r) => r.remote.lock().selectors.get(selector).copied(),
            _ => None,
        };
        local + remote.unwrap_or(0)
    }

    /// Subscriber count per selector text, sorted by selector. With Redis storage: summed over
    /// the stream's live nodes, like [`Hub::topic_subscribers`].
    pub fn presence(&self) -> Vec<(String, usize)> {
        let st = self.inner.state.lock();
        let mut all: HashMap<String, usize> = st
            .selector_counts
            .iter()
            .map(|(k, &n)| (k.to_string(), n))
            .collect();
        drop(st);
        if let Storage::Redis(r) = &self.inner.storage {
            for (k, n) in r.remote.lock().selectors.iter() {
                *all.entry(k.clone()).or_default() += n;
            }
        }
        let mut v: Vec<_> = all.into_iter().collect();
        v.sort();
        v
    }

    /// Subscribers connected to every live node of the hub's Redis stream (this node's now,
    /// the others' as of the last refresh, about a second ago); [`Hub::subscriber_count`]
    /// without Redis storage.
    pub fn cluster_subscriber_count(&self) -> usize {
        let local = self.subscriber_count();
        match &self.inner.storage {
            Storage::Redis(r) => local + r.remote.lock().subscribers,
            _ => local,
        }
    }

    /// Subscribers that would receive a public update on `topic` now (found as a publish finds
    /// them: compiled matchers evaluated outside the hub lock).
    pub fn subscribers_matching(&self, topic: &str) -> usize {
        let topics = [topic.to_owned()];
        let matched = self.inner.evaluate(&topics);
        let mut st = self.inner.state.lock();
        let mut seen = std::collections::HashSet::new();
        st.routes.for_each_candidate(&topics, &matched, |k| {
            seen.insert(k);
        });
        seen.len()
    }

    /// The id of the newest retained update, if any.
    pub fn last_event_id(&self) -> Option<String> {
        self.inner.state.lock().history.last_id().map(str::to_owned)
    }

    /// Counters since start.
    pub fn stats(&self) -> HubStats {
        let st = self.inner.state.lock();
        let retained = match &self.inner.storage {
            Storage::Memory | Storage::Redis(_) => st.history.len(),
            Storage::Durable(d) => d.log.len() as usize,
        };
        HubStats {
            subscribers: st.subs.len(),
            deadlines: st.deadlines.len(),
            retained,
            matchers: st.routes.matchers(),
            late_matcher_evaluations: st.routes.late.matchers,
            bytes_out: self
                .inner
                .metrics
                .bytes_out
                .load(std::sync::atomic::Ordering::Relaxed),
            closes: self.inner.metrics.closes(),
            ..st.stats
        }
    }

    /// The latency histograms since start: storage commits and publish-to-flush.
    pub fn latency(&self) -> Latency {
        self.inner.metrics.latency()
    }

    /// The `n` selectors with the most subscribers, most first (ties by selector text); with
    /// Redis storage, counted over the stream's live nodes like [`Hub::presence`]. Unlike
    /// [`Hub::presence`] it copies only the `n` it returns, so it stays cheap to ask with
    /// many distinct selectors.
    pub fn top_selectors(&self, n: usize) -> Vec<(String, usize)> {
        if n == 0 {
            return Vec::new();
        }
        let by_count = |a: &(&str, usize), b: &(&str, usize)| b.1.cmp(&a.1).then(a.0.cmp(b.0));
        let mut top: Vec<(String, usize)> = if let Storage::Redis(_) = &self.inner.storage {
            self.presence()
        } else {
            let st = self.inner.state.lock();
            let mut refs: Vec<(&str, usize)> =
                st.selector_counts.iter().map(|(k, &c)| (&**k, c)).collect();
            if refs.len() > n {
                refs.select_nth_unstable_by(n - 1, by_count);
                refs.truncate(n);
            }
            refs.into_iter().map(|(k, c)| (k.to_owned(), c)).collect()
        };
        top.sort_by(|a, b| by_count(&(a.0.as_str(), a.1), &(b.0.as_str(), b.1)));
        top.truncate(n);
        top
    }
}

impl Hub {
    pub(crate) fn from_weak(weak: &Weak<Inner>) -> Option<Hub> {
        weak.upgrade().map(|inner| Hub { inner })
    }

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
        rt.spawn(crate::subscriptions::announce(
            Arc::downgrade(&self.inner),
            rx,
            announcer,
        ));
        // Subscribers that joined before tracking started are listed too.
        if matches!(self.inner.storage, Storage::Redis(_)) {
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
            let _ = t.tx.send(crate::subscriptions::Job::Resync);
        }
    }

    /// Hands a join or leave to the announcer, when tracking is on.
    fn track(
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
        let _ =
            t.tx.send(crate::subscriptions::Job::Change(SubscriptionChange {
                active,
                info,
            }));
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
        match &self.inner.storage {
            Storage::Redis(r) if self.tracks_subscriptions() => {
                let (last, raw) = r
                    .shared
                    .list_subscriptions()
                    .await
                    .map_err(SubscribeError::Unavailable)?;
                let mut subscribers: Vec<SubscriberInfo> =
                    raw.iter().filter_map(|v| decode_info(v)).collect();
                subscribers.sort_by(|a, b| a.subscriber.cmp(&b.subscriber));
                subscribers.dedup_by(|a, b| a.subscriber == b.subscriber);
                Ok(SubscriptionsSnapshot {
                    last_event_id: last.map(Sid::event_id),
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

    /// Publishes the updates announcing one change, in order. With Redis the first one also
    /// records the change in this node's subscriber hash, atomically.
    pub(crate) async fn announce(&self, change: SubscriptionChange, updates: Vec<Update>) {
        let mut subs = match &self.inner.storage {
            Storage::Redis(_) => Some(if change.active {
                SubsChange::Set(change.info.subscriber.clone(), encode_info(&change.info))
            } else {
                SubsChange::Del(change.info.subscriber.clone())
            }),
            _ => None,
        };
        for update in updates {
            // Only the first update carries the change to the list.
            let carried = subs.take();
            let carries = carried.is_some();
            let res = match &self.inner.storage {
                Storage::Redis(r) => self.publish_redis_with(r, update, carried).await,
                _ => self.publish(update).await,
            };
            if let Err(e) = res {
                // Closed at shutdown is expected; anything else loses one announcement.
                if !matches!(e, PublishError::Closed) {
                    tracing::warn!(error = %e, subscriber = %change.info.subscriber, "could not announce a subscription change");
                    if let (true, Storage::Redis(r)) = (carries, &self.inner.storage) {
                        // The list missed the change too: have it rewritten once Redis answers.
                        r.subs_dirty
                            .store(true, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                return;
            }
        }
        // No update to carry it (an announcer that returned none): record it alone.
        if let (Some(change), Storage::Redis(r)) = (subs, &self.inner.storage) {
            let (field, value) = match change {
                SubsChange::Set(f, v) => (f, Some(v)),
                SubsChange::Del(f) => (f, None),
            };
            let res = match value {
                Some(v) => r.shared.rewrite_subscriptions(&[(field, v)]).await,
                None => r.shared.remove_subscription(&field).await,
            };
            if let Err(e) = res {
                tracing::warn!(error = %e, "redis: could not record a subscription change");
                r.subs_dirty
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }

    /// Redis: writes this node's subscriber hash again from the local list.
    pub(crate) async fn resync_subscriptions(&self) {
        let Storage::Redis(r) = &self.inner.storage else {
            return;
        };
        let all: Vec<(String, String)> = self
            .local_subscribers()
            .into_iter()
            .map(|i| {
                let v = encode_info(&i);
                (i.subscriber, v)
            })
            .collect();
        if let Err(e) = r.shared.rewrite_subscriptions(&all).await {
            tracing::debug!(error = %e, "redis: could not rewrite this node's subscribers");
            r.subs_dirty
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

/// A subscriber as stored in Redis.
fn encode_info(i: &SubscriberInfo) -> String {
    serde_json::json!({
        "subscriber": i.subscriber,
        "topics": i.topics,
        "match_types": i.match_types,
        "payload": i.payload,
    })
    .to_string()
}

fn decode_info(raw: &[u8]) -> Option<SubscriberInfo> {
    let v: serde_json::Value = serde_json::from_slice(raw).ok()?;
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

/// Redis: where replay after `last` starts when this node's ring can serve it alone (a
/// publisher id it holds, or a stream id between the ring's base and head).
fn redis_ring_start(h: &History, last: &str) -> Option<u64> {
    if let Some(seq) = h.seq_of_publisher_id(last) {
        return Some(seq + 1);
    }
    let x = Sid::from_event_id(last)?;
    (x >= h.sid_base() && x <= h.sid_head()).then(|| h.seq_after_sid(x))
}

/// The latest ring entry of each topic `sub` selects (that it may see), oldest first: the
/// retained state of a RAM-only hub. Returns how many were queued.
fn retained_from_ring(history: &History, sub: &Sub, q: &mut Queue) -> u64 {
    let mut seen: std::collections::HashSet<&str> = std::collections::HashSet::new();
    let mut picked: Vec<&Entry> = Vec::new();
    for e in history.iter().rev() {
        let mut newest = false;
        for t in e.topics.iter() {
            if sub.selectors.iter().any(|s| s.matches(t)) && seen.insert(t.as_str()) {
                newest = true;
            }
        }
        if newest {
            picked.push(e);
        }
    }
    let mut n = 0;
    for e in picked.into_iter().rev() {
        if sub.wants(&e.topics, e.private) {
            q.push_unbounded(e.frame.clone());
            n += 1;
        }
    }
    n
}

/// How many selector-against-topic evaluations one replay step may do while holding the hub
/// lock (a subscriber's selectors are evaluated against each retained update it scans). A
/// subscriber chooses its selectors (up to 128 URL patterns) and asks for replay from the
/// oldest update, so without a bound one subscribe could hold every publish for as long as
/// that takes: 10,000 retained updates x 128 patterns x ~0.5 µs = 0.6 s. At most ~2 ms per step
/// with compiled matchers; the rest is scanned in later steps (see `replay`).
const REPLAY_STEP_EVALUATIONS: usize = 4096;

/// Offers retained entries from `from` on that `sub` wants; stops at the first that does not fit
/// (the queue is then `Lagged` at it). Returns how many were queued. `live`: a lagged
/// subscriber catching up, whose updates keep their publish stamps for the latency sample
/// (replay on connect is not sampled: those updates were published before it asked).
///
/// Scans at most [`REPLAY_STEP_EVALUATIONS`] worth of entries (at least one): past that the
/// queue is marked `Lagged` at the next entry, exactly as when it is full, so its stream goes on
/// from there in later steps (`Hub::catch_up`), each a lock hold of its own, and publishers
/// skip it meanwhile: the order and the join with live delivery are the lag policy's.
fn replay(history: &History, sub: &Sub, q: &mut Queue, from: u64, live: bool) -> u64 {
    let mut n = 0;
    let per_topic = sub.selectors.len() + sub.authorized.as_ref().map_or(0, |a| a.len());
    let mut budget = REPLAY_STEP_EVALUATIONS;
    let mut first = true;
    for e in history.range_from(from) {
        let cost = per_topic * e.topics.len();
        if cost > budget && !first {
            if q.mode == Mode::Live {
                q.mode = Mode::Lagged { resume_from: e.seq };
                q.lagged_sid = e.sid;
            }
            break;
        }
        first = false;
        budget = budget.saturating_sub(cost);
        if !sub.wants(&e.topics, e.private) {
            continue;
        }
        let stamp = if live { e.stamp } else { 0 };
        if !q.offer_at(e.seq, e.sid, &e.frame, stamp) {
            break;
        }
        n += 1;
    }
    n
}

pub(crate) fn encode_update(
    id: &str,
    event_type: Option<String>,
    retry: Option<Duration>,
    data: String,
) -> Result<Bytes, PublishError> {
    let mut event = Event::new()
        .id(id)
        .map_err(|_| PublishError::InvalidId)?
        .data(data);
    if let Some(t) = event_type {
        event = event.event(t).map_err(|_| PublishError::InvalidEventType)?;
    }
    if let Some(r) = retry {
        event = event.retry(r);
    }
    Ok(event.encode())
}

/// The `Mercure-Last-Event-ID` value for a resume from `last`: itself when it resolved to a
/// retained update, else `earliest` (as for `earliest` itself).
fn resumed_after(last: &str, found: bool) -> Box<str> {
    if found && last != crate::EARLIEST {
        last.into()
    } else {
        crate::EARLIEST.into()
    }
}

pub(crate) fn gap_frame(requested: &str, gap: Resolved, oldest: Option<&str>) -> Bytes {
    let reason = if gap == Resolved::Expired {
        "expired"
    } else {
        "unknown"
    };
    let data = serde_json::json!({ "reason": reason, "lastEventID": requested, "oldest": oldest });
    // The event type is a constant without CR/LF, so this cannot fail.
    match Event::new().event(HISTORY_GAP_EVENT) {
        Ok(e) => e.data(data.to_string()).encode(),
        Err(_) => Bytes::new(),
    }
}

const LAGGED_REASON: &str = "subscriber fell behind and the updates it missed are no longer \
                             retained; reconnect with Last-Event-ID to resume";

fn lagged_frame() -> Bytes {
    lagged_frame_with(LAGGED_REASON)
}

fn lagged_frame_with(reason: &str) -> Bytes {
    match Event::new().event(LAGGED_EVENT) {
        Ok(e) => e.data(reason).encode(),
        Err(_) => Bytes::new(),
    }
}

/// A Redis-backed hub's presence exchange: every second, publish this node's counts and
/// take the other live nodes' (see `redis_store`). On a Redis error only this node counts
/// until the next successful exchange.
async fn cluster_presence(hub: Weak<Inner>) {
    let mut tick = tokio::time::interval(crate::redis_store::PRESENCE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = hub.upgrade() else { return };
        let Storage::Redis(r) = &inner.storage else {
            return;
        };
        let shared = r.shared.clone();
        let (closed, total, selectors) = {
            let st = inner.state.lock();
            let selectors: Vec<(String, usize)> = st
                .selector_counts
                .iter()
                .map(|(k, &n)| (k.to_string(), n))
                .collect();
            (st.closed, st.subs.len(), selectors)
        };
        // Do not keep the hub alive across the await.
        drop(inner);
        if closed {
            shared.leave_presence().await;
            return;
        }
        match shared.exchange_presence(total, &selectors).await {
            Ok(remote) => {
                let Some(inner) = hub.upgrade() else { return };
                // The subscriber hash expired (Redis restarted, or this node stalled past
                // the TTL) while this node has subscribers, or missed a change while Redis
                // was unreachable: write it again.
                let dirty = match &inner.storage {
                    Storage::Redis(r) => r
                        .subs_dirty
                        .swap(false, std::sync::atomic::Ordering::Relaxed),
                    _ => false,
                };
                if inner.tracker.get().is_some() && (dirty || (!remote.subs_alive && total > 0)) {
                    Hub {
                        inner: inner.clone(),
                    }
                    .queue_resync();
                }
                if let Storage::Redis(r) = &inner.storage {
                    *r.remote.lock() = remote;
                }
            }
            Err(e) => {
                // The others cannot be counted now: count this node alone rather than nodes
                // that may have died meanwhile.
                tracing::debug!(error = %e, "redis: presence refresh failed");
                if let Some(inner) = hub.upgrade()
                    && let Storage::Redis(r) = &inner.storage
                {
                    *r.remote.lock() = Default::default();
                }
            }
        }
    }
}

async fn heartbeat(hub: Weak<Inner>, every: Duration) {
    let start = tokio::time::Instant::now() + every;
    let mut tick = tokio::time::interval_at(start, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = hub.upgrade() else { return };
        let st = inner.state.lock();
        if st.closed {
            return;
        }
        for (_, sub) in st.subs.iter() {
            let mut q = sub.queue.lock();
            let was_active = std::mem::replace(&mut q.active, false);
            if !was_active && q.mode == Mode::Live && q.is_empty() {
                q.push_unbounded(HEARTBEAT.clone());
                q.active = false;
            }
        }
    }
}

/// The index uses a subscription took before the hub lock; released on drop unless the
/// subscriber was registered (then its `ids` are emptied and `unsubscribe` releases them).
/// Declared before the hub lock's guard, it is dropped after it.
struct Claimed<'a> {
    inner: &'a Inner,
    ids: Vec<MatcherId>,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.inner.release_matchers(&self.ids);
    }
}

/// A subscriber's stream of ready-to-write `text/event-stream` bytes. Dropping it unsubscribes.
pub struct SubscriberStream {
    hub: Hub,
    key: usize,
    id: u64,
    queue: Arc<Mutex<Queue>>,
    payload: Option<Arc<serde_json::Value>>,
    /// The id of the event before the first one this stream sends (see
    /// [`SubscriberStream::cursor`]).
    cursor: Option<Box<str>>,
    filter: Filter,
    /// Redis: the replay still to read from the stream before joining live delivery. In a
    /// `Mutex` only so the stream stays `Sync`; it is reached through `get_mut`, never locked.
    fetch: Option<std::sync::Mutex<Fetch>>,
    /// Set by [`SubscriberStream::coalescing`].
    coalesce: bool,
    /// This wake-up already let the other ready tasks go first once (see `coalescing`).
    deferred: bool,
    /// When the last batch with a live update was written (a `Metrics::stamp`; 0: never).
    flushed: u64,
}

/// How fresh the lone frame of a coalescing stream must be for its writer to step aside once:
/// a writer that runs this soon after the publish that woke it was run straight after that
/// publish's task (tokio runs the task woken last next, on the same thread).
const COALESCE_AGE: Duration = Duration::from_micros(100);

/// ... and how recent its previous write: only a writer kept busy by a stream of updates steps
/// aside. One woken by an occasional publish writes at once, in its turn, whatever its turn is.
const COALESCE_BUSY: Duration = Duration::from_millis(1);

/// A subscriber's selectors and private authorization, for catch-up outside the hub lock.
type Filter = (Arc<[Selector]>, Option<Arc<[Selector]>>);

impl std::fmt::Debug for SubscriberStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubscriberStream")
            .field("id", &self.id)
            .field("topics", &self.filter.0)
            .finish()
    }
}

impl SubscriberStream {
    /// The hub-local subscriber id (also given to presence hooks).
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The subscriber id the subscriptions API shows (`urn:uuid:` and a random v4 UUID);
    /// `None` once the subscriber was removed from the hub.
    pub fn subscriber_id(&self) -> Option<String> {
        let st = self.hub.inner.state.lock();
        st.subs
            .get(self.key)
            .filter(|s| s.id == self.id)
            .map(|s| urn(&s.uuid))
    }

    /// The id of the event preceding the first event this stream sends: what Mercure 1.0 sends
    /// as the `Mercure-Last-Event-ID` response field to a subscriber that asked to resume, and
    /// 0.x hubs as the `Last-Event-ID` response header. After [`Subscription::last_event_id`]:
    /// the id asked for when it is retained, else `earliest` (it was `earliest`, is unknown, or
    /// is no longer retained: the stream starts at the oldest retained update, after an
    /// `ssehub.history-gap` event). Without one: the newest retained update's id when the
    /// subscription started, `None` when nothing was retained. On Redis, an id older than this
    /// node's ring is resolved after this is read: it reads as retained, and a gap found then
    /// is told in-band.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// The id of the newest retained update now (what 0.x hubs sent as the `Last-Event-ID`
    /// response header whatever the resume point), `None` when nothing is retained.
    pub fn head_event_id(&self) -> Option<String> {
        self.hub.last_event_id()
    }

    /// For the task that writes this stream to a socket: batch more per write under load.
    ///
    /// Without it, a busy subscriber can cost one write per update. When a publish wakes
    /// several writers, tokio runs the one woken last right after the publishing task, on
    /// the same thread, before the other requests already waiting: that writer finds one
    /// update, writes it, and is woken last again by the next publish (measured: with 10
    /// subscribers and 16 publishers, one subscriber's socket got a write per publish, the other
    /// nine one per ~13). A coalescing stream whose only queued frame was published less than
    /// 100 µs ago, and which wrote less than 1 ms ago, wakes its own task and returns `Pending`
    /// once, which puts it behind the tasks already ready; its next poll takes everything
    /// queued by then. A subscriber that gets an update now and then is never held back.
    ///
    /// Off by default: a caller that polls once and expects what was just published (a test
    /// with a no-op waker) would see `Pending` first. The server's writers turn it on.
    pub fn coalescing(mut self) -> Self {
        self.coalesce = true;
        self
    }
}

impl Stream for SubscriberStream {
    type Item = Bytes;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let this = self.get_mut();
        // The writer is back: the batch it took last is written. Recorded after the queue's
        // lock is released, so publishers never wait on the clock read.
        let mut written = None;
        let poll = this.poll_queue(cx, &mut written);
        if let Some((bytes, stamp)) = written
            && let Some(now) = this.hub.inner.metrics.written(bytes, stamp)
        {
            this.flushed = now;
        }
        poll
    }
}

impl SubscriberStream {
    fn poll_queue(
        &mut self,
        cx: &mut Context<'_>,
        written: &mut Option<(u64, u64)>,
    ) -> Poll<Option<Bytes>> {
        let this = self;
        loop {
            let mut q = this.queue.lock();
            if written.is_none() {
                *written = q.settle();
            }
            if this.coalesce
                && !this.deferred
                && this.flushed != 0
                && let Some(stamp) = q.lone_stamp()
            {
                drop(q);
                this.deferred = true;
                let now = this.hub.inner.metrics.stamp();
                if now.saturating_sub(stamp) < COALESCE_AGE.as_nanos() as u64
                    && now.saturating_sub(this.flushed) < COALESCE_BUSY.as_nanos() as u64
                {
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
                continue;
            }
            if let Some(batch) = q.take_batch() {
                this.deferred = false;
                return Poll::Ready(Some(batch));
            }
            match q.mode {
                Mode::Closing => return Poll::Ready(None),
                Mode::Live => {
                    this.deferred = false;
                    q.register(cx.waker());
                    return Poll::Pending;
                }
                Mode::Lagged { .. } => {
                    drop(q);
                    if let Some(from) = this.hub.catch_up(this.key, &this.queue, &this.filter)
                        && let Storage::Redis(r) = &this.hub.inner.storage
                    {
                        this.fetch = Some(std::sync::Mutex::new(Fetch::new(
                            r.shared.clone(),
                            FetchStart::Resume(from),
                            this.hub.inner.max_queued_frames,
                        )));
                    }
                    // A bounded replay step found nothing for this subscriber: let the other
                    // tasks of this thread (publishers among them) run before the next step.
                    let q = this.queue.lock();
                    if q.is_empty() && matches!(q.mode, Mode::Lagged { .. }) {
                        drop(q);
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
                Mode::Fetching => {
                    // Wake on close too, not only when Redis answers.
                    q.register(cx.waker());
                    drop(q);
                    let Some(fetch) = this.fetch.as_mut() else {
                        this.hub
                            .close_fetching(&this.queue, "replay was interrupted");
                        continue;
                    };
                    let fetch = match fetch.get_mut() {
                        Ok(f) => f,
                        Err(poisoned) => poisoned.into_inner(),
                    };
                    match fetch.poll(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(reason)) => {
                            this.fetch = None;
                            this.hub.close_fetching(
                                &this.queue,
                                &format!("storage unavailable: {reason}; reconnect to resume"),
                            );
                        }
                        Poll::Ready(Ok(step)) => {
                            match this
                                .hub
                                .redis_step(this.key, &this.queue, &this.filter, step)
                            {
                                Some(after) => fetch.next_page(after),
                                None => this.fetch = None,
                            }
                        }
                    }
                }
            }
        }
    }
}

impl Drop for SubscriberStream {
    fn drop(&mut self) {
        let reason = self.queue.lock().closed_for;
        self.hub.inner.metrics.closed(reason);
        // One line per close: churn (clients leaving, shutdown) at debug, the hub's own
        // decisions to end a stream at info.
        match reason {
            None => tracing::debug!(
                subscriber = self.id,
                reason = "client_gone",
                "subscriber closed"
            ),
            Some(r @ (CloseReason::Shutdown | CloseReason::Deadline)) => {
                tracing::debug!(
                    subscriber = self.id,
                    reason = r.as_str(),
                    "subscriber closed"
                );
            }
            Some(r) => tracing::info!(
                subscriber = self.id,
                reason = r.as_str(),
                selectors = self.filter.0.len(),
                "subscriber closed"
            ),
        }
        // The uuid lives in the hub's entry only, keeping every stream 16 bytes smaller.
        if let Some((total, uuid)) = self.hub.unsubscribe(self.key, self.id) {
            let hooks = &self.hub.inner.on_leave;
            self.hub.notify(
                hooks,
                PresenceKind::Leave,
                (self.id, uuid),
                &self.filter.0,
                &self.payload,
                total,
            );
            self.hub.track(false, uuid, &self.filter.0, &self.payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every subscriber costs in the hub's table, whatever its options: the deadline
    /// added 8 bytes (112 -> 120 on 64-bit); a subscriber without one has no other cost.
    #[test]
    fn a_subscriber_entry_stays_small() {
        let sub = std::mem::size_of::<Sub>();
        let stream = std::mem::size_of::<SubscriberStream>();
        let queue = std::mem::size_of::<Queue>();
        eprintln!("Sub {sub} B, SubscriberStream {stream} B, Queue {queue} B");
        if cfg!(target_pointer_width = "64") {
            assert!(sub <= 120, "Sub is {sub} bytes");
            assert!(stream <= 152, "SubscriberStream is {stream} bytes");
            assert!(queue <= 144, "Queue is {queue} bytes");
        }
    }
}
