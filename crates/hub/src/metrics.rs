//! The hub's lock-free counters and latency histograms, read by [`crate::Hub::stats`] and
//! [`crate::Hub::latency`] (the server renders them as Prometheus text).
//!
//! Everything here is a relaxed `AtomicU64`: recording is one or two atomic adds, never a
//! lock, and only once per written batch or per closed subscriber, not per delivered frame.
//! (The per-frame counters, deliveries and replays, live in the hub state under the lock that
//! fan-out already holds, where an add costs nothing more.)

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Upper bounds of the latency histograms' buckets (the last, `+Inf`, is implicit): 100 µs to
/// 10 s, roughly ×2.5 per step, which covers a RAM-only hub's sub-millisecond fan-out as well
/// as fsyncs, Redis round trips and subscribers stuck behind a slow link.
pub const LATENCY_BUCKETS: [Duration; 16] = [
    Duration::from_micros(100),
    Duration::from_micros(250),
    Duration::from_micros(500),
    Duration::from_millis(1),
    Duration::from_micros(2500),
    Duration::from_millis(5),
    Duration::from_millis(10),
    Duration::from_millis(25),
    Duration::from_millis(50),
    Duration::from_millis(100),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_millis(2500),
    Duration::from_secs(5),
    Duration::from_secs(10),
];

const NANOS: [u64; 16] = {
    let mut out = [0u64; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = LATENCY_BUCKETS[i].as_nanos() as u64;
        i += 1;
    }
    out
};

/// A latency histogram over [`LATENCY_BUCKETS`]: one add to the bucket and one to the sum per
/// observation. The count is the sum of the buckets, so a snapshot is always consistent with
/// itself (its `+Inf` bucket equals its count) even while observations go on.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Per bucket (not cumulative), the last one being `+Inf`.
    buckets: [AtomicU64; 17],
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub(crate) fn observe(&self, d: Duration) {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = NANOS.partition_point(|&b| b < nanos);
        self.buckets[i].fetch_add(1, Relaxed);
        self.sum_nanos.fetch_add(nanos, Relaxed);
    }

    pub(crate) fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LATENCY_BUCKETS.len());
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += self.buckets[i].load(Relaxed);
            buckets.push((*bound, cumulative));
        }
        let count = cumulative + self.buckets[16].load(Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum: Duration::from_nanos(self.sum_nanos.load(Relaxed)),
        }
    }
}

/// A histogram read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations <= bound)`, cumulative, in [`LATENCY_BUCKETS`] order; the
    /// `+Inf` bucket is [`HistogramSnapshot::count`].
    pub buckets: Vec<(Duration, u64)>,
    /// Observations in all.
    pub count: u64,
    /// Sum of the observed durations.
    pub sum: Duration,
}

/// The hub's latency histograms, from [`crate::Hub::latency`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Latency {
    /// Time the storage took to take one update: the durable log's group commit (append to
    /// fsync) or the Redis publish script (`XADD`) round trip. Empty for a RAM-only hub.
    pub storage: HistogramSnapshot,
    /// From the moment an update entered the hub's order (the publish of a RAM-only hub; the
    /// commit of a durable one; this node's reader receiving it with Redis) to the moment a
    /// subscriber's writer finished writing the batch that carried it. Sampled once per
    /// written batch, with the batch's oldest update (see `docs/metrics.md`).
    pub publish_to_flush: HistogramSnapshot,
}

/// Why subscriber streams ended, counted when each is dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriberCloses {
    /// The client went away (or its writer dropped the stream) while the hub still served it.
    pub client_gone: u64,
    /// Closed by the lag policy: it fell behind past what is retained (`ssehub.lagged`).
    pub lagged: u64,
    /// Closed because its catch-up could not read the storage (durable log or Redis).
    pub storage: u64,
    /// Ended because the hub closed (shutdown).
    pub shutdown: u64,
    /// Ended at its deadline: [`crate::Subscription::expires_at`] (the token's `exp`) or
    /// [`crate::HubBuilder::max_connection_lifetime`].
    pub deadline: u64,
}

/// Why a subscriber's queue was closed (kept in the queue until the stream is dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    Lagged,
    Storage,
    Shutdown,
    Deadline,
}

impl CloseReason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            CloseReason::Lagged => "lagged",
            CloseReason::Storage => "storage",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Deadline => "deadline",
        }
    }
}

/// The hub's atomics.
#[derive(Debug)]
pub(crate) struct Metrics {
    /// The origin of the publish stamps kept in queues (nanoseconds since it, plus one: 0
    /// means "no stamp").
    origin: Instant,
    pub(crate) bytes_out: AtomicU64,
    closes: [AtomicU64; 5],
    pub(crate) storage: Histogram,
    pub(crate) publish_to_flush: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            origin: Instant::now(),
            bytes_out: AtomicU64::new(0),
            closes: Default::default(),
            storage: Histogram::default(),
            publish_to_flush: Histogram::default(),
        }
    }
}

impl Metrics {
    /// A stamp for updates entering the order now: never 0.
    pub(crate) fn stamp(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos())
            .unwrap_or(u64::MAX - 1)
            .saturating_add(1)
    }

    /// A batch of `bytes` was written; `stamp` is its oldest update's (0: none in it). Returns
    /// the stamp of now when it read the clock (a batch with a live update).
    pub(crate) fn written(&self, bytes: u64, stamp: u64) -> Option<u64> {
        self.bytes_out.fetch_add(bytes, Relaxed);
        if stamp == 0 {
            return None;
        }
        let now = self.stamp();
        self.publish_to_flush
            .observe(Duration::from_nanos(now.saturating_sub(stamp)));
        Some(now)
    }

    /// A subscriber stream ended for `reason` (`None`: the client went away).
    pub(crate) fn closed(&self, reason: Option<CloseReason>) {
        let i = match reason {
            None => 0,
            Some(CloseReason::Lagged) => 1,
            Some(CloseReason::Storage) => 2,
            Some(CloseReason::Shutdown) => 3,
            Some(CloseReason::Deadline) => 4,
        };
        self.closes[i].fetch_add(1, Relaxed);
    }

    pub(crate) fn closes(&self) -> SubscriberCloses {
        SubscriberCloses {
            client_gone: self.closes[0].load(Relaxed),
            lagged: self.closes[1].load(Relaxed),
            storage: self.closes[2].load(Relaxed),
            shutdown: self.closes[3].load(Relaxed),
            deadline: self.closes[4].load(Relaxed),
        }
    }

    pub(crate) fn latency(&self) -> Latency {
        Latency {
            storage: self.storage.snapshot(),
            publish_to_flush: self.publish_to_flush.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_micros(100)); // a bound is inclusive (`le`)
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let s = h.snapshot();
        assert_eq!(s.count, 4);
        assert_eq!(s.buckets[0], (Duration::from_micros(100), 2));
        assert_eq!(s.buckets[4].1, 2, "2.5 ms");
        assert_eq!(s.buckets[5].1, 3, "5 ms");
        assert_eq!(s.buckets[15].1, 3, "10 s: the minute is only in +Inf");
        assert_eq!(
            s.sum,
            Duration::from_micros(150) + Duration::from_millis(3) + Duration::from_secs(60)
        );
        assert!(s.buckets.windows(2).all(|w| w[0].1 <= w[1].1));
    }

    #[test]
    fn stamps_are_never_zero_and_grow() {
        let m = Metrics::default();
        let a = m.stamp();
        let b = m.stamp();
        assert!(a > 0 && b >= a);
        m.written(10, 0);
        assert_eq!(
            m.publish_to_flush.snapshot().count,
            0,
            "no stamp, no sample"
        );
        m.written(5, a);
        assert_eq!(m.publish_to_flush.snapshot().count, 1);
        assert_eq!(m.bytes_out.load(Relaxed), 15);
    }
}
