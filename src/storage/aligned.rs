//! Block-aligned byte buffers for O_DIRECT I/O.
//!
//! O_DIRECT needs the memory address, the file offset and the length aligned to the
//! device's direct-I/O alignment; a `Vec<u8>` guarantees none of that, so every buffer the
//! log hands to the kernel is an [`AlignedBuf`], aligned by construction.

use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut};

/// The alignment every buffer gets: 4 KiB covers the logical block size of every disk we
/// run on (statx reports 512 or 4096); the log checks the device's need against it at open.
pub const BUF_ALIGN: usize = 4096;

/// A zero-initialised heap buffer whose address and capacity are multiples of
/// [`BUF_ALIGN`]. `len` is the part in use and may be anything up to the capacity.
pub struct AlignedBuf {
    ptr: *mut u8,
    cap: usize,
    len: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively (like Vec<u8>), so moving it to
// another thread or sharing `&AlignedBuf` is as safe as for a Vec.
unsafe impl Send for AlignedBuf {}
// SAFETY: see above; `&AlignedBuf` only gives read access.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of at least `cap` bytes (rounded up to [`BUF_ALIGN`]), length 0.
    ///
    /// # Panics
    /// If `cap` is 0 or the allocation fails.
    pub fn with_capacity(cap: usize) -> AlignedBuf {
        assert!(cap > 0, "AlignedBuf of capacity 0");
        let cap = round_up(cap, BUF_ALIGN);
        let layout = Layout::from_size_align(cap, BUF_ALIGN).expect("aligned layout");
        // SAFETY: the layout has a non-zero size (asserted above).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, cap, len: 0 }
    }

    /// A buffer of `len` zeros.
    pub fn zeroed(len: usize) -> AlignedBuf {
        let mut b = AlignedBuf::with_capacity(len);
        b.set_len(len);
        b
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Sets the length in use; bytes past the old length keep whatever they held.
    ///
    /// # Panics
    /// If `len` exceeds the capacity.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "len {len} > capacity {}", self.cap);
        self.len = len;
    }

    /// Sets the length to 0. The old bytes stay: everything below the length is written
    /// again by [`AlignedBuf::extend_from_slice`] and [`AlignedBuf::pad_to`] (which
    /// writes its zeros) before it is used, so a recycled buffer costs nothing here.
    /// (Zeroing the whole capacity was a 256 KiB memset per log write, ~3% of a core's
    /// CPU under a 16x16 write load.)
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends bytes.
    ///
    /// # Panics
    /// If they do not fit in the capacity.
    pub fn extend_from_slice(&mut self, b: &[u8]) {
        let end = self.len + b.len();
        assert!(end <= self.cap, "AlignedBuf overflow: {end} > {}", self.cap);
        // SAFETY: the range [len, end) is inside the allocation and does not overlap `b`,
        // which is borrowed immutably while self is borrowed mutably.
        unsafe { std::ptr::copy_nonoverlapping(b.as_ptr(), self.ptr.add(self.len), b.len()) };
        self.len = end;
    }

    /// Pads the length with zeros up to the next multiple of `align`.
    pub fn pad_to(&mut self, align: usize) {
        let end = round_up(self.len, align);
        assert!(
            end <= self.cap,
            "AlignedBuf pad overflow: {end} > {}",
            self.cap
        );
        // SAFETY: [len, end) is inside the allocation.
        unsafe { std::ptr::write_bytes(self.ptr.add(self.len), 0, end - self.len) };
        self.len = end;
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid and initialised (zeroed at allocation) for cap >= len bytes.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.cap, BUF_ALIGN).expect("aligned layout");
        // SAFETY: ptr was allocated with exactly this layout and is freed once.
        unsafe { alloc::dealloc(self.ptr, layout) };
    }
}

/// Rounds `n` up to a multiple of `align` (a power of two).
pub const fn round_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_padded_with_zeros() {
        let mut b = AlignedBuf::with_capacity(5000);
        assert_eq!(b.capacity(), 8192);
        assert_eq!(b.as_ptr() as usize % BUF_ALIGN, 0);
        b.extend_from_slice(&[7; 10]);
        b.pad_to(4096);
        assert_eq!(b.len(), 4096);
        assert!(b[10..].iter().all(|&x| x == 0));
        b.clear();
        assert_eq!(b.len(), 0);
        // A recycled buffer still pads with zeros over what it held before.
        b.extend_from_slice(&[9; 8192]);
        b.clear();
        b.extend_from_slice(&[7; 10]);
        b.pad_to(4096);
        assert_eq!(b.len(), 4096);
        assert!(b[10..].iter().all(|&x| x == 0));
    }
}
