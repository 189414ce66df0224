//! The kernel's wrapper around the selected heap: hands it its region once and turns a failed
//! allocation into a clear panic (size, alignment and the heap's statistics).

use core::alloc::{GlobalAlloc, Layout};
use heap::{Heap, HeapStats};
use platform::Range;

/// The selected heap, reporting failed allocations as a clear panic.
#[derive(Debug)]
pub struct KernelHeap<H>(H);

impl<H: Heap> KernelHeap<H> {
    /// Wraps a heap.
    pub const fn new(heap: H) -> Self {
        KernelHeap(heap)
    }

    /// Gives the heap its memory.
    ///
    /// # Safety
    /// As [`Heap::init`]: called once; the region is RAM, mapped read-write, used by nothing else.
    pub unsafe fn init(&self, region: Range) {
        // SAFETY: forwarded to the caller.
        unsafe { self.0.init(region.start as usize, region.len() as usize) }
    }

    /// The heap's statistics.
    pub fn stats(&self) -> HeapStats {
        self.0.stats()
    }
}

// SAFETY: every call is forwarded to the selected implementation, which upholds the GlobalAlloc
// contract; a null result becomes a panic (it is never returned to the caller).
unsafe impl<H: Heap> GlobalAlloc for KernelHeap<H> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { self.0.alloc(layout) };
        if p.is_null() {
            out_of_memory(layout, self.0.stats());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; `ptr` came from this allocator with this layout.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

#[cold]
fn out_of_memory(layout: Layout, stats: HeapStats) -> ! {
    panic!(
        "out of memory: allocation of {} bytes (alignment {}) failed; heap: {}",
        layout.size(),
        layout.align(),
        stats
    )
}
