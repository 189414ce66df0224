//! 4-level x86_64 page tables with W^X permissions, built by pure code over a [`TableMemory`].
//!
//! The kernel identity-maps (virtual = physical) its image with 4 KiB pages, one permission per
//! part (text RX, rodata R+NX, data/bss/stack RW+NX), leaves the page under the boot stack and
//! page 0 unmapped (a stack overflow or a null pointer faults), and maps the rest of RAM RW+NX,
//! with 2 MiB pages wherever alignment allows. No 1 GiB pages: some monitors lack them.

use core::fmt;
use platform::{MemoryKind, MemoryMap, PAGE_SIZE, Range};

/// Page-table entry bits (also used by platforms that write entries through a hypervisor).
pub mod pte {
    /// The entry is valid.
    pub const PRESENT: u64 = 1;
    /// Writes allowed.
    pub const WRITABLE: u64 = 1 << 1;
    /// User-mode access allowed.
    pub const USER: u64 = 1 << 2;
    /// Write-through caching.
    pub const WRITE_THROUGH: u64 = 1 << 3;
    /// Caching disabled.
    pub const CACHE_DISABLE: u64 = 1 << 4;
    /// Set by the CPU on access.
    pub const ACCESSED: u64 = 1 << 5;
    /// Set by the CPU on write.
    pub const DIRTY: u64 = 1 << 6;
    /// A 2 MiB (or 1 GiB) page, not a table.
    pub const HUGE: u64 = 1 << 7;
    /// Instruction fetches fault.
    pub const NO_EXECUTE: u64 = 1 << 63;
    /// The frame address bits.
    pub const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
}
use pte::{ADDR_MASK, CACHE_DISABLE, HUGE, NO_EXECUTE, PRESENT, WRITABLE, WRITE_THROUGH};
const LARGE: u64 = 2 << 20;

/// What a mapping allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Code: read and execute, never write.
    ReadExecute,
    /// Constants: read only.
    ReadOnly,
    /// Data: read and write, never execute.
    ReadWrite,
    /// Device registers: read and write, never execute, uncached.
    Device,
}

impl Access {
    const fn bits(self) -> u64 {
        match self {
            Access::ReadExecute => PRESENT,
            Access::ReadOnly => PRESENT | NO_EXECUTE,
            Access::ReadWrite => PRESENT | WRITABLE | NO_EXECUTE,
            Access::Device => PRESENT | WRITABLE | NO_EXECUTE | WRITE_THROUGH | CACHE_DISABLE,
        }
    }
    /// What bits (writable, no-execute, caching) mean, written out apart from [`Access::bits`]
    /// so that a wrong entry there shows here: `None` for any combination that is no
    /// [`Access`], such as writable and executable (which this crate never builds).
    const fn from_bits(bits: u64) -> Option<Self> {
        match (
            bits & WRITABLE != 0,
            bits & NO_EXECUTE != 0,
            bits & WRITE_THROUGH != 0,
            bits & CACHE_DISABLE != 0,
        ) {
            (false, false, false, false) => Some(Access::ReadExecute),
            (false, true, false, false) => Some(Access::ReadOnly),
            (true, true, false, false) => Some(Access::ReadWrite),
            (true, true, true, true) => Some(Access::Device),
            _ => None,
        }
    }
}

/// Errors while building page tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingError {
    /// No memory left for another table.
    OutOfTables,
    /// An address or length is not 4 KiB aligned.
    Misaligned(u64),
    /// The address is already mapped.
    AlreadyMapped(u64),
}

impl fmt::Display for PagingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PagingError::OutOfTables => write!(f, "out of memory for page tables"),
            PagingError::Misaligned(a) => write!(f, "{a:#x} is not 4 KiB aligned"),
            PagingError::AlreadyMapped(a) => write!(f, "{a:#x} is already mapped"),
        }
    }
}

impl core::error::Error for PagingError {}

/// One page table: 512 entries.
pub type Table = [u64; 512];

/// Where page tables live.
///
/// Contract: `alloc_table` returns the physical address of a 4 KiB-aligned table that is zeroed
/// and used by nobody else; `table` returns that table for any address `alloc_table` returned.
pub trait TableMemory {
    /// A new zeroed table.
    fn alloc_table(&mut self) -> Result<u64, PagingError>;
    /// The table at physical address `phys`.
    fn table(&mut self, phys: u64) -> &mut Table;
}

/// A translation found by [`Mapper::translate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Translation {
    /// The physical address.
    pub phys: u64,
    /// The permission the CPU enforces (writable only if every level allows writes, executable
    /// only if no level forbids it; caching from the leaf). `None` when it is none of the
    /// [`Access`] values: writable and executable, say (never built by this crate).
    pub access: Option<Access>,
    /// Size of the page: 4 KiB or 2 MiB.
    pub page_size: u64,
}

/// What [`Mapper::unmap_page`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unmapped {
    /// The page was mapped by a 4 KiB entry, now not present.
    Unmapped,
    /// The page was inside a 2 MiB page, which was split; its own entry is now not present.
    Split,
    /// The page was not mapped at all (nothing changed).
    NotMapped,
}

/// Builds a page-table tree.
#[derive(Debug)]
pub struct Mapper<M: TableMemory> {
    root: u64,
    memory: M,
}

fn index(virt: u64, level: u32) -> usize {
    ((virt >> (12 + 9 * (level - 1))) & 511) as usize
}

impl<M: TableMemory> Mapper<M> {
    /// An empty tree (one zeroed PML4).
    pub fn new(mut memory: M) -> Result<Self, PagingError> {
        let root = memory.alloc_table()?;
        Ok(Mapper { root, memory })
    }

    /// Physical address of the PML4, for CR3.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// The tree whose PML4 is at `root` (e.g. the live one, from CR3).
    pub fn with_root(root: u64, memory: M) -> Self {
        Mapper { root, memory }
    }

    /// Makes the 4 KiB page at `virt` not present. A 2 MiB page holding it is first split into a
    /// new page table (from [`TableMemory::alloc_table`]) of 512 4 KiB entries with the same
    /// frames and permissions. The entry keeps its address (only PRESENT is cleared). Returns
    /// what was done; the caller flushes the TLB for `virt` (`invlpg`), which also drops a
    /// cached 2 MiB translation of the block.
    pub fn unmap_page(&mut self, virt: u64) -> Result<Unmapped, PagingError> {
        if !virt.is_multiple_of(PAGE_SIZE) {
            return Err(PagingError::Misaligned(virt));
        }
        let mut table = self.root;
        for level in (3..=4).rev() {
            let entry = self.memory.table(table)[index(virt, level)];
            if entry & PRESENT == 0 {
                return Ok(Unmapped::NotMapped);
            }
            if entry & HUGE != 0 {
                // A 1 GiB page: never built by this crate.
                return Err(PagingError::AlreadyMapped(virt));
            }
            table = entry & ADDR_MASK;
        }
        let directory = table;
        let entry = self.memory.table(directory)[index(virt, 2)];
        if entry & PRESENT == 0 {
            return Ok(Unmapped::NotMapped);
        }
        let mut split = false;
        let page_table = if entry & HUGE != 0 {
            let new = self.memory.alloc_table()?;
            // Bit 12 of a 2 MiB entry is PAT, and bit 7 HUGE: neither carries over.
            let base = entry & ADDR_MASK & !(LARGE - 1);
            let flags = entry & !ADDR_MASK & !HUGE;
            let ptes = self.memory.table(new);
            for (i, pte) in ptes.iter_mut().enumerate() {
                *pte = (base + i as u64 * PAGE_SIZE) | flags;
            }
            // The directory entry: as walk_create makes them (permissions are in the leaves).
            self.memory.table(directory)[index(virt, 2)] = new | PRESENT | WRITABLE;
            split = true;
            new
        } else {
            entry & ADDR_MASK
        };
        let slot = &mut self.memory.table(page_table)[index(virt, 1)];
        if *slot & PRESENT == 0 {
            return Ok(Unmapped::NotMapped);
        }
        *slot &= !PRESENT;
        Ok(if split {
            Unmapped::Split
        } else {
            Unmapped::Unmapped
        })
    }

    /// Maps the 4 KiB page at `virt` (not present, e.g. after [`Mapper::unmap_page`]) to
    /// `phys` with `access` again. Fails if the page is mapped.
    pub fn remap_page(&mut self, virt: u64, phys: u64, access: Access) -> Result<(), PagingError> {
        self.map(virt, phys, PAGE_SIZE, access)
    }

    /// Maps `[virt, virt + len)` to `[phys, phys + len)` with `access`, using 2 MiB pages where
    /// both addresses are 2 MiB aligned and at least 2 MiB remain, 4 KiB pages otherwise.
    pub fn map(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        access: Access,
    ) -> Result<(), PagingError> {
        for a in [virt, phys, len] {
            if !a.is_multiple_of(PAGE_SIZE) {
                return Err(PagingError::Misaligned(a));
            }
        }
        let mut done = 0;
        while done < len {
            let (v, p) = (virt + done, phys + done);
            let large = v.is_multiple_of(LARGE) && p.is_multiple_of(LARGE) && len - done >= LARGE;
            let level = if large { 2 } else { 1 };
            let table = self.walk_create(v, level)?;
            let slot = &mut self.memory.table(table)[index(v, level)];
            if *slot & PRESENT != 0 {
                return Err(PagingError::AlreadyMapped(v));
            }
            *slot = p | access.bits() | if large { HUGE } else { 0 };
            done += if large { LARGE } else { PAGE_SIZE };
        }
        Ok(())
    }

    /// The table at `level` (1 = page table) that holds the entry for `virt`, created on the way.
    fn walk_create(&mut self, virt: u64, level: u32) -> Result<u64, PagingError> {
        let mut table = self.root;
        for l in (level + 1..=4).rev() {
            let entry = self.memory.table(table)[index(virt, l)];
            table = if entry & PRESENT == 0 {
                let new = self.memory.alloc_table()?;
                self.memory.table(table)[index(virt, l)] = new | PRESENT | WRITABLE;
                new
            } else if entry & HUGE != 0 {
                return Err(PagingError::AlreadyMapped(virt));
            } else {
                entry & ADDR_MASK
            };
        }
        Ok(table)
    }

    /// True when nothing at all is mapped in the 2 MiB block that holds `virt` (its directory
    /// entry is not present), so the block can take one large page.
    fn large_block_free(&mut self, virt: u64) -> bool {
        let mut table = self.root;
        for level in (2..=4).rev() {
            let entry = self.memory.table(table)[index(virt, level)];
            if entry & PRESENT == 0 {
                return true;
            }
            if level == 2 || entry & HUGE != 0 {
                return false;
            }
            table = entry & ADDR_MASK;
        }
        false
    }

    /// Where `virt` maps to, if anywhere, and with what effective permission.
    pub fn translate(&mut self, virt: u64) -> Option<Translation> {
        let mut table = self.root;
        // Writes need WRITABLE at every level; NO_EXECUTE at any level forbids fetches.
        let (mut writable, mut no_execute) = (WRITABLE, 0);
        for level in (1..=4).rev() {
            let entry = self.memory.table(table)[index(virt, level)];
            if entry & PRESENT == 0 {
                return None;
            }
            writable &= entry;
            no_execute |= entry & NO_EXECUTE;
            if level == 1 || entry & HUGE != 0 {
                let page_size = 1u64 << (12 + 9 * (level - 1));
                let caching = entry & (WRITE_THROUGH | CACHE_DISABLE);
                return Some(Translation {
                    phys: (entry & ADDR_MASK & !(page_size - 1)) | (virt & (page_size - 1)),
                    access: Access::from_bits(writable | no_execute | caching),
                    page_size,
                });
            }
            table = entry & ADDR_MASK;
        }
        None
    }
}

/// Addresses of the parts of the kernel image (from the linker script). All page aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageLayout {
    /// First byte of the image (start of text).
    pub start: u64,
    /// End of text, start of rodata.
    pub text_end: u64,
    /// End of rodata, start of data and bss.
    pub rodata_end: u64,
    /// The unmapped guard page under the boot stack.
    pub stack_guard: u64,
    /// Lowest byte of the boot stack (guard + 4 KiB).
    pub stack_bottom: u64,
    /// One past the last byte of the image.
    pub end: u64,
}

impl ImageLayout {
    /// The whole image as a range.
    pub fn range(&self) -> Range {
        Range::new(self.start, self.end)
    }
}

/// Identity-maps the kernel: the image W^X with its stack guard page left out, and every RAM
/// (read-write) and ACPI (read-only) region of `map` around it, except page 0.
pub fn map_kernel<M: TableMemory>(
    mapper: &mut Mapper<M>,
    image: &ImageLayout,
    map: &MemoryMap,
) -> Result<(), PagingError> {
    let parts = [
        (image.start, image.text_end, Access::ReadExecute),
        (image.text_end, image.rodata_end, Access::ReadOnly),
        (image.rodata_end, image.stack_guard, Access::ReadWrite),
        (image.stack_bottom, image.end, Access::ReadWrite),
    ];
    for (start, end, access) in parts {
        if start < end {
            mapper.map(start, start, end - start, access)?;
        }
    }
    for region in map.regions() {
        let access = match region.kind {
            MemoryKind::Ram => Access::ReadWrite,
            MemoryKind::Acpi => Access::ReadOnly,
            _ => continue,
        };
        let r = region.range();
        let start = (r.start & !(PAGE_SIZE - 1)).max(PAGE_SIZE);
        let end = (r.end + PAGE_SIZE - 1) & !(PAGE_SIZE - 1);
        // Around the image, and around anything an earlier (overlapping) region mapped.
        let mut at = start;
        while at < end {
            if image.range().contains(at) {
                at = image.end;
                continue;
            }
            let stop = if at < image.start {
                end.min(image.start)
            } else {
                end
            };
            // Find the longest run from `at` that is still unmapped.
            let mut run = at;
            while run < stop && mapper.translate(run).is_none() {
                let next_large = (run | (LARGE - 1)) + 1;
                // Jump whole 2 MiB blocks when nothing in the block is mapped yet (not the
                // image, not an earlier overlapping region); otherwise step a page.
                run = if run.is_multiple_of(LARGE)
                    && next_large <= stop
                    && !overlaps_image(run, image)
                    && mapper.large_block_free(run)
                {
                    next_large
                } else {
                    run + PAGE_SIZE
                };
            }
            if run > at {
                mapper.map(at, at, run - at, access)?;
                at = run;
            } else {
                at += PAGE_SIZE;
            }
        }
    }
    Ok(())
}

/// Identity-maps device memory (uncached, RW+NX), page by page, skipping pages that are already
/// mapped (a device range inside RAM keeps the RAM mapping).
pub fn map_devices<M: TableMemory>(
    mapper: &mut Mapper<M>,
    devices: &[Range],
) -> Result<(), PagingError> {
    for r in devices {
        let mut page = r.start & !(PAGE_SIZE - 1);
        while page < r.end {
            if mapper.translate(page).is_none() {
                mapper.map(page, page, PAGE_SIZE, Access::Device)?;
            }
            page += PAGE_SIZE;
        }
    }
    Ok(())
}

fn overlaps_image(block: u64, image: &ImageLayout) -> bool {
    block < image.end && image.start < block + LARGE
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::{MemoryRegion, PhysAddr};

    /// Tables in a vector; "physical" addresses start at `BASE`.
    struct VecTables(Vec<Table>, usize);
    const BASE: u64 = 0x4000_0000_0000;

    impl TableMemory for VecTables {
        fn alloc_table(&mut self) -> Result<u64, PagingError> {
            if self.0.len() == self.1 {
                return Err(PagingError::OutOfTables);
            }
            self.0.push([0; 512]);
            Ok(BASE + (self.0.len() as u64 - 1) * PAGE_SIZE)
        }
        fn table(&mut self, phys: u64) -> &mut Table {
            &mut self.0[((phys - BASE) / PAGE_SIZE) as usize]
        }
    }

    fn mapper(limit: usize) -> Mapper<VecTables> {
        Mapper::new(VecTables(Vec::new(), limit)).unwrap()
    }

    /// The permission at `virt` (`None`: not mapped); a mapping that is no [`Access`] (writable
    /// and executable, say) fails the test.
    fn access(m: &mut Mapper<VecTables>, virt: u64) -> Option<Access> {
        let t = m.translate(virt)?;
        Some(t.access.unwrap_or_else(|| {
            panic!("{virt:#x} is mapped with a permission no Access has (writable and executable?)")
        }))
    }

    const IMAGE: ImageLayout = ImageLayout {
        start: 0x10_0000,
        text_end: 0x10_5000,
        rodata_end: 0x10_7000,
        stack_guard: 0x10_a000,
        stack_bottom: 0x10_b000,
        end: 0x11_b000,
    };

    fn ram(mb: u64) -> MemoryMap {
        let mut m = MemoryMap::new();
        m.push(MemoryRegion::new(PhysAddr(0), 0x9fc00, MemoryKind::Ram))
            .unwrap();
        m.push(MemoryRegion::new(
            PhysAddr(0x9fc00),
            0x400,
            MemoryKind::Reserved,
        ))
        .unwrap();
        m.push(MemoryRegion::new(
            PhysAddr(0x10_0000),
            (mb << 20) - 0x10_0000,
            MemoryKind::Ram,
        ))
        .unwrap();
        m.push(MemoryRegion::new(
            PhysAddr(0xfc00_0000),
            0x1000,
            MemoryKind::Acpi,
        ))
        .unwrap();
        m
    }

    #[test]
    fn image_is_w_xor_x_with_guard_page_and_null_page_unmapped() {
        let mut m = mapper(64);
        map_kernel(&mut m, &IMAGE, &ram(64)).unwrap();
        let t = |m: &mut Mapper<VecTables>, a| access(m, a);
        assert_eq!(t(&mut m, 0x10_0000), Some(Access::ReadExecute));
        assert_eq!(t(&mut m, 0x10_4fff), Some(Access::ReadExecute));
        assert_eq!(t(&mut m, 0x10_5000), Some(Access::ReadOnly));
        assert_eq!(t(&mut m, 0x10_7000), Some(Access::ReadWrite));
        assert_eq!(t(&mut m, 0x10_9fff), Some(Access::ReadWrite));
        assert_eq!(t(&mut m, 0x10_a000), None, "stack guard page");
        assert_eq!(t(&mut m, 0x10_afff), None, "stack guard page");
        assert_eq!(t(&mut m, 0x10_b000), Some(Access::ReadWrite));
        assert_eq!(t(&mut m, 0), None, "page 0");
        assert_eq!(t(&mut m, 0x1000), Some(Access::ReadWrite));
        assert_eq!(t(&mut m, 0x9f000), Some(Access::ReadWrite));
        assert_eq!(t(&mut m, 0xa0000), None, "hole below 1 MiB");
        assert_eq!(
            t(&mut m, 0x11_b000),
            Some(Access::ReadWrite),
            "RAM after the image"
        );
        assert_eq!(t(&mut m, (64 << 20) - 1), Some(Access::ReadWrite));
        assert_eq!(t(&mut m, 64 << 20), None);
        assert_eq!(t(&mut m, 0xfc00_0000), Some(Access::ReadOnly), "ACPI");
        // Identity everywhere.
        assert_eq!(m.translate(0x12_3456).unwrap().phys, 0x12_3456);
    }

    /// W^X over the whole tree: every mapped page is one [`Access`] (never writable and
    /// executable), and only the image's text is executable.
    #[test]
    fn no_page_is_writable_and_executable_and_only_text_executes() {
        let mut m = mapper(64);
        let mut map = ram(64);
        map.push(MemoryRegion::new(
            PhysAddr(0x1_0000_0000),
            4 << 20,
            MemoryKind::Ram,
        ))
        .unwrap();
        map_kernel(&mut m, &IMAGE, &map).unwrap();
        map_devices(&mut m, &[Range::new(0xfee0_0000, 0xfee0_1000)]).unwrap();
        let pages = (0..64u64 << 20)
            .chain(0xfc00_0000..0xfc00_1000)
            .chain(0xfee0_0000..0xfee0_1000)
            .chain(0x1_0000_0000..0x1_0040_0000)
            .step_by(PAGE_SIZE as usize);
        let mut mapped = 0;
        for page in pages {
            let Some(a) = access(&mut m, page) else {
                continue;
            };
            mapped += 1;
            let text = (IMAGE.start..IMAGE.text_end).contains(&page);
            assert_eq!(a == Access::ReadExecute, text, "{page:#x}: {a:?}");
        }
        assert!(mapped > 16_000, "{mapped} pages mapped");
    }

    #[test]
    fn the_effective_permission_is_seen_through_every_level() {
        let mut m = mapper(8);
        m.map(0x1000, 0x1000, PAGE_SIZE, Access::ReadWrite).unwrap();
        m.map(0x2000, 0x2000, PAGE_SIZE, Access::ReadExecute)
            .unwrap();
        let pd = {
            let pml4 = m.memory.table(m.root)[0] & ADDR_MASK;
            m.memory.table(pml4)[0] & ADDR_MASK
        };
        let pt = m.memory.table(pd)[0] & ADDR_MASK;
        // A data page that lost its NX bit: writable and executable, which no Access is.
        m.memory.table(pt)[1] &= !NO_EXECUTE;
        assert_eq!(m.translate(0x1000).unwrap().access, None);
        // NX on the directory entry makes every page under it non-executable; a directory
        // entry without WRITABLE makes them read-only.
        m.memory.table(pd)[0] |= NO_EXECUTE;
        assert_eq!(m.translate(0x1000).unwrap().access, Some(Access::ReadWrite));
        assert_eq!(m.translate(0x2000).unwrap().access, Some(Access::ReadOnly));
        m.memory.table(pd)[0] &= !WRITABLE;
        assert_eq!(m.translate(0x1000).unwrap().access, Some(Access::ReadOnly));
        // Caching bits without NX: not a device mapping this crate builds.
        m.memory.table(pd)[0] |= WRITABLE;
        m.memory.table(pd)[0] &= !NO_EXECUTE;
        m.memory.table(pt)[1] |= NO_EXECUTE | CACHE_DISABLE | WRITE_THROUGH;
        assert_eq!(m.translate(0x1000).unwrap().access, Some(Access::Device));
        m.memory.table(pt)[1] &= !NO_EXECUTE;
        assert_eq!(m.translate(0x1000).unwrap().access, None);
    }

    #[test]
    fn large_pages_are_used_where_aligned() {
        let mut m = mapper(64);
        map_kernel(&mut m, &IMAGE, &ram(64)).unwrap();
        assert_eq!(m.translate(0x10_0000).unwrap().page_size, PAGE_SIZE);
        assert_eq!(m.translate(0x1f_f000).unwrap().page_size, PAGE_SIZE);
        assert_eq!(m.translate(0x20_0000).unwrap().page_size, LARGE);
        assert_eq!(m.translate(0x3ff_f000).unwrap().page_size, LARGE);
        // 1 PML4 + 1 PDPT + 2 PDs (RAM, ACPI) + 2 PTs (first 2 MiB, ACPI page).
        assert_eq!(m.memory.0.len(), 6);
    }

    #[test]
    fn double_mapping_misalignment_and_exhaustion_are_errors() {
        let mut m = mapper(8);
        m.map(0x20_0000, 0x20_0000, LARGE, Access::ReadWrite)
            .unwrap();
        assert_eq!(
            m.map(0x20_1000, 0x20_1000, PAGE_SIZE, Access::ReadWrite),
            Err(PagingError::AlreadyMapped(0x20_1000))
        );
        assert_eq!(
            m.map(0x1000, 0x1000, PAGE_SIZE, Access::ReadWrite)
                .and_then(|_| m.map(0x1000, 0x1000, PAGE_SIZE, Access::ReadOnly)),
            Err(PagingError::AlreadyMapped(0x1000))
        );
        assert_eq!(
            m.map(0x1001, 0, PAGE_SIZE, Access::ReadOnly),
            Err(PagingError::Misaligned(0x1001))
        );
        let mut small = mapper(2);
        assert_eq!(
            small.map(0, 0, PAGE_SIZE, Access::ReadOnly),
            Err(PagingError::OutOfTables)
        );
    }

    #[test]
    fn overlapping_regions_map_each_page_once() {
        // An ACPI page inside a 2 MiB block of RAM, listed before the RAM (malformed, but
        // firmware does such things): the RAM around it must not collide with it.
        let mut map = MemoryMap::new();
        map.push(MemoryRegion::new(
            PhysAddr(0x60_1000),
            0x1000,
            MemoryKind::Acpi,
        ))
        .unwrap();
        map.push(MemoryRegion::new(
            PhysAddr(0x10_0000),
            0xf0_0000,
            MemoryKind::Ram,
        ))
        .unwrap();
        let mut m = mapper(64);
        map_kernel(&mut m, &IMAGE, &map).unwrap();
        assert_eq!(
            m.translate(0x60_1000).unwrap().access,
            Some(Access::ReadOnly)
        );
        assert_eq!(
            m.translate(0x60_0000).unwrap().access,
            Some(Access::ReadWrite)
        );
        assert_eq!(
            m.translate(0x60_2000).unwrap().access,
            Some(Access::ReadWrite)
        );
        assert_eq!(m.translate(0x60_2000).unwrap().page_size, PAGE_SIZE);
        assert_eq!(m.translate(0x80_0000).unwrap().page_size, LARGE);
    }

    #[test]
    fn device_pages_are_uncached_and_do_not_remap_ram() {
        let mut m = mapper(64);
        map_kernel(&mut m, &IMAGE, &ram(64)).unwrap();
        map_devices(
            &mut m,
            &[
                Range::new(0xfea0_0200, 0xfea0_0201),
                Range::new(0x20_0000, 0x20_1000),
            ],
        )
        .unwrap();
        let t = m.translate(0xfea0_0200).unwrap();
        assert_eq!(
            (t.phys, t.access, t.page_size),
            (0xfea0_0200, Some(Access::Device), PAGE_SIZE)
        );
        assert_eq!(m.translate(0xfea0_1000), None, "only the pages asked for");
        assert_eq!(
            m.translate(0x20_0000).unwrap().access,
            Some(Access::ReadWrite)
        );
    }

    #[test]
    fn unmapping_a_page_inside_a_large_page_splits_it() {
        let mut m = mapper(64);
        map_kernel(&mut m, &IMAGE, &ram(64)).unwrap();
        let tables = m.memory.0.len();
        assert_eq!(m.translate(0x40_3000).unwrap().page_size, LARGE);
        assert_eq!(m.unmap_page(0x40_3000), Ok(Unmapped::Split));
        assert_eq!(m.memory.0.len(), tables + 1, "one new page table");
        assert_eq!(m.translate(0x40_3000), None);
        assert_eq!(m.translate(0x40_3fff), None);
        // The rest of the block: same frames, same permission, now 4 KiB pages.
        for a in [0x40_0000, 0x40_2fff, 0x40_4000, 0x5f_f123] {
            let t = m.translate(a).unwrap();
            assert_eq!(
                (t.phys, t.access, t.page_size),
                (a, Some(Access::ReadWrite), PAGE_SIZE)
            );
        }
        // A second page of the same block: no more tables.
        assert_eq!(m.unmap_page(0x40_5000), Ok(Unmapped::Unmapped));
        assert_eq!(m.memory.0.len(), tables + 1);
        assert_eq!(m.unmap_page(0x40_5000), Ok(Unmapped::NotMapped));
        // Back again.
        m.remap_page(0x40_3000, 0x40_3000, Access::ReadWrite)
            .unwrap();
        let t = m.translate(0x40_3000).unwrap();
        assert_eq!((t.phys, t.access), (0x40_3000, Some(Access::ReadWrite)));
        assert_eq!(
            m.remap_page(0x40_3000, 0x40_3000, Access::ReadWrite),
            Err(PagingError::AlreadyMapped(0x40_3000))
        );
        assert_eq!(m.translate(0x40_5000), None);
    }

    #[test]
    fn split_keeps_flags_but_not_pat_or_huge() {
        let mut m = mapper(8);
        m.map(0x20_0000, 0x20_0000, LARGE, Access::ReadOnly)
            .unwrap();
        // Mark the large entry accessed and with PAT (bit 12) set, as hardware/firmware might.
        let pd = {
            let pml4 = m.memory.table(m.root)[0] & ADDR_MASK;
            m.memory.table(pml4)[0] & ADDR_MASK
        };
        m.memory.table(pd)[1] |= pte::ACCESSED | (1 << 12);
        assert_eq!(m.unmap_page(0x20_1000), Ok(Unmapped::Split));
        let pt = m.memory.table(pd)[1] & ADDR_MASK;
        let e = m.memory.table(pt)[2];
        assert_eq!(e, 0x20_2000 | PRESENT | NO_EXECUTE | pte::ACCESSED);
        assert_eq!(
            m.memory.table(pt)[1],
            0x20_1000 | NO_EXECUTE | pte::ACCESSED
        );
    }

    #[test]
    fn unmapping_four_kib_pages_and_holes() {
        let mut m = mapper(64);
        map_kernel(&mut m, &IMAGE, &ram(64)).unwrap();
        let tables = m.memory.0.len();
        assert_eq!(m.unmap_page(0x10_b000), Ok(Unmapped::Unmapped));
        assert_eq!(m.translate(0x10_b000), None);
        assert_eq!(
            m.unmap_page(0x10_a000),
            Ok(Unmapped::NotMapped),
            "guard page"
        );
        assert_eq!(m.unmap_page(0x8000_0000), Ok(Unmapped::NotMapped), "no RAM");
        assert_eq!(
            m.unmap_page(0x10_b001),
            Err(PagingError::Misaligned(0x10_b001))
        );
        assert_eq!(m.memory.0.len(), tables);
        let mut small = mapper(8);
        small
            .map(0x20_0000, 0x20_0000, LARGE, Access::ReadWrite)
            .unwrap();
        small.memory.1 = small.memory.0.len();
        assert_eq!(small.unmap_page(0x20_0000), Err(PagingError::OutOfTables));
        assert_eq!(
            small.translate(0x20_0000).unwrap().page_size,
            LARGE,
            "unchanged"
        );
    }

    #[test]
    fn ram_above_4_gib_gets_its_own_directories() {
        let mut map = ram(64);
        map.push(MemoryRegion::new(
            PhysAddr(0x1_0000_0000),
            0x4000_0000,
            MemoryKind::Ram,
        ))
        .unwrap();
        let mut m = mapper(64);
        map_kernel(&mut m, &IMAGE, &map).unwrap();
        let t = m.translate(0x1_2345_6789).unwrap();
        assert_eq!(
            (t.phys, t.page_size, t.access),
            (0x1_2345_6789, LARGE, Some(Access::ReadWrite))
        );
    }
}
