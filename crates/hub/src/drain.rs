//! Draining a hub: ending every subscription spread over a window instead of all at once, so
//! that the clients of a node that shuts down come back (to another node) spread out rather
//! than in one reconnect storm.
//!
//! [`Hub::drain`] draws for each subscriber connected when it starts a close time uniform in
//! `[0, window)` and a reconnection time uniform in `[retry, 2 × retry)`, sorts the plan by
//! close time and walks it from one task: it sleeps until the next close time, then closes
//! every subscriber that is due (one batch per wake-up). No timer per subscriber: the plan is
//! one sorted `Vec` of weak queue handles, about 24 bytes a subscriber.
//!
//! A closed subscriber gets, after whatever was already queued for it, one last frame
//! `retry: <ms>` (its own reconnection time) and its stream ends. Its client resumes with its
//! `Last-Event-ID`, so with shared storage (Redis) it loses nothing by moving to another node.
//! A client closed at `t` (uniform over the window) reconnects at `t + r` with `r` uniform in
//! `[retry, 2 × retry)`: reconnects arrive over `[retry, window + 2 × retry)` at no more than
//! `n / window` per second on average, instead of `n` at once; the jittered retry also spreads
//! the clients closed in the same batch.

use std::sync::Weak;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use ssehub_codec::retry_line;

use crate::Hub;
use crate::queue::{Mode, Queue};

/// One subscriber's place in a drain: when (after the start) it is closed and the reconnection
/// time it is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub(crate) close_at: Duration,
    pub(crate) retry: Duration,
}

/// Draws the slots of `n` subscribers, independently: close times uniform in
/// `[0, window)`, reconnection times uniform in `[retry, 2 × retry)` (millisecond steps; a zero
/// window or retry gives all zero close times or the same `retry`).
pub(crate) fn schedule(
    n: usize,
    window: Duration,
    retry: Duration,
    rng: &mut impl Rng,
) -> Vec<Slot> {
    let window_us = window.as_micros().min(u64::MAX as u128) as u64;
    let retry_ms = retry.as_millis().min(u64::MAX as u128 / 2) as u64;
    (0..n)
        .map(|_| Slot {
            close_at: Duration::from_micros(if window_us == 0 {
                0
            } else {
                rng.random_range(0..window_us)
            }),
            retry: Duration::from_millis(if retry_ms == 0 {
                0
            } else {
                rng.random_range(retry_ms..2 * retry_ms)
            }),
        })
        .collect()
}

/// The last bytes of a drained subscriber: its reconnection time, as a line that ends no
/// frame (a `retry:` frame of its own would be an empty message to the clients that dispatch
/// at every blank line; see `ssehub_codec::retry_line`).
fn final_frame(retry: Duration) -> Bytes {
    retry_line(retry)
}

/// Ends a subscriber's stream after what is queued and `retry`; nothing if it already ended
/// or is ending (closed for lagging, or by [`Hub::close`]).
fn close_one(queue: &Weak<Mutex<Queue>>, retry: Duration) -> bool {
    let Some(queue) = queue.upgrade() else {
        return false;
    };
    let mut q = queue.lock();
    if q.mode == Mode::Closing {
        return false;
    }
    q.push_unbounded(final_frame(retry));
    q.close(crate::metrics::CloseReason::Shutdown);
    true
}

impl Hub {
    /// Ends every subscription spread uniformly at random over `window`, then closes the hub
    /// ([`Hub::close`]); returns when it is closed.
    ///
    /// From the call on, new subscriptions are refused ([`crate::SubscribeError::Closed`]),
    /// while publishes are still taken and delivered to the subscribers not yet closed (with
    /// Redis storage, so are the other nodes' updates). Each subscriber connected at the call
    /// gets its own close time, uniform in `[0, window)`; at that time, after what was already
    /// queued for it, it receives a last frame `retry: <ms>` with a reconnection time uniform
    /// in `[retry, 2 × retry)`, and its stream ends. So its client, resuming with its
    /// `Last-Event-ID` (on another node, for a rolling restart), comes back spread out with the
    /// others instead of all at once. One task (this future) does all the closing, in batches
    /// of what is due at each wake-up: no timer per subscriber.
    ///
    /// A zero `window` closes everyone at once (still with the jittered `retry`). Dropping the
    /// future stops the drain where it is (the subscribers left stay open and new
    /// subscriptions stay refused); call [`Hub::close`] to end them.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::time::Duration;
    /// use ssehub_hub::{Hub, Subscription};
    ///
    /// let hub = Hub::new();
    /// let _stream = hub.subscribe(Subscription::new().topic("news")?)?;
    /// hub.drain(Duration::from_millis(50), Duration::from_secs(3)).await;
    /// assert!(hub.is_closed());
    /// # Ok(()) }
    /// ```
    pub async fn drain(&self, window: Duration, retry: Duration) {
        let mut rng = rand::rngs::SmallRng::from_os_rng();
        self.drain_with(window, retry, &mut rng).await;
    }

    /// [`Hub::drain`] with a given random source (tests use a seeded one).
    pub(crate) async fn drain_with(&self, window: Duration, retry: Duration, rng: &mut impl Rng) {
        let start = tokio::time::Instant::now();
        let queues = self.begin_drain();
        let slots = schedule(queues.len(), window, retry, rng);
        let total = queues.len();
        tracing::info!(subscribers = total, ?window, "draining subscribers");
        let mut closed = 0usize;
        let mut next = 0;
        let mut plan: Vec<(Slot, Weak<Mutex<Queue>>)> = slots.into_iter().zip(queues).collect();
        plan.sort_unstable_by_key(|(slot, _)| slot.close_at);
        while next < plan.len() {
            let due = plan[next].0.close_at;
            tokio::time::sleep_until(start + due).await;
            let now = start.elapsed();
            while next < plan.len() && plan[next].0.close_at <= now {
                let (slot, queue) = &plan[next];
                if close_one(queue, slot.retry) {
                    closed += 1;
                }
                // Free the queue handle now rather than at the end.
                plan[next].1 = Weak::new();
                next += 1;
            }
        }
        tracing::info!(closed, "drain done; closing the hub");
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Subscription;
    use futures_util::StreamExt;
    use rand::rngs::SmallRng;

    #[test]
    fn slots_are_sorted_spread_over_the_window_with_jittered_retries() {
        let mut rng = SmallRng::seed_from_u64(7);
        let window = Duration::from_secs(30);
        let retry = Duration::from_secs(3);
        let slots = schedule(10_000, window, retry, &mut rng);
        assert_eq!(slots.len(), 10_000);
        assert!(slots.iter().all(|s| s.close_at < window));
        assert!(
            slots
                .iter()
                .all(|s| s.retry >= retry && s.retry < 2 * retry)
        );
        // Ten buckets of 3 s each hold about a tenth.
        let mut buckets = [0usize; 10];
        for s in &slots {
            buckets[(s.close_at.as_secs() / 3) as usize] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (800..1200).contains(&b)),
            "{buckets:?}"
        );
        let distinct: std::collections::HashSet<_> = slots.iter().map(|s| s.retry).collect();
        assert!(distinct.len() > 2000, "{} distinct retries", distinct.len());
    }

    #[test]
    fn zero_window_and_zero_retry_are_allowed() {
        let mut rng = SmallRng::seed_from_u64(1);
        let slots = schedule(5, Duration::ZERO, Duration::ZERO, &mut rng);
        assert!(
            slots
                .iter()
                .all(|s| s.close_at.is_zero() && s.retry.is_zero())
        );
    }

    /// Appends what a stream has ready to `out`; whether it ended.
    fn read_ready(stream: &mut crate::SubscriberStream, out: &mut String) -> bool {
        loop {
            match stream.next().now_or_never() {
                Some(Some(b)) => out.push_str(std::str::from_utf8(&b).unwrap()),
                Some(None) => return true,
                None => return false,
            }
        }
    }

    use futures_util::FutureExt;

    #[tokio::test(start_paused = true)]
    async fn each_subscriber_ends_at_its_slot_with_its_retry() {
        let hub = Hub::builder().heartbeat(None).build();
        let mut streams: Vec<_> = (0..50)
            .map(|_| {
                hub.subscribe(Subscription::new().topic("t").unwrap())
                    .unwrap()
            })
            .collect();
        let window = Duration::from_secs(10);
        let retry = Duration::from_secs(2);
        // The same seed gives the same slots: the expected plan.
        let mut expected = schedule(50, window, retry, &mut SmallRng::seed_from_u64(42));
        expected.sort_by_key(|s| s.close_at);
        let drainer = {
            let hub = hub.clone();
            tokio::spawn(async move {
                hub.drain_with(window, retry, &mut SmallRng::seed_from_u64(42))
                    .await
            })
        };
        tokio::task::yield_now().await;
        assert!(hub.is_draining() && !hub.is_closed());
        assert!(
            hub.subscribe(Subscription::new().topic("t").unwrap())
                .is_err(),
            "no new subscriptions while draining"
        );
        // Still delivered to those not closed yet.
        hub.publish(crate::Update::new("t", "during"))
            .await
            .unwrap();

        let start = tokio::time::Instant::now();
        let mut ended: Vec<Option<(Duration, String)>> = vec![None; streams.len()];
        let mut texts = vec![String::new(); streams.len()];
        // Step through time in 1 ms ticks and see who ended when.
        while ended.iter().any(Option::is_none) {
            for (i, s) in streams.iter_mut().enumerate() {
                if ended[i].is_none() && read_ready(s, &mut texts[i]) {
                    ended[i] = Some((start.elapsed(), std::mem::take(&mut texts[i])));
                }
            }
            assert!(start.elapsed() <= window, "not all ended within the window");
            tokio::time::advance(Duration::from_millis(1)).await;
            tokio::task::yield_now().await;
        }
        drainer.await.unwrap();
        assert!(hub.is_closed());

        let mut got: Vec<(Duration, Duration)> = ended
            .into_iter()
            .map(|e| {
                let (at, text) = e.unwrap();
                let retry_ms: u64 = text
                    .rsplit("retry: ")
                    .next()
                    .unwrap()
                    .trim()
                    .parse()
                    .unwrap();
                // The update, then the retry as a line that ends no frame, then the end.
                assert!(
                    text.ends_with(&format!("data: during\n\nretry: {retry_ms}\n")),
                    "{text:?}"
                );
                (at, Duration::from_millis(retry_ms))
            })
            .collect();
        got.sort();
        // Seen ended within a tick of its slot, in slot order, with the slot's retry (the
        // slot-to-subscriber pairing is the drain's, so compare as sorted sequences).
        for (g, e) in got.iter().zip(&expected) {
            assert!(g.0 >= e.close_at, "{g:?} vs {e:?}");
            assert!(
                g.0 <= e.close_at + Duration::from_millis(2),
                "{g:?} vs {e:?}"
            );
        }
        let mut got_retries: Vec<_> = got.iter().map(|g| g.1).collect();
        let mut want_retries: Vec<_> = expected.iter().map(|e| e.retry).collect();
        got_retries.sort();
        want_retries.sort();
        assert_eq!(got_retries, want_retries);
    }

    #[tokio::test(start_paused = true)]
    async fn a_drain_without_subscribers_closes_at_once() {
        let hub = Hub::builder().heartbeat(None).build();
        let t = tokio::time::Instant::now();
        hub.drain(Duration::from_secs(30), Duration::from_secs(3))
            .await;
        assert!(hub.is_closed());
        assert_eq!(t.elapsed(), Duration::ZERO);
    }
}
