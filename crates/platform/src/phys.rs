//! Read access to physical memory, so that parsers of firmware structures (start info, ACPI
//! tables) run on the host against fake memory and in the kernel against the identity map.

use core::fmt;

/// Physical memory at this address cannot be read (not mapped, out of range).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unreadable(pub u64);

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "physical address {:#x} cannot be read", self.0)
    }
}

impl core::error::Error for Unreadable {}

/// Read access to physical memory.
pub trait PhysRead {
    /// Fills `buf` from physical address `paddr`, or fails when that memory is not readable.
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), Unreadable>;

    /// Reads a little-endian `u8`.
    fn read_u8(&self, paddr: u64) -> Result<u8, Unreadable> {
        let mut b = [0; 1];
        self.read(paddr, &mut b)?;
        Ok(b[0])
    }
    /// Reads a little-endian `u16`.
    fn read_u16(&self, paddr: u64) -> Result<u16, Unreadable> {
        let mut b = [0; 2];
        self.read(paddr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }
    /// Reads a little-endian `u32`.
    fn read_u32(&self, paddr: u64) -> Result<u32, Unreadable> {
        let mut b = [0; 4];
        self.read(paddr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }
    /// Reads a little-endian `u64`.
    fn read_u64(&self, paddr: u64) -> Result<u64, Unreadable> {
        let mut b = [0; 8];
        self.read(paddr, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

/// Fake physical memory for host tests: bytes at a base address, unreadable elsewhere.
#[cfg(any(test, feature = "test-utils"))]
#[derive(Debug, Clone)]
pub struct FakeMemory {
    base: u64,
    bytes: std::vec::Vec<u8>,
}

#[cfg(any(test, feature = "test-utils"))]
impl FakeMemory {
    /// `size` zero bytes at `base`.
    pub fn new(base: u64, size: usize) -> Self {
        FakeMemory {
            base,
            bytes: std::vec![0; size],
        }
    }
    /// Writes `data` at physical address `at` (panics outside the fake memory: a test bug).
    pub fn put(&mut self, at: u64, data: &[u8]) {
        let o = (at - self.base) as usize;
        self.bytes[o..o + data.len()].copy_from_slice(data);
    }
    /// Writes a little-endian `u16`.
    pub fn put_u16(&mut self, at: u64, v: u16) {
        self.put(at, &v.to_le_bytes());
    }
    /// Writes a little-endian `u32`.
    pub fn put_u32(&mut self, at: u64, v: u32) {
        self.put(at, &v.to_le_bytes());
    }
    /// Writes a little-endian `u64`.
    pub fn put_u64(&mut self, at: u64, v: u64) {
        self.put(at, &v.to_le_bytes());
    }
    /// The bytes at `[at, at + len)`.
    pub fn get(&self, at: u64, len: usize) -> &[u8] {
        let o = (at - self.base) as usize;
        &self.bytes[o..o + len]
    }
}

#[cfg(any(test, feature = "test-utils"))]
impl PhysRead for FakeMemory {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        let o = paddr.checked_sub(self.base).ok_or(Unreadable(paddr))? as usize;
        let src = self
            .bytes
            .get(o..o.saturating_add(buf.len()))
            .ok_or(Unreadable(paddr))?;
        buf.copy_from_slice(src);
        Ok(())
    }
}
