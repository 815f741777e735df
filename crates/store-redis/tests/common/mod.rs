//! What the Redis backend's test files share: the server to use, fresh stream names, and a
//! guard that deletes a stream's keys.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// `SSEHUB_TEST_REDIS`, or the local Redis that `scripts/ensure-redis` starts.
pub fn redis_url() -> String {
    std::env::var("SSEHUB_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A stream name no other test (or test process) uses, so tests run in parallel.
pub fn stream_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes a stream's keys when dropped (after its hub).
pub struct Cleanup(pub String);

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
