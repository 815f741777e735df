//! A Server-Sent Events client that behaves like a browser's `EventSource`, to the letter of the
//! WHATWG HTML specification ("Server-sent events", the `EventSource` processing model and
//! "Interpreting an event stream").
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use ssehub_client::{Client, ClientEvent, ReconnectPolicy};
//!
//! # async fn run() -> Result<(), ssehub_client::ClientError> {
//! let client = Client::builder("http://127.0.0.1:3000/.well-known/mercure?match=a")
//!     .bearer_token("eyJ...") // or .token_provider(..) for a fresh one on each connect
//!     .last_event_id("#1763721234567-1") // a hub id, from an earlier stream
//!     .connect_timeout(Duration::from_secs(5))
//!     .read_timeout(Duration::from_secs(60))
//!     .reconnect(ReconnectPolicy {
//!         max_attempts: Some(10),
//!         ..ReconnectPolicy::default()
//!     })
//!     .build()?;
//!
//! let mut stream = client.stream(); // also a `futures::Stream`
//! while let Some(item) = stream.next().await {
//!     match item? {
//!         ClientEvent::Open { url, .. } => eprintln!("connected to {url}"),
//!         ClientEvent::Message(event) => {
//!             println!("{} {} {}", event.last_event_id, event.event_type, event.data)
//!         }
//!         ClientEvent::Reconnecting { delay, reason, .. } => {
//!             eprintln!("{reason:?}; reconnecting in {delay:?}")
//!         }
//!         ClientEvent::Closed(reason) => eprintln!("closed: {reason:?}"),
//!         _ => {} // `retry:` changes and comments
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Behaviour
//!
//! - Every request sends `Accept: text/event-stream` and `Cache-Control: no-cache`, plus
//!   `Last-Event-ID` when the last event ID is not empty (an empty id sends no header).
//! - An access token, when given, travels only as `Authorization: Bearer TOKEN` (RFC 6750),
//!   never in the URL: a fixed one ([`ClientBuilder::bearer_token`]), or a fresh one asked of
//!   [`ClientBuilder::token_provider`] before every connection attempt, so a subscriber
//!   outlives its tokens (a Mercure 1.0 hub ends a stream at its token's `exp`; the client
//!   reconnects with a new token and resumes from the last event ID).
//! - A response opens the stream only with status 200 and a `Content-Type` whose media type
//!   is `text/event-stream` (any case, any parameters). `204 No Content` ends the stream
//!   cleanly with [`ClientEvent::Closed`]; any other status, or another content type, ends it
//!   with an error and no reconnection (for a status, the error carries the first line of a
//!   `text/plain` body, where servers say why they refused). Redirects are followed (up to 10); reconnections go
//!   back to the original URL.
//! - The body is parsed by [`ssehub_codec::Parser`]: UTF-8 with U+FFFD for invalid bytes, one
//!   leading BOM stripped per connection, CR / LF / CRLF line ends even when split across
//!   reads, and so on.
//! - A clean end of the body, a network error, or the optional read timeout (no byte for that
//!   long) make the client reconnect: it drops the event that was being received, waits the
//!   reconnection time (the latest valid `retry:` field, applied as soon as it is read, even in
//!   a block that dispatches nothing) plus jitter, and sends the last event ID. Attempts that
//!   fail in a row back off exponentially; see [`ReconnectPolicy`].
//! - HTTP/1.1 and HTTP/2 (negotiated by ALPN over TLS, or with
//!   [`ClientBuilder::http2_prior_knowledge`] over plain HTTP); TLS with rustls (its aws-lc-rs
//!   provider, which offers the hybrid post-quantum key exchange X25519MLKEM768 first) and the
//!   operating system's root certificates.
//! - No server input makes it panic. Memory grows with what the server sends between two
//!   complete frames; bound it with [`ClientBuilder::max_pending_bytes`] when the server is not
//!   trusted.
//! - Every [`MessageEvent`] carries the last event ID in force when it was dispatched (`""` when
//!   none), as the browser's `lastEventId` does.
//!
//! An `Err` item always ends the stream; recoverable trouble is reported as
//! [`ClientEvent::Reconnecting`] while the client keeps going.

#![deny(missing_docs)]

mod client;
mod error;
mod policy;
mod stream;

pub use client::{Client, ClientBuilder};
pub use error::{ClientError, error_chain};
pub use policy::ReconnectPolicy;
pub use ssehub_codec::MessageEvent;
pub use stream::{ClientEvent, CloseReason, EventStream, ReconnectReason};

/// The HTTP version of a connection, as reported in [`ClientEvent::Open`].
pub use reqwest::Version;
