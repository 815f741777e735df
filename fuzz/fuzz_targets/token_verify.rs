//! `Authorizer::verify` on arbitrary tokens: raw strings, tokens assembled from arbitrary header,
//! claims and signature bytes (so the fuzzer gets past base64 and into JSON), and arbitrary
//! claims *correctly signed* with the hub's key (so it gets past the signature into the claim
//! checks). Nothing panics; only a correctly signed token with the configured algorithm may be
//! accepted, and then its `exp`/`nbf` must hold.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use jsonwebtoken::EncodingKey;
use libfuzzer_sys::fuzz_target;
use ssehub_auth::{Algorithm, Authorizer, KeyConfig, LEEWAY_SECS, Role};

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret";

#[derive(Debug, Arbitrary)]
enum Input<'a> {
    Raw(&'a str),
    Parts {
        header: &'a [u8],
        claims: &'a [u8],
        signature: &'a [u8],
    },
    Signed {
        alg: u8,
        claims: &'a [u8],
    },
}

fn authorizer() -> &'static Authorizer {
    static AUTH: OnceLock<Authorizer> = OnceLock::new();
    AUTH.get_or_init(|| {
        let key = KeyConfig::new(Algorithm::HS256, SECRET);
        Authorizer::new(Some(key.clone()), Some(key)).unwrap()
    })
}

fn b64url(bytes: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 3);
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

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn check(token: &str, may_verify: bool, claims: Option<&[u8]>) {
    for role in [Role::Publisher, Role::Subscriber] {
        match authorizer().verify(token, role) {
            Ok(verified) => {
                assert!(may_verify, "accepted a token without a valid signature");
                let claims: serde_json_lite::Claims = serde_json_lite::read(claims.unwrap());
                if let Some(exp) = claims.exp {
                    assert!(exp + LEEWAY_SECS as f64 + 1.0 >= now() as f64, "expired");
                }
                if let Some(nbf) = claims.nbf {
                    assert!(nbf <= (now() + LEEWAY_SECS + 1) as f64, "not yet valid");
                }
                if let Some(exp) = verified.exp {
                    assert!(exp + LEEWAY_SECS + 1 >= now());
                }
            }
            Err(e) => assert!(!e.to_string().contains('\n')),
        }
    }
}

fuzz_target!(|input: Input<'_>| match input {
    Input::Raw(token) => check(token, false, None),
    Input::Parts {
        header,
        claims,
        signature,
    } => {
        let token = format!(
            "{}.{}.{}",
            b64url(header),
            b64url(claims),
            b64url(signature)
        );
        check(&token, false, None);
    }
    Input::Signed { alg, claims } => {
        use jsonwebtoken::Algorithm as J;
        let (alg, name) = match alg % 4 {
            0 => (J::HS256, "HS256"),
            1 => (J::HS384, "HS384"),
            2 => (J::HS512, "HS512"),
            _ => (J::HS256, "none"),
        };
        let header = format!(r#"{{"typ":"JWT","alg":"{name}"}}"#);
        let message = format!("{}.{}", b64url(header.as_bytes()), b64url(claims));
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let signature = jsonwebtoken::crypto::sign(message.as_bytes(), &key, alg).unwrap();
        let token = format!("{message}.{signature}");
        check(&token, name == "HS256", Some(claims));
        // The same claims with the signature stripped, as an `alg: none` forgery would be.
        check(&format!("{message}."), false, None);
    }
});

/// Reads `exp` and `nbf` from claims the verifier accepted, as JSON values (last duplicate
/// key wins, as in the verifier's own reading).
mod serde_json_lite {
    #[derive(Debug, Default)]
    pub struct Claims {
        pub exp: Option<f64>,
        pub nbf: Option<f64>,
    }

    pub fn read(bytes: &[u8]) -> Claims {
        let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
        Claims {
            exp: value.get("exp").and_then(serde_json::Value::as_f64),
            nbf: value.get("nbf").and_then(serde_json::Value::as_f64),
        }
    }
}
