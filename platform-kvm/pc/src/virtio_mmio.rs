//! virtio-mmio transports: where they are, and what sits behind one.
//!
//! A KVM-class monitor without PCI offers its virtio devices as virtio-mmio transports
//! (virtio 1.2, §4.2): a window of registers at a physical address, with one interrupt line.
//! Nothing on the bus enumerates them, so the guest learns the candidates from one of two
//! sources, and then [`probe`]s each:
//!
//! - the kernel command line: `virtio_mmio.device=<size>@<base>:<irq>[:<id>]`, Linux's form,
//!   which QEMU `microvm` with `acpi=off` appends for each transport that holds a device
//!   (`512@0xfeb00e00:12`; 8 transports, IRQ 5 + n) and Firecracker for each of its devices
//!   (`4K@0xd0000000:5`). [`parse_device`] reads one value, [`Transports::from_params`] the
//!   monitor's tokens (crate `cmdline`'s `monitor_params(line)` gives them, leaving out any
//!   the app's arguments hold);
//! - [`MICROVM_ACPI`]: QEMU `microvm` with ACPI (as xtask starts it) names its transports only
//!   in the DSDT's AML, and appends nothing to the command line. Its layout is fixed by QEMU
//!   (`hw/i386/microvm.c`): 24 transports at 0xfeb00000 + 512·n, each on GSI 24 + n of the
//!   second IOAPIC at 0xfec10000. The table is that layout, so no AML interpreter is needed.
//!   Whether the machine *is* `microvm` with ACPI is the caller's decision; the table is used
//!   only when the command line names no transport.
//!
//! A slot of the table may be empty (DeviceID 0), and a command line may name garbage:
//! [`probe`] tells a device, an empty slot, and something that is not a transport apart,
//! through the small [`MmioRead`] trait, which the host tests fake.
//!
//! Everything here is pure: `platform-kvm`'s `devices.rs` maps the windows and probes them
//! (through [`crate::discovery`]).

use core::fmt;

/// One candidate virtio-mmio transport: its register window and its interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transport {
    /// Physical address of the register window.
    pub base: u64,
    /// Bytes of the window (registers at 0x000..0x100, device configuration from 0x100).
    pub size: u64,
    /// The interrupt: a GSI (an IOAPIC input; on the command line, Linux's IRQ number, which
    /// on these monitors is the GSI).
    pub gsi: u32,
}

impl Transport {
    /// The first address after the window (`None` when it would wrap).
    pub fn end(&self) -> Option<u64> {
        self.base.checked_add(self.size)
    }

    /// True when the windows of `self` and `other` share a byte.
    pub fn overlaps(&self, other: &Transport) -> bool {
        let end = |t: &Transport| t.end().unwrap_or(u64::MAX);
        self.base < end(other) && other.base < end(self)
    }
}

/// The prefix of the command-line parameter that names a transport.
pub const PARAM: &str = "virtio_mmio.device=";

/// The smallest window that holds the registers (the device configuration starts at 0x100).
pub const MIN_SIZE: u64 = 0x100;

/// The top of the physical address space (52 bits on x86-64): no window reaches past it.
pub const PHYS_LIMIT: u64 = 1 << 52;

/// QEMU `microvm`'s first transport (`VIRTIO_MMIO_BASE`).
pub const MICROVM_BASE: u64 = 0xfeb0_0000;
/// The size of, and distance between, `microvm`'s transports (512 bytes).
pub const MICROVM_STRIDE: u64 = 512;
/// `microvm`'s transports with ACPI (and so with its second IOAPIC): 24.
pub const MICROVM_ACPI_COUNT: usize = 24;
/// The GSI of `microvm`'s first transport with ACPI: the second IOAPIC's first input.
pub const MICROVM_ACPI_GSI_BASE: u32 = 24;
/// The physical address of `microvm`'s second IOAPIC, which takes GSIs 24 to 47.
pub const MICROVM_IOAPIC2: u64 = 0xfec1_0000;
/// `microvm`'s transports with `acpi=off` (one IOAPIC; named on the command line): 8, on
/// IRQ 5 + n.
pub const MICROVM_LEGACY_COUNT: usize = 8;
/// The IRQ of `microvm`'s first transport with `acpi=off`.
pub const MICROVM_LEGACY_IRQ_BASE: u32 = 5;

/// QEMU `microvm`'s transports with ACPI, as xtask starts it (`-machine microvm`, ACPI on, so
/// the second IOAPIC is on): transport n at [`MICROVM_BASE`] + 512·n, 512 bytes, on GSI
/// 24 + n of the IOAPIC at [`MICROVM_IOAPIC2`]. QEMU describes them only in the DSDT (AML
/// devices) and plugs devices from the top (its buses are listed in decreasing address order),
/// so the first `-device` sits at the last transport. Empty slots read DeviceID 0 (see
/// [`probe`]).
pub const MICROVM_ACPI: [Transport; MICROVM_ACPI_COUNT] = {
    let mut table = [Transport {
        base: 0,
        size: 0,
        gsi: 0,
    }; MICROVM_ACPI_COUNT];
    let mut n = 0;
    while n < MICROVM_ACPI_COUNT {
        table[n] = Transport {
            base: MICROVM_BASE + MICROVM_STRIDE * n as u64,
            size: MICROVM_STRIDE,
            gsi: MICROVM_ACPI_GSI_BASE + n as u32,
        };
        n += 1;
    }
    table
};

/// A `virtio_mmio.device=` value that is not `<size>@<base>:<irq>[:<id>]`, or names no usable
/// window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceParamError {
    /// The size is missing, not a number, or its suffix is not K, M or G.
    BadSize,
    /// No `@` after the size.
    NoBase,
    /// The base is missing or not a number (hex `0x...` or decimal).
    BadBase,
    /// No `:` after the base.
    NoIrq,
    /// The IRQ is missing or not a decimal number that fits 32 bits.
    BadIrq,
    /// What follows the IRQ is not `:<decimal id>`.
    Trailing,
    /// The window is smaller than the registers (0x100 bytes).
    TooSmall(u64),
    /// The base is not 4-byte aligned (the registers are 32-bit).
    Misaligned(u64),
    /// The window wraps or reaches past the 52-bit physical address space.
    OutOfRange {
        /// The base.
        base: u64,
        /// The size.
        size: u64,
    },
}

impl fmt::Display for DeviceParamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let form = "the form is <size>@<base>:<irq>, as in 4K@0xd0000000:5";
        match self {
            DeviceParamError::BadSize => write!(
                f,
                "bad size: a decimal number with an optional K, M or G; {form}"
            ),
            DeviceParamError::NoBase => write!(f, "no `@<base>` after the size; {form}"),
            DeviceParamError::BadBase => {
                write!(f, "bad base: a number, hex 0x... or decimal; {form}")
            }
            DeviceParamError::NoIrq => write!(f, "no `:<irq>` after the base; {form}"),
            DeviceParamError::BadIrq => write!(f, "bad irq: a decimal number; {form}"),
            DeviceParamError::Trailing => write!(
                f,
                "unexpected text after the irq (only `:<decimal id>` may follow); {form}"
            ),
            DeviceParamError::TooSmall(size) => write!(
                f,
                "a window of {size:#x} bytes cannot hold the registers (0x100 bytes)"
            ),
            DeviceParamError::Misaligned(base) => {
                write!(f, "base {base:#x} is not 4-byte aligned")
            }
            DeviceParamError::OutOfRange { base, size } => write!(
                f,
                "the window of {size:#x} bytes at {base:#x} reaches past the physical address \
                 space"
            ),
        }
    }
}

impl core::error::Error for DeviceParamError {}

/// Splits the leading ASCII digits of `s` (in `radix`) off and returns their value, `None` when
/// there is none or it does not fit 64 bits.
fn number(s: &str, radix: u32) -> Option<(u64, &str)> {
    let digits = s
        .bytes()
        .position(|b| !(b as char).is_digit(radix))
        .unwrap_or(s.len());
    if digits == 0 {
        return None;
    }
    // `digits` ASCII bytes: both are char boundaries (`get` keeps the panic path out).
    let (n, rest) = (s.get(..digits)?, s.get(digits..)?);
    Some((u64::from_str_radix(n, radix).ok()?, rest))
}

/// A decimal number with an optional K, M or G suffix (either case), as Linux's `memparse`.
fn size(s: &str) -> Option<(u64, &str)> {
    let (n, rest) = number(s, 10)?;
    let after = rest.get(1..).unwrap_or_default();
    let (shift, rest) = match rest.as_bytes().first() {
        Some(b'k' | b'K') => (10, after),
        Some(b'm' | b'M') => (20, after),
        Some(b'g' | b'G') => (30, after),
        _ => (0, rest),
    };
    Some((n.checked_mul(1 << shift)?, rest))
}

/// A hex number with `0x` (or `0X`), or a decimal one.
fn address(s: &str) -> Option<(u64, &str)> {
    match s.get(..2) {
        Some("0x" | "0X") => number(s.get(2..)?, 16),
        _ => number(s, 10),
    }
}

/// Parses one `virtio_mmio.device=` value (without the prefix): `<size>@<base>:<irq>[:<id>]`,
/// Linux's form. The size is decimal with an optional K, M or G (`512`, `4K`); the base hex
/// (`0xd0000000`) or decimal; the IRQ decimal. Linux's optional platform-device id is checked
/// and ignored. Refuses, never panics, whatever the input.
///
/// ```
/// use pc::virtio_mmio::{parse_device, Transport};
/// assert_eq!(
///     parse_device("4K@0xd0000000:5"),
///     Ok(Transport { base: 0xd000_0000, size: 0x1000, gsi: 5 })
/// );
/// assert!(parse_device("4K@0xd0000000").is_err());
/// ```
pub fn parse_device(value: &str) -> Result<Transport, DeviceParamError> {
    let (size, rest) = size(value).ok_or(DeviceParamError::BadSize)?;
    let rest = rest.strip_prefix('@').ok_or(DeviceParamError::NoBase)?;
    let (base, rest) = address(rest).ok_or(DeviceParamError::BadBase)?;
    let rest = rest.strip_prefix(':').ok_or(DeviceParamError::NoIrq)?;
    let (irq, rest) = number(rest, 10).ok_or(DeviceParamError::BadIrq)?;
    let gsi = u32::try_from(irq).map_err(|_| DeviceParamError::BadIrq)?;
    if !rest.is_empty() {
        let id = rest.strip_prefix(':').ok_or(DeviceParamError::Trailing)?;
        match number(id, 10) {
            Some((_, "")) => {}
            _ => return Err(DeviceParamError::Trailing),
        }
    }
    if size < MIN_SIZE {
        return Err(DeviceParamError::TooSmall(size));
    }
    if base % 4 != 0 {
        return Err(DeviceParamError::Misaligned(base));
    }
    match base.checked_add(size) {
        Some(end) if end <= PHYS_LIMIT => Ok(Transport { base, size, gsi }),
        _ => Err(DeviceParamError::OutOfRange { base, size }),
    }
}

/// How many transports a [`Transports`] list holds (`microvm` has 24 at most; Firecracker
/// fewer).
pub const MAX_TRANSPORTS: usize = 32;

/// Why a transport was not added to a [`Transports`] list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListError<'a> {
    /// A `virtio_mmio.device=` token whose value does not parse: the token and why.
    BadParam(&'a str, DeviceParamError),
    /// The transport's window overlaps one already in the list.
    Overlaps(Transport, Transport),
    /// The list holds [`MAX_TRANSPORTS`] already.
    Full,
}

impl fmt::Display for ListError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListError::BadParam(token, e) => write!(f, "`{token}`: {e}"),
            ListError::Overlaps(new, old) => write!(
                f,
                "the transport at {:#x} ({:#x} bytes) overlaps the one at {:#x} ({:#x} bytes)",
                new.base, new.size, old.base, old.size
            ),
            ListError::Full => write!(f, "more than {MAX_TRANSPORTS} virtio-mmio transports"),
        }
    }
}

impl core::error::Error for ListError<'_> {}

/// The candidate transports, in a fixed array (no allocation), their windows disjoint.
#[derive(Clone, Debug)]
pub struct Transports {
    items: [Transport; MAX_TRANSPORTS],
    len: usize,
}

impl Default for Transports {
    fn default() -> Self {
        Self::new()
    }
}

impl Transports {
    /// An empty list.
    pub const fn new() -> Self {
        Transports {
            items: [Transport {
                base: 0,
                size: 0,
                gsi: 0,
            }; MAX_TRANSPORTS],
            len: 0,
        }
    }

    /// [`MICROVM_ACPI`] as a list.
    pub fn microvm_acpi() -> Self {
        let mut list = Self::new();
        list.items[..MICROVM_ACPI_COUNT].copy_from_slice(&MICROVM_ACPI);
        list.len = MICROVM_ACPI_COUNT;
        list
    }

    /// The transports named by the monitor's command-line tokens: each token that starts
    /// with [`PARAM`] is parsed, other tokens are skipped. Every token is read; the first
    /// error is returned with the list of all the good ones, so the caller can say what it
    /// skipped and still use the rest (`Ok` with an empty list when no token names one: then
    /// the platform's table, such as [`MICROVM_ACPI`], is the caller's to use).
    pub fn from_params<'a>(
        tokens: impl IntoIterator<Item = &'a str>,
    ) -> (Self, Result<(), ListError<'a>>) {
        let mut list = Self::new();
        let mut first_error = Ok(());
        for token in tokens {
            let Some(value) = token.strip_prefix(PARAM) else {
                continue;
            };
            let added = parse_device(value)
                .map_err(|e| ListError::BadParam(token, e))
                .and_then(|t| list.push(t));
            if let (Err(e), Ok(())) = (added, &first_error) {
                first_error = Err(e);
            }
        }
        (list, first_error)
    }

    /// Adds a transport, unless its window overlaps one in the list or the list is full.
    pub fn push<'a>(&mut self, transport: Transport) -> Result<(), ListError<'a>> {
        if let Some(old) = self.iter().find(|t| t.overlaps(&transport)) {
            return Err(ListError::Overlaps(transport, *old));
        }
        let slot = self.items.get_mut(self.len).ok_or(ListError::Full)?;
        *slot = transport;
        self.len += 1;
        Ok(())
    }

    /// The transports, in the order they were added.
    pub fn iter(&self) -> core::slice::Iter<'_, Transport> {
        self.as_slice().iter()
    }

    /// The transports as a slice.
    pub fn as_slice(&self) -> &[Transport] {
        self.items.get(..self.len).unwrap_or_default()
    }

    /// How many transports the list holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the list holds none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// 32-bit reads of device registers at physical addresses (on bare metal, volatile reads of
/// the mapped window; on the host, a fake).
pub trait MmioRead {
    /// The 32-bit register at physical address `addr` (4-byte aligned).
    fn read_u32(&mut self, addr: u64) -> u32;
}

/// The register offsets [`probe`] reads (virtio 1.2, §4.2.2).
pub mod regs {
    /// `MagicValue`: [`MAGIC`](super::MAGIC).
    pub const MAGIC_VALUE: u64 = 0x000;
    /// `Version`: 1 legacy, 2 modern.
    pub const VERSION: u64 = 0x004;
    /// `DeviceID`: the virtio device type, 0 for none.
    pub const DEVICE_ID: u64 = 0x008;
    /// `VendorID`.
    pub const VENDOR_ID: u64 = 0x00c;
}

/// The `MagicValue` of every virtio-mmio transport: "virt" in little-endian.
pub const MAGIC: u32 = 0x7472_6976;

/// The transport's register layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// Version 1: the legacy interface (before virtio 1.0), which QEMU offers unless told
    /// `-global virtio-mmio.force-legacy=false`.
    Legacy,
    /// Version 2: virtio 1.0 and later.
    Modern,
}

/// A transport that answers as one: its version and what it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probed {
    /// Where it is.
    pub transport: Transport,
    /// Its register layout.
    pub version: Version,
    /// The virtio device type (1 network, 2 block, ...; see [`device_name`]); 0 for an empty
    /// slot.
    pub device_id: u32,
    /// The vendor (QEMU: 0x554d4551, "QEMU").
    pub vendor_id: u32,
}

impl Probed {
    /// True when a device sits behind the transport (DeviceID not 0).
    pub fn has_device(&self) -> bool {
        self.device_id != 0
    }
}

/// Why a window is not a virtio-mmio transport.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeError {
    /// `MagicValue` is not "virt": what was read instead.
    BadMagic(u32),
    /// The magic is right but the version is neither 1 nor 2: what was read.
    BadVersion(u32),
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeError::BadMagic(m) => write!(
                f,
                "not a virtio-mmio transport: magic {m:#010x}, not {MAGIC:#010x} (\"virt\")"
            ),
            ProbeError::BadVersion(v) => write!(
                f,
                "virtio-mmio version {v}, neither 1 (legacy) nor 2 (modern)"
            ),
        }
    }
}

impl core::error::Error for ProbeError {}

/// Reads the identification registers of `transport`: its magic, version, device and vendor.
/// An empty slot is `Ok` with `device_id` 0 (see [`Probed::has_device`]). Reads only the four
/// registers, so it changes nothing on the device.
pub fn probe(mmio: &mut impl MmioRead, transport: Transport) -> Result<Probed, ProbeError> {
    let base = transport.base;
    let magic = mmio.read_u32(base.wrapping_add(regs::MAGIC_VALUE));
    if magic != MAGIC {
        return Err(ProbeError::BadMagic(magic));
    }
    let version = match mmio.read_u32(base.wrapping_add(regs::VERSION)) {
        1 => Version::Legacy,
        2 => Version::Modern,
        v => return Err(ProbeError::BadVersion(v)),
    };
    Ok(Probed {
        transport,
        version,
        device_id: mmio.read_u32(base.wrapping_add(regs::DEVICE_ID)),
        vendor_id: mmio.read_u32(base.wrapping_add(regs::VENDOR_ID)),
    })
}

/// The name of a virtio device type, for the log (virtio 1.2, §5), `None` for types this
/// table does not know.
pub fn device_name(device_id: u32) -> Option<&'static str> {
    Some(match device_id {
        1 => "network",
        2 => "block",
        3 => "console",
        4 => "entropy",
        5 => "balloon",
        8 => "scsi",
        9 => "9p",
        16 => "gpu",
        18 => "input",
        19 => "vsock",
        26 => "fs",
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
