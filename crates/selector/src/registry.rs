//! [`MatcherRegistry`]: every distinct matcher compiled once, shared, freed when unused, and its
//! memory bounded in bytes, globally and per client address and token.
//!
//! Subscribers choose their matchers, so a registry that only ever grew (or a cache that kept
//! compiled templates after their subscribers left) let one client fill the hub's memory: the
//! issue this answers measured 17 MB -> 1.4 GB of RSS in 10 s from one anonymous client sending
//! distinct 64-variable templates. Here:
//!
//! - A matcher lives exactly as long as something holds it. The registry maps (type, base,
//!   text) to a weak reference; the compiled matcher itself tells the registry when its last
//!   handle is dropped (a subscriber leaving, a subscription refused), and its bytes are
//!   returned at once. Nothing is evicted that is still in use, and nothing unused is kept.
//! - Compiled matchers (URI templates, URL patterns) are charged their size
//!   ([`Selector::heap_size`], exact sizes of what they own, plus [`ENTRY_OVERHEAD`] for this
//!   map and the hub's index) against [`MatcherLimits::max_bytes`]; past it a new one is refused
//!   ([`MatcherError::Full`]: HTTP 503). Exact topics and `*` are shared but not charged: they
//!   hold no more than their text, which the request size limits already bound.
//! - A [`MatcherLease`] (one per subscription) charges the distinct compiled matchers it uses
//!   to its owners (the client address, then the token), each limited in distinct matchers and
//!   bytes ([`MatcherLimits::per_client`], [`MatcherLimits::per_token`]; past them
//!   [`MatcherError::OwnerLimit`]: HTTP 429). The owner check runs before compiling, so a
//!   client over its limit costs no compile.
//!
//! Locking: one mutex for the map and the ledgers, never held while compiling. A matcher
//! dropped anywhere (maybe while this mutex is held by someone else, or by the same thread)
//! only pushes a note to a second mutex; the next registry call sweeps the notes.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::BuildHasher;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;
use url::Url;

use crate::{Inner, Kind, Selector, SelectorError};

/// Charged per compiled matcher on top of its own size: its entry here, and its place in a hub's
/// [`crate::SelectorIndex`] (the entry, the map slot, up to two tree nodes, the copy of its
/// prefix is added separately).
pub const ENTRY_OVERHEAD: usize = 512;

/// What one owner (a client address or a token) may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OwnerLimit {
    /// Distinct compiled matchers (0: no limit).
    pub max_matchers: usize,
    /// Their charged bytes (0: no limit).
    pub max_bytes: usize,
}

/// The registry's bounds. Defaults: 64 MiB of compiled matchers in all; per client address and
/// per token, 1,024 distinct compiled matchers and 16 MiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MatcherLimits {
    /// Bytes of compiled matchers in all (0: no limit).
    pub max_bytes: usize,
    /// Per client address (IPv4 address or IPv6 /64).
    pub per_client: OwnerLimit,
    /// Per subscriber token.
    pub per_token: OwnerLimit,
}

impl Default for MatcherLimits {
    fn default() -> Self {
        let owner = OwnerLimit {
            max_matchers: 1024,
            max_bytes: 16 * 1024 * 1024,
        };
        MatcherLimits {
            max_bytes: 64 * 1024 * 1024,
            per_client: owner,
            per_token: owner,
        }
    }
}

impl MatcherLimits {
    /// No limit at all.
    pub fn unlimited() -> Self {
        let owner = OwnerLimit {
            max_matchers: 0,
            max_bytes: 0,
        };
        MatcherLimits {
            max_bytes: 0,
            per_client: owner,
            per_token: owner,
        }
    }
}

/// Who a charge is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner(OwnerKey);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum OwnerKey {
    Address(IpAddr),
    Token(u64),
}

/// Which kind of owner reached its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    /// A client address.
    Client,
    /// A token.
    Token,
}

impl Owner {
    /// A client address; IPv6 addresses count per /64 (one customer's network), IPv4-mapped
    /// ones as their IPv4 address.
    pub fn address(ip: IpAddr) -> Owner {
        Owner(OwnerKey::Address(match ip.to_canonical() {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
            v4 => v4,
        }))
    }

    fn kind(&self) -> OwnerKind {
        match self.0 {
            OwnerKey::Address(_) => OwnerKind::Client,
            OwnerKey::Token(_) => OwnerKind::Token,
        }
    }
}

/// Why a matcher was not handed out. `Display` is a one-line reason for an HTTP body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MatcherError {
    /// The text is not a valid matcher (HTTP 400).
    #[error(transparent)]
    Invalid(#[from] SelectorError),
    /// The client address or token already holds as many distinct compiled matchers, or as
    /// many bytes of them, as it may (HTTP 429).
    #[error("{} distinct patterns (at most {max_matchers} and {} KiB compiled)", match .owner {
        OwnerKind::Client => "your address holds too many",
        OwnerKind::Token => "your token holds too many",
    }, .max_bytes / 1024)]
    OwnerLimit {
        /// Who is over.
        owner: OwnerKind,
        /// Its limit in matchers (0: none).
        max_matchers: usize,
        /// Its limit in bytes (0: none).
        max_bytes: usize,
    },
    /// The hub's compiled matchers fill their budget (HTTP 503: it frees as subscribers leave).
    #[error("the hub's pattern memory is full ({} MiB); try again later", .max_bytes / (1024 * 1024))]
    Full {
        /// The budget.
        max_bytes: usize,
    },
}

/// The registry's counts, for tests and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RegistryStats {
    /// Distinct compiled matchers alive (templates and URL patterns).
    pub compiled: usize,
    /// Their charged bytes.
    pub bytes: usize,
    /// Distinct matchers shared, compiled or not (exact topics too).
    pub shared: usize,
    /// Owners (client addresses, tokens) holding a charge.
    pub owners: usize,
}

/// The shared, bounded table of matchers; see the module docs.
///
/// ```
/// use ssehub_selector::{MatcherLimits, MatcherRegistry, Owner};
///
/// let registry = MatcherRegistry::new(MatcherLimits::default());
/// let mut lease = registry.lease(Some(Owner::address([192, 0, 2, 1].into())));
/// let a = lease.parse("https://example.com/books/{id}")?;
/// let b = registry.parse("https://example.com/books/{id}")?;
/// assert!(ssehub_selector::Selector::ptr_eq(&a, &b)); // compiled once, shared
/// assert_eq!(registry.stats().compiled, 1);
/// drop((a, b, lease));
/// assert_eq!(registry.stats().compiled, 0); // freed with its last user
/// # Ok::<(), ssehub_selector::MatcherError>(())
/// ```
#[derive(Clone)]
pub struct MatcherRegistry {
    shared: Arc<Shared>,
}

impl fmt::Debug for MatcherRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatcherRegistry")
            .field("limits", &self.shared.limits)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Shared {
    limits: MatcherLimits,
    hasher: RandomState,
    state: Mutex<State>,
    /// Matchers dropped since the last sweep (pushed by `Registration::released`).
    dead: Mutex<Vec<Dead>>,
    /// The one `*` handed to everyone.
    any: Selector,
}

#[derive(Default)]
struct State {
    /// Key hash -> the matchers with that hash (almost always one).
    map: HashMap<u64, Vec<(u64, Make, Weak<Inner>)>>,
    shared: usize,
    compiled: usize,
    bytes: usize,
    owners: HashMap<Owner, Ledger>,
    next_id: u64,
}

/// What one owner holds: matcher id -> (leases holding it, its charge).
#[derive(Default)]
struct Ledger {
    held: HashMap<u64, (u32, usize)>,
    bytes: usize,
}

struct Dead {
    hash: u64,
    id: u64,
    charge: usize,
    compiled: bool,
}

/// Attached to a matcher the registry handed out: tells it when the matcher is gone.
pub(crate) struct Registration {
    shared: Weak<Shared>,
    hash: u64,
    id: u64,
    charge: usize,
    compiled: bool,
}

impl Registration {
    /// The matcher's last handle was dropped. Only takes the notes' mutex, so this is safe
    /// wherever a `Selector` is dropped, the registry's own critical sections included.
    pub(crate) fn released(self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.dead.lock().push(Dead {
                hash: self.hash,
                id: self.id,
                charge: self.charge,
                compiled: self.compiled,
            });
        }
    }
}

/// How a selector is made from its text: the registry's key says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Make {
    Legacy,
    Exact,
    UrlPattern,
}

impl MatcherRegistry {
    /// An empty registry with these limits.
    pub fn new(limits: MatcherLimits) -> Self {
        MatcherRegistry {
            shared: Arc::new(Shared {
                limits,
                hasher: RandomState::new(),
                state: Mutex::new(State::default()),
                dead: Mutex::new(Vec::new()),
                any: Selector::exact_topic("*").unwrap_or_else(|_| unreachable!()),
            }),
        }
    }

    /// Its limits.
    pub fn limits(&self) -> MatcherLimits {
        self.shared.limits
    }

    /// A lease charging what it takes to `owner` (more owners: [`MatcherLease::add_owner`]).
    pub fn lease(&self, owner: Option<Owner>) -> MatcherLease {
        MatcherLease {
            registry: self.clone(),
            owners: Owners([owner, None]),
            held: Vec::new(),
        }
    }

    /// The owner for a token (its hash, seeded per registry: the registry holds no credential).
    pub fn token_owner(&self, token: &str) -> Owner {
        Owner(OwnerKey::Token(self.shared.hasher.hash_one(token)))
    }

    /// The 0.x selector for `text` ([`Selector::parse`]: exact, `*` or a URI template), charged
    /// to no one but the global budget.
    pub fn parse(&self, text: &str) -> Result<Selector, MatcherError> {
        self.lease(None).parse(text)
    }

    /// The exact matcher for `text` ([`Selector::exact_topic`]).
    pub fn exact(&self, text: &str) -> Result<Selector, MatcherError> {
        self.lease(None).exact(text)
    }

    /// The URL pattern `text`, relative ones against `base` ([`Selector::url_pattern`]).
    pub fn url_pattern(&self, text: &str, base: Option<&Url>) -> Result<Selector, MatcherError> {
        self.lease(None).url_pattern(text, base)
    }

    /// Counts now (dropped matchers are swept first).
    pub fn stats(&self) -> RegistryStats {
        let mut st = self.shared.state.lock();
        self.shared.sweep(&mut st);
        RegistryStats {
            compiled: st.compiled,
            bytes: st.bytes,
            shared: st.shared,
            owners: st.owners.len(),
        }
    }
}

impl Shared {
    /// Forgets the matchers dropped since the last sweep and returns their bytes.
    fn sweep(&self, st: &mut State) {
        let dead = std::mem::take(&mut *self.dead.lock());
        for d in dead {
            if let Some(bucket) = st.map.get_mut(&d.hash) {
                bucket.retain(|(id, _, _)| *id != d.id);
                if bucket.is_empty() {
                    st.map.remove(&d.hash);
                }
            }
            st.shared -= 1;
            if d.compiled {
                st.compiled -= 1;
                st.bytes -= d.charge;
            }
        }
    }

    /// The live matcher for this key, if any, with its id.
    fn find(
        &self,
        st: &State,
        hash: u64,
        make: Make,
        base: Option<&str>,
        text: &str,
    ) -> Option<(u64, Selector)> {
        let bucket = st.map.get(&hash)?;
        for (id, made, weak) in bucket {
            if *made != make {
                continue;
            }
            let Some(inner) = weak.upgrade() else {
                continue;
            };
            let base_of = match inner.kind() {
                Kind::UrlPattern(p) => p.base(),
                _ => None,
            };
            if inner.source() == text && base_of == base {
                return Some((*id, Selector { inner }));
            }
        }
        None
    }

    fn check(
        &self,
        st: &State,
        owners: &Owners,
        id: Option<u64>,
        charge: usize,
    ) -> Result<(), MatcherError> {
        for owner in owners.iter() {
            let limit = match owner.kind() {
                OwnerKind::Client => self.limits.per_client,
                OwnerKind::Token => self.limits.per_token,
            };
            let ledger = st.owners.get(owner);
            if id.is_some_and(|id| ledger.is_some_and(|l| l.held.contains_key(&id))) {
                continue;
            }
            let (n, bytes) = ledger.map_or((0, 0), |l| (l.held.len(), l.bytes));
            if (limit.max_matchers > 0 && n >= limit.max_matchers)
                || (limit.max_bytes > 0 && bytes + charge > limit.max_bytes)
            {
                return Err(MatcherError::OwnerLimit {
                    owner: owner.kind(),
                    max_matchers: limit.max_matchers,
                    max_bytes: limit.max_bytes,
                });
            }
        }
        Ok(())
    }
}

/// What a compiled matcher is charged: its own size, the entry overhead, and the copy of its
/// text and base the index keeps as its prefix key (at most their length).
fn charge_of(inner: &Inner) -> usize {
    let base = match inner.kind() {
        Kind::UrlPattern(p) => p.base().map_or(0, str::len),
        _ => 0,
    };
    inner.heap_size() + ENTRY_OVERHEAD + inner.source().len() + base
}

/// A lease's owners (a client address, then a token), inline: a subscribe allocates nothing
/// for them.
#[derive(Debug, Clone, Copy, Default)]
struct Owners([Option<Owner>; 2]);

impl Owners {
    fn iter(&self) -> impl Iterator<Item = &Owner> {
        self.0.iter().flatten()
    }

    fn push(&mut self, owner: Owner) {
        if let Some(slot) = self.0.iter_mut().find(|o| o.is_none()) {
            *slot = Some(owner);
        }
    }
}

/// One subscription's claim on the registry: the compiled matchers it uses, charged to its
/// owners until it is dropped. Matchers it hands out live as long as their handles do; the
/// lease only carries the owners' accounting (drop it with the subscription).
pub struct MatcherLease {
    registry: MatcherRegistry,
    owners: Owners,
    /// Distinct compiled matchers taken: (id, charge).
    held: Vec<(u64, usize)>,
}

impl fmt::Debug for MatcherLease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MatcherLease")
            .field("owners", &self.owners.iter().count())
            .field("held", &self.held.len())
            .finish()
    }
}

impl MatcherLease {
    /// The 0.x selector for `text` ([`Selector::parse`]).
    pub fn parse(&mut self, text: &str) -> Result<Selector, MatcherError> {
        if text == "*" {
            return Ok(self.registry.shared.any.clone());
        }
        let compiled = text.contains('{');
        self.take(Make::Legacy, None, text, compiled, || {
            Selector::parse_inner(text)
        })
    }

    /// The exact matcher for `text` ([`Selector::exact_topic`]; `*` is the wildcard).
    pub fn exact(&mut self, text: &str) -> Result<Selector, MatcherError> {
        if text == "*" {
            return Ok(self.registry.shared.any.clone());
        }
        self.take(Make::Exact, None, text, false, || {
            Selector::exact_inner(text)
        })
    }

    /// The URL pattern `text`, relative ones against `base` ([`Selector::url_pattern`]).
    pub fn url_pattern(
        &mut self,
        text: &str,
        base: Option<&Url>,
    ) -> Result<Selector, MatcherError> {
        if text == "*" {
            return Ok(self.registry.shared.any.clone());
        }
        let base_text = base.map(Url::as_str);
        self.take(Make::UrlPattern, base_text, text, true, || {
            Selector::url_pattern_inner(text, base)
        })
    }

    /// Charges everything taken so far to `owner` too (and what is taken later): refused, with
    /// nothing changed, when that puts `owner` over its limits.
    pub fn add_owner(&mut self, owner: Owner) -> Result<(), MatcherError> {
        if self.owners.iter().any(|o| *o == owner) {
            return Ok(());
        }
        if self.owners.0.iter().all(Option::is_some) {
            // An address and a token: a lease has no third owner.
            debug_assert!(false, "a lease has at most two owners");
            return Ok(());
        }
        let shared = &self.registry.shared;
        let mut st = shared.state.lock();
        let limit = match owner.kind() {
            OwnerKind::Client => shared.limits.per_client,
            OwnerKind::Token => shared.limits.per_token,
        };
        let (mut n, mut bytes) = st
            .owners
            .get(&owner)
            .map_or((0, 0), |l| (l.held.len(), l.bytes));
        for &(id, charge) in &self.held {
            if !st
                .owners
                .get(&owner)
                .is_some_and(|l| l.held.contains_key(&id))
            {
                n += 1;
                bytes += charge;
            }
        }
        if (limit.max_matchers > 0 && n > limit.max_matchers)
            || (limit.max_bytes > 0 && bytes > limit.max_bytes)
        {
            return Err(MatcherError::OwnerLimit {
                owner: owner.kind(),
                max_matchers: limit.max_matchers,
                max_bytes: limit.max_bytes,
            });
        }
        let ledger = st.owners.entry(owner).or_default();
        for &(id, charge) in &self.held {
            let e = ledger.held.entry(id).or_insert((0, charge));
            if e.0 == 0 {
                ledger.bytes += charge;
            }
            e.0 += 1;
        }
        drop(st);
        self.owners.push(owner);
        Ok(())
    }

    /// Distinct compiled matchers taken.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether it holds no compiled matcher.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    fn take(
        &mut self,
        make: Make,
        base: Option<&str>,
        text: &str,
        compiled: bool,
        build: impl FnOnce() -> Result<Inner, SelectorError>,
    ) -> Result<Selector, MatcherError> {
        let shared = Arc::clone(&self.registry.shared);
        let hash = shared.hasher.hash_one((make, base, text));
        {
            let mut st = shared.state.lock();
            shared.sweep(&mut st);
            if let Some((id, found)) = shared.find(&st, hash, make, base, text) {
                let result = self.charge(&mut st, id, &found);
                drop(st);
                return result.map(|()| found);
            }
            if compiled {
                // Refuse before compiling: an owner at its count limit costs no compile.
                shared.check(&st, &self.owners, None, 0)?;
                if shared.limits.max_bytes > 0 && st.bytes >= shared.limits.max_bytes {
                    return Err(MatcherError::Full {
                        max_bytes: shared.limits.max_bytes,
                    });
                }
            }
        }
        // Compiling can take milliseconds: outside the lock.
        let mut inner = build()?;
        let is_compiled = matches!(inner.kind(), Kind::Template(_) | Kind::UrlPattern(_));
        let mut st = shared.state.lock();
        shared.sweep(&mut st);
        if let Some((id, found)) = shared.find(&st, hash, make, base, text) {
            // Someone registered it meanwhile: use theirs (ours was never registered, so
            // dropping it does not touch the registry).
            let result = self.charge(&mut st, id, &found);
            drop(st);
            drop(inner);
            return result.map(|()| found);
        }
        let charge = if is_compiled {
            let size = charge_of(&inner);
            if shared.limits.max_bytes > 0 && st.bytes + size > shared.limits.max_bytes {
                drop(st);
                return Err(MatcherError::Full {
                    max_bytes: shared.limits.max_bytes,
                });
            }
            shared.check(&st, &self.owners, None, size)?;
            size
        } else {
            0
        };
        let id = st.next_id;
        st.next_id += 1;
        inner.set_registration(Registration {
            shared: Arc::downgrade(&shared),
            hash,
            id,
            charge,
            compiled: is_compiled,
        });
        let selector = Selector::from_inner(inner);
        st.map
            .entry(hash)
            .or_default()
            .push((id, make, Arc::downgrade(&selector.inner)));
        st.shared += 1;
        if is_compiled {
            st.compiled += 1;
            st.bytes += charge;
            self.record(&mut st, id, charge);
        }
        Ok(selector)
    }

    /// Charges an existing matcher to this lease's owners (once per lease).
    fn charge(&mut self, st: &mut State, id: u64, found: &Selector) -> Result<(), MatcherError> {
        if !found.is_compiled() || self.held.iter().any(|&(h, _)| h == id) {
            return Ok(());
        }
        let charge = found.inner.registration.as_ref().map_or(0, |r| r.charge);
        self.registry
            .shared
            .check(st, &self.owners, Some(id), charge)?;
        self.record(st, id, charge);
        Ok(())
    }

    fn record(&mut self, st: &mut State, id: u64, charge: usize) {
        for owner in self.owners.iter() {
            let ledger = st.owners.entry(*owner).or_default();
            let e = ledger.held.entry(id).or_insert((0, charge));
            if e.0 == 0 {
                ledger.bytes += charge;
            }
            e.0 += 1;
        }
        self.held.push((id, charge));
    }
}

impl Drop for MatcherLease {
    fn drop(&mut self) {
        if self.held.is_empty() || self.owners.iter().next().is_none() {
            return;
        }
        let mut st = self.registry.shared.state.lock();
        for owner in self.owners.iter() {
            let Some(ledger) = st.owners.get_mut(owner) else {
                continue;
            };
            for (id, _) in &self.held {
                if let Some(e) = ledger.held.get_mut(id) {
                    e.0 -= 1;
                    if e.0 == 0 {
                        ledger.bytes -= e.1;
                        ledger.held.remove(id);
                    }
                }
            }
            if ledger.held.is_empty() {
                st.owners.remove(owner);
            }
        }
    }
}
