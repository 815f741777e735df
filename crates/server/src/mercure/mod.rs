//! The Mercure protocol endpoint (IETF draft-dunglas-mercure) at `/.well-known/mercure`:
//! `GET` subscribes, `POST` publishes; the active subscriptions API below
//! `/.well-known/mercure/subscriptions` when enabled.

mod publish;
mod subscribe;
pub(crate) mod subscriptions;

use std::sync::Arc;

use axum::http::HeaderMap;
use ssehub_auth::{Claims, Role, TokenSource};
use ssehub_hub::Hub;
use ssehub_selector::SelectorCache;
use tokio_util::task::TaskTracker;

use crate::limits::{PublishRate, SubscriberSlots};
use crate::metrics::{AuthFailure, Cause, ServerMetrics};
use crate::{ApiError, MercureConfig};

pub(crate) use publish::publish;
pub(crate) use subscribe::{Subscribed, insert_subscribe_headers, open_subscription, subscribe};

/// The path of the Mercure endpoint.
pub const MERCURE_PATH: &str = "/.well-known/mercure";

/// What the Mercure handlers share.
#[derive(Debug, Clone)]
pub(crate) struct MercureState {
    pub(crate) hub: Hub,
    pub(crate) config: Arc<MercureConfig>,
    /// Publishes in flight, so shutdown can let them finish before closing the hub.
    pub(crate) publishes: TaskTracker,
    /// Subscribers share parsed selectors instead of compiling a template each.
    pub(crate) selectors: Arc<SelectorCache>,
    /// Open subscriptions per client address (`None`: no limit).
    pub(crate) slots: Option<Arc<SubscriberSlots>>,
    /// Publishes per second per token (`None`: no limit).
    pub(crate) publish_rate: Option<Arc<PublishRate>>,
    /// The HTTP API's counters (`/metrics`).
    pub(crate) metrics: Arc<ServerMetrics>,
}

/// A verified token: its claims, where it came from, and the token itself (the publish rate
/// limit is per token).
pub(crate) struct Authenticated {
    pub(crate) claims: Arc<Claims>,
    pub(crate) source: TokenSource,
    pub(crate) token: String,
}

/// Finds and verifies the request's token, if it has one.
pub(crate) fn authenticate(
    config: &MercureConfig,
    headers: &HeaderMap,
    query: Option<&str>,
    role: Role,
) -> Result<Option<Authenticated>, ApiError> {
    let invalid = |e: &dyn std::fmt::Display| {
        ApiError::unauthorized(format!("invalid token: {e}"))
            .with_cause(Cause::Auth(AuthFailure::InvalidToken))
    };
    let found = ssehub_auth::extract_token(headers, query).map_err(|e| invalid(&e))?;
    let Some((token, source)) = found else {
        return Ok(None);
    };
    let claims = config
        .authorizer
        .verify(&token, role)
        .map_err(|e| invalid(&e))?;
    Ok(Some(Authenticated {
        claims,
        source,
        token,
    }))
}
