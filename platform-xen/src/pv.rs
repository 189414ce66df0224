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
    map_shared_info(crate::memory::start_info().shared_info);
    DeviceMemory::new()
}

pub fn init_cpu() {
    // The boot CPU's per-CPU block, without a GS base (the PV kernel runs in ring 3; the base
    // would be `HYPERVISOR_set_segment_base`'s): `percpu::current` is block 0 while one vCPU
    // runs.
    arch_x86_64::percpu::install(platform::irq::CpuId(0), false);
    crate::entry::install_trap_table();
    init_events();
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
    block();
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
    let info = crate::memory::stored_start_info()?;
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

// The event and failsafe callbacks (see `events.rs` for the upcall they call).
core::arch::global_asm!(
    r#"
    .section .text.xen_events, "ax", @progbits
    /* Xen enters here with events masked and [rcx, r11, rip, cs, rflags, rsp, ss] on the
       stack. The handler runs in Rust (soft-float target: no vector state to save). */
    .global xen_event_callback
xen_event_callback:
    mov (%rsp), %rcx
    mov 8(%rsp), %r11
    add $16, %rsp
    push %rax
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %r8
    push %r9
    push %r10
    push %r11
    push %rbx
    mov %rsp, %rbx
    and $-16, %rsp
    call xen_upcall
    mov %rbx, %rsp
    pop %rbx
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rax
    /* Back to the guest kernel (ring 3) directly: iretq at the same privilege level. */
    orb $3, 8(%rsp)
    orb $3, 32(%rsp)
    iretq

    /* Xen could not return to the guest (a bad segment or frame): report and crash. */
    .global xen_failsafe_callback
xen_failsafe_callback:
    and $-16, %rsp
    call xen_failsafe
    ud2
"#,
    options(att_syntax)
);

unsafe extern "C" {
    static xen_event_callback: u8;
    static xen_failsafe_callback: u8;
}

#[unsafe(no_mangle)]
extern "C" fn xen_failsafe() -> ! {
    log::error!("Xen failsafe callback: could not return to the guest");
    <crate::Xen as platform::Platform>::exit(platform::status::EXCEPTION)
}

/// Registers the event and failsafe callbacks, binds the timer VIRQ, and enables events.
fn init_events() {
    let event = (&raw const xen_event_callback) as u64;
    let failsafe = (&raw const xen_failsafe_callback) as u64;
    // SAFETY: both addresses are entry stubs above, in our code; set_callbacks only records
    // them (x86_64: event, failsafe, syscall).
    let rc = unsafe {
        crate::hypercall::hypercall4(xen_sys::__HYPERVISOR_set_callbacks, event, failsafe, 0, 0)
    };
    if rc != 0 {
        log::warn!("set_callbacks failed ({rc}): no events");
        return;
    }
    crate::events::bind_timer();
}

/// Idles until an event arrives: `SCHEDOP_block` unmasks events and blocks unless one is
/// pending, atomically, so an event that arrives after the caller's last check is not lost.
/// Call with events masked; returns with them enabled (the upcall has run).
pub(crate) fn block() {
    // SAFETY: SCHEDOP_block takes no argument; it unmasks events and waits for one.
    unsafe { crate::hypercall::sched_op(xen_sys::SCHEDOP_block, core::ptr::null()) };
}

/// Maps the shared info page (machine address `maddr`, from start_info) over our page.
fn map_shared_info(maddr: u64) {
    // SAFETY: the target is our own page-aligned static, used for nothing else; the new
    // mapping is the domain's shared info frame, read-write, no-execute.
    let rc = unsafe {
        crate::hypercall::update_va_mapping(
            crate::time::shared_info_va(),
            maddr | crate::memory::RW_DATA,
            xen_sys::UVMF_INVLPG,
        )
    };
    if rc == 0 {
        crate::time::set_mapped();
    } else {
        log::warn!("mapping shared info failed ({rc}): no PV clock");
    }
}
