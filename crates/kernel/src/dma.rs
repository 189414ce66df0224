//! DMA memory for device drivers (virtio rings and buffers; the virtio glue implements
//! `virtio_drivers::Hal` on these): page-aligned, zeroed, physically contiguous runs of pages
//! from the kernel heap's frames ([`crate::frames`]), so DMA memory and the heap share all free
//! RAM and a leak shows in [`dma_bytes_in_use`] as well as in the heap's statistics.
//!
//! Addresses: on KVM-class monitors (and Xen PVH) the kernel's tables map all RAM at its own
//! physical address, so a heap block's virtual address *is* the guest-physical address the
//! device is given, and a run of frames contiguous in the heap is contiguous in guest-physical
//! memory. [`phys_to_virt`] and [`virt_to_phys`] are the identity there. A Xen PV guest has no
//! such identity (its pseudo-physical frames map to scattered machine frames, and its devices
//! are split drivers that share pages by grant reference, not by bus address): a PV image would
//! need machine-contiguous frames (`XENMEM_exchange`) and the P2M table to translate, so
//! [`dma_alloc`] refuses there (returns `None`).

use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use heap::{FRAME_SIZE, FrameAllocator, Frames};

/// Bytes of DMA memory handed out and not yet given back.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// `pages` zeroed, contiguous 4 KiB pages for a device to read and write: their
/// guest-physical address (what the device is given) and their address for the CPU. `None`
/// when `pages` is 0, memory ran out, the image has no heap, or the platform has no
/// identity-mapped RAM (Xen PV). Give them back with [`dma_dealloc`].
pub fn dma_alloc(pages: usize) -> Option<(u64, NonNull<u8>)> {
    if !crate::select::IDENTITY_DMA || pages == 0 {
        return None;
    }
    let frames = crate::frames().alloc_frames_zeroed(pages)?;
    let len = frames.len();
    let virt = NonNull::new(frames.as_ptr())?;
    // `frames` is now owned by the caller through (phys, virt, pages); `Frames` has no drop.
    IN_USE.fetch_add(len, Ordering::Relaxed);
    Some((virt_to_phys(virt.as_ptr()), virt))
}

/// Gives back pages from [`dma_alloc`].
///
/// # Safety
/// `phys`, `virt` and `pages` are exactly what one [`dma_alloc`] call returned and was given,
/// not given back before, and no device or CPU uses the memory any more (the device was reset
/// or its queue detached).
pub unsafe fn dma_dealloc(phys: u64, virt: NonNull<u8>, pages: usize) {
    debug_assert_eq!(
        phys,
        virt_to_phys(virt.as_ptr()),
        "DMA pages given back elsewhere"
    );
    // SAFETY: by the caller's promise these are `pages` frames from `dma_alloc`, which took
    // them from `crate::frames()`, and nothing uses them.
    unsafe { crate::frames().free_frames(Frames::from_raw(virt, pages)) };
    IN_USE.fetch_sub(pages * FRAME_SIZE, Ordering::Relaxed);
}

/// The CPU's address of guest-physical `phys` (RAM the kernel maps: identity).
pub fn phys_to_virt(phys: u64) -> NonNull<u8> {
    NonNull::new(phys as *mut u8).unwrap_or(NonNull::dangling())
}

/// The guest-physical address of the CPU's `virt` (a buffer in RAM the kernel maps, such as a
/// heap block the driver shares with a device: identity).
pub fn virt_to_phys(virt: *const u8) -> u64 {
    virt as u64
}

/// Bytes of DMA memory in use (handed out by [`dma_alloc`], not yet given back): for leak
/// checks.
pub fn dma_bytes_in_use() -> usize {
    IN_USE.load(Ordering::Relaxed)
}
