//! The conformance suite against the RAM ring (the hub's default storage), whose retention is
//! the ring's size.

use ssehub_conformance::{Abilities, Fixture, Setup, conformance_tests};
use ssehub_hub::HubBuilder;

fn make(
    builder: HubBuilder,
    setup: Setup,
) -> std::pin::Pin<Box<dyn Future<Output = Fixture> + Send>> {
    Box::pin(async move {
        let builder = match setup.retain_count {
            Some(n) => builder.history_size(n as usize),
            None => builder,
        };
        Fixture::new(builder.build())
    })
}

conformance_tests!(make, Abilities::new(false, false, false));
