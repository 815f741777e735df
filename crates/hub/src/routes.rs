//! Where a publish finds its subscribers: exact topics in a hash map, `*` in a list, and every
//! distinct compiled matcher (URI template, URL pattern) once, with the subscribers that use it.
//!
//! The matchers themselves are evaluated outside the hub lock: [`crate::hub`] asks the hub's
//! [`SelectorIndex`] (behind its own `RwLock`) which matchers match an update's topics before it
//! takes the hub lock, then hands the answer ([`Matched`]) to [`Routes::for_each_candidate`] under
//! it. The index's version tells which matchers the answer covers: a matcher inserted after the
//! evaluation (a subscriber that joined in between, [`MatcherId::version`] above the answer's)
//! is evaluated under the lock, by [`Routes::for_each_candidate`] itself. That window is
//! the time between an evaluation and the lock, so such late evaluations are few; their count is
//! kept in [`LateEvaluations`].
//!
//! A subscriber is in every list its selectors name (deduplicated), or only in `any` when one of
//! them is `*` (it matches every topic anyway). The per-publish `mark` of each subscriber keeps a
//! subscriber in several lists from being offered an update twice. A subscriber in exactly one
//! list records its position there (`Sub::slot`), so leaving is O(1) (a scan made N leaves of one
//! topic O(N²) under the lock); one in several lists is found by a scan of each.

use std::collections::{BTreeMap, HashMap};

use ssehub_selector::{Matched, MatcherId, Selector, SelectorIndex};

/// The routes of a subscription, from its selectors: what it is indexed under.
#[derive(Debug, Default)]
pub(crate) struct Plan<'a> {
    /// It has `*`: it goes in `any` only.
    pub(crate) any: bool,
    /// Its distinct exact topics.
    pub(crate) exact: Vec<&'a str>,
    /// Its distinct compiled matchers.
    pub(crate) compiled: Vec<&'a Selector>,
}

impl<'a> Plan<'a> {
    pub(crate) fn of(selectors: &'a [Selector]) -> Plan<'a> {
        if selectors.iter().any(Selector::is_any) {
            return Plan {
                any: true,
                ..Plan::default()
            };
        }
        let mut plan = Plan::default();
        for s in selectors {
            if let Some(topic) = s.exact() {
                if !plan.exact.contains(&topic) {
                    plan.exact.push(topic);
                }
            } else if s.is_compiled() && !plan.compiled.contains(&s) {
                plan.compiled.push(s);
            }
        }
        plan
    }

    /// Whether it is in exactly one list (its position there can be tracked).
    pub(crate) fn single(&self) -> bool {
        self.any || self.exact.len() + self.compiled.len() == 1
    }
}

#[derive(Debug)]
struct Group {
    id: MatcherId,
    selector: Selector,
    subs: Vec<usize>,
}

/// Matchers evaluated under the hub lock because they joined between a publish's evaluation and
/// its lock (see the module docs).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LateEvaluations {
    /// Matcher evaluations done under the lock.
    pub(crate) matchers: u64,
}

/// The hub's routing tables (under the hub lock).
#[derive(Debug, Default)]
pub(crate) struct Routes {
    exact: HashMap<Box<str>, Vec<usize>>,
    any: Vec<usize>,
    /// By the matcher's slot in the index.
    groups: HashMap<u32, Group>,
    group_of: HashMap<Selector, u32>,
    /// Groups by the version of their matcher, to find the ones newer than an evaluation.
    by_version: BTreeMap<u64, u32>,
    pub(crate) late: LateEvaluations,
}

/// A subscriber's position in its one list (for O(1) removal), or none.
pub(crate) const UNTRACKED: u32 = u32::MAX;

impl Routes {
    /// Adds subscriber `key` to the lists of `plan`, whose compiled matchers have the index ids
    /// `ids` (same order). Returns its position when it is in one list only.
    pub(crate) fn attach(&mut self, key: usize, plan: &Plan<'_>, ids: &[MatcherId]) -> u32 {
        let mut slot = UNTRACKED;
        if plan.any {
            slot = self.any.len() as u32;
            self.any.push(key);
        }
        for &topic in &plan.exact {
            // The key is copied only for a topic new to the map.
            let list = match self.exact.get_mut(topic) {
                Some(list) => list,
                None => self.exact.entry(topic.into()).or_default(),
            };
            slot = list.len() as u32;
            list.push(key);
        }
        for (&selector, &id) in plan.compiled.iter().zip(ids) {
            let group = self.groups.entry(id.slot).or_insert_with(|| Group {
                id,
                selector: selector.clone(),
                subs: Vec::new(),
            });
            debug_assert_eq!(
                group.id, id,
                "the index keeps a matcher while it has a group"
            );
            if group.subs.is_empty() {
                self.group_of.insert(selector.clone(), id.slot);
                self.by_version.insert(id.version, id.slot);
            }
            slot = group.subs.len() as u32;
            group.subs.push(key);
        }
        if plan.single() { slot } else { UNTRACKED }
    }

    /// Removes subscriber `key` (at `slot` in its one list, when tracked) from the lists of
    /// `plan`; `moved(k, at)` is told each subscriber whose tracked position changed. Returns the
    /// index ids of its compiled matchers, to release once the hub lock is dropped.
    pub(crate) fn detach(
        &mut self,
        key: usize,
        plan: &Plan<'_>,
        slot: u32,
        mut moved: impl FnMut(usize, u32),
    ) -> Vec<MatcherId> {
        let mut remove = |list: &mut Vec<usize>| {
            let at = Some(slot as usize)
                .filter(|&at| slot != UNTRACKED && list.get(at) == Some(&key))
                .or_else(|| list.iter().position(|&k| k == key));
            if let Some(at) = at {
                list.swap_remove(at);
                if let Some(&m) = list.get(at) {
                    moved(m, at as u32);
                }
            }
        };
        if plan.any {
            remove(&mut self.any);
        }
        for &topic in &plan.exact {
            if let Some(list) = self.exact.get_mut(topic) {
                remove(list);
                if list.is_empty() {
                    self.exact.remove(topic);
                }
            }
        }
        let mut ids = Vec::with_capacity(plan.compiled.len());
        for &selector in &plan.compiled {
            let Some(&gslot) = self.group_of.get(selector) else {
                debug_assert!(false, "a subscriber's matcher has no group");
                continue;
            };
            let Some(group) = self.groups.get_mut(&gslot) else {
                continue;
            };
            remove(&mut group.subs);
            ids.push(group.id);
            if group.subs.is_empty() {
                let group = self.groups.remove(&gslot).unwrap_or_else(|| unreachable!());
                self.group_of.remove(selector);
                self.by_version.remove(&group.id.version);
            }
        }
        ids
    }

    /// Calls `offer` with every subscriber that may want an update on `topics`: those of its
    /// exact topics, of `*`, of the matchers in `matched`, and of the matchers newer than
    /// `matched` that match (evaluated here). A subscriber may come more than once.
    pub(crate) fn for_each_candidate(
        &mut self,
        topics: &[String],
        matched: &Matched,
        mut offer: impl FnMut(usize),
    ) {
        for topic in topics {
            if let Some(keys) = self.exact.get(topic.as_str()) {
                keys.iter().for_each(|&k| offer(k));
            }
        }
        self.any.iter().for_each(|&k| offer(k));
        for id in &matched.ids {
            if let Some(group) = self.groups.get(&id.slot)
                && group.id == *id
            {
                group.subs.iter().for_each(|&k| offer(k));
            }
        }
        // Joined after the evaluation: not in `matched` either way.
        let mut late = 0;
        for (_, gslot) in self.by_version.range(matched.version + 1..) {
            let group = &self.groups[gslot];
            late += 1;
            if topics.iter().any(|t| group.selector.matches(t)) {
                group.subs.iter().for_each(|&k| offer(k));
            }
        }
        self.late.matchers += late;
    }

    /// Distinct compiled matchers with subscribers.
    pub(crate) fn matchers(&self) -> usize {
        self.groups.len()
    }
}

/// Inserts a subscription's compiled matchers in the index (outside the hub lock): one use each.
pub(crate) fn claim(index: &mut SelectorIndex, plan: &Plan<'_>) -> Vec<MatcherId> {
    plan.compiled.iter().map(|s| index.insert(s)).collect()
}
