//! `ssehub serve`: builds the hub and its HTTP server from the flags and runs until a signal.

use std::time::Duration;

use anyhow::Context as _;
use ssehub_auth::{Algorithm, Authorizer, KeyConfig};
use ssehub_hub::{Hub, RedisBackend, RedisOptions};
use ssehub_server::{MERCURE_PATH, MercureConfig, MercureServer, MetricsAccess};

use ssehub_hub::store::{CommitterOptions, Durability, Log, LogOptions, RetainPolicy};

use crate::UsageError;
use crate::cli::{DurabilityArg, ServeArgs};

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let algorithm: Algorithm = args
        .jwt_algorithm
        .parse()
        .map_err(|_| UsageError(format!("unknown --jwt-algorithm {:?}", args.jwt_algorithm)))?;
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
    let mut generated = None;
    let shared = match (
        &args.jwt_key,
        &args.publisher_jwt_key,
        &args.subscriber_jwt_key,
    ) {
        (None, None, None) => {
            if !algorithm.to_string().starts_with("HS") {
                return Err(
                    UsageError(format!("--jwt-algorithm {algorithm} needs --jwt-key")).into(),
                );
            }
            let secret = random_secret();
            generated = Some(secret.clone());
            Some(secret)
        }
        (key, _, _) => key.clone(),
    };
    let key = |k: Option<&String>| {
        k.map(|k| KeyConfig {
            algorithm,
            key: k.clone(),
        })
    };
    let publisher = key(args.publisher_jwt_key.as_ref().or(shared.as_ref()));
    let subscriber = key(args.subscriber_jwt_key.as_ref().or(shared.as_ref()));
    let authorizer = Authorizer::new(publisher.clone(), subscriber)
        .map_err(|e| UsageError(format!("invalid JWT key: {e}")))?;

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
        .max_subscribers(match args.max_subscribers {
            0 => usize::MAX,
            n => n,
        })
        .max_selectors(args.max_selectors as usize)
        .max_queued(
            args.max_queued_frames as usize,
            args.max_queued_bytes as usize,
        );
    if let Some(url) = &args.redis {
        let mut options = RedisOptions::new(url.clone(), args.redis_stream.clone());
        options.max_len = args.retain_count;
        options.max_age = args.retain_age;
        let backend = RedisBackend::connect(options)
            .await
            .context("cannot use Redis (--redis)")?;
        tracing::info!(stream = %backend.stream(), "storage: Redis stream");
        builder = builder.redis(backend);
    } else if args.memory {
        tracing::info!("storage: memory only (--memory); nothing survives a restart");
    } else {
        let options = LogOptions {
            durability: match args.durability {
                DurabilityArg::None => Durability::Buffered,
                DurabilityArg::Batched | DurabilityArg::Sync => Durability::Fsync,
            },
            ..LogOptions::default()
        };
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
        builder = builder
            .durable(log)
            .committer(committer)
            .retention(policy, Duration::from_secs(1));
    }
    let hub = builder
        .try_build()
        .context("cannot start the durable log")?;
    let mut config = MercureConfig::new(authorizer);
    config.anonymous = !args.no_anonymous;
    config.subscriptions = args.subscriptions;
    config.cors_origins = args.cors_origins.clone();
    config.max_body = args.max_body;
    config.max_topics = args.max_selectors as usize;
    config.max_topics_per_update = args.max_topics_per_update as usize;
    config.max_subscribers_per_ip = args.max_subscribers_per_ip;
    config.trusted_proxies = args.trusted_proxies.clone();
    config.max_head = args.max_head as usize;
    config.head_timeout = args.head_timeout;
    config.drain_timeout = args.drain_timeout;
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
    if let (Some(secret), Some(publisher)) = (generated, publisher) {
        let token = ssehub_auth::encode_token(&publisher, Some(&["*"]), Some(&["*"]), None)
            .context("cannot sign the demo token")?;
        tracing::warn!(
            "no JWT key given: generated one for this run only (pass --jwt-key to keep tokens valid across restarts)\n  \
             key:       {secret}\n  \
             subscribe: curl -N '{scheme}://{local}{MERCURE_PATH}?topic=demo'\n  \
             publish:   curl -d topic=demo -d data=hello -H 'Authorization: Bearer {token}' {scheme}://{local}{MERCURE_PATH}"
        );
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

fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
