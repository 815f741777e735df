//! Mercure 1.0 publication rules (draft-dunglas-mercure-08, "Publication" and "Reserved Hub
//! Namespace"): what no publisher may send, whatever its token grants.
//!
//! * No topic may address the hub's reserved namespace (its URL's path and everything below):
//!   subscription events live there, and a publisher able to write there could forge them. The
//!   test runs on the topic resolved against the hub's URL by the WHATWG URL parser, with
//!   dot-segments removed and percent-encoded unreserved characters decoded, then compared on
//!   the path alone, whatever the scheme or host. So `/.well-known/%6Dercure/x`,
//!   `/.well-known/x/../mercure/x` and `https://any.host/.well-known/mercure/x` are all caught.
//! * No topic may be `*` (the wildcard could not address it alone).
//! * No id may start with `#` (hub ids are fragments); `earliest` (the replay keyword) is
//!   refused by the hub's own [`Update::validate`].
//! * No topic, id or type may hold a control or format character (they end up on the wire and
//!   in `Last-Event-ID`, and invisible ones spoof identifiers).
//! * No type may be `mercure` (the hub's subscription events) or start with `ssehub.` (the
//!   hub's own notices, such as `ssehub.history-gap` and `ssehub.lagged`).
//! * Topic, id and type are at most [`MAX_FIELD_LEN`] bytes; longer is `413`, as the spec asks
//!   for every size limit.

use ssehub_hub::Update;
use ssehub_selector::{describe_char, forbidden_char};
use url::Url;

use super::MERCURE_PATH;
use crate::ApiError;

/// Longest topic, id or type accepted, in bytes (the selector crate's limit, so every topic
/// can be subscribed to exactly).
pub const MAX_FIELD_LEN: usize = ssehub_selector::MAX_SELECTOR_LEN;

/// Checks an update against the rules, `hub_url` being the hub's URL for this request (its
/// resource identifier); `None` uses the default hub path on a placeholder host, which decides
/// the same for every topic but relative ones with `..` segments above the root. `legacy`: the
/// reserved namespace is not enforced (0.x hubs let publishers write there, and 0.x clients
/// may rely on it).
pub(crate) fn check_update(
    update: &Update,
    hub_url: Option<&str>,
    legacy: bool,
) -> Result<(), ApiError> {
    // Parsed only for a topic the cheap test cannot clear (most topics never need it).
    let mut hub: Option<Url> = None;
    let hub_path = hub_url.map_or(MERCURE_PATH, url_path);
    for topic in update.topics() {
        check_text("topic", topic)?;
        if topic == "*" {
            return Err(ApiError::bad_request(
                "the topic * is reserved for the wildcard matcher",
            ));
        }
        if !legacy && !clearly_outside(topic, hub_path) {
            let hub = hub.get_or_insert_with(|| {
                hub_url
                    .and_then(|u| Url::parse(u).ok())
                    .unwrap_or_else(default_hub_url)
            });
            if addresses_reserved_namespace(topic, hub) {
                return Err(ApiError::bad_request(
                    "a topic addresses the hub's reserved namespace (/.well-known/mercure/...)",
                ));
            }
        }
    }
    if let Some(id) = update.id_str() {
        check_text("id", id)?;
        if id.starts_with('#') {
            return Err(ApiError::bad_request(
                "an id may not start with # (the hub's own ids do)",
            ));
        }
    }
    if let Some(event_type) = update.event_type_str() {
        check_text("type", event_type)?;
        if event_type == "mercure" || event_type.starts_with("ssehub.") {
            return Err(ApiError::bad_request(format!(
                "the type {event_type} is reserved for events the hub generates"
            )));
        }
    }
    Ok(())
}

/// The path of an absolute URL's text, without parsing it (`/` when it has none).
fn url_path(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(url, |i| &url[i + 3..]);
    let path = after_scheme.find('/').map_or("/", |i| &after_scheme[i..]);
    path.split(['?', '#']).next().unwrap_or(path)
}

/// Whether `topic` cannot address the hub path `hub_path`, decided without parsing it: the
/// resolved path can only equal or go under `hub_path` if the topic spells its last segment
/// (`mercure`), percent-encodes something (`%6Dercure`), uses a backslash (a separator in
/// special URLs), or resolves to the base itself (empty, or only a query or fragment, after the
/// spaces the URL parser strips, with or without a `scheme:` before it). `false` means "look
/// properly", not "reserved".
fn clearly_outside(topic: &str, hub_path: &str) -> bool {
    let last = hub_path
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or("");
    let trimmed = topic.trim_matches(' ');
    // `https:` (the base's scheme, nothing after it) is relative to the base too.
    let rest = match trimmed.split_once(':') {
        Some((scheme, rest))
            if scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
        {
            rest
        }
        _ => trimmed,
    };
    !last.is_empty()
        && !trimmed.is_empty()
        && !trimmed.starts_with(['?', '#'])
        && !rest.is_empty()
        && !rest.starts_with(['?', '#'])
        && !topic.contains(['%', '\\'])
        && !topic.contains(last)
}

fn check_text(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() > MAX_FIELD_LEN {
        return Err(ApiError::new(
            axum::http::StatusCode::PAYLOAD_TOO_LARGE,
            format!("{field} is longer than {MAX_FIELD_LEN} bytes"),
        ));
    }
    match forbidden_char(value) {
        Some(c) => Err(ApiError::bad_request(format!(
            "{field} contains {}, a control or format character",
            describe_char(c)
        ))),
        None => Ok(()),
    }
}

fn default_hub_url() -> Url {
    Url::parse(&format!("http://hub.invalid{MERCURE_PATH}")).expect("a valid URL")
}

/// Whether `topic`, resolved against `hub`, has a path in the hub's path subtree.
pub(crate) fn addresses_reserved_namespace(topic: &str, hub: &Url) -> bool {
    let Ok(resolved) = Url::options().base_url(Some(hub)).parse(topic) else {
        // Not a URL reference: it cannot name a hub path.
        return false;
    };
    let path = normalized_path(resolved.path());
    let reserved = normalized_path(hub.path());
    let reserved = reserved.trim_end_matches('/');
    path == reserved
        || path
            .strip_prefix(reserved)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `path` with percent-encoded unreserved characters decoded (RFC 3986 section 6.2.2.2) and
/// dot-segments removed again (decoding can make new ones: `%2E%2E`).
fn normalized_path(path: &str) -> String {
    let decoded = decode_unreserved(path);
    if decoded == path {
        return decoded;
    }
    // Re-run the URL parser's dot-segment removal on the decoded path.
    match Url::parse("http://h.invalid").and_then(|b| b.join(&decoded)) {
        Ok(u) => u.path().to_owned(),
        Err(_) => decoded,
    }
}

fn decode_unreserved(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = path
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            && (byte.is_ascii_alphanumeric() || b"-._~".contains(&byte))
        {
            out.push(byte as char);
            i += 3;
            continue;
        }
        // Multi-byte characters are copied whole.
        let ch = path[i..].chars().next().expect("in bounds");
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Url {
        Url::parse("https://hub.example.com/.well-known/mercure").unwrap()
    }

    #[test]
    fn reserved_namespace_variants_are_caught() {
        for topic in [
            "/.well-known/mercure",
            "/.well-known/mercure/",
            "/.well-known/mercure/subscriptions/exact/a/b",
            "https://hub.example.com/.well-known/mercure/subscriptions/x",
            "https://any.other.host:8443/.well-known/mercure/x",
            "http://HUB.example.com/.well-known/mercure",
            "/.well-known/%6Dercure/subscriptions/x",
            "/.well-known/%6dercure",
            "/%2Ewell-known/mercure/x",
            "/.well-known/x/../mercure/x",
            "/.well-known/mercure/../mercure/x",
            "/.well-known/x/%2E%2E/mercure/x",
            "/a/b/../../.well-known/mercure/x",
            "mercure/x",
            "./mercure",
            "../.well-known/mercure/y",
            "/.well-known/mercure?x=1",
            "/.well-known/mercure#frag",
            "https://hub.example.com/.well-known/mercure/%73ubscriptions",
        ] {
            assert!(addresses_reserved_namespace(topic, &hub()), "{topic}");
        }
    }

    #[test]
    fn other_topics_are_not() {
        for topic in [
            "https://example.com/books/1",
            "urn:uuid:1",
            "/.well-known/mercure-not",
            "/.well-known/mercurex/y",
            "/.well-known/%2Fmercure",
            "/.well-known",
            "mercure:/.well-known",
            "books",
            "https://example.com/x/.well-known/mercure",
            "http://[::1",
        ] {
            assert!(!addresses_reserved_namespace(topic, &hub()), "{topic}");
        }
    }

    #[test]
    fn the_cheap_test_never_clears_a_reserved_topic() {
        let mut topics: Vec<String> = [
            "/.well-known/mercure",
            "?x",
            " ?x",
            "#f",
            "",
            " ",
            "mercure",
            "./mercure",
            "/.well-known\\mercure/x",
            "https://h/.well-known/%6Dercure",
            "urn:mercure",
            "https://example.com/books/1",
            "books",
            ".",
            "..",
            "/",
            "//h/x",
            "a?b",
            "x#mercure",
            "https://example.com/.well-known/mercurex",
            "..\\.well-known\\mercure",
        ]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
        // And every prefix of a few reserved spellings.
        for t in [
            "/.well-known/mercure/a",
            "../.well-known/mercure/",
            "https://x/.well-known/mercure?q",
        ] {
            topics.extend((0..=t.len()).map(|n| t[..n].to_owned()));
        }
        for topic in &topics {
            if clearly_outside(topic, "/.well-known/mercure") {
                assert!(!addresses_reserved_namespace(topic, &hub()), "{topic:?}");
            }
        }
        // Every concatenation of up to four of these pieces.
        let pieces = [
            "https:",
            "http:",
            "urn:",
            "//h",
            "/",
            ".",
            "..",
            "?",
            "#",
            "x",
            ".well-known",
            "mercure",
            "%2E",
            "\\",
            " ",
            "a:",
            "./",
        ];
        let mut combos = vec![String::new()];
        for _ in 0..4 {
            let next: Vec<String> = combos
                .iter()
                .flat_map(|c| pieces.iter().map(move |p| format!("{c}{p}")))
                .collect();
            for topic in &next {
                if clearly_outside(topic, "/.well-known/mercure") {
                    assert!(!addresses_reserved_namespace(topic, &hub()), "{topic:?}");
                }
            }
            combos = next;
        }
        assert!(clearly_outside(
            "https://example.com/books/1",
            "/.well-known/mercure"
        ));
        assert!(!clearly_outside("anything", "/"));
        assert_eq!(
            url_path("https://hub.example/.well-known/mercure?x"),
            "/.well-known/mercure"
        );
        assert_eq!(url_path("http://h:1"), "/");
    }

    #[test]
    fn update_rules() {
        let check = |u: Update| {
            check_update(
                &u,
                Some("https://hub.example.com/.well-known/mercure"),
                false,
            )
        };
        assert!(
            check(
                Update::new("https://example.com/a", "x")
                    .id("urn:1")
                    .event_type("t")
            )
            .is_ok()
        );
        for (update, status, reason) in [
            (Update::new("*", "x"), 400, "reserved for the wildcard"),
            (
                Update::new("a", "x").topic("/.well-known/mercure/x"),
                400,
                "reserved namespace",
            ),
            (Update::new("a", "x").id("#1"), 400, "may not start with #"),
            (Update::new("a\u{200B}", "x"), 400, "U+200B"),
            (Update::new("a", "x").id("a\u{7F}"), 400, "U+007F"),
            (Update::new("a", "x").event_type("a\u{85}"), 400, "U+0085"),
            (
                Update::new("a", "x").event_type("mercure"),
                400,
                "reserved for events",
            ),
            (
                Update::new("a", "x").event_type("ssehub.history-gap"),
                400,
                "reserved for events",
            ),
            (
                Update::new("a".repeat(MAX_FIELD_LEN + 1), "x"),
                413,
                "longer than",
            ),
            (
                Update::new("a", "x").id("i".repeat(MAX_FIELD_LEN + 1)),
                413,
                "longer than",
            ),
        ] {
            let err = check(update).unwrap_err();
            assert_eq!(err.status().as_u16(), status, "{reason}");
            assert!(err.reason().contains(reason), "{}", err.reason());
        }
        // Without a hub URL the default path applies.
        assert!(check_update(&Update::new("/.well-known/mercure/x", "x"), None, false).is_err());
        // Legacy: the namespace is open, the other rules hold.
        assert!(check_update(&Update::new("/.well-known/mercure/x", "x"), None, true).is_ok());
        assert!(check_update(&Update::new("*", "x"), None, true).is_err());
    }
}
