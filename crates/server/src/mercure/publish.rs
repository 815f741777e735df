//! `POST /.well-known/mercure`: publish an update from an `application/x-www-form-urlencoded`
//! body with `topic` (1+), `data`, `private`, `id`, `type` and `retry`.

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ssehub_auth::{Role, TokenSource};
use ssehub_hub::{PublishError, Update};

use super::body::read_whole;
use super::{AuthRequest, Authenticated, MercureState, rules};
use crate::form::decode_pairs;
use crate::limits::retry_after_secs;
use crate::metrics::{AuthFailure, Cause, Endpoint, Limit};
use crate::{ApiError, MercureConfig};

/// The axum handler: [`handle`], counted in the metrics, with one log line per refusal (its
/// status, what it counts as, its one-line reason and the update's topic count when the body
/// was read; never the token).
pub(crate) async fn publish(
    State(state): State<MercureState>,
    request: Request,
) -> Result<Response, ApiError> {
    let mut topics = None;
    let result = handle(&state, request, &mut topics).await;
    match &result {
        Ok(res) => state.metrics.publish_answered(res.status()),
        Err(e) => {
            state.metrics.publish_answered(e.status());
            state.metrics.refused(Endpoint::Publish, e.cause());
            tracing::info!(
                status = e.status().as_u16(),
                cause = e.cause().as_str(),
                reason = %e.reason(),
                topics,
                "publish refused"
            );
        }
    }
    result
}

async fn handle(
    state: &MercureState,
    request: Request,
    topics: &mut Option<usize>,
) -> Result<Response, ApiError> {
    let (parts, body) = request.into_parts();
    let config = &state.config;
    check_content_type(&parts.headers)?;

    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let auth = AuthRequest::new(config, &parts.uri, &parts.headers, peer);
    let Some(Authenticated {
        claims,
        source,
        token,
    }) = auth
        .authenticate_refreshing(&parts.headers, parts.uri.query(), Role::Publisher)
        .await?
    else {
        return Err(auth.missing("a publisher token is required"));
    };
    if source == TokenSource::Cookie {
        check_cookie_origin(config, &parts.headers)?;
    }
    // Before the body is read: a publisher over its rate costs as little as possible.
    if let Some(rate) = &state.publish_rate
        && let Err(wait) = rate.check(&token)
    {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many publishes with this token (at most {} per second)",
                config.publish_rate
            ),
        )
        .with_retry_after(retry_after_secs(wait))
        .with_cause(Cause::Limit(Limit::PublishRate)));
    }
    drop(token);

    // A declared length over the limit is refused before reading a byte: waiting for a body
    // we would refuse anyway lets a client hold the request open for as long as it likes.
    if declared_length(&parts.headers).is_some_and(|n| n > config.max_body as u64) {
        return Err(too_large(config.max_body));
    }
    let body = read_whole(body, config.max_body, config.body_timeout, || {
        too_large(config.max_body)
    })
    .await?;
    let update = parse_update(&body, config.max_topics_per_update)?;
    *topics = Some(update.topics().len());
    rules::check_update(&update, auth.resource(), config.legacy_protocol())?;
    if !claims.can_publish_all(update.topics().iter().map(String::as_str)) {
        return Err(auth.forbidden("the token may not publish to every topic of this update"));
    }

    let hub = state.hub.clone();
    let id = state
        .publishes
        .track_future(async move { hub.publish(update).await })
        .await;
    match id {
        Ok(id) => Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], id).into_response()),
        Err(e @ (PublishError::Closed | PublishError::Unavailable(_))) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            e.to_string(),
        )),
        Err(e @ PublishError::DuplicateId) => {
            Err(ApiError::new(StatusCode::CONFLICT, e.to_string()))
        }
        Err(e) => Err(ApiError::bad_request(e.to_string())),
    }
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/x-www-form-urlencoded",
        ))
    }
}

/// A browser sends cookies with cross-site form posts, so a cookie-authenticated publish must come
/// from an origin the operator allowed (CSRF protection, as the Mercure draft requires).
///
/// Only an origin listed by name counts: a `*` in the CORS origins lets any page *read* without
/// credentials, but a form post from any page would still carry the cookie, so the wildcard
/// must not turn this check off.
fn check_cookie_origin(config: &MercureConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    let origin = headers
        .get(header::ORIGIN)
        .or_else(|| headers.get(header::REFERER));
    let origin = origin.and_then(|v| v.to_str().ok()).map(origin_of);
    match origin {
        Some(o) if config.origin_listed(o) => Ok(()),
        Some(_) => Err(ApiError::forbidden(
            "cookie-authenticated publish from an origin that is not allowed",
        )
        .with_cause(Cause::Auth(AuthFailure::CookieOrigin))),
        None => Err(
            ApiError::forbidden("cookie-authenticated publish needs an Origin header")
                .with_cause(Cause::Auth(AuthFailure::CookieOrigin)),
        ),
    }
}

/// `scheme://host[:port]` of an Origin or Referer value.
fn origin_of(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn too_large(max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body larger than {max} bytes"),
    )
    .with_cause(Cause::Limit(Limit::Body))
}

/// The update a form describes; at most `max_topics` topics.
fn parse_update(body: &[u8], max_topics: usize) -> Result<Update, ApiError> {
    let pairs =
        decode_pairs(body).map_err(|e| ApiError::bad_request(format!("invalid form: {e}")))?;
    let mut update = Update::empty();
    let mut topics = 0usize;
    let mut seen = [false; 5];
    let mut once = |i: usize, name: &str| {
        if std::mem::replace(&mut seen[i], true) {
            Err(ApiError::bad_request(format!(
                "{name} given more than once"
            )))
        } else {
            Ok(())
        }
    };
    for (key, value) in pairs {
        update = match key.as_str() {
            "topic" => {
                topics += 1;
                if topics > max_topics {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        format!("too many topics in one update (at most {max_topics})"),
                    ));
                }
                update.topic(value)
            }
            "data" => {
                once(0, "data")?;
                update.data(value)
            }
            "id" => {
                once(1, "id")?;
                update.id(value)
            }
            "type" => {
                once(2, "type")?;
                update.event_type(value)
            }
            "retry" => {
                once(3, "retry")?;
                let ms: u64 = value
                    .parse()
                    .ok()
                    .filter(|_| value.bytes().all(|b| b.is_ascii_digit()))
                    .ok_or_else(|| {
                        ApiError::bad_request("retry must be a non-negative integer (milliseconds)")
                    })?;
                update.retry(Duration::from_millis(ms))
            }
            "private" => {
                once(4, "private")?;
                update.private(true)
            }
            _ => update,
        };
    }
    update
        .validate()
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_strips_the_path() {
        assert_eq!(
            origin_of("https://a.example:8443/page?x"),
            "https://a.example:8443"
        );
        assert_eq!(origin_of("https://a.example"), "https://a.example");
    }

    #[test]
    fn parse_update_reads_every_field() {
        let u = parse_update(
            b"topic=a&topic=b&data=x&id=i1&type=t&retry=50&private=on",
            64,
        )
        .unwrap();
        assert_eq!(u.topics(), ["a", "b"]);
        assert_eq!(u.data_str(), "x");
        assert_eq!(u.id_str(), Some("i1"));
        assert_eq!(u.event_type_str(), Some("t"));
        assert!(u.is_private());
    }

    #[test]
    fn parse_update_refuses_bad_fields() {
        for (body, reason) in [
            (&b"data=x"[..], "topic"),
            (b"topic=a&retry=1.5", "retry"),
            (b"topic=a&retry=-1", "retry"),
            (b"topic=a&id=a%0Ab", "id"),
            (b"topic=a&type=a%0Db", "type"),
            (b"topic=a&data=1&data=2", "data given more than once"),
            (b"topic=a&data=%C3%28", "not valid UTF-8"),
        ] {
            let err = parse_update(body, 64).unwrap_err();
            assert_eq!(err.status(), StatusCode::BAD_REQUEST);
            assert!(err.reason().contains(reason), "{body:?}: {}", err.reason());
        }
        let err = parse_update(b"topic=a&topic=b&topic=c", 2).unwrap_err();
        assert_eq!(err.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(err.reason(), "too many topics in one update (at most 2)");
        assert!(parse_update(b"topic=a&topic=b", 2).is_ok());
    }
}
