//! A bump allocator: a pointer that only moves up. Freeing the most recent block gives it back;
//! other frees are no-ops. The smallest allocator there is, for minimal images and workloads
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
//! unsafe { bump.init(buf.as_mut_ptr() as usize, buf.len()) };
//! let p = unsafe { bump.alloc(Layout::from_size_align(100, 64).unwrap()) };
//! assert!(!p.is_null() && p as usize % 64 == 0);
//! ```
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use heap::{Heap, HeapStats};

/// The bump allocator.
#[derive(Debug)]
pub struct Bump {
    start: AtomicUsize,
    next: AtomicUsize,
    end: AtomicUsize,
    peak: AtomicUsize,
    allocations: AtomicU64,
}

impl Bump {
    /// An allocator with no memory yet.
    pub const fn new() -> Self {
        Bump {
            start: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            end: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
        }
    }
}

impl Default for Bump {
    fn default() -> Self {
        Self::new()
    }
}

// SAFETY: blocks are carved from the region given to `init` by an atomic compare-and-swap on
// `next`, so they are disjoint, inside the region, and aligned as asked.
unsafe impl GlobalAlloc for Bump {
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
                Ok(_) => {
                    self.allocations.fetch_add(1, Ordering::Relaxed);
                    let used = new_next - self.start.load(Ordering::Relaxed);
                    self.peak.fetch_max(used, Ordering::Relaxed);
                    return start as *mut u8;
                }
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
    unsafe fn init(&self, start: usize, size: usize) {
        self.start.store(start, Ordering::Relaxed);
        self.next.store(start, Ordering::Relaxed);
        self.end
            .store(start.saturating_add(size), Ordering::Release);
    }

    fn stats(&self) -> HeapStats {
        let start = self.start.load(Ordering::Relaxed);
        let next = self.next.load(Ordering::Relaxed);
        let end = self.end.load(Ordering::Relaxed);
        HeapStats {
            total: end - start,
            used: next - start,
            peak: self.peak.load(Ordering::Relaxed),
            allocations: self.allocations.load(Ordering::Relaxed),
            largest_free: Some(end - next),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heap(size: usize) -> (Bump, usize) {
        let bump = Bump::new();
        let buf = Box::leak(vec![0u8; size].into_boxed_slice());
        let start = buf.as_mut_ptr() as usize;
        // SAFETY: the leaked buffer is used by nothing else, forever.
        unsafe { bump.init(start, size) };
        (bump, start)
    }

    #[test]
    fn nothing_before_init() {
        let b = Bump::new();
        // SAFETY: a valid layout; a null result is the expected answer.
        let p = unsafe { b.alloc(Layout::from_size_align(1, 1).unwrap()) };
        assert!(p.is_null());
    }

    #[test]
    fn aligned_disjoint_and_inside_until_exhausted() {
        let (b, start) = heap(64 * 1024);
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut blocks = Vec::new();
        loop {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let size = (seed % 700) as usize + 1;
            let align = 1usize << ((seed >> 60) % 13);
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a valid layout.
            let p = unsafe { b.alloc(layout) } as usize;
            if p == 0 {
                break;
            }
            assert_eq!(p % align, 0);
            assert!(p >= start && p + size <= start + 64 * 1024);
            blocks.push((p, size));
        }
        blocks.sort();
        assert!(blocks.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0));
        let s = b.stats();
        assert_eq!(s.allocations, blocks.len() as u64);
        assert!(s.used <= s.total && s.peak == s.used);
    }

    #[test]
    fn freeing_the_last_block_gives_it_back() {
        let (b, _) = heap(4096);
        let l = Layout::from_size_align(1000, 8).unwrap();
        // SAFETY: valid layouts; the block freed is the one just allocated.
        unsafe {
            let p = b.alloc(l);
            let used = b.stats().used;
            let q = b.alloc(l);
            b.dealloc(q, l);
            assert_eq!(b.stats().used, used);
            assert_eq!(b.alloc(l), q);
            assert!(!p.is_null());
            assert!(b.alloc(Layout::from_size_align(4096, 1).unwrap()).is_null());
        }
    }
}
