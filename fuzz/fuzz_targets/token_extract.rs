//! Token extraction on arbitrary requests: any mix of `Authorization` and `Cookie` headers
//! (and unrelated ones) with any query string. It never panics, errors are one line, the
//! draft's precedence holds (header, then query, then cookie), and whatever token is found is
//! then verified without panicking and, having no valid signature, never accepted.

#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use http::header::{AUTHORIZATION, COOKIE, HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use ssehub_auth::{
    Algorithm, Authorizer, KeyConfig, Role, TokenSource, extract_token, extract_token_with_cookie,
};

#[derive(Debug, Arbitrary)]
enum Name {
    Authorization,
    Cookie,
    Other,
}

#[derive(Debug, Arbitrary)]
struct Input<'a> {
    headers: Vec<(Name, &'a [u8])>,
    query: Option<&'a str>,
    cookie_name: &'a str,
}

fn authorizer() -> &'static Authorizer {
    static AUTH: OnceLock<Authorizer> = OnceLock::new();
    AUTH.get_or_init(|| {
        let key = KeyConfig::new(Algorithm::HS256, "fuzz-secret-fuzz-secret-fuzz-secret");
        Authorizer::new(Some(key.clone()), Some(key)).unwrap()
    })
}

fuzz_target!(|input: Input<'_>| {
    let mut headers = HeaderMap::new();
    for (name, value) in &input.headers {
        let Ok(value) = HeaderValue::from_bytes(value) else {
            continue;
        };
        let name = match name {
            Name::Authorization => AUTHORIZATION,
            Name::Cookie => COOKIE,
            Name::Other => HeaderName::from_static("x-other"),
        };
        headers.append(name, value);
    }
    let has_header = headers.contains_key(AUTHORIZATION);
    // Whether the query names the parameter (decoded as a form, one leading `?` allowed).
    let has_query = input.query.is_some_and(|q| {
        let q = q.strip_prefix('?').unwrap_or(q);
        form_urlencoded::parse(q.as_bytes()).any(|(name, _)| name == "authorization")
    });

    match extract_token(&headers, input.query) {
        Ok(Some((token, source))) => {
            assert!(!token.is_empty());
            match source {
                TokenSource::Header => assert!(has_header),
                TokenSource::Query => assert!(!has_header && has_query),
                TokenSource::Cookie => assert!(!has_header && !has_query),
            }
            for role in [Role::Publisher, Role::Subscriber] {
                let err = authorizer().verify(&token, role).unwrap_err();
                assert!(!err.to_string().contains('\n'));
            }
        }
        // A present header always yields its token or an error, never "no token".
        Ok(None) => assert!(!has_header),
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
    if !input.cookie_name.is_empty() {
        let _ = extract_token_with_cookie(&headers, input.query, input.cookie_name);
    }
});
