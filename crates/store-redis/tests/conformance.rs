//! The storage conformance suite against Redis (127.0.0.1:6379, or `SSEHUB_TEST_REDIS`), each
//! hub on a stream of its own (deleted afterwards). Retention by count is `MAXLEN ~`
//! (approximate: at least the count is kept); by age, `MINID ~` trims whole stream nodes only,
//! too coarse for the suite's age check (crates/store-redis/tests/redis.rs checks it with
//! Redis's own node size in mind); Redis has no retention by bytes.

use ssehub_conformance::{Abilities, Fixture, Setup, conformance_tests};
use ssehub_hub::HubBuilder;
use ssehub_store_redis::{RedisBackend, RedisOptions};

mod common;

use common::{Cleanup, redis_url, stream_name};

fn make(
    builder: HubBuilder,
    setup: Setup,
) -> std::pin::Pin<Box<dyn Future<Output = Fixture> + Send>> {
    Box::pin(async move {
        let stream = stream_name("ssehub-conformance");
        let mut options = RedisOptions::new(redis_url(), &stream);
        options.max_len = setup.retain_count;
        options.max_age = setup.retain_age;
        let backend = RedisBackend::connect(options).await.unwrap_or_else(|e| {
            panic!("Redis must be running for these tests (scripts/ensure-redis): {e}")
        });
        let hub = builder.storage(backend).build();
        // The guard's drop runs after the hub's: fields drop in declaration order.
        Fixture {
            hub,
            guard: Box::new(Cleanup(stream)),
        }
    })
}

conformance_tests!(make, Abilities::new(true, false, false));
