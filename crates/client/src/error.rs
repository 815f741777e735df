//! The client's error type.

use std::error::Error as StdError;
use std::fmt::Write as _;
use std::time::Duration;

/// Why building a client failed, or why a stream ended or reconnected.
///
/// `Display` is one line and complete: for [`Http`](Self::Http) and [`Build`](Self::Build) it
/// already includes the causes (as `outer: inner: root`), so printers need not walk
/// [`source`](std::error::Error::source), which these variants leave empty for that reason.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL given to [`Client::builder`](crate::Client::builder) does not parse, or is not
    /// `http` or `https`.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A header name or value given to the builder is not valid HTTP.
    #[error("invalid header {name:?}: {reason}")]
    InvalidHeader {
        /// The header name as given.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// The initial last event ID cannot be sent in a `Last-Event-ID` header (it holds a control
    /// character such as CR, LF or NUL).
    #[error("invalid last event ID {id:?}: it cannot be sent in a Last-Event-ID header")]
    InvalidLastEventId {
        /// The id as given.
        id: String,
    },
    /// A root certificate given to the builder is not valid PEM.
    #[error("invalid root certificate: {0}")]
    InvalidCertificate(String),
    /// The underlying HTTP client could not be built (for example, TLS initialisation failed).
    #[error("cannot build the HTTP client: {}", error_chain(.0))]
    Build(reqwest::Error),
    /// The request failed, or reading the response body failed: connection refused or reset,
    /// TLS or HTTP/2 errors, a body cut short, too many redirects.
    #[error("{}", error_chain(.0))]
    Http(reqwest::Error),
    /// The server answered with a status other than 200 (and other than 204, which closes the
    /// stream cleanly). Fatal: the client does not reconnect.
    #[error(
        "{url} answered HTTP {status}, expected 200{}",
        reason.as_deref().map_or_else(String::new, |r| format!(": {r}"))
    )]
    Status {
        /// The status code.
        status: u16,
        /// The URL that answered, after redirects.
        url: String,
        /// The server's explanation, when the body is `text/plain`: its first non-empty line
        /// (control characters removed, at most 200 characters), from at most the first KiB
        /// read within a second. Servers such as ssehub say there why they refused.
        reason: Option<String>,
    },
    /// The server answered 200 with a `Content-Type` other than `text/event-stream`. Fatal: the
    /// client does not reconnect.
    #[error(
        "{url} answered Content-Type {}, expected text/event-stream",
        content_type.as_deref().map_or_else(|| "(none)".to_owned(), |ct| format!("{ct:?}"))
    )]
    ContentType {
        /// The `Content-Type` received, if any (lossily decoded).
        content_type: Option<String>,
        /// The URL that answered, after redirects.
        url: String,
    },
    /// No byte arrived for the configured read timeout (response headers or body).
    #[error("no data received for {0:?}")]
    ReadTimeout(Duration),
    /// More than the configured limit of bytes arrived without completing a line or an event.
    /// Fatal: the client does not reconnect.
    #[error("more than {limit} bytes received without a complete event")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// No usable access token: the token provider failed, or the token (fixed or provided) is
    /// empty or cannot be sent in an `Authorization: Bearer` header. The text never includes
    /// the token. From a provider, retried like a network error (see
    /// [`ClientBuilder::token_provider`](crate::ClientBuilder::token_provider)).
    #[error("no access token: {0}")]
    Token(String),
    /// The reconnect policy's `max_attempts` consecutive attempts all failed.
    #[error("gave up after {attempts} failed reconnection attempts: {last}")]
    GaveUp {
        /// How many reconnection attempts were made since the last successful open.
        attempts: u32,
        /// The error that ended the last attempt.
        last: Box<ClientError>,
    },
}

impl ClientError {
    /// Whether this error came from a timeout: [`ReadTimeout`](Self::ReadTimeout), or an HTTP
    /// error that reqwest classifies as a timeout (for example the connect timeout).
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::ReadTimeout(_) => true,
            Self::Http(e) => e.is_timeout(),
            Self::GaveUp { last, .. } => last.is_timeout(),
            _ => false,
        }
    }
}

/// `error: cause: root cause` on one line, skipping a cause whose text the previous one already
/// ends with (some libraries repeat their source in their own message).
pub fn error_chain(error: &dyn StdError) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !out.ends_with(&text) {
            let _ = write!(out, ": {text}");
        }
        source = cause.source();
    }
    out
}
