//! Mercure authorization: who may sign tokens for the hub, what a verified token allows, and
//! where a request carries its token.
//!
//! The hub is an OAuth 2.0 protected resource (Mercure 1.0, draft-dunglas-mercure-08): it
//! verifies JWT access tokens (`typ: at+jwt`) from trusted issuers, each bound to its own keys
//! ([`Issuer`]), and reads their RFC 9396 `authorization_details` grants:
//!
//! ```json
//! {"iss": "https://example.com", "aud": "https://hub.example.com/.well-known/mercure",
//!  "exp": 1767225600, "authorization_details": [{
//!    "type": "https://mercure.rocks/authorization-detail",
//!    "actions": ["publish"], "topics": [{"match": "https://example.com/books/1"}]}]}
//! ```
//!
//! ```
//! use ssehub_auth::{Algorithm, Authorizer, Issuer, KeyConfig, Matcher, Role, TokenSpec};
//!
//! let key = KeyConfig::new(Algorithm::HS256, "!ChangeThisMercureHubJWTSecretKey!");
//! let auth = Authorizer::builder()
//!     .issuer(Issuer::new("https://example.com").key(key.clone()))
//!     .build()
//!     .unwrap();
//!
//! let hub = "https://hub.example.com/.well-known/mercure";
//! let token = TokenSpec::new("https://example.com", hub)
//!     .publish([Matcher::exact("https://example.com/books/1")])
//!     .sign(&key)
//!     .unwrap();
//! let claims = auth.verify_for(&token, Role::Publisher, hub).unwrap();
//! assert!(claims.can_publish_all(["https://example.com/books/1"]));
//! assert!(!claims.can_publish_all(["https://example.com/authors/1"]));
//! assert!(!claims.can_subscribe_any(["https://example.com/books/1"]));
//! // Another hub's token is refused.
//! assert!(auth.verify_for(&token, Role::Publisher, "https://other.example/.well-known/mercure").is_err());
//! ```
//!
//! The pre-standardization protocol (0.x: the `mercure` claim, keys bound to no issuer, tokens
//! in the query string) is accepted only by a legacy authorizer ([`Authorizer::new`],
//! [`AuthorizerBuilder::legacy`]).
//!
//! Module map: [`key`] (algorithms, key material, 0.x signing), [`issuer`] (trusted issuers),
//! [`jwks`] (an issuer's JWK Set), [`claims`] and [`details`] (what a token allows),
//! [`verify`] (the [`Authorizer`] and its cache), [`extract`] (finding the token in a
//! request), [`mint`] (1.0 tokens).

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;

pub mod claims;
pub mod details;
pub mod extract;
pub mod issuer;
pub mod jwks;
pub mod key;
pub mod mint;
pub mod verify;

pub use claims::{Claims, DETAIL_TYPE};
pub use extract::{
    COOKIE_NAME, MODERN_COOKIE_NAME, Presentation, QUERY_PARAMETER, TokenSource, extract_token,
    extract_token_with_cookie, find_token,
};
pub use issuer::Issuer;
pub use jwks::JwksSource;
pub use key::{Algorithm, KeyConfig, KeyError, encode_token};
pub use mint::{DEFAULT_TTL, Matcher, TokenSpec};
pub use verify::{Authorizer, AuthorizerBuilder, LEEWAY_SECS, MAX_TOKEN_LEN};

/// Which side of the hub a token is presented to. Each role may have its own key (the Mercure
/// draft recommends separate keys so a leaked subscriber key cannot publish).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// A token presented to the publish endpoint.
    Publisher,
    /// A token presented to the subscribe endpoint (or the subscriptions API).
    Subscriber,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Publisher => "publisher",
            Role::Subscriber => "subscriber",
        })
    }
}

/// Why a request's token was not accepted. The `Display` form is one line and never contains
/// the token (or anything decoded from it), so it is safe to log. Clients should be told less:
/// [`AuthError::challenge`] says which RFC 6750 answer a failure gets, and every
/// `invalid_token` failure should look the same from outside (the spec's advice: do not say
/// which check failed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented (an empty token counts as none).
    #[error("no token was presented")]
    Missing,
    /// The token's presentation is malformed (a non-Bearer `Authorization` header, a token in
    /// the URL in 1.0, ...); the text says what is wrong.
    #[error("malformed token presentation: {0}")]
    InvalidRequest(String),
    /// One mechanism carried several different tokens (two `Authorization` headers, two
    /// `authorization` query parameters, or two token cookies).
    #[error("more than one token was presented")]
    AmbiguousToken,
    /// The token is not a well-formed JWS or its claims have the wrong JSON types.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The header's `typ` is not `at+jwt`.
    #[error("the token is not an access token (typ must be at+jwt)")]
    WrongType,
    /// A claim the hub requires (`iss`, `exp`, `aud`) is missing.
    #[error("the token has no `{0}` claim")]
    MissingClaim(&'static str),
    /// The `iss` claim names no trusted issuer.
    #[error("the token's issuer is not trusted")]
    UntrustedIssuer,
    /// The `aud` claim does not hold this hub's resource identifier.
    #[error("the token is not meant for this hub (aud)")]
    WrongAudience,
    /// The `exp` claim is in the past (beyond [`LEEWAY_SECS`]).
    #[error("the token has expired")]
    Expired,
    /// The `nbf` claim is in the future (beyond [`LEEWAY_SECS`]).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The signature does not verify with the issuer's keys.
    #[error("the token signature is invalid")]
    InvalidSignature,
    /// The token's `alg` is not on the issuer's allowlist (this includes `none`), or not the
    /// algorithm of the 0.x key.
    #[error("the token is not signed with the configured algorithm")]
    WrongAlgorithm,
    /// The issuer's JWK Set has no key for the token's `kid` and algorithm (yet: the set may
    /// be refreshed, see [`Authorizer::verify_refreshing`]).
    #[error("no key of the issuer matches the token")]
    UnknownKey,
    /// A Mercure authorization detail is malformed or over a limit: the whole token is refused.
    #[error("invalid authorization details: {0}")]
    InvalidDetails(String),
    /// A 1.0 hub got a token with the 0.x `mercure` claim.
    #[error("the token carries the pre-1.0 `mercure` claim (the hub speaks Mercure 1.0)")]
    LegacyClaim,
    /// No key can verify tokens for this role.
    #[error("no key is configured for {0} tokens")]
    NotConfigured(Role),
}

/// The RFC 6750 answer to an [`AuthError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Challenge {
    /// 401 with a bare `Bearer` challenge: no token where one is needed.
    Missing,
    /// 400 `invalid_request`: the presentation is malformed.
    InvalidRequest,
    /// 401 `invalid_token`: the token failed validation.
    InvalidToken,
}

impl AuthError {
    /// The RFC 6750 answer this failure gets.
    pub fn challenge(&self) -> Challenge {
        match self {
            AuthError::Missing => Challenge::Missing,
            AuthError::InvalidRequest(_) | AuthError::AmbiguousToken => Challenge::InvalidRequest,
            _ => Challenge::InvalidToken,
        }
    }
}
