//! `GET /.well-known/mercure`: subscribe to topic selectors, with replay and private updates.

use axum::extract::State;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ssehub_auth::Role;
use ssehub_hub::{SubscribeError, Subscription};

use super::{MercureState, authenticate};
use crate::form::decode_pairs;
use crate::{ApiError, Sse, preamble};

pub(crate) async fn subscribe(
    State(state): State<MercureState>,
    parts: Parts,
) -> Result<Response, ApiError> {
    let config = &state.config;
    let query = parts.uri.query().unwrap_or("");
    if query.len() > config.max_query {
        return Err(ApiError::bad_request(format!(
            "query string too long (at most {} bytes)",
            config.max_query
        )));
    }
    let pairs = decode_pairs(query.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;

    let mut subscription = Subscription::new();
    let mut topics = 0;
    let mut last_event_id = None;
    for (key, value) in pairs {
        match key.as_str() {
            "topic" => {
                topics += 1;
                if topics > config.max_topics {
                    return Err(ApiError::bad_request(format!(
                        "too many topic parameters (at most {})",
                        config.max_topics
                    )));
                }
                let selector = state
                    .selectors
                    .parse(&value)
                    .map_err(|e| ApiError::bad_request(format!("invalid topic selector: {e}")))?;
                subscription = subscription.selector(selector);
            }
            "lastEventID" => last_event_id = Some(value),
            // ssehub extension: the latest update of each matching topic first.
            "retained" => match value.as_str() {
                "latest" => subscription = subscription.retained_state(true),
                _ => {
                    return Err(ApiError::bad_request(
                        "retained must be \"latest\" (the latest update of each matching topic first)",
                    ));
                }
            },
            _ => {}
        }
    }
    if topics == 0 {
        return Err(ApiError::bad_request("missing topic parameter"));
    }
    // The header, set by browsers on reconnect, is newer than the query parameter the page built.
    if let Some(header) = parts.headers.get("last-event-id") {
        let id = header
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID header is not visible ASCII"))?;
        if !id.is_empty() {
            last_event_id = Some(id.to_owned());
        }
    }
    if let Some(id) = last_event_id.filter(|id| !id.is_empty()) {
        subscription = subscription.last_event_id(id);
    }

    match authenticate(config, &parts.headers, parts.uri.query(), Role::Subscriber)? {
        Some((claims, _)) => {
            if let Some(allowed) = &claims.subscribe {
                subscription = subscription.authorized(allowed.clone());
            }
            if let Some(payload) = &claims.payload {
                subscription = subscription.payload(payload.clone());
            }
        }
        None if !config.anonymous => {
            return Err(ApiError::unauthorized("a subscriber token is required"));
        }
        None => {}
    }

    let stream = state
        .hub
        .subscribe(subscription.preamble(preamble(config.retry)))
        .map_err(|e| match e {
            SubscribeError::TooManySubscribers { .. }
            | SubscribeError::Closed
            | SubscribeError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            _ => ApiError::bad_request(e.to_string()),
        })?;
    let head = stream.head_event_id().unwrap_or(ssehub_hub::EARLIEST);
    let head = HeaderValue::from_str(head).ok();
    let mut res = Sse::new(stream).into_response();
    if let Some(head) = head {
        res.headers_mut().insert("last-event-id", head);
    }
    Ok(res)
}
