//! [`SubscriberStream`]: a subscriber's end of the hub. Its writer task polls it for batches
//! of ready-to-write bytes; between batches the poll also runs the subscriber's share of the
//! lag policy (catch-up from the ring, pages read from the log) outside the hub lock, and a
//! dropped stream unsubscribes.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use parking_lot::Mutex;
use ssehub_selector::Selector;

use crate::hub::Hub;
use crate::metrics::CloseReason;
use crate::presence::PresenceKind;
use crate::queue::{Mode, Queue};
use crate::replay::Fetch;
use crate::subscriptions::urn;

/// A subscriber's stream of ready-to-write `text/event-stream` bytes. Dropping it unsubscribes.
pub struct SubscriberStream {
    pub(crate) hub: Hub,
    pub(crate) key: usize,
    pub(crate) id: u64,
    pub(crate) queue: Arc<Mutex<Queue>>,
    pub(crate) payload: Option<Arc<serde_json::Value>>,
    /// The id of the event before the first one this stream sends (see
    /// [`SubscriberStream::cursor`]).
    pub(crate) cursor: Option<Box<str>>,
    pub(crate) filter: Filter,
    /// The pages still to read from the log before joining live delivery. In a
    /// `Mutex` only so the stream stays `Sync`; it is reached through `get_mut`, never locked.
    pub(crate) fetch: Option<std::sync::Mutex<Fetch>>,
    /// Set by [`SubscriberStream::coalescing`].
    pub(crate) coalesce: bool,
    /// This wake-up already let the other ready tasks go first once (see `coalescing`).
    pub(crate) deferred: bool,
    /// When the last batch with a live update was written (a `Metrics::stamp`; 0: never).
    pub(crate) flushed: u64,
}

/// How fresh the lone frame of a coalescing stream must be for its writer to step aside once:
/// a writer that runs this soon after the publish that woke it was run straight after that
/// publish's task (tokio runs the task woken last next, on the same thread).
const COALESCE_AGE: Duration = Duration::from_micros(100);

/// ... and how recent its previous write: only a writer kept busy by a stream of updates steps
/// aside. One woken by an occasional publish writes at once, in its turn, whatever its turn is.
const COALESCE_BUSY: Duration = Duration::from_millis(1);

/// A subscriber's selectors and private authorization, for catch-up outside the hub lock.
pub(crate) type Filter = (Arc<[Selector]>, Option<Arc<[Selector]>>);

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
    /// 0.x hubs as the `Last-Event-ID` response header. After [`Subscription::last_event_id`](crate::Subscription::last_event_id):
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

    /// Live with nothing queued: whatever replay or retained state it asked for has been
    /// yielded (a stream reading the log or catching up is not settled).
    pub(crate) fn settled(&self) -> bool {
        let q = self.queue.lock();
        q.mode == Mode::Live && q.is_empty()
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
                    if let Some(fetch) = this.hub.catch_up(this.key, &this.queue) {
                        this.fetch = Some(std::sync::Mutex::new(fetch));
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
                    // Wake on close too, not only when the log answers.
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
                            let resume = fetch.resume;
                            match this.hub.join_step(
                                this.key,
                                &this.queue,
                                &this.filter,
                                step,
                                resume,
                            ) {
                                Some(after) => {
                                    if !fetch.next_page(&*this.hub.inner.storage, after) {
                                        this.fetch = None;
                                        this.hub
                                            .close_fetching(&this.queue, "replay was interrupted");
                                    }
                                }
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
