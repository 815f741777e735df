//! The storage conformance suite against Redis (127.0.0.1:6379, or `SSEHUB_TEST_REDIS`), each
//! hub on a stream of its own (deleted afterwards). Retention by count is `MAXLEN ~`
//! (approximate: at least the count is kept); by age, `MINID ~` trims whole stream nodes only,
//! too coarse for the suite's age check (crates/store-redis/tests/redis.rs checks it with
//! Redis's own node size in mind); Redis has no retention by bytes.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ssehub_conformance::{Abilities, Fixture, Setup, conformance_tests};
use ssehub_hub::HubBuilder;
use ssehub_store_redis::{RedisBackend, RedisOptions};

fn redis_url() -> String {
    std::env::var("SSEHUB_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Deletes a stream's keys when dropped (after its hub).
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(redis_url())
            && let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(1))
        {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(&self.0)
                .arg(format!("{}:pubids", self.0))
                .arg(format!("{}:latest", self.0))
                .arg(format!("{}:pubids:cursor", self.0))
                .query(&mut c);
        }
    }
}

fn make(
    builder: HubBuilder,
    setup: Setup,
) -> std::pin::Pin<Box<dyn Future<Output = Fixture> + Send>> {
    static N: AtomicU32 = AtomicU32::new(0);
    Box::pin(async move {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let stream = format!(
            "ssehub-conformance-{}-{nanos}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
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
