//! The PC chipset as KVM-class monitors emulate it (QEMU `q35`/`microvm`, Firecracker, Cloud
//! Hypervisor): one home for the devices around the CPU that `platform-kvm` drives.
//!
//! - [`acpi`]: the firmware's ACPI tables, read for the S5 power-off (FADT, DSDT `_S5_`);
//!   pure, over [`platform::PhysRead`], with seeded random-input tests.
//! - [`cpus`]: the processors the MADT lists (their local APIC ids), for SMP bring-up; pure,
//!   with seeded random-input tests.
//! - [`pic`]: the legacy 8259 PICs, remapped and masked.
//! - [`apic`]: the local APIC (xAPIC), whose one-shot timer is the platform timer; its IDT
//!   entry stub.
//! - [`rtc`]: the CMOS real-time clock (decoding host-tested), the wall clock.
//! - [`pit`]: the 8254 PIT, to measure the TSC where nothing tells its frequency.
//! - [`kvmclock`]: KVM's paravirtual clock, read once for the TSC frequency (its scale
//!   arithmetic host-tested).
//! - [`pci`]: PCI enumeration on `q35`: a bus-0 scan behind a configuration-space trait (ports
//!   0xCF8/0xCFC on bare metal), BAR sizing and assignment (qboot assigns none); host-tested over
//!   a fake `q35` and seeded random configuration spaces.
//! - [`virtio_mmio`]: where the virtio-mmio transports are (the command line's
//!   `virtio_mmio.device=` tokens, `microvm`'s fixed table with ACPI) and what sits behind
//!   one (a probe over a small MMIO-read trait); pure, with seeded random-input tests.
//! - [`discovery`]: where the platform looks for virtio-mmio transports, PCI functions and
//!   probed transports as `platform::device::Device`s, the fixed-capacity device list; pure.
//!
//! The CPU itself (GDT, IDT, exceptions, page tables, the TSC) is the arch crate's; the
//! IOAPIC belongs here when devices come.
//!
//! The pure parts build and run on the host under `cargo test`; what touches ports, MSRs or
//! MMIO is compiled only for the bare-metal target.
//!
//! # Cargo features
//! None.
#![cfg_attr(not(test), no_std)]

pub mod acpi;
pub mod cpus;
pub mod discovery;
pub mod ioapic;
pub mod kvmclock;
pub mod pci;
pub mod rtc;
pub mod virtio_mmio;

#[cfg(target_os = "none")]
pub mod apic;
#[cfg(target_os = "none")]
pub mod pic;
#[cfg(target_os = "none")]
pub mod pit;
