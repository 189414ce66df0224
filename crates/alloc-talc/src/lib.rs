//! The talc allocator (profile slot `allocator = "talc"`), on the `talc` crate: a dlmalloc-style
//! allocator with size-class bins and boundary tags. Fast in the common case, packs blocks
//! tightly (little fragmentation), and grows or shrinks blocks in place on `realloc`.
//!
//! ```
//! use core::alloc::{GlobalAlloc, Layout};
//! use heap::Heap;
//! let talc: alloc_talc::Talc = alloc_talc::Talc::new();
//! let buf = Box::leak(vec![0u8; 64 * 1024].into_boxed_slice());
//! // SAFETY: a leaked buffer is ours forever.
//! unsafe { talc.add_region(buf.as_mut_ptr() as usize, buf.len()) };
//! let p = unsafe { talc.alloc(Layout::from_size_align(100, 64).unwrap()) };
//! assert!(!p.is_null() && p as usize % 64 == 0);
//! ```
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]

use core::alloc::{GlobalAlloc, Layout};
use heap::Heap;
use spin::mutex::SpinMutex;
use spin::relax::{RelaxStrategy, Spin};
use talc::source::Manual;

/// The talc allocator; heaps are claimed by hand (`Manual`): it never asks for more memory.
/// Its lock spins with `R` (the kernel's back-off for virtual CPUs: `platform::relax`).
pub struct Talc<R: RelaxStrategy = Spin>(talc::TalcLock<SpinMutex<(), R>, Manual>);

impl<R: RelaxStrategy> core::fmt::Debug for Talc<R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Talc").finish_non_exhaustive()
    }
}

impl<R: RelaxStrategy> Talc<R> {
    /// An allocator with no memory yet.
    pub const fn new() -> Self {
        Talc(talc::TalcLock::new(Manual))
    }
}

impl<R: RelaxStrategy> Default for Talc<R> {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: forwarded to talc's locked allocator, which upholds the GlobalAlloc contract over
// the heaps it claimed.
unsafe impl<R: RelaxStrategy> GlobalAlloc for Talc<R> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        unsafe { self.0.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; `ptr` came from this heap with this layout.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded; talc grows or shrinks in place where it can.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

impl<R: RelaxStrategy> Heap for Talc<R> {
    unsafe fn add_region(&self, start: usize, size: usize) -> usize {
        // SAFETY: the caller gives RAM that nothing else uses for as long as the heap is used;
        // the `Manual` source allows claiming by hand.
        let end = unsafe { self.0.lock().claim(start as *mut u8, size) };
        // Talc keeps a few bytes at the base for its own bookkeeping.
        end.map_or(0, |_| size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heap::testkit::{Reuse, check_heap};

    #[test]
    fn model_checks() {
        check_heap(<Talc>::new, Reuse::Full);
    }

    #[test]
    fn nothing_before_a_region() {
        // SAFETY: a valid layout; null is the expected answer.
        let p = unsafe { <Talc>::new().alloc(Layout::from_size_align(8, 8).unwrap()) };
        assert!(p.is_null());
    }
}
