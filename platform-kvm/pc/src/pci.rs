//! PCI enumeration for QEMU `q35` (and `pc`): configuration-space access behind
//! [`ConfigSpace`], a scan of bus 0, and BAR sizing and assignment.
//!
//! qboot, the firmware xtask boots `q35` with, assigns no BARs, so [`scan`] does: for each
//! function it disables decoding, sizes every memory BAR (32- and 64-bit: write all-ones, read
//! back, restore), places it in an [`MmioWindow`] aligned to its size (at least a page, so that
//! no two devices share a page), and enables memory decoding and bus mastering on the
//! functions that got a memory BAR.
//!
//! - I/O BARs are sized and reported but left where the firmware put them; I/O decoding is left
//!   as the firmware set it.
//! - Only bus 0 is scanned: PCI-to-PCI bridges (`pcie-root-port` and the like) are reported,
//!   not followed, since the devices behind them would need bus numbers and bridge windows.
//! - The window for `q35` is [`Q35_MMIO_WINDOW`], a documented constant rather than the
//!   DSDT's `_CRS`.
//!
//! Configuration space is untrusted input: a function that returns all-ones is absent; one
//! whose BARs are not powers of two, do not fit the window, or whose capability list loops or
//! points outside the header is skipped (counted in [`Scan::skipped`]) and left with decoding
//! off. Every loop is bounded. `PortConfigSpace` (bare metal) is the real access through
//! ports 0xCF8/0xCFC; the host tests use a fake.

/// A PCI function's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Address {
    /// Bus (0..=255).
    pub bus: u8,
    /// Device (0..32).
    pub device: u8,
    /// Function (0..8).
    pub function: u8,
}

impl core::fmt::Display for Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Access to the 256-byte configuration space of PCI functions, by aligned dwords.
pub trait ConfigSpace {
    /// Reads the dword at `offset` (a multiple of 4, below 256) of `at`'s header.
    fn read(&mut self, at: Address, offset: u8) -> u32;
    /// Writes the dword at `offset` (a multiple of 4, below 256) of `at`'s header.
    fn write(&mut self, at: Address, offset: u8, value: u32);
}

/// The 32-bit MMIO window for BARs on QEMU `q35`: above the 2 GiB low RAM limit and the
/// MMCONFIG area at 0xb000_0000 (256 MiB), below the IOAPIC, HPET and local APIC at
/// 0xfec0_0000 and up. QEMU's `q35` puts its 32-bit PCI hole between the end of low RAM (at most
/// 0x8000_0000, or 0xb000_0000 with less than 2.75 GiB) and 0xfec0_0000; this is its upper part.
pub const Q35_MMIO_WINDOW: core::ops::Range<u64> = 0xc000_0000..0xfe00_0000;

/// The smallest alignment a memory BAR gets: a page.
const MIN_ALIGN: u64 = 0x1000;

/// A bump allocator over the address range BARs are placed in.
#[derive(Clone, Debug)]
pub struct MmioWindow {
    next: u64,
    end: u64,
}

impl MmioWindow {
    /// A window over `range`.
    pub fn new(range: core::ops::Range<u64>) -> Self {
        MmioWindow {
            next: range.start,
            end: range.end,
        }
    }

    /// `size` bytes (a power of two) aligned to `max(size, 4 KiB)`, or `None` when they do not
    /// fit. Nothing is taken on failure.
    fn take(&mut self, size: u64) -> Option<u64> {
        let align = size.max(MIN_ALIGN);
        let start = self.next.checked_add(align - 1)? & !(align - 1);
        let end = start.checked_add(size)?;
        if end > self.end {
            return None;
        }
        self.next = end;
        Some(start)
    }
}

/// What a BAR decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BarKind {
    /// 32-bit memory (placed below 4 GiB).
    Memory32,
    /// 64-bit memory (this BAR and the next one).
    Memory64,
    /// I/O ports (left where the firmware put them).
    Io,
}

/// A BAR as sized (and, for memory, assigned).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bar {
    /// Its index (0..6); a 64-bit BAR also takes `index + 1`.
    pub index: u8,
    /// What it decodes.
    pub kind: BarKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// The base address (memory: assigned by [`scan`]; I/O: as found).
    pub address: u64,
    /// Its size in bytes (a power of two).
    pub size: u64,
}

/// The most capabilities recorded per function.
pub const MAX_CAPABILITIES: usize = 16;

/// A PCI function found by [`scan`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Device {
    /// Where it is.
    pub address: Address,
    /// Vendor ID (0x1af4: virtio).
    pub vendor: u16,
    /// Device ID (virtio: 0x1000..0x103f transitional, 0x1040 + type modern; net is 0x1000 and
    /// 0x1041).
    pub device: u16,
    /// Class, subclass, programming interface.
    pub class: [u8; 3],
    /// Revision ID.
    pub revision: u8,
    /// Header type (0: endpoint, 1: PCI-to-PCI bridge), without the multi-function bit.
    pub header_type: u8,
    /// Its BARs, by index; `None` where unimplemented (or the upper half of a 64-bit BAR).
    pub bars: [Option<Bar>; 6],
    /// Interrupt pin: 1..=4 for INTA..INTD, `None` without one.
    pub interrupt_pin: Option<u8>,
    /// Interrupt line as the firmware left it (0xff: none).
    pub interrupt_line: u8,
    capabilities: [(u8, u8); MAX_CAPABILITIES],
    capability_count: u8,
}

impl Device {
    /// Its capabilities as (ID, offset), in list order.
    pub fn capabilities(&self) -> &[(u8, u8)] {
        &self.capabilities[..usize::from(self.capability_count)]
    }

    /// The offset of its first capability `id` (0x09: vendor-specific, as virtio's; 0x11: MSI-X).
    pub fn capability(&self, id: u8) -> Option<u8> {
        self.capabilities().iter().find(|c| c.0 == id).map(|c| c.1)
    }

    /// Its memory BARs.
    pub fn memory_bars(&self) -> impl Iterator<Item = &Bar> {
        self.bars.iter().flatten().filter(|b| b.kind != BarKind::Io)
    }
}

/// Why a function was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SkipReason {
    /// A BAR of a reserved type, a size not a power of two, or a 64-bit BAR in the last slot.
    BadBar,
    /// A memory BAR that does not fit the rest of the window.
    WindowFull,
    /// A capability pointer outside the header, misaligned, or a list that loops.
    BadCapabilities,
    /// A header type other than 0 or 1.
    BadHeader,
    /// The list given to [`scan`] was full.
    ListFull,
}

/// What [`scan`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Scan {
    /// How many functions were written to the list.
    pub found: usize,
    /// How many present functions were skipped (left with decoding off, except
    /// [`SkipReason::ListFull`], which are left untouched).
    pub skipped: usize,
    /// Why the last one was skipped.
    pub last_skip: Option<SkipReason>,
    /// How many present functions the filter of [`scan_filtered`] left alone (not sized, not
    /// assigned, decoding as the firmware left it, not in the list).
    pub ignored: usize,
}

const COMMAND_IO: u32 = 1 << 0;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_BUS_MASTER: u32 = 1 << 2;
const STATUS_CAPABILITIES: u32 = 1 << (16 + 4);

/// Scans bus 0 through `cfg`, sizes every BAR, places memory BARs in `window`, enables memory
/// decoding and bus mastering on functions with a memory BAR, and writes what it found to
/// `out` in bus order. Never panics, whatever `cfg` returns.
pub fn scan(cfg: &mut impl ConfigSpace, window: &mut MmioWindow, out: &mut [Device]) -> Scan {
    scan_filtered(cfg, window, out, |_, _| true)
}

/// [`scan`], keeping only the functions for which `keep(vendor, device)` says yes: the others
/// are counted in [`Scan::ignored`] and left untouched (their BARs unsized and unassigned, their
/// command register as the firmware left it). The platform keeps virtio functions only
/// ([`VIRTIO_VENDOR`]), so that no function it has no driver for decodes memory or masters
/// the bus.
pub fn scan_filtered(
    cfg: &mut impl ConfigSpace,
    window: &mut MmioWindow,
    out: &mut [Device],
    mut keep: impl FnMut(u16, u16) -> bool,
) -> Scan {
    let mut result = Scan::default();
    for device in 0..32u8 {
        let first = Address {
            bus: 0,
            device,
            function: 0,
        };
        if !present(cfg, first) {
            continue;
        }
        let multi = cfg.read(first, 0x0c) & (1 << 23) != 0;
        for function in 0..if multi { 8 } else { 1 } {
            let at = Address { function, ..first };
            if function != 0 && !present(cfg, at) {
                continue;
            }
            let id = cfg.read(at, 0);
            if !keep(id as u16, (id >> 16) as u16) {
                result.ignored += 1;
                continue;
            }
            let Some(slot) = out.get_mut(result.found) else {
                result.skipped += 1;
                result.last_skip = Some(SkipReason::ListFull);
                continue;
            };
            match probe(cfg, at, window) {
                Ok(d) => {
                    *slot = d;
                    result.found += 1;
                }
                Err(reason) => {
                    result.skipped += 1;
                    result.last_skip = Some(reason);
                }
            }
        }
    }
    result
}

fn present(cfg: &mut impl ConfigSpace, at: Address) -> bool {
    let vendor = cfg.read(at, 0) as u16;
    vendor != 0xffff && vendor != 0
}

/// Reads, sizes and assigns one function; on an error its decoding stays off.
fn probe(
    cfg: &mut impl ConfigSpace,
    at: Address,
    window: &mut MmioWindow,
) -> Result<Device, SkipReason> {
    let id = cfg.read(at, 0);
    let class = cfg.read(at, 0x08);
    let header_type = (cfg.read(at, 0x0c) >> 16) as u8 & 0x7f;
    let bar_count = match header_type {
        0 => 6,
        1 => 2,
        _ => return Err(SkipReason::BadHeader),
    };
    let interrupt = cfg.read(at, 0x3c);
    let mut d = Device {
        address: at,
        vendor: id as u16,
        device: (id >> 16) as u16,
        class: [(class >> 24) as u8, (class >> 16) as u8, (class >> 8) as u8],
        revision: class as u8,
        header_type,
        interrupt_line: interrupt as u8,
        interrupt_pin: Some((interrupt >> 8) as u8).filter(|p| (1..=4).contains(p)),
        ..Device::default()
    };
    // Decoding off while BARs hold all-ones (status bits are write-1-to-clear: written as 0).
    let command = cfg.read(at, 0x04) & 0xffff;
    cfg.write(at, 0x04, command & !(COMMAND_IO | COMMAND_MEMORY));
    let status = cfg.read(at, 0x04);
    if status & STATUS_CAPABILITIES != 0 {
        read_capabilities(cfg, at, &mut d)?;
    }
    // Size every BAR first, so that a bad one leaves nothing of the window taken.
    let mut index = 0u8;
    while index < bar_count {
        let bar = size_bar(cfg, at, index, bar_count)?;
        let step = if matches!(bar, Some(b) if b.kind == BarKind::Memory64) {
            2
        } else {
            1
        };
        d.bars[usize::from(index)] = bar;
        index += step;
    }
    let saved = window.clone();
    for bar in d.bars.iter_mut().flatten() {
        if bar.kind == BarKind::Io {
            continue;
        }
        let Some(address) = window
            .take(bar.size)
            .filter(|a| bar.kind == BarKind::Memory64 || a.saturating_add(bar.size) <= 1 << 32)
        else {
            *window = saved;
            return Err(SkipReason::WindowFull);
        };
        bar.address = address;
    }
    let mut memory = false;
    for bar in d.bars.iter().flatten() {
        if bar.kind == BarKind::Io {
            continue;
        }
        memory = true;
        let offset = 0x10 + 4 * bar.index;
        let low = cfg.read(at, offset) & 0xf;
        cfg.write(at, offset, bar.address as u32 | low);
        if bar.kind == BarKind::Memory64 {
            cfg.write(at, offset + 4, (bar.address >> 32) as u32);
        }
    }
    let enable = if memory {
        COMMAND_MEMORY | COMMAND_BUS_MASTER
    } else {
        0
    };
    cfg.write(at, 0x04, command | enable);
    Ok(d)
}

/// Sizes BAR `index` (write all-ones, read back, restore): `None` when unimplemented.
fn size_bar(
    cfg: &mut impl ConfigSpace,
    at: Address,
    index: u8,
    count: u8,
) -> Result<Option<Bar>, SkipReason> {
    let offset = 0x10 + 4 * index;
    let original = cfg.read(at, offset);
    cfg.write(at, offset, u32::MAX);
    let probed = cfg.read(at, offset);
    cfg.write(at, offset, original);
    if original & 1 == 1 {
        // I/O: bits 31..2 (the upper 16 may read as 0).
        let mask = probed & !3 | 0xffff_0000;
        if probed & !3 == 0 {
            return Ok(None);
        }
        let size = u64::from((!mask).wrapping_add(1));
        return power_of_two(size).map(|size| {
            Some(Bar {
                index,
                kind: BarKind::Io,
                prefetchable: false,
                address: u64::from(original & 0xffff_fffc),
                size,
            })
        });
    }
    let prefetchable = original & 0x8 != 0;
    let (kind, mask) = match (original >> 1) & 3 {
        0 => (
            BarKind::Memory32,
            u64::from(probed & !0xf) | 0xffff_ffff_0000_0000,
        ),
        2 if index + 1 < count => {
            let high = cfg.read(at, offset + 4);
            cfg.write(at, offset + 4, u32::MAX);
            let probed_high = cfg.read(at, offset + 4);
            cfg.write(at, offset + 4, high);
            (
                BarKind::Memory64,
                u64::from(probed_high) << 32 | u64::from(probed & !0xf),
            )
        }
        _ => return Err(SkipReason::BadBar),
    };
    if mask == 0xffff_ffff_0000_0000 && kind == BarKind::Memory32 || mask == 0 {
        return Ok(None);
    }
    let size = power_of_two((!mask).wrapping_add(1))?;
    Ok(Some(Bar {
        index,
        kind,
        prefetchable,
        address: 0,
        size,
    }))
}

fn power_of_two(size: u64) -> Result<u64, SkipReason> {
    if size.is_power_of_two() {
        Ok(size)
    } else {
        Err(SkipReason::BadBar)
    }
}

/// Walks the capability list: at most 48 entries (as many as fit after the standard header),
/// each at a dword-aligned offset in 0x40..0x100, none visited twice.
fn read_capabilities(
    cfg: &mut impl ConfigSpace,
    at: Address,
    d: &mut Device,
) -> Result<(), SkipReason> {
    let mut seen = [false; 64];
    let mut next = cfg.read(at, 0x34) as u8;
    while next != 0 {
        if next < 0x40 || next & 3 != 0 {
            return Err(SkipReason::BadCapabilities);
        }
        let slot = usize::from(next / 4);
        if core::mem::replace(&mut seen[slot], true) {
            return Err(SkipReason::BadCapabilities);
        }
        let header = cfg.read(at, next);
        if let Some(c) = d.capabilities.get_mut(usize::from(d.capability_count)) {
            *c = (header as u8, next);
            d.capability_count += 1;
        }
        next = (header >> 8) as u8;
    }
    Ok(())
}

/// The PCI vendor ID of virtio devices (Red Hat, Inc.).
pub const VIRTIO_VENDOR: u16 = 0x1af4;

/// The virtio device type (virtio 1.2, §5: 1 network, 2 block, ...) of a virtio PCI function
/// from its device ID (virtio 1.2, §4.1.2.1): 0x1040 + type for a modern device; for a
/// transitional one (0x1000-0x103f) the spec takes the type from the subsystem ID, which these
/// IDs fix (0x1000 network, 0x1001 block, 0x1002 balloon, 0x1003 console, 0x1004 SCSI, 0x1005
/// entropy, 0x1009 9p); `None` for any other.
pub fn virtio_type(vendor: u16, device: u16) -> Option<u32> {
    if vendor != VIRTIO_VENDOR {
        return None;
    }
    match device {
        0x1000 => Some(1),
        0x1001 => Some(2),
        0x1002 => Some(5),
        0x1003 => Some(3),
        0x1004 => Some(8),
        0x1005 => Some(4),
        0x1009 => Some(9),
        0x1041..=0x107f => Some(u32::from(device - 0x1040)),
        _ => None,
    }
}

/// The host bridge at 00:00.0, which tells how INTx pins reach the IOAPIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostBridge {
    /// Intel Q35 MCH (8086:29c0), QEMU `q35`: the ICH9 routes the pins (see [`intx_gsi`]).
    Q35,
    /// Anything else (QEMU `pc`'s i440FX, Cloud Hypervisor's): the interrupt line the firmware
    /// or the monitor wrote (see [`intx_gsi`]).
    Other,
}

impl HostBridge {
    /// The host bridge with these IDs.
    pub fn of(vendor: u16, device: u16) -> Self {
        match (vendor, device) {
            (0x8086, 0x29c0) => HostBridge::Q35,
            _ => HostBridge::Other,
        }
    }
}

/// The GSI of the IOAPIC input an INTx pin of a bus-0 function raises, or `None` when it has no
/// pin or the route is unknown.
///
/// - `q35`: QEMU's ICH9 (`hw/isa/lpc_ich9.c`) maps device `d`'s pin to a PIRQ line: for
///   `d` <= 24, PIRQ E + (d + pin - 1) mod 4 (the swizzle `ich9_cc_init` sets, which QEMU's
///   DSDT `_PRT` repeats); for the chipset's own devices 25-29 and 31, the `D{n}IR` registers'
///   reset value 0x3210, PIRQ A + pin - 1; for 30 (the DMI-to-PCI bridge), PIRQ E + pin - 1.
///   PIRQ A-H always drive IOAPIC inputs 16-23 (`ich9_pirq_to_gsi`), whatever the PIRQ
///   routing registers say (those only choose the 8259's line). The interrupt line register
///   is not used: qboot writes the 8259's IRQ there (10 or 11), not the GSI.
/// - Other host bridges: the interrupt line register when it holds a line the firmware or the
///   monitor wrote (1-254; on `pc`, an ISA IRQ, which is also its GSI), else `None`.
///
/// `pin` is the interrupt pin register (1-4 for INTA-INTD, anything else: no pin).
pub fn intx_gsi(bridge: HostBridge, device: u8, pin: u8, line: u8) -> Option<u32> {
    if !(1..=4).contains(&pin) || device >= 32 {
        return None;
    }
    let intx = u32::from(pin - 1);
    match bridge {
        HostBridge::Q35 => {
            let pirq = match device {
                0..=24 => 4 + (u32::from(device) + intx) % 4,
                30 => 4 + intx,
                _ => intx,
            };
            Some(16 + pirq)
        }
        HostBridge::Other => match line {
            0 | 0xff => None,
            line => Some(u32::from(line)),
        },
    }
}

/// Configuration space through the legacy ports 0xCF8 (address) and 0xCFC (data), which every
/// PC monitor with PCI has (`q35`, `pc`; not `microvm`, Firecracker).
#[cfg(target_os = "none")]
#[derive(Debug)]
pub struct PortConfigSpace;

#[cfg(target_os = "none")]
impl PortConfigSpace {
    fn select(at: Address, offset: u8) {
        let address = 1u32 << 31
            | u32::from(at.bus) << 16
            | u32::from(at.device & 0x1f) << 11
            | u32::from(at.function & 7) << 8
            | u32::from(offset & 0xfc);
        // SAFETY: port 0xCF8 is the PCI configuration address register; selecting a register
        // has no other effect.
        unsafe { arch_x86_64::cpu::outl(0xcf8, address) }
    }
}

#[cfg(target_os = "none")]
impl ConfigSpace for PortConfigSpace {
    fn read(&mut self, at: Address, offset: u8) -> u32 {
        Self::select(at, offset);
        // SAFETY: reading port 0xCFC reads the configuration register selected above.
        unsafe { arch_x86_64::cpu::inl(0xcfc) }
    }

    fn write(&mut self, at: Address, offset: u8, value: u32) {
        Self::select(at, offset);
        // SAFETY: writing port 0xCFC writes the configuration register selected above; scan
        // writes only commands and BARs, with decoding off while a BAR is being sized.
        unsafe { arch_x86_64::cpu::outl(0xcfc, value) }
    }
}

#[cfg(test)]
mod tests;
