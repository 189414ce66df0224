//! Devices a platform found at boot, described for the drivers: where a device's registers are
//! and which interrupt line it raises. The platform finds them (PCI enumeration, virtio-mmio
//! probes) and maps their registers as device memory; the composition root gives each one to
//! the driver its profile selected (`Platform::devices`).

use crate::irq::Irq;
use core::fmt;

/// The virtio device type of a network card (virtio 1.2, §5).
pub const VIRTIO_NET: u32 = 1;
/// The virtio device type of a block device.
pub const VIRTIO_BLOCK: u32 = 2;

/// Where a device sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// A virtio-mmio transport: its register window (`microvm`, Firecracker).
    VirtioMmio {
        /// Physical address of the register window (mapped uncached by the platform).
        base: u64,
        /// Its size in bytes.
        size: u64,
    },
    /// A PCI function (bus 0 on `q35`), reached through configuration space.
    Pci {
        /// Bus number.
        bus: u8,
        /// Device number (0-31).
        device: u8,
        /// Function number (0-7).
        function: u8,
    },
}

/// What a PCI base address register decodes, once the platform assigned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// Memory space, 32-bit address.
    Memory32,
    /// Memory space, 64-bit address (the BAR and the next one).
    Memory64,
    /// I/O space.
    Io,
}

/// A PCI base address register, as assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bar {
    /// What it decodes.
    pub kind: BarKind,
    /// Its address (physical, or the I/O port).
    pub address: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// A device the platform found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// Where it sits.
    pub bus: Bus,
    /// The vendor and device ids (PCI's; for virtio-mmio the transport's vendor and device id).
    pub vendor_id: u16,
    /// See `vendor_id`.
    pub device_id: u16,
    /// The virtio device type ([`VIRTIO_NET`], [`VIRTIO_BLOCK`], ...) when it is a virtio
    /// device, read from the device (virtio-mmio `DeviceID`; PCI ids 0x1000-0x103f transitional,
    /// 0x1040 + type modern).
    pub virtio_type: Option<u32>,
    /// The interrupt line it raises, routed by the platform (PCI INTx through the IOAPIC,
    /// virtio-mmio's GSI), or `None` when it has none the platform can route.
    pub irq: Option<Irq>,
    /// PCI base address registers by index (none for virtio-mmio).
    pub bars: [Option<Bar>; 6],
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.bus {
            Bus::VirtioMmio { base, .. } => write!(f, "virtio-mmio at {base:#x}")?,
            Bus::Pci {
                bus,
                device,
                function,
            } => write!(f, "PCI {bus:02x}:{device:02x}.{function}")?,
        }
        write!(f, " [{:04x}:{:04x}]", self.vendor_id, self.device_id)?;
        match self.virtio_type {
            Some(VIRTIO_NET) => f.write_str(" virtio-net")?,
            Some(VIRTIO_BLOCK) => f.write_str(" virtio-blk")?,
            Some(t) => write!(f, " virtio type {t}")?,
            None => {}
        }
        match self.irq {
            Some(irq) => write!(f, ", interrupt {}", irq.0),
            None => f.write_str(", no interrupt"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_print_where_they_are() {
        let d = Device {
            bus: Bus::VirtioMmio {
                base: 0xfeb0_0000,
                size: 512,
            },
            vendor_id: 0x554d,
            device_id: 1,
            virtio_type: Some(VIRTIO_NET),
            irq: Some(Irq(24)),
            bars: [None; 6],
        };
        assert_eq!(
            d.to_string(),
            "virtio-mmio at 0xfeb00000 [554d:0001] virtio-net, interrupt 24"
        );
        let p = Device {
            bus: Bus::Pci {
                bus: 0,
                device: 2,
                function: 0,
            },
            vendor_id: 0x1af4,
            device_id: 0x1000,
            virtio_type: Some(VIRTIO_NET),
            irq: None,
            bars: [None; 6],
        };
        assert_eq!(
            p.to_string(),
            "PCI 00:02.0 [1af4:1000] virtio-net, no interrupt"
        );
    }
}
