//! Subscriber deadlines: streams that end at a given time ([`crate::Subscription::expires_at`],
//! the access token's `exp`) or after a maximum lifetime
//! ([`crate::HubBuilder::max_connection_lifetime`]), with no timer per subscriber.
//!
//! A subscriber with a deadline has one entry `(tick, slab key)` in one ordered set in the hub
//! state ([`Deadlines`]); the tick is also kept in its `Sub` (8 bytes; 0 for no deadline), so
//! a leave removes the entry by value, under the hub lock it already takes. The set therefore
//! holds exactly the connected subscribers with a deadline: churn does not grow it, and a
//! subscriber without one costs the 8 bytes of the field and nothing else.
//!
//! One task per hub ([`run`]) sleeps until the earliest tick (or until woken because an
//! earlier one arrived), then, under the hub lock, pops every entry that is due and closes
//! those subscribers' queues the way [`crate::Hub::close`] does: their streams yield what is
//! queued, then end. The task is started by the first subscription with a deadline and stops
//! when the set is empty (or the hub closed or dropped), so a hub that never uses deadlines
//! runs nothing.
//!
//! Ticks are nanoseconds on the Tokio clock since the hub was built, plus one (0 means "none").
//! A wall-clock deadline is turned into a tick once, when the subscription starts
//! (`deadline - SystemTime::now()` after Tokio's now), so tests with a paused clock drive it
//! and a later change of the wall clock does not move it.

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::hub::Inner;

/// The hub's deadline clock: Tokio instants as ticks.
#[derive(Debug)]
pub(crate) struct Clock {
    origin: Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Clock {
            origin: Instant::now(),
        }
    }

    /// The tick of `at` (at least 1); `None` when it is too far away to count (centuries).
    pub(crate) fn tick(&self, at: Instant) -> Option<u64> {
        let nanos = at.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(nanos).ok()?.checked_add(1)
    }

    /// The tick of now.
    pub(crate) fn now(&self) -> u64 {
        self.tick(Instant::now()).unwrap_or(u64::MAX)
    }

    /// The instant of a tick.
    pub(crate) fn instant(&self, tick: u64) -> Instant {
        self.origin + Duration::from_nanos(tick.saturating_sub(1))
    }

    /// The tick at which a subscription starting now ends: the earliest of `expires_at` and
    /// a lifetime drawn from `max_lifetime` ([`jittered`]). `None`: no deadline. A tick not
    /// after [`Clock::now`] means the deadline has passed.
    pub(crate) fn deadline(
        &self,
        expires_at: Option<SystemTime>,
        max_lifetime: Option<Duration>,
    ) -> Option<u64> {
        if expires_at.is_none() && max_lifetime.is_none() {
            return None;
        }
        let now = Instant::now();
        let by_exp = expires_at.and_then(|exp| match exp.duration_since(SystemTime::now()) {
            Ok(left) => now.checked_add(left).and_then(|at| self.tick(at)),
            // Already past: ends now.
            Err(_) => self.tick(now),
        });
        let by_lifetime = max_lifetime.and_then(|l| {
            now.checked_add(jittered(l, &mut rand::rng()))
                .and_then(|at| self.tick(at))
        });
        match (by_exp, by_lifetime) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// A lifetime drawn uniformly from `[0.9 × max, max]` (nanosecond steps), so streams that
/// started together do not all end, and reconnect, together.
pub(crate) fn jittered(max: Duration, rng: &mut impl Rng) -> Duration {
    let hi = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
    let lo = hi - hi / 10;
    Duration::from_nanos(rng.random_range(lo..=hi))
}

/// The deadline index of a hub (in its locked state).
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    /// `(tick, slab key)` of every connected subscriber with a deadline.
    index: BTreeSet<(u64, usize)>,
    /// The task of [`run`] is running (or about to).
    task: bool,
}

/// What a new entry asks of the caller, once the hub lock is released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// Nothing: the running task already wakes up early enough.
    No,
    /// The entry is the earliest: wake the running task so it sleeps until this one instead.
    Task,
    /// No task runs: start one.
    Spawn,
}

impl Deadlines {
    /// Adds subscriber `key`'s deadline.
    pub(crate) fn insert(&mut self, tick: u64, key: usize) -> Wake {
        let earliest = self.index.first().is_none_or(|&(t, _)| tick < t);
        self.index.insert((tick, key));
        if !self.task {
            self.task = true;
            Wake::Spawn
        } else if earliest {
            Wake::Task
        } else {
            Wake::No
        }
    }

    /// Removes subscriber `key`'s entry (it left). Whether it was the earliest, so the task,
    /// sleeping until it, may want to know (e.g. to stop when the index is now empty).
    pub(crate) fn remove(&mut self, tick: u64, key: usize) -> bool {
        let first = self.index.first() == Some(&(tick, key));
        self.index.remove(&(tick, key));
        first
    }

    /// Takes the next entry due at `now`: `(tick, slab key)`.
    pub(crate) fn pop_due(&mut self, now: u64) -> Option<(u64, usize)> {
        match self.index.first() {
            Some(&(tick, _)) if tick <= now => self.index.pop_first(),
            _ => None,
        }
    }

    /// The earliest tick.
    pub(crate) fn next(&self) -> Option<u64> {
        self.index.first().map(|&(tick, _)| tick)
    }

    /// Entries now.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// The task stops (under the hub lock, with [`Deadlines::next`] seen empty or the hub
    /// closed), or was dropped without stopping: the next deadline starts a new one.
    pub(crate) fn task_stopped(&mut self) {
        self.task = false;
    }

    /// A task could not be started (no Tokio runtime): let the next subscription try again.
    pub(crate) fn spawn_failed(&mut self) {
        self.task = false;
    }
}

/// Starts the deadline task of `inner` on the current runtime; `false` without one.
pub(crate) fn spawn(inner: &Arc<Inner>) -> bool {
    match tokio::runtime::Handle::try_current() {
        Ok(rt) => {
            rt.spawn(run(Arc::downgrade(inner), inner.deadline_wake.clone()));
            true
        }
        Err(_) => false,
    }
}

/// Marks the task stopped if it is dropped before it stopped itself (its runtime shut down),
/// so that a later subscription with a deadline starts a new one.
struct Running {
    hub: Weak<Inner>,
    armed: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.armed
            && let Some(inner) = self.hub.upgrade()
        {
            inner.stop_deadline_task();
        }
    }
}

/// The hub's deadline task: ends due streams, sleeps until the next deadline or until woken.
async fn run(hub: Weak<Inner>, wake: Arc<Notify>) {
    let mut running = Running {
        hub: hub.clone(),
        armed: true,
    };
    loop {
        let next = match hub.upgrade() {
            Some(inner) => inner.expire_due(),
            None => None,
        };
        let Some(next) = next else {
            // `expire_due` marked the task stopped under the lock (or the hub is gone).
            running.armed = false;
            return;
        };
        // Woken early by a new earliest deadline, or by the earliest one leaving.
        let _ = tokio::time::timeout_at(next, wake.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::SmallRng;

    #[test]
    fn lifetimes_are_drawn_from_the_last_tenth() {
        let mut rng = SmallRng::seed_from_u64(3);
        let max = Duration::from_secs(3600);
        let draws: Vec<Duration> = (0..10_000).map(|_| jittered(max, &mut rng)).collect();
        assert!(draws.iter().all(|d| *d >= max * 9 / 10 && *d <= max));
        // Ten buckets of 36 s hold about a tenth each.
        let mut buckets = [0usize; 10];
        for d in &draws {
            let i = ((d.as_secs_f64() - 3240.0) / 36.0) as usize;
            buckets[i.min(9)] += 1;
        }
        assert!(
            buckets.iter().all(|&b| (800..1200).contains(&b)),
            "{buckets:?}"
        );
        assert_eq!(
            jittered(Duration::from_nanos(1), &mut rng),
            Duration::from_nanos(1)
        );
        let huge = jittered(Duration::MAX, &mut rng);
        assert!(huge >= Duration::from_nanos(u64::MAX - u64::MAX / 10));
    }

    #[test]
    fn the_index_pops_in_deadline_order_and_says_when_to_wake_the_task() {
        let mut d = Deadlines::default();
        assert_eq!(d.insert(50, 1), Wake::Spawn);
        assert_eq!(d.insert(70, 2), Wake::No, "the task wakes at 50 anyway");
        assert_eq!(d.insert(20, 3), Wake::Task, "earlier than 50");
        assert_eq!(d.insert(20, 4), Wake::No, "ties wake nobody");
        assert_eq!(d.len(), 4);
        assert!(!d.remove(70, 2), "not the earliest");
        assert!(d.remove(20, 3), "the earliest");
        assert!(!d.remove(20, 3), "gone already");
        assert_eq!(d.next(), Some(20));
        assert_eq!(d.pop_due(19), None);
        assert_eq!(d.pop_due(50), Some((20, 4)));
        assert_eq!(d.pop_due(50), Some((50, 1)));
        assert_eq!(d.pop_due(50), None);
        assert_eq!((d.len(), d.next()), (0, None));
        d.task_stopped();
        assert_eq!(
            d.insert(90, 5),
            Wake::Spawn,
            "a stopped task is started again"
        );
    }

    #[test]
    fn ticks_round_trip_and_wall_clock_deadlines_take_the_earliest() {
        let clock = Clock::new();
        let at = Instant::now() + Duration::from_millis(1234);
        assert_eq!(clock.instant(clock.tick(at).unwrap()), at);
        assert!(
            clock.tick(clock.origin).unwrap() >= 1,
            "0 stays free for none"
        );
        assert_eq!(clock.deadline(None, None), None);
        let now = clock.now();
        let soon = SystemTime::now() + Duration::from_secs(10);
        let d = clock.deadline(Some(soon), None).unwrap();
        assert!(d > now + 9_000_000_000 && d <= clock.now() + 10_000_000_000);
        let past = clock.deadline(Some(SystemTime::UNIX_EPOCH), None).unwrap();
        assert!(past <= clock.now(), "a past deadline is due at once");
        let with_lifetime = clock
            .deadline(Some(soon), Some(Duration::from_secs(1)))
            .unwrap();
        assert!(with_lifetime < d, "the shorter lifetime wins");
        // A deadline centuries away is no deadline at all rather than an overflow.
        let far = SystemTime::now() + Duration::from_secs(600 * 365 * 24 * 3600);
        assert_eq!(clock.deadline(Some(far), None), None);
    }
}
