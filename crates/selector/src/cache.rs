//! [`SelectorCache`]: parse each distinct selector text once and share the result.
//!
//! Thousands of subscribers usually ask for the same few selectors. A template compiles to a
//! regular expression of several KiB, so compiling it per subscriber would cost both CPU on
//! every connect and memory for every idle connection. The cache hands out clones of one
//! [`Selector`] (an `Arc`) per text.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{Selector, SelectorError, Url};

/// What identifies a compiled selector: its kind, the base of a relative URL pattern, the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    kind: Kind,
    base: Option<Box<str>>,
    text: Box<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    /// [`Selector::parse`]: the 0.x rules (exact, `*` or an RFC 6570 template).
    Legacy,
    /// [`Selector::exact_topic`].
    Exact,
    /// [`Selector::url_pattern`].
    UrlPattern,
}

/// A bounded map from selector text to its parsed [`Selector`].
///
/// ```
/// use ssehub_selector::SelectorCache;
///
/// let cache = SelectorCache::new(1024);
/// let a = cache.parse("https://example.com/books/{id}").unwrap();
/// let b = cache.parse("https://example.com/books/{id}").unwrap();
/// assert!(a.matches("https://example.com/books/1") && a == b);
/// assert_eq!(cache.len(), 1);
/// ```
#[derive(Debug)]
pub struct SelectorCache {
    map: Mutex<HashMap<Key, Selector>>,
    capacity: usize,
}

impl SelectorCache {
    /// A cache holding at most `capacity` selectors. When full it starts over: simpler than LRU
    /// and, since entries are cheap to rebuild, only costs a burst of re-parsing.
    pub fn new(capacity: usize) -> Self {
        SelectorCache {
            map: Mutex::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    /// The 0.x selector for `text` ([`Selector::parse`]), from the cache when it was parsed
    /// before. Errors are not cached (they are cheap to find again and must not fill the cache).
    pub fn parse(&self, text: &str) -> Result<Selector, SelectorError> {
        self.get_or_compile(Kind::Legacy, None, text, || Selector::parse(text))
    }

    /// The exact matcher for `text` ([`Selector::exact_topic`]).
    pub fn exact(&self, text: &str) -> Result<Selector, SelectorError> {
        self.get_or_compile(Kind::Exact, None, text, || Selector::exact_topic(text))
    }

    /// The URL pattern `text`, relative ones against `base` ([`Selector::url_pattern`]).
    pub fn url_pattern(&self, text: &str, base: Option<&Url>) -> Result<Selector, SelectorError> {
        self.get_or_compile(Kind::UrlPattern, base.map(Url::as_str), text, || {
            Selector::url_pattern(text, base)
        })
    }

    fn get_or_compile(
        &self,
        kind: Kind,
        base: Option<&str>,
        text: &str,
        compile: impl FnOnce() -> Result<Selector, SelectorError>,
    ) -> Result<Selector, SelectorError> {
        let key = Key {
            kind,
            base: base.map(Into::into),
            text: text.into(),
        };
        if let Some(hit) = self.lock().get(&key) {
            return Ok(hit.clone());
        }
        // Compile outside the lock: a template or pattern may take a while.
        let compiled = compile()?;
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.clear();
        }
        Ok(map.entry(key).or_insert(compiled).clone())
    }

    /// Selectors held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Selector>> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts),
        // so a poisoned lock is still usable.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_not_cached_and_capacity_is_bounded() {
        let cache = SelectorCache::new(2);
        assert!(cache.parse("").is_err());
        assert!(cache.is_empty());
        cache.parse("a").unwrap();
        cache.parse("b").unwrap();
        cache.parse("c").unwrap();
        assert!(cache.len() <= 2);
        assert!(cache.parse("c").unwrap().matches("c"));
    }

    #[test]
    fn kinds_and_bases_are_separate_entries() {
        let cache = SelectorCache::new(16);
        let template = cache.parse("https://x/{id}").unwrap();
        let exact = cache.exact("https://x/{id}").unwrap();
        assert!(template.is_template() && !exact.is_template());
        let a = Url::parse("https://a.example/.well-known/mercure").unwrap();
        let b = Url::parse("https://b.example/.well-known/mercure").unwrap();
        let on_a = cache.url_pattern("/books/:id", Some(&a)).unwrap();
        let on_b = cache.url_pattern("/books/:id", Some(&b)).unwrap();
        assert!(
            on_a.matches("https://a.example/books/1") && !on_b.matches("https://a.example/books/1")
        );
        assert_eq!(cache.len(), 4);
        assert_eq!(cache.url_pattern("/books/:id", Some(&a)).unwrap(), on_a);
        assert_eq!(cache.len(), 4);
        assert!(cache.url_pattern("/books/:id", None).is_err());
    }
}
