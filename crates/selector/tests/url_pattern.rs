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

mod against_the_crate {
    //! Our compact matcher ([`Selector::url_pattern`]) against the `urlpattern` crate's own
    //! `UrlPattern::test` (on `regex::Regex`, as the crate ships), on random patterns and topics:
    //! the same patterns accepted, the same answers.

    use proptest::prelude::*;
    use ssehub_selector::{Selector, SelectorError, Url};
    use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput, UrlPatternOptions};

    fn hub() -> Url {
        Url::parse("https://hub.example.com/.well-known/mercure").unwrap()
    }

    fn reference(p: &str, base: &Url) -> Option<UrlPattern> {
        let init =
            UrlPatternInit::parse_constructor_string::<regex::Regex>(p, Some(base.clone())).ok()?;
        UrlPattern::parse(
            init,
            UrlPatternOptions {
                ignore_case: false,
                ..Default::default()
            },
        )
        .ok()
    }

    fn reference_matches(p: &UrlPattern, base: &Url, topic: &str) -> bool {
        match Url::options().base_url(Some(base)).parse(topic) {
            Ok(url) => p.test(UrlPatternMatchInput::Url(url)).unwrap_or(false),
            Err(_) => false,
        }
    }

    fn protocol() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "https",
            "http",
            "http{s}?",
            "*",
            "ws",
            "HTTPS",
            "foo",
            "(https|ftp)",
        ])
    }

    fn host() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "example.com",
            "EXAMPLE.com",
            "*.example.com",
            ":sub.example.com",
            "example.org",
            "bücher.example",
            "hub.example.com",
            "{www.}?example.com",
        ])
    }

    fn segment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "users",
            "42",
            "Books",
            "a%20b",
            "é",
            ":id",
            ":id?",
            ":rest*",
            ":rest+",
            "*",
            "(\\d+)",
            ":x([a-z]+)",
            "{a}?",
            "{:x}?",
            ":x(\\w+)",
            ".well-known",
            "x-:y",
            "*.json",
            ":x(.*)",
            "..",
            "(é|x)",
        ])
    }

    prop_compose! {
        fn pattern()(
            absolute in any::<bool>(),
            proto in protocol(),
            host in host(),
            port in prop::sample::select(vec!["", ":8080", ":443", ":*"]),
            segs in prop::collection::vec(segment(), 0..5),
            tail in prop::sample::select(vec!["", "/", "?q=*", "?q=:v", "#f", "/*", "\\?x"]),
        ) -> String {
            let path: String = segs.iter().map(|s| format!("/{s}")).collect();
            if absolute {
                format!("{proto}://{host}{port}{path}{tail}")
            } else {
                format!("{path}{tail}")
            }
        }
    }

    fn topic_segment() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "users",
            "42",
            "books",
            "Books",
            "a%20b",
            "a b",
            "é",
            "%C3%A9",
            "x-1",
            "data.json",
            ".",
            "..",
            "",
            "x",
            "7",
            "/",
        ])
    }

    prop_compose! {
        fn topic()(
            form in 0..5u8,
            proto in prop::sample::select(vec!["https", "http", "HTTPS", "ws", "ftp", "foo"]),
            host in prop::sample::select(vec![
                "example.com", "EXAMPLE.COM", "a.example.com", "www.example.com", "example.org",
                "bücher.example", "xn--bcher-kva.example", "hub.example.com", "user@example.com",
            ]),
            port in prop::sample::select(vec!["", ":8080", ":443", ":80"]),
            segs in prop::collection::vec(topic_segment(), 0..5),
            tail in prop::sample::select(vec!["", "/", "?q=1", "?q=", "#f", "?a=1#g"]),
        ) -> String {
            let path: String = segs.iter().map(|s| format!("/{s}")).collect();
            match form {
                0 | 1 => format!("{proto}://{host}{port}{path}{tail}"),
                2 => format!("{path}{tail}"),
                3 => format!("{proto}:{}{tail}", path.trim_start_matches('/')),
                _ => format!("urn:x:{}", segs.join(":")),
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn same_answers(p in pattern(), topics in prop::collection::vec(topic(), 1..8)) {
            let base = hub();
            let ours = Selector::url_pattern(&p, Some(&base));
            let theirs = reference(&p, &base);
            match (ours, theirs) {
                (Ok(ours), Some(theirs)) => {
                    for t in &topics {
                        prop_assert_eq!(ours.matches(t), reference_matches(&theirs, &base, t), "{} on {}", p, t);
                    }
                }
                (Err(SelectorError::InvalidUrlPattern(_)), None) => {}
                // Ours: the empty string is no matcher (a Mercure rule, not URL Pattern's).
                (Err(SelectorError::Empty), _) if p.is_empty() => {}
                (ours, theirs) => prop_assert!(false, "{}: ours {:?}, theirs {}", p, ours.err(), theirs.is_some()),
            }
        }
    }

    #[test]
    fn unicode_classes_keep_their_meaning() {
        // Compiled over ASCII: a topic's components are ASCII, so these still agree.
        let base = hub();
        for p in [
            "https://example.com/:x(\\w+)",
            "https://example.com/:x(\\p{L}+)",
            "https://example.com/:x([^a]+)",
            "https://example.com/:x(.)",
            "https://example.com/:x(\\bab\\b)",
        ] {
            let ours = Selector::url_pattern(p, Some(&base)).unwrap();
            let theirs = reference(p, &base).unwrap();
            for t in [
                "https://example.com/ab",
                "https://example.com/é",
                "https://example.com/%C3%A9",
                "https://example.com/_",
                "https://example.com/b",
            ] {
                assert_eq!(
                    ours.matches(t),
                    reference_matches(&theirs, &base, t),
                    "{p} on {t}"
                );
            }
        }
    }
}
