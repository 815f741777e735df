//! [`SelectorCache`]: parse each distinct selector text once and share the result.
//!
//! Thousands of subscribers usually ask for the same few selectors. A template compiles to a
//! regular expression of several KiB, so compiling it per subscriber would cost both CPU on
//! every connect and memory for every idle connection. The cache hands out clones of one
//! [`Selector`] (an `Arc`) per text.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::{Selector, SelectorError};

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
    map: Mutex<HashMap<Box<str>, Selector>>,
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

    /// The parsed selector for `text`, from the cache when it was parsed before. Errors are not
    /// cached (they are cheap to find again and must not fill the cache).
    pub fn parse(&self, text: &str) -> Result<Selector, SelectorError> {
        if let Some(hit) = self.lock().get(text) {
            return Ok(hit.clone());
        }
        // Parse outside the lock: compiling a template may take a while.
        let parsed = Selector::parse(text)?;
        let mut map = self.lock();
        if map.len() >= self.capacity {
            map.clear();
        }
        Ok(map.entry(text.into()).or_insert(parsed).clone())
    }

    /// Selectors held now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Selector>> {
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
}
