//! `ssehub serve`: builds the hub and its HTTP server from the flags and runs until a signal.

use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use ssehub_auth::{KeyConfig, Matcher, TokenSpec};
use ssehub_hub::Hub;
use ssehub_server::{MERCURE_PATH, MercureConfig, MercureServer, MetricsAccess};

use ssehub_store::{CommitterOptions, Durability, Durable, Log, LogOptions, RetainPolicy};
use ssehub_store_postgres::{PostgresBackend, PostgresOptions, PostgresStorageError};
use ssehub_store_redis::{RedisBackend, RedisOptions};

use crate::UsageError;
use crate::cli::{DurabilityArg, ServeArgs};
use crate::config_file::IssuerTable;
use crate::issuers::{self, DEV_ISSUER};

pub async fn run(args: ServeArgs, issuer_tables: Vec<IssuerTable>) -> anyhow::Result<()> {
    // Checked first: a bad certificate should not wait for the log to open.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(
            ssehub_server::tls::server_config(cert, key)
                .map_err(|e| UsageError(format!("cannot use --tls-cert/--tls-key: {e}")))?,
        ),
        (None, None) => None,
        _ => {
            return Err(UsageError(
                "--tls-cert and --tls-key go together: give both, or neither".into(),
            )
            .into());
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let trust = issuers::trust(&args, &issuer_tables)?;
    if let Some(resource) = &args.resource_identifier {
        check_resource_identifier(resource)?;
    }
    check_cookie_name(&args.cookie_name)?;

    let metrics = match (&args.metrics_token, args.metrics) {
        (Some(t), _) if t.is_empty() => {
            return Err(UsageError("--metrics-token must not be empty".into()).into());
        }
        (Some(t), _) => MetricsAccess::Bearer(t.clone()),
        (None, true) => MetricsAccess::Open,
        (None, false) => MetricsAccess::Off,
    };

    let heartbeat = (!args.heartbeat.is_zero()).then_some(args.heartbeat);
    let mut builder = Hub::builder()
        .history_size(args.history_size)
        .heartbeat(heartbeat)
        .max_connection_lifetime(args.max_connection_lifetime)
        .max_subscribers(match args.max_subscribers {
            0 => usize::MAX,
            n => n,
        })
        .max_selectors(args.max_selectors as usize)
        .max_queued(
            args.max_queued_frames as usize,
            args.max_queued_bytes as usize,
        );
    // --cache-size: the ring's share, and the durable log's page cache for the rest. An eighth
    // is left for what the allocator holds beyond the bytes counted (measured 14-18 % over
    // the counted bytes with 10 KB updates; docs/storage.md, "Memory"), so that RSS stays
    // within the size given plus the hub's fixed cost.
    let cache = usize::try_from(args.cache_size).unwrap_or(usize::MAX);
    let share = cache / 16 * 7;
    if let Some(url) = &args.redis {
        builder = builder.history_bytes(Some(share * 2));
        let mut options = RedisOptions::new(url.clone(), args.redis_stream.clone());
        options.max_len = args.retain_count;
        options.max_age = args.retain_age;
        let backend = RedisBackend::connect(options)
            .await
            .context("cannot use Redis (--redis)")?;
        tracing::info!(stream = %backend.stream(), "storage: Redis stream");
        builder = builder.storage(backend);
    } else if let Some(url) = &args.postgres {
        let mut options = PostgresOptions::new(url.clone(), args.postgres_schema.clone());
        options.max_count = args.retain_count;
        options.max_age = args.retain_age;
        options.max_bytes = args.retain_bytes;
        let backend = match PostgresBackend::connect(options).await {
            Ok(b) => b,
            Err(e @ (PostgresStorageError::Url(_) | PostgresStorageError::Schema(_))) => {
                return Err(UsageError(format!("cannot use --postgres: {e}")).into());
            }
            Err(e) => {
                return Err(anyhow::Error::new(e).context("cannot use PostgreSQL (--postgres)"));
            }
        };
        tracing::info!(schema = %backend.schema(), epoch = backend.epoch(), "storage: PostgreSQL");
        builder = builder.storage(backend);
    } else if args.memory {
        tracing::info!("storage: memory only (--memory); nothing survives a restart");
    } else {
        let options = LogOptions {
            durability: match args.durability {
                DurabilityArg::None => Durability::Buffered,
                DurabilityArg::Batched | DurabilityArg::Sync => Durability::Fsync,
            },
            cache_bytes: Some(share),
            ..LogOptions::default()
        };
        builder = builder.history_bytes(Some(share));
        let dir = &args.data_dir;
        let log = tokio::task::block_in_place(|| Log::open(dir, options))
            .with_context(|| format!("cannot open the data directory {}", dir.display()))?;
        let committer = CommitterOptions {
            max_batch: if args.durability == DurabilityArg::Sync {
                1
            } else {
                CommitterOptions::default().max_batch
            },
            ..CommitterOptions::default()
        };
        let policy = RetainPolicy {
            count: args.retain_count,
            age: args.retain_age,
            bytes: args.retain_bytes,
        };
        tracing::info!(
            dir = %dir.display(),
            durability = ?args.durability,
            retained = log.len(),
            next_seq = log.next_seq(),
            "storage: durable log"
        );
        builder = builder.storage(
            Durable::new(log)
                .committer(committer)
                .retention(policy, Duration::from_secs(1)),
        );
    }
    let hub = builder.try_build().context("cannot start the storage")?;
    let mut config = MercureConfig::new(trust.authorizer.clone());
    config.resource_identifier = args.resource_identifier.clone();
    config.cookie_name = args.cookie_name.clone();
    config.anonymous = !args.no_anonymous;
    config.subscriptions = args.subscriptions;
    config.cors_origins = args.cors_origins.clone();
    config.max_body = args.max_body;
    config.max_topics = args.max_selectors as usize;
    config.max_topics_per_update = args.max_topics_per_update as usize;
    config.max_subscribers_per_ip = args.max_subscribers_per_ip;
    config.matchers = ssehub_selector::MatcherLimits {
        max_bytes: args.max_matcher_memory,
        per_client: ssehub_selector::OwnerLimit {
            max_matchers: args.max_matchers_per_client,
            max_bytes: args.max_matcher_memory_per_client,
        },
        per_token: ssehub_selector::OwnerLimit {
            max_matchers: args.max_matchers_per_token,
            max_bytes: args.max_matcher_memory_per_token,
        },
    };
    config.trusted_proxies = args.trusted_proxies.clone();
    config.max_head = args.max_head as usize;
    config.head_timeout = args.head_timeout;
    config.body_timeout = args.body_timeout;
    config.drain_timeout = args.drain_timeout;
    config.retry = args.retry;
    config.publish_rate = args.publish_rate;
    config.console = !args.no_console;
    config.tls = tls;
    let metrics_note = match &metrics {
        MetricsAccess::Off => None,
        MetricsAccess::Open => Some("open to anyone who can reach the hub"),
        MetricsAccess::Bearer(_) => Some("bearer token required"),
    };
    config.metrics = metrics;
    config.metrics_selectors = args.metrics_selectors;

    let listener = ssehub_server::bind(args.addr)
        .with_context(|| format!("cannot listen on {}", args.addr))?;
    let local = listener.local_addr()?;
    tracing::info!(addr = %local, "ssehub listening; hub at {scheme}://{local}{MERCURE_PATH}");
    if let Some(note) = metrics_note {
        tracing::info!("metrics at {scheme}://{local}/metrics ({note})");
    }
    if args.legacy_protocol {
        tracing::warn!(
            "--legacy-protocol: 0.x tokens and presentations are accepted too (weaker token validation)"
        );
    }
    if trust.generated.is_none() {
        let issuers = trust.issuers.join(", ");
        tracing::info!(
            "trusted token issuers: {}",
            if issuers.is_empty() {
                "none (0.x keys only)"
            } else {
                &issuers
            }
        );
    }
    // Each issuer's JWK Set is fetched now and kept fresh; an unreachable one only warns.
    for source in &trust.jwks {
        source.spawn_refresher();
    }
    if let Some(key) = &trust.generated {
        let origin = Origin::new(scheme, local, args.resource_identifier.as_deref());
        if args.legacy_protocol {
            log_legacy_dev_tokens(key, &origin)?;
        } else {
            log_dev_tokens(key, &origin)?;
        }
    }

    let server = MercureServer::new(hub, config);
    let router = server.router();
    server
        .serve(listener, router, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("ssehub stopped");
    Ok(())
}

/// How long the development tokens logged at start stay valid: a working day of trying things
/// out, so nobody has to mint new ones mid-session.
const DEV_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// Where clients reach the hub, for the commands logged at start: the listening address, with a
/// wildcard one (`0.0.0.0`, `::`) replaced by loopback, which a client can connect to.
struct Origin {
    /// `scheme://host:port`
    base: String,
    /// `host:port`
    authority: String,
    /// The resource identifier tokens are minted for.
    audience: String,
    /// Whether the audience is the pinned --resource-identifier.
    pinned: bool,
}

impl Origin {
    fn new(scheme: &str, local: std::net::SocketAddr, pinned: Option<&str>) -> Origin {
        let mut addr = local;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr.ip() {
                std::net::IpAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                std::net::IpAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let authority = addr.to_string();
        let base = format!("{scheme}://{authority}");
        Origin {
            audience: pinned.map_or_else(|| format!("{base}{MERCURE_PATH}"), str::to_owned),
            pinned: pinned.is_some(),
            base,
            authority,
        }
    }
}

/// Logs the generated key with a publisher and a subscriber token (Mercure 1.0) and the
/// commands that use them.
fn log_dev_tokens(key: &KeyConfig, origin: &Origin) -> anyhow::Result<()> {
    let spec = |spec: TokenSpec| spec.ttl(DEV_TOKEN_TTL).sign(key);
    let base = TokenSpec::new(DEV_ISSUER, &origin.audience);
    let publisher = spec(base.clone().publish([Matcher::any()]))
        .context("cannot sign the development tokens")?;
    let subscriber = spec(base.subscribe([Matcher::any()], None))
        .context("cannot sign the development tokens")?;
    let until = humantime::format_rfc3339_seconds(SystemTime::now() + DEV_TOKEN_TTL);
    let audience_note = if origin.pinned {
        "--resource-identifier".to_owned()
    } else {
        format!(
            "for clients that reach the hub as {}; another host name needs tokens with its own \
             identifier, or --resource-identifier",
            origin.authority
        )
    };
    let (base, secret, audience) = (&origin.base, &key.key, &origin.audience);
    tracing::warn!(
        "no JWT key given: generated one for a development issuer, for this run only (pass --issuer and --jwt-key to keep tokens valid across restarts)\n  \
         issuer:    {DEV_ISSUER}\n  \
         key:       {secret}\n  \
         audience:  {audience} ({audience_note})\n  \
         tokens:    below, the publisher's may publish to '*', the subscriber's receive '*'; valid for 24h (until {until})\n  \
         subscribe: curl -N -H 'Authorization: Bearer {subscriber}' '{base}{MERCURE_PATH}?match=demo'\n  \
         publish:   curl -d topic=demo -d data=hello -H 'Authorization: Bearer {publisher}' {base}{MERCURE_PATH}\n  \
         new token: ssehub token --issuer {DEV_ISSUER} --jwt-key {secret} --audience {audience} --publish '*' --subscribe '*'"
    );
    Ok(())
}

/// The 0.x form of [`log_dev_tokens`], as before 1.0: one token with every right, no expiry.
fn log_legacy_dev_tokens(key: &KeyConfig, origin: &Origin) -> anyhow::Result<()> {
    let token = ssehub_auth::encode_token(key, Some(&["*"]), Some(&["*"]), None)
        .context("cannot sign the demo token")?;
    let (base, secret) = (&origin.base, &key.key);
    tracing::warn!(
        "no JWT key given: generated one for this run only (pass --jwt-key to keep tokens valid across restarts)\n  \
         key:       {secret}\n  \
         subscribe: curl -N '{base}{MERCURE_PATH}?topic=demo'\n  \
         publish:   curl -d topic=demo -d data=hello -H 'Authorization: Bearer {token}' {base}{MERCURE_PATH}"
    );
    Ok(())
}

/// `--resource-identifier` must be an absolute URL: it is compared with the tokens' `aud` and
/// published as the metadata's `resource`.
fn check_resource_identifier(resource: &str) -> Result<(), UsageError> {
    let invalid =
        |why: String| UsageError(format!("invalid --resource-identifier {resource:?}: {why}"));
    let url = reqwest::Url::parse(resource).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be https (or http)".into()));
    }
    if url.fragment().is_some() {
        return Err(invalid("a resource identifier has no fragment".into()));
    }
    Ok(())
}

/// `--cookie-name` must be an RFC 6265 cookie name (an HTTP token).
fn check_cookie_name(name: &str) -> Result<(), UsageError> {
    let token_char = |b: u8| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b);
    if name.is_empty() || !name.bytes().all(token_char) {
        return Err(UsageError(format!(
            "invalid --cookie-name {name:?}: letters, digits and !#$%&'*+-.^_`|~ only"
        )));
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down: closing streams so clients reconnect");
    // Give the log line a moment to be ordered before connection-close noise.
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_tokens_are_for_the_address_clients_can_reach() {
        let wildcard = Origin::new("http", "0.0.0.0:3000".parse().unwrap(), None);
        assert_eq!(wildcard.base, "http://127.0.0.1:3000");
        assert_eq!(
            wildcard.audience,
            "http://127.0.0.1:3000/.well-known/mercure"
        );
        assert!(!wildcard.pinned);
        let v6 = Origin::new("https", "[::]:443".parse().unwrap(), None);
        assert_eq!(v6.audience, "https://[::1]:443/.well-known/mercure");
        let pinned = Origin::new(
            "http",
            "127.0.0.1:3000".parse().unwrap(),
            Some("https://hub.example.com/.well-known/mercure"),
        );
        assert_eq!(pinned.base, "http://127.0.0.1:3000");
        assert_eq!(
            pinned.audience,
            "https://hub.example.com/.well-known/mercure"
        );
    }

    #[test]
    fn cookie_names_are_http_tokens() {
        for good in [
            "__Secure-mercure_access_token",
            "app_token",
            "a.b!#$%&'*+-^`|~",
        ] {
            assert!(check_cookie_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "two words",
            "a=b",
            "a;b",
            "caf\u{e9}",
            "tab\there",
            "q\"uote",
        ] {
            let err = check_cookie_name(bad).unwrap_err().0;
            assert!(!err.contains('\n'), "{err}");
        }
    }

    #[test]
    fn resource_identifiers_are_absolute_http_urls() {
        assert!(check_resource_identifier("https://hub.example.com/.well-known/mercure").is_ok());
        assert!(check_resource_identifier("http://127.0.0.1:3000/.well-known/mercure").is_ok());
        for bad in [
            "hub.example.com",
            "/.well-known/mercure",
            "urn:x:y",
            "https://h/#f",
        ] {
            assert!(check_resource_identifier(bad).is_err(), "{bad}");
        }
    }
}
