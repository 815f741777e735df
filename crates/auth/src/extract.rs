//! Finding the token in a request.
//!
//! # Mercure 1.0 ([`find_token`] with [`Presentation::modern`])
//!
//! The `Authorization: Bearer` header (scheme case-insensitive, RFC 6750 section 2.1) or, for
//! browsers, a cookie (default name [`MODERN_COOKIE_NAME`]). When the header is present its
//! token is used and cookies are ignored: cookies are ambient, so one beside an explicit header
//! is not a client error (draft-dunglas-mercure-08, "Presenting the Access Token"). Tokens in
//! the URL are refused outright (RFC 9700 forbids them): an `authorization` or `access_token`
//! query parameter is an [`AuthError::InvalidRequest`], and so is the 0.x
//! `mercureAuthorization` cookie when it would be the credential used, so a client still on the
//! 0.x presentation learns why instead of being silently anonymous.
//!
//! # 0.x ([`extract_token`], and [`find_token`] with [`Presentation::legacy`])
//!
//! The Mercure draft (draft-dunglas-mercure, section "Authorization", in every revision that
//! defines the query parameter) says: if an `Authorization` header is present, its token MUST be
//! used and the query parameter and cookie MUST be ignored; otherwise, if the `authorization`
//! query parameter is present, it MUST be used and the cookie MUST be ignored; otherwise the
//! cookie is used. So presenting tokens through several mechanisms is *not* an error, and the
//! order is header, then query, then cookie. A mechanism that is present but broken (a
//! non-Bearer header, an empty query value) is an error; it never falls through to the next.
//!
//! The draft is silent on the same mechanism appearing twice. Two different tokens there are
//! [`AuthError::AmbiguousToken`]: we cannot know which one the client meant, and picking one
//! could authorize a request with the wrong identity. Identical duplicates are accepted.
//!
//! In both modes, the same mechanism carrying two different tokens is
//! [`AuthError::AmbiguousToken`] (an `invalid_request`).
//!
//! An empty token cookie counts as no cookie: sites commonly "log out" by
//! blanking the cookie, and such a browser should be anonymous rather than rejected.

use http::HeaderMap;
use http::header::{AUTHORIZATION, COOKIE};

use crate::AuthError;

/// The cookie name the 0.x Mercure drafts recommend for the token.
pub const COOKIE_NAME: &str = "mercureAuthorization";

/// The cookie name Mercure 1.0 recommends for the token (the `__Secure-` prefix makes browsers
/// refuse it over plain HTTP; choose a prefix-less name for plain-HTTP development).
pub const MODERN_COOKIE_NAME: &str = "__Secure-mercure_access_token";

/// Query parameters that would carry a token in the URL, refused in 1.0.
const URL_TOKEN_PARAMETERS: [&str; 2] = [QUERY_PARAMETER, "access_token"];

/// How a request may present its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presentation<'a> {
    legacy: bool,
    cookie_name: &'a str,
}

impl<'a> Presentation<'a> {
    /// Mercure 1.0: the header, else the cookie `cookie_name`; no token in the URL.
    pub fn modern(cookie_name: &'a str) -> Self {
        Presentation {
            legacy: false,
            cookie_name,
        }
    }

    /// 0.x as well: the header, else the `authorization` query parameter, else the cookie
    /// `cookie_name` or `mercureAuthorization`.
    pub fn legacy(cookie_name: &'a str) -> Self {
        Presentation {
            legacy: true,
            cookie_name,
        }
    }

    /// The cookie name (the 1.0 one; in legacy mode `mercureAuthorization` is read too).
    pub fn cookie_name(&self) -> &'a str {
        self.cookie_name
    }
}

/// Finds the request's token as `presentation` allows (see the module docs). `query` is the
/// raw query string, without the `?`. `Ok(None)`: no token at all (an anonymous request).
pub fn find_token(
    headers: &HeaderMap,
    query: Option<&str>,
    presentation: Presentation<'_>,
) -> Result<Option<(String, TokenSource)>, AuthError> {
    if presentation.legacy {
        let found = extract_token_with_cookie(headers, query, presentation.cookie_name)?;
        if found.is_some() || presentation.cookie_name == COOKIE_NAME {
            return Ok(found);
        }
        return Ok(from_cookies(headers, COOKIE_NAME)?.map(|t| (t, TokenSource::Cookie)));
    }
    if let Some(query) = query {
        let query = query.strip_prefix('?').unwrap_or(query);
        if form_urlencoded::parse(query.as_bytes())
            .any(|(name, _)| URL_TOKEN_PARAMETERS.contains(&name.as_ref()))
        {
            return Err(AuthError::InvalidRequest(
                "access tokens are not accepted in the URL; use the Authorization header or the cookie"
                    .into(),
            ));
        }
    }
    if let Some(token) = from_header(headers)? {
        return Ok(Some((token, TokenSource::Header)));
    }
    if let Some(token) = from_cookies(headers, presentation.cookie_name)? {
        return Ok(Some((token, TokenSource::Cookie)));
    }
    if presentation.cookie_name != COOKIE_NAME && from_cookies(headers, COOKIE_NAME)?.is_some() {
        return Err(AuthError::InvalidRequest(format!(
            "the {COOKIE_NAME} cookie is the pre-1.0 presentation; use the {} cookie",
            presentation.cookie_name
        )));
    }
    Ok(None)
}

/// The query parameter the Mercure draft defines for the token.
pub const QUERY_PARAMETER: &str = "authorization";

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenSource {
    /// `Authorization: Bearer <token>`.
    Header,
    /// The `mercureAuthorization` cookie (or the configured cookie name).
    Cookie,
    /// The `authorization` query parameter.
    Query,
}

/// Finds the request's token, following the draft's precedence (see the module docs), with the
/// default cookie name [`COOKIE_NAME`]. `query` is the raw query string, without the `?`.
///
/// `Ok(None)` means no token at all (an anonymous request).
pub fn extract_token(
    headers: &HeaderMap,
    query: Option<&str>,
) -> Result<Option<(String, TokenSource)>, AuthError> {
    extract_token_with_cookie(headers, query, COOKIE_NAME)
}

/// [`extract_token`] with another cookie name (the draft allows one, e.g. for several hubs on
/// one domain).
pub fn extract_token_with_cookie(
    headers: &HeaderMap,
    query: Option<&str>,
    cookie_name: &str,
) -> Result<Option<(String, TokenSource)>, AuthError> {
    if let Some(token) = from_header(headers)? {
        return Ok(Some((token, TokenSource::Header)));
    }
    if let Some(token) = from_query(query)? {
        return Ok(Some((token, TokenSource::Query)));
    }
    Ok(from_cookies(headers, cookie_name)?.map(|token| (token, TokenSource::Cookie)))
}

fn malformed(what: &str) -> AuthError {
    AuthError::InvalidRequest(what.to_string())
}

/// Keeps the one distinct value, or reports ambiguity.
fn single(values: Vec<String>) -> Result<Option<String>, AuthError> {
    let mut values = values.into_iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.any(|v| v != first) {
        return Err(AuthError::AmbiguousToken);
    }
    Ok(Some(first))
}

fn from_header(headers: &HeaderMap) -> Result<Option<String>, AuthError> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    let token = bearer(first.as_bytes())?;
    // Several Authorization lines are allowed only when they all carry the same token.
    for value in values {
        if bearer(value.as_bytes())? != token {
            return Err(AuthError::AmbiguousToken);
        }
    }
    Ok(Some(token.to_string()))
}

/// Parses `Bearer <token>` (RFC 6750 section 2.1; the scheme name is case-insensitive per
/// RFC 9110, and the token must be a `b64token`).
fn bearer(value: &[u8]) -> Result<&str, AuthError> {
    let value = value.trim_ascii_start().trim_ascii_end();
    let split = value
        .iter()
        .position(|&b| b == b' ' || b == b'\t')
        .unwrap_or(value.len());
    let (scheme, token) = value.split_at(split);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return Err(malformed(
            "the Authorization header must use the Bearer scheme",
        ));
    }
    let token = token.trim_ascii_start();
    if token.is_empty() {
        return Err(malformed(
            "the Authorization header has an empty Bearer token",
        ));
    }
    let padding = token.iter().rev().take_while(|&&b| b == b'=').count();
    let body = &token[..token.len() - padding];
    if body.is_empty() || !is_b64token(body) {
        return Err(malformed(
            "the Bearer token has characters a token cannot contain",
        ));
    }
    // Every b64token byte is ASCII, so this cannot fail; the check keeps the code free of
    // `unsafe` at the cost of a second (vectorised) pass.
    std::str::from_utf8(token).map_err(|_| malformed("the Bearer token is not ASCII"))
}

/// `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" )`, checked without an early exit
/// so the loop vectorises: a 1.0 access token is ~450 bytes checked on every request, and a
/// per-character search cost ~4 % of a publish's CPU in a profile.
fn is_b64token(bytes: &[u8]) -> bool {
    let bad = bytes.iter().fold(0u8, |bad, &b| {
        let lower = b | 0x20;
        let ok = lower.is_ascii_lowercase()
            || b.is_ascii_digit()
            || b == b'-'
            || b == b'.'
            || b == b'_'
            || b == b'~'
            || b == b'+'
            || b == b'/';
        bad | u8::from(!ok)
    });
    bad == 0
}

fn from_query(query: Option<&str>) -> Result<Option<String>, AuthError> {
    let Some(query) = query else {
        return Ok(None);
    };
    let query = query.strip_prefix('?').unwrap_or(query);
    let values: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == QUERY_PARAMETER)
        .map(|(_, value)| value.into_owned())
        .collect();
    if values.iter().any(String::is_empty) {
        return Err(malformed("the authorization query parameter is empty"));
    }
    single(values)
}

/// Finds `name` in the `Cookie` headers (RFC 6265 section 4.2; HTTP/2 may split them into
/// several header lines).
fn from_cookies(headers: &HeaderMap, name: &str) -> Result<Option<String>, AuthError> {
    let mut values = Vec::new();
    for header in headers.get_all(COOKIE) {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let pair = trim_ows(pair);
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if trim_ows(&pair[..eq]) != name.as_bytes() {
                continue;
            }
            let mut value = trim_ows(&pair[eq + 1..]);
            // cookie-value may be wrapped in DQUOTEs, which are not part of the value.
            if value.len() >= 2 && value[0] == b'"' && value[value.len() - 1] == b'"' {
                value = &value[1..value.len() - 1];
            }
            if value.is_empty() {
                continue;
            }
            let value = std::str::from_utf8(value)
                .map_err(|_| malformed("the token cookie is not valid UTF-8"))?;
            values.push(value.to_string());
        }
    }
    single(values)
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}
