//! Guard pages: a stack's lowest page made inaccessible through the platform, with page-table
//! frames from the heap. Used by the thread runtime's machine (`threads.rs`) and the facade's
//! test hooks (through `boot.rs`); a module of its own so that neither needs the other.

use crate::select::{HEAP, SelectedPlatform};
use platform::Platform;

/// Unmaps the 4 KiB page at `page` (a stack guard), splitting a larger mapping with a page-table
/// frame from the frame allocator where needed. Returns whether the page is now unmapped.
///
/// # Safety
/// `page` is page-aligned heap memory the caller owns (e.g. the lowest frame of a stack it
/// allocated), and nothing touches it until [`unguard_page`].
pub unsafe fn guard_page(page: u64) -> bool {
    use heap::FrameAllocator as _;
    let mut table = || {
        HEAP.alloc_frames_zeroed(1)
            .map(|frames| frames.addr() as u64)
    };
    // SAFETY: forwarded to the caller; page tables taken here are never given back (they map
    // the page's neighbours from now on).
    unsafe { SelectedPlatform::unmap_page(page, &mut table) }
}

/// Maps a page [`guard_page`] unmapped again, read-write.
///
/// # Safety
/// `page` was unmapped by [`guard_page`] and not remapped since.
pub unsafe fn unguard_page(page: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { SelectedPlatform::remap_page(page) }
}
