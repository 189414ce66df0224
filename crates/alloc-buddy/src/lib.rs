//! The buddy allocator (profile slot `allocator = "buddy"`), on the `buddy_system_allocator`
//! crate: blocks are powers of two, split and merged with their buddies. Allocation and free
//! are O(log n) and predictable; the price is internal fragmentation (a 65 KiB request takes a
//! 128 KiB block), which the allocator benchmark's footprint figure shows.
//!
//! ```
//! use core::alloc::{GlobalAlloc, Layout};
//! use heap::Heap;
//! let buddy: alloc_buddy::Buddy = alloc_buddy::Buddy::new();
//! let buf = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
//! // SAFETY: a leaked buffer is ours forever.
//! unsafe { buddy.add_region(buf.as_mut_ptr() as usize, buf.len()) };
//! let p = unsafe { buddy.alloc(Layout::from_size_align(100, 64).unwrap()) };
//! assert!(!p.is_null() && p as usize % 64 == 0);
//! ```
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use heap::Heap;
use spin::relax::{RelaxStrategy, Spin};

/// Block orders: the largest block is 2^(ORDER-1) bytes = 2 GiB; larger regions are split.
const ORDER: usize = 32;

/// The buddy allocator: the crate's heap behind a spin lock that spins with `R` (the kernel's
/// back-off for virtual CPUs: `platform::relax`), in place of the crate's own `LockedHeap`,
/// whose lock spins without it.
pub struct Buddy<R: RelaxStrategy = Spin>(
    spin::mutex::SpinMutex<buddy_system_allocator::Heap<ORDER>, R>,
);

impl<R: RelaxStrategy> core::fmt::Debug for Buddy<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Buddy").finish_non_exhaustive()
    }
}

impl<R: RelaxStrategy> Buddy<R> {
    /// An allocator with no memory yet.
    pub const fn new() -> Self {
        Buddy(spin::mutex::SpinMutex::new(
            buddy_system_allocator::Heap::new(),
        ))
    }
}

impl<R: RelaxStrategy> Default for Buddy<R> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: forwarded to `buddy_system_allocator`'s heap under the lock, which upholds the
// GlobalAlloc contract over the regions it was given (what its `LockedHeap` does).
unsafe impl<R: RelaxStrategy> GlobalAlloc for Buddy<R> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.0
            .lock()
            .alloc(layout)
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(ptr) = NonNull::new(ptr) {
            // SAFETY: forwarded; `ptr` came from this heap with this layout.
            unsafe { self.0.lock().dealloc(ptr, layout) };
        }
    }
}

impl<R: RelaxStrategy> Heap for Buddy<R> {
    unsafe fn add_region(&self, start: usize, size: usize) -> usize {
        let mut heap = self.0.lock();
        let before = heap.stats_total_bytes();
        // SAFETY: the caller gives a region of RAM that nothing else uses, disjoint from every
        // region added before (the contract of `Heap::add_region`).
        unsafe { heap.add_to_heap(start, start.saturating_add(size)) };
        heap.stats_total_bytes() - before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heap::testkit::{Reuse, check_heap};

    #[test]
    fn model_checks() {
        check_heap(<Buddy>::new, Reuse::Full);
    }

    #[test]
    fn nothing_before_a_region() {
        // SAFETY: a valid layout; null is the expected answer.
        let p = unsafe { <Buddy>::new().alloc(Layout::from_size_align(8, 8).unwrap()) };
        assert!(p.is_null());
    }
}
