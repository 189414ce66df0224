//! Access to a page shared with another domain (a ring page, the grant table), behind a trait
//! so the same service code runs on a real page and on a fake in host tests.

/// A region of memory shared with another domain (Xen, dom0's xenstored or xenconsoled, a
/// backend driver).
///
/// Contract for implementations:
/// - offsets are bytes from the start of the region; an access with `offset + size > len()`
///   MUST panic (it is a bug in the caller, never data from the other side);
/// - every access is a single volatile access of that width (the other side may change the
///   memory at any time; the compiler must neither merge, split nor elide accesses);
/// - [`SharedMemory::fence`] is a full memory barrier: accesses before it are visible to the
///   other side before accesses after it.
pub trait SharedMemory {
    /// The region's length in bytes.
    fn len(&self) -> usize;
    /// `len() == 0`.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads the byte at `offset`.
    fn read_u8(&self, offset: usize) -> u8;
    /// Writes the byte at `offset`.
    fn write_u8(&self, offset: usize, value: u8);
    /// Reads the little-endian, 4-byte aligned `u32` at `offset`.
    fn read_u32(&self, offset: usize) -> u32;
    /// Writes the `u32` at `offset`.
    fn write_u32(&self, offset: usize, value: u32);
    /// Reads the 2-byte aligned `u16` at `offset`.
    fn read_u16(&self, offset: usize) -> u16;
    /// Writes the `u16` at `offset`.
    fn write_u16(&self, offset: usize, value: u16);
    /// Atomically: if the `u16` at `offset` is `current`, store `new`. Returns the value found.
    fn compare_exchange_u16(&self, offset: usize, current: u16, new: u16) -> u16;
    /// A full memory barrier.
    fn fence(&self);
    /// Copies `buf.len()` bytes from `offset` into `buf` (bulk data, such as a packet in a
    /// granted page; the indices and fields that say where it is go through the methods
    /// above). Out of bounds is the caller's bug, as for every access.
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.read_u8(offset + i);
        }
    }
    /// Copies `data` to `offset`.
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        for (i, b) in data.iter().enumerate() {
            self.write_u8(offset + i, *b);
        }
    }
}

impl<T: SharedMemory + ?Sized> SharedMemory for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn read_u8(&self, offset: usize) -> u8 {
        (**self).read_u8(offset)
    }
    fn write_u8(&self, offset: usize, value: u8) {
        (**self).write_u8(offset, value)
    }
    fn read_u32(&self, offset: usize) -> u32 {
        (**self).read_u32(offset)
    }
    fn write_u32(&self, offset: usize, value: u32) {
        (**self).write_u32(offset, value)
    }
    fn read_u16(&self, offset: usize) -> u16 {
        (**self).read_u16(offset)
    }
    fn write_u16(&self, offset: usize, value: u16) {
        (**self).write_u16(offset, value)
    }
    fn compare_exchange_u16(&self, offset: usize, current: u16, new: u16) -> u16 {
        (**self).compare_exchange_u16(offset, current, new)
    }
    fn fence(&self) {
        (**self).fence()
    }
    fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
        (**self).read_bytes(offset, buf)
    }
    fn write_bytes(&self, offset: usize, data: &[u8]) {
        (**self).write_bytes(offset, data)
    }
}

/// A real shared page: volatile accesses through a raw pointer.
#[allow(unsafe_code)]
pub mod raw {
    use super::SharedMemory;
    use core::ptr::NonNull;
    use core::sync::atomic::{AtomicU16, Ordering, fence};

    /// Memory at a fixed address, shared with another domain.
    #[derive(Debug)]
    pub struct RawShared {
        base: NonNull<u8>,
        len: usize,
    }

    // SAFETY: `RawShared::new`'s contract makes `[base, base + len)` valid for reads and
    // writes for the value's whole lifetime, on any CPU; moving the handle moves no memory.
    unsafe impl Send for RawShared {}

    impl RawShared {
        /// # Safety
        /// `base` must be 4-byte aligned and `[base, base + len)` mapped, readable and
        /// writable for as long as the value lives, and used by nothing else in this domain
        /// except through `RawShared` values (the other domain may change it at any time).
        pub unsafe fn new(base: NonNull<u8>, len: usize) -> RawShared {
            RawShared { base, len }
        }

        /// Where the memory starts.
        pub fn base(&self) -> NonNull<u8> {
            self.base
        }

        fn at<T>(&self, offset: usize) -> *mut T {
            let size = core::mem::size_of::<T>();
            assert!(
                offset.checked_add(size).is_some_and(|end| end <= self.len),
                "shared memory access at {offset:#x}+{size} beyond {:#x}",
                self.len
            );
            assert!(
                offset.is_multiple_of(size),
                "misaligned shared memory access at {offset:#x}"
            );
            self.base.as_ptr().wrapping_add(offset).cast()
        }

        fn span(&self, offset: usize, len: usize) -> *mut u8 {
            assert!(
                offset.checked_add(len).is_some_and(|end| end <= self.len),
                "shared memory copy at {offset:#x}+{len} beyond {:#x}",
                self.len
            );
            self.base.as_ptr().wrapping_add(offset)
        }
    }

    impl SharedMemory for RawShared {
        fn len(&self) -> usize {
            self.len
        }
        fn read_u8(&self, offset: usize) -> u8 {
            let p = self.at::<u8>(offset);
            // SAFETY: in bounds (checked by `at`) of memory valid per `new`'s contract.
            unsafe { p.read_volatile() }
        }
        fn write_u8(&self, offset: usize, value: u8) {
            let p = self.at::<u8>(offset);
            // SAFETY: in bounds (checked by `at`) of memory valid per `new`'s contract.
            unsafe { p.write_volatile(value) }
        }
        fn read_u32(&self, offset: usize) -> u32 {
            let p = self.at::<u32>(offset);
            // SAFETY: in bounds and aligned (checked by `at`), valid per `new`'s contract.
            unsafe { p.read_volatile() }
        }
        fn write_u32(&self, offset: usize, value: u32) {
            let p = self.at::<u32>(offset);
            // SAFETY: in bounds and aligned (checked by `at`), valid per `new`'s contract.
            unsafe { p.write_volatile(value) }
        }
        fn read_u16(&self, offset: usize) -> u16 {
            let p = self.at::<u16>(offset);
            // SAFETY: in bounds and aligned (checked by `at`), valid per `new`'s contract.
            unsafe { p.read_volatile() }
        }
        fn write_u16(&self, offset: usize, value: u16) {
            let p = self.at::<u16>(offset);
            // SAFETY: in bounds and aligned (checked by `at`), valid per `new`'s contract.
            unsafe { p.write_volatile(value) }
        }
        fn compare_exchange_u16(&self, offset: usize, current: u16, new: u16) -> u16 {
            let p = self.at::<u16>(offset);
            // SAFETY: in bounds and aligned (checked by `at`), valid per `new`'s contract;
            // AtomicU16 has the layout of u16, and the other side only uses atomic
            // instructions or plain stores on this word.
            let a = unsafe { AtomicU16::from_ptr(p) };
            match a.compare_exchange(current, new, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(v) | Err(v) => v,
            }
        }
        fn fence(&self) {
            fence(Ordering::SeqCst);
        }
        fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
            let p = self.span(offset, buf.len());
            // SAFETY: in bounds (checked by `span`) of memory valid per `new`'s contract, and
            // `buf` is ours, so the two do not overlap. The other domain may write the bytes
            // meanwhile (it owns them only while a request is outstanding): the copy then holds
            // whatever it wrote, which is untrusted data either way.
            unsafe { core::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) }
        }
        fn write_bytes(&self, offset: usize, data: &[u8]) {
            let p = self.span(offset, data.len());
            // SAFETY: in bounds (checked by `span`) of memory valid per `new`'s contract, and
            // `data` is ours, so the two do not overlap.
            unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) }
        }
    }
}

/// A fake shared page in ordinary memory, for host tests: the test plays the other domain
/// through the same [`SharedMemory`] methods.
#[cfg(any(test, feature = "test-utils"))]
pub mod fake {
    use super::SharedMemory;
    use core::cell::RefCell;

    /// `N` bytes of zeroed memory.
    #[derive(Debug)]
    pub struct FakePage<const N: usize> {
        bytes: RefCell<[u8; N]>,
    }

    impl<const N: usize> Default for FakePage<N> {
        fn default() -> Self {
            FakePage {
                bytes: RefCell::new([0; N]),
            }
        }
    }

    impl<const N: usize> FakePage<N> {
        fn check(offset: usize, size: usize) {
            assert!(
                offset + size <= N,
                "fake access at {offset:#x}+{size} beyond {N:#x}"
            );
            assert!(
                offset.is_multiple_of(size),
                "misaligned fake access at {offset:#x}"
            );
        }
    }

    impl<const N: usize> SharedMemory for FakePage<N> {
        fn len(&self) -> usize {
            N
        }
        fn read_u8(&self, offset: usize) -> u8 {
            Self::check(offset, 1);
            self.bytes.borrow()[offset]
        }
        fn write_u8(&self, offset: usize, value: u8) {
            Self::check(offset, 1);
            self.bytes.borrow_mut()[offset] = value;
        }
        fn read_u32(&self, offset: usize) -> u32 {
            Self::check(offset, 4);
            let b = self.bytes.borrow();
            u32::from_le_bytes([b[offset], b[offset + 1], b[offset + 2], b[offset + 3]])
        }
        fn write_u32(&self, offset: usize, value: u32) {
            Self::check(offset, 4);
            self.bytes.borrow_mut()[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
        }
        fn read_u16(&self, offset: usize) -> u16 {
            Self::check(offset, 2);
            let b = self.bytes.borrow();
            u16::from_le_bytes([b[offset], b[offset + 1]])
        }
        fn write_u16(&self, offset: usize, value: u16) {
            Self::check(offset, 2);
            self.bytes.borrow_mut()[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
        }
        fn compare_exchange_u16(&self, offset: usize, current: u16, new: u16) -> u16 {
            let v = self.read_u16(offset);
            if v == current {
                self.write_u16(offset, new);
            }
            v
        }
        fn fence(&self) {}
        fn read_bytes(&self, offset: usize, buf: &mut [u8]) {
            assert!(offset + buf.len() <= N, "fake copy beyond {N:#x}");
            buf.copy_from_slice(&self.bytes.borrow()[offset..offset + buf.len()]);
        }
        fn write_bytes(&self, offset: usize, data: &[u8]) {
            assert!(offset + data.len() <= N, "fake copy beyond {N:#x}");
            self.bytes.borrow_mut()[offset..offset + data.len()].copy_from_slice(data);
        }
    }
}
