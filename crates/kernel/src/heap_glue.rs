//! The kernel's wrapper around the selected heap: statistics kept the same way for every
//! implementation ([`heap::Counted`]), and a failed allocation turned into a clear panic (size,
//! alignment and the heap's statistics).

use core::alloc::{GlobalAlloc, Layout};
use heap::{Counted, Heap, HeapStats};

/// The selected heap, counted, reporting failed allocations as a clear panic.
#[derive(Debug)]
pub struct KernelHeap<H>(Counted<H>);

impl<H: Heap> KernelHeap<H> {
    /// Wraps a heap.
    pub const fn new(heap: H) -> Self {
        KernelHeap(Counted::new(heap))
    }

    /// The heap without the panic: what the frame allocator uses, so that running out of
    /// frames is an error its caller handles.
    pub fn counted(&self) -> &Counted<H> {
        &self.0
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
        let p = unsafe { self.0.try_alloc(layout) };
        if p.is_null() {
            out_of_memory(layout, self.0.stats());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { self.0.try_alloc_zeroed(layout) };
        if p.is_null() {
            out_of_memory(layout, self.0.stats());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; `ptr` came from this allocator with this layout.
        unsafe { self.0.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's block, layout and size.
        let p = unsafe { self.0.try_realloc(ptr, layout, new_size) };
        if p.is_null() {
            // `new_size` with the old alignment is a valid layout (GlobalAlloc::realloc's
            // contract), so this cannot fail; the old layout is reported if it did.
            out_of_memory(
                Layout::from_size_align(new_size, layout.align()).unwrap_or(layout),
                self.0.stats(),
            );
        }
        p
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
