//! The prefix index ([`SelectorIndex`]) against naive evaluation: for random sets of URL
//! patterns (with and without literal prefixes, absolute and relative, on several bases, with
//! upper-case hosts and schemes) and URI templates, `matching` finds exactly the matchers that
//! match one of the topics, each once, and inserting and releasing keeps it so.

use proptest::prelude::*;
use ssehub_selector::{Matched, MatcherId, Selector, SelectorIndex, Url};

fn bases() -> Vec<Option<Url>> {
    vec![
        Some(Url::parse("https://hub.example.com/.well-known/mercure").unwrap()),
        Some(Url::parse("https://other.example/.well-known/mercure").unwrap()),
        Some(Url::parse("http://hub.example.com:8080/a/b").unwrap()),
        None,
    ]
}

fn pattern_text() -> impl Strategy<Value = String> {
    let absolute = (
        prop::sample::select(vec!["https", "http", "HTTPS", "http{s}?", "*", "urn"]),
        prop::sample::select(vec![
            "://example.com",
            "://EXAMPLE.COM",
            "://*.example.com",
            "://hub.example.com",
            "://example.com:8080",
            ":",
        ]),
    )
        .prop_map(|(p, h)| format!("{p}{h}"));
    let path = prop::collection::vec(
        prop::sample::select(vec![
            "users",
            "42",
            "43",
            "4",
            ":id",
            ":rest*",
            "*",
            "Books",
            "{x}?",
            ":id(\\d+)",
            "a%20b",
        ]),
        0..4,
    )
    .prop_map(|segs| segs.iter().map(|s| format!("/{s}")).collect::<String>());
    (
        prop::option::of(absolute),
        path,
        prop::sample::select(vec!["", "/*", "?q=*", "/"]),
    )
        .prop_map(|(abs, path, tail)| {
            let s = format!("{}{path}{tail}", abs.unwrap_or_default());
            if s.is_empty() { "/".to_owned() } else { s }
        })
}

fn template_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "https://example.com",
            "",
            "urn:x",
            "https://example.com/users",
        ]),
        prop::collection::vec(
            prop::sample::select(vec![
                "/{id}", "{/id}", "/42", "{?q}", "/users", "{+rest}", "/4",
            ]),
            1..4,
        ),
    )
        .prop_map(|(head, parts)| format!("{head}{}", parts.concat()))
}

#[derive(Debug, Clone)]
enum Spec {
    Pattern(String, usize),
    Template(String),
}

fn spec() -> impl Strategy<Value = Spec> {
    prop_oneof![
        3 => (pattern_text(), 0..4usize).prop_map(|(p, b)| Spec::Pattern(p, b)),
        1 => template_text().prop_map(Spec::Template),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec![
            "https://example.com",
            "HTTPS://Example.COM",
            "https://example.com:443",
            "https://a.example.com",
            "https://hub.example.com",
            "http://hub.example.com:8080",
            "https://other.example",
            "https://example.com:8080",
            "urn:x",
            "https:",
            "",
        ]),
        prop::collection::vec(
            prop::sample::select(vec![
                "users", "42", "43", "4", "Books", "x", "a%20b", "a b", "..",
            ]),
            0..4,
        ),
        prop::sample::select(vec!["", "/", "?q=1", "#f"]),
    )
        .prop_map(|(head, segs, tail)| {
            let path: String = segs.iter().map(|s| format!("/{s}")).collect();
            format!("{head}{path}{tail}")
        })
}

fn build(spec: &Spec, bases: &[Option<Url>]) -> Option<Selector> {
    let s = match spec {
        Spec::Pattern(p, b) => Selector::url_pattern(p, bases[*b].as_ref()).ok()?,
        Spec::Template(t) => Selector::parse(t).ok()?,
    };
    s.is_compiled().then_some(s)
}

fn naive(held: &[(MatcherId, Selector)], topics: &[String]) -> Vec<MatcherId> {
    let mut v: Vec<MatcherId> = held
        .iter()
        .filter(|(_, s)| topics.iter().any(|t| s.matches(t)))
        .map(|(id, _)| *id)
        .collect();
    v.sort_by_key(|id| (id.slot, id.version));
    v.dedup();
    v
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_index_finds_what_naive_evaluation_finds(
        specs in prop::collection::vec(spec(), 1..24),
        releases in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        probes in prop::collection::vec(prop::collection::vec(topic(), 1..4), 1..8),
    ) {
        let bases = bases();
        let mut index = SelectorIndex::default();
        let mut held: Vec<(MatcherId, Selector)> = Vec::new();
        for spec in &specs {
            if let Some(s) = build(spec, &bases) {
                let id = index.insert(&s);
                if let Some((prev, _)) = held.iter().find(|(_, h)| *h == s) {
                    prop_assert_eq!(*prev, id, "the same matcher gets the same id");
                }
                held.push((id, s));
            }
        }
        for r in releases {
            if held.is_empty() {
                break;
            }
            let (id, _) = held.swap_remove(r.index(held.len()));
            prop_assert!(index.release(id));
        }
        let mut distinct: Vec<(MatcherId, Selector)> = held.clone();
        distinct.sort_by_key(|(id, _)| (id.slot, id.version));
        distinct.dedup_by_key(|(id, _)| *id);
        prop_assert_eq!(index.len(), distinct.len());
        let mut found = Matched::default();
        for topics in probes {
            index.matching(&topics, &mut found);
            let mut got = found.ids.clone();
            got.sort_by_key(|id| (id.slot, id.version));
            let before = got.len();
            got.dedup();
            prop_assert_eq!(before, got.len(), "each matcher once");
            prop_assert_eq!(got, naive(&distinct, &topics), "topics {:?}", topics);
        }
        for (id, _) in held {
            prop_assert!(index.release(id));
        }
        prop_assert!(index.is_empty());
    }
}

#[test]
fn literal_prefixes_narrow_the_candidates() {
    let hub = Url::parse("https://example.com/.well-known/mercure").unwrap();
    let mut index = SelectorIndex::default();
    for i in 0..1000 {
        index.insert(
            &Selector::url_pattern(&format!("https://example.com/users/{i}/:rest*"), Some(&hub))
                .unwrap(),
        );
    }
    index.insert(&Selector::url_pattern("*://example.com/*", Some(&hub)).unwrap());
    index.insert(&Selector::parse("{scheme}://example.com/x").unwrap());
    assert_eq!(index.unprefixed(), 2);
    let mut found = Matched::default();
    index.matching(
        &["https://EXAMPLE.com:443/users/42/books".into()],
        &mut found,
    );
    assert_eq!(found.ids.len(), 2, "users/42 and *://example.com/*");
    // Relative, against the patterns' base: the same two (`:rest*` may be empty).
    index.matching(&["/users/42".into()], &mut found);
    assert_eq!(found.ids.len(), 2, "{found:?}");
    index.matching(
        &["https://example.com/users/7".into(), "x".into()],
        &mut found,
    );
    assert_eq!(found.ids.len(), 2, "{found:?}");
}
