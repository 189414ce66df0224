//! The machine's CPUs, as ACPI's MADT (signature `APIC`) lists them: the local APIC id of each
//! processor the firmware says is there, for the platform to start with INIT-SIPI-SIPI.
//!
//! A processor counts when its entry is a Processor Local APIC (type 0, 8 bytes: ACPI id,
//! APIC id, flags) or a Processor Local x2APIC (type 9, 16 bytes: two reserved bytes, the
//! 32-bit x2APIC id, flags, ACPI id) whose flags say *enabled* (bit 0) or *online capable*
//! (bit 1: not running yet, but the OS may start it). QEMU lists every possible CPU (`-smp
//! N,maxcpus=M`): the `M - N` absent ones with flags 0, which are left out. Without ACPI
//! (`microvm,acpi=off`, Firecracker) there is no MADT, and so no list: the boot CPU alone.
//!
//! Pure (over [`platform::PhysRead`]), host-tested with seeded random tables like the IOAPIC
//! parser that reads the same table.

use crate::acpi::find_table;
use crate::ioapic::MadtError;
use platform::{MemoryKind, MemoryMap, PhysRead};

/// The end of conventional memory: a startup IPI's vector names a page below it (the EBDA and
/// the legacy video and ROM areas follow).
const LOW_MEMORY_END: u64 = 0xa_0000;

/// The page for the real-mode trampoline that started CPUs run first: the highest 4 KiB page
/// below 640 KiB (not page 0, which holds the real-mode interrupt vectors) that the memory map
/// says is RAM and no other region of the map overlaps. `None` if there is none.
///
/// The kernel's frame allocator starts at 1 MiB, so nothing else uses that page; QEMU, its
/// firmware and Firecracker keep their tables at the top of conventional memory (the EBDA,
/// Firecracker's MP table at 0x9fc00) or in reserved regions, which the map marks.
pub fn trampoline_page(map: &MemoryMap) -> Option<u64> {
    let page = 4096u64;
    let free = |at: u64| {
        let end = at + page;
        let mut in_ram = false;
        for r in map.regions() {
            let (start, stop) = (r.start.0, r.start.0.saturating_add(r.size));
            if start < end && at < stop {
                match r.kind {
                    MemoryKind::Ram if start <= at && end <= stop => in_ram = true,
                    _ => return false,
                }
            }
        }
        in_ram
    };
    (1..LOW_MEMORY_END / page)
        .rev()
        .map(|n| n * page)
        .find(|&at| free(at))
}

/// The most CPUs listed (the rest are counted, not kept).
pub const MAX_LISTED: usize = 64;

/// The processors the MADT lists as present, in its order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Processors {
    ids: [u32; MAX_LISTED],
    kept: usize,
    /// How many present processors the MADT lists (more than [`MAX_LISTED`] are counted only).
    pub listed: usize,
}

impl Processors {
    /// The local APIC ids of the present processors, in MADT order (at most [`MAX_LISTED`];
    /// an id listed twice is kept once).
    pub fn apic_ids(&self) -> &[u32] {
        &self.ids[..self.kept]
    }

    fn push(&mut self, id: u32) {
        if self.apic_ids().contains(&id) {
            return;
        }
        self.listed += 1;
        if self.kept < MAX_LISTED {
            self.ids[self.kept] = id;
            self.kept += 1;
        }
    }

    /// Reads the MADT under the RSDP at `rsdp`. Entries that do not fit (a length below the
    /// entry's size, past the table's end) end the walk, as for the IOAPICs.
    pub fn from_madt(mem: &impl PhysRead, rsdp: u64) -> Result<Self, MadtError> {
        let (madt, len) = find_table(mem, rsdp, b"APIC")?.ok_or(MadtError::NoMadt)?;
        let mut p = Processors {
            ids: [0; MAX_LISTED],
            kept: 0,
            listed: 0,
        };
        // Entries start after the header (36) and the local APIC address and flags (8).
        let mut at = 44u32;
        while at + 2 <= len {
            let e = madt + u64::from(at);
            let kind = mem.read_u8(e)?;
            let size = u32::from(mem.read_u8(e + 1)?);
            if size < 2 || at + size > len {
                break;
            }
            let present = |flags: u32| flags & 0b11 != 0;
            match (kind, size) {
                (0, 8..) => {
                    let id = mem.read_u8(e + 3)?;
                    if present(mem.read_u32(e + 4)?) {
                        p.push(u32::from(id));
                    }
                }
                (9, 16..) => {
                    let id = mem.read_u32(e + 4)?;
                    // 0xffffffff is no processor (the x2APIC broadcast id).
                    if present(mem.read_u32(e + 8)?) && id != u32::MAX {
                        p.push(id);
                    }
                }
                _ => {}
            }
            at += size;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::tests::{MADT, fix_checksum, put_madt, tables};
    use platform::FakeMemory;

    const BASE: u64 = 0xe0000;

    fn with_madt(entries: &[(u8, Vec<u8>)]) -> FakeMemory {
        let mut m = tables(false);
        put_madt(&mut m, entries);
        m
    }

    fn lapic(uid: u8, id: u8, flags: u32) -> (u8, Vec<u8>) {
        let mut b = vec![uid, id];
        b.extend_from_slice(&flags.to_le_bytes());
        (0, b)
    }

    fn x2apic(id: u32, flags: u32) -> (u8, Vec<u8>) {
        let mut b = vec![0, 0];
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        b.extend_from_slice(&7u32.to_le_bytes());
        (9, b)
    }

    fn ioapic() -> (u8, Vec<u8>) {
        let mut b = vec![0, 0];
        b.extend_from_slice(&0xfec0_0000u32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        (1, b)
    }

    #[test]
    fn qemu_smp_4_of_8_lists_the_present_four() {
        // `-smp 4,maxcpus=8`: eight entries, the last four with flags 0.
        let mut e: Vec<_> = (0..8)
            .map(|i| lapic(i, i, if i < 4 { 1 } else { 0 }))
            .collect();
        e.insert(1, ioapic());
        let p = Processors::from_madt(&with_madt(&e), BASE).expect("parses");
        assert_eq!(p.apic_ids(), &[0, 1, 2, 3]);
        assert_eq!(p.listed, 4);
    }

    #[test]
    fn online_capable_and_x2apic_entries_count_and_duplicates_do_not() {
        let e = [
            lapic(0, 0, 1),
            lapic(1, 2, 2),
            x2apic(300, 1),
            x2apic(u32::MAX, 1),
            lapic(2, 2, 1),
            x2apic(5, 0),
        ];
        let p = Processors::from_madt(&with_madt(&e), BASE).expect("parses");
        assert_eq!(p.apic_ids(), &[0, 2, 300]);
    }

    #[test]
    fn short_or_overlong_entries_end_the_walk() {
        // A local APIC entry of 6 bytes is too short to read: skipped, not misread; an entry
        // claiming to run past the table ends the walk.
        let e = [
            lapic(0, 0, 1),
            (0, vec![1, 1, 1, 0]),
            lapic(1, 1, 1),
            (0, vec![2; 40]),
        ];
        let mut m = with_madt(&e);
        let p = Processors::from_madt(&m, BASE).expect("parses");
        assert_eq!(p.apic_ids(), &[0, 1, 2]);
        // The last entry says 255 bytes: past the end.
        m.put(MADT + 44 + 8 + 6 + 8 + 1, &[255]);
        let len = 44 + 8 + 6 + 8 + 42;
        fix_checksum(&mut m, MADT, len, MADT + 9);
        let p = Processors::from_madt(&m, BASE).expect("parses");
        assert_eq!(p.apic_ids(), &[0, 1]);
    }

    #[test]
    fn more_than_the_list_holds_are_counted() {
        let e: Vec<_> = (0..100u32).map(|i| x2apic(i, 1)).collect();
        // 100 entries of 16 bytes do not fit the fake's 2 KiB after the MADT's start: use 100
        // of them in a bigger fake instead.
        let mut m = FakeMemory::new(BASE, 0x4000);
        let t = tables(false);
        m.put(BASE, t.get(BASE, 0x1800));
        put_madt(&mut m, &e);
        let p = Processors::from_madt(&m, BASE).expect("parses");
        assert_eq!(p.listed, 100);
        assert_eq!(p.apic_ids().len(), MAX_LISTED);
        assert_eq!(p.apic_ids()[63], 63);
    }

    #[test]
    fn no_madt_is_an_error() {
        let m = tables(false);
        // The fake's root table points at an `APIC` signature with no valid table: the MADT
        // is unreadable or absent, an error either way, never a panic.
        assert!(Processors::from_madt(&m, BASE).is_err());
        assert!(Processors::from_madt(&FakeMemory::new(BASE, 0x100), BASE).is_err());
    }

    #[test]
    fn the_trampoline_goes_to_the_highest_free_low_page() {
        use platform::{MemoryRegion, PhysAddr};
        let map = |regions: &[(u64, u64, MemoryKind)]| {
            let mut m = MemoryMap::new();
            for &(start, size, kind) in regions {
                m.push(MemoryRegion::new(PhysAddr(start), size, kind))
                    .expect("room");
            }
            m
        };
        // QEMU: RAM to 0x9fc00, the EBDA reserved after it.
        let q = map(&[
            (0, 0x9fc00, MemoryKind::Ram),
            (0x9fc00, 0x400, MemoryKind::Reserved),
            (0x10_0000, 0x100_0000, MemoryKind::Ram),
        ]);
        assert_eq!(trampoline_page(&q), Some(0x9e000));
        // A reserved hole overlapping the best candidate moves it down.
        let hole = map(&[
            (0, 0x9fc00, MemoryKind::Ram),
            (0x9d800, 0x900, MemoryKind::Reserved),
        ]);
        assert_eq!(trampoline_page(&hole), Some(0x9c000));
        // No low RAM at all (or only page 0): none.
        assert_eq!(
            trampoline_page(&map(&[(0x10_0000, 0x10_0000, MemoryKind::Ram)])),
            None
        );
        assert_eq!(trampoline_page(&map(&[(0, 0x1000, MemoryKind::Ram)])), None);
        assert_eq!(trampoline_page(&MemoryMap::new()), None);
    }

    #[test]
    fn random_tables_never_panic() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..3000 {
            let n = (next() % 12) as usize;
            let e: Vec<(u8, Vec<u8>)> = (0..n)
                .map(|_| {
                    let kind = (next() % 11) as u8;
                    let len = (next() % 20) as usize;
                    (kind, (0..len).map(|_| next() as u8).collect())
                })
                .collect();
            let mut m = with_madt(&e);
            if next() % 4 == 0 {
                // A random length byte somewhere in the entries.
                let at = MADT + 44 + next() % 64;
                m.put(at, &[next() as u8]);
            }
            let r = std::panic::catch_unwind(|| Processors::from_madt(&m, BASE));
            let p = r.unwrap_or_else(|_| panic!("case {case} panicked"));
            if let Ok(p) = p {
                assert!(p.apic_ids().len() <= n, "case {case}");
            }
        }
    }
}
