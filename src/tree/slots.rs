//! Node ids to nodes: a persistent 16-way radix of [`NodeBox`] pointers, and the free
//! ids of deleted nodes.
//!
//! Ids are dense (the root is 0, a deleted node's id is reused), so a level of 16 slots
//! is full and a node costs 8 bytes here plus 1/16 of the level above. A change copies
//! the leaf and the path to it when they are shared with an older version, so a clone of
//! the whole table is one pointer.
//!
//! Why 16 and not 64: copying a shared leaf cost an atomic increment on every node in it
//! (each on a cache line of its own), undone by a decrement when the old version was
//! dropped. The core publishes a root every pass, so most writes copy a leaf: with 64
//! slots that was ~16% of a standalone write's CPU (`zkbench run -w set`, 16x16, 10k
//! keys: 4.3-4.9 us per write against 4.0-4.1 with 16 slots). 16 slots cost one more
//! level (five for 1M znodes) and ~1 byte per znode.
//!
//! # Leaves borrow their unchanged nodes
//!
//! Even at 16 slots those counts were a quarter of a server's CPU on three servers (each
//! write copied a leaf and, later, dropped the old one: 32 atomic updates on 16 other
//! nodes' lines). So a copied leaf does not take a count on the nodes it shares: it
//! keeps one count on a *base*, a leaf that owns all of its nodes, and holds the base's
//! nodes in its other slots as plain pointers. Copying a leaf is then one count on the
//! base plus one on each node the copy owns (those written since the base), and
//! dropping it the same. A node is freed when the last leaf owning it goes, and a base's
//! nodes live as long as the base does.
//!
//! The price is garbage: a base keeps the nodes a later version replaced or removed
//! (*stale* ones) alive while any leaf borrows from it. A leaf therefore becomes a base
//! itself, taking a count on every node it holds and letting its base go, once it has
//! more than [`MAX_STALE`] stale nodes or they hold more than [`MAX_STALE_BYTES`]. So
//! at most 4 nodes in 16, and 2 KiB, are kept for nobody but older versions, and a big
//! node replaced is never kept past the older versions that still show it.

use super::node::NodeBox;
use std::mem::ManuallyDrop;
use std::sync::Arc;

const BITS: u32 = 4;
const FAN: usize = 1 << BITS;
/// Most free ids kept in one chunk of the free stack.
const FREE_CHUNK: usize = 1024;
/// Most stale nodes a leaf's base may keep for it (see the module header).
const MAX_STALE: u32 = 4;
/// Most bytes of stale nodes a leaf's base may keep for it.
const MAX_STALE_BYTES: usize = 2048;

/// 16 slots of nodes (see the module header, "Leaves borrow").
///
/// Invariants: without a base, `own` is exactly the slots holding a node and `stale` is
/// empty. With one, the base has no base itself; a slot outside `own` holds nothing or
/// the very pointer in the base's slot; and `stale` is the slots where the base holds a
/// node this leaf does not. Slots are `ManuallyDrop` so that only owned ones are ever
/// dropped, whatever panics.
struct Leaf {
    base: Option<Arc<Leaf>>,
    own: u16,
    stale: u16,
    stale_bytes: usize,
    slots: [Option<ManuallyDrop<NodeBox>>; FAN],
}

impl Leaf {
    fn empty() -> Leaf {
        Leaf {
            base: None,
            own: 0,
            stale: 0,
            stale_bytes: 0,
            slots: std::array::from_fn(|_| None),
        }
    }

    fn get(&self, i: usize) -> Option<&NodeBox> {
        self.slots[i].as_deref()
    }

    /// A copy of `src` for a writer to change: it borrows from `src` if that owns all
    /// its nodes, else from `src`'s base, and takes counts only on the nodes `src` owns.
    fn copy_of(src: &Arc<Leaf>) -> Leaf {
        let (base, own, stale, stale_bytes) = match &src.base {
            None => (Arc::clone(src), 0, 0, 0),
            Some(b) => (Arc::clone(b), src.own, src.stale, src.stale_bytes),
        };
        let slots = std::array::from_fn(|i| {
            src.slots[i].as_ref().map(|n| {
                if own & (1 << i) != 0 {
                    ManuallyDrop::new(NodeBox::clone(n))
                } else {
                    // SAFETY: a pointer copy without a count: the base owns the node and
                    // this leaf holds the base; `ManuallyDrop` and `Drop for Leaf`
                    // never drop a slot outside `own`.
                    ManuallyDrop::new(unsafe { std::ptr::read(&**n) })
                }
            })
        });
        Leaf {
            base: Some(base),
            own,
            stale,
            stale_bytes,
            slots,
        }
    }

    /// Empties slot `i`, returning its node with a count of its own.
    fn take(&mut self, i: usize) -> Option<NodeBox> {
        let bit = 1u16 << i;
        let n = self.slots[i].take()?;
        if self.own & bit != 0 {
            self.own &= !bit;
            return Some(ManuallyDrop::into_inner(n));
        }
        // The base's node: it becomes stale here.
        let counted = NodeBox::clone(&n);
        self.stale |= bit;
        self.stale_bytes += counted.alloc_len();
        if self.stale.count_ones() > MAX_STALE || self.stale_bytes > MAX_STALE_BYTES {
            self.own_all();
        }
        Some(counted)
    }

    /// Stores `node` in slot `i`, returning the node it replaces.
    fn put(&mut self, i: usize, node: NodeBox) -> Option<NodeBox> {
        // Taking a borrowed node marks the slot stale; an empty slot where the base
        // has a node is stale already.
        let old = self.take(i);
        self.slots[i] = Some(ManuallyDrop::new(node));
        self.own |= 1 << i;
        old
    }

    /// Takes a count on every node held and lets the base go: this leaf becomes a base.
    fn own_all(&mut self) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if let Some(n) = slot {
                if self.own & (1 << i) == 0 {
                    // The pointer copy becomes a counted handle (nothing to drop).
                    *n = ManuallyDrop::new(NodeBox::clone(n));
                    self.own |= 1 << i;
                }
            }
        }
        self.stale = 0;
        self.stale_bytes = 0;
        self.base = None;
    }
}

impl Drop for Leaf {
    fn drop(&mut self) {
        for (i, slot) in self.slots.iter_mut().enumerate() {
            if self.own & (1 << i) != 0 {
                if let Some(n) = slot {
                    // SAFETY: an owned slot's handle, dropped once (the leaf is going).
                    unsafe { ManuallyDrop::drop(n) };
                }
            }
        }
    }
}

/// The leaf in `l`, copied first if an older version shares it.
fn leaf_mut(l: &mut Arc<Leaf>) -> &mut Leaf {
    if Arc::get_mut(l).is_none() {
        *l = Arc::new(Leaf::copy_of(l));
    }
    Arc::get_mut(l).expect("a fresh or unshared leaf")
}

#[derive(Clone)]
enum RNode {
    Leaf(Arc<Leaf>),
    Inner(Arc<[Option<RNode>; FAN]>),
}

fn empty_leaf() -> RNode {
    RNode::Leaf(Arc::new(Leaf::empty()))
}

fn empty_inner() -> RNode {
    RNode::Inner(Arc::new(std::array::from_fn(|_| None)))
}

#[derive(Clone)]
struct FreeChunk {
    ids: Vec<u32>,
    next: Option<Arc<FreeChunk>>,
}

#[derive(Clone)]
pub(crate) struct Slots {
    root: RNode,
    /// Inner levels above the leaves.
    height: u32,
    /// Ids below this have been handed out.
    next: u32,
    free: Option<Arc<FreeChunk>>,
    live: usize,
}

impl Slots {
    pub(crate) fn new() -> Slots {
        Slots {
            root: empty_leaf(),
            height: 0,
            next: 0,
            free: None,
            live: 0,
        }
    }

    fn capacity(&self) -> u64 {
        1u64 << (BITS * (self.height + 1))
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn get(&self, id: u32) -> Option<&NodeBox> {
        if u64::from(id) >= self.capacity() {
            return None;
        }
        let mut node = &self.root;
        let mut level = self.height;
        loop {
            let i = (id >> (BITS * level)) as usize & (FAN - 1);
            match node {
                RNode::Leaf(l) => return l.get(i),
                RNode::Inner(n) => node = n[i].as_ref()?,
            }
            level -= 1;
        }
    }

    /// The leaf holding `id` and the slot's index in it, made unique along its path,
    /// growing the table as needed.
    fn leaf_mut(&mut self, id: u32) -> (&mut Leaf, usize) {
        while u64::from(id) >= self.capacity() {
            let old = std::mem::replace(&mut self.root, empty_inner());
            if let RNode::Inner(n) = &mut self.root {
                Arc::make_mut(n)[0] = Some(old);
            }
            self.height += 1;
        }
        let mut node = &mut self.root;
        let mut level = self.height;
        loop {
            let i = (id >> (BITS * level)) as usize & (FAN - 1);
            match node {
                RNode::Leaf(l) => return (leaf_mut(l), i),
                RNode::Inner(n) => {
                    let child = &mut Arc::make_mut(n)[i];
                    node = child.get_or_insert_with(|| {
                        if level == 1 {
                            empty_leaf()
                        } else {
                            empty_inner()
                        }
                    });
                }
            }
            level -= 1;
        }
    }

    /// Takes the node out of `id`'s slot (to rebuild it); [`Slots::put`] puts one back.
    pub(crate) fn take(&mut self, id: u32) -> Option<NodeBox> {
        let (leaf, i) = self.leaf_mut(id);
        leaf.take(i)
    }

    /// Stores `node` in the slot of `id`, which must have been allocated.
    pub(crate) fn put(&mut self, id: u32, node: NodeBox) -> Option<NodeBox> {
        debug_assert!(id < self.next, "slot {id} not allocated");
        let (leaf, i) = self.leaf_mut(id);
        leaf.put(i, node)
    }

    /// A fresh id for a new node (a freed one if any), counted as live.
    pub(crate) fn alloc(&mut self) -> u32 {
        self.live += 1;
        if let Some(head) = self.free.as_mut() {
            let chunk = Arc::make_mut(head);
            let id = chunk.ids.pop().expect("free chunks are never empty");
            if chunk.ids.is_empty() {
                self.free = chunk.next.take();
            }
            return id;
        }
        let id = self.next;
        self.next = self.next.checked_add(1).expect("fewer than 2^32 znodes");
        id
    }

    /// Empties the slot of `id` and makes the id free; returns the node.
    pub(crate) fn release(&mut self, id: u32) -> Option<NodeBox> {
        let n = self.take(id);
        assert!(n.is_some(), "release of empty slot {id}");
        self.live -= 1;
        match self.free.as_mut() {
            Some(head) if head.ids.len() < FREE_CHUNK => Arc::make_mut(head).ids.push(id),
            _ => {
                self.free = Some(Arc::new(FreeChunk {
                    ids: vec![id],
                    next: self.free.take(),
                }))
            }
        }
        n
    }

    /// A table holding `nodes` at ids 0, 1, 2, ... (a loader's bulk build).
    pub(crate) fn from_vec(nodes: Vec<NodeBox>) -> Slots {
        let mut s = Slots::new();
        let n = u32::try_from(nodes.len()).expect("fewer than 2^32 znodes");
        if n == 0 {
            return s;
        }
        while u64::from(n) > s.capacity() {
            s.height += 1;
        }
        // Leaves first, then each level above from the one below.
        let mut level: Vec<RNode> = Vec::with_capacity(nodes.len().div_ceil(FAN));
        let mut it = nodes.into_iter();
        loop {
            let mut leaf = Leaf::empty();
            for (i, slot) in leaf.slots.iter_mut().enumerate() {
                match it.next() {
                    Some(nb) => {
                        *slot = Some(ManuallyDrop::new(nb));
                        leaf.own |= 1 << i;
                    }
                    None => break,
                }
            }
            if leaf.own == 0 {
                break;
            }
            level.push(RNode::Leaf(Arc::new(leaf)));
        }
        for _ in 0..s.height {
            let mut up: Vec<RNode> = Vec::with_capacity(level.len().div_ceil(FAN));
            let mut it = level.into_iter().peekable();
            while it.peek().is_some() {
                let mut inner: [Option<RNode>; FAN] = std::array::from_fn(|_| None);
                for slot in inner.iter_mut() {
                    match it.next() {
                        Some(c) => *slot = Some(c),
                        None => break,
                    }
                }
                up.push(RNode::Inner(Arc::new(inner)));
            }
            level = up;
        }
        assert_eq!(level.len(), 1, "one root");
        s.root = level.pop().expect("one root");
        s.next = n;
        s.live = n as usize;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::node::{Fields, LIVE_NODES};
    use proptest::prelude::*;

    fn node(i: u32) -> NodeBox {
        NodeBox::new(
            i,
            Arc::new(Vec::new()),
            None,
            b"n",
            None,
            &Fields::default(),
        )
    }

    #[test]
    fn alloc_release_reuse_and_clones_stay_frozen() {
        let mut s = Slots::new();
        for i in 0..5000u32 {
            let id = s.alloc();
            assert_eq!(id, i);
            s.put(id, node(i));
        }
        let frozen = s.clone();
        for id in (0..5000u32).step_by(2) {
            assert_eq!(s.release(id).unwrap().parent(), id);
        }
        assert_eq!(s.len(), 2500);
        assert!(s.get(4).is_none());
        assert_eq!(frozen.get(4).unwrap().parent(), 4);
        let mut reused = Vec::new();
        for _ in 0..2500 {
            reused.push(s.alloc());
        }
        reused.sort_unstable();
        assert_eq!(reused, (0..5000).step_by(2).collect::<Vec<u32>>());
        assert_eq!(s.alloc(), 5000);
        let bulk = Slots::from_vec((0..4097).map(node).collect());
        assert_eq!(bulk.len(), 4097);
        assert_eq!(bulk.get(4096).unwrap().parent(), 4096);
        assert!(bulk.get(4097).is_none());
    }

    fn node_of(i: u32, size: usize) -> NodeBox {
        NodeBox::new(
            i,
            Arc::new(Vec::new()),
            None,
            b"n",
            Some(&vec![7u8; size]),
            &Fields::default(),
        )
    }

    /// What one version holds: id -> (parent field as a tag, data length).
    type Model = std::collections::BTreeMap<u32, (u32, usize)>;

    fn check(s: &Slots, m: &Model, upto: u32) {
        assert_eq!(s.len(), m.len());
        for id in 0..upto + 20 {
            let got = s
                .get(id)
                .map(|n| (n.parent(), n.data().map_or(0, <[u8]>::len)));
            assert_eq!(got, m.get(&id).copied(), "id {id}");
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Create(usize),
        Replace(u16, usize),
        Delete(u16),
        Keep,
        Forget(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Sizes on both sides of the stale-bytes bound.
        let size = prop_oneof![4 => 0usize..200, 1 => 1000usize..5000];
        prop_oneof![
            3 => size.clone().prop_map(Op::Create),
            6 => (any::<u16>(), size).prop_map(|(k, n)| Op::Replace(k, n)),
            2 => any::<u16>().prop_map(Op::Delete),
            2 => Just(Op::Keep),
            1 => any::<u16>().prop_map(Op::Forget),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Any mix of writes and kept versions: every kept version stays exactly as it
        /// was, the latest is what the writes made it, nothing is freed twice (a count
        /// gone wrong reads freed memory or aborts), nothing leaks once every version is
        /// gone, and with only the latest left what it keeps beyond its own nodes is
        /// within the stale bound of each leaf.
        #[test]
        fn versions_stay_frozen_and_nodes_are_freed_once(ops in proptest::collection::vec(op(), 1..400)) {
            let before = LIVE_NODES.with(|c| c.get());
            {
                let mut s = Slots::new();
                let mut m = Model::new();
                let mut kept: Vec<(Slots, Model)> = Vec::new();
                let mut tag = 0u32;
                for op in ops {
                    tag += 1;
                    match op {
                        Op::Create(size) => {
                            let id = s.alloc();
                            s.put(id, node_of(tag, size));
                            m.insert(id, (tag, size));
                        }
                        Op::Replace(k, size) if !m.is_empty() => {
                            let id = *m.keys().nth(k as usize % m.len()).unwrap();
                            let old = s.take(id).expect("live");
                            prop_assert_eq!(old.parent(), m[&id].0);
                            prop_assert!(s.get(id).is_none());
                            s.put(id, node_of(tag, size));
                            m.insert(id, (tag, size));
                        }
                        Op::Delete(k) if !m.is_empty() => {
                            let id = *m.keys().nth(k as usize % m.len()).unwrap();
                            let old = s.release(id).expect("live");
                            prop_assert_eq!(old.parent(), m.remove(&id).unwrap().0);
                        }
                        Op::Keep => kept.push((s.clone(), m.clone())),
                        Op::Forget(k) if !kept.is_empty() => {
                            let i = k as usize % kept.len();
                            kept.swap_remove(i);
                        }
                        _ => {}
                    }
                    check(&s, &m, s.next);
                }
                for (v, vm) in &kept {
                    check(v, vm, s.next);
                }
                kept.clear();
                let live = LIVE_NODES.with(|c| c.get()) - before;
                let leaves = s.next.div_ceil(FAN as u32) as isize;
                prop_assert!(live >= s.len() as isize);
                prop_assert!(
                    live - s.len() as isize <= MAX_STALE as isize * leaves,
                    "{} nodes alive for {} live ids in {} leaves", live, s.len(), leaves
                );
            }
            prop_assert_eq!(LIVE_NODES.with(|c| c.get()), before, "nodes leaked");
        }
    }
}
