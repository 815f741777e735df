//! The verification keys of one trusted issuer, fetched from its JWK Set URI (RFC 7517) and kept
//! fresh.
//!
//! The Mercure draft (section "Token Validation") lets a hub obtain its trusted keys from an
//! authorization server's JWK Set, and requires that each trusted key stays bound to the issuer
//! it belongs to. This module owns exactly that: one [`JwksSource`] is the key cache of **one**
//! issuer, so the caller keeps one source per trusted `iss` and never pools keys across issuers.
//! Choosing a key for a token (by `kid`, by `alg`), checking `typ`, `iss`, `aud`, `exp` and the
//! rest stays with the caller.
//!
//! What it guarantees, and why:
//!
//! * **Only the configured URI is fetched.** Key material named by a token (the `jku`, `jwk` and
//!   `x5u` header parameters) is never looked at here, and the caller must not use it either: the
//!   draft forbids it, since it would let a token bring its own key. A token's `kid` can only pick
//!   among keys this source already fetched, or trigger a rate-limited re-fetch of the same URI
//!   ([`JwksSource::refresh_for_unknown_kid`]).
//! * **The transport is authenticated.** The URI must be `https`, except plain `http` to a
//!   loopback host (`127.0.0.0/8`, `::1`, `localhost`) for development and tests, where nothing
//!   crosses a network. Redirects are followed only to `https` URLs (at most 5), so a redirect
//!   cannot downgrade the fetch to plain text.
//! * **A response cannot exhaust the hub.** Each fetch has a total time limit (5 s by default),
//!   the body is read in a bounded way and refused beyond [`MAX_BODY_BYTES`], and at most
//!   [`MAX_KEYS`] keys are kept.
//! * **Only public signature-verification keys are kept.** Keys whose `use` is not `sig`, whose
//!   `key_ops` lacks `verify`, whose `alg` is unknown or does not fit the key type, whose type or
//!   curve is not supported (RSA of at least 2048 bits, EC P-256 and P-384, OKP Ed25519), or that
//!   [`DecodingKey::from_jwk`] rejects are skipped with a debug log. Symmetric `oct` keys are
//!   always refused: a JWK Set is public, so a secret in it is no secret, and accepting one would
//!   open the door to HMAC algorithm confusion. One malformed key does not discard the others.
//! * **Readers never wait.** [`JwksSource::keys`] is a read of an [`Arc`] snapshot: no I/O, no
//!   await, no lock held for longer than a pointer copy. Token verification stays synchronous.
//! * **The issuer is not hammered.** All fetches, whatever triggers them (the background
//!   refresher, [`JwksSource::refresh`], unknown-`kid` refreshes), are at most one per
//!   [`JwksOptions::min_refresh_interval`] (5 s by default), and concurrent callers share the
//!   fetch in flight instead of starting their own. An attacker spraying tokens with random
//!   `kid`s therefore causes at most one request per interval.
//! * **Stale keys beat no keys.** A failed fetch (network, status, size, parse) keeps the keys
//!   already cached and logs a warning; the background refresher retries with a bounded
//!   exponential backoff. A successful fetch replaces the set, even when it is empty.
//! * **Lifetime follows the issuer.** A fetched set is fresh for the response's
//!   `Cache-Control: max-age` (less its `Age`), clamped to
//!   [`min_refresh_interval`](JwksOptions::min_refresh_interval) ..
//!   [`max_cache_age`](JwksOptions::max_cache_age) (24 h); without `max-age`, or with `no-cache`
//!   or `no-store`, it is [`default_cache_age`](JwksOptions::default_cache_age) (5 minutes).
//!
//! ```no_run
//! # async fn demo() -> Result<(), ssehub_auth::jwks::JwksError> {
//! use ssehub_auth::jwks::JwksSource;
//!
//! let source = JwksSource::new("https://issuer.example/.well-known/jwks.json")?;
//! let _refresher = source.spawn_refresher(); // fetches now, then whenever max-age runs out
//!
//! // When verifying a token (synchronous): pick a cached key by kid and algorithm.
//! let (kid, alg) = ("2024-05", jsonwebtoken::Algorithm::EdDSA);
//! let keys = source.keys();
//! let key = keys.iter().find(|k| k.kid.as_deref() == Some(kid) && k.accepts(alg));
//! if key.is_none() {
//!     // Unknown kid: maybe the issuer rotated. Rate-limited, so safe to call for every token.
//!     source.refresh_for_unknown_kid().await;
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, Weak};
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use parking_lot::{Mutex, RwLock};
use reqwest::Url;
use reqwest::header::{ACCEPT, AGE, CACHE_CONTROL, HeaderMap};
use tokio::sync::watch;
use tokio::time::Instant;

/// The largest JWK Set response body accepted, in bytes (256 KiB). A larger body is an error.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The most keys kept from one JWK Set; usable keys beyond it are ignored (with a warning).
pub const MAX_KEYS: usize = 100;

/// The `Accept` header sent with every fetch.
pub const ACCEPT_VALUE: &str = "application/jwk-set+json, application/json";

/// Redirects followed per fetch (each to an `https` URL).
const MAX_REDIRECTS: usize = 5;

/// Shortest pause of the background refresher between two rounds (guards against a hot loop).
const MIN_REFRESHER_PAUSE: Duration = Duration::from_millis(10);

/// Why a [`JwksSource`] could not be created or refreshed. The `Display` form is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The JWK Set URI does not parse as an absolute `http(s)` URL with a host.
    #[error("invalid JWKS URI: {0}")]
    InvalidUri(String),
    /// The JWK Set URI uses plain `http` to a host that is not loopback.
    #[error("insecure JWKS URI {0}: use https (plain http only to 127.0.0.0/8, ::1 or localhost)")]
    InsecureUri(String),
    /// The [`JwksOptions`] are inconsistent; the text says which rule is broken.
    #[error("invalid JWKS options: {0}")]
    InvalidOptions(&'static str),
    /// The HTTP client could not be built (TLS backend initialisation).
    #[error("cannot build the JWKS HTTP client: {0}")]
    Client(String),
    /// `refresh` was polled outside a Tokio runtime.
    #[error("JWKS refresh needs a Tokio runtime")]
    NoRuntime,
    /// The request failed (connection, TLS, refused redirect, broken body).
    #[error("JWKS request failed: {0}")]
    Request(String),
    /// The request did not complete within [`JwksOptions::timeout`].
    #[error("JWKS request timed out after {0:?}")]
    Timeout(Duration),
    /// The endpoint answered with a status other than 2xx.
    #[error("JWKS endpoint answered HTTP {0}")]
    Status(u16),
    /// The response body is larger than [`MAX_BODY_BYTES`].
    #[error("JWKS response body exceeds {0} bytes")]
    TooLarge(usize),
    /// The body is not a JSON JWK Set (an object with a `keys` array).
    #[error("JWKS response is not a JWK Set: {0}")]
    Parse(String),
    /// The fetch in flight ended without a result (its task was cancelled, e.g. at runtime
    /// shutdown).
    #[error("JWKS refresh was cancelled")]
    Cancelled,
}

/// Settings of a [`JwksSource`]. `Default` gives the production values; tests shorten them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct JwksOptions {
    /// Total time limit of one fetch: connect, TLS, redirects and reading the body. Default 5 s.
    pub timeout: Duration,
    /// Time limit of the TCP connect alone. Default 5 s.
    pub connect_timeout: Duration,
    /// At most one fetch starts per this interval, whatever triggers it; also the shortest cache
    /// lifetime. Default 5 s. Must not be zero.
    pub min_refresh_interval: Duration,
    /// Cache lifetime when the response has no usable `max-age` (or says `no-cache` /
    /// `no-store`). Default 5 minutes.
    pub default_cache_age: Duration,
    /// Longest cache lifetime, whatever `max-age` says. Default 24 h.
    pub max_cache_age: Duration,
    /// First retry delay of the background refresher after a failed fetch; doubles on each
    /// consecutive failure. Default 1 s.
    pub initial_backoff: Duration,
    /// Longest retry delay of the background refresher. Default 5 minutes.
    pub max_backoff: Duration,
}

impl Default for JwksOptions {
    fn default() -> Self {
        JwksOptions {
            timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            min_refresh_interval: Duration::from_secs(5),
            default_cache_age: Duration::from_secs(5 * 60),
            max_cache_age: Duration::from_secs(24 * 60 * 60),
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5 * 60),
        }
    }
}

impl JwksOptions {
    fn validate(&self) -> Result<(), JwksError> {
        let fail = |why| Err(JwksError::InvalidOptions(why));
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return fail("timeouts must not be zero");
        }
        if self.min_refresh_interval.is_zero() {
            return fail("min_refresh_interval must not be zero");
        }
        if self.default_cache_age < self.min_refresh_interval
            || self.max_cache_age < self.default_cache_age
        {
            return fail("need min_refresh_interval <= default_cache_age <= max_cache_age");
        }
        if self.initial_backoff.is_zero() || self.max_backoff < self.initial_backoff {
            return fail("need 0 < initial_backoff <= max_backoff");
        }
        Ok(())
    }
}

/// The elliptic curve of an EC key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EcCurve {
    /// NIST P-256, for `ES256`.
    P256,
    /// NIST P-384, for `ES384`.
    P384,
}

/// The kind of a cached key, which decides the algorithms it may verify. There is no HMAC
/// family: a public JWK Set never provides a shared secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum KeyFamily {
    /// An RSA key (modulus of at least 2048 bits): `RS256/384/512`, `PS256/384/512`.
    Rsa,
    /// An EC key on the given curve: `ES256` (P-256) or `ES384` (P-384).
    Ec(EcCurve),
    /// An Ed25519 key: `EdDSA`.
    Ed25519,
}

impl KeyFamily {
    /// Whether a key of this family can verify `alg` (binding the algorithm to the key type, which
    /// prevents algorithm confusion).
    pub fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyFamily::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyFamily::Ec(EcCurve::P256) => alg == ES256,
            KeyFamily::Ec(EcCurve::P384) => alg == ES384,
            KeyFamily::Ed25519 => alg == EdDSA,
        }
    }
}

/// One usable verification key of the set.
#[derive(Debug, Clone)]
pub struct JwksKey {
    /// The JWK's `kid`, if any.
    pub kid: Option<String>,
    /// The JWK's `alg`, if any (always one [`family`](Self::family) allows).
    pub alg: Option<Algorithm>,
    /// The key, ready for [`jsonwebtoken::decode`].
    pub key: DecodingKey,
    /// The key type (and curve).
    pub family: KeyFamily,
}

impl JwksKey {
    /// Whether this key may verify a token signed with `alg`: the family allows it and, when the
    /// JWK names an `alg`, it is that one.
    pub fn accepts(&self, alg: Algorithm) -> bool {
        self.family.allows(alg) && self.alg.is_none_or(|own| own == alg)
    }
}

/// The JWK Set of one trusted issuer: a cheap-to-clone handle (all clones share one cache).
#[derive(Clone)]
pub struct JwksSource {
    inner: Arc<Inner>,
}

type Outcome = Result<bool, JwksError>;

struct Inner {
    url: Url,
    client: reqwest::Client,
    options: JwksOptions,
    /// The snapshot readers get. Written only under `state`, after a successful fetch.
    keys: RwLock<Arc<[JwksKey]>>,
    state: Mutex<State>,
    /// Never sent on: dropped with the last handle, which wakes background refreshers so they
    /// end.
    alive: watch::Sender<()>,
}

#[derive(Default)]
struct State {
    /// When the last fetch started (the rate limit counts from here).
    last_attempt: Option<Instant>,
    /// Until when the cached set is fresh; `None` before the first successful fetch.
    fresh_until: Option<Instant>,
    /// The JWKs behind `keys`, to tell whether a fetch changed the set.
    current: Vec<Jwk>,
    /// The fetch in progress; its result is published on this channel.
    in_flight: Option<watch::Receiver<Option<Outcome>>>,
    /// Failed fetches since the last successful one (drives the refresher's backoff).
    consecutive_failures: u32,
}

impl fmt::Debug for JwksSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksSource")
            .field("uri", &self.uri())
            .field("keys", &self.inner.keys.read().len())
            .finish_non_exhaustive()
    }
}

impl JwksSource {
    /// Validates the URI (`https`, or `http` only to a loopback host: `127.0.0.0/8`, `::1`,
    /// `localhost`) and builds the HTTP client, with the default [`JwksOptions`]. No network I/O.
    pub fn new(uri: &str) -> Result<JwksSource, JwksError> {
        JwksSource::with_options(uri, JwksOptions::default())
    }

    /// [`new`](Self::new) with explicit options.
    pub fn with_options(uri: &str, options: JwksOptions) -> Result<JwksSource, JwksError> {
        options.validate()?;
        let url = parse_uri(uri)?;
        let mut builder = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .redirect(reqwest::redirect::Policy::custom(|attempt| {
                if attempt.previous().len() >= MAX_REDIRECTS {
                    attempt.error("too many redirects")
                } else if attempt.url().scheme() != "https" {
                    attempt.error("refusing a redirect to a non-https URL")
                } else {
                    attempt.follow()
                }
            }))
            .user_agent(concat!("ssehub/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&url) {
            // A system proxy must not see (or break) a fetch that never leaves the machine.
            builder = builder.no_proxy();
        }
        let client = builder
            .build()
            .map_err(|e| JwksError::Client(error_chain(&e)))?;
        let (alive, _) = watch::channel(());
        Ok(JwksSource {
            inner: Arc::new(Inner {
                url,
                client,
                options,
                keys: RwLock::new(Arc::from(Vec::new())),
                state: Mutex::new(State::default()),
                alive,
            }),
        })
    }

    /// The JWK Set URI (normalized by URL parsing).
    pub fn uri(&self) -> &str {
        self.inner.url.as_str()
    }

    /// The options this source was built with.
    pub fn options(&self) -> &JwksOptions {
        &self.inner.options
    }

    /// The keys currently cached; empty before the first successful fetch. Never blocks on I/O:
    /// it copies the current `Arc` snapshot.
    pub fn keys(&self) -> Arc<[JwksKey]> {
        Arc::clone(&self.inner.keys.read())
    }

    /// Fetches the set now if it is stale (or `force`) and at least
    /// [`min_refresh_interval`](JwksOptions::min_refresh_interval) has passed since the last fetch
    /// started; returns whether the key set changed.
    ///
    /// If a fetch is already in flight, waits for it and returns its result instead of starting
    /// another one. Returns `Ok(false)` without fetching when the set is fresh and `force` is
    /// false, or when the rate limit forbids a fetch now. On error the cached keys are kept. The
    /// fetch runs in its own task, so cancelling this future does not cancel it.
    pub async fn refresh(&self, force: bool) -> Result<bool, JwksError> {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return Err(JwksError::NoRuntime);
        };
        let mut rx = {
            let mut state = self.inner.state.lock();
            if let Some(rx) = &state.in_flight {
                rx.clone()
            } else {
                let now = Instant::now();
                let stale = state.fresh_until.is_none_or(|until| now >= until);
                let allowed = state
                    .last_attempt
                    .is_none_or(|last| now >= last + self.inner.options.min_refresh_interval);
                if !(force || stale) || !allowed {
                    return Ok(false);
                }
                state.last_attempt = Some(now);
                let (tx, rx) = watch::channel(None);
                state.in_flight = Some(rx.clone());
                let flight = Flight {
                    inner: Arc::clone(&self.inner),
                    tx,
                    done: false,
                };
                runtime.spawn(flight.run());
                rx
            }
        };
        match rx.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Err(JwksError::Cancelled)),
            Err(_) => Err(JwksError::Cancelled),
        }
    }

    /// The refresh to call when a token's `kid` matches no cached key (the issuer may have
    /// rotated): a forced [`refresh`](Self::refresh), so at most one fetch per
    /// [`min_refresh_interval`](JwksOptions::min_refresh_interval) in total, whatever the number
    /// of callers or `kid`s. Returns true if a fetch happened (or was joined) and changed the set,
    /// i.e. when looking the `kid` up again is worth it. Failures are logged, not returned.
    pub async fn refresh_for_unknown_kid(&self) -> bool {
        match self.refresh(true).await {
            Ok(changed) => changed,
            Err(error) => {
                tracing::debug!(
                    uri = %self.uri(),
                    %error,
                    "JWKS refresh for an unknown kid failed"
                );
                false
            }
        }
    }

    /// Spawns the task that keeps the set fresh: it fetches at once, then again whenever the
    /// cached set's lifetime runs out. A failed fetch (unreachable issuer, bad response) is logged
    /// with `tracing::warn!` and retried after [`initial_backoff`](JwksOptions::initial_backoff),
    /// doubling up to [`max_backoff`](JwksOptions::max_backoff), never sooner than the rate limit
    /// allows. The task holds only a weak reference: it ends once every handle to this source is
    /// dropped.
    ///
    /// Must be called from within a Tokio runtime (like [`tokio::spawn`]).
    pub fn spawn_refresher(&self) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(&self.inner);
        let alive = self.inner.alive.subscribe();
        tokio::spawn(run_refresher(weak, alive))
    }

    /// How long the background refresher should sleep after a round that ended well: until the
    /// set goes stale, and no sooner than the rate limit allows a fetch.
    fn pause_after_success(&self) -> Duration {
        let now = Instant::now();
        let state = self.inner.state.lock();
        let until_stale = state
            .fresh_until
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        until_stale.max(self.until_allowed(&state, now))
    }

    /// How long the background refresher should sleep after a failed round: the backoff for the
    /// number of consecutive failures, and no sooner than the rate limit allows a fetch.
    fn pause_after_failure(&self) -> Duration {
        let now = Instant::now();
        let state = self.inner.state.lock();
        let options = &self.inner.options;
        let exponent = state.consecutive_failures.saturating_sub(1).min(31);
        let backoff = options
            .initial_backoff
            .saturating_mul(1u32 << exponent)
            .min(options.max_backoff);
        backoff.max(self.until_allowed(&state, now))
    }

    fn until_allowed(&self, state: &State, now: Instant) -> Duration {
        state.last_attempt.map_or(Duration::ZERO, |last| {
            (last + self.inner.options.min_refresh_interval).saturating_duration_since(now)
        })
    }
}

async fn run_refresher(weak: Weak<Inner>, mut alive: watch::Receiver<()>) {
    loop {
        let pause = {
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let source = JwksSource { inner };
            match source.refresh(false).await {
                Ok(_) => source.pause_after_success(),
                Err(error) => {
                    // The failed fetch itself was logged (warn) when it was stored.
                    let pause = source.pause_after_failure();
                    tracing::debug!(
                        uri = %source.uri(),
                        %error,
                        retry_in = ?pause,
                        cached_keys = source.keys().len(),
                        "JWKS refresh failed; will retry"
                    );
                    pause
                }
            }
            // The strong handle is dropped here: while sleeping, the task keeps only `weak`.
        };
        tokio::select! {
            () = tokio::time::sleep(pause.max(MIN_REFRESHER_PAUSE)) => {}
            // Resolves (with an error) once the source is dropped; nothing is ever sent.
            _ = alive.changed() => return,
        }
    }
}

/// One fetch, run in its own task. Dropping it (normally or by cancellation) clears the in-flight
/// marker and, if no result was published, publishes [`JwksError::Cancelled`], so waiters never
/// hang and later refreshes are not blocked.
struct Flight {
    inner: Arc<Inner>,
    tx: watch::Sender<Option<Outcome>>,
    /// Set once the result is stored; from then on the in-flight marker may belong to a newer
    /// fetch and must not be touched.
    done: bool,
}

impl Flight {
    async fn run(mut self) {
        let fetched =
            match tokio::time::timeout(self.inner.options.timeout, self.inner.fetch()).await {
                Ok(result) => result,
                Err(_) => Err(JwksError::Timeout(self.inner.options.timeout)),
            };
        let outcome = self.inner.store(fetched);
        self.done = true;
        self.tx.send_replace(Some(outcome));
    }
}

impl Drop for Flight {
    fn drop(&mut self) {
        if !self.done {
            self.inner.state.lock().in_flight = None;
        }
        self.tx.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(Err(JwksError::Cancelled));
                true
            } else {
                false
            }
        });
    }
}

/// What a successful fetch yields.
struct Fetched {
    jwks: Vec<Jwk>,
    keys: Vec<JwksKey>,
    lifetime: Duration,
}

impl Inner {
    async fn fetch(&self) -> Result<Fetched, JwksError> {
        let mut response = self
            .client
            .get(self.url.clone())
            .header(ACCEPT, ACCEPT_VALUE)
            .send()
            .await
            .map_err(|e| self.request_error(&e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(JwksError::Status(status.as_u16()));
        }
        let lifetime = cache_lifetime(response.headers(), &self.options);
        if response
            .content_length()
            .is_some_and(|len| len > MAX_BODY_BYTES as u64)
        {
            return Err(JwksError::TooLarge(MAX_BODY_BYTES));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.request_error(&e))? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(JwksError::TooLarge(MAX_BODY_BYTES));
            }
            body.extend_from_slice(&chunk);
        }
        let (jwks, keys) = parse_jwk_set(&body, self.url.as_str())?;
        Ok(Fetched {
            jwks,
            keys,
            lifetime,
        })
    }

    fn request_error(&self, error: &reqwest::Error) -> JwksError {
        if error.is_timeout() {
            JwksError::Timeout(self.options.timeout)
        } else {
            JwksError::Request(error_chain(error))
        }
    }

    /// Records a fetch's result: on success swaps the snapshot (if the set changed) and sets its
    /// lifetime; on failure keeps everything and logs a warning.
    fn store(&self, fetched: Result<Fetched, JwksError>) -> Outcome {
        let mut state = self.state.lock();
        state.in_flight = None;
        match fetched {
            Ok(fetched) => {
                state.consecutive_failures = 0;
                state.fresh_until = Some(Instant::now() + fetched.lifetime);
                let changed = state.current != fetched.jwks;
                if changed {
                    *self.keys.write() = Arc::from(fetched.keys);
                    state.current = fetched.jwks;
                }
                tracing::debug!(
                    uri = %self.url,
                    keys = state.current.len(),
                    changed,
                    fresh_for = ?fetched.lifetime,
                    "JWKS fetched"
                );
                Ok(changed)
            }
            Err(error) => {
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                tracing::warn!(
                    uri = %self.url,
                    %error,
                    kept_keys = state.current.len(),
                    "JWKS fetch failed; keeping the previously fetched keys"
                );
                Err(error)
            }
        }
    }
}

/// Parses and checks the JWK Set URI.
fn parse_uri(uri: &str) -> Result<Url, JwksError> {
    let url = Url::parse(uri.trim()).map_err(|e| JwksError::InvalidUri(format!("{uri:?}: {e}")))?;
    if !url.username().is_empty() || url.password().is_some() {
        // A JWK Set is public; credentials in the URI would only end up in logs.
        return Err(JwksError::InvalidUri(
            "credentials in the URI are not supported".into(),
        ));
    }
    match url.scheme() {
        "https" if url.has_host() => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" if url.has_host() => Err(JwksError::InsecureUri(url.to_string())),
        "http" | "https" => Err(JwksError::InvalidUri(format!("{uri:?}: no host"))),
        other => Err(JwksError::InvalidUri(format!(
            "{uri:?}: scheme {other:?} (expected https)"
        ))),
    }
}

/// Whether the URL's host is loopback: `127.0.0.0/8`, `::1` or `localhost`. (URL parsing has
/// already normalized the host: IPv4 in dotted decimal, IPv6 in brackets, names in lower case.)
fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| ip.is_loopback());
    }
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<Ipv4Addr>().is_ok_and(|ip| ip.is_loopback())
}

/// The error and its causes on one line (reqwest's own message hides the cause, e.g.
/// "connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let message = cause.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        source = cause.source();
    }
    text.replace(['\r', '\n'], " ")
}

/// How long a fetched set stays fresh, from the response's `Cache-Control` and `Age`.
fn cache_lifetime(headers: &HeaderMap, options: &JwksOptions) -> Duration {
    let mut max_age: Option<u64> = None;
    let mut no_cache = false;
    for value in headers.get_all(CACHE_CONTROL) {
        let Ok(value) = value.to_str() else {
            continue;
        };
        for directive in value.split(',') {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            if name.eq_ignore_ascii_case("no-cache") || name.eq_ignore_ascii_case("no-store") {
                no_cache = true;
            } else if name.eq_ignore_ascii_case("max-age")
                && let Some(seconds) = argument.and_then(parse_seconds)
            {
                // Several max-age directives: the most conservative wins.
                max_age = Some(max_age.map_or(seconds, |other| other.min(seconds)));
            }
        }
    }
    let Some(max_age) = max_age.filter(|_| !no_cache) else {
        return options.default_cache_age;
    };
    let age = headers
        .get(AGE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| parse_seconds(value.trim()))
        .unwrap_or(0);
    Duration::from_secs(max_age.saturating_sub(age))
        .clamp(options.min_refresh_interval, options.max_cache_age)
}

/// A non-negative integer number of seconds (RFC 9111 delta-seconds); saturates when too large.
fn parse_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::MAX))
}

/// The outer shape of a JWK Set. Keys are parsed one by one so that one malformed key is skipped
/// instead of failing the whole set.
#[derive(serde::Deserialize)]
struct RawJwkSet {
    keys: Vec<serde_json::Value>,
}

fn parse_jwk_set(body: &[u8], uri: &str) -> Result<(Vec<Jwk>, Vec<JwksKey>), JwksError> {
    let raw: RawJwkSet =
        serde_json::from_slice(body).map_err(|e| JwksError::Parse(e.to_string()))?;
    let total = raw.keys.len();
    let mut jwks = Vec::new();
    let mut keys = Vec::new();
    let mut ignored = 0usize;
    for (index, value) in raw.keys.into_iter().enumerate() {
        let jwk: Jwk = match serde_json::from_value(value) {
            Ok(jwk) => jwk,
            Err(error) => {
                tracing::debug!(%uri, index, %error, "skipping a malformed JWK");
                continue;
            }
        };
        match usable_key(&jwk) {
            Ok(_) if keys.len() == MAX_KEYS => ignored += 1,
            Ok(key) => {
                keys.push(key);
                jwks.push(jwk);
            }
            Err(reason) => {
                tracing::debug!(
                    %uri,
                    index,
                    kid = ?jwk.common.key_id,
                    reason,
                    "skipping an unusable JWK"
                );
            }
        }
    }
    if ignored > 0 {
        tracing::warn!(
            %uri,
            kept = MAX_KEYS,
            ignored,
            "JWK Set has too many keys; ignoring the rest"
        );
    }
    if keys.is_empty() && total > 0 {
        tracing::warn!(%uri, total, "JWK Set has no usable signature-verification key");
    }
    Ok((jwks, keys))
}

/// The usable verification key of a JWK, or why it is skipped.
fn usable_key(jwk: &Jwk) -> Result<JwksKey, &'static str> {
    if let Some(key_use) = &jwk.common.public_key_use
        && *key_use != PublicKeyUse::Signature
    {
        return Err("`use` is not `sig`");
    }
    if let Some(operations) = &jwk.common.key_operations
        && !operations.contains(&KeyOperations::Verify)
    {
        return Err("`key_ops` does not include `verify`");
    }
    let family = match &jwk.algorithm {
        AlgorithmParameters::OctetKey(_) => {
            return Err("symmetric `oct` key (a public JWK Set must not carry secrets)");
        }
        AlgorithmParameters::RSA(params) => {
            // RFC 7518 section 6.3.1.1: `n` has no leading zero octets, so its length is the
            // modulus size.
            if b64url_len(&params.n).is_none_or(|len| len < 256) {
                return Err("RSA modulus shorter than 2048 bits");
            }
            KeyFamily::Rsa
        }
        AlgorithmParameters::EllipticCurve(params) => {
            let (curve, size) = match params.curve {
                EllipticCurve::P256 => (EcCurve::P256, 32),
                EllipticCurve::P384 => (EcCurve::P384, 48),
                _ => return Err("unsupported EC curve"),
            };
            if b64url_len(&params.x) != Some(size) || b64url_len(&params.y) != Some(size) {
                return Err("EC coordinates of the wrong size");
            }
            KeyFamily::Ec(curve)
        }
        AlgorithmParameters::OctetKeyPair(params) => {
            if params.curve != EllipticCurve::Ed25519 {
                return Err("unsupported OKP curve");
            }
            if b64url_len(&params.x) != Some(32) {
                return Err("Ed25519 public key of the wrong size");
            }
            KeyFamily::Ed25519
        }
        _ => return Err("unsupported key type or curve"),
    };
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(declared) => match Algorithm::try_from(declared) {
            Ok(alg) if family.allows(alg) => Some(alg),
            Ok(_) => return Err("`alg` does not fit the key type"),
            Err(_) => return Err("unsupported `alg`"),
        },
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "rejected by DecodingKey::from_jwk")?;
    Ok(JwksKey {
        kid: jwk.common.key_id.clone(),
        alg,
        key,
        family,
    })
}

/// The decoded length of unpadded base64url text, or `None` if it is not base64url.
fn b64url_len(text: &str) -> Option<usize> {
    let valid = text
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    (valid && text.len() % 4 != 1).then(|| text.len() * 3 / 4)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn lifetime(cache_control: &[&str], age: Option<&str>) -> Duration {
        let mut headers = HeaderMap::new();
        for value in cache_control {
            headers.append(CACHE_CONTROL, HeaderValue::from_str(value).unwrap());
        }
        if let Some(age) = age {
            headers.insert(AGE, HeaderValue::from_str(age).unwrap());
        }
        cache_lifetime(&headers, &JwksOptions::default())
    }

    #[test]
    fn cache_control_lifetimes() {
        let default = Duration::from_secs(300);
        assert_eq!(lifetime(&[], None), default);
        assert_eq!(
            lifetime(&["public, max-age=600"], None),
            Duration::from_secs(600)
        );
        assert_eq!(
            lifetime(&["Max-Age=\"600\""], None),
            Duration::from_secs(600)
        );
        assert_eq!(
            lifetime(&["max-age=600"], Some("100")),
            Duration::from_secs(500)
        );
        assert_eq!(
            lifetime(&["max-age=600", "max-age=60"], None),
            Duration::from_secs(60)
        );
        assert_eq!(lifetime(&["max-age=0"], None), Duration::from_secs(5));
        assert_eq!(
            lifetime(&["max-age=600"], Some("9999")),
            Duration::from_secs(5)
        );
        assert_eq!(
            lifetime(&["max-age=99999999999999999999999"], None),
            Duration::from_secs(86_400)
        );
        assert_eq!(lifetime(&["max-age=600, no-cache"], None), default);
        assert_eq!(lifetime(&["no-store"], None), default);
        assert_eq!(lifetime(&["max-age=-1"], None), default);
        assert_eq!(lifetime(&["max-age=1e3"], None), default);
        assert_eq!(lifetime(&["s-maxage=600"], None), default);
    }

    #[test]
    fn uri_rules() {
        for ok in [
            "https://issuer.example/jwks",
            "http://127.0.0.1:8080/jwks",
            "http://127.9.9.9/jwks",
            "http://[::1]:1/jwks",
            "http://localhost/jwks",
            "http://LOCALHOST:3000/jwks",
        ] {
            assert!(parse_uri(ok).is_ok(), "{ok}");
        }
        for insecure in [
            "http://example.com/jwks",
            "http://10.0.0.1/jwks",
            "http://[::2]/jwks",
            "http://localhost.example.com/jwks",
            "http://127.0.0.1.nip.io/jwks",
        ] {
            assert!(
                matches!(parse_uri(insecure), Err(JwksError::InsecureUri(_))),
                "{insecure}"
            );
        }
        for invalid in [
            "",
            "not a url",
            "ftp://example.com/jwks",
            "https://user:secret@issuer.example/jwks",
            "file:///etc/jwks",
            "/jwks",
        ] {
            assert!(
                matches!(parse_uri(invalid), Err(JwksError::InvalidUri(_))),
                "{invalid}"
            );
        }
    }

    #[test]
    fn base64url_lengths() {
        assert_eq!(b64url_len(""), Some(0));
        assert_eq!(b64url_len("AQAB"), Some(3));
        assert_eq!(b64url_len("AQ"), Some(1));
        assert_eq!(b64url_len("A"), None);
        assert_eq!(b64url_len("AQ=="), None);
        assert_eq!(b64url_len("a+b/"), None);
        assert_eq!(b64url_len(&"A".repeat(43)), Some(32));
    }
}
