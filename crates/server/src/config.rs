//! [`MercureConfig`]: how the Mercure endpoint authorizes, limits and answers requests.

use std::time::Duration;

use ssehub_auth::Authorizer;

/// Settings of the Mercure endpoint.
#[derive(Debug, Clone)]
pub struct MercureConfig {
    /// Verifies publisher and subscriber JWTs.
    pub authorizer: Authorizer,
    /// Whether subscribers without a token may receive public updates.
    pub anonymous: bool,
    /// Origins allowed by CORS (`*` for any, without credentials); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Largest publish body accepted, in bytes (`413` beyond).
    pub max_body: usize,
    /// Longest query string accepted, in bytes (`400` beyond).
    pub max_query: usize,
    /// Most `topic` parameters in one subscribe request (`400` beyond).
    pub max_topics: usize,
    /// Reconnection time advised to subscribers in the first bytes of each stream.
    pub retry: Duration,
    /// Serve the web console at `/` (on for `ssehub serve`; off by default so a library user's
    /// own `/` route does not collide when merging the router).
    pub console: bool,
    /// After shutdown ended every stream, how long connections may take to drain (a client that
    /// stopped reading keeps its connection open) before they are dropped.
    pub shutdown_grace: Duration,
}

impl MercureConfig {
    /// Defaults around an authorizer: anonymous subscribers allowed, no CORS, 1 MiB bodies,
    /// 16 KiB query strings, 128 topics, 3 s retry advice, no console, 10 s shutdown grace.
    pub fn new(authorizer: Authorizer) -> Self {
        MercureConfig {
            authorizer,
            anonymous: true,
            cors_origins: Vec::new(),
            max_body: 1024 * 1024,
            max_query: 16 * 1024,
            max_topics: 128,
            retry: Duration::from_secs(3),
            console: false,
            shutdown_grace: Duration::from_secs(10),
        }
    }

    /// Whether `origin` is allowed by the CORS settings (`*` allows any).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.cors_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}
