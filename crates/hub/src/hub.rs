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
//!
//! This module holds the hub's state and its plain accessors; the work is in the modules
//! around it: `builder.rs` (making a hub), `publish.rs` (order and fan-out), `subscribe.rs`
//! (registering, and where replay starts), `replay.rs` (replay and catch-up joining live
//! delivery), `stream.rs` (the subscriber's end), `subscriptions.rs` and `cluster.rs`
//! (subscriptions and presence across nodes), and `storage/` (the seam to the log).

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;
use slab::Slab;
use ssehub_selector::{Matched, MatcherId, Selector, SelectorIndex};
use tokio::task::JoinHandle;

use crate::HubBuilder;
use crate::deadline::{Clock, Deadlines};
use crate::history::History;
use crate::metrics::{CloseReason, Latency, Metrics};
use crate::presence::PresenceHook;
use crate::queue::Queue;
use crate::routes::Routes;
use crate::storage::{Position, RemotePresence, Storage};
use crate::subscriptions::Tracker;

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
    pub closes: crate::SubscriberCloses,
    /// Subscribers connected now.
    pub subscribers: usize,
    /// Subscribers connected now whose stream has a deadline
    /// ([`Subscription::expires_at`](crate::Subscription::expires_at), [`HubBuilder::max_connection_lifetime`](crate::HubBuilder::max_connection_lifetime)): the entries of
    /// the hub's deadline index. Those ended by their deadline are counted in
    /// [`SubscriberCloses::deadline`](crate::SubscriberCloses::deadline).
    pub deadlines: usize,
    /// Updates retained in history now.
    pub retained: usize,
    /// Updates the in-memory ring holds now (all of `retained` without a log beyond it).
    pub cached: usize,
    /// What those cost, as [`HubBuilder::history_bytes`](crate::HubBuilder::history_bytes)
    /// counts it: bounded by it when set.
    pub cached_bytes: usize,
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
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("stats", &self.stats()).finish()
    }
}

pub(crate) struct Inner {
    pub(crate) state: Mutex<State>,
    pub(crate) max_queued_frames: usize,
    pub(crate) max_queued_bytes: usize,
    pub(crate) max_subscribers: usize,
    pub(crate) max_selectors: usize,
    pub(crate) on_join: Vec<PresenceHook>,
    pub(crate) on_leave: Vec<PresenceHook>,
    /// Where updates are kept (`storage/`): called once per publish, subscribe or page.
    pub(crate) storage: Arc<dyn Storage>,
    /// Set by [`Hub::track_subscriptions`]: where joins and leaves go to be announced.
    pub(crate) tracker: std::sync::OnceLock<Tracker>,
    pub(crate) metrics: Metrics,
    /// [`HubBuilder::max_connection_lifetime`](crate::HubBuilder::max_connection_lifetime).
    /// The first bytes of a subscription that brings none of its own ([`crate::HubBuilder::retry`]).
    pub(crate) preamble: Option<bytes::Bytes>,
    pub(crate) max_lifetime: Option<Duration>,
    /// The distinct compiled matchers of the subscribers, by literal prefix: evaluated by
    /// publishers before they take `state` (its own lock, never taken while holding `state`
    /// for writing; see `routes.rs`).
    pub(crate) matchers: parking_lot::RwLock<SelectorIndex>,
    /// Deadlines as ticks of the Tokio clock (see `deadline.rs`).
    pub(crate) clock: Clock,
    /// Wakes the deadline task: a new earliest deadline, or the earliest one left.
    pub(crate) deadline_wake: Arc<tokio::sync::Notify>,
    /// The other live nodes' counts, from the last presence exchange (a storage with a
    /// cluster channel; see `cluster.rs`).
    pub(crate) remote: Mutex<RemotePresence>,
    /// A change to this node's list in the cluster failed: the next successful presence
    /// exchange has it written again.
    pub(crate) subs_dirty: AtomicBool,
    /// Tasks that live as long as the hub (the presence exchange).
    pub(crate) tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for task in self.tasks.get_mut().drain(..) {
            task.abort();
        }
    }
}

pub(crate) struct State {
    pub(crate) history: History,
    pub(crate) subs: Slab<Sub>,
    /// Exact topics, `*`, and each compiled matcher -> its subscribers.
    pub(crate) routes: Routes,
    /// Selector text -> subscribers that asked for it.
    pub(crate) selector_counts: HashMap<Box<str>, usize>,
    pub(crate) closed: bool,
    /// [`Hub::drain`] started: new subscriptions are refused, publishes still delivered.
    pub(crate) draining: bool,
    pub(crate) next_sub_id: u64,
    pub(crate) stats: HubStats,
    /// Subscribers with a deadline, by deadline (see `deadline.rs`).
    pub(crate) deadlines: Deadlines,
}

pub(crate) struct Sub {
    pub(crate) id: u64,
    /// The subscriber id the subscriptions API shows (`urn:uuid:` + this).
    pub(crate) uuid: uuid::Uuid,
    pub(crate) payload: Option<Arc<serde_json::Value>>,
    pub(crate) queue: Arc<Mutex<Queue>>,
    pub(crate) selectors: Arc<[Selector]>,
    pub(crate) authorized: Option<Arc<[Selector]>>,
    /// Seq of the last update this subscriber was considered for: dedupes multi-topic matches.
    pub(crate) mark: u64,
    /// This subscriber already has every update of the log up to here (its replay read
    /// further than this hub had delivered), so fan-out skips them.
    pub(crate) skip_through: Option<Position>,
    /// Where its key is in the one routing list it is in (`*`, its only topic, or its only
    /// compiled matcher), so a leave removes it without a scan: a scan made N leaves of one
    /// topic cost O(N²) under the hub lock (15,000 at once: 5 % of the hub's CPU for a ramp and
    /// its teardown). [`UNTRACKED`] for a subscriber in several lists, which are scanned.
    pub(crate) slot: u32,
    /// Its entry in the deadline index (a tick of `Inner::clock`); 0: none.
    pub(crate) deadline: u64,
}

impl Sub {
    pub(crate) fn wants(&self, topics: &[String], private: bool) -> bool {
        wants(&self.selectors, self.authorized.as_deref(), topics, private)
    }
}

/// Whether a subscriber with these selectors (and private authorization) receives an update.
pub(crate) fn wants(
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
}

impl Inner {
    /// Which compiled matchers match `topics`, evaluated before taking the hub lock (each
    /// distinct matcher once per topic, only where its literal prefix fits).
    pub(crate) fn evaluate(&self, topics: &[String]) -> Matched {
        let mut matched = Matched::default();
        self.matchers.read().matching(topics, &mut matched);
        matched
    }

    /// Drops one use of each of these matchers (after the hub lock is released).
    pub(crate) fn release_matchers(&self, ids: &[MatcherId]) {
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

    /// A cluster change failed to reach the list: have it written again.
    pub(crate) fn mark_subs_dirty(&self) {
        self.subs_dirty
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Hub {
    /// Ends every subscription cleanly (queued frames are still sent) and refuses new publishes
    /// and subscriptions. Idempotent.
    pub fn close(&self) {
        let mut st = self.inner.state.lock();
        st.closed = true;
        for (_, sub) in st.subs.iter() {
            sub.queue.lock().close(CloseReason::Shutdown);
        }
    }

    /// Ends every stream open now, cleanly (queued frames are still sent), while the hub stays
    /// open: each client reconnects after its `retry` time with its `Last-Event-ID` and
    /// resumes where it was, replay joining live delivery as for any reconnect. For moving
    /// clients to a node just added behind a balancer, or to show what a dropped connection
    /// does (the examples do it on `SIGHUP`, see `ssehub_server::Serve::reconnect_on_hangup`).
    /// Returns how many streams it ended.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use futures_util::StreamExt;
    /// use ssehub_hub::{Hub, Subscription};
    ///
    /// let hub = Hub::new();
    /// let mut stream = hub.subscribe(Subscription::to("news"))?;
    /// assert_eq!(hub.disconnect_all(), 1);
    /// assert_eq!(stream.next().await, None);
    /// assert!(!hub.is_closed());
    /// # Ok(()) }
    /// ```
    pub fn disconnect_all(&self) -> usize {
        let st = self.inner.state.lock();
        for (_, sub) in st.subs.iter() {
            sub.queue.lock().close(CloseReason::Shutdown);
        }
        st.subs.len()
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
        let remote = self
            .remote()
            .and_then(|r| r.selectors.get(selector).copied());
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
        if let Some(remote) = self.remote() {
            for (k, n) in remote.selectors.iter() {
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
        local + self.remote().map_or(0, |r| r.subscribers)
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
        let retained = self
            .inner
            .storage
            .retained()
            .map_or(st.history.len(), |n| n as usize);
        HubStats {
            subscribers: st.subs.len(),
            deadlines: st.deadlines.len(),
            retained,
            cached: st.history.len(),
            cached_bytes: st.history.bytes(),
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
        let mut top: Vec<(String, usize)> = if self.inner.storage.cluster().is_some() {
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

    pub(crate) fn from_weak(weak: &Weak<Inner>) -> Option<Hub> {
        weak.upgrade().map(|inner| Hub { inner })
    }

    /// The other nodes' counts, when the storage has a cluster channel.
    fn remote(&self) -> Option<parking_lot::MutexGuard<'_, RemotePresence>> {
        self.inner
            .storage
            .cluster()
            .map(|_| self.inner.remote.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SubscriberStream;

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
