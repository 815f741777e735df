//! The client and its builder.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, CACHE_CONTROL, HeaderMap, HeaderName, HeaderValue};

use crate::error::ClientError;
use crate::policy::ReconnectPolicy;
use crate::stream::EventStream;

/// An `EventSource` for one URL: a cheap handle (clone it freely) that opens any number of
/// independent [`EventStream`]s.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) shared: Arc<Shared>,
}

/// What every stream of a client shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) http: reqwest::Client,
    pub(crate) url: reqwest::Url,
    pub(crate) headers: HeaderMap,
    pub(crate) last_event_id: String,
    pub(crate) read_timeout: Option<Duration>,
    pub(crate) reconnect: Option<ReconnectPolicy>,
    pub(crate) max_pending_bytes: Option<usize>,
    /// Asked for a fresh access token before each connection attempt.
    pub(crate) token_provider: Option<TokenProvider>,
}

/// What a token provider's future resolves to: the access token, or why there is none.
type TokenResult = Result<String, BoxError>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

type TokenFuture = Pin<Box<dyn Future<Output = TokenResult> + Send>>;

/// A callback that yields an access token, called before each connection attempt (see
/// [`ClientBuilder::token_provider`]).
#[derive(Clone)]
pub(crate) struct TokenProvider(Arc<dyn Fn() -> TokenFuture + Send + Sync>);

impl TokenProvider {
    pub(crate) fn call(&self) -> TokenFuture {
        (self.0)()
    }
}

impl fmt::Debug for TokenProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenProvider")
    }
}

impl Client {
    /// Starts configuring a client for `url` (`http` or `https`). The URL is checked by
    /// [`ClientBuilder::build`].
    pub fn builder(url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            url: url.into(),
            headers: HeaderMap::new(),
            last_event_id: String::new(),
            connect_timeout: None,
            read_timeout: None,
            reconnect: Some(ReconnectPolicy::default()),
            max_pending_bytes: None,
            bearer: None,
            token_provider: None,
            http: None,
            http_version: HttpVersion::Negotiate,
            root_certificates: Vec::new(),
        }
    }

    /// Opens a new stream. Nothing happens on the network until the stream is polled; the
    /// stream starts from the configured initial last event ID, not from where another stream
    /// of this client got to.
    pub fn stream(&self) -> EventStream {
        EventStream::new(Arc::clone(&self.shared))
    }

    /// The URL this client connects to (reconnections always go back to it, not to where a
    /// redirect led).
    pub fn url(&self) -> &str {
        self.shared.url.as_str()
    }
}

#[derive(Debug, Clone, Copy)]
enum HttpVersion {
    Negotiate,
    Http1Only,
    Http2PriorKnowledge,
}

/// Configures a [`Client`]. Made by [`Client::builder`].
#[derive(Debug)]
#[must_use]
pub struct ClientBuilder {
    url: String,
    headers: HeaderMap,
    last_event_id: String,
    connect_timeout: Option<Duration>,
    read_timeout: Option<Duration>,
    reconnect: Option<ReconnectPolicy>,
    max_pending_bytes: Option<usize>,
    /// A fixed token, checked by `build`.
    bearer: Option<Redacted>,
    token_provider: Option<TokenProvider>,
    http: Option<reqwest::Client>,
    http_version: HttpVersion,
    root_certificates: Vec<reqwest::Certificate>,
}

/// A token held by the builder, never printed by `Debug`.
struct Redacted(String);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl ClientBuilder {
    /// Adds a request header, sent on every connection (for example `Authorization`). Adding
    /// the same name again adds another value. `Accept` or `Cache-Control` given here replace
    /// the defaults (`text/event-stream` and `no-cache`). `Last-Event-ID` is managed by the
    /// client: use [`last_event_id`](Self::last_event_id).
    pub fn header(mut self, name: &str, value: &str) -> Result<Self, ClientError> {
        let invalid = |reason: String| ClientError::InvalidHeader {
            name: name.to_owned(),
            reason,
        };
        let header_name = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| invalid("not a valid header name".to_owned()))?;
        if header_name.as_str() == "last-event-id" {
            return Err(invalid(
                "set by the client; use ClientBuilder::last_event_id".to_owned(),
            ));
        }
        let header_value = HeaderValue::from_str(value)
            .map_err(|_| invalid("value holds a control character".to_owned()))?;
        self.headers.append(header_name, header_value);
        Ok(self)
    }

    /// Presents `token` on every connection as `Authorization: Bearer TOKEN` (RFC 6750; the
    /// only way Mercure 1.0 hubs take a token from a non-browser client). It replaces an
    /// `Authorization` header given to [`header`](Self::header), and is replaced by a
    /// [`token_provider`](Self::token_provider). Checked by [`build`](Self::build).
    ///
    /// A fixed token stops working when it expires, and a Mercure hub ends the stream then; to
    /// stay subscribed past that, use a provider.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer = Some(Redacted(token.into()));
        self.token_provider = None;
        self
    }

    /// Asks `provider` for an access token before each connection attempt, the first one and
    /// every reconnection, and presents it as `Authorization: Bearer TOKEN`. This is how a
    /// subscriber outlives its tokens: a Mercure 1.0 hub ends the stream at the token's `exp`,
    /// the client reconnects (resuming with `Last-Event-ID`), and the provider hands it a
    /// fresh token. It replaces [`bearer_token`](Self::bearer_token) and any `Authorization`
    /// header given to [`header`](Self::header).
    ///
    /// A provider error, an empty token or one that cannot be a header value fails that attempt
    /// with [`ClientError::Token`], which the reconnect policy retries like a network error
    /// (with backoff; without reconnection the stream ends with it). The attempt waits for the
    /// provider without a time limit: bound it inside the provider when it does I/O.
    ///
    /// ```no_run
    /// # fn fetch_token() -> Result<String, std::io::Error> { Ok(String::new()) }
    /// let client = ssehub_client::Client::builder("https://hub.example/.well-known/mercure?match=a")
    ///     .token_provider(|| async { fetch_token() })
    ///     .build()?;
    /// # Ok::<(), ssehub_client::ClientError>(())
    /// ```
    pub fn token_provider<F, Fut, E>(mut self, provider: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let provider = move || -> TokenFuture {
            let future = provider();
            Box::pin(async move { future.await.map_err(Into::into) })
        };
        self.token_provider = Some(TokenProvider(Arc::new(provider)));
        self.bearer = None;
        self
    }

    /// [`token_provider`](Self::token_provider) with a synchronous callback (for example one
    /// that reads a token another task keeps fresh). It runs on the runtime's thread, so it
    /// must not block.
    pub fn token_provider_sync<F, E>(self, provider: F) -> Self
    where
        F: Fn() -> Result<String, E> + Send + Sync + 'static,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        self.token_provider(move || std::future::ready(provider().map_err(Into::<BoxError>::into)))
    }

    /// The last event ID to resume from, sent as `Last-Event-ID` on the first connection
    /// (unless empty) and kept until the server sends another `id`. Checked by
    /// [`build`](Self::build).
    pub fn last_event_id(mut self, id: impl Into<String>) -> Self {
        self.last_event_id = id.into();
        self
    }

    /// The longest a TCP (and TLS) connect may take before the attempt fails and, with
    /// reconnection on, is retried. No limit by default.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// The longest the client waits for any byte, response headers included, before it treats
    /// the connection as dead and reconnects (or ends, with reconnection off). Set it above the
    /// server's heartbeat interval. No limit by default.
    pub fn read_timeout(mut self, timeout: Duration) -> Self {
        self.read_timeout = Some(timeout);
        self
    }

    /// Replaces the reconnect policy (the default is [`ReconnectPolicy::default`]).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = Some(policy);
        self
    }

    /// Never reconnects: the stream ends at the first end of stream (with
    /// [`ClientEvent::Closed`](crate::ClientEvent::Closed)) or network error (with the error).
    pub fn no_reconnect(mut self) -> Self {
        self.reconnect = None;
        self
    }

    /// Ends the stream with [`ClientError::TooLarge`] when more than `limit` bytes arrive
    /// without the parser completing anything (an event, a comment, a `retry`). Off by default,
    /// as the specification sets no limit; a client reading from a peer it does not trust
    /// should set one.
    pub fn max_pending_bytes(mut self, limit: usize) -> Self {
        self.max_pending_bytes = Some(limit);
        self
    }

    /// Speaks HTTP/1.1 only. By default HTTP/2 is used when TLS negotiates it (ALPN) and
    /// HTTP/1.1 otherwise.
    pub fn http1_only(mut self) -> Self {
        self.http_version = HttpVersion::Http1Only;
        self
    }

    /// Speaks HTTP/2 without negotiation, which is how HTTP/2 works over plain `http` (h2c).
    pub fn http2_prior_knowledge(mut self) -> Self {
        self.http_version = HttpVersion::Http2PriorKnowledge;
        self
    }

    /// Trusts `pem` (one or more PEM certificates) as a root, in addition to the operating
    /// system's roots; for servers with a private CA or a self-signed certificate.
    pub fn add_root_certificate_pem(mut self, pem: &[u8]) -> Result<Self, ClientError> {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| ClientError::InvalidCertificate(e.to_string()))?;
        if certs.is_empty() {
            return Err(ClientError::InvalidCertificate(
                "no certificate found in the PEM text".to_owned(),
            ));
        }
        self.root_certificates.extend(certs);
        Ok(self)
    }

    /// Uses `client` for HTTP instead of building one; for settings this builder does not
    /// offer (proxies, client certificates). The builder's connect timeout, HTTP version and
    /// root certificates are then ignored: configure them on `client`. Keep its default
    /// redirect policy (follow), which the specification expects.
    pub fn reqwest_client(mut self, client: reqwest::Client) -> Self {
        self.http = Some(client);
        self
    }

    /// Checks the settings and builds the client.
    pub fn build(self) -> Result<Client, ClientError> {
        let url = reqwest::Url::parse(&self.url).map_err(|e| ClientError::InvalidUrl {
            url: self.url.clone(),
            reason: e.to_string(),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ClientError::InvalidUrl {
                url: self.url,
                reason: format!("scheme {:?} is not http or https", url.scheme()),
            });
        }
        if !self.last_event_id.is_empty()
            && HeaderValue::from_bytes(self.last_event_id.as_bytes()).is_err()
        {
            return Err(ClientError::InvalidLastEventId {
                id: self.last_event_id,
            });
        }

        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        // Extending from another map replaces the defaults for each name it holds.
        headers.extend(self.headers);
        if let Some(Redacted(token)) = &self.bearer {
            headers.insert(AUTHORIZATION, bearer_value(token)?);
        }

        let http = match self.http {
            Some(http) => http,
            None => {
                let mut builder = reqwest::Client::builder()
                    .user_agent(concat!("ssehub-client/", env!("CARGO_PKG_VERSION")));
                if let Some(timeout) = self.connect_timeout {
                    builder = builder.connect_timeout(timeout);
                }
                builder = match self.http_version {
                    HttpVersion::Negotiate => builder,
                    HttpVersion::Http1Only => builder.http1_only(),
                    HttpVersion::Http2PriorKnowledge => builder.http2_prior_knowledge(),
                };
                if !self.root_certificates.is_empty() {
                    builder = builder.tls_certs_merge(self.root_certificates);
                }
                builder.build().map_err(ClientError::Build)?
            }
        };

        Ok(Client {
            shared: Arc::new(Shared {
                http,
                url,
                headers,
                last_event_id: self.last_event_id,
                read_timeout: self.read_timeout,
                reconnect: self.reconnect,
                max_pending_bytes: self.max_pending_bytes,
                token_provider: self.token_provider,
            }),
        })
    }
}

/// `Bearer TOKEN` as a header value marked sensitive (kept out of HTTP/2 header tables and
/// debug output). The error never quotes the token.
pub(crate) fn bearer_value(token: &str) -> Result<HeaderValue, ClientError> {
    if token.is_empty() {
        return Err(ClientError::Token("the token is empty".to_owned()));
    }
    // RFC 6750 b64token: no whitespace or control characters inside.
    if token.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(ClientError::Token(
            "the token holds whitespace, control or non-ASCII characters".to_owned(),
        ));
    }
    let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| ClientError::Token("the token cannot be a header value".to_owned()))?;
    value.set_sensitive(true);
    Ok(value)
}
