//! Physical memory: the platform's memory map and the free memory left once the image, boot
//! structures and page tables are taken out.

use core::fmt;

/// Size of a small page and of the frames [`FreeMemory`] hands out.
pub const PAGE_SIZE: u64 = 4096;
/// Most regions a [`MemoryMap`] (and a [`FreeMemory`]) holds; firmware maps are far smaller.
pub const MEMORY_MAP_MAX: usize = 64;

/// A physical address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PhysAddr(pub u64);

impl fmt::Debug for PhysAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PhysAddr({:#x})", self.0)
    }
}

/// A half-open range of physical addresses `[start, end)`.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Range {
    /// First byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Range {
    /// `[start, end)`; an inverted range is empty.
    pub const fn new(start: u64, end: u64) -> Self {
        Range { start, end }
    }
    /// Bytes in the range.
    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }
    /// True when the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
    /// True when `addr` lies inside.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }
}

impl fmt::Debug for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}, {:#x})", self.start, self.end)
    }
}

/// What a region of the memory map is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryKind {
    /// Usable RAM.
    Ram,
    /// Reserved by firmware or the hypervisor.
    Reserved,
    /// ACPI tables (reclaimable once read).
    Acpi,
    /// ACPI non-volatile storage.
    AcpiNvs,
    /// Faulty RAM.
    Unusable,
    /// A type this kernel does not know (the raw E820 value).
    Other(u32),
}

impl MemoryKind {
    /// The kind of an E820 / `hvm_memmap_table_entry` type value.
    pub const fn from_e820(ty: u32) -> Self {
        match ty {
            1 => MemoryKind::Ram,
            2 => MemoryKind::Reserved,
            3 => MemoryKind::Acpi,
            4 => MemoryKind::AcpiNvs,
            5 => MemoryKind::Unusable,
            other => MemoryKind::Other(other),
        }
    }
}

/// One entry of the memory map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryRegion {
    /// First byte.
    pub start: PhysAddr,
    /// Length in bytes.
    pub size: u64,
    /// What it is.
    pub kind: MemoryKind,
}

impl MemoryRegion {
    /// A region of `size` bytes at `start`.
    pub const fn new(start: PhysAddr, size: u64, kind: MemoryKind) -> Self {
        MemoryRegion { start, size, kind }
    }
    /// The region as an address range (saturating at the top of the address space).
    pub const fn range(&self) -> Range {
        Range::new(self.start.0, self.start.0.saturating_add(self.size))
    }
}

/// Errors of memory-map bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemoryError {
    /// More regions than [`MEMORY_MAP_MAX`].
    TooManyRegions,
    /// No free range is large enough for the request.
    OutOfMemory {
        /// Bytes asked for.
        requested: u64,
    },
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::TooManyRegions => {
                write!(f, "memory map has more than {MEMORY_MAP_MAX} regions")
            }
            MemoryError::OutOfMemory { requested } => {
                write!(f, "no free physical memory for {requested} bytes")
            }
        }
    }
}

impl core::error::Error for MemoryError {}

/// The platform's memory map, in the order the firmware gave it (not necessarily sorted).
#[derive(Clone, Copy)]
pub struct MemoryMap {
    regions: [MemoryRegion; MEMORY_MAP_MAX],
    len: usize,
}

impl Default for MemoryMap {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for MemoryMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.regions()).finish()
    }
}

impl MemoryMap {
    /// An empty map.
    pub const fn new() -> Self {
        MemoryMap {
            regions: [MemoryRegion::new(PhysAddr(0), 0, MemoryKind::Reserved); MEMORY_MAP_MAX],
            len: 0,
        }
    }
    /// Appends a region; fails when the map is full.
    pub fn push(&mut self, region: MemoryRegion) -> Result<(), MemoryError> {
        let slot = self
            .regions
            .get_mut(self.len)
            .ok_or(MemoryError::TooManyRegions)?;
        *slot = region;
        self.len += 1;
        Ok(())
    }
    /// The regions.
    pub fn regions(&self) -> &[MemoryRegion] {
        &self.regions[..self.len]
    }
    /// Bytes of RAM in the map (as the regions say, overlaps counted twice; saturating at
    /// `u64::MAX` for a map whose sizes add up to more than the address space).
    pub fn total_ram(&self) -> u64 {
        self.regions()
            .iter()
            .filter(|r| r.kind == MemoryKind::Ram)
            .fold(0u64, |sum, r| sum.saturating_add(r.size))
    }
}

/// Most ranges a [`DeviceMemory`] holds: the local APIC, the IOAPICs, an ACPI register, the
/// PCI BARs and the virtio-mmio windows the platform found (each merged by page where it can,
/// see [`DeviceMemory::push_merged`]).
pub const DEVICE_MEMORY_MAX: usize = 16;

/// Device memory (MMIO registers) a platform needs mapped. Holds [`DEVICE_MEMORY_MAX`] ranges.
#[derive(Clone, Copy, Debug, Default)]
pub struct DeviceMemory {
    ranges: [Range; DEVICE_MEMORY_MAX],
    len: usize,
}

impl DeviceMemory {
    /// No ranges.
    pub const fn new() -> Self {
        DeviceMemory {
            ranges: [Range::new(0, 0); DEVICE_MEMORY_MAX],
            len: 0,
        }
    }
    /// Adds a range; fails when full.
    pub fn push(&mut self, range: Range) -> Result<(), MemoryError> {
        let slot = self
            .ranges
            .get_mut(self.len)
            .ok_or(MemoryError::TooManyRegions)?;
        *slot = range;
        self.len += 1;
        Ok(())
    }
    /// Adds a range, widening the first one it shares a page with, or lies next to by page
    /// (they are mapped page by page: the result maps the same pages); else as
    /// [`DeviceMemory::push`]. An empty range is not added.
    pub fn push_merged(&mut self, range: Range) -> Result<(), MemoryError> {
        if range.is_empty() {
            return Ok(());
        }
        let pages = |r: &Range| (r.start / PAGE_SIZE, r.end.div_ceil(PAGE_SIZE));
        let (first, end) = pages(&range);
        let len = self.len;
        if let Some(r) = self.ranges[..len].iter_mut().find(|r| {
            let (f, e) = pages(r);
            !r.is_empty() && first <= e && f <= end
        }) {
            r.start = r.start.min(range.start);
            r.end = r.end.max(range.end);
            return Ok(());
        }
        self.push(range)
    }
    /// The ranges.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges[..self.len]
    }
}

/// Free physical memory: RAM minus what is reserved, kept sorted and page aligned.
///
/// Frames come from the lowest free address first ([`FreeMemory::alloc_frames`]), so early page
/// tables sit right after the image and the largest block stays whole for the heap.
#[derive(Clone, Copy)]
pub struct FreeMemory {
    ranges: [Range; MEMORY_MAP_MAX],
    len: usize,
}

impl fmt::Debug for FreeMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.ranges()).finish()
    }
}

impl FreeMemory {
    /// The RAM of `map` at or above `floor`, page aligned inward, sorted, overlaps merged.
    pub fn from_map(map: &MemoryMap, floor: u64) -> Result<Self, MemoryError> {
        let mut free = FreeMemory {
            ranges: [Range::default(); MEMORY_MAP_MAX],
            len: 0,
        };
        for region in map.regions().iter().filter(|r| r.kind == MemoryKind::Ram) {
            let r = region.range();
            let start = align_up(r.start.max(floor));
            let end = r.end & !(PAGE_SIZE - 1);
            if start < end {
                free.insert(Range::new(start, end))?;
            }
        }
        // Reserved entries win over RAM entries that overlap them.
        for region in map.regions().iter().filter(|r| r.kind != MemoryKind::Ram) {
            free.reserve(region.range())?;
        }
        Ok(free)
    }

    /// The free ranges, sorted by address, disjoint.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges[..self.len]
    }

    /// Total free bytes.
    pub fn total(&self) -> u64 {
        self.ranges().iter().map(Range::len).sum()
    }

    /// Takes `range` (widened to whole pages) out of the free memory.
    pub fn reserve(&mut self, range: Range) -> Result<(), MemoryError> {
        if range.is_empty() {
            return Ok(());
        }
        let cut = Range::new(range.start & !(PAGE_SIZE - 1), align_up(range.end));
        let mut i = 0;
        while i < self.len {
            let r = self.ranges[i];
            if cut.end <= r.start || r.end <= cut.start {
                i += 1;
                continue;
            }
            let left = Range::new(r.start, cut.start);
            let right = Range::new(cut.end, r.end);
            match (left.is_empty(), right.is_empty()) {
                (true, true) => {
                    self.remove(i);
                    continue;
                }
                (false, true) => self.ranges[i] = left,
                (true, false) => self.ranges[i] = right,
                (false, false) => {
                    self.ranges[i] = left;
                    self.insert(right)?;
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Allocates `count` contiguous, page-aligned frames at the lowest address that has room.
    pub fn alloc_frames(&mut self, count: u64) -> Result<PhysAddr, MemoryError> {
        let bytes = count.saturating_mul(PAGE_SIZE);
        let i = self
            .ranges()
            .iter()
            .position(|r| r.len() >= bytes)
            .ok_or(MemoryError::OutOfMemory { requested: bytes })?;
        let start = self.ranges[i].start;
        self.ranges[i].start += bytes;
        if self.ranges[i].is_empty() {
            self.remove(i);
        }
        Ok(PhysAddr(start))
    }

    /// Removes and returns the largest free range, cut to at most `cap` bytes (0 = no cap).
    /// Whatever the cap leaves stays free.
    pub fn take_largest(&mut self, cap: u64) -> Option<Range> {
        let (i, _) = self
            .ranges()
            .iter()
            .enumerate()
            .max_by_key(|(i, r)| (r.len(), usize::MAX - i))?;
        let r = self.ranges[i];
        if cap != 0 && r.len() > cap {
            let taken = Range::new(r.start, r.start + (cap & !(PAGE_SIZE - 1)));
            self.ranges[i].start = taken.end;
            Some(taken)
        } else {
            self.remove(i);
            Some(r)
        }
    }

    fn insert(&mut self, range: Range) -> Result<(), MemoryError> {
        // Merge with any range it overlaps or touches.
        let mut merged = range;
        let mut i = 0;
        while i < self.len {
            let r = self.ranges[i];
            if r.start <= merged.end && merged.start <= r.end {
                merged = Range::new(r.start.min(merged.start), r.end.max(merged.end));
                self.remove(i);
            } else {
                i += 1;
            }
        }
        if self.len == MEMORY_MAP_MAX {
            return Err(MemoryError::TooManyRegions);
        }
        let at = self
            .ranges()
            .iter()
            .position(|r| r.start > merged.start)
            .unwrap_or(self.len);
        self.ranges.copy_within(at..self.len, at + 1);
        self.ranges[at] = merged;
        self.len += 1;
        Ok(())
    }

    fn remove(&mut self, i: usize) {
        self.ranges.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }
}

const fn align_up(x: u64) -> u64 {
    x.saturating_add(PAGE_SIZE - 1) & !(PAGE_SIZE - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(u64, u64, u32)]) -> MemoryMap {
        let mut m = MemoryMap::new();
        for &(start, size, ty) in entries {
            m.push(MemoryRegion::new(
                PhysAddr(start),
                size,
                MemoryKind::from_e820(ty),
            ))
            .unwrap();
        }
        m
    }

    #[test]
    fn xen_style_unsorted_map_gives_sorted_free_ranges_above_floor() {
        let m = map(&[
            (0, 32 << 20, 1),
            (0xfeff_8000, 0x8000, 2),
            (0xfc00_8000, 0x40, 3),
            (0xfc00_0000, 0x1000, 3),
        ]);
        let free = FreeMemory::from_map(&m, 1 << 20).unwrap();
        assert_eq!(free.ranges(), &[Range::new(1 << 20, 32 << 20)]);
    }

    #[test]
    fn qemu_style_map_with_hole_and_high_ram() {
        let m = map(&[
            (0, 0x9fc00, 1),
            (0x9fc00, 0x400, 2),
            (0xf0000, 0x10000, 2),
            (0x100000, 0xbff0_0000, 1),
            (0xfd_0000_0000, 0x3_0000_0000, 2),
            (0x1_0000_0000, 0x4000_0000, 1),
        ]);
        let free = FreeMemory::from_map(&m, 0x100000).unwrap();
        assert_eq!(
            free.ranges(),
            &[
                Range::new(0x100000, 0xc000_0000),
                Range::new(0x1_0000_0000, 0x1_4000_0000)
            ]
        );
        assert_eq!(free.total(), 0xbff0_0000 + 0x4000_0000);
    }

    #[test]
    fn reserve_splits_and_aligns_outward() {
        let m = map(&[(0, 16 << 20, 1)]);
        let mut free = FreeMemory::from_map(&m, 1 << 20).unwrap();
        free.reserve(Range::new(0x200010, 0x300001)).unwrap();
        assert_eq!(
            free.ranges(),
            &[
                Range::new(0x100000, 0x200000),
                Range::new(0x301000, 16 << 20)
            ]
        );
        // Reserving across both pieces and past the end.
        free.reserve(Range::new(0x1ff000, 0x2_0000_0000)).unwrap();
        assert_eq!(free.ranges(), &[Range::new(0x100000, 0x1ff000)]);
        free.reserve(Range::new(0, u64::MAX)).unwrap();
        assert!(free.ranges().is_empty());
    }

    #[test]
    fn overlapping_ram_entries_merge() {
        let m = map(&[(0x100000, 0x100000, 1), (0x180000, 0x100000, 1)]);
        let free = FreeMemory::from_map(&m, 0).unwrap();
        assert_eq!(free.ranges(), &[Range::new(0x100000, 0x280000)]);
    }

    #[test]
    fn frames_come_from_the_lowest_range_that_fits() {
        let m = map(&[(0x100000, 0x2000, 1), (0x400000, 0x100000, 1)]);
        let mut free = FreeMemory::from_map(&m, 0).unwrap();
        assert_eq!(free.alloc_frames(1).unwrap(), PhysAddr(0x100000));
        assert_eq!(free.alloc_frames(2).unwrap(), PhysAddr(0x400000));
        assert_eq!(free.alloc_frames(1).unwrap(), PhysAddr(0x101000));
        assert_eq!(free.ranges(), &[Range::new(0x402000, 0x500000)]);
        assert_eq!(
            free.alloc_frames(0x1000),
            Err(MemoryError::OutOfMemory {
                requested: 0x1000 * PAGE_SIZE
            })
        );
    }

    #[test]
    fn take_largest_respects_the_cap_and_leaves_the_rest() {
        let m = map(&[(0x100000, 0x100000, 1), (0x400000, 0x400000, 1)]);
        let mut free = FreeMemory::from_map(&m, 0).unwrap();
        assert_eq!(
            free.take_largest(0x1800),
            Some(Range::new(0x400000, 0x401000))
        );
        assert_eq!(free.total(), 0x100000 + 0x3ff000);
        assert_eq!(free.take_largest(0), Some(Range::new(0x401000, 0x800000)));
        assert_eq!(free.take_largest(0), Some(Range::new(0x100000, 0x200000)));
        assert_eq!(free.take_largest(0), None);
    }

    #[test]
    fn full_map_is_an_error_not_a_panic() {
        let mut m = MemoryMap::new();
        for i in 0..MEMORY_MAP_MAX as u64 {
            m.push(MemoryRegion::new(PhysAddr(i << 20), 4096, MemoryKind::Ram))
                .unwrap();
        }
        assert_eq!(
            m.push(MemoryRegion::new(PhysAddr(0), 1, MemoryKind::Ram)),
            Err(MemoryError::TooManyRegions)
        );
        let mut free = FreeMemory::from_map(&m, 0).unwrap();
        // Splitting every range would exceed the capacity: an error, not a panic.
        let mut result = Ok(());
        for i in 0..MEMORY_MAP_MAX as u64 {
            result = result.and(free.reserve(Range::new((i << 20) + 0x1000, (i << 20) + 0x1000)));
        }
        assert!(result.is_ok());
    }

    /// The invariants of free memory: sorted, disjoint, not touching (merged), page aligned,
    /// not empty.
    fn check(free: &FreeMemory, what: &str) {
        for r in free.ranges() {
            assert!(!r.is_empty(), "{what}: empty range in {free:?}");
            assert_eq!(r.start % PAGE_SIZE, 0, "{what}: {free:?}");
            assert_eq!(r.end % PAGE_SIZE, 0, "{what}: {free:?}");
        }
        for w in free.ranges().windows(2) {
            assert!(
                w[0].end < w[1].start,
                "{what}: unsorted or touching: {free:?}"
            );
        }
    }

    #[test]
    fn random_maps_never_panic_and_keep_free_memory_sorted_and_aligned() {
        use crate::fuzz::{Rng, cases};
        let mut r = Rng::new(0x3e3_0001);
        for case in 0..cases(5_000) {
            let what = format!("case {case}");
            let mut map = MemoryMap::new();
            for _ in 0..r.below(MEMORY_MAP_MAX as u64 + 4) {
                let start = if r.chance(30) {
                    r.edgy_u64()
                } else {
                    r.below(1 << 34)
                };
                let size = if r.chance(30) {
                    r.edgy_u64()
                } else {
                    r.below(1 << 30)
                };
                let kind = MemoryKind::from_e820(r.pick(&[1, 1, 1, 2, 3, 4, 5, 7]));
                let _ = map.push(MemoryRegion::new(PhysAddr(start), size, kind));
            }
            let ram = map.total_ram();
            let sizes: u128 = map
                .regions()
                .iter()
                .filter(|g| g.kind == MemoryKind::Ram)
                .map(|g| u128::from(g.size))
                .sum();
            assert_eq!(u128::from(ram), sizes.min(u128::from(u64::MAX)), "{what}");
            let floor = if r.chance(50) { 1 << 20 } else { r.edgy_u64() };
            let Ok(mut free) = FreeMemory::from_map(&map, floor) else {
                continue;
            };
            check(&free, &what);
            for _ in 0..r.below(12) {
                let before = free.total();
                match r.below(3) {
                    0 => {
                        let start = r.edgy_u64();
                        let range = Range::new(start, start.saturating_add(r.edgy_u64()));
                        if free.reserve(range).is_ok() {
                            assert!(free.total() <= before, "{what}");
                        }
                    }
                    1 => {
                        let count = if r.chance(50) {
                            r.below(600)
                        } else {
                            r.edgy_u64()
                        };
                        if let Ok(at) = free.alloc_frames(count) {
                            assert_eq!(at.0 % PAGE_SIZE, 0, "{what}");
                            assert_eq!(free.total(), before - count * PAGE_SIZE, "{what}");
                        }
                    }
                    _ => {
                        if let Some(taken) = free.take_largest(r.edgy_u64()) {
                            assert_eq!(free.total(), before - taken.len(), "{what}");
                        }
                    }
                }
                check(&free, &what);
            }
        }
    }

    #[test]
    fn device_memory_merges_by_page() {
        let mut d = DeviceMemory::new();
        // microvm's 24 transports of 512 bytes: one range.
        for n in 0..24 {
            let base = 0xfeb0_0000 + 512 * n;
            d.push_merged(Range::new(base, base + 512)).unwrap();
        }
        assert_eq!(d.ranges(), &[Range::new(0xfeb0_0000, 0xfeb0_3000)]);
        // The next page is adjacent: merged; one two pages away is not.
        d.push_merged(Range::new(0xfeb0_3000, 0xfeb0_3004)).unwrap();
        d.push_merged(Range::new(0xfeb0_5000, 0xfeb0_5004)).unwrap();
        d.push_merged(Range::new(0xfeb0_5000, 0xfeb0_5000)).unwrap();
        assert_eq!(
            d.ranges(),
            &[
                Range::new(0xfeb0_0000, 0xfeb0_3004),
                Range::new(0xfeb0_5000, 0xfeb0_5004)
            ]
        );
    }

    #[test]
    fn device_memory_fills_up() {
        let mut d = DeviceMemory::new();
        for n in 0..DEVICE_MEMORY_MAX as u64 {
            d.push_merged(Range::new(n << 20, (n << 20) + 1)).unwrap();
        }
        assert_eq!(
            d.push_merged(Range::new(1 << 40, (1 << 40) + 1)),
            Err(MemoryError::TooManyRegions)
        );
        // A range that merges still fits.
        d.push_merged(Range::new(8, 16)).unwrap();
        assert_eq!(d.ranges().len(), DEVICE_MEMORY_MAX);
    }
}
