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
const CMDLINE_SCAN_MAX: usize = platform::CMDLINE_SCAN_MAX;

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

/// Parses the `hvm_start_info` at `paddr` and everything it points to.
pub fn parse(mem: &impl PhysRead, paddr: u64) -> Result<BootInfo, StartInfoError> {
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
    let mut structures = Range::new(paddr, paddr + START_INFO_SIZE);
    let mut cover = |start: u64, len: u64| {
        if len > 0 {
            structures = Range::new(structures.start.min(start), structures.end.max(start + len));
        }
    };

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
            mem.read(cmdline + len as u64, &mut b)?;
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
}
