//! Publishing: an update enters the hub's order through its storage, and each ordered update is
//! fanned out to the queues of the subscribers that match it, under the hub lock, then cached
//! in the ring.
//!
//! [`Hub::publish`] hands the update to [`Storage::append`] (one dynamic call per publish).
//! The RAM ring orders it at once ([`Inner::order_locally`]); a log orders it and hands it back,
//! possibly with others, through [`crate::storage::Sink::deliver`] ([`Inner::deliver`]).
//! Either way the fan-out is the same function ([`fan_out`]): no subscriber's selectors are
//! evaluated there, only pushes of one refcounted frame into queues.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use ssehub_selector::{Matched, Selector};

use crate::Update;
use crate::error::PublishError;
use crate::history::Entry;
use crate::hub::{Hub, Inner, State};
use crate::queue::Mode;
use crate::storage::{Append, Core, Ordered, Position, encode_update};

impl Hub {
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
        let core = Core { inner: &self.inner };
        self.complete(self.inner.storage.append(update, core)).await
    }

    /// The answer of an append; the time a pending one takes is the storage latency.
    pub(crate) async fn complete(&self, append: Append<'_>) -> Result<String, PublishError> {
        match append {
            Append::Done(answer) => answer,
            Append::Pending(answer) => {
                let started = std::time::Instant::now();
                let answer = answer.await;
                self.inner.metrics.storage.observe(started.elapsed());
                answer
            }
        }
    }

    /// [`Hub::publish`] without `async`, for synchronous contexts such as presence hooks. Only
    /// for a RAM-only hub, where a publish never waits; a hub with durable storage refuses it
    /// with [`PublishError::NeedsAwait`] (it cannot acknowledge before the fsync).
    pub fn publish_now(&self, update: Update) -> Result<String, PublishError> {
        self.inner
            .storage
            .append_now(update, Core { inner: &self.inner })
    }
}

impl Inner {
    /// The RAM ring's order ([`Core::order_locally`]): the ring assigns the seq and id, the
    /// update is fanned out and retained, all in one hold of the hub lock.
    pub(crate) fn order_locally(&self, update: Update) -> Result<String, PublishError> {
        update.validate()?;
        let Update {
            topics,
            data,
            event_type,
            id: publisher_id,
            retry,
            private,
        } = update;
        let matched = self.evaluate(&topics);
        let mut guard = self.state.lock();
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
        let stamp = self.metrics.stamp();
        fan_out(
            st,
            seq,
            Position::ZERO,
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
                pos: Position::ZERO,
                stamp,
            },
            publisher_id.is_some(),
        );
        Ok(out)
    }

    /// A log's delivery ([`crate::storage::Sink::deliver`]): updates in log order get the
    /// next ring seqs, are fanned out and cached in the ring. Returns `false` once the hub is
    /// closed (a reader stops then).
    pub(crate) fn deliver(&self, entries: Vec<Ordered>) -> bool {
        let matched: Vec<Matched> = entries.iter().map(|e| self.evaluate(&e.topics)).collect();
        let mut guard = self.state.lock();
        let st = &mut *guard;
        if st.closed {
            return false;
        }
        let stamp = self.metrics.stamp();
        for (e, matched) in entries.into_iter().zip(&matched) {
            // A log never hands an update twice, but one restarted without persistence (Redis)
            // could make positions go back: never deliver out of order.
            if e.position <= st.history.pos_head() {
                tracing::warn!(position = ?e.position, head = ?st.history.pos_head(), "storage: position went backwards; skipping update");
                continue;
            }
            let seq = st.history.next_seq();
            let topics = e.topics.into_boxed_slice();
            fan_out(
                st, seq, e.position, &topics, e.private, &e.frame, stamp, matched,
            );
            st.history.push(
                Entry {
                    seq,
                    id: e.id,
                    topics,
                    private: e.private,
                    frame: e.frame,
                    pos: e.position,
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
pub(crate) fn fan_out(
    st: &mut State,
    seq: u64,
    pos: Position,
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
        if sub.skip_through.is_some_and(|s| pos <= s) {
            return;
        }
        let mut q = sub.queue.lock();
        if q.offer_at(seq, pos, frame, stamp) {
            stats.deliveries += 1;
        } else if q.mode == (Mode::Lagged { resume_from: seq }) {
            stats.lagged += 1;
        }
    };
    routes.for_each_candidate(topics, matched, &mut offer);
    stats.publishes += 1;
}
