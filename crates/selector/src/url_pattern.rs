//! The Mercure 1.0 `urlpattern` matcher type: a WHATWG URL Pattern (draft-dunglas-mercure-08,
//! "URL Pattern"), compiled by the `urlpattern` crate on the `regex` engine, whose matching is
//! linear in the input whatever the pattern (no catastrophic backtracking, which the spec
//! requires of a hub or else a cost limit).
//!
//! Relative patterns and relative topics are resolved against the hub's URL (the `base` given
//! at compile time), `ignoreCase` is off, and a topic that cannot be parsed as a URL reference
//! against that base never matches.

use url::Url;
use urlpattern::{UrlPattern, UrlPatternInit, UrlPatternMatchInput, UrlPatternOptions};

use crate::SelectorError;

/// A compiled URL Pattern with the base its relative topics resolve against.
pub(crate) struct UrlPatternMatcher {
    pattern: UrlPattern,
    base: Option<Url>,
}

impl UrlPatternMatcher {
    /// Compiles `pattern`; a relative one needs `base`.
    pub(crate) fn compile(pattern: &str, base: Option<&Url>) -> Result<Self, SelectorError> {
        let invalid = |e: urlpattern::Error| SelectorError::InvalidUrlPattern(one_line(&e));
        let init = UrlPatternInit::parse_constructor_string::<regex::Regex>(pattern, base.cloned())
            .map_err(invalid)?;
        let pattern = UrlPattern::parse(
            init,
            UrlPatternOptions {
                ignore_case: false,
                ..UrlPatternOptions::default()
            },
        )
        .map_err(invalid)?;
        Ok(UrlPatternMatcher {
            pattern,
            base: base.cloned(),
        })
    }

    /// Whether `topic`, resolved against the base, matches.
    pub(crate) fn matches(&self, topic: &str) -> bool {
        let Ok(url) = Url::options().base_url(self.base.as_ref()).parse(topic) else {
            return false;
        };
        self.pattern
            .test(UrlPatternMatchInput::Url(url))
            .unwrap_or(false)
    }

    /// The base, as text (part of the matcher's identity: the same relative pattern on two
    /// bases is two matchers).
    pub(crate) fn base(&self) -> Option<&str> {
        self.base.as_ref().map(Url::as_str)
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
