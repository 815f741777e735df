//! The command line: every subcommand's flags, each also settable from an `SSEHUB_*` variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Real-time server-to-browser push over plain HTTP with Server-Sent Events.
#[derive(Debug, Parser)]
#[command(name = "ssehub", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log format on stderr: `text` for people, `json` (one object per line) for log
    /// collectors. Which lines appear is set by RUST_LOG (e.g. `info`, `ssehub_server=debug`).
    #[arg(long, global = true, env = "SSEHUB_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

// Parsed once at startup: the size of the `serve` variant costs nothing worth boxing it for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the hub: the Mercure protocol at /.well-known/mercure (GET subscribes, POST
    /// publishes), the web console at / (unless --no-console), and /healthz.
    Serve(ServeArgs),

    /// Subscribe to an event stream and print its events, one per line with --json. Reconnects
    /// like a browser's EventSource (resuming from the last event id) unless --no-reconnect.
    Subscribe(SubscribeArgs),

    /// Publish an update to a hub and print the id the hub gives it.
    Publish(PublishArgs),

    /// Print a signed Mercure 1.0 access token (--legacy: a 0.x token) for a hub's issuer key.
    Token(TokenArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SSEHUB_ADDR", default_value = "127.0.0.1:3000")]
    pub addr: SocketAddr,

    /// PEM certificate chain (leaf first) to serve HTTPS with; needs --tls-key. ALPN offers
    /// HTTP/2 and HTTP/1.1: over HTTP/2 a browser's EventSources to the hub share one
    /// connection instead of being held to 6 per origin.
    #[arg(long, env = "SSEHUB_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, env = "SSEHUB_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// Speak the pre-1.0 (0.x) Mercure protocol as well, for clients not upgraded yet. It
    /// enables: the `mercure` claim (publish, subscribe, payload); tokens without `typ: at+jwt`,
    /// `exp`, `aud` or `iss`; keys given without --issuer (they verify 0.x tokens, as before
    /// 1.0); the token in the `authorization` query parameter and in the `mercureAuthorization`
    /// cookie; bare 401/403 answers without RFC 6750 error codes. This weakens token validation
    /// (tokens that never expire, bound to no hub and no issuer, tokens in URLs and logs of
    /// proxies): turn it on only while 0.x clients remain.
    #[arg(long, env = "SSEHUB_LEGACY_PROTOCOL")]
    pub legacy_protocol: bool,

    /// The issuer identifier (the tokens' `iss`) of the keys given by --jwt-key,
    /// --publisher-jwt-key, --subscriber-jwt-key and --jwks-uri: tokens naming this issuer are
    /// verified with those keys only. More issuers: `[[issuer]]` tables in the --config file.
    #[arg(long, env = "SSEHUB_ISSUER", value_name = "ID")]
    pub issuer: Option<String>,

    /// The --issuer's key for both publisher and subscriber tokens: the HS* shared secret, or
    /// for RS*/ES*/PS*/EdDSA a PEM public key (its text or a file path). Without any key, one
    /// is generated for a development issuer and ready-to-paste tokens are logged.
    #[arg(long, env = "SSEHUB_JWT_KEY", hide_env_values = true)]
    pub jwt_key: Option<String>,

    /// The --issuer's key for publisher tokens (overrides --jwt-key for publishers).
    #[arg(long, env = "SSEHUB_PUBLISHER_JWT_KEY", hide_env_values = true)]
    pub publisher_jwt_key: Option<String>,

    /// The --issuer's key for subscriber tokens (overrides --jwt-key for subscribers).
    #[arg(long, env = "SSEHUB_SUBSCRIBER_JWT_KEY", hide_env_values = true)]
    pub subscriber_jwt_key: Option<String>,

    /// Algorithm of --jwt-key, --publisher-jwt-key and --subscriber-jwt-key: HS256, HS384,
    /// HS512, RS256, RS384, RS512, ES256, ES384, PS256, PS384, PS512 or EdDSA. Tokens signed
    /// with any other algorithm are refused.
    #[arg(long, env = "SSEHUB_JWT_ALGORITHM", default_value = "HS256")]
    pub jwt_algorithm: String,

    /// URL of the --issuer's JSON Web Key Set (https; plain http only to a loopback address):
    /// its keys verify the issuer's tokens, chosen by `kid` and `alg`. Fetched at start (an
    /// unreachable set is a warning: that issuer's tokens are refused until it answers), then
    /// refreshed as its Cache-Control says, and when a token names an unknown key (at most
    /// once every few seconds).
    #[arg(long, env = "SSEHUB_JWKS_URI", value_name = "URL")]
    pub jwks_uri: Option<String>,

    /// The hub's resource identifier: the `aud` every token must hold. By default it is derived
    /// from each request (scheme, Host, /.well-known/mercure), so a hub reachable under several
    /// names works with tokens for each; set it when tokens are minted for one canonical URL
    /// (e.g. https://hub.example.com/.well-known/mercure).
    #[arg(long, env = "SSEHUB_RESOURCE_IDENTIFIER", value_name = "URL")]
    pub resource_identifier: Option<String>,

    /// Name of the cookie in which browsers may present their token (advertised in the
    /// protected resource metadata). With --legacy-protocol, `mercureAuthorization` is read too.
    #[arg(long, env = "SSEHUB_COOKIE_NAME", value_name = "NAME", default_value = ssehub_auth::MODERN_COOKIE_NAME)]
    pub cookie_name: String,

    /// Close every subscriber stream after at most this long (e.g. 1h; each stream at its own
    /// random moment within the last tenth), so clients reconnect, spread out, and
    /// re-authenticate. Default (or 0): no limit; a stream with a token always ends at its `exp`.
    #[arg(long, env = "SSEHUB_MAX_CONNECTION_LIFETIME", value_name = "DURATION", value_parser = parse_duration)]
    pub max_connection_lifetime: Option<Duration>,

    /// Origin allowed to use the hub from a browser on another origin (CORS), with credentials
    /// so cookie auth works; repeat it, or give `*` for any origin (then without credentials).
    /// In the variable, separate origins with commas.
    #[arg(
        long = "cors-origin",
        env = "SSEHUB_CORS_ORIGIN",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Interval of the heartbeat comment sent to idle subscribers (e.g. 15s, 500ms); 0 disables.
    #[arg(long, env = "SSEHUB_HEARTBEAT", default_value = "15s", value_parser = parse_duration)]
    pub heartbeat: Duration,

    /// Reconnection time advised to subscribers (e.g. 3s, 1500ms): the `retry:` line in the
    /// first bytes of every stream, and the base of the jittered one a drain sends last.
    #[arg(long, env = "SSEHUB_RETRY", default_value = "3s", value_parser = parse_duration)]
    pub retry: Duration,

    /// Updates kept in memory for replay with Last-Event-ID: with --memory the whole history
    /// (0 disables replay); with the durable log a cache of the newest ones (older ones are
    /// read from disk).
    #[arg(long, env = "SSEHUB_HISTORY_SIZE", default_value_t = 10_000)]
    pub history_size: usize,

    /// Memory for updates kept to serve replays fast, when a log lies beyond memory (the
    /// durable log, Redis): the ring of newest updates (--history-size) and the durable log's
    /// page cache take 7/16 each (with Redis the ring takes 7/8), the rest is the allocator's
    /// overhead on them; what falls out is read back from the log. Bytes, or with a unit:
    /// 64MiB, 512KiB, 1GiB. Not used with --memory, where the ring is the whole history.
    #[arg(long, env = "SSEHUB_CACHE_SIZE", value_name = "BYTES", default_value = "64MiB", value_parser = parse_size)]
    pub cache_size: u64,

    /// Directory of the durable event log (created when missing). Every acknowledged update
    /// is kept there: it survives restarts and crashes, and hub ids keep increasing.
    #[arg(long, env = "SSEHUB_DATA_DIR", default_value = "./ssehub-data")]
    pub data_dir: PathBuf,

    /// Keep updates in memory only (the --history-size ring); nothing survives a restart.
    #[arg(long, env = "SSEHUB_MEMORY", conflicts_with_all = ["retain_count", "retain_age", "retain_bytes"])]
    pub memory: bool,

    /// Keep the log in a Redis stream (`redis://HOST:PORT[/DB]`) shared by every hub started
    /// with the same URL and --redis-stream: they deliver the same updates, in the same order,
    /// with the same ids (the stream ids). --retain-count and --retain-age trim the stream;
    /// --data-dir is not used.
    #[arg(long, env = "SSEHUB_REDIS", value_name = "URL", hide_env_values = true, conflicts_with_all = ["memory", "retain_bytes"])]
    pub redis: Option<String>,

    /// Name of the Redis stream (its hashes are NAME:pubids and NAME:latest), so several
    /// independent hubs can share one Redis.
    #[arg(
        long,
        env = "SSEHUB_REDIS_STREAM",
        value_name = "NAME",
        default_value = "ssehub"
    )]
    pub redis_stream: String,

    /// Keep the log in PostgreSQL (`postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`), shared by
    /// every hub started with the same URL and --postgres-schema: they deliver the same updates,
    /// in the same order (the database's commit order), with the same ids. Applications may
    /// also publish from inside their own transactions (docs/postgres.md). --retain-count,
    /// --retain-age and --retain-bytes trim the log; --data-dir is not used.
    #[arg(long, env = "SSEHUB_POSTGRES", value_name = "URL", hide_env_values = true, conflicts_with_all = ["memory", "redis", "durability"])]
    pub postgres: Option<String>,

    /// Schema holding the log's tables (created and migrated at start), so several independent
    /// hubs can share one database: lowercase letters, digits and _.
    #[arg(
        long,
        env = "SSEHUB_POSTGRES_SCHEMA",
        value_name = "NAME",
        default_value = "ssehub"
    )]
    pub postgres_schema: String,

    /// Keep at most this many newest updates in the durable log (default: no limit).
    #[arg(long, env = "SSEHUB_RETAIN_COUNT", value_name = "N")]
    pub retain_count: Option<u64>,

    /// Drop updates older than this from the durable log (e.g. 1h, 7d; default: no limit).
    #[arg(long, env = "SSEHUB_RETAIN_AGE", value_name = "DURATION", value_parser = parse_positive_duration)]
    pub retain_age: Option<Duration>,

    /// Keep the newest updates whose stored sizes sum to at most this many bytes (default: no
    /// limit).
    #[arg(long, env = "SSEHUB_RETAIN_BYTES", value_name = "BYTES")]
    pub retain_bytes: Option<u64>,

    /// When a publish is acknowledged: `batched` after an fsync shared by the publishes that
    /// arrived together (group commit; safe and fast); `sync` after an fsync of its own
    /// (slowest); `none` once the OS has the write, without fsync (a process crash loses
    /// nothing, a power loss may lose the latest updates).
    #[arg(long, env = "SSEHUB_DURABILITY", value_enum, default_value_t = DurabilityArg::Batched)]
    pub durability: DurabilityArg,

    /// Refuse subscribers without a valid token (by default they receive public updates).
    #[arg(long, env = "SSEHUB_NO_ANONYMOUS")]
    pub no_anonymous: bool,

    /// Mercure active subscriptions: announce each subscriber's join and leave as private
    /// updates on /.well-known/mercure/subscriptions/{topic}/{subscriber}, and serve GET
    /// /.well-known/mercure/subscriptions[/{topic}[/{subscriber}]] to subscriber tokens whose
    /// subscribe grants match the URL. With --redis, lists every node's subscribers.
    #[arg(long, env = "SSEHUB_SUBSCRIPTIONS")]
    pub subscriptions: bool,

    /// Do not serve the web console (/ and /console/...): / then answers 404. Its counts
    /// (/console/presence) always need a subscriber token; this turns the page off altogether.
    #[arg(long, env = "SSEHUB_NO_CONSOLE")]
    pub no_console: bool,

    /// Largest publish request body, in bytes; larger ones get 413 (a declared Content-Length
    /// over it at once, before the body is read).
    #[arg(long, env = "SSEHUB_MAX_BODY", default_value_t = 1024 * 1024)]
    pub max_body: usize,

    // Limits: every one answers with a status and a one-line reason (docs/limits.md).
    /// Most subscribers connected at once; more get 503 (0: no limit). An idle subscriber
    /// costs about 2 KiB and a file descriptor: 100,000 is ~200 MiB, past which one machine is
    /// better split with --redis.
    #[arg(
        long,
        env = "SSEHUB_MAX_SUBSCRIBERS",
        value_name = "N",
        default_value_t = 100_000
    )]
    pub max_subscribers: usize,

    /// Most subscribers from one client address (IPv6: one /64); more get 429 with
    /// Retry-After (0: no limit). High because whole offices and mobile carriers share one
    /// address behind NAT, each browser tab being a subscriber.
    #[arg(
        long,
        env = "SSEHUB_MAX_SUBSCRIBERS_PER_IP",
        value_name = "N",
        default_value_t = 1000
    )]
    pub max_subscribers_per_ip: usize,

    /// Bytes of compiled matchers (URL patterns, 0.x templates) the hub holds in all, each
    /// distinct pattern compiled once and freed when its last subscriber leaves; a subscribe
    /// that needs more gets 503 with Retry-After (0: no limit). docs/limits.md has the worst
    /// case one client can cost.
    #[arg(
        long,
        env = "SSEHUB_MAX_MATCHER_MEMORY",
        value_name = "BYTES",
        default_value_t = 64 * 1024 * 1024
    )]
    pub max_matcher_memory: usize,

    /// Distinct compiled patterns one client address (IPv6: one /64) may hold; more get 429
    /// (0: no limit).
    #[arg(
        long,
        env = "SSEHUB_MAX_MATCHERS_PER_CLIENT",
        value_name = "N",
        default_value_t = 1024
    )]
    pub max_matchers_per_client: usize,

    /// Bytes of compiled patterns one client address may hold; more get 429 (0: no limit).
    #[arg(
        long,
        env = "SSEHUB_MAX_MATCHER_MEMORY_PER_CLIENT",
        value_name = "BYTES",
        default_value_t = 16 * 1024 * 1024
    )]
    pub max_matcher_memory_per_client: usize,

    /// Distinct compiled patterns one subscriber token may hold; more get 429 (0: no limit).
    #[arg(
        long,
        env = "SSEHUB_MAX_MATCHERS_PER_TOKEN",
        value_name = "N",
        default_value_t = 1024
    )]
    pub max_matchers_per_token: usize,

    /// Bytes of compiled patterns one subscriber token may hold; more get 429 (0: no limit).
    #[arg(
        long,
        env = "SSEHUB_MAX_MATCHER_MEMORY_PER_TOKEN",
        value_name = "BYTES",
        default_value_t = 16 * 1024 * 1024
    )]
    pub max_matcher_memory_per_token: usize,

    /// Reverse proxy (IP or CIDR range) whose X-Forwarded-For is believed for the client
    /// address: the rightmost forwarded address that is not itself a trusted proxy. Repeat
    /// it; in the variable, separate with commas.
    #[arg(
        long = "trusted-proxy",
        env = "SSEHUB_TRUSTED_PROXY",
        value_name = "CIDR",
        value_delimiter = ',',
        default_values = ["127.0.0.0/8", "::1"]
    )]
    pub trusted_proxies: Vec<ssehub_server::IpRange>,

    /// Most matchers in one subscription (match, match_exact and match_urlpattern parameters;
    /// topic with --legacy-protocol); more get 400.
    #[arg(long, env = "SSEHUB_MAX_SELECTORS", value_name = "N", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_selectors: u32,

    /// Most topics in one published update; more get 413.
    #[arg(long, env = "SSEHUB_MAX_TOPICS_PER_UPDATE", value_name = "N", default_value_t = ssehub_hub::MAX_TOPICS_PER_UPDATE as u32, value_parser = clap::value_parser!(u32).range(1..=ssehub_hub::MAX_TOPICS_PER_UPDATE as i64))]
    pub max_topics_per_update: u32,

    /// Largest request head (request line and headers), in bytes; larger ones get 431
    /// (requests other than subscribes: at least 8192, hyper's minimum).
    #[arg(long, env = "SSEHUB_MAX_HEAD", value_name = "BYTES", default_value_t = 64 * 1024, value_parser = clap::value_parser!(u32).range(1024..))]
    pub max_head: u32,

    /// How long a connection may take to send a request head (from its accept, or from the
    /// previous response); silent or dribbling connections, idle keep-alive ones and HTTP/2
    /// connections with no open request are closed after it.
    #[arg(long, env = "SSEHUB_HEAD_TIMEOUT", value_name = "DURATION", default_value = "10s", value_parser = parse_positive_duration)]
    pub head_timeout: Duration,

    /// How long a request body (a publish, a QUERY subscribe) may take to arrive in full once
    /// its head is read; a body still incomplete then gets 408 (a client dribbling a body
    /// would otherwise hold its request, on HTTP/2 up to 100 per connection, indefinitely).
    #[arg(long, env = "SSEHUB_BODY_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_positive_duration)]
    pub body_timeout: Duration,

    /// On SIGTERM/Ctrl-C: stop accepting, then close the subscriber streams spread at random
    /// over this window, each with a jittered `retry:`, so clients reconnect (elsewhere)
    /// spread out instead of all at once; 0s closes them all at once.
    #[arg(long, env = "SSEHUB_DRAIN_TIMEOUT", value_name = "DURATION", default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Publishes per second per publisher token, with a burst of as many; more get 429 with
    /// Retry-After (0: no limit). High enough never to slow an app backend publishing all
    /// its updates with one token; it stops a leaked or looping token from monopolizing the
    /// hub.
    #[arg(
        long,
        env = "SSEHUB_PUBLISH_RATE",
        value_name = "N",
        default_value_t = 10_000
    )]
    pub publish_rate: u32,

    /// Frames queued to one subscriber before it counts as lagging: it then catches up from
    /// the log where it left off, or gets an `ssehub.lagged` event and its stream ends when
    /// that point is no longer retained.
    #[arg(long, env = "SSEHUB_MAX_QUEUED_FRAMES", value_name = "N", default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued_frames: u32,

    /// Bytes queued to one subscriber before it counts as lagging (see --max-queued-frames):
    /// what one stalled reader can cost the hub.
    #[arg(long, env = "SSEHUB_MAX_QUEUED_BYTES", value_name = "BYTES", default_value_t = 4 * 1024 * 1024, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_queued_bytes: u32,

    /// Serve Prometheus metrics at GET /metrics (docs/metrics.md). Off by default: the
    /// per-selector gauge names topics. Anyone who can reach the hub may read them unless
    /// --metrics-token is set.
    #[arg(long, env = "SSEHUB_METRICS")]
    pub metrics: bool,

    /// Serve /metrics only to requests with `Authorization: Bearer TOKEN` (others get 401);
    /// implies --metrics.
    #[arg(
        long,
        env = "SSEHUB_METRICS_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub metrics_token: Option<String>,

    /// How many matchers, those with the most subscribers, get their own
    /// ssehub_selector_subscribers series in /metrics (bounds the label cardinality; 0: none).
    #[arg(
        long,
        env = "SSEHUB_METRICS_SELECTORS",
        value_name = "N",
        default_value_t = 20
    )]
    pub metrics_selectors: usize,
}

/// `--durability`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DurabilityArg {
    /// No fsync: acknowledged once written to the OS.
    None,
    /// Group commit: one fsync shared by the publishes that arrived together.
    Batched,
    /// One fsync per publish.
    Sync,
}

#[derive(Debug, Args)]
pub struct SubscribeArgs {
    /// The event stream URL; with --match, --match-urlpattern or --topic, the hub's base URL
    /// (e.g. http://127.0.0.1:3000), to which /.well-known/mercure and the matcher parameters
    /// are added.
    #[arg(env = "SSEHUB_HUB")]
    pub url: String,

    /// Topic to subscribe to, matched byte for byte (sent as `match=`; `*` for every topic);
    /// repeat for more.
    #[arg(long = "match", value_name = "TOPIC")]
    pub matches: Vec<String>,

    /// WHATWG URL Pattern of the topics to subscribe to (sent as `match_urlpattern=`), e.g.
    /// 'https://example.com/books/:id' or, relative to the hub's URL, '/books/:id'; repeat for
    /// more.
    #[arg(long = "match-urlpattern", value_name = "PATTERN")]
    pub match_urlpatterns: Vec<String>,

    /// Legacy hubs only (serve --legacy-protocol): a 0.x topic selector (exact topic, `*` or
    /// RFC 6570 URI template), sent as `topic=`; a Mercure 1.0 hub refuses it (400). Repeat for
    /// more.
    #[arg(long = "topic", value_name = "SELECTOR")]
    pub topics: Vec<String>,

    /// Resume after this event id (sent as the Last-Event-ID header; `earliest` replays all the
    /// hub retains). Hub ids look like `#1763721234567-1`: quote them in a shell.
    #[arg(long, value_name = "ID")]
    pub last_event_id: Option<String>,

    /// Extra request header, as 'Name: value'; repeat for more.
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Subscriber JWT, sent as `Authorization: Bearer TOKEN`.
    #[arg(long, env = "SSEHUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Shell command that prints a subscriber token, run with `sh -c` before each connection
    /// (the first one and every reconnection): its output, trimmed, is sent as `Authorization:
    /// Bearer TOKEN`. A Mercure 1.0 hub ends the stream when the token expires; this keeps the
    /// subscription going with fresh tokens (e.g. `ssehub token ... --ttl 10m`). Used instead
    /// of --token. If it fails before the first connection, subscribe exits with status 2.
    #[arg(long, env = "SSEHUB_TOKEN_COMMAND", value_name = "CMD")]
    pub token_command: Option<String>,

    /// Print each event as one JSON object per line: {"type":..,"data":..,"id":..}, where id is
    /// the last event id in force ("" when none).
    #[arg(long)]
    pub json: bool,

    /// Exit (with status 0) after this many events.
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,

    /// Give up after this long (e.g. 30s, 2m), with exit status 1.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub timeout: Option<Duration>,

    /// Do not reconnect when the stream ends or the connection fails: exit instead.
    #[arg(long)]
    pub no_reconnect: bool,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The hub's base URL (e.g. http://127.0.0.1:3000); /.well-known/mercure is added unless
    /// the URL already ends with it.
    #[arg(long, env = "SSEHUB_HUB")]
    pub hub: String,

    /// Topic of the update (the first is its canonical topic); repeat for more.
    #[arg(long = "topic", value_name = "TOPIC", required = true)]
    pub topics: Vec<String>,

    /// Event type (the SSE `event` field); subscribers receive `message` without it.
    #[arg(long = "type", value_name = "NAME")]
    pub event_type: Option<String>,

    /// Id of the update; by default the hub assigns one.
    #[arg(long)]
    pub id: Option<String>,

    /// Reconnection time to advise subscribers, in milliseconds.
    #[arg(long, value_name = "MS")]
    pub retry: Option<u64>,

    /// Deliver the update only to subscribers whose token allows one of its topics.
    #[arg(long)]
    pub private: bool,

    /// Publisher JWT, sent as `Authorization: Bearer TOKEN`. Takes precedence over --jwt-key.
    #[arg(long, env = "SSEHUB_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The hub's publisher key, to sign a short-lived Mercure 1.0 token allowing exactly these
    /// topics (instead of --token), for --issuer and the hub's resource identifier: the HS*
    /// secret, or for RS*/ES*/PS*/EdDSA a PEM private key (text or file path).
    #[arg(long, env = "SSEHUB_JWT_KEY", hide_env_values = true)]
    pub jwt_key: Option<String>,

    /// Algorithm to sign with when --jwt-key is given.
    #[arg(long, env = "SSEHUB_JWT_ALGORITHM", default_value = "HS256")]
    pub jwt_algorithm: String,

    /// The issuer (`iss`) of the token signed with --jwt-key: one the hub trusts with that key.
    #[arg(long, env = "SSEHUB_ISSUER", value_name = "ID")]
    pub issuer: Option<String>,

    /// The `aud` of the token signed with --jwt-key (repeat for more). Default: the hub's
    /// resource identifier as derived from --hub (its URL ending in /.well-known/mercure).
    #[arg(long = "audience", value_name = "URI")]
    pub audiences: Vec<String>,

    /// Sign a pre-1.0 (0.x) token with --jwt-key instead (`mercure` claim, no issuer), for a
    /// hub running with --legacy-protocol.
    #[arg(long, conflicts_with = "audiences")]
    pub legacy: bool,

    /// The update's data; `-` reads it from standard input (byte for byte, a trailing newline
    /// included). Without it the update has no data.
    #[arg(value_name = "DATA")]
    pub data: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("grants")
        .args(["publish", "subscribe", "publish_urlpattern", "subscribe_urlpattern"])
        .required(true)
        .multiple(true)
))]
pub struct TokenArgs {
    /// The key to sign with: the HS* secret, or for RS*/ES*/PS*/EdDSA a PEM private key (text
    /// or file path).
    #[arg(long, env = "SSEHUB_JWT_KEY", hide_env_values = true)]
    pub jwt_key: String,

    /// Signing algorithm: HS256, HS384, HS512, RS256, RS384, RS512, ES256, ES384, PS256,
    /// PS384, PS512 or EdDSA.
    #[arg(long, env = "SSEHUB_JWT_ALGORITHM", default_value = "HS256")]
    pub jwt_algorithm: String,

    /// The token's issuer (`iss`): one the hub trusts with this key (its --issuer, or the `id`
    /// of an `[[issuer]]` table). Required, except with --legacy (where it is ignored).
    #[arg(long, env = "SSEHUB_ISSUER", value_name = "ID")]
    pub issuer: Option<String>,

    /// The token's audience (`aud`): the hub's resource identifier, e.g.
    /// https://hub.example.com/.well-known/mercure; repeat for a token several hubs accept.
    /// Required, unless --hub gives it.
    #[arg(long = "audience", value_name = "URI")]
    pub audiences: Vec<String>,

    /// The hub's URL, to use its resource identifier (the URL ending in /.well-known/mercure)
    /// as the audience when --audience is not given.
    #[arg(long, env = "SSEHUB_HUB", value_name = "URL")]
    pub hub: Option<String>,

    /// Topic the token may publish to, matched exactly (`*` for all); repeat for more.
    #[arg(long, value_name = "TOPIC")]
    pub publish: Vec<String>,

    /// Topic whose private updates the token may receive, matched exactly (`*` for all);
    /// repeat for more.
    #[arg(long, value_name = "TOPIC")]
    pub subscribe: Vec<String>,

    /// URL Pattern of topics the token may publish to (e.g.
    /// 'https://example.com/books/:id'); repeat for more.
    #[arg(long, value_name = "PATTERN", conflicts_with = "legacy")]
    pub publish_urlpattern: Vec<String>,

    /// URL Pattern of topics whose private updates the token may receive; repeat for more.
    #[arg(long, value_name = "PATTERN", conflicts_with = "legacy")]
    pub subscribe_urlpattern: Vec<String>,

    /// JSON object attached to the subscribe grant: the hub shows it in the subscription API
    /// and subscription events of the subscriptions it matches.
    #[arg(long, value_name = "JSON", conflicts_with = "legacy")]
    pub payload: Option<String>,

    /// How long the token stays valid (e.g. 10m, 1h, 30d; default 1h). With --legacy and
    /// without --ttl, the token never expires.
    #[arg(long, value_name = "DURATION", value_parser = parse_positive_duration)]
    pub ttl: Option<Duration>,

    /// The token's subject (`sub`), which names the subscriber in subscription events.
    /// Default: a random urn:uuid.
    #[arg(long = "sub", value_name = "SUBJECT", conflicts_with = "legacy")]
    pub subject: Option<String>,

    /// The token's `client_id`. Default: the issuer.
    #[arg(long, value_name = "ID", conflicts_with = "legacy")]
    pub client_id: Option<String>,

    /// The `kid` header: which of the issuer's keys signed the token.
    #[arg(long, value_name = "KID", conflicts_with = "legacy")]
    pub kid: Option<String>,

    /// Print a pre-1.0 (0.x) token instead: `{"mercure": {"publish": [...], "subscribe":
    /// [...]}}` with selectors (URI templates allowed), no issuer or audience, for a hub
    /// running with --legacy-protocol.
    #[arg(long, conflicts_with = "audiences")]
    pub legacy: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 15s, 500ms, 1m)"))
}

fn parse_count(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".to_owned()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Bytes, or a number with a unit: `B`, `KiB`, `MiB`, `GiB` (1024-based) or `KB`, `MB`, `GB`
/// (1000-based), case-insensitive, optionally with a space.
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size (examples: 67108864, 64MiB, 512KiB)"))?;
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" | "k" => 1 << 10,
        "mib" | "m" => 1 << 20,
        "gib" | "g" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown unit '{other}' (use B, KiB, MiB, GiB, KB, MB or GB)"
            ));
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("'{s}' is too large"))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err("must be more than zero".to_owned()),
        d => Ok(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert_eq!(
            parse_positive_duration("300ms"),
            Ok(Duration::from_millis(300))
        );
        assert!(parse_positive_duration("0").is_err());
        assert!(parse_positive_duration("0s").is_err());
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("67108864"), Ok(64 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64 mib"), Ok(64 << 20));
        assert_eq!(parse_size("512KiB"), Ok(512 << 10));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("5MB"), Ok(5_000_000));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", "MiB", "64 MiBs", "-1", "1.5MiB", "99999999999999GiB"] {
            assert!(parse_size(bad).is_err(), "{bad:?} must be refused");
        }
    }
}
