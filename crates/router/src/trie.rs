//! A byte-wise radix tree over prefix paths.
//!
//! Prefix matching is not segment-aware (`/foo` matches `/foobar`), so the
//! candidates for a request path are *all* configured prefixes that are
//! prefixes of it. One walk down the tree finds exactly those, in time
//! proportional to the request path's length and independent of the number
//! of routes.

/// Radix tree mapping byte strings to values.
#[derive(Debug, Clone)]
pub(crate) struct PrefixTrie<V> {
    /// Node 0 is the root, whose label is empty.
    nodes: Vec<Node<V>>,
}

#[derive(Debug, Clone)]
struct Node<V> {
    /// Bytes consumed when entering this node from its parent.
    label: Box<[u8]>,
    /// First bytes of the children's labels, sorted (labels of siblings
    /// never share a first byte); parallel to `child_nodes`.
    child_keys: Vec<u8>,
    /// Node indexes of the children.
    child_nodes: Vec<usize>,
    /// Value of the key ending exactly here.
    value: Option<V>,
}

impl<V> Node<V> {
    fn new(label: &[u8]) -> Self {
        Node {
            label: label.into(),
            child_keys: Vec::new(),
            child_nodes: Vec::new(),
            value: None,
        }
    }
}

/// How many matching keys [`PrefixTrie::for_each_prefix`] buffers to visit
/// them longest first.
const PREFIX_STACK: usize = 16;

fn common_prefix_len(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl<V> Node<V> {
    /// Position of the child whose label starts with `b`. Nodes have few
    /// children (path characters), where a linear scan beats a binary
    /// search.
    #[inline]
    fn child_pos(&self, b: u8) -> Result<usize, usize> {
        if self.child_keys.len() <= 16 {
            for (i, &k) in self.child_keys.iter().enumerate() {
                if k >= b {
                    return if k == b { Ok(i) } else { Err(i) };
                }
            }
            Err(self.child_keys.len())
        } else {
            self.child_keys.binary_search(&b)
        }
    }
}

/// Byte equality without a `memcmp` call: labels are a few bytes long and
/// the call overhead would dominate.
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

impl<V> PrefixTrie<V> {
    /// An empty tree.
    pub(crate) fn new() -> Self {
        PrefixTrie {
            nodes: vec![Node::new(b"")],
        }
    }

    /// The value slot for `key`, creating (and splitting) nodes as needed.
    pub(crate) fn slot(&mut self, key: &[u8]) -> &mut Option<V> {
        let mut node = 0usize;
        let mut rest = key;
        loop {
            let Some(&first) = rest.first() else {
                return &mut self.nodes[node].value;
            };
            match self.nodes[node].child_pos(first) {
                Err(pos) => {
                    let new = self.nodes.len();
                    self.nodes.push(Node::new(rest));
                    self.nodes[node].child_keys.insert(pos, first);
                    self.nodes[node].child_nodes.insert(pos, new);
                    return &mut self.nodes[new].value;
                }
                Ok(pos) => {
                    let child = self.nodes[node].child_nodes[pos];
                    let common = common_prefix_len(&self.nodes[child].label, rest);
                    if common == self.nodes[child].label.len() {
                        node = child;
                        rest = &rest[common..];
                        continue;
                    }
                    // The key diverges inside the child's label: insert an
                    // intermediate node holding the shared part. `common >= 1`
                    // because the first bytes are equal.
                    let label = std::mem::take(&mut self.nodes[child].label);
                    let mid = self.nodes.len();
                    let mut mid_node = Node::new(&label[..common]);
                    mid_node.child_keys.push(label[common]);
                    mid_node.child_nodes.push(child);
                    self.nodes.push(mid_node);
                    self.nodes[child].label = label[common..].into();
                    self.nodes[node].child_nodes[pos] = mid;
                    node = mid;
                    rest = &rest[common..];
                }
            }
        }
    }

    /// Calls `visit(len, value)` for every stored key that is a prefix of
    /// `key`. Does not allocate.
    ///
    /// Longer keys are visited first (the router's candidates there usually
    /// rank best, which lets it skip the shorter ones cheaply); beyond
    /// [`PREFIX_STACK`] matching keys the extra ones are visited during the
    /// walk. The order is an optimisation only; callers must not rely on it.
    pub(crate) fn for_each_prefix<'a>(&'a self, key: &[u8], mut visit: impl FnMut(usize, &'a V)) {
        let mut found: [(usize, Option<&'a V>); PREFIX_STACK] = [(0, None); PREFIX_STACK];
        let mut n = 0usize;
        self.walk(key, |len, v| match found.get_mut(n) {
            Some(slot) => {
                *slot = (len, Some(v));
                n += 1;
            }
            None => visit(len, v),
        });
        for &(len, v) in found[..n].iter().rev() {
            if let Some(v) = v {
                visit(len, v);
            }
        }
    }

    /// The walk behind [`for_each_prefix`](Self::for_each_prefix), shortest
    /// key first.
    fn walk<'a>(&'a self, key: &[u8], mut visit: impl FnMut(usize, &'a V)) {
        let Some(mut node) = self.nodes.first() else {
            return;
        };
        let mut pos = 0usize;
        loop {
            if let Some(v) = &node.value {
                visit(pos, v);
            }
            let Some(&b) = key.get(pos) else {
                return;
            };
            let Ok(i) = node.child_pos(b) else {
                return;
            };
            let Some(child) = node.child_nodes.get(i).and_then(|&idx| self.nodes.get(idx)) else {
                return;
            };
            // The first byte is equal by construction of `child_keys`.
            let Some(rest) = key.get(pos + 1..pos + child.label.len()) else {
                return;
            };
            if !short_eq(child.label.get(1..).unwrap_or_default(), rest) {
                return;
            }
            pos += child.label.len();
            node = child;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    fn prefixes(t: &PrefixTrie<u32>, key: &str) -> Vec<(usize, u32)> {
        let mut out = Vec::new();
        t.for_each_prefix(key.as_bytes(), |len, v| out.push((len, *v)));
        out
    }

    #[test]
    fn finds_all_prefixes_shortest_first() {
        let mut t = PrefixTrie::new();
        for (i, k) in [
            "/", "/foo", "/foobar", "/fob", "/svc-1", "/svc-10", "/svc-2",
        ]
        .iter()
        .enumerate()
        {
            *t.slot(k.as_bytes()) = Some(i as u32);
        }
        assert_eq!(prefixes(&t, "/foobar/x"), vec![(7, 2), (4, 1), (1, 0)]);
        assert_eq!(prefixes(&t, "/fo"), vec![(1, 0)]);
        assert_eq!(prefixes(&t, "/fob"), vec![(4, 3), (1, 0)]);
        assert_eq!(prefixes(&t, "/svc-100"), vec![(7, 5), (6, 4), (1, 0)]);
        assert_eq!(prefixes(&t, "/svc-2"), vec![(6, 6), (1, 0)]);
        assert_eq!(prefixes(&t, "x"), vec![]);
        assert_eq!(prefixes(&t, ""), vec![]);
    }

    #[test]
    fn visits_every_prefix_beyond_the_stack() {
        let mut t = PrefixTrie::new();
        let key = "/".to_owned() + &"a".repeat(40);
        for len in 1..=key.len() {
            *t.slot(&key.as_bytes()[..len]) = Some(len as u32);
        }
        let mut got: Vec<u32> = prefixes(&t, &key).into_iter().map(|(_, v)| v).collect();
        assert_eq!(got.len(), key.len());
        // The buffered (shortest) ones come last, longest first.
        assert_eq!(
            got[got.len() - PREFIX_STACK..].first(),
            Some(&(PREFIX_STACK as u32))
        );
        got.sort_unstable();
        assert_eq!(got, (1..=key.len() as u32).collect::<Vec<_>>());
    }

    #[test]
    fn insertion_order_does_not_matter() {
        let keys = ["/abc", "/ab", "/a", "/abd", "/b", "/"];
        let mut t1 = PrefixTrie::new();
        let mut t2 = PrefixTrie::new();
        for (i, k) in keys.iter().enumerate() {
            *t1.slot(k.as_bytes()) = Some(i as u32);
        }
        for (i, k) in keys.iter().enumerate().rev() {
            *t2.slot(k.as_bytes()) = Some(i as u32);
        }
        for probe in ["/abcd", "/abd", "/b", "/a", "/", "/c"] {
            assert_eq!(prefixes(&t1, probe), prefixes(&t2, probe), "{probe}");
        }
        assert_eq!(prefixes(&t1, "/abcd"), vec![(4, 0), (3, 1), (2, 2), (1, 5)]);
    }
}
