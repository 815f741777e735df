//! The rights a verified token carries: the Mercure `mercure` claim (`publish` and `subscribe`
//! selector lists and the subscriber `payload`) plus `exp`, and the two questions the hub asks
//! of them.
//!
//! Reading the claim is lenient where the draft and the reference hub are: a missing `mercure`
//! claim, or a missing `publish` / `subscribe` key, is a valid token with no rights there; a
//! selector that does not parse (empty, too long, not a string) is skipped, not fatal. A claim
//! of the wrong JSON type (`"mercure": "x"`, `"publish": "*"`) is rejected as malformed instead,
//! so a typo in an issuer shows up as an error rather than as silently missing rights. The
//! claim may also be spelled `https://mercure.rocks/` (the namespaced form the reference hub
//! accepts); `mercure` wins when both are present.

use serde_json::Value;
use ssehub_selector::Selector;

use crate::AuthError;

/// What a verified token allows.
#[derive(Debug, Clone, Default)]
pub struct Claims {
    /// `mercure.publish`: topics this token may publish to. `None` when absent.
    pub publish: Option<Vec<Selector>>,
    /// `mercure.subscribe`: topics whose private updates this token may receive. `None` when
    /// absent.
    pub subscribe: Option<std::sync::Arc<[Selector]>>,
    /// `mercure.payload`: arbitrary JSON the hub attaches to the subscriber's subscriptions.
    pub payload: Option<Value>,
    /// The `exp` claim, in seconds since the Unix epoch. `None` means the token never expires.
    pub exp: Option<u64>,
}

impl Claims {
    /// Whether every topic is matched by some `publish` selector: the Mercure rule for
    /// dispatching an update (all of its topics, canonical and alternate, must be allowed).
    ///
    /// False when `publish` is absent or empty (the draft: no rights), and false for an empty
    /// topic list: there is nothing to authorize, and failing closed keeps a caller's empty
    /// list from becoming an accidental grant.
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

    /// Whether some topic is matched by some `subscribe` selector: the Mercure rule for
    /// delivering a private update (one authorized topic is enough).
    pub fn can_subscribe_any<'a>(&self, topics: impl IntoIterator<Item = &'a str>) -> bool {
        let Some(selectors) = self.subscribe.as_deref() else {
            return false;
        };
        topics
            .into_iter()
            .any(|topic| selectors.iter().any(|s| s.matches(topic)))
    }

    /// Builds claims from a verified token's payload.
    pub(crate) fn from_payload(payload: Value) -> Result<Claims, AuthError> {
        let Value::Object(mut top) = payload else {
            return Err(malformed("the claims are not a JSON object"));
        };
        // The signature library already rejected an `exp` that is not a number.
        let exp = top.get("exp").and_then(numeric_date);
        let mercure = match top.remove("mercure") {
            Some(Value::Null) | None => top.remove("https://mercure.rocks/"),
            found => found,
        };
        let mut claims = Claims {
            exp,
            ..Claims::default()
        };
        let mercure = match mercure {
            None | Some(Value::Null) => return Ok(claims),
            Some(Value::Object(m)) => m,
            Some(_) => return Err(malformed("the `mercure` claim is not a JSON object")),
        };
        claims.publish = selectors(mercure.get("publish"), "publish")?;
        // Shared by every subscription made with this (cached) token.
        claims.subscribe = selectors(mercure.get("subscribe"), "subscribe")?.map(Into::into);
        claims.payload = mercure.get("payload").filter(|v| !v.is_null()).cloned();
        Ok(claims)
    }
}

fn malformed(what: &str) -> AuthError {
    AuthError::Malformed(what.to_string())
}

/// Parses a selector list, skipping entries that are not strings or do not parse.
fn selectors(value: Option<&Value>, key: &str) -> Result<Option<Vec<Selector>>, AuthError> {
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

/// A JWT NumericDate as whole seconds (fractions are rounded, as the verifier does).
fn numeric_date(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && *f < u64::MAX as f64)
            .map(|f| f.round() as u64)
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn claims(v: Value) -> Claims {
        Claims::from_payload(v).unwrap()
    }

    #[test]
    fn missing_mercure_claim_means_no_rights() {
        let c = claims(json!({"sub": "x"}));
        assert!(c.publish.is_none() && c.subscribe.is_none() && c.payload.is_none());
        assert!(!c.can_publish_all(["a"]));
        assert!(!c.can_subscribe_any(["a"]));
        let c = claims(json!({"mercure": null}));
        assert!(c.publish.is_none());
    }

    #[test]
    fn wrong_types_are_malformed() {
        for bad in [
            json!([1, 2]),
            json!({"mercure": "x"}),
            json!({"mercure": []}),
            json!({"mercure": {"publish": "*"}}),
            json!({"mercure": {"subscribe": {"a": 1}}}),
        ] {
            assert!(matches!(
                Claims::from_payload(bad),
                Err(AuthError::Malformed(_))
            ));
        }
    }

    #[test]
    fn bad_selectors_are_skipped() {
        let long = "x".repeat(ssehub_selector::MAX_SELECTOR_LEN + 1);
        let c = claims(json!({"mercure": {"publish": ["", 5, null, {"match": "*"}, long, "a"]}}));
        let publish = c.publish.unwrap();
        assert_eq!(publish.len(), 1);
        assert_eq!(publish[0].as_str(), "a");
    }

    #[test]
    fn namespaced_claim_is_a_fallback() {
        let c = claims(json!({"https://mercure.rocks/": {"subscribe": ["*"]}}));
        assert!(c.can_subscribe_any(["t"]));
        let c = claims(json!({
            "mercure": {"subscribe": ["a"]},
            "https://mercure.rocks/": {"subscribe": ["*"]}
        }));
        assert!(!c.can_subscribe_any(["t"]));
    }

    #[test]
    fn exp_and_payload() {
        let c = claims(json!({"exp": 1_700_000_000, "mercure": {"payload": {"user": 1}}}));
        assert_eq!(c.exp, Some(1_700_000_000));
        assert_eq!(c.payload, Some(json!({"user": 1})));
        assert_eq!(claims(json!({"exp": 10.6})).exp, Some(11));
    }

    #[test]
    fn publish_rules() {
        let c = claims(json!({"mercure": {"publish": [
            "https://example.com/books/{id}", "urn:exact"
        ]}}));
        assert!(c.can_publish_all(["https://example.com/books/1"]));
        assert!(c.can_publish_all(["https://example.com/books/1", "urn:exact"]));
        assert!(!c.can_publish_all(["https://example.com/books/1", "urn:other"]));
        assert!(!c.can_publish_all(["https://example.com/books/1/reviews"]));
        assert!(!c.can_publish_all(std::iter::empty()));
        let star = claims(json!({"mercure": {"publish": ["*"]}}));
        assert!(star.can_publish_all(["anything", "urn:x"]));
        let empty = claims(json!({"mercure": {"publish": []}}));
        assert!(!empty.can_publish_all(["anything"]));
    }

    #[test]
    fn subscribe_rules() {
        let c = claims(json!({"mercure": {"subscribe": [
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
        let star = claims(json!({"mercure": {"subscribe": ["*"]}}));
        assert!(star.can_subscribe_any(["x"]));
    }
}
