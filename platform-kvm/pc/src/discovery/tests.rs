//! The source rules, the list's capacity, the conversions, and probes of a fake `microvm`, of a
//! machine that is not one, and of seeded random registers.
use super::*;
use crate::virtio_mmio::{MAGIC, MICROVM_ACPI, Transports};
use platform::fuzz::{Rng, cases};
use std::collections::BTreeMap;
use std::vec::Vec;

#[test]
fn command_line_tokens_win_then_microvm_needs_no_pci_acpi_and_qemu() {
    for bits in 0..16u8 {
        let m = Machine {
            command_line_transports: bits & 1 != 0,
            pci_host_bridge: bits & 2 != 0,
            acpi: bits & 4 != 0,
            qemu: bits & 8 != 0,
        };
        let expected = if m.command_line_transports {
            MmioSource::CommandLine
        } else if bits == 0b1100 {
            MmioSource::MicrovmAcpi
        } else {
            MmioSource::None
        };
        assert_eq!(mmio_source(m), expected, "{m:?}");
    }
}

fn device(n: u32) -> Device {
    Device {
        irq: Some(Irq(n)),
        ..EMPTY
    }
}

#[test]
fn the_list_keeps_sixteen_and_counts_the_rest() {
    let mut list = DeviceList::new();
    assert!(list.as_slice().is_empty());
    for n in 0..DEVICES_MAX as u32 {
        assert!(list.push(device(n)));
    }
    assert!(!list.push(device(99)));
    assert!(!list.push(device(100)));
    assert_eq!(list.as_slice().len(), DEVICES_MAX);
    assert_eq!(list.dropped(), 2);
    let irqs: Vec<_> = list.as_slice().iter().map(|d| d.irq).collect();
    assert_eq!(irqs, (0..16).map(|n| Some(Irq(n))).collect::<Vec<_>>());
}

#[test]
fn a_pci_virtio_net_becomes_a_device_with_its_bars_and_gsi() {
    let mut d = pci::Device::default();
    d.address = pci::Address {
        bus: 0,
        device: 1,
        function: 0,
    };
    (d.vendor, d.device) = (0x1af4, 0x1041);
    (d.interrupt_pin, d.interrupt_line) = (Some(1), 10);
    d.bars[1] = Some(pci::Bar {
        index: 1,
        kind: pci::BarKind::Memory32,
        prefetchable: false,
        address: 0xc000_4000,
        size: 0x1000,
    });
    d.bars[4] = Some(pci::Bar {
        index: 4,
        kind: pci::BarKind::Memory64,
        prefetchable: true,
        address: 0xc000_0000,
        size: 0x4000,
    });
    let q = pci_device(&d, HostBridge::Q35);
    assert_eq!(
        q.to_string(),
        "PCI 00:01.0 [1af4:1041] virtio-net, interrupt 21"
    );
    assert_eq!(
        q.bars[4],
        Some(Bar {
            kind: BarKind::Memory64,
            address: 0xc000_0000,
            size: 0x4000
        })
    );
    assert_eq!(q.bars.iter().flatten().count(), 2);
    // On another host bridge the firmware's line is the route.
    assert_eq!(pci_device(&d, HostBridge::Other).irq, Some(Irq(10)));
    d.interrupt_pin = None;
    assert_eq!(pci_device(&d, HostBridge::Q35).irq, None);
}

/// Identification registers by address; anything else reads `fill`.
struct FakeMmio {
    regs: BTreeMap<u64, u32>,
    fill: u32,
    reads: usize,
}

impl FakeMmio {
    fn new(fill: u32) -> Self {
        FakeMmio {
            regs: BTreeMap::new(),
            fill,
            reads: 0,
        }
    }
    fn transport(mut self, t: Transport, version: u32, device: u32) -> Self {
        self.regs.insert(t.base, MAGIC);
        self.regs.insert(t.base + 4, version);
        self.regs.insert(t.base + 8, device);
        self.regs.insert(t.base + 12, 0x554d_4551);
        self
    }
}

impl MmioRead for FakeMmio {
    fn read_u32(&mut self, addr: u64) -> u32 {
        self.reads += 1;
        self.regs.get(&addr).copied().unwrap_or(self.fill)
    }
}

/// QEMU `microvm` with ACPI: every transport answers, the first `-device` at the last one.
fn microvm(devices: &[(usize, u32, u32)]) -> FakeMmio {
    let mut m = FakeMmio::new(0);
    for t in MICROVM_ACPI {
        m = m.transport(t, 1, 0);
    }
    for &(n, version, id) in devices {
        m = m.transport(MICROVM_ACPI[n], version, id);
    }
    m
}

#[test]
fn microvm_lists_its_devices_legacy_and_modern() {
    let mut mmio = microvm(&[(23, 1, 1), (22, 2, 2)]);
    let mut list = DeviceList::new();
    let mut reports = Vec::new();
    let found = probe_transports(&mut mmio, &MICROVM_ACPI, true, &mut list, |p| {
        reports.push(p)
    });
    assert_eq!(found, 2);
    let shown: Vec<_> = list.as_slice().iter().map(|d| d.to_string()).collect();
    assert_eq!(
        shown,
        [
            "virtio-mmio at 0xfeb02c00 [554d:0002] virtio-blk, interrupt 46",
            "virtio-mmio at 0xfeb02e00 [554d:0001] virtio-net, interrupt 47",
        ]
    );
    assert_eq!(reports.len(), 24);
    assert_eq!(
        reports
            .iter()
            .filter(|p| matches!(p, Probe::Empty(_)))
            .count(),
        22
    );
}

#[test]
fn a_machine_without_transports_is_read_once() {
    for fill in [0, u32::MAX] {
        let mut mmio = FakeMmio::new(fill);
        let mut list = DeviceList::new();
        let mut reports = Vec::new();
        let found = probe_transports(&mut mmio, &MICROVM_ACPI, true, &mut list, |p| {
            reports.push(p)
        });
        assert_eq!((found, list.as_slice().len()), (0, 0));
        assert_eq!(mmio.reads, 1, "only the first magic is read");
        assert!(matches!(reports[..], [Probe::NotMicrovm(..)]));
    }
}

#[test]
fn command_line_transports_are_each_probed() {
    let (list_t, errors) = Transports::from_params([
        "virtio_mmio.device=4K@0xd0000000:5",
        "virtio_mmio.device=4K@0xd0001000:6",
        "virtio_mmio.device=4K@0xd0002000:7",
    ]);
    assert_eq!(errors, Ok(()));
    let t = list_t.as_slice();
    // The first is not a transport; the other two are.
    let mut mmio = FakeMmio::new(0).transport(t[1], 2, 1).transport(t[2], 2, 2);
    let mut list = DeviceList::new();
    let found = probe_transports(&mut mmio, t, false, &mut list, |_| {});
    assert_eq!(found, 2);
    let irqs: Vec<_> = list.as_slice().iter().map(|d| d.irq).collect();
    assert_eq!(irqs, [Some(Irq(6)), Some(Irq(7))]);
}

#[test]
fn more_devices_than_the_list_holds_are_dropped() {
    let all: Vec<_> = (0..24).map(|n| (n, 2, 1 + n as u32 % 3)).collect();
    let mut mmio = microvm(&all);
    let mut list = DeviceList::new();
    let mut dropped = 0;
    let found = probe_transports(&mut mmio, &MICROVM_ACPI, true, &mut list, |p| {
        if let Probe::Device { kept: false, .. } = p {
            dropped += 1;
        }
    });
    assert_eq!((found, list.as_slice().len()), (24, DEVICES_MAX));
    assert_eq!((dropped, list.dropped()), (8, 8));
}

#[test]
fn random_registers_give_only_well_formed_devices() {
    let mut r = Rng::new(0xd15c_0001);
    for case in 0..cases(2_000) {
        let mut mmio = FakeMmio::new(r.edgy_u32());
        for t in MICROVM_ACPI {
            if r.chance(60) {
                let odd = r.edgy_u32();
                let version = r.pick(&[0, 1, 2, 3, odd]);
                mmio = mmio.transport(t, version, r.edgy_u32());
            }
            if r.chance(10) {
                mmio.regs.insert(t.base, r.edgy_u32());
            }
        }
        let fixed = r.chance(50);
        let mut list = DeviceList::new();
        let found = probe_transports(&mut mmio, &MICROVM_ACPI, fixed, &mut list, |_| {});
        assert!(found <= 24 && list.as_slice().len() == found.min(DEVICES_MAX));
        assert_eq!(
            list.dropped(),
            found.saturating_sub(DEVICES_MAX),
            "case {case}"
        );
        for d in list.as_slice() {
            let Bus::VirtioMmio { base, size } = d.bus else {
                panic!("case {case}: {d:?}");
            };
            let n = MICROVM_ACPI
                .iter()
                .position(|t| t.base == base && t.size == size)
                .expect("a device sits at one of the table's transports");
            assert_eq!(d.irq, Some(Irq(24 + n as u32)), "case {case}");
            assert_ne!(d.virtio_type, Some(0), "case {case}");
        }
    }
}
