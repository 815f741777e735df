//! Reading the RFC 9396 `authorization_details` claim of a Mercure 1.0 token
//! (draft-dunglas-mercure-08, "Authorization Details", "Topic Matcher List", "Payloads").
//!
//! # Rules
//!
//! * The claim is a JSON array of objects. Entries whose `type` is not [`DETAIL_TYPE`] belong to
//!   other APIs and are ignored; an entry that is not an object, or has no string `type`, is
//!   not a valid RFC 9396 detail and rejects the token.
//! * A Mercure detail has a non-empty `actions` array of strings (unknown actions grant nothing
//!   and do not invalidate, so issuers can add future actions; a non-string entry does), a
//!   non-empty `topics` array of matcher objects `{"match": "...", "match_type"?: "..."}`, and
//!   an optional object `payload`.
//! * `match_type` is case-sensitive: `exact` (the default: byte for byte, never a template) or
//!   `urlpattern` (a WHATWG URL Pattern; a relative one resolves against the hub's URL for the
//!   request, so it needs one); `*` is the wildcard whatever the type. Any other type rejects
//!   the token: skipping the grant would change what the issuer meant to authorize.
//! * Any defect rejects the whole token, never a partial grant ([`AuthError::InvalidDetails`]).
//! * Limits ([`MAX_DETAILS`], [`MAX_MATCHERS`], and the selector crate's
//!   [`ssehub_selector::MAX_SELECTOR_LEN`] per pattern) bound what one token costs the hub;
//!   exceeding one also rejects the token, as the spec requires.

use serde_json::Value;
use ssehub_selector::{Selector, SelectorError, Url};

use crate::AuthError;
use crate::claims::{Claims, DETAIL_TYPE, SubscribeGrant};

/// Most Mercure authorization details one token may carry.
pub const MAX_DETAILS: usize = 64;

/// Most topic matchers in one detail's `topics`.
pub const MAX_MATCHERS: usize = 256;

/// The matcher types grants (and subscriptions) may use.
pub const MATCHER_TYPES: &[&str] = &["exact", "urlpattern"];

fn invalid(what: impl Into<String>) -> AuthError {
    AuthError::InvalidDetails(what.into())
}

/// Adds the grants of an `authorization_details` claim to `claims`.
pub(crate) fn read(
    details: Value,
    claims: &mut Claims,
    base: Option<&str>,
) -> Result<(), AuthError> {
    let base = base.and_then(|b| Url::parse(b).ok());
    let Value::Array(details) = details else {
        return Err(invalid("`authorization_details` is not an array"));
    };
    let mut mercure = 0;
    for detail in &details {
        let Value::Object(detail) = detail else {
            return Err(invalid("an authorization detail is not an object"));
        };
        match detail.get("type") {
            Some(Value::String(t)) if t == DETAIL_TYPE => {}
            Some(Value::String(_)) => continue,
            _ => return Err(invalid("an authorization detail has no string `type`")),
        }
        mercure += 1;
        if mercure > MAX_DETAILS {
            return Err(invalid(format!(
                "more than {MAX_DETAILS} Mercure authorization details"
            )));
        }

        let (publish, subscribe) = actions(detail.get("actions"))?;
        let matchers = matchers(detail.get("topics"), base.as_ref(), claims)?;
        let payload = match detail.get("payload") {
            None => None,
            Some(p @ Value::Object(_)) => Some(p.clone()),
            Some(_) => return Err(invalid("a detail's `payload` is not an object")),
        };
        if publish {
            claims
                .publish
                .get_or_insert_with(Vec::new)
                .extend(matchers.iter().cloned());
        }
        if subscribe {
            claims.subscribe_grants.push(SubscribeGrant {
                matchers: matchers.clone(),
                payload,
            });
        }
    }
    if !claims.subscribe_grants.is_empty() {
        let all: Vec<Selector> = claims
            .subscribe_grants
            .iter()
            .flat_map(|g| g.matchers.iter().cloned())
            .collect();
        claims.subscribe = Some(all.into());
    }
    Ok(())
}

/// Which of the two actions this hub knows the detail grants.
fn actions(value: Option<&Value>) -> Result<(bool, bool), AuthError> {
    let Some(Value::Array(actions)) = value else {
        return Err(invalid("a Mercure detail has no `actions` array"));
    };
    if actions.is_empty() {
        return Err(invalid("a Mercure detail has an empty `actions` array"));
    }
    let (mut publish, mut subscribe) = (false, false);
    for action in actions {
        match action.as_str() {
            Some("publish") => publish = true,
            Some("subscribe") => subscribe = true,
            Some(_) => {}
            None => return Err(invalid("an action is not a string")),
        }
    }
    Ok((publish, subscribe))
}

fn matchers(
    value: Option<&Value>,
    base: Option<&Url>,
    claims: &mut Claims,
) -> Result<Vec<Selector>, AuthError> {
    let Some(Value::Array(topics)) = value else {
        return Err(invalid("a Mercure detail has no `topics` array"));
    };
    if topics.is_empty() {
        return Err(invalid("a Mercure detail has an empty `topics` array"));
    }
    if topics.len() > MAX_MATCHERS {
        return Err(invalid(format!(
            "a Mercure detail has more than {MAX_MATCHERS} topic matchers"
        )));
    }
    topics.iter().map(|t| matcher(t, base, claims)).collect()
}

fn matcher(value: &Value, base: Option<&Url>, claims: &mut Claims) -> Result<Selector, AuthError> {
    let Value::Object(m) = value else {
        return Err(invalid("a topic matcher is not an object"));
    };
    let Some(Value::String(pattern)) = m.get("match") else {
        return Err(invalid("a topic matcher has no string `match`"));
    };
    let kind = match m.get("match_type") {
        None => "exact",
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(invalid("a `match_type` is not a string")),
    };
    if pattern == "*" {
        return Selector::exact_topic("*").map_err(selector_error);
    }
    match kind {
        "exact" => Selector::exact_topic(pattern).map_err(selector_error),
        "urlpattern" => {
            // Absolute patterns ignore the base; a relative one depends on it.
            let absolute = Selector::url_pattern(pattern, None);
            if absolute.is_ok() {
                return absolute.map_err(selector_error);
            }
            let selector = Selector::url_pattern(pattern, base).map_err(selector_error)?;
            claims.base = base.map(|b| b.as_str().to_owned());
            Ok(selector)
        }
        _ => Err(invalid("a topic matcher has an unsupported `match_type`")),
    }
}

fn selector_error(e: SelectorError) -> AuthError {
    invalid(format!("a topic matcher is invalid: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn claims(details: Value) -> Result<Claims, AuthError> {
        Claims::from_payload(
            json!({ "authorization_details": details }),
            false,
            Some("https://hub.example/.well-known/mercure"),
        )
    }

    fn detail(actions: Value, topics: Value) -> Value {
        json!({"type": DETAIL_TYPE, "actions": actions, "topics": topics})
    }

    #[test]
    fn grants_per_action() {
        let c = claims(json!([
            detail(json!(["publish"]), json!([{"match": "urn:a"}])),
            detail(
                json!(["subscribe", "publish"]),
                json!([{"match": "urn:b", "match_type": "exact"}])
            ),
        ]))
        .unwrap();
        assert!(c.can_publish_all(["urn:a", "urn:b"]));
        assert!(!c.can_subscribe_any(["urn:a"]));
        assert!(c.can_subscribe_any(["urn:x", "urn:b"]));
    }

    #[test]
    fn exact_is_byte_exact_and_star_is_the_wildcard() {
        let c = claims(json!([detail(
            json!(["publish"]),
            json!([{"match": "https://x/{id}"}])
        )]))
        .unwrap();
        assert!(c.can_publish_all(["https://x/{id}"]));
        assert!(!c.can_publish_all(["https://x/1"]));
        // `*` matches everything whatever the type, even one the hub does not know.
        for star in [
            json!({"match": "*"}),
            json!({"match": "*", "match_type": "exact"}),
            json!({"match": "*", "match_type": "urlpattern"}),
            json!({"match": "*", "match_type": "not-a-type"}),
        ] {
            let c = claims(json!([detail(json!(["subscribe"]), json!([star]))])).unwrap();
            assert!(c.can_subscribe_any(["anything"]));
        }
    }

    #[test]
    fn urlpattern_grants_absolute_and_relative() {
        let c = claims(json!([detail(
            json!(["subscribe"]),
            json!([
                {"match": "https://example.com/users/42/*", "match_type": "urlpattern"},
                {"match": "/.well-known/mercure/subscriptions/:type/:m/:s", "match_type": "urlpattern"},
            ])
        )]))
        .unwrap();
        assert!(c.can_subscribe_any(["https://example.com/users/42/books/1"]));
        assert!(!c.can_subscribe_any(["https://example.com/users/43/books/1"]));
        assert!(c.can_subscribe_any(["/.well-known/mercure/subscriptions/exact/a/b"]));
        assert!(c.can_subscribe_any([
            "https://hub.example/.well-known/mercure/subscriptions/exact/a/b"
        ]));
        assert_eq!(
            c.base.as_deref(),
            Some("https://hub.example/.well-known/mercure")
        );
        // Absolute patterns only: the claims do not depend on the hub's URL.
        let c = claims(json!([detail(
            json!(["publish"]),
            json!([{"match": "https://example.com/:id", "match_type": "urlpattern"}])
        )]))
        .unwrap();
        assert!(c.base.is_none() && c.can_publish_all(["https://example.com/1"]));
        // A pattern that does not compile rejects the token.
        let err = claims(json!([detail(
            json!(["publish"]),
            json!([{"match": "https://example.com/(", "match_type": "urlpattern"}])
        )]))
        .unwrap_err();
        assert!(matches!(err, AuthError::InvalidDetails(_)));
    }

    #[test]
    fn unknown_actions_grant_nothing_and_do_not_invalidate() {
        let c = claims(json!([detail(
            json!(["read", "subscribe"]),
            json!([{"match": "urn:a"}])
        )]))
        .unwrap();
        assert!(c.can_subscribe_any(["urn:a"]) && !c.can_publish_all(["urn:a"]));
        let c = claims(json!([detail(json!(["admin"]), json!([{"match": "*"}]))])).unwrap();
        assert!(c.publish.is_none() && c.subscribe.is_none());
    }

    #[test]
    fn other_detail_types_are_ignored() {
        let c = claims(json!([
            {"type": "payment_initiation", "actions": 5},
            detail(json!(["publish"]), json!([{"match": "urn:a"}])),
        ]))
        .unwrap();
        assert!(c.can_publish_all(["urn:a"]));
    }

    #[test]
    fn any_malformed_detail_rejects_the_whole_token() {
        let good = detail(json!(["publish"]), json!([{"match": "*"}]));
        let long = "x".repeat(ssehub_selector::MAX_SELECTOR_LEN + 1);
        let too_many: Vec<Value> = (0..=MAX_MATCHERS)
            .map(|i| json!({"match": format!("urn:{i}")}))
            .collect();
        for bad in [
            json!({"type": DETAIL_TYPE}),
            json!({"type": 5, "actions": ["publish"], "topics": [{"match": "*"}]}),
            json!("publish"),
            detail(json!([]), json!([{"match": "*"}])),
            detail(json!("publish"), json!([{"match": "*"}])),
            detail(json!(["publish", 1]), json!([{"match": "*"}])),
            detail(json!(["publish"]), json!([])),
            detail(json!(["publish"]), json!(["urn:a"])),
            detail(json!(["publish"]), json!([{"match": 1}])),
            detail(json!(["publish"]), json!([{"match": ""}])),
            detail(json!(["publish"]), json!([{"match": long}])),
            detail(
                json!(["publish"]),
                json!([{"match": "urn:a", "match_type": "Exact"}]),
            ),
            detail(
                json!(["publish"]),
                json!([{"match": "urn:a", "match_type": "uri_template"}]),
            ),
            detail(
                json!(["publish"]),
                json!([{"match": "urn:a", "match_type": 1}]),
            ),
            detail(json!(["publish"]), json!(too_many)),
            json!({"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": [{"match": "*"}], "payload": "x"}),
        ] {
            let err = claims(json!([good.clone(), bad.clone()])).unwrap_err();
            assert!(
                matches!(err, AuthError::InvalidDetails(_)),
                "{bad}: {err:?}"
            );
        }
        assert!(matches!(
            claims(json!({"a": 1})).unwrap_err(),
            AuthError::InvalidDetails(_)
        ));
        let many: Vec<Value> = (0..=MAX_DETAILS).map(|_| good.clone()).collect();
        assert!(matches!(
            claims(json!(many)).unwrap_err(),
            AuthError::InvalidDetails(_)
        ));
    }

    #[test]
    fn payload_is_the_first_matching_subscribe_grant() {
        let c = claims(json!([
            {"type": DETAIL_TYPE, "actions": ["publish"], "topics": [{"match": "*"}], "payload": {"p": 0}},
            {"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": [{"match": "https://example.com/foo"}], "payload": {"custom1": 1}},
            {"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": [{"match": "urn:none"}]},
            {"type": DETAIL_TYPE, "actions": ["subscribe"], "topics": [{"match": "*"}], "payload": {"custom3": 3}},
        ]))
        .unwrap();
        assert_eq!(
            c.payload_for("https://example.com/foo"),
            Some(&json!({"custom1": 1}))
        );
        assert_eq!(c.payload_for("urn:none"), None);
        assert_eq!(c.payload_for("urn:other"), Some(&json!({"custom3": 3})));
    }
}
