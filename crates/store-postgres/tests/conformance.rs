//! The storage conformance suite against PostgreSQL (127.0.0.1:5432, or
//! `SSEHUB_TEST_POSTGRES`), each hub on a schema of its own (dropped afterwards). Retention by
//! count, age and bytes is applied by the sequencing step that orders new updates, exactly.

use ssehub_conformance::{Abilities, Fixture, Setup, conformance_tests};
use ssehub_hub::HubBuilder;

mod common;

use common::{Cleanup, backend, options, schema_name};

fn make(
    builder: HubBuilder,
    setup: Setup,
) -> std::pin::Pin<Box<dyn Future<Output = Fixture> + Send>> {
    Box::pin(async move {
        let schema = schema_name("conformance");
        let guard = Cleanup(schema.clone());
        let mut o = options(&schema);
        o.max_count = setup.retain_count;
        o.max_age = setup.retain_age;
        o.max_bytes = setup.retain_bytes;
        let hub = builder.storage(backend(o).await).build();
        // The guard's drop runs after the hub's: fields drop in declaration order.
        Fixture {
            hub,
            guard: Box::new(guard),
        }
    })
}

conformance_tests!(make, Abilities::new(true, true, true));
