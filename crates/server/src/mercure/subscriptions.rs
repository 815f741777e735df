//! Mercure active subscriptions (draft-dunglas-mercure, "Active Subscriptions"), on when
//! [`crate::MercureConfig::subscriptions`] is set:
//!
//! - **Subscription events**: every subscriber join and leave is announced as one private
//!   update per topic selector, topic `/.well-known/mercure/subscriptions/{topic}/{subscriber}`
//!   (both percent-encoded), data the subscription's JSON-LD document with `active`
//!   `true`/`false`. The hub publishes them ([`ssehub_hub::Hub::track_subscriptions`]).
//! - **Subscription API**: `GET /.well-known/mercure/subscriptions`,
//!   `.../subscriptions/{topic}` and `.../subscriptions/{topic}/{subscriber}` answer
//!   `application/ld+json` collections (or one subscription) with the hub's `lastEventID`.
//!   The draft's rule: the request needs a subscriber JWT one of whose `mercure.subscribe`
//!   selectors matches the requested URL (its path, as sent): `401` without a token, `403`
//!   when none matches, `404` for an unknown subscription.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};
use ssehub_auth::Role;
use ssehub_hub::{SubscriberInfo, SubscriptionChange, Update};

use super::{AuthRequest, Authenticated, MercureState, Peer, peer_ip};
use crate::ApiError;

/// The path of the subscriptions collection; subscriptions live below it.
pub const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";
/// The JSON-LD context of every document.
const CONTEXT: &str = "https://mercure.rocks/";

/// Everything but RFC 3986 unreserved characters is encoded (RFC 6570 simple expansion), so
/// `/`, `:`, `{` and `}` of a topic or subscriber never split the path.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The id (and event topic) of one subscription.
pub fn subscription_id(topic: &str, subscriber: &str) -> String {
    format!(
        "{SUBSCRIPTIONS_PATH}/{}/{}",
        encode(topic),
        encode(subscriber)
    )
}

/// A subscription's document (without `@context`).
fn document(topic: &str, info: &SubscriberInfo, active: bool) -> serde_json::Map<String, Value> {
    let mut doc = serde_json::Map::new();
    doc.insert("id".into(), subscription_id(topic, &info.subscriber).into());
    doc.insert("type".into(), "Subscription".into());
    doc.insert("topic".into(), topic.into());
    doc.insert("subscriber".into(), info.subscriber.clone().into());
    doc.insert("active".into(), active.into());
    if let Some(p) = &info.payload {
        doc.insert("payload".into(), p.clone());
    }
    doc
}

/// The subscription events announcing a join or leave: one private update per selector of the
/// subscriber (a selector given twice is announced once). What `MercureServer::new` gives
/// [`ssehub_hub::Hub::track_subscriptions`] when subscriptions are on.
pub fn subscription_updates(change: &SubscriptionChange) -> Vec<Update> {
    let mut topics: Vec<&str> = change.info.topics.iter().map(String::as_str).collect();
    topics.sort_unstable();
    topics.dedup();
    topics
        .into_iter()
        .map(|topic| {
            let mut doc = document(topic, &change.info, change.active);
            doc.insert("@context".into(), CONTEXT.into());
            Update::new(
                subscription_id(topic, &change.info.subscriber),
                Value::Object(doc).to_string(),
            )
            .private(true)
        })
        .collect()
}

/// `GET /.well-known/mercure/subscriptions`.
pub(crate) async fn all(
    State(state): State<MercureState>,
    peer: Peer,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    answer(&state, peer_ip(&peer), &uri, &headers, None, None).await
}

/// `GET /.well-known/mercure/subscriptions/{topic}`.
pub(crate) async fn by_topic(
    State(state): State<MercureState>,
    Path(topic): Path<String>,
    peer: Peer,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    answer(&state, peer_ip(&peer), &uri, &headers, Some(topic), None).await
}

/// `GET /.well-known/mercure/subscriptions/{topic}/{subscriber}`.
pub(crate) async fn one(
    State(state): State<MercureState>,
    Path((topic, subscriber)): Path<(String, String)>,
    peer: Peer,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    answer(
        &state,
        peer_ip(&peer),
        &uri,
        &headers,
        Some(topic),
        Some(subscriber),
    )
    .await
}

async fn answer(
    state: &MercureState,
    peer: Option<IpAddr>,
    uri: &Uri,
    headers: &HeaderMap,
    topic: Option<String>,
    subscriber: Option<String>,
) -> Result<Response, ApiError> {
    // The draft: the requested URL must match one of the token's `mercure.subscribe`
    // selectors. Its path is the form subscription event topics take, so one selector (e.g.
    // `/.well-known/mercure/subscriptions{/topic,subscriber}`) covers both.
    let auth = AuthRequest::new(&state.config, uri, headers, peer);
    match auth
        .authenticate_refreshing(headers, uri.query(), Role::Subscriber)
        .await?
    {
        None => return Err(auth.missing("the subscriptions API needs a subscriber token")),
        Some(Authenticated { claims, .. }) => {
            if !claims.can_subscribe_any([uri.path()]) {
                return Err(auth.forbidden("the token's subscribe grants do not match this URL"));
            }
        }
    }
    let snapshot = state
        .hub
        .subscriptions()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let last_event_id: Value = snapshot
        .last_event_id
        .unwrap_or_else(|| ssehub_hub::EARLIEST.to_owned())
        .into();
    let mut docs = Vec::new();
    for info in &snapshot.subscribers {
        if subscriber.as_deref().is_some_and(|s| s != info.subscriber) {
            continue;
        }
        let mut topics: Vec<&str> = info.topics.iter().map(String::as_str).collect();
        topics.sort_unstable();
        topics.dedup();
        for t in topics {
            if topic.as_deref().is_none_or(|want| want == t) {
                docs.push(document(t, info, true));
            }
        }
    }
    let body = match (topic, subscriber) {
        (Some(_), Some(_)) => {
            let Some(mut doc) = docs.pop() else {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "no such active subscription",
                ));
            };
            doc.insert("@context".into(), CONTEXT.into());
            doc.insert("lastEventID".into(), last_event_id);
            Value::Object(doc)
        }
        (topic, _) => {
            let id = match topic {
                Some(t) => format!("{SUBSCRIPTIONS_PATH}/{}", encode(&t)),
                None => SUBSCRIPTIONS_PATH.to_owned(),
            };
            json!({
                "@context": CONTEXT,
                "id": id,
                "type": "Subscriptions",
                "lastEventID": last_event_id,
                "subscriptions": docs,
            })
        }
    };
    let mut res = body.to_string().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/ld+json"),
    );
    // The list changes all the time: a cached copy must be checked first.
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("must-revalidate"),
    );
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_encode_everything_reserved() {
        assert_eq!(
            subscription_id(
                "https://example.com/{selector}",
                "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6"
            ),
            "/.well-known/mercure/subscriptions/https%3A%2F%2Fexample.com%2F%7Bselector%7D/urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6"
        );
        assert_eq!(encode("a b%/é"), "a%20b%25%2F%C3%A9");
    }

    #[test]
    fn one_private_update_per_distinct_selector() {
        let change = SubscriptionChange {
            active: false,
            info: SubscriberInfo {
                subscriber: "urn:uuid:1".into(),
                topics: vec!["b".into(), "a".into(), "b".into()],
                payload: Some(json!({"n": 1})),
            },
        };
        let updates = subscription_updates(&change);
        assert_eq!(updates.len(), 2);
        let u = &updates[0];
        assert!(u.is_private());
        assert_eq!(
            u.topics(),
            ["/.well-known/mercure/subscriptions/a/urn%3Auuid%3A1"]
        );
        let data: Value = serde_json::from_str(u.data_str()).unwrap();
        assert_eq!(
            data,
            json!({
                "@context": "https://mercure.rocks/",
                "id": "/.well-known/mercure/subscriptions/a/urn%3Auuid%3A1",
                "type": "Subscription",
                "topic": "a",
                "subscriber": "urn:uuid:1",
                "active": false,
                "payload": {"n": 1},
            })
        );
    }
}
