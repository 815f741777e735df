//! Replay and catch-up: what a subscriber gets that was published before it could be pushed
//! to it, and how that joins live delivery without gap or duplicate.
//!
//! Three sources, one join. The ring ([`replay`]) is read under the hub lock in bounded steps.
//! What the ring no longer holds is read from the log by a [`Fetch`] (a backend's
//! [`Storage::read`] pages, polled by the subscriber's stream outside the lock; publishers
//! skip the subscriber meanwhile, its queue being `Fetching`). Each page is queued under the
//! lock by [`Hub::join_step`], and once a page reaches the ring's range the subscriber goes
//! live there, in the same lock hold. Without a log, a subscriber the ring cannot serve gets
//! the lagged event and its stream ends.

use bytes::Bytes;
use parking_lot::Mutex;
use ssehub_codec::Event;

use crate::history::History;
use crate::hub::{Hub, State, Sub, wants};
use crate::metrics::CloseReason;
use crate::queue::{Mode, Queue};
use crate::storage::{Gap, GapKind, Position, ReadFrom, ReadFuture, Step, Storage};
use crate::stream::Filter;

/// Event type of the in-band notice sent when a `Last-Event-ID` is unknown or no longer
/// retained; its data is JSON: `{"reason":"unknown"|"expired","lastEventID":..,"oldest":..}`.
pub const HISTORY_GAP_EVENT: &str = "ssehub.history-gap";
/// Event type of the last event sent to a subscriber that fell so far behind that the updates it
/// missed are no longer retained; the stream ends after it. Its data is a one-line reason.
pub const LAGGED_EVENT: &str = "ssehub.lagged";

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
pub(crate) fn replay(history: &History, sub: &Sub, q: &mut Queue, from: u64, live: bool) -> u64 {
    let mut n = 0;
    let per_topic = sub.selectors.len() + sub.authorized.as_ref().map_or(0, |a| a.len());
    let mut budget = REPLAY_STEP_EVALUATIONS;
    let mut first = true;
    for e in history.range_from(from) {
        let cost = per_topic * e.topics.len();
        if cost > budget && !first {
            if q.mode == Mode::Live {
                q.mode = Mode::Lagged { resume_from: e.seq };
                q.lagged_pos = e.pos;
            }
            break;
        }
        first = false;
        budget = budget.saturating_sub(cost);
        if !sub.wants(&e.topics, e.private) {
            continue;
        }
        let stamp = if live { e.stamp } else { 0 };
        if !q.offer_at(e.seq, e.pos, &e.frame, stamp) {
            break;
        }
        n += 1;
    }
    n
}

/// A subscriber's reading of the log beyond the ring: the page being read, polled by its
/// stream; nothing here touches the hub lock.
pub(crate) struct Fetch {
    fut: ReadFuture,
    page: usize,
    /// Lag catch-up (its updates count as deliveries and keep their latency stamps), not replay
    /// on connect.
    pub(crate) resume: bool,
}

impl std::fmt::Debug for Fetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetch")
            .field("page", &self.page)
            .field("resume", &self.resume)
            .finish_non_exhaustive()
    }
}

impl Fetch {
    pub(crate) fn new(fut: ReadFuture, page: usize, resume: bool) -> Fetch {
        Fetch { fut, page, resume }
    }

    pub(crate) fn poll(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<Step, String>> {
        self.fut.as_mut().poll(cx)
    }

    /// Starts reading the page after `after`; `false` if the storage reads no further.
    pub(crate) fn next_page(&mut self, storage: &dyn Storage, after: Position) -> bool {
        match storage.read(ReadFrom::After(after), self.page) {
            Some(fut) => {
                self.fut = fut;
                true
            }
            None => false,
        }
    }
}

impl Hub {
    /// Refills a lagged subscriber's queue from the ring. When the ring no longer holds what it
    /// missed, returns the fetch that reads it from the log (from the update it lagged at,
    /// inclusive; its stream polls it), or, without a log, closes it with the lagged event.
    pub(crate) fn catch_up(&self, key: usize, queue: &Mutex<Queue>) -> Option<Fetch> {
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
        if q.lagged_pos != Position::ZERO {
            let page = self.inner.max_queued_frames;
            if let Some(fut) = self.inner.storage.read(ReadFrom::At(q.lagged_pos), page) {
                // Publishers keep skipping it; `join_step` rejoins it under the lock.
                q.mode = Mode::Fetching;
                return Some(Fetch::new(fut, page, true));
            }
        }
        q.push_unbounded(lagged_frame());
        q.close(CloseReason::Lagged);
        st.stats.lag_closes += 1;
        None
    }

    /// Queues one page read from the log for a fetching subscriber; joins live delivery once
    /// the page reaches what the ring holds. Returns where the next page starts, or `None`
    /// when the fetch is over (joined, or the subscriber is gone or closed).
    pub(crate) fn join_step(
        &self,
        key: usize,
        queue: &Mutex<Queue>,
        filter: &Filter,
        step: Step,
        resume: bool,
    ) -> Option<Position> {
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
        if let Some(gap) = &step.gap {
            q.push_unbounded(gap_frame(gap));
        }
        let (selectors, authorized) = filter;
        let mut queued = 0;
        let mut consumed = None;
        let mut next = None;
        for e in &step.entries {
            if wants(selectors, authorized.as_deref(), &e.topics, e.private) {
                // A page stops at the queue's bounds (the queue is empty when a page arrives,
                // so at least one update goes); the next page continues after the last one
                // taken. Retained state is sent whole, as from the ring.
                if step.range && consumed.is_some() && !q.has_room(e.frame.len()) {
                    next = consumed;
                    break;
                }
                q.push_unbounded(e.frame.clone());
                queued += 1;
            }
            consumed = Some(e.position);
        }
        if next.is_none() {
            let after = step.after;
            if after >= history.pos_base() {
                // Everything after `after` is in the ring or still to be delivered: join under
                // the lock, so nothing is missed or sent twice.
                q.mode = Mode::Live;
                if after > history.pos_head() {
                    // It read further than this hub delivered (another node was ahead, or the
                    // log committed what is not delivered yet): fan-out skips those.
                    sub.skip_through = Some(after);
                }
                queued += replay(history, sub, &mut q, history.seq_after(after), resume);
            } else if step.exhausted {
                // The log has nothing after `after`, yet the ring holds updates past it: they
                // were trimmed (or lost) while we read. Never skip silently.
                q.push_unbounded(lagged_frame());
                q.close(CloseReason::Lagged);
                stats.lag_closes += 1;
            } else {
                next = Some(after);
            }
        }
        if resume {
            stats.deliveries += queued;
        } else {
            stats.replayed += queued;
        }
        next
    }

    /// Ends a fetching subscriber whose read failed, with the lagged event and `reason`.
    pub(crate) fn close_fetching(&self, queue: &Mutex<Queue>, reason: &str) {
        let mut st = self.inner.state.lock();
        let mut q = queue.lock();
        if q.mode == Mode::Fetching {
            q.push_unbounded(lagged_frame_with(reason));
            q.close(CloseReason::Storage);
            st.stats.lag_closes += 1;
        }
    }
}

/// Whether a position-ordered log's ring alone can serve replay after `last`: a publisher id
/// it holds, or a position (named by the storage) between the ring's base and head. Returns
/// the seq replay starts from.
pub(crate) fn ring_start(h: &History, storage: &dyn Storage, last: &str) -> Option<u64> {
    if let Some(seq) = h.seq_of_publisher_id(last) {
        return Some(seq + 1);
    }
    let x = storage.position_of(last)?;
    (x >= h.pos_base() && x <= h.pos_head()).then(|| h.seq_after(x))
}

/// The in-band notice of a gap.
pub(crate) fn gap_frame(gap: &Gap) -> Bytes {
    let reason = match gap.kind {
        GapKind::Expired => "expired",
        GapKind::Unknown => "unknown",
    };
    let data = serde_json::json!({
        "reason": reason,
        "lastEventID": gap.requested,
        "oldest": gap.oldest.as_deref(),
    });
    // The event type is a constant without CR/LF, so this cannot fail.
    match Event::new().event(HISTORY_GAP_EVENT) {
        Ok(e) => e.data(data.to_string()).encode(),
        Err(_) => Bytes::new(),
    }
}

const LAGGED_REASON: &str = "subscriber fell behind and the updates it missed are no longer \
                             retained; reconnect with Last-Event-ID to resume";

pub(crate) fn lagged_frame() -> Bytes {
    lagged_frame_with(LAGGED_REASON)
}

fn lagged_frame_with(reason: &str) -> Bytes {
    match Event::new().event(LAGGED_EVENT) {
        Ok(e) => e.data(reason).encode(),
        Err(_) => Bytes::new(),
    }
}
