//! Device discovery's decisions, apart from the ports and MMIO: where to look for virtio-mmio
//! transports, how a PCI function or a probed transport becomes a [`platform::device::Device`],
//! and the fixed-capacity list the platform keeps them in. `platform-kvm`'s `devices.rs` does the
//! port and MMIO accesses and calls these.
//!
//! Where the virtio-mmio transports are ([`mmio_source`]), in order:
//!
//! 1. `virtio_mmio.device=` tokens on the kernel command line (QEMU `microvm` with `acpi=off`,
//!    Firecracker): those, on any machine.
//! 2. Otherwise QEMU `microvm` with ACPI, which names its transports only in the DSDT's AML:
//!    [`virtio_mmio::MICROVM_ACPI`], when all of these hold: no PCI host bridge answers at
//!    0xCF8 (`q35` and `pc` have one; `microvm` has none unless `pcie=on`, which puts it behind
//!    ECAM, not the ports), the boot information names an ACPI RSDP (`microvm` with
//!    `acpi=off` has none), and fw_cfg answers "QEMU" (the layout is QEMU's; another monitor
//!    with ACPI but no tokens is not guessed at). The probe then confirms it: the table's first
//!    transport must read the magic "virt", else the rest are not read.
//! 3. Otherwise none.
//!
//! No AML interpreter, no DSDT scan: QEMU's `microvm` fixes the layout in `hw/i386/microvm.c`.

use crate::pci::{self, HostBridge};
use crate::virtio_mmio::{self, MmioRead, ProbeError, Probed, Transport, Version};
use platform::device::{Bar, BarKind, Bus, Device};
use platform::irq::Irq;

/// How many devices the platform keeps; more are reported and skipped.
pub const DEVICES_MAX: usize = 16;

/// Where the platform looks for virtio-mmio transports (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmioSource {
    /// The `virtio_mmio.device=` tokens of the command line.
    CommandLine,
    /// QEMU `microvm`'s fixed ACPI layout.
    MicrovmAcpi,
    /// Nowhere.
    None,
}

/// What the platform knows at `init` about the machine, for [`mmio_source`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Machine {
    /// The command line names at least one transport.
    pub command_line_transports: bool,
    /// A PCI host bridge answers at 00:00.0 through ports 0xCF8/0xCFC.
    pub pci_host_bridge: bool,
    /// The boot information names an ACPI RSDP.
    pub acpi: bool,
    /// fw_cfg's signature reads "QEMU".
    pub qemu: bool,
}

/// Where to look for virtio-mmio transports on `machine` (the module docs' rules).
pub fn mmio_source(machine: Machine) -> MmioSource {
    if machine.command_line_transports {
        MmioSource::CommandLine
    } else if !machine.pci_host_bridge && machine.acpi && machine.qemu {
        MmioSource::MicrovmAcpi
    } else {
        MmioSource::None
    }
}

const EMPTY: Device = Device {
    bus: Bus::VirtioMmio { base: 0, size: 0 },
    vendor_id: 0,
    device_id: 0,
    virtio_type: None,
    irq: None,
    bars: [None; 6],
};

/// The devices found, in a fixed array (no allocation): at most [`DEVICES_MAX`], the rest
/// counted in [`DeviceList::dropped`].
#[derive(Clone, Debug)]
pub struct DeviceList {
    items: [Device; DEVICES_MAX],
    len: usize,
    dropped: usize,
}

impl Default for DeviceList {
    fn default() -> Self {
        Self::new()
    }
}

impl DeviceList {
    /// An empty list.
    pub const fn new() -> Self {
        DeviceList {
            items: [EMPTY; DEVICES_MAX],
            len: 0,
            dropped: 0,
        }
    }

    /// Adds a device; returns false (and counts it as dropped) when the list is full.
    pub fn push(&mut self, device: Device) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = device;
                self.len += 1;
                true
            }
            None => {
                self.dropped += 1;
                false
            }
        }
    }

    /// The devices, in the order they were found.
    pub fn as_slice(&self) -> &[Device] {
        self.items.get(..self.len).unwrap_or_default()
    }

    /// How many devices did not fit.
    pub fn dropped(&self) -> usize {
        self.dropped
    }
}

/// A PCI function as the platform describes it: its memory and I/O BARs as assigned, its
/// virtio type from its IDs, and its INTx pin routed by `bridge` ([`pci::intx_gsi`]).
pub fn pci_device(d: &pci::Device, bridge: HostBridge) -> Device {
    let mut bars = [None; 6];
    for (slot, bar) in bars.iter_mut().zip(&d.bars) {
        *slot = bar.map(|b| Bar {
            kind: match b.kind {
                pci::BarKind::Memory32 => BarKind::Memory32,
                pci::BarKind::Memory64 => BarKind::Memory64,
                pci::BarKind::Io => BarKind::Io,
            },
            address: b.address,
            size: b.size,
        });
    }
    let irq = d
        .interrupt_pin
        .and_then(|pin| pci::intx_gsi(bridge, d.address.device, pin, d.interrupt_line).map(Irq));
    Device {
        bus: Bus::Pci {
            bus: d.address.bus,
            device: d.address.device,
            function: d.address.function,
        },
        vendor_id: d.vendor,
        device_id: d.device,
        virtio_type: pci::virtio_type(d.vendor, d.device),
        irq,
        bars,
    }
}

/// A probed virtio-mmio transport that holds a device, as the platform describes it: the
/// window, the upper half of `VendorID` as the vendor (QEMU's 0x554d4551 shows as 554d), the
/// device type as device ID and virtio type, and its GSI.
pub fn mmio_device(p: &Probed) -> Device {
    Device {
        bus: Bus::VirtioMmio {
            base: p.transport.base,
            size: p.transport.size,
        },
        vendor_id: (p.vendor_id >> 16) as u16,
        device_id: p.device_id as u16,
        virtio_type: Some(p.device_id),
        irq: Some(Irq(p.transport.gsi)),
        bars: [None; 6],
    }
}

/// What one transport's probe found, for the caller's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A device, added to the list (or dropped, when the list was full: `kept` false).
    Device {
        /// The transport.
        probed: Probed,
        /// Whether it fit the list.
        kept: bool,
    },
    /// A transport with no device behind it (DeviceID 0).
    Empty(Transport),
    /// Not a transport.
    NotATransport(Transport, ProbeError),
    /// `microvm`'s table answered no magic at its first transport: not `microvm`, the rest was
    /// not read.
    NotMicrovm(Transport, ProbeError),
}

/// Probes `transports` and adds those that hold a device to `list`, legacy (version 1) and
/// modern (version 2) alike (virtio-drivers drives both; QEMU's transports are legacy unless
/// `-global virtio-mmio.force-legacy=false`). With `fixed_table` (the `microvm` layout, not
/// named by the monitor) a first transport that is not one stops the probe. Calls `report`
/// once per transport read. Returns how many devices were found (kept or not).
pub fn probe_transports(
    mmio: &mut impl MmioRead,
    transports: &[Transport],
    fixed_table: bool,
    list: &mut DeviceList,
    mut report: impl FnMut(Probe),
) -> usize {
    let mut found = 0;
    for (n, &t) in transports.iter().enumerate() {
        match virtio_mmio::probe(mmio, t) {
            Ok(p) if p.has_device() => {
                found += 1;
                let kept = list.push(mmio_device(&p));
                report(Probe::Device { probed: p, kept });
            }
            Ok(_) => report(Probe::Empty(t)),
            Err(e) if fixed_table && n == 0 => {
                report(Probe::NotMicrovm(t, e));
                break;
            }
            Err(e) => report(Probe::NotATransport(t, e)),
        }
    }
    found
}

/// "legacy" or "modern", for the log.
pub fn version_name(v: Version) -> &'static str {
    match v {
        Version::Legacy => "legacy",
        Version::Modern => "modern",
    }
}

#[cfg(test)]
mod tests;
