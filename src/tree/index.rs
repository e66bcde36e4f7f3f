//! Full path to node id: a persistent hash trie of 8-byte entries.
//!
//! An entry is `hash32 << 32 | id`, where `hash32` is 32 bits of a keyed hash of the
//! full path (foldhash's quality variant, with a seed random per process, so clients
//! cannot aim collisions; it replaced std's SipHash, which cost ~300 instructions per
//! 21-byte path against ~40, and every write and read hashes its path). Branches are
//! 16-way on successive 4-bit digits of `hash32`; leaves are exact-size `Arc<[u64]>`
//! of at most [`LEAF_MAX`] entries (unbounded once all 32 bits are used). A hit is only
//! a candidate: the tree checks the node's name and parent chain against the path.
//! About 12-16 bytes per znode, against 100+ for a map holding path strings (rpds'
//! hash trie of `Arc<str>` keys: 174 bytes per entry measured, imbl's OrdMap 115).

use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

const LEAF_MAX: usize = 32;
const LEVELS: u32 = 8;

#[derive(Clone, Default)]
enum H {
    #[default]
    Empty,
    Leaf(Arc<[u64]>),
    Branch(Arc<[H; 16]>),
}

fn digit(h32: u32, level: u32) -> usize {
    ((h32 >> (28 - 4 * level)) & 15) as usize
}

fn hash_of(entry: u64) -> u32 {
    (entry >> 32) as u32
}

/// 32 bits of the keyed hash of a full path.
pub(crate) fn path_hash(path: &[u8]) -> u32 {
    static KEYS: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    (KEYS.get_or_init(Default::default).hash_one(path) >> 32) as u32
}

#[derive(Clone, Default)]
pub(crate) struct Index {
    root: H,
}

impl Index {
    /// The first id under `h32` that `ok` accepts.
    pub(crate) fn find(&self, h32: u32, mut ok: impl FnMut(u32) -> bool) -> Option<u32> {
        let mut node = &self.root;
        let mut level = 0;
        loop {
            match node {
                H::Empty => return None,
                H::Leaf(es) => {
                    return es
                        .iter()
                        .filter(|&&e| hash_of(e) == h32)
                        .map(|&e| e as u32)
                        .find(|&id| ok(id));
                }
                H::Branch(b) => {
                    node = &b[digit(h32, level)];
                    level += 1;
                }
            }
        }
    }

    pub(crate) fn insert(&mut self, h32: u32, id: u32) {
        insert(&mut self.root, (u64::from(h32) << 32) | u64::from(id), 0);
    }

    /// Removes the entry of `id` under `h32`; returns whether it was there.
    pub(crate) fn remove(&mut self, h32: u32, id: u32) -> bool {
        remove(&mut self.root, (u64::from(h32) << 32) | u64::from(id), 0)
    }

    /// An index of `entries` (`hash32 << 32 | id`), built bottom-up after one sort:
    /// full leaves, no copying (a loader's bulk build).
    pub(crate) fn from_entries(mut entries: Vec<u64>) -> Index {
        entries.sort_unstable();
        Index {
            root: build(&entries, 0),
        }
    }
}

fn build(es: &[u64], level: u32) -> H {
    if es.is_empty() {
        return H::Empty;
    }
    if es.len() <= LEAF_MAX || level == LEVELS {
        return H::Leaf(es.into());
    }
    let mut b: [H; 16] = Default::default();
    let mut rest = es;
    for (d, slot) in b.iter_mut().enumerate() {
        let n = rest.partition_point(|&e| digit(hash_of(e), level) == d);
        *slot = build(&rest[..n], level + 1);
        rest = &rest[n..];
    }
    debug_assert!(rest.is_empty());
    H::Branch(Arc::new(b))
}

fn insert(node: &mut H, e: u64, level: u32) {
    match node {
        H::Empty => *node = H::Leaf(Arc::new([e])),
        H::Leaf(es) => {
            if es.len() < LEAF_MAX || level == LEVELS {
                let mut v = Vec::with_capacity(es.len() + 1);
                v.extend_from_slice(es);
                v.push(e);
                *node = H::Leaf(v.into());
            } else {
                let mut b: [H; 16] = Default::default();
                for &old in es.iter() {
                    insert(&mut b[digit(hash_of(old), level)], old, level + 1);
                }
                insert(&mut b[digit(hash_of(e), level)], e, level + 1);
                *node = H::Branch(Arc::new(b));
            }
        }
        H::Branch(b) => {
            let b = Arc::make_mut(b);
            insert(&mut b[digit(hash_of(e), level)], e, level + 1);
        }
    }
}

fn remove(node: &mut H, e: u64, level: u32) -> bool {
    match node {
        H::Empty => false,
        H::Leaf(es) => {
            let Some(at) = es.iter().position(|&x| x == e) else {
                return false;
            };
            if es.len() == 1 {
                *node = H::Empty;
            } else {
                let v: Vec<u64> = es
                    .iter()
                    .enumerate()
                    .filter(|&(i, _)| i != at)
                    .map(|(_, &x)| x)
                    .collect();
                *node = H::Leaf(v.into());
            }
            true
        }
        H::Branch(b) => {
            let d = digit(hash_of(e), level);
            if matches!(b[d], H::Empty) {
                return false;
            }
            remove(&mut Arc::make_mut(b)[d], e, level + 1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_find_with_collisions() {
        let mut ix = Index::default();
        // Few distinct hashes: every leaf holds collisions, and the deepest leaves grow
        // past LEAF_MAX.
        let h = |id: u32| (id % 7).wrapping_mul(0x9e37_79b9);
        for id in 0..2000 {
            ix.insert(h(id), id);
        }
        let frozen = ix.clone();
        for id in (0..2000).step_by(2) {
            assert!(ix.remove(h(id), id));
            assert!(!ix.remove(h(id), id));
        }
        for id in 0..2000 {
            let found = ix.find(h(id), |c| c == id);
            assert_eq!(found.is_some(), id % 2 == 1, "{id}");
            assert_eq!(frozen.find(h(id), |c| c == id), Some(id));
        }
        let bulk = Index::from_entries(
            (0..50_000u32)
                .map(|id| (u64::from(path_hash(&id.to_le_bytes())) << 32) | u64::from(id))
                .collect(),
        );
        for id in (0..50_000u32).step_by(97) {
            let h = path_hash(&id.to_le_bytes());
            assert_eq!(bulk.find(h, |c| c == id), Some(id));
        }
    }
}
