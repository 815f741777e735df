//! Subscribing and leaving: a subscription is checked, registered in the routes and the
//! subscriber table, and given what it asked to see first (replay after a `Last-Event-ID`, or
//! the retained latest update per topic), all joined to live delivery in one hold of the hub
//! lock. Where the replay starts is decided here, in the same way for every storage:
//!
//! 1. Before the lock, the storage may answer at once ([`Storage::resolve`],
//!    [`Storage::latest`]: a local log).
//! 2. Under the lock, a start inside the ring is replayed from the ring; one older than the
//!    ring is read from the log by the subscriber's stream ([`Storage::read`], then
//!    [`Hub::join_step`]); a storage without a log beyond the ring has the ring decide alone.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use ssehub_selector::{MatcherId, Selector};

use crate::Subscription;
use crate::deadline::Wake;
use crate::error::SubscribeError;
use crate::history::{Entry, History, Resolved};
use crate::hub::{Hub, Inner, State, Sub};
use crate::metrics::CloseReason;
use crate::presence::{PresenceEvent, PresenceHook, PresenceKind};
use crate::queue::{Mode, Queue};
use crate::replay::{Fetch, gap_frame, replay, ring_start};
use crate::routes::{Plan, UNTRACKED};
use crate::storage::{Gap, GapKind, Position, ReadFrom, Resolution};
use crate::stream::SubscriberStream;

/// Where a subscription's first updates come from, decided before the hub lock.
enum Start {
    /// Live updates only.
    Live,
    /// Everything after this position (the storage resolved the `Last-Event-ID`, or retained
    /// state was sent up to it).
    After(Position),
    /// The ring decides this `Last-Event-ID`; what it does not hold is read from the log.
    Ring(String),
    /// Retained state from the log's reader, or from the ring without a log.
    Latest,
}

impl Hub {
    /// Starts a subscription: replays what it asked for, then streams live updates. The stream
    /// yields ready-to-write `text/event-stream` bytes (possibly several frames per item) and
    /// ends when the hub closes, the subscriber is closed for lagging, or its deadline
    /// ([`Subscription::expires_at`](crate::Subscription::expires_at), [`HubBuilder::max_connection_lifetime`](crate::HubBuilder::max_connection_lifetime)) comes.
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
            invalid,
        } = subscription;
        if let Some(e) = invalid {
            return Err(SubscribeError::InvalidTopic(e));
        }
        let preamble = preamble.or_else(|| self.inner.preamble.clone());
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
        // The storage resolves the replay point and reads retained state before the lock
        // when it can; what is older than the ring is read later by the stream itself.
        let storage = &*self.inner.storage;
        let unavailable = SubscribeError::Unavailable;
        let mut first_frames: Vec<Bytes> = Vec::new();
        // The `Mercure-Last-Event-ID` answer, when a last event id was given.
        let mut resumed: Option<Box<str>> = None;
        let start = if let Some(last) = last_event_id {
            match storage.resolve(&last).map_err(unavailable)? {
                Some(Resolution { after, gap }) => {
                    resumed = Some(resumed_after(&last, gap.is_none()));
                    if let Some(gap) = &gap {
                        first_frames.push(gap_frame(gap));
                    }
                    Start::After(after)
                }
                None => Start::Ring(last),
            }
        } else if retained {
            let selects = |t: &str| sub.selectors.iter().any(|s| s.matches(t));
            match storage.latest(&selects).map_err(unavailable)? {
                Some(mut latest) => {
                    // Updates after `boundary` come through replay below, so the retained
                    // state is everything up to it: no update is sent twice or missed.
                    let boundary = self.inner.state.lock().history.pos_head();
                    latest.sort_by_key(|e| e.position);
                    for e in latest {
                        if e.position <= boundary && sub.wants(&e.topics, e.private) {
                            first_frames.push(e.frame);
                        }
                    }
                    Start::After(boundary)
                }
                None => Start::Latest,
            }
        } else {
            Start::Live
        };

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
            let page = self.inner.max_queued_frames;
            match start {
                Start::Live => {}
                Start::After(after) => {
                    if after >= st.history.pos_base() {
                        if after > st.history.pos_head() {
                            // Resolved past what this hub delivered yet: fan-out skips those.
                            sub.skip_through = Some(after);
                        }
                        let from = st.history.seq_after(after);
                        st.stats.replayed += replay(&st.history, &sub, &mut q, from, false);
                    } else if let Some(fut) = storage.read(ReadFrom::After(after), page) {
                        // Older than the ring: the stream reads it from the log outside the
                        // lock, then joins live delivery (`join_step`); publishers skip it
                        // until then.
                        q.mode = Mode::Fetching;
                        fetch = Some(Fetch::new(fut, page, false));
                    } else {
                        // A storage that resolves but cannot read: never a silent gap.
                        q.push_unbounded(crate::replay::lagged_frame());
                        q.close(CloseReason::Lagged);
                        st.stats.lag_closes += 1;
                    }
                }
                Start::Ring(last) => {
                    if let Some(from) = ring_start(&st.history, storage, &last) {
                        resumed = Some(resumed_after(&last, true));
                        st.stats.replayed += replay(&st.history, &sub, &mut q, from, false);
                    } else if let Some(fut) = storage.read(ReadFrom::Resolve(last.clone()), page) {
                        // Resolved against the log after the response head: its cursor is the
                        // id asked for (a gap found then is told in-band).
                        resumed = Some(resumed_after(&last, true));
                        q.mode = Mode::Fetching;
                        fetch = Some(Fetch::new(fut, page, false));
                    } else {
                        // The ring is the whole log.
                        let from = match st.history.resolve(&last) {
                            Resolved::From(seq) => {
                                resumed = Some(resumed_after(&last, true));
                                seq
                            }
                            gap @ (Resolved::Expired | Resolved::Unknown) => {
                                resumed = Some(resumed_after(&last, false));
                                q.push_unbounded(gap_frame(&Gap {
                                    kind: if gap == Resolved::Expired {
                                        GapKind::Expired
                                    } else {
                                        GapKind::Unknown
                                    },
                                    requested: last.clone(),
                                    oldest: st.history.first_id().map(Arc::from),
                                }));
                                st.history.first_seq()
                            }
                        };
                        st.stats.replayed += replay(&st.history, &sub, &mut q, from, false);
                    }
                }
                Start::Latest => {
                    let read = storage.read(ReadFrom::Latest(sub.selectors.clone()), page);
                    if let Some(fut) = read {
                        q.mode = Mode::Fetching;
                        fetch = Some(Fetch::new(fut, page, false));
                    } else {
                        st.stats.replayed += retained_from_ring(&st.history, &sub, &mut q);
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
            fetch: fetch.map(std::sync::Mutex::new),
            coalesce: false,
            deferred: false,
            flushed: 0,
        })
    }

    /// A subscription whose deadline has passed already: a stream that yields the preamble
    /// and ends, never registered (see [`Subscription::expires_at`](crate::Subscription::expires_at)).
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

    pub(crate) fn notify(
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

    /// Removes a subscriber: the subscribers left and its uuid, `None` if it was gone already.
    pub(crate) fn unsubscribe(&self, key: usize, id: u64) -> Option<(usize, uuid::Uuid)> {
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
}

/// The index uses a subscription took before the hub lock; released on drop unless the
/// subscriber was registered (then its `ids` are emptied and `unsubscribe` releases them).
/// Declared before the hub lock's guard, it is dropped after it.
pub(crate) struct Claimed<'a> {
    inner: &'a Inner,
    ids: Vec<MatcherId>,
}

impl Drop for Claimed<'_> {
    fn drop(&mut self) {
        self.inner.release_matchers(&self.ids);
    }
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
