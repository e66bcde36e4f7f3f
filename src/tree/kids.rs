//! A znode's children: their node ids, sorted by name, in persistent chunks.
//!
//! A list is a vector of `Arc`'d chunks of at most [`CHUNK_MAX`] ids. A change copies
//! the chunk it touches (4 KiB at most) and the vector of chunk pointers (8 bytes per
//! 1024 children) when they are shared with an older tree version, so a node with
//! 1,000,000 children takes a create or delete in ~12 KiB of copying rather than 4 MB,
//! and costs ~4 bytes per child. Names are not stored here: they are in the children's
//! nodes, which the caller's `name_of` reads, so a child costs no second string (the
//! previous `OrdSet<Arc<str>>` held a pointer per child plus a B-tree; for 1M leaves with
//! no set at all, ~40 bytes per child went to the parent's set). Only each chunk's first
//! name is kept beside it, so that finding the chunk reads no node (perf of 1M creates
//! under one parent: half the search's node reads were in the chunk search).

use std::sync::Arc;

/// Most ids in one chunk: 4 KiB.
pub const CHUNK_MAX: usize = 1024;

#[derive(Debug, Clone)]
struct Chunk {
    /// The name of `ids[0]`.
    first: Box<[u8]>,
    ids: Vec<u32>,
}

#[derive(Debug, Clone, Default)]
pub struct KidList {
    chunks: Vec<Arc<Chunk>>,
    len: usize,
}

impl KidList {
    /// From ids already sorted by name.
    #[cfg(test)]
    pub fn from_sorted<'a>(ids: &[u32], name_of: impl Fn(u32) -> &'a [u8]) -> KidList {
        KidList {
            chunks: ids
                .chunks(CHUNK_MAX)
                .map(|c| {
                    Arc::new(Chunk {
                        first: name_of(c[0]).into(),
                        ids: c.to_vec(),
                    })
                })
                .collect(),
            len: ids.len(),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The `ci`-th chunk of ids (never empty), or `None` past the last.
    pub fn chunk(&self, ci: usize) -> Option<&[u32]> {
        self.chunks.get(ci).map(|c| c.ids.as_slice())
    }

    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.chunks.iter().flat_map(|c| c.ids.iter().copied())
    }

    /// The chunk that holds `name` or would: the last whose first child sorts at or
    /// before it.
    fn chunk_for(&self, name: &[u8]) -> usize {
        self.chunks
            .partition_point(|c| &*c.first <= name)
            .saturating_sub(1)
    }

    /// Where `name` is in chunk `ci`: `Ok(position)` or `Err(insertion point)`.
    fn find_in<'a>(
        &self,
        ci: usize,
        name: &[u8],
        name_of: &impl Fn(u32) -> &'a [u8],
    ) -> Result<usize, usize> {
        self.chunks[ci]
            .ids
            .binary_search_by(|&id| name_of(id).cmp(name))
    }

    /// The id of the child called `name`.
    #[cfg(test)]
    pub fn find<'a>(&self, name: &[u8], name_of: impl Fn(u32) -> &'a [u8]) -> Option<u32> {
        if self.chunks.is_empty() {
            return None;
        }
        let ci = self.chunk_for(name);
        self.find_in(ci, name, &name_of)
            .ok()
            .map(|i| self.chunks[ci].ids[i])
    }

    /// Adds child `id` called `name`, which must not be present (the caller checked).
    ///
    /// # Panics
    /// If a child of that name is listed.
    pub fn insert<'a>(&mut self, id: u32, name: &[u8], name_of: impl Fn(u32) -> &'a [u8]) {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(Chunk {
                first: name.into(),
                ids: vec![id],
            }));
            self.len = 1;
            return;
        }
        let ci = self.chunk_for(name);
        let at = match self.find_in(ci, name, &name_of) {
            Ok(_) => panic!("child {} listed twice", String::from_utf8_lossy(name)),
            Err(at) => at,
        };
        let last = ci + 1 == self.chunks.len();
        let chunk = Arc::make_mut(&mut self.chunks[ci]);
        chunk.ids.insert(at, id);
        if at == 0 {
            chunk.first = name.into();
        }
        self.len += 1;
        if chunk.ids.len() > CHUNK_MAX {
            // Appending in name order (sequential nodes) fills the last chunk and starts
            // a new one with the overflow, so such lists stay full; elsewhere halve.
            let split = if last && at + 1 == chunk.ids.len() {
                CHUNK_MAX
            } else {
                chunk.ids.len() / 2
            };
            let tail = chunk.ids.split_off(split);
            let first = if tail[0] == id {
                name.into()
            } else {
                name_of(tail[0]).into()
            };
            self.chunks
                .insert(ci + 1, Arc::new(Chunk { first, ids: tail }));
        }
    }

    /// Removes the child called `name`; returns its id.
    pub fn remove<'a>(&mut self, name: &[u8], name_of: impl Fn(u32) -> &'a [u8]) -> Option<u32> {
        if self.chunks.is_empty() {
            return None;
        }
        let ci = self.chunk_for(name);
        let at = self.find_in(ci, name, &name_of).ok()?;
        let chunk = Arc::make_mut(&mut self.chunks[ci]);
        let id = chunk.ids.remove(at);
        if chunk.ids.is_empty() {
            self.chunks.remove(ci);
        } else if at == 0 {
            chunk.first = name_of(chunk.ids[0]).into();
        }
        self.len -= 1;
        Some(id)
    }

    /// Checks the order by name: `Err` names the first misplaced pair.
    #[cfg(test)]
    pub fn check_sorted<'a>(&self, name_of: impl Fn(u32) -> &'a [u8]) -> Result<(), String> {
        let mut prev: Option<&[u8]> = None;
        for id in self.iter() {
            let n = name_of(id);
            if let Some(p) = prev {
                if p >= n {
                    return Err(format!(
                        "children {} and {} out of order",
                        String::from_utf8_lossy(p),
                        String::from_utf8_lossy(n)
                    ));
                }
            }
            prev = Some(n);
        }
        Ok(())
    }
}

/// Builds a [`KidList`] from children given in name order, a chunk at a time (a
/// loader's: no list of all the ids is held, nor copied into chunks at the end).
#[derive(Debug, Default)]
pub struct KidListBuilder {
    chunks: Vec<Arc<Chunk>>,
    cur: Vec<u32>,
    first: Box<[u8]>,
    len: usize,
    last: Option<u32>,
}

impl KidListBuilder {
    /// Appends child `id` called `name`, which sorts after every child so far.
    pub fn push(&mut self, id: u32, name: &[u8]) {
        if self.cur.is_empty() {
            self.first = name.into();
        }
        self.cur.push(id);
        self.len += 1;
        self.last = Some(id);
        if self.cur.len() == CHUNK_MAX {
            self.seal();
        }
    }

    /// The child appended last.
    pub fn last(&self) -> Option<u32> {
        self.last
    }

    fn seal(&mut self) {
        let ids = std::mem::take(&mut self.cur);
        let first = std::mem::take(&mut self.first);
        self.chunks.push(Arc::new(Chunk { first, ids }));
    }

    /// The list, or `None` for no children.
    pub fn finish(mut self) -> Option<KidList> {
        if !self.cur.is_empty() {
            self.seal();
        }
        (self.len > 0).then_some(KidList {
            chunks: self.chunks,
            len: self.len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_find_remove_against_a_sorted_vec() {
        let names: Vec<Vec<u8>> = (0..5000u32)
            .map(|i| format!("n{:05}", (i * 7919) % 5000).into_bytes())
            .collect();
        let name_of = |id: u32| names[id as usize].as_slice();
        let mut k = KidList::default();
        let mut model: Vec<u32> = Vec::new();
        for id in 0..5000u32 {
            k.insert(id, name_of(id), name_of);
            model.push(id);
        }
        model.sort_by(|a, b| name_of(*a).cmp(name_of(*b)));
        assert_eq!(k.iter().collect::<Vec<_>>(), model);
        assert!(k.chunks.iter().all(|c| c.ids.len() <= CHUNK_MAX));
        assert!(k.chunks.iter().all(|c| *c.first == *name_of(c.ids[0])));
        let frozen = k.clone();
        for id in (0..5000u32).step_by(3) {
            assert_eq!(k.remove(name_of(id), name_of), Some(id));
        }
        model.retain(|id| id % 3 != 0);
        assert_eq!(k.iter().collect::<Vec<_>>(), model);
        assert_eq!(k.len(), model.len());
        assert_eq!(frozen.len(), 5000, "a clone is unchanged");
        assert_eq!(k.find(name_of(1), name_of), Some(1));
        assert_eq!(k.find(name_of(3), name_of), None);
        k.check_sorted(name_of).unwrap();
        assert!(k.chunks.iter().all(|c| *c.first == *name_of(c.ids[0])));
        let bulk = KidList::from_sorted(&model, name_of);
        assert_eq!(bulk.iter().collect::<Vec<_>>(), model);
        let mut b = KidListBuilder::default();
        for &id in &model {
            b.push(id, name_of(id));
        }
        let built = b.finish().expect("children");
        assert_eq!(built.iter().collect::<Vec<_>>(), model);
        assert!(built.chunks.iter().all(|c| *c.first == *name_of(c.ids[0])));
        assert!(KidListBuilder::default().finish().is_none());
    }
}
