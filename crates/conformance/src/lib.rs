//! The storage backend conformance suite, written once and run against every backend: the
//! RAM ring (`tests/memory.rs` here), the durable log (`crates/store/tests/conformance.rs`) and
//! Redis (`crates/store-redis/tests/conformance.rs`). A backend's run is one macro call:
//!
//! ```text
//! ssehub_conformance::conformance_tests!(make_hub, Abilities::new(true, false, false));
//! ```
//!
//! where `make_hub` is a [`MakeHub`]: given a [`HubBuilder`] with the suite's limits and a
//! [`Setup`], it adds a fresh storage (an empty log of its own) and builds the hub. Each check
//! is its own `#[tokio::test]` in the backend's crate.
//!
//! What every backend must do: one total order with the ids publish returned; replay after an
//! id (a backend's or a publisher's); `earliest`; an unknown id and an expired one get the gap
//! notice, then everything retained; the retained latest update per topic, oldest first;
//! duplicate publisher ids refused; retention by count (and by age and bytes where the backend
//! has them); private updates only to authorized subscribers, on replay too; a lagging
//! subscriber catches up and joins live delivery with no gap and no duplicate, or, past what
//! the backend retains, gets the lagged event (never a silent gap); and a subscriber replaying
//! while updates are published gets each exactly once, in order.

#![deny(missing_docs)]

mod checks;
mod reader;

use std::future::Future;
use std::pin::Pin;

use ssehub_hub::{Hub, HubBuilder};

pub use checks::*;
pub use reader::{Ev, Reader};

/// What a check needs from the storage it runs on.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Setup {
    /// Keep about this many updates (`None`: everything). The RAM ring's retention is its
    /// size; a log may trim approximately (Redis `MAXLEN ~`) but keeps at least this many.
    pub retain_count: Option<u64>,
    /// Keep updates this young, where the backend can ([`Abilities::retain_age`]).
    pub retain_age: Option<std::time::Duration>,
    /// Keep about this many bytes, where the backend can ([`Abilities::retain_bytes`]).
    pub retain_bytes: Option<u64>,
}

/// What a backend promises beyond the common ground; the checks assert accordingly.
#[derive(Debug, Clone, Copy, Default)]
#[non_exhaustive]
pub struct Abilities {
    /// It keeps a log beyond the hub's ring (replay and catch-up older than the ring succeed).
    pub reads_beyond_ring: bool,
    /// It trims by age, exactly enough to be checked.
    pub retain_age: bool,
    /// It trims by bytes.
    pub retain_bytes: bool,
}

impl Abilities {
    /// The abilities of a backend that keeps a log beyond the ring, and trims by age and bytes
    /// as told.
    pub fn new(reads_beyond_ring: bool, retain_age: bool, retain_bytes: bool) -> Abilities {
        Abilities {
            reads_beyond_ring,
            retain_age,
            retain_bytes,
        }
    }
}

/// A hub on a fresh storage, and whatever must live as long as it (a temporary directory).
pub struct Fixture {
    /// The hub.
    pub hub: Hub,
    /// Dropped after the hub.
    pub guard: Box<dyn std::any::Any + Send>,
}

impl std::fmt::Debug for Fixture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fixture").field("hub", &self.hub).finish()
    }
}

impl Fixture {
    /// A fixture with nothing to keep alive.
    pub fn new(hub: Hub) -> Fixture {
        Fixture {
            hub,
            guard: Box::new(()),
        }
    }
}

/// Builds a hub on a fresh storage of the backend under test from the suite's builder.
pub type MakeHub = fn(HubBuilder, Setup) -> Pin<Box<dyn Future<Output = Fixture> + Send>>;

/// One `#[tokio::test]` per check, against the backend `make` builds.
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr, $abilities:expr) => {
        $crate::conformance_tests!(@each $make, $abilities;
            order_and_ids,
            replay_after_an_id,
            earliest_replays_everything_retained,
            an_unknown_id_gets_the_gap_then_everything,
            retained_latest_per_topic,
            duplicate_publisher_ids_are_refused,
            private_updates_on_replay,
            retention_by_count_and_the_expired_gap,
            retention_by_age_and_bytes,
            a_lagging_subscriber_catches_up_from_the_ring,
            a_subscriber_lagging_past_the_ring,
            replay_while_publishing_has_no_gap_and_no_duplicate,
        );
    };
    (@each $make:expr, $abilities:expr; $($check:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                $crate::$check($make, $abilities).await;
            }
        )*
    };
}
