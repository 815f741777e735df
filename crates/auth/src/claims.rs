//! The rights a verified token carries, and the two questions the hub asks of them: may this
//! token publish to every topic of an update, and may it receive a private update.
//!
//! Two claim formats are read:
//!
//! * Mercure 1.0: the RFC 9396 `authorization_details` claim, whose entries of type
//!   [`DETAIL_TYPE`] grant `publish` and `subscribe` on topic matchers (see [`crate::details`]).
//! * 0.x (only when the [`crate::Authorizer`] runs the legacy protocol): the `mercure` claim
//!   (`publish` and `subscribe` selector lists, `payload`), also spelled `https://mercure.rocks/`.
//!
//! Both produce the same [`Claims`]: the union of the selectors granted per action, and for
//! 1.0 the ordered subscribe grants with their payloads, from which [`Claims::payload_for`]
//! picks the first one that matches a subscription.

use std::sync::Arc;

use serde_json::{Map, Value};
use ssehub_selector::Selector;

use crate::AuthError;

/// The `type` of a Mercure authorization detail (draft-dunglas-mercure-08, "Authorization
/// Details"), compared byte for byte.
pub const DETAIL_TYPE: &str = "https://mercure.rocks/authorization-detail";

/// What a verified token allows, and the registered claims the hub relies on.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// Topics this token may publish to (the union of its `publish` grants). `None`: none.
    pub publish: Option<Vec<Selector>>,
    /// Topics whose private updates this token may receive (the union of its `subscribe`
    /// grants). `None`: none. Shared by every subscription made with this (cached) token.
    pub subscribe: Option<Arc<[Selector]>>,
    /// The 0.x `mercure.payload`, attached to every subscription of the token.
    pub payload: Option<Value>,
    /// The 1.0 `subscribe` grants in token order, each with its `payload`.
    pub(crate) subscribe_grants: Vec<SubscribeGrant>,
    /// The `exp` claim, in seconds since the Unix epoch. `None` only for 0.x tokens.
    pub exp: Option<u64>,
    /// The `aud` claim (a string or an array of strings), empty when absent.
    pub audience: Box<[String]>,
    /// The `iss` claim of a token verified with a trusted issuer's keys.
    pub issuer: Option<String>,
    /// The `sub` claim, if any.
    pub subject: Option<String>,
    /// Whether the token passed as a Mercure 1.0 access token (`typ: at+jwt`, from a trusted
    /// issuer), rather than as a 0.x token a legacy hub accepted. A 1.0 token's `exp` bounds
    /// the streams opened with it; a 0.x token's rights are checked at connect time only, as
    /// 0.x hubs did.
    pub access_token: bool,
    /// The base its relative `urlpattern` grants were resolved against, when it has any.
    pub(crate) base: Option<String>,
}

/// One 1.0 `subscribe` grant: its matchers and the detail's `payload`.
#[derive(Debug, Clone)]
pub(crate) struct SubscribeGrant {
    pub(crate) matchers: Vec<Selector>,
    pub(crate) payload: Option<Value>,
}

impl Claims {
    /// Whether every topic is matched by some `publish` grant: the Mercure rule for dispatching
    /// an update (all of its topics, canonical and alternate, must be allowed).
    ///
    /// False when there is no `publish` grant, and false for an empty topic list: there is
    /// nothing to authorize, and failing closed keeps an empty list from becoming a grant.
    pub fn can_publish_all<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> bool {
        let Some(selectors) = self.publish.as_deref() else {
            return false;
        };
        let mut any = false;
        for topic in topics {
            any = true;
            if !selectors.iter().any(|s| s.matches(topic)) {
                return false;
            }
        }
        any
    }

    /// Whether some topic is matched by some `subscribe` grant: the Mercure rule for delivering
    /// a private update (one authorized topic is enough).
    pub fn can_subscribe_any<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> bool {
        let Some(selectors) = self.subscribe.as_deref() else {
            return false;
        };
        topics
            .into_iter()
            .any(|topic| selectors.iter().any(|s| s.matches(topic)))
    }

    /// The payload for a subscription whose matcher is `matcher`: the 0.x `mercure.payload`,
    /// or (1.0, "Payloads") the `payload` of the first `subscribe` grant one of whose matchers
    /// matches the matcher string taken as a topic. `None` when that grant has no payload.
    pub fn payload_for(&self, matcher: &str) -> Option<&Value> {
        if let Some(payload) = &self.payload {
            return Some(payload);
        }
        self.subscribe_grants
            .iter()
            .find(|g| g.matchers.iter().any(|m| m.matches(matcher)))
            .and_then(|g| g.payload.as_ref())
    }

    /// Whether `resource` is one of the token's audiences (RFC 7519 `aud`: a string or an
    /// array of strings, compared exactly).
    pub fn has_audience(&self, resource: &str) -> bool {
        self.audience.iter().any(|a| a == resource)
    }

    /// Reads the claims the hub uses from a verified payload. `legacy`: also read the 0.x
    /// `mercure` claim; otherwise its presence rejects the token ([`AuthError::LegacyClaim`]):
    /// a 1.0 hub must not silently drop the rights a 0.x issuer meant to grant.
    ///
    /// `base` (the hub's URL for this request) resolves relative `urlpattern` grants; a token
    /// that has one records it ([`Claims::base`]), since the same token presented under another
    /// of the hub's names must be read again.
    pub(crate) fn from_payload(
        payload: Value,
        legacy: bool,
        base: Option<&str>,
    ) -> Result<Claims, AuthError> {
        let Value::Object(mut top) = payload else {
            return Err(malformed("the claims are not a JSON object"));
        };
        let mut claims = Claims {
            exp: numeric_date(&top, "exp")?,
            audience: audience(top.get("aud"))?,
            issuer: string_claim(&top, "iss")?,
            subject: string_claim(&top, "sub")?,
            ..Claims::default()
        };
        if let Some(details) = top.remove("authorization_details") {
            crate::details::read(details, &mut claims, base)?;
        }
        let mercure = match top.remove("mercure") {
            Some(Value::Null) | None => top.remove("https://mercure.rocks/"),
            found => found,
        };
        match mercure {
            None | Some(Value::Null) => {}
            Some(_) if !legacy => return Err(AuthError::LegacyClaim),
            Some(Value::Object(m)) => read_legacy(&m, &mut claims)?,
            Some(_) => return Err(malformed("the `mercure` claim is not a JSON object")),
        }
        Ok(claims)
    }
}

/// Reads the 0.x `mercure` claim, lenient where the reference hub is: a missing key is no
/// right, a selector that does not parse is skipped; a wrong JSON type is malformed.
fn read_legacy(mercure: &Map<String, Value>, claims: &mut Claims) -> Result<(), AuthError> {
    if let Some(publish) = legacy_selectors(mercure.get("publish"), "publish")? {
        claims.publish.get_or_insert_with(Vec::new).extend(publish);
    }
    if let Some(subscribe) = legacy_selectors(mercure.get("subscribe"), "subscribe")? {
        let mut all = claims.subscribe.as_deref().unwrap_or_default().to_vec();
        all.extend(subscribe);
        claims.subscribe = Some(all.into());
    }
    claims.payload = mercure.get("payload").filter(|v| !v.is_null()).cloned();
    Ok(())
}

pub(crate) fn malformed(what: &str) -> AuthError {
    AuthError::Malformed(what.to_string())
}

/// Parses a 0.x selector list, skipping entries that are not strings or do not parse.
fn legacy_selectors(value: Option<&Value>, key: &str) -> Result<Option<Vec<Selector>>, AuthError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => Ok(Some(
            items
                .iter()
                .filter_map(Value::as_str)
                .filter_map(|s| Selector::parse(s).ok())
                .collect(),
        )),
        Some(_) => Err(AuthError::Malformed(format!(
            "`mercure.{key}` is not a JSON array"
        ))),
    }
}

/// A JWT NumericDate claim as whole seconds (fractions rounded); absent is `None`, any other
/// JSON type is malformed.
pub(crate) fn numeric_date(top: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
    match top.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
                    .map(|f| f.round() as u64)
            })
            .map(Some)
            .ok_or_else(|| AuthError::Malformed(format!("the `{name}` claim is not a number"))),
    }
}

fn string_claim(top: &Map<String, Value>, name: &str) -> Result<Option<String>, AuthError> {
    match top.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AuthError::Malformed(format!(
            "the `{name}` claim is not a string"
        ))),
    }
}

/// `aud`: a string or an array of strings (RFC 7519 section 4.1.3).
fn audience(value: Option<&Value>) -> Result<Box<[String]>, AuthError> {
    match value {
        None => Ok(Box::default()),
        Some(Value::String(s)) => Ok(Box::new([s.clone()])),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(Into::into)
            .ok_or_else(|| malformed("the `aud` claim has a member that is not a string")),
        Some(_) => Err(malformed(
            "the `aud` claim is neither a string nor an array",
        )),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn legacy(v: Value) -> Claims {
        Claims::from_payload(v, true, None).unwrap()
    }

    #[test]
    fn missing_mercure_claim_means_no_rights() {
        let c = legacy(json!({"sub": "x"}));
        assert!(c.publish.is_none() && c.subscribe.is_none() && c.payload.is_none());
        assert!(!c.can_publish_all(["a"]));
        assert!(!c.can_subscribe_any(["a"]));
        let c = legacy(json!({"mercure": null}));
        assert!(c.publish.is_none());
    }

    #[test]
    fn the_legacy_claim_is_refused_in_modern_mode() {
        for claim in [
            json!({"mercure": {"publish": ["*"]}}),
            json!({"https://mercure.rocks/": {"subscribe": ["*"]}}),
            json!({"mercure": "x"}),
        ] {
            assert_eq!(
                Claims::from_payload(claim, false, None).unwrap_err(),
                AuthError::LegacyClaim
            );
        }
    }

    #[test]
    fn wrong_types_are_malformed() {
        for bad in [
            json!([1, 2]),
            json!({"mercure": "x"}),
            json!({"mercure": []}),
            json!({"mercure": {"publish": "*"}}),
            json!({"mercure": {"subscribe": {"a": 1}}}),
            json!({"exp": "soon"}),
            json!({"aud": 5}),
            json!({"aud": ["a", 5]}),
            json!({"iss": ["a"]}),
        ] {
            assert!(
                matches!(
                    Claims::from_payload(bad, true, None),
                    Err(AuthError::Malformed(_))
                ),
                "accepted"
            );
        }
    }

    #[test]
    fn bad_legacy_selectors_are_skipped() {
        let long = "x".repeat(ssehub_selector::MAX_SELECTOR_LEN + 1);
        let c = legacy(json!({"mercure": {"publish": ["", 5, null, {"match": "*"}, long, "a"]}}));
        let publish = c.publish.unwrap();
        assert_eq!(publish.len(), 1);
        assert_eq!(publish[0].as_str(), "a");
    }

    #[test]
    fn namespaced_claim_is_a_fallback() {
        let c = legacy(json!({"https://mercure.rocks/": {"subscribe": ["*"]}}));
        assert!(c.can_subscribe_any(["t"]));
        let c = legacy(json!({
            "mercure": {"subscribe": ["a"]},
            "https://mercure.rocks/": {"subscribe": ["*"]}
        }));
        assert!(!c.can_subscribe_any(["t"]));
    }

    #[test]
    fn registered_claims() {
        let c = legacy(json!({
            "exp": 1_700_000_000, "iss": "https://i", "sub": "u", "aud": ["a", "b"],
            "mercure": {"payload": {"user": 1}}
        }));
        assert_eq!(c.exp, Some(1_700_000_000));
        assert_eq!(c.payload, Some(json!({"user": 1})));
        assert_eq!(c.issuer.as_deref(), Some("https://i"));
        assert_eq!(c.subject.as_deref(), Some("u"));
        assert!(c.has_audience("b") && !c.has_audience("c"));
        assert!(legacy(json!({"aud": "a"})).has_audience("a"));
        assert_eq!(legacy(json!({"exp": 10.6})).exp, Some(11));
    }

    #[test]
    fn legacy_publish_rules() {
        let c = legacy(json!({"mercure": {"publish": [
            "https://example.com/books/{id}", "urn:exact"
        ]}}));
        assert!(c.can_publish_all(["https://example.com/books/1"]));
        assert!(c.can_publish_all(["https://example.com/books/1", "urn:exact"]));
        assert!(!c.can_publish_all(["https://example.com/books/1", "urn:other"]));
        assert!(!c.can_publish_all(["https://example.com/books/1/reviews"]));
        assert!(!c.can_publish_all(std::iter::empty()));
        let star = legacy(json!({"mercure": {"publish": ["*"]}}));
        assert!(star.can_publish_all(["anything", "urn:x"]));
        let empty = legacy(json!({"mercure": {"publish": []}}));
        assert!(!empty.can_publish_all(["anything"]));
    }

    #[test]
    fn legacy_subscribe_rules() {
        let c = legacy(json!({"mercure": {"subscribe": [
            "https://example.com/users/{user}/{?topic}", "urn:exact"
        ]}}));
        assert!(c.can_subscribe_any(["urn:exact"]));
        assert!(c.can_subscribe_any(["urn:nope", "urn:exact"]));
        assert!(c.can_subscribe_any([
            "https://example.com/books/1",
            "https://example.com/users/foo/?topic=https%3A%2F%2Fexample.com%2Fbooks%2F1",
        ]));
        assert!(!c.can_subscribe_any(["https://example.com/books/1"]));
        assert!(!c.can_subscribe_any(std::iter::empty()));
        let star = legacy(json!({"mercure": {"subscribe": ["*"]}}));
        assert!(star.can_subscribe_any(["x"]));
    }
}
