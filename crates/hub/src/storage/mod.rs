//! The storage seam: the one interface through which the hub core talks to wherever its updates
//! are kept. The core owns ordering of delivery, fan-out, queues, the ring, replay from the ring,
//! catch-up joining live delivery, presence and heartbeats; a backend owns the log.
//!
//! A backend is two types:
//!
//! - a [`Backend`]: configuration, given to [`crate::HubBuilder::storage`]; the hub calls
//!   [`Backend::open`] once, while it is being built, with the [`Sink`] the backend hands its
//!   ordered updates to;
//! - the [`Storage`] it opens: what the core calls at run time. Every method is called once per
//!   publish, per subscribe or per replay page, never per delivered event, so one dynamic
//!   dispatch per call is all the seam costs (the fan-out never sees it).
//!
//! Updates flow one way: a publish goes to [`Storage::append`]; once the backend has put the
//! update in its order (committed it), it hands it to [`Sink::deliver`], in order, and the core
//! fans it out and caches it in the ring. The RAM-only backend ([`MemoryBackend`], the
//! default) is the degenerate case: its order is the ring's, so its append orders the update
//! through [`Core::order_locally`] and delivers it in the same lock hold.
//!
//! Reading what the ring no longer holds is the backend's: [`Storage::resolve`] and
//! [`Storage::latest`] when it can answer at once (a local log), else [`Storage::read`], an
//! asynchronous page reader the subscriber's stream polls outside the hub lock. The core
//! joins the pages to live delivery at a [`Position`]: every update a backend delivers carries
//! one, ordered like the log, and the ring knows the range it holds.
//!
//! Several nodes sharing one log (Redis) also share presence and subscriptions through the
//! backend's [`Cluster`] channel.

pub(crate) mod memory;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use ssehub_selector::Selector;

use crate::error::PublishError;
use crate::hub::Inner;
use crate::subscriptions::{SubscriberInfo, SubscriptionChange};
use crate::update::Update;

pub use memory::MemoryBackend;

/// A position in a backend's log, ordered like the log: a Redis stream id `{ms}-{seq}` is
/// `(ms, seq)`, a durable log's seq `s` is `(0, s)`. [`Position::ZERO`] is before every update.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// The most significant part.
    pub major: u64,
    /// The least significant part.
    pub minor: u64,
}

impl Position {
    /// Before every update (no backend gives it to one).
    pub const ZERO: Position = Position { major: 0, minor: 0 };

    /// `(major, minor)`.
    pub const fn new(major: u64, minor: u64) -> Position {
        Position { major, minor }
    }
}

/// One update in the log's order, as a backend hands it to the hub: already encoded as the
/// `text/event-stream` frame every subscriber gets.
#[derive(Debug, Clone)]
pub struct Ordered {
    /// Where it is in the log.
    pub position: Position,
    /// The id subscribers see (the publisher's, or one the backend assigned).
    pub id: Arc<str>,
    /// Whether `id` is the publisher's.
    pub publisher_id: bool,
    /// Its topics, canonical first.
    pub topics: Vec<String>,
    /// Private: only subscribers authorized for one of its topics receive it.
    pub private: bool,
    /// The encoded frame (see [`encode_update`]).
    pub frame: Bytes,
}

/// Why a `Last-Event-ID` cannot be resumed exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapKind {
    /// Not an id this log knows.
    Unknown,
    /// Known, but what followed it is no longer retained.
    Expired,
}

/// A gap the client is told about in-band (the [`crate::HISTORY_GAP_EVENT`]) before replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    /// Unknown or expired.
    pub kind: GapKind,
    /// The `Last-Event-ID` asked for.
    pub requested: String,
    /// The id of the oldest retained update, if any.
    pub oldest: Option<Arc<str>>,
}

/// Where replay for a `Last-Event-ID` starts, as a backend resolved it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// Replay every update after this position.
    pub after: Position,
    /// Set when the id could not be resumed exactly (replay then starts at the oldest retained).
    pub gap: Option<Gap>,
}

/// Where a [`Storage::read`] starts.
#[derive(Debug, Clone)]
pub enum ReadFrom {
    /// A `Last-Event-ID` neither [`Storage::resolve`] nor the ring could place: resolve it
    /// against the log, then read the page after it.
    Resolve(String),
    /// `retained=latest`: the newest update of each topic these selectors match (each update
    /// once, oldest first), and the position they are consistent with.
    Latest(Arc<[Selector]>),
    /// The page after this position (exclusive).
    After(Position),
    /// Lag catch-up: the page from this position on (inclusive), which must still be retained
    /// (else the step is [`Step::lost`]).
    At(Position),
}

/// One page of a [`Storage::read`].
#[derive(Debug)]
pub struct Step {
    /// Told to the client before `entries`.
    pub gap: Option<Gap>,
    /// Updates, oldest first.
    pub entries: Vec<Ordered>,
    /// The position `entries` reach (the next page starts after it).
    pub after: Position,
    /// The log had nothing after the previous position.
    pub exhausted: bool,
    /// What the subscriber needs next was trimmed away: it gets the lagged event.
    pub lost: bool,
    /// `entries` are a contiguous range of the log (the core may take a prefix that fits the
    /// subscriber's queue), not retained state (taken whole).
    pub range: bool,
}

/// A page being read; polled by the subscriber's stream, outside the hub lock.
pub type ReadFuture = Pin<Box<dyn Future<Output = Result<Step, String>> + Send>>;

/// A storage call that completes later.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What [`Storage::append`] returns: done at once (the RAM ring, or a refusal), or a future
/// (a commit, a network round trip) whose time the hub records as storage latency.
pub enum Append<'a> {
    /// The answer, now.
    Done(Result<String, PublishError>),
    /// The answer once the backend has it.
    Pending(StorageFuture<'a, Result<String, PublishError>>),
}

impl fmt::Debug for Append<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Append::Done(r) => f.debug_tuple("Done").field(r).finish(),
            Append::Pending(_) => f.write_str("Pending"),
        }
    }
}

/// Why a storage backend could not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The log could not be opened or read.
    #[error("storage: {0}")]
    Open(String),
    /// The backend needs a Tokio runtime (it starts tasks), and there is none.
    #[error("storage: {0} needs a Tokio runtime")]
    NoRuntime(&'static str),
}

/// A configured storage, not open yet: given to [`crate::HubBuilder::storage`].
pub trait Backend: fmt::Debug + Send + Sync + 'static {
    /// Opens the storage for one hub. Called once, while the hub is built: `sink` is where the
    /// storage hands every update it orders, in order (keep it; it does not keep the hub
    /// alive). Do not deliver from here; tasks that deliver start in [`Storage::start`].
    fn open(&self, sink: Sink) -> Result<Opened, StorageError>;
}

/// An open storage and where the hub's ring starts.
#[derive(Debug)]
pub struct Opened {
    /// The storage.
    pub storage: Arc<dyn Storage>,
    /// The epoch of ring-assigned ids `#{epoch}-{seq}` (only the RAM ring assigns ids).
    pub epoch: u64,
    /// The position of the newest update already in the log: the ring follows from there.
    pub after: Position,
    /// Its id (the hub's [`crate::Hub::last_event_id`] until a new update comes).
    pub last_id: Option<Arc<str>>,
}

/// Where the hub's updates are kept. See the module docs for the flow; every method but
/// [`Storage::append`] has a default for a backend without that ability.
pub trait Storage: fmt::Debug + Send + Sync + 'static {
    /// Starts what delivers to the sink (a reader task), once the hub exists.
    fn start(&self, sink: &Sink) -> Result<(), StorageError> {
        let _ = sink;
        Ok(())
    }

    /// Puts `update` in the log's order and answers its id once it is acknowledged (durable:
    /// on disk). Validation and refusals (closed hub, reserved or duplicate ids) should come
    /// back as [`Append::Done`], so storage latency measures storage only.
    fn append<'a>(&'a self, update: Update, core: Core<'a>) -> Append<'a>;

    /// [`Storage::append`] for a caller that cannot wait ([`crate::Hub::publish_now`]);
    /// refused with [`PublishError::NeedsAwait`] unless the backend never waits.
    fn append_now(&self, update: Update, core: Core<'_>) -> Result<String, PublishError> {
        let _ = core;
        update.validate()?;
        Err(PublishError::NeedsAwait)
    }

    /// Resolves a `Last-Event-ID` at once (before the hub lock), when the backend can.
    /// `Ok(None)`: the ring decides, and what it does not hold is read with
    /// [`ReadFrom::Resolve`].
    fn resolve(&self, last_event_id: &str) -> Result<Option<Resolution>, String> {
        let _ = last_event_id;
        Ok(None)
    }

    /// The newest update of each topic `selects` accepts, at once, when the backend can
    /// (any order; the core sends those older than the ring's head, oldest first).
    /// `Ok(None)`: read with [`ReadFrom::Latest`], or from the ring without a log.
    fn latest(&self, selects: &dyn Fn(&str) -> bool) -> Result<Option<Vec<Ordered>>, String> {
        let _ = selects;
        Ok(None)
    }

    /// The position a backend-assigned id names, so the ring can serve it; `None` for an id
    /// the backend did not assign (a publisher's) or one that names no position.
    fn position_of(&self, id: &str) -> Option<Position> {
        let _ = id;
        None
    }

    /// Starts reading the log beyond the ring: pages of at most `page` updates. The future
    /// must do its I/O when polled (it is made under the hub lock). `None`: the ring is the
    /// whole log (the RAM backend).
    fn read(&self, from: ReadFrom, page: usize) -> Option<ReadFuture> {
        let _ = (from, page);
        None
    }

    /// Updates retained, when the log knows (else the ring's count is reported).
    fn retained(&self) -> Option<u64> {
        None
    }

    /// The cross-node channel, for a log shared by several hub processes.
    fn cluster(&self) -> Option<&dyn Cluster> {
        None
    }
}

/// Presence and subscriptions shared by the nodes of one log. The core counts its own
/// subscribers; the channel exchanges the counts and lists with the other live nodes.
pub trait Cluster: Send + Sync {
    /// How often the core exchanges presence.
    fn presence_every(&self) -> Duration {
        Duration::from_secs(1)
    }

    /// Publishes this node's counts (`total` subscribers, per selector) and returns the other
    /// live nodes' counts.
    fn exchange_presence(
        &self,
        total: usize,
        selectors: Vec<(String, usize)>,
    ) -> StorageFuture<'static, Result<RemotePresence, String>>;

    /// Removes this node from presence at once (the hub closed).
    fn leave(&self) -> StorageFuture<'static, ()>;

    /// [`Storage::append`] of a subscription announcement that also records `change` in this
    /// node's list, atomically with the update (`None`: a plain append).
    fn append_announcing<'a>(
        &'a self,
        update: Update,
        change: Option<&'a SubscriptionChange>,
        core: Core<'a>,
    ) -> Append<'a>;

    /// Records `change` in this node's list alone (an announcer that returned no update).
    fn record_change(
        &self,
        change: &SubscriptionChange,
    ) -> StorageFuture<'static, Result<(), String>>;

    /// Replaces this node's whole list.
    fn rewrite_subscriptions(
        &self,
        all: &[SubscriberInfo],
    ) -> StorageFuture<'static, Result<(), String>>;

    /// Every live node's subscribers and the log's last id, read atomically.
    fn subscriptions(&self) -> StorageFuture<'static, Result<Listed, String>>;
}

/// What [`Cluster::subscriptions`] answers: the log's last id when the lists were read, and
/// every live node's subscribers.
pub type Listed = (Option<String>, Vec<SubscriberInfo>);

/// The other live nodes' subscriber counts, from the last presence exchange.
#[derive(Debug, Default, Clone)]
#[non_exhaustive]
pub struct RemotePresence {
    /// Whether this node's subscriber list still existed (it expires when a node stalls).
    pub subs_alive: bool,
    /// Subscribers of the other nodes.
    pub subscribers: usize,
    /// Their counts per selector text.
    pub selectors: std::collections::HashMap<String, usize>,
}

/// Where a backend hands the updates it ordered. Holds the hub weakly.
#[derive(Clone)]
pub struct Sink {
    pub(crate) inner: Weak<Inner>,
}

impl fmt::Debug for Sink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sink")
            .field("alive", &self.is_alive())
            .finish()
    }
}

impl Sink {
    /// Delivers updates in log order: each is fanned out to its subscribers and cached in the
    /// ring, under one hold of the hub lock. An update whose position is not after the last
    /// delivered one is skipped (with a warning): the order never goes back. Returns `false`
    /// once the hub is closed or gone (a reader stops then).
    pub fn deliver(&self, entries: Vec<Ordered>) -> bool {
        match self.inner.upgrade() {
            Some(inner) => inner.deliver(entries),
            None => false,
        }
    }

    /// Whether the hub still exists.
    pub fn is_alive(&self) -> bool {
        self.inner.strong_count() > 0
    }
}

/// The hub, as a storage call sees it.
#[derive(Clone, Copy)]
pub struct Core<'a> {
    pub(crate) inner: &'a Inner,
}

impl fmt::Debug for Core<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Core").finish_non_exhaustive()
    }
}

impl Core<'_> {
    /// `Err(Closed)` once the hub is closed.
    pub fn ensure_open(&self) -> Result<(), PublishError> {
        if self.inner.state.lock().closed {
            Err(PublishError::Closed)
        } else {
            Ok(())
        }
    }

    /// Orders the update in the hub's own ring and delivers it, in one lock hold: the RAM-only
    /// log. Ids are `#{epoch}-{seq}` of the ring; publisher ids are checked against the ring.
    pub fn order_locally(&self, update: Update) -> Result<String, PublishError> {
        self.inner.order_locally(update)
    }
}

/// The parts of an update, for a backend that stores them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct UpdateParts {
    /// Topics, canonical first.
    pub topics: Vec<String>,
    /// The data.
    pub data: String,
    /// The SSE event type.
    pub event_type: Option<String>,
    /// The publisher-chosen id.
    pub id: Option<String>,
    /// The reconnection time advised.
    pub retry: Option<Duration>,
    /// Private.
    pub private: bool,
}

impl Update {
    /// Takes the update apart (for a storage backend).
    pub fn into_parts(self) -> UpdateParts {
        UpdateParts {
            topics: self.topics,
            data: self.data,
            event_type: self.event_type,
            id: self.id,
            retry: self.retry,
            private: self.private,
        }
    }
}

/// Encodes an update's frame: `id`, then `event`, `retry` and `data` as the codec writes them.
/// Fails only for an id or type the update's validation refuses.
pub fn encode_update(
    id: &str,
    event_type: Option<String>,
    retry: Option<Duration>,
    data: String,
) -> Result<Bytes, PublishError> {
    let mut event = ssehub_codec::Event::new()
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

/// A hub-generated id: the fragment `#{a}-{b}` (Mercure 1.0 forbids publishers ids starting
/// with `#`, so these cannot collide with theirs).
pub fn hub_id(a: u64, b: u64) -> String {
    format!("#{a}-{b}")
}

/// The `b` of a hub-generated id `#{epoch}-{b}` (or the bare `{epoch}-{b}` of earlier
/// versions) of this epoch; `None` for any other text.
pub fn parse_hub_id(epoch: u64, id: &str) -> Option<u64> {
    let id = id.strip_prefix('#').unwrap_or(id);
    let (e, seq) = id.split_once('-')?;
    if e.parse::<u64>().ok()? != epoch {
        return None;
    }
    // Reject "+5" and similar that `parse` would accept: ids are compared as text by clients.
    if !seq.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    seq.parse().ok()
}
