//! The heap interface: what an allocator implementation gives the kernel.
//!
//! The composition root wraps the selected implementation into the image's one
//! `#[global_allocator]`, hands it the heap region once at boot ([`Heap::init`]) and reports its
//! [`HeapStats`] to apps and in out-of-memory panics.
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]

use core::alloc::GlobalAlloc;
use core::fmt;

/// Heap statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes the heap manages.
    pub total: usize,
    /// Bytes in live allocations (for `bump`: bytes handed out and not reclaimed).
    pub used: usize,
    /// Highest `used` seen.
    pub peak: usize,
    /// Successful allocations so far.
    pub allocations: u64,
    /// Largest block that could be allocated now, where the implementation can tell.
    pub largest_free: Option<usize>,
}

impl fmt::Display for HeapStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total {} B, used {} B, peak {} B, {} allocations",
            self.total, self.used, self.peak, self.allocations
        )?;
        if let Some(l) = self.largest_free {
            write!(f, ", largest free block {l} B")?;
        }
        Ok(())
    }
}

/// A heap allocator.
///
/// Contract: before [`Heap::init`], every allocation fails (returns null). Allocations MUST
/// honour size and alignment, MUST NOT overlap live blocks, and MUST stay inside the region given
/// to `init`. A failed allocation returns null (the kernel turns that into a clear panic).
pub trait Heap: GlobalAlloc + Sync {
    /// Gives the heap the memory `[start, start + size)`.
    ///
    /// # Safety
    /// Called at most once. The region must be RAM, mapped read-write, used by nothing else, and
    /// stay so for as long as the heap is used.
    unsafe fn init(&self, start: usize, size: usize);
    /// Current statistics.
    fn stats(&self) -> HeapStats;
}

/// The `none` allocator: a heap with no memory that refuses every allocation. Profiles without
/// an allocator use it, so the kernel has one code path; it is never the `#[global_allocator]`.
#[derive(Debug, Default)]
pub struct NoHeap;

impl NoHeap {
    /// The empty heap.
    pub const fn new() -> Self {
        NoHeap
    }
}

// SAFETY: never hands out memory, so it cannot break the GlobalAlloc contract.
unsafe impl GlobalAlloc for NoHeap {
    unsafe fn alloc(&self, _layout: core::alloc::Layout) -> *mut u8 {
        core::ptr::null_mut()
    }
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: core::alloc::Layout) {}
}

impl Heap for NoHeap {
    unsafe fn init(&self, _start: usize, _size: usize) {}
    fn stats(&self) -> HeapStats {
        HeapStats::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_heap_refuses_everything() {
        let h = NoHeap::new();
        // SAFETY: init with no memory, then a valid layout; null is the expected answer.
        unsafe {
            h.init(0x1000, 0x1000);
            assert!(h.alloc(core::alloc::Layout::new::<u64>()).is_null());
        }
        assert_eq!(h.stats(), HeapStats::default());
    }
}
