//! [`MercureConfig`]: how the Mercure endpoint authorizes, limits and answers requests.

use std::sync::Arc;
use std::time::Duration;

use ssehub_auth::Authorizer;
use ssehub_selector::MatcherLimits;

use crate::{IpRange, MetricsAccess};
use tokio_rustls::rustls;

/// Settings of the Mercure endpoint.
#[derive(Debug, Clone)]
pub struct MercureConfig {
    /// Verifies publisher and subscriber tokens. Whether the hub speaks the pre-1.0 protocol
    /// too is the authorizer's setting ([`Authorizer::is_legacy`]).
    pub authorizer: Authorizer,
    /// The hub's resource identifier, the `aud` every token must hold. `None` (the default):
    /// derived from each request (scheme, host, `/.well-known/mercure`), so a hub reachable
    /// under several names works with no setting.
    pub resource_identifier: Option<String>,
    /// The cookie browsers present their token in (Mercure 1.0; default
    /// [`ssehub_auth::MODERN_COOKIE_NAME`]). In legacy mode `mercureAuthorization` is read too.
    pub cookie_name: String,
    /// Whether subscribers without a token may receive public updates.
    pub anonymous: bool,
    /// Origins allowed by CORS (`*` for any, without credentials); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Largest publish body accepted, in bytes (`413` beyond).
    pub max_body: usize,
    /// Longest query string accepted, in bytes (`400` beyond).
    pub max_query: usize,
    /// Most `topic` parameters in one subscribe request (`400` beyond). The hub has its own
    /// bound (`HubBuilder::max_selectors`); `ssehub serve` sets both.
    pub max_topics: usize,
    /// Most `topic` fields in one publish (`400` beyond); the hub never takes more than
    /// [`ssehub_hub::MAX_TOPICS_PER_UPDATE`].
    pub max_topics_per_update: usize,
    /// Most open subscriptions per client address (`429` beyond; 0: no limit). The address is
    /// the TCP peer's, or the one a trusted proxy forwarded (see
    /// [`MercureConfig::trusted_proxies`]); IPv6 addresses count per /64. Enforced when the
    /// peer address is known: always under [`crate::MercureServer::serve`], and with axum's
    /// `ConnectInfo<SocketAddr>` when you serve the router yourself.
    pub max_subscribers_per_ip: usize,
    /// Peers whose `X-Forwarded-For` is believed (reverse proxies). Default: loopback only.
    pub trusted_proxies: Vec<IpRange>,
    /// Publishes per second per publisher token, with a burst of as many (`429` with
    /// `Retry-After` beyond; 0: no limit).
    pub publish_rate: u32,
    /// Reconnection time advised to subscribers in the first bytes of each stream.
    pub retry: Duration,
    /// Serve the web console at `/` (on for `ssehub serve`; off by default so a library user's
    /// own `/` route does not collide when merging the router).
    pub console: bool,
    /// After shutdown ended every stream, how long connections may take to drain (a client that
    /// stopped reading keeps its connection open) before they are dropped.
    pub shutdown_grace: Duration,
    /// On shutdown, the window over which subscriber streams are closed, each at its own random
    /// time with a jittered `retry:` (see [`ssehub_hub::Hub::drain`]), so their clients do not
    /// all reconnect at once. Zero: every stream ends at once ([`ssehub_hub::Hub::close`]).
    pub drain_timeout: Duration,
    /// How long a connection may take to send a request head, counted from its accept (or, on
    /// a keep-alive connection, from the end of the previous response); silent or dribbling
    /// connections are closed after it. Idle keep-alive connections close after it too, and so
    /// do HTTP/2 connections with no open request for that long.
    pub head_timeout: Duration,
    /// How long a request body (a publish, a `QUERY` subscribe) may take to arrive in full,
    /// counted from when the handler starts reading it; a body still incomplete then gets
    /// `408`. Without it a client that declares a body and sends it a byte at a time holds its
    /// request, and on HTTP/2 up to 100 of them per connection, for as long as it likes.
    pub body_timeout: Duration,
    /// Largest request head (request line and headers), in bytes (`431` beyond). Subscribes
    /// are read by the connection layer with exactly this limit; requests handed to hyper get
    /// it as hyper's read-buffer limit, which cannot be under 8 KiB (so below that, hyper's
    /// requests may be up to 8 KiB).
    pub max_head: usize,
    /// Serve plain SSE subscribes in [`crate::MercureServer::serve`]'s own connection layer,
    /// which keeps an idle subscriber to a fraction of what hyper's buffers cost (see
    /// `docs/DESIGN.md`, "Connection layer"). Such requests then skip any layer wrapped around
    /// the router passed to `serve`; turn this off if one of yours must see them.
    pub fast_subscribe: bool,
    /// Serve HTTPS: every connection [`crate::MercureServer::serve`] accepts must start with
    /// a TLS handshake (within [`MercureConfig::head_timeout`]), then speaks HTTP/2 or
    /// HTTP/1.1 as ALPN says ([`crate::tls::server_config`] builds one offering both). `None`
    /// (the default): plain HTTP/1.1, and HTTP/2 with prior knowledge (h2c).
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Mercure active subscriptions: announce every subscriber join and leave as private
    /// subscription events, and serve `GET /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]]`
    /// (`404` while off). See `docs/DESIGN.md`, "Active subscriptions".
    pub subscriptions: bool,
    /// Whether and for whom [`crate::MercureServer::router`] serves `GET /metrics`
    /// (Prometheus text; see `docs/metrics.md`). Off by default.
    pub metrics: MetricsAccess,
    /// How many selectors get their own `ssehub_selector_subscribers` series (the ones with
    /// the most subscribers), which bounds the label cardinality; 0: none.
    pub metrics_selectors: usize,
    /// Bounds of the compiled matchers (URL patterns, URI templates) subscribers ask for: bytes
    /// in all (`503` past it), and distinct patterns and bytes per client address and per
    /// token (`429` past them). Default [`MatcherLimits::default`]: 64 MiB in all; 1,024
    /// patterns and 16 MiB per address and per token. `docs/limits.md` has the worst case.
    pub matchers: MatcherLimits,
}

impl MercureConfig {
    /// For unit tests: [`MercureConfig::new`] around an HS256 key `k` for both roles.
    #[cfg(test)]
    pub(crate) fn for_tests() -> Self {
        let key = ssehub_auth::KeyConfig {
            algorithm: ssehub_auth::Algorithm::HS256,
            key: "k".into(),
        };
        MercureConfig::new(ssehub_auth::Authorizer::new(Some(key.clone()), Some(key)).unwrap())
    }

    /// Defaults around an authorizer: the resource identifier derived from each request, the
    /// 1.0 cookie name, anonymous subscribers allowed, no CORS, 1 MiB bodies,
    /// 16 KiB query strings, 128 topics per subscription, 64 per update, 1,000 subscribers per
    /// client address, loopback as the only trusted proxy, 10,000 publishes per second per
    /// token, 3 s retry advice, no console, 30 s drain, 10 s shutdown grace, 10 s request-head
    /// timeout, 64 KiB request heads, fast subscribes on, no TLS, active subscriptions off,
    /// no `/metrics` (20 selectors when turned on), the default matcher limits.
    pub fn new(authorizer: Authorizer) -> Self {
        MercureConfig {
            authorizer,
            resource_identifier: None,
            cookie_name: ssehub_auth::MODERN_COOKIE_NAME.to_owned(),
            anonymous: true,
            cors_origins: Vec::new(),
            max_body: 1024 * 1024,
            max_query: 16 * 1024,
            max_topics: 128,
            max_topics_per_update: ssehub_hub::MAX_TOPICS_PER_UPDATE,
            max_subscribers_per_ip: 1000,
            trusted_proxies: IpRange::loopback(),
            publish_rate: 10_000,
            retry: Duration::from_secs(3),
            console: false,
            shutdown_grace: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_head: 64 * 1024,
            fast_subscribe: true,
            tls: None,
            subscriptions: false,
            metrics: MetricsAccess::Off,
            metrics_selectors: 20,
            matchers: MatcherLimits::default(),
        }
    }

    /// Whether the hub accepts the pre-1.0 protocol ([`Authorizer::is_legacy`]).
    pub fn legacy_protocol(&self) -> bool {
        self.authorizer.is_legacy()
    }

    /// How requests may present their token.
    pub(crate) fn presentation(&self) -> ssehub_auth::Presentation<'_> {
        if self.legacy_protocol() {
            ssehub_auth::Presentation::legacy(&self.cookie_name)
        } else {
            ssehub_auth::Presentation::modern(&self.cookie_name)
        }
    }

    /// Whether `origin` is allowed by the CORS settings (`*` allows any).
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.cors_origins
            .iter()
            .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// Whether `origin` is listed by name in the CORS settings (a `*` does not count). This is
    /// the test for credentialed writes such as cookie-authenticated publishes: `*` lets any
    /// page read without credentials, but must not let any page post with them.
    pub fn origin_listed(&self, origin: &str) -> bool {
        self.cors_origins
            .iter()
            .any(|o| o != "*" && o.eq_ignore_ascii_case(origin))
    }
}
