//! The allocator interfaces: the heap an implementation gives the kernel, the statistics the
//! kernel keeps around it, and page-granular memory (frames) carved from it.
//!
//! - [`Heap`] is what an allocator crate implements (`alloc-bump`, `alloc-buddy`,
//!   `alloc-talc`). The composition root wraps the selected one into the image's one
//!   `#[global_allocator]`, gives it every free RAM region at boot ([`Heap::add_region`]), and
//!   turns a failed allocation into a clear panic.
//! - [`Counted`] keeps the same [`HeapStats`] around every implementation (bytes in use, peak,
//!   allocation and free counts, footprint), so the figures compare across allocators.
//! - [`CpuCaches`] keeps, per CPU, bounded stacks of free small blocks in front of a
//!   [`Counted`] heap, so several CPUs mostly allocate without taking the heap's lock.
//! - [`FrameAllocator`] hands out page-granular, page-aligned memory (thread stacks, DMA
//!   buffers, Xen grant pages, page tables); [`Counted`] implements it over any heap.
//!
//! # Cargo features
//! - `testkit`: [`testkit`], the randomized model-based checks every implementation's host tests
//!   run (alignment, no overlap, `realloc` keeps content, freed memory is reusable). Host only.
#![cfg_attr(not(test), no_std)]

mod counters;
mod cpucache;
mod frames;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use counters::Counted;
pub use cpucache::{CLASS_ALIGN, CLASSES, CpuCaches, DEPTH, MAX_CACHED, class_of};
pub use frames::{FRAME_SIZE, FrameAllocator, Frames};

use core::alloc::GlobalAlloc;
use core::fmt;

/// Heap statistics, the same for every implementation (kept by [`Counted`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Bytes the heap was given.
    pub total: usize,
    /// Bytes in live allocations, as requested (for `bump`, freed bytes count as free here even
    /// though only the last block is reclaimed: see `footprint`).
    pub used: usize,
    /// Highest `used` seen.
    pub peak: usize,
    /// Successful allocations so far (a `realloc` counts as one allocation and one free).
    pub allocations: u64,
    /// Frees so far.
    pub frees: u64,
    /// Bytes from the start of the lowest region to the end of the highest block ever handed
    /// out: how much of the heap the workload touched. `footprint / peak` is the fragmentation
    /// figure the allocator benchmark reports (1.0 is perfect packing).
    pub footprint: usize,
    /// Largest block that could be allocated now, where the implementation can tell.
    pub largest_free: Option<usize>,
}

impl fmt::Display for HeapStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "total {} B, used {} B, peak {} B, {} allocations, {} frees, footprint {} B",
            self.total, self.used, self.peak, self.allocations, self.frees, self.footprint
        )?;
        if let Some(l) = self.largest_free {
            write!(f, ", largest free block {l} B")?;
        }
        Ok(())
    }
}

/// A heap allocator.
///
/// Contract for implementations: before the first [`Heap::add_region`], every allocation fails
/// (returns null). Allocations MUST honour size and alignment, MUST NOT overlap live blocks, and
/// MUST lie inside regions given to `add_region`. A failed allocation returns null (the kernel
/// turns that into a clear panic). `realloc` keeps the first `min(old, new)` bytes. Freeing a
/// block makes its memory available again, except where the implementation documents otherwise
/// (`bump`).
pub trait Heap: GlobalAlloc + Sync {
    /// Gives the heap the memory `[start, start + size)`, and returns how many bytes of it the
    /// heap took (an implementation may take only part of it, or nothing: `bump` uses one
    /// region). Regions never overlap; the kernel adds them before the first allocation.
    ///
    /// # Safety
    /// The region must be RAM, mapped read-write, used by nothing else, and stay so for as long
    /// as the heap is used.
    unsafe fn add_region(&self, start: usize, size: usize) -> usize;

    /// The largest block that could be allocated now, where the implementation can tell cheaply.
    fn largest_free(&self) -> Option<usize> {
        None
    }
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
    unsafe fn add_region(&self, _start: usize, _size: usize) -> usize {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_heap_refuses_everything() {
        let h = NoHeap::new();
        // SAFETY: no memory is taken; then a valid layout, and null is the expected answer.
        unsafe {
            assert_eq!(h.add_region(0x1000, 0x1000), 0);
            assert!(h.alloc(core::alloc::Layout::new::<u64>()).is_null());
        }
        assert_eq!(h.largest_free(), None);
    }

    #[test]
    fn stats_display_names_every_figure() {
        let s = HeapStats {
            total: 4096,
            used: 100,
            peak: 200,
            allocations: 3,
            frees: 2,
            footprint: 256,
            largest_free: Some(3000),
        };
        assert_eq!(
            s.to_string(),
            "total 4096 B, used 100 B, peak 200 B, 3 allocations, 2 frees, footprint 256 B, \
             largest free block 3000 B"
        );
    }
}
