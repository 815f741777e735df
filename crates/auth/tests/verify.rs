//! Token verification: every supported algorithm with real keys, every way a token can be
//! wrong, key loading errors, and the cache's observable behaviour.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
use serde_json::{Value, json};
use ssehub_auth::{
    Algorithm, AuthError, Authorizer, KeyConfig, KeyError, MAX_TOKEN_LEN, Role, encode_token,
};

const SECRET: &str = "!ChangeThisMercureHubJWTSecretKey!";

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(fixture_path(name)).unwrap()
}

fn hs256() -> KeyConfig {
    KeyConfig::new(Algorithm::HS256, SECRET)
}

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Signs arbitrary claims with the library directly (for claims `encode_token` cannot make).
fn sign(alg: jsonwebtoken::Algorithm, key: &EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&Header::new(alg), claims, key).unwrap()
}

fn sign_hs256(claims: &Value) -> String {
    sign(
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(SECRET.as_bytes()),
        claims,
    )
}

fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, &b) in chunk.iter().enumerate() {
            n |= u32::from(b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(ABC[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// A token with a hand-written header and an arbitrary signature part.
fn raw_token(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        signature
    )
}

fn assert_rejected(auth: &Authorizer, token: &str, role: Role, expected: &AuthError) {
    let err = auth.verify(token, role).unwrap_err();
    assert_eq!(&err, expected, "token {token:?}");
    // The message is one line and never echoes the token or a piece of it.
    let text = err.to_string();
    assert!(!text.contains('\n'), "{text}");
    for part in token.split('.').filter(|p| p.len() > 3) {
        assert!(!text.contains(part), "{text} leaks {part}");
    }
}

#[test]
fn hs256_token_verifies_for_both_roles() {
    let auth = Authorizer::new(Some(hs256()), Some(hs256())).unwrap();
    let token = encode_token(
        &hs256(),
        Some(&["https://example.com/books/{id}"]),
        Some(&["https://example.com/users/1/{?topic}", "urn:exact"]),
        Some(Duration::from_secs(60)),
    )
    .unwrap();
    let p = auth.verify(&token, Role::Publisher).unwrap();
    assert!(p.can_publish_all(["https://example.com/books/1"]));
    assert!(!p.can_publish_all(["https://example.com/books/1/reviews"]));
    let s = auth.verify(&token, Role::Subscriber).unwrap();
    assert!(s.can_subscribe_any(["urn:exact"]));
    assert!(s.can_subscribe_any(["https://example.com/users/1/?topic=b"]));
    assert!(!s.can_subscribe_any(["urn:other"]));
    let exp = s.exp.unwrap();
    assert!((now() + 59..=now() + 61).contains(&exp), "{exp}");
}

#[test]
fn separate_publisher_and_subscriber_keys() {
    let publisher = KeyConfig::new(Algorithm::HS256, "publisher-secret");
    let subscriber = KeyConfig::new(Algorithm::HS512, "subscriber-secret");
    let auth = Authorizer::new(Some(publisher.clone()), Some(subscriber.clone())).unwrap();
    assert_eq!(auth.algorithm(Role::Publisher), Some(Algorithm::HS256));
    assert_eq!(auth.algorithm(Role::Subscriber), Some(Algorithm::HS512));

    let p = encode_token(&publisher, Some(&["*"]), None, None).unwrap();
    let s = encode_token(&subscriber, None, Some(&["*"]), None).unwrap();
    assert!(
        auth.verify(&p, Role::Publisher)
            .unwrap()
            .can_publish_all(["t"])
    );
    assert!(
        auth.verify(&s, Role::Subscriber)
            .unwrap()
            .can_subscribe_any(["t"])
    );
    // Each token only works for its own role.
    assert_rejected(&auth, &p, Role::Subscriber, &AuthError::WrongAlgorithm);
    assert_rejected(&auth, &s, Role::Publisher, &AuthError::WrongAlgorithm);
    // Same algorithm, other role's secret: the signature is what fails.
    let same_alg = KeyConfig::new(Algorithm::HS256, "subscriber-secret");
    let forged = encode_token(&same_alg, Some(&["*"]), None, None).unwrap();
    assert_rejected(
        &auth,
        &forged,
        Role::Publisher,
        &AuthError::InvalidSignature,
    );
}

#[test]
fn unconfigured_role_rejects_everything() {
    let auth = Authorizer::new(Some(hs256()), None).unwrap();
    let token = encode_token(&hs256(), None, Some(&["*"]), None).unwrap();
    assert_rejected(
        &auth,
        &token,
        Role::Subscriber,
        &AuthError::NotConfigured(Role::Subscriber),
    );
    assert_eq!(auth.algorithm(Role::Subscriber), None);
}

#[test]
fn rs256_with_pem_public_key_text_and_path() {
    let private = KeyConfig::new(Algorithm::RS256, fixture("rsa_private.pem"));
    let token = encode_token(&private, Some(&["*"]), None, None).unwrap();
    for public in [
        fixture("rsa_public.pem"),
        fixture_path("rsa_public.pem").display().to_string(),
    ] {
        let auth = Authorizer::new(Some(KeyConfig::new(Algorithm::RS256, public)), None).unwrap();
        assert!(
            auth.verify(&token, Role::Publisher)
                .unwrap()
                .can_publish_all(["x"])
        );
    }
    // A token signed with another RSA key.
    let other = KeyConfig::new(
        Algorithm::RS256,
        fixture_path("rsa_other_private.pem").display().to_string(),
    );
    let forged = encode_token(&other, Some(&["*"]), None, None).unwrap();
    let auth = Authorizer::new(
        Some(KeyConfig::new(Algorithm::RS256, fixture("rsa_public.pem"))),
        None,
    )
    .unwrap();
    assert_rejected(
        &auth,
        &forged,
        Role::Publisher,
        &AuthError::InvalidSignature,
    );
}

#[test]
fn es256_with_pem_public_key() {
    let private = KeyConfig::new(Algorithm::ES256, fixture("ec256_private.pem"));
    let token = encode_token(&private, None, Some(&["urn:a"]), None).unwrap();
    let auth = Authorizer::new(
        None,
        Some(KeyConfig::new(
            Algorithm::ES256,
            fixture("ec256_public.pem"),
        )),
    )
    .unwrap();
    let claims = auth.verify(&token, Role::Subscriber).unwrap();
    assert!(claims.can_subscribe_any(["urn:a"]));
    assert!(!claims.can_subscribe_any(["urn:b"]));
}

#[test]
fn every_algorithm_round_trips_through_encode_and_verify() {
    let cases = [
        (Algorithm::HS256, SECRET.to_string(), SECRET.to_string()),
        (Algorithm::HS384, SECRET.to_string(), SECRET.to_string()),
        (Algorithm::HS512, SECRET.to_string(), SECRET.to_string()),
        (
            Algorithm::RS256,
            fixture("rsa_private.pem"),
            fixture("rsa_public.pem"),
        ),
        (
            Algorithm::RS384,
            fixture("rsa_private.pem"),
            fixture("rsa_public.pem"),
        ),
        (
            Algorithm::RS512,
            fixture("rsa_private.pem"),
            fixture("rsa_public.pem"),
        ),
        (
            Algorithm::PS256,
            fixture("rsa_private.pem"),
            fixture("rsa_public.pem"),
        ),
        (
            Algorithm::PS384,
            fixture("rsa_private.pem"),
            fixture("rsa_public.pem"),
        ),
        (
            Algorithm::PS512,
            fixture("rsa_private.pem"),
            fixture("rsa_public.pem"),
        ),
        (
            Algorithm::ES256,
            fixture("ec256_private.pem"),
            fixture("ec256_public.pem"),
        ),
        (
            Algorithm::ES384,
            fixture("ec384_private.pem"),
            fixture("ec384_public.pem"),
        ),
    ];
    for (alg, private, public) in cases {
        let token = encode_token(
            &KeyConfig::new(alg, private),
            Some(&["https://example.com/{id}"]),
            Some(&["*"]),
            Some(Duration::from_millis(1500)),
        )
        .unwrap_or_else(|e| panic!("{alg}: {e}"));
        let public = KeyConfig::new(alg, public);
        let auth = Authorizer::new(Some(public.clone()), Some(public)).unwrap();
        let claims = auth
            .verify(&token, Role::Publisher)
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert!(claims.can_publish_all(["https://example.com/1"]), "{alg}");
        assert!(!claims.can_publish_all(["https://example.org/1"]), "{alg}");
        assert!(
            auth.verify(&token, Role::Subscriber)
                .unwrap()
                .can_subscribe_any(["x"])
        );
        // 1.5 s rounds up to 2 s.
        let exp = claims.exp.unwrap();
        assert!((now() + 1..=now() + 2).contains(&exp), "{alg}: {exp}");
    }
}

#[test]
fn token_without_ttl_has_no_exp() {
    let auth = Authorizer::new(Some(hs256()), None).unwrap();
    let token = encode_token(&hs256(), Some(&[]), None, None).unwrap();
    let claims = auth.verify(&token, Role::Publisher).unwrap();
    assert_eq!(claims.exp, None);
    assert_eq!(claims.publish.as_deref().map(<[_]>::len), Some(0));
    assert!(claims.subscribe.is_none());
    assert!(!claims.can_publish_all(["x"]));
}

#[test]
fn expiry_and_not_before() {
    let auth = Authorizer::new(Some(hs256()), None).unwrap();
    let expired = sign_hs256(&json!({"exp": now() - 60, "mercure": {"publish": ["*"]}}));
    assert_rejected(&auth, &expired, Role::Publisher, &AuthError::Expired);
    let early = sign_hs256(&json!({"nbf": now() + 60, "mercure": {"publish": ["*"]}}));
    assert_rejected(&auth, &early, Role::Publisher, &AuthError::NotYetValid);
    // Within the leeway both ways.
    let just_expired = sign_hs256(&json!({"exp": now() - 2, "nbf": now() + 2}));
    assert!(auth.verify(&just_expired, Role::Publisher).is_ok());
    // Non-numeric dates are malformed.
    let bad = sign_hs256(&json!({"exp": "tomorrow"}));
    assert!(matches!(
        auth.verify(&bad, Role::Publisher),
        Err(AuthError::Malformed(_))
    ));
    let bad = sign_hs256(&json!({"nbf": {"x": 1}}));
    assert!(matches!(
        auth.verify(&bad, Role::Publisher),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn wrong_key_is_an_invalid_signature() {
    let auth = Authorizer::new(Some(hs256()), None).unwrap();
    let token = encode_token(
        &KeyConfig::new(Algorithm::HS256, "not the secret"),
        Some(&["*"]),
        None,
        None,
    )
    .unwrap();
    assert_rejected(&auth, &token, Role::Publisher, &AuthError::InvalidSignature);
    // A tampered payload with the original signature.
    let good = encode_token(&hs256(), Some(&["urn:a"]), None, None).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let evil = b64url(
        json!({"mercure": {"publish": ["*"]}})
            .to_string()
            .as_bytes(),
    );
    let tampered = format!("{}.{}.{}", parts[0], evil, parts[2]);
    assert_rejected(
        &auth,
        &tampered,
        Role::Publisher,
        &AuthError::InvalidSignature,
    );
}

#[test]
fn alg_none_is_rejected() {
    let auth = Authorizer::new(Some(hs256()), Some(hs256())).unwrap();
    let claims = json!({"mercure": {"publish": ["*"], "subscribe": ["*"]}});
    for header in [
        json!({"alg": "none", "typ": "JWT"}),
        json!({"alg": "None"}),
        json!({"alg": "NONE"}),
        json!({"alg": "hs256"}),
        json!({"alg": "EdDSA"}),
    ] {
        for sig in ["", "AAAA"] {
            let token = raw_token(&header, &claims, sig);
            assert_rejected(&auth, &token, Role::Publisher, &AuthError::WrongAlgorithm);
            assert_rejected(&auth, &token, Role::Subscriber, &AuthError::WrongAlgorithm);
        }
    }
    // A header without `alg` at all is malformed.
    let token = raw_token(&json!({"typ": "JWT"}), &claims, "");
    assert!(matches!(
        auth.verify(&token, Role::Publisher),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn hs_token_presented_to_rs_configured_authorizer() {
    // The classic confusion attack: sign HS256 with the RSA *public* key as the HMAC secret.
    let public_pem = fixture("rsa_public.pem");
    let auth = Authorizer::new(
        Some(KeyConfig::new(Algorithm::RS256, public_pem.clone())),
        None,
    )
    .unwrap();
    let forged = sign(
        jsonwebtoken::Algorithm::HS256,
        &EncodingKey::from_secret(public_pem.as_bytes()),
        &json!({"mercure": {"publish": ["*"]}}),
    );
    assert_rejected(&auth, &forged, Role::Publisher, &AuthError::WrongAlgorithm);
}

#[test]
fn rs_token_presented_to_hs_configured_authorizer() {
    let auth = Authorizer::new(Some(hs256()), None).unwrap();
    let private = KeyConfig::new(Algorithm::RS256, fixture("rsa_private.pem"));
    let token = encode_token(&private, Some(&["*"]), None, None).unwrap();
    assert_rejected(&auth, &token, Role::Publisher, &AuthError::WrongAlgorithm);
    // Same family, other size.
    let hs384 = encode_token(
        &KeyConfig::new(Algorithm::HS384, SECRET),
        Some(&["*"]),
        None,
        None,
    )
    .unwrap();
    assert_rejected(&auth, &hs384, Role::Publisher, &AuthError::WrongAlgorithm);
    // ES token to an RS authorizer, PS token to an RS authorizer.
    let rs = Authorizer::new(
        Some(KeyConfig::new(Algorithm::RS256, fixture("rsa_public.pem"))),
        None,
    )
    .unwrap();
    let es = encode_token(
        &KeyConfig::new(Algorithm::ES256, fixture("ec256_private.pem")),
        Some(&["*"]),
        None,
        None,
    )
    .unwrap();
    assert_rejected(&rs, &es, Role::Publisher, &AuthError::WrongAlgorithm);
    let ps = encode_token(
        &KeyConfig::new(Algorithm::PS256, fixture("rsa_private.pem")),
        Some(&["*"]),
        None,
        None,
    )
    .unwrap();
    assert_rejected(&rs, &ps, Role::Publisher, &AuthError::WrongAlgorithm);
}

#[test]
fn garbage_tokens() {
    let auth = Authorizer::new(Some(hs256()), None).unwrap();
    assert_rejected(&auth, "", Role::Publisher, &AuthError::Missing);
    for garbage in [
        "abc",
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "...",
        "eyJhbGciOiJIUzI1NiJ9",
        "eyJhbGciOiJIUzI1NiJ9..",
        "eyJhbGciOiJIUzI1NiJ9.!!!.sig",
        "eyJhbGciOiJIUzI1NiJ9.e30.@@@",
        "Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc",
        "\u{0}\u{1}\u{2}",
        "é.é.é",
    ] {
        let err = auth.verify(garbage, Role::Publisher).unwrap_err();
        assert!(
            matches!(err, AuthError::Malformed(_) | AuthError::InvalidSignature),
            "{garbage:?}: {err:?}"
        );
        assert!(!err.to_string().contains('\n'));
    }
    // The payload must be a JSON object.
    let array_claims = raw_token(&json!({"alg": "HS256"}), &json!([1]), "");
    assert!(matches!(
        auth.verify(&array_claims, Role::Publisher),
        Err(AuthError::Malformed(_)) | Err(AuthError::InvalidSignature)
    ));
    let huge = "a".repeat(MAX_TOKEN_LEN + 1);
    assert!(matches!(
        auth.verify(&huge, Role::Publisher),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn critical_header_parameters_are_rejected() {
    let auth = Authorizer::new(Some(hs256()), None).unwrap();
    let mut header = Header::new(jsonwebtoken::Algorithm::HS256);
    header.crit = Some(vec!["exp".into()]);
    let token = jsonwebtoken::encode(
        &header,
        &json!({"mercure": {"publish": ["*"]}}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        auth.verify(&token, Role::Publisher),
        Err(AuthError::Malformed(_))
    ));
}

#[test]
fn missing_mercure_claim_is_valid_with_no_rights() {
    let auth = Authorizer::new(Some(hs256()), Some(hs256())).unwrap();
    let token = sign_hs256(&json!({"sub": "someone"}));
    let claims = auth.verify(&token, Role::Subscriber).unwrap();
    assert!(claims.publish.is_none() && claims.subscribe.is_none());
    assert!(!claims.can_subscribe_any(["x"]));
    assert!(!claims.can_publish_all(["x"]));
    // Wrong shapes are malformed, not silently empty.
    let token = sign_hs256(&json!({"mercure": {"publish": "*"}}));
    assert!(matches!(
        auth.verify(&token, Role::Publisher),
        Err(AuthError::Malformed(_))
    ));
    // Unparseable selectors are skipped; payload is kept; aud/iss are not checked.
    let token = sign_hs256(&json!({
        "aud": "https://elsewhere.example", "iss": "me",
        "mercure": {"subscribe": ["", 3, "urn:ok"], "payload": {"user": "u1"}}
    }));
    let claims = auth.verify(&token, Role::Subscriber).unwrap();
    assert_eq!(claims.subscribe.as_ref().unwrap().len(), 1);
    assert_eq!(claims.payload, Some(json!({"user": "u1"})));
}

#[test]
fn cache_hit_returns_the_same_arc() {
    let auth = Authorizer::new(Some(hs256()), None).unwrap();
    let token = encode_token(&hs256(), Some(&["*"]), None, None).unwrap();
    let a = auth.verify(&token, Role::Publisher).unwrap();
    let b = auth.verify(&token, Role::Publisher).unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    // Clones share the cache.
    let c = auth.clone().verify(&token, Role::Publisher).unwrap();
    assert!(Arc::ptr_eq(&a, &c));
    // Failures are not cached: a bad token keeps failing for the real reason.
    let bad = encode_token(&KeyConfig::new(Algorithm::HS256, "nope"), None, None, None).unwrap();
    for _ in 0..2 {
        assert_rejected(&auth, &bad, Role::Publisher, &AuthError::InvalidSignature);
    }
}

#[test]
fn concurrent_verification() {
    let auth = Authorizer::new(Some(hs256()), None).unwrap();
    let token = encode_token(&hs256(), Some(&["*"]), None, None).unwrap();
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..200 {
                    assert!(
                        auth.verify(&token, Role::Publisher)
                            .unwrap()
                            .can_publish_all(["t"])
                    );
                }
            });
        }
    });
}

#[test]
fn authorizer_is_send_sync_clone_and_debug_hides_keys() {
    fn assert_traits<T: Send + Sync + Clone + std::fmt::Debug + 'static>() {}
    assert_traits::<Authorizer>();
    let auth = Authorizer::new(
        Some(hs256()),
        Some(KeyConfig::new(Algorithm::RS256, fixture("rsa_public.pem"))),
    )
    .unwrap();
    let token = encode_token(&hs256(), Some(&["*"]), None, None).unwrap();
    auth.verify(&token, Role::Publisher).unwrap();
    let text = format!("{auth:?}");
    assert!(text.contains("HS256") && text.contains("RS256"), "{text}");
    assert!(
        !text.contains(SECRET) && !text.contains("BEGIN") && !text.contains(&token),
        "{text}"
    );
}

#[test]
fn key_loading_errors() {
    let load =
        |alg, key: String| Authorizer::new(Some(KeyConfig::new(alg, key)), None).unwrap_err();
    assert!(matches!(
        load(Algorithm::HS256, String::new()),
        KeyError::EmptySecret(Algorithm::HS256)
    ));
    assert!(matches!(
        load(Algorithm::RS256, "/nonexistent/key.pem".into()),
        KeyError::Read {
            algorithm: Algorithm::RS256,
            ..
        }
    ));
    // A directory is not a key file.
    assert!(matches!(
        load(Algorithm::ES256, fixture_path("").display().to_string()),
        KeyError::Read { .. }
    ));
    let cases = [
        // Wrong key type for the algorithm.
        (Algorithm::RS256, fixture("ec256_public.pem")),
        (Algorithm::ES256, fixture("rsa_public.pem")),
        // Right type, wrong curve.
        (Algorithm::ES256, fixture("ec384_public.pem")),
        (Algorithm::ES384, fixture("ec256_public.pem")),
        // A private key where a public key is needed.
        (Algorithm::RS256, fixture("rsa_private.pem")),
        (Algorithm::ES256, fixture("ec256_private.pem")),
        // Not a key at all.
        (
            Algorithm::PS256,
            "-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n".into(),
        ),
        (
            Algorithm::RS256,
            fixture_path("README.md").display().to_string(),
        ),
    ];
    for (alg, key) in cases {
        let err = Authorizer::new(None, Some(KeyConfig::new(alg, key))).unwrap_err();
        assert!(matches!(err, KeyError::InvalidKey { .. }), "{alg}: {err:?}");
        let text = err.to_string();
        assert!(!text.contains('\n') && !text.contains("BEGIN"), "{text}");
    }
    // Signing needs a private key.
    let err = encode_token(
        &KeyConfig::new(Algorithm::RS256, fixture("rsa_public.pem")),
        None,
        None,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, KeyError::InvalidKey { .. }), "{err:?}");
    let err = encode_token(
        &KeyConfig::new(Algorithm::ES256, fixture("rsa_private.pem")),
        None,
        None,
        None,
    )
    .unwrap_err();
    assert!(matches!(err, KeyError::InvalidKey { .. }), "{err:?}");
}

proptest! {
    #[test]
    fn arbitrary_tokens_never_panic(s in any::<String>()) {
        let auth = Authorizer::new(Some(hs256()), Some(hs256())).unwrap();
        prop_assert!(auth.verify(&s, Role::Publisher).is_err());
        prop_assert!(auth.verify(&s, Role::Subscriber).is_err());
    }

    #[test]
    fn random_signatures_never_verify(sig in prop::collection::vec(any::<u8>(), 0..600)) {
        let claims = json!({"mercure": {"publish": ["*"]}});
        for (alg, public) in [
            (Algorithm::RS256, "rsa_public.pem"),
            (Algorithm::PS256, "rsa_public.pem"),
            (Algorithm::ES256, "ec256_public.pem"),
            (Algorithm::ES384, "ec384_public.pem"),
        ] {
            let auth =
                Authorizer::new(Some(KeyConfig::new(alg, fixture(public))), None).unwrap();
            let token = raw_token(&json!({"alg": alg.as_str()}), &claims, &b64url(&sig));
            let err = auth.verify(&token, Role::Publisher).unwrap_err();
            prop_assert!(
                matches!(err, AuthError::InvalidSignature | AuthError::Malformed(_)),
                "{alg}: {err:?}"
            );
        }
    }

    #[test]
    fn mutated_tokens_are_rejected(pos in any::<prop::sample::Index>(), c in "[A-Za-z0-9_.=-]") {
        let auth = Authorizer::new(Some(hs256()), None).unwrap();
        let token = encode_token(&hs256(), Some(&["urn:a"]), None, None).unwrap();
        let i = pos.index(token.len());
        let mut mutated = token.clone();
        mutated.replace_range(i..=i, &c);
        let result = auth.verify(&mutated, Role::Publisher);
        if mutated == token {
            prop_assert!(result.is_ok());
        } else if let Ok(claims) = result {
            // Base64 has spare bits in the last character of a part: a change there can decode
            // to the same bytes. Such a token must still mean exactly the original claims.
            prop_assert!(claims.can_publish_all(["urn:a"]));
            prop_assert!(!claims.can_publish_all(["urn:b"]));
        }
    }
}
