//! The Mercure protocol endpoint (IETF draft-dunglas-mercure) at `/.well-known/mercure`:
//! `GET` subscribes, `POST` publishes; the active subscriptions API below
//! `/.well-known/mercure/subscriptions` when enabled.

mod body;
mod metadata;
mod publish;
pub(crate) mod resource;
mod rules;
mod subscribe;
pub(crate) mod subscriptions;

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Extension;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Uri};
use ssehub_auth::{AuthError, Challenge, Claims, Role, TokenSource};
use ssehub_hub::Hub;
use ssehub_selector::MatcherRegistry;
use tokio_util::task::TaskTracker;

use crate::limits::{PublishRate, SubscriberSlots};
use crate::metrics::{AuthFailure, Cause, ServerMetrics};
use crate::{ApiError, MercureConfig};

pub(crate) use metadata::metadata;
pub(crate) use publish::publish;
pub(crate) use subscribe::{
    Subscribed, insert_subscribe_headers, open_subscription, other_method, subscribe,
};

/// The path of the Mercure endpoint.
pub const MERCURE_PATH: &str = "/.well-known/mercure";

/// What the Mercure handlers share.
/// What the Mercure handlers share, behind one `Arc`: axum clones the state for every request,
/// and one reference count is cheaper than one per field.
#[derive(Debug, Clone)]
pub(crate) struct MercureState(Arc<MercureShared>);

impl MercureState {
    pub(crate) fn new(shared: MercureShared) -> Self {
        MercureState(Arc::new(shared))
    }
}

impl std::ops::Deref for MercureState {
    type Target = MercureShared;

    fn deref(&self) -> &MercureShared {
        &self.0
    }
}

/// The fields of a [`MercureState`].
#[derive(Debug)]
pub(crate) struct MercureShared {
    pub(crate) hub: Hub,
    pub(crate) config: Arc<MercureConfig>,
    /// Publishes in flight, so shutdown can let them finish before closing the hub.
    pub(crate) publishes: TaskTracker,
    /// Compiled matchers, shared by every subscription that uses one, freed with the last, and
    /// bounded in bytes globally and per client address and token
    /// ([`MercureConfig::matchers`]).
    pub(crate) selectors: Arc<MatcherRegistry>,
    /// Open subscriptions per client address (`None`: no limit).
    pub(crate) slots: Option<Arc<SubscriberSlots>>,
    /// Publishes per second per token (`None`: no limit).
    pub(crate) publish_rate: Option<Arc<PublishRate>>,
    /// The HTTP API's counters (`/metrics`).
    pub(crate) metrics: Arc<ServerMetrics>,
}

/// The TCP peer of a request served by [`crate::MercureServer::serve`] (absent when the app
/// serves the router itself without `ConnectInfo`).
pub(crate) type Peer = Option<Extension<ConnectInfo<SocketAddr>>>;

/// The address of a [`Peer`].
pub(crate) fn peer_ip(peer: &Peer) -> Option<IpAddr> {
    peer.as_ref().map(|Extension(ConnectInfo(addr))| addr.ip())
}

/// A verified token: its claims, where it came from, and the token itself (the publish rate
/// limit is per token).
pub(crate) struct Authenticated {
    pub(crate) claims: Arc<Claims>,
    pub(crate) source: TokenSource,
    pub(crate) token: String,
}

/// One request's authorization context: the hub's resource identifier for it, and the RFC 6750
/// answers to its failures (Mercure 1.0, "Error Responses"). In legacy mode the 0.x answers:
/// a bare `Bearer` challenge on 401 and none otherwise.
pub(crate) struct AuthRequest<'a> {
    config: &'a MercureConfig,
    /// `None` when it cannot be derived (no usable `Host`).
    resource: Option<Cow<'a, str>>,
}

impl<'a> AuthRequest<'a> {
    pub(crate) fn new(
        config: &'a MercureConfig,
        uri: &Uri,
        headers: &HeaderMap,
        peer: Option<IpAddr>,
    ) -> Self {
        AuthRequest {
            config,
            resource: resource::resource_identifier(config, uri, headers, peer),
        }
    }

    /// The resource identifier for this request, if it has one.
    pub(crate) fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// Finds and verifies the request's token, if it has one.
    pub(crate) fn authenticate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        role: Role,
    ) -> Result<Option<Authenticated>, ApiError> {
        let Some((token, source, resource)) = self.locate(headers, query)? else {
            return Ok(None);
        };
        let verified = self.config.authorizer.verify_for(&token, role, resource);
        self.accept(token, source, verified).map(Some)
    }

    /// [`AuthRequest::authenticate`], with one rate-limited refresh of the issuer's JWK Set
    /// when the token names a key the hub does not have yet (the issuer rotated its keys).
    pub(crate) async fn authenticate_refreshing(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
        role: Role,
    ) -> Result<Option<Authenticated>, ApiError> {
        let Some((token, source, resource)) = self.locate(headers, query)? else {
            return Ok(None);
        };
        let authorizer = &self.config.authorizer;
        let verified = authorizer.verify_refreshing(&token, role, resource).await;
        self.accept(token, source, verified).map(Some)
    }

    fn accept(
        &self,
        token: String,
        source: TokenSource,
        verified: Result<Arc<Claims>, AuthError>,
    ) -> Result<Authenticated, ApiError> {
        Ok(Authenticated {
            claims: verified.map_err(|e| self.refusal(&e))?,
            source,
            token,
        })
    }

    /// The presented token, where it came from, and the resource identifier it must name.
    fn locate(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Option<(String, TokenSource, &str)>, ApiError> {
        let found = ssehub_auth::find_token(headers, query, self.config.presentation())
            .map_err(|e| self.refusal(&e))?;
        let Some((token, source)) = found else {
            return Ok(None);
        };
        let resource = match self.resource.as_deref() {
            Some(resource) => resource,
            // A 0.x token needs no audience; one that names some audience cannot match "".
            None if self.config.legacy_protocol() => "",
            None => {
                return Err(ApiError::bad_request(
                    "cannot tell which hub the token is for: the request has no valid Host header",
                ));
            }
        };
        Ok(Some((token, source, resource)))
    }

    /// 401 for a request with no token where one is needed.
    pub(crate) fn missing(&self, reason: &str) -> ApiError {
        self.refusal(&AuthError::Missing)
            .with_reason(reason)
            .with_cause(Cause::Auth(AuthFailure::MissingToken))
    }

    /// 403 `insufficient_scope`: a valid token that does not grant the operation.
    pub(crate) fn forbidden(&self, reason: &str) -> ApiError {
        let e = ApiError::forbidden(reason).with_cause(Cause::Auth(AuthFailure::Forbidden));
        match self.challenge(Some("insufficient_scope")) {
            Some(challenge) => e.with_challenge(challenge),
            None => e,
        }
    }

    /// The answer to a failed presentation or validation.
    fn refusal(&self, e: &AuthError) -> ApiError {
        let legacy = self.config.authorizer.is_legacy();
        let (error, code) = match e.challenge() {
            Challenge::Missing => (ApiError::unauthorized("a token is required"), None),
            // 0.x hubs answered every token problem with a bare 401.
            Challenge::InvalidRequest if legacy => {
                (ApiError::unauthorized(format!("invalid token: {e}")), None)
            }
            Challenge::InvalidRequest => (
                ApiError::bad_request(e.to_string()),
                Some("invalid_request"),
            ),
            // One message for every validation failure: saying which check failed helps an
            // attacker more than a client (the log has the detail).
            Challenge::InvalidToken if legacy => (
                ApiError::unauthorized(format!("invalid token: {e}")),
                Some("invalid_token"),
            ),
            Challenge::InvalidToken => {
                tracing::debug!(reason = %e, "token refused");
                (
                    ApiError::unauthorized("invalid token"),
                    Some("invalid_token"),
                )
            }
        };
        let error = error.with_cause(Cause::Auth(AuthFailure::InvalidToken));
        match self.challenge(code) {
            Some(challenge) => error.with_challenge(challenge),
            None => error,
        }
    }

    /// `Bearer [error="..."], resource_metadata="..."` (RFC 6750 section 3, RFC 9728 section
    /// 5.1); `None` in legacy mode.
    fn challenge(&self, error: Option<&str>) -> Option<HeaderValue> {
        if self.config.authorizer.is_legacy() {
            return None;
        }
        let mut params = Vec::with_capacity(2);
        if let Some(error) = error {
            params.push(format!("error=\"{error}\""));
        }
        if let Some(url) = self.resource().and_then(resource::metadata_url) {
            params.push(format!("resource_metadata=\"{url}\""));
        }
        let value = if params.is_empty() {
            "Bearer".to_owned()
        } else {
            format!("Bearer {}", params.join(", "))
        };
        Some(HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("Bearer")))
    }
}
