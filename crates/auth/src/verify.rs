//! Token verification for one hub: the [`Authorizer`] holds the trusted issuers (and, for the
//! 0.x protocol, per-role keys) and a bounded cache of tokens it has already verified, so steady
//! traffic with the same token (a publisher posting many updates, a browser reconnecting)
//! costs a hash lookup instead of a signature check.
//!
//! # Rules (Mercure 1.0, "Token Validation"; RFC 9068, RFC 8725)
//!
//! * The header's `typ` must be `at+jwt` (or `application/at+jwt`, any case), so an ID token
//!   or other JWT cannot pass as an access token. `crit` is refused (we implement no JWS
//!   extension); `jwk`, `jku` and `x5u` are never read: keys come only from configuration.
//! * `iss` must name a trusted issuer, and only that issuer's keys are tried. Its allowlist
//!   decides the algorithm, never the token; `none` is not an algorithm we know; a key is only
//!   used with an algorithm of its own type.
//! * `exp` is required and enforced, `nbf` enforced when present, both with [`LEEWAY_SECS`] of
//!   clock skew. `aud` is required, and [`Authorizer::verify_for`] checks that it holds the
//!   hub's resource identifier (per request: a hub reachable under several names derives it
//!   from each request, so it is not part of the cached verification).
//! * Tokens longer than [`MAX_TOKEN_LEN`] are malformed: this bounds the work and memory one
//!   request can cause, including the matchers built from its grants.
//!
//! With the legacy (0.x) protocol on, the checks 1.0 added are relaxed as the reference hub's
//! compatibility mode does: `typ`, `exp`, `aud` and `iss` may be absent (`aud`, when present,
//! must still name this hub), the `mercure` claim is read, and a token whose `iss` names no
//! trusted issuer is verified with the per-role keys of [`AuthorizerBuilder::legacy_keys`].
//!
//! # Cache
//!
//! Each role has its own map from token text to the verified [`Claims`] (an `Arc`, so a hit
//! returns the very same allocation). At most [`CACHE_CAPACITY`] tokens per role are kept;
//! inserting into a full map first drops every expired entry (at most once a second), then, if
//! the map is still full, one arbitrary entry, which is good enough because live tokens are re-inserted on their next use. A hit is still checked against `exp` every
//! time, and an expired entry is dropped. Failures are never cached: a bad token costs a full
//! check each time, but it cannot push good tokens out, and entries can only be created by
//! whoever holds a signing key. Worst case memory is about `2 * CACHE_CAPACITY *
//! MAX_TOKEN_LEN` bytes plus the claims.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use jsonwebtoken::DecodingKey;
use parking_lot::RwLock;
use serde::Deserialize;
use serde_json::Value;

use crate::claims::{Claims, numeric_date};
use crate::issuer::{Candidates, Issuer, TrustedIssuer};
use crate::key::{self, Algorithm, KeyConfig, KeyError};
use crate::{AuthError, Role};

/// Clock skew tolerated on `exp` and `nbf`, in seconds: enough for unsynchronised issuer and
/// hub clocks, small enough that an expired token is not usable for long.
pub const LEEWAY_SECS: u64 = 5;

/// Longest token accepted, in bytes. Browsers cap a cookie at 4 KiB; 16 KiB leaves room for
/// tokens with long grant lists sent in a header.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Verified tokens kept per role.
pub const CACHE_CAPACITY: usize = 4096;

/// Verifies access tokens. Cheap to clone (one `Arc`); clones share keys and cache.
#[derive(Clone)]
pub struct Authorizer {
    inner: Arc<Inner>,
}

struct Inner {
    legacy: bool,
    issuers: HashMap<String, TrustedIssuer>,
    /// 0.x per-role keys (publisher, subscriber), for tokens whose `iss` names no issuer.
    legacy_keys: [Option<LegacyKey>; 2],
    caches: [RwLock<Cache>; 2],
}

/// One role's verified tokens.
#[derive(Default)]
struct Cache {
    /// Keyed by the token's bytes with a fast seeded hasher rather than SipHash (which cost
    /// ~0.6 % of a publish over ~450-byte tokens): only tokens that verified are inserted, so
    /// a client cannot fill a bucket with colliding keys without valid signatures.
    map: HashMap<Box<str>, Arc<Claims>, foldhash::fast::RandomState>,
    /// When expired entries were last swept out (Unix seconds).
    swept_at: u64,
}

struct LegacyKey {
    algorithm: Algorithm,
    key: DecodingKey,
}

/// Builds an [`Authorizer`]: the trusted issuers, and whether the 0.x protocol is accepted.
#[derive(Debug, Default)]
pub struct AuthorizerBuilder {
    issuers: Vec<Issuer>,
    legacy: bool,
    legacy_publisher: Option<KeyConfig>,
    legacy_subscriber: Option<KeyConfig>,
}

impl AuthorizerBuilder {
    /// Trusts an issuer (several may be trusted; their identifiers must differ).
    pub fn issuer(mut self, issuer: Issuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Accepts the pre-1.0 protocol's tokens too (see the module documentation). This weakens
    /// validation; turn it on only while 0.x clients remain.
    pub fn legacy(mut self, yes: bool) -> Self {
        self.legacy = yes;
        self
    }

    /// 0.x keys bound to no issuer, per role; implies [`AuthorizerBuilder::legacy`].
    pub fn legacy_keys(
        mut self,
        publisher: Option<KeyConfig>,
        subscriber: Option<KeyConfig>,
    ) -> Self {
        self.legacy = true;
        self.legacy_publisher = publisher;
        self.legacy_subscriber = subscriber;
        self
    }

    /// Loads every key and checks the configuration (a misconfigured hub fails at start-up,
    /// not on its first request).
    pub fn build(self) -> Result<Authorizer, KeyError> {
        let mut issuers = HashMap::with_capacity(self.issuers.len());
        for issuer in self.issuers {
            let loaded = issuer.load()?;
            if issuers.contains_key(&loaded.id) {
                return Err(KeyError::Config(format!(
                    "issuer {:?} is configured twice",
                    loaded.id
                )));
            }
            issuers.insert(loaded.id.clone(), loaded);
        }
        let legacy_key = |config: Option<KeyConfig>| {
            config
                .map(|c| {
                    Ok::<_, KeyError>(LegacyKey {
                        algorithm: c.algorithm,
                        key: key::decoding_key(&c)?,
                    })
                })
                .transpose()
        };
        Ok(Authorizer {
            inner: Arc::new(Inner {
                legacy: self.legacy,
                issuers,
                legacy_keys: [
                    legacy_key(self.legacy_publisher)?,
                    legacy_key(self.legacy_subscriber)?,
                ],
                caches: Default::default(),
            }),
        })
    }
}

/// The parts of a JWS header we read.
#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    crit: Option<Value>,
}

impl Authorizer {
    /// A builder for a 1.0 authorizer (add issuers) or a legacy one.
    pub fn builder() -> AuthorizerBuilder {
        AuthorizerBuilder::default()
    }

    /// The 0.x authorizer: one key per role, bound to no issuer, legacy protocol on. A role
    /// without a key rejects every token with [`AuthError::NotConfigured`].
    pub fn new(
        publisher: Option<KeyConfig>,
        subscriber: Option<KeyConfig>,
    ) -> Result<Self, KeyError> {
        Authorizer::builder()
            .legacy_keys(publisher, subscriber)
            .build()
    }

    /// Whether the pre-1.0 protocol is accepted.
    pub fn is_legacy(&self) -> bool {
        self.inner.legacy
    }

    /// The identifiers of the trusted issuers marked as authorization servers (for the
    /// protected resource metadata), sorted.
    pub fn authorization_servers(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .inner
            .issuers
            .values()
            .filter(|i| i.authorization_server)
            .map(|i| i.id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Whether some trusted issuer's keys come from a JWK Set (so a token may name a key the
    /// hub has not fetched yet; see [`Authorizer::verify_refreshing`]).
    pub fn has_jwks(&self) -> bool {
        self.inner.issuers.values().any(|i| i.jwks.is_some())
    }

    /// The algorithm of the 0.x key configured for `role`, or `None` when it has none.
    pub fn algorithm(&self, role: Role) -> Option<Algorithm> {
        self.inner.legacy_keys[role_index(role)]
            .as_ref()
            .map(|k| k.algorithm)
    }

    /// Verifies `token` for `role` and returns its claims, from the cache when possible. Every
    /// check but the audience's (see [`Authorizer::verify_for`]).
    /// Relative `urlpattern` grants need the hub's URL: such a token fails here, and passes
    /// [`Authorizer::verify_for`].
    pub fn verify(&self, token: &str, role: Role) -> Result<Arc<Claims>, AuthError> {
        self.verify_at(token, role, None, key::unix_now())
    }

    /// [`Authorizer::verify`], then the audience: `resource` (the hub's resource identifier)
    /// must be in the token's `aud` (legacy tokens may have none).
    pub fn verify_for(
        &self,
        token: &str,
        role: Role,
        resource: &str,
    ) -> Result<Arc<Claims>, AuthError> {
        let claims = self.verify_at(token, role, Some(resource), key::unix_now())?;
        let absent_ok = self.inner.legacy && claims.audience.is_empty();
        if absent_ok || claims.has_audience(resource) {
            Ok(claims)
        } else {
            Err(AuthError::WrongAudience)
        }
    }

    /// [`Authorizer::verify_for`], and when the token names a key its issuer's JWK Set does not
    /// have (yet), one rate-limited refresh of that set before the answer (key rotation).
    pub async fn verify_refreshing(
        &self,
        token: &str,
        role: Role,
        resource: &str,
    ) -> Result<Arc<Claims>, AuthError> {
        match self.verify_for(token, role, resource) {
            Err(AuthError::UnknownKey) => {
                let jwks = payload(token)
                    .ok()
                    .and_then(|p| p.get("iss")?.as_str().map(str::to_owned))
                    .and_then(|iss| self.inner.issuers.get(&iss)?.jwks.clone());
                match jwks {
                    Some(jwks) if jwks.refresh_for_unknown_kid().await => {
                        self.verify_for(token, role, resource)
                    }
                    _ => Err(AuthError::UnknownKey),
                }
            }
            other => other,
        }
    }

    /// [`Authorizer::verify`] with "now" given explicitly (tests use it to age cached entries).
    /// `resource` is the base of relative `urlpattern` grants: a cached token whose grants were
    /// resolved against another base is read again.
    fn verify_at(
        &self,
        token: &str,
        role: Role,
        resource: Option<&str>,
        now: u64,
    ) -> Result<Arc<Claims>, AuthError> {
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed(format!(
                "the token is longer than {MAX_TOKEN_LEN} bytes"
            )));
        }
        let cache = &self.inner.caches[role_index(role)];
        let cached = cache.read().map.get(token).cloned();
        if let Some(claims) = cached.filter(|c| c.base.is_none() || c.base.as_deref() == resource) {
            if expired(&claims, now) {
                cache.write().map.remove(token);
                return Err(AuthError::Expired);
            }
            return Ok(claims);
        }

        let claims = Arc::new(self.check(token, role, resource, now)?);
        let mut cache = cache.write();
        if cache.map.len() >= CACHE_CAPACITY && !cache.map.contains_key(token) {
            // Expired tokens go first, in a sweep at most once a second (so a cache full of
            // live tokens does not pay a sweep per insert); otherwise any one makes room.
            if now > cache.swept_at {
                cache.swept_at = now;
                cache.map.retain(|_, c| !expired(c, now));
            }
            if cache.map.len() >= CACHE_CAPACITY
                && let Some(victim) = cache.map.keys().next().cloned()
            {
                cache.map.remove(&victim);
            }
        }
        cache.map.insert(token.into(), Arc::clone(&claims));
        Ok(claims)
    }

    /// The full, uncached check.
    fn check(
        &self,
        token: &str,
        role: Role,
        resource: Option<&str>,
        now: u64,
    ) -> Result<Claims, AuthError> {
        let legacy = self.inner.legacy;
        let (signed, signature) = token
            .rsplit_once('.')
            .filter(|(signed, _)| signed.matches('.').count() == 1)
            .ok_or_else(|| malformed("not a compact JWS (three dot-separated parts)"))?;
        let header: Header = base64url_decode(signed.split('.').next().unwrap_or(""))
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| malformed("the header is not base64url-encoded JSON with an `alg`"))?;
        if header.crit.is_some() {
            return Err(malformed(
                "the token has critical header parameters we do not support",
            ));
        }
        let alg = Algorithm::from_header(&header.alg).ok_or(AuthError::WrongAlgorithm)?;
        let typed = header.typ.as_deref().is_some_and(is_access_token_type);
        if !typed && !legacy {
            return Err(AuthError::WrongType);
        }
        let payload = payload(token)?;
        let iss = payload.get("iss").and_then(Value::as_str);

        let issuer = iss.and_then(|iss| self.inner.issuers.get(iss));
        let keys = match issuer {
            Some(issuer) => match issuer.keys_for(alg, header.kid.as_deref(), role) {
                Candidates::Keys(keys) => keys,
                Candidates::AlgorithmRefused => return Err(AuthError::WrongAlgorithm),
                Candidates::NoKey => return Err(AuthError::NotConfigured(role)),
                Candidates::UnknownKey => return Err(AuthError::UnknownKey),
            },
            None if legacy => match &self.inner.legacy_keys[role_index(role)] {
                Some(k) if k.algorithm == alg => vec![k.key.clone()],
                Some(_) => return Err(AuthError::WrongAlgorithm),
                None => return Err(AuthError::NotConfigured(role)),
            },
            None if iss.is_none() => return Err(AuthError::MissingClaim("iss")),
            None => return Err(AuthError::UntrustedIssuer),
        };
        let verified = keys.iter().any(|key| {
            jsonwebtoken::crypto::verify(signature, signed.as_bytes(), key, alg.to_jwt())
                .unwrap_or(false)
        });
        if !verified {
            return Err(AuthError::InvalidSignature);
        }

        let nbf = match payload.as_object() {
            Some(claims) => numeric_date(claims, "nbf")?,
            None => None,
        };
        let mut claims = Claims::from_payload(payload, legacy, resource)?;
        claims.access_token = typed && issuer.is_some();
        match claims.exp {
            None if !legacy => return Err(AuthError::MissingClaim("exp")),
            _ if expired(&claims, now) => return Err(AuthError::Expired),
            _ => {}
        }
        if claims.audience.is_empty() && !legacy {
            return Err(AuthError::MissingClaim("aud"));
        }
        // `nbf` is not kept in the claims: once valid, a token stays valid until `exp`.
        if let Some(nbf) = nbf
            && nbf > now.saturating_add(LEEWAY_SECS)
        {
            return Err(AuthError::NotYetValid);
        }
        Ok(claims)
    }

    #[cfg(test)]
    fn cached(&self, role: Role) -> usize {
        self.inner.caches[role_index(role)].read().map.len()
    }
}

fn role_index(role: Role) -> usize {
    match role {
        Role::Publisher => 0,
        Role::Subscriber => 1,
    }
}

/// `at+jwt`, with or without the `application/` prefix, in any case (RFC 7515 4.1.9, RFC 9068).
fn is_access_token_type(typ: &str) -> bool {
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    typ.eq_ignore_ascii_case("at+jwt")
}

impl fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Issuer identifiers and algorithms only: never keys, never cached tokens.
        let mut issuers: Vec<&str> = self.inner.issuers.keys().map(String::as_str).collect();
        issuers.sort_unstable();
        f.debug_struct("Authorizer")
            .field("legacy", &self.inner.legacy)
            .field("issuers", &issuers)
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

fn malformed(what: &str) -> AuthError {
    AuthError::Malformed(what.to_string())
}

/// The claims of a compact JWS, decoded but not verified.
fn payload(token: &str) -> Result<Value, AuthError> {
    let part = token
        .split('.')
        .nth(1)
        .ok_or_else(|| malformed("not a compact JWS (three dot-separated parts)"))?;
    let bytes = base64url_decode(part).ok_or_else(|| malformed("invalid base64url encoding"))?;
    serde_json::from_slice(&bytes).map_err(|_| malformed("invalid JSON in the claims"))
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
    fn access_token_types() {
        for ok in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/At+Jwt",
        ] {
            assert!(is_access_token_type(ok), "{ok}");
        }
        for bad in [
            "JWT",
            "",
            "application/jwt",
            "at+jwt ",
            "xapplication/at+jwt",
            "é",
        ] {
            assert!(!is_access_token_type(bad), "{bad}");
        }
    }

    #[test]
    fn cached_token_is_checked_for_expiry_on_every_use() {
        let auth = Authorizer::new(None, Some(hs())).unwrap();
        let token =
            encode_token(&hs(), None, Some(&["*"]), Some(Duration::from_secs(100))).unwrap();
        let now = key::unix_now();
        let first = auth.verify_at(&token, Role::Subscriber, None, now).unwrap();
        assert_eq!(auth.cached(Role::Subscriber), 1);
        // Still valid within the leeway, served from the cache.
        let hit = auth
            .verify_at(&token, Role::Subscriber, None, now + 100 + LEEWAY_SECS)
            .unwrap();
        assert!(Arc::ptr_eq(&first, &hit));
        // Past exp + leeway: rejected although cached, and dropped from the cache.
        assert_eq!(
            auth.verify_at(&token, Role::Subscriber, None, now + 101 + LEEWAY_SECS)
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
    fn a_full_cache_drops_expired_tokens_first() {
        let auth = Authorizer::new(Some(hs()), None).unwrap();
        let now = key::unix_now();
        let short = encode_token(
            &hs(),
            Some(&["urn:short"]),
            None,
            Some(Duration::from_secs(60)),
        )
        .unwrap();
        auth.verify_at(&short, Role::Publisher, None, now).unwrap();
        for i in 1..CACHE_CAPACITY {
            let topic = format!("urn:{i}");
            let t = encode_token(&hs(), Some(&[topic.as_str()]), None, None).unwrap();
            auth.verify_at(&t, Role::Publisher, None, now).unwrap();
        }
        assert_eq!(auth.cached(Role::Publisher), CACHE_CAPACITY);
        // Later, the short token has expired: the next insert sweeps it (and only it) out.
        let later = now + 60 + LEEWAY_SECS + 1;
        let fresh = encode_token(&hs(), Some(&["urn:fresh"]), None, None).unwrap();
        auth.verify_at(&fresh, Role::Publisher, None, later)
            .unwrap();
        assert_eq!(auth.cached(Role::Publisher), CACHE_CAPACITY);
        let cache = auth.inner.caches[0].read();
        assert!(!cache.map.contains_key(short.as_str()));
        assert!(cache.map.contains_key(fresh.as_str()));
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
