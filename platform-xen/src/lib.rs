//! Thin platform for Xen x86_64 guests (`platform = "xen"`), PV (the default) or PVH
//! (`xen_guest = "pvh"`, the `pvh` feature). One [`Xen`] type; the services are written once
//! and only the parts that differ by guest type are apart (`pv.rs` or [`pvh`], used as `guest`).
//!
//! - [`entry`] (PV): the `.note.Xen` ELF notes, the 64-bit PV entry, the hypercall page, the
//!   trap table and its trampolines into the arch crate's exception stubs.
//! - [`pvh`] (PVH): Xen found by CPUID, the hypercall page installed by MSR, the console ring
//!   from HVM params; the arch crate's PVH entry, start info parser, IDT and page tables.
//! - `pv.rs` (PV): the `Platform` calls on the PV modules below, the event callbacks.
//! - [`hypercall`]: hypercalls through the hypercall page.
//! - [`memory`] (PV): boot information from `start_info`, the p2m/M2P translations, and the PV
//!   memory model (page tables updated by `mmu_update`: all free RAM mapped, the image W^X).
//! - [`console`]: the console ring, as this platform's console device.
//! - [`time`]: the shared info page (mapped by the guest type's code), the PV clock and the wall
//!   clock.
//! - [`events`]: the event upcall, masking (PV: in `vcpu_info`; PVH: `cli`/`sti`), handlers per
//!   port (device handlers: `Platform::irq_register` with a port, masked before each call), the
//!   one-shot timer (its VIRQ calls the kernel's timer handler at the end of the upcall). The callback's entry and registration and idle are the guest type's (PV:
//!   `set_callbacks`, `SCHEDOP_block`; PVH: the HVM callback vector, `sti; hlt`).
//! - `smp.rs`: the other vCPUs (`VCPUOP_initialise` with the guest type's context, `VCPUOP_up`),
//!   each with its own `VIRQ_TIMER` and IPI port (`EVTCHNOP_bind_ipi`); `send_ipi` sends on
//!   it. The upcall handles only the ports bound to its own vCPU.
//! - [`xenstore`]: XenStore over its ring (the client is `xen_services::xenstore`).
//! - [`grant`]: the grant table (PV: `GNTTABOP_setup_table`; PVH: `XENMEM_add_to_physmap`;
//!   bookkeeping in `xen_services::grant`).
//! - Power-off and crash by `SCHEDOP_shutdown`.
//!
//! Modules depend one way: `pv.rs`/`pvh.rs` on the shared services, the services on
//! `hypercall` (and `memory`, PV's), and on the guest type only through the `guest` alias (the
//! console and XenStore rings, idle), which `pv.rs`/`pvh.rs` serve without calling back. The
//! `pvh` feature is read here (which modules), and in two shared modules where a `guest` call
//! would close a cycle: `events` (masking, which `bind` needs and the guest code calls) and
//! `grant` (the table's frames, which the guest's entry code reserves by `grant::FRAMES`).
//!
//! Written by hand against the Xen public headers (bindings in `xen-sys`): no published crate
//! covers a PV guest's boot and memory model.
//!
//! # Cargo features
//! - `pvh`: a PVH guest instead of a PV one (enables the arch crate's `pvh-entry`).
#![no_std]

pub mod console;
#[cfg(not(feature = "pvh"))]
pub mod entry;
pub mod events;
pub mod grant;
pub mod hypercall;
#[cfg(not(feature = "pvh"))]
pub mod memory;
#[cfg(not(feature = "pvh"))]
mod pv;
#[cfg(feature = "pvh")]
pub mod pvh;
mod smp;
pub mod time;
pub mod xenstore;

#[cfg(not(feature = "pvh"))]
use pv as guest;
#[cfg(feature = "pvh")]
use pvh as guest;

pub use console::{XEN_CONSOLE, XenConsole};
use platform::{BootInfo, DeviceMemory, FreeMemory};

/// The Xen platform (PV, or PVH with the `pvh` feature).
#[derive(Debug)]
pub struct Xen;

impl platform::Platform for Xen {
    type BootError = guest::BootError;
    type MapError = guest::MapError;

    /// PVH: Xen's CPUID signature (a universal image runs the other platform without it). PV:
    /// always (nothing else boots a PV image).
    fn detect() -> bool {
        guest::detect()
    }

    fn boot_info(raw: u64) -> Result<BootInfo, Self::BootError> {
        guest::boot_info(raw)
    }

    fn init(boot: &BootInfo) -> DeviceMemory {
        guest::init(boot)
    }

    fn init_cpu() {
        guest::init_cpu();
    }

    fn map_memory(
        boot: &BootInfo,
        free: &mut FreeMemory,
        devices: &DeviceMemory,
    ) -> Result<u64, Self::MapError> {
        guest::map_memory(boot, free, devices)
    }
    fn exit(status: u8) -> ! {
        use platform::ConsoleDevice;
        if status != 0 {
            let mut line = *b"xen: exit status 000\n";
            line[17] = b'0' + status / 100;
            line[18] = b'0' + status / 10 % 10;
            line[19] = b'0' + status % 10;
            XEN_CONSOLE.write(&line);
        }
        XEN_CONSOLE.flush();
        let reason = if status == 0 {
            xen_sys::SHUTDOWN_poweroff
        } else {
            xen_sys::SHUTDOWN_crash
        };
        loop {
            hypercall::shutdown(reason);
            hypercall::yield_cpu();
        }
    }

    fn tsc_frequency() -> Option<u64> {
        time::tsc_frequency()
    }

    fn now_ns() -> Option<u64> {
        time::system_time_ns()
    }

    fn set_timer(deadline_ns: u64) -> bool {
        guest::set_timer(deadline_ns)
    }

    fn interrupts_disable() -> bool {
        guest::interrupts_disable()
    }

    fn interrupts_restore(enabled: bool) {
        guest::interrupts_restore(enabled);
    }

    fn idle() {
        guest::idle();
    }

    fn wall_clock_ns() -> Option<u64> {
        time::wall_clock_ns()
    }

    unsafe fn unmap_page(page: u64, new_table: &mut dyn FnMut() -> Option<u64>) -> bool {
        // SAFETY: forwarded to the caller.
        unsafe { guest::unmap_page(page, new_table) }
    }

    unsafe fn remap_page(page: u64) {
        // SAFETY: forwarded to the caller.
        unsafe { guest::remap_page(page) }
    }

    fn set_timer_handler(handler: platform::irq::Handler, data: usize) {
        events::set_timer_handler(handler, data);
    }

    /// `irq` is an event-channel port the caller bound (the device's, from XenStore).
    fn irq_register(
        irq: platform::irq::Irq,
        cpu: platform::irq::CpuId,
        handler: platform::irq::Handler,
        data: usize,
    ) -> Result<(), platform::irq::IrqError> {
        events::register(irq, cpu, handler, data)
    }

    fn irq_unmask(irq: platform::irq::Irq) {
        events::unmask(irq.0);
    }

    fn current_cpu() -> platform::irq::CpuId {
        arch_x86_64::percpu::current().id()
    }

    /// The domain's vCPUs (`VCPUOP_is_up`), up to `max` kept to start.
    fn find_cpus(_boot: &platform::BootInfo, max: usize) -> usize {
        smp::find(max)
    }

    /// `VCPUOP_initialise` (PV: a `vcpu_guest_context`; PVH: an HVM context) and `VCPUOP_up`,
    /// one vCPU at a time, each with its own timer VIRQ and IPI port (`smp.rs`).
    fn start_cpus(
        stacks: &mut dyn FnMut(platform::irq::CpuId) -> Option<platform::CpuStacks>,
        main: fn(platform::irq::CpuId) -> !,
    ) -> usize {
        smp::start(stacks, main)
    }

    /// `EVTCHNOP_send` on the CPU's IPI port (`EVTCHNOP_bind_ipi`).
    fn send_ipi(cpu: platform::irq::CpuId) -> bool {
        smp::send_ipi(cpu)
    }

    /// `SCHEDOP_yield`: a spinning vCPU lets Xen run the guest's others (the lock's holder).
    fn yield_cpu() {
        hypercall::yield_cpu();
    }
}
