//! The storage conformance suite against the durable log, each hub on a log of its own in a
//! temporary directory, retention trimmed every 20 ms.

use std::time::Duration;

use ssehub_conformance::{Abilities, Fixture, Setup, conformance_tests};
use ssehub_hub::HubBuilder;
use ssehub_store::{Durable, Log, LogOptions, RetainPolicy};

fn make(
    builder: HubBuilder,
    setup: Setup,
) -> std::pin::Pin<Box<dyn Future<Output = Fixture> + Send>> {
    Box::pin(async move {
        let dir = tempfile::tempdir().unwrap();
        let log = Log::open(dir.path(), LogOptions::default()).unwrap();
        let policy = RetainPolicy {
            count: setup.retain_count,
            age: setup.retain_age,
            bytes: setup.retain_bytes,
        };
        let hub = builder
            .storage(Durable::new(log).retention(policy, Duration::from_millis(20)))
            .build();
        Fixture {
            hub,
            guard: Box::new(dir),
        }
    })
}

conformance_tests!(make, Abilities::new(true, true, true));
