//! virtio-drivers' [`Hal`] on host memory, for the drivers' host tests: physical addresses are
//! host addresses, DMA pages come zeroed from the global allocator, and [`dma_pages`] counts
//! what is allocated and not freed on the calling thread (a test checks that a driver frees
//! what it took).

use core::cell::Cell;
use core::ptr::NonNull;
use std::alloc::{Layout, alloc_zeroed, dealloc};
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

std::thread_local! {
    /// DMA pages allocated and not freed, on this thread.
    static DMA_PAGES: Cell<usize> = const { Cell::new(0) };
}

/// DMA pages allocated and not freed on this thread.
pub fn dma_pages() -> usize {
    DMA_PAGES.with(Cell::get)
}

/// The host-memory `Hal`.
#[derive(Debug)]
pub struct HostHal;

fn dma_layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("layout")
}

// SAFETY: pages come from the global allocator, zeroed, page-aligned, owned until dealloc;
// physical addresses are the host addresses.
unsafe impl Hal for HostHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout is not zero-sized (pages > 0 for every caller).
        let p = unsafe { alloc_zeroed(dma_layout(pages)) };
        let p = NonNull::new(p).expect("host memory");
        DMA_PAGES.with(|c| c.set(c.get() + pages));
        (p.as_ptr() as PhysAddr, p)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: allocated by `dma_alloc` with the same layout.
        unsafe { dealloc(vaddr.as_ptr(), dma_layout(pages)) };
        DMA_PAGES.with(|c| c.set(c.get() - pages));
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        NonNull::new(paddr as *mut u8).expect("not null")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
