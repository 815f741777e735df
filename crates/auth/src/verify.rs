//! Token verification for one hub: the [`Authorizer`] holds a key per role and a bounded cache
//! of tokens it has already verified, so steady traffic with the same token (a publisher posting
//! many updates, a browser reconnecting) costs a hash lookup instead of a signature check.
//!
//! # Rules
//!
//! * The token's `alg` header must be exactly the algorithm configured for the role. `none`,
//!   any other algorithm, and HS/RS confusion (an HS256 token "signed" with an RSA public key)
//!   are [`AuthError::WrongAlgorithm`], checked before any signature work.
//! * Tokens with a `crit` header are rejected: we understand no JWS extensions (RFC 7515 4.1.11).
//! * `exp` and `nbf` are checked when present, with [`LEEWAY_SECS`] of clock skew allowed.
//!   `exp` is not required (Mercure tokens often have none); `aud`, `iss` and `sub` are not
//!   checked (the draft this hub speaks does not ask for them).
//! * Tokens longer than [`MAX_TOKEN_LEN`] are malformed. This bounds the work and memory one
//!   request can cause, including the selectors compiled from its claims.
//!
//! # Cache
//!
//! Each role has its own map from token text to the verified [`Claims`] (an `Arc`, so a hit
//! returns the very same allocation). At most [`CACHE_CAPACITY`] tokens per role are kept;
//! inserting into a full map evicts one arbitrary entry, which is O(1) and good enough because
//! live tokens are re-inserted on their next use. A hit is still checked against `exp` every
//! time, and an expired entry is dropped. Failures are never cached: a bad token costs a full
//! check each time, but it cannot push good tokens out, and entries can only be created by
//! whoever holds a signing key. Worst case memory is about `2 * CACHE_CAPACITY *
//! MAX_TOKEN_LEN` bytes plus the claims.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{DecodingKey, Validation};
use parking_lot::RwLock;
use serde_json::Value;

use crate::claims::Claims;
use crate::key::{self, Algorithm, KeyConfig, KeyError};
use crate::{AuthError, Role};

/// Clock skew tolerated on `exp` and `nbf`, in seconds: enough for unsynchronised publisher and
/// hub clocks, small enough that an expired token is not usable for long.
pub const LEEWAY_SECS: u64 = 5;

/// Longest token accepted, in bytes. Browsers cap a cookie at 4 KiB; 16 KiB leaves room for
/// tokens with long selector lists sent in a header.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Verified tokens kept per role.
pub const CACHE_CAPACITY: usize = 4096;

/// Verifies Mercure tokens. Cheap to clone (one `Arc`); clones share keys and cache.
#[derive(Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

struct Inner {
    publisher: Option<Verifier>,
    subscriber: Option<Verifier>,
}

/// Everything needed to verify one role's tokens.
struct Verifier {
    algorithm: Algorithm,
    key: DecodingKey,
    validation: Validation,
    cache: RwLock<HashMap<Box<str>, Arc<Claims>>>,
}

impl Authorizer {
    /// Loads and checks the keys. A role without a key rejects every token with
    /// [`AuthError::NotConfigured`] (the hub decides what that means, e.g. anonymous only).
    pub fn new(
        publisher: Option<KeyConfig>,
        subscriber: Option<KeyConfig>,
    ) -> Result<Self, KeyError> {
        Ok(Authorizer {
            inner: Arc::new(Inner {
                publisher: publisher.as_ref().map(Verifier::new).transpose()?,
                subscriber: subscriber.as_ref().map(Verifier::new).transpose()?,
            }),
        })
    }

    /// The algorithm configured for `role`, or `None` when the role has no key.
    pub fn algorithm(&self, role: Role) -> Option<Algorithm> {
        self.inner.verifier(role).map(|v| v.algorithm)
    }

    /// Verifies `token` for `role` and returns its claims, from the cache when possible.
    pub fn verify(&self, token: &str, role: Role) -> Result<Arc<Claims>, AuthError> {
        self.verify_at(token, role, key::unix_now())
    }

    /// [`Authorizer::verify`] with the cache's notion of "now" given explicitly (tests use it
    /// to age cached entries; the signature check itself always uses the system clock).
    fn verify_at(&self, token: &str, role: Role, now: u64) -> Result<Arc<Claims>, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed(format!(
                "the token is longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let verifier = self
            .inner
            .verifier(role)
            .ok_or(AuthError::NotConfigured(role))?;

        let cached = verifier.cache.read().get(token).cloned();
        if let Some(claims) = cached {
            if expired(&claims, now) {
                verifier.cache.write().remove(token);
                return Err(AuthError::Expired);
            }
            return Ok(claims);
        }

        let claims = Arc::new(verifier.check(token)?);
        // Freshly verified against the system clock; a token that expires between the check
        // and this insert is caught on its next lookup.
        let mut cache = verifier.cache.write();
        if cache.len() >= CACHE_CAPACITY
            && !cache.contains_key(token)
            && let Some(victim) = cache.keys().next().cloned()
        {
            cache.remove(&victim);
        }
        cache.insert(token.into(), Arc::clone(&claims));
        Ok(claims)
    }

    #[cfg(test)]
    fn cached(&self, role: Role) -> usize {
        self.inner
            .verifier(role)
            .map_or(0, |v| v.cache.read().len())
    }
}

impl Inner {
    fn verifier(&self, role: Role) -> Option<&Verifier> {
        match role {
            Role::Publisher => self.publisher.as_ref(),
            Role::Subscriber => self.subscriber.as_ref(),
        }
    }
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Algorithms only: never keys, never cached tokens.
        f.debug_struct("Authorizer")
            .field("publisher", &self.algorithm(Role::Publisher))
            .field("subscriber", &self.algorithm(Role::Subscriber))
            .finish_non_exhaustive()
    }
}

fn expired(claims: &Claims, now: u64) -> bool {
    claims
        .exp
        .is_some_and(|exp| exp.saturating_add(LEEWAY_SECS) < now)
}

impl Verifier {
    fn new(config: &KeyConfig) -> Result<Self, KeyError> {
        let key = key::decoding_key(config)?;
        let mut validation = Validation::new(config.algorithm.to_jwt());
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = LEEWAY_SECS;
        Ok(Verifier {
            algorithm: config.algorithm,
            key,
            validation,
            cache: RwLock::new(HashMap::new()),
        })
    }

    /// The full, uncached check.
    fn check(&self, token: &str) -> Result<Claims, AuthError> {
        match jsonwebtoken::decode_header(token) {
            Ok(header) => {
                if header.alg != self.algorithm.to_jwt() {
                    return Err(AuthError::WrongAlgorithm);
                }
                if header.crit.is_some() {
                    return Err(AuthError::Malformed(
                        "the token has critical header parameters we do not support".into(),
                    ));
                }
            }
            // The library only knows real algorithms, so `"alg": "none"` fails to parse; look
            // at the raw header to report that as the algorithm problem it is.
            Err(e) => {
                return Err(match header_alg(token) {
                    Some(alg) if alg != self.algorithm.as_str() => AuthError::WrongAlgorithm,
                    _ => map_error(e.kind()),
                });
            }
        }
        let data = jsonwebtoken::decode::<Value>(token, &self.key, &self.validation)
            .map_err(|e| map_error(e.kind()))?;
        Claims::from_payload(data.claims)
    }
}

/// Translates the library's error into ours, with fixed messages (the library's messages can
/// quote decoded token content).
fn map_error(kind: &ErrorKind) -> AuthError {
    let malformed = |what: &str| AuthError::Malformed(what.to_string());
    match kind {
        ErrorKind::InvalidSignature => AuthError::InvalidSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => AuthError::WrongAlgorithm,
        ErrorKind::InvalidToken => malformed("not a compact JWS (three dot-separated parts)"),
        ErrorKind::Base64(_) => malformed("invalid base64url encoding"),
        ErrorKind::Json(_) => malformed("invalid JSON in the header or claims"),
        ErrorKind::Utf8(_) => malformed("invalid UTF-8 in the header or claims"),
        ErrorKind::InvalidClaimFormat(claim) if claim == "exp" || claim == "nbf" => {
            AuthError::Malformed(format!("the `{claim}` claim is not a number"))
        }
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::MissingRequiredClaim(_) => {
            malformed("invalid registered claim")
        }
        // Key problems cannot happen with keys checked at load time, and the remaining kinds
        // belong to checks we do not enable. Fail closed.
        _ => AuthError::InvalidSignature,
    }
}

/// The `alg` of a token's header, read without the signature library (used only to classify
/// a header the library could not parse).
fn header_alg(token: &str) -> Option<String> {
    let header = token.split('.').next()?;
    let bytes = base64url_decode(header)?;
    let value: Value = serde_json::from_slice(&bytes).ok()?;
    Some(value.get("alg")?.as_str()?.to_owned())
}

/// Unpadded base64url (RFC 4648 section 5), as JWS uses; `None` on any invalid input.
fn base64url_decode(s: &str) -> Option<Vec<u8>> {
    fn sextet(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        } as u32)
    }
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    for chunk in s.as_bytes().chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | sextet(c)?;
        }
        // 4 chars carry 3 bytes, 3 carry 2, 2 carry 1; the spare low bits are padding.
        let bytes = chunk.len() * 6 / 8;
        acc <<= 6 * (4 - chunk.len() as u32);
        out.extend_from_slice(&acc.to_be_bytes()[1..=bytes]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::encode_token;

    const SECRET: &str = "test-secret-for-the-cache";

    fn hs() -> KeyConfig {
        KeyConfig::new(Algorithm::HS256, SECRET)
    }

    #[test]
    fn base64url() {
        assert_eq!(base64url_decode("").unwrap(), b"");
        assert_eq!(base64url_decode("Zg").unwrap(), b"f");
        assert_eq!(base64url_decode("Zm8").unwrap(), b"fo");
        assert_eq!(base64url_decode("Zm9v").unwrap(), b"foo");
        assert_eq!(base64url_decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(base64url_decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(base64url_decode("Z").is_none());
        assert!(base64url_decode("Zm9v=").is_none());
        assert!(base64url_decode("Zm+v").is_none());
    }

    #[test]
    fn cached_token_is_checked_for_expiry_on_every_use() {
        let auth = Authorizer::new(None, Some(hs())).unwrap();
        let token =
            encode_token(&hs(), None, Some(&["*"]), Some(Duration::from_secs(100))).unwrap();
        let now = key::unix_now();
        let first = auth.verify_at(&token, Role::Subscriber, now).unwrap();
        assert_eq!(auth.cached(Role::Subscriber), 1);
        // Still valid within the leeway, served from the cache.
        let hit = auth
            .verify_at(&token, Role::Subscriber, now + 100 + LEEWAY_SECS)
            .unwrap();
        assert!(Arc::ptr_eq(&first, &hit));
        // Past exp + leeway: rejected although cached, and dropped from the cache.
        assert_eq!(
            auth.verify_at(&token, Role::Subscriber, now + 101 + LEEWAY_SECS)
                .unwrap_err(),
            AuthError::Expired
        );
        assert_eq!(auth.cached(Role::Subscriber), 0);
    }

    #[test]
    fn cache_is_bounded_and_failures_are_not_cached() {
        let auth = Authorizer::new(Some(hs()), None).unwrap();
        let bad =
            encode_token(&KeyConfig::new(Algorithm::HS256, "other"), None, None, None).unwrap();
        assert!(auth.verify(&bad, Role::Publisher).is_err());
        assert_eq!(auth.cached(Role::Publisher), 0);

        let first = encode_token(&hs(), Some(&["urn:0"]), None, None).unwrap();
        auth.verify(&first, Role::Publisher).unwrap();
        for i in 1..CACHE_CAPACITY + 10 {
            let topic = format!("urn:{i}");
            let t = encode_token(&hs(), Some(&[topic.as_str()]), None, None).unwrap();
            auth.verify(&t, Role::Publisher).unwrap();
            assert!(auth.cached(Role::Publisher) <= CACHE_CAPACITY);
        }
        assert_eq!(auth.cached(Role::Publisher), CACHE_CAPACITY);
        // An evicted token is simply verified again.
        assert!(
            auth.verify(&first, Role::Publisher)
                .unwrap()
                .can_publish_all(["urn:0"])
        );
    }

    #[test]
    fn roles_have_separate_caches() {
        let auth = Authorizer::new(Some(hs()), Some(hs())).unwrap();
        let token = encode_token(&hs(), Some(&["*"]), Some(&["*"]), None).unwrap();
        let p = auth.verify(&token, Role::Publisher).unwrap();
        let s = auth.verify(&token, Role::Subscriber).unwrap();
        assert!(!Arc::ptr_eq(&p, &s));
        assert_eq!(auth.cached(Role::Publisher), 1);
        assert_eq!(auth.cached(Role::Subscriber), 1);
    }
}
