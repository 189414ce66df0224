//! The PV-specific parts of [`crate::Xen`]'s `Platform` implementation: boot information from
//! `start_info`, the trap table and event callbacks, the PV memory model, events masked in
//! `vcpu_info`, idle by `SCHEDOP_block`, guard pages by `update_va_mapping`.

use platform::{BootInfo, DeviceMemory, FreeMemory};

pub use crate::memory::{BootError, MapError};

/// Only Xen boots a PV image.
pub fn detect() -> bool {
    true
}

pub fn boot_info(raw: u64) -> Result<BootInfo, BootError> {
    crate::memory::boot_info(raw)
}

pub fn init(_boot: &BootInfo) -> DeviceMemory {
    let si = crate::entry::START_INFO.load(core::sync::atomic::Ordering::Relaxed);
    // SAFETY: the start_info page Xen handed over (stored by the entry code), read-only.
    let shared_info = unsafe { (*(si as *const xen_sys::start_info)).shared_info };
    crate::time::map_shared_info(shared_info);
    DeviceMemory::new()
}

pub fn init_cpu() {
    crate::entry::install_trap_table();
    crate::events::init();
}

pub fn map_memory(
    _boot: &BootInfo,
    free: &mut FreeMemory,
    _devices: &DeviceMemory,
) -> Result<u64, MapError> {
    crate::memory::map_memory(free)
}

pub fn set_timer(deadline_ns: u64) -> bool {
    crate::events::ready() && {
        crate::events::set_timer(deadline_ns);
        true
    }
}

pub fn interrupts_disable() -> bool {
    crate::events::disable()
}

pub fn interrupts_restore(enabled: bool) {
    crate::events::restore(enabled);
}

pub fn idle() {
    crate::events::block();
}

/// # Safety
/// As `Platform::unmap_page`.
pub unsafe fn unmap_page(page: u64, _new_table: &mut dyn FnMut() -> Option<u64>) -> bool {
    // SAFETY: forwarded to the caller (RAM is mapped with 4 KiB pages: no table needed).
    unsafe { crate::memory::unmap_page(page) }
}

/// # Safety
/// As `Platform::remap_page`.
pub unsafe fn remap_page(page: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { crate::memory::remap_page(page) }
}

/// The console ring's page (an address mapped at boot) and event channel, from `start_info`.
pub(crate) fn console_ring() -> Option<(u64, u32)> {
    let si = crate::entry::START_INFO.load(core::sync::atomic::Ordering::Relaxed);
    if si == 0 {
        return None;
    }
    // SAFETY: `si` is the start_info page Xen mapped for us and handed over in %rsi; it is
    // only read, and laid out as xen_sys::start_info.
    let info = unsafe { &*(si as *const xen_sys::start_info) };
    // SAFETY: console.domU is the union member for an unprivileged guest.
    let (mfn, port) = unsafe { (info.console.domU.mfn, info.console.domU.evtchn) };
    // The ring page is one of the bootstrap pages, mapped at its pseudo-physical address.
    Some((crate::memory::pfn_of_mfn(mfn) << 12, port))
}

/// The XenStore ring's page (a bootstrap page, mapped) and event channel, from `start_info`.
pub(crate) fn store_ring() -> (u64, u32) {
    let si = crate::memory::start_info();
    (
        crate::memory::pfn_of_mfn(si.store_mfn) << 12,
        si.store_evtchn,
    )
}
