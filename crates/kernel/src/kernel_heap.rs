//! The kernel's wrapper around the selected heap: statistics kept the same way for every
//! implementation ([`heap::Counted`]), a failed allocation turned into a clear panic (size,
//! alignment and the heap's statistics), and every call made with interrupts masked.
//!
//! Masking matters once threads are preempted: a thread interrupted while it holds the heap's
//! lock would otherwise deadlock the timer tick (which allocates: timers, stacks to free) or
//! the next thread. With interrupts masked around each call the lock is never held when an
//! interrupt arrives. (On more CPUs the lock still serializes them; masking only keeps the
//! holder from being switched away.)
//!
//! With more than one CPU (`config::CPUS > 1`) small requests (up to 256 bytes, alignment up to
//! 16) go through per-CPU caches of free blocks ([`heap::CpuCaches`]) first, so most of them
//! never take the heap's lock; masking is what makes a CPU's cache its own during a call. With
//! one CPU there are no caches and the code is as before.
//!
//! Generic over the heap and the platform (which masks interrupts): `select.rs` names both,
//! and this file names no selected type.

use crate::config;
use core::alloc::{GlobalAlloc, Layout};
use core::marker::PhantomData;
use heap::{Counted, CpuCaches, FrameAllocator, Frames, Heap, HeapStats};
use platform::Platform;

/// Runs `f` with interrupts masked.
fn masked<P: Platform, R>(f: impl FnOnce() -> R) -> R {
    let irq = P::interrupts_disable();
    let r = f();
    P::interrupts_restore(irq);
    r
}

/// CPUs with a cache of their own: none with one CPU.
const CACHED_CPUS: usize = if config::CPUS > 1 { config::CPUS } else { 0 };

/// The calling CPU (a GS-relative read on x86-64; called with interrupts masked, so the
/// thread cannot move to another CPU meanwhile).
fn cpu<P: Platform>() -> usize {
    P::current_cpu().0 as usize
}

/// The heap `H`, counted, reporting failed allocations as a clear panic, every call made with
/// `P`'s interrupts masked; with more than one CPU, small blocks cached per CPU.
#[derive(Debug)]
pub struct KernelHeap<H, P>(Counted<H>, PhantomData<fn() -> P>);

/// The per-CPU caches of the kernel's one heap ([`crate::select::HEAP`]; a second
/// `KernelHeap` with more than one CPU would share them: there is none). Apart from the heap,
/// so that with one CPU the heap's static is exactly as before (the caches are then empty).
static CACHES: CpuCaches<CACHED_CPUS> = CpuCaches::new();

impl<H: Heap, P: Platform> KernelHeap<H, P> {
    /// Wraps a heap.
    pub const fn new(heap: H) -> Self {
        KernelHeap(Counted::new(heap), PhantomData)
    }

    /// The heap without the panic and without masking interrupts: for boot, before
    /// interrupts are ever enabled (giving the heap its regions).
    pub fn counted(&self) -> &Counted<H> {
        &self.0
    }

    /// The heap's statistics (blocks in the per-CPU caches are not in use).
    pub fn stats(&self) -> HeapStats {
        if config::CPUS > 1 {
            CACHES.stats(&self.0)
        } else {
            self.0.stats()
        }
    }
}

// SAFETY: every call is forwarded to the selected implementation, which upholds the GlobalAlloc
// contract, through the per-CPU caches when there are any (which hand out only free heap blocks
// of at least the request's size and alignment, each to one caller); a null result becomes a
// panic (it is never returned to the caller). The caches' own condition holds: every call runs
// with interrupts masked on the CPU it names, so no other call naming that CPU runs meanwhile,
// and every block of the heap but frames (never of a cached size) goes through them.
unsafe impl<H: Heap, P: Platform> GlobalAlloc for KernelHeap<H, P> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = masked::<P, _>(|| unsafe {
            if config::CPUS > 1 {
                // Interrupts are masked: this CPU's cache is ours during the call.
                CACHES.alloc(&self.0, cpu::<P>(), layout)
            } else {
                self.0.try_alloc(layout)
            }
        });
        if p.is_null() {
            out_of_memory(layout, self.stats());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = masked::<P, _>(|| unsafe {
            if config::CPUS > 1 {
                CACHES.alloc_zeroed(&self.0, cpu::<P>(), layout)
            } else {
                self.0.try_alloc_zeroed(layout)
            }
        });
        if p.is_null() {
            out_of_memory(layout, self.stats());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded; `ptr` came from this allocator with this layout.
        masked::<P, _>(|| unsafe {
            if config::CPUS > 1 {
                CACHES.dealloc(&self.0, cpu::<P>(), ptr, layout)
            } else {
                self.0.dealloc(ptr, layout)
            }
        })
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's block, layout and size.
        let p = masked::<P, _>(|| unsafe {
            if config::CPUS > 1 {
                CACHES.realloc(&self.0, cpu::<P>(), ptr, layout, new_size)
            } else {
                self.0.try_realloc(ptr, layout, new_size)
            }
        });
        if p.is_null() {
            // `new_size` with the old alignment is a valid layout (GlobalAlloc::realloc's
            // contract), so this cannot fail; the old layout is reported if it did.
            out_of_memory(
                Layout::from_size_align(new_size, layout.align()).unwrap_or(layout),
                self.stats(),
            );
        }
        p
    }
}

// SAFETY: forwarded to `Counted`, whose frames uphold the contract; masking changes nothing
// about them. Running out of frames is `None` here (the caller's error), never a panic.
unsafe impl<H: Heap, P: Platform> FrameAllocator for KernelHeap<H, P> {
    fn alloc_frames(&self, count: usize) -> Option<Frames> {
        masked::<P, _>(|| self.0.alloc_frames(count))
    }

    unsafe fn free_frames(&self, frames: Frames) {
        // SAFETY: forwarded to the caller.
        masked::<P, _>(|| unsafe { self.0.free_frames(frames) })
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
