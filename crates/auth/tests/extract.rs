//! Token extraction: the header, the query parameter and the cookie, their precedence (Mercure
//! draft, section "Authorization"), and the error cases.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE, HeaderValue};
use proptest::prelude::*;
use ssehub_auth::{AuthError, TokenSource, extract_token, extract_token_with_cookie};

const TOKEN: &str = "eyJhbGciOiJIUzI1NiJ9.eyJtZXJjdXJlIjp7fX0.c2lnbmF0dXJl";

fn headers(pairs: &[(http::header::HeaderName, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    map
}

fn found(token: &str, source: TokenSource) -> Result<Option<(String, TokenSource)>, AuthError> {
    Ok(Some((token.to_string(), source)))
}

fn is_malformed(r: Result<Option<(String, TokenSource)>, AuthError>) -> bool {
    matches!(r, Err(AuthError::InvalidRequest(_)))
}

#[test]
fn nothing_presented() {
    assert_eq!(extract_token(&HeaderMap::new(), None), Ok(None));
    assert_eq!(extract_token(&HeaderMap::new(), Some("")), Ok(None));
    assert_eq!(
        extract_token(
            &HeaderMap::new(),
            Some("match=https%3A%2F%2Fx%2F&lastEventID=3")
        ),
        Ok(None)
    );
    let h = headers(&[(COOKIE, "session=abc; theme=dark")]);
    assert_eq!(extract_token(&h, None), Ok(None));
}

#[test]
fn bearer_header() {
    let h = headers(&[(AUTHORIZATION, &format!("Bearer {TOKEN}"))]);
    assert_eq!(extract_token(&h, None), found(TOKEN, TokenSource::Header));
    // The scheme is case-insensitive; extra blanks are tolerated.
    for value in [
        format!("bearer {TOKEN}"),
        format!("BEARER {TOKEN}"),
        format!("Bearer   {TOKEN}  "),
        format!("Bearer\t{TOKEN}"),
    ] {
        let h = headers(&[(AUTHORIZATION, &value)]);
        assert_eq!(
            extract_token(&h, None),
            found(TOKEN, TokenSource::Header),
            "{value:?}"
        );
    }
    // b64token allows a trailing '=' run.
    let h = headers(&[(AUTHORIZATION, "Bearer abc==")]);
    assert_eq!(extract_token(&h, None), found("abc==", TokenSource::Header));
}

#[test]
fn non_bearer_or_broken_header_is_malformed() {
    for value in [
        "Basic dXNlcjpwYXNz",
        "Token abc",
        "Bearer",
        "Bearer ",
        "Bearerabc",
        "",
        "Bearer a b",
        "Bearer a,b",
        "Bearer ===",
        "Bearer =abc",
        "Bearer a=b",
        // The bytes next to the letter ranges (the class check folds case with a bit mask).
        "Bearer a@b",
        "Bearer a[b",
        "Bearer a`b",
        "Bearer a{b",
        "Bearer a:b",
        "abc.def.ghi",
    ] {
        let h = headers(&[(AUTHORIZATION, value)]);
        let r = extract_token(&h, Some(&format!("authorization={TOKEN}")));
        assert!(is_malformed(r.clone()), "{value:?}: {r:?}");
        // The message never echoes the credentials.
        let text = r.unwrap_err().to_string();
        for secret in ["dXNlcjpwYXNz", "abc", "def", TOKEN] {
            assert!(!text.contains(secret), "{text}");
        }
    }
    let mut h = HeaderMap::new();
    h.insert(
        AUTHORIZATION,
        HeaderValue::from_bytes(b"Bearer caf\xe9").unwrap(),
    );
    assert!(is_malformed(extract_token(&h, None)));
}

#[test]
fn query_parameter_is_percent_decoded() {
    let encoded = TOKEN.replace('.', "%2E");
    let q = format!("match=https%3A%2F%2Fexample.com%2Fbooks%2F1&authorization={encoded}");
    assert_eq!(
        extract_token(&HeaderMap::new(), Some(&q)),
        found(TOKEN, TokenSource::Query)
    );
    // A leading '?' is tolerated; the name is case-sensitive.
    let q = format!("?authorization={TOKEN}");
    assert_eq!(
        extract_token(&HeaderMap::new(), Some(&q)),
        found(TOKEN, TokenSource::Query)
    );
    let q = format!("Authorization={TOKEN}");
    assert_eq!(extract_token(&HeaderMap::new(), Some(&q)), Ok(None));
    let q = format!("xauthorization={TOKEN}&authorizationx=1");
    assert_eq!(extract_token(&HeaderMap::new(), Some(&q)), Ok(None));
    // Present but empty is an error, not "anonymous".
    assert!(is_malformed(extract_token(
        &HeaderMap::new(),
        Some("authorization=")
    )));
    assert!(is_malformed(extract_token(
        &HeaderMap::new(),
        Some("authorization")
    )));
}

#[test]
fn cookie_among_other_cookies() {
    for value in [
        format!("mercureAuthorization={TOKEN}"),
        format!("a=1; mercureAuthorization={TOKEN}; b=2"),
        format!("a=1;mercureAuthorization={TOKEN};b=2"),
        format!("a=1;  mercureAuthorization = {TOKEN} ; b"),
        format!("mercureAuthorization=\"{TOKEN}\""),
        format!(
            "xmercureAuthorization=nope; mercureAuthorization={TOKEN}; mercureAuthorizationx=no"
        ),
    ] {
        let h = headers(&[(COOKIE, &value)]);
        assert_eq!(
            extract_token(&h, None),
            found(TOKEN, TokenSource::Cookie),
            "{value:?}"
        );
    }
    // HTTP/2 may split cookies over several header lines.
    let h = headers(&[
        (COOKIE, "a=1"),
        (COOKIE, &format!("mercureAuthorization={TOKEN}")),
    ]);
    assert_eq!(extract_token(&h, None), found(TOKEN, TokenSource::Cookie));
    // The cookie name is case-sensitive.
    let h = headers(&[(COOKIE, &format!("mercureauthorization={TOKEN}"))]);
    assert_eq!(extract_token(&h, None), Ok(None));
    // An emptied cookie (a common way to log out) is no cookie.
    let h = headers(&[(COOKIE, "mercureAuthorization=; a=1")]);
    assert_eq!(extract_token(&h, None), Ok(None));
    let h = headers(&[(COOKIE, "mercureAuthorization=\"\"")]);
    assert_eq!(extract_token(&h, None), Ok(None));
}

#[test]
fn custom_cookie_name() {
    let h = headers(&[(COOKIE, &format!("mercureAuthorization=other; hubA={TOKEN}"))]);
    assert_eq!(
        extract_token_with_cookie(&h, None, "hubA"),
        found(TOKEN, TokenSource::Cookie)
    );
    assert_eq!(extract_token(&h, None), found("other", TokenSource::Cookie));
}

#[test]
fn precedence_is_header_then_query_then_cookie() {
    let all = headers(&[
        (AUTHORIZATION, "Bearer from-header"),
        (COOKIE, "mercureAuthorization=from-cookie"),
    ]);
    let query = Some("authorization=from-query");
    assert_eq!(
        extract_token(&all, query),
        found("from-header", TokenSource::Header)
    );

    let cookie_only = headers(&[(COOKIE, "mercureAuthorization=from-cookie")]);
    assert_eq!(
        extract_token(&cookie_only, query),
        found("from-query", TokenSource::Query)
    );
    assert_eq!(
        extract_token(&cookie_only, None),
        found("from-cookie", TokenSource::Cookie)
    );

    // A present but broken mechanism does not fall through to the next one.
    let bad_header = headers(&[
        (AUTHORIZATION, "Basic abc"),
        (COOKIE, "mercureAuthorization=from-cookie"),
    ]);
    assert!(is_malformed(extract_token(&bad_header, query)));
    assert!(is_malformed(extract_token(
        &cookie_only,
        Some("authorization=")
    )));
}

#[test]
fn duplicates_within_one_mechanism() {
    let two = headers(&[(AUTHORIZATION, "Bearer one"), (AUTHORIZATION, "Bearer two")]);
    assert_eq!(extract_token(&two, None), Err(AuthError::AmbiguousToken));
    let same = headers(&[(AUTHORIZATION, "Bearer one"), (AUTHORIZATION, "bearer one")]);
    assert_eq!(
        extract_token(&same, None),
        found("one", TokenSource::Header)
    );

    let q = Some("authorization=one&match=x&authorization=two");
    assert_eq!(
        extract_token(&HeaderMap::new(), q),
        Err(AuthError::AmbiguousToken)
    );
    let q = Some("authorization=one&authorization=one");
    assert_eq!(
        extract_token(&HeaderMap::new(), q),
        found("one", TokenSource::Query)
    );

    let c = headers(&[(COOKIE, "mercureAuthorization=one; mercureAuthorization=two")]);
    assert_eq!(extract_token(&c, None), Err(AuthError::AmbiguousToken));
    let c = headers(&[
        (COOKIE, "mercureAuthorization=one"),
        (COOKIE, "mercureAuthorization=one"),
    ]);
    assert_eq!(extract_token(&c, None), found("one", TokenSource::Cookie));
    // Ambiguity in a lower-precedence mechanism does not matter when a higher one is present.
    let h = headers(&[
        (AUTHORIZATION, "Bearer one"),
        (COOKIE, "mercureAuthorization=a; mercureAuthorization=b"),
    ]);
    assert_eq!(extract_token(&h, None), found("one", TokenSource::Header));
}

proptest! {
    #[test]
    fn arbitrary_input_never_panics(
        auth in prop::collection::vec(any::<u8>(), 0..64),
        cookie in prop::collection::vec(any::<u8>(), 0..64),
        query in any::<String>(),
    ) {
        let mut h = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&auth) {
            h.insert(AUTHORIZATION, v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&cookie) {
            h.insert(COOKIE, v);
        }
        if let Err(e) = extract_token(&h, Some(&query)) {
            prop_assert!(!e.to_string().contains('\n'));
        }
        let _ = extract_token(&HeaderMap::new(), Some(&query));
    }
}
