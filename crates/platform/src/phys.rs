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

/// Fake physical memory for host tests: bytes in one or more regions, unreadable elsewhere.
#[cfg(any(test, feature = "test-utils"))]
#[derive(Debug, Clone)]
pub struct FakeMemory {
    /// `(base, bytes)`, not overlapping.
    regions: std::vec::Vec<(u64, std::vec::Vec<u8>)>,
}

#[cfg(any(test, feature = "test-utils"))]
impl FakeMemory {
    /// `size` zero bytes at `base`.
    pub fn new(base: u64, size: usize) -> Self {
        FakeMemory {
            regions: std::vec![(base, std::vec![0; size])],
        }
    }
    /// Adds `size` zero bytes at `base` (e.g. the last page of the address space, where a
    /// structure that runs past 2^64 would lie). `base + size` may be 2^64.
    pub fn with_region(mut self, base: u64, size: usize) -> Self {
        self.regions.push((base, std::vec![0; size]));
        self
    }
    /// The region and offset of `[at, at + len)`, if one region holds all of it.
    fn find(&self, at: u64, len: usize) -> Option<(usize, usize)> {
        self.regions
            .iter()
            .enumerate()
            .find_map(|(i, (base, bytes))| {
                let o = usize::try_from(at.checked_sub(*base)?).ok()?;
                (o.checked_add(len)? <= bytes.len()).then_some((i, o))
            })
    }
    /// Writes `data` at physical address `at` (panics outside the fake memory: a test bug).
    pub fn put(&mut self, at: u64, data: &[u8]) {
        assert!(
            self.try_put(at, data),
            "{at:#x}+{} is outside the fake memory",
            data.len()
        );
    }
    /// Writes `data` at `at` when one region holds all of it; false (nothing written) otherwise.
    pub fn try_put(&mut self, at: u64, data: &[u8]) -> bool {
        let Some((i, o)) = self.find(at, data.len()) else {
            return false;
        };
        self.regions[i].1[o..o + data.len()].copy_from_slice(data);
        true
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
    /// The bytes at `[at, at + len)` (panics outside the fake memory: a test bug).
    pub fn get(&self, at: u64, len: usize) -> &[u8] {
        let (i, o) = self
            .find(at, len)
            .unwrap_or_else(|| panic!("{at:#x}+{len} is outside the fake memory"));
        &self.regions[i].1[o..o + len]
    }
}

#[cfg(any(test, feature = "test-utils"))]
impl PhysRead for FakeMemory {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), Unreadable> {
        let (i, o) = self.find(paddr, buf.len()).ok_or(Unreadable(paddr))?;
        buf.copy_from_slice(&self.regions[i].1[o..o + buf.len()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_memory_regions_reach_the_top_of_the_address_space() {
        let mut m = FakeMemory::new(0x1000, 16).with_region(u64::MAX - 7, 8);
        m.put_u32(0x1004, 0xdead_beef);
        assert_eq!(m.read_u32(0x1004), Ok(0xdead_beef));
        assert_eq!(
            m.read_u32(0x100e),
            Err(Unreadable(0x100e)),
            "straddles the end"
        );
        assert_eq!(m.read_u8(0xfff), Err(Unreadable(0xfff)));
        m.put(u64::MAX - 1, &[1, 2]);
        assert_eq!(m.read_u16(u64::MAX - 1), Ok(0x0201));
        assert_eq!(m.read_u32(u64::MAX - 1), Err(Unreadable(u64::MAX - 1)));
        assert!(!m.try_put(u64::MAX, &[1, 2]));
        assert_eq!(m.get(u64::MAX - 7, 8), &[0, 0, 0, 0, 0, 0, 1, 2]);
    }
}
