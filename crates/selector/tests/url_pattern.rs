//! The `urlpattern` matcher type against the Mercure 1.0 spec's examples and the URL Pattern
//! standard's rules the spec points at (draft-dunglas-mercure-08, "URL Pattern").

use ssehub_selector::{Selector, SelectorError, Url};

fn hub() -> Url {
    Url::parse("https://hub.example.com/.well-known/mercure").unwrap()
}

fn pattern(p: &str) -> Selector {
    Selector::url_pattern(p, Some(&hub())).unwrap()
}

#[test]
fn the_spec_examples() {
    // "Subscription": https://example.com/bar/:id
    let bar = pattern("https://example.com/bar/:id");
    assert!(bar.matches("https://example.com/bar/1"));
    assert!(bar.matches("https://example.com/bar/abc"));
    assert!(!bar.matches("https://example.com/bar/1/2"));
    assert!(!bar.matches("https://example.com/bar/"));
    assert!(!bar.matches("https://example.com/foo/1"));
    // "Payloads": a urlpattern grant matches the subscription's own matcher string as a topic.
    assert!(bar.matches("https://example.com/bar/:id"));
    // "Subscribers": a per-user namespace with a trailing wildcard.
    let ns = pattern("https://example.com/users/42/*");
    assert!(ns.matches("https://example.com/users/42/books/1"));
    assert!(ns.matches("https://example.com/users/42/"));
    assert!(!ns.matches("https://example.com/users/43/books/1"));
    assert!(!ns.matches("https://example.com/users/420/books/1"));
    // "Matcher Types": relative patterns and topics resolve against the hub URL.
    let events = pattern("/.well-known/mercure/subscriptions/exact/:topic/:subscriber");
    assert!(events.matches("/.well-known/mercure/subscriptions/exact/a/urn%3Auuid%3A1"));
    assert!(events.matches(
        "https://hub.example.com/.well-known/mercure/subscriptions/exact/a/urn%3Auuid%3A1"
    ));
    assert!(!events.matches(
        "https://elsewhere.example/.well-known/mercure/subscriptions/exact/a/urn%3Auuid%3A1"
    ));
}

#[test]
fn the_conformance_suite_cases() {
    let p = pattern("https://example.net/foo/:random");
    assert!(p.matches("https://example.net/foo/0123456789abcdef0123456789abcdef01234567"));
    assert!(!p.matches("https://example.net/foo/will-not-match/x"));
    let q = pattern("https://example.net/bar/:var");
    assert!(!q.matches("https://example.net/foo/will-not-match"));
}

#[test]
fn case_sensitive_except_the_host() {
    let p = pattern("https://example.com/Books/:id");
    assert!(!p.matches("https://example.com/books/1"));
    assert!(p.matches("https://EXAMPLE.com/Books/1"));
}

#[test]
fn a_topic_that_is_not_a_url_never_matches() {
    let any_path = pattern("https://example.com/*");
    for t in [
        "http://[::1",
        "https://exa mple.com/x",
        "https://example.com:99999/x",
    ] {
        assert!(!any_path.matches(t), "{t}");
    }
    // Without a base, a relative topic cannot be resolved.
    let absolute = Selector::url_pattern("https://example.com/:x", None).unwrap();
    assert!(!absolute.matches("/x"));
    assert!(absolute.matches("https://example.com/x"));
}

#[test]
fn wildcard_and_errors() {
    assert!(Selector::url_pattern("*", None).unwrap().is_any());
    assert_eq!(Selector::url_pattern("", None), Err(SelectorError::Empty));
    assert!(matches!(
        Selector::url_pattern("/relative/:x", None),
        Err(SelectorError::InvalidUrlPattern(_))
    ));
    for bad in [
        "https://example.com/(",
        "https://example.com/:id(",
        "https://example.com/{",
    ] {
        let err = Selector::url_pattern(bad, Some(&hub())).unwrap_err();
        assert!(matches!(err, SelectorError::InvalidUrlPattern(_)), "{bad}");
        assert!(!err.to_string().contains('\n'));
    }
    let long = format!(
        "https://example.com/{}",
        "a".repeat(ssehub_selector::MAX_SELECTOR_LEN)
    );
    assert!(matches!(
        Selector::url_pattern(&long, None),
        Err(SelectorError::TooLong { .. })
    ));
}

#[test]
fn a_pattern_is_a_different_matcher_than_the_same_exact_text_or_base() {
    let p = pattern("https://example.com/a");
    let e = Selector::exact_topic("https://example.com/a").unwrap();
    assert_ne!(p, e);
    assert!(p.is_url_pattern() && !e.is_url_pattern());
    let other_base = Url::parse("https://other.example/.well-known/mercure").unwrap();
    let rel_a = pattern("/x/:y");
    let rel_b = Selector::url_pattern("/x/:y", Some(&other_base)).unwrap();
    assert_ne!(rel_a, rel_b);
    assert_eq!(rel_a, pattern("/x/:y"));
}

#[test]
fn matching_is_linear_in_the_topic() {
    // A pattern that backtracks exponentially on a naive engine: the regex crate is linear.
    let p = pattern("https://example.com/:a([a-z]*)*x");
    let topic = format!("https://example.com/{}", "a".repeat(20_000));
    let start = std::time::Instant::now();
    assert!(!p.matches(&topic));
    assert!(start.elapsed() < std::time::Duration::from_secs(2));
}
