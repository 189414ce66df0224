//! Just enough ACPI to power the machine off: RSDP → RSDT/XSDT → FADT → the PM1a control
//! block (QEMU `q35`/`pc`) or the hardware-reduced sleep control register (QEMU `microvm`,
//! Cloud Hypervisor), and the `\_S5` sleep type from the DSDT.
//!
//! Written by hand: the `acpi` crate does far more (an AML interpreter is a separate crate)
//! and costs kilobytes of image; power-off needs five fields and one AML pattern. Every read is
//! bounds- and checksum-checked: garbage tables give an [`AcpiError`], never a panic.

use core::fmt;
use platform::{PhysRead, Unreadable};

/// Where the power-off value goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOffRegister {
    /// A 16-bit write to an I/O port (the PM1a control block).
    Pm1aControl(u16),
    /// An 8-bit write to an I/O port (hardware-reduced sleep control register in I/O space).
    SleepControlPort(u16),
    /// An 8-bit write to memory-mapped I/O (hardware-reduced sleep control register), below
    /// 2^52.
    SleepControlMmio(u64),
}

/// How to enter the S5 (soft-off) state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PowerOff {
    /// The register.
    pub register: PowerOffRegister,
    /// The value to write (SLP_TYP | SLP_EN, placed for that register).
    pub value: u16,
}

impl fmt::Display for PowerOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.register {
            PowerOffRegister::Pm1aControl(p) => write!(f, "PM1a control port {p:#x}")?,
            PowerOffRegister::SleepControlPort(p) => write!(f, "sleep control port {p:#x}")?,
            PowerOffRegister::SleepControlMmio(a) => write!(f, "sleep control MMIO {a:#x}")?,
        }
        write!(f, " <- {:#x}", self.value)
    }
}

/// Why no ACPI power-off was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No RSDP (address 0) or a bad RSDP signature or checksum.
    NoRsdp,
    /// A table's signature, length or checksum is wrong.
    BadTable(u64),
    /// There is no FADT.
    NoFadt,
    /// The FADT names neither a PM1a control block nor a sleep control register.
    NoSleepRegister,
    /// The DSDT has no `\_S5` package this parser understands.
    NoS5,
    /// A table lies in memory that cannot be read.
    Unreadable(u64),
}

impl fmt::Display for AcpiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AcpiError::NoRsdp => write!(f, "no valid ACPI RSDP"),
            AcpiError::BadTable(a) => write!(f, "bad ACPI table at {a:#x}"),
            AcpiError::NoFadt => write!(f, "no ACPI FADT"),
            AcpiError::NoSleepRegister => write!(f, "the FADT has no sleep register"),
            AcpiError::NoS5 => write!(f, "the DSDT has no \\_S5 sleep type"),
            AcpiError::Unreadable(a) => write!(f, "ACPI table at {a:#x} cannot be read"),
        }
    }
}

impl core::error::Error for AcpiError {}

impl From<Unreadable> for AcpiError {
    fn from(u: Unreadable) -> Self {
        AcpiError::Unreadable(u.0)
    }
}

const HEADER_LEN: u32 = 36;
/// Tables larger than this are not believed (QEMU's DSDT is a few KiB).
const MAX_TABLE_LEN: u32 = 1 << 20;
const HW_REDUCED_ACPI: u32 = 1 << 20;
const SLP_EN: u16 = 1 << 13;
const SLEEP_CONTROL_SLP_EN: u16 = 1 << 5;
/// x86-64 physical addresses have at most 52 bits: a register above is garbage (and a page
/// for it could not be mapped).
const PHYS_LIMIT: u64 = 1 << 52;

/// `at + offset`: an address past the end of the address space cannot be read.
fn add(at: u64, offset: u64) -> Result<u64, AcpiError> {
    at.checked_add(offset).ok_or(AcpiError::Unreadable(at))
}

fn checksum_ok(mem: &impl PhysRead, at: u64, len: u32) -> Result<bool, AcpiError> {
    add(at, u64::from(len))?;
    let mut sum = 0u8;
    let mut buf = [0u8; 256];
    let mut done = 0u64;
    while done < u64::from(len) {
        let n = (u64::from(len) - done).min(buf.len() as u64) as usize;
        mem.read(add(at, done)?, &mut buf[..n])?;
        sum = buf[..n].iter().fold(sum, |s, b| s.wrapping_add(*b));
        done += n as u64;
    }
    Ok(sum == 0)
}

/// Checks a table header at `at` and returns its length. The table then lies wholly below the
/// end of the address space: `at + len` (and every offset inside) does not overflow.
fn table(mem: &impl PhysRead, at: u64, signature: Option<&[u8; 4]>) -> Result<u32, AcpiError> {
    let mut sig = [0u8; 4];
    mem.read(at, &mut sig)?;
    if signature.is_some_and(|s| *s != sig) {
        return Err(AcpiError::BadTable(at));
    }
    let len = mem.read_u32(add(at, 4)?)?;
    if !(HEADER_LEN..=MAX_TABLE_LEN).contains(&len) {
        return Err(AcpiError::BadTable(at));
    }
    add(at, u64::from(len))?;
    if !checksum_ok(mem, at, len)? {
        return Err(AcpiError::BadTable(at));
    }
    Ok(len)
}

/// Finds the first table with `signature` under the RSDP at `rsdp` (through the XSDT when the
/// RSDP has one, else the RSDT): its address and its checked length, or `None` when the root
/// table lists no such table. The root table and the found one are bounds- and
/// checksum-checked; the found table lies wholly below the end of the address space.
pub(crate) fn find_table(
    mem: &impl PhysRead,
    rsdp: u64,
    signature: &[u8; 4],
) -> Result<Option<(u64, u32)>, AcpiError> {
    if rsdp == 0 {
        return Err(AcpiError::NoRsdp);
    }
    let mut sig = [0u8; 8];
    mem.read(rsdp, &mut sig)?;
    if &sig != b"RSD PTR " || !checksum_ok(mem, rsdp, 20)? {
        return Err(AcpiError::NoRsdp);
    }
    // Inside the 20 checked bytes.
    let revision = mem.read_u8(rsdp + 15)?;
    let xsdt = if revision >= 2 {
        mem.read_u64(add(rsdp, 24)?)?
    } else {
        0
    };
    let (root, entry_size) = if xsdt != 0 {
        (xsdt, 8)
    } else {
        (u64::from(mem.read_u32(rsdp + 16)?), 4)
    };
    let root_len = table(mem, root, None)?;
    for i in 0..u64::from((root_len - HEADER_LEN) / entry_size) {
        // Inside the root table (`table` checked that it ends below 2^64).
        let e = root + u64::from(HEADER_LEN) + i * u64::from(entry_size);
        let at = if entry_size == 8 {
            mem.read_u64(e)?
        } else {
            u64::from(mem.read_u32(e)?)
        };
        let mut s = [0u8; 4];
        mem.read(at, &mut s)?;
        if &s == signature {
            return Ok(Some((at, table(mem, at, Some(signature))?)));
        }
    }
    Ok(None)
}

/// Finds how to power off from the tables under the RSDP at `rsdp`.
pub fn find_power_off(mem: &impl PhysRead, rsdp: u64) -> Result<PowerOff, AcpiError> {
    let (fadt, fadt_len) = find_table(mem, rsdp, b"FACP")?.ok_or(AcpiError::NoFadt)?;
    // Whether the FADT holds the field; a field it holds lies below 2^64 (see `table`).
    let field = |offset: u32, size: u32| fadt_len >= offset + size;

    if !field(40, 4) {
        return Err(AcpiError::BadTable(fadt));
    }
    let mut dsdt = u64::from(mem.read_u32(fadt + 40)?);
    if field(140, 8) {
        let x = mem.read_u64(fadt + 140)?;
        if x != 0 {
            dsdt = x;
        }
    }
    let slp_typ = s5_sleep_type(mem, dsdt)?;

    let flags = if field(112, 4) {
        mem.read_u32(fadt + 112)?
    } else {
        0
    };
    let pm1a = if field(64, 4) {
        mem.read_u32(fadt + 64)?
    } else {
        0
    };
    if flags & HW_REDUCED_ACPI == 0 && pm1a != 0 && pm1a <= 0xffff {
        return Ok(PowerOff {
            register: PowerOffRegister::Pm1aControl(pm1a as u16),
            value: (u16::from(slp_typ & 7) << 10) | SLP_EN,
        });
    }
    if field(244, 12) {
        let space = mem.read_u8(fadt + 244)?;
        let address = mem.read_u64(fadt + 248)?;
        let value = (u16::from(slp_typ & 7) << 2) | SLEEP_CONTROL_SLP_EN;
        let register = match space {
            0 if address != 0 && address < PHYS_LIMIT => {
                Some(PowerOffRegister::SleepControlMmio(address))
            }
            1 if address != 0 && address <= 0xffff => {
                Some(PowerOffRegister::SleepControlPort(address as u16))
            }
            _ => None,
        };
        if let Some(register) = register {
            return Ok(PowerOff { register, value });
        }
    }
    Err(AcpiError::NoSleepRegister)
}

/// SLP_TYPa of the `\_S5` package in the DSDT: `_S5_`, PackageOp (0x12), PkgLength,
/// NumElements, then the first element as ZeroOp, OneOp or BytePrefix + byte.
fn s5_sleep_type(mem: &impl PhysRead, dsdt: u64) -> Result<u8, AcpiError> {
    let len = table(mem, dsdt, Some(b"DSDT"))?;
    // Scan in chunks that overlap by the length of the pattern, so a match across a chunk
    // boundary is seen whole in the next chunk.
    const PATTERN: usize = 12;
    let mut chunk = [0u8; 512];
    let end = dsdt + u64::from(len);
    let mut at = dsdt + u64::from(HEADER_LEN);
    while at < end {
        let n = (end - at).min(chunk.len() as u64) as usize;
        mem.read(at, &mut chunk[..n])?;
        let found = chunk[..n]
            .windows(4)
            .position(|w| w == b"_S5_")
            .map(|i| &chunk[i..n]);
        if let Some(s) = found {
            if s.len() < PATTERN && at + (n as u64) < end {
                at += (n - s.len()) as u64; // re-read with the whole pattern in the chunk
                continue;
            }
            if s.get(4) != Some(&0x12) {
                return Err(AcpiError::NoS5);
            }
            let pkg_len_bytes = usize::from(s.get(5).copied().unwrap_or(0) >> 6);
            let element = 5 + 1 + pkg_len_bytes + 1;
            return match s.get(element..) {
                Some([0x00, ..]) => Ok(0),
                Some([0x01, ..]) => Ok(1),
                Some([0x0a, v, ..]) => Ok(*v),
                _ => Err(AcpiError::NoS5),
            };
        }
        if at + (n as u64) >= end {
            break;
        }
        at += (n - (PATTERN - 1)) as u64;
    }
    Err(AcpiError::NoS5)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use platform::FakeMemory;

    const BASE: u64 = 0xe0000;

    pub(crate) fn fix_checksum(m: &mut FakeMemory, at: u64, len: usize, checksum_at: u64) {
        m.put(checksum_at, &[0]);
        let sum = m.get(at, len).iter().fold(0u8, |s, b| s.wrapping_add(*b));
        m.put(checksum_at, &[0u8.wrapping_sub(sum)]);
    }

    pub(crate) fn header(m: &mut FakeMemory, at: u64, sig: &[u8; 4], len: u32) {
        m.put(at, sig);
        m.put_u32(at + 4, len);
    }

    /// Where [`tables`]' root table points for its `APIC` table (the MADT).
    pub(crate) const MADT: u64 = BASE + 0x1800;

    /// Writes a MADT at [`MADT`] made of `entries` (type, bytes after type and length), with the
    /// local APIC at 0xfee00000 and its checksum right.
    pub(crate) fn put_madt<B: AsRef<[u8]>>(m: &mut FakeMemory, entries: &[(u8, B)]) {
        let mut at = MADT + 44;
        m.put_u32(MADT + 36, 0xfee0_0000);
        m.put_u32(MADT + 40, 1);
        for (kind, body) in entries {
            let body = body.as_ref();
            m.put(at, &[*kind, (body.len() + 2) as u8]);
            m.put(at + 2, body);
            at += body.len() as u64 + 2;
        }
        let len = (at - MADT) as u32;
        header(m, MADT, b"APIC", len);
        fix_checksum(m, MADT, len as usize, MADT + 9);
    }

    /// RSDP (rev 0) -> RSDT -> FADT -> DSDT, like QEMU q35 (PM1a at 0x604, \_S5 = 0) or like
    /// microvm (hardware reduced, sleep control at 0xfea00200, \_S5 = 5).
    pub(crate) fn tables(microvm: bool) -> FakeMemory {
        let mut m = FakeMemory::new(BASE, 0x2000);
        let (rsdp, rsdt, fadt, dsdt) = (BASE, BASE + 0x100, BASE + 0x200, BASE + 0x400);
        m.put(rsdp, b"RSD PTR ");
        m.put_u32(rsdp + 16, rsdt as u32);
        fix_checksum(&mut m, rsdp, 20, rsdp + 8);
        header(&mut m, rsdt, b"RSDT", 36 + 8);
        m.put_u32(rsdt + 36, BASE as u32 + 0x1800); // a table that is not the FADT
        m.put(BASE + 0x1800, b"APIC");
        m.put_u32(rsdt + 40, fadt as u32);
        fix_checksum(&mut m, rsdt, 44, rsdt + 9);
        header(&mut m, fadt, b"FACP", 268);
        m.put_u32(fadt + 40, dsdt as u32);
        if microvm {
            m.put_u32(fadt + 112, HW_REDUCED_ACPI);
            m.put(fadt + 244, &[0, 8, 0, 0]);
            m.put_u64(fadt + 248, 0xfea0_0200);
        } else {
            m.put_u32(fadt + 64, 0x604);
        }
        fix_checksum(&mut m, fadt, 268, fadt + 9);
        let s5: &[u8] = if microvm {
            &[
                b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x0a, 0x05, 0x00, 0x00, 0x00,
            ]
        } else {
            &[
                b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x00, 0x00, 0x00, 0x00,
            ]
        };
        header(&mut m, dsdt, b"DSDT", 36 + 40);
        m.put(dsdt + 36 + 20, s5);
        fix_checksum(&mut m, dsdt, 76, dsdt + 9);
        m
    }

    #[test]
    fn q35_style_pm1a_control_block() {
        let p = find_power_off(&tables(false), BASE).unwrap();
        assert_eq!(p.register, PowerOffRegister::Pm1aControl(0x604));
        assert_eq!(p.value, 0x2000);
        assert_eq!(p.to_string(), "PM1a control port 0x604 <- 0x2000");
    }

    #[test]
    fn microvm_style_sleep_control_register() {
        let p = find_power_off(&tables(true), BASE).unwrap();
        assert_eq!(p.register, PowerOffRegister::SleepControlMmio(0xfea0_0200));
        assert_eq!(p.value, (5 << 2) | (1 << 5));
    }

    #[test]
    fn s5_is_found_anywhere_in_a_large_dsdt() {
        // Put \_S5 at every offset around the 512-byte chunk boundaries of a 1.5 KiB DSDT.
        for offset in (490..530).chain(990..1040).chain([36, 1500 - 11]) {
            let dsdt = BASE + 0x400;
            let mut m = FakeMemory::new(BASE, 0x2000);
            m.put(BASE, tables(true).get(BASE, 0x400));
            header(&mut m, dsdt, b"DSDT", 1500);
            m.put(
                dsdt + offset,
                &[
                    b'_', b'S', b'5', b'_', 0x12, 0x06, 0x04, 0x0a, 0x05, 0x00, 0x00,
                ],
            );
            fix_checksum(&mut m, dsdt, 1500, dsdt + 9);
            let p = find_power_off(&m, BASE).unwrap_or_else(|e| panic!("offset {offset}: {e}"));
            assert_eq!(p.value, (5 << 2) | (1 << 5), "offset {offset}");
        }
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let m = tables(false);
        assert_eq!(find_power_off(&m, 0), Err(AcpiError::NoRsdp));
        assert_eq!(find_power_off(&m, BASE + 0x100), Err(AcpiError::NoRsdp));
        assert_eq!(find_power_off(&m, 0x10), Err(AcpiError::Unreadable(0x10)));
        // A flipped byte breaks the FADT checksum.
        let mut bad = tables(false);
        bad.put(BASE + 0x200 + 100, &[0x55]);
        assert_eq!(
            find_power_off(&bad, BASE),
            Err(AcpiError::BadTable(BASE + 0x200))
        );
        // An absurd length.
        let mut long = tables(false);
        long.put_u32(BASE + 0x100 + 4, u32::MAX);
        assert_eq!(
            find_power_off(&long, BASE),
            Err(AcpiError::BadTable(BASE + 0x100))
        );
        // A sleep control register beyond the physical address space.
        let mut wild = tables(true);
        wild.put_u64(BASE + 0x200 + 248, u64::MAX);
        fix_checksum(&mut wild, BASE + 0x200, 268, BASE + 0x200 + 9);
        assert_eq!(find_power_off(&wild, BASE), Err(AcpiError::NoSleepRegister));
        // No \_S5 in the DSDT.
        let mut no_s5 = tables(false);
        no_s5.put(BASE + 0x400 + 56, b"_S4_");
        fix_checksum(&mut no_s5, BASE + 0x400, 76, BASE + 0x400 + 9);
        assert_eq!(find_power_off(&no_s5, BASE), Err(AcpiError::NoS5));
        // Every truncation of the memory is an error, never a panic.
        for cut in (0..0x2000).step_by(61) {
            let mut short = FakeMemory::new(BASE, cut);
            short.put(BASE, tables(true).get(BASE, cut));
            let _ = find_power_off(&short, BASE);
        }
    }
}

#[cfg(test)]
mod fuzz_tests {
    //! Seeded random tables: nearly valid ones (the QEMU-like chain of `tests`, mutated: bytes
    //! flipped, pointers and lengths set to values near 0, 4 GiB and 2^64, tables planted at the
    //! very top of the address space, checksums mostly repaired so that the parser reads on).
    use super::*;
    use platform::FakeMemory;
    use platform::fuzz::{Rng, cases};
    use std::vec::Vec;

    const BASE: u64 = 0xe0000;
    const RSDP: u64 = BASE;
    const RSDT: u64 = BASE + 0x100;
    const FADT: u64 = BASE + 0x200;
    const DSDT: u64 = BASE + 0x400;
    /// The last page of the address space, and the page under 4 GiB.
    const TOP: u64 = u64::MAX - 0xfff;
    const LOW4G: u64 = 0xffff_f000;

    /// Makes the bytes at `[at, at + len)` sum to 0 by their byte at `checksum_at` (nothing
    /// when they are not all in the fake memory).
    fn fix_checksum(m: &mut FakeMemory, at: u64, len: u64, checksum_at: u64) {
        let Some(n) = usize::try_from(len).ok().filter(|&n| n <= 0x4000) else {
            return;
        };
        let mut bytes = std::vec![0u8; n];
        if m.try_put(checksum_at, &[0]) && m.read(at, &mut bytes).is_ok() {
            let sum = bytes.iter().fold(0u8, |s, b| s.wrapping_add(*b));
            m.try_put(checksum_at, &[0u8.wrapping_sub(sum)]);
        }
    }

    /// Repairs a table's checksum by the length its header gives.
    fn fix_table(m: &mut FakeMemory, at: u64) {
        if let (Ok(len), Some(c)) = (m.read_u32(at.wrapping_add(4)), at.checked_add(9)) {
            fix_checksum(m, at, u64::from(len), c);
        }
    }

    fn tables(microvm: bool) -> FakeMemory {
        super::tests::tables(microvm)
            .with_region(TOP, 0x1000)
            .with_region(LOW4G, 0x1000)
    }

    /// An address worth pointing at: a table, just below the end of a region, or anything.
    fn address(r: &mut Rng) -> u64 {
        match r.below(6) {
            0 => r.pick(&[RSDP, RSDT, FADT, DSDT, BASE + 0x1800]),
            1 => u64::MAX - r.below(64),
            2 => TOP + r.below(0x1000),
            3 => 0xffff_ffff - r.below(64),
            4 => BASE + r.below(0x2000),
            _ => r.edgy_u64(),
        }
    }

    /// Fields of the chain that hold pointers, lengths, flags or the `\_S5` package, with their
    /// size in bytes.
    const FIELDS: [(u64, usize); 17] = [
        (RSDP + 15, 1),
        (RSDP + 16, 4),
        (RSDP + 24, 8),
        (RSDT + 4, 4),
        (RSDT + 36, 4),
        (RSDT + 40, 4),
        (FADT + 4, 4),
        (FADT + 40, 4),
        (FADT + 64, 4),
        (FADT + 112, 4),
        (FADT + 140, 8),
        (FADT + 244, 1),
        (FADT + 248, 8),
        (DSDT + 4, 4),
        (DSDT + 56 + 4, 1),
        (DSDT + 56 + 5, 1),
        (DSDT + 56 + 7, 2),
    ];

    fn mutate(m: &mut FakeMemory, r: &mut Rng) -> u64 {
        let mut planted = Vec::new();
        let mut rsdp = RSDP;
        for _ in 0..1 + r.below(6) {
            match r.below(5) {
                0 => {
                    let at = r.pick(&[BASE, TOP, LOW4G]) + r.below(0x1000);
                    m.put(at, &[r.next_u64() as u8]);
                }
                1 | 2 => {
                    let (at, size) = r.pick(&FIELDS);
                    let v = if r.chance(50) {
                        address(r)
                    } else {
                        r.edgy_u64()
                    };
                    m.put(at, &v.to_le_bytes()[..size]);
                }
                3 => {
                    // A table at the top of the address space, and a pointer to it.
                    let at = if r.chance(50) {
                        u64::MAX - r.below(48)
                    } else {
                        TOP + r.below(0x1000)
                    };
                    let sig = r.pick(&[*b"XSDT", *b"RSDT", *b"FACP", *b"DSDT", *b"RSD "]);
                    m.try_put(at, &sig);
                    let len = r.pick(&[36, 44, 116, 268, (u64::MAX - at + 1) as u32, 0]);
                    m.try_put(at.wrapping_add(4), &len.to_le_bytes());
                    if r.chance(50) {
                        m.try_put(at.wrapping_add(36), &RSDT.to_le_bytes());
                    }
                    planted.push(at);
                    match r.below(4) {
                        0 => {
                            m.put(RSDP + 15, &[2]);
                            m.put(RSDP + 24, &at.to_le_bytes());
                        }
                        1 => m.put(RSDT + 40, &(at as u32).to_le_bytes()),
                        2 => m.put(FADT + 140, &at.to_le_bytes()),
                        _ => m.put(FADT + 40, &(at as u32).to_le_bytes()),
                    }
                }
                _ => {
                    // Another RSDP, near the top or under 4 GiB.
                    rsdp = if r.chance(50) {
                        u64::MAX - r.below(40)
                    } else {
                        LOW4G + r.below(0x1000)
                    };
                    let copy = m.get(RSDP, 36).to_vec();
                    let n = usize::try_from(u64::MAX - rsdp + 1).map_or(36, |n| n.min(36));
                    m.try_put(rsdp, &copy[..n]);
                    fix_checksum(m, rsdp, 20, rsdp.wrapping_add(8));
                }
            }
        }
        if r.chance(85) {
            fix_checksum(m, RSDP, 20, RSDP + 8);
            for at in [RSDT, FADT, DSDT].into_iter().chain(planted) {
                fix_table(m, at);
            }
        }
        if r.chance(5) { r.edgy_u64() } else { rsdp }
    }

    #[test]
    fn an_xsdt_in_the_last_bytes_of_the_address_space_is_an_error() {
        for back in 1..=48 {
            let mut m = tables(false);
            let at = u64::MAX - (back - 1);
            m.put(at, &b"XSDT"[..back.min(4) as usize]);
            m.put(RSDP + 15, &[2]);
            m.put(RSDP + 24, &at.to_le_bytes());
            fix_checksum(&mut m, RSDP, 20, RSDP + 8);
            assert!(find_power_off(&m, RSDP).is_err(), "XSDT at {at:#x}");
        }
    }

    #[test]
    fn random_tables_give_an_error_or_a_power_off_never_a_panic() {
        let mut r = Rng::new(0xac91_0001);
        let (mut ok, mut errors) = (0u64, [0u64; 6]);
        for case in 0..cases(20_000) {
            let mut m = tables(r.chance(50));
            let rsdp = mutate(&mut m, &mut r);
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| find_power_off(&m, rsdp)));
            match result {
                Ok(Ok(_)) => ok += 1,
                Ok(Err(e)) => {
                    errors[match e {
                        AcpiError::NoRsdp => 0,
                        AcpiError::BadTable(_) => 1,
                        AcpiError::NoFadt => 2,
                        AcpiError::NoSleepRegister => 3,
                        AcpiError::NoS5 => 4,
                        AcpiError::Unreadable(_) => 5,
                    }] += 1
                }
                Err(_) => panic!("case {case} panicked (seed 0xac910001)"),
            }
        }
        // The inputs reach every outcome (else the generator is too tame or too wild).
        assert!(ok > 0, "no case found a power-off: {errors:?}");
        assert!(
            errors.iter().all(|&n| n > 0),
            "an error never seen: {errors:?}"
        );
    }
}
