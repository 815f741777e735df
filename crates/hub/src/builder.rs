//! [`HubBuilder`]: a hub's limits, hooks and storage, and the tasks a hub starts (heartbeat,
//! the storage's reader, the cluster's presence exchange).

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use slab::Slab;
use ssehub_selector::SelectorIndex;

use crate::deadline::{Clock, Deadlines};
use crate::history::History;
use crate::hub::{Hub, HubStats, Inner, State};
use crate::metrics::Metrics;
use crate::presence::{PresenceEvent, PresenceHook};
use crate::queue::Mode;
use crate::routes::Routes;
use crate::storage::{Backend, MemoryBackend, Opened, Sink, StorageError};

/// A comment line with no blank line after it: several popular SSE clients dispatch an empty
/// message at every blank line, so a keep-alive must not end a frame (see
/// `ssehub_codec::comment_line`).
static HEARTBEAT: Bytes = Bytes::from_static(b":\n");

/// Configures and builds a [`Hub`].
#[derive(Clone)]
pub struct HubBuilder {
    history_size: usize,
    history_bytes: Option<usize>,
    heartbeat: Option<Duration>,
    max_queued_frames: usize,
    max_queued_bytes: usize,
    max_subscribers: usize,
    max_selectors: usize,
    on_join: Vec<PresenceHook>,
    on_leave: Vec<PresenceHook>,
    storage: Arc<dyn Backend>,
    max_lifetime: Option<Duration>,
    announcers: Vec<Announcer>,
    retry: Option<Duration>,
}

/// Makes an update of a join or leave ([`HubBuilder::announce_presence`]).
type Announcer = Arc<dyn Fn(&PresenceEvent) -> Option<crate::Update> + Send + Sync>;

impl std::fmt::Debug for HubBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubBuilder")
            .field("history_size", &self.history_size)
            .field("history_bytes", &self.history_bytes)
            .field("heartbeat", &self.heartbeat)
            .field("max_queued_frames", &self.max_queued_frames)
            .field("max_queued_bytes", &self.max_queued_bytes)
            .field("max_subscribers", &self.max_subscribers)
            .field("max_selectors", &self.max_selectors)
            .field("storage", &self.storage)
            .field("max_connection_lifetime", &self.max_lifetime)
            .finish_non_exhaustive()
    }
}

impl Default for HubBuilder {
    fn default() -> Self {
        HubBuilder {
            history_size: 10_000,
            history_bytes: None,
            heartbeat: Some(Duration::from_secs(15)),
            max_queued_frames: 1024,
            max_queued_bytes: 4 * 1024 * 1024,
            max_subscribers: usize::MAX,
            max_selectors: 128,
            on_join: Vec::new(),
            on_leave: Vec::new(),
            storage: Arc::new(MemoryBackend),
            max_lifetime: None,
            announcers: Vec::new(),
            retry: None,
        }
    }
}

impl HubBuilder {
    /// How many updates the history ring retains for replay (default 10,000; 0 disables replay).
    pub fn history_size(mut self, n: usize) -> Self {
        self.history_size = n;
        self
    }

    /// Bounds the history ring by memory as well as by count (default `None`: count only).
    /// An update costs its encoded frame, its id and topics, and about 100 bytes of
    /// bookkeeping; the oldest go first. With a log beyond the ring (a storage backend) the
    /// ring is a cache and what it evicts is read back from the log, so this bounds the hub's
    /// memory without losing replay; with the RAM-only default it shortens the history.
    pub fn history_bytes(mut self, limit: Option<usize>) -> Self {
        self.history_bytes = limit;
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
    /// do not all reconnect together. Combined with [`Subscription::expires_at`](crate::Subscription::expires_at), the earlier
    /// deadline wins. The stream ends as with [`Subscription::expires_at`](crate::Subscription::expires_at): queued frames
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

    /// Starts every subscription that sets no [`crate::Subscription::preamble`] of its own with
    /// `retry: MS` (a line that ends no frame): the reconnection advice, and the first bytes
    /// that make the response head leave at once (browsers fire `open`, proxies stop
    /// waiting). Default: none (the stream's first bytes are its first event).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use futures_util::StreamExt;
    /// use ssehub_hub::{Hub, Subscription};
    ///
    /// let hub = Hub::builder().retry(Duration::from_secs(3)).build();
    /// let mut stream = hub.subscribe(Subscription::to("news"))?;
    /// assert_eq!(stream.next().await.unwrap(), "retry: 3000\n");
    /// # Ok(()) }
    /// ```
    pub fn retry(mut self, retry: Duration) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Publishes what `announce` makes of each join and leave: presence as events, e.g. a
    /// `join` event to a room with the subscriber's name from its payload (`None`: nothing to
    /// say about this one). The hub publishes it itself, in the order of the joins and
    /// leaves, which saves a hook the hub it belongs to (which a hook cannot have before the
    /// hub is built). On a hub whose storage must be awaited (a durable log) the update is
    /// published on a task of its own; one that fails (the hub is closing) is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    /// use ssehub_hub::{Hub, PresenceKind, Subscription, Update};
    ///
    /// let hub = Hub::builder()
    ///     .announce_presence(|ev| {
    ///         let kind = if ev.kind == PresenceKind::Join { "join" } else { "leave" };
    ///         Some(Update::new("room", ev.total.to_string()).event_type(kind))
    ///     })
    ///     .build();
    /// let mut stream = hub.subscribe(Subscription::to("room"))?;
    /// let first = stream.next().await.unwrap();
    /// assert!(first.starts_with(b"event: join\nid: "), "{first:?}");
    /// assert!(first.ends_with(b"\ndata: 1\n\n"));
    /// # Ok(()) }
    /// ```
    pub fn announce_presence(
        mut self,
        announce: impl Fn(&PresenceEvent) -> Option<crate::Update> + Send + Sync + 'static,
    ) -> Self {
        self.announcers.push(Arc::new(announce));
        self
    }

    /// Where the hub keeps its updates (default: [`MemoryBackend`], the ring alone). A
    /// backend is a crate of its own: the durable log (`ssehub-store`), Redis
    /// (`ssehub-store-redis`); see [`crate::storage`]. With a log, the history ring
    /// ([`HubBuilder::history_size`]) caches its newest updates.
    pub fn storage(mut self, backend: impl Backend) -> Self {
        self.storage = Arc::new(backend);
        self
    }

    /// Builds the hub and, when a heartbeat is set and a Tokio runtime is current, starts its
    /// shared heartbeat timer.
    ///
    /// # Panics
    ///
    /// When the storage fails to open (or needs a Tokio runtime and there is none); use
    /// [`HubBuilder::try_build`] to get the error instead.
    pub fn build(self) -> Hub {
        match self.try_build() {
            Ok(hub) => hub,
            Err(e) => panic!("cannot build the hub: {e}"),
        }
    }

    /// [`HubBuilder::build`], returning the storage's error instead of panicking.
    pub fn try_build(self) -> Result<Hub, StorageError> {
        let mut failed = None;
        let inner = Arc::new_cyclic(|weak: &Weak<Inner>| {
            let sink = Sink {
                inner: weak.clone(),
            };
            let opened = match self.storage.open(sink) {
                Ok(opened) => opened,
                Err(e) => {
                    failed = Some(e);
                    // Never used: the error is returned below and this hub dropped.
                    crate::storage::memory::opened()
                }
            };
            self.make_inner(opened, weak)
        });
        if let Some(e) = failed {
            return Err(e);
        }
        inner.storage.start(&Sink {
            inner: Arc::downgrade(&inner),
        })?;
        let runtime = tokio::runtime::Handle::try_current();
        if let Some(cluster) = inner.storage.cluster() {
            match &runtime {
                Ok(rt) => {
                    let task = rt.spawn(crate::cluster::exchange(
                        Arc::downgrade(&inner),
                        cluster.presence_every(),
                    ));
                    inner.tasks.lock().push(task);
                }
                Err(_) => return Err(StorageError::NoRuntime("the presence exchange")),
            }
        }
        if let Some(every) = self.heartbeat {
            match runtime {
                Ok(rt) => {
                    rt.spawn(heartbeat(Arc::downgrade(&inner), every));
                }
                Err(_) => tracing::warn!("Hub built outside a Tokio runtime: no heartbeats"),
            }
        }
        Ok(Hub { inner })
    }

    fn make_inner(&self, opened: Opened, weak: &Weak<Inner>) -> Inner {
        let (mut on_join, mut on_leave) = (self.on_join.clone(), self.on_leave.clone());
        for announce in &self.announcers {
            // A weak handle: the hooks live in the hub, which must not keep itself alive.
            let hook: PresenceHook = Arc::new(announcing(weak.clone(), announce.clone()));
            on_join.push(hook.clone());
            on_leave.push(hook);
        }
        let mut history = History::new(self.history_size, opened.epoch);
        if let Some(limit) = self.history_bytes {
            history.limit_bytes(limit);
        }
        history.follow(opened.after, opened.last_id);
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
            on_join,
            on_leave,
            storage: opened.storage,
            tracker: std::sync::OnceLock::new(),
            metrics: Metrics::default(),
            max_lifetime: self.max_lifetime,
            preamble: self.retry.map(ssehub_codec::retry_line),
            matchers: parking_lot::RwLock::new(SelectorIndex::default()),
            clock: Clock::new(),
            deadline_wake: Arc::new(tokio::sync::Notify::new()),
            remote: Mutex::new(Default::default()),
            subs_dirty: Default::default(),
            tasks: Mutex::new(Vec::new()),
        }
    }
}

/// The presence hook that publishes what `announce` makes of an event.
fn announcing(hub: Weak<Inner>, announce: Announcer) -> impl Fn(&PresenceEvent) + Send + Sync {
    move |event| {
        let Some(inner) = hub.upgrade() else { return };
        let Some(update) = announce(event) else {
            return;
        };
        let hub = Hub { inner };
        match hub.publish_now(update.clone()) {
            Err(crate::PublishError::NeedsAwait) => {
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn(async move {
                        if let Err(e) = hub.publish(update).await {
                            tracing::debug!("presence announcement dropped: {e}");
                        }
                    });
                }
            }
            Err(e) => tracing::debug!("presence announcement dropped: {e}"),
            Ok(_) => {}
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
