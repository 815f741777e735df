//! Mercure authorization: which keys verify tokens, what a verified token allows, and where a
//! request carries its token.
//!
//! The hub never mints or stores credentials; it verifies JWS tokens (compact JWTs) signed by
//! publishers' and subscribers' issuers and reads the `mercure` claim:
//!
//! ```json
//! {"mercure": {"publish": ["https://example.com/books/{id}"], "subscribe": ["*"], "payload": {}}}
//! ```
//!
//! ```
//! use ssehub_auth::{encode_token, Algorithm, Authorizer, KeyConfig, Role};
//!
//! let key = KeyConfig::new(Algorithm::HS256, "!ChangeThisMercureHubJWTSecretKey!");
//! let auth = Authorizer::new(Some(key.clone()), Some(key.clone())).unwrap();
//!
//! let token = encode_token(&key, Some(&["https://example.com/books/{id}"]), None, None).unwrap();
//! let claims = auth.verify(&token, Role::Publisher).unwrap();
//! assert!(claims.can_publish_all(["https://example.com/books/1"]));
//! assert!(!claims.can_publish_all(["https://example.com/authors/1"]));
//! assert!(!claims.can_subscribe_any(["https://example.com/books/1"]));
//! ```
//!
//! Module map: [`key`] (algorithms, key material, signing), [`claims`] (the `mercure` claim and
//! what it permits), [`verify`] (the [`Authorizer`] and its cache), [`extract`] (finding the
//! token in a request).

#![forbid(unsafe_code)]

use std::fmt;

pub mod claims;
pub mod extract;
pub mod key;
pub mod verify;

pub use claims::Claims;
pub use extract::{
    COOKIE_NAME, QUERY_PARAMETER, TokenSource, extract_token, extract_token_with_cookie,
};
pub use key::{Algorithm, KeyConfig, KeyError, encode_token};
pub use verify::{Authorizer, LEEWAY_SECS, MAX_TOKEN_LEN};

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
/// the token (or anything decoded from it), so it is safe to log and to return to clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No token was presented (an empty token counts as none).
    #[error("no token was presented")]
    Missing,
    /// The token or the header carrying it is not well-formed; the text says what is wrong.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The `exp` claim is in the past (beyond [`LEEWAY_SECS`]).
    #[error("the token has expired")]
    Expired,
    /// The `nbf` claim is in the future (beyond [`LEEWAY_SECS`]).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The signature does not verify with the configured key.
    #[error("the token signature is invalid")]
    InvalidSignature,
    /// The token's `alg` is not the algorithm configured for this role (this includes `none`).
    #[error("the token is not signed with the configured algorithm")]
    WrongAlgorithm,
    /// One mechanism carried several different tokens (two `Authorization` headers, two
    /// `authorization` query parameters, or two token cookies).
    #[error("more than one token was presented")]
    AmbiguousToken,
    /// The [`Authorizer`] has no key for this role, so no token can be verified for it.
    #[error("no key is configured for {0} tokens")]
    NotConfigured(Role),
}
