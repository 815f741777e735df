//! The hub's identity as an OAuth 2.0 protected resource: its resource identifier (the `aud`
//! every token must hold) and where its RFC 9728 metadata lives.
//!
//! A pinned identifier ([`crate::MercureConfig::resource_identifier`]) is used as is. Otherwise
//! it is derived from each request, as the reference hub does, so a hub reachable under several
//! names needs no setting: the scheme (`https` when this server terminates TLS; else the
//! `X-Forwarded-Proto` of a trusted proxy; else `http`), the request's host (`Host`, or the
//! HTTP/2 `:authority`), and [`MERCURE_PATH`]. A client cannot choose an identifier the
//! operator did not expose: it can only name a host that reached this hub, and a token is
//! accepted only when its issuer put that very identifier in `aud`.

use std::borrow::Cow;
use std::net::IpAddr;

use axum::http::{HeaderMap, Uri, header};

use super::MERCURE_PATH;
use crate::MercureConfig;
use crate::limits::IpRange;

/// The path of the protected resource metadata, for the hub at [`MERCURE_PATH`] (RFC 9728
/// section 3.1: the well-known prefix goes between the host and the resource's path).
pub const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/.well-known/mercure";

/// The resource identifier for one request: `None` when it cannot be derived (no pinned
/// identifier and no usable host), which the caller answers with a 400.
pub(crate) fn resource_identifier<'a>(
    config: &'a MercureConfig,
    uri: &Uri,
    headers: &HeaderMap,
    peer: Option<IpAddr>,
) -> Option<Cow<'a, str>> {
    if let Some(pinned) = &config.resource_identifier {
        return Some(Cow::Borrowed(pinned));
    }
    let (scheme, host) = origin(config, uri, headers, peer)?;
    // Built by hand, not with `format!`: this runs on every publish and subscribe.
    let mut id = String::with_capacity(scheme.len() + 3 + host.len() + MERCURE_PATH.len());
    id.push_str(scheme);
    id.push_str("://");
    id.push_str(host);
    id.push_str(MERCURE_PATH);
    Some(Cow::Owned(id))
}

/// The URL of the protected resource metadata for the identifier `resource` (RFC 9728
/// section 3.1), `None` when `resource` is not an absolute `http(s)` URL.
pub(crate) fn metadata_url(resource: &str) -> Option<String> {
    let (scheme, rest) = resource.split_once("://")?;
    if !scheme.eq_ignore_ascii_case("https") && !scheme.eq_ignore_ascii_case("http") {
        return None;
    }
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = path.trim_end_matches('/');
    Some(format!(
        "{scheme}://{host}/.well-known/oauth-protected-resource{path}"
    ))
}

/// The request's scheme and host.
fn origin<'h>(
    config: &MercureConfig,
    uri: &'h Uri,
    headers: &'h HeaderMap,
    peer: Option<IpAddr>,
) -> Option<(&'static str, &'h str)> {
    let host = uri.authority().map(|a| a.as_str()).or_else(|| {
        headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::trim)
    })?;
    if !valid_host(host) {
        return None;
    }
    let https = config.tls.is_some() || forwarded_https(headers, peer, &config.trusted_proxies);
    let scheme = if https { "https" } else { "http" };
    Some((scheme, host))
}

/// `host[:port]` as RFC 3986 allows it in an authority, without userinfo: a reg-name of
/// unreserved and sub-delim characters (or `%`), an IPv6 literal in brackets, digits after the
/// colon. Anything else (spaces, `/`, `@`, quotes) cannot be part of a URL we would build.
fn valid_host(host: &str) -> bool {
    if host.is_empty() || host.len() > 255 {
        return false;
    }
    let (name, port) = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => (&host[..i], Some(&host[i + 1..])),
        _ => (host, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return false;
    }
    if let Some(inner) = name.strip_prefix('[') {
        return inner
            .strip_suffix(']')
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    }
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=%".contains(&b))
}

/// Whether a trusted proxy said the client's connection was HTTPS.
fn forwarded_https(headers: &HeaderMap, peer: Option<IpAddr>, trusted: &[IpRange]) -> bool {
    let Some(peer) = peer else { return false };
    let peer = peer.to_canonical();
    if !trusted.iter().any(|r| r.contains(peer)) {
        return false;
    }
    // The first value is the client-facing hop's (a proxy chain appends).
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn derived(uri: &str, h: &HeaderMap, peer: &str) -> Option<String> {
        let config = MercureConfig::for_tests();
        resource_identifier(
            &config,
            &uri.parse().unwrap(),
            h,
            Some(peer.parse().unwrap()),
        )
        .map(Cow::into_owned)
    }

    #[test]
    fn derived_from_host_and_trusted_forwarded_proto() {
        let h = headers(&[("host", "hub.example.com:8443")]);
        assert_eq!(
            derived("/.well-known/mercure", &h, "8.8.8.8").as_deref(),
            Some("http://hub.example.com:8443/.well-known/mercure")
        );
        let h = headers(&[("host", "hub.example.com"), ("x-forwarded-proto", "https")]);
        assert_eq!(
            derived("/", &h, "127.0.0.1").as_deref(),
            Some("https://hub.example.com/.well-known/mercure")
        );
        // Not from a trusted proxy: ignored.
        assert_eq!(
            derived("/", &h, "8.8.8.8").as_deref(),
            Some("http://hub.example.com/.well-known/mercure")
        );
        // HTTP/2: the authority of the request target.
        assert_eq!(
            derived(
                "https://h2.example/.well-known/mercure",
                &HeaderMap::new(),
                "8.8.8.8"
            )
            .as_deref(),
            Some("http://h2.example/.well-known/mercure")
        );
    }

    #[test]
    fn unusable_hosts_derive_nothing() {
        for bad in [
            "",
            "a b",
            "evil/path",
            "u@host",
            "host:",
            "host:8x",
            "[::1",
            "[zz]",
        ] {
            let h = headers(&[("host", bad)]);
            assert_eq!(derived("/", &h, "8.8.8.8"), None, "{bad:?}");
        }
        assert_eq!(derived("/", &HeaderMap::new(), "8.8.8.8"), None);
        let h = headers(&[("host", "[::1]:3000")]);
        assert_eq!(
            derived("/", &h, "8.8.8.8").as_deref(),
            Some("http://[::1]:3000/.well-known/mercure")
        );
    }

    #[test]
    fn pinned_identifier_wins() {
        let mut config = MercureConfig::for_tests();
        config.resource_identifier = Some("https://hub.example/.well-known/mercure".into());
        let h = headers(&[("host", "other")]);
        assert_eq!(
            resource_identifier(&config, &"/".parse().unwrap(), &h, None).as_deref(),
            Some("https://hub.example/.well-known/mercure")
        );
    }

    #[test]
    fn metadata_urls() {
        assert_eq!(
            metadata_url("https://hub.example/.well-known/mercure").as_deref(),
            Some("https://hub.example/.well-known/oauth-protected-resource/.well-known/mercure")
        );
        assert_eq!(
            metadata_url("http://h:1").as_deref(),
            Some("http://h:1/.well-known/oauth-protected-resource")
        );
        assert_eq!(metadata_url("urn:hub"), None);
    }
}
