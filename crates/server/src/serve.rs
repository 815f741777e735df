//! Running the HTTP server: routes, CORS, the accept loop and graceful shutdown.
//!
//! Shape borrowed from mini-redis: [`MercureServer::serve`] takes an already bound listener (so
//! tests bind port 0) and a shutdown future, and spawns one task per connection
//! ([`crate::conn`] serves it). On shutdown it stops accepting (the listener is closed, idle
//! keep-alive connections are closed, a request in progress is answered and its connection
//! closed), lets in-flight publishes finish, then drains the hub over
//! [`MercureConfig::drain_timeout`] ([`Hub::drain`]: every stream ends cleanly at its own
//! random time with a jittered `retry:`, so clients reconnect elsewhere spread out) and lets
//! the connections end, for at most `drain_timeout` + [`MercureConfig::shutdown_grace`].

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::routing::{any, get};
use ssehub_hub::Hub;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::cors::{AllowOrigin, CorsLayer};

use ssehub_selector::MatcherRegistry;

use crate::conn::{self, Shared};
use crate::limits::{PublishRate, SubscriberSlots};
use crate::{ApiError, MercureConfig, MetricsAccess};

use crate::mercure::{self, MERCURE_PATH, MercureShared, MercureState};

/// The hub's HTTP face: the Mercure endpoint plus `/healthz`.
#[derive(Debug, Clone)]
pub struct MercureServer {
    state: MercureState,
}

impl MercureServer {
    /// A server for `hub` with `config`. With [`MercureConfig::subscriptions`] it turns on the
    /// hub's subscription tracking (Mercure subscription events; needs a Tokio runtime).
    pub fn new(hub: Hub, config: MercureConfig) -> Self {
        if config.subscriptions {
            if config.legacy_protocol() {
                hub.track_subscriptions(mercure::subscriptions::legacy_subscription_updates);
            } else {
                hub.track_subscriptions(mercure::subscriptions::subscription_updates);
            }
        }
        let slots = (config.max_subscribers_per_ip > 0)
            .then(|| SubscriberSlots::new(config.max_subscribers_per_ip));
        let publish_rate = PublishRate::new(config.publish_rate).map(Arc::new);
        let selectors = Arc::new(MatcherRegistry::new(config.matchers));
        MercureServer {
            state: MercureState::new(MercureShared {
                hub,
                config: Arc::new(config),
                publishes: TaskTracker::new(),
                selectors,
                slots,
                publish_rate,
                metrics: Default::default(),
            }),
        }
    }

    /// The hub it serves.
    pub fn hub(&self) -> &Hub {
        &self.state.hub
    }

    /// The routes: `GET`/`POST /.well-known/mercure`, its protected resource metadata at
    /// `GET /.well-known/oauth-protected-resource/.well-known/mercure`, and `GET /healthz` (plus the console at `/`
    /// when [`MercureConfig::console`] is set, and `GET /metrics` unless
    /// [`MercureConfig::metrics`] is off), with CORS when origins are configured. Merge it into your own `Router` to serve both from one app.
    pub fn router(&self) -> Router {
        let mut router = Router::new()
            .route(
                MERCURE_PATH,
                get(mercure::subscribe)
                    .post(mercure::publish)
                    .fallback(mercure::other_method),
            )
            .route(mercure::resource::METADATA_PATH, get(mercure::metadata))
            .route("/healthz", get(healthz));
        if self.state.config.subscriptions {
            use mercure::subscriptions::{
                SUBSCRIPTIONS_PATH, all, by_matcher, legacy_by_topic, legacy_one, one,
            };
            router = router.route(SUBSCRIPTIONS_PATH, get(all));
            router = if self.state.config.legacy_protocol() {
                router
                    .route(
                        &format!("{SUBSCRIPTIONS_PATH}/{{topic}}"),
                        get(legacy_by_topic),
                    )
                    .route(
                        &format!("{SUBSCRIPTIONS_PATH}/{{topic}}/{{subscriber}}"),
                        get(legacy_one),
                    )
            } else {
                router
                    .route(
                        &format!("{SUBSCRIPTIONS_PATH}/{{match_type}}/{{match}}"),
                        get(by_matcher),
                    )
                    .route(
                        &format!("{SUBSCRIPTIONS_PATH}/{{match_type}}/{{match}}/{{subscriber}}"),
                        get(one),
                    )
            };
        }
        // Everything else under the hub URL is ours to answer: a 404 with a reason rather than
        // the empty one a router gives, so a client that got a path wrong learns why.
        router = router.route(&format!("{MERCURE_PATH}/{{*rest}}"), any(not_found));
        if self.state.config.metrics != MetricsAccess::Off {
            router = router.route("/metrics", get(crate::metrics::metrics));
        }
        if self.state.config.console {
            router = router.merge(crate::console::router(self.state.clone()));
        }
        let router = router.with_state(self.state.clone());
        match cors_layer(&self.state.config.cors_origins) {
            Some(cors) => router.layer(cors),
            None => router,
        }
    }

    /// Serves `router` (usually [`MercureServer::router`], maybe merged with more routes) on
    /// `listener` until `shutdown` completes, then shuts down gracefully: closes the listener,
    /// lets in-flight publishes finish, drains the subscriber streams over
    /// [`MercureConfig::drain_timeout`] ([`Hub::drain`]), closes the hub, and returns once every
    /// connection ended, or `drain_timeout` + [`MercureConfig::shutdown_grace`] after
    /// `shutdown` completed (dropping the connections left).
    ///
    /// Plain SSE subscribes to the Mercure path are answered by the connection layer itself
    /// (same logic and response as the router's handler, a fraction of the memory per idle
    /// subscriber); everything else is served by hyper from `router`. See
    /// [`MercureConfig::fast_subscribe`] if you wrap the router in layers.
    pub async fn serve(
        self,
        listener: TcpListener,
        router: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let signal = CancellationToken::new();
        let shared = Arc::new(Shared::new(self.state.clone(), router, signal.clone()));
        let state = self.state.clone();
        let cancel = signal.clone();
        // Cancelled once the listener is closed: no stream is ended before new connections
        // are refused, so a client that is told to go reconnects elsewhere, not here.
        let not_accepting = CancellationToken::new();
        let listener_closed = not_accepting.clone();
        let closer = tokio::spawn(async move {
            shutdown.await;
            cancel.cancel();
            listener_closed.cancelled().await;
            state.publishes.close();
            state.publishes.wait().await;
            let config = &state.config;
            if config.drain_timeout.is_zero() {
                state.hub.close();
            } else {
                state.hub.drain(config.drain_timeout, config.retry).await;
            }
        });
        let tls = self.state.config.tls.clone();
        let nodelay_inherited = nodelay_inherited(&listener);
        let mut conns = JoinSet::new();
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // Events are small and latency matters more than packet count;
                        // batching happens above, in the subscriber's writer.
                        if !nodelay_inherited {
                            let _ = tcp.set_nodelay(true);
                        }
                        match &tls {
                            Some(tls) => conns.spawn(crate::tls::serve_connection(
                                tcp,
                                peer,
                                tls.clone(),
                                shared.clone(),
                            )),
                            None => conns.spawn(conn::serve_connection(tcp, peer, shared.clone())),
                        };
                    }
                    Err(e) => accept_failed(e).await,
                },
                Some(done) = conns.join_next(), if !conns.is_empty() => log_task_end(done),
                () = signal.cancelled() => break,
            }
        }
        drop(listener);
        not_accepting.cancel();
        // Connections end as the hub closes their streams. A client that stopped reading holds
        // its connection open past the end of its stream; it must not hold the process
        // hostage: after the drain window and the grace period, remaining connections are
        // dropped.
        let grace = self.state.config.drain_timeout + self.state.config.shutdown_grace;
        let deadline = tokio::time::sleep(grace);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = conns.join_next() => match next {
                    Some(done) => log_task_end(done),
                    None => break,
                },
                () = &mut deadline => {
                    tracing::warn!("connections still open {grace:?} after shutdown: dropping them");
                    conns.shutdown().await;
                    break;
                }
            }
        }
        // Every connection ended (or was dropped), so no publish is in flight: what the drain
        // has not reached yet has no connection left to end; close the hub in any case.
        closer.abort();
        self.state.hub.close();
        Ok(())
    }

    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn state(&self) -> &MercureState {
        &self.state
    }
}

/// An accept error: per-connection ones (the peer gave up) are ignored; others (usually out of
/// file descriptors) pause accepting instead of spinning, as axum::serve does.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept failed: {e}; pausing 1 s");
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
}

fn log_task_end(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done
        && e.is_panic()
    {
        tracing::error!("connection task panicked: {e}");
    }
}

/// Listen backlog asked for (the kernel caps it at `net.core.somaxconn`). The usual default of
/// 128 overflows when thousands of browsers reconnect at once, and each overflowed SYN costs
/// its client a 1 s retransmission: measured here, 1,000 subscribers connecting 256 at a time
/// took 1.05 s with 128 and 0.06 s with this.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a TCP listener for the hub with a deep accept backlog (see [`LISTEN_BACKLOG`]),
/// `SO_REUSEADDR`, so a restarted hub can listen again at once, and `TCP_NODELAY`, which Linux
/// copies into every connection it accepts (see `nodelay_inherited`).
pub fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Whether connections accepted from `listener` come with `TCP_NODELAY` already set, so the
/// accept loop need not set it on each (with the peer address taken from `accept` rather
/// than `getpeername`, a plain subscribe costs the hub 4 system calls instead of 6: `strace -c`
/// of a 15,000-connection ramp). Linux copies the option from the listening socket into each
/// connection when its handshake completes; a listener made by [`bind`] has it from before
/// `listen`, so no connection can miss it. Elsewhere, or for a listener without it, each
/// connection is set as before.
fn nodelay_inherited(listener: &TcpListener) -> bool {
    cfg!(target_os = "linux")
        && socket2::SockRef::from(listener)
            .tcp_nodelay()
            .unwrap_or(false)
}

async fn not_found(State(state): State<MercureState>, uri: Uri) -> ApiError {
    let reason = if uri
        .path()
        .starts_with(mercure::subscriptions::SUBSCRIPTIONS_PATH)
        && !state.config.subscriptions
    {
        "active subscriptions are off on this hub (ssehub serve --subscriptions turns them on)"
    } else {
        "no such resource under the hub URL"
    };
    ApiError::new(StatusCode::NOT_FOUND, reason)
}

async fn healthz() -> &'static str {
    "ok\n"
}

pub(crate) fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let layer = CorsLayer::new()
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::OPTIONS,
            Method::from_bytes(b"QUERY").expect("a valid method token"),
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::CACHE_CONTROL,
            HeaderName::from_static("last-event-id"),
        ])
        // Link: the subscriptions API's cursor; the others: the reconciliation cursor of
        // subscribes (1.0 and 0.x).
        .expose_headers([
            header::LINK,
            HeaderName::from_static("mercure-last-event-id"),
            HeaderName::from_static("last-event-id"),
        ]);
    if origins.iter().any(|o| o == "*") {
        // A wildcard cannot be combined with credentials, so cookie auth needs listed origins.
        return Some(layer.allow_origin(AllowOrigin::any()));
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        layer
            .allow_origin(AllowOrigin::list(list))
            .allow_credentials(true),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The accept loop skips the per-connection `setsockopt` only where the kernel gives
    /// accepted connections the listener's `TCP_NODELAY`: checked on this kernel, not assumed.
    #[tokio::test]
    async fn connections_from_a_bound_listener_come_with_nodelay() {
        let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        assert_eq!(nodelay_inherited(&listener), cfg!(target_os = "linux"));
        let addr = listener.local_addr().unwrap();
        let (client, accepted) =
            tokio::join!(tokio::net::TcpStream::connect(addr), listener.accept());
        let (tcp, _) = accepted.unwrap();
        assert!(tcp.nodelay().unwrap(), "accepted without TCP_NODELAY");
        assert!(
            !client.unwrap().nodelay().unwrap(),
            "the client side is not the listener's: the check can tell the difference"
        );

        // A listener made elsewhere, without the option: each connection is set instead.
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        assert!(!nodelay_inherited(&plain));
        let (_client, accepted) = tokio::join!(
            tokio::net::TcpStream::connect(plain.local_addr().unwrap()),
            plain.accept()
        );
        assert!(!accepted.unwrap().0.nodelay().unwrap());
    }
}
