//! The IOAPICs: where they are and which GSIs (global system interrupts) they serve, how each
//! line is triggered, and their redirection entries.
//!
//! Where they are comes from ACPI's MADT (signature `APIC`) when the firmware has one: its
//! I/O APIC entries (type 1: address and first GSI) and interrupt source overrides (type 2: an
//! ISA IRQ on another GSI, with its polarity and trigger). QEMU's tables (hw/i386/acpi-common.c)
//! name one IOAPIC at 0xfec00000 for GSI 0-23 on `q35`, and on `microvm` with ACPI a second at
//! 0xfec10000 for GSI 24-47 (its virtio-mmio lines); both override ISA IRQ 0 to GSI 2, and
//! `q35` the SCI (IRQ 9, level, active high).
//!
//! Without ACPI (`microvm,acpi=off`, Firecracker) [`Routing::legacy`] assumes the standard
//! IOAPIC at 0xfec00000 from GSI 0 and ISA IRQ 0 on GSI 2 (the MP specification's convention;
//! QEMU's IOAPIC model routes its input 0 to pin 2 whatever the tables say). QEMU's `microvm`
//! creates its second IOAPIC only with ACPI (`microvm_ioapics` in hw/i386/microvm.c), and then
//! puts its 8 virtio-mmio transports on IRQ 5-12 of the first. The number of inputs is read
//! from each IOAPIC's version register once it is mapped.
//!
//! How a line is triggered ([`Routing::mode`]): an ISA line (GSI below 16) is edge-triggered,
//! active high, unless an override says otherwise; the lines above are PCI INTx (GSI 16-23 on
//! `q35`), level-triggered and active low by the PCI convention; the lines of a second IOAPIC
//! (`microvm`'s virtio-mmio transports, GSI 24-47) are level-triggered, active high, as QEMU's
//! `microvm` DSDT describes them (`acpi_dsdt_add_virtio`: `Interrupt(..., Level, ActiveHigh, ...)`).
//! Discovery can say otherwise for a line it knows better with [`Routing::set_mode`] (the
//! virtio-mmio lines of the command line, IRQ 5-12 without ACPI, are level-triggered too).
//!
//! The MADT parser and the redirection-entry encoding are pure and host-tested (seeded random
//! tables); the register access is compiled only for the bare-metal target.

use crate::acpi::{AcpiError, find_table};
use core::fmt;
use platform::PhysRead;

/// The IOAPICs a machine may have (QEMU: one, two on `microvm`).
pub const MAX_IOAPICS: usize = 4;
/// The ISA IRQs (0-15) that overrides may move.
pub const ISA_IRQS: usize = 16;
/// The standard IOAPIC's address (the first one, on every PC).
pub const DEFAULT_ADDRESS: u64 = 0xfec0_0000;
/// The most inputs an IOAPIC may report (its version register has 8 bits for the count).
pub const MAX_INPUTS: u32 = 256;
/// The highest first GSI believed (its inputs then stay below 2^32).
pub const MAX_GSI_BASE: u32 = u32::MAX - MAX_INPUTS;
/// The inputs of an IOAPIC whose version register was not read yet (QEMU's have 24).
pub const DEFAULT_INPUTS: u32 = 24;

/// How a line signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// An edge: one interrupt per rising (or falling) edge.
    Edge,
    /// A level: the line interrupts while it is asserted; the IOAPIC waits for the EOI.
    Level,
}

/// Which level asserts a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Polarity {
    /// Active high.
    High,
    /// Active low.
    Low,
}

/// A line's trigger and polarity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode {
    /// Edge or level.
    pub trigger: Trigger,
    /// High or low.
    pub polarity: Polarity,
}

impl Mode {
    /// ISA's default: edge, active high.
    pub const ISA: Mode = Mode {
        trigger: Trigger::Edge,
        polarity: Polarity::High,
    };
    /// PCI INTx: level, active low.
    pub const PCI: Mode = Mode {
        trigger: Trigger::Level,
        polarity: Polarity::Low,
    };
    /// Level, active high (virtio-mmio on `microvm`, the SCI).
    pub const LEVEL_HIGH: Mode = Mode {
        trigger: Trigger::Level,
        polarity: Polarity::High,
    };
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.trigger {
            Trigger::Edge => "edge",
            Trigger::Level => "level",
        })?;
        f.write_str(match self.polarity {
            Polarity::High => "/high",
            Polarity::Low => "/low",
        })
    }
}

/// One IOAPIC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoApic {
    /// Its APIC id (from the MADT; 0 without one).
    pub id: u8,
    /// Its register page's physical address (page aligned, below 4 GiB).
    pub address: u64,
    /// The GSI of its input 0.
    pub gsi_base: u32,
    /// How many inputs it has ([`DEFAULT_INPUTS`] until its version register is read).
    pub inputs: u32,
}

impl IoApic {
    /// Whether input `gsi - gsi_base` is one of its own.
    pub fn serves(&self, gsi: u32) -> bool {
        gsi >= self.gsi_base && gsi - self.gsi_base < self.inputs
    }
}

/// An ISA IRQ moved to another GSI or given another mode by the MADT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IsaLine {
    /// The GSI it arrives on.
    pub gsi: u32,
    /// Its mode.
    pub mode: Mode,
}

/// Why the MADT could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MadtError {
    /// The ACPI tables could not be read (no RSDP, a bad root table).
    Acpi(AcpiError),
    /// There is no MADT.
    NoMadt,
    /// The MADT names no IOAPIC this parser believes (none, or more than [`MAX_IOAPICS`] with
    /// the rest dropped is not an error: only none).
    NoIoApic,
}

impl fmt::Display for MadtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MadtError::Acpi(e) => write!(f, "{e}"),
            MadtError::NoMadt => f.write_str("no ACPI MADT"),
            MadtError::NoIoApic => f.write_str("the MADT names no usable IOAPIC"),
        }
    }
}

impl From<AcpiError> for MadtError {
    fn from(e: AcpiError) -> Self {
        MadtError::Acpi(e)
    }
}

impl From<platform::Unreadable> for MadtError {
    fn from(u: platform::Unreadable) -> Self {
        MadtError::Acpi(AcpiError::Unreadable(u.0))
    }
}

/// The machine's IOAPICs and line modes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Routing {
    ioapics: [Option<IoApic>; MAX_IOAPICS],
    isa: [IsaLine; ISA_IRQS],
    /// Lines whose mode discovery set ([`Routing::set_mode`]): (gsi, mode).
    set: [Option<(u32, Mode)>; 16],
}

/// Flags of an interrupt source override (MPS INTI flags): polarity in bits 0-1 (0 = the bus's
/// default, 1 = high, 3 = low), trigger in bits 2-3 (0 = the bus's, 1 = edge, 3 = level). The
/// ISA bus's default is edge/high; the reserved value 2 is taken as the default too.
pub fn inti_mode(flags: u16) -> Mode {
    Mode {
        polarity: if flags & 3 == 3 {
            Polarity::Low
        } else {
            Polarity::High
        },
        trigger: if (flags >> 2) & 3 == 3 {
            Trigger::Level
        } else {
            Trigger::Edge
        },
    }
}

impl Routing {
    /// No ACPI: the standard IOAPIC at [`DEFAULT_ADDRESS`] from GSI 0, ISA IRQ 0 on GSI 2.
    pub fn legacy() -> Self {
        let mut r = Routing::empty();
        r.ioapics[0] = Some(IoApic {
            id: 0,
            address: DEFAULT_ADDRESS,
            gsi_base: 0,
            inputs: DEFAULT_INPUTS,
        });
        r.isa[0].gsi = 2;
        r
    }

    fn empty() -> Self {
        let mut isa = [IsaLine {
            gsi: 0,
            mode: Mode::ISA,
        }; ISA_IRQS];
        for (irq, line) in isa.iter_mut().enumerate() {
            line.gsi = irq as u32;
        }
        Routing {
            ioapics: [None; MAX_IOAPICS],
            isa,
            set: [None; 16],
        }
    }

    /// Reads the MADT under the RSDP at `rsdp`. Entries that do not fit (a length below the
    /// entry's size, past the table's end) end the walk; IOAPICs beyond [`MAX_IOAPICS`], with
    /// an address that is not a page below 4 GiB, or whose GSIs overlap an earlier one's, are
    /// dropped; overrides of IRQs above 15 are ignored.
    pub fn from_madt(mem: &impl PhysRead, rsdp: u64) -> Result<Self, MadtError> {
        let (madt, len) = find_table(mem, rsdp, b"APIC")?.ok_or(MadtError::NoMadt)?;
        let mut r = Routing::empty();
        let mut found = 0;
        // Entries start after the header (36) and the local APIC address and flags (8).
        let mut at = 44u32;
        while at + 2 <= len {
            // Inside the table, which `find_table` checked ends below 2^64.
            let kind = mem.read_u8(madt + u64::from(at))?;
            let size = u32::from(mem.read_u8(madt + u64::from(at) + 1)?);
            if size < 2 || at + size > len {
                break;
            }
            let e = madt + u64::from(at);
            match (kind, size) {
                (1, 12..) => {
                    let id = mem.read_u8(e + 2)?;
                    let address = u64::from(mem.read_u32(e + 4)?);
                    let gsi_base = mem.read_u32(e + 8)?;
                    let ioapic = IoApic {
                        id,
                        address,
                        gsi_base,
                        inputs: DEFAULT_INPUTS,
                    };
                    // GSI ranges are compared in u64: no overflow near 2^32.
                    let overlaps = r.ioapics.iter().flatten().any(|o| {
                        o.address == address
                            || u64::from(gsi_base) + u64::from(DEFAULT_INPUTS)
                                > u64::from(o.gsi_base)
                                && u64::from(o.gsi_base) + u64::from(o.inputs) > u64::from(gsi_base)
                    });
                    if address != 0
                        && gsi_base <= MAX_GSI_BASE
                        && address % platform::PAGE_SIZE == 0
                        && !overlaps
                        && found < MAX_IOAPICS
                    {
                        r.ioapics[found] = Some(ioapic);
                        found += 1;
                    }
                }
                (2, 10..) => {
                    let bus = mem.read_u8(e + 2)?;
                    let irq = mem.read_u8(e + 3)?;
                    let gsi = mem.read_u32(e + 4)?;
                    let flags = mem.read_u16(e + 8)?;
                    if bus == 0 && usize::from(irq) < ISA_IRQS {
                        r.isa[usize::from(irq)] = IsaLine {
                            gsi,
                            mode: inti_mode(flags),
                        };
                    }
                }
                _ => {}
            }
            at += size;
        }
        if found == 0 {
            return Err(MadtError::NoIoApic);
        }
        Ok(r)
    }

    /// The IOAPICs, in MADT order.
    pub fn ioapics(&self) -> impl Iterator<Item = &IoApic> + '_ {
        self.ioapics.iter().flatten()
    }

    /// Records the number of inputs IOAPIC `index` reports (its version register).
    /// The count is kept below the next IOAPIC's first GSI, so that no GSI has two inputs.
    pub fn set_inputs(&mut self, index: usize, inputs: u32) {
        let Some(Some(io)) = self.ioapics.get(index).copied() else {
            return;
        };
        let next = self
            .ioapics()
            .map(|o| o.gsi_base)
            .filter(|&b| b > io.gsi_base)
            .min()
            .unwrap_or(u32::MAX);
        let room = next - io.gsi_base;
        if let Some(Some(io)) = self.ioapics.get_mut(index) {
            io.inputs = inputs.clamp(1, MAX_INPUTS).min(room);
        }
    }

    /// The IOAPIC (its index in [`Routing::ioapics`]) and input that serve `gsi`.
    pub fn input(&self, gsi: u32) -> Option<(usize, u32)> {
        self.ioapics.iter().enumerate().find_map(|(i, io)| {
            io.filter(|io| io.serves(gsi))
                .map(|io| (i, gsi - io.gsi_base))
        })
    }

    /// The GSI ISA IRQ `irq` arrives on (identity unless overridden).
    pub fn isa_gsi(&self, irq: u8) -> Option<u32> {
        self.isa.get(usize::from(irq)).map(|l| l.gsi)
    }

    /// Sets `gsi`'s mode (discovery knows a line better than the conventions). Returns false
    /// when the table of such lines (16) is full.
    pub fn set_mode(&mut self, gsi: u32, mode: Mode) -> bool {
        if let Some(slot) = self
            .set
            .iter_mut()
            .find(|s| s.is_some_and(|(g, _)| g == gsi))
        {
            *slot = Some((gsi, mode));
            return true;
        }
        match self.set.iter_mut().find(|s| s.is_none()) {
            Some(slot) => {
                *slot = Some((gsi, mode));
                true
            }
            None => false,
        }
    }

    /// How `gsi` is triggered: what discovery set; else an ISA override's mode for the GSI it
    /// names; else edge/high below 16 (ISA), level/high on a second IOAPIC whose first GSI is
    /// 24 or more (`microvm`'s virtio-mmio), level/low otherwise (PCI INTx).
    pub fn mode(&self, gsi: u32) -> Mode {
        if let Some((_, mode)) = self.set.iter().flatten().find(|(g, _)| *g == gsi) {
            return *mode;
        }
        if let Some(line) = self.isa.iter().find(|l| l.gsi == gsi) {
            return line.mode;
        }
        if gsi < ISA_IRQS as u32 {
            return Mode::ISA;
        }
        match self.input(gsi) {
            Some((i, _)) if i > 0 && self.ioapics[i].is_some_and(|io| io.gsi_base >= 24) => {
                Mode::LEVEL_HIGH
            }
            _ => Mode::PCI,
        }
    }
}

/// A redirection entry: deliver `vector` to the local APIC `apic_id` (physical destination,
/// fixed delivery), with `mode`, masked or not.
pub fn entry(vector: u8, apic_id: u8, mode: Mode, masked: bool) -> u64 {
    let mut e = u64::from(vector);
    if mode.polarity == Polarity::Low {
        e |= 1 << 13;
    }
    if mode.trigger == Trigger::Level {
        e |= 1 << 15;
    }
    if masked {
        e |= MASKED;
    }
    e | u64::from(apic_id) << 56
}

/// The mask bit of a redirection entry.
pub const MASKED: u64 = 1 << 16;

/// The number of inputs an IOAPIC version register (register 1) reports.
pub fn inputs_from_version(version: u32) -> u32 {
    ((version >> 16) & 0xff) + 1
}

/// Access to the IOAPICs' registers: each one's index register IOREGSEL (offset 0) and data
/// window IOWIN (0x10) on its page at `base`. MMIO on bare metal ([`Mmio`]); a model of QEMU's
/// IOAPIC in the tests. The pair is not atomic: the holder serialises every access (and masks
/// interrupts while it does, as the interrupt path uses it too).
pub trait Registers {
    /// Reads register `register` of the IOAPIC at `base`.
    fn read(&mut self, base: u64, register: u32) -> u32;
    /// Writes register `register` of the IOAPIC at `base`.
    fn write(&mut self, base: u64, register: u32, value: u32);
}

/// The number of inputs of the IOAPIC at `base` (its version register).
pub fn inputs(regs: &mut impl Registers, base: u64) -> u32 {
    inputs_from_version(regs.read(base, 1))
}

/// Writes input `input`'s redirection entry: the high half (destination) first, while the low
/// half still holds whatever masked state it had, then the low half.
pub fn set_entry(regs: &mut impl Registers, base: u64, input: u32, entry: u64) {
    // Registers 0x10 + 2n and 0x11 + 2n are entry n.
    regs.write(base, 0x11 + 2 * input, (entry >> 32) as u32);
    regs.write(base, 0x10 + 2 * input, entry as u32);
}

/// Masks (or unmasks) input `input`, keeping the rest of its entry.
pub fn set_masked(regs: &mut impl Registers, base: u64, input: u32, masked: bool) {
    let low = regs.read(base, 0x10 + 2 * input);
    let bit = MASKED as u32;
    regs.write(
        base,
        0x10 + 2 * input,
        if masked { low | bit } else { low & !bit },
    );
}

/// The entry an input waits in until a handler is registered for it: masked, but with its
/// line's trigger and polarity already (vector 0, never delivered while masked).
pub fn parked(mode: Mode) -> u64 {
    entry(0, 0, mode, true)
}

/// Reads every IOAPIC's input count into `routing`, then parks every input ([`parked`]): masked,
/// with the trigger and polarity [`Routing::mode`] gives its line. Call once the pages are
/// mapped and before any device can raise a line.
///
/// Why the trigger mode before the handler: an IOAPIC latches a level-triggered input into its
/// IRR while the entry is masked and delivers it on unmask, but QEMU's (hw/intc/ioapic.c, TCG or
/// `kernel-irqchip=off`) keeps no input level: it ignores a rising line on a masked
/// edge-triggered entry (the reset state) and never looks at the line again. A device that
/// raised its level line before the entry became level-triggered (virtio-net with a frame
/// queued the moment its receive buffers are posted, before the kernel registers its handler)
/// then holds the line high for good: each later notification finds it high already, no edge
/// reaches the IOAPIC, and the driver, waiting for the interrupt to read the device's status,
/// never does.
pub fn park_all(regs: &mut impl Registers, routing: &mut Routing) {
    let mut bases = [None; MAX_IOAPICS];
    for (slot, io) in bases.iter_mut().zip(routing.ioapics()) {
        *slot = Some(io.address);
    }
    for (i, base) in bases.iter().enumerate() {
        if let Some(base) = *base {
            let n = inputs(regs, base);
            routing.set_inputs(i, n);
        }
    }
    let ioapics = routing.ioapics;
    for io in ioapics.iter().flatten() {
        for input in 0..io.inputs {
            let mode = routing.mode(io.gsi_base + input);
            set_entry(regs, io.address, input, parked(mode));
        }
    }
}

/// Routes input `input` of the IOAPIC at `base` to `vector` on the local APIC `apic_id` with
/// `mode`: the entry is written masked, then unmasked (a level the input latched while parked
/// is delivered then).
pub fn route(
    regs: &mut impl Registers,
    base: u64,
    input: u32,
    vector: u8,
    apic_id: u8,
    mode: Mode,
) {
    set_entry(regs, base, input, entry(vector, apic_id, mode, true));
    set_masked(regs, base, input, false);
}

#[cfg(target_os = "none")]
pub use mmio::Mmio;

#[cfg(target_os = "none")]
mod mmio {
    /// The IOAPICs' registers through their mapped pages.
    #[derive(Debug)]
    pub struct Mmio(());

    impl Mmio {
        /// Register access for the holder of the IOAPICs' lock.
        ///
        /// # Safety
        /// Every `base` it is given is an IOAPIC's register page, mapped uncached; while it
        /// lives, the caller holds the IOAPICs' lock (no other access interleaves) with
        /// interrupts masked; the values written are ones the registers define.
        pub unsafe fn new() -> Self {
            Mmio(())
        }
    }

    impl super::Registers for Mmio {
        fn read(&mut self, base: u64, register: u32) -> u32 {
            // SAFETY: `new`'s contract: a mapped IOAPIC page, accessed by the lock holder only;
            // both registers are 32-bit and aligned.
            unsafe {
                (base as *mut u32).write_volatile(register);
                ((base + 0x10) as *const u32).read_volatile()
            }
        }

        fn write(&mut self, base: u64, register: u32, value: u32) {
            // SAFETY: as in `read`.
            unsafe {
                (base as *mut u32).write_volatile(register);
                ((base + 0x10) as *mut u32).write_volatile(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acpi::tests::tables;
    use platform::FakeMemory;

    const BASE: u64 = 0xe0000;
    const MADT: u64 = BASE + 0x1800;

    /// The fake chain of `acpi::tests` (q35 or microvm), with a MADT at its `APIC` entry made of
    /// `entries` (type, bytes after type and length).
    fn with_madt(microvm: bool, entries: &[(u8, &[u8])]) -> FakeMemory {
        let mut m = tables(microvm);
        crate::acpi::tests::put_madt(&mut m, entries);
        m
    }

    fn ioapic(id: u8, address: u32, gsi: u32) -> (u8, Vec<u8>) {
        let mut b = vec![id, 0];
        b.extend_from_slice(&address.to_le_bytes());
        b.extend_from_slice(&gsi.to_le_bytes());
        (1, b)
    }

    fn iso(irq: u8, gsi: u32, flags: u16) -> (u8, Vec<u8>) {
        let mut b = vec![0, irq];
        b.extend_from_slice(&gsi.to_le_bytes());
        b.extend_from_slice(&flags.to_le_bytes());
        (2, b)
    }

    fn local_apic(id: u8) -> (u8, Vec<u8>) {
        (0, vec![id, id, 1, 0, 0, 0])
    }

    fn madt(microvm: bool, entries: &[(u8, Vec<u8>)]) -> FakeMemory {
        let e: Vec<(u8, &[u8])> = entries.iter().map(|(k, b)| (*k, b.as_slice())).collect();
        with_madt(microvm, &e)
    }

    /// QEMU q35's MADT: one local APIC, the IOAPIC, IRQ 0 -> GSI 2, and the SCI (IRQ 9,
    /// level/high: flags 0xd), plus the NMI entry (type 4) it also has.
    fn q35() -> FakeMemory {
        madt(
            false,
            &[
                local_apic(0),
                ioapic(0, 0xfec0_0000, 0),
                iso(0, 2, 0),
                iso(9, 9, 0xd),
                (4, vec![0xff, 0, 0, 1]),
            ],
        )
    }

    #[test]
    fn q35_has_one_ioapic_and_its_overrides() {
        let r = Routing::from_madt(&q35(), BASE).expect("a MADT");
        let all: Vec<_> = r.ioapics().copied().collect();
        assert_eq!(
            all,
            [IoApic {
                id: 0,
                address: 0xfec0_0000,
                gsi_base: 0,
                inputs: 24
            }]
        );
        assert_eq!(r.isa_gsi(0), Some(2));
        assert_eq!(r.isa_gsi(8), Some(8));
        assert_eq!(r.mode(2), Mode::ISA);
        assert_eq!(r.mode(8), Mode::ISA);
        assert_eq!(r.mode(9), Mode::LEVEL_HIGH);
        assert_eq!(r.mode(16), Mode::PCI);
        assert_eq!(r.mode(23), Mode::PCI);
        assert_eq!(r.input(2), Some((0, 2)));
        assert_eq!(r.input(23), Some((0, 23)));
        assert_eq!(r.input(24), None);
        assert_eq!(Mode::PCI.to_string(), "level/low");
    }

    #[test]
    fn microvm_has_a_second_ioapic_for_virtio_mmio() {
        let mut r = Routing::from_madt(
            &madt(
                true,
                &[
                    local_apic(0),
                    ioapic(0, 0xfec0_0000, 0),
                    ioapic(1, 0xfec1_0000, 24),
                    iso(0, 2, 0),
                ],
            ),
            BASE,
        )
        .expect("a MADT");
        assert_eq!(r.ioapics().count(), 2);
        assert_eq!(r.input(24), Some((1, 0)));
        assert_eq!(r.input(47), Some((1, 23)));
        assert_eq!(r.input(48), None);
        assert_eq!(r.mode(24), Mode::LEVEL_HIGH);
        assert_eq!(r.mode(47), Mode::LEVEL_HIGH);
        r.set_inputs(1, 8);
        assert_eq!(r.input(32), None);
        // Discovery knows better.
        assert!(r.set_mode(5, Mode::LEVEL_HIGH));
        assert_eq!(r.mode(5), Mode::LEVEL_HIGH);
        assert!(r.set_mode(5, Mode::ISA));
        assert_eq!(r.mode(5), Mode::ISA);
    }

    #[test]
    fn legacy_is_the_standard_ioapic_with_irq0_on_gsi2() {
        let r = Routing::legacy();
        assert_eq!(r.ioapics().count(), 1);
        assert_eq!(r.input(2), Some((0, 2)));
        assert_eq!(r.isa_gsi(0), Some(2));
        assert_eq!(r.mode(16), Mode::PCI);
    }

    #[test]
    fn inti_flags_and_entries() {
        assert_eq!(inti_mode(0), Mode::ISA);
        assert_eq!(inti_mode(0xd), Mode::LEVEL_HIGH);
        assert_eq!(inti_mode(0xf), Mode::PCI);
        assert_eq!(inti_mode(0x5), Mode::ISA);
        assert_eq!(entry(0x41, 3, Mode::ISA, false), 0x0300_0000_0000_0041);
        assert_eq!(
            entry(0x42, 0, Mode::PCI, true),
            0x42 | 1 << 13 | 1 << 15 | 1 << 16
        );
        assert_eq!(
            entry(0x43, 1, Mode::LEVEL_HIGH, false),
            0x0100_0000_0000_8043
        );
        // QEMU's IOAPIC version register: 0x00170020 (24 inputs).
        assert_eq!(inputs_from_version(0x0017_0020), 24);
    }

    #[test]
    fn missing_tables_and_bad_entries() {
        // The chain without a valid MADT (the plain fake has only the signature).
        assert!(matches!(
            Routing::from_madt(&tables(false), BASE),
            Err(MadtError::Acpi(AcpiError::BadTable(MADT)))
        ));
        assert_eq!(
            Routing::from_madt(&q35(), 0),
            Err(MadtError::Acpi(AcpiError::NoRsdp))
        );
        // No IOAPIC entry; one at an unaligned address; one that repeats the first's GSIs.
        assert_eq!(
            Routing::from_madt(&madt(false, &[local_apic(0), iso(0, 2, 0)]), BASE),
            Err(MadtError::NoIoApic)
        );
        assert_eq!(
            Routing::from_madt(&madt(false, &[ioapic(0, 0xfec0_0010, 0)]), BASE),
            Err(MadtError::NoIoApic)
        );
        let r = Routing::from_madt(
            &madt(
                false,
                &[ioapic(0, 0xfec0_0000, 0), ioapic(1, 0xfec1_0000, 8)],
            ),
            BASE,
        )
        .expect("the first");
        assert_eq!(r.ioapics().count(), 1);
        // An entry whose length runs past the table ends the walk.
        let r = Routing::from_madt(
            &with_madt(
                false,
                &[(1, &[0, 0, 0, 0, 0xc0, 0xfe, 0, 0, 0, 0]), (2, &[0, 0, 2])],
            ),
            BASE,
        )
        .expect("the IOAPIC");
        assert_eq!(r.isa_gsi(0), Some(0));
    }
}

#[cfg(test)]
mod qemu_model_tests {
    //! The register sequences against a model of QEMU 7.2's IOAPIC (hw/intc/ioapic.c,
    //! `ioapic_set_irq`, `ioapic_service`, `ioapic_mem_write`, `ioapic_eoi_broadcast`): it keeps
    //! no input level, only an IRR bit per input, set by a rising line on a level-triggered entry
    //! whether masked or not, and by a rising line on an unmasked edge-triggered one only.
    use super::*;
    use std::collections::BTreeMap;
    use std::vec::Vec;

    const REMOTE_IRR: u64 = 1 << 14;
    const LEVEL: u64 = 1 << 15;
    /// The bits a write cannot change (delivery status, remote IRR).
    const RO: u64 = 1 << 12 | REMOTE_IRR;

    struct Chip {
        select: u32,
        entries: [u64; 24],
        irr: u32,
    }

    /// QEMU's IOAPICs by page, the levels the devices drive (QEMU's PCI and ICH9 layers pass
    /// changes only), and the vectors the IOAPICs delivered.
    #[derive(Default)]
    struct Qemu {
        chips: BTreeMap<u64, Chip>,
        levels: BTreeMap<(u64, usize), bool>,
        delivered: Vec<u8>,
    }

    impl Qemu {
        fn with(bases: &[u64]) -> Self {
            let mut q = Qemu::default();
            for &b in bases {
                q.chips.insert(
                    b,
                    Chip {
                        select: 0,
                        // Reset: masked, edge, vector 0.
                        entries: [MASKED; 24],
                        irr: 0,
                    },
                );
            }
            q
        }

        fn chip(&mut self, base: u64) -> &mut Chip {
            self.chips.get_mut(&base).expect("an IOAPIC page")
        }

        /// A device drives input `pin` of the IOAPIC at `base` to `level`.
        fn line(&mut self, base: u64, pin: usize, level: bool) {
            if self.levels.insert((base, pin), level).unwrap_or(false) == level {
                return;
            }
            let c = self.chip(base);
            let e = c.entries[pin];
            if e & LEVEL != 0 {
                if level {
                    c.irr |= 1 << pin;
                    if e & REMOTE_IRR == 0 {
                        self.service(base);
                    }
                } else {
                    c.irr &= !(1 << pin);
                }
            } else if level && e & MASKED == 0 {
                c.irr |= 1 << pin;
                self.service(base);
            }
        }

        fn service(&mut self, base: u64) {
            let c = self.chips.get_mut(&base).expect("an IOAPIC page");
            for pin in 0..24 {
                let e = c.entries[pin];
                if c.irr & 1 << pin == 0 || e & MASKED != 0 {
                    continue;
                }
                if e & LEVEL == 0 {
                    c.irr &= !(1 << pin);
                } else if e & REMOTE_IRR != 0 {
                    continue;
                } else {
                    c.entries[pin] |= REMOTE_IRR;
                }
                self.delivered.push(e as u8);
            }
        }

        /// The local APIC's EOI of a level-triggered `vector`, broadcast to every IOAPIC.
        fn eoi(&mut self, vector: u8) {
            let bases: Vec<u64> = self.chips.keys().copied().collect();
            for base in bases {
                let c = self.chip(base);
                let mut again = false;
                for pin in 0..24 {
                    let e = c.entries[pin];
                    if e as u8 == vector && e & LEVEL != 0 && e & REMOTE_IRR != 0 {
                        c.entries[pin] &= !REMOTE_IRR;
                        again |= e & MASKED == 0 && c.irr & 1 << pin != 0;
                    }
                }
                if again {
                    self.service(base);
                }
            }
        }
    }

    impl Registers for Qemu {
        fn read(&mut self, base: u64, register: u32) -> u32 {
            let c = self.chip(base);
            c.select = register;
            match register {
                1 => 0x0017_0020,
                r @ 0x10..=0x3f => {
                    let e = c.entries[(r as usize - 0x10) / 2];
                    if r % 2 == 0 {
                        e as u32
                    } else {
                        (e >> 32) as u32
                    }
                }
                _ => 0,
            }
        }

        fn write(&mut self, base: u64, register: u32, value: u32) {
            let c = self.chip(base);
            c.select = register;
            if let r @ 0x10..=0x3f = register {
                let pin = (r as usize - 0x10) / 2;
                let old = c.entries[pin];
                let mut e = if r % 2 == 0 {
                    old & !0xffff_ffff | u64::from(value)
                } else {
                    old & 0xffff_ffff | u64::from(value) << 32
                };
                e = e & !RO | old & RO;
                if e & LEVEL == 0 {
                    e &= !REMOTE_IRR;
                }
                c.entries[pin] = e;
                self.service(base);
            }
        }
    }

    const Q35: u64 = DEFAULT_ADDRESS;
    /// q35's virtio-net: PCI 00:01.0, INTA, PIRQ F: GSI 21.
    const NIC: u32 = 21;

    /// The kernel's order: the device starts (and may raise its line at once), then the
    /// handler is registered and the line routed to its vector.
    fn boot(park: bool) -> Qemu {
        let mut q = Qemu::with(&[Q35]);
        let mut routing = Routing::legacy();
        if park {
            park_all(&mut q, &mut routing);
        }
        q.line(Q35, NIC as usize, true);
        route(&mut q, Q35, NIC, 0x40, 0, routing.mode(NIC));
        q
    }

    #[test]
    fn a_level_line_raised_before_its_handler_is_registered_is_delivered() {
        assert_eq!(boot(true).delivered, [0x40]);
    }

    #[test]
    fn unparked_the_model_loses_it_as_qemu_did() {
        // The silent NIC: the rising line met the reset entry (masked, edge) and was dropped;
        // routing it later delivers nothing, and the line, still high, never rises again.
        let mut q = boot(false);
        assert!(q.delivered.is_empty());
        q.line(Q35, NIC as usize, true);
        assert!(q.delivered.is_empty());
    }

    #[test]
    fn the_oneshot_cycle_delivers_each_assertion_once() {
        let mut q = boot(true);
        // The dispatcher masks the line, then EOIs; the device still holds it high.
        set_masked(&mut q, Q35, NIC, true);
        q.eoi(0x40);
        assert_eq!(q.delivered, [0x40]);
        // The poller reads the device's status (the line drops), then unmasks.
        q.line(Q35, NIC as usize, false);
        set_masked(&mut q, Q35, NIC, false);
        assert_eq!(q.delivered, [0x40]);
        // The next frame raises it again: delivered once more.
        q.line(Q35, NIC as usize, true);
        assert_eq!(q.delivered, [0x40, 0x40]);
        // Still high and not acknowledged when unmasked again: delivered again after the EOI
        // (a level line is never lost while it is high).
        set_masked(&mut q, Q35, NIC, true);
        q.eoi(0x40);
        set_masked(&mut q, Q35, NIC, false);
        assert_eq!(q.delivered, [0x40, 0x40, 0x40]);
    }

    #[test]
    fn parking_gives_every_input_its_mode_masked() {
        let mut q = Qemu::with(&[Q35, 0xfec1_0000]);
        let mut routing = Routing::legacy();
        routing.ioapics[1] = Some(IoApic {
            id: 1,
            address: 0xfec1_0000,
            gsi_base: 24,
            inputs: DEFAULT_INPUTS,
        });
        assert!(routing.set_mode(5, Mode::LEVEL_HIGH));
        park_all(&mut q, &mut routing);
        for (base, gsi_base) in [(Q35, 0), (0xfec1_0000, 24)] {
            for pin in 0..24u32 {
                let e = q.chip(base).entries[pin as usize];
                assert_eq!(
                    e,
                    parked(routing.mode(gsi_base + pin)),
                    "GSI {}",
                    gsi_base + pin
                );
                assert_ne!(e & MASKED, 0);
            }
        }
        assert_eq!(q.chip(Q35).entries[4] & LEVEL, 0);
        assert_ne!(q.chip(Q35).entries[5] & LEVEL, 0);
        assert_ne!(q.chip(Q35).entries[21] & (LEVEL | 1 << 13), 0);
        assert_ne!(q.chip(0xfec1_0000).entries[0] & LEVEL, 0);
        assert!(q.delivered.is_empty());
    }
}

#[cfg(test)]
mod fuzz_tests {
    //! Seeded random MADTs: QEMU-like ones with entries added, dropped and mutated (types,
    //! lengths, addresses, GSIs near 0, 24 and 2^32), checksums mostly repaired.
    use super::*;
    use crate::acpi::tests::{fix_checksum, header, tables};
    use platform::fuzz::{Rng, cases};

    const BASE: u64 = 0xe0000;
    const MADT: u64 = BASE + 0x1800;

    #[test]
    fn random_madts_give_an_error_or_a_consistent_routing_never_a_panic() {
        let mut r = Rng::new(0x10a9_1c00);
        let (mut ok, mut errors) = (0u64, 0u64);
        for case in 0..cases(20_000) {
            let mut m = tables(r.chance(50));
            let mut body = std::vec::Vec::new();
            for _ in 0..r.below(8) {
                let kind = r.pick(&[0u8, 1, 1, 2, 2, 4, 9, 0xff]);
                let len = match r.below(8) {
                    0 => r.below(20) as u8,
                    _ => match kind {
                        1 => 12,
                        2 => 10,
                        _ => 8,
                    },
                };
                let mut e = std::vec![kind, len];
                for _ in 2..len.max(2) {
                    e.push(r.next_u64() as u8);
                }
                if kind == 1 && e.len() >= 12 && r.chance(70) {
                    let address = r.pick(&[0xfec0_0000u32, 0xfec1_0000, 0, 0xffff_f000]);
                    e[4..8].copy_from_slice(&address.to_le_bytes());
                    let edgy = r.edgy_u64() as u32;
                    let gsi = r.pick(&[0u32, 24, 23, u32::MAX - 3, edgy]);
                    e[8..12].copy_from_slice(&gsi.to_le_bytes());
                }
                body.extend_from_slice(&e);
            }
            let body = &body[..body.len().min(0x700)];
            m.put(MADT + 44, body);
            let len = if r.chance(90) {
                44 + body.len() as u32
            } else {
                r.edgy_u64() as u32
            };
            header(&mut m, MADT, b"APIC", len);
            if r.chance(90) {
                fix_checksum(&mut m, MADT, (len as usize).min(0x800), MADT + 9);
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                Routing::from_madt(&m, BASE)
            }));
            match result {
                Ok(Ok(mut routing)) => {
                    ok += 1;
                    // Every GSI has at most one input, and every IOAPIC is page aligned.
                    for io in routing.ioapics() {
                        assert!(io.address != 0 && io.address % 4096 == 0, "case {case}");
                    }
                    for (i, n) in [(0, 240), (1, 24), (2, 1)] {
                        routing.set_inputs(i, n);
                    }
                    for gsi in [0, 2, 23, 24, 47, 100, u32::MAX - 1, u32::MAX] {
                        let serving = routing.ioapics().filter(|io| io.serves(gsi)).count();
                        assert!(serving <= 1, "case {case}: GSI {gsi} on {serving}");
                        let _ = routing.mode(gsi);
                    }
                }
                Ok(Err(_)) => errors += 1,
                Err(_) => panic!("case {case} panicked (seed 0x10a91c00)"),
            }
        }
        assert!(ok > 0 && errors > 0, "ok {ok}, errors {errors}");
    }
}
