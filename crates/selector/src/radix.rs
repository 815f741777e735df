//! A compressed prefix tree (radix tree) from byte strings to ids, answering one question
//! quickly: *which of the stored keys are prefixes of this string?* (all of them, in one walk
//! down the string: O(its length), whatever the number of keys).
//!
//! A plain byte trie would spend a node per byte of every key, and keys are up to 2 KiB of
//! subscriber-chosen text; here a node holds a whole edge label, so each key costs at most two
//! nodes (the one it ends at and one split), plus its bytes once.

use slab::Slab;

#[derive(Debug)]
struct Node {
    /// The edge from the parent (empty for the root).
    label: Box<[u8]>,
    /// Sorted by the first byte of their label (distinct first bytes).
    children: Vec<usize>,
    /// Ids whose key ends exactly here.
    ids: Vec<u32>,
}

/// Keys and their ids; one id may be stored under one key at a time (the caller's contract).
#[derive(Debug)]
pub(crate) struct PrefixTree {
    nodes: Slab<Node>,
    root: usize,
    len: usize,
}

impl Default for PrefixTree {
    fn default() -> Self {
        let mut nodes = Slab::new();
        let root = nodes.insert(Node {
            label: Box::default(),
            children: Vec::new(),
            ids: Vec::new(),
        });
        PrefixTree {
            nodes,
            root,
            len: 0,
        }
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl PrefixTree {
    /// Ids stored.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The child of `node` whose label starts with `b`: its position and node.
    fn child(&self, node: usize, b: u8) -> Result<(usize, usize), usize> {
        let children = &self.nodes[node].children;
        children
            .binary_search_by_key(&b, |&c| self.nodes[c].label[0])
            .map(|pos| (pos, children[pos]))
    }

    /// Stores `id` under `key`.
    pub(crate) fn insert(&mut self, key: &[u8], id: u32) {
        let mut node = self.root;
        let mut rest = key;
        loop {
            if rest.is_empty() {
                self.nodes[node].ids.push(id);
                self.len += 1;
                return;
            }
            match self.child(node, rest[0]) {
                Err(pos) => {
                    let leaf = self.nodes.insert(Node {
                        label: rest.into(),
                        children: Vec::new(),
                        ids: vec![id],
                    });
                    self.nodes[node].children.insert(pos, leaf);
                    self.len += 1;
                    return;
                }
                Ok((pos, child)) => {
                    let label = &self.nodes[child].label;
                    let common = common_prefix(label, rest);
                    if common < label.len() {
                        // Split the edge: a new node for the common part, the old child below
                        // it with the rest of its label (same first byte: same position).
                        let (head, tail) = label.split_at(common);
                        let (head, tail): (Box<[u8]>, Box<[u8]>) = (head.into(), tail.into());
                        self.nodes[child].label = tail;
                        let mid = self.nodes.insert(Node {
                            label: head,
                            children: vec![child],
                            ids: Vec::new(),
                        });
                        self.nodes[node].children[pos] = mid;
                        node = mid;
                    } else {
                        node = child;
                    }
                    rest = &rest[common..];
                }
            }
        }
    }

    /// Removes `id` from under `key`; `false` if it was not there.
    pub(crate) fn remove(&mut self, key: &[u8], id: u32) -> bool {
        // The path from the root: (parent, position in the parent's children) per step.
        let mut path: Vec<(usize, usize)> = Vec::new();
        let mut node = self.root;
        let mut rest = key;
        while !rest.is_empty() {
            let Ok((pos, child)) = self.child(node, rest[0]) else {
                return false;
            };
            let label = &self.nodes[child].label;
            if !rest.starts_with(label) {
                return false;
            }
            rest = &rest[label.len()..];
            path.push((node, pos));
            node = child;
        }
        let ids = &mut self.nodes[node].ids;
        let Some(at) = ids.iter().position(|&i| i == id) else {
            return false;
        };
        ids.swap_remove(at);
        self.len -= 1;
        // Tidy up: drop nodes that hold nothing, merge a node left with one child and no ids
        // into that child, so the tree stays at most two nodes per key.
        while let Some((parent, pos)) = path.pop() {
            let n = &self.nodes[node];
            if !n.ids.is_empty() {
                break;
            }
            match n.children.len() {
                0 => {
                    self.nodes.remove(node);
                    self.nodes[parent].children.remove(pos);
                    node = parent;
                }
                1 => {
                    let only = n.children[0];
                    let removed = self.nodes.remove(node);
                    let mut label = removed.label.into_vec();
                    label.extend_from_slice(&self.nodes[only].label);
                    self.nodes[only].label = label.into();
                    self.nodes[parent].children[pos] = only;
                    break;
                }
                _ => break,
            }
        }
        true
    }

    /// Calls `f` with every id stored under a key that is a prefix of `s` (shortest keys first).
    pub(crate) fn for_each_prefix(&self, s: &[u8], mut f: impl FnMut(u32)) {
        let mut node = self.root;
        let mut rest = s;
        loop {
            for &id in &self.nodes[node].ids {
                f(id);
            }
            if rest.is_empty() {
                return;
            }
            let Ok((_, child)) = self.child(node, rest[0]) else {
                return;
            };
            let label = &self.nodes[child].label;
            if !rest.starts_with(label) {
                return;
            }
            rest = &rest[label.len()..];
            node = child;
        }
    }

    /// Nodes in the tree (the root included): for tests of the two-per-key bound.
    #[cfg(test)]
    fn node_count(&self) -> usize {
        self.nodes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn found(t: &PrefixTree, s: &str) -> Vec<u32> {
        let mut v = Vec::new();
        t.for_each_prefix(s.as_bytes(), |id| v.push(id));
        v.sort_unstable();
        v
    }

    #[test]
    fn prefixes_are_found_and_removed() {
        let mut t = PrefixTree::default();
        t.insert(b"", 0);
        t.insert(b"https\0example.com\0\0/users/4", 1);
        t.insert(b"https\0example.com\0\0/users/42", 2);
        t.insert(b"https\0example.com\0\0/users/43", 3);
        t.insert(b"https\0example.com\0\0/users/42", 4);
        t.insert(b"http", 5);
        assert_eq!(
            found(&t, "https\0example.com\0\0/users/42/x"),
            vec![0, 1, 2, 4, 5]
        );
        assert_eq!(
            found(&t, "https\0example.com\0\0/users/43"),
            vec![0, 1, 3, 5]
        );
        assert_eq!(found(&t, "ftp"), vec![0]);
        assert!(t.remove(b"https\0example.com\0\0/users/42", 2));
        assert!(!t.remove(b"https\0example.com\0\0/users/42", 2));
        assert!(!t.remove(b"https\0example.com\0\0/users/4x", 1));
        assert_eq!(
            found(&t, "https\0example.com\0\0/users/42/x"),
            vec![0, 1, 4, 5]
        );
        for (k, id) in [
            (&b""[..], 0),
            (b"https\0example.com\0\0/users/4", 1),
            (b"https\0example.com\0\0/users/43", 3),
            (b"https\0example.com\0\0/users/42", 4),
            (b"http", 5),
        ] {
            assert!(t.remove(k, id));
        }
        assert!(t.is_empty());
        assert_eq!(t.node_count(), 1, "only the root is left");
    }

    proptest! {
        /// Against a list of (key, id): the same answers, and at most two nodes per key.
        #[test]
        fn agrees_with_a_scan(
            ops in proptest::collection::vec(("[ab]{0,6}", 0u32..40, any::<bool>()), 1..120),
            probes in proptest::collection::vec("[ab]{0,8}", 1..20),
        ) {
            let mut t = PrefixTree::default();
            let mut model: Vec<(String, u32)> = Vec::new();
            for (key, id, insert) in ops {
                let held = model.iter().position(|(_, i)| *i == id);
                match (insert, held) {
                    (true, None) => {
                        t.insert(key.as_bytes(), id);
                        model.push((key, id));
                    }
                    (false, Some(at)) => {
                        let (k, i) = model.swap_remove(at);
                        prop_assert!(t.remove(k.as_bytes(), i));
                    }
                    _ => {}
                }
                prop_assert_eq!(t.len(), model.len());
                prop_assert!(t.node_count() <= 1 + 2 * model.len());
            }
            for p in probes {
                let mut want: Vec<u32> =
                    model.iter().filter(|(k, _)| p.starts_with(k.as_str())).map(|(_, i)| *i).collect();
                want.sort_unstable();
                prop_assert_eq!(found(&t, &p), want);
            }
        }
    }
}
