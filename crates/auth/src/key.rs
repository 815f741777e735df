//! Signing algorithms and key material: parsing an algorithm name, loading a verification key
//! (an HMAC secret, or a PEM public key given inline or as a file path), and minting tokens for
//! tests, the CLI and demos ([`encode_token`]).
//!
//! Every key is checked when it is loaded, so a misconfigured hub fails at start-up rather than
//! on the first request. Nothing here ever prints key material: [`KeyConfig`]'s `Debug` redacts
//! the key and [`KeyError`] messages never quote it.

use std::fmt;
use std::io::Read as _;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{DecodingKey, EncodingKey, Header};
use serde_json::{Map, Value};

/// JWS algorithms a hub can be configured with. `none` is deliberately not one of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// HMAC with SHA-256 (shared secret).
    HS256,
    /// HMAC with SHA-384 (shared secret).
    HS384,
    /// HMAC with SHA-512 (shared secret).
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// EdDSA with Ed25519 (RFC 8037).
    EdDSA,
}

/// Every algorithm, for parsing and for error messages.
pub(crate) const ALL: [Algorithm; 12] = [
    Algorithm::HS256,
    Algorithm::HS384,
    Algorithm::HS512,
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::EdDSA,
];

/// The key family an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

impl Algorithm {
    /// The JWS `alg` name, as it appears in token headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether the key is a shared secret (HS*) rather than a key pair.
    pub fn is_hmac(self) -> bool {
        self.family() == Family::Hmac
    }

    pub(crate) fn family(self) -> Family {
        match self {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => Family::Hmac,
            Algorithm::ES256 | Algorithm::ES384 => Family::Ec,
            Algorithm::EdDSA => Family::Ed,
            _ => Family::Rsa,
        }
    }

    /// The algorithm of a JWS `alg` name, exactly as spelled in a token header (`none` and
    /// unsupported names are `None`).
    pub(crate) fn from_header(alg: &str) -> Option<Algorithm> {
        ALL.into_iter().find(|a| a.as_str() == alg)
    }

    pub(crate) fn to_jwt(self) -> jsonwebtoken::Algorithm {
        use jsonwebtoken::Algorithm as J;
        match self {
            Algorithm::HS256 => J::HS256,
            Algorithm::HS384 => J::HS384,
            Algorithm::HS512 => J::HS512,
            Algorithm::RS256 => J::RS256,
            Algorithm::RS384 => J::RS384,
            Algorithm::RS512 => J::RS512,
            Algorithm::ES256 => J::ES256,
            Algorithm::ES384 => J::ES384,
            Algorithm::PS256 => J::PS256,
            Algorithm::PS384 => J::PS384,
            Algorithm::PS512 => J::PS512,
            Algorithm::EdDSA => J::EdDSA,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = KeyError;

    /// Parses an algorithm name, ignoring ASCII case (`hs256` and `HS256` are the same; config
    /// files and environment variables are written both ways).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ALL.into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| KeyError::UnknownAlgorithm(s.chars().take(32).collect()))
    }
}

/// A key for one role: the algorithm and the key text.
///
/// For HS* the key is the shared secret, used byte for byte (no base64 decoding, as in the
/// Mercure reference hub). For RS*, PS*, ES* and EdDSA it is PEM text (`-----BEGIN ...`) or, when it
/// contains no PEM header, a path to a PEM file, read when the key is loaded. Verification needs
/// a public key; [`encode_token`] needs a private key.
#[derive(Clone)]
pub struct KeyConfig {
    /// The algorithm tokens must be signed with.
    pub algorithm: Algorithm,
    /// The secret (HS*), or PEM text or a PEM file path (RS*, PS*, ES*, EdDSA).
    pub key: String,
}

impl KeyConfig {
    /// Shorthand for the struct literal.
    pub fn new(algorithm: Algorithm, key: impl Into<String>) -> Self {
        KeyConfig {
            algorithm,
            key: key.into(),
        }
    }
}

impl fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyConfig")
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Why a key could not be loaded or a token could not be signed. Messages never include key
/// material or the path text (which might be key material passed in the wrong place).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// Not one of the supported algorithm names (the name is truncated to 32 characters).
    #[error(
        "unknown JWT algorithm {0:?} (expected one of HS256, HS384, HS512, RS256, RS384, RS512, \
         ES256, ES384, PS256, PS384, PS512, EdDSA)"
    )]
    UnknownAlgorithm(String),
    /// An HS* secret is empty, which would let anyone forge tokens.
    #[error("the {0} secret is empty")]
    EmptySecret(Algorithm),
    /// The key is not PEM text, and reading it as a file path failed.
    #[error("the {algorithm} key is neither PEM text nor a readable PEM file: {source}")]
    Read {
        /// The algorithm the key was for.
        algorithm: Algorithm,
        /// The I/O error from reading the path.
        #[source]
        source: std::io::Error,
    },
    /// The key was read but is not a usable key for the algorithm.
    #[error("invalid {algorithm} key: {reason}")]
    InvalidKey {
        /// The algorithm the key was for.
        algorithm: Algorithm,
        /// What is wrong with it.
        reason: String,
    },
    /// Signing failed (only from [`encode_token`]).
    #[error("cannot sign the token: {0}")]
    Sign(String),
    /// The trusted issuers are not a usable configuration; the text says what to change.
    #[error("{0}")]
    Config(String),
}

/// Largest key file we read; a PEM key is a few KiB at most, and the cap keeps a mistaken path
/// (a log file, `/dev/zero`) from eating memory.
const MAX_KEY_FILE: u64 = 1 << 20;

/// The PEM text of an asymmetric key: the key itself, or the contents of the file it names.
fn pem_text(config: &KeyConfig) -> Result<String, KeyError> {
    if config.key.contains("-----BEGIN") {
        return Ok(config.key.clone());
    }
    let read = |source| KeyError::Read {
        algorithm: config.algorithm,
        source,
    };
    let file = std::fs::File::open(config.key.trim()).map_err(read)?;
    let mut text = String::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_string(&mut text)
        .map_err(read)?;
    if text.len() as u64 > MAX_KEY_FILE {
        return Err(KeyError::InvalidKey {
            algorithm: config.algorithm,
            reason: "the key file is larger than 1 MiB".into(),
        });
    }
    Ok(text)
}

fn invalid(algorithm: Algorithm, reason: impl fmt::Display) -> KeyError {
    KeyError::InvalidKey {
        algorithm,
        reason: reason.to_string(),
    }
}

/// Loads and checks a verification key.
pub(crate) fn decoding_key(config: &KeyConfig) -> Result<DecodingKey, KeyError> {
    let alg = config.algorithm;
    let key = match alg.family() {
        Family::Hmac => {
            if config.key.is_empty() {
                return Err(KeyError::EmptySecret(alg));
            }
            DecodingKey::from_secret(config.key.as_bytes())
        }
        Family::Rsa => DecodingKey::from_rsa_pem(pem_text(config)?.as_bytes())
            .map_err(|e| invalid(alg, format_args!("not an RSA public key in PEM ({e})")))?,
        Family::Ec => DecodingKey::from_ec_pem(pem_text(config)?.as_bytes())
            .map_err(|e| invalid(alg, format_args!("not an EC public key in PEM ({e})")))?,
        Family::Ed => DecodingKey::from_ed_pem(pem_text(config)?.as_bytes())
            .map_err(|e| invalid(alg, format_args!("not an Ed25519 public key in PEM ({e})")))?,
    };
    // The PEM parsers accept some keys the verifier cannot use (an RSA private key, a P-384
    // key for ES256); left alone, those would surface as "invalid signature" on every request.
    // Converting to a JWK parses the public key proper (the RSA verifier only parses it when it
    // verifies), and checking a dummy signature builds the verifier, which checks the curve.
    let usable = alg.is_hmac() || jsonwebtoken::jwk::Jwk::from_decoding_key(&key, None).is_ok();
    let usable = usable && jsonwebtoken::crypto::verify("AA", b"probe", &key, alg.to_jwt()).is_ok();
    if !usable {
        return Err(invalid(
            alg,
            match alg.family() {
                Family::Hmac => "unusable secret",
                Family::Rsa => "not an RSA public key",
                Family::Ec if alg == Algorithm::ES256 => "not a P-256 public key",
                Family::Ec => "not a P-384 public key",
                Family::Ed => "not an Ed25519 public key",
            },
        ));
    }
    Ok(key)
}

/// Loads a signing key (the secret, or a PEM *private* key).
pub(crate) fn encoding_key(config: &KeyConfig) -> Result<EncodingKey, KeyError> {
    let alg = config.algorithm;
    match alg.family() {
        Family::Hmac => {
            if config.key.is_empty() {
                return Err(KeyError::EmptySecret(alg));
            }
            Ok(EncodingKey::from_secret(config.key.as_bytes()))
        }
        Family::Rsa => EncodingKey::from_rsa_pem(pem_text(config)?.as_bytes())
            .map_err(|e| invalid(alg, format_args!("not an RSA private key in PEM ({e})"))),
        Family::Ec => EncodingKey::from_ec_pem(pem_text(config)?.as_bytes())
            .map_err(|e| invalid(alg, format_args!("not an EC private key in PEM ({e})"))),
        Family::Ed => EncodingKey::from_ed_pem(pem_text(config)?.as_bytes())
            .map_err(|e| invalid(alg, format_args!("not an Ed25519 private key in PEM ({e})"))),
    }
}

/// Mints a 0.x Mercure token: `{"mercure": {"publish": [...], "subscribe": [...]}, "iat": now,
/// "exp": now + ttl}` (accepted only by a hub running the legacy protocol; see
/// [`crate::TokenSpec`] for 1.0 tokens).
///
/// For HS* `key` is the shared secret; for RS*, PS*, ES* and EdDSA it must be a PEM **private** key
/// (inline or a path). `None` for `publish` or `subscribe` leaves that key out of the claim
/// (no rights); `None` for `ttl` leaves out `exp` (the token never expires, as Mercure allows).
pub fn encode_token(
    key: &KeyConfig,
    publish: Option<&[&str]>,
    subscribe: Option<&[&str]>,
    ttl: Option<Duration>,
) -> Result<String, KeyError> {
    let encoding = encoding_key(key)?;
    let mut mercure = Map::new();
    if let Some(p) = publish {
        mercure.insert("publish".into(), p.iter().copied().collect());
    }
    if let Some(s) = subscribe {
        mercure.insert("subscribe".into(), s.iter().copied().collect());
    }
    let mut claims = Map::new();
    claims.insert("mercure".into(), Value::Object(mercure));
    let now = unix_now();
    claims.insert("iat".into(), now.into());
    if let Some(ttl) = ttl {
        // Round a sub-second remainder up, so a TTL never yields a token that is already due.
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        claims.insert("exp".into(), now.saturating_add(secs).into());
    }
    jsonwebtoken::encode(
        &Header::new(key.algorithm.to_jwt()),
        &Value::Object(claims),
        &encoding,
    )
    .map_err(|e| sign_error(key, &e))
}

/// A signing failure as a [`KeyError`].
pub(crate) fn sign_error(key: &KeyConfig, e: &jsonwebtoken::errors::Error) -> KeyError {
    match e.kind() {
        jsonwebtoken::errors::ErrorKind::Json(_) => KeyError::Sign(e.to_string()),
        // The PEM loaders accept some keys that only fail when used (a public key, a key for
        // another curve): report those as the key problem they are.
        _ => invalid(
            key.algorithm,
            format_args!("cannot sign with this key; a private key is needed ({e})"),
        ),
    }
}

/// Seconds since the Unix epoch; a clock before 1970 reads as 0 rather than panicking.
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip_case_insensitively() {
        for alg in ALL {
            assert_eq!(alg.to_string().parse::<Algorithm>().unwrap(), alg);
            assert_eq!(
                alg.as_str().to_lowercase().parse::<Algorithm>().unwrap(),
                alg
            );
            assert_eq!(
                alg.to_jwt().family() == jsonwebtoken::AlgorithmFamily::Hmac,
                alg.is_hmac()
            );
        }
        assert_eq!("Es384".parse::<Algorithm>().unwrap(), Algorithm::ES384);
    }

    #[test]
    fn unknown_algorithms_are_rejected_on_one_line() {
        for name in [
            "none",
            "",
            "Ed25519",
            "HS 256",
            "HS256\nx",
            &"x".repeat(100),
        ] {
            let err = name.parse::<Algorithm>().unwrap_err();
            assert!(matches!(err, KeyError::UnknownAlgorithm(_)), "{name:?}");
            let text = err.to_string();
            assert!(!text.contains('\n'), "{text}");
            assert!(text.len() < 200, "{text}");
        }
    }

    #[test]
    fn key_config_debug_redacts_the_key() {
        let k = KeyConfig::new(Algorithm::HS256, "super-secret-value");
        let text = format!("{k:?}");
        assert!(!text.contains("super-secret-value"), "{text}");
        assert!(text.contains("HS256"));
    }

    #[test]
    fn empty_secret_is_rejected() {
        let k = KeyConfig::new(Algorithm::HS512, "");
        assert!(matches!(
            decoding_key(&k),
            Err(KeyError::EmptySecret(Algorithm::HS512))
        ));
        assert!(matches!(
            encode_token(&k, None, None, None),
            Err(KeyError::EmptySecret(Algorithm::HS512))
        ));
    }
}
