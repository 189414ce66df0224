//! Page-granular memory: the [`FrameAllocator`] interface and the [`Frames`] it hands out.

use core::ptr::NonNull;

/// Size and alignment of a frame.
pub const FRAME_SIZE: usize = 4096;

/// `count` contiguous frames, owned: give them back with [`FrameAllocator::free_frames`]
/// (dropping them leaks them). The address is virtual; on the KVM platform and Xen PVH it is
/// also the guest-physical address (RAM is identity-mapped).
#[derive(Debug, PartialEq, Eq)]
pub struct Frames {
    start: NonNull<u8>,
    count: usize,
}

// SAFETY: `Frames` owns its memory exclusively (like a `Box<[u8]>`), so moving it to another
// thread moves the ownership with it.
unsafe impl Send for Frames {}

impl Frames {
    /// Takes ownership of `count` frames at `start`.
    ///
    /// # Safety
    /// `start` is FRAME_SIZE-aligned and `count * FRAME_SIZE` bytes from it are RAM, mapped
    /// read-write, owned by the caller, and given back to the allocator they came from.
    pub const unsafe fn from_raw(start: NonNull<u8>, count: usize) -> Self {
        Frames { start, count }
    }

    /// The first byte.
    pub fn as_ptr(&self) -> *mut u8 {
        self.start.as_ptr()
    }

    /// The address of the first byte.
    pub fn addr(&self) -> usize {
        self.start.as_ptr() as usize
    }

    /// How many frames.
    pub fn count(&self) -> usize {
        self.count
    }

    /// How many bytes.
    pub fn len(&self) -> usize {
        self.count * FRAME_SIZE
    }

    /// True for zero frames (never handed out by an allocator).
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// An allocator of page-granular memory: thread stacks, DMA buffers, Xen grant pages, page
/// tables.
///
/// # Safety
/// Implementations promise that every [`Frames`] they return is FRAME_SIZE-aligned, `count`
/// frames long, RAM mapped read-write, disjoint from every other live allocation (frames or
/// heap), and stays so until given back with [`FrameAllocator::free_frames`].
pub unsafe trait FrameAllocator: Sync {
    /// `count` contiguous frames with unspecified content; `None` when there is no room (or
    /// `count` is 0).
    fn alloc_frames(&self, count: usize) -> Option<Frames>;

    /// `count` contiguous zeroed frames.
    fn alloc_frames_zeroed(&self, count: usize) -> Option<Frames> {
        let frames = self.alloc_frames(count)?;
        // SAFETY: the frames are ours, mapped read-write and `len()` bytes long.
        unsafe { core::ptr::write_bytes(frames.as_ptr(), 0, frames.len()) };
        Some(frames)
    }

    /// Gives frames back.
    ///
    /// # Safety
    /// `frames` came from this allocator, and nothing uses the memory any more.
    unsafe fn free_frames(&self, frames: Frames);
}
