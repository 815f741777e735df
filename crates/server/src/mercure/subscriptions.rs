//! Mercure active subscriptions (draft-dunglas-mercure-08, "Active Subscriptions"), on when
//! [`crate::MercureConfig::subscriptions`] is set:
//!
//! - **Subscription events**: every subscriber join and leave is announced as one private update
//!   per distinct matcher of the subscriber, topic
//!   `/.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}` (each variable
//!   percent-encoded once, as a whole), SSE event type `mercure`, data the subscription's JSON
//!   document (`type` `subscription`, `match_type`, `match`, `subscriber`, `active`, `payload`).
//!   The hub publishes them ([`ssehub_hub::Hub::track_subscriptions`]).
//! - **Subscription API**: `GET /.well-known/mercure/subscriptions`,
//!   `.../subscriptions/{match_type}/{match}` and `.../{match_type}/{match}/{subscriber}` answer
//!   `application/json` collections (`type` `subscriptions`) or one subscription, with the
//!   hub's cursor on a `Link: <hub>; rel="mercure"; last-event-id="..."` header. The request
//!   needs a subscriber token one of whose `subscribe` grants matches the requested path (the
//!   same relative form as the event topics): `401` without a token, `403` when none matches,
//!   `404` for an unknown subscription.
//!
//! A legacy hub (`--legacy-protocol`) keeps the 0.x shape instead: topics and routes without
//! the `{match_type}` segment, JSON-LD documents (`application/ld+json`, `@context`, `type`
//! `Subscription`/`Subscriptions`, `topic`, `lastEventID` in the body), plain `message` events.

use std::net::IpAddr;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value, json};
use ssehub_auth::Role;
use ssehub_hub::{SubscriberInfo, SubscriptionChange, Update};

use super::{AuthRequest, Authenticated, MERCURE_PATH, MercureState, Peer, peer_ip};
use crate::ApiError;

/// The path of the subscriptions collection; subscriptions live below it.
pub const SUBSCRIPTIONS_PATH: &str = "/.well-known/mercure/subscriptions";
/// The JSON-LD context of every 0.x document.
const CONTEXT: &str = "https://mercure.rocks/";
/// The SSE event type of subscription events (reserved: publishers cannot use it).
const EVENT_TYPE: &str = "mercure";

/// Everything but RFC 3986 unreserved characters is encoded (RFC 6570 simple expansion), so
/// `/`, `:`, `%`, `{` and `}` of a matcher or subscriber never split the path.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, COMPONENT).to_string()
}

/// The id (and event topic) of one subscription: its matcher type, its matcher, its subscriber.
pub fn subscription_id(match_type: &str, matcher: &str, subscriber: &str) -> String {
    format!(
        "{SUBSCRIPTIONS_PATH}/{}/{}/{}",
        encode(match_type),
        encode(matcher),
        encode(subscriber)
    )
}

/// The 0.x id of one subscription (no matcher type).
pub fn legacy_subscription_id(topic: &str, subscriber: &str) -> String {
    format!(
        "{SUBSCRIPTIONS_PATH}/{}/{}",
        encode(topic),
        encode(subscriber)
    )
}

/// A subscriber's distinct (matcher type, matcher) pairs, sorted.
fn matchers(info: &SubscriberInfo) -> Vec<(&'static str, &str)> {
    let mut pairs: Vec<(&'static str, &str)> = info
        .topics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                info.match_types.get(i).copied().unwrap_or("exact"),
                m.as_str(),
            )
        })
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs
}

/// A 1.0 subscription document.
fn document(match_type: &str, matcher: &str, info: &SubscriberInfo, active: bool) -> Value {
    let mut doc = Map::new();
    doc.insert(
        "id".into(),
        subscription_id(match_type, matcher, &info.subscriber).into(),
    );
    doc.insert("type".into(), "subscription".into());
    doc.insert("match_type".into(), match_type.into());
    doc.insert("match".into(), matcher.into());
    doc.insert("subscriber".into(), info.subscriber.clone().into());
    doc.insert("active".into(), active.into());
    if let Some(p) = &info.payload {
        doc.insert("payload".into(), p.clone());
    }
    Value::Object(doc)
}

/// A 0.x subscription document (without `@context`).
fn legacy_document(topic: &str, info: &SubscriberInfo, active: bool) -> Map<String, Value> {
    let mut doc = Map::new();
    doc.insert(
        "id".into(),
        legacy_subscription_id(topic, &info.subscriber).into(),
    );
    doc.insert("type".into(), "Subscription".into());
    doc.insert("topic".into(), topic.into());
    doc.insert("subscriber".into(), info.subscriber.clone().into());
    doc.insert("active".into(), active.into());
    if let Some(p) = &info.payload {
        doc.insert("payload".into(), p.clone());
    }
    doc
}

/// The subscription events announcing a join or leave: one private `mercure` update per
/// distinct matcher of the subscriber. What `MercureServer::new` gives
/// [`ssehub_hub::Hub::track_subscriptions`] when subscriptions are on.
pub fn subscription_updates(change: &SubscriptionChange) -> Vec<Update> {
    matchers(&change.info)
        .into_iter()
        .map(|(match_type, matcher)| {
            let doc = document(match_type, matcher, &change.info, change.active);
            Update::new(
                subscription_id(match_type, matcher, &change.info.subscriber),
                doc.to_string(),
            )
            .event_type(EVENT_TYPE)
            .private(true)
        })
        .collect()
}

/// The 0.x subscription events (a legacy hub's).
pub fn legacy_subscription_updates(change: &SubscriptionChange) -> Vec<Update> {
    let mut topics: Vec<&str> = change.info.topics.iter().map(String::as_str).collect();
    topics.sort_unstable();
    topics.dedup();
    topics
        .into_iter()
        .map(|topic| {
            let mut doc = legacy_document(topic, &change.info, change.active);
            doc.insert("@context".into(), CONTEXT.into());
            Update::new(
                legacy_subscription_id(topic, &change.info.subscriber),
                Value::Object(doc).to_string(),
            )
            .private(true)
        })
        .collect()
}

/// Which subscriptions a request asks for.
enum Wanted {
    All,
    /// One matcher's (1.0: its type and text; 0.x: the topic, type `None`).
    Matcher(Option<String>, String),
    /// One subscription.
    One(Option<String>, String, String),
}

/// `GET /.well-known/mercure/subscriptions`.
pub(crate) async fn all(
    State(state): State<MercureState>,
    peer: Peer,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    answer(&state, peer_ip(&peer), &uri, &headers, Wanted::All).await
}

/// `GET /.well-known/mercure/subscriptions/{match_type}/{match}`.
pub(crate) async fn by_matcher(
    State(state): State<MercureState>,
    Path((match_type, matcher)): Path<(String, String)>,
    peer: Peer,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wanted = Wanted::Matcher(Some(match_type), matcher);
    answer(&state, peer_ip(&peer), &uri, &headers, wanted).await
}

/// `GET /.well-known/mercure/subscriptions/{match_type}/{match}/{subscriber}`.
pub(crate) async fn one(
    State(state): State<MercureState>,
    Path((match_type, matcher, subscriber)): Path<(String, String, String)>,
    peer: Peer,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wanted = Wanted::One(Some(match_type), matcher, subscriber);
    answer(&state, peer_ip(&peer), &uri, &headers, wanted).await
}

/// 0.x: `GET /.well-known/mercure/subscriptions/{topic}`.
pub(crate) async fn legacy_by_topic(
    State(state): State<MercureState>,
    Path(topic): Path<String>,
    peer: Peer,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wanted = Wanted::Matcher(None, topic);
    answer(&state, peer_ip(&peer), &uri, &headers, wanted).await
}

/// 0.x: `GET /.well-known/mercure/subscriptions/{topic}/{subscriber}`.
pub(crate) async fn legacy_one(
    State(state): State<MercureState>,
    Path((topic, subscriber)): Path<(String, String)>,
    peer: Peer,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let wanted = Wanted::One(None, topic, subscriber);
    answer(&state, peer_ip(&peer), &uri, &headers, wanted).await
}

async fn answer(
    state: &MercureState,
    peer: Option<IpAddr>,
    uri: &Uri,
    headers: &HeaderMap,
    wanted: Wanted,
) -> Result<Response, ApiError> {
    // The requested URL's path (as sent) must match a `subscribe` grant: it is the form the
    // subscription event topics take, so one matcher covers the events and the API alike.
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
    let cursor = snapshot
        .last_event_id
        .unwrap_or_else(|| ssehub_hub::EARLIEST.to_owned());
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, "no such active subscription");

    if state.config.legacy_protocol() {
        let body = legacy_body(&snapshot.subscribers, wanted, cursor).ok_or_else(not_found)?;
        return Ok(json_response(body, "application/ld+json", None));
    }
    let mut docs = Vec::new();
    for info in &snapshot.subscribers {
        for (match_type, matcher) in matchers(info) {
            let keep = match &wanted {
                Wanted::All => true,
                Wanted::Matcher(t, m) => t.as_deref() == Some(match_type) && m == matcher,
                Wanted::One(t, m, s) => {
                    t.as_deref() == Some(match_type) && m == matcher && *s == info.subscriber
                }
            };
            if keep {
                docs.push(document(match_type, matcher, info, true));
            }
        }
    }
    let body = match wanted {
        Wanted::One(..) => docs.pop().ok_or_else(not_found)?,
        Wanted::All => collection(SUBSCRIPTIONS_PATH.to_owned(), docs),
        Wanted::Matcher(t, m) => collection(
            format!(
                "{SUBSCRIPTIONS_PATH}/{}/{}",
                encode(t.as_deref().unwrap_or_default()),
                encode(&m)
            ),
            docs,
        ),
    };
    let hub_url = auth
        .resource()
        .map_or_else(|| MERCURE_PATH.to_owned(), str::to_owned);
    Ok(json_response(
        body,
        "application/json",
        link(&hub_url, &cursor),
    ))
}

fn collection(id: String, docs: Vec<Value>) -> Value {
    json!({ "id": id, "type": "subscriptions", "subscriptions": docs })
}

/// The reconciliation cursor on the `rel="mercure"` link (draft-dunglas-mercure-08,
/// "Subscription API"); `None` when it cannot be a header value.
fn link(hub_url: &str, cursor: &str) -> Option<HeaderValue> {
    let quoted = cursor.replace('\\', "\\\\").replace('"', "\\\"");
    HeaderValue::from_str(&format!(
        "<{hub_url}>; rel=\"mercure\"; last-event-id=\"{quoted}\"; type=\"mercure\"; \
         content-type=\"application/json\""
    ))
    .ok()
}

/// The 0.x body, `None` for an unknown subscription.
fn legacy_body(subscribers: &[SubscriberInfo], wanted: Wanted, cursor: String) -> Option<Value> {
    let mut docs = Vec::new();
    let (topic, subscriber) = match &wanted {
        Wanted::All => (None, None),
        Wanted::Matcher(_, t) => (Some(t.as_str()), None),
        Wanted::One(_, t, s) => (Some(t.as_str()), Some(s.as_str())),
    };
    for info in subscribers {
        if subscriber.is_some_and(|s| s != info.subscriber) {
            continue;
        }
        let mut topics: Vec<&str> = info.topics.iter().map(String::as_str).collect();
        topics.sort_unstable();
        topics.dedup();
        for t in topics {
            if topic.is_none_or(|want| want == t) {
                docs.push(legacy_document(t, info, true));
            }
        }
    }
    let cursor = Value::from(cursor);
    Some(match (topic, subscriber) {
        (Some(_), Some(_)) => {
            let mut doc = docs.pop()?;
            doc.insert("@context".into(), CONTEXT.into());
            doc.insert("lastEventID".into(), cursor);
            Value::Object(doc)
        }
        (topic, _) => {
            let id = match topic {
                Some(t) => format!("{SUBSCRIPTIONS_PATH}/{}", encode(t)),
                None => SUBSCRIPTIONS_PATH.to_owned(),
            };
            json!({
                "@context": CONTEXT,
                "id": id,
                "type": "Subscriptions",
                "lastEventID": cursor,
                "subscriptions": docs,
            })
        }
    })
}

fn json_response(body: Value, content_type: &'static str, link: Option<HeaderValue>) -> Response {
    let mut res = body.to_string().into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The list changes all the time: a cached copy must be checked first.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("must-revalidate"),
    );
    if let Some(link) = link {
        h.insert(header::LINK, link);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(topics: &[(&'static str, &str)]) -> SubscriberInfo {
        SubscriberInfo {
            subscriber: "urn:uuid:1".into(),
            topics: topics.iter().map(|(_, m)| (*m).to_owned()).collect(),
            match_types: topics.iter().map(|(t, _)| *t).collect(),
            payload: Some(json!({"n": 1})),
        }
    }

    #[test]
    fn ids_encode_each_variable_once_as_a_whole() {
        assert_eq!(
            subscription_id(
                "urlpattern",
                "https://example.com/:selector",
                "urn:uuid:bb3de268-05b0-4c65-b44e-8f9acefc29d6"
            ),
            "/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fexample.com%2F%3Aselector/urn%3Auuid%3Abb3de268-05b0-4c65-b44e-8f9acefc29d6"
        );
        // An already-encoded value is encoded again as it stands (never decoded first).
        assert_eq!(encode("a b%2F/é"), "a%20b%252F%2F%C3%A9");
    }

    #[test]
    fn one_private_mercure_update_per_distinct_matcher() {
        let change = SubscriptionChange {
            active: false,
            info: info(&[
                ("exact", "b"),
                ("urlpattern", "https://x/:id"),
                ("exact", "b"),
            ]),
        };
        let updates = subscription_updates(&change);
        assert_eq!(updates.len(), 2);
        let u = &updates[0];
        assert!(u.is_private());
        assert_eq!(u.event_type_str(), Some("mercure"));
        assert_eq!(
            u.topics(),
            ["/.well-known/mercure/subscriptions/exact/b/urn%3Auuid%3A1"]
        );
        let data: Value = serde_json::from_str(u.data_str()).unwrap();
        assert_eq!(
            data,
            json!({
                "id": "/.well-known/mercure/subscriptions/exact/b/urn%3Auuid%3A1",
                "type": "subscription",
                "match_type": "exact",
                "match": "b",
                "subscriber": "urn:uuid:1",
                "active": false,
                "payload": {"n": 1},
            })
        );
        assert_eq!(
            updates[1].topics(),
            [
                "/.well-known/mercure/subscriptions/urlpattern/https%3A%2F%2Fx%2F%3Aid/urn%3Auuid%3A1"
            ]
        );
    }

    #[test]
    fn legacy_events_keep_the_0x_shape() {
        let change = SubscriptionChange {
            active: true,
            info: info(&[("uri_template", "b"), ("exact", "a"), ("exact", "b")]),
        };
        let updates = legacy_subscription_updates(&change);
        assert_eq!(updates.len(), 2);
        assert_eq!(updates[0].event_type_str(), None);
        assert_eq!(
            updates[0].topics(),
            ["/.well-known/mercure/subscriptions/a/urn%3Auuid%3A1"]
        );
        let data: Value = serde_json::from_str(updates[0].data_str()).unwrap();
        assert_eq!(data["@context"], "https://mercure.rocks/");
        assert_eq!(data["type"], "Subscription");
        assert_eq!(data["topic"], "a");
    }

    #[test]
    fn the_link_carries_the_cursor() {
        assert_eq!(
            link("https://hub.example/.well-known/mercure", "#1-2").unwrap(),
            "<https://hub.example/.well-known/mercure>; rel=\"mercure\"; last-event-id=\"#1-2\"; \
             type=\"mercure\"; content-type=\"application/json\""
        );
    }
}
