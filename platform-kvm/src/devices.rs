//! Device discovery on KVM-class monitors: PCI functions on bus 0 (`q35`, `pc`) and virtio-mmio
//! transports (`microvm`, Firecracker), kept in a static list that `Platform::devices` shows.
//!
//! In two steps, because the boot page tables identity-map the first GiB only and the
//! virtio-mmio windows (`microvm`'s at 0xfeb00000, Firecracker's at 0xd0000000) lie above it:
//!
//! - [`init`] (from `Platform::init`): reads the command line's `virtio_mmio.device=` tokens;
//!   when a PCI host bridge answers at 00:00.0 through ports 0xCF8/0xCFC, scans bus 0 and keeps
//!   the virtio functions (vendor 0x1af4): their memory BARs are assigned from
//!   `pc::pci::Q35_MMIO_WINDOW` (qboot assigns none), memory decoding and bus mastering
//!   enabled, the INTx pin routed to a GSI (`pc::pci::intx_gsi`). Every other function is
//!   left as the firmware left it (logged at debug, not listed): no driver here would use it.
//!   Configuration space needs no mapping, so all of PCI is done here. Then it chooses where
//!   virtio-mmio transports are (`pc::discovery::mmio_source`) and returns every window (BARs,
//!   transports) as device memory, for the kernel's tables to map uncached.
//! - [`visit`] (from `Platform::devices`): the first call after `map_memory` probes the
//!   candidate transports (magic, version, device ID) through the now-mapped windows, adds
//!   those that hold a device, then shows the list.
//!
//! The list is written only on the boot CPU: by `init`, and by the first `visit` after
//! `map_memory` (the kernel calls it at boot, before the app runs and before any other CPU or
//! thread exists); afterwards it is read-only. The phase atomic publishes each step.

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::sync::atomic::{AtomicU8, Ordering};
use pc::discovery::{self, DeviceList, Machine, MmioSource, Probe};
use pc::pci::{self, Address, ConfigSpace, HostBridge, MmioWindow, PortConfigSpace};
use pc::virtio_mmio::{self, MmioRead, Transport, Transports};
use platform::device::Device;
use platform::{BootInfo, DeviceMemory, Range};

/// What discovery found: the list, and the transports still to probe.
struct Found {
    list: DeviceList,
    transports: Transports,
    fixed_table: bool,
}

/// Zeroed until `init` writes it (so it costs the image no bytes: `.bss`).
struct Shared(UnsafeCell<MaybeUninit<Found>>);

// SAFETY: written only on the boot CPU before any other CPU or thread runs (see the module
// docs), in the phases `PHASE` publishes; read-only afterwards.
unsafe impl Sync for Shared {}

static FOUND: Shared = Shared(UnsafeCell::new(MaybeUninit::zeroed()));

/// 0: before `init`; 1: `init` done (PCI listed, transports noted); 2: transports being probed;
/// 3: all done.
static PHASE: AtomicU8 = AtomicU8::new(0);

/// PCI functions read from bus 0 at most (the kept ones; `pc::pci::scan` counts the rest).
const PCI_MAX: usize = discovery::DEVICES_MAX;

/// Discovers what needs no MMIO (see the module docs) and adds the device windows to `memory`.
pub(crate) fn init(boot: &BootInfo, memory: &mut DeviceMemory) {
    if PHASE.load(Ordering::Acquire) != 0 {
        return;
    }
    // SAFETY: phase 0: `init` runs once, on the boot CPU, before anything reads the list.
    let found = unsafe { &mut *FOUND.0.get() }.write(Found {
        list: DeviceList::new(),
        transports: Transports::new(),
        fixed_table: false,
    });

    let line = boot.cmdline.as_str().unwrap_or_default();
    let (tokens, bad) = Transports::from_params(cmdline::monitor_params(line));
    if let Err(e) = bad {
        log::warn!("virtio_mmio.device: {e}; that transport is skipped");
    }

    let mut cfg = PortConfigSpace;
    let host = cfg.read(Address::default(), 0);
    let (host_vendor, host_device) = (host as u16, (host >> 16) as u16);
    let pci_host_bridge = host_vendor != 0xffff && host_vendor != 0;
    if pci_host_bridge {
        scan_pci(
            &mut cfg,
            HostBridge::of(host_vendor, host_device),
            found,
            memory,
        );
    }

    let machine = Machine {
        command_line_transports: !tokens.is_empty(),
        pci_host_bridge,
        acpi: boot.rsdp.0 != 0,
        qemu: crate::fw_cfg_is_qemu(),
    };
    let source = discovery::mmio_source(machine);
    log::debug!(
        "virtio-mmio transports: {} (command line: {}, PCI: {}, ACPI: {}, QEMU: {})",
        match source {
            MmioSource::CommandLine => "the command line's",
            MmioSource::MicrovmAcpi => "microvm's ACPI layout",
            MmioSource::None => "none",
        },
        machine.command_line_transports,
        machine.pci_host_bridge,
        machine.acpi,
        machine.qemu,
    );
    (found.transports, found.fixed_table) = match source {
        MmioSource::CommandLine => (tokens, false),
        MmioSource::MicrovmAcpi => (Transports::microvm_acpi(), true),
        MmioSource::None => (Transports::new(), false),
    };
    let mut mapped = Transports::new();
    for t in found.transports.iter() {
        let Some(end) = t.end() else { continue };
        match memory.push_merged(Range::new(t.base, end)) {
            // Cannot fail: the list has the room `transports` had.
            Ok(()) => {
                let _ = mapped.push(*t);
            }
            Err(e) => log::warn!(
                "virtio-mmio transport at {:#x} skipped: no room to map it ({e})",
                t.base
            ),
        }
    }
    found.transports = mapped;
    PHASE.store(1, Ordering::Release);
}

/// Scans bus 0, keeps the virtio functions, and adds their memory BARs to `memory`.
fn scan_pci(
    cfg: &mut PortConfigSpace,
    bridge: HostBridge,
    found: &mut Found,
    memory: &mut DeviceMemory,
) {
    let mut window = MmioWindow::new(pci::Q35_MMIO_WINDOW);
    let mut functions = [pci::Device::default(); PCI_MAX];
    let scan = pci::scan_filtered(cfg, &mut window, &mut functions, |vendor, _| {
        vendor == pci::VIRTIO_VENDOR
    });
    log::debug!(
        "PCI bus 0 ({} host bridge): {} virtio functions, {} others left alone, {} skipped",
        match bridge {
            HostBridge::Q35 => "Q35",
            HostBridge::Other => "other",
        },
        scan.found,
        scan.ignored,
        scan.skipped,
    );
    for f in functions.get(..scan.found).unwrap_or_default() {
        let mut room = true;
        for bar in f.memory_bars() {
            log::debug!(
                "PCI {}: BAR{} {} at {:#x}, {:#x} bytes",
                f.address,
                bar.index,
                match bar.kind {
                    pci::BarKind::Memory64 => "64-bit",
                    _ => "32-bit",
                },
                bar.address,
                bar.size
            );
            let end = bar.address.saturating_add(bar.size);
            if let Err(e) = memory.push_merged(Range::new(bar.address, end)) {
                log::warn!("PCI {}: no room to map BAR{} ({e})", f.address, bar.index);
                room = false;
            }
        }
        if !room {
            log::warn!(
                "PCI {}: not listed (its registers are not mapped)",
                f.address
            );
        } else if !found.list.push(discovery::pci_device(f, bridge)) {
            log::warn!(
                "PCI {}: more than {} devices, skipped",
                f.address,
                discovery::DEVICES_MAX
            );
        }
    }
}

/// Volatile 32-bit reads of the identity-mapped device windows.
struct Mapped;

impl MmioRead for Mapped {
    fn read_u32(&mut self, addr: u64) -> u32 {
        // SAFETY: `addr` lies in a transport window that `init` returned as device memory and
        // `map_memory` mapped uncached at its own address; the identification registers are
        // read-only and reading them has no effect on the device.
        unsafe { core::ptr::read_volatile(addr as *const u32) }
    }
}

/// Probes the noted transports once the device windows are mapped (`mapped`), then shows
/// `visit` every device found.
pub(crate) fn visit(mapped: bool, visit: &mut dyn FnMut(&Device)) {
    if mapped
        && PHASE
            .compare_exchange(1, 2, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    {
        // SAFETY: phase 2 is this caller's alone (the exchange above), on the boot CPU; no
        // reader looks at the list until phase 3 is published. `init` wrote it (phase >= 1).
        let found = unsafe { (*FOUND.0.get()).assume_init_mut() };
        probe(found);
        // virtio-mmio raises a level, active-high line (QEMU's microvm DSDT says so for its
        // second IOAPIC, whose lines default to it); a transport on an ISA line (`acpi=off`,
        // Firecracker: IRQ 5 + n) would otherwise be taken as edge-triggered.
        for d in found.list.as_slice() {
            if let (platform::device::Bus::VirtioMmio { .. }, Some(irq)) = (d.bus, d.irq) {
                crate::irq::set_line_mode(irq, pc::ioapic::Mode::LEVEL_HIGH);
            }
        }
        PHASE.store(3, Ordering::Release);
    }
    while PHASE.load(Ordering::Acquire) == 2 {
        core::hint::spin_loop();
    }
    if PHASE.load(Ordering::Acquire) == 0 {
        return;
    }
    // SAFETY: phase 1 or 3: `init` wrote it, and nobody writes it any more (phase 1 before
    // `map_memory` is the boot CPU's alone, and the probe starts only on it).
    let found = unsafe { (*FOUND.0.get()).assume_init_ref() };
    for d in found.list.as_slice() {
        visit(d);
    }
}

fn probe(found: &mut Found) {
    let transports: &[Transport] = found.transports.as_slice();
    if transports.is_empty() {
        return;
    }
    let n = discovery::probe_transports(
        &mut Mapped,
        transports,
        found.fixed_table,
        &mut found.list,
        |p| match p {
            Probe::Device { probed, kept } => log::debug!(
                "virtio-mmio at {:#x} ({} bytes, GSI {}): {} virtio, type {} ({}), vendor \
                 {:#x}{}",
                probed.transport.base,
                probed.transport.size,
                probed.transport.gsi,
                discovery::version_name(probed.version),
                probed.device_id,
                virtio_mmio::device_name(probed.device_id).unwrap_or("unknown"),
                probed.vendor_id,
                if kept {
                    ""
                } else {
                    "; more than the list holds, skipped"
                }
            ),
            Probe::Empty(_) => {}
            Probe::NotATransport(t, e) => log::warn!("virtio-mmio at {:#x}: {e}", t.base),
            Probe::NotMicrovm(t, e) => {
                log::debug!("no microvm transports: at {:#x}, {e}", t.base)
            }
        },
    );
    log::debug!(
        "virtio-mmio: {n} devices behind {} transports",
        transports.len()
    );
}
