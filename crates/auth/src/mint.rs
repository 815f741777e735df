//! Minting Mercure 1.0 access tokens ([`TokenSpec`]), for the CLI, the development issuer that
//! `ssehub serve` starts without keys, demos and tests.
//!
//! A minted token carries every claim RFC 9068 requires issuers to populate (`iss`, `exp`,
//! `aud`, `sub`, `client_id`, `iat`, `jti`), the `at+jwt` type, and `authorization_details`
//! grants, so any RFC 9068 validator (not just this hub) accepts it.
//!
//! ```
//! use ssehub_auth::{Algorithm, Authorizer, Issuer, KeyConfig, Matcher, Role, TokenSpec};
//!
//! let key = KeyConfig::new(Algorithm::HS256, "a-long-random-secret");
//! let hub = "https://hub.example.com/.well-known/mercure";
//! let token = TokenSpec::new("https://example.com", hub)
//!     .publish([Matcher::exact("https://example.com/books/1")])
//!     .sign(&key)
//!     .unwrap();
//!
//! let auth = Authorizer::builder()
//!     .issuer(Issuer::new("https://example.com").key(key))
//!     .build()
//!     .unwrap();
//! let claims = auth.verify_for(&token, Role::Publisher, hub).unwrap();
//! assert!(claims.can_publish_all(["https://example.com/books/1"]));
//! ```

use std::time::Duration;

use jsonwebtoken::Header;
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::claims::DETAIL_TYPE;
use crate::key::{self, KeyConfig, KeyError};

/// Default lifetime of a minted token: short, as the spec recommends, and long enough for a
/// demo session.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// One topic matcher of a grant: `{"match": ..., "match_type"?: ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Matcher {
    /// The matcher text (`*` matches every topic).
    #[serde(rename = "match")]
    pub pattern: String,
    /// The matcher type (`exact` when absent, or `urlpattern`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_type: Option<String>,
}

impl Matcher {
    /// An exact matcher (no `match_type`, which means `exact`).
    pub fn exact(pattern: impl Into<String>) -> Self {
        Matcher {
            pattern: pattern.into(),
            match_type: None,
        }
    }

    /// A URL Pattern matcher.
    pub fn urlpattern(pattern: impl Into<String>) -> Self {
        Matcher {
            pattern: pattern.into(),
            match_type: Some("urlpattern".into()),
        }
    }

    /// The wildcard, every topic.
    pub fn any() -> Self {
        Matcher::exact("*")
    }
}

/// A token to mint. See the module documentation.
#[derive(Debug, Clone)]
pub struct TokenSpec {
    issuer: String,
    audience: Vec<String>,
    subject: Option<String>,
    client_id: Option<String>,
    ttl: Duration,
    details: Vec<Value>,
    kid: Option<String>,
}

impl TokenSpec {
    /// A token from `issuer` for the hub whose resource identifier is `audience`, granting
    /// nothing yet, valid for [`DEFAULT_TTL`].
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        TokenSpec {
            issuer: issuer.into(),
            audience: vec![audience.into()],
            subject: None,
            client_id: None,
            ttl: DEFAULT_TTL,
            details: Vec::new(),
            kid: None,
        }
    }

    /// Adds another audience (`aud` becomes an array).
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience.push(audience.into());
        self
    }

    /// The `sub` claim (default: a random `urn:uuid:`).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    /// The `client_id` claim (default: the issuer, which is the client of a self-issued token).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// How long the token is valid (`exp` = now + ttl, rounded up to whole seconds).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The `kid` header, naming the key among the issuer's.
    pub fn key_id(mut self, kid: impl Into<String>) -> Self {
        self.kid = Some(kid.into());
        self
    }

    /// Grants `publish` on these matchers (no detail is added for an empty list).
    pub fn publish(self, matchers: impl IntoIterator<Item = Matcher>) -> Self {
        self.detail(&["publish"], matchers, None)
    }

    /// Grants `subscribe` on these matchers, with an optional payload for the subscriptions it
    /// matches (no detail is added for an empty list).
    pub fn subscribe(
        self,
        matchers: impl IntoIterator<Item = Matcher>,
        payload: Option<Value>,
    ) -> Self {
        self.detail(&["subscribe"], matchers, payload)
    }

    /// Adds a raw Mercure authorization detail with these actions.
    pub fn detail(
        mut self,
        actions: &[&str],
        matchers: impl IntoIterator<Item = Matcher>,
        payload: Option<Value>,
    ) -> Self {
        let topics: Vec<Matcher> = matchers.into_iter().collect();
        if topics.is_empty() {
            return self;
        }
        let mut detail = json!({ "type": DETAIL_TYPE, "actions": actions, "topics": topics });
        if let (Some(payload), Value::Object(d)) = (payload, &mut detail) {
            d.insert("payload".into(), payload);
        }
        self.details.push(detail);
        self
    }

    /// The claims this token will carry, with `iat` = `now`.
    pub fn claims(&self, now: u64) -> Value {
        let secs = self.ttl.as_secs() + u64::from(self.ttl.subsec_nanos() > 0);
        let mut claims = Map::new();
        claims.insert("iss".into(), self.issuer.clone().into());
        claims.insert(
            "aud".into(),
            match self.audience.as_slice() {
                [one] => one.clone().into(),
                all => all.to_vec().into(),
            },
        );
        let subject = self
            .subject
            .clone()
            .unwrap_or_else(|| format!("urn:uuid:{}", uuid::Uuid::new_v4()));
        claims.insert("sub".into(), subject.into());
        let client_id = self.client_id.as_ref().unwrap_or(&self.issuer);
        claims.insert("client_id".into(), client_id.clone().into());
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), now.saturating_add(secs).into());
        claims.insert(
            "jti".into(),
            format!("urn:uuid:{}", uuid::Uuid::new_v4()).into(),
        );
        claims.insert("authorization_details".into(), self.details.clone().into());
        Value::Object(claims)
    }

    /// Signs the token with `key` (for HS* the secret; otherwise a PEM **private** key, inline
    /// or a path).
    pub fn sign(&self, key: &KeyConfig) -> Result<String, KeyError> {
        let encoding = key::encoding_key(key)?;
        let mut header = Header::new(key.algorithm.to_jwt());
        header.typ = Some("at+jwt".into());
        header.kid = self.kid.clone();
        jsonwebtoken::encode(&header, &self.claims(key::unix_now()), &encoding)
            .map_err(|e| key::sign_error(key, &e))
    }
}
