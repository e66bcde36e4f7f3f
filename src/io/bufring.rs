//! The provided-buffer ring: a fixed pool of equal receive buffers that the kernel
//! picks from when a multishot receive has data, and that we hand back after use.
//!
//! Memory: `count` entries of 16 bytes (page aligned, shared with the kernel) and
//! `count * size` bytes of buffers, both allocated once at start-up. A buffer is owned
//! by the kernel from the moment its entry is published until a completion names its
//! id; then we own it until `recycle` publishes it again.

use std::alloc::{self, Layout};
use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::IoUring;

/// Alignment the kernel requires for the shared entry array.
const PAGE_SIZE: usize = 4096;

pub(crate) struct BufRing {
    /// The entry array shared with the kernel (`entries` long, page aligned).
    ring: *mut BufRingEntry,
    ring_layout: Layout,
    /// The buffers themselves, `count * size` bytes, buffer `bid` at `bid * size`.
    bufs: *mut u8,
    bufs_layout: Layout,
    count: u16,
    size: u32,
    /// Our copy of the tail: published to the kernel by `publish`.
    tail: u16,
    bgid: u16,
    /// Set when the kernel may still hold buffers at drop (see `Reactor`'s drop):
    /// the memory is leaked rather than freed under the kernel.
    pub(crate) leak: bool,
}

impl BufRing {
    /// Allocates `count` buffers of `size` bytes and registers them as group `bgid`.
    ///
    /// # Panics
    /// If `count` is not a power of two in 1..=32768 or `size` is zero (checked by
    /// `Config::validate` before we get here).
    pub(crate) fn new(ring: &IoUring, bgid: u16, count: u16, size: u32) -> io::Result<BufRing> {
        assert!(count.is_power_of_two() && count <= 32768, "count {count}");
        assert!(size > 0);
        let ring_layout = Layout::from_size_align(
            usize::from(count) * std::mem::size_of::<BufRingEntry>(),
            PAGE_SIZE,
        )
        .expect("buffer ring layout");
        let bufs_layout = Layout::from_size_align(usize::from(count) * size as usize, 64)
            .expect("receive buffer layout");
        // SAFETY: both layouts have a non-zero size (count >= 1, size >= 1).
        let (entries, bufs) =
            unsafe { (alloc::alloc_zeroed(ring_layout), alloc::alloc(bufs_layout)) };
        if entries.is_null() || bufs.is_null() {
            alloc::handle_alloc_error(if entries.is_null() {
                ring_layout
            } else {
                bufs_layout
            });
        }
        let mut this = BufRing {
            ring: entries.cast(),
            ring_layout,
            bufs,
            bufs_layout,
            count,
            size,
            tail: 0,
            bgid,
            leak: false,
        };
        for bid in 0..count {
            this.recycle(bid);
        }
        this.publish();
        // SAFETY: the entry array is page aligned, `count` entries long and lives until
        // drop, which happens after the ring (`Reactor` declares `ring` first) or leaks.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(this.ring as u64, count, bgid, 0)?;
        }
        Ok(this)
    }

    pub(crate) fn bgid(&self) -> u16 {
        self.bgid
    }

    /// The first `len` bytes of buffer `bid`, which a completion just handed us.
    ///
    /// # Panics
    /// If `bid` or `len` is out of range: the kernel never reports such values, so it
    /// would be a bug in our bookkeeping.
    pub(crate) fn get(&self, bid: u16, len: usize) -> &[u8] {
        assert!(bid < self.count, "buffer id {bid} of {}", self.count);
        assert!(
            len <= self.size as usize,
            "length {len} > buffer size {}",
            self.size
        );
        // SAFETY: in bounds (asserted), and the kernel gave buffer `bid` back to us with
        // this completion: it writes to it again only after `recycle` publishes it.
        unsafe {
            std::slice::from_raw_parts(self.bufs.add(usize::from(bid) * self.size as usize), len)
        }
    }

    /// Returns buffer `bid` to the kernel (visible after the next `publish`).
    pub(crate) fn recycle(&mut self, bid: u16) {
        assert!(bid < self.count);
        let slot = usize::from(self.tail & (self.count - 1));
        // SAFETY: `slot < count`; the kernel only reads entries between its head and
        // the published tail, and this slot is at or past the published tail.
        let entry = unsafe { &mut *self.ring.add(slot) };
        // SAFETY: in bounds of the buffer allocation.
        let addr = unsafe { self.bufs.add(usize::from(bid) * self.size as usize) };
        entry.set_addr(addr as u64);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every recycled buffer visible to the kernel.
    pub(crate) fn publish(&mut self) {
        // SAFETY: `ring` points at the first entry of the live, initialised array; the
        // tail field is a u16 the kernel reads with acquire ordering.
        let tail = unsafe { &*(BufRingEntry::tail(self.ring) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        if self.leak {
            return;
        }
        // SAFETY: both were allocated in `new` with these layouts, and the ring that could
        // write to them is gone (or `leak` would be set).
        unsafe {
            alloc::dealloc(self.ring.cast(), self.ring_layout);
            alloc::dealloc(self.bufs, self.bufs_layout);
        }
    }
}
