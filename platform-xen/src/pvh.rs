//! The PVH-specific parts of [`crate::Xen`] (feature `pvh`).
//!
//! Xen starts a PVH guest like a KVM-class monitor does: the arch crate's `pvh_start32` (its
//! `XEN_ELFNOTE_PHYS32_ENTRY` note) with `%ebx` = `hvm_start_info`, which `boot_info` parses
//! with the arch crate's parser. The CPU is a plain (virtual) x86: native IDT, native page
//! tables, `cli`/`sti`. Xen-specific here:
//!
//! - [`setup`] (the console's `init`, the first platform code that runs): Xen is found by its
//!   CPUID signature (`xen_services::detect`); anything else is reported on COM1 and port 0xe9
//!   and ends the guest (QEMU's isa-debug-exit, status 103). Then the hypercall page: its
//!   physical address written to the MSR that CPUID names (Xen fills it with `vmcall` or
//!   `vmmcall` stubs, called exactly like PV's). Then the console ring: its frame and event
//!   channel from `HVMOP_get_param`. The ring sits just below 4 GiB, outside RAM and outside the
//!   boot tables' first GiB, so it is mapped into the boot tables with one 2 MiB entry and
//!   returned by `init` as device memory for the kernel's tables.
//! - `init`: the shared info page by `XENMEM_add_to_physmap` (the PV clock and wall clock).
//! - `map_memory`: the arch crate's W^X tables, then the hypercall page made executable (it is
//!   a page of the image's data).
//!
//! - `init_cpu`: the arch crate's IDT, then events (`events.rs`): the HVM callback vector
//!   (`HVM_PARAM_CALLBACK_IRQ`), the timer VIRQ; masking is `cli`/`sti`, idle `sti; hlt`.
//!
//! Beware: `cli; hlt` on Xen HVM/PVH is a silent *clean* power-off (reason 0). Every exit goes
//! through `SCHEDOP_shutdown` (`Xen::exit`), a crash with `SHUTDOWN_crash`.

use arch_x86_64::paging::pte;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use platform::{BootInfo, DeviceMemory, FreeMemory, Range};
use xen_services::detect::{self, NotXen, XenCpuid};

pub use arch_x86_64::paging::PagingError as MapError;
pub use arch_x86_64::start_info::StartInfoError as BootError;

// Page-sized, page-aligned pages without bytes in the file (the linker script's
// .platform_pages, placed on a page boundary; no .balign here, see the script).
core::arch::global_asm!(
    r#"
    .section .platform_pages, "aw", @nobits
    /* Xen writes the hypercall stubs here when its guest frame is written to the MSR. */
    .global hypercall_page
hypercall_page:
    .skip 4096
    /* Replaced by the shared info frame (XENMEM_add_to_physmap). */
    .global xen_shared_info_page
xen_shared_info_page:
    .skip 4096
    /* Replaced by the grant table's frames (grant.rs). */
    .global xen_grant_frames
xen_grant_frames:
    .skip 4096 * {grant_frames}
    /* A page directory for the boot tables' fourth GiB, where the console ring is. */
    .global xen_pvh_high_pd
xen_pvh_high_pd:
    .skip 4096
"#,
    grant_frames = const crate::grant::FRAMES,
);

unsafe extern "C" {
    static hypercall_page: u8;
    static xen_pvh_high_pd: u8;
}

/// What [`setup`] found: Xen's CPUID leaves (once, at the first console init).
static XEN: spin::Once<Option<XenCpuid>> = spin::Once::new();
/// The console ring's guest-physical page (0 = none) and event channel.
static CONSOLE_PAGE: AtomicU64 = AtomicU64::new(0);
static CONSOLE_PORT: AtomicU32 = AtomicU32::new(0);
/// The XenStore ring's guest-physical page (0 = none) and event channel (found at `init`).
static STORE_PAGE: AtomicU64 = AtomicU64::new(0);
static STORE_PORT: AtomicU32 = AtomicU32::new(0);

fn cpuid(leaf: u32) -> detect::Regs {
    // SAFETY: CPUID is available on every x86_64 CPU; leaves beyond the maximum are harmless.
    // (Safe on newer toolchains, unsafe on older ones.)
    #[allow(unused_unsafe)]
    let r = unsafe { core::arch::x86_64::__cpuid(leaf) };
    [r.eax, r.ebx, r.ecx, r.edx]
}

/// Finds Xen, installs the hypercall page and finds the console ring (once). Not Xen: reports
/// it on the legacy consoles and ends the guest.
fn setup() -> Option<XenCpuid> {
    *XEN.call_once(|| {
        let xen = match detect::detect(cpuid) {
            Ok(xen) => xen,
            Err(not) => not_xen(&not),
        };
        let page = (&raw const hypercall_page) as u64;
        // SAFETY: the MSR is the one Xen's CPUID leaf names for the hypercall page; the value
        // is the guest frame of our page-aligned, otherwise unused page (low 12 bits 0: page
        // index 0), which Xen fills with the call stubs.
        unsafe { arch_x86_64::cpu::wrmsr(xen.hypercall_msr, page) };
        match (
            hvm_param(xen_sys::HVM_PARAM_CONSOLE_PFN),
            hvm_param(xen_sys::HVM_PARAM_CONSOLE_EVTCHN),
        ) {
            (Some(pfn), Some(port)) if pfn != 0 => {
                let addr = pfn << 12;
                if map_boot_page(addr) {
                    CONSOLE_PORT.store(port as u32, Ordering::Relaxed);
                    CONSOLE_PAGE.store(addr, Ordering::Relaxed);
                }
            }
            // Nowhere to say so: the kernel's output is lost, its exit status still reported.
            _ => {}
        }
        Some(xen)
    })
}

/// Whether the hypervisor is Xen (its CPUID signature); changes nothing.
pub fn detect() -> bool {
    XEN.get()
        .map_or_else(|| detect::detect(cpuid).is_ok(), Option::is_some)
}

/// Reports that this PVH image runs on something other than Xen, on COM1 and port 0xe9, and
/// ends the guest: QEMU's isa-debug-exit (status 103, bad configuration), else a triple fault.
fn not_xen(not: &NotXen) -> ! {
    let sig = not.signature_text();
    let parts: [&[u8]; 3] = [
        b"stardust: this image is a Xen PVH guest (xen_guest = \"pvh\"), but the hypervisor is \
          not Xen (CPUID 0x40000000 signature '",
        &sig,
        b"'); build it for this platform instead\n",
    ];
    for part in parts {
        for &b in part {
            // SAFETY: COM1's transmit register and the 0xe9 debug port: writes are output, or
            // ignored where nothing listens.
            unsafe {
                arch_x86_64::cpu::outb(0x3f8, b);
                arch_x86_64::cpu::outb(0xe9, b);
            }
        }
    }
    // SAFETY: isa-debug-exit at 0xf4 ends QEMU with the status; elsewhere the write is ignored.
    unsafe { arch_x86_64::cpu::outl(0xf4, u32::from(platform::status::BAD_CONFIG)) };
    arch_x86_64::cpu::triple_fault()
}

/// `HVMOP_get_param` for this domain.
fn hvm_param(index: u32) -> Option<u64> {
    let mut param = xen_sys::xen_hvm_param {
        domid: xen_sys::DOMID_SELF,
        pad: 0,
        index,
        value: 0,
    };
    // SAFETY: a live xen_hvm_param for the call; reading a param changes nothing.
    let rc = unsafe {
        crate::hypercall::hypercall2(
            xen_sys::__HYPERVISOR_hvm_op,
            u64::from(xen_sys::HVMOP_get_param),
            (&raw mut param) as u64,
        )
    };
    (rc == 0).then_some(param.value)
}

/// `HVMOP_set_param` for this domain; `Err` is Xen's error code.
pub(crate) fn set_hvm_param(index: u32, value: u64) -> Result<(), i64> {
    let mut param = xen_sys::xen_hvm_param {
        domid: xen_sys::DOMID_SELF,
        pad: 0,
        index,
        value,
    };
    // SAFETY: a live xen_hvm_param for the call; the callers set params whose effect they
    // are ready for (the event callback vector once its IDT gate is in place).
    let rc = unsafe {
        crate::hypercall::hypercall2(
            xen_sys::__HYPERVISOR_hvm_op,
            u64::from(xen_sys::HVMOP_set_param),
            (&raw mut param) as u64,
        )
    };
    if rc == 0 { Ok(()) } else { Err(rc) }
}

/// Maps the page at `addr` into the boot page tables (identity, first GiB) when it is above
/// them: one 2 MiB entry, read-write, no-execute, in a page directory of our own for its GiB.
/// Returns whether the page is mapped.
fn map_boot_page(addr: u64) -> bool {
    const GIB: u64 = 1 << 30;
    if addr < GIB {
        return true;
    }
    if addr >= 512 * GIB {
        return false;
    }
    let pml4 = arch_x86_64::cpu::page_table_root() as *const u64;
    // SAFETY: CR3 is the arch crate's boot PML4 (identity-mapped in the first GiB, in the
    // image's data); entry 0 is its PDPT, also there. Only this boot CPU runs.
    let pdpt = (unsafe { pml4.read() } & pte::ADDR_MASK) as *mut u64;
    let slot = (addr / GIB) as usize;
    let pd = (&raw const xen_pvh_high_pd) as u64;
    // SAFETY: `slot` < 512 (checked above); the PDPT is the boot one (see above), which maps
    // only the first GiB, so slots 1.. are ours to fill.
    let entry = unsafe { pdpt.add(slot).read() };
    if entry & pte::PRESENT == 0 {
        // SAFETY: as above; the new table is our own zeroed page (.platform_pages, bss).
        unsafe { pdpt.add(slot).write(pd | pte::PRESENT | pte::WRITABLE) };
    } else if entry & pte::ADDR_MASK != pd {
        return false;
    }
    let big = addr & !((2 << 20) - 1);
    let index = ((addr >> 21) & 511) as usize;
    // SAFETY: our page directory, identity-mapped in the image; index < 512.
    unsafe {
        (pd as *mut u64)
            .add(index)
            .write(big | pte::PRESENT | pte::WRITABLE | pte::HUGE | pte::NO_EXECUTE);
    }
    arch_x86_64::cpu::flush_page(addr);
    true
}

/// The console ring's page (mapped) and event channel, from the HVM params.
pub(crate) fn console_ring() -> Option<(u64, u32)> {
    setup()?;
    let page = CONSOLE_PAGE.load(Ordering::Relaxed);
    (page != 0).then(|| (page, CONSOLE_PORT.load(Ordering::Relaxed)))
}

/// The XenStore ring's page (mapped by the kernel as device memory; 0 when Xen gave none) and
/// event channel, from the HVM params.
pub(crate) fn store_ring() -> (u64, u32) {
    (
        STORE_PAGE.load(Ordering::Relaxed),
        STORE_PORT.load(Ordering::Relaxed),
    )
}

/// Xen's CPUID leaves (base, version, hypercall MSR).
pub fn xen_cpuid() -> Option<XenCpuid> {
    setup()
}

pub fn boot_info(raw: u64) -> Result<BootInfo, BootError> {
    setup();
    arch_x86_64::start_info::parse(&arch_x86_64::BootMemory, raw)
}

pub fn init(_boot: &BootInfo) -> DeviceMemory {
    if let Some(xen) = setup() {
        log::debug!(
            "Xen {}.{} (PVH, CPUID base {:#x}, hypercall page by MSR {:#x})",
            xen.major,
            xen.minor,
            xen.base,
            xen.hypercall_msr
        );
    }
    map_shared_info();
    if let (Some(pfn), Some(port)) = (
        hvm_param(xen_sys::HVM_PARAM_STORE_PFN),
        hvm_param(xen_sys::HVM_PARAM_STORE_EVTCHN),
    ) && pfn != 0
    {
        STORE_PORT.store(port as u32, Ordering::Relaxed);
        STORE_PAGE.store(pfn << 12, Ordering::Relaxed);
    }
    // The shared pages outside RAM (just below 4 GiB), for the kernel's tables. Cannot fail:
    // two pushes on an empty list.
    let mut devices = DeviceMemory::new();
    for page in [&CONSOLE_PAGE, &STORE_PAGE].map(|p| p.load(Ordering::Relaxed)) {
        if page != 0 {
            let _ = devices.push(Range::new(page, page + platform::PAGE_SIZE));
        }
    }
    devices
}

pub fn init_cpu() {
    arch_x86_64::cpu::init();
    init_events();
}

pub fn map_memory(
    boot: &BootInfo,
    free: &mut FreeMemory,
    devices: &DeviceMemory,
) -> Result<u64, MapError> {
    let bytes = arch_x86_64::install_page_tables(free, &boot.memory, devices.ranges())?;
    let page = (&raw const hypercall_page) as u64;
    // SAFETY: the live tables are the kernel's, just installed; only Xen writes the hypercall
    // page (through its guest frame), never the kernel through this mapping.
    if !unsafe { arch_x86_64::map_page_executable(page) } {
        log::warn!("hypercall page {page:#x} not made executable: hypercalls will fault");
    }
    Ok(bytes)
}

/// The one-shot timer (`set_timer_op`, `VIRQ_TIMER` through the callback vector); false
/// (the kernel polls) when events are not set up.
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

/// `sti; hlt` until an event when events work; otherwise a yield (polling). Never `hlt` with
/// interrupts off: on Xen HVM that is a silent clean power-off.
pub fn idle() {
    if crate::events::ready() {
        block();
    } else {
        crate::hypercall::yield_cpu();
    }
}

/// # Safety
/// As `Platform::unmap_page`.
///
/// With more than one vCPU up, the other vCPUs' TLBs are flushed by `HVMOP_flush_tlbs`: Xen
/// flushes every vCPU of the domain before it returns (pausing them meanwhile), so none can
/// still reach the page; an IPI round trip through each vCPU would be as correct but wait on
/// a descheduled vCPU's next turn.
pub unsafe fn unmap_page(page: u64, new_table: &mut dyn FnMut() -> Option<u64>) -> bool {
    // SAFETY: forwarded to the caller; the live tables are the kernel's identity-mapped ones,
    // built by `map_memory`.
    let unmapped = unsafe { arch_x86_64::unmap_page(page, new_table) };
    if unmapped && crate::smp::up() > 1 {
        // SAFETY: HVMOP_flush_tlbs takes a null argument and only flushes TLBs.
        let rc = unsafe {
            crate::hypercall::hypercall2(
                xen_sys::__HYPERVISOR_hvm_op,
                u64::from(xen_sys::HVMOP_flush_tlbs),
                0,
            )
        };
        if rc != 0 {
            log::error!("HVMOP_flush_tlbs failed ({rc}): other vCPUs may still reach {page:#x}");
        }
    }
    unmapped
}

/// `struct vcpu_hvm_x86_64` of `hvm/hvm_vcpu.h` (xen-sys does not bind it; by hand here).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct VcpuHvmX86_64 {
    rax: u64,
    rcx: u64,
    rdx: u64,
    rbx: u64,
    rsp: u64,
    rbp: u64,
    rsi: u64,
    rdi: u64,
    rip: u64,
    rflags: u64,
    cr0: u64,
    cr3: u64,
    cr4: u64,
    efer: u64,
}

/// `struct vcpu_hvm_context` of `hvm/hvm_vcpu.h`: the mode, then a union of the 32-bit
/// registers (120 bytes, the larger member) and the 64-bit ones.
#[repr(C)]
#[derive(Clone, Copy)]
struct VcpuHvmContext {
    mode: u32,
    pad: u32,
    x86_64: VcpuHvmX86_64,
    /// The rest of the union (`struct vcpu_hvm_x86_32` is 120 bytes).
    union_tail: [u8; 8],
}

const _: () = assert!(core::mem::size_of::<VcpuHvmContext>() == 128);

/// `VCPU_HVM_MODE_64B`: the vCPU starts in 64-bit mode with flat segments.
const VCPU_HVM_MODE_64B: u32 = 1;
/// MSR IA32_EFER.
const IA32_EFER: u32 = 0xc000_0080;

/// `VCPUOP_initialise` for Xen vCPU `vcpu` with an HVM context: 64-bit mode with the boot
/// vCPU's CR0, CR4 and EFER (paging, PAE, long mode active, NX), the kernel's page tables,
/// `smp::entry_point` on the stack ending at `stack`, interrupts off. Returns Xen's status.
pub fn start_vcpu(vcpu: u32, _cpu: platform::irq::CpuId, stack: u64) -> i64 {
    let (cr0, cr4): (u64, u64);
    // SAFETY: reading control registers in ring 0 has no side effects.
    unsafe {
        core::arch::asm!("mov {}, cr0", out(reg) cr0, options(nomem, nostack, preserves_flags));
        core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack, preserves_flags));
    }
    // SAFETY: IA32_EFER exists on every x86_64 CPU; reading it has no side effects.
    let efer = unsafe { arch_x86_64::cpu::rdmsr(IA32_EFER) };
    let ctx = VcpuHvmContext {
        mode: VCPU_HVM_MODE_64B,
        pad: 0,
        x86_64: VcpuHvmX86_64 {
            rsp: stack,
            rip: crate::smp::entry_point(),
            rflags: 0x2,
            cr0,
            cr3: arch_x86_64::cpu::page_table_root(),
            cr4,
            efer,
            ..VcpuHvmX86_64::default()
        },
        union_tail: [0; 8],
    };
    crate::smp::initialise(vcpu, (&raw const ctx) as u64)
}

/// What a started vCPU does first (`smp.rs`): the arch crate's per-CPU set-up (its block and
/// GS base, its own GDT and TSS, the shared IDT, which has the callback vector's gate), then
/// the segment registers reloaded from that GDT (Xen's 64-bit start leaves their selectors 0,
/// and an `iretq` to a null code selector faults).
pub fn init_other_cpu(cpu: platform::irq::CpuId) -> bool {
    arch_x86_64::cpu::init_cpu(cpu);
    // SAFETY: the GDT just loaded has the kernel's 64-bit code descriptor at 0x08 and its data
    // descriptor at 0x10 (copies of the boot GDT's); the far return continues at the next
    // instruction, on the same stack.
    unsafe {
        core::arch::asm!(
            "push 0x08",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov {sel:e}, 0x10",
            "mov ss, {sel:e}",
            "mov ds, {sel:e}",
            "mov es, {sel:e}",
            tmp = out(reg) _,
            sel = out(reg) _,
        );
    }
    true
}

/// # Safety
/// As `Platform::remap_page`.
pub unsafe fn remap_page(page: u64) {
    // SAFETY: forwarded to the caller.
    unsafe { arch_x86_64::remap_page(page) }
}

/// The vector Xen injects for events on PVH (`HVM_PARAM_CALLBACK_IRQ`, type vector).
pub const CALLBACK_VECTOR: u8 = 0xf3;

// The PVH callback vector's entry (the arch crate's interrupt stub around the upcall, which
// may switch threads before it returns). No EOI: Xen's callback vector does not go through
// the local APIC, it is raised while `evtchn_upcall_pending` is set.
arch_x86_64::interrupt_entry!("xen_pvh_callback_entry", "xen_upcall");

unsafe extern "C" {
    static xen_pvh_callback_entry: u8;
}

/// Points the callback vector's IDT gate at our entry, asks Xen for that vector
/// (`HVM_PARAM_CALLBACK_IRQ`, type vector, in bits 63..56), binds the timer VIRQ, and enables
/// events. Needs the shared info page (mapped by `init`) and the IDT (`init_cpu`).
fn init_events() {
    if !crate::time::shared_info_mapped() {
        log::warn!("no shared info: no events, sleeping will poll");
        return;
    }
    let entry = (&raw const xen_pvh_callback_entry) as u64;
    // SAFETY: the entry above saves every caller-saved register and returns by iretq.
    unsafe { arch_x86_64::cpu::set_interrupt_gate(CALLBACK_VECTOR, entry) };
    let via = u64::from(xen_sys::HVM_PARAM_CALLBACK_TYPE_VECTOR) << 56 | u64::from(CALLBACK_VECTOR);
    if let Err(rc) = set_hvm_param(xen_sys::HVM_PARAM_CALLBACK_IRQ, via) {
        log::warn!("setting the event callback vector failed ({rc}): no events");
        return;
    }
    crate::events::bind_timer();
}

/// Idles until an event arrives: `sti; hlt` (atomic by the `sti` shadow, so an event that
/// arrived after the caller's last check wakes the `hlt`). Call with events masked; returns with
/// them enabled (the upcall has run).
pub(crate) fn block() {
    if crate::events::ready() {
        arch_x86_64::cpu::enable_interrupts_and_halt();
    } else {
        // Nothing would wake a halted vCPU: enable, give the vCPU back for a moment.
        crate::events::enable();
        crate::hypercall::yield_cpu();
    }
}

/// Puts the shared info page at our page's guest frame (`XENMEM_add_to_physmap`, space
/// `shared_info`); the RAM page that was there goes back to Xen.
fn map_shared_info() {
    let mut xatp = xen_sys::xen_add_to_physmap {
        domid: xen_sys::DOMID_SELF,
        size: 0,
        space: xen_sys::XENMAPSPACE_shared_info,
        idx: 0,
        gpfn: crate::time::shared_info_va() >> 12,
    };
    // SAFETY: a live xen_add_to_physmap for the call; the target frame is our own
    // page-aligned static (identity-mapped), used for nothing else.
    let rc = unsafe {
        crate::hypercall::hypercall2(
            xen_sys::__HYPERVISOR_memory_op,
            u64::from(xen_sys::XENMEM_add_to_physmap),
            (&raw mut xatp) as u64,
        )
    };
    if rc == 0 {
        crate::time::set_mapped();
    } else {
        log::warn!("XENMEM_add_to_physmap(shared_info) failed ({rc}): no PV clock");
    }
}
