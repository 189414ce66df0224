//! [`Counted`]: any [`Heap`] with the same statistics kept around it.

use crate::{FRAME_SIZE, FrameAllocator, Frames, Heap, HeapStats};
use core::alloc::Layout;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// A heap with [`HeapStats`] kept for it, the same way for every implementation. Failed
/// allocations return null here; the kernel's `#[global_allocator]` wrapper turns them into a
/// panic. It is also the kernel's [`FrameAllocator`]: frames are page-aligned heap blocks, so
/// the heap and the frames share all free RAM and neither runs out while the other has spare.
#[derive(Debug)]
pub struct Counted<H> {
    heap: H,
    total: AtomicUsize,
    used: AtomicUsize,
    peak: AtomicUsize,
    allocations: AtomicU64,
    frees: AtomicU64,
    base: AtomicUsize,
    high_end: AtomicUsize,
}

impl<H: Heap> Counted<H> {
    /// Wraps a heap that has no memory yet.
    pub const fn new(heap: H) -> Self {
        Counted {
            heap,
            total: AtomicUsize::new(0),
            used: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            base: AtomicUsize::new(usize::MAX),
            high_end: AtomicUsize::new(0),
        }
    }

    /// Gives the heap a region; returns the bytes it took.
    ///
    /// # Safety
    /// As [`Heap::add_region`].
    pub unsafe fn add_region(&self, start: usize, size: usize) -> usize {
        // SAFETY: forwarded to the caller.
        let taken = unsafe { self.heap.add_region(start, size) };
        if taken > 0 {
            self.total.fetch_add(taken, Relaxed);
            self.base.fetch_min(start, Relaxed);
        }
        taken
    }

    fn allocated(&self, ptr: *mut u8, size: usize) {
        if !ptr.is_null() {
            self.allocations.fetch_add(1, Relaxed);
            let used = self.used.fetch_add(size, Relaxed) + size;
            self.peak.fetch_max(used, Relaxed);
            self.high_end.fetch_max(ptr as usize + size, Relaxed);
        }
    }

    fn freed(&self, size: usize) {
        self.frees.fetch_add(1, Relaxed);
        self.used.fetch_sub(size, Relaxed);
    }

    /// Allocates from the heap itself, uncounted (for [`crate::CpuCaches`], which counts the
    /// caller's request instead).
    ///
    /// # Safety
    /// As [`GlobalAlloc::alloc`].
    pub(crate) unsafe fn raw_alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the caller.
        unsafe { self.heap.alloc(layout) }
    }

    /// Frees to the heap itself, uncounted.
    ///
    /// # Safety
    /// As [`GlobalAlloc::dealloc`].
    pub(crate) unsafe fn raw_dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded to the caller.
        unsafe { self.heap.dealloc(ptr, layout) }
    }

    /// The heap itself (for tests that look inside).
    #[cfg(test)]
    pub(crate) fn inner(&self) -> &H {
        &self.heap
    }

    /// Counts an allocation of `size` bytes at `ptr` (nothing when null).
    pub(crate) fn count_alloc(&self, ptr: *mut u8, size: usize) {
        self.allocated(ptr, size);
    }

    /// Counts a free of `size` bytes.
    pub(crate) fn count_free(&self, size: usize) {
        self.freed(size);
    }

    /// Adds counts kept elsewhere (a CPU's cache): allocations, frees, and the change of bytes
    /// in use (wrapping: a decrease is a huge number).
    pub(crate) fn fold(&self, allocations: u64, frees: u64, used_change: usize) {
        self.allocations.fetch_add(allocations, Relaxed);
        self.frees.fetch_add(frees, Relaxed);
        let used = self
            .used
            .fetch_add(used_change, Relaxed)
            .wrapping_add(used_change);
        self.note_peak(used);
    }

    /// Raises the peak to `used` if higher.
    pub(crate) fn note_peak(&self, used: usize) {
        self.peak.fetch_max(used, Relaxed);
    }

    /// Notes a block handed out at `ptr` of `size` bytes, for the footprint.
    pub(crate) fn note_end(&self, ptr: *mut u8, size: usize) {
        if !ptr.is_null() {
            self.high_end.fetch_max(ptr as usize + size, Relaxed);
        }
    }

    /// Allocates; null when the heap cannot.
    ///
    /// # Safety
    /// As [`GlobalAlloc::alloc`] (`layout` has a non-zero size).
    pub unsafe fn try_alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the caller.
        let p = unsafe { self.heap.alloc(layout) };
        self.allocated(p, layout.size());
        p
    }

    /// Allocates zeroed memory; null when the heap cannot.
    ///
    /// # Safety
    /// As [`GlobalAlloc::alloc_zeroed`].
    pub unsafe fn try_alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded to the caller.
        let p = unsafe { self.heap.alloc_zeroed(layout) };
        self.allocated(p, layout.size());
        p
    }

    /// Frees.
    ///
    /// # Safety
    /// As [`GlobalAlloc::dealloc`].
    pub unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded to the caller.
        unsafe { self.heap.dealloc(ptr, layout) };
        self.freed(layout.size());
    }

    /// Resizes; null (and the old block untouched) when the heap cannot.
    ///
    /// # Safety
    /// As [`GlobalAlloc::realloc`].
    pub unsafe fn try_realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded to the caller.
        let p = unsafe { self.heap.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            // Counted as the copy a moving realloc makes: the new block before the old one goes.
            self.allocated(p, new_size);
            self.freed(layout.size());
        }
        p
    }

    /// The statistics.
    pub fn stats(&self) -> HeapStats {
        let base = self.base.load(Relaxed);
        let high_end = self.high_end.load(Relaxed);
        HeapStats {
            total: self.total.load(Relaxed),
            used: self.used.load(Relaxed),
            peak: self.peak.load(Relaxed),
            allocations: self.allocations.load(Relaxed),
            frees: self.frees.load(Relaxed),
            footprint: high_end.saturating_sub(base),
            largest_free: self.heap.largest_free(),
        }
    }
}

fn frames_layout(count: usize) -> Option<Layout> {
    let size = count.checked_mul(FRAME_SIZE).filter(|&s| s > 0)?;
    Layout::from_size_align(size, FRAME_SIZE).ok()
}

// SAFETY: frames are heap blocks of `count * FRAME_SIZE` bytes aligned to FRAME_SIZE; the heap
// contract makes them disjoint from every live block and inside RAM the heap was given, which
// the kernel maps read-write.
unsafe impl<H: Heap> FrameAllocator for Counted<H> {
    fn alloc_frames(&self, count: usize) -> Option<Frames> {
        let layout = frames_layout(count)?;
        // SAFETY: a valid layout with a non-zero size.
        let p = unsafe { self.try_alloc(layout) };
        // SAFETY: a non-null block of `count` frames from this heap, owned by the caller now.
        NonNull::new(p).map(|p| unsafe { Frames::from_raw(p, count) })
    }

    fn alloc_frames_zeroed(&self, count: usize) -> Option<Frames> {
        let layout = frames_layout(count)?;
        // SAFETY: a valid layout with a non-zero size.
        let p = unsafe { self.try_alloc_zeroed(layout) };
        // SAFETY: as in `alloc_frames`.
        NonNull::new(p).map(|p| unsafe { Frames::from_raw(p, count) })
    }

    unsafe fn free_frames(&self, frames: Frames) {
        if let Some(layout) = frames_layout(frames.count()) {
            // SAFETY: the caller gives back frames from `alloc_frames*` of this allocator,
            // which were allocated with exactly this layout.
            unsafe { self.dealloc(frames.as_ptr(), layout) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestArena;
    use core::alloc::GlobalAlloc;

    /// A first-fit-free test heap: bump over an arena.
    #[derive(Debug, Default)]
    struct Arena {
        next: AtomicUsize,
        end: AtomicUsize,
    }

    // SAFETY: blocks are carved upward from the one region, disjoint and aligned.
    unsafe impl GlobalAlloc for Arena {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let start = (self.next.load(Relaxed) + l.align() - 1) & !(l.align() - 1);
            if start == 0 || start + l.size() > self.end.load(Relaxed) {
                return core::ptr::null_mut();
            }
            self.next.store(start + l.size(), Relaxed);
            start as *mut u8
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {}
    }

    impl Heap for Arena {
        unsafe fn add_region(&self, start: usize, size: usize) -> usize {
            self.next.store(start, Relaxed);
            self.end.store(start + size, Relaxed);
            size
        }
    }

    #[test]
    fn counts_allocations_frees_peak_and_footprint() {
        let arena = TestArena::new(64 * 1024);
        let h = Counted::new(Arena::default());
        // SAFETY: the arena is ours for the test; layouts are valid and blocks are freed once.
        unsafe {
            assert_eq!(h.add_region(arena.start(), arena.len()), arena.len());
            let l = Layout::from_size_align(100, 16).unwrap();
            let a = h.try_alloc(l);
            let b = h.try_alloc(l);
            h.dealloc(a, l);
            let c = h.try_realloc(b, l, 300);
            assert!(!c.is_null());
            let s = h.stats();
            assert_eq!(s.total, 64 * 1024);
            assert_eq!(s.used, 300);
            assert_eq!(s.peak, 400);
            assert_eq!((s.allocations, s.frees), (3, 2));
            assert_eq!(s.footprint, c as usize + 300 - arena.start());
            assert!(
                h.try_alloc(Layout::from_size_align(1 << 20, 8).unwrap())
                    .is_null()
            );
            assert_eq!(h.stats().allocations, 3);
        }
    }

    #[test]
    fn frames_are_page_aligned_zeroed_and_counted() {
        let arena = TestArena::new(64 * 1024);
        let h = Counted::new(Arena::default());
        // SAFETY: the arena is ours for the test.
        unsafe { h.add_region(arena.start() + 8, arena.len() - 8) };
        let f = h.alloc_frames_zeroed(3).expect("room for 3 frames");
        assert_eq!(f.addr() % FRAME_SIZE, 0);
        assert_eq!(f.len(), 3 * FRAME_SIZE);
        // SAFETY: the frames are ours and `len` bytes long.
        let bytes = unsafe { core::slice::from_raw_parts(f.as_ptr(), f.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
        assert_eq!(h.stats().used, 3 * FRAME_SIZE);
        assert!(h.alloc_frames(0).is_none());
        assert!(h.alloc_frames(usize::MAX).is_none());
        assert!(h.alloc_frames(1000).is_none());
        // SAFETY: frames from this allocator, not used again.
        unsafe { h.free_frames(f) };
        assert_eq!(h.stats().used, 0);
    }
}
