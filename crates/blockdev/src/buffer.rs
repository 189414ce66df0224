//! [`Buffer`]: owned, page-aligned bytes for a request.

use alloc::vec::Vec;
use core::alloc::Layout;
use zerocopy::{FromBytes, FromZeros, Immutable, IntoBytes, KnownLayout};

/// Bytes of a page, the alignment of every [`Buffer`].
pub const PAGE_SIZE: usize = 4096;

/// One page of a buffer: the alignment comes from the type, so no unsafe allocation is needed.
#[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C, align(4096))]
struct Page([u8; PAGE_SIZE]);

/// The data of a request: `len` bytes at the start of whole, page-aligned pages, so that a driver
/// can hand its pages to a device (virtio descriptors, Xen grant references) as they are.
/// Created zeroed; the bytes past `len` in the last page are never exposed.
#[derive(Clone)]
pub struct Buffer {
    pages: Vec<Page>,
    len: usize,
}

impl Buffer {
    /// A zeroed buffer of `len` bytes. Allocated zeroed in place: `vec![Page(..); n]` would
    /// build a page-aligned page on the stack first (a 20 KiB frame for every request).
    pub fn new(len: usize) -> Self {
        // Zeroed straight on the heap: `vec![page; n]` builds its pages on the stack first
        // (frames of 20 KB seen in the callers, on threads with 32-64 KB stacks).
        let pages = Page::new_vec_zeroed(len.div_ceil(PAGE_SIZE))
            .unwrap_or_else(|_| alloc::alloc::handle_alloc_error(Layout::new::<Page>()));
        Buffer { pages, len }
    }

    /// A buffer holding a copy of `data`.
    pub fn from_slice(data: &[u8]) -> Self {
        let mut buffer = Buffer::new(data.len());
        buffer.as_mut_slice().copy_from_slice(data);
        buffer
    }

    /// Its length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty (a flush's buffer).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Its bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.pages.as_bytes()[..self.len]
    }

    /// Its bytes, to fill.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        let len = self.len;
        &mut self.pages.as_mut_bytes()[..len]
    }

    /// Its pages, each `PAGE_SIZE` bytes and page-aligned (the last one holding the buffer's
    /// end, then zeros): what a driver maps or grants to its device.
    pub fn pages_mut(&mut self) -> impl Iterator<Item = &mut [u8; PAGE_SIZE]> {
        self.pages.iter_mut().map(|p| &mut p.0)
    }
}

impl core::fmt::Debug for Buffer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Buffer({} bytes)", self.len)
    }
}

impl PartialEq for Buffer {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Buffer {}
