//! `GET /.well-known/mercure`: subscribe to topic selectors, with replay and private updates.

use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::{ConnectInfo, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::response::Response;
use bytes::Bytes;
use futures_core::Stream;
use futures_util::StreamExt;
use ssehub_auth::Role;
use ssehub_hub::{SubscribeError, SubscriberStream, Subscription};
use ssehub_selector::{MatcherError, MatcherLease, Owner, Url, describe_char, forbidden_char};

use super::body::read_whole;
use super::{AuthRequest, Authenticated, MercureState};
use crate::form::decode_pairs;
use crate::limits::{SlotGuard, client_ip};
use crate::metrics::{Cause, Endpoint, Limit};
use crate::{ApiError, preamble};

/// `Retry-After` of a subscribe refused for a subscriber limit: slots free up only as other
/// subscribers leave, so there is no exact time to give; this keeps retries infrequent.
const SUBSCRIBER_LIMIT_RETRY_AFTER: u64 = 10;

/// A subscriber's stream together with its slot in the per-address count, so the slot is
/// released exactly when the stream is dropped, on either serving path.
#[derive(Debug)]
pub(crate) struct Subscribed {
    stream: SubscriberStream,
    _slot: Option<SlotGuard>,
    /// The compiled matchers charged to this client's address and token, released with the
    /// stream (`None` for exact topics only: nothing to charge, nothing allocated).
    _matchers: Option<Box<MatcherLease>>,
    /// The request asked to resume (a last event id): 1.0 answers `Mercure-Last-Event-ID`.
    resumed: bool,
}

impl Subscribed {
    pub(crate) fn stream(&self) -> &SubscriberStream {
        &self.stream
    }
}

impl Stream for Subscribed {
    type Item = Bytes;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        self.stream.poll_next_unpin(cx)
    }
}

/// The axum handler of `GET`. The peer address comes from axum's `ConnectInfo`, which
/// [`crate::MercureServer::serve`] inserts into every request it hands to the router.
pub(crate) async fn subscribe(
    State(state): State<MercureState>,
    parts: Parts,
) -> Result<Response, ApiError> {
    serve_subscribe(state, parts, Vec::new()).await
}

/// Any other method on the hub URL: `QUERY` subscribes with its parameters in an
/// `application/x-www-form-urlencoded` body (draft-dunglas-mercure-08, "Subscription": a safe
/// method with a body, for matcher lists longer than URLs may be), merged with the query
/// string; the rest is `405`.
pub(crate) async fn other_method(
    State(state): State<MercureState>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    if parts.method.as_str() != "QUERY" {
        let mut res = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!(
                "method {} is not allowed here (GET, QUERY or POST)",
                parts.method
            ),
        )
        .into_response();
        res.headers_mut().insert(
            axum::http::header::ALLOW,
            HeaderValue::from_static("GET, QUERY, POST"),
        );
        return Ok(res);
    }
    let form = parts
        .headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a QUERY subscribe needs Content-Type: application/x-www-form-urlencoded",
        ));
    }
    let max = state.config.max_query;
    let body = read_whole(body, max, state.config.body_timeout, || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("QUERY body larger than {max} bytes"),
        )
    })
    .await?;
    let pairs = decode_pairs(&body)
        .map_err(|e| ApiError::bad_request(format!("invalid form body: {e}")))?;
    serve_subscribe(state, parts, pairs).await
}

async fn serve_subscribe(
    state: MercureState,
    parts: Parts,
    body_pairs: Vec<(String, String)>,
) -> Result<Response, ApiError> {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| *addr);
    // A token whose issuer rotated its keys gets one (rate-limited) JWK Set refresh here, where
    // waiting is possible; `open_subscription` then finds the verified token in the cache.
    if state.config.authorizer.has_jwks() {
        let auth = AuthRequest::new(
            &state.config,
            &parts.uri,
            &parts.headers,
            peer.map(|p| p.ip()),
        );
        let _ = auth
            .authenticate_refreshing(&parts.headers, parts.uri.query(), Role::Subscriber)
            .await;
    }
    // Refusals are counted here, not in `open_subscription`: the connection layer hands the
    // subscribes it refuses to this handler, which must count them once.
    let opened = open_subscription_with(&state, &parts.uri, &parts.headers, peer, body_pairs);
    let stream = opened.inspect_err(|e| {
        state.metrics.subscribe_refused(e.status());
        state.metrics.refused(Endpoint::Subscribe, e.cause());
    })?;
    let mut headers = HeaderMap::with_capacity(4);
    insert_subscribe_headers(&stream, &mut headers, state.config.legacy_protocol());
    let mut res = Response::new(crate::sse::body(stream));
    *res.headers_mut() = headers;
    Ok(res)
}

/// Everything a subscribe request decides, shared by the axum handler and the connection
/// layer's fast path ([`crate::conn`]): query parsing and limits, the `Last-Event-ID` header
/// over the `lastEventID` parameter, `retained=latest`, authentication, and the hub's answer.
/// Refusals have no side effect, so the fast path can let the handler answer them. `peer`
/// (the TCP peer, when known) is what the per-address subscriber limit counts.
pub(crate) fn open_subscription(
    state: &MercureState,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Result<Subscribed, ApiError> {
    open_subscription_with(state, uri, headers, peer, Vec::new())
}

/// [`open_subscription`] with parameters from a `QUERY` body too, after the query string's:
/// the union of both, the query's `last_event_id` first (the spec: it wins over the body's).
fn open_subscription_with(
    state: &MercureState,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    body_pairs: Vec<(String, String)>,
) -> Result<Subscribed, ApiError> {
    let config = &state.config;
    let query = uri.query().unwrap_or("");
    if query.len() > config.max_query {
        return Err(ApiError::bad_request(format!(
            "query string too long (at most {} bytes)",
            config.max_query
        )));
    }
    let mut pairs = decode_pairs(query.as_bytes())
        .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?;
    pairs.extend(body_pairs);

    let auth = AuthRequest::new(config, uri, headers, peer.map(|p| p.ip()));
    let client = peer.map(|p| client_ip(p.ip(), headers, &config.trusted_proxies));
    let (mut subscription, mut last_event_id, mut matchers) =
        read_params(state, pairs, auth.resource(), client)?;
    // The header, set by browsers on reconnect, is newer than the query parameter the page built.
    if let Some(header) = headers.get("last-event-id") {
        let id = header
            .to_str()
            .map_err(|_| ApiError::bad_request("Last-Event-ID header is not visible ASCII"))?;
        if !id.is_empty() {
            last_event_id = Some(id.to_owned());
        }
    }
    let last_event_id = last_event_id.filter(|id| !id.is_empty());
    let resumed = last_event_id.is_some();
    if let Some(id) = last_event_id {
        subscription = subscription.last_event_id(id);
    }

    match auth.authenticate(headers, uri.query(), Role::Subscriber)? {
        Some(Authenticated { claims, token, .. }) => {
            // The token is charged the distinct patterns it subscribes with, whatever address
            // it comes from.
            matchers
                .add_owner(state.selectors.token_owner(&token))
                .map_err(|e| matcher_refusal(e, "match_urlpattern"))?;
            if let Some(allowed) = &claims.subscribe {
                subscription = subscription.authorized(allowed.clone());
            }
            // One payload per subscriber: the grant matching its first matcher (1.0), or the
            // 0.x `mercure.payload`.
            let first = subscription.selectors().first().map(|s| s.as_str());
            if let Some(payload) = first.and_then(|m| claims.payload_for(m)) {
                subscription = subscription.payload(payload.clone());
            }
            // The stream ends no later than a 1.0 token (Mercure 1.0, "Subscribers").
            if let Some(exp) = claims.exp.filter(|_| claims.access_token) {
                subscription = subscription.expires_at(UNIX_EPOCH + Duration::from_secs(exp));
            }
        }
        None if !config.anonymous => {
            return Err(auth.missing("a subscriber token is required"));
        }
        None => {}
    }

    // Taken before the hub subscribes, so a refusal has no side effect (no join hook).
    let slot = match (&state.slots, peer) {
        (Some(slots), Some(peer)) => {
            let ip = client_ip(peer.ip(), headers, &config.trusted_proxies);
            let slot = slots.acquire(ip).ok_or_else(|| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many subscriptions from your address (at most {})",
                        config.max_subscribers_per_ip
                    ),
                )
                .with_retry_after(SUBSCRIBER_LIMIT_RETRY_AFTER)
                .with_cause(Cause::Limit(Limit::SubscribersPerIp))
            })?;
            Some(slot)
        }
        _ => None,
    };
    let stream = state
        .hub
        .subscribe(subscription.preamble(preamble(config.retry)))
        .map_err(|e| match e {
            SubscribeError::TooManySubscribers { .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
                    .with_retry_after(SUBSCRIBER_LIMIT_RETRY_AFTER)
                    .with_cause(Cause::Limit(Limit::Subscribers))
            }
            SubscribeError::Closed | SubscribeError::Unavailable(_) => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            }
            _ => ApiError::bad_request(e.to_string()),
        })?;
    Ok(Subscribed {
        // This stream's poller is the connection's writer, on either path.
        stream: stream.coalescing(),
        _slot: slot,
        _matchers: (!matchers.is_empty()).then(|| Box::new(matchers)),
        resumed,
    })
}

/// Reads the subscribe parameters (draft-dunglas-mercure-08, "Subscription"): the matchers
/// (`match` and `match_exact`: exact; `match_urlpattern`: a URL Pattern, relative ones against
/// `hub_url`; in legacy mode also `topic`, a 0.x selector), `last_event_id` (and the 0.x
/// `lastEventID`), and our `retained=latest`. The whole `match` prefix is reserved: an unknown
/// name under it is a 400, as is a matcher value with a control or format character. The
/// matchers come from the hub's registry, compiled at most once per distinct pattern and
/// charged to `client` (its address): over the registry's limits, 429 or 503 (see
/// [`matcher_refusal`]); the returned lease carries the charge.
fn read_params(
    state: &MercureState,
    pairs: Vec<(String, String)>,
    hub_url: Option<&str>,
    client: Option<std::net::IpAddr>,
) -> Result<(Subscription, Option<String>, MatcherLease), ApiError> {
    let config = &state.config;
    let legacy = config.legacy_protocol();
    let base = hub_url.and_then(|u| Url::parse(u).ok());
    type Make = fn(
        &mut MatcherLease,
        &str,
        Option<&Url>,
    ) -> Result<ssehub_selector::Selector, MatcherError>;
    let mut subscription = Subscription::new();
    let mut lease = state.selectors.lease(client.map(Owner::address));
    let mut matchers = 0;
    let mut last_event_id = None;
    for (key, value) in pairs {
        // Which constructor; compiled below, once the count and characters are checked.
        let make: Make = match key.as_str() {
            "match" | "match_exact" => |l: &mut MatcherLease, v: &str, _: Option<&Url>| l.exact(v),
            "match_urlpattern" => {
                |l: &mut MatcherLease, v: &str, base: Option<&Url>| l.url_pattern(v, base)
            }
            "topic" if legacy => |l: &mut MatcherLease, v: &str, _: Option<&Url>| l.parse(v),
            "topic" => {
                return Err(ApiError::bad_request(
                    "topic= is the pre-1.0 subscribe parameter: use match=<topic> (exact) or \
                     match_urlpattern=<pattern> (or run the hub with --legacy-protocol)",
                ));
            }
            name if name.len() >= 5 && name[..5].eq_ignore_ascii_case("match") => {
                return Err(ApiError::bad_request(format!(
                    "unknown matcher parameter {:?} (the hub supports match, match_exact and \
                     match_urlpattern)",
                    name.chars().take(64).collect::<String>()
                )));
            }
            "last_event_id" => {
                // Single-valued: the first one wins (the query's, before a QUERY body's).
                last_event_id.get_or_insert(value);
                continue;
            }
            "lastEventID" if legacy => {
                last_event_id = Some(value);
                continue;
            }
            // ssehub extension: the latest update of each matching topic first.
            "retained" => match value.as_str() {
                "latest" => {
                    subscription = subscription.retained_state(true);
                    continue;
                }
                _ => {
                    return Err(ApiError::bad_request(
                        "retained must be \"latest\" (the latest update of each matching topic first)",
                    ));
                }
            },
            _ => continue,
        };
        let what = if key == "topic" { "topic" } else { "matcher" };
        matchers += 1;
        if matchers > config.max_topics {
            return Err(ApiError::bad_request(format!(
                "too many {what} parameters (at most {})",
                config.max_topics
            )));
        }
        if let Some(c) = forbidden_char(&value) {
            return Err(ApiError::bad_request(format!(
                "a {what} contains {}, a control or format character",
                describe_char(c)
            )));
        }
        let selector =
            make(&mut lease, &value, base.as_ref()).map_err(|e| matcher_refusal(e, &key))?;
        subscription = subscription.selector(selector);
    }
    if matchers == 0 {
        return Err(ApiError::bad_request(if legacy {
            "missing topic parameter"
        } else {
            "missing match parameter (match=<topic> or match_urlpattern=<pattern>)"
        }));
    }
    Ok((subscription, last_event_id, lease))
}

/// The answer to a matcher the registry did not hand out: 400 for an invalid one (naming the
/// parameter), 429 when the client's address or token holds too many distinct patterns, 503
/// when the hub's pattern memory is full; each with its one-line reason.
fn matcher_refusal(e: MatcherError, key: &str) -> ApiError {
    match e {
        MatcherError::Invalid(e) if key == "topic" => {
            ApiError::bad_request(format!("invalid topic selector: {e}"))
        }
        MatcherError::Invalid(e) => ApiError::bad_request(format!("invalid {key} value: {e}")),
        MatcherError::OwnerLimit { .. } => {
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, e.to_string())
                .with_retry_after(SUBSCRIBER_LIMIT_RETRY_AFTER)
        }
        _ => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            .with_retry_after(SUBSCRIBER_LIMIT_RETRY_AFTER),
    }
}

/// The subscribe response's headers, in order: the SSE ones, then the cursor: on a 1.0 hub,
/// `Mercure-Last-Event-ID` when the request asked to resume (draft-dunglas-mercure-08,
/// "Reconciliation": the id of the event before the first one sent, or `earliest`); on a legacy
/// hub, the 0.x `Last-Event-ID` response header with the newest retained id (`earliest` when
/// none), as before.
pub(crate) fn insert_subscribe_headers(stream: &Subscribed, headers: &mut HeaderMap, legacy: bool) {
    crate::sse::insert_headers(headers);
    let (name, value) = if legacy {
        // The 0.x header is the newest retained id, resume or not.
        let head = stream.stream().head_event_id();
        (
            "last-event-id",
            head.unwrap_or_else(|| ssehub_hub::EARLIEST.to_owned()),
        )
    } else if stream.resumed {
        let cursor = stream.stream().cursor().unwrap_or(ssehub_hub::EARLIEST);
        ("mercure-last-event-id", cursor.to_owned())
    } else {
        return;
    };
    // Ids may be UTF-8 (publishers choose them): bytes, not only visible ASCII.
    if let Ok(value) = HeaderValue::from_bytes(value.as_bytes()) {
        headers.insert(name, value);
    }
}
