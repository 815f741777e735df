//! `GET /.well-known/oauth-protected-resource/.well-known/mercure`: the hub's OAuth 2.0
//! protected resource metadata (RFC 9728; draft-dunglas-mercure-08, "Protected Resource
//! Metadata"), so a client can find the `aud` to request and the authorization servers to ask.
//!
//! Only members the spec defines: `resource` (required), `authorization_servers` (when an
//! issuer is marked as one), `bearer_methods_supported` (`header`: the cookie is not an RFC 6750
//! method, so it has its own member), `authorization_details_types_supported`,
//! `mercure_cookie`, `mercure_matcher_types_supported` (the spec's SHOULD: the complete set)
//! and `mercure_subscriptions` (only when the feature is on).

use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use ssehub_auth::DETAIL_TYPE;
use ssehub_auth::details::MATCHER_TYPES;

use super::MercureState;
use super::resource::resource_identifier;
use crate::ApiError;

/// The handler.
pub(crate) async fn metadata(
    State(state): State<MercureState>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let config = &state.config;
    let peer = parts
        .extensions
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let resource =
        resource_identifier(config, &parts.uri, &parts.headers, peer).ok_or_else(|| {
            ApiError::bad_request("cannot tell the hub's identifier: no valid Host header")
        })?;
    let mut doc = Map::new();
    doc.insert("resource".into(), resource.into_owned().into());
    let servers = config.authorizer.authorization_servers();
    if !servers.is_empty() {
        doc.insert("authorization_servers".into(), servers.into());
    }
    doc.insert("bearer_methods_supported".into(), json!(["header"]));
    doc.insert(
        "authorization_details_types_supported".into(),
        json!([DETAIL_TYPE]),
    );
    doc.insert("mercure_cookie".into(), config.cookie_name.clone().into());
    doc.insert(
        "mercure_matcher_types_supported".into(),
        json!(MATCHER_TYPES),
    );
    if config.subscriptions {
        doc.insert("mercure_subscriptions".into(), true.into());
    }
    let mut res = axum::Json(Value::Object(doc)).into_response();
    // Public, and the same for every client of one host; a short cache spares repeat fetches.
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    Ok(res)
}
