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
    // The boot CPU's per-CPU block; its GS base is `HYPERVISOR_set_segment_base`'s (the PV
    // kernel runs in ring 3). Should Xen refuse, `percpu::current` stays block 0 and no other
    // vCPU is started.
    arch_x86_64::percpu::install_with_base(platform::irq::CpuId(0), set_gs_base);
    crate::entry::install_trap_table();
    init_events();
}

/// Points the kernel's GS base at `base` (`set_segment_base(SEGBASE_GS_KERNEL)`); whether Xen
/// did.
fn set_gs_base(base: u64) -> bool {
    // SAFETY: only the guest kernel's GS base changes; the kernel never loads the GS selector
    // and reads `%gs:` only through `percpu::current`, which expects this base.
    let rc = unsafe {
        crate::hypercall::hypercall2(
            xen_sys::__HYPERVISOR_set_segment_base,
            SEGBASE_GS_KERNEL,
            base,
        )
    };
    if rc != 0 {
        log::warn!("set_segment_base(GS) failed ({rc}): one vCPU");
    }
    rc == 0
}

/// `SEGBASE_GS_KERNEL` (`arch-x86/xen-x86_64.h`).
const SEGBASE_GS_KERNEL: u64 = 2;

/// The registers of a PV vCPU, `struct cpu_user_regs` of `arch-x86/xen-x86_64.h` (x86_64;
/// xen-sys does not bind the x86-specific context, defined here by hand).
#[repr(C)]
#[derive(Clone, Copy)]
struct CpuUserRegs {
    /// r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi.
    gprs: [u64; 15],
    error_code: u32,
    entry_vector: u32,
    rip: u64,
    cs: u16,
    _pad0: u16,
    saved_upcall_mask: u8,
    _pad1: [u8; 3],
    rflags: u64,
    rsp: u64,
    /// ss, es, ds, fs, gs: a 16-bit selector in each 8-byte slot.
    segs: [u64; 5],
}

/// `struct vcpu_guest_context` of `arch-x86/xen.h` (x86_64, as a guest sees it).
#[repr(C)]
#[derive(Clone, Copy)]
struct VcpuGuestContext {
    fpu_ctxt: [u8; 512],
    flags: u64,
    user_regs: CpuUserRegs,
    trap_ctxt: [xen_sys::trap_info; 256],
    ldt_base: u64,
    ldt_ents: u64,
    gdt_frames: [u64; 16],
    gdt_ents: u64,
    kernel_ss: u64,
    kernel_sp: u64,
    ctrlreg: [u64; 8],
    debugreg: [u64; 8],
    event_callback_eip: u64,
    failsafe_callback_eip: u64,
    syscall_callback_eip: u64,
    vm_assist: u64,
    fs_base: u64,
    gs_base_kernel: u64,
    gs_base_user: u64,
}

const _: () = assert!(core::mem::size_of::<CpuUserRegs>() == 200);
const _: () = assert!(core::mem::size_of::<VcpuGuestContext>() == 5168);

/// The context of the vCPU being started (5 KiB: a static rather than the boot stack); only
/// `start_vcpu` uses it, on the boot vCPU, one vCPU at a time.
static CONTEXT: spin::Mutex<VcpuGuestContext> =
    // SAFETY: all-zero is a valid value of this plain-data struct (integers and arrays of them).
    spin::Mutex::new(unsafe { core::mem::zeroed() });

/// `VCPUOP_initialise` for Xen vCPU `vcpu` (kernel CPU `cpu`): in kernel mode at
/// `smp::entry_point` on the stack ending at `stack`, with the kernel's page tables, no GDT of
/// its own (`gdt_ents` 0: the flat selectors `FLAT_KERNEL_*` are in Xen's reserved part of every
/// vCPU's GDT, which is all this kernel uses, as the boot vCPU does; a per-CPU GDT page would
/// only add a frame Xen needs read-only), the boot vCPU's event and failsafe callbacks, and the
/// kernel GS base already on its per-CPU block. Its trap table is installed by the vCPU itself
/// (`init_other_cpu`). Returns Xen's status.
pub fn start_vcpu(vcpu: u32, cpu: platform::irq::CpuId, stack: u64) -> i64 {
    let flat_ss = u64::from(xen_sys::FLAT_KERNEL_SS64);
    let block = arch_x86_64::percpu::block(cpu).map_or(0, |b| b as *const _ as u64);
    let mut ctx = CONTEXT.lock();
    // SAFETY: as for the static's initial value.
    *ctx = unsafe { core::mem::zeroed() };
    ctx.flags = u64::from(xen_sys::VGCF_in_kernel);
    ctx.user_regs.rip = crate::smp::entry_point();
    ctx.user_regs.rsp = stack;
    ctx.user_regs.cs = xen_sys::FLAT_KERNEL_CS64;
    // Reserved bit 1 and IF (Xen sets IF for a PV vCPU anyway; events are masked in its
    // vcpu_info, which `smp::start` did).
    ctx.user_regs.rflags = 0x202;
    ctx.user_regs.segs = [flat_ss, flat_ss, flat_ss, 0, 0];
    ctx.kernel_ss = flat_ss;
    ctx.kernel_sp = stack;
    // xen_pfn_to_cr3 on x86_64 is the frame's machine address.
    ctx.ctrlreg[3] = crate::memory::page_table_base();
    ctx.event_callback_eip = (&raw const xen_event_callback) as u64;
    ctx.failsafe_callback_eip = (&raw const xen_failsafe_callback) as u64;
    ctx.gs_base_kernel = block;
    crate::smp::initialise(vcpu, (&raw const *ctx) as u64)
}

/// What a started vCPU does first (`smp.rs`): its per-CPU block through its GS base, then its
/// trap table (per vCPU in Xen). False when its GS base could not be set.
pub fn init_other_cpu(cpu: platform::irq::CpuId) -> bool {
    let mut based = false;
    arch_x86_64::percpu::install_with_base(cpu, |base| {
        based = set_gs_base(base);
        based
    });
    if based {
        crate::entry::install_trap_table();
    }
    based
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
