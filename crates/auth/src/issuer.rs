//! Trusted issuers: who may sign tokens for this hub, with which keys and algorithms.
//!
//! Mercure 1.0 ("Token Validation") binds every trusted key to the issuer identifier (`iss`) it
//! belongs to, and a token is verified only with the keys of the issuer it names, never a
//! pooled set: otherwise a token signed by one trusted issuer could claim to come from another.
//! An [`Issuer`] is that binding: static keys (each for both roles or for one), an optional
//! JWK Set ([`JwksSource`]), and the algorithm allowlist. The allowlist is the issuer's, never
//! the token's: by default the algorithms of its static keys, plus the asymmetric ones when it
//! has a JWK Set (a public key set never carries shared secrets).

use jsonwebtoken::DecodingKey;

use crate::Role;
use crate::jwks::JwksSource;
use crate::key::{self, Algorithm, KeyConfig, KeyError};

/// Algorithms accepted from an issuer's JWK Set when no allowlist is configured: every
/// asymmetric one we support (HMAC keys never come from a JWK Set).
const JWKS_DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::EdDSA,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
];

/// A trusted issuer's configuration. Build it, then hand it to
/// [`crate::AuthorizerBuilder::issuer`].
///
/// ```
/// use ssehub_auth::{Algorithm, Issuer, KeyConfig};
///
/// let issuer = Issuer::new("https://example.com")
///     .publisher_key(KeyConfig::new(Algorithm::HS256, "publisher-secret"))
///     .subscriber_key(KeyConfig::new(Algorithm::HS256, "subscriber-secret"));
/// assert_eq!(issuer.id(), "https://example.com");
/// ```
#[derive(Debug, Clone)]
pub struct Issuer {
    id: String,
    keys: Vec<(KeyConfig, Option<Role>)>,
    jwks: Option<JwksSource>,
    algorithms: Option<Vec<Algorithm>>,
    authorization_server: bool,
}

impl Issuer {
    /// An issuer whose tokens carry `iss` equal to `id` (compared exactly).
    pub fn new(id: impl Into<String>) -> Self {
        Issuer {
            id: id.into(),
            keys: Vec::new(),
            jwks: None,
            algorithms: None,
            authorization_server: false,
        }
    }

    /// The issuer identifier.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// A key that verifies this issuer's tokens for both roles.
    pub fn key(mut self, key: KeyConfig) -> Self {
        self.keys.push((key, None));
        self
    }

    /// A key that verifies this issuer's publisher tokens only.
    pub fn publisher_key(mut self, key: KeyConfig) -> Self {
        self.keys.push((key, Some(Role::Publisher)));
        self
    }

    /// A key that verifies this issuer's subscriber tokens only.
    pub fn subscriber_key(mut self, key: KeyConfig) -> Self {
        self.keys.push((key, Some(Role::Subscriber)));
        self
    }

    /// Keys from a JWK Set, for both roles.
    pub fn jwks(mut self, source: JwksSource) -> Self {
        self.jwks = Some(source);
        self
    }

    /// The algorithms this issuer's tokens may use (the default is described in the module
    /// documentation).
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Whether the issuer is an OAuth 2.0 authorization server to advertise in the hub's
    /// protected resource metadata (`authorization_servers`, RFC 9728).
    pub fn authorization_server(mut self, yes: bool) -> Self {
        self.authorization_server = yes;
        self
    }

    /// Loads the keys and checks the configuration.
    pub(crate) fn load(self) -> Result<TrustedIssuer, KeyError> {
        let config = |reason: &str| KeyError::Config(format!("issuer {:?}: {reason}", self.id));
        if self.id.is_empty() {
            return Err(KeyError::Config("an issuer identifier is empty".into()));
        }
        if self.keys.is_empty() && self.jwks.is_none() {
            return Err(config("no key and no JWK Set"));
        }
        let mut keys = Vec::with_capacity(self.keys.len());
        for (config, role) in &self.keys {
            keys.push(StaticKey {
                algorithm: config.algorithm,
                key: key::decoding_key(config)?,
                role: *role,
            });
        }
        let algorithms = match self.algorithms {
            Some(list) if list.is_empty() => return Err(config("the algorithm list is empty")),
            Some(list) => list,
            None => {
                let mut list: Vec<Algorithm> = keys.iter().map(|k| k.algorithm).collect();
                if self.jwks.is_some() {
                    list.extend(JWKS_DEFAULT_ALGORITHMS);
                }
                list.dedup();
                list
            }
        };
        Ok(TrustedIssuer {
            id: self.id,
            keys,
            jwks: self.jwks,
            algorithms,
            authorization_server: self.authorization_server,
        })
    }
}

/// A loaded issuer: decoded keys, ready to verify.
pub(crate) struct TrustedIssuer {
    pub(crate) id: String,
    keys: Vec<StaticKey>,
    pub(crate) jwks: Option<JwksSource>,
    algorithms: Vec<Algorithm>,
    pub(crate) authorization_server: bool,
}

struct StaticKey {
    algorithm: Algorithm,
    key: DecodingKey,
    role: Option<Role>,
}

/// What [`TrustedIssuer::keys_for`] found.
pub(crate) enum Candidates {
    /// Keys to try, in order.
    Keys(Vec<DecodingKey>),
    /// The algorithm is not on the issuer's allowlist.
    AlgorithmRefused,
    /// The issuer has no key for this role and algorithm (and no JWK Set to look in).
    NoKey,
    /// The JWK Set has no key for this `kid` / algorithm (yet: a refresh may bring it).
    UnknownKey,
}

impl TrustedIssuer {
    /// The keys that may verify a token of this issuer with header `alg` and `kid`, presented
    /// for `role`: static keys configured for that algorithm and role, then JWK Set keys whose
    /// `kid` matches (any, when the token has none), whose `alg` (when they state one) is the
    /// token's, and whose type fits the algorithm (no algorithm confusion).
    pub(crate) fn keys_for(&self, alg: Algorithm, kid: Option<&str>, role: Role) -> Candidates {
        if !self.algorithms.contains(&alg) {
            return Candidates::AlgorithmRefused;
        }
        let mut found: Vec<DecodingKey> = self
            .keys
            .iter()
            .filter(|k| k.algorithm == alg && k.role.is_none_or(|r| r == role))
            .map(|k| k.key.clone())
            .collect();
        if let Some(jwks) = &self.jwks {
            found.extend(
                jwks.keys()
                    .iter()
                    .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
                    .filter(|k| k.accepts(alg.to_jwt()))
                    .map(|k| k.key.clone()),
            );
            if found.is_empty() {
                return Candidates::UnknownKey;
            }
        }
        if found.is_empty() {
            Candidates::NoKey
        } else {
            Candidates::Keys(found)
        }
    }
}
