//! Parsing of the PVH `hvm_start_info` structure (Xen's `arch-x86/hvm/start_info.h`).
//!
//! The structures live in guest memory wherever the monitor put them (QEMU: low memory; Xen:
//! right after the image, with an unsorted memory map and `cmdline_paddr = 0` when there is no
//! command line). [`parse`] copies everything into a [`BootInfo`] so that memory can be reused.
//! Memory is read through [`PhysRead`], so the parser runs on the host against fake memory.

use core::fmt;
use platform::{BootInfo, Cmdline, MODULES_MAX, MemoryError, MemoryKind, MemoryRegion, Module};
use platform::{PhysAddr, PhysRead, Range, Unreadable};

/// `hvm_start_info.magic`.
pub const MAGIC: u32 = 0x336e_c578;
/// Size of `hvm_start_info` version 1.
const START_INFO_SIZE: u64 = 56;
const MODLIST_ENTRY_SIZE: u64 = 32;
const MEMMAP_ENTRY_SIZE: u64 = 24;
/// Longest command line we look at when measuring an over-long one.
const CMDLINE_SCAN_MAX: usize = 64 * 1024;

/// Why the start info could not be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartInfoError {
    /// `magic` was not [`MAGIC`]: not booted through the PVH protocol.
    BadMagic(u32),
    /// Version 0 has no memory map, and this kernel needs one.
    NoMemoryMap,
    /// A pointer in the structure leads to memory that cannot be read.
    Unreadable(u64),
    /// The memory map does not fit.
    MemoryMap(MemoryError),
}

impl fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartInfoError::BadMagic(m) => write!(
                f,
                "start info magic is {m:#x}, expected {MAGIC:#x}: not booted through PVH"
            ),
            StartInfoError::NoMemoryMap => {
                write!(f, "start info version 0 has no memory map")
            }
            StartInfoError::Unreadable(a) => {
                write!(f, "start info points at unreadable memory {a:#x}")
            }
            StartInfoError::MemoryMap(e) => write!(f, "memory map: {e}"),
        }
    }
}

impl core::error::Error for StartInfoError {}

impl From<Unreadable> for StartInfoError {
    fn from(u: Unreadable) -> Self {
        StartInfoError::Unreadable(u.0)
    }
}

fn read_u32(mem: &impl PhysRead, at: u64) -> Result<u32, StartInfoError> {
    Ok(mem.read_u32(at)?)
}

fn read_u64(mem: &impl PhysRead, at: u64) -> Result<u64, StartInfoError> {
    Ok(mem.read_u64(at)?)
}

/// The end of `count` entries of `size` bytes at `at`: a table that runs past the end of the
/// address space cannot be read. Every address inside the table is then below 2^64.
fn table_end(at: u64, count: u32, size: u64) -> Result<u64, StartInfoError> {
    (u64::from(count) * size)
        .checked_add(at)
        .ok_or(StartInfoError::Unreadable(at))
}

/// Parses the `hvm_start_info` at `paddr` and everything it points to. Garbage (wild pointers,
/// counts or lengths, tables that run past the end of the address space) is an error, never a
/// panic nor a wrapped address.
pub fn parse(mem: &impl PhysRead, paddr: u64) -> Result<BootInfo, StartInfoError> {
    let end = table_end(paddr, 1, START_INFO_SIZE)?;
    let magic = read_u32(mem, paddr)?;
    if magic != MAGIC {
        return Err(StartInfoError::BadMagic(magic));
    }
    let version = read_u32(mem, paddr + 4)?;
    if version < 1 {
        return Err(StartInfoError::NoMemoryMap);
    }
    let nr_modules = read_u32(mem, paddr + 12)?;
    let modlist = read_u64(mem, paddr + 16)?;
    let cmdline = read_u64(mem, paddr + 24)?;
    let rsdp = read_u64(mem, paddr + 32)?;
    let memmap = read_u64(mem, paddr + 40)?;
    let memmap_entries = read_u32(mem, paddr + 48)?;

    let mut info = BootInfo {
        rsdp: PhysAddr(rsdp),
        ..BootInfo::default()
    };
    let mut structures = Range::new(paddr, end);
    // Callers checked that `start + len` does not overflow, but for the byte after a command
    // line ending at 2^64 - 1.
    let mut cover = |start: u64, len: u64| {
        if len > 0 {
            let end = start.saturating_add(len);
            structures = Range::new(structures.start.min(start), structures.end.max(end));
        }
    };

    table_end(memmap, memmap_entries, MEMMAP_ENTRY_SIZE)?;
    for i in 0..u64::from(memmap_entries) {
        let e = memmap + i * MEMMAP_ENTRY_SIZE;
        let region = MemoryRegion::new(
            PhysAddr(read_u64(mem, e)?),
            read_u64(mem, e + 8)?,
            MemoryKind::from_e820(read_u32(mem, e + 16)?),
        );
        info.memory
            .push(region)
            .map_err(StartInfoError::MemoryMap)?;
    }
    cover(memmap, u64::from(memmap_entries) * MEMMAP_ENTRY_SIZE);

    info.module_count = nr_modules as usize;
    table_end(modlist, nr_modules, MODLIST_ENTRY_SIZE)?;
    for i in 0..u64::from(nr_modules).min(MODULES_MAX as u64) {
        let e = modlist + i * MODLIST_ENTRY_SIZE;
        info.modules[i as usize] = Module {
            start: PhysAddr(read_u64(mem, e)?),
            size: read_u64(mem, e + 8)?,
        };
    }
    cover(modlist, u64::from(nr_modules) * MODLIST_ENTRY_SIZE);

    if cmdline != 0 {
        let mut buf = [0u8; platform::CMDLINE_MAX];
        let mut len = 0;
        loop {
            let mut b = [0u8];
            let at = cmdline
                .checked_add(len as u64)
                .ok_or(StartInfoError::Unreadable(cmdline))?;
            mem.read(at, &mut b)?;
            if b[0] == 0 || len == CMDLINE_SCAN_MAX {
                break;
            }
            if let Some(slot) = buf.get_mut(len) {
                *slot = b[0];
            }
            len += 1;
        }
        info.cmdline = Cmdline::from_bytes(&buf[..len.min(buf.len())]);
        info.cmdline.original_len = len;
        cover(cmdline, len as u64 + 1);
    }
    info.boot_structures = structures;
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    use platform::FakeMemory;

    fn memmap_entry(m: &mut FakeMemory, at: u64, addr: u64, size: u64, ty: u32) {
        m.put_u64(at, addr);
        m.put_u64(at + 8, size);
        m.put_u32(at + 16, ty);
    }

    /// The layout Xen 4.17 used for the pvh-probe: start info right after the image, cmdline at
    /// +0x38, memory map at +0x888, unsorted.
    fn xen_layout(cmdline: Option<&[u8]>) -> (FakeMemory, u64) {
        let si = 0x10e000;
        let mut m = FakeMemory::new(0x10e000, 0x2000);
        m.put_u32(si, MAGIC);
        m.put_u32(si + 4, 1);
        m.put_u64(si + 32, 0xfc00_8000);
        if let Some(c) = cmdline {
            m.put_u64(si + 24, si + 0x38);
            m.put(si + 0x38, c);
        }
        m.put_u64(si + 40, si + 0x888);
        m.put_u32(si + 48, 5);
        let e = si + 0x888;
        memmap_entry(&mut m, e, 0, 32 << 20, 1);
        memmap_entry(&mut m, e + 24, 0xfeff_8000, 0x8000, 2);
        memmap_entry(&mut m, e + 48, 0xfc00_8000, 0x40, 3);
        memmap_entry(&mut m, e + 72, 0xfc00_0000, 0x1000, 3);
        memmap_entry(&mut m, e + 96, 0xfc00_1000, 0x7000, 3);
        (m, si)
    }

    #[test]
    fn parses_xen_layout_with_unsorted_memory_map() {
        let (m, si) = xen_layout(Some(b"probe-args-123\0"));
        let info = parse(&m, si).unwrap();
        assert_eq!(info.cmdline.as_str().unwrap(), "probe-args-123");
        assert!(!info.cmdline.truncated());
        let regions = info.memory.regions();
        assert_eq!(regions.len(), 5);
        assert_eq!(regions[0].kind, MemoryKind::Ram);
        assert_eq!(regions[1].start, PhysAddr(0xfeff_8000));
        assert_eq!(regions[1].kind, MemoryKind::Reserved);
        assert_eq!(regions[2].kind, MemoryKind::Acpi);
        assert_eq!(info.memory.total_ram(), 32 << 20);
        assert_eq!(info.rsdp, PhysAddr(0xfc00_8000));
        assert_eq!(info.module_count, 0);
        assert_eq!(info.boot_structures, Range::new(si, si + 0x888 + 5 * 24));
    }

    #[test]
    fn cmdline_paddr_zero_means_empty_command_line() {
        let (m, si) = xen_layout(None);
        let info = parse(&m, si).unwrap();
        assert_eq!(info.cmdline.as_str().unwrap(), "");
    }

    #[test]
    fn over_long_command_line_is_kept_short_and_flagged() {
        let mut long = vec![b'x'; 3000];
        long.push(0);
        let si = 0x1000;
        let mut m = FakeMemory::new(0x1000, 0x4000);
        m.put_u32(si, MAGIC);
        m.put_u32(si + 4, 1);
        m.put_u64(si + 24, 0x2000);
        m.put(0x2000, &long);
        let info = parse(&m, si).unwrap();
        assert!(info.cmdline.truncated());
        assert_eq!(info.cmdline.original_len, 3000);
        assert_eq!(info.cmdline.as_bytes().len(), platform::CMDLINE_MAX);
    }

    #[test]
    fn modules_are_recorded() {
        let si = 0x1000;
        let mut m = FakeMemory::new(0x1000, 0x2000);
        m.put_u32(si, MAGIC);
        m.put_u32(si + 4, 1);
        m.put_u32(si + 12, 2);
        m.put_u64(si + 16, 0x1800);
        m.put_u64(0x1800, 0x80_0000);
        m.put_u64(0x1808, 0x1234);
        m.put_u64(0x1820, 0x90_0000);
        m.put_u64(0x1828, 0x10);
        let info = parse(&m, si).unwrap();
        assert_eq!(info.module_count, 2);
        assert_eq!(
            info.modules[1],
            Module {
                start: PhysAddr(0x90_0000),
                size: 0x10
            }
        );
    }

    #[test]
    fn bad_magic_old_version_and_wild_pointers_are_errors() {
        let (mut m, si) = xen_layout(None);
        m.put_u32(si, 0xdead_beef);
        assert_eq!(
            parse(&m, si).err(),
            Some(StartInfoError::BadMagic(0xdead_beef))
        );
        m.put_u32(si, MAGIC);
        m.put_u32(si + 4, 0);
        assert_eq!(parse(&m, si).err(), Some(StartInfoError::NoMemoryMap));
        m.put_u32(si + 4, 1);
        m.put_u64(si + 40, 0x4000_0000);
        assert_eq!(
            parse(&m, si).err(),
            Some(StartInfoError::Unreadable(0x4000_0000))
        );
        assert_eq!(
            parse(&m, 0x10).err(),
            Some(StartInfoError::Unreadable(0x10))
        );
    }

    #[test]
    fn oversized_memory_map_is_an_error() {
        let (mut m, si) = xen_layout(None);
        m.put_u32(si + 48, 100);
        // Entries beyond the fake memory are unreadable before the map overflows; make room.
        let mut big = FakeMemory::new(0x10e000, 0x4000);
        big.put(0x10e000, m.get(0x10e000, 0x2000));
        assert_eq!(
            parse(&big, si).err(),
            Some(StartInfoError::MemoryMap(MemoryError::TooManyRegions))
        );
    }

    #[test]
    fn tables_that_run_past_the_end_of_the_address_space_are_errors() {
        let top = u64::MAX - 0xfff;
        for (field, value, count_field, count) in [
            (40, u64::MAX - 23, 48, 2),  // memory map: the second entry wraps
            (40, u64::MAX - 7, 48, 1),   // memory map: an entry over the end
            (16, u64::MAX - 31, 12, 2),  // module list
            (16, u64::MAX - 15, 12, 20), // module list longer than MODULES_MAX
        ] {
            let (m, si) = xen_layout(None);
            let mut m = m.with_region(top, 0x1000);
            m.put_u64(si + field, value);
            m.put_u32(si + count_field, count);
            assert!(parse(&m, si).is_err(), "field {field} = {value:#x}");
        }
        // A command line that runs into the end of the address space.
        let (m, si) = xen_layout(None);
        let mut m = m.with_region(top, 0x1000);
        m.put(top, &[b'x'; 0x1000]);
        m.put_u64(si + 24, top + 0x10);
        assert_eq!(
            parse(&m, si).err(),
            Some(StartInfoError::Unreadable(top + 0x10))
        );
        // ... and one whose NUL is the very last byte.
        m.put(u64::MAX, &[0]);
        let info = parse(&m, si).expect("a command line that ends at 2^64 - 1");
        assert_eq!(info.cmdline.original_len, 0xfef);
        assert_eq!(info.boot_structures.end, u64::MAX);
        // The start info itself in the last bytes.
        for back in 1..=START_INFO_SIZE {
            let mut m = FakeMemory::new(top, 0x1000);
            let at = u64::MAX - (back - 1);
            m.put(at, &MAGIC.to_le_bytes()[..back.min(4) as usize]);
            assert!(parse(&m, at).is_err(), "start info at {at:#x}");
        }
    }

    #[test]
    fn random_start_infos_give_an_error_or_sane_boot_information() {
        use platform::fuzz::{Rng, cases};
        let top = u64::MAX - 0xfff;
        let mut r = Rng::new(0x5717_0001);
        let (mut ok, mut unreadable) = (0u64, 0u64);
        for case in 0..cases(20_000) {
            let (m, mut si) = xen_layout(r.chance(50).then_some(&b"log=debug -- a b\0"[..]));
            let mut m = m.with_region(top, 0x1000);
            for _ in 0..1 + r.below(5) {
                match r.below(5) {
                    0 => {
                        let at = r.pick(&[0x10e000, top]) + r.below(0x1000);
                        m.put(at, &[r.next_u64() as u8]);
                    }
                    1 | 2 => {
                        // A count or a pointer: near an edge, or into the top page.
                        let (off, size) = r.pick(&[(12, 4), (16, 8), (24, 8), (40, 8), (48, 4)]);
                        let v = match r.below(3) {
                            0 => u64::MAX - r.below(0x40),
                            1 => top + r.below(0x1000),
                            _ => r.edgy_u64(),
                        };
                        let v = if size == 4 && r.chance(70) {
                            r.below(80)
                        } else {
                            v
                        };
                        m.try_put(si.wrapping_add(off), &v.to_le_bytes()[..size]);
                    }
                    3 => {
                        // Entries of garbage in the top page, for pointers that land there.
                        let mut page = [0u8; 0x1000];
                        r.fill(&mut page);
                        m.put(top, &page);
                    }
                    _ => {
                        // The start info itself near the end of the address space.
                        let mut copy = [0u8; START_INFO_SIZE as usize];
                        if m.read(si, &mut copy).is_ok() {
                            let at = u64::MAX - r.below(0x80);
                            let n = usize::try_from(u64::MAX - at + 1)
                                .map_or(copy.len(), |n| n.min(copy.len()));
                            m.put(at, &copy[..n]);
                            si = at;
                        }
                    }
                }
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse(&m, si)));
            let Ok(result) = result else {
                panic!("case {case} panicked (seed 0x57170001)");
            };
            if matches!(result, Err(StartInfoError::Unreadable(_))) {
                unreadable += 1;
            }
            if let Ok(info) = result {
                ok += 1;
                assert!(info.memory.regions().len() <= platform::MEMORY_MAP_MAX);
                assert!(info.cmdline.as_bytes().len() <= platform::CMDLINE_MAX);
                let b = info.boot_structures;
                assert!(
                    b.start <= si && si < b.end,
                    "case {case}: {b:?} misses {si:#x}"
                );
                let _ = info.memory.total_ram();
                for module in &info.modules[..info.module_count.min(MODULES_MAX)] {
                    let _ = module.range();
                }
            }
        }
        // Both outcomes are common (else the generator is too tame or too wild).
        assert!(
            ok > 1000 && unreadable > 1000,
            "{ok} parsed, {unreadable} unreadable"
        );
    }
}
