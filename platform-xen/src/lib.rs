//! Thin platform for Xen x86_64 PV guests (`platform = "xen"`).
//!
//! - [`entry`]: the `.note.Xen` ELF notes, the 64-bit PV entry, the hypercall page, the trap
//!   table and its trampolines into the arch crate's exception stubs.
//! - [`hypercall`]: hypercalls through the hypercall page.
//! - [`memory`]: boot information from `start_info`, the p2m/M2P translations, and the PV
//!   memory model (page tables updated by `mmu_update`: all free RAM mapped, the image W^X).
//! - [`console`]: the PV console ring, as this platform's console device.
//! - [`time`]: the shared info page, the PV clock and the wall clock.
//! - [`events`]: the event upcall with masking in `vcpu_info`, handlers per port, the one-shot
//!   timer (its VIRQ calls the kernel's timer hook at the end of the upcall) and idle by
//!   `SCHEDOP_block`.
//! - [`xenstore`]: XenStore over its ring (the client is `xen_services::xenstore`).
//! - [`grant`]: the grant table (set up by `GNTTABOP_setup_table`, bookkeeping in
//!   `xen_services::grant`).
//! - Power-off and crash by `SCHEDOP_shutdown`.
//!
//! Written by hand against the Xen public headers (bindings in `xen-sys`): no published crate
//! covers a PV guest's boot and memory model.
//!
//! # Cargo features
//! None.
#![no_std]

pub mod console;
pub mod entry;
pub mod events;
pub mod grant;
pub mod hypercall;
pub mod memory;
pub mod time;
pub mod xenstore;

pub use console::{XEN_CONSOLE, XenConsole};
use platform::{BootInfo, DeviceMemory, FreeMemory};

/// The Xen PV platform.
#[derive(Debug)]
pub struct Xen;

impl platform::Platform for Xen {
    type BootError = memory::BootError;
    type MapError = memory::MapError;

    fn boot_info(raw: u64) -> Result<BootInfo, Self::BootError> {
        memory::boot_info(raw)
    }

    fn init(_boot: &BootInfo) -> DeviceMemory {
        let si = crate::entry::START_INFO.load(core::sync::atomic::Ordering::Relaxed);
        // SAFETY: the start_info page Xen handed over (stored by the entry code), read-only.
        let shared_info = unsafe { (*(si as *const xen_sys::start_info)).shared_info };
        time::map_shared_info(shared_info);
        DeviceMemory::new()
    }

    fn init_cpu() {
        entry::install_trap_table();
        events::init();
    }

    fn map_memory(
        _boot: &BootInfo,
        free: &mut FreeMemory,
        _devices: &DeviceMemory,
    ) -> Result<u64, Self::MapError> {
        memory::map_memory(free)
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
        events::ready() && {
            events::set_timer(deadline_ns);
            true
        }
    }

    fn interrupts_disable() -> bool {
        events::disable()
    }

    fn interrupts_restore(enabled: bool) {
        events::restore(enabled);
    }

    fn idle() {
        events::block();
    }

    fn wall_clock_ns() -> Option<u64> {
        time::wall_clock_ns()
    }

    unsafe fn unmap_page(page: u64, _new_table: &mut dyn FnMut() -> Option<u64>) -> bool {
        // SAFETY: forwarded to the caller (RAM is mapped with 4 KiB pages: no table needed).
        unsafe { memory::unmap_page(page) }
    }

    unsafe fn remap_page(page: u64) {
        // SAFETY: forwarded to the caller.
        unsafe { memory::remap_page(page) }
    }
}
