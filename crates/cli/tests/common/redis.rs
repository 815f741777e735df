//! The Redis side of the CLI's cluster tests: which Redis, a fresh stream name per test, and
//! cleanup of the stream's keys when the test ends.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::Served;

/// `ssehub serve` as one node on the Redis stream `stream` of `url`, with `key` and `extra` flags.
pub fn serve_node(key: &str, url: &str, stream: &str, extra: &[&str]) -> Served {
    let mut args = vec!["--jwt-key", key, "--redis", url, "--redis-stream", stream];
    args.extend_from_slice(extra);
    Served::start(&args, &[])
}

/// The Redis the tests use (`SSEHUB_TEST_REDIS`, default the machine's 127.0.0.1:6379).
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

/// Deletes a test stream's keys when dropped: `Cleanup(url, stream)`.
pub struct Cleanup(pub String, pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(self.0.as_str())
            && let Ok(mut c) = client.get_connection_with_timeout(Duration::from_secs(1))
        {
            let _: redis::RedisResult<()> = redis::cmd("DEL")
                .arg(&self.1)
                .arg(format!("{}:pubids", self.1))
                .arg(format!("{}:latest", self.1))
                .query(&mut c);
        }
    }
}

/// Fails the test (never skips it) when Redis does not answer.
pub fn require_redis(url: &str) {
    let client = redis::Client::open(url).unwrap();
    let mut c = client
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("Redis at {url} must be running (scripts/ensure-redis): {e}"));
    let pong: String = redis::cmd("PING").query(&mut c).unwrap();
    assert_eq!(pong, "PONG");
}
