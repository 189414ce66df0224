//! [`CpuCaches`]: per-CPU stacks of free small blocks in front of a [`Counted`] heap, so that
//! on several CPUs most small allocations and frees never take the heap's lock.
//!
//! A request of at most [`MAX_CACHED`] bytes with an alignment of at most [`CLASS_ALIGN`] falls
//! in a size class (16, 32, 64, 128 or 256 bytes). Its allocation pops a block from the calling
//! CPU's stack for that class, or, when the stack is empty, allocates one from the heap with
//! the class's layout (never the request's), so every block of a class can go back to the heap
//! with the class's layout whoever freed it. Its free pushes the block on the calling CPU's
//! stack, or, when the stack is full ([`DEPTH`] blocks), first gives the older half of the
//! stack back to the heap. A block freed on another CPU than the one that allocated it joins
//! the freeing CPU's stack. Other requests go to the heap unchanged.
//!
//! Statistics keep their meaning: [`CpuCaches::stats`] counts the caller's requests (bytes the
//! caller holds, allocations and frees it made), so a block sitting in a cache is not in use;
//! [`CpuCaches::cached_bytes`] says how much the caches hold. So that a cache hit writes no
//! shared memory, each CPU keeps its counts to itself and adds them to [`Counted`]'s when it
//! goes to the heap anyway (a miss, or a full stack); [`CpuCaches::stats`] adds up what the
//! CPUs still keep. The peak is raised then too, so it may miss a high reached by cache hits
//! alone between two visits to the heap (by at most what the caches held).
//!
//! No lock: each CPU touches only its own stacks, which the caller guarantees by naming the
//! CPU it runs on and not being interrupted by another call on the same CPU (the kernel masks
//! interrupts around every call).

use crate::{Counted, Heap, HeapStats};
use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

/// The size classes, in bytes.
pub const CLASSES: [usize; 5] = [16, 32, 64, 128, 256];
/// The largest request a cache serves.
pub const MAX_CACHED: usize = 256;
/// The alignment of every cached block (and the largest a cached request may ask).
pub const CLASS_ALIGN: usize = 16;
/// Free blocks each CPU keeps per class at most.
pub const DEPTH: usize = 32;

const fn class_layout(size: usize) -> Layout {
    match Layout::from_size_align(size, CLASS_ALIGN) {
        Ok(l) => l,
        Err(_) => panic!("a size class is a valid layout"),
    }
}

/// Each class's layout: what the heap is asked for, and given back.
const LAYOUTS: [Layout; CLASSES.len()] = [
    class_layout(CLASSES[0]),
    class_layout(CLASSES[1]),
    class_layout(CLASSES[2]),
    class_layout(CLASSES[3]),
    class_layout(CLASSES[4]),
];

/// The class a request falls in, if any.
pub fn class_of(layout: Layout) -> Option<usize> {
    if layout.align() > CLASS_ALIGN || layout.size() > MAX_CACHED {
        return None;
    }
    Some(match layout.size() {
        0..=16 => 0,
        17..=32 => 1,
        33..=64 => 2,
        65..=128 => 3,
        _ => 4,
    })
}

/// One CPU's stacks, on cache lines of their own.
#[repr(align(64))]
struct Cache {
    /// Blocks on each class's stack; written by the owning CPU only, read by anyone
    /// ([`CpuCaches::cached_bytes`]).
    len: [AtomicUsize; CLASSES.len()],
    /// The stacks: `blocks[c][..len[c]]` are free blocks of class `c`. Touched by the owning
    /// CPU only.
    blocks: UnsafeCell<[[*mut u8; DEPTH]; CLASSES.len()]>,
    /// Allocations, frees and the change of bytes in use (wrapping) not yet added to the
    /// heap's counts; written by the owning CPU only (a load and a store, no locked
    /// instruction), read by anyone.
    allocations: AtomicU64,
    frees: AtomicU64,
    used_change: AtomicUsize,
}

impl Cache {
    const fn new() -> Self {
        Cache {
            len: [const { AtomicUsize::new(0) }; CLASSES.len()],
            blocks: UnsafeCell::new([[core::ptr::null_mut(); DEPTH]; CLASSES.len()]),
            allocations: AtomicU64::new(0),
            frees: AtomicU64::new(0),
            used_change: AtomicUsize::new(0),
        }
    }

    /// Counts an allocation of `size` bytes (owning CPU only).
    fn count_alloc(&self, size: usize) {
        self.allocations
            .store(self.allocations.load(Relaxed) + 1, Relaxed);
        self.used_change
            .store(self.used_change.load(Relaxed).wrapping_add(size), Relaxed);
    }

    /// Counts a free of `size` bytes (owning CPU only).
    fn count_free(&self, size: usize) {
        self.frees.store(self.frees.load(Relaxed) + 1, Relaxed);
        self.used_change
            .store(self.used_change.load(Relaxed).wrapping_sub(size), Relaxed);
    }

    /// Adds the counts kept here to `heap`'s (owning CPU only).
    fn fold<H: Heap>(&self, heap: &Counted<H>) {
        heap.fold(
            self.allocations.load(Relaxed),
            self.frees.load(Relaxed),
            self.used_change.load(Relaxed),
        );
        self.allocations.store(0, Relaxed);
        self.frees.store(0, Relaxed);
        self.used_change.store(0, Relaxed);
    }
}

/// Per-CPU caches of small free blocks for `CPUS` CPUs (see the module's docs). Calls naming
/// a CPU at or above `CPUS` go to the heap (with the class's layout for a class-sized request).
#[derive(Debug)]
pub struct CpuCaches<const CPUS: usize> {
    cpus: [Cache; CPUS],
}

impl core::fmt::Debug for Cache {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Cache").field("len", &self.len).finish()
    }
}

// SAFETY: a CPU's stacks (`blocks`) are touched only by calls naming that CPU, which the
// callers of the unsafe methods guarantee never overlap; the lengths are atomics. The blocks
// themselves are free heap memory, owned by the cache, not by any thread.
unsafe impl<const CPUS: usize> Sync for CpuCaches<CPUS> {}
// SAFETY: the caches own nothing tied to a thread: free heap blocks and atomics.
unsafe impl<const CPUS: usize> Send for CpuCaches<CPUS> {}

impl<const CPUS: usize> Default for CpuCaches<CPUS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const CPUS: usize> CpuCaches<CPUS> {
    /// Empty caches.
    pub const fn new() -> Self {
        CpuCaches {
            cpus: [const { Cache::new() }; CPUS],
        }
    }

    /// Bytes in free blocks the caches hold (not counted as used).
    pub fn cached_bytes(&self) -> usize {
        self.cpus
            .iter()
            .map(|c| {
                c.len
                    .iter()
                    .zip(CLASSES)
                    .map(|(n, size)| n.load(Relaxed) * size)
                    .sum::<usize>()
            })
            .sum()
    }

    /// `heap`'s statistics with the counts the CPUs still keep added: the caller's requests
    /// (blocks in the caches are not in use).
    pub fn stats<H: Heap>(&self, heap: &Counted<H>) -> HeapStats {
        let mut s = heap.stats();
        for c in &self.cpus {
            s.allocations += c.allocations.load(Relaxed);
            s.frees += c.frees.load(Relaxed);
            s.used = s.used.wrapping_add(c.used_change.load(Relaxed));
        }
        heap.note_peak(s.used);
        s.peak = s.peak.max(s.used);
        s
    }

    /// Free blocks the caches hold.
    pub fn cached_blocks(&self) -> usize {
        self.cpus
            .iter()
            .map(|c| c.len.iter().map(|n| n.load(Relaxed)).sum::<usize>())
            .sum()
    }

    /// Pops a block of class `class` from CPU `cpu`'s stack.
    ///
    /// # Safety
    /// No other call naming `cpu` runs at the same time.
    unsafe fn pop(&self, cpu: usize, class: usize) -> Option<*mut u8> {
        let cache = self.cpus.get(cpu)?;
        let n = cache.len[class].load(Relaxed);
        if n == 0 {
            return None;
        }
        // SAFETY: only calls naming `cpu` touch its stacks, and none runs at the same time.
        let block = unsafe { (*cache.blocks.get())[class][n - 1] };
        cache.len[class].store(n - 1, Relaxed);
        Some(block)
    }

    /// Pushes a free block of class `class` on CPU `cpu`'s stack, giving the older half of the
    /// stack back to `heap` first when it is full; false when there is no cache for `cpu`.
    ///
    /// # Safety
    /// No other call naming `cpu` runs at the same time; `block` is a free block of the class,
    /// from `heap`.
    unsafe fn push<H: Heap>(
        &self,
        heap: &Counted<H>,
        cpu: usize,
        class: usize,
        block: *mut u8,
    ) -> bool {
        let Some(cache) = self.cpus.get(cpu) else {
            return false;
        };
        // SAFETY: only calls naming `cpu` touch its stacks, and none runs at the same time.
        let stack = unsafe { &mut (*cache.blocks.get())[class] };
        let mut n = cache.len[class].load(Relaxed);
        if n == DEPTH {
            const HALF: usize = DEPTH / 2;
            for &old in &stack[..HALF] {
                // SAFETY: a free block of this class, allocated from `heap` with its layout.
                unsafe { heap.raw_dealloc(old, LAYOUTS[class]) };
            }
            stack.copy_within(HALF.., 0);
            n -= HALF;
            cache.fold(heap);
        }
        stack[n] = block;
        cache.len[class].store(n + 1, Relaxed);
        true
    }

    /// Allocates for a caller on CPU `cpu`; null when the heap cannot.
    ///
    /// # Safety
    /// As [`core::alloc::GlobalAlloc::alloc`]; the caller runs on CPU `cpu`, and no other call
    /// naming `cpu` runs at the same time (interrupts masked, one thread per CPU). Every block
    /// of `heap` is allocated and freed through these caches.
    pub unsafe fn alloc<H: Heap>(&self, heap: &Counted<H>, cpu: usize, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: forwarded to the caller.
            return unsafe { heap.try_alloc(layout) };
        };
        let Some(cache) = self.cpus.get(cpu) else {
            // No cache for `cpu`: the heap, with the class's layout all the same.
            // SAFETY: forwarded to the caller; a class layout is valid.
            let p = unsafe { heap.raw_alloc(LAYOUTS[class]) };
            heap.count_alloc(p, layout.size());
            return p;
        };
        // SAFETY: forwarded to the caller (`cpu` is ours alone).
        if let Some(p) = unsafe { self.pop(cpu, class) } {
            cache.count_alloc(layout.size());
            return p;
        }
        // SAFETY: forwarded to the caller; a class layout is valid.
        let p = unsafe { heap.raw_alloc(LAYOUTS[class]) };
        if !p.is_null() {
            cache.count_alloc(layout.size());
            heap.note_end(p, layout.size());
            cache.fold(heap);
        }
        p
    }

    /// Allocates zeroed memory (as [`CpuCaches::alloc`]).
    ///
    /// # Safety
    /// As [`CpuCaches::alloc`].
    pub unsafe fn alloc_zeroed<H: Heap>(
        &self,
        heap: &Counted<H>,
        cpu: usize,
        layout: Layout,
    ) -> *mut u8 {
        if class_of(layout).is_none() {
            // SAFETY: forwarded to the caller.
            return unsafe { heap.try_alloc_zeroed(layout) };
        }
        // SAFETY: forwarded to the caller.
        let p = unsafe { self.alloc(heap, cpu, layout) };
        if !p.is_null() {
            // SAFETY: a fresh block of at least `layout.size()` bytes.
            unsafe { p.write_bytes(0, layout.size()) };
        }
        p
    }

    /// Frees for a caller on CPU `cpu`.
    ///
    /// # Safety
    /// As [`core::alloc::GlobalAlloc::dealloc`] (`ptr` allocated through these caches from
    /// `heap` with `layout`), and as [`CpuCaches::alloc`] for `cpu`.
    pub unsafe fn dealloc<H: Heap>(
        &self,
        heap: &Counted<H>,
        cpu: usize,
        ptr: *mut u8,
        layout: Layout,
    ) {
        let Some(class) = class_of(layout) else {
            // SAFETY: forwarded to the caller.
            return unsafe { heap.dealloc(ptr, layout) };
        };
        let Some(cache) = self.cpus.get(cpu) else {
            heap.count_free(layout.size());
            // SAFETY: allocated from `heap` with the class's layout (whichever CPU did).
            return unsafe { heap.raw_dealloc(ptr, LAYOUTS[class]) };
        };
        cache.count_free(layout.size());
        // SAFETY: a block of this class (allocated with the class's layout), now free; `cpu`
        // is ours alone and has a cache.
        unsafe { self.push(heap, cpu, class, ptr) };
    }

    /// Resizes for a caller on CPU `cpu`; null (and the old block untouched) when the heap
    /// cannot.
    ///
    /// # Safety
    /// As [`core::alloc::GlobalAlloc::realloc`], and as [`CpuCaches::dealloc`].
    pub unsafe fn realloc<H: Heap>(
        &self,
        heap: &Counted<H>,
        cpu: usize,
        ptr: *mut u8,
        layout: Layout,
        new_size: usize,
    ) -> *mut u8 {
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        let (old, new) = (class_of(layout), class_of(new_layout));
        if old.is_none() && new.is_none() {
            // SAFETY: forwarded to the caller: neither layout is a class's.
            return unsafe { heap.try_realloc(ptr, layout, new_size) };
        }
        if old == new {
            // The block already has the class's size: counted as the copy `Counted` counts.
            match self.cpus.get(cpu) {
                Some(cache) => {
                    cache.count_alloc(new_size);
                    cache.count_free(layout.size());
                }
                None => {
                    heap.count_alloc(ptr, new_size);
                    heap.count_free(layout.size());
                }
            }
            return ptr;
        }
        // SAFETY: forwarded to the caller.
        let p = unsafe { self.alloc(heap, cpu, new_layout) };
        if !p.is_null() {
            // SAFETY: two live, distinct blocks of at least the bytes copied; the old one is
            // the caller's, given back once.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, p, layout.size().min(new_size));
                self.dealloc(heap, cpu, ptr, layout);
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::Rng;
    use core::alloc::GlobalAlloc;
    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};
    use std::vec::Vec;

    /// A heap over the host's allocator that checks every free: the block is live and freed
    /// with the layout it was allocated with.
    #[derive(Debug, Default)]
    struct Checked {
        live: Mutex<HashMap<usize, Layout>>,
    }

    impl Checked {
        fn live(&self) -> usize {
            self.live.lock().unwrap().len()
        }
    }

    // SAFETY: blocks come from the host allocator with the caller's layout.
    unsafe impl GlobalAlloc for Checked {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            // SAFETY: forwarded.
            let p = unsafe { std::alloc::alloc(l) };
            if !p.is_null() {
                assert!(self.live.lock().unwrap().insert(p as usize, l).is_none());
            }
            p
        }
        unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
            let was = self.live.lock().unwrap().remove(&(p as usize));
            assert_eq!(was, Some(l), "a free of {p:?} with {l:?}");
            // SAFETY: live, allocated with `l` (checked).
            unsafe { std::alloc::dealloc(p, l) }
        }
    }

    impl Heap for Checked {
        unsafe fn add_region(&self, _: usize, size: usize) -> usize {
            size
        }
    }

    fn layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn classes_cover_small_requests_with_small_alignment() {
        assert_eq!(class_of(layout(1, 1)), Some(0));
        assert_eq!(class_of(layout(16, 16)), Some(0));
        assert_eq!(class_of(layout(17, 8)), Some(1));
        assert_eq!(class_of(layout(100, 4)), Some(3));
        assert_eq!(class_of(layout(256, 16)), Some(4));
        assert_eq!(class_of(layout(257, 8)), None);
        assert_eq!(class_of(layout(16, 32)), None);
        for (c, l) in LAYOUTS.iter().enumerate() {
            assert_eq!(class_of(*l), Some(c));
        }
    }

    #[test]
    fn a_freed_block_is_reused_on_its_cpu_and_stats_count_requests() {
        let heap = Counted::new(Checked::default());
        let caches = CpuCaches::<2>::new();
        // SAFETY: one thread plays both CPUs, one call at a time; blocks are freed once.
        unsafe {
            let a = caches.alloc(&heap, 0, layout(24, 8));
            assert_eq!(caches.stats(&heap).used, 24);
            caches.dealloc(&heap, 0, a, layout(24, 8));
            assert_eq!(caches.stats(&heap).used, 0);
            assert_eq!(caches.cached_bytes(), 32);
            // Same class, same CPU: the same block, no heap call.
            let b = caches.alloc(&heap, 0, layout(32, 16));
            assert_eq!(b, a);
            assert_eq!(caches.cached_bytes(), 0);
            // Freed on CPU 1: joins CPU 1's stack; CPU 0 gets a new block.
            caches.dealloc(&heap, 1, b, layout(32, 16));
            let c = caches.alloc(&heap, 0, layout(20, 4));
            assert_ne!(c, b);
            assert_eq!(caches.alloc(&heap, 1, layout(30, 2)), b);
            // Grows within its class in place, out of it by a copy.
            c.write_bytes(7, 20);
            assert_eq!(caches.realloc(&heap, 0, c, layout(20, 4), 32), c);
            let d = caches.realloc(&heap, 0, c, layout(32, 4), 300);
            assert_ne!(d, c);
            assert!(core::slice::from_raw_parts(d, 20).iter().all(|&x| x == 7));
            let z = caches.alloc_zeroed(&heap, 0, layout(20, 4));
            assert_eq!(z, c, "the block the realloc gave back");
            assert!(core::slice::from_raw_parts(z, 20).iter().all(|&x| x == 0));
            let s = caches.stats(&heap);
            assert_eq!(s.used, 30 + 300 + 20);
            assert_eq!((s.allocations, s.frees), (7, 4));
            caches.dealloc(&heap, 1, b, layout(30, 2));
            caches.dealloc(&heap, 0, d, layout(300, 4));
            caches.dealloc(&heap, 0, z, layout(20, 4));
            assert_eq!(caches.stats(&heap).used, 0);
            // The large block went back to the heap; the small ones wait in the caches.
            assert_eq!(heap.inner().live(), caches.cached_blocks());
        }
    }

    #[test]
    fn a_full_stack_gives_half_back_to_the_heap() {
        let heap = Counted::new(Checked::default());
        let caches = CpuCaches::<1>::new();
        let l = layout(64, 8);
        // SAFETY: one thread, one CPU; blocks are freed once.
        unsafe {
            let blocks: Vec<_> = (0..3 * DEPTH).map(|_| caches.alloc(&heap, 0, l)).collect();
            assert_eq!(heap.inner().live(), 3 * DEPTH);
            for (i, &b) in blocks.iter().enumerate() {
                caches.dealloc(&heap, 0, b, l);
                assert!(caches.cached_blocks() <= DEPTH);
                assert_eq!(
                    heap.inner().live(),
                    3 * DEPTH - i - 1 + caches.cached_blocks()
                );
            }
            assert!(caches.cached_blocks() > DEPTH / 2);
            // A CPU without a cache goes straight to the heap, with the class's layout.
            let x = caches.alloc(&heap, 5, l);
            assert_eq!(heap.inner().live.lock().unwrap()[&(x as usize)], LAYOUTS[2]);
            caches.dealloc(&heap, 5, x, l);
        }
        assert_eq!(caches.stats(&heap).used, 0);
        assert_eq!(heap.inner().live(), caches.cached_blocks());
    }

    /// Live blocks of every CPU, to catch a block handed out twice: start -> end.
    type Live = Mutex<BTreeMap<usize, usize>>;

    fn claim(live: &Live, p: *mut u8, size: usize) {
        let start = p as usize;
        let mut live = live.lock().unwrap();
        if let Some((&s, &e)) = live.range(..start + size.max(1)).next_back() {
            assert!(
                e <= start,
                "{start:#x}+{size} overlaps the live {s:#x}..{e:#x}"
            );
        }
        live.insert(start, start + size.max(1));
    }

    fn release(live: &Live, p: *mut u8) {
        assert!(live.lock().unwrap().remove(&(p as usize)).is_some());
    }

    /// A block in flight: address, layout, fill byte.
    #[derive(Clone, Copy)]
    struct Block(usize, Layout, u8);

    #[test]
    fn threads_playing_cpus_storm_the_caches_and_the_heap_stays_consistent() {
        const CPUS: usize = 4;
        const OPS: usize = 20_000;
        let heap = Arc::new(Counted::new(Checked::default()));
        let caches = Arc::new(CpuCaches::<CPUS>::new());
        let live = Arc::new(Live::default());
        // Blocks handed from one CPU to the next, freed there.
        let handoff: Arc<Vec<Mutex<Vec<Block>>>> =
            Arc::new((0..CPUS).map(|_| Mutex::new(Vec::new())).collect());
        let workers: Vec<_> = (0..CPUS)
            .map(|cpu| {
                let (heap, caches, live, handoff) =
                    (heap.clone(), caches.clone(), live.clone(), handoff.clone());
                std::thread::spawn(move || {
                    let mut rng = Rng::new(0x5eed + cpu as u64);
                    let mut mine: Vec<Block> = Vec::new();
                    let check_and_free = |b: Block, live: &Live| {
                        let Block(p, l, fill) = b;
                        // SAFETY: a live block of `l.size()` bytes this thread owns now.
                        let bytes =
                            unsafe { core::slice::from_raw_parts(p as *const u8, l.size()) };
                        assert!(
                            bytes.iter().all(|&x| x == fill),
                            "a block's content changed"
                        );
                        release(live, p as *mut u8);
                        // SAFETY: this thread is CPU `cpu`; the block is freed once.
                        unsafe { caches.dealloc(&heap, cpu, p as *mut u8, l) };
                    };
                    for i in 0..OPS {
                        match rng.below(10) {
                            0..=4 => {
                                let size = match rng.below(8) {
                                    0 => 257 + rng.below(2000) as usize,
                                    _ => 1 + rng.below(256) as usize,
                                };
                                let align = 1 << rng.below(7);
                                let l = layout(size, align);
                                // SAFETY: this thread is CPU `cpu`; a non-zero size.
                                let p = unsafe { caches.alloc(&heap, cpu, l) };
                                assert!(!p.is_null());
                                assert_eq!(p as usize % align, 0, "{l:?}");
                                claim(&live, p, size);
                                let fill = (i % 251) as u8;
                                // SAFETY: a fresh block of `size` bytes.
                                unsafe { p.write_bytes(fill, size) };
                                mine.push(Block(p as usize, l, fill));
                            }
                            5..=7 if !mine.is_empty() => {
                                let k = rng.below(mine.len() as u64) as usize;
                                check_and_free(mine.swap_remove(k), &live);
                            }
                            8 if !mine.is_empty() => {
                                let b = mine.swap_remove(0);
                                handoff[(cpu + 1) % CPUS].lock().unwrap().push(b);
                            }
                            _ => {
                                let theirs = core::mem::take(&mut *handoff[cpu].lock().unwrap());
                                for b in theirs {
                                    check_and_free(b, &live);
                                }
                            }
                        }
                    }
                    for b in mine {
                        check_and_free(b, &live);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        // What was handed off late is freed by this thread, as CPU 0 (the workers are gone).
        for q in handoff.iter() {
            for Block(p, l, _) in q.lock().unwrap().drain(..) {
                release(&live, p as *mut u8);
                // SAFETY: CPU 0's worker is done; freed once.
                unsafe { caches.dealloc(&heap, 0, p as *mut u8, l) };
            }
        }
        let s = caches.stats(&heap);
        assert_eq!(s.used, 0, "{s}");
        assert_eq!(s.allocations, s.frees);
        assert!(s.peak > 0);
        // Everything the heap still holds sits in the caches, within their bounds.
        assert_eq!(heap.inner().live(), caches.cached_blocks());
        assert!(caches.cached_blocks() <= CPUS * CLASSES.len() * DEPTH);
        assert!(caches.cached_bytes() > 0);
        // Empty the caches: every block goes back with its class's layout (Checked asserts).
        for cpu in 0..CPUS {
            for (class, l) in LAYOUTS.iter().enumerate() {
                // SAFETY: no other thread runs; each block is given back once, with its
                // class's layout.
                while let Some(b) = unsafe { caches.pop(cpu, class) } {
                    // SAFETY: as above.
                    unsafe { heap.raw_dealloc(b, *l) };
                }
            }
        }
        assert_eq!(heap.inner().live(), 0);
    }
}
