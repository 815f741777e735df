//! The Mercure 1.0 `urlpattern` matcher type: a WHATWG URL Pattern (draft-dunglas-mercure-08,
//! "URL Pattern"), parsed by the `urlpattern` crate, then kept in a compact form of our own.
//!
//! Relative patterns and relative topics are resolved against the hub's URL (the `base` given
//! at compile time), `ignoreCase` is off, and a topic that cannot be parsed as a URL reference
//! against that base never matches.
//!
//! # What is kept
//!
//! The crate parses the pattern into eight components (protocol, username, password,
//! hostname, port, pathname, search, hash), each with a matcher: a literal, a literal prefix
//! and suffix around "anything" (optionally without a delimiter), or a regular expression. We
//! give the crate a regex type of our own ([`LazyRegex`]) that only checks the syntax, copy each
//! component's matcher into a [`Part`], compile the regular expressions that a part really
//! needs into DFAs ([`crate::dfa`]), and drop the crate's pattern. The crate itself would have
//! compiled a `regex::Regex` per component (eight, plus one per complex component): about 70
//! KiB for `https://example.com/users/42/*`, against ~1 KiB here, and no per-thread caches.
//!
//! [`UrlPatternMatcher::matches_parts`] applies the parts exactly as the crate's own
//! `Matcher::matches` does (a property test in `tests/url_pattern.rs` compares the two on random
//! patterns and topics).

use url::Url;
use urlpattern::matcher::{InnerMatcher, Matcher};
use urlpattern::regexp::RegExp;
use urlpattern::{RegexSyntax, UrlPattern, UrlPatternInit, UrlPatternOptions};

use crate::SelectorError;
use crate::dfa::Dfa;

/// A compiled URL Pattern with the base its relative topics resolve against.
pub(crate) struct UrlPatternMatcher {
    /// Protocol, username, password, hostname, port, pathname, search, hash.
    parts: Box<[Part; 8]>,
    base: Option<Url>,
}

/// One component's matcher, as the crate's `Matcher` decides it.
enum Part {
    /// The whole value equals this.
    Literal(Box<str>),
    /// The value starts with `prefix`, ends with `suffix` (not overlapping), and what is
    /// between matches `inner`.
    Affixed {
        prefix: Box<str>,
        suffix: Box<str>,
        inner: Inner,
    },
}

enum Inner {
    /// Any text (not empty unless `allow_empty`), without `filter` when set.
    Capture {
        filter: Option<char>,
        allow_empty: bool,
    },
    /// Boxed: a DFA's struct is several hundred bytes (byte class tables), and every part would
    /// be that large.
    Regex(Box<Dfa>),
    /// A regex the crate could not build: never matches (as in the crate).
    Never,
}

/// The `*` component: any value.
fn any() -> Part {
    Part::Affixed {
        prefix: Box::default(),
        suffix: Box::default(),
        inner: Inner::Capture {
            filter: None,
            allow_empty: true,
        },
    }
}

/// The components of a parsed URL, as URL Pattern matching reads them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UrlParts<'a> {
    pub(crate) values: [&'a str; 8],
}

impl<'a> UrlParts<'a> {
    pub(crate) fn of(url: &'a Url) -> UrlParts<'a> {
        UrlParts {
            values: [
                url.scheme(),
                url.username(),
                url.password().unwrap_or(""),
                url.host_str().unwrap_or(""),
                url::quirks::port(url),
                url::quirks::pathname(url),
                url.query().unwrap_or(""),
                url.fragment().unwrap_or(""),
            ],
        }
    }
}

/// Components that make up the prefix index's key, in key order: protocol, hostname, port,
/// pathname (indices into [`UrlParts::values`]).
pub(crate) const KEY_COMPONENTS: [usize; 4] = [0, 3, 4, 5];
/// Ends each component in an index key.
pub(crate) const KEY_SEPARATOR: char = '\0';

impl UrlPatternMatcher {
    /// Compiles `pattern`; a relative one needs `base`.
    pub(crate) fn compile(pattern: &str, base: Option<&Url>) -> Result<Self, SelectorError> {
        let invalid = |e: urlpattern::Error| SelectorError::InvalidUrlPattern(one_line(&e));
        let init = UrlPatternInit::parse_constructor_string::<LazyRegex>(pattern, base.cloned())
            .map_err(invalid)?;
        let parsed = UrlPattern::<LazyRegex>::parse(
            init,
            UrlPatternOptions {
                ignore_case: false,
                ..UrlPatternOptions::default()
            },
        )
        .map_err(invalid)?;
        let parts = [
            Part::of(&parsed.protocol.matcher)?,
            Part::of(&parsed.username.matcher)?,
            Part::of(&parsed.password.matcher)?,
            Part::of(&parsed.hostname.matcher)?,
            Part::of(&parsed.port.matcher)?,
            Part::of(&parsed.pathname.matcher)?,
            Part::of(&parsed.search.matcher)?,
            Part::of(&parsed.hash.matcher)?,
        ];
        Ok(UrlPatternMatcher {
            parts: Box::new(parts),
            base: base.cloned(),
        })
    }

    /// Whether `topic`, resolved against the base, matches.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        match self.parse_topic(topic) {
            Some(url) => self.matches_parts(&UrlParts::of(&url)),
            None => false,
        }
    }

    /// `topic` resolved against this pattern's base, as [`UrlPatternMatcher::matches`] reads it.
    pub(crate) fn parse_topic(&self, topic: &str) -> Option<Url> {
        Url::options()
            .base_url(self.base.as_ref())
            .parse(topic)
            .ok()
    }

    /// Whether a URL with these components matches.
    pub(crate) fn matches_parts(&self, url: &UrlParts<'_>) -> bool {
        self.parts
            .iter()
            .zip(url.values)
            .all(|(part, value)| part.matches(value))
    }

    /// The base, as text (part of the matcher's identity: the same relative pattern on two
    /// bases is two matchers).
    pub(crate) fn base(&self) -> Option<&str> {
        self.base.as_ref().map(Url::as_str)
    }

    /// The base itself.
    pub(crate) fn base_url(&self) -> Option<&Url> {
        self.base.as_ref()
    }

    /// What every topic this pattern matches has in common at the start of its index key
    /// ([`url_key`]): the literal components in key order, each ended by [`KEY_SEPARATOR`],
    /// then the literal prefix of the first one that is not literal. Sound because it is read
    /// from the very tests [`UrlPatternMatcher::matches_parts`] applies: a literal component
    /// equals the URL's, a prefixed one starts with its prefix.
    pub(crate) fn key_prefix(&self) -> String {
        let mut out = String::new();
        for i in KEY_COMPONENTS {
            match &self.parts[i] {
                Part::Literal(l) => {
                    out.push_str(l);
                    out.push(KEY_SEPARATOR);
                }
                Part::Affixed { prefix, .. } => {
                    out.push_str(prefix);
                    break;
                }
            }
        }
        out
    }

    /// Heap bytes held (an estimate from the sizes of what it owns; see `Selector::heap_size`).
    pub(crate) fn heap_size(&self) -> usize {
        let parts: usize = self.parts.iter().map(Part::heap_size).sum();
        let base = self
            .base
            .as_ref()
            .map_or(0, |u| crate::alloc_size(u.as_str().len()));
        crate::alloc_size(std::mem::size_of::<[Part; 8]>())
            + crate::alloc_size(std::mem::size_of::<Self>())
            + parts
            + base
    }
}

/// The index key of a parsed topic: protocol, hostname, port and pathname, each ended by
/// [`KEY_SEPARATOR`]. Every URL pattern that matches the topic has a
/// [`UrlPatternMatcher::key_prefix`] that is a prefix of it.
pub(crate) fn url_key(url: &UrlParts<'_>, out: &mut String) {
    out.clear();
    for i in KEY_COMPONENTS {
        out.push_str(url.values[i]);
        out.push(KEY_SEPARATOR);
    }
}

impl Part {
    fn of(m: &Matcher<LazyRegex>) -> Result<Part, SelectorError> {
        let affixed = |inner| Part::Affixed {
            prefix: m.prefix.as_str().into(),
            suffix: m.suffix.as_str().into(),
            inner,
        };
        Ok(match &m.inner {
            InnerMatcher::Literal { literal } => {
                Part::Literal(format!("{}{literal}{}", m.prefix, m.suffix).into())
            }
            InnerMatcher::SingleCapture {
                filter,
                allow_empty,
            } => {
                if m.prefix.is_empty() && m.suffix.is_empty() && filter.is_none() && *allow_empty {
                    any()
                } else {
                    affixed(Inner::Capture {
                        filter: *filter,
                        allow_empty: *allow_empty,
                    })
                }
            }
            InnerMatcher::RegExp { regexp: Ok(re) } => affixed(Inner::Regex(Box::new(
                Dfa::ascii(&re.source).map_err(|_| SelectorError::TooComplex)?,
            ))),
            InnerMatcher::RegExp { regexp: Err(_) } => affixed(Inner::Never),
        })
    }

    /// The crate's `Matcher::matches`, case-sensitive, without captures.
    fn matches(&self, value: &str) -> bool {
        let (prefix, suffix, inner) = match self {
            Part::Literal(l) => return **l == *value,
            Part::Affixed {
                prefix,
                suffix,
                inner,
            } => (prefix, suffix, inner),
        };
        let mut value = value;
        if !prefix.is_empty() || !suffix.is_empty() {
            if value.len() < prefix.len() + suffix.len()
                || !value.starts_with(&**prefix)
                || !value.ends_with(&**suffix)
            {
                return false;
            }
            value = &value[prefix.len()..value.len() - suffix.len()];
        }
        match inner {
            Inner::Capture {
                filter,
                allow_empty,
            } => (*allow_empty || !value.is_empty()) && filter.is_none_or(|c| !value.contains(c)),
            Inner::Regex(dfa) => dfa.is_match(value.as_bytes()),
            Inner::Never => false,
        }
    }

    fn heap_size(&self) -> usize {
        let s = |b: &str| {
            if b.is_empty() {
                0
            } else {
                crate::alloc_size(b.len())
            }
        };
        match self {
            Part::Literal(l) => s(l),
            Part::Affixed {
                prefix,
                suffix,
                inner,
            } => {
                s(prefix)
                    + s(suffix)
                    + match inner {
                        Inner::Regex(dfa) => {
                            dfa.heap_size() + crate::alloc_size(std::mem::size_of::<Dfa>())
                        }
                        _ => 0,
                    }
            }
        }
    }
}

/// The regex type we hand the `urlpattern` crate: it checks the syntax (so an invalid regexp
/// group is still an invalid pattern) and keeps the source, without compiling anything. The
/// crate builds one per component and per complex component; we compile only what
/// [`Part::of`] needs. Its `matches` (which the crate calls while parsing, to ask whether a
/// protocol pattern matches a special scheme) compiles on the spot and returns no captures.
#[derive(Debug)]
pub(crate) struct LazyRegex {
    source: Box<str>,
}

impl RegExp for LazyRegex {
    fn syntax() -> RegexSyntax {
        RegexSyntax::Rust
    }

    fn parse(pattern: &str, _flags: &str, _force_eval: bool) -> Result<Self, ()> {
        // The same syntax `regex::Regex::new` accepts (which the crate would have used).
        regex_syntax::Parser::new().parse(pattern).map_err(|_| ())?;
        Ok(LazyRegex {
            source: pattern.into(),
        })
    }

    fn matches<'a>(&self, text: &'a str) -> Option<Vec<Option<&'a str>>> {
        let dfa = Dfa::ascii(&self.source).ok()?;
        dfa.is_match(text.as_bytes()).then(Vec::new)
    }

    fn pattern_string(&self) -> &str {
        &self.source
    }
}

/// The crate's error text on one line, without quoting more than a short prefix of anything.
fn one_line(e: &urlpattern::Error) -> String {
    let text = e.to_string().replace(['\r', '\n'], " ");
    match text.char_indices().nth(160) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text,
    }
}
