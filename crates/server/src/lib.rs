//! ssehub over HTTP: the Mercure protocol endpoint on axum, JWT auth, CORS, limits, and the
//! pieces to serve SSE from your own axum app.
//!
//! Two ways to use it:
//!
//! - **Inside your app**: publish from your handlers with [`Hub::publish`], answer subscribe
//!   requests with [`events`] or your own handler returning [`Sse`], run it with [`serve`]
//!   (axum's `serve` plus the hub's drain at shutdown). Hub errors convert into [`ApiError`],
//!   an answer with a status and a one-line reason; [`LastEventId`] is the reconnecting
//!   client's id; [`LiveState`] keeps state as a topic. This crate re-exports what an app uses
//!   from the hub core ([`hub`]), so it is the one dependency to add. Start with the guide,
//!   `docs/guide-axum.md` in the repository.
//! - **A hub server**: [`MercureServer`] serves `GET`/`POST /.well-known/mercure` (subscribe and
//!   publish, per IETF draft-dunglas-mercure) and `GET /healthz`. `ssehub serve` is this; merge
//!   [`MercureServer::router`] into your `Router` to serve both from one app.
//!
//! ```no_run
//! use axum::{Router, extract::State, routing::{get, post}};
//! use ssehub_server::{ApiError, Hub, LastEventId, Sse, Subscription, Update, events, serve};
//!
//! // Your own handler: a subscription that depends on the request.
//! async fn room(State(hub): State<Hub>, last: LastEventId) -> Result<Sse, ApiError> {
//!     Ok(Sse::new(hub.subscribe(Subscription::to("room").resume(last))?))
//! }
//!
//! async fn bump(State(hub): State<Hub>) -> Result<String, ApiError> {
//!     Ok(hub.publish(Update::new("counter", "1")).await?)
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let hub = Hub::builder().retry(std::time::Duration::from_secs(3)).build();
//! let app = Router::new()
//!     .route("/events", events(&hub, Subscription::to("counter")))
//!     .route("/room", get(room))
//!     .route("/bump", post(bump))
//!     .with_state(hub.clone());
//! let listener = ssehub_server::bind("127.0.0.1:3000".parse().unwrap())?;
//! serve(listener, app, hub).await
//! # }
//! ```

#![deny(missing_docs)]

mod app;
mod config;
mod conn;
mod console;
mod error;
mod extract;
mod fds;
mod h2;
/// The HTTP/2 connection driven by bytes, for the fuzz targets (not a public API).
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use h2::harness as h2_harness;
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
