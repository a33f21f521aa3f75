//! The memory that holds one part while it fills.
//!
//! Its bytes start on a [`PART_ALIGN`] boundary. A runtime that writes to a local disk can then
//! hand a full part to direct I/O (`O_DIRECT`) as it is: the device reads it by DMA, and the
//! kernel's copy into the page cache — which cost a 1 GiB push more CPU than hashing it — never
//! happens. Other runtimes see an ordinary [`Bytes`]. Alignment costs at most
//! `PART_ALIGN - 1` bytes per part and no unsafe code: the allocation is over-sized and the
//! part begins at the first aligned byte inside it.

use bytes::Bytes;

/// Boundary every part buffer starts on: the page size, which is also the largest logical
/// block size direct I/O asks of a buffer on common disks and filesystems.
pub const PART_ALIGN: usize = 4096;

/// A part being filled: `storage[start..]` are its bytes, `storage[..start]` the padding that
/// aligns them.
#[derive(Debug, Default)]
pub(crate) struct PartBuffer {
    storage: Vec<u8>,
    start: usize,
}

impl PartBuffer {
    pub(crate) fn new() -> PartBuffer {
        PartBuffer::default()
    }

    pub(crate) fn len(&self) -> usize {
        self.storage.len() - self.start
    }

    /// Bytes the part can hold without moving.
    pub(crate) fn capacity(&self) -> usize {
        self.storage.capacity() - self.start
    }

    /// Makes room for `total` bytes in all, moving the bytes held so far into an aligned
    /// allocation of that size if the current one is smaller.
    pub(crate) fn reserve_total(&mut self, total: usize) {
        if total <= self.capacity() {
            return;
        }
        let mut storage: Vec<u8> = Vec::with_capacity(total.saturating_add(PART_ALIGN - 1));
        // `align_offset` may in principle give up (usize::MAX); the part is then unaligned,
        // which is correct, only slower to write.
        let start = match storage.as_ptr().align_offset(PART_ALIGN) {
            offset if offset < PART_ALIGN => offset,
            _ => 0,
        };
        storage.resize(start, 0);
        storage.extend_from_slice(self.as_slice());
        *self = PartBuffer { storage, start };
    }

    /// Appends bytes; callers reserve first, so that the part stays where it is.
    pub(crate) fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.storage.extend_from_slice(bytes);
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.storage[self.start..]
    }

    /// The part's bytes, without a copy, leaving this buffer empty.
    pub(crate) fn take(&mut self) -> Bytes {
        let PartBuffer { storage, start } = std::mem::take(self);
        Bytes::from(storage).slice(start..)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_part_starts_aligned_and_keeps_its_bytes_when_it_grows() {
        let mut part = PartBuffer::new();
        part.reserve_total(10);
        part.extend_from_slice(b"0123456789");
        part.reserve_total(3 * PART_ALIGN + 7);
        assert!(part.capacity() >= 3 * PART_ALIGN + 7);
        part.extend_from_slice(&[b'x'; 100]);
        assert_eq!(part.len(), 110);
        assert_eq!(&part.as_slice()[..10], b"0123456789");
        let bytes = part.take();
        assert_eq!(bytes.len(), 110);
        assert_eq!(bytes.as_ptr() as usize % PART_ALIGN, 0);
        assert_eq!(&bytes[..10], b"0123456789");
        assert_eq!(part.len(), 0);
    }

    #[test]
    fn a_full_reserved_part_is_handed_over_without_a_copy() {
        let size = 5 * 1024 * 1024;
        let mut part = PartBuffer::new();
        part.reserve_total(size);
        part.extend_from_slice(&vec![7u8; size]);
        let before = part.as_slice().as_ptr();
        let bytes = part.take();
        assert_eq!(bytes.as_ptr(), before);
        assert_eq!(bytes.as_ptr() as usize % PART_ALIGN, 0);
    }
}
