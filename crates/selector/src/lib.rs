//! Mercure topic selectors: `*`, exact topics, URL Patterns and RFC 6570 URI templates.
//!
//! This crate owns one question: *does this selector match this topic?* The hub uses it to route
//! updates to subscriptions, and the auth crate uses it to check the `mercure.publish` and
//! `mercure.subscribe` claims of a JWT. Two structures serve the hub at scale:
//!
//! - [`MatcherRegistry`]: one compiled matcher per distinct (type, base, text), shared by every
//!   subscription that asks for it and freed when the last one goes, its memory bounded in
//!   bytes globally and per client address and token ([`MatcherLimits`]).
//! - [`SelectorIndex`]: the distinct non-exact matchers of a hub, indexed by the literal prefix
//!   their matches must start with, so a publish evaluates only the matchers that can match its
//!   topics, each once per topic.
//!
//! ```
//! use ssehub_selector::Selector;
//!
//! let any = Selector::parse("*").unwrap();
//! assert!(any.is_any() && any.matches("urn:whatever"));
//!
//! let exact = Selector::parse("https://example.com/books/1").unwrap();
//! assert_eq!(exact.exact(), Some("https://example.com/books/1"));
//! assert!(exact.matches("https://example.com/books/1"));
//!
//! let template = Selector::parse("https://example.com/books/{id}").unwrap();
//! assert!(template.matches("https://example.com/books/1"));
//! assert!(!template.matches("https://example.com/books/1/reviews"));
//! ```
//!
//! # Semantics
//!
//! A selector matches a topic when it is `*`, when it is byte-for-byte equal to the topic, or
//! when it is a URI template of which the topic could be an expansion (see [`template`] for the
//! exact rules, including where matching is deliberately more permissive than RFC 6570).
//!
//! A selector without `{` is an exact topic. A selector with `{` is compiled as a URI template;
//! if it is *not* a valid template (an unclosed brace, an empty expression, a bad variable name,
//! a reserved operator such as `{=x}`, ...) it is treated as an exact topic instead of being
//! rejected. This mirrors the Mercure reference hub, which compares every selector to the topic
//! for equality before trying it as a template, so tokens and subscriptions written for it keep
//! working here. [`Selector::parse`] still rejects the empty string, selectors longer than
//! [`MAX_SELECTOR_LEN`], and valid templates too large to compile within our bounds.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;
use std::sync::Arc;

mod dfa;
mod index;
mod radix;
mod registry;
pub mod template;
mod text;
mod url_pattern;

pub use index::{Matched, MatcherId, SelectorIndex};
pub use registry::{
    MatcherError, MatcherLease, MatcherLimits, MatcherRegistry, Owner, OwnerKind, OwnerLimit,
    RegistryStats,
};
pub use text::{describe_char, forbidden_char};

use template::Template;
use url_pattern::UrlPatternMatcher;

/// A URL, for the base of relative URL patterns.
pub use url::Url;

/// Longest selector, in bytes, that [`Selector::parse`] accepts.
///
/// Selectors arrive from untrusted query strings and JWT claims; the cap bounds the work done to
/// compile one.
pub const MAX_SELECTOR_LEN: usize = 2048;

/// Why a selector was rejected. The `Display` form is a one-line reason, suitable for a 400 body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The selector is longer than [`MAX_SELECTOR_LEN`] bytes.
    #[error("selector is longer than {max} bytes")]
    TooLong {
        /// The limit that was exceeded.
        max: usize,
    },
    /// The selector is the empty string.
    #[error("selector is empty")]
    Empty,
    /// The URI template has more expressions than [`template::MAX_EXPRESSIONS`].
    #[error("URI template has more than {max} expressions")]
    TooManyExpressions {
        /// The limit that was exceeded.
        max: usize,
    },
    /// The URI template has more variables than [`template::MAX_VARIABLES`].
    #[error("URI template has more than {max} variables")]
    TooManyVariables {
        /// The limit that was exceeded.
        max: usize,
    },
    /// The URI template or URL pattern is valid but its matcher would exceed our compiled-size
    /// limits (its automaton would be too large: see the crate's `dfa` module).
    #[error("pattern is too complex to match")]
    TooComplex,
    /// The URL pattern does not compile (or is relative and no base was given).
    #[error("invalid URL pattern: {0}")]
    InvalidUrlPattern(String),
}

/// A parsed topic selector. Cheap to clone (one `Arc`); equality and hashing use the source text.
#[derive(Clone)]
pub struct Selector {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    source: Box<str>,
    kind: Kind,
    /// Set when a [`MatcherRegistry`] handed it out: tells the registry when it is gone.
    registration: Option<registry::Registration>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(r) = self.registration.take() {
            r.released();
        }
    }
}

pub(crate) enum Kind {
    Any,
    Exact,
    /// Boxed, as is the URL pattern: a DFA's struct is several hundred bytes, and every
    /// selector (exact ones too) would be that large.
    Template(Box<Template>),
    UrlPattern(Box<UrlPatternMatcher>),
}

impl Kind {
    /// Distinguishes kinds in equality and hashing: `exact_topic("a{b}")` and the template
    /// `a{b}` share a text but are different matchers.
    fn tag(&self) -> u8 {
        match self {
            Kind::Any => 0,
            Kind::Exact => 1,
            Kind::Template(_) => 2,
            Kind::UrlPattern(_) => 3,
        }
    }

    fn base(&self) -> Option<&str> {
        match self {
            Kind::UrlPattern(p) => p.base(),
            _ => None,
        }
    }
}

impl Selector {
    /// Parses a selector: `*` matches any topic, text without `{` is an exact topic, and text
    /// with `{` is an RFC 6570 URI template (or, if it is not a valid one, an exact topic).
    pub fn parse(s: &str) -> Result<Selector, SelectorError> {
        Ok(Selector::from_inner(Selector::parse_inner(s)?))
    }

    pub(crate) fn parse_inner(s: &str) -> Result<Inner, SelectorError> {
        check_len(s)?;
        let kind = if s == "*" {
            Kind::Any
        } else if !s.contains('{') {
            Kind::Exact
        } else {
            match Template::compile(s) {
                Ok(Some(t)) => Kind::Template(Box::new(t)),
                // Not a valid template: compatibility with the reference hub says exact topic.
                Ok(None) => Kind::Exact,
                Err(e) => return Err(e),
            }
        };
        Ok(Inner::new(s, kind))
    }

    pub(crate) fn from_inner(inner: Inner) -> Selector {
        Selector {
            inner: Arc::new(inner),
        }
    }

    /// An exact selector: matches `topic` byte for byte and nothing else, even when it contains
    /// `{` (a Mercure 1.0 `exact` matcher is never a template). `*` is still the wildcard, as the
    /// spec reserves it for every matcher type. Same length rules as [`Selector::parse`].
    pub fn exact_topic(topic: &str) -> Result<Selector, SelectorError> {
        Ok(Selector::from_inner(Selector::exact_inner(topic)?))
    }

    pub(crate) fn exact_inner(topic: &str) -> Result<Inner, SelectorError> {
        check_len(topic)?;
        let kind = if topic == "*" { Kind::Any } else { Kind::Exact };
        Ok(Inner::new(topic, kind))
    }

    /// A WHATWG URL Pattern (the Mercure 1.0 `urlpattern` matcher type): relative patterns,
    /// and relative topics at match time, resolve against `base` (the hub's URL); a relative
    /// pattern without a base is an error. `*` is the wildcard, as for every matcher type. The
    /// length rule of [`Selector::parse`] applies.
    pub fn url_pattern(pattern: &str, base: Option<&Url>) -> Result<Selector, SelectorError> {
        Ok(Selector::from_inner(Selector::url_pattern_inner(
            pattern, base,
        )?))
    }

    pub(crate) fn url_pattern_inner(
        pattern: &str,
        base: Option<&Url>,
    ) -> Result<Inner, SelectorError> {
        check_len(pattern)?;
        let kind = if pattern == "*" {
            Kind::Any
        } else {
            Kind::UrlPattern(Box::new(UrlPatternMatcher::compile(pattern, base)?))
        };
        Ok(Inner::new(pattern, kind))
    }

    /// Whether `topic` is selected: `*`, byte-for-byte equality, a template expansion, or a
    /// URL pattern match.
    pub fn matches(&self, topic: &str) -> bool {
        match &self.inner.kind {
            Kind::Any => true,
            Kind::Exact => *self.inner.source == *topic,
            // Equality first, like the reference hub: a template also selects the topic that is
            // literally its own text.
            Kind::Template(t) => *self.inner.source == *topic || t.matches(topic),
            Kind::UrlPattern(p) => p.matches(topic),
        }
    }

    /// The source text of the selector.
    pub fn as_str(&self) -> &str {
        &self.inner.source
    }

    /// `Some(topic)` for an exact selector, so the hub can index it in a hash map.
    /// `None` for `*` and for templates.
    pub fn exact(&self) -> Option<&str> {
        match self.inner.kind {
            Kind::Exact => Some(&self.inner.source),
            _ => None,
        }
    }

    /// Whether this is the `*` selector.
    pub fn is_any(&self) -> bool {
        matches!(self.inner.kind, Kind::Any)
    }

    /// Whether this selector was compiled as a URI template.
    pub fn is_template(&self) -> bool {
        matches!(self.inner.kind, Kind::Template(_))
    }

    /// Whether this selector is a URL pattern.
    pub fn is_url_pattern(&self) -> bool {
        matches!(self.inner.kind, Kind::UrlPattern(_))
    }

    /// Its Mercure matcher type name: `exact` (an exact topic, and the `*` wildcard, which
    /// every type shares), `urlpattern`, or `uri_template` for a 0.x template.
    pub fn match_type(&self) -> &'static str {
        match self.inner.kind {
            Kind::Any | Kind::Exact => "exact",
            Kind::UrlPattern(_) => "urlpattern",
            Kind::Template(_) => "uri_template",
        }
    }

    /// Whether matching it runs a compiled automaton (a URI template or a URL pattern), as
    /// opposed to a byte comparison (exact) or nothing (`*`). These are the selectors a
    /// [`SelectorIndex`] indexes and a [`MatcherRegistry`] budgets.
    pub fn is_compiled(&self) -> bool {
        matches!(self.inner.kind, Kind::Template(_) | Kind::UrlPattern(_))
    }

    /// The base URL of a URL pattern (relative patterns and topics resolve against it).
    pub fn base(&self) -> Option<&str> {
        self.inner.kind.base()
    }

    /// Heap bytes this selector holds (its text, and for a compiled one its automata and
    /// parts), computed from the exact sizes of what it owns, each allocation rounded up as an
    /// allocator would (a conservative estimate: `tests/memory.rs` checks it against the bytes
    /// really allocated).
    pub fn heap_size(&self) -> usize {
        self.inner.heap_size()
    }

    /// Whether two handles share one compiled matcher (not merely equal ones).
    pub fn ptr_eq(a: &Selector, b: &Selector) -> bool {
        Arc::ptr_eq(&a.inner, &b.inner)
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.inner.kind
    }
}

impl Inner {
    fn new(source: &str, kind: Kind) -> Inner {
        Inner {
            source: source.into(),
            kind,
            registration: None,
        }
    }

    pub(crate) fn set_registration(&mut self, r: registry::Registration) {
        self.registration = Some(r);
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }

    pub(crate) fn kind(&self) -> &Kind {
        &self.kind
    }

    pub(crate) fn heap_size(&self) -> usize {
        let compiled = match &self.kind {
            Kind::Any | Kind::Exact => 0,
            Kind::Template(t) => t.heap_size() + alloc_size(std::mem::size_of::<Template>()),
            Kind::UrlPattern(p) => p.heap_size(),
        };
        // The Arc's allocation: two counters and the struct.
        alloc_size(std::mem::size_of::<Inner>() + 16) + alloc_size(self.source.len()) + compiled
    }
}

/// The length rules every constructor applies.
fn check_len(s: &str) -> Result<(), SelectorError> {
    if s.is_empty() {
        return Err(SelectorError::Empty);
    }
    if s.len() > MAX_SELECTOR_LEN {
        return Err(SelectorError::TooLong {
            max: MAX_SELECTOR_LEN,
        });
    }
    Ok(())
}

/// What an allocation of `n` bytes costs at most with the allocators we run on (mimalloc's
/// size classes are at most 12.5 % apart; glibc adds an 8-byte header and rounds to 16): `n`
/// plus an eighth plus 16.
pub(crate) fn alloc_size(n: usize) -> usize {
    n + n / 8 + 16
}

impl fmt::Debug for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.inner.kind {
            Kind::Any => "Any",
            Kind::Exact => "Exact",
            Kind::Template(_) => "Template",
            Kind::UrlPattern(_) => "UrlPattern",
        };
        f.debug_struct("Selector")
            .field("kind", &kind)
            .field("source", &&*self.inner.source)
            .finish()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.source)
    }
}

impl PartialEq for Selector {
    fn eq(&self, other: &Self) -> bool {
        self.inner.kind.tag() == other.inner.kind.tag()
            && self.inner.source == other.inner.source
            && self.inner.kind.base() == other.inner.kind.base()
    }
}

impl Eq for Selector {}

impl Hash for Selector {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.kind.tag().hash(state);
        self.inner.source.hash(state);
        self.inner.kind.base().hash(state);
    }
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Selector::parse(s)
    }
}

impl AsRef<str> for Selector {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every selector, exact ones included, pays for this struct: compiled parts are boxed.
    #[test]
    fn a_selector_stays_small() {
        let inner = std::mem::size_of::<Inner>();
        if cfg!(target_pointer_width = "64") {
            assert!(inner <= 80, "Inner is {inner} bytes");
        }
    }

    #[test]
    fn empty_and_too_long_are_errors() {
        assert_eq!(Selector::parse(""), Err(SelectorError::Empty));
        let long = "a".repeat(MAX_SELECTOR_LEN + 1);
        assert_eq!(
            Selector::parse(&long),
            Err(SelectorError::TooLong {
                max: MAX_SELECTOR_LEN
            })
        );
        assert!(Selector::parse(&"a".repeat(MAX_SELECTOR_LEN)).is_ok());
    }

    #[test]
    fn star_is_any() {
        let s = Selector::parse("*").unwrap();
        assert!(s.is_any());
        assert_eq!(s.exact(), None);
        assert!(s.matches(""));
        assert!(s.matches("anything at all"));
    }

    #[test]
    fn equality_and_hash_follow_kind_and_source() {
        use std::collections::HashSet;
        let a = Selector::parse("https://x/{id}").unwrap();
        let b = Selector::parse("https://x/{id}").unwrap();
        let c = Selector::parse("https://x/{ id}").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let exact = Selector::exact_topic("https://x/{id}").unwrap();
        assert_ne!(a, exact);
        let set: HashSet<Selector> = [a, b, c, exact].into_iter().collect();
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn exact_topic_is_never_a_template() {
        let s = Selector::exact_topic("https://x/{id}").unwrap();
        assert!(!s.is_template());
        assert_eq!(s.exact(), Some("https://x/{id}"));
        assert!(s.matches("https://x/{id}"));
        assert!(!s.matches("https://x/1"));
        assert!(Selector::exact_topic("*").unwrap().is_any());
        assert_eq!(Selector::exact_topic(""), Err(SelectorError::Empty));
        let long = "a".repeat(MAX_SELECTOR_LEN + 1);
        assert!(matches!(
            Selector::exact_topic(&long),
            Err(SelectorError::TooLong { .. })
        ));
    }

    #[test]
    fn display_debug_and_from_str() {
        let s: Selector = "https://x/{id}".parse().unwrap();
        assert_eq!(s.to_string(), "https://x/{id}");
        assert_eq!(s.as_ref(), "https://x/{id}");
        assert!(format!("{s:?}").contains("Template"));
    }

    #[test]
    fn errors_display_on_one_line() {
        let errors = [
            SelectorError::Empty,
            SelectorError::TooLong { max: 1 },
            SelectorError::TooManyExpressions { max: 1 },
            SelectorError::TooManyVariables { max: 1 },
            SelectorError::TooComplex,
            SelectorError::InvalidUrlPattern("x".into()),
        ];
        for e in errors {
            let text = e.to_string();
            assert!(!text.is_empty() && !text.contains('\n'), "{text:?}");
        }
    }
}
