//! A bump allocator: a pointer that only moves up. Freeing the most recent block gives it back
//! (but not the alignment padding before it); other frees are no-ops. The smallest allocator there is, for minimal images and workloads
//! that allocate at boot and keep what they get.
//!
//! Written by hand: it is a dozen lines, and no crate does exactly this lock-free and without
//! pulling in code.
//!
//! ```
//! use heap::Heap;
//! use core::alloc::{GlobalAlloc, Layout};
//! let bump = alloc_bump::Bump::new();
//! let buf = Box::leak(vec![0u8; 4096].into_boxed_slice());
//! // SAFETY: a leaked buffer is ours forever.
//! unsafe { bump.add_region(buf.as_mut_ptr() as usize, buf.len()) };
//! let p = unsafe { bump.alloc(Layout::from_size_align(100, 64).unwrap()) };
//! assert!(!p.is_null() && p as usize % 64 == 0);
//! ```
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicUsize, Ordering};
use heap::Heap;

/// The bump allocator. It uses one region: the largest it is given.
#[derive(Debug)]
pub struct Bump {
    next: AtomicUsize,
    end: AtomicUsize,
}

impl Bump {
    /// An allocator with no memory yet.
    pub const fn new() -> Self {
        Bump {
            next: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
        }
    }
}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks are carved from the region given to `add_region` by an atomic compare-and-swap
// on `next`, so they are disjoint, inside the region, and aligned as asked.
unsafe impl GlobalAlloc for Bump {
    // Out of line, so the size breakdown names this crate (the cost is one call).
    #[inline(never)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let end = self.end.load(Ordering::Acquire);
        let mut next = self.next.load(Ordering::Relaxed);
        loop {
            let Some(start) = next
                .checked_add(layout.align() - 1)
                .map(|a| a & !(layout.align() - 1))
            else {
                return core::ptr::null_mut();
            };
            let new_next = match start.checked_add(layout.size()) {
                Some(n) if n <= end && start != 0 => n,
                _ => return core::ptr::null_mut(),
            };
            match self.next.compare_exchange_weak(
                next,
                new_next,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return start as *mut u8,
                Err(current) => next = current,
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // Give back the most recent block; anything else stays used.
        let block_end = ptr as usize + layout.size();
        let _ = self.next.compare_exchange(
            block_end,
            ptr as usize,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }
}

impl Heap for Bump {
    /// Takes the region if it is larger than what is left of the current one and nothing was
    /// allocated yet (the kernel adds the largest region first); otherwise takes nothing.
    unsafe fn add_region(&self, start: usize, size: usize) -> usize {
        let next = self.next.load(Ordering::Relaxed);
        let end = self.end.load(Ordering::Relaxed);
        if size <= end - next {
            return 0;
        }
        self.next.store(start, Ordering::Relaxed);
        self.end
            .store(start.saturating_add(size), Ordering::Release);
        size
    }

    fn largest_free(&self) -> Option<usize> {
        Some(self.end.load(Ordering::Relaxed) - self.next.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use heap::testkit::{Reuse, check_heap};

    #[test]
    fn nothing_before_a_region() {
        let b = Bump::new();
        // SAFETY: a valid layout; a null result is the expected answer.
        let p = unsafe { b.alloc(Layout::from_size_align(1, 1).unwrap()) };
        assert!(p.is_null());
    }

    #[test]
    fn model_checks() {
        check_heap(Bump::new, Reuse::LastOnly);
    }

    #[test]
    fn keeps_the_largest_region() {
        let b = Bump::new();
        // SAFETY: addresses only; nothing is allocated or touched.
        unsafe {
            assert_eq!(b.add_region(0x10_0000, 0x1000), 0x1000);
            assert_eq!(b.add_region(0x20_0000, 0x800), 0);
            assert_eq!(b.add_region(0x30_0000, 0x4000), 0x4000);
        }
        assert_eq!(b.largest_free(), Some(0x4000));
    }
}
