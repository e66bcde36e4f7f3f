//! One znode in one heap allocation: [`NodeBox`].
//!
//! Layout (all of it immutable once built, except the reference count):
//!
//! ```text
//! fixed  rc u32 | parent id u32 | acl Arc (8) | children Option<Arc<KidList>> (8)   24 bytes
//! var    name_len varint | data_tag varint (0 = null data, else len + 1)
//!        | name bytes | czxid, mzxid-czxid, pzxid-czxid, ctime, mtime-ctime,
//!          ephemeralOwner, version, cversion, aversion (zigzag varints) | data bytes
//! ```
//!
//! Why this shape (measured with `examples/tree_memory.rs`, 1M znodes of 100 bytes
//! under one parent, mimalloc): the previous `Arc<Znode>` with an `Arc<str>` path, a
//! `Bytes` handle and its shared header, plus an rpds entry, cost 566 bytes per znode.
//! Here a node is one allocation: the 24 fixed bytes, ~20 bytes of Stat (60 bytes as
//! plain integers; zxids and times of one node are close to each other, so deltas are
//! one byte), the last path segment only (the full path is the parent chain), and the
//! data inline. For the benchmark's znodes that is 155 bytes, allocated in mimalloc's
//! 160-byte class. Decoding a Stat costs ~20 ns; every reply builds one anyway. It is
//! one pass over the nine varints after the name, and finding the data one skip over
//! them (the data's length is in the prefix): a setData decodes its node's fields at
//! validation and at apply, so each extra pass showed (see docs/write-path.md).
//!
//! The reference count is a `u32` (no weak count): a node is referenced by the slot
//! table of each tree version that holds it, and by nothing else.

use super::kids::KidList;
use super::AclList;
use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicU32, Ordering};
use std::sync::Arc;

/// A node's persisted Stat fields, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fields {
    pub czxid: i64,
    pub mzxid: i64,
    pub pzxid: i64,
    pub ctime: i64,
    pub mtime: i64,
    pub ephemeral_owner: i64,
    pub version: i32,
    /// Stored cversion: children ever created here.
    pub cversion: i32,
    pub aversion: i32,
}

#[repr(C)]
struct Head {
    rc: AtomicU32,
    parent: u32,
    acl: AclList,
    kids: Option<Arc<KidList>>,
}

const HEAD: usize = std::mem::size_of::<Head>();
const _: () = assert!(HEAD == 24);

/// Most bytes one varint of a u64 takes.
const MAX_VARINT: usize = 10;

fn put_varint(buf: &mut [u8], at: &mut usize, mut v: u64) {
    while v >= 0x80 {
        buf[*at] = (v as u8) | 0x80;
        *at += 1;
        v >>= 7;
    }
    buf[*at] = v as u8;
    *at += 1;
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A reference-counted pointer to one immutable znode allocation (see the module header).
pub(crate) struct NodeBox(NonNull<Head>);

#[cfg(test)]
thread_local! {
    /// Nodes allocated and not yet freed by this thread (tests check for leaks with it).
    pub(crate) static LIVE_NODES: std::cell::Cell<isize> = const { std::cell::Cell::new(0) };
}

// SAFETY: the pointee is immutable once built except the atomic reference count, and
// its parts (`Arc`s of `Send + Sync` values, bytes) are `Send + Sync`.
unsafe impl Send for NodeBox {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for NodeBox {}

impl NodeBox {
    pub(crate) fn new(
        parent: u32,
        acl: AclList,
        kids: Option<Arc<KidList>>,
        name: &[u8],
        data: Option<&[u8]>,
        f: &Fields,
    ) -> NodeBox {
        let mut pre = [0u8; 2 * MAX_VARINT];
        let mut pl = 0;
        put_varint(&mut pre, &mut pl, name.len() as u64);
        put_varint(&mut pre, &mut pl, data.map_or(0, |d| d.len() as u64 + 1));
        let mut st = [0u8; 9 * MAX_VARINT];
        let mut sl = 0;
        for v in [
            zigzag(f.czxid),
            zigzag(f.mzxid.wrapping_sub(f.czxid)),
            zigzag(f.pzxid.wrapping_sub(f.czxid)),
            zigzag(f.ctime),
            zigzag(f.mtime.wrapping_sub(f.ctime)),
            zigzag(f.ephemeral_owner),
            zigzag(i64::from(f.version)),
            zigzag(i64::from(f.cversion)),
            zigzag(i64::from(f.aversion)),
        ] {
            put_varint(&mut st, &mut sl, v);
        }
        let dlen = data.map_or(0, <[u8]>::len);
        let total = HEAD + pl + name.len() + sl + dlen;
        let layout = Layout::from_size_align(total, 8).expect("node size fits a layout");
        // SAFETY: the layout has a non-zero size (HEAD > 0).
        let p = unsafe { alloc(layout) };
        let Some(p) = NonNull::new(p) else {
            handle_alloc_error(layout)
        };
        // SAFETY: `p` is a fresh allocation of `total` bytes aligned to 8, large enough
        // for the head and the variable part written after it, each exactly once.
        unsafe {
            p.cast::<Head>().as_ptr().write(Head {
                rc: AtomicU32::new(1),
                parent,
                acl,
                kids,
            });
            let mut at = p.as_ptr().add(HEAD);
            for part in [&pre[..pl], name, &st[..sl], data.unwrap_or(&[])] {
                std::ptr::copy_nonoverlapping(part.as_ptr(), at, part.len());
                at = at.add(part.len());
            }
        }
        #[cfg(test)]
        LIVE_NODES.with(|c| c.set(c.get() + 1));
        NodeBox(p.cast())
    }

    fn head(&self) -> &Head {
        // SAFETY: the pointer stays valid while this reference holds a count.
        unsafe { self.0.as_ref() }
    }

    /// Asks the CPU to start loading the node's first two cache lines (its head and
    /// the start of its variable part) without waiting for them.
    pub(crate) fn prefetch(&self) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let p = self.0.as_ptr().cast::<i8>();
            // SAFETY: a prefetch is a hint that never faults; both addresses are inside
            // or just past this node's allocation (at least `HEAD` bytes).
            unsafe {
                _mm_prefetch(p, _MM_HINT_T0);
                _mm_prefetch(p.wrapping_add(64), _MM_HINT_T0);
            }
        }
    }

    /// The first byte after the head: the variable part starts here.
    fn base(&self) -> *const u8 {
        // SAFETY: the allocation is at least `HEAD` bytes long (see `new`).
        unsafe { self.0.as_ptr().cast::<u8>().add(HEAD) }
    }

    /// Decodes the varint at `base + *at` and moves `at` past it.
    ///
    /// # Safety
    /// `base + *at` must start one of the varints `new` wrote into this allocation.
    #[inline]
    unsafe fn read_varint(base: *const u8, at: &mut usize) -> u64 {
        let mut v = 0u64;
        let mut shift = 0;
        loop {
            // SAFETY: the caller's precondition: every byte up to the varint's last
            // (the first below 0x80) is inside the allocation.
            let byte = unsafe { *base.add(*at) };
            *at += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte < 0x80 {
                return v;
            }
            shift += 7;
        }
    }

    /// The layout of the variable part: (where the name starts, its length, the data
    /// tag: 0 for null data, else its length + 1).
    #[inline]
    fn lengths(&self) -> (usize, usize, usize) {
        let base = self.base();
        let mut at = 0usize;
        // SAFETY: the name and data length varints are the first two `new` wrote.
        let (name_len, tag) = unsafe {
            (
                Self::read_varint(base, &mut at) as usize,
                Self::read_varint(base, &mut at) as usize,
            )
        };
        (at, name_len, tag)
    }

    /// Where the data starts: after the nine stat varints that follow the name.
    #[inline]
    fn data_at(&self, stat_at: usize) -> usize {
        let base = self.base();
        let mut at = stat_at;
        for _ in 0..9 {
            // SAFETY: the nine stat varints follow the name, inside the allocation;
            // each is read only up to its last byte.
            while unsafe { *base.add(at) } >= 0x80 {
                at += 1;
            }
            at += 1;
        }
        at
    }

    /// The variable part, up to and including the data.
    fn var(&self) -> &[u8] {
        let (name_at, name_len, tag) = self.lengths();
        let end = self.data_at(name_at + name_len) + tag.saturating_sub(1);
        // SAFETY: `end` is exactly the variable length written by `new`.
        unsafe { std::slice::from_raw_parts(self.base(), end) }
    }

    pub(crate) fn parent(&self) -> u32 {
        self.head().parent
    }

    pub(crate) fn acl(&self) -> &AclList {
        &self.head().acl
    }

    pub(crate) fn kids(&self) -> Option<&Arc<KidList>> {
        self.head().kids.as_ref()
    }

    pub(crate) fn num_kids(&self) -> usize {
        self.kids().map_or(0, |k| k.len())
    }

    pub(crate) fn name(&self) -> &[u8] {
        let (name_at, name_len, _) = self.lengths();
        // SAFETY: the name's bytes follow the two length varints.
        unsafe { std::slice::from_raw_parts(self.base().add(name_at), name_len) }
    }

    pub(crate) fn data(&self) -> Option<&[u8]> {
        let (name_at, name_len, tag) = self.lengths();
        if tag == 0 {
            return None;
        }
        let at = self.data_at(name_at + name_len);
        // SAFETY: the data's `tag - 1` bytes end the variable part.
        Some(unsafe { std::slice::from_raw_parts(self.base().add(at), tag - 1) })
    }

    /// The stored Stat fields, decoded in one pass over their varints (read on every
    /// validation and apply, and by reads: it was three passes over the variable part).
    pub(crate) fn fields(&self) -> Fields {
        let (name_at, name_len, _) = self.lengths();
        let base = self.base();
        let mut at = name_at + name_len;
        // SAFETY: the nine stat varints follow the name; `next` reads each once, in
        // order.
        let mut next = || unzigzag(unsafe { Self::read_varint(base, &mut at) });
        let czxid = next();
        let mzxid = czxid.wrapping_add(next());
        let pzxid = czxid.wrapping_add(next());
        let ctime = next();
        let mtime = ctime.wrapping_add(next());
        let ephemeral_owner = next();
        let version = next() as i32;
        let cversion = next() as i32;
        let aversion = next() as i32;
        Fields {
            czxid,
            mzxid,
            pzxid,
            ctime,
            mtime,
            ephemeral_owner,
            version,
            cversion,
            aversion,
        }
    }

    /// Bytes this allocation takes (before the allocator's rounding).
    pub(crate) fn alloc_len(&self) -> usize {
        HEAD + self.var().len()
    }

    /// The children slot, if this is the only reference (a node being rebuilt by the
    /// one writer): lets the writer move the list out instead of copying it.
    pub(crate) fn kids_mut(&mut self) -> Option<&mut Option<Arc<KidList>>> {
        if self.head().rc.load(Ordering::Acquire) == 1 {
            // SAFETY: a count of one means no other reference exists, and `&mut self`
            // excludes this one being used meanwhile.
            Some(unsafe { &mut self.0.as_mut().kids })
        } else {
            None
        }
    }
}

impl Clone for NodeBox {
    fn clone(&self) -> NodeBox {
        let old = self.head().rc.fetch_add(1, Ordering::Relaxed);
        // A count near overflow is a leak of clones; stop before it wraps.
        assert!(old < u32::MAX / 2, "node reference count overflow");
        NodeBox(self.0)
    }
}

impl Drop for NodeBox {
    fn drop(&mut self) {
        if self.head().rc.fetch_sub(1, Ordering::Release) != 1 {
            return;
        }
        fence(Ordering::Acquire);
        let total = self.alloc_len();
        let layout = Layout::from_size_align(total, 8).expect("layout of a built node");
        // SAFETY: the count reached zero, so this is the last reference; the head was
        // written by `new` and is dropped once, then the allocation freed with the
        // layout it was allocated with.
        unsafe {
            std::ptr::drop_in_place(self.0.as_ptr());
            dealloc(self.0.as_ptr().cast(), layout);
        }
        #[cfg(test)]
        LIVE_NODES.with(|c| c.set(c.get() - 1));
    }
}

impl std::fmt::Debug for NodeBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("name", &String::from_utf8_lossy(self.name()))
            .field("parent", &self.parent())
            .field("fields", &self.fields())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_extremes() {
        let acl: AclList = Arc::new(Vec::new());
        for (name, data) in [
            (&b""[..], None),
            (&b"k0000000001"[..], Some(&[7u8; 100][..])),
            (&b"x"[..], Some(&[][..])),
            (&[b'n'; 300][..], Some(&[1u8; 70_000][..])),
        ] {
            for f in [
                Fields::default(),
                Fields {
                    czxid: i64::MAX,
                    mzxid: i64::MIN,
                    pzxid: -1,
                    ctime: 1_700_000_000_000,
                    mtime: i64::MIN,
                    ephemeral_owner: 0x0100_0000_0000_0001,
                    version: i32::MIN,
                    cversion: i32::MAX,
                    aversion: -1,
                },
            ] {
                let n = NodeBox::new(9, acl.clone(), None, name, data, &f);
                assert_eq!(n.name(), name);
                assert_eq!(n.data(), data);
                assert_eq!(n.fields(), f);
                assert_eq!(n.parent(), 9);
                let c = n.clone();
                drop(n);
                assert_eq!(c.fields(), f);
            }
        }
    }

    #[test]
    fn benchmark_znode_fits_160_bytes() {
        let f = Fields {
            czxid: 0x1_0000_1234,
            mzxid: 0x1_0000_1234,
            pzxid: 0x1_0000_1234,
            ctime: 1_764_000_000_000,
            mtime: 1_764_000_000_000,
            ..Fields::default()
        };
        let n = NodeBox::new(
            1,
            Arc::new(Vec::new()),
            None,
            b"k0000999999",
            Some(&[0u8; 100]),
            &f,
        );
        assert!(n.alloc_len() <= 160, "{}", n.alloc_len());
    }
}
