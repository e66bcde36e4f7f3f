//! Node ids to nodes: a persistent 16-way radix of [`NodeBox`] pointers, and the free
//! ids of deleted nodes.
//!
//! Ids are dense (the root is 0, a deleted node's id is reused), so a level of 16 slots
//! is full and a node costs 8 bytes here plus 1/16 of the level above. A change copies
//! the 128-byte leaf and the path to it when they are shared with an older version
//! (`Arc::make_mut`), so a clone of the whole table is one pointer.
//!
//! Why 16 and not 64: copying a shared leaf clones every pointer in it, and each clone
//! is an atomic increment on another node's head (a cache line of its own), undone by a
//! decrement when the old version is dropped. The core publishes a root every pass, so
//! most writes copy a leaf: with 64 slots that was ~16% of a standalone write's CPU
//! (`zkbench run -w set`, 16x16, 10k keys: 4.3-4.9 us per write against 4.0-4.1 with
//! 16 slots). 16 slots cost one more level (five for 1M znodes) and ~1 byte per znode.

use super::node::NodeBox;
use std::sync::Arc;

const BITS: u32 = 4;
const FAN: usize = 1 << BITS;
/// Most free ids kept in one chunk of the free stack.
const FREE_CHUNK: usize = 1024;

type Leaf = [Option<NodeBox>; FAN];

#[derive(Clone)]
enum RNode {
    Leaf(Arc<Leaf>),
    Inner(Arc<[Option<RNode>; FAN]>),
}

fn empty_leaf() -> RNode {
    RNode::Leaf(Arc::new(std::array::from_fn(|_| None)))
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
                RNode::Leaf(l) => return l[i].as_ref(),
                RNode::Inner(n) => node = n[i].as_ref()?,
            }
            level -= 1;
        }
    }

    /// The slot of `id`, made unique along its path, growing the table as needed.
    fn slot_mut(&mut self, id: u32) -> &mut Option<NodeBox> {
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
                RNode::Leaf(l) => return &mut Arc::make_mut(l)[i],
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
        self.slot_mut(id).take()
    }

    /// Stores `node` in the slot of `id`, which must have been allocated.
    pub(crate) fn put(&mut self, id: u32, node: NodeBox) -> Option<NodeBox> {
        debug_assert!(id < self.next, "slot {id} not allocated");
        self.slot_mut(id).replace(node)
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
        let n = self.slot_mut(id).take();
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
            let mut leaf: Leaf = std::array::from_fn(|_| None);
            let mut any = false;
            for slot in leaf.iter_mut() {
                match it.next() {
                    Some(nb) => {
                        *slot = Some(nb);
                        any = true;
                    }
                    None => break,
                }
            }
            if !any {
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
    use crate::tree::node::Fields;

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
}
