//! ssehub over HTTP: the Mercure protocol endpoint on axum, JWT auth, CORS, limits, and the
//! pieces to serve SSE from your own axum app.
//!
//! Two ways to use it:
//!
//! - **A hub server**: [`MercureServer`] serves `GET`/`POST /.well-known/mercure` (subscribe and
//!   publish, per IETF draft-dunglas-mercure) and `GET /healthz`. `ssehub serve` is this.
//! - **Inside your app**: publish from your handlers with [`ssehub_hub::Hub::publish`] and answer
//!   subscribe requests with [`Sse`]; or merge [`MercureServer::router`] into your `Router`.
//!
//! ```no_run
//! use axum::{Router, extract::State, routing::{get, post}};
//! use ssehub_auth::{Authorizer, Algorithm, KeyConfig};
//! use ssehub_hub::{Hub, Subscription, Update};
//! use ssehub_server::{ApiError, MercureConfig, MercureServer, Sse, preamble};
//!
//! async fn events(State(hub): State<Hub>) -> Result<Sse, ApiError> {
//!     let sub = Subscription::new()
//!         .topic("counter").map_err(|e| ApiError::bad_request(e.to_string()))?
//!         .preamble(preamble(std::time::Duration::from_secs(3)));
//!     Ok(Sse::new(hub.subscribe(sub).map_err(|e| ApiError::bad_request(e.to_string()))?))
//! }
//!
//! async fn bump(State(hub): State<Hub>) -> Result<String, ApiError> {
//!     hub.publish(Update::new("counter", "1")).await.map_err(|e| ApiError::bad_request(e.to_string()))
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = Hub::new();
//! let key = KeyConfig { algorithm: Algorithm::HS256, key: "secret".into() };
//! let server = MercureServer::new(hub.clone(), MercureConfig::new(Authorizer::new(Some(key.clone()), Some(key))?));
//! let app = Router::new()
//!     .route("/events", get(events))
//!     .route("/bump", post(bump))
//!     .with_state(hub)
//!     .merge(server.router());
//! let listener = ssehub_server::bind("127.0.0.1:3000".parse()?)?;
//! server.serve(listener, app, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

mod app;
mod config;
mod conn;
mod console;
mod error;
mod extract;
mod fds;
// Public for the fuzz targets (fuzz/, a workspace of its own) only: not API (docs/semver.md).
#[doc(hidden)]
pub mod form;
mod head;
mod idle;
mod limits;
mod mercure;
mod metrics;
mod rewind;
mod serve;
mod sse;
pub mod tls;

pub use app::{Serve, serve};
pub use config::MercureConfig;
pub use error::ApiError;
pub use extract::LastEventId;
pub use fds::presize_fd_table;
pub use limits::{InvalidIpRange, IpRange};
pub use mercure::MERCURE_PATH;
pub use metrics::MetricsAccess;
pub use serve::{LISTEN_BACKLOG, MercureServer, bind};
pub use sse::{Sse, events, preamble};
/// The hub core (`ssehub-hub`), so an app can depend on this crate alone.
pub use ssehub_hub as hub;
/// What an app uses most from the hub core, re-exported.
pub use ssehub_hub::{
    Hub, LiveState, PublishError, StateError, SubscribeError, Subscription, Update,
};
/// The rustls this crate is built with, for [`MercureConfig::tls`].
pub use tokio_rustls::rustls;
