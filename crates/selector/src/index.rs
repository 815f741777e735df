//! [`SelectorIndex`]: the distinct compiled matchers (URI templates, URL patterns) of a hub,
//! each stored once however many subscriptions use it, found through the literal prefix every
//! topic it matches must start with.
//!
//! A publish asks [`SelectorIndex::matching`] which matchers match any of its topics. For each
//! topic it walks two prefix trees ([`crate::radix`]) and evaluates only the matchers whose
//! prefix the topic has, each at most once per publish: 10,000 subscribers each on its own
//! `https://example.com/users/{i}/:rest*` make a publish to one user's topic evaluate one or
//! two matchers, not 10,000.
//!
//! - **URI templates** match the topic's text, so their prefix is the text before their first
//!   expression, and the key is the topic itself.
//! - **URL patterns** match the components of the topic parsed as a URL (against the pattern's
//!   base when it is relative), so the key is built from those: protocol, hostname, port and
//!   pathname, each ended by a NUL ([`crate::url_pattern::url_key`]). A topic's text would not
//!   do: `HTTPS://Example.COM/users/42` and `/users/42` (against the hub's URL) both match
//!   `https://example.com/users/42`. A pattern's prefix is its literal components in that order,
//!   then the literal prefix of the first one that is not literal; one whose protocol is not
//!   literal (`*://example.com/*`) has an empty prefix and is evaluated for every topic.
//!
//! The topic is parsed once per publish, not once per pattern; a relative topic is parsed once
//! per distinct base in use (one base per name the hub is reached under, when patterns are
//! relative to it).

use std::collections::HashMap;

use slab::Slab;
use url::Url;

use crate::radix::PrefixTree;
use crate::url_pattern::{UrlParts, url_key};
use crate::{Kind, Selector, template};

/// One matcher's place in a [`SelectorIndex`]: its slot, and the version the index had when it
/// was inserted, which tells two matchers that used the same slot apart (slots are reused,
/// versions never).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MatcherId {
    /// Index into the index's table; reused after a matcher is removed.
    pub slot: u32,
    /// Unique over the index's life, increasing with each insertion.
    pub version: u64,
}

/// What [`SelectorIndex::matching`] found: the matchers that match, and the index's version
/// when it looked (a matcher inserted later, `version` above it, was not evaluated).
#[derive(Debug, Clone, Default)]
pub struct Matched {
    /// [`SelectorIndex::version`] at evaluation.
    pub version: u64,
    /// Each matching matcher once.
    pub ids: Vec<MatcherId>,
}

impl Matched {
    /// Whether `id` is among the matches.
    pub fn contains(&self, id: MatcherId) -> bool {
        self.ids.contains(&id)
    }
}

#[derive(Debug)]
struct Entry {
    selector: Selector,
    refs: usize,
    version: u64,
    /// URL patterns: the slot of their base in `bases`.
    base: u32,
    /// The key it is stored under in its tree.
    prefix: Box<[u8]>,
}

#[derive(Debug)]
struct Base {
    url: Option<Url>,
    patterns: usize,
}

/// The distinct compiled matchers of a hub, with a reference count each; see the module docs.
///
/// ```
/// use ssehub_selector::{Matched, Selector, SelectorIndex, Url};
///
/// let hub = Url::parse("https://example.com/.well-known/mercure").unwrap();
/// let mut index = SelectorIndex::default();
/// let mine = index.insert(&Selector::url_pattern("/users/42/*", Some(&hub)).unwrap());
/// let other = index.insert(&Selector::url_pattern("/users/43/*", Some(&hub)).unwrap());
/// let mut found = Matched::default();
/// index.matching(&["https://example.com/users/42/books/1".into()], &mut found);
/// assert_eq!(found.ids, vec![mine]);
/// # let _ = other;
/// ```
#[derive(Debug, Default)]
pub struct SelectorIndex {
    entries: Slab<Entry>,
    by_selector: HashMap<Selector, u32>,
    /// URL patterns by the prefix of their key.
    urls: PrefixTree,
    /// URI templates by the prefix of their text.
    templates: PrefixTree,
    /// Distinct bases of the URL patterns (a relative topic is read against each).
    bases: Slab<Base>,
    base_slots: HashMap<Option<Box<str>>, u32>,
    version: u64,
}

impl SelectorIndex {
    /// Adds one use of `selector` (a URI template or URL pattern: [`Selector::is_compiled`]);
    /// the same matcher again (by type, base and text) gets the same id.
    ///
    /// # Panics
    ///
    /// For a selector that is not compiled (exact or `*`): those are the caller's to index.
    pub fn insert(&mut self, selector: &Selector) -> MatcherId {
        assert!(
            selector.is_compiled(),
            "SelectorIndex takes compiled matchers only"
        );
        if let Some(&slot) = self.by_selector.get(selector) {
            let e = &mut self.entries[slot as usize];
            e.refs += 1;
            return MatcherId {
                slot,
                version: e.version,
            };
        }
        self.version += 1;
        let version = self.version;
        let (prefix, base) = match selector.kind() {
            Kind::UrlPattern(p) => {
                let text = p.base().map(Box::<str>::from);
                let slot = match self.base_slots.get(&text) {
                    Some(&slot) => slot,
                    None => {
                        let slot = self.bases.insert(Base {
                            url: p.base_url().cloned(),
                            patterns: 0,
                        }) as u32;
                        self.base_slots.insert(text, slot);
                        slot
                    }
                };
                self.bases[slot as usize].patterns += 1;
                (p.key_prefix().into_bytes().into_boxed_slice(), slot)
            }
            _ => (
                template::literal_prefix(selector.as_str())
                    .as_bytes()
                    .into(),
                u32::MAX,
            ),
        };
        let slot = self.entries.vacant_key() as u32;
        if base == u32::MAX {
            self.templates.insert(&prefix, slot);
        } else {
            self.urls.insert(&prefix, slot);
        }
        self.entries.insert(Entry {
            selector: selector.clone(),
            refs: 1,
            version,
            base,
            prefix,
        });
        self.by_selector.insert(selector.clone(), slot);
        MatcherId { slot, version }
    }

    /// Drops one use of `id`; the matcher leaves the index (and its `Selector` is dropped) with
    /// its last use. `false` for an id that is not in the index.
    pub fn release(&mut self, id: MatcherId) -> bool {
        let Some(e) = self.entries.get_mut(id.slot as usize) else {
            return false;
        };
        if e.version != id.version {
            return false;
        }
        e.refs -= 1;
        if e.refs > 0 {
            return true;
        }
        let e = self.entries.remove(id.slot as usize);
        self.by_selector.remove(&e.selector);
        if e.base == u32::MAX {
            self.templates.remove(&e.prefix, id.slot);
        } else {
            self.urls.remove(&e.prefix, id.slot);
            let base = &mut self.bases[e.base as usize];
            base.patterns -= 1;
            if base.patterns == 0 {
                let base = self.bases.remove(e.base as usize);
                self.base_slots
                    .remove(&base.url.as_ref().map(|u| Box::<str>::from(u.as_str())));
            }
        }
        true
    }

    /// The matcher with this id, if it is in the index.
    pub fn get(&self, id: MatcherId) -> Option<&Selector> {
        self.entries
            .get(id.slot as usize)
            .filter(|e| e.version == id.version)
            .map(|e| &e.selector)
    }

    /// The id of `selector` if it is in the index.
    pub fn id_of(&self, selector: &Selector) -> Option<MatcherId> {
        let slot = *self.by_selector.get(selector)?;
        Some(MatcherId {
            slot,
            version: self.entries[slot as usize].version,
        })
    }

    /// Distinct matchers in the index.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The version of the newest insertion (0 before any).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Matchers evaluated for every topic (their prefix is empty): the part of a publish's cost
    /// the index cannot narrow.
    pub fn unprefixed(&self) -> usize {
        let mut n = 0;
        self.urls.for_each_prefix(b"", |_| n += 1);
        self.templates.for_each_prefix(b"", |_| n += 1);
        n
    }

    /// Puts into `out` every matcher that matches at least one of `topics` (each once), and the
    /// index's version. Each matcher is evaluated at most once per topic, and only for topics
    /// whose key starts with its prefix.
    pub fn matching(&self, topics: &[String], out: &mut Matched) {
        out.version = self.version;
        out.ids.clear();
        if self.entries.is_empty() {
            return;
        }
        let mut done = vec![0u64; self.entries.capacity().div_ceil(64)];
        let mut key = String::new();
        let mut take = |slot: u32, out: &mut Matched, test: &dyn Fn(&Selector) -> bool| {
            let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
            if done[word] & bit != 0 {
                return;
            }
            let e = &self.entries[slot as usize];
            if test(&e.selector) {
                done[word] |= bit;
                out.ids.push(MatcherId {
                    slot,
                    version: e.version,
                });
            }
        };
        for topic in topics {
            if !self.templates.is_empty() {
                self.templates.for_each_prefix(topic.as_bytes(), |slot| {
                    take(slot, out, &|s| s.matches(topic));
                });
            }
            if self.urls.is_empty() {
                continue;
            }
            if base_independent(topic) {
                let Ok(url) = Url::parse(topic) else { continue };
                let parts = UrlParts::of(&url);
                url_key(&parts, &mut key);
                self.urls.for_each_prefix(key.as_bytes(), |slot| {
                    take(slot, out, &|s| url_parts_match(s, &parts));
                });
            } else {
                // Each base reads the topic its own way; a pattern is tried on its base's.
                for (b, base) in self.bases.iter() {
                    let Ok(url) = Url::options().base_url(base.url.as_ref()).parse(topic) else {
                        continue;
                    };
                    let parts = UrlParts::of(&url);
                    url_key(&parts, &mut key);
                    self.urls.for_each_prefix(key.as_bytes(), |slot| {
                        if self.entries[slot as usize].base == b as u32 {
                            take(slot, out, &|s| url_parts_match(s, &parts));
                        }
                    });
                }
            }
        }
    }
}

fn url_parts_match(s: &Selector, parts: &UrlParts<'_>) -> bool {
    match s.kind() {
        Kind::UrlPattern(p) => p.matches_parts(parts),
        _ => false,
    }
}

/// Whether every base URL reads `topic` as the same absolute URL, so it can be parsed once
/// without one: it starts with a scheme and `:`, then `//` when the scheme is special (WHATWG
/// URL: a special scheme followed by anything else, as in `https:foo`, is read relative to a
/// base of the same scheme; a non-special scheme never consults the base). Leading C0 controls
/// and spaces, and tabs and newlines anywhere, are skipped as the URL parser skips them.
/// `false` only costs a parse per base.
pub(crate) fn base_independent(topic: &str) -> bool {
    let mut chars = topic
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\n' | '\r'));
    let mut scheme = String::new();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() => scheme.push(c.to_ascii_lowercase()),
        _ => return false,
    }
    loop {
        match chars.next() {
            Some(':') => break,
            Some(c) if c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.') => {
                if scheme.len() > 16 {
                    // Longer than any special scheme: not special.
                    return true;
                }
                scheme.push(c.to_ascii_lowercase());
            }
            _ => return false,
        }
    }
    let special = matches!(
        scheme.as_str(),
        "ftp" | "file" | "http" | "https" | "ws" | "wss"
    );
    !special || (chars.next() == Some('/') && chars.next() == Some('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_independence() {
        for t in [
            "https://example.com/x",
            "HTTPS://example.com",
            " \x01https://x",
            "ht\ttps:/\n/x",
            "urn:uuid:1",
            "mailto:a@b",
            "foo:bar",
            "averyveryverylongschemename:x",
        ] {
            assert!(base_independent(t), "{t:?}");
        }
        for t in [
            "/users/1",
            "users/1",
            "https:foo",
            "https:/foo",
            "https:\\\\foo",
            "file:foo",
            "1abc:x",
            "",
            "//example.com/x",
        ] {
            assert!(!base_independent(t), "{t:?}");
        }
    }

    #[test]
    fn the_absolute_parse_is_what_every_base_reads() {
        let bases = [
            "https://hub.example/.well-known/mercure",
            "http://other.example/a/b",
            "file:///tmp/x",
            "urn:x",
        ];
        for t in [
            "https://example.com/x/../y",
            "HTTPS://Example.COM:443/a",
            "urn:uuid:1",
            "foo:bar/baz",
            "file://host/share",
            "ws://a/b",
        ] {
            assert!(base_independent(t));
            let alone = Url::parse(t).unwrap();
            for b in bases {
                let b = Url::parse(b).unwrap();
                assert_eq!(
                    Url::options().base_url(Some(&b)).parse(t).unwrap(),
                    alone,
                    "{t} on {b}"
                );
            }
        }
    }
}
