//! [`serve`]: running your own axum app with a hub in one call, the way `axum::serve` runs a
//! router, plus what an app with live streams needs at shutdown: on `SIGTERM` or Ctrl-C the
//! listener closes at once, the hub drains its streams ([`Hub::drain`]: each ends cleanly with
//! a `retry:`, so browsers come back to the next process and resume with `Last-Event-ID`), and
//! the call returns once the connections ended.
//!
//! Why not `axum::serve` alone: its graceful shutdown waits for every response to finish, and
//! an SSE response never does until something ends it; ending the streams is the hub's, so the
//! two must be wired together, and every app got it slightly wrong by hand (the examples had
//! 120 lines of accept loop for it). [`crate::MercureServer::serve`] does the same for the
//! Mercure endpoint with its own connection layer; this one is plain axum.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use axum::Router;
use ssehub_hub::Hub;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How long connections may outlive the drain window before they are dropped (a client that
/// stopped reading must not keep the process alive).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

type Signal = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Serves `router` on `listener` until `SIGTERM` or Ctrl-C, then shuts down gracefully with
/// `hub`'s drain (see the module docs). Await it (it is [`IntoFuture`]); configure it first.
///
/// ```no_run
/// use axum::{Router, extract::State, routing::get};
/// use ssehub_hub::{Hub, Subscription};
/// use ssehub_server::{ApiError, Sse};
///
/// async fn events(State(hub): State<Hub>) -> Result<Sse, ApiError> {
///     Ok(Sse::new(hub.subscribe(Subscription::to("news"))?))
/// }
///
/// # async fn run() -> std::io::Result<()> {
/// let hub = Hub::new();
/// let app = Router::new().route("/events", get(events)).with_state(hub.clone());
/// let listener = ssehub_server::bind("127.0.0.1:3000".parse().unwrap())?;
/// ssehub_server::serve(listener, app, hub).await
/// # }
/// ```
pub fn serve(listener: TcpListener, router: Router, hub: Hub) -> Serve {
    Serve {
        listener,
        router,
        hub,
        drain: DEFAULT_DRAIN,
        retry: DEFAULT_RETRY,
        shutdown: None,
        hangup: false,
    }
}

/// The drain window by default: short, because one process usually serves an app and a
/// developer's Ctrl-C should not wait; a fleet behind a balancer sets its own (`ssehub serve`
/// uses 30 s).
const DEFAULT_DRAIN: Duration = Duration::from_secs(1);
/// The retry advice drained streams get by default (jittered up to twice as much).
const DEFAULT_RETRY: Duration = Duration::from_secs(3);

/// A configured [`serve`]; await it to run the server.
#[must_use = "a Serve does nothing until awaited"]
pub struct Serve {
    listener: TcpListener,
    router: Router,
    hub: Hub,
    drain: Duration,
    retry: Duration,
    shutdown: Option<Signal>,
    hangup: bool,
}

impl std::fmt::Debug for Serve {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Serve")
            .field("listener", &self.listener)
            .field("drain", &self.drain)
            .field("retry", &self.retry)
            .field("hangup", &self.hangup)
            .finish_non_exhaustive()
    }
}

impl Serve {
    /// How the streams end at shutdown: each at a random time within `window`, with a last
    /// `retry:` drawn in `[retry, 2 x retry)`, so clients reconnect spread out
    /// ([`Hub::drain`]). Default 1 s and 3 s; a zero window ends them all at once
    /// ([`Hub::close`]).
    pub fn drain(mut self, window: Duration, retry: Duration) -> Self {
        self.drain = window;
        self.retry = retry;
        self
    }

    /// Shuts down when `signal` completes, instead of on `SIGTERM` or Ctrl-C.
    pub fn with_graceful_shutdown(
        mut self,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> Self {
        self.shutdown = Some(Box::pin(signal));
        self
    }

    /// On `SIGHUP` (Unix), ends every stream open then while the hub and its history live on
    /// ([`Hub::disconnect_all`]): clients reconnect after their `retry` and resume with
    /// `Last-Event-ID`. The examples use it to show a dropped connection; an app can use it
    /// to move clients to nodes just added.
    pub fn reconnect_on_hangup(mut self) -> Self {
        self.hangup = true;
        self
    }

    async fn run(self) -> std::io::Result<()> {
        let Serve {
            listener,
            router,
            hub,
            drain,
            retry,
            shutdown,
            hangup,
        } = self;
        let hangups = if hangup {
            Some(tokio::spawn(on_hangup(hub.clone())?))
        } else {
            None
        };
        let shutdown = shutdown.unwrap_or_else(|| Box::pin(terminate()));
        let stopping = CancellationToken::new();
        let started = stopping.clone();
        let draining = hub.clone();
        let graceful = async move {
            shutdown.await;
            started.cancel();
            // On a task of its own: axum stops accepting when this future returns, then waits
            // for the connections, which end as the drain ends their streams.
            tokio::spawn(async move {
                if drain.is_zero() {
                    draining.close();
                } else {
                    draining.drain(drain, retry).await;
                }
            });
        };
        let server = axum::serve(listener, router)
            .with_graceful_shutdown(graceful)
            .into_future();
        let give_up = async {
            stopping.cancelled().await;
            tokio::time::sleep(drain + SHUTDOWN_GRACE).await;
        };
        let result = tokio::select! {
            done = server => done,
            () = give_up => {
                tracing::warn!("connections still open {:?} after shutdown: dropping them", drain + SHUTDOWN_GRACE);
                Ok(())
            }
        };
        if let Some(task) = hangups {
            task.abort();
        }
        hub.close();
        result
    }
}

impl IntoFuture for Serve {
    type Output = std::io::Result<()>;
    type IntoFuture = Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// Completes on the first `SIGTERM` or Ctrl-C (`SIGINT`).
async fn terminate() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The `SIGHUP` loop of [`Serve::reconnect_on_hangup`]; the handler is installed before the
/// server starts, so a `SIGHUP` from then on never kills the process.
fn on_hangup(hub: Hub) -> std::io::Result<impl Future<Output = ()> + Send> {
    #[cfg(unix)]
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(async move {
        #[cfg(unix)]
        while hangups.recv().await.is_some() {
            let n = hub.disconnect_all();
            tracing::info!(streams = n, "SIGHUP: ended every stream; clients reconnect");
        }
        #[cfg(not(unix))]
        {
            let _ = hub;
            std::future::pending::<()>().await
        }
    })
}
