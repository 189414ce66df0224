//! Randomized model-based checks for [`Heap`] implementations, with fixed seeds so a failure
//! reproduces. Every allocator crate's host tests call [`check_heap`].
//!
//! The model keeps every live block (address, size, alignment, fill pattern) and checks, after
//! every operation: the block is aligned, inside the arena, overlaps no live block, and still
//! holds its pattern (so a heap that hands out overlapping memory, or a `realloc` that loses
//! content, is caught by the data as well as by the addresses).

// The crate is `no_std` outside its own tests; the testkit runs on the host only.
#[cfg(not(test))]
extern crate std;

use crate::Heap;
use core::alloc::Layout;
use std::collections::BTreeMap;
use std::vec::Vec;

/// Which frees make memory available again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Every free (general-purpose allocators).
    Full,
    /// Only freeing the most recent block (`bump`).
    LastOnly,
}

/// A page-aligned arena from the host allocator, freed on drop.
#[derive(Debug)]
pub struct TestArena {
    ptr: *mut u8,
    layout: Layout,
}

impl TestArena {
    /// `len` bytes, 4 KiB-aligned.
    pub fn new(len: usize) -> Self {
        let layout = Layout::from_size_align(len, 4096).expect("a valid arena size");
        // SAFETY: a non-zero size.
        let ptr = unsafe { std::alloc::alloc(layout) };
        assert!(!ptr.is_null(), "host out of memory");
        TestArena { ptr, layout }
    }
    /// First byte's address.
    pub fn start(&self) -> usize {
        self.ptr as usize
    }
    /// Bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }
    /// Never true (arenas have at least one byte).
    pub fn is_empty(&self) -> bool {
        self.layout.size() == 0
    }
}

impl Drop for TestArena {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.ptr, self.layout) }
    }
}

/// A xorshift64* generator: tiny, deterministic, good enough for workloads.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// Seeded (a zero seed is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// Next value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Log-uniform in `1..=max`.
    pub fn size(&mut self, max: usize) -> usize {
        let bits = usize::BITS - max.leading_zeros();
        let b = self.below(bits as u64) as u32;
        let top = (1usize << b).min(max);
        (self.below(top as u64) as usize + 1).min(max)
    }
}

#[derive(Debug)]
struct Block {
    size: usize,
    align: usize,
    tag: u8,
}

/// The model: live blocks by address, over one arena.
struct Model<'h, H> {
    heap: &'h H,
    lo: usize,
    hi: usize,
    live: BTreeMap<usize, Block>,
    allocated_bytes: usize,
    failures: usize,
    tag: u8,
}

impl<'h, H: Heap> Model<'h, H> {
    fn new(heap: &'h H, arena: &TestArena) -> Self {
        Model {
            heap,
            lo: arena.start(),
            hi: arena.start() + arena.len(),
            live: BTreeMap::new(),
            allocated_bytes: 0,
            failures: 0,
            tag: 0,
        }
    }

    fn fill(ptr: usize, size: usize, tag: u8) {
        // SAFETY: the block is live, owned by the model and `size` bytes long.
        let bytes = unsafe { core::slice::from_raw_parts_mut(ptr as *mut u8, size) };
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = tag ^ (i as u8).wrapping_mul(31);
        }
    }

    fn verify(ptr: usize, size: usize, tag: u8) {
        // SAFETY: as in `fill`.
        let bytes = unsafe { core::slice::from_raw_parts(ptr as *const u8, size) };
        for (i, &b) in bytes.iter().enumerate() {
            assert_eq!(
                b,
                tag ^ (i as u8).wrapping_mul(31),
                "block {ptr:#x} ({size} B) lost its content at byte {i}"
            );
        }
    }

    /// Checks a new block against the arena, its alignment and its neighbours.
    fn admit(&mut self, ptr: usize, size: usize, align: usize) {
        assert_eq!(ptr % align, 0, "block {ptr:#x} not aligned to {align}");
        assert!(
            ptr >= self.lo && ptr + size <= self.hi,
            "block {ptr:#x}+{size} outside the arena [{:#x}, {:#x})",
            self.lo,
            self.hi
        );
        if let Some((&p, b)) = self.live.range(..=ptr).next_back() {
            assert!(
                p + b.size <= ptr,
                "block {ptr:#x} overlaps live {p:#x}+{}",
                b.size
            );
        }
        if let Some((&p, _)) = self.live.range(ptr..).next() {
            assert!(
                ptr + size <= p,
                "block {ptr:#x}+{size} overlaps live {p:#x}"
            );
        }
        self.tag = self.tag.wrapping_add(1);
        Self::fill(ptr, size, self.tag);
        self.live.insert(
            ptr,
            Block {
                size,
                align,
                tag: self.tag,
            },
        );
        self.allocated_bytes += size;
    }

    fn alloc(&mut self, size: usize, align: usize) -> Option<usize> {
        let layout = Layout::from_size_align(size, align).expect("valid layout");
        // SAFETY: a valid layout with a non-zero size.
        let p = unsafe { self.heap.alloc(layout) } as usize;
        if p == 0 {
            self.failures += 1;
            return None;
        }
        self.admit(p, size, align);
        Some(p)
    }

    fn free(&mut self, ptr: usize) {
        let b = self.live.remove(&ptr).expect("a live block");
        Self::verify(ptr, b.size, b.tag);
        let layout = Layout::from_size_align(b.size, b.align).expect("valid layout");
        // SAFETY: a live block of this heap, allocated with this layout.
        unsafe { self.heap.dealloc(ptr as *mut u8, layout) };
    }

    fn realloc(&mut self, ptr: usize, new_size: usize) {
        let b = self.live.remove(&ptr).expect("a live block");
        Self::verify(ptr, b.size, b.tag);
        let layout = Layout::from_size_align(b.size, b.align).expect("valid layout");
        // SAFETY: a live block of this heap with this layout; new_size is non-zero.
        let p = unsafe { self.heap.realloc(ptr as *mut u8, layout, new_size) } as usize;
        if p == 0 {
            // The old block is untouched and still ours.
            self.failures += 1;
            self.live.insert(ptr, b);
            return;
        }
        Self::verify(p, b.size.min(new_size), b.tag);
        self.admit(p, new_size, b.align);
    }

    fn pick(&self, rng: &mut Rng) -> Option<usize> {
        let n = self.live.len();
        (n > 0).then(|| {
            *self
                .live
                .keys()
                .nth(rng.below(n as u64) as usize)
                .expect("in range")
        })
    }

    fn free_all(&mut self, rng: &mut Rng) {
        while let Some(p) = self.pick(rng) {
            self.free(p);
        }
    }
}

/// Runs the whole suite on heaps made by `make`, each given a fresh arena.
///
/// - For [`Reuse::Full`]: eight seeds of 4,000 random operations (allocations of 1 B .. 64 KiB
///   with alignments up to 4 KiB, frees in random order, growing and shrinking `realloc`s) on a
///   1 MiB arena, all on one heap; after each, everything is freed and one block of a quarter
///   of the arena must fit again. Across the seeds the heap hands out many times its size, so
///   freed memory is really reused.
/// - For [`Reuse::LastOnly`]: stack-ordered allocation and freeing (without alignment padding)
///   reuses memory, and random allocation runs until exhaustion without a bad block.
pub fn check_heap<H: Heap>(make: impl Fn() -> H, reuse: Reuse) {
    let arena = TestArena::new(1 << 20);
    let heap = make();
    // SAFETY: the arena is ours and outlives the heap's use in this function.
    let taken = unsafe { heap.add_region(arena.start(), arena.len()) };
    assert!(
        taken > arena.len() / 2,
        "the heap took only {taken} B of the arena"
    );
    let mut m = Model::new(&heap, &arena);
    match reuse {
        Reuse::Full => {
            for seed in 1..=8u64 {
                let mut rng = Rng::new(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                for _ in 0..4000 {
                    match rng.below(100) {
                        0..=54 => {
                            let size = rng.size(64 * 1024);
                            let align = 1 << rng.below(13);
                            m.alloc(size, align);
                        }
                        55..=84 => {
                            if let Some(p) = m.pick(&mut rng) {
                                m.free(p);
                            }
                        }
                        _ => {
                            if let Some(p) = m.pick(&mut rng) {
                                let new = rng.size(64 * 1024);
                                m.realloc(p, new);
                            }
                        }
                    }
                }
                m.free_all(&mut rng);
                let big = m.alloc(arena.len() / 4, 4096);
                assert!(
                    big.is_some(),
                    "seed {seed}: after freeing everything a quarter of the arena does not fit"
                );
                m.free(big.expect("checked"));
            }
            assert!(
                m.allocated_bytes > 4 * arena.len(),
                "the workload handed out only {} B",
                m.allocated_bytes
            );
        }
        Reuse::LastOnly => {
            let mut rng = Rng::new(7);
            let mut stack = Vec::new();
            for _ in 0..10_000 {
                if stack.is_empty() || rng.below(2) == 0 {
                    // Multiples of 8 at alignment 8: no padding, which a bump heap cannot
                    // give back.
                    let size = rng.size(4096).next_multiple_of(8);
                    if let Some(p) = m.alloc(size, 8) {
                        stack.push(p);
                    }
                } else if let Some(p) = stack.pop() {
                    m.free(p);
                }
            }
            assert_eq!(m.failures, 0, "stack-ordered use ran out of memory");
            while let Some(p) = stack.pop() {
                m.free(p);
            }
            let all = m.alloc(arena.len() / 2, 8);
            assert!(
                all.is_some(),
                "freeing in stack order did not give memory back"
            );
            while m.alloc(rng.size(8192), 1 << rng.below(13)).is_some() {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::alloc::GlobalAlloc;
    use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    /// A broken heap: every free rewinds to the start, so live blocks get handed out again.
    #[derive(Default)]
    struct Rewinding {
        start: AtomicUsize,
        next: AtomicUsize,
        end: AtomicUsize,
    }

    // SAFETY: not sound on purpose (frees rewind over live blocks); only the model touches it.
    unsafe impl GlobalAlloc for Rewinding {
        unsafe fn alloc(&self, l: Layout) -> *mut u8 {
            let p = self.next.load(Relaxed).next_multiple_of(l.align());
            if p + l.size() > self.end.load(Relaxed) {
                return core::ptr::null_mut();
            }
            self.next.store(p + l.size(), Relaxed);
            p as *mut u8
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
            self.next.store(self.start.load(Relaxed), Relaxed);
        }
    }

    impl Heap for Rewinding {
        unsafe fn add_region(&self, start: usize, size: usize) -> usize {
            self.start.store(start, Relaxed);
            self.next.store(start, Relaxed);
            self.end.store(start + size, Relaxed);
            size
        }
    }

    #[test]
    #[should_panic(expected = "overlaps live")]
    fn a_heap_that_reuses_live_memory_fails() {
        check_heap(Rewinding::default, Reuse::Full);
    }

    #[test]
    fn rng_sizes_span_the_range() {
        let mut r = Rng::new(1);
        let sizes: Vec<usize> = (0..10_000).map(|_| r.size(1 << 20)).collect();
        assert!(sizes.iter().all(|&s| (1..=1 << 20).contains(&s)));
        assert!(sizes.iter().any(|&s| s < 16));
        assert!(sizes.iter().any(|&s| s > 1 << 19));
    }
}
